//! End to end, over real sockets: shadow mode through the extractor, the middleware layer
//! and a WebSocket throttle, and failure policies (including an open circuit breaker)
//! answered as HTTP statuses.
//!
//! Backends run on a [`ManualClock`] set to the start of a minute, so every reported wait
//! is exact. A closed in-memory backend stands for a failing store: it fails every call
//! with `Error::Closed`.

mod common;

#[path = "../examples/websocket.rs"]
#[allow(dead_code)]
mod websocket;

use std::time::Duration;

use axum::Router;
use axum::extract::ws::WebSocketUpgrade;
use axum::response::Response;
use axum::routing::get;
use common::{TestServer, client};
use futures_util::{SinkExt, StreamExt};
use http::StatusCode;
use serde_json::{Value, json};
use tokio::time::timeout;
use tokio_tungstenite::connect_async;
use tokio_tungstenite::tungstenite::Message;
use traffik::prelude::*;
use traffik::{BreakerState, CircuitBreaker, FailurePolicy, FailureVerdict};

/// How long any network step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// 2023-11-14T22:14:00Z: the start of a minute.
const T0: u64 = 1_700_000_040 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("reliability-http")
            .clock(clock.clone())
            .build(),
    )
}

/// A context whose backend fails every call.
async fn failing_traffik() -> Traffik {
    let backend = InMemoryBackend::new("failing");
    backend.close().await.expect("close");
    Traffik::new(backend)
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> Option<&'a str> {
    response
        .headers()
        .get(name)
        .and_then(|value| value.to_str().ok())
}

// ---------------------------------------------------------------------------------------
// Shadow mode
// ---------------------------------------------------------------------------------------

throttle!(ShadowExtractor = HttpThrottle::new("shadow_extractor", "2/m").shadow(true));

async fn shadowed(limit: Throttled<ShadowExtractor>) -> (Throttled<ShadowExtractor>, &'static str) {
    (limit, "ok")
}

#[tokio::test]
async fn shadow_extractor_never_rejects_and_reports_the_exhausted_quota() {
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/shadow", get(shadowed))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();
    for n in 1..=5 {
        let response = client
            .get(server.url("/shadow"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "request {n}");
        assert_eq!(header(&response, "retry-after"), None, "request {n}");
        let expected = if n <= 2 {
            format!(r#""shadow_extractor";r={};t=60"#, 2 - n)
        } else {
            r#""shadow_extractor";r=0;t=60"#.to_owned()
        };
        assert_eq!(
            header(&response, "ratelimit"),
            Some(expected.as_str()),
            "request {n}"
        );
    }
    assert_eq!(ShadowExtractor::get().shadow_denials(), 3);
}

#[tokio::test]
async fn shadow_layer_never_rejects_and_adds_the_headers_of_would_be_denials() {
    let clock = ManualClock::new(T0);
    let traffik = traffik_at(&clock);
    let shadow = HttpThrottle::new("shadow_layer", rate!("2/m")).shadow(true);
    let app = Router::new()
        .route("/api/data", get(|| async { "data" }))
        .layer(
            ThrottleLayer::new(traffik.clone()).throttle(MiddlewareThrottle::new(shadow.clone())),
        )
        .with_state(traffik);
    let server = TestServer::start(app).await;
    let client = client();
    for n in 1..=5 {
        let response = client
            .get(server.url("/api/data"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK, "request {n}");
        assert_eq!(header(&response, "retry-after"), None);
        // The default header policy (on throttled responses only) reports would-be
        // denials, and only those.
        let expected = (n > 2).then_some(r#""shadow_layer";r=0;t=60"#);
        assert_eq!(header(&response, "ratelimit"), expected, "request {n}");
    }
    assert_eq!(shadow.shadow_denials(), 3);

    // The same limit enforced rejects the third request.
    let enforced = HttpThrottle::new("enforced_layer", rate!("2/m"));
    let traffik = traffik_at(&clock);
    let app = Router::new()
        .route("/api/data", get(|| async { "data" }))
        .layer(ThrottleLayer::new(traffik.clone()).throttle(MiddlewareThrottle::new(enforced)))
        .with_state(traffik);
    let server = TestServer::start(app).await;
    let mut statuses = Vec::new();
    for _ in 0..3 {
        let response = client
            .get(server.url("/api/data"))
            .send()
            .await
            .expect("request");
        statuses.push(response.status());
    }
    assert_eq!(
        statuses,
        [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS
        ]
    );
}

throttle!(ShadowMessages = HttpThrottle::new("shadow_messages", "2/10s").shadow(true));

async fn shadow_ws(ws: WebSocketUpgrade, limit: WsThrottle<ShadowMessages>) -> Response {
    ws.on_upgrade(move |socket| websocket::session(socket, limit))
}

#[tokio::test]
async fn shadow_websocket_throttle_processes_every_message() {
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/ws", get(shadow_ws))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let (mut socket, _) = timeout(STEP, connect_async(server.ws_url("/ws")))
        .await
        .expect("handshake in time")
        .expect("handshake");
    for n in 1..=5 {
        timeout(
            STEP,
            socket.send(Message::text(json!({ "n": n }).to_string())),
        )
        .await
        .expect("send in time")
        .expect("send");
        let reply = loop {
            match timeout(STEP, socket.next()).await.expect("reply in time") {
                Some(Ok(Message::Text(text))) => {
                    break serde_json::from_str::<Value>(text.as_str()).expect("JSON");
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
                other => panic!("expected a reply, got {other:?}"),
            }
        };
        assert_eq!(
            reply,
            json!({ "status": "success", "data": { "n": n } }),
            "message {n}"
        );
    }
    assert_eq!(ShadowMessages::get().shadow_denials(), 3);
}

// ---------------------------------------------------------------------------------------
// Failure policies as HTTP answers
// ---------------------------------------------------------------------------------------

throttle!(OpenOnError = HttpThrottle::new("open_on_error", "5/m").on_error(FailurePolicy::Allow));
throttle!(
    ClosedOnError = HttpThrottle::new("closed_on_error", "5/m")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(7)))
);
throttle!(RaiseOnError = HttpThrottle::new("raise_on_error", "5/m").on_error(FailurePolicy::Raise));
throttle!(
    CustomOnError =
        HttpThrottle::new("custom_on_error", "5/m").on_error(FailurePolicy::custom(|failure| {
            match failure.error {
                Error::Closed(_) if failure.uid == "custom_on_error" => {
                    FailureVerdict::Throttle(Duration::from_secs(2))
                }
                _ => FailureVerdict::Raise,
            }
        }))
);

#[tokio::test]
async fn each_failure_policy_gives_its_http_answer() {
    let app = Router::new()
        .route("/open", get(|_: Throttled<OpenOnError>| async { "open" }))
        .route(
            "/closed",
            get(|_: Throttled<ClosedOnError>| async { "closed" }),
        )
        .route(
            "/raise",
            get(|_: Throttled<RaiseOnError>| async { "raise" }),
        )
        .route(
            "/custom",
            get(|_: Throttled<CustomOnError>| async { "custom" }),
        )
        .with_state(failing_traffik().await);
    let server = TestServer::start(app).await;
    let client = client();
    let call = |path: &'static str| {
        let request = client.get(server.url(path)).send();
        async move { request.await.expect("request") }
    };

    let open = call("/open").await;
    assert_eq!(open.status(), StatusCode::OK);
    // Not decided: no quota is advertised.
    assert_eq!(header(&open, "ratelimit"), None);

    let closed = call("/closed").await;
    assert_eq!(closed.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&closed, "retry-after"), Some("7"));

    let raised = call("/raise").await;
    assert_eq!(raised.status(), StatusCode::SERVICE_UNAVAILABLE);
    let body = raised.text().await.expect("body");
    assert!(body.starts_with("rate limiter error: backend"), "{body}");

    let custom = call("/custom").await;
    assert_eq!(custom.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&custom, "retry-after"), Some("2"));
}

#[tokio::test]
async fn the_layer_answers_backend_failures_with_the_backends_default_policy() {
    let backend = InMemoryBackend::builder("failing-layer")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(5)))
        .build();
    backend.close().await.expect("close");
    let traffik = Traffik::new(backend);
    let inherits = HttpThrottle::new("inherits", rate!("5/m"));
    let overrides = HttpThrottle::new("overrides", rate!("5/m")).on_error(FailurePolicy::Allow);
    let app = Router::new()
        .route("/api/a", get(|| async { "a" }))
        .route("/b", get(|| async { "b" }))
        .layer(
            ThrottleLayer::new(traffik.clone())
                .throttle(MiddlewareThrottle::new(inherits).path("/api/"))
                .throttle(MiddlewareThrottle::new(overrides).path("/b")),
        )
        .with_state(traffik);
    let server = TestServer::start(app).await;
    let client = client();

    let inherited = client
        .get(server.url("/api/a"))
        .send()
        .await
        .expect("request");
    assert_eq!(inherited.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(header(&inherited, "retry-after"), Some("5"));

    let overridden = client.get(server.url("/b")).send().await.expect("request");
    assert_eq!(overridden.status(), StatusCode::OK);
}

throttle!(BehindBreaker = HttpThrottle::new("behind_breaker", "5/m"));

#[tokio::test]
async fn an_open_circuit_without_fallback_answers_503() {
    let failing = InMemoryBackend::new("broken");
    failing.close().await.expect("close");
    let clock = ManualClock::new(T0);
    let breaker = CircuitBreaker::builder(failing)
        .failures(2)
        .clock(clock)
        .build();
    let app = Router::new()
        .route("/", get(|_: Throttled<BehindBreaker>| async { "ok" }))
        .with_state(Traffik::new(breaker.clone()));
    let server = TestServer::start(app).await;
    let client = client();
    let mut bodies = Vec::new();
    for _ in 0..4 {
        let response = client.get(server.url("/")).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        bodies.push(response.text().await.expect("body"));
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(bodies[0].contains("is closed"), "{bodies:?}");
    assert!(bodies[3].contains("circuit breaker is open"), "{bodies:?}");
}

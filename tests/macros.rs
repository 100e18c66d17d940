//! End to end: `#[throttled]` over real sockets (examples/macro_handler.rs,
//! examples/macro_websocket.rs, and handlers written here for every option).
//!
//! The backends run on a [`ManualClock`] set to the start of a minute, so every wait is
//! exact and no test depends on how fast it runs.

mod common;

#[path = "../examples/macro_handler.rs"]
#[allow(dead_code)]
mod macro_handler;

#[path = "../examples/macro_websocket.rs"]
#[allow(dead_code)]
mod macro_websocket;

use std::sync::LazyLock;
use std::time::Duration;

use axum::Router;
use axum::extract::{Path, State};
use axum::http::request::Parts;
use axum::routing::{get, post};
use common::{TestServer, client};
use futures_util::{SinkExt, StreamExt};
use reqwest::StatusCode;
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::timeout;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, connect_async};
use traffik::prelude::*;

/// How long any network step may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

/// 2023-11-14T22:14:00Z: the start of a minute (and of a ten-second window).
const T0: u64 = 1_700_000_040 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("macro-tests")
            .clock(clock.clone())
            .build(),
    )
}

async fn get_response(url: &str) -> reqwest::Response {
    client().get(url).send().await.expect("request")
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ascii").parse().expect("seconds"))
}

fn header<'a>(response: &'a reqwest::Response, name: &str) -> &'a str {
    response
        .headers()
        .get(name)
        .map_or("", |value| value.to_str().expect("ascii"))
}

#[tokio::test]
async fn the_seed_decorator_example_answers_429_after_five_requests_a_minute() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(macro_handler::app(traffik_at(&clock))).await;
    let url = server.url("/api/limited");

    for n in 1..=5 {
        let response = get_response(&url).await;
        assert_eq!(response.status(), StatusCode::OK, "request {n}");
        let body: Value = response.json().await.expect("json");
        assert_eq!(body, json!({ "data": "Limited access" }));
    }
    let response = get_response(&url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&response), Some(60));
    // Named after the uid given in the attribute.
    assert!(
        header(&response, "ratelimit-policy").contains("\"limited\""),
        "{:?}",
        response.headers()
    );

    clock.advance(Duration::from_secs(60));
    assert_eq!(get_response(&url).await.status(), StatusCode::OK);
}

throttle!(Declared = HttpThrottle::new("same_as_attribute", "2/m"));

/// The same limit, once as an attribute and once as a `Throttled<_>` argument.
#[throttled("2/m", uid = "same_as_attribute")]
async fn by_attribute() -> &'static str {
    "ok"
}

async fn by_argument(_: Throttled<Declared>) -> &'static str {
    "ok"
}

#[tokio::test]
async fn the_attribute_throttles_exactly_as_a_throttled_argument() {
    async fn statuses_and_headers(handler: axum::routing::MethodRouter<Traffik>) -> Vec<String> {
        let clock = ManualClock::new(T0 + 15_000_000);
        let app = Router::new()
            .route("/x", handler)
            .with_state(traffik_at(&clock));
        let server = TestServer::start(app).await;
        let mut seen = Vec::new();
        for _ in 0..3 {
            let response = get_response(&server.url("/x")).await;
            let mut headers: Vec<String> = ["retry-after", "ratelimit", "ratelimit-policy"]
                .iter()
                .map(|name| format!("{name}: {}", header(&response, name)))
                .collect();
            headers.sort();
            seen.push(format!("{} {}", response.status(), headers.join(", ")));
            seen.push(response.text().await.expect("body"));
        }
        seen
    }
    let attribute = statuses_and_headers(get(by_attribute)).await;
    let argument = statuses_and_headers(get(by_argument)).await;
    assert_eq!(attribute, argument);
    assert!(attribute[4].starts_with("429"), "{attribute:?}");
    assert!(attribute[4].contains("retry-after: 45"), "{attribute:?}");
}

/// Burst then sustained: the first denial answers.
#[throttled("2/s")]
#[throttled("3/m")]
async fn stacked() -> &'static str {
    "ok"
}

#[tokio::test]
async fn stacked_limits_all_apply_and_the_first_denial_answers() {
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/stacked", get(stacked))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let url = server.url("/stacked");

    assert_eq!(get_response(&url).await.status(), StatusCode::OK);
    assert_eq!(get_response(&url).await.status(), StatusCode::OK);
    // The burst limit ("2/s") answers: one second to wait.
    let response = get_response(&url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&response), Some(1));

    clock.advance(Duration::from_secs(1));
    assert_eq!(get_response(&url).await.status(), StatusCode::OK);
    // Within the burst, but the sustained limit ("3/m") is spent: 59 seconds to wait.
    let response = get_response(&url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&response), Some(59));
}

#[throttled("1/m")]
async fn first() -> &'static str {
    "first"
}

#[throttled("1/m")]
async fn second() -> &'static str {
    "second"
}

mod elsewhere {
    use traffik::prelude::*;

    /// Same name as `super::first`, in another module: its own count.
    #[throttled("1/m")]
    pub async fn first() -> &'static str {
        "elsewhere"
    }
}

#[tokio::test]
async fn two_decorated_handlers_keep_separate_counts() {
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/first", get(first))
        .route("/second", get(second))
        .route("/elsewhere", get(elsewhere::first))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;

    assert_eq!(
        get_response(&server.url("/first")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_response(&server.url("/first")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        get_response(&server.url("/second")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_response(&server.url("/elsewhere")).await.status(),
        StatusCode::OK
    );
    assert_eq!(
        get_response(&server.url("/second")).await.status(),
        StatusCode::TOO_MANY_REQUESTS
    );
}

fn by_user(parts: &Parts) -> Identity {
    match parts.headers.get("x-user").and_then(|v| v.to_str().ok()) {
        Some("admin") => Identity::Exempt,
        Some(user) => Identity::client(format!("user:{user}")),
        None => Identity::client("anonymous"),
    }
}

#[throttled("1/m", identifier = by_user)]
async fn per_user() -> &'static str {
    "ok"
}

#[throttled("4/m", cost = 2)]
async fn fixed_cost() -> &'static str {
    "ok"
}

#[throttled("4/m", cost = |parts: &Parts| if parts.headers.contains_key("x-heavy") { 4 } else { 1 })]
async fn cost_fn() -> &'static str {
    "ok"
}

#[throttled("2/m", strategy = TokenBucket::with_burst(3))]
async fn token_bucket() -> &'static str {
    "ok"
}

throttle!(pub Named = HttpThrottle::new("named", "1/m"));

#[throttled(Named)]
async fn named() -> &'static str {
    "ok"
}

/// The clock of `own_backend`'s backend, which the tests never advance.
static OWN_CLOCK: LazyLock<ManualClock> = LazyLock::new(|| ManualClock::new(T0));

#[throttled("1/m", backend = InMemoryBackend::builder("own").clock((*OWN_CLOCK).clone()).build())]
async fn own_backend() -> &'static str {
    "ok"
}

/// Keeps its own extractors: the limit is decided before the body is read.
#[throttled("1/m")]
#[axum::debug_handler(state = Traffik)]
async fn with_extractors(
    Path(id): Path<u32>,
    State(_traffik): State<Traffik>,
    body: axum::Json<Value>,
) -> String {
    format!("{id}: {}", body.0)
}

fn options_app(clock: &ManualClock) -> Router {
    Router::new()
        .route("/per_user", get(per_user))
        .route("/fixed_cost", get(fixed_cost))
        .route("/cost_fn", get(cost_fn))
        .route("/token_bucket", get(token_bucket))
        .route("/named", get(named))
        .route("/own_backend", get(own_backend))
        .route("/extractors/{id}", post(with_extractors))
        .with_state(traffik_at(clock))
}

async fn status_with(url: &str, header: Option<(&str, &str)>) -> StatusCode {
    let mut request = client().get(url);
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.send().await.expect("request").status()
}

#[tokio::test]
async fn every_option_applies() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(options_app(&clock)).await;
    let url = |path: &str| server.url(path);
    let (ok, limited) = (StatusCode::OK, StatusCode::TOO_MANY_REQUESTS);

    // identifier: one count per user; the admin is exempt.
    assert_eq!(
        status_with(&url("/per_user"), Some(("x-user", "ann"))).await,
        ok
    );
    assert_eq!(
        status_with(&url("/per_user"), Some(("x-user", "ann"))).await,
        limited
    );
    assert_eq!(
        status_with(&url("/per_user"), Some(("x-user", "bob"))).await,
        ok
    );
    for _ in 0..3 {
        assert_eq!(
            status_with(&url("/per_user"), Some(("x-user", "admin"))).await,
            ok
        );
    }

    // cost = 2 on "4/m": two requests.
    assert_eq!(status_with(&url("/fixed_cost"), None).await, ok);
    assert_eq!(status_with(&url("/fixed_cost"), None).await, ok);
    assert_eq!(status_with(&url("/fixed_cost"), None).await, limited);

    // A cost function: a light request (1) then a heavy one (4) does not fit in "4/m".
    assert_eq!(status_with(&url("/cost_fn"), None).await, ok);
    assert_eq!(
        status_with(&url("/cost_fn"), Some(("x-heavy", "1"))).await,
        limited
    );
    assert_eq!(status_with(&url("/cost_fn"), None).await, ok);

    // strategy: a token bucket of "2/m" with a burst of 3 admits 3 at once.
    for _ in 0..3 {
        assert_eq!(status_with(&url("/token_bucket"), None).await, ok);
    }
    assert_eq!(status_with(&url("/token_bucket"), None).await, limited);

    // A declared throttle by name.
    assert_eq!(status_with(&url("/named"), None).await, ok);
    assert_eq!(status_with(&url("/named"), None).await, limited);

    // backend: its own backend (on its own clock), not the app's.
    assert_eq!(status_with(&url("/own_backend"), None).await, ok);
    assert_eq!(status_with(&url("/own_backend"), None).await, limited);
    clock.advance(Duration::from_secs(120));
    assert_eq!(
        status_with(&url("/own_backend"), None).await,
        limited,
        "the app's clock does not drive a throttle with its own backend"
    );
    assert_eq!(status_with(&url("/named"), None).await, ok);
}

#[tokio::test]
async fn the_limit_is_decided_before_the_handlers_own_extractors() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(options_app(&clock)).await;
    let url = server.url("/extractors/7");

    let response = client()
        .post(&url)
        .json(&json!({ "hello": "world" }))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.text().await.expect("body"),
        "7: {\"hello\":\"world\"}"
    );

    // Over the limit, even a body the handler would refuse is answered 429, unread.
    let response = client()
        .post(&url)
        .body("not json")
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
}

type Client = WebSocketStream<MaybeTlsStream<TcpStream>>;

async fn connect(url: &str) -> Client {
    let (client, _response) = timeout(STEP, connect_async(url))
        .await
        .expect("the handshake timed out")
        .expect("connect");
    client
}

async fn exchange(client: &mut Client, value: Value) -> Value {
    timeout(STEP, client.send(Message::text(value.to_string())))
        .await
        .expect("send timed out")
        .expect("send");
    loop {
        match timeout(STEP, client.next())
            .await
            .expect("no reply in time")
        {
            Some(Ok(Message::Text(text))) => {
                return serde_json::from_str(text.as_str()).expect("JSON");
            }
            Some(Ok(Message::Ping(_) | Message::Pong(_))) => continue,
            other => panic!("expected a JSON text message, got {other:?}"),
        }
    }
}

fn success(data: Value) -> Value {
    json!({ "status": "success", "data": data })
}

fn rate_limited(retry_after: u64) -> Value {
    json!({ "type": "rate_limit", "error": "Too many messages", "retry_after": retry_after })
}

#[tokio::test]
async fn the_websocket_message_handler_is_throttled_per_message_and_per_client() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(macro_websocket::app(traffik_at(&clock))).await;
    let url = server.ws_url("/ws");

    let mut first = connect(&url).await;
    for n in 1..=2 {
        assert_eq!(exchange(&mut first, json!(n)).await, success(json!(n)));
    }
    // A second connection of the same client shares the quota ("3/10s").
    let mut second = connect(&url).await;
    assert_eq!(exchange(&mut second, json!(3)).await, success(json!(3)));
    assert_eq!(exchange(&mut second, json!(4)).await, rate_limited(10));
    assert_eq!(exchange(&mut first, json!(5)).await, rate_limited(10));

    // The connection stays open; the body ran for no throttled message, and messages
    // flow again once the window has passed.
    clock.advance(Duration::from_secs(4));
    assert_eq!(exchange(&mut first, json!(6)).await, rate_limited(6));
    clock.advance(Duration::from_secs(6));
    assert_eq!(exchange(&mut first, json!(7)).await, success(json!(7)));
    assert_eq!(
        exchange(&mut second, json!("bad")).await,
        success(json!("bad"))
    );
}

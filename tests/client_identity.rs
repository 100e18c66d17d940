//! Who is the client? Proxy headers end to end.
//!
//! Every request here comes from 127.0.0.1. By default that socket peer is the client, and
//! whatever the request says about itself is ignored; once 127.0.0.1 is a trusted proxy,
//! `X-Forwarded-For` is read from the right, so only the entry the proxy appended counts.
//!
//! Each throttle admits 2 requests per minute; a `ManualClock` keeps the window still.

mod common;

use axum::Router;
use axum::routing::get;
use common::{TestServer, client};
use reqwest::StatusCode;
use traffik::prelude::*;

/// A time aligned to every window of a day or less, in microseconds.
const T0: u64 = 20_000 * 86_400 * 1_000_000;

throttle!(PerClient = HttpThrottle::new("per_client", "2/m"));

async fn handler(_: Throttled<PerClient>) -> &'static str {
    "ok"
}

fn traffik_with(client_ip: ClientIpConfig) -> Traffik {
    let backend = InMemoryBackend::builder("test")
        .clock(ManualClock::new(T0))
        .build();
    Traffik::new(backend).client_ip(client_ip)
}

/// The extractor on `/data`, deciding with `traffik`.
fn extractor_app(traffik: Traffik) -> Router {
    Router::new()
        .route("/data", get(handler))
        .with_state(traffik)
}

/// The same limit applied by a `ThrottleLayer` on `/data`.
fn layer_app(traffik: Traffik) -> Router {
    let throttle = MiddlewareThrottle::new(HttpThrottle::new("per_client", rate!("2/m")));
    Router::new()
        .route("/data", get(|| async { "ok" }))
        .layer(ThrottleLayer::new(traffik).throttle(throttle))
}

/// A served app and a client for it.
struct Target {
    server: TestServer,
    http: reqwest::Client,
}

impl Target {
    async fn start(app: Router) -> Self {
        Self {
            server: TestServer::start(app).await,
            http: client(),
        }
    }
}

/// `GET /data` with the header `name: value`, or none.
async fn get_with(target: &Target, header: Option<(&str, &str)>) -> StatusCode {
    let mut request = target.http.get(target.server.url("/data"));
    if let Some((name, value)) = header {
        request = request.header(name, value);
    }
    request.send().await.expect("request").status()
}

fn xff(value: &str) -> Option<(&'static str, &str)> {
    Some(("x-forwarded-for", value))
}

#[tokio::test]
async fn forged_proxy_headers_from_an_untrusted_peer_are_ignored() {
    for app in [extractor_app, layer_app] {
        let target = Target::start(app(traffik_with(ClientIpConfig::new()))).await;

        // Two different forged addresses: still one client, 127.0.0.1.
        assert_eq!(get_with(&target, xff("198.51.100.1")).await, StatusCode::OK);
        assert_eq!(get_with(&target, xff("198.51.100.2")).await, StatusCode::OK);
        assert_eq!(
            get_with(&target, xff("198.51.100.3")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            get_with(&target, Some(("forwarded", "for=198.51.100.4"))).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(
            get_with(&target, Some(("x-real-ip", "198.51.100.5"))).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        assert_eq!(get_with(&target, None).await, StatusCode::TOO_MANY_REQUESTS);
    }
}

#[tokio::test]
async fn behind_a_trusted_proxy_only_the_entry_it_appended_counts() {
    let trusted = ClientIpConfig::new()
        .try_trust_proxies(["127.0.0.1"])
        .expect("a valid address");
    for app in [extractor_app, layer_app] {
        let target = Target::start(app(traffik_with(trusted.clone()))).await;

        // The client wrote the leftmost entry; the proxy appended 203.0.113.7. Forging the
        // left side does not make a new client.
        assert_eq!(
            get_with(&target, xff("6.6.6.6, 203.0.113.7")).await,
            StatusCode::OK
        );
        assert_eq!(
            get_with(&target, xff("7.7.7.7, 203.0.113.7")).await,
            StatusCode::OK
        );
        assert_eq!(
            get_with(&target, xff("203.0.113.7")).await,
            StatusCode::TOO_MANY_REQUESTS
        );
        // Trusted hops on the right are skipped: still 203.0.113.7.
        assert_eq!(
            get_with(&target, xff("8.8.8.8, 203.0.113.7, 127.0.0.1")).await,
            StatusCode::TOO_MANY_REQUESTS
        );

        // Another client behind the proxy has its own quota.
        assert_eq!(get_with(&target, xff("203.0.113.8")).await, StatusCode::OK);
        assert_eq!(
            get_with(&target, xff("6.6.6.6, 203.0.113.8")).await,
            StatusCode::OK
        );
        assert_eq!(
            get_with(&target, xff("203.0.113.8")).await,
            StatusCode::TOO_MANY_REQUESTS
        );

        // Headers not configured are not read, even from the trusted proxy: these are
        // counted as the proxy itself, 127.0.0.1.
        assert_eq!(
            get_with(&target, Some(("x-real-ip", "198.51.100.1"))).await,
            StatusCode::OK
        );
        assert_eq!(
            get_with(&target, Some(("forwarded", "for=198.51.100.2"))).await,
            StatusCode::OK
        );
        assert_eq!(get_with(&target, None).await, StatusCode::TOO_MANY_REQUESTS);
    }
}

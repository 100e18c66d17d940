//! `ThrottleLayer` and `MiddlewareThrottle` end to end: each filter alone and combined,
//! several throttles in order, global and per-route counts, header policies.
//!
//! Every throttle here admits 2 requests per minute unless said otherwise; an in-memory
//! backend on a `ManualClock` keeps windows still, so no test sleeps.

mod common;

use axum::Router;
use axum::http::Method;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use common::{TestServer, client};
use futures_util::future::BoxFuture;
use reqwest::StatusCode;
use traffik::prelude::*;

/// A time aligned to every window of a day or less, in microseconds.
const T0: u64 = 20_000 * 86_400 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("test")
            .clock(clock.clone())
            .build(),
    )
}

/// Routes with plain handlers, wrapped in `layer`.
fn app(layer: ThrottleLayer) -> Router {
    async fn ok() -> &'static str {
        "ok"
    }
    Router::new()
        .route("/api/items", get(ok).post(ok))
        .route("/api/other", get(ok))
        .route("/admin/stats", get(ok))
        .route("/administrator", get(ok))
        .route("/public", get(ok).post(ok))
        .layer(layer)
}

/// A served app and a client for it.
struct Served {
    server: TestServer,
    http: reqwest::Client,
}

impl Served {
    async fn start(layer: ThrottleLayer) -> Self {
        Self {
            server: TestServer::start(app(layer)).await,
            http: client(),
        }
    }
}

/// Serves `app(layer)` where `layer` holds `throttles`, on a fresh backend at `T0`.
async fn serve(throttles: impl IntoIterator<Item = MiddlewareThrottle>) -> Served {
    let clock = ManualClock::new(T0);
    let mut layer = ThrottleLayer::new(traffik_at(&clock));
    for throttle in throttles {
        layer = layer.throttle(throttle);
    }
    Served::start(layer).await
}

fn two_per_minute(uid: &str) -> HttpThrottle {
    HttpThrottle::new(uid, rate!("2/m"))
}

/// A request: `method path`, with an `Authorization` header if `auth`.
async fn send(served: &Served, method: Method, path: &str, auth: bool) -> reqwest::Response {
    let mut request = served.http.request(method, served.server.url(path));
    if auth {
        request = request.header(AUTHORIZATION, "Bearer alice");
    }
    request.send().await.expect("request")
}

async fn status(server: &Served, method: Method, path: &str, auth: bool) -> StatusCode {
    send(server, method, path, auth).await.status()
}

/// The names in the response's `RateLimit-Policy` (members are `"name";q=..;w=..`).
fn policy_names(response: &reqwest::Response) -> Vec<String> {
    let lines: Vec<&str> = response
        .headers()
        .get_all("ratelimit-policy")
        .iter()
        .map(|value| value.to_str().expect("ASCII"))
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    lines
        .join(", ")
        .split(',')
        .map(|member| {
            let member = member.trim();
            let (name, params) = member
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
                .unwrap_or_else(|| panic!("malformed member {member:?}"));
            assert!(params.starts_with(";q="), "malformed member {member:?}");
            name.to_owned()
        })
        .collect()
}

/// Asserts a 429 from the throttle `uid` alone.
fn assert_denied_by(response: &reqwest::Response, uid: &str) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    assert_eq!(policy_names(response), [uid]);
}

#[tokio::test]
async fn path_prefix_filter_alone() {
    let server = serve([MiddlewareThrottle::new(two_per_minute("api")).path("/api/")]).await;

    // Outside the prefix: never counted.
    for _ in 0..5 {
        assert_eq!(
            status(&server, Method::GET, "/public", false).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&server, Method::GET, "/administrator", false).await,
            StatusCode::OK
        );
    }
    // Inside: one count across every route under `/api/`.
    assert_eq!(
        status(&server, Method::GET, "/api/items", false).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, Method::POST, "/api/items", false).await,
        StatusCode::OK
    );
    let response = send(&server, Method::GET, "/api/other", false).await;
    assert_denied_by(&response, "api");
    assert_eq!(
        status(&server, Method::GET, "/public", false).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn path_regex_filter_alone() {
    let admin = MiddlewareThrottle::new(two_per_minute("admin"))
        .path_regex(r"^/admin/.*")
        .expect("valid regex");
    let server = serve([admin]).await;

    // `/administrator` does not match `^/admin/.*`, and neither does anything else here.
    for _ in 0..5 {
        assert_eq!(
            status(&server, Method::GET, "/administrator", false).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&server, Method::GET, "/api/items", false).await,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(
            status(&server, Method::GET, "/admin/stats", false).await,
            StatusCode::OK
        );
    }
    let response = send(&server, Method::GET, "/admin/stats", false).await;
    assert_denied_by(&response, "admin");

    let invalid = MiddlewareThrottle::new(two_per_minute("bad")).path_regex("(unclosed");
    assert!(
        invalid.is_err(),
        "an invalid pattern is an error at start-up"
    );
}

#[tokio::test]
async fn methods_filter_alone() {
    let writes = MiddlewareThrottle::new(two_per_minute("writes")).methods([
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ]);
    let server = serve([writes]).await;

    for _ in 0..5 {
        assert_eq!(
            status(&server, Method::GET, "/public", false).await,
            StatusCode::OK
        );
        assert_eq!(
            status(&server, Method::GET, "/api/items", false).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status(&server, Method::POST, "/public", false).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, Method::POST, "/api/items", false).await,
        StatusCode::OK
    );
    let response = send(&server, Method::POST, "/public", false).await;
    assert_denied_by(&response, "writes");
    assert_eq!(
        status(&server, Method::GET, "/public", false).await,
        StatusCode::OK
    );
}

fn authenticated_only(parts: &Parts) -> BoxFuture<'_, bool> {
    Box::pin(async move { parts.headers.contains_key(AUTHORIZATION) })
}

#[tokio::test]
async fn async_hook_filter_alone() {
    let auth = MiddlewareThrottle::new(two_per_minute("auth")).hook(authenticated_only);
    let server = serve([auth]).await;

    for _ in 0..5 {
        assert_eq!(
            status(&server, Method::GET, "/public", false).await,
            StatusCode::OK
        );
    }
    assert_eq!(
        status(&server, Method::GET, "/public", true).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, Method::POST, "/api/items", true).await,
        StatusCode::OK
    );
    let response = send(&server, Method::GET, "/admin/stats", true).await;
    assert_denied_by(&response, "auth");
    assert_eq!(
        status(&server, Method::GET, "/admin/stats", false).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn sync_predicate_filter_alone() {
    let reports = MiddlewareThrottle::new(two_per_minute("items"))
        .when(|parts| parts.uri.path().ends_with("/items"));
    let server = serve([reports]).await;

    for _ in 0..5 {
        assert_eq!(
            status(&server, Method::GET, "/api/other", false).await,
            StatusCode::OK
        );
    }
    for _ in 0..2 {
        assert_eq!(
            status(&server, Method::GET, "/api/items", false).await,
            StatusCode::OK
        );
    }
    let response = send(&server, Method::GET, "/api/items", false).await;
    assert_denied_by(&response, "items");
}

#[tokio::test]
async fn combined_filters_apply_only_when_all_match() {
    let complex = MiddlewareThrottle::new(two_per_minute("complex"))
        .path("/api/")
        .methods([Method::POST])
        .hook(authenticated_only);
    let server = serve([complex]).await;

    // Each of these misses exactly one criterion: none is counted.
    for _ in 0..5 {
        let wrong_method = status(&server, Method::GET, "/api/items", true).await;
        let wrong_path = status(&server, Method::POST, "/public", true).await;
        let no_credentials = status(&server, Method::POST, "/api/items", false).await;
        assert_eq!(
            [wrong_method, wrong_path, no_credentials],
            [StatusCode::OK; 3]
        );
    }
    for _ in 0..2 {
        assert_eq!(
            status(&server, Method::POST, "/api/items", true).await,
            StatusCode::OK
        );
    }
    let response = send(&server, Method::POST, "/api/items", true).await;
    assert_denied_by(&response, "complex");
    assert_eq!(
        status(&server, Method::POST, "/api/items", false).await,
        StatusCode::OK
    );
}

#[tokio::test]
async fn throttles_run_in_order_and_the_first_denial_answers() {
    let api = MiddlewareThrottle::new(two_per_minute("api")).path("/api/");
    let global = MiddlewareThrottle::new(HttpThrottle::new("global", rate!("3/m")));
    let server = serve([api, global]).await;

    // Both count these two.
    assert_eq!(
        status(&server, Method::GET, "/api/items", false).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&server, Method::GET, "/api/items", false).await,
        StatusCode::OK
    );
    // `api` denies first; `global` is not consulted, so does not count this one.
    let response = send(&server, Method::GET, "/api/items", false).await;
    assert_denied_by(&response, "api");
    // Hence `global` still has one request left.
    assert_eq!(
        status(&server, Method::GET, "/public", false).await,
        StatusCode::OK
    );
    let response = send(&server, Method::GET, "/public", false).await;
    assert_denied_by(&response, "global");
    // When both deny, the first in order answers.
    let response = send(&server, Method::GET, "/api/items", false).await;
    assert_denied_by(&response, "api");
}

#[tokio::test]
async fn middleware_counts_globally_by_default_and_per_route_on_request() {
    let global = serve([MiddlewareThrottle::new(two_per_minute("global"))]).await;
    assert_eq!(
        status(&global, Method::GET, "/api/items", false).await,
        StatusCode::OK
    );
    assert_eq!(
        status(&global, Method::GET, "/public", false).await,
        StatusCode::OK
    );
    let response = send(&global, Method::POST, "/api/items", false).await;
    assert_denied_by(&response, "global");

    let per_route =
        serve([MiddlewareThrottle::new(two_per_minute("per_route")).per_route(true)]).await;
    for (method, path) in [
        (Method::GET, "/api/items"),
        (Method::POST, "/api/items"),
        (Method::GET, "/public"),
    ] {
        for _ in 0..2 {
            let status = status(&per_route, method.clone(), path, false).await;
            assert_eq!(status, StatusCode::OK, "{method} {path}");
        }
        let response = send(&per_route, method, path, false).await;
        assert_denied_by(&response, "per_route");
    }
}

#[tokio::test]
async fn header_policies_on_allowed_and_throttled_responses() {
    // Default (`OnThrottled`): a success carries no rate-limit fields, a 429 does.
    let server = serve([MiddlewareThrottle::new(two_per_minute("api"))]).await;
    let response = send(&server, Method::GET, "/public", false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
    send(&server, Method::GET, "/public", false).await;
    let response = send(&server, Method::GET, "/public", false).await;
    assert_denied_by(&response, "api");
    assert_eq!(response.headers()["ratelimit"], r#""api";r=0;t=60"#);

    // `Always`: every throttle that counted a success is listed on it.
    let clock = ManualClock::new(T0 + 15_000_000);
    let layer = ThrottleLayer::new(traffik_at(&clock))
        .headers(HeaderPolicy::Always)
        .throttle(MiddlewareThrottle::new(two_per_minute("api")).path("/api/"))
        .throttle(MiddlewareThrottle::new(HttpThrottle::new(
            "all",
            rate!("5/m"),
        )));
    let server = Served::start(layer).await;
    let response = send(&server, Method::GET, "/api/items", false).await;
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("retry-after").is_none());
    assert_eq!(
        response.headers()["ratelimit-policy"],
        r#""api";q=2;w=60, "all";q=5;w=60"#
    );
    assert_eq!(
        response.headers()["ratelimit"],
        r#""api";r=1;t=45, "all";r=4;t=45"#
    );
    let response = send(&server, Method::GET, "/public", false).await;
    assert_eq!(response.headers()["ratelimit"], r#""all";r=3;t=45"#);

    // A throttle's own policy wins over the layer's: `Never` keeps only `Retry-After`.
    let quiet = MiddlewareThrottle::new(two_per_minute("quiet").headers(HeaderPolicy::Never));
    let server = serve([quiet]).await;
    send(&server, Method::GET, "/public", false).await;
    send(&server, Method::GET, "/public", false).await;
    let response = send(&server, Method::GET, "/public", false).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(response.headers()["retry-after"], "60");
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
}

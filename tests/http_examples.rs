//! Every axum example of this crate, served on a real socket and exercised, so that the
//! examples cannot rot. Each example's `app` takes the `Traffik` to decide with; the tests
//! give it an in-memory backend on a `ManualClock`, so windows are exact and no test
//! sleeps.

mod common;

#[path = "../examples/dependency_injection.rs"]
#[allow(dead_code)]
mod dependency_injection;
#[path = "../examples/error_handling.rs"]
#[allow(dead_code)]
mod error_handling;
#[path = "../examples/middleware.rs"]
#[allow(dead_code)]
mod middleware;
#[path = "../examples/multiple_limits.rs"]
#[allow(dead_code)]
mod multiple_limits;
#[path = "../examples/per_user.rs"]
#[allow(dead_code)]
mod per_user;
#[path = "../examples/quickstart.rs"]
#[allow(dead_code)]
mod quickstart;

use std::time::Duration;

use common::{TestServer, client};
use futures_util::StreamExt;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use traffik::prelude::*;

/// A time aligned to every window of a day or less (10 s, 1 min, 1 h), in microseconds.
const T0: u64 = 20_000 * 86_400 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("test")
            .clock(clock.clone())
            .build(),
    )
}

/// A List field (`RateLimit-Policy`, `RateLimit`) as `(name, first, second)` per member:
/// `"name";q=..;w=..` or `"name";r=..;t=..`, over all its lines; empty if absent.
fn list_field(response: &reqwest::Response, field: &str) -> Vec<(String, u64, u64)> {
    let keys = if field == "ratelimit-policy" {
        ("q", "w")
    } else {
        ("r", "t")
    };
    let lines: Vec<&str> = response
        .headers()
        .get_all(field)
        .iter()
        .map(|value| value.to_str().expect("ASCII"))
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    let joined = lines.join(", ");
    joined
        .split(',')
        .map(|member| {
            let member = member.trim();
            let malformed = || panic!("malformed {field} member {member:?}");
            let Some((name, params)) = member
                .strip_prefix('"')
                .and_then(|rest| rest.split_once('"'))
            else {
                malformed()
            };
            let params: Vec<(&str, u64)> = params
                .split(';')
                .skip(1)
                .map(|param| match param.split_once('=') {
                    Some((key, value)) => (key, value.parse().unwrap_or_else(|_| malformed())),
                    None => malformed(),
                })
                .collect();
            match params.as_slice() {
                [(k1, v1), (k2, v2)] if (*k1, *k2) == keys => (name.to_owned(), *v1, *v2),
                _ => malformed(),
            }
        })
        .collect()
}

fn policies(response: &reqwest::Response) -> Vec<(String, u64, u64)> {
    list_field(response, "ratelimit-policy")
}

fn limits(response: &reqwest::Response) -> Vec<(String, u64, u64)> {
    list_field(response, "ratelimit")
}

fn policy_names(response: &reqwest::Response) -> Vec<String> {
    policies(response)
        .into_iter()
        .map(|(name, ..)| name)
        .collect()
}

fn owned(members: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
    members
        .iter()
        .map(|(name, a, b)| ((*name).to_owned(), *a, *b))
        .collect()
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response
        .headers()
        .get("retry-after")
        .map(|value| value.to_str().expect("ASCII").parse().expect("seconds"))
}

async fn json_body(response: reqwest::Response) -> Value {
    assert_eq!(response.headers()["content-type"], "application/json");
    response.json().await.expect("a JSON body")
}

/// Checks the library's default 429 for the throttle `uid`, waiting `wait` seconds.
async fn assert_default_429(response: reqwest::Response, uid: &str, wait: u64) {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(retry_after(&response), Some(wait));
    assert_eq!(policy_names(&response), [uid]);
    assert_eq!(limits(&response), owned(&[(uid, 0, wait)]));
    assert_eq!(
        json_body(response).await,
        json!({ "detail": format!("Too many requests. Retry in {wait} seconds.") })
    );
}

async fn get(http: &reqwest::Client, url: &str) -> reqwest::Response {
    http.get(url).send().await.expect("request")
}

// ---------------------------------------------------------------------------------------
// quickstart: Quick Start 1, `GET /api/data`, 5/10s
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn quickstart_admits_five_per_ten_seconds() {
    let clock = ManualClock::new(T0 + 2_000_000);
    let server = TestServer::start(quickstart::app(traffik_at(&clock))).await;
    let http = client();
    let url = server.url("/api/data");

    for _ in 0..5 {
        let response = get(&http, &url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json_body(response).await, json!({ "message": "Success" }));
    }
    // 2 s into the ten-second window: 8 s to wait.
    let response = get(&http, &url).await;
    assert_eq!(policies(&response), owned(&[("basic_limit", 5, 10)]));
    assert_default_429(response, "basic_limit", 8).await;

    clock.advance(Duration::from_secs(8));
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// dependency_injection: Quick Start 2, `GET /api/hello`, 10/m
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn dependency_injection_admits_ten_per_minute() {
    let clock = ManualClock::new(T0 + 45_000_000);
    let server = TestServer::start(dependency_injection::app(traffik_at(&clock))).await;
    let http = client();
    let url = server.url("/api/hello");

    for _ in 0..10 {
        let response = get(&http, &url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            json_body(response).await,
            json!({ "message": "Hello World" })
        );
    }
    let response = get(&http, &url).await;
    assert_eq!(policies(&response), owned(&[("endpoint_limit", 10, 60)]));
    assert_default_429(response, "endpoint_limit", 15).await;

    clock.advance(Duration::from_secs(15));
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// middleware: Throttle Middleware, filters by path, regex, method and hook
// ---------------------------------------------------------------------------------------

async fn middleware_server() -> TestServer {
    let clock = ManualClock::new(T0);
    TestServer::start(middleware::app(traffik_at(&clock))).await
}

async fn send(
    http: &reqwest::Client,
    server: &TestServer,
    method: Method,
    path: &str,
    auth: bool,
) -> reqwest::Response {
    let mut request = http.request(method, server.url(path));
    if auth {
        request = request.header("authorization", "Bearer alice");
    }
    request.send().await.expect("request")
}

#[tokio::test]
async fn middleware_applies_each_throttle_to_the_requests_its_filters_select() {
    let server = middleware_server().await;
    let http = client();
    // (method, path, authenticated, expected status, throttles that count it, in order)
    let cases: [(Method, &str, bool, StatusCode, &[&str]); 11] = [
        (Method::GET, "/health", false, StatusCode::OK, &["reads"]),
        (Method::HEAD, "/health", false, StatusCode::OK, &["reads"]),
        (
            Method::GET,
            "/health",
            true,
            StatusCode::OK,
            &["reads", "auth"],
        ),
        (
            Method::GET,
            "/api/items",
            false,
            StatusCode::OK,
            &["reads", "api"],
        ),
        (
            Method::POST,
            "/api/items",
            false,
            StatusCode::CREATED,
            &["writes", "api"],
        ),
        (
            Method::POST,
            "/api/items",
            true,
            StatusCode::CREATED,
            &["complex", "writes", "auth", "api"],
        ),
        (
            Method::PUT,
            "/api/items/1",
            true,
            StatusCode::OK,
            &["writes", "auth", "api"],
        ),
        (
            Method::DELETE,
            "/api/items/1",
            false,
            StatusCode::OK,
            &["writes", "api"],
        ),
        (
            Method::GET,
            "/api/reports/daily",
            false,
            StatusCode::OK,
            &["intensive", "reads", "api"],
        ),
        (
            Method::GET,
            "/admin/stats",
            false,
            StatusCode::OK,
            &["admin", "reads"],
        ),
        // Not a route (404), and `^/admin/.*` does not match it.
        (
            Method::GET,
            "/administrator",
            false,
            StatusCode::NOT_FOUND,
            &["reads"],
        ),
    ];
    for (method, path, auth, status, counted) in cases {
        let response = send(&http, &server, method.clone(), path, auth).await;
        assert_eq!(response.status(), status, "{method} {path}");
        assert_eq!(
            policy_names(&response),
            counted,
            "{method} {path} auth={auth}"
        );
    }
}

#[tokio::test]
async fn middleware_limits_writes_reports_admin_and_the_api() {
    // writes: 10/m over POST, PUT and DELETE together; reads are not affected.
    let server = middleware_server().await;
    let http = client();
    for n in 0..10 {
        let (method, path) = match n % 3 {
            0 => (Method::POST, "/api/items"),
            1 => (Method::PUT, "/api/items/7"),
            _ => (Method::DELETE, "/api/items/7"),
        };
        assert!(
            send(&http, &server, method, path, false)
                .await
                .status()
                .is_success()
        );
    }
    let response = send(&http, &server, Method::POST, "/api/items", false).await;
    assert_default_429(response, "writes", 60).await;
    let response = send(&http, &server, Method::GET, "/api/items", false).await;
    assert_eq!(response.status(), StatusCode::OK);

    // intensive: 20/m over every report, whatever its name.
    let server = middleware_server().await;
    for n in 0..20 {
        let path = if n % 2 == 0 {
            "/api/reports/daily"
        } else {
            "/api/reports/weekly"
        };
        assert_eq!(
            send(&http, &server, Method::GET, path, false)
                .await
                .status(),
            StatusCode::OK
        );
    }
    let response = send(&http, &server, Method::GET, "/api/reports/monthly", false).await;
    assert_default_429(response, "intensive", 60).await;
    let response = send(&http, &server, Method::GET, "/api/items", false).await;
    assert_eq!(response.status(), StatusCode::OK);

    // admin: 5/m under /admin/.
    let server = middleware_server().await;
    for _ in 0..5 {
        let response = send(&http, &server, Method::GET, "/admin/stats", false).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = send(&http, &server, Method::GET, "/admin/stats", false).await;
    assert_default_429(response, "admin", 60).await;
    let response = send(&http, &server, Method::GET, "/health", false).await;
    assert_eq!(response.status(), StatusCode::OK);

    // api: 100/m under /api/.
    let server = middleware_server().await;
    for _ in 0..100 {
        let response = send(&http, &server, Method::GET, "/api/items", false).await;
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = send(&http, &server, Method::GET, "/api/items", false).await;
    assert_default_429(response, "api", 60).await;
    let response = send(&http, &server, Method::GET, "/health", false).await;
    assert_eq!(response.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// multiple_limits: More on Usage, burst 10/m and sustained 100/h on one route
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn multiple_limits_enforce_burst_and_sustained_limits() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(multiple_limits::app(traffik_at(&clock))).await;
    let http = client();
    let url = server.url("/api/data");

    let mut used = 0;
    for minute in 0..10 {
        for n in 1..=10 {
            used += 1;
            let response = get(&http, &url).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(
                policies(&response),
                owned(&[("burst", 10, 60), ("sustained", 100, 3600)])
            );
            assert_eq!(
                limits(&response),
                owned(&[
                    ("burst", 10 - n, 60),
                    ("sustained", 100 - used, 3600 - 60 * minute)
                ])
            );
            assert_eq!(json_body(response).await, json!({ "data": "value" }));
        }
        // The burst limit denies the eleventh request of each minute; the sustained limit
        // does not count it.
        assert_default_429(get(&http, &url).await, "burst", 60).await;
        clock.advance(Duration::from_secs(60));
    }

    // 100 requests in the hour: the sustained limit denies until the hour ends.
    assert_default_429(get(&http, &url).await, "sustained", 3000).await;
    clock.advance(Duration::from_secs(3000));
    assert_eq!(get(&http, &url).await.status(), StatusCode::OK);
}

// ---------------------------------------------------------------------------------------
// per_user: More on Usage, 1000/h per user from `Authorization: Bearer <user>`
// ---------------------------------------------------------------------------------------

async fn as_user(
    http: &reqwest::Client,
    url: &str,
    authorization: Option<&str>,
) -> reqwest::Response {
    let mut request = http.get(url);
    if let Some(value) = authorization {
        request = request.header("authorization", value);
    }
    request.send().await.expect("request")
}

/// Checks a success of `per_user` and returns the remaining quota it reports.
async fn remaining(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), StatusCode::OK);
    let [(ref name, remaining, reset)] = limits(&response)[..] else {
        panic!("one RateLimit member expected");
    };
    assert_eq!((name.as_str(), reset), ("user_quota", 3600));
    let body = json_body(response).await;
    assert_eq!(body, json!({ "data": "value", "remaining": remaining }));
    remaining
}

#[tokio::test]
async fn per_user_quota_follows_the_bearer_user_not_the_address() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(per_user::app(traffik_at(&clock))).await;
    let http = client();
    let url = server.url("/api/data");

    assert_eq!(
        remaining(as_user(&http, &url, Some("Bearer alice")).await).await,
        999
    );
    assert_eq!(
        remaining(as_user(&http, &url, Some("Bearer bob")).await).await,
        999
    );
    assert_eq!(
        remaining(as_user(&http, &url, Some("bearer  alice")).await).await,
        998
    );
    // Without a bearer token the client is counted by its address.
    assert_eq!(remaining(as_user(&http, &url, None).await).await, 999);
    assert_eq!(
        remaining(as_user(&http, &url, Some("Basic YWxpY2U6")).await).await,
        998
    );

    // Alice spends the rest of her hour...
    let statuses: Vec<StatusCode> = futures_util::stream::iter(0..998)
        .map(|_| async { as_user(&http, &url, Some("Bearer alice")).await.status() })
        .buffer_unordered(16)
        .collect()
        .await;
    assert!(statuses.iter().all(|status| *status == StatusCode::OK));
    let response = as_user(&http, &url, Some("Bearer alice")).await;
    assert_eq!(policies(&response), owned(&[("user_quota", 1000, 3600)]));
    assert_default_429(response, "user_quota", 3600).await;

    // ...which touches neither Bob's quota nor the address's.
    assert_eq!(
        remaining(as_user(&http, &url, Some("Bearer bob")).await).await,
        998
    );
    assert_eq!(remaining(as_user(&http, &url, None).await).await, 997);
}

// ---------------------------------------------------------------------------------------
// error_handling: Error Handling, a custom 429, configuration errors, anonymous clients
// ---------------------------------------------------------------------------------------

/// Three successes then the example's own 429, waiting `wait` seconds.
async fn assert_custom_429_after_three(http: &reqwest::Client, url: &str, wait: u64) {
    for _ in 0..3 {
        let response = get(http, url).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(json_body(response).await, json!({ "data": "value" }));
    }
    let response = get(http, url).await;
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    // The library's headers are kept...
    assert_eq!(retry_after(&response), Some(wait));
    assert_eq!(policies(&response), owned(&[("api", 3, 60)]));
    assert_eq!(limits(&response), owned(&[("api", 0, wait)]));
    // ...and the body is the app's.
    assert_eq!(
        json_body(response).await,
        json!({
            "error": "rate_limit_exceeded",
            "retry_after_seconds": wait,
            "message": format!("too many requests; retry in {wait} s"),
        })
    );
}

#[tokio::test]
async fn error_handling_shapes_its_own_429() {
    let clock = ManualClock::new(T0 + 30_000_000);
    let app = error_handling::app(traffik_at(&clock), "3/m").expect("a valid rate");
    let server = TestServer::start(app).await;
    let http = client();
    assert_custom_429_after_three(&http, &server.url("/api/data"), 30).await;
}

#[tokio::test]
async fn error_handling_reports_a_bad_rate_at_start_up() {
    let clock = ManualClock::new(T0);
    let error = error_handling::app(traffik_at(&clock), "10/mins").expect_err("not a rate");
    assert!(
        matches!(error, traffik::Error::InvalidRate { .. }),
        "{error:?}"
    );
    assert!(
        error.to_string().contains(r#"unknown unit "mins""#),
        "{error}"
    );
    assert!(error_handling::app(traffik_at(&clock), "0/m").is_err());
}

#[tokio::test]
async fn error_handling_counts_clients_without_connect_info_as_anonymous() {
    let clock = ManualClock::new(T0);
    let app = error_handling::app(traffik_at(&clock), "3/m").expect("a valid rate");
    // Without connect info the default identifier would answer 500; the fallback
    // identifier counts these requests as `anonymous:/api/data` instead.
    let server = common::PlainServer::start(app).await;
    let http = client();
    assert_custom_429_after_three(&http, &server.url("/api/data"), 60).await;
}

#[tokio::test]
async fn error_handling_leaves_backend_failures_to_the_library() {
    let clock = ManualClock::new(T0);
    let traffik = traffik_at(&clock);
    let app = error_handling::app(traffik.clone(), "3/m").expect("a valid rate");
    let server = TestServer::start(app).await;
    let http = client();
    assert_eq!(
        get(&http, &server.url("/api/data")).await.status(),
        StatusCode::OK
    );

    traffik.backend().close().await.expect("close");
    let response = get(&http, &server.url("/api/data")).await;
    assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
}

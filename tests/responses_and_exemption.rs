//! End to end: a custom throttled response (examples/custom_response.rs), exempt admins
//! (examples/exempt_admin.rs) and `min_wait_period` (examples/configuration.rs).
//!
//! The apps' backends run on a [`ManualClock`] set to the start of a minute, so every
//! wait is exact.

mod common;

#[path = "../examples/configuration.rs"]
#[allow(dead_code)]
mod configuration;
#[path = "../examples/custom_response.rs"]
#[allow(dead_code)]
mod custom_response;
#[path = "../examples/exempt_admin.rs"]
#[allow(dead_code)]
mod exempt_admin;

use std::time::Duration;

use common::{Reply, TestServer, admitted_before_429, client, get};
use http::StatusCode;
use traffik::prelude::*;

/// 2023-11-14T22:14:00Z: the start of a minute.
const T0: u64 = 1_700_000_040 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("responses-tests")
            .clock(clock.clone())
            .build(),
    )
}

// ---------------------------------------------------------------------------------------
// custom_response

/// Asserts `reply` is exactly the custom 429 telling the client to wait `secs`.
fn assert_custom_429(reply: &Reply, secs: u64) {
    assert_eq!(reply.status, StatusCode::TOO_MANY_REQUESTS, "{reply:?}");
    assert_eq!(
        reply.body,
        format!(
            r#"{{"error":"rate_limit_exceeded","message":"Too many requests. Retry in {secs}s","retry_after":{secs}}}"#
        )
    );
    assert_eq!(
        reply.optional_header("retry-after"),
        Some(secs.to_string().as_str())
    );
    assert_eq!(
        reply.optional_header("content-type"),
        Some("application/json")
    );
    // Exactly what the handler set, nothing added: no RateLimit fields.
    let mut names: Vec<&str> = reply.headers.keys().map(|name| name.as_str()).collect();
    names.sort_unstable();
    assert_eq!(
        names,
        ["content-length", "content-type", "date", "retry-after"]
    );
}

#[tokio::test]
async fn the_custom_handler_answers_throttled_requests() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(custom_response::app(traffik_at(&clock))).await;
    let client = client();
    let url = server.url("/api/data");

    let (admitted, denied) = admitted_before_429(&client, &url, &[], 110).await;
    assert_eq!(admitted, 100, "100/m");
    assert_custom_429(&denied, 60);

    clock.advance(Duration::from_secs(45));
    assert_custom_429(&get(&client, &url, &[]).await, 15);

    // 0.7 s to go: the seed's `wait_ms // 1000` would say "retry in 0s"; rounded up, 1.
    clock.advance(Duration::from_millis(14_300));
    assert_custom_429(&get(&client, &url, &[]).await, 1);

    clock.advance(Duration::from_millis(700));
    let admitted = get(&client, &url, &[]).await;
    assert_eq!(admitted.status, StatusCode::OK);
    assert_eq!(admitted.body, r#"{"data":"value"}"#);
}

// ---------------------------------------------------------------------------------------
// exempt_admin

#[tokio::test]
async fn admins_are_never_limited_while_users_are() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(exempt_admin::app(traffik_at(&clock))).await;
    let client = client();
    let url = server.url("/api/data");
    let admin = [("x-user-role", "admin"), ("x-user-id", "1")];
    let user = [("x-user-role", "member"), ("x-user-id", "42")];

    // Admins: well past the limit, every request passes and none counts.
    for n in 0..60 {
        assert_eq!(
            get(&client, &url, &admin).await.status,
            StatusCode::OK,
            "admin {n}"
        );
    }

    // A user (from the same address) still has the whole "50/m", and then is limited.
    let (admitted, denied) = admitted_before_429(&client, &url, &user, 60).await;
    assert_eq!(admitted, 50);
    assert_eq!(denied.optional_header("retry-after"), Some("60"));

    // The admin is not, even now.
    for n in 0..10 {
        assert_eq!(
            get(&client, &url, &admin).await.status,
            StatusCode::OK,
            "admin {n}"
        );
    }

    // Another user, and a client without a user id, each have a quota of their own.
    let other = [("x-user-id", "43")];
    assert_eq!(get(&client, &url, &other).await.status, StatusCode::OK);
    assert_eq!(get(&client, &url, &[]).await.status, StatusCode::OK);
    assert_eq!(
        get(&client, &url, &user).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

// ---------------------------------------------------------------------------------------
// min_wait_period (configuration)

#[tokio::test]
async fn min_wait_period_raises_the_wait_of_a_throttled_request() {
    let clock = ManualClock::new(T0);
    let app = configuration::app(traffik_at(&clock)).expect("a valid configuration");
    let server = TestServer::start(app).await;
    let client = client();

    // `api_v2`, "5/10s": a denial at the window's start waits the 10 s to its end.
    let (admitted, denied) = admitted_before_429(&client, &server.url("/api/v2"), &[], 10).await;
    assert_eq!(admitted, 5);
    assert_eq!(denied.optional_header("retry-after"), Some("10"));

    // `login`, "3/10s" with a 30 s floor: the same window, but told to wait 30 s, and
    // the RateLimit field agrees.
    let (admitted, denied) = admitted_before_429(&client, &server.url("/api/login"), &[], 10).await;
    assert_eq!(admitted, 3);
    assert_eq!(denied.optional_header("retry-after"), Some("30"));
    assert_eq!(
        denied.optional_header("ratelimit"),
        Some(r#""login";r=0;t=30"#)
    );

    // The floor applies to denials only: admitted requests report the window as it is.
    clock.advance(Duration::from_secs(10));
    let admitted = get(&client, &server.url("/api/login"), &[]).await;
    assert_eq!(admitted.status, StatusCode::OK);
    assert_eq!(
        admitted.optional_header("ratelimit"),
        Some(r#""login";r=2;t=10"#)
    );
}

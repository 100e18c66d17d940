//! End to end: the strategies, backend_selection and configuration examples, served on
//! real sockets and driven with reqwest.
//!
//! The apps' backends run on a [`ManualClock`] set to the start of a minute, so every
//! count and every wait is exact; the clock is then moved to show each strategy
//! recovering at its own pace.

mod common;

#[path = "../examples/backend_selection.rs"]
#[allow(dead_code)]
mod backend_selection;
#[path = "../examples/configuration.rs"]
#[allow(dead_code)]
mod configuration;
#[path = "../examples/strategies.rs"]
#[allow(dead_code)]
mod strategies;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{TestServer, admitted_before_429, client, get};
use http::StatusCode;
use traffik::prelude::*;

/// 2023-11-14T22:14:00Z: the start of a minute.
const T0: u64 = 1_700_000_040 * 1_000_000;

fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("examples-tests")
            .clock(clock.clone())
            .build(),
    )
}

// ---------------------------------------------------------------------------------------
// strategies

/// One route: how many requests a fresh client gets at once, the `Retry-After` of the
/// first denial, how far the clock must move to admit `again` more.
struct Expectation {
    path: &'static str,
    burst: usize,
    retry_after: &'static str,
    refill: Duration,
    again: usize,
}

#[tokio::test]
async fn every_strategy_admits_its_burst_then_429_then_recovers_at_its_pace() {
    let expectations = [
        // Token bucket of 150 at 100/m: 150 at once, then one token per 600 ms.
        Expectation {
            path: "/api/public",
            burst: 150,
            retry_after: "1",
            refill: Duration::from_millis(600),
            again: 1,
        },
        // Sliding window log, 10/m: ten, then nothing until the first ones are a minute
        // old; then ten again.
        Expectation {
            path: "/api/payments",
            burst: 10,
            retry_after: "60",
            refill: Duration::from_secs(60),
            again: 10,
        },
        // Leaky bucket, 50/m: one request every 1.2 s, no burst.
        Expectation {
            path: "/api/external",
            burst: 1,
            retry_after: "2",
            refill: Duration::from_millis(1200),
            again: 1,
        },
        // Fixed window, 200/m, at the window's start: 200, then the next window.
        Expectation {
            path: "/api/simple",
            burst: 200,
            retry_after: "60",
            refill: Duration::from_secs(60),
            again: 200,
        },
        // Sliding window counter, 20/m: 20; in the next window the previous twenty
        // still weigh in, and one more fits only once 1/20 of the window has passed.
        Expectation {
            path: "/api/search",
            burst: 20,
            retry_after: "63",
            refill: Duration::from_secs(63),
            again: 1,
        },
        // Token bucket with debt, 10/m, debt 5: 10 tokens plus 5 of overdraft, then a
        // token every 6 s.
        Expectation {
            path: "/api/batch",
            burst: 15,
            retry_after: "6",
            refill: Duration::from_secs(6),
            again: 1,
        },
        // Leaky bucket with a queue of 5, 30/m: five queue, one drains every 2 s.
        Expectation {
            path: "/api/notifications",
            burst: 5,
            retry_after: "2",
            refill: Duration::from_secs(2),
            again: 1,
        },
        // GCRA, 60/m, bursts of 5: five, then one per second.
        Expectation {
            path: "/api/stream",
            burst: 5,
            retry_after: "1",
            refill: Duration::from_secs(1),
            again: 1,
        },
    ];

    let client = client();
    for expected in expectations {
        // A fresh app (fresh backend and clock) per route, so routes cannot interfere.
        let clock = ManualClock::new(T0);
        let server = TestServer::start(strategies::app(traffik_at(&clock))).await;
        let url = server.url(expected.path);

        let (admitted, denied) = admitted_before_429(&client, &url, &[], 300).await;
        assert_eq!(admitted, expected.burst, "{}: burst", expected.path);
        assert_eq!(
            denied.header("retry-after"),
            expected.retry_after,
            "{}: Retry-After",
            expected.path
        );

        // Just before the wait is over, still denied; once it is, `again` more pass.
        clock.advance(expected.refill - Duration::from_millis(1));
        let early = get(&client, &url, &[]).await;
        assert_eq!(
            early.status,
            StatusCode::TOO_MANY_REQUESTS,
            "{}: 1 ms early",
            expected.path
        );
        clock.advance(Duration::from_millis(1));
        let (admitted, _) = admitted_before_429(&client, &url, &[], 300).await;
        assert_eq!(
            admitted, expected.again,
            "{}: after the wait",
            expected.path
        );
    }
}

#[tokio::test]
async fn strategy_routes_report_their_quota_on_success() {
    let clock = ManualClock::new(T0);
    let server = TestServer::start(strategies::app(traffik_at(&clock))).await;
    let client = client();

    let reply = get(&client, &server.url("/api/payments"), &[]).await;
    assert_eq!(reply.status, StatusCode::OK);
    assert_eq!(reply.header("ratelimit-policy"), r#""payments";q=10;w=60"#);
    assert_eq!(reply.header("ratelimit"), r#""payments";r=9;t=60"#);
    let body: serde_json::Value = serde_json::from_str(&reply.body).expect("JSON");
    assert_eq!(
        body,
        serde_json::json!({ "strategy": "sliding_window_log", "remaining": 9 })
    );

    // The debt bucket reports its size and only a positive balance, never the overdraft.
    let url = server.url("/api/batch");
    for remaining in (0..10).rev() {
        let reply = get(&client, &url, &[]).await;
        assert_eq!(
            reply.header("ratelimit"),
            format!(r#""batch";r={remaining};t={}"#, (10 - remaining) * 6)
        );
    }
    let overdraft = get(&client, &url, &[]).await;
    assert_eq!(overdraft.status, StatusCode::OK);
    assert!(
        overdraft.header("ratelimit").starts_with(r#""batch";r=0;"#),
        "{overdraft:?}"
    );
}

// ---------------------------------------------------------------------------------------
// backend_selection

/// The fixed-window index of `SystemTime::now()` for a period of one minute.
fn current_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 60
}

#[tokio::test]
async fn a_throttle_with_its_own_backend_ignores_the_apps_backend() {
    let client = client();
    let minute = current_minute();

    // Two apps, each with its own fresh backend: the shared throttle (50/m) starts from
    // zero in each; the throttle with its own backend (100/m) counts across both.
    for app in ["first", "second"] {
        let clock = ManualClock::new(T0);
        let server = TestServer::start(backend_selection::app(traffik_at(&clock))).await;
        let (admitted, denied) =
            admitted_before_429(&client, &server.url("/api/custom"), &[], 60).await;
        assert_eq!(admitted, 50, "{app} app");
        assert_eq!(
            denied.header("ratelimit-policy"),
            r#""shared_backend";q=50;w=60"#,
            "{app} app: the shared throttle answers"
        );
    }

    // A third app, fresh backend again: the shared throttle admits, but the throttle with
    // its own backend has now seen 100 requests from this client.
    let clock = ManualClock::new(T0);
    let traffik = traffik_at(&clock);
    let server = TestServer::start(backend_selection::app(traffik.clone())).await;
    let denied = get(&client, &server.url("/api/custom"), &[]).await;
    assert_eq!(
        get(&client, &server.url("/api/shared"), &[]).await.status,
        StatusCode::OK
    );

    // Nothing of the throttle with its own backend is in the app's backend.
    let own = backend_selection::WithOwnBackend::get().throttle();
    let as_if_shared = Throttle::with_rate(own.uid(), *own.rate());
    let in_app_backend = as_if_shared
        .stat(
            &Identity::client("127.0.0.1"),
            "http:GET:/api/custom",
            traffik.backend().as_ref(),
        )
        .await
        .expect("stat");
    assert_eq!(in_app_backend.remaining, 100);

    // The throttle's own backend runs on the system clock, with one-minute windows: if
    // a minute ended while this test ran, its count restarted and the 429 is not due.
    if current_minute() != minute {
        return;
    }
    assert_eq!(denied.status, StatusCode::TOO_MANY_REQUESTS, "{denied:?}");
    assert_eq!(
        denied.header("ratelimit-policy"),
        r#""custom_backend";q=100;w=60"#
    );
}

// ---------------------------------------------------------------------------------------
// configuration

#[tokio::test]
async fn each_rate_format_is_the_rate_it_says() {
    let clock = ManualClock::new(T0);
    let app = configuration::app(traffik_at(&clock)).expect("a valid configuration");
    let server = TestServer::start(app).await;
    let client = client();

    // (route, RateLimit-Policy, RateLimit after one request) at T0: the start of a
    // minute, 80 040 s into its day and 90 s into its 330 s window.
    let routes = [
        ("/api/v1", r#""api_v1";q=100;w=60"#, r#""api_v1";r=99;t=60"#),
        ("/api/v2", r#""api_v2";q=5;w=10"#, r#""api_v2";r=4;t=10"#),
        ("/api/v3", r#""api_v3";q=1000;w=1"#, r#""api_v3";r=999;t=1"#),
        (
            "/api/daily",
            r#""daily";q=10000;w=86400"#,
            r#""daily";r=9999;t=6360"#,
        ),
        (
            "/api/complex",
            r#""complex";q=100;w=330"#,
            r#""complex";r=99;t=240"#,
        ),
    ];
    for (path, policy, quota) in routes {
        let reply = get(&client, &server.url(path), &[]).await;
        assert_eq!(reply.status, StatusCode::OK, "{path}");
        assert_eq!(reply.header("ratelimit-policy"), policy, "{path}");
        assert_eq!(reply.header("ratelimit"), quota, "{path}");
    }

    // "5/10s": four more, then a wait until the ten-second window ends.
    let (admitted, denied) = admitted_before_429(&client, &server.url("/api/v2"), &[], 10).await;
    assert_eq!(admitted, 4);
    assert_eq!(denied.header("retry-after"), "10");

    // "1000/500ms": the window is half a second.
    clock.advance(Duration::from_millis(499));
    let reply = get(&client, &server.url("/api/v3"), &[]).await;
    assert_eq!(reply.header("ratelimit"), r#""api_v3";r=998;t=1"#);
    clock.advance(Duration::from_millis(1));
    let reply = get(&client, &server.url("/api/v3"), &[]).await;
    assert_eq!(reply.header("ratelimit"), r#""api_v3";r=999;t=1"#);
}

#[tokio::test]
async fn a_custom_identifier_gives_each_user_a_quota() {
    let clock = ManualClock::new(T0);
    let app = configuration::app(traffik_at(&clock)).expect("a valid configuration");
    let server = TestServer::start(app).await;
    let client = client();
    let url = server.url("/api/user");

    let alice = [("x-user-id", "alice")];
    let (admitted, denied) = admitted_before_429(&client, &url, &alice, 110).await;
    assert_eq!(admitted, 100, "100/h for alice");
    assert_eq!(
        denied.header("ratelimit-policy"),
        r#""user_limit";q=100;w=3600"#
    );

    // Same IP, another user: a quota of its own; and so for a client with no user.
    // T0 is 840 s into its hour: the window resets in 2760 s.
    let bob = get(&client, &url, &[("x-user-id", "bob")]).await;
    assert_eq!(bob.status, StatusCode::OK);
    assert_eq!(bob.header("ratelimit"), r#""user_limit";r=99;t=2760"#);
    let anonymous = get(&client, &url, &[]).await;
    assert_eq!(anonymous.status, StatusCode::OK);
    assert_eq!(anonymous.header("ratelimit"), r#""user_limit";r=99;t=2760"#);

    assert_eq!(
        get(&client, &url, &alice).await.status,
        StatusCode::TOO_MANY_REQUESTS
    );
}

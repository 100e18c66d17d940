//! The `Throttled<T>` extractor end to end: real sockets, a real HTTP client.
//!
//! Time-dependent assertions use an in-memory backend on a `ManualClock`, so waits are
//! exact and no test sleeps.

mod common;

use std::time::Duration;

use axum::Router;
use axum::extract::FromRef;
use axum::routing::get;
use common::{TestServer, client};
use reqwest::StatusCode;
use traffik::prelude::*;

/// A time aligned to every window of a day or less (10 s, 1 min, 1 h), in microseconds.
const T0: u64 = 20_000 * 86_400 * 1_000_000;

fn secs(s: f64) -> u64 {
    (s * 1_000_000.0) as u64
}

/// A context on a fresh in-memory backend reading `clock`.
fn traffik_at(clock: &ManualClock) -> Traffik {
    Traffik::new(
        InMemoryBackend::builder("test")
            .clock(clock.clone())
            .build(),
    )
}

/// One member of a `RateLimit-Policy` or `RateLimit` List: `"name";k1=v1;k2=v2`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Member {
    name: String,
    params: Vec<(String, u64)>,
}

/// Parses a Structured Field List of string items with integer parameters, the only
/// shape Traffik sends; panics on anything else. (Names here contain no comma.)
fn parse_list(value: &str) -> Vec<Member> {
    value
        .split(',')
        .map(|member| {
            let member = member.trim();
            let rest = member
                .strip_prefix('"')
                .unwrap_or_else(|| panic!("{member:?} does not start with an sf-string"));
            let (name, params) = rest
                .split_once('"')
                .unwrap_or_else(|| panic!("{member:?}: unterminated sf-string"));
            let mut parts = params.split(';');
            assert_eq!(parts.next(), Some(""), "{member:?}: junk after the name");
            let params = parts
                .map(|param| {
                    let (key, value) = param
                        .split_once('=')
                        .unwrap_or_else(|| panic!("{member:?}: parameter {param:?} has no value"));
                    let value = value
                        .parse()
                        .unwrap_or_else(|_| panic!("{member:?}: {param:?} is not an integer"));
                    (key.to_owned(), value)
                })
                .collect();
            Member {
                name: name.to_owned(),
                params,
            }
        })
        .collect()
}

/// The members of a List field, over all its lines; empty if absent.
fn list_field(response: &reqwest::Response, name: &str) -> Vec<Member> {
    let lines: Vec<&str> = response
        .headers()
        .get_all(name)
        .iter()
        .map(|value| value.to_str().expect("ASCII field"))
        .collect();
    if lines.is_empty() {
        return Vec::new();
    }
    parse_list(&lines.join(", "))
}

/// `RateLimit-Policy` as `(name, q, w)`, checking each member has exactly `q` and `w`.
fn policies(response: &reqwest::Response) -> Vec<(String, u64, u64)> {
    list_field(response, "ratelimit-policy")
        .into_iter()
        .map(|m| match m.params.as_slice() {
            [(q, quota), (w, window)] if q == "q" && w == "w" => (m.name, *quota, *window),
            _ => panic!("unexpected RateLimit-Policy member {m:?}"),
        })
        .collect()
}

/// `RateLimit` as `(name, r, t)`, checking each member has exactly `r` and `t`.
fn limits(response: &reqwest::Response) -> Vec<(String, u64, u64)> {
    list_field(response, "ratelimit")
        .into_iter()
        .map(|m| match m.params.as_slice() {
            [(r, remaining), (t, effective)] if r == "r" && t == "t" => {
                (m.name, *remaining, *effective)
            }
            _ => panic!("unexpected RateLimit member {m:?}"),
        })
        .collect()
}

fn owned(members: &[(&str, u64, u64)]) -> Vec<(String, u64, u64)> {
    members
        .iter()
        .map(|(name, a, b)| ((*name).to_owned(), *a, *b))
        .collect()
}

fn retry_after(response: &reqwest::Response) -> Option<u64> {
    response.headers().get("retry-after").map(|value| {
        value
            .to_str()
            .expect("ASCII")
            .parse()
            .expect("Retry-After in seconds")
    })
}

/// Checks a default 429: status, `Retry-After`, content type and JSON body; returns the
/// `Retry-After` value.
async fn assert_default_429(response: reqwest::Response) -> u64 {
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait = retry_after(&response).expect("a 429 carries Retry-After");
    assert_eq!(response.headers()["content-type"], "application/json");
    let body = response.text().await.expect("body");
    assert_eq!(
        body,
        format!(r#"{{"detail":"Too many requests. Retry in {wait} seconds."}}"#)
    );
    wait
}

async fn get_status(client: &reqwest::Client, url: &str) -> StatusCode {
    client.get(url).send().await.expect("request").status()
}

throttle!(OnePerMinute = HttpThrottle::new("one_per_minute", "1/m"));
throttle!(FivePer10s = HttpThrottle::new("five_per_10s", "5/10s"));

async fn one_per_minute(_: Throttled<OnePerMinute>) -> &'static str {
    "ok"
}

async fn five_per_10s(_: Throttled<FivePer10s>) -> &'static str {
    "ok"
}

#[tokio::test]
async fn retry_after_on_the_system_clock_is_within_the_window_and_matches_ratelimit() {
    let traffik = Traffik::new(InMemoryBackend::new("test"));
    let app = Router::new()
        .route("/one", get(one_per_minute))
        .with_state(traffik);
    let server = TestServer::start(app).await;
    let client = client();

    // With 1/m on a fixed window, the second request in the same minute is denied. The
    // requests take milliseconds, so they straddle at most one minute boundary: the
    // third request is denied at the latest.
    let mut denied = None;
    for _ in 0..3 {
        let response = client
            .get(server.url("/one"))
            .send()
            .await
            .expect("request");
        if response.status() == StatusCode::TOO_MANY_REQUESTS {
            denied = Some(response);
            break;
        }
        assert_eq!(response.status(), StatusCode::OK);
    }
    let response = denied.expect("1/m denies within three requests");
    let wait = retry_after(&response).expect("Retry-After");
    assert!((1..=60).contains(&wait), "Retry-After {wait} not in 1..=60");
    assert_eq!(policies(&response), owned(&[("one_per_minute", 1, 60)]));
    assert_eq!(limits(&response), owned(&[("one_per_minute", 0, wait)]));
    assert_eq!(assert_default_429(response).await, wait);
}

#[tokio::test]
async fn retry_after_is_the_exact_wait_rounded_up() {
    let clock = ManualClock::new(T0 + secs(15.5));
    let app = Router::new()
        .route("/one", get(one_per_minute))
        .route("/five", get(five_per_10s))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();

    // 15.5 s into the minute: the window ends in 44.5 s, announced as 45.
    assert_eq!(
        get_status(&client, &server.url("/one")).await,
        StatusCode::OK
    );
    let response = client
        .get(server.url("/one"))
        .send()
        .await
        .expect("request");
    assert_eq!(policies(&response), owned(&[("one_per_minute", 1, 60)]));
    assert_eq!(limits(&response), owned(&[("one_per_minute", 0, 45)]));
    assert_eq!(assert_default_429(response).await, 45);

    // 5/10s, 5.5 s into the ten-second window: 4.5 s left, announced as 5.
    for _ in 0..5 {
        assert_eq!(
            get_status(&client, &server.url("/five")).await,
            StatusCode::OK
        );
    }
    let response = client
        .get(server.url("/five"))
        .send()
        .await
        .expect("request");
    assert_eq!(policies(&response), owned(&[("five_per_10s", 5, 10)]));
    assert_eq!(limits(&response), owned(&[("five_per_10s", 0, 5)]));
    assert_eq!(assert_default_429(response).await, 5);

    // Just before the window ends the client is still denied, with one second to go...
    clock.advance(Duration::from_millis(4_499));
    let response = client
        .get(server.url("/five"))
        .send()
        .await
        .expect("request");
    assert_eq!(assert_default_429(response).await, 1);
    // ...and the instant it ends, admitted again.
    clock.advance(Duration::from_millis(1));
    assert_eq!(
        get_status(&client, &server.url("/five")).await,
        StatusCode::OK
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_requests_get_exactly_the_limit() {
    throttle!(Fifty = HttpThrottle::new("fifty", "50/m"));
    async fn handler(_: Throttled<Fifty>) -> &'static str {
        "ok"
    }

    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/fifty", get(handler))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();

    let url = server.url("/fifty");
    let requests = (0..100).map(|_| {
        let request = client.get(&url).send();
        tokio::spawn(async move { request.await.expect("request").status() })
    });
    let mut ok = 0;
    let mut throttled = 0;
    for status in futures_util::future::join_all(requests).await {
        match status.expect("task") {
            StatusCode::OK => ok += 1,
            StatusCode::TOO_MANY_REQUESTS => throttled += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!((ok, throttled), (50, 50));
}

#[tokio::test]
async fn path_parameters_share_one_limit_per_route_and_method() {
    throttle!(Users = HttpThrottle::new("users", "3/m"));
    async fn handler(_: Throttled<Users>) -> &'static str {
        "ok"
    }

    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/users/{id}", get(handler).post(handler))
        .route("/teams/{id}", get(handler))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();

    // The scope is the matched route, `/users/{id}`: varying the id does not
    // multiply the quota.
    for id in 1..=3 {
        let url = server.url(&format!("/users/{id}"));
        assert_eq!(get_status(&client, &url).await, StatusCode::OK);
    }
    let response = client
        .get(server.url("/users/4"))
        .send()
        .await
        .expect("request");
    assert_default_429(response).await;

    // Another route, and another method on the same route, count apart.
    for id in 1..=3 {
        let url = server.url(&format!("/teams/{id}"));
        assert_eq!(get_status(&client, &url).await, StatusCode::OK);
        let posted = client
            .post(server.url(&format!("/users/{id}")))
            .send()
            .await;
        assert_eq!(posted.expect("request").status(), StatusCode::OK);
    }
    assert_eq!(
        get_status(&client, &server.url("/teams/9")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn head_counts_as_get() {
    // axum answers HEAD with the GET handler: alternating the two must not double a quota.
    throttle!(Pages = HttpThrottle::new("pages", "2/m"));
    async fn handler(_: Throttled<Pages>) -> &'static str {
        "ok"
    }

    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/page", get(handler))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();
    let head = client
        .head(server.url("/page"))
        .send()
        .await
        .expect("request");
    assert_eq!(head.status(), StatusCode::OK);
    assert_eq!(
        get_status(&client, &server.url("/page")).await,
        StatusCode::OK
    );
    let head = client
        .head(server.url("/page"))
        .send()
        .await
        .expect("request");
    assert_eq!(head.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        get_status(&client, &server.url("/page")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn two_throttles_on_one_route_both_count_and_the_first_denial_answers() {
    throttle!(Outer = HttpThrottle::new("outer", "5/m"));
    throttle!(Inner = HttpThrottle::new("inner", "3/m"));
    async fn handler(
        outer: Throttled<Outer>,
        inner: Throttled<Inner>,
    ) -> (Throttled<Outer>, Throttled<Inner>, &'static str) {
        (outer, inner, "ok")
    }

    let clock = ManualClock::new(T0 + secs(20.0));
    let app = Router::new()
        .route("/both", get(handler))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();
    let url = server.url("/both");

    // Both throttles count every admitted request.
    for n in 1..=3 {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            policies(&response),
            owned(&[("outer", 5, 60), ("inner", 3, 60)])
        );
        assert_eq!(
            limits(&response),
            owned(&[("outer", 5 - n, 40), ("inner", 3 - n, 40)])
        );
    }

    // `outer` admits requests 4 and 5, `inner` denies them: the 429 is inner's.
    for _ in 4..=5 {
        let response = client.get(&url).send().await.expect("request");
        assert_eq!(policies(&response), owned(&[("inner", 3, 60)]));
        assert_eq!(limits(&response), owned(&[("inner", 0, 40)]));
        assert_default_429(response).await;
    }

    // `outer` counted them: the sixth request is its denial, and `inner` is not reached.
    let response = client.get(&url).send().await.expect("request");
    assert_eq!(policies(&response), owned(&[("outer", 5, 60)]));
    assert_eq!(limits(&response), owned(&[("outer", 0, 40)]));
    assert_default_429(response).await;
}

#[tokio::test]
async fn a_returned_throttled_adds_ratelimit_headers_to_a_success() {
    throttle!(Returned = HttpThrottle::new("returned", "10/m"));
    async fn returned(limit: Throttled<Returned>) -> (Throttled<Returned>, &'static str) {
        (limit, "ok")
    }
    async fn kept(_: Throttled<Returned>) -> &'static str {
        "ok"
    }

    let clock = ManualClock::new(T0 + secs(15.5));
    let app = Router::new()
        .route("/returned", get(returned))
        .route("/kept", get(kept))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();

    for remaining in (7..=9).rev() {
        let response = client
            .get(server.url("/returned"))
            .send()
            .await
            .expect("request");
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(policies(&response), owned(&[("returned", 10, 60)]));
        assert_eq!(limits(&response), owned(&[("returned", remaining, 45)]));
        assert_eq!(retry_after(&response), None, "no Retry-After on a success");
    }

    // Not returned: by default a success advertises nothing.
    let response = client
        .get(server.url("/kept"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::OK);
    assert!(response.headers().get("ratelimit").is_none());
    assert!(response.headers().get("ratelimit-policy").is_none());
}

// The rate literal is parsed at compile time: `throttle!(Bad = HttpThrottle::new("bad",
// "10/mins"))` does not compile (the `compile_fail` doctest of `throttle!` checks that;
// a trybuild test would need `trybuild` as a dev-dependency).
throttle!(Literal = HttpThrottle::new("literal", "2/10s"));
// A rate that is not a literal goes through the other arm, unchecked until start-up.
throttle!(
    Computed = HttpThrottle::new(
        "computed",
        Rate::new(2, Duration::from_secs(10)).expect("a valid rate")
    )
);
const CHECKED: Rate = traffik::rate!("2/10s");

#[tokio::test]
async fn throttle_with_a_literal_rate_is_checked_at_compile_time_and_enforced() {
    assert_eq!(Literal::get().rate(), &CHECKED);
    assert_eq!(Literal::get().rate(), Computed::get().rate());
    assert_eq!(Literal::get().uid(), "literal");

    async fn literal(_: Throttled<Literal>) -> &'static str {
        "ok"
    }
    async fn computed(_: Throttled<Computed>) -> &'static str {
        "ok"
    }
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/literal", get(literal))
        .route("/computed", get(computed))
        .with_state(traffik_at(&clock));
    let server = TestServer::start(app).await;
    let client = client();

    for path in ["/literal", "/computed"] {
        for _ in 0..2 {
            assert_eq!(get_status(&client, &server.url(path)).await, StatusCode::OK);
        }
        let response = client.get(server.url(path)).send().await.expect("request");
        assert_eq!(policies(&response).len(), 1);
        assert_eq!(policies(&response)[0].1, 2);
        assert_eq!(policies(&response)[0].2, 10);
        assert_eq!(assert_default_429(response).await, 10);
    }
}

// A throttle built at start-up (its rate from configuration) and kept in the state.
throttle!(ConfiguredLimit);

#[derive(Clone, FromRef)]
struct AppState {
    traffik: Traffik,
    limit: ConfiguredLimit,
}

async fn configured(_: Throttled<ConfiguredLimit>) -> &'static str {
    "ok"
}

fn configured_app(clock: &ManualClock, rate_from_config: &str) -> Router {
    let throttle = HttpThrottle::parse("configured", rate_from_config).expect("a valid rate");
    Router::new()
        .route("/configured", get(configured))
        .with_state(AppState {
            traffik: traffik_at(clock),
            limit: ConfiguredLimit(throttle),
        })
}

#[tokio::test]
async fn a_throttle_in_the_state_comes_from_each_apps_configuration() {
    let clock = ManualClock::new(T0);
    let two = TestServer::start(configured_app(&clock, "2/m")).await;
    let four = TestServer::start(configured_app(&clock, "4 per minute")).await;
    let client = client();

    for (server, limit) in [(&two, 2), (&four, 4)] {
        for _ in 0..limit {
            let status = get_status(&client, &server.url("/configured")).await;
            assert_eq!(status, StatusCode::OK);
        }
        let response = client
            .get(server.url("/configured"))
            .send()
            .await
            .expect("request");
        assert_eq!(policies(&response), owned(&[("configured", limit, 60)]));
        assert_eq!(assert_default_429(response).await, 60);
    }

    assert!(HttpThrottle::parse("configured", "2/mins").is_err());
}

#[tokio::test]
async fn without_connect_info_the_default_identifier_answers_500_with_the_fix() {
    let clock = ManualClock::new(T0);
    let app = Router::new()
        .route("/one", get(one_per_minute))
        .with_state(traffik_at(&clock));
    let server = common::PlainServer::start(app).await;

    let response = client()
        .get(server.url("/one"))
        .send()
        .await
        .expect("request");
    assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let body = response.text().await.expect("body");
    assert!(
        body.contains("into_make_service_with_connect_info"),
        "the 500 should say how to serve the app: {body}"
    );
}

//! The Redis backend's denial cache, end to end: behind `Throttled<T>` and behind
//! `ThrottleLayer`, on a real socket, a client's requests reach Redis until it is denied;
//! then its denials are answered in process, without another command to Redis, until the
//! denial ends. The requests before the denial take the path that writes the key once and
//! hands it on to the awaited decision; the denials after it are judged at once.
//!
//! When `CI` is set, a missing Redis fails the test; otherwise it skips.

#![cfg(feature = "redis")]

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use axum::Router;
use axum::routing::get;
use http::StatusCode;
use traffik::RedisBackend;
use traffik::prelude::*;

use common::{TestServer, client, redis_reachable, redis_url};

/// The start of a minute: a fixed window of one minute starts there.
const T0: u64 = 1_700_000_040_000_000;

throttle!(TwoPerMinute = HttpThrottle::new("cached", "2/m"));

/// A backend with the denial cache, in a namespace of its own, on a manual clock (so that
/// a window boundary cannot fall inside the test).
fn cached_backend(test: &str, clock: &ManualClock) -> RedisBackend {
    static N: AtomicU64 = AtomicU64::new(0);
    let namespace = format!(
        "denial-cache-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    RedisBackend::builder(namespace)
        .url(redis_url())
        .clock(clock.clone())
        .cache_denials(true)
        .build()
        .expect("redis backend")
}

/// Five requests to `path`: two admitted and one denied by Redis, then two denials from
/// the cache, which send Redis nothing; the cached denials say the same as Redis's,
/// less the time that has passed.
async fn two_admitted_then_denied_from_the_cache(
    server: &TestServer,
    backend: &RedisBackend,
    clock: &ManualClock,
    path: &str,
) {
    let http = client();
    for _ in 0..2 {
        let response = http.get(server.url(path)).send().await.expect("request");
        assert_eq!(response.status(), StatusCode::OK);
    }
    let denied = http.get(server.url(path)).send().await.expect("request");
    assert_eq!(denied.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(denied.headers()["retry-after"], "60");
    let sent = backend.pipelined().commands;
    assert_eq!(sent, 3, "each of the first three requests is one command");

    clock.advance(Duration::from_secs(20));
    for _ in 0..2 {
        let cached = http.get(server.url(path)).send().await.expect("request");
        assert_eq!(cached.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(cached.headers()["retry-after"], "40");
    }
    assert_eq!(
        backend.pipelined().commands,
        sent,
        "a remembered denial sends Redis nothing"
    );

    // Once the window ends, Redis decides again.
    clock.advance(Duration::from_secs(40));
    let again = http.get(server.url(path)).send().await.expect("request");
    assert_eq!(again.status(), StatusCode::OK);
    assert_eq!(backend.pipelined().commands, sent + 1);
    backend.reset().await.expect("reset");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_extractor_answers_remembered_denials_in_process() {
    if !redis_reachable() {
        return;
    }
    async fn limited(_: Throttled<TwoPerMinute>) -> &'static str {
        "ok"
    }
    let clock = ManualClock::new(T0);
    let backend = cached_backend("extractor", &clock);
    let app = Router::new()
        .route("/limited", get(limited))
        .with_state(Traffik::new(backend.clone()));
    let server = TestServer::start(app).await;
    two_admitted_then_denied_from_the_cache(&server, &backend, &clock, "/limited").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_layer_answers_remembered_denials_in_process() {
    if !redis_reachable() {
        return;
    }
    async fn ok() -> &'static str {
        "ok"
    }
    let clock = ManualClock::new(T0);
    let backend = cached_backend("layer", &clock);
    let layer = ThrottleLayer::new(Traffik::new(backend.clone())).throttle(
        MiddlewareThrottle::new(HttpThrottle::new("cached", rate!("2/m"))),
    );
    let app = Router::new().route("/limited", get(ok)).layer(layer);
    let server = TestServer::start(app).await;
    two_admitted_then_denied_from_the_cache(&server, &backend, &clock, "/limited").await;
}

//! Redis faults, end to end: the `redis` example's app, served on a real socket, in front of
//! a `redis-server` this test starts itself on a spare loopback port, kills mid-traffic and
//! restarts; a server that accepts connections and never answers; an exhausted pool.
//!
//! Every request must be answered as the failure policy says, within the decision timeout
//! plus a margin (a bound, not a benchmark), and limiting must resume once Redis is back,
//! without restarting the app.
//!
//! When `CI` is set and `redis-server` is missing, the tests fail; otherwise they skip,
//! logging why. The harness (child server, silent server, partition, policies' answers,
//! the kill-and-restart scenario) is shared with the Memcached tests: `tests/faults`.

#![cfg(feature = "redis")]

mod common;
mod faults;

#[allow(dead_code)]
#[path = "../examples/redis.rs"]
mod redis_example;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::StatusCode;
use traffik::backend::deadpool_redis;
use traffik::prelude::*;
use traffik::{FailurePolicy, RedisBackend};

use common::{TestServer, client};
use faults::{BOUND, ChildServer, Endpoint, Expect, Partition, Probe, ServerSpec, until_limited};

/// `redis-server` in the foreground on a loopback port, without persistence.
static REDIS: ServerSpec = ServerSpec {
    name: "Redis",
    program: "redis-server",
    version_arg: "--version",
    args: |port| {
        let dir = std::env::temp_dir().to_string_lossy().into_owned();
        [
            "--port",
            &port.to_string(),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            &dir,
        ]
        .map(str::to_owned)
        .to_vec()
    },
    probe: Probe {
        request: b"PING\r\n",
        reply: b"+PONG\r\n",
    },
};

/// The example's `GET /api/limited`: 5 a minute.
const LIMITED: Endpoint = Endpoint {
    path: "/api/limited",
    limit: 5,
    window_secs: 60,
};

fn url(port: u16) -> String {
    format!("redis://127.0.0.1:{port}/0")
}

/// `GET /api/limited` once, timed.
async fn get(client: &reqwest::Client, server: &TestServer) -> faults::Answer {
    faults::get(client, server, LIMITED.path).await
}

/// Redis killed mid-traffic, then restarted on the same port, under one policy.
async fn killed_mid_traffic_then_restarted(expect: Expect) {
    faults::killed_mid_traffic_then_restarted(
        &REDIS,
        &LIMITED,
        |redis, policy| {
            let backend = redis_example::backend(&url(redis.port), policy).expect("backend");
            redis_example::app(Traffik::new(backend))
        },
        expect,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_allow_answers_200_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_throttle_answers_429_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_raise_answers_503_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_answered_within_the_timeout() {
    faults::silence_answered_by_each_policy(LIMITED.path, |port, policy| {
        let backend = redis_example::backend(&url(port), policy).expect("backend");
        redis_example::app(Traffik::new(backend))
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_without_closing_is_made_again() {
    let Some(redis) = ChildServer::start(&REDIS).await else {
        return;
    };
    let partition = Partition::start(redis.port).await;
    let url = url(partition.port);
    let backend = redis_example::backend(&url, FailurePolicy::Raise).expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let client = client();
    faults::answers_through_a_cut(&partition, &client, &server, LIMITED.path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_on_a_cut_connection_end_at_their_limit() {
    let Some(redis) = ChildServer::start(&REDIS).await else {
        return;
    };
    let partition = Partition::start(redis.port).await;
    // Far below redis-rs's response timeout (500 ms): what ends these decisions is their
    // deadline, kept by the pipeline they went in (the throttle has no timer of its own).
    let limit = Duration::from_millis(60);
    let backend = RedisBackend::builder("cut-deadline")
        .url(url(partition.port))
        .timeout(limit)
        .build()
        .expect("backend");
    let throttle = Throttle::new("cut", "1000/m").expect("throttle");
    let client = Identity::client("192.0.2.77");
    // Connecting and loading the library may take longer than one decision's 60 ms.
    let mut answers = Vec::new();
    while !matches!(answers.last(), Some(Ok(_))) {
        assert!(
            answers.len() < 50,
            "no decision through the partition: {answers:?}"
        );
        answers.push(throttle.hit(&client, "s", &backend).await);
    }

    partition.cut();
    let started = std::time::Instant::now();
    let burst = (0..8).map(|_| throttle.hit(&client, "s", &backend));
    for result in futures_util::future::join_all(burst).await {
        assert_eq!(result, Err(traffik::Error::Timeout(limit)));
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed < Duration::from_millis(450),
        "answered after {elapsed:?}, not at the 60 ms deadline"
    );
    assert!(
        backend.pipelined().pipelines >= 2,
        "{:?}",
        backend.pipelined()
    );

    // A throttle's own timeout, longer than the backend's, is the decision's deadline.
    let patient = Throttle::new("cut-patient", "1000/m")
        .expect("throttle")
        .timeout(Duration::from_millis(200));
    let started = std::time::Instant::now();
    let result = patient.hit(&client, "s", &backend).await;
    let elapsed = started.elapsed();
    assert_eq!(
        result,
        Err(traffik::Error::Timeout(Duration::from_millis(200)))
    );
    assert!(
        elapsed >= Duration::from_millis(200) && elapsed < Duration::from_millis(480),
        "answered after {elapsed:?}, not at the throttle's 200 ms"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_slower_to_make_than_the_timeout_is_still_made() {
    let Some(redis) = ChildServer::start(&REDIS).await else {
        return;
    };
    // Every connection takes 600 ms to make, more than twice a decision's 250 ms: the
    // requests that wait for it give up, but the attempt goes on for the next ones.
    let redis_client = deadpool_redis::redis::Client::open(url(redis.port)).expect("redis client");
    let connects = Arc::new(AtomicUsize::new(0));
    let backend = RedisBackend::builder("slow-connect")
        .connection_factory({
            let connects = Arc::clone(&connects);
            move || {
                let (redis_client, connects) = (redis_client.clone(), Arc::clone(&connects));
                async move {
                    connects.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    redis_client.get_multiplexed_async_connection().await
                }
            }
        })
        .build()
        .expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..20 {
        let answer = get(&client, &server).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        let ok = answer.status == StatusCode::OK;
        answers.push(answer);
        if ok {
            // One attempt served every request that waited for it.
            assert_eq!(connects.load(Ordering::SeqCst), 1, "{answers:#?}");
            return;
        }
        assert!(Expect::Unavailable.matches(answers.last().expect("answer")));
    }
    panic!("never connected: {answers:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_answered_by_the_policy_then_recovers() {
    let Some(redis) = ChildServer::start(&REDIS).await else {
        return;
    };
    // A pool of one connection, with no timeouts of its own, and that one held elsewhere.
    let mut config = deadpool_redis::Config::from_url(url(redis.port));
    config.pool = Some(deadpool_redis::PoolConfig::new(1));
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("pool");
    let held = pool.get().await.expect("the pool's only connection");

    for expect in [Expect::Unavailable, Expect::Allowed, Expect::FailClosed] {
        let backend = RedisBackend::builder(format!("exhausted-{expect:?}"))
            .pool(pool.clone())
            .on_error(expect.policy())
            .build()
            .expect("backend");
        let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
        let client = client();
        let burst = (0..5).map(|_| get(&client, &server));
        for answer in futures_util::future::join_all(burst).await {
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
    }

    // The connection comes back: a new app on the pool decides for real.
    drop(held);
    let backend = RedisBackend::builder("exhausted-recovered")
        .pool(pool)
        .build()
        .expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let answers = until_limited(&reqwest::Client::new(), &server, &LIMITED, 100).await;
    assert!(
        answers.iter().any(|answer| answer.status == StatusCode::OK),
        "{answers:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_limits_on_its_fallback_while_redis_is_down() {
    let Some(mut redis) = ChildServer::start(&REDIS).await else {
        return;
    };
    let backend = redis_example::backend(&url(redis.port), FailurePolicy::Raise).expect("backend");
    faults::breaker_decides_on_its_fallback_while_down(
        &mut redis,
        &LIMITED,
        backend,
        redis_example::app,
    )
    .await;
}

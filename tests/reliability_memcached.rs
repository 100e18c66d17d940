//! Memcached faults, end to end: the `memcached` example's app, served on a real socket, in
//! front of a `memcached` this test starts itself on a spare loopback port, kills
//! mid-traffic and restarts; a server that accepts connections and never answers; a
//! connection cut without being closed; an exhausted pool; a circuit breaker with an
//! in-memory fallback.
//!
//! Every request must be answered as the failure policy says, within the decision timeout
//! plus a margin (a bound, not a benchmark), and limiting must resume once memcached is
//! back, without restarting the app.
//!
//! When `CI` is set and `memcached` is missing, the tests fail; otherwise they skip,
//! logging why. The harness is shared with the Redis tests: `tests/faults`.

#![cfg(feature = "memcached")]

mod common;
mod faults;

#[allow(dead_code)]
#[path = "../examples/memcached.rs"]
mod memcached_example;

use std::time::Duration;

use http::StatusCode;
use traffik::prelude::*;
use traffik::{FailurePolicy, MemcachedBackend};

use common::{TestServer, client};
use faults::{BOUND, ChildServer, Endpoint, Expect, Partition, Probe, ServerSpec, until_limited};

/// `memcached` in the foreground (no `-d`, so that it can be killed) on a loopback port,
/// with 64 MB of memory.
static MEMCACHED: ServerSpec = ServerSpec {
    name: "Memcached",
    program: "memcached",
    version_arg: "-V",
    args: |port| {
        [
            "-u",
            "root",
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-m",
            "64",
        ]
        .map(str::to_owned)
        .to_vec()
    },
    probe: Probe {
        request: b"version\r\n",
        reply: b"VERSION",
    },
};

/// The example's `GET /api/data`: 5 per 10 s.
const DATA: Endpoint = Endpoint {
    path: "/api/data",
    limit: 5,
    window_secs: 10,
};

fn url(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// The example's app on the example's backend (the server at `port`, in `namespace`),
/// answering memcached failures with `policy`.
fn example_app(port: u16, namespace: &str, policy: FailurePolicy) -> axum::Router {
    let backend = memcached_example::backend(&url(port), namespace, policy).expect("backend");
    memcached_example::app(Traffik::new(backend))
}

/// `GET /api/data` once, timed.
async fn get(client: &reqwest::Client, server: &TestServer) -> faults::Answer {
    faults::get(client, server, DATA.path).await
}

/// Memcached killed mid-traffic, then restarted on the same port, under one policy.
async fn killed_mid_traffic_then_restarted(expect: Expect) {
    faults::killed_mid_traffic_then_restarted(
        &MEMCACHED,
        &DATA,
        |memcached, policy| example_app(memcached.port, "myapp", policy),
        expect,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_killed_mid_traffic_allow_answers_200_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_killed_mid_traffic_throttle_answers_429_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn memcached_killed_mid_traffic_raise_answers_503_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Unavailable).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_answered_within_the_timeout() {
    faults::silence_answered_by_each_policy(DATA.path, |port, policy| {
        example_app(port, "silent", policy)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_without_closing_is_made_again() {
    let Some(memcached) = ChildServer::start(&MEMCACHED).await else {
        return;
    };
    let partition = Partition::start(memcached.port).await;
    let server = TestServer::start(example_app(partition.port, "cut", FailurePolicy::Raise)).await;
    let client = client();
    faults::answers_through_a_cut(&partition, &client, &server, DATA.path).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_answered_by_the_policy_then_recovers() {
    let Some(memcached) = ChildServer::start(&MEMCACHED).await else {
        return;
    };
    let partition = Partition::start(memcached.port).await;
    let client = client();
    for expect in [Expect::Unavailable, Expect::Allowed, Expect::FailClosed] {
        // A pool of one connection, whose own wait for a free connection (5 s) is far
        // longer than a decision may take: only the decision timeout bounds the wait.
        let backend = MemcachedBackend::builder(format!("exhausted-{expect:?}"))
            .url(url(partition.port))
            .pool_size(1)
            .connect_timeout(Duration::from_secs(5))
            .on_error(expect.policy())
            .build()
            .expect("backend");
        let server = TestServer::start(memcached_example::app(Traffik::new(backend.clone()))).await;

        // The pool's only connection is held elsewhere, by a call that never returns: a
        // read on a connection the partition leaves unanswered.
        partition.cut();
        let before = partition.accepted();
        let holder = tokio::spawn({
            let backend = backend.clone();
            async move {
                let _ = backend.get("held").await;
            }
        });
        // Wait (200 tries, 10 ms apart) until the holder has made its connection.
        for _ in 0..200 {
            if partition.accepted() > before {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(partition.accepted(), before + 1, "the holder connected");

        // Twenty at once, all waiting for the pool: each answered by the policy in time.
        let burst = (0..20).map(|_| get(&client, &server));
        for answer in futures_util::future::join_all(burst).await {
            assert!(answer.elapsed <= BOUND, "too slow: {expect:?}: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
            if let Expect::Unavailable = expect {
                assert!(
                    answer.body.contains("did not answer within"),
                    "the decision timeout answered: {answer:?}"
                );
            }
        }
        // No request got a connection of its own: the pool was exhausted.
        assert_eq!(partition.accepted(), before + 1, "a pool of one");

        // The holder gives up (its connection, abandoned mid-command, is not reused) and
        // the network heals: the same app decides for real again.
        holder.abort();
        assert!(holder.await.is_err_and(|error| error.is_cancelled()));
        partition.heal();
        let answers = until_limited(&client, &server, &DATA, 100).await;
        assert!(
            answers.iter().any(|answer| answer.status == StatusCode::OK),
            "{expect:?}: {answers:#?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_limits_on_its_fallback_while_memcached_is_down() {
    let Some(mut memcached) = ChildServer::start(&MEMCACHED).await else {
        return;
    };
    let backend = memcached_example::backend(&url(memcached.port), "myapp", FailurePolicy::Raise)
        .expect("backend");
    faults::breaker_decides_on_its_fallback_while_down(
        &mut memcached,
        &DATA,
        backend,
        memcached_example::app,
    )
    .await;
}

#![cfg(feature = "redis")]
//! A pipeline waits for the one before it on the connection: the decisions made while
//! Redis works on one go out together in the next. A test binary of its own: it keeps
//! Redis busy for a moment, which would slow the tests of a binary running beside it.

mod redis_support;

use std::time::Duration;

use deadpool_redis::redis;
use tokio::task::JoinHandle;
use traffik_core::{Backend, Decision, FixedWindow, Rate, RedisBackend};

/// Keeps Redis busy for `ARGV[1]` microseconds of its own clock.
const BUSY: &str = r"
local function micros()
    local t = redis.call('TIME')
    return tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local start = micros()
while micros() - start < tonumber(ARGV[1]) do end
return 1
";

/// One test at a time: each keeps Redis busy, and two at once would add up past the
/// connection's own response timeout.
async fn alone() -> tokio::sync::MutexGuard<'static, ()> {
    static ONE: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    ONE.lock().await
}

/// The rate of every decision here: far from denying any.
fn rate() -> Rate {
    "100/h".parse().unwrap()
}

/// A backend of its own for `test`, connected, with its batching task.
async fn connected(test: &str) -> RedisBackend {
    let backend =
        RedisBackend::from_url(redis_support::url(), redis_support::namespace("rpw", test))
            .unwrap();
    assert!(
        backend
            .decide("{warm}", &FixedWindow, &rate(), 1)
            .await
            .unwrap()
            .allowed
    );
    backend
}

/// A decision for `key`, made in a task of its own.
fn spawn_decision(
    backend: &RedisBackend,
    key: String,
) -> JoinHandle<traffik_core::Result<Decision>> {
    let backend = backend.clone();
    tokio::spawn(async move { backend.decide(&key, &FixedWindow, &rate(), 1).await })
}

/// Waits for every decision, each of which must allow.
async fn assert_all_allowed(decisions: Vec<JoinHandle<traffik_core::Result<Decision>>>) {
    for decision in decisions {
        assert!(decision.await.unwrap().unwrap().allowed);
    }
}

/// Keeps Redis busy for `micros`, on a connection of the test's own; returns once the
/// script has had 50 ms to start.
async fn keep_busy(micros: u64) -> tokio::task::JoinHandle<redis::RedisResult<i64>> {
    let mut conn = redis_support::raw().await;
    let busy = tokio::spawn(async move {
        redis::cmd("EVAL")
            .arg(BUSY)
            .arg(0)
            .arg(micros)
            .query_async::<i64>(&mut conn)
            .await
    });
    tokio::time::sleep(Duration::from_millis(50)).await;
    busy
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_made_while_a_pipeline_is_unanswered_go_out_together_in_the_next() {
    if redis_support::skip() {
        return;
    }
    let _alone = alone().await;
    let backend = connected("next").await;
    let before = backend.pipelined();
    let busy = keep_busy(300_000).await;
    // The first decision goes out and waits behind the busy script; nine follow, one at
    // a time, while it does. Sent as they came, the ten would take ten pipelines.
    let mut decisions = Vec::new();
    for i in 0..10 {
        decisions.push(spawn_decision(&backend, format!("{{next-{i}}}")));
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_all_allowed(decisions).await;
    assert_eq!(busy.await.unwrap().unwrap(), 1);
    let after = backend.pipelined();
    assert_eq!(after.commands - before.commands, 10);
    assert_eq!(
        after.pipelines - before.pipelines,
        2,
        "{before:?} then {after:?}"
    );
    backend.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_decisions_gathered_go_without_waiting_for_the_pipeline_before() {
    if redis_support::skip() {
        return;
    }
    let _alone = alone().await;
    let backend = connected("early").await;
    let before = backend.pipelined();
    let busy = keep_busy(300_000).await;
    // The first decision goes out and waits behind the busy script.
    let mut decisions = vec![spawn_decision(&backend, "{early-first}".into())];
    tokio::time::sleep(Duration::from_millis(20)).await;
    // Sixteen more, at once: gathered, they go without waiting for the first's pipeline.
    decisions.extend((0..16).map(|i| spawn_decision(&backend, format!("{{early-{i}}}"))));
    tokio::time::sleep(Duration::from_millis(50)).await;
    let meanwhile = backend.pipelined();
    assert!(
        !busy.is_finished(),
        "the busy script ended before the check"
    );
    assert_eq!(
        meanwhile.pipelines - before.pipelines,
        2,
        "{before:?} then {meanwhile:?}"
    );
    assert_all_allowed(decisions).await;
    assert_eq!(busy.await.unwrap().unwrap(), 1);
    let after = backend.pipelined();
    assert_eq!(after.commands - before.commands, 17);
    assert_eq!(after.pipelines - before.pipelines, 2);
    backend.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_waiting_for_the_pipeline_before_it_is_answered_by_its_deadline() {
    if redis_support::skip() {
        return;
    }
    let _alone = alone().await;
    let backend = connected("deadline").await;
    let busy = keep_busy(400_000).await;
    // A command with no deadline of its own goes out and waits behind the busy script.
    let waiting = backend.clone();
    let slow = tokio::spawn(async move { waiting.increment("{slow}", 1).await });
    tokio::time::sleep(Duration::from_millis(20)).await;
    // A throttle's decision, given 100 ms, waits for that pipeline no longer than that.
    let started = tokio::time::Instant::now();
    let decided = backend
        .decide_within(
            "{bounded}",
            &FixedWindow,
            &rate(),
            1,
            Duration::from_millis(100),
        )
        .await;
    let waited = started.elapsed();
    assert!(decided.is_err(), "{decided:?}");
    assert!(
        waited < Duration::from_millis(250),
        "answered after {waited:?}, the busy script's end"
    );
    assert_eq!(slow.await.unwrap().unwrap(), 1);
    assert_eq!(busy.await.unwrap().unwrap(), 1);
    backend.reset().await.unwrap();
}

#![cfg(feature = "redis")]
//! The Redis backend beyond the conformance suite: exact admission under concurrency,
//! limits shared across backends (processes), locks, reset, close, script reloading, the
//! generic path, the denial cache and the server clock.

mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_redis::redis;
use redis_support::raw;
use traffik_core::backend::Pipelined;
use traffik_core::key::KeyText;
use traffik_core::{
    Algorithm, Backend, Error, FixedWindow, Gcra, InMemoryBackend, LeakyBucketWithQueue,
    LockOptions, ManualClock, Rate, RedisBackend, SlidingWindowCounter, SlidingWindowLog, Throttle,
    TokenBucket,
};

const START: u64 = 1_700_000_000_000_000;

fn namespace(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "rb-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn backend(ns: &str) -> RedisBackend {
    RedisBackend::from_url(redis_support::url(), ns).unwrap()
}

fn manual(ns: &str, clock: &ManualClock) -> RedisBackend {
    RedisBackend::builder(ns)
        .url(redis_support::url())
        .clock(clock.clone())
        .build()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_hits_admit_exactly_one_hundred() {
    if redis_support::skip() {
        return;
    }
    let rate: Rate = "100/h".parse().unwrap();
    let algorithms: Vec<Arc<dyn Algorithm>> = vec![
        Arc::new(FixedWindow),
        Arc::new(SlidingWindowLog),
        Arc::new(SlidingWindowCounter),
        Arc::new(TokenBucket::new()),
        Arc::new(LeakyBucketWithQueue::new()),
        Arc::new(Gcra::new()),
    ];
    for algorithm in algorithms {
        let ns = namespace("conc");
        // Two backends with their own pools: two processes sharing one limit.
        let backends = [backend(&ns), backend(&ns)];
        let admitted = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let b = backends[i % 2].clone();
                let (algorithm, admitted) = (algorithm.clone(), admitted.clone());
                tokio::spawn(async move {
                    let d = b
                        .decide("{hot:client}", algorithm.as_ref(), &rate, 1)
                        .await
                        .unwrap();
                    if d.allowed {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "{algorithm:?}");
        backends[0].reset().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_contention_is_mutually_exclusive() {
    if redis_support::skip() {
        return;
    }
    let ns = namespace("lockc");
    let b = backend(&ns);
    let inside = Arc::new(AtomicU64::new(0));
    let entered = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..20)
        .map(|_| {
            let (b, inside, entered) = (b.clone(), inside.clone(), entered.clone());
            tokio::spawn(async move {
                let opts =
                    LockOptions::new(Duration::from_secs(10)).blocking(Duration::from_secs(20));
                let lock = b.lock("critical", opts).await.unwrap();
                assert_eq!(
                    inside.fetch_add(1, Ordering::SeqCst),
                    0,
                    "two holders at once"
                );
                tokio::task::yield_now().await;
                inside.fetch_sub(1, Ordering::SeqCst);
                entered.fetch_add(1, Ordering::SeqCst);
                assert!(lock.release().await.unwrap());
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(entered.load(Ordering::SeqCst), 20);
    let exists: i64 = redis::cmd("EXISTS")
        .arg(b.redis_key("critical"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert_eq!(exists, 0, "no key left behind");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_holder_expires_and_its_token_is_refused() {
    if redis_support::skip() {
        return;
    }
    let clock = ManualClock::new(START);
    let ns = namespace("lockd");
    let b = manual(&ns, &clock);
    let opts = LockOptions::new(Duration::from_secs(2));
    let dead = b.lock("l", opts).await.unwrap();
    assert!(matches!(
        b.lock("l", opts).await,
        Err(Error::LockTimeout { .. })
    ));
    clock.advance(Duration::from_secs(2));
    let next = b.lock("l", opts).await.unwrap();
    assert!(
        !dead.release().await.unwrap(),
        "the dead holder's token is refused"
    );
    assert_eq!(
        b.get("l").await.unwrap().as_deref(),
        Some(next.token().as_bytes())
    );
    assert!(next.release().await.unwrap());
    let exists: i64 = redis::cmd("EXISTS")
        .arg(b.redis_key("l"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert_eq!(exists, 0);
    // Real TTL on the server clock: the lock key carries one.
    let s = backend(&ns);
    let held = s
        .lock("real", LockOptions::new(Duration::from_secs(30)))
        .await
        .unwrap();
    let pttl: i64 = redis::cmd("PTTL")
        .arg(s.redis_key("real"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(pttl > 0 && pttl <= 30_000, "{pttl}");
    held.release().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_written_key_has_a_ttl() {
    if redis_support::skip() {
        return;
    }
    let ns = namespace("ttl");
    let b = backend(&ns);
    let rate: Rate = "3/m".parse().unwrap();
    b.decide("{c}:fw", &FixedWindow, &rate, 1).await.unwrap();
    b.decide("{c}:swl", &SlidingWindowLog, &rate, 1)
        .await
        .unwrap();
    b.decide("{c}:swc", &SlidingWindowCounter, &rate, 1)
        .await
        .unwrap();
    b.decide("{c}:tb", &TokenBucket::new(), &rate, 1)
        .await
        .unwrap();
    b.decide("{c}:gcra", &Gcra::new(), &rate, 1).await.unwrap();
    b.increment_with_ttl("counter", 1, Duration::from_secs(5))
        .await
        .unwrap();
    let mut conn = raw().await;
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(keys.len(), 6, "{keys:?}");
    for key in keys {
        let pttl: i64 = redis::cmd("PTTL")
            .arg(&key)
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(pttl > 0, "{key} has no TTL");
    }
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_scans_in_batches_and_spares_other_namespaces() {
    if redis_support::skip() {
        return;
    }
    let ns = namespace("reset");
    let mine = backend(&ns);
    let other = backend(&format!("{ns}x"));
    let mut pipe = redis::pipe();
    for i in 0..1_234 {
        pipe.cmd("SET")
            .arg(mine.redis_key(&format!("k{i}")))
            .arg(i)
            .arg("EX")
            .arg(600)
            .ignore();
    }
    let () = pipe.query_async(&mut raw().await).await.unwrap();
    other
        .set("k1", b"keep", Some(Duration::from_secs(600)))
        .await
        .unwrap();
    mine.reset().await.unwrap();
    let left: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{ns}:*"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(left.is_empty(), "{} left", left.len());
    assert_eq!(
        other.get("k1").await.unwrap().as_deref(),
        Some(&b"keep"[..])
    );
    other.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn close_clears_unless_persistent_and_initialize_reopens() {
    if redis_support::skip() {
        return;
    }
    let ns = namespace("close");
    let b = backend(&ns);
    b.set("k", b"v", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    b.close().await.unwrap();
    assert!(matches!(b.get("k").await, Err(Error::Closed(_))));
    b.initialize().await.unwrap();
    assert_eq!(b.get("k").await.unwrap(), None);

    let p = RedisBackend::builder(&ns)
        .url(redis_support::url())
        .persistent(true)
        .build()
        .unwrap();
    p.set("k", b"v", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    p.close().await.unwrap();
    p.initialize().await.unwrap();
    assert_eq!(p.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
    p.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_reload_after_script_flush() {
    if redis_support::skip() {
        return;
    }
    let b = RedisBackend::builder(namespace("flush"))
        .url(redis_support::url())
        .functions(false)
        .build()
        .unwrap();
    let rate: Rate = "2/m".parse().unwrap();
    assert!(redis_support::admits(&b, "{c}", &rate).await);
    let () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    assert!(redis_support::admits(&b, "{c}", &rate).await);
    assert!(!redis_support::admits(&b, "{c}", &rate).await);
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_range_configurations_take_the_generic_path() {
    if redis_support::skip() {
        return;
    }
    // limit × period far beyond 2^53 µs: no script can compute it exactly.
    let rate = Rate::new(1 << 40, Duration::from_secs(7 * 86_400)).unwrap();
    let clock = ManualClock::new(START);
    let ns = namespace("generic");
    let b = manual(&ns, &clock);
    let m = InMemoryBackend::builder(&ns).clock(clock.clone()).build();
    for algorithm in [
        &FixedWindow as &dyn Algorithm,
        &TokenBucket::new(),
        &Gcra::new(),
    ] {
        for cost in [1 << 39, 1 << 39, 1, 5] {
            // Results, errors included (a state too large for its format is one).
            let expected = m.decide("{k}", algorithm, &rate, cost).await;
            let actual = b.decide("{k}", algorithm, &rate, cost).await;
            assert_eq!(actual, expected, "{algorithm:?}");
            clock.advance(Duration::from_secs(1));
        }
    }
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cached_denials_skip_redis_until_they_end() {
    if redis_support::skip() {
        return;
    }
    let clock = ManualClock::new(START);
    let ns = namespace("cache");
    let b = RedisBackend::builder(&ns)
        .url(redis_support::url())
        .clock(clock.clone())
        .cache_denials(true)
        .build()
        .unwrap();
    let rate: Rate = "1/10s".parse().unwrap();
    assert!(
        b.decide("{c}", &TokenBucket::new(), &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    let denied = b
        .decide("{c}", &TokenBucket::new(), &rate, 1)
        .await
        .unwrap();
    assert!(!denied.allowed);
    // Clear Redis behind the backend's back: a cached denial does not ask it.
    let () = redis::cmd("DEL")
        .arg(b.redis_key("{c}"))
        .query_async(&mut raw().await)
        .await
        .unwrap();
    clock.advance(Duration::from_secs(4));
    // Answered in place: the future is ready when built, so no task waits on it.
    let cached = b
        .decide("{c}", &TokenBucket::new(), &rate, 1)
        .into_ready()
        .unwrap_or_else(|_| panic!("a cached denial is answered in place"))
        .unwrap();
    assert!(!cached.allowed);
    assert_eq!(cached.wait, denied.wait - Duration::from_secs(4));
    // Another strategy or rate on the same key is not answered from the cache, nor in
    // place.
    assert!(
        b.decide("{c}", &Gcra::new(), &rate, 1)
            .into_ready()
            .is_err()
    );
    assert!(
        b.decide("{c}", &Gcra::new(), &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    // Once the denial ends, Redis decides again.
    clock.advance(cached.wait);
    assert!(
        b.decide("{c}", &TokenBucket::new(), &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttle_answers_a_cached_denial_without_awaiting() {
    if redis_support::skip() {
        return;
    }
    let clock = ManualClock::new(START);
    let cached = RedisBackend::builder(namespace("at-once"))
        .url(redis_support::url())
        .clock(clock.clone())
        .cache_denials(true)
        .build()
        .unwrap();
    let uncached = manual(&namespace("at-once"), &clock);
    let throttle = Throttle::new("api", "2/m").unwrap();
    let scope = ["http:GET:", "/items"];
    assert!(throttle.may_decide_at_once(&cached));
    assert!(!throttle.may_decide_at_once(&uncached));
    for backend in [&cached, &uncached] {
        // Nothing remembered yet: not decided at once, and the key is left written for
        // the awaited decision, which does not write it again.
        for _ in 0..2 {
            let mut key = KeyText::new();
            let at_once = throttle.try_hit_at_once_joined("10.0.0.1", &scope, 1, backend, &mut key);
            assert!(at_once.is_none());
            if backend.may_decide_at_once() {
                assert_eq!(key.as_str(), "{api:10.0.0.1}:http:GET:/items");
            } else {
                assert!(key.is_empty());
            }
            let decided = throttle
                .hit_client_keyed("10.0.0.1", &scope, 1, backend, &mut key)
                .await
                .unwrap();
            assert!(decided.allowed);
        }
        let mut key = KeyText::new();
        let denied = throttle
            .hit_client_keyed("10.0.0.1", &scope, 1, backend, &mut key)
            .await
            .unwrap();
        assert!(!denied.allowed);
        // The denial is remembered by the caching backend only: answered at once there,
        // with the wait that has passed taken off.
        clock.advance(Duration::from_secs(1));
        let mut key = KeyText::new();
        let again = throttle.try_hit_at_once_joined("10.0.0.1", &scope, 1, backend, &mut key);
        if backend.may_decide_at_once() {
            let again = again
                .expect("a remembered denial is answered at once")
                .unwrap();
            assert!(!again.allowed);
            assert_eq!(again.wait, denied.wait - Duration::from_secs(1));
            // Another client is not.
            let mut other = KeyText::new();
            assert!(
                throttle
                    .try_hit_at_once_joined("10.0.0.2", &scope, 1, backend, &mut other)
                    .is_none()
            );
        } else {
            assert!(again.is_none());
        }
        backend.reset().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_clock_judges_by_default() {
    if redis_support::skip() {
        return;
    }
    let b = backend(&namespace("time"));
    let (secs, micros): (u64, u64) = redis::cmd("TIME")
        .query_async(&mut raw().await)
        .await
        .unwrap();
    let server = secs * 1_000_000 + micros;
    let now = b.now().await.unwrap();
    assert!(now >= server && now - server < 5_000_000);
    let rate: Rate = "2/s".parse().unwrap();
    let peek = b.peek("{p}", &SlidingWindowLog, &rate).await.unwrap();
    assert_eq!(peek.remaining, 2);
    assert!(
        b.decide("{p}", &SlidingWindowLog, &rate, 2)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !b.peek("{p}", &SlidingWindowLog, &rate)
            .await
            .unwrap()
            .allowed
    );
    // A cost of 0 consumes nothing.
    assert!(
        b.decide("{p}", &SlidingWindowLog, &rate, 0)
            .await
            .unwrap()
            .allowed
    );
    b.reset().await.unwrap();
}

/// A backend whose connection is made (one decision on a key of its own), for tests that
/// count what the next decisions send.
async fn connected(test: &str, rate: &Rate) -> RedisBackend {
    let b = backend(&namespace(test));
    assert!(
        b.decide("{warm}", &FixedWindow, rate, 1)
            .await
            .unwrap()
            .allowed
    );
    b
}

/// What `b` sent in pipelines since it had sent `before`.
fn sent_since(b: &RedisBackend, before: Pipelined) -> Pipelined {
    let after = b.pipelined();
    Pipelined {
        commands: after.commands - before.commands,
        pipelines: after.pipelines - before.pipelines,
        calls: after.calls - before.calls,
    }
}

/// Decides each of `keys` on `b` with `algorithm` from a task of its own, all spawned at
/// once; the decisions, and what they took (commands, pipelines, calls).
async fn decided_together<A: Algorithm + Clone>(
    b: &RedisBackend,
    keys: Vec<String>,
    algorithm: A,
    rate: Rate,
) -> (Vec<traffik_core::Result<traffik_core::Decision>>, Pipelined) {
    let before = b.pipelined();
    let tasks: Vec<_> = keys
        .into_iter()
        .map(|key| {
            let (b, algorithm) = (b.clone(), algorithm.clone());
            tokio::spawn(async move { b.decide(&key, &algorithm, &rate, 1).await })
        })
        .collect();
    let mut decisions = Vec::new();
    for task in tasks {
        decisions.push(task.await.unwrap());
    }
    (decisions, sent_since(b, before))
}

/// [`decided_together`] with a token bucket: whether each was allowed.
async fn concurrent_decisions(
    b: &RedisBackend,
    keys: Vec<String>,
    rate: Rate,
) -> (Vec<traffik_core::Result<bool>>, Pipelined) {
    let (decisions, sent) = decided_together(b, keys, TokenBucket::new(), rate).await;
    let answers = decisions
        .into_iter()
        .map(|d| d.map(|d| d.allowed))
        .collect();
    (answers, sent)
}

#[tokio::test]
async fn decisions_made_together_go_out_in_one_pipeline() {
    if redis_support::skip() {
        return;
    }
    let rate: Rate = "3/h".parse().unwrap();
    let b = connected("pipe", &rate).await;
    // 40 clients, and one hot client four times over its limit of 3.
    let mut keys: Vec<String> = (0..40).map(|i| format!("{{client-{i}}}")).collect();
    keys.extend((0..12).map(|_| "{hot}".to_owned()));
    let (answers, sent) = concurrent_decisions(&b, keys, rate).await;
    let Pipelined {
        commands,
        pipelines,
        calls,
    } = sent;
    let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
    assert!(answers[..40].iter().all(|allowed| *allowed));
    assert_eq!(answers[40..].iter().filter(|allowed| **allowed).count(), 3);
    assert_eq!(
        commands, 52,
        "every decision went through the batching task"
    );
    // On one thread every task queues its decision before the batching task runs again.
    assert!(
        pipelines * 10 <= commands,
        "{commands} decisions took {pipelines} pipelines"
    );
    // And the decisions of a pipeline went as batch function calls of up to 64.
    assert!(
        calls <= pipelines * 2,
        "{commands} decisions in {pipelines} pipelines took {calls} calls"
    );
    b.reset().await.unwrap();
}

/// [`decided_together`] with a fixed window, every decision made.
async fn concurrent_fixed_window(
    b: &RedisBackend,
    keys: &[&str],
    rate: &Rate,
) -> (Vec<traffik_core::Decision>, Pipelined) {
    let keys = keys.iter().map(|key| (*key).to_owned()).collect();
    let (decisions, sent) = decided_together(b, keys, FixedWindow, *rate).await;
    (decisions.into_iter().map(Result::unwrap).collect(), sent)
}

#[tokio::test]
async fn a_batch_call_judges_each_call_by_its_own_clock() {
    if redis_support::skip() {
        return;
    }
    // 40 s into a minute of the manual clock: a window of a minute ends in 20 s, which
    // the server's clock would not say but by chance.
    let clock = ManualClock::new(START - START % 60_000_000 + 40_000_000);
    let b = manual(&namespace("batchclock"), &clock);
    let rate: Rate = "3/m".parse().unwrap();
    assert!(
        b.decide("{warm}", &FixedWindow, &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    let keys = ["{a}", "{b}", "{hot}", "{hot}", "{hot}", "{hot}", "{c}"];
    let (decisions, sent) = concurrent_fixed_window(&b, &keys, &rate).await;
    assert!(sent.calls < sent.commands, "{sent:?}: no batch call");
    for decision in &decisions {
        assert_eq!(decision.reset, Duration::from_secs(20));
    }
    let allowed: Vec<bool> = decisions.iter().map(|d| d.allowed).collect();
    assert_eq!(allowed, [true, true, true, true, true, false, true]);
    b.reset().await.unwrap();
}

#[tokio::test]
async fn a_batch_call_reads_the_server_clock_once_for_all_its_calls() {
    if redis_support::skip() {
        return;
    }
    let b = backend(&namespace("batchtime"));
    let rate: Rate = "5/s".parse().unwrap();
    assert!(
        b.decide("{warm}", &FixedWindow, &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    let keys: Vec<String> = (0..20).map(|i| format!("{{t-{i}}}")).collect();
    let keys: Vec<&str> = keys.iter().map(String::as_str).collect();
    let (decisions, sent) = concurrent_fixed_window(&b, &keys, &rate).await;
    assert!(sent.calls < sent.commands, "{sent:?}: no batch call");
    // One call, one time: every window ends at the same moment from where it was read.
    // Calls of other batches (at most a few) read their own.
    let mut resets: Vec<Duration> = decisions.iter().map(|d| d.reset).collect();
    resets.sort();
    resets.dedup();
    assert!(
        resets.len() as u64 <= sent.calls,
        "{} distinct times for {} calls",
        resets.len(),
        sent.calls
    );
    b.reset().await.unwrap();
}

#[tokio::test]
async fn calls_of_different_throttles_in_one_batch_call_get_their_own_answers() {
    if redis_support::skip() {
        return;
    }
    let two: Rate = "2/h".parse().unwrap();
    let five: Rate = "5/h".parse().unwrap();
    let b = connected("batchmix", &two).await;
    let before = b.pipelined();
    // Runs of one throttle, of the other, and of both strategies, interleaved.
    let plan: Vec<(usize, Rate, bool)> = (0..24)
        .map(|i| (i, if i % 3 == 0 { two } else { five }, i % 5 == 0))
        .collect();
    let tasks: Vec<_> = plan
        .iter()
        .map(|&(i, rate, gcra)| {
            let b = b.clone();
            tokio::spawn(async move {
                let key = format!("{{mix-{i}}}");
                if gcra {
                    b.decide(&key, &Gcra::new(), &rate, 1).await
                } else {
                    b.decide(&key, &FixedWindow, &rate, 1).await
                }
            })
        })
        .collect();
    for ((i, rate, _), task) in plan.iter().zip(tasks) {
        let decision = task.await.unwrap().unwrap();
        assert!(decision.allowed, "call {i}");
        assert_eq!(decision.limit, rate.limit(), "call {i}");
        assert_eq!(decision.remaining, rate.limit() - 1, "call {i}");
    }
    let sent = sent_since(&b, before);
    assert!(sent.calls < sent.commands, "{sent:?}: no batch call");
    b.reset().await.unwrap();
}

/// Eleven decisions (a token bucket) from tasks of their own, the sixth on a key holding
/// a list; with `forget_code`, the function library and the script cache deleted first,
/// so that every decision finds its function missing (or `NOSCRIPT`) before its answer.
async fn one_bad_key_among_ten(
    test: &str,
    forget_code: bool,
) -> (RedisBackend, Vec<traffik_core::Result<bool>>, Pipelined) {
    let rate: Rate = "5/h".parse().unwrap();
    let b = connected(test, &rate).await;
    let mut conn = raw().await;
    let () = redis::cmd("RPUSH")
        .arg(b.redis_key("{bad}"))
        .arg("not a bucket")
        .query_async(&mut conn)
        .await
        .unwrap();
    if forget_code {
        redis_support::delete_function_libraries(&mut conn).await;
        let () = redis::cmd("SCRIPT")
            .arg("FLUSH")
            .query_async(&mut conn)
            .await
            .unwrap();
    }
    let mut keys: Vec<String> = (0..10).map(|i| format!("{{good-{i}}}")).collect();
    keys.insert(5, "{bad}".to_owned());
    let (answers, sent) = concurrent_decisions(&b, keys, rate).await;
    for (i, answer) in answers.iter().enumerate() {
        match answer {
            Err(Error::WrongType { key, .. }) if i == 5 => {
                assert_eq!(*key, b.redis_key("{bad}"))
            }
            Ok(true) if i != 5 => {}
            other => panic!("decision {i}: {other:?}"),
        }
    }
    (b, answers, sent)
}

#[tokio::test]
async fn more_calls_than_one_batch_call_runs_go_in_several() {
    if redis_support::skip() {
        return;
    }
    let rate: Rate = "2/h".parse().unwrap();
    let b = connected("batchsplit", &rate).await;
    // 150 decisions on 50 clients, three each: the third of each client is denied.
    let keys: Vec<String> = (0..150).map(|i| format!("{{split-{}}}", i % 50)).collect();
    let (answers, sent) = concurrent_decisions(&b, keys, rate).await;
    let answers: Vec<bool> = answers.into_iter().map(Result::unwrap).collect();
    assert_eq!(answers.iter().filter(|allowed| **allowed).count(), 100);
    for client in 0..50 {
        let own: Vec<bool> = (0..3).map(|round| answers[round * 50 + client]).collect();
        assert_eq!(own, [true, true, false], "client {client}");
    }
    // A batch call runs at most 64 calls: a pipeline of 150 takes at least three.
    assert!(
        sent.calls >= sent.commands.div_ceil(64) && sent.calls < sent.commands,
        "{sent:?}"
    );
    b.reset().await.unwrap();
}

#[tokio::test]
async fn a_bad_key_fails_alone_in_its_batch_call() {
    if redis_support::skip() {
        return;
    }
    let (b, _, sent) = one_bad_key_among_ten("batchbad", false).await;
    assert!(
        sent.calls < sent.commands,
        "{sent:?}: the decisions went one call each"
    );
    b.reset().await.unwrap();
}

#[tokio::test]
async fn a_bad_key_fails_alone_in_its_pipeline() {
    if redis_support::skip() {
        return;
    }
    let (b, _, sent) = one_bad_key_among_ten("pipebad", true).await;
    assert!(
        sent.pipelines < sent.commands,
        "{sent:?}: the decisions went one pipeline each"
    );
    b.reset().await.unwrap();
}

#[test]
fn a_backend_outlives_the_runtime_that_first_used_it() {
    if redis_support::skip() {
        return;
    }
    let b = backend(&namespace("runtimes"));
    let rate: Rate = "2/h".parse().unwrap();
    let decide = |b: &RedisBackend| {
        // A runtime of its own each time: the connection and the batching task made on
        // the first end with it.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(b.decide("{c}", &FixedWindow, &rate, 1))
    };
    assert!(decide(&b).unwrap().allowed);
    let mut answers = Vec::new();
    for _ in 0..3 {
        answers.push(decide(&b));
    }
    // At most one decision may see the dead connection; then a new one is made, and
    // the state kept in Redis carries on.
    let decided: Vec<bool> = answers
        .into_iter()
        .filter_map(|answer| answer.ok().map(|d| d.allowed))
        .collect();
    assert!(decided.len() >= 2, "{decided:?}");
    assert_eq!(decided.last(), Some(&false));
    assert!(decided.iter().filter(|allowed| **allowed).count() <= 1);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    // Other commands see a dead connection once too, then connect again.
    if runtime.block_on(b.reset()).is_err() {
        runtime.block_on(b.reset()).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn window_states_keep_the_expiry_of_their_window() {
    if redis_support::skip() {
        return;
    }
    // A whole number of minutes: the window [start, start + 1 min).
    let start = START - START % 60_000_000;
    let clock = ManualClock::new(start);
    let ns = namespace("keepttl");
    let b = manual(&ns, &clock);
    let rate: Rate = "100/m".parse().unwrap();
    let mut conn = raw().await;
    let minute_ms = 60_000;
    // Decides at `at` (µs after START), then reads the state's expiry (ms, real time).
    let mut expiry_after = async |algorithm: &dyn Algorithm, key: &str, state: &str, at: u64| {
        clock.set(start + at);
        assert!(b.decide(key, algorithm, &rate, 1).await.unwrap().allowed);
        let at: i64 = redis::cmd("PEXPIRETIME")
            .arg(b.redis_key(state))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert!(at > 0, "{state} has no expiry");
        at
    };
    let window = (start / 60_000_000).to_string();
    let next = (start / 60_000_000 + 1).to_string();

    // Fixed window: the state of a window lives until the window ends, whenever it was
    // last written.
    let first = expiry_after(&FixedWindow, "{fw}", &format!("{{fw}}:{window}"), 1_000).await;
    let later = expiry_after(
        &FixedWindow,
        "{fw}",
        &format!("{{fw}}:{window}"),
        40_000_000,
    )
    .await;
    assert_eq!(later, first);
    let moved = expiry_after(&FixedWindow, "{fw}", &format!("{{fw}}:{next}"), 61_000_000).await;
    assert_eq!(moved - first, minute_ms);

    // Sliding window counter: a state written in a window lives until the end of the
    // next one; a request in the next window carries it forward a window further.
    let first = expiry_after(&SlidingWindowCounter, "{swc}", "{swc}", 1_000).await;
    let later = expiry_after(&SlidingWindowCounter, "{swc}", "{swc}", 40_000_000).await;
    assert_eq!(later, first);
    let moved = expiry_after(&SlidingWindowCounter, "{swc}", "{swc}", 61_000_000).await;
    assert_eq!(moved - first, minute_ms);
    // The previous window's requests still count there.
    let peek = b.peek("{swc}", &SlidingWindowCounter, &rate).await.unwrap();
    assert!(peek.remaining < 99, "{peek:?}");
    b.reset().await.unwrap();
}

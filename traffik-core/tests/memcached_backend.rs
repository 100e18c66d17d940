#![cfg(feature = "memcached")]
//! The Memcached backend on a real server and the real clock: the `ma` fast path, exact
//! limits under concurrency for every strategy, sharing between backends, namespaces and
//! generations, hostile identities, corrupt state, pooled connections.

mod memcached_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use memcached_support::{raw_get, raw_set, skip, url};
use traffik_core::strategy::state_key;
use traffik_core::{
    Algorithm, Backend, Error, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, LockOptions,
    MemcachedBackend, Rate, SlidingWindowCounter, SlidingWindowLog, Throttle, TokenBucket,
    TokenBucketWithDebt,
};

fn namespace(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "mc-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn backend(namespace: &str) -> MemcachedBackend {
    MemcachedBackend::builder(namespace)
        .url(url())
        .build()
        .expect("memcached backend")
}

/// Every strategy with how many of a burst it admits at once under "100/h" (so that
/// nothing refills while the test runs).
fn strategies() -> Vec<(Arc<dyn Algorithm>, u64)> {
    vec![
        (Arc::new(FixedWindow), 100),
        (Arc::new(SlidingWindowLog), 100),
        (Arc::new(SlidingWindowCounter), 100),
        (Arc::new(TokenBucket::new()), 100),
        (Arc::new(TokenBucketWithDebt::new()), 200),
        (Arc::new(LeakyBucket), 1),
        (Arc::new(LeakyBucketWithQueue::new()), 100),
        (Arc::new(Gcra::new()), 100),
    ]
}

/// Runs `tasks` concurrent decisions of `cost` on `key` and counts the admitted ones.
async fn admitted(
    backends: &[MemcachedBackend],
    algorithm: &Arc<dyn Algorithm>,
    rate: Rate,
    tasks: usize,
    cost: u64,
) -> u64 {
    let count = Arc::new(AtomicU64::new(0));
    let handles: Vec<_> = (0..tasks)
        .map(|i| {
            let backend = backends[i % backends.len()].clone();
            let (algorithm, count) = (algorithm.clone(), count.clone());
            tokio::spawn(async move {
                let decision = backend
                    .decide("{hot}", algorithm.as_ref(), &rate, cost)
                    .await
                    .expect("decision");
                if decision.allowed {
                    count.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for handle in handles {
        handle.await.expect("task");
    }
    count.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_admit_exactly_the_limit_for_every_strategy() {
    if skip() {
        return;
    }
    let rate: Rate = "100/h".parse().unwrap();
    for (algorithm, burst) in strategies() {
        let b = backend(&namespace("exact"));
        let got = admitted(&[b], &algorithm, rate, (burst as usize) + 50, 1).await;
        assert_eq!(got, burst, "{algorithm:?}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fixed_window_costs_above_one_are_exact_too() {
    if skip() {
        return;
    }
    // Cost 2 takes the compare-and-swap path over the same decimal counter as `ma`.
    let rate: Rate = "100/h".parse().unwrap();
    let algorithm: Arc<dyn Algorithm> = Arc::new(FixedWindow);
    let b = backend(&namespace("cost2"));
    assert_eq!(
        admitted(std::slice::from_ref(&b), &algorithm, rate, 60, 2).await,
        50
    );
    // The counter is full: a request of cost 1 (the `ma` path) is denied and reports the
    // wait until the window's end.
    let denied = b.decide("{hot}", &FixedWindow, &rate, 1).await.unwrap();
    assert!(!denied.allowed);
    assert_eq!(denied.remaining, 0);
    assert!(denied.wait > Duration::ZERO && denied.wait <= Duration::from_secs(3600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_backends_on_one_server_share_a_limit() {
    if skip() {
        return;
    }
    let rate: Rate = "100/h".parse().unwrap();
    for (algorithm, burst) in strategies() {
        let name = namespace("shared");
        let pair = [backend(&name), backend(&name)];
        let got = admitted(&pair, &algorithm, rate, (burst as usize) + 50, 1).await;
        assert_eq!(got, burst, "{algorithm:?}");
    }
}

#[tokio::test]
async fn namespaces_isolate_and_reset_moves_to_a_new_generation() {
    if skip() {
        return;
    }
    let rate: Rate = "2/h".parse().unwrap();
    let name = namespace("gen");
    let a = backend(&name);
    // Another process on the same namespace, reading the generation on every call.
    let b = MemcachedBackend::builder(&name)
        .url(url())
        .generation_refresh(Duration::ZERO)
        .build()
        .unwrap();
    let other = backend(&format!("{name}-other"));
    for _ in 0..2 {
        assert!(a.decide("k", &FixedWindow, &rate, 1).await.unwrap().allowed);
        assert!(
            other
                .decide("k", &FixedWindow, &rate, 1)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(!b.decide("k", &FixedWindow, &rate, 1).await.unwrap().allowed);
    a.set("plain", b"v", None).await.unwrap();
    let old_key = a.memcached_key("plain").await.unwrap();

    a.reset().await.unwrap();
    let new_key = a.memcached_key("plain").await.unwrap();
    assert_ne!(
        old_key, new_key,
        "reset changes the generation in every key"
    );
    assert_eq!(a.get("plain").await.unwrap(), None);
    assert_eq!(
        b.get("plain").await.unwrap(),
        None,
        "seen by the other process"
    );
    assert!(b.decide("k", &FixedWindow, &rate, 1).await.unwrap().allowed);
    // The old generation's key is still on the server (it expires on its TTL) but out
    // of sight; the other namespace keeps its state.
    assert_eq!(raw_get(&old_key).await.as_deref(), Some(&b"v"[..]));
    assert!(
        !other
            .decide("k", &FixedWindow, &rate, 1)
            .await
            .unwrap()
            .allowed
    );
}

#[tokio::test]
async fn close_clears_unless_persistent() {
    if skip() {
        return;
    }
    let name = namespace("close");
    let volatile = backend(&name);
    volatile.set("k", b"v", None).await.unwrap();
    volatile.close().await.unwrap();
    assert!(matches!(volatile.get("k").await, Err(Error::Closed(_))));
    volatile.initialize().await.unwrap();
    assert_eq!(volatile.get("k").await.unwrap(), None);

    let kept = MemcachedBackend::builder(&name)
        .url(url())
        .persistent(true)
        .build()
        .unwrap();
    kept.set("k", b"v", None).await.unwrap();
    kept.close().await.unwrap();
    kept.initialize().await.unwrap();
    assert_eq!(kept.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
}

#[tokio::test]
async fn hostile_identities_limit_correctly_and_inject_nothing() {
    if skip() {
        return;
    }
    let b = backend(&namespace("hostile"));
    let throttle = Throttle::new("api", "2/h").unwrap();
    let long = "y".repeat(10_000);
    let identities = [
        "with space",
        "new\nline",
        "a\r\nms injected 1 T0\r\nX\r\nmn",
        "b\r\nset injected2 0 0 1\r\nX",
        "emoji 🚦",
        long.as_str(),
    ];
    for identity in identities {
        for _ in 0..2 {
            let decision = throttle.hit(&identity.into(), "GET", &b).await.unwrap();
            assert!(decision.allowed, "{identity:?}");
        }
        let decision = throttle.hit(&identity.into(), "GET", &b).await.unwrap();
        assert!(!decision.allowed, "{identity:?}");
    }
    // No command was smuggled in.
    assert_eq!(raw_get("injected").await, None);
    assert_eq!(raw_get("injected2").await, None);
    // Long identities with a common prefix stay apart.
    let sibling = format!("{}z", "y".repeat(9_999));
    let decision = throttle.hit(&sibling.into(), "GET", &b).await.unwrap();
    assert!(decision.allowed);
}

#[tokio::test]
async fn counters_use_memcached_arithmetic() {
    if skip() {
        return;
    }
    let b = backend(&namespace("ctr"));
    assert_eq!(b.increment("c", 3).await.unwrap(), 3);
    assert_eq!(b.increment("c", 4).await.unwrap(), 7);
    assert_eq!(b.decrement("c", 2).await.unwrap(), 5);
    assert_eq!(
        b.decrement("c", 9).await.unwrap(),
        0,
        "unsigned: stops at 0"
    );
    assert_eq!(b.get("c").await.unwrap().as_deref(), Some(&b"0"[..]));
    b.set("text", b"hello", None).await.unwrap();
    assert!(matches!(
        b.increment("text", 1).await,
        Err(Error::WrongType { .. })
    ));
    assert_eq!(
        b.increment_with_ttl("w", 2, Duration::from_secs(60))
            .await
            .unwrap(),
        2
    );
    // The connection that saw the error is still good (or was replaced).
    assert_eq!(b.increment("c", 1).await.unwrap(), 1);
}

#[tokio::test]
async fn locks_are_released_only_by_their_holder() {
    if skip() {
        return;
    }
    let b = backend(&namespace("lock"));
    let opts = LockOptions::new(Duration::from_secs(30));
    let held = b.lock("l", opts).await.unwrap();
    assert!(matches!(
        b.lock("l", opts).await,
        Err(Error::LockTimeout { .. })
    ));
    // Someone else's value at the lock key (the holder's lock was taken over): the
    // holder's release must not remove it.
    let key = b.memcached_key("l").await.unwrap();
    raw_set(&key, b"someone-else").await;
    assert!(!held.release().await.unwrap());
    assert_eq!(raw_get(&key).await.as_deref(), Some(&b"someone-else"[..]));
    b.delete("l").await.unwrap();
    let again = b.lock("l", opts).await.unwrap();
    assert!(again.release().await.unwrap());
    assert_eq!(b.get("l").await.unwrap(), None);
}

#[tokio::test]
async fn corrupt_state_is_replaced_by_fresh_state_for_every_strategy() {
    if skip() {
        return;
    }
    let rate: Rate = "5/h".parse().unwrap();
    let garbage: [&[u8]; 5] = [b"", b"\xF1", b"not a number", &[0xFF; 9], &[0xB1; 4096]];
    for (algorithm, _) in strategies() {
        for bytes in garbage {
            let b = backend(&namespace("corrupt"));
            let fresh = backend(&namespace("fresh"))
                .decide("k", algorithm.as_ref(), &rate, 1)
                .await
                .unwrap();
            let now = b.now().await.unwrap();
            let key = b
                .memcached_key(&state_key(algorithm.as_ref(), "k", now, &rate))
                .await
                .unwrap();
            raw_set(&key, bytes).await;
            let decision = b.decide("k", algorithm.as_ref(), &rate, 1).await.unwrap();
            assert!(decision.allowed, "{algorithm:?} on {bytes:?}");
            assert_eq!(
                decision.remaining, fresh.remaining,
                "{algorithm:?} on {bytes:?}"
            );
            assert!(b.peek("k", algorithm.as_ref(), &rate).await.is_ok());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_broken_mid_command_is_replaced() {
    if skip() {
        return;
    }
    // One connection: if the pool handed back the one a cancelled command left closed,
    // every later call would fail.
    let b = MemcachedBackend::builder(namespace("pool"))
        .url(url())
        .pool_size(1)
        .build()
        .unwrap();
    b.set("k", b"v", None).await.unwrap();
    let mut cancelled = 0;
    for _ in 0..200 {
        // Polled once (the command is sent; the reply usually not read yet), then
        // dropped: async-memcached closes a connection left in the middle of a command.
        let mut pending = Box::pin(b.get("k"));
        let was_pending = std::future::poll_fn(|cx| {
            std::task::Poll::Ready(pending.as_mut().poll(cx).is_pending())
        })
        .await;
        drop(pending);
        cancelled += usize::from(was_pending);
        assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"v"[..]));
        if cancelled == 10 {
            return;
        }
    }
    panic!("only {cancelled} of 200 commands were still waiting after one poll");
}

#[tokio::test]
async fn an_unreachable_server_is_a_backend_error_in_bounded_time() {
    // Nothing listens on port 1 of loopback: connecting fails at once.
    let b = MemcachedBackend::builder("down")
        .host("127.0.0.1", 1)
        .connect_timeout(Duration::from_millis(500))
        .build()
        .unwrap();
    let started = std::time::Instant::now();
    assert!(matches!(
        b.decide("k", &FixedWindow, &"1/s".parse().unwrap(), 1)
            .await,
        Err(Error::Backend(_))
    ));
    assert!(b.initialize().await.is_err());
    assert!(started.elapsed() < Duration::from_secs(5));
}

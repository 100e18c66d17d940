//! The backend conformance suite: one set of behaviours every backend must show.
//!
//! A backend's test file calls `conformance_tests!(factory)`, where
//! `factory(namespace, clock) -> SharedBackend` builds a fresh backend judging time by the
//! given manual clock. The macro expands to one `#[tokio::test]` per behaviour.

#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use traffik_core::strategy::Write;
use traffik_core::{
    Algorithm, Error, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, LockOptions,
    ManualClock, Rate, SharedBackend, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
    TokenBucketWithDebt,
};

pub const START: u64 = 1_700_000_000_000_000;

/// Builds a backend for a namespace, judging time by a manual clock.
pub trait Factory: Fn(&str, ManualClock) -> SharedBackend {}
impl<F: Fn(&str, ManualClock) -> SharedBackend> Factory for F {}

/// A unique namespace per test, so backends on a shared server never collide.
pub fn namespace(test: &str) -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    format!(
        "conf-{test}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

fn setup(factory: &impl Factory, test: &str) -> (ManualClock, SharedBackend) {
    let clock = ManualClock::new(START);
    let backend = factory(&namespace(test), clock.clone());
    (clock, backend)
}

pub async fn get_set_delete(factory: impl Factory) {
    let (_, b) = setup(&factory, "gsd");
    assert_eq!(b.get("missing").await.unwrap(), None);
    b.set("k", b"value", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"value"[..]));
    b.set("k", b"other", Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(b.get("k").await.unwrap().as_deref(), Some(&b"other"[..]));
    assert!(b.delete("k").await.unwrap());
    assert!(!b.delete("k").await.unwrap());
    assert_eq!(b.get("k").await.unwrap(), None);
    let binary: Vec<u8> = (0..=255).collect();
    b.set("bin", &binary, Some(Duration::from_secs(60)))
        .await
        .unwrap();
    assert_eq!(b.get("bin").await.unwrap(), Some(binary));
}

pub async fn values_expire(factory: impl Factory) {
    let (clock, b) = setup(&factory, "exp");
    b.set("k", b"v", Some(Duration::from_secs(10)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(9));
    assert!(b.get("k").await.unwrap().is_some());
    clock.advance(Duration::from_secs(1));
    assert_eq!(b.get("k").await.unwrap(), None);
}

pub async fn counters(factory: impl Factory) {
    let (clock, b) = setup(&factory, "ctr");
    assert_eq!(b.increment("c", 1).await.unwrap(), 1);
    assert_eq!(b.increment("c", 5).await.unwrap(), 6);
    assert_eq!(b.decrement("c", 2).await.unwrap(), 4);
    assert_eq!(b.get("c").await.unwrap().as_deref(), Some(&b"4"[..]));
    b.set("text", b"hello", None).await.unwrap();
    assert!(matches!(
        b.increment("text", 1).await,
        Err(Error::WrongType { .. })
    ));
    assert_eq!(b.get("text").await.unwrap().as_deref(), Some(&b"hello"[..]));

    // The TTL applies when the key is created; later increments keep it.
    assert_eq!(
        b.increment_with_ttl("w", 1, Duration::from_secs(10))
            .await
            .unwrap(),
        1
    );
    clock.advance(Duration::from_secs(6));
    assert_eq!(
        b.increment_with_ttl("w", 1, Duration::from_secs(10))
            .await
            .unwrap(),
        2
    );
    clock.advance(Duration::from_secs(4));
    assert_eq!(b.get("w").await.unwrap(), None);
    assert_eq!(
        b.increment_with_ttl("w", 1, Duration::from_secs(10))
            .await
            .unwrap(),
        1
    );
}

pub async fn update_is_read_modify_write(factory: impl Factory) {
    let (_, b) = setup(&factory, "upd");
    let mut seen = Vec::new();
    let mut put = |state: Option<&[u8]>| {
        seen.push(state.map(<[u8]>::to_vec));
        Write::Put {
            state: (&b"one"[..]).into(),
            ttl: Duration::from_secs(60),
        }
    };
    b.update("u", &mut put).await.unwrap();
    assert_eq!(seen.last(), Some(&None));
    let mut check = |state: Option<&[u8]>| {
        assert_eq!(state, Some(&b"one"[..]));
        Write::Delete
    };
    b.update("u", &mut check).await.unwrap();
    assert_eq!(b.get("u").await.unwrap(), None);
    let mut keep = |_: Option<&[u8]>| Write::Keep;
    b.update("u", &mut keep).await.unwrap();
    assert_eq!(b.get("u").await.unwrap(), None);
}

pub async fn concurrent_updates_lose_nothing(factory: impl Factory) {
    let (_, b) = setup(&factory, "rmw");
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let mut add_one = |state: Option<&[u8]>| {
                    let n = state
                        .and_then(|s| std::str::from_utf8(s).ok()?.parse::<u64>().ok())
                        .unwrap_or(0);
                    Write::Put {
                        state: (n + 1).to_string().as_bytes().into(),
                        ttl: Duration::from_secs(60),
                    }
                };
                b.update("n", &mut add_one).await.unwrap();
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(b.get("n").await.unwrap().as_deref(), Some(&b"50"[..]));
}

pub async fn locks(factory: impl Factory) {
    let (clock, b) = setup(&factory, "lock");
    let opts = LockOptions::new(Duration::from_secs(5));
    let held = b.lock("l", opts).await.unwrap();
    assert!(matches!(
        b.lock("l", opts).await,
        Err(Error::LockTimeout { .. })
    ));
    assert!(held.release().await.unwrap());
    assert_eq!(
        b.get("l").await.unwrap(),
        None,
        "a released lock leaves no key"
    );

    // A holder that died: its lock expires, and its late release cannot free the new
    // holder's lock.
    let dead = b.lock("l", opts).await.unwrap();
    clock.advance(Duration::from_secs(5));
    let next = b.lock("l", opts).await.unwrap();
    assert!(!dead.release().await.unwrap(), "a foreign token is refused");
    assert!(matches!(
        b.lock("l", opts).await,
        Err(Error::LockTimeout { .. })
    ));
    drop(next);
    tokio::task::yield_now().await;
    let again = b
        .lock("l", opts.blocking(Duration::from_secs(1)))
        .await
        .unwrap();
    assert!(again.release().await.unwrap());
}

pub async fn blocking_lock_waits_for_release(factory: impl Factory) {
    let (_, b) = setup(&factory, "block");
    let held = b
        .lock("l", LockOptions::new(Duration::from_secs(30)))
        .await
        .unwrap();
    let waiter = {
        let b = b.clone();
        tokio::spawn(async move {
            b.lock(
                "l",
                LockOptions::new(Duration::from_secs(30)).blocking(Duration::from_secs(10)),
            )
            .await
        })
    };
    tokio::task::yield_now().await;
    held.release().await.unwrap();
    let lock = waiter.await.unwrap().unwrap();
    lock.release().await.unwrap();
}

fn strategies() -> Vec<(Arc<dyn Algorithm>, u64)> {
    vec![
        (Arc::new(FixedWindow), 5),
        (Arc::new(SlidingWindowLog), 5),
        (Arc::new(SlidingWindowCounter), 5),
        (Arc::new(TokenBucket::new()), 5),
        (Arc::new(TokenBucketWithDebt::new()), 10),
        (Arc::new(LeakyBucket), 1),
        (Arc::new(LeakyBucketWithQueue::new()), 5),
        (Arc::new(Gcra::new()), 5),
    ]
}

pub async fn every_strategy_limits(factory: impl Factory) {
    let rate: Rate = "5/10s".parse().unwrap();
    for (algorithm, admitted) in strategies() {
        let (clock, b) = setup(&factory, "strat");
        for _ in 0..admitted {
            assert!(
                b.decide("client", algorithm.as_ref(), &rate, 1)
                    .await
                    .unwrap()
                    .allowed,
                "{algorithm:?}"
            );
        }
        let denied = b
            .decide("client", algorithm.as_ref(), &rate, 1)
            .await
            .unwrap();
        assert!(!denied.allowed, "{algorithm:?}");
        let peek = b.peek("client", algorithm.as_ref(), &rate).await.unwrap();
        assert_eq!(
            peek.wait, denied.wait,
            "{algorithm:?}: peek agrees with the denial"
        );
        clock.advance(denied.wait);
        assert!(
            b.decide("client", algorithm.as_ref(), &rate, 1)
                .await
                .unwrap()
                .allowed,
            "{algorithm:?}"
        );
        // Another client is untouched.
        assert!(
            b.decide("other", algorithm.as_ref(), &rate, 1)
                .await
                .unwrap()
                .allowed,
            "{algorithm:?}"
        );
    }
}

pub async fn concurrent_decisions_are_exact(factory: impl Factory) {
    let rate: Rate = "100/m".parse().unwrap();
    // The strategies whose burst is the limit (`5` of "5/10s" at once).
    for (algorithm, _) in strategies().into_iter().filter(|(_, burst)| *burst == 5) {
        let (_, b) = setup(&factory, "conc");
        let admitted = Arc::new(AtomicU64::new(0));
        let tasks: Vec<_> = (0..150)
            .map(|_| {
                let (b, algorithm, admitted) = (b.clone(), algorithm.clone(), admitted.clone());
                tokio::spawn(async move {
                    if b.decide("hot", algorithm.as_ref(), &rate, 1)
                        .await
                        .unwrap()
                        .allowed
                    {
                        admitted.fetch_add(1, Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(admitted.load(Ordering::SeqCst), 100, "{algorithm:?}");
    }
}

pub async fn hostile_keys(factory: impl Factory) {
    let (_, b) = setup(&factory, "keys");
    let rate: Rate = "2/m".parse().unwrap();
    let long = "x".repeat(10_000);
    for key in [
        "with space",
        "new\nline",
        "crlf\r\nset x 0 0 1",
        "emoji 🚦",
        "{tag}:colon",
        long.as_str(),
    ] {
        b.set(key, b"v", Some(Duration::from_secs(60)))
            .await
            .unwrap();
        assert_eq!(
            b.get(key).await.unwrap().as_deref(),
            Some(&b"v"[..]),
            "{key:?}"
        );
        assert!(b.decide(key, &FixedWindow, &rate, 1).await.unwrap().allowed);
        assert!(b.decide(key, &FixedWindow, &rate, 1).await.unwrap().allowed);
        assert!(
            !b.decide(key, &FixedWindow, &rate, 1).await.unwrap().allowed,
            "{key:?}"
        );
    }
    // Distinct hostile keys never alias.
    assert_eq!(b.get("crlf").await.unwrap(), None);
}

pub async fn reset_clears_only_its_namespace(factory: impl Factory) {
    let clock = ManualClock::new(START);
    let name = namespace("reset");
    let mine = factory(&name, clock.clone());
    let other = factory(&format!("{name}-other"), clock);
    mine.set("k", b"1", None).await.unwrap();
    other.set("k", b"2", None).await.unwrap();
    assert_eq!(
        mine.get("k").await.unwrap().as_deref(),
        Some(&b"1"[..]),
        "namespaces isolate"
    );
    mine.reset().await.unwrap();
    assert_eq!(mine.get("k").await.unwrap(), None);
    assert_eq!(other.get("k").await.unwrap().as_deref(), Some(&b"2"[..]));
    other.reset().await.unwrap();
}

pub async fn cost_beyond_capacity_is_an_error(factory: impl Factory) {
    let (_, b) = setup(&factory, "cap");
    let rate: Rate = "5/s".parse().unwrap();
    assert!(matches!(
        b.decide("k", &TokenBucket::new(), &rate, 6).await,
        Err(Error::CostExceedsCapacity {
            cost: 6,
            capacity: 5
        })
    ));
}

/// Expands to one test per conformance behaviour for the backend built by `$factory`.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr) => {
        $crate::conformance_tests!(@tests $factory;
            get_set_delete, values_expire, counters, update_is_read_modify_write,
            concurrent_updates_lose_nothing, locks, blocking_lock_waits_for_release,
            every_strategy_limits, concurrent_decisions_are_exact, hostile_keys,
            reset_clears_only_its_namespace, cost_beyond_capacity_is_an_error);
    };
    (@tests $factory:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                conformance::$name($factory).await;
            }
        )*
    };
}

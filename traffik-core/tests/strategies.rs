//! Every strategy, driven through the in-memory backend with a manual clock: the limit,
//! the exact wait, recovery, costs, and `stat`.

use std::time::Duration;

use traffik_core::strategy::{Algorithm, Transition, Write};
use traffik_core::{
    Backend, Decision, Error, FixedWindow, Gcra, InMemoryBackend, LeakyBucket,
    LeakyBucketWithQueue, ManualClock, Rate, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
    TokenBucketWithDebt,
};

/// A time aligned on a 10 s window, so window arithmetic is easy to read.
const T0: u64 = 1_700_000_000_000_000;
const SECOND: u64 = 1_000_000;

fn rate() -> Rate {
    "5/10s".parse().unwrap()
}

fn setup(start: u64) -> (ManualClock, InMemoryBackend) {
    let clock = ManualClock::new(start);
    let backend = InMemoryBackend::builder("test")
        .clock(clock.clone())
        .build();
    (clock, backend)
}

fn hit(backend: &InMemoryBackend, algorithm: &dyn Algorithm, cost: u64) -> Decision {
    backend
        .decide("client", algorithm, &rate(), cost)
        .now_or_never()
        .expect("in-memory decisions are ready")
        .expect("decision")
}

fn stat(backend: &InMemoryBackend, algorithm: &dyn Algorithm) -> Decision {
    backend
        .peek("client", algorithm, &rate())
        .now_or_never()
        .expect("ready")
        .expect("peek")
}

/// Each strategy at "5/10s", starting 3 s into a window: how many requests pass at once,
/// and the exact wait of the first one denied.
fn cases() -> Vec<(&'static str, Box<dyn Algorithm>, u64, u64)> {
    vec![
        ("fixed_window", Box::new(FixedWindow), 5, 7 * SECOND),
        (
            "sliding_window_log",
            Box::new(SlidingWindowLog),
            5,
            10 * SECOND,
        ),
        // Next window, once the full previous window weighs 4/5: 7 s + 2 s.
        (
            "sliding_window_counter",
            Box::new(SlidingWindowCounter),
            5,
            9 * SECOND,
        ),
        ("token_bucket", Box::new(TokenBucket::new()), 5, 2 * SECOND),
        (
            "token_bucket_with_debt",
            Box::new(TokenBucketWithDebt::new()),
            10,
            2 * SECOND,
        ),
        ("leaky_bucket", Box::new(LeakyBucket), 1, 2 * SECOND),
        (
            "leaky_bucket_with_queue",
            Box::new(LeakyBucketWithQueue::new()),
            5,
            2 * SECOND,
        ),
        ("gcra", Box::new(Gcra::new()), 5, 2 * SECOND),
    ]
}

#[test]
fn limit_exact_wait_and_recovery() {
    for (name, algorithm, admitted, wait) in cases() {
        let (clock, backend) = setup(T0 + 3 * SECOND);
        for i in 0..admitted {
            let d = hit(&backend, algorithm.as_ref(), 1);
            assert!(d.allowed, "{name}: request {i} should pass");
            assert_eq!(d.wait, Duration::ZERO, "{name}");
        }
        let denied = hit(&backend, algorithm.as_ref(), 1);
        assert!(
            !denied.allowed,
            "{name}: request {admitted} should be denied"
        );
        assert_eq!(denied.wait, Duration::from_micros(wait), "{name}: wait");
        assert_eq!(denied.remaining, 0, "{name}: remaining");

        // One microsecond early is still too early, and says so.
        clock.advance_micros(wait - 1);
        let early = hit(&backend, algorithm.as_ref(), 1);
        assert!(!early.allowed, "{name}: 1 µs early");
        assert_eq!(early.wait, Duration::from_micros(1), "{name}: 1 µs early");

        clock.advance_micros(1);
        assert!(
            hit(&backend, algorithm.as_ref(), 1).allowed,
            "{name}: after the wait"
        );
    }
}

#[test]
fn stat_peeks_without_consuming() {
    for (name, algorithm, admitted, wait) in cases() {
        let (_clock, backend) = setup(T0 + 3 * SECOND);
        let fresh = stat(&backend, algorithm.as_ref());
        assert!(fresh.allowed, "{name}");
        for _ in 0..10 {
            stat(&backend, algorithm.as_ref());
        }
        for _ in 0..admitted {
            assert!(
                hit(&backend, algorithm.as_ref(), 1).allowed,
                "{name}: stat consumed"
            );
        }
        let after = stat(&backend, algorithm.as_ref());
        assert!(!after.allowed, "{name}");
        assert_eq!(after.wait, Duration::from_micros(wait), "{name}");
        assert_eq!(after.remaining, 0, "{name}");
    }
}

#[test]
fn cost_zero_is_a_free_pass() {
    for (name, algorithm, admitted, _) in cases() {
        let (_clock, backend) = setup(T0 + 3 * SECOND);
        for _ in 0..admitted {
            assert!(hit(&backend, algorithm.as_ref(), 1).allowed, "{name}");
        }
        let free = hit(&backend, algorithm.as_ref(), 0);
        assert!(free.allowed, "{name}: cost 0 passes even when exhausted");
        assert!(
            !hit(&backend, algorithm.as_ref(), 1).allowed,
            "{name}: cost 0 consumed"
        );
    }
}

#[test]
fn cost_above_capacity_is_an_error() {
    for (name, algorithm, _, _) in cases() {
        let (_clock, backend) = setup(T0);
        let capacity = algorithm.capacity(&rate());
        let err = backend
            .decide("client", algorithm.as_ref(), &rate(), capacity + 1)
            .now_or_never()
            .unwrap()
            .unwrap_err();
        assert_eq!(
            err,
            Error::CostExceedsCapacity {
                cost: capacity + 1,
                capacity
            },
            "{name}"
        );
        // The full capacity at once is fine (a leaky bucket admits it into an empty bucket).
        assert!(
            hit(&backend, algorithm.as_ref(), capacity).allowed,
            "{name}"
        );
    }
}

#[test]
fn costs_above_one() {
    let (clock, backend) = setup(T0);
    let d = hit(&backend, &FixedWindow, 3);
    assert_eq!((d.allowed, d.remaining), (true, 2));
    let d = hit(&backend, &FixedWindow, 3);
    assert_eq!((d.allowed, d.remaining), (false, 2));
    assert!(hit(&backend, &FixedWindow, 2).allowed);
    clock.advance(Duration::from_secs(10));
    assert!(hit(&backend, &FixedWindow, 5).allowed);

    // Token bucket: 4 units of cost take 4 refill intervals to earn back.
    let (clock, backend) = setup(T0);
    assert!(hit(&backend, &TokenBucket::new(), 5).allowed);
    let d = hit(&backend, &TokenBucket::new(), 4);
    assert_eq!(d.wait, Duration::from_secs(8));
    clock.advance(Duration::from_secs(8));
    assert!(hit(&backend, &TokenBucket::new(), 4).allowed);

    // Leaky bucket: a request of cost 3 holds the bucket for 3 intervals.
    let (_clock, backend) = setup(T0);
    assert!(hit(&backend, &LeakyBucket, 3).allowed);
    assert_eq!(hit(&backend, &LeakyBucket, 1).wait, Duration::from_secs(6));

    // Sliding log: the wait is until enough cost has left the window.
    let (clock, backend) = setup(T0);
    assert!(hit(&backend, &SlidingWindowLog, 2).allowed);
    clock.advance(Duration::from_secs(1));
    assert!(hit(&backend, &SlidingWindowLog, 3).allowed);
    clock.advance(Duration::from_secs(1));
    assert_eq!(
        hit(&backend, &SlidingWindowLog, 2).wait,
        Duration::from_secs(8)
    );
    assert_eq!(
        hit(&backend, &SlidingWindowLog, 3).wait,
        Duration::from_secs(9)
    );
}

#[test]
fn fixed_window_boundaries() {
    // The state belongs to its window: a new window starts from zero exactly at its start.
    let (clock, backend) = setup(T0 + 10 * SECOND - 1);
    for _ in 0..5 {
        assert!(hit(&backend, &FixedWindow, 1).allowed);
    }
    let denied = hit(&backend, &FixedWindow, 1);
    assert_eq!(denied.wait, Duration::from_micros(1));
    assert_eq!(denied.reset, Duration::from_micros(1));
    clock.advance_micros(1);
    for _ in 0..5 {
        assert!(hit(&backend, &FixedWindow, 1).allowed);
    }
    // In memory, one slot per key, whatever the number of windows.
    assert_eq!(backend.stored_keys(), 1);
}

#[test]
fn sliding_window_log_never_exceeds_the_limit_across_a_boundary() {
    let (clock, backend) = setup(T0 + 10 * SECOND - 1);
    for _ in 0..5 {
        assert!(hit(&backend, &SlidingWindowLog, 1).allowed);
    }
    clock.advance_micros(1);
    assert!(!hit(&backend, &SlidingWindowLog, 1).allowed);
    clock.advance_micros(10 * SECOND - 1);
    assert!(hit(&backend, &SlidingWindowLog, 1).allowed);
}

#[test]
fn sliding_window_counter_weighs_the_previous_window() {
    let (clock, backend) = setup(T0);
    for _ in 0..5 {
        assert!(hit(&backend, &SlidingWindowCounter, 1).allowed);
    }
    // Halfway through the next window the previous one weighs 2.5: two more fit.
    clock.set(T0 + 15 * SECOND);
    assert!(hit(&backend, &SlidingWindowCounter, 1).allowed);
    assert!(hit(&backend, &SlidingWindowCounter, 1).allowed);
    let denied = hit(&backend, &SlidingWindowCounter, 1);
    assert!(!denied.allowed);
    // 5 * (P - e) + 3 * P <= 5 * P  <=>  e >= 0.6 P = 6 s: 1 s from now.
    assert_eq!(denied.wait, Duration::from_secs(1));
    // Two windows later nothing weighs.
    clock.set(T0 + 30 * SECOND);
    assert_eq!(stat(&backend, &SlidingWindowCounter).remaining, 5);
}

#[test]
fn token_bucket_burst_and_refill() {
    let (clock, backend) = setup(T0);
    let bucket = TokenBucket::with_burst(8);
    let d = hit(&backend, &bucket, 8);
    assert!(d.allowed);
    assert_eq!(d.limit, 8);
    assert_eq!(d.remaining, 0);
    assert_eq!(d.reset, Duration::from_secs(16));
    clock.advance(Duration::from_secs(4));
    let d = stat(&backend, &bucket);
    assert_eq!(d.remaining, 2);
    // Never above the burst, however long the wait.
    clock.advance(Duration::from_secs(3600));
    assert_eq!(stat(&backend, &bucket).remaining, 8);
}

#[test]
fn token_bucket_with_debt_repays_before_admitting() {
    let (clock, backend) = setup(T0);
    let bucket = TokenBucketWithDebt::with_max_debt(3);
    assert!(hit(&backend, &bucket, 8).allowed); // 5 tokens + 3 of debt
    let denied = hit(&backend, &bucket, 1);
    assert!(!denied.allowed);
    assert_eq!(denied.limit, 5);
    // Debt of 3 repaid, plus one token: 4 intervals of 2 s... minus the debt tolerance.
    assert_eq!(denied.wait, Duration::from_secs(2));
    clock.advance(Duration::from_secs(2));
    assert!(hit(&backend, &bucket, 1).allowed);
    assert_eq!(stat(&backend, &bucket).remaining, 0, "still in debt");
    clock.advance(Duration::from_secs(8));
    assert_eq!(
        stat(&backend, &bucket).remaining,
        1,
        "debt repaid, one token earned"
    );
}

#[test]
fn gcra_spacing_with_burst_one() {
    let (clock, backend) = setup(T0);
    let gcra = Gcra::with_burst(1);
    assert!(hit(&backend, &gcra, 1).allowed);
    clock.advance(Duration::from_millis(500));
    let denied = hit(&backend, &gcra, 1);
    assert_eq!(denied.wait, Duration::from_millis(1500));
    clock.advance(Duration::from_millis(1500));
    assert!(hit(&backend, &gcra, 1).allowed);
}

#[test]
fn leaky_bucket_with_queue_drains_at_the_rate() {
    let (clock, backend) = setup(T0);
    let queue = LeakyBucketWithQueue::with_queue_size(2);
    assert!(hit(&backend, &queue, 1).allowed);
    assert!(hit(&backend, &queue, 1).allowed);
    assert_eq!(hit(&backend, &queue, 1).wait, Duration::from_secs(2));
    clock.advance(Duration::from_secs(4));
    assert_eq!(stat(&backend, &queue).remaining, 2);
}

#[test]
fn unlimited_rate_stores_nothing() {
    let (_clock, backend) = setup(T0);
    for _ in 0..100 {
        let d = backend
            .decide("client", &FixedWindow, &Rate::UNLIMITED, 1_000_000)
            .now_or_never()
            .unwrap()
            .unwrap();
        assert!(d.allowed);
    }
    assert_eq!(backend.stored_keys(), 0);
}

#[test]
fn pure_transitions_need_no_backend() {
    let rate = rate();
    let Transition { decision, write } = FixedWindow.apply(None, T0, &rate, 2).unwrap();
    assert!(decision.allowed);
    let Write::Put { state, ttl } = write else {
        panic!("an admitted fixed-window request stores its count")
    };
    assert_eq!(ttl, Duration::from_secs(10));
    let again = FixedWindow.apply(Some(&state), T0, &rate, 4).unwrap();
    assert!(!again.decision.allowed);
    assert_eq!(again.write, Write::Keep);
}

#[test]
fn clock_stepping_back_does_not_refill() {
    for (name, algorithm, admitted, _) in cases() {
        let (clock, backend) = setup(T0 + 3 * SECOND);
        for _ in 0..admitted {
            assert!(hit(&backend, algorithm.as_ref(), 1).allowed, "{name}");
        }
        clock.set(T0 + 3 * SECOND - 1);
        let d = hit(&backend, algorithm.as_ref(), 1);
        // A fixed window may see an older window; every other strategy must still deny.
        if name != "fixed_window" {
            assert!(!d.allowed, "{name}: stepping the clock back must not admit");
        }
    }
}

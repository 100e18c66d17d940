#![cfg(feature = "redis")]
//! Differential test: every built-in strategy decides alike as a Rust state function
//! (`strategy::run`) and as Lua on Redis (a function of the library or a script, half
//! the sequences each), over random (now, cost) sequences
//! (the scripts are given `now` by a manual clock, which also steps back now and then).
//! Before each step the state the script will read is read back and given to the Rust
//! function: the decisions must be equal, and the state the script wrote must be the
//! bytes the Rust function asked for (both use the same format). Sequences start from
//! corrupt states too.

mod redis_support;

use std::sync::Arc;
use std::time::Duration;

use traffik_core::strategy::{Write, run, state_key};
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, ManualClock, Rate,
    RedisBackend, SlidingWindowCounter, SlidingWindowLog, TokenBucket, TokenBucketWithDebt,
};

/// xorshift64*: deterministic, dependency-free.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

fn algorithms() -> Vec<Arc<dyn Algorithm>> {
    vec![
        Arc::new(FixedWindow),
        Arc::new(SlidingWindowLog),
        Arc::new(SlidingWindowCounter),
        Arc::new(TokenBucket::new()),
        Arc::new(TokenBucket::with_burst(7)),
        Arc::new(TokenBucketWithDebt::new()),
        Arc::new(TokenBucketWithDebt::with_max_debt(3)),
        Arc::new(LeakyBucket),
        Arc::new(LeakyBucketWithQueue::new()),
        Arc::new(LeakyBucketWithQueue::with_queue_size(2)),
        Arc::new(Gcra::new()),
        Arc::new(Gcra::with_burst(3)),
    ]
}

fn rates() -> Vec<Rate> {
    [
        "5/10s",
        "3/s",
        "100/m",
        "7/250ms",
        "1/h",
        "13/7s",
        "1000000/s",
        "50000/h",
        // A sliding log spanning more than 2^32 us: its state in the wide form.
        "9/3h",
    ]
    .iter()
    .map(|r| r.parse().unwrap())
    .collect()
}

/// Bytes that are not a valid state for any strategy, or valid for another one.
///
/// Not included: well-formed states whose fields exceed 2^53 (a sliding-log entry dated
/// in the year 370,000). No strategy writes them; the scripts cannot read them exactly
/// and may judge them differently from the Rust functions (a sliding-log script treats
/// such an entry as corrupt and starts fresh).
fn corrupt_states() -> Vec<Vec<u8>> {
    let entry = |at: u64, cost: u64| [at.to_le_bytes(), cost.to_le_bytes()].concat();
    vec![
        b"garbage".to_vec(),
        vec![],
        vec![0xF1],
        vec![0xF1, 1, 2, 3],
        vec![0xB1; 17],
        vec![0xD1; 17],
        vec![0xA1; 34],
        [&[0xA1][..], &entry(5, 1), &entry(3, 1)].concat(),
        vec![0xA2; 25],
        [&[0xA1][..], &[0u8; 16][..]].concat(),
        // The compact logs: cut short, out of order, a cost of 0, misaligned, and a base
        // alone (an empty log, well formed).
        vec![0xA3, 1, 2, 3],
        [&[0xA3][..], &5u64.to_le_bytes(), &[9, 0, 0, 0, 3, 0, 0, 0]].concat(),
        [&[0xA4][..], &5u64.to_le_bytes(), &[1, 0, 0, 0, 0, 0, 0, 0]].concat(),
        [&[0xA3][..], &5u64.to_le_bytes(), &[1, 0, 0]].concat(),
        [&[0xA4][..], &5u64.to_le_bytes()].concat(),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scripts_decide_like_the_rust_functions() {
    if redis_support::skip() {
        return;
    }
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut steps = 0;
    for (index, algorithm) in algorithms().into_iter().enumerate() {
        for rate in rates() {
            for sequence in 0..4 {
                // Half the sequences as functions (`FCALL`), half as scripts (`EVALSHA`),
                // a corrupt start in either form depending on the algorithm.
                let functions = (index + sequence) % 2 == 0;
                let start = 1_700_000_000_000_000 + rng.below(1 << 40);
                let clock = ManualClock::new(start);
                let namespace = format!("diff-{}-{}", std::process::id(), rng.next());
                let redis = RedisBackend::builder(&namespace)
                    .url(redis_support::url())
                    .clock(clock.clone())
                    .functions(functions)
                    .build()
                    .unwrap();
                let key = "{diff:client}:scope";
                if sequence == 3 {
                    let bad = corrupt_states();
                    let bad = &bad[rng.below(bad.len() as u64) as usize];
                    let now = clock.now_micros_for_test();
                    let state = state_key(algorithm.as_ref(), key, now, &rate);
                    let ttl = Some(Duration::from_secs(3600));
                    redis.set(&state, bad, ttl).await.unwrap();
                }
                let capacity = algorithm.capacity(&rate);
                let period = rate.period_micros();
                for step in 0..40 {
                    let advance = match rng.below(10) {
                        0 => 0,
                        1 => rng.below(1000),
                        2 => rng.below(3 * period),
                        // A wall clock that steps back a little.
                        3 if step > 0 => {
                            let back = rng.below(period / 4 + 1);
                            clock.set(clock.now_micros_for_test().saturating_sub(back));
                            0
                        }
                        _ => rng.below(period / 2 + 1),
                    };
                    clock.advance_micros(advance);
                    let cost = 1 + rng.below(capacity.min(4));
                    let now = clock.now_micros_for_test();
                    let context = format!(
                        "{algorithm:?} {rate} sequence {sequence} (functions: {functions}) step {step} now {now} cost {cost}"
                    );
                    // The Rust state function, on the very state the script will read.
                    let state = state_key(algorithm.as_ref(), key, now, &rate);
                    let before = redis.get(&state).await.unwrap();
                    let expected = run(algorithm.as_ref(), before.as_deref(), now, &rate, cost);
                    let actual = redis.decide(key, algorithm.as_ref(), &rate, cost).await;
                    assert_eq!(actual, expected.clone().map(|t| t.decision), "{context}");
                    let after = redis.get(&state).await.unwrap();
                    match expected.unwrap().write {
                        Write::Put { state, .. } => {
                            assert_eq!(after, Some(state.to_vec()), "state: {context}")
                        }
                        Write::Keep => assert_eq!(after, before, "state kept: {context}"),
                        Write::Delete => assert_eq!(after, None, "state deleted: {context}"),
                    }
                    let peek = redis.peek(key, algorithm.as_ref(), &rate).await.unwrap();
                    assert_eq!(
                        peek,
                        algorithm.peek(after.as_deref(), now, &rate),
                        "peek: {context}"
                    );
                    steps += 1;
                }
                redis.reset().await.unwrap();
            }
        }
    }
    assert!(steps > 10_000);
}

/// `ManualClock` reads through the `Clock` trait.
trait NowForTest {
    fn now_micros_for_test(&self) -> u64;
}

impl NowForTest for ManualClock {
    fn now_micros_for_test(&self) -> u64 {
        traffik_core::Clock::now_micros(self)
    }
}

//! Time per in-memory decision, for every built-in strategy, beside governor's keyed
//! (DashMap) limiter measured in the same group.
//!
//! Two key shapes: one hot key, and 100 000 distinct keys cycled (strings built
//! beforehand, so building them is not measured). Two regimes: `allowed` (10^9 per second,
//! far above what one core can ask for, so every check is admitted by both limiters) and
//! `denied` (10 per hour, every key's quota spent before measuring, so every check is
//! refused by both). Both limiters read their production clocks: traffik's
//! [`SystemClock`] and governor's default (quanta); the `clock` group measures those
//! alone.
//!
//! ```text
//! cargo bench -p traffik-core --bench decisions -- --warm-up-time 1 --measurement-time 3
//! TRAFFIK_BENCH_REGIME=1 cargo bench -p traffik-core --bench decisions -- --list
//! ```
//!
//! Set `TRAFFIK_BENCH_REGIME=1` to print, before measuring, the share of checks each
//! limiter admits in each group: the ratios only compare like with like when both sides
//! are in the same regime.

use std::hint::black_box;
use std::num::NonZeroU32;
use std::time::{Duration, Instant};

use criterion::{
    BenchmarkGroup, Criterion, criterion_group, criterion_main, measurement::WallTime,
};
use governor::clock::{Clock as _, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use traffik_core::key::throttle_key;
use traffik_core::strategy::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket, TokenBucketWithDebt,
};
use traffik_core::{Backend, Clock as _, InMemoryBackend, Rate, SystemClock};

/// Distinct keys in the cycled shape.
const KEYS: usize = 100_000;

static TOKEN_BUCKET: TokenBucket = TokenBucket::new();
static TOKEN_BUCKET_WITH_DEBT: TokenBucketWithDebt = TokenBucketWithDebt::new();
static LEAKY_BUCKET_WITH_QUEUE: LeakyBucketWithQueue = LeakyBucketWithQueue::new();
static GCRA: Gcra = Gcra::new();

/// Every built-in strategy, by bench name.
fn strategies() -> [(&'static str, &'static dyn Algorithm); 8] {
    [
        ("fixed_window", &FixedWindow),
        ("sliding_window_log", &SlidingWindowLog),
        ("sliding_window_counter", &SlidingWindowCounter),
        ("token_bucket", &TOKEN_BUCKET),
        ("token_bucket_with_debt", &TOKEN_BUCKET_WITH_DEBT),
        ("leaky_bucket", &LeakyBucket),
        ("leaky_bucket_with_queue", &LEAKY_BUCKET_WITH_QUEUE),
        ("gcra", &GCRA),
    ]
}

/// One regime: the same rate expressed for both limiters.
struct Regime {
    name: &'static str,
    limit: u32,
    period: Duration,
    /// Spend every key's quota before measuring.
    exhaust: bool,
}

impl Regime {
    fn rate(&self) -> Rate {
        Rate::new(u64::from(self.limit), self.period).expect("valid rate")
    }

    /// The rate for the sliding window log. Its state is one entry per microsecond that
    /// admitted something during the last period, so in the allowed regime a 1 s period
    /// would grow the hot key's log to a million entries while the bench runs. The same
    /// throughput over a 1 ms period bounds the log at 1000 entries. In the denied regime
    /// the log is bounded by the limit and the shared rate is kept.
    fn log_rate(&self) -> Rate {
        if self.limit >= 1_000_000 {
            let per_ms = u128::from(self.limit) / self.period.as_millis();
            Rate::new(per_ms as u64, Duration::from_millis(1)).expect("valid rate")
        } else {
            self.rate()
        }
    }

    fn rate_for(&self, strategy: &str) -> Rate {
        if strategy == "sliding_window_log" {
            self.log_rate()
        } else {
            self.rate()
        }
    }

    /// governor's equivalent: a burst of `limit`, replenished evenly over `period`.
    fn quota(&self) -> Quota {
        let limit = NonZeroU32::new(self.limit).expect("positive limit");
        Quota::with_period(self.period / self.limit)
            .expect("positive replenish interval")
            .allow_burst(limit)
    }
}

const REGIMES: [Regime; 2] = [
    // 10^9 per second: a check takes tens of nanoseconds, so one core asks for at most a
    // few 10^7 per second and both limiters admit (nearly) every check.
    Regime {
        name: "allowed",
        limit: 1_000_000_000,
        period: Duration::from_secs(1),
        exhaust: false,
    },
    // 10 per hour, every key's quota spent before measuring: both limiters refuse every
    // check (nothing is replenished within the run that matters).
    Regime {
        name: "denied",
        limit: 10,
        period: Duration::from_secs(3600),
        exhaust: true,
    },
];

/// Realistic storage keys: `{uid:client-ip}:http:GET:/route`.
fn keys(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
            throttle_key("api", &ip, "http:GET:/api/items/{id}")
        })
        .collect()
}

/// Cycles through `keys`, one per call.
struct Cycle<'a> {
    keys: &'a [String],
    next: usize,
}

impl<'a> Cycle<'a> {
    fn new(keys: &'a [String]) -> Self {
        Self { keys, next: 0 }
    }

    #[inline]
    fn next_key(&mut self) -> &'a String {
        let key = &self.keys[self.next];
        self.next += 1;
        if self.next == self.keys.len() {
            self.next = 0;
        }
        key
    }
}

fn backend() -> InMemoryBackend {
    // The production clock (wall time), as governor uses its production clock (quanta).
    InMemoryBackend::builder("bench").build()
}

#[inline]
fn decide(backend: &InMemoryBackend, key: &str, algorithm: &dyn Algorithm, rate: &Rate) -> bool {
    backend
        .decide(key, algorithm, rate, 1)
        .now_or_never()
        .expect("the in-memory backend answers at once")
        .expect("decision")
        .allowed
}

/// A fresh backend for one strategy; in the denied regime, every key's quota is spent
/// first, so the measurement sees only refusals from the start.
fn prepare_traffik(
    regime: &Regime,
    keys: &[String],
    algorithm: &dyn Algorithm,
    rate: &Rate,
) -> InMemoryBackend {
    let backend = backend();
    if regime.exhaust {
        for key in keys {
            let mut spent = 0;
            while decide(&backend, key, algorithm, rate) {
                spent += 1;
                assert!(spent < 1_000, "the denied regime refuses within its limit");
            }
        }
    }
    backend
}

/// governor's keyed limiter, prepared like [`prepare_traffik`].
fn prepare_governor(regime: &Regime, keys: &[String]) -> DefaultKeyedRateLimiter<String> {
    let governor = RateLimiter::dashmap(regime.quota());
    if regime.exhaust {
        for key in keys {
            let mut spent = 0;
            while governor.check_key(key).is_ok() {
                spent += 1;
                assert!(spent < 1_000, "the denied regime refuses within its limit");
            }
        }
    }
    governor
}

fn bench_group(group: &mut BenchmarkGroup<'_, WallTime>, regime: &Regime, keys: &[String]) {
    for (name, algorithm) in strategies() {
        let rate = regime.rate_for(name);
        // Prepared on first use, so that a filtered-out bench costs nothing.
        let mut backend = None;
        let mut cycle = Cycle::new(keys);
        group.bench_function(name, |b| {
            let backend =
                backend.get_or_insert_with(|| prepare_traffik(regime, keys, algorithm, &rate));
            b.iter(|| black_box(decide(backend, cycle.next_key(), algorithm, &rate)))
        });
    }
    let mut governor = None;
    let mut cycle = Cycle::new(keys);
    group.bench_function("governor_dashmap", |b| {
        let governor = governor.get_or_insert_with(|| prepare_governor(regime, keys));
        b.iter(|| black_box(governor.check_key(cycle.next_key()).is_ok()))
    });
}

/// Prints the share of checks each limiter admits, prepared as for the measurement.
fn print_regimes(hot: &[String], many: &[String]) {
    for regime in &REGIMES {
        for (shape, keys) in [("hot_key", hot), ("100k_keys", many)] {
            let mut line = format!("{}/{shape}:", regime.name);
            for (name, algorithm) in strategies() {
                let rate = regime.rate_for(name);
                let backend = prepare_traffik(regime, keys, algorithm, &rate);
                let mut cycle = Cycle::new(keys);
                let share = admitted_share(|| decide(&backend, cycle.next_key(), algorithm, &rate));
                line.push_str(&format!(" {name}={share:.3}"));
            }
            let governor = prepare_governor(regime, keys);
            let mut cycle = Cycle::new(keys);
            let share = admitted_share(|| governor.check_key(cycle.next_key()).is_ok());
            line.push_str(&format!(" governor_dashmap={share:.3}"));
            eprintln!("{line}");
        }
    }
}

fn admitted_share(mut check: impl FnMut() -> bool) -> f64 {
    let started = Instant::now();
    let (mut total, mut admitted) = (0u64, 0u64);
    while started.elapsed() < Duration::from_millis(500) {
        for _ in 0..1000 {
            admitted += u64::from(check());
        }
        total += 1000;
    }
    admitted as f64 / total as f64
}

fn decisions(c: &mut Criterion) {
    let many = keys(KEYS);
    let hot = vec![many[0].clone()];
    if std::env::var_os("TRAFFIK_BENCH_REGIME").is_some() {
        print_regimes(&hot, &many);
    }
    // What each limiter pays to read its clock, part of every check above: traffik's
    // default wall clock against governor's default (quanta, a calibrated TSC).
    let mut group = c.benchmark_group("clock");
    group.bench_function("traffik_system_clock", |b| {
        b.iter(|| black_box(SystemClock.now_micros()))
    });
    let quanta = DefaultClock::default();
    group.bench_function("governor_default_clock", |b| {
        b.iter(|| black_box(quanta.now()))
    });
    group.finish();
    for regime in &REGIMES {
        for (shape, keys) in [("hot_key", &hot[..]), ("100k_keys", &many[..])] {
            let mut group = c.benchmark_group(format!("{}/{shape}", regime.name));
            bench_group(&mut group, regime, keys);
            group.finish();
        }
    }
}

criterion_group! {
    name = benches;
    // Short runs by default (2 shared cores); the command line overrides these.
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .sample_size(50);
    targets = decisions
}
criterion_main!(benches);

//! Property tests: each strategy against a simple reference model, over random arrival
//! times and costs.

use proptest::prelude::*;
use traffik_core::{
    Algorithm, Backend, Decision, FixedWindow, Gcra, InMemoryBackend, ManualClock, Rate,
    SlidingWindowLog, TokenBucket,
};

const START: u64 = 1_700_000_000_000_000;

/// One arrival: microseconds after the previous one, and its cost.
type Arrival = (u64, u64);

/// Runs arrivals through `algorithm` on an in-memory backend; returns `(time, cost, decision)`.
fn drive(
    algorithm: &dyn Algorithm,
    rate: &Rate,
    arrivals: &[Arrival],
) -> Vec<(u64, u64, Decision)> {
    let clock = ManualClock::new(START);
    let backend = InMemoryBackend::builder("prop")
        .clock(clock.clone())
        .build();
    let mut now = START;
    arrivals
        .iter()
        .map(|&(gap, cost)| {
            now += gap;
            clock.set(now);
            let decision = backend
                .decide("k", algorithm, rate, cost)
                .now_or_never()
                .expect("ready")
                .expect("decision");
            (now, cost, decision)
        })
        .collect()
}

/// A rate with a limit of 1..=20 and a period of 1 ms..=20 s, and arrivals spread over a
/// few periods.
fn scenario() -> impl Strategy<Value = (Rate, Vec<Arrival>)> {
    (1u64..=20, 1u64..=20_000).prop_flat_map(|(limit, period_ms)| {
        let rate = Rate::new(limit, std::time::Duration::from_millis(period_ms)).unwrap();
        let period = period_ms * 1_000;
        let gap = 0..=(2 * period / limit).max(1);
        (Just(rate), prop::collection::vec((gap, 1..=limit), 1..120))
    })
}

fn admitted(trace: &[(u64, u64, Decision)]) -> Vec<(u64, u64)> {
    trace
        .iter()
        .filter(|(_, _, d)| d.allowed)
        .map(|&(t, c, _)| (t, c))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    /// No span of one period ever holds more than the limit, and a request is denied only
    /// when admitting it would break that.
    #[test]
    fn sliding_log_matches_its_reference((rate, arrivals) in scenario()) {
        let period = rate.period_micros();
        let trace = drive(&SlidingWindowLog, &rate, &arrivals);
        let mut log: Vec<(u64, u64)> = Vec::new();
        for &(t, cost, decision) in &trace {
            let in_window: u64 = log.iter().filter(|(at, _)| at + period > t).map(|(_, c)| c).sum();
            let expected = in_window + cost <= rate.limit();
            prop_assert_eq!(decision.allowed, expected, "at {} cost {}", t, cost);
            if expected {
                log.push((t, cost));
            }
        }
        let admitted = admitted(&trace);
        for &(end, _) in &admitted {
            let span: u64 = admitted.iter().filter(|(t, _)| *t + period > end && *t <= end).map(|(_, c)| c).sum();
            prop_assert!(span <= rate.limit());
        }
    }

    /// Over any span, admitted cost never exceeds burst + rate × span.
    #[test]
    fn token_bucket_never_above_burst_plus_refill((rate, arrivals) in scenario(), extra in 0u64..10) {
        let burst = rate.limit() + extra;
        let bucket = TokenBucket::with_burst(burst);
        let arrivals: Vec<Arrival> = arrivals.into_iter().map(|(g, c)| (g, c.min(burst))).collect();
        let admitted = admitted(&drive(&bucket, &rate, &arrivals));
        let (limit, period) = (u128::from(rate.limit()), u128::from(rate.period_micros()));
        for (i, &(start, _)) in admitted.iter().enumerate() {
            let mut total = 0u128;
            for &(t, c) in &admitted[i..] {
                total += u128::from(c);
                // total <= burst + limit * (t - start) / period, kept in integers.
                prop_assert!(total * period <= u128::from(burst) * period + limit * u128::from(t - start));
            }
        }
    }

    /// GCRA decides exactly as the textbook virtual-scheduling GCRA (cost 1).
    #[test]
    fn gcra_equals_reference_gcra((rate, arrivals) in scenario(), burst in 1u64..=10) {
        let arrivals: Vec<Arrival> = arrivals.into_iter().map(|(g, _)| (g, 1)).collect();
        let trace = drive(&Gcra::with_burst(burst), &rate, &arrivals);
        // Time scaled by the limit so the emission interval T = period is an integer.
        let scale = u128::from(rate.limit());
        let t_interval = u128::from(rate.period_micros());
        let tau = u128::from(burst - 1) * t_interval;
        let mut tat: Option<u128> = None;
        for &(t, _, decision) in &trace {
            let t = u128::from(t) * scale;
            let theoretical = tat.unwrap_or(t);
            let conforming = t + tau >= theoretical;
            prop_assert_eq!(decision.allowed, conforming);
            if conforming {
                tat = Some(theoretical.max(t) + t_interval);
            } else {
                let wait = (theoretical - tau - t).div_ceil(scale);
                prop_assert_eq!(decision.wait.as_micros(), wait);
            }
        }
    }

    /// Each aligned window admits at most the limit, and denies only when full.
    #[test]
    fn fixed_window_at_most_limit_per_window((rate, arrivals) in scenario()) {
        let period = rate.period_micros();
        let trace = drive(&FixedWindow, &rate, &arrivals);
        let mut window = None;
        let mut used = 0;
        for &(t, cost, decision) in &trace {
            if window != Some(t / period) {
                window = Some(t / period);
                used = 0;
            }
            let expected = used + cost <= rate.limit();
            prop_assert_eq!(decision.allowed, expected);
            if expected {
                used += cost;
            } else {
                prop_assert_eq!(decision.wait.as_micros(), u128::from(period - t % period));
            }
        }
    }
}

proptest! {
    /// Distinct (uid, identity) pairs never share a key, and no key holds white space or
    /// control characters, whatever the input.
    #[test]
    fn keys_are_injective_and_clean(a in ".{0,12}", b in ".{0,12}", c in ".{0,12}", d in ".{0,12}", scope in ".{0,12}") {
        use traffik_core::key::throttle_key;
        let first = throttle_key(&a, &b, &scope);
        let second = throttle_key(&c, &d, &scope);
        prop_assert_eq!(first == second, (a, b) == (c, d));
        prop_assert!(!first.chars().any(|ch| ch.is_whitespace() || ch.is_control()));
        prop_assert!(first.is_ascii());
    }

    /// The rate parser never panics, and what it accepts displays back to itself.
    #[test]
    fn rate_parser_is_total(text in ".{0,24}", limit in 1u64..1_000_000, count in 1u64..1000, unit in prop::sample::select(vec!["ms", "s", "sec", "minutes", "HR", "d"])) {
        if let Ok(rate) = Rate::parse(&text) {
            prop_assert_eq!(Rate::parse(&rate.to_string()).ok(), Some(rate));
        }
        let text = format!("{limit} per {count} {unit}");
        let rate = Rate::parse(&text).unwrap();
        prop_assert_eq!(rate.limit(), limit);
        prop_assert_eq!(Rate::parse(&rate.to_string()).ok(), Some(rate));
    }
}

//! Rate-limiting strategies.
//!
//! Every built-in strategy is an [`Algorithm`]: a pure state transition
//! `(old state, now, rate, cost) -> (new state, Decision, ttl)` with no I/O. Backends run it
//! atomically (the in-memory backend under its shard lock, others in a compare-and-swap
//! loop or a server-side script), so an algorithm written once works on every backend.
//!
//! The lower-level [`Strategy`] trait is what a throttle calls. Every [`Algorithm`] is a
//! [`Strategy`]; a custom strategy may instead implement [`Strategy`] directly over the
//! backend primitives (`get`, `set`, `increment_with_ttl`, `lock`...), the way the Python
//! library's custom strategies are written.
//!
//! All times are microseconds since the Unix epoch ([`Micros`]).

pub(crate) mod codec;
mod fixed_window;
mod gcra;
mod leaky_bucket;
mod meter;
mod sliding_window_counter;
mod sliding_window_log;
mod token_bucket;

use std::fmt::Debug;
use std::time::Duration;

use smallvec::SmallVec;

pub use fixed_window::FixedWindow;
pub use gcra::Gcra;
pub use leaky_bucket::{LeakyBucket, LeakyBucketWithQueue};
pub use sliding_window_counter::SlidingWindowCounter;
pub use sliding_window_log::SlidingWindowLog;
pub use token_bucket::{TokenBucket, TokenBucketWithDebt};

use crate::backend::{Backend, BackendFuture};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::rate::Rate;

/// Encoded strategy state, as stored by a backend. Small states (every built-in's but the
/// sliding log's) live inline, with no allocation.
pub type StateBytes = SmallVec<[u8; 32]>;

/// What a backend must do with the stored state after a transition.
#[derive(Debug, Clone, PartialEq)]
pub enum Write {
    /// Leave the stored state as it is.
    Keep,
    /// Store this state, expiring after `ttl`.
    Put {
        /// The new encoded state.
        state: StateBytes,
        /// How long the state matters; after it, a missing state means the same thing.
        ttl: Duration,
    },
    /// Remove the stored state.
    Delete,
}

/// The result of one pure state transition.
#[derive(Debug, Clone, PartialEq)]
pub struct Transition {
    /// The answer for the request.
    pub decision: Decision,
    /// What to store.
    pub write: Write,
}

impl Transition {
    /// A transition that answers `decision` and leaves the state alone.
    pub fn keep(decision: Decision) -> Self {
        Self {
            decision,
            write: Write::Keep,
        }
    }

    /// A transition that answers `decision` and stores `state` for `ttl`.
    pub fn put(decision: Decision, state: StateBytes, ttl: Duration) -> Self {
        Self {
            decision,
            write: Write::Put { state, ttl },
        }
    }
}

/// The parameters of a built-in algorithm, for backends that run built-ins natively
/// (for example as server-side scripts) instead of through [`Algorithm::apply`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Builtin {
    /// [`FixedWindow`].
    FixedWindow,
    /// [`SlidingWindowLog`].
    SlidingWindowLog,
    /// [`SlidingWindowCounter`].
    SlidingWindowCounter,
    /// [`TokenBucket`] with its burst (`None`: the rate's limit).
    TokenBucket {
        /// Bucket size.
        burst: Option<u64>,
    },
    /// [`TokenBucketWithDebt`].
    TokenBucketWithDebt {
        /// How far below zero the balance may go (`None`: the rate's limit).
        max_debt: Option<u64>,
    },
    /// [`LeakyBucket`].
    LeakyBucket,
    /// [`LeakyBucketWithQueue`].
    LeakyBucketWithQueue {
        /// Queue size (`None`: the rate's limit).
        queue_size: Option<u64>,
    },
    /// [`Gcra`].
    Gcra {
        /// Burst (`None`: the rate's limit).
        burst: Option<u64>,
    },
}

/// A rate-limiting algorithm as a pure state transition.
///
/// Implement this for a custom strategy that works on every backend with no locks: the
/// backend hands you the stored bytes (or `None`), you return the decision and the new
/// bytes. Unreadable bytes must be treated as a fresh state, never a panic.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::strategy::{Algorithm, StateBytes, Transition};
/// use traffik_core::{Decision, Micros, Rate, Result};
///
/// /// Admits one request per period, whatever the limit says.
/// #[derive(Debug)]
/// struct OnePerPeriod;
///
/// impl Algorithm for OnePerPeriod {
///     fn capacity(&self, _rate: &Rate) -> u64 {
///         1
///     }
///
///     fn apply(&self, state: Option<&[u8]>, now: Micros, rate: &Rate, _cost: u64) -> Result<Transition> {
///         let last = state.and_then(|b| b.try_into().ok()).map(u64::from_le_bytes);
///         let period = rate.period_micros();
///         match last {
///             Some(last) if now < last + period => {
///                 let wait = Duration::from_micros(last + period - now);
///                 Ok(Transition::keep(Decision::deny(1, 0, wait, wait)))
///             }
///             _ => {
///                 let state = StateBytes::from_slice(&now.to_le_bytes());
///                 let ttl = rate.period();
///                 Ok(Transition::put(Decision::allow(1, 0, ttl), state, ttl))
///             }
///         }
///     }
///
///     fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
///         match self.apply(state, now, rate, 1) {
///             Ok(t) if t.decision.allowed => Decision::allow(1, 1, Duration::ZERO),
///             Ok(t) => t.decision,
///             Err(_) => Decision::allow(1, 1, Duration::ZERO),
///         }
///     }
/// }
/// ```
pub trait Algorithm: Send + Sync + Debug + 'static {
    /// The largest cost this algorithm can ever admit at once for `rate`.
    fn capacity(&self, rate: &Rate) -> u64;

    /// A window id, for algorithms whose state belongs to one time window: the state of an
    /// earlier window reads as absent. Redis and memcached store it under `key:window`; the
    /// in-memory backend tags the client's one slot with it. `None` (the default) keeps one
    /// state per client.
    fn window(&self, _now: Micros, _rate: &Rate) -> Option<u64> {
        None
    }

    /// Decides a request of `cost` (at least 1 and at most [`capacity`](Self::capacity))
    /// against the stored `state` at time `now`.
    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition>;

    /// What a request of cost 1 would get now, without consuming anything.
    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision;

    /// The built-in this is, if any; backends with native implementations use it.
    fn builtin(&self) -> Option<Builtin> {
        None
    }
}

/// Runs one transition with the rules every algorithm shares: an unlimited rate admits
/// without touching state, a cost of 0 is a free pass that consumes nothing, and a cost
/// above the algorithm's capacity is [`Error::CostExceedsCapacity`].
///
/// Backends call this rather than [`Algorithm::apply`] directly.
pub fn run(
    algorithm: &dyn Algorithm,
    state: Option<&[u8]>,
    now: Micros,
    rate: &Rate,
    cost: u64,
) -> Result<Transition> {
    if rate.is_unlimited() {
        return Ok(Transition::keep(Decision::unlimited()));
    }
    if cost == 0 {
        let peek = algorithm.peek(state, now, rate);
        return Ok(Transition::keep(Decision::allow(
            peek.limit,
            peek.remaining,
            peek.reset,
        )));
    }
    check_cost(algorithm, rate, cost)?;
    algorithm.apply(state, now, rate, cost)
}

/// [`Error::CostExceedsCapacity`] when `cost` can never be admitted under `rate`.
pub fn check_cost(algorithm: &dyn Algorithm, rate: &Rate, cost: u64) -> Result<()> {
    if rate.is_unlimited() {
        return Ok(());
    }
    let capacity = algorithm.capacity(rate);
    if cost > capacity {
        return Err(Error::CostExceedsCapacity { cost, capacity });
    }
    Ok(())
}

/// The storage key an algorithm's state lives under: `key`, or `key:window` for windowed
/// algorithms.
pub fn state_key(algorithm: &dyn Algorithm, key: &str, now: Micros, rate: &Rate) -> String {
    match algorithm.window(now, rate) {
        Some(window) => format!("{key}:{window}"),
        None => key.to_owned(),
    }
}

/// A strategy as a throttle sees it: decide a request for `key` on `backend`.
///
/// Every [`Algorithm`] implements this by asking the backend to run it atomically. Implement
/// it directly for a strategy written over the backend primitives, as in the Python
/// library; see `examples/custom_strategy.rs`.
pub trait Strategy: Send + Sync + Debug + 'static {
    /// Decides (and consumes) a request of `cost` for `key`.
    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>>;

    /// [`hit`](Strategy::hit), to be answered within `limit`: a strategy whose hit is one
    /// [`Backend::decide`] passes the limit on ([`Backend::decide_within`]), so that a
    /// backend that [bounds its decisions](Backend::bounds_decisions) keeps it. The
    /// default hits, and leaves the limit to the caller's timer.
    fn hit_within<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        let _ = limit;
        self.hit(key, rate, cost, backend)
    }

    /// What a request of cost 1 would get now, without consuming anything.
    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>>;

    /// [`hit`](Strategy::hit) when `backend` can answer it without I/O
    /// ([`Backend::decide_at_once`]); `None` otherwise, having changed nothing. The
    /// default is `None`; an [`Algorithm`] asks the backend.
    fn hit_at_once(
        &self,
        key: &str,
        rate: &Rate,
        cost: u64,
        backend: &dyn Backend,
    ) -> Option<Result<Decision>> {
        let _ = (key, rate, cost, backend);
        None
    }

    /// The largest cost this strategy can ever admit at once under `rate`, when known.
    /// A throttle uses it to reject an impossible cost at start-up.
    fn capacity(&self, _rate: &Rate) -> Option<u64> {
        None
    }

    /// Whether [`hit`](Strategy::hit) is one [`Backend::decide`] call and nothing else,
    /// so that it completes at once on a backend that
    /// [decides in place](Backend::decides_in_place), and whether
    /// [`hit_within`](Strategy::hit_within) is one [`Backend::decide_within`] call with
    /// its limit, so that a throttle starts no timer for it on a backend that
    /// [bounds its decisions](Backend::bounds_decisions). True for every [`Algorithm`]; a
    /// strategy with a `hit` of its own keeps the default, `false`.
    fn hits_through_decide(&self) -> bool {
        false
    }
}

impl<A: Algorithm> Strategy for A {
    fn capacity(&self, rate: &Rate) -> Option<u64> {
        Some(Algorithm::capacity(self, rate))
    }

    fn hits_through_decide(&self) -> bool {
        true
    }

    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        backend.decide(key, self, rate, cost)
    }

    fn hit_within<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        backend.decide_within(key, self, rate, cost, limit)
    }

    fn hit_at_once(
        &self,
        key: &str,
        rate: &Rate,
        cost: u64,
        backend: &dyn Backend,
    ) -> Option<Result<Decision>> {
        backend.decide_at_once(key, self, rate, cost)
    }

    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        backend.peek(key, self, rate)
    }
}

/// Ceiling of `numerator / denominator` as microseconds.
pub(crate) fn ceil_div(numerator: u128, denominator: u128) -> u128 {
    // The operands nearly always fit in 64 bits (differences of times, a limit): one
    // 64-bit division then, instead of the 128-bit routine.
    match (u64::try_from(numerator), u64::try_from(denominator)) {
        (Ok(numerator), Ok(denominator)) => u128::from(numerator.div_ceil(denominator)),
        _ => numerator.div_ceil(denominator),
    }
}

/// `numerator / denominator`, rounded down; see [`ceil_div`].
pub(crate) fn floor_div(numerator: u128, denominator: u128) -> u128 {
    match (u64::try_from(numerator), u64::try_from(denominator)) {
        (Ok(numerator), Ok(denominator)) => u128::from(numerator / denominator),
        _ => numerator / denominator,
    }
}

/// Microseconds (possibly large) as a `Duration`, saturating.
pub(crate) fn micros(value: u128) -> Duration {
    Duration::from_micros(u64::try_from(value).unwrap_or(u64::MAX))
}

/// Logs that stored state could not be decoded and is being replaced by a fresh one.
pub(crate) fn corrupt(strategy: &'static str, bytes: &[u8]) {
    tracing::warn!(
        strategy,
        len = bytes.len(),
        "unreadable stored rate-limit state; judging the request on fresh state"
    );
}

#[cfg(test)]
mod tests {
    use super::{ceil_div, floor_div};
    use proptest::prelude::*;

    /// Operands on both sides of 2^64, so that both paths are taken.
    fn operand() -> impl Strategy<Value = u128> {
        prop_oneof![
            any::<u64>().prop_map(u128::from),
            any::<u128>(),
            (0u128..4).prop_map(|low| (1u128 << 64) - 2 + low),
        ]
    }

    proptest! {
        #[test]
        fn divisions_agree_with_128_bit_arithmetic(n in operand(), d in operand()) {
            let d = d.max(1);
            prop_assert_eq!(ceil_div(n, d), n.div_ceil(d));
            prop_assert_eq!(floor_div(n, d), n / d);
        }
    }
}

//! Sliding window counter: two fixed-window counters, the previous one weighted.

use super::codec::{self, tag};
use super::{Algorithm, Builtin, Transition, corrupt, floor_div, micros};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// Approximates a sliding window with the current and previous fixed windows: the previous
/// window's count is weighted by how much of it still overlaps the sliding window.
///
/// A balance between accuracy and memory: constant state (three numbers), no
/// 2x burst at window boundaries. All arithmetic is exact integer arithmetic, so a denied
/// request's wait is exactly the time until it would be admitted.
///
/// ```
/// use traffik_core::strategy::{Algorithm, SlidingWindowCounter};
/// use traffik_core::Rate;
///
/// let rate: Rate = "10/m".parse()?;
/// let first = SlidingWindowCounter.apply(None, 0, &rate, 10)?;
/// assert!(first.decision.allowed);
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowCounter;

/// Counts relevant at `now`, rolled forward to `now`'s window.
struct Counts {
    previous: u64,
    current: u64,
    /// Microseconds elapsed in the current window.
    elapsed: u128,
    window: u64,
}

impl SlidingWindowCounter {
    fn counts(state: Option<&[u8]>, now: Micros, rate: &Rate) -> Counts {
        let period = rate.period_micros();
        let window = now / period;
        let elapsed = u128::from(now % period);
        let (previous, current) = match state {
            None => (0, 0),
            Some(bytes) => match codec::decode::<3>(bytes, tag::SLIDING_WINDOW_COUNTER) {
                // A window ahead of `now` means the wall clock stepped back: keep the counts.
                Some([w, previous, current]) if w >= window => (previous, current),
                Some([w, _, current]) if w + 1 == window => (current, 0),
                Some(_) => (0, 0),
                None => {
                    corrupt("sliding_window_counter", bytes);
                    (0, 0)
                }
            },
        };
        Counts {
            previous,
            current,
            elapsed,
            window,
        }
    }

    /// Whether `cost` fits now: `previous * (P - e) + (current + cost) * P <= limit * P`.
    fn fits(c: &Counts, cost: u64, rate: &Rate) -> bool {
        let period = u128::from(rate.period_micros());
        let weighted = u128::from(c.previous) * (period - c.elapsed);
        // Saturating: with counts and a period near `u64::MAX` the products exceed u128,
        // and anything that large is over the limit.
        let needed = (u128::from(c.current) + u128::from(cost)).saturating_mul(period);
        weighted.saturating_add(needed) <= u128::from(rate.limit()) * period
    }

    /// Whole units of cost that still fit now.
    fn remaining(c: &Counts, rate: &Rate) -> u64 {
        let period = u128::from(rate.period_micros());
        let used = (u128::from(c.previous) * (period - c.elapsed))
            .saturating_add(u128::from(c.current) * period);
        let room = floor_div(
            (u128::from(rate.limit()) * period).saturating_sub(used),
            period,
        );
        u64::try_from(room).unwrap_or(u64::MAX)
    }

    /// Microseconds until `cost` fits, assuming it does not fit now.
    fn wait(c: &Counts, cost: u64, rate: &Rate) -> u128 {
        let period = u128::from(rate.period_micros());
        let limit = u128::from(rate.limit());
        let (current, cost) = (u128::from(c.current), u128::from(cost));
        if current + cost <= limit && c.previous > 0 {
            // Later in this window, once the previous window weighs little enough:
            // previous * (P - e) <= (limit - current - cost) * P.
            let allowance = floor_div((limit - current - cost) * period, u128::from(c.previous));
            let needed = period - allowance.min(period);
            needed.saturating_sub(c.elapsed).max(1)
        } else {
            // In the next window, where this window's count becomes the previous one.
            let needed = match (limit.saturating_sub(cost) * period).checked_div(current) {
                Some(allowance) => period - allowance.min(period),
                None => 0,
            };
            (period - c.elapsed) + needed
        }
    }

    /// Microseconds until both windows have no weight left.
    fn until_clear(c: &Counts, rate: &Rate) -> u128 {
        let period = u128::from(rate.period_micros());
        if c.current > 0 {
            2 * period - c.elapsed
        } else if c.previous > 0 {
            period - c.elapsed
        } else {
            0
        }
    }
}

impl Algorithm for SlidingWindowCounter {
    fn capacity(&self, rate: &Rate) -> u64 {
        rate.limit()
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let limit = rate.limit();
        let mut counts = Self::counts(state, now, rate);
        if !Self::fits(&counts, cost, rate) {
            return Ok(Transition::keep(Decision::deny(
                limit,
                Self::remaining(&counts, rate),
                micros(Self::wait(&counts, cost, rate)),
                micros(Self::until_clear(&counts, rate)),
            )));
        }
        counts.current += cost;
        let reset = micros(Self::until_clear(&counts, rate));
        Ok(Transition::put(
            Decision::allow(limit, Self::remaining(&counts, rate), reset),
            codec::encode(
                tag::SLIDING_WINDOW_COUNTER,
                &[counts.window, counts.previous, counts.current],
            ),
            reset,
        ))
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let limit = rate.limit();
        let counts = Self::counts(state, now, rate);
        let reset = micros(Self::until_clear(&counts, rate));
        if Self::fits(&counts, 1, rate) {
            Decision::allow(limit, Self::remaining(&counts, rate), reset)
        } else {
            Decision::deny(limit, 0, micros(Self::wait(&counts, 1, rate)), reset)
        }
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::SlidingWindowCounter)
    }
}

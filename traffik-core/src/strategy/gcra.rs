//! GCRA: the generic cell rate algorithm, one timestamp per client.

use super::codec::{self, tag};
use super::{Algorithm, Builtin, Transition, ceil_div, corrupt, floor_div, micros};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// The generic cell rate algorithm: stores only the theoretical arrival time (TAT) of the
/// next request. Requests are spaced by the emission interval `T = period / limit`, with a
/// tolerance for bursts of up to `burst` (default: the rate's limit, as governor does).
///
/// Time is kept scaled by the limit, so `T` is the integer `period` and no rounding ever
/// drifts.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::strategy::{Algorithm, Gcra, Write};
/// use traffik_core::Rate;
///
/// let rate: Rate = "1/s".parse()?;
/// let gcra = Gcra::with_burst(1);
/// let first = gcra.apply(None, 0, &rate, 1)?;
/// let Write::Put { state, .. } = first.write else { unreachable!() };
/// let second = gcra.apply(Some(&state), 250_000, &rate, 1)?;
/// assert_eq!(second.decision.wait, Duration::from_millis(750));
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Gcra {
    burst: Option<u64>,
}

impl Gcra {
    /// GCRA with a burst equal to the rate's limit.
    pub const fn new() -> Self {
        Self { burst: None }
    }

    /// GCRA admitting bursts of up to `burst` requests.
    pub const fn with_burst(burst: u64) -> Self {
        Self { burst: Some(burst) }
    }

    fn burst(&self, rate: &Rate) -> u64 {
        self.burst.unwrap_or(rate.limit())
    }

    /// `(now, TAT)` scaled by the limit, the TAT no earlier than now. A TAT further ahead
    /// than the burst tolerance plus one period (room for a wall clock stepping back)
    /// cannot have been written by this algorithm and is reset.
    fn times(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> (u128, u128) {
        let limit = u128::from(rate.limit());
        let period = u128::from(rate.period_micros());
        let now = u128::from(now) * limit;
        // Saturating: with a limit, burst and period near `u64::MAX` the sum exceeds u128.
        let tolerance = (u128::from(self.burst(rate)) * period).saturating_add(period * limit);
        let tat = match state {
            None => now,
            Some(bytes) => match codec::decode::<2>(bytes, tag::GCRA)
                .map(|[high, low]| (u128::from(high) << 64) | u128::from(low))
                .filter(|tat| tat.saturating_sub(now) <= tolerance)
            {
                Some(tat) => tat,
                None => {
                    corrupt("gcra", bytes);
                    now
                }
            },
        };
        (now, tat.max(now))
    }

    fn remaining(&self, backlog: u128, rate: &Rate) -> u64 {
        let period = u128::from(rate.period_micros());
        let room = floor_div(
            (u128::from(self.burst(rate)) * period).saturating_sub(backlog),
            period,
        );
        u64::try_from(room).unwrap_or(u64::MAX)
    }
}

impl Algorithm for Gcra {
    fn capacity(&self, rate: &Rate) -> u64 {
        self.burst(rate)
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let (period, limit) = (u128::from(rate.period_micros()), u128::from(rate.limit()));
        let burst = self.burst(rate);
        let tolerance = u128::from(burst) * period;
        let (now_scaled, tat) = self.times(state, now, rate);
        // Saturating: only reachable with a limit and period near `u64::MAX`, where the
        // scaled times approach the end of u128.
        let new_tat = tat.saturating_add(u128::from(cost) * period);
        let backlog = new_tat - now_scaled;
        if backlog > tolerance {
            let current = tat - now_scaled;
            return Ok(Transition::keep(Decision::deny(
                burst,
                self.remaining(current, rate),
                micros(ceil_div(backlog - tolerance, limit)),
                micros(ceil_div(current, limit)),
            )));
        }
        let reset = micros(ceil_div(backlog, limit));
        let state = codec::encode(tag::GCRA, &[(new_tat >> 64) as u64, new_tat as u64]);
        Ok(Transition::put(
            Decision::allow(burst, self.remaining(backlog, rate), reset),
            state,
            reset,
        ))
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let (period, limit) = (u128::from(rate.period_micros()), u128::from(rate.limit()));
        let burst = self.burst(rate);
        let (now_scaled, tat) = self.times(state, now, rate);
        let current = tat - now_scaled;
        let reset = micros(ceil_div(current, limit));
        let excess = current
            .saturating_add(period)
            .saturating_sub(u128::from(burst) * period);
        if excess == 0 {
            Decision::allow(burst, self.remaining(current, rate), reset)
        } else {
            Decision::deny(
                burst,
                self.remaining(current, rate),
                micros(ceil_div(excess, limit)),
                reset,
            )
        }
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::Gcra { burst: self.burst })
    }
}

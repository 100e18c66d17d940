//! Fixed window: count cost per aligned window of one period.

use super::codec::{self, tag};
use super::{Algorithm, Builtin, Transition, corrupt, micros};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// Divides time into aligned windows of one period and admits up to `limit` cost in each.
///
/// The default strategy: one counter per client, constant memory, fast. The window id is
/// part of the storage key, so a new window starts from zero the instant it begins, and a
/// denied request is told exactly how long until its window ends. Like every fixed window,
/// it admits up to twice the limit across a window boundary; use [`SlidingWindowLog`] or
/// [`SlidingWindowCounter`] where that matters.
///
/// [`SlidingWindowLog`]: super::SlidingWindowLog
/// [`SlidingWindowCounter`]: super::SlidingWindowCounter
///
/// ```
/// use std::time::Duration;
/// use traffik_core::strategy::{Algorithm, FixedWindow, Write};
/// use traffik_core::Rate;
///
/// let rate: Rate = "2/10s".parse()?;
/// let now = 3_000_000; // 3 s into the first window
/// let first = FixedWindow.apply(None, now, &rate, 1)?;
/// let Write::Put { state, .. } = first.write else { unreachable!() };
/// let second = FixedWindow.apply(Some(&state), now, &rate, 2)?;
/// assert!(!second.decision.allowed);
/// assert_eq!(second.decision.wait, Duration::from_secs(7)); // until the window ends
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FixedWindow;

impl FixedWindow {
    fn count(state: Option<&[u8]>) -> u64 {
        match state {
            None => 0,
            Some(bytes) => match codec::decode::<1>(bytes, tag::FIXED_WINDOW) {
                Some([count]) => count,
                None => {
                    corrupt("fixed_window", bytes);
                    0
                }
            },
        }
    }

    /// Microseconds from `now` to the end of its window.
    fn until_window_end(now: Micros, rate: &Rate) -> Micros {
        let period = rate.period_micros();
        period - now % period
    }
}

impl Algorithm for FixedWindow {
    fn capacity(&self, rate: &Rate) -> u64 {
        rate.limit()
    }

    fn window(&self, now: Micros, rate: &Rate) -> Option<u64> {
        Some(now / rate.period_micros())
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let limit = rate.limit();
        let count = Self::count(state);
        let reset = micros(u128::from(Self::until_window_end(now, rate)));
        match count.checked_add(cost).filter(|&total| total <= limit) {
            Some(total) => Ok(Transition::put(
                Decision::allow(limit, limit - total, reset),
                codec::encode(tag::FIXED_WINDOW, &[total]),
                reset,
            )),
            None => Ok(Transition::keep(Decision::deny(
                limit,
                limit.saturating_sub(count),
                reset,
                reset,
            ))),
        }
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let limit = rate.limit();
        let count = Self::count(state);
        let reset = micros(u128::from(Self::until_window_end(now, rate)));
        if count < limit {
            Decision::allow(limit, limit - count, reset)
        } else {
            Decision::deny(limit, 0, reset, reset)
        }
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::FixedWindow)
    }
}

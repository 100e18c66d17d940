//! The fixed window as memcached stores it: a decimal counter that `ma` can increment.

use std::time::Duration;

use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;
use crate::strategy::codec::{self, tag};
use crate::strategy::{Algorithm, FixedWindow, StateBytes, Transition, Write, corrupt};

/// A counter as memcached stores it: ASCII decimal (what `ma` reads and writes).
pub(crate) fn parse_decimal(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

/// [`FixedWindow`], reading and writing its count as ASCII decimal instead of the tagged
/// binary form, so that one `ma` command (atomic on the server) can decide most requests
/// and the compare-and-swap path stays compatible with it. Decisions are
/// [`FixedWindow`]'s own.
#[derive(Debug, Clone, Copy)]
pub(crate) struct DecimalFixedWindow;

impl DecimalFixedWindow {
    /// The count held by stored bytes; unreadable bytes count as a fresh window.
    pub(crate) fn count(state: Option<&[u8]>) -> u64 {
        let Some(bytes) = state else { return 0 };
        match parse_decimal(bytes) {
            Some(count) => count,
            None => {
                corrupt("fixed_window", bytes);
                0
            }
        }
    }

    /// [`FixedWindow`]'s decision for a window that held `count` before this request.
    pub(crate) fn decide(count: u64, now: Micros, rate: &Rate, cost: u64) -> Result<Transition> {
        let binary = codec::encode(tag::FIXED_WINDOW, &[count]);
        FixedWindow.apply(Some(&binary), now, rate, cost)
    }

    /// How long from `now` until its window ends (the counter's lifetime).
    pub(crate) fn until_window_end(now: Micros, rate: &Rate) -> Duration {
        let period = rate.period_micros();
        Duration::from_micros(period - now % period)
    }
}

impl Algorithm for DecimalFixedWindow {
    fn capacity(&self, rate: &Rate) -> u64 {
        FixedWindow.capacity(rate)
    }

    fn window(&self, now: Micros, rate: &Rate) -> Option<u64> {
        FixedWindow.window(now, rate)
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let mut transition = Self::decide(Self::count(state), now, rate, cost)?;
        if let Write::Put { state, .. } = &mut transition.write {
            if let Some([total]) = codec::decode::<1>(state, tag::FIXED_WINDOW) {
                *state = StateBytes::from_slice(itoa::Buffer::new().format(total).as_bytes());
            }
        }
        Ok(transition)
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let binary = codec::encode(tag::FIXED_WINDOW, &[Self::count(state)]);
        FixedWindow.peek(Some(&binary), now, rate)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides_like_the_fixed_window_and_stores_decimal() {
        let rate: Rate = "3/10s".parse().unwrap();
        let now = 12_000_000;
        let mut state: Option<StateBytes> = None;
        for expected in ["1", "2", "3"] {
            let t = DecimalFixedWindow
                .apply(state.as_deref(), now, &rate, 1)
                .unwrap();
            assert!(t.decision.allowed);
            let Write::Put { state: next, ttl } = t.write else {
                panic!("an admitted request stores its count")
            };
            assert_eq!(&next[..], expected.as_bytes());
            assert_eq!(ttl, Duration::from_secs(8));
            state = Some(next);
        }
        let denied = DecimalFixedWindow
            .apply(state.as_deref(), now, &rate, 1)
            .unwrap();
        assert!(!denied.decision.allowed);
        assert_eq!(denied.decision.wait, Duration::from_secs(8));
        assert_eq!(
            DecimalFixedWindow.peek(state.as_deref(), now, &rate).wait,
            Duration::from_secs(8)
        );
    }

    #[test]
    fn unreadable_counts_start_fresh() {
        assert_eq!(DecimalFixedWindow::count(Some(b"\xF1garbage")), 0);
        assert_eq!(DecimalFixedWindow::count(Some(b"-3")), 0);
        assert_eq!(DecimalFixedWindow::count(Some(b"42")), 42);
        assert_eq!(
            DecimalFixedWindow::until_window_end(12_000_000, &"3/10s".parse().unwrap()),
            Duration::from_secs(8)
        );
    }
}

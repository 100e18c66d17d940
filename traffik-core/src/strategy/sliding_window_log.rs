//! Sliding window log: remember every admitted request of the last period.

use smallvec::SmallVec;

use super::codec::{self, tag};
use super::{Algorithm, Builtin, StateBytes, Transition, corrupt, micros};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// Keeps a log of the admitted requests of the last period and admits a request only if
/// the log's total cost plus its own stays within the limit.
///
/// The most accurate strategy: in any span of one period, at most `limit` cost is ever
/// admitted, with no boundary effect. Memory is O(limit) per client (requests admitted at
/// the same microsecond share one entry).
///
/// ```
/// use std::time::Duration;
/// use traffik_core::strategy::{Algorithm, SlidingWindowLog, Write};
/// use traffik_core::Rate;
///
/// let rate: Rate = "1/10s".parse()?;
/// let first = SlidingWindowLog.apply(None, 0, &rate, 1)?;
/// let Write::Put { state, .. } = first.write else { unreachable!() };
/// let second = SlidingWindowLog.apply(Some(&state), 4_000_000, &rate, 1)?;
/// assert_eq!(second.decision.wait, Duration::from_secs(6));
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SlidingWindowLog;

/// One log entry: admitted `cost` at time `at`.
/// A decoded log: on the stack up to 16 entries (a client at a few requests per window),
/// so that judging one request allocates nothing but the state it writes.
type Log = SmallVec<[Entry; 16]>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    at: Micros,
    cost: u64,
}

impl SlidingWindowLog {
    /// The entries still inside the window ending at `now`, oldest first.
    fn live(state: Option<&[u8]>, now: Micros, rate: &Rate) -> Log {
        let Some(bytes) = state else {
            return Log::new();
        };
        match Self::decode(bytes) {
            Some(mut entries) => {
                let period = rate.period_micros();
                entries.retain(|e| e.at.saturating_add(period) > now);
                entries
            }
            None => {
                corrupt("sliding_window_log", bytes);
                Log::new()
            }
        }
    }

    fn decode(bytes: &[u8]) -> Option<Log> {
        let mut fields = codec::decode_all(bytes, tag::SLIDING_WINDOW_LOG)?;
        // Room for the entry a request adds, so that adding it does not move the log.
        let mut entries = Log::with_capacity((bytes.len() - 1) / 16 + 1);
        while let Some(at) = fields.next() {
            let cost = fields.next()?;
            if cost == 0 || entries.last().is_some_and(|e: &Entry| e.at > at) {
                return None;
            }
            entries.push(Entry { at, cost });
        }
        Some(entries)
    }

    fn encode(entries: &[Entry]) -> StateBytes {
        let fields = entries.iter().flat_map(|e| [e.at, e.cost]);
        codec::encode_iter(tag::SLIDING_WINDOW_LOG, 2 * entries.len(), fields)
    }

    fn used(entries: &[Entry]) -> u64 {
        entries
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.cost))
    }

    /// Microseconds until the whole log has left the window.
    fn until_empty(entries: &[Entry], now: Micros, rate: &Rate) -> u128 {
        entries.last().map_or(0, |newest| {
            u128::from(
                newest
                    .at
                    .saturating_add(rate.period_micros())
                    .saturating_sub(now),
            )
        })
    }

    /// Microseconds until enough of the log has left the window to admit `cost`.
    fn wait_for(entries: &[Entry], used: u64, cost: u64, now: Micros, rate: &Rate) -> u128 {
        let limit = rate.limit();
        let mut freed = 0u64;
        for entry in entries {
            freed = freed.saturating_add(entry.cost);
            let left = used.saturating_sub(freed).checked_add(cost);
            if left.is_some_and(|left| left <= limit) {
                let leaves = entry.at.saturating_add(rate.period_micros());
                return u128::from(leaves.saturating_sub(now));
            }
        }
        Self::until_empty(entries, now, rate)
    }
}

impl Algorithm for SlidingWindowLog {
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
        let mut entries = Self::live(state, now, rate);
        let used = Self::used(&entries);
        // Checked, not saturating: with a limit of u64::MAX a saturated sum would pass.
        if used.checked_add(cost).is_none_or(|total| total > limit) {
            let wait = Self::wait_for(&entries, used, cost, now, rate);
            let reset = Self::until_empty(&entries, now, rate);
            return Ok(Transition::keep(Decision::deny(
                limit,
                limit.saturating_sub(used),
                micros(wait),
                micros(reset),
            )));
        }
        // Keep the log sorted even if the wall clock stepped back.
        let at = entries.partition_point(|e| e.at <= now);
        if at > 0 && entries[at - 1].at == now {
            entries[at - 1].cost += cost;
        } else {
            entries.insert(at, Entry { at: now, cost });
        }
        let reset = Self::until_empty(&entries, now, rate);
        Ok(Transition::put(
            Decision::allow(limit, limit - used - cost, micros(reset)),
            Self::encode(&entries),
            micros(reset),
        ))
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let limit = rate.limit();
        let entries = Self::live(state, now, rate);
        let used = Self::used(&entries);
        let reset = micros(Self::until_empty(&entries, now, rate));
        if used < limit {
            Decision::allow(limit, limit - used, reset)
        } else {
            let wait = Self::wait_for(&entries, used, 1, now, rate);
            Decision::deny(limit, 0, micros(wait), reset)
        }
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::SlidingWindowLog)
    }
}

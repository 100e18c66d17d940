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
/// the same microsecond share one entry): 4 bytes a request of cost 1, 8 with other
/// costs, for a period under 71 minutes (16 beyond).
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
        let (&tag, fields) = bytes.split_first()?;
        let width = match tag {
            tag::SLIDING_WINDOW_LOG => 16,
            tag::SLIDING_WINDOW_LOG_UNIT => 4,
            tag::SLIDING_WINDOW_LOG_NARROW => 8,
            _ => return None,
        };
        // Room for the entry a request adds, so that adding it does not move the log.
        let mut entries = Log::with_capacity(fields.len().saturating_sub(8) / width + 1);
        let mut push = |at: Micros, cost: u64| {
            let sorted = entries.last().is_none_or(|e: &Entry| e.at <= at);
            (cost != 0 && sorted).then(|| entries.push(Entry { at, cost }))
        };
        match tag {
            tag::SLIDING_WINDOW_LOG => {
                let mut fields = codec::decode_all(bytes, tag)?;
                while let Some(at) = fields.next() {
                    push(at, fields.next()?)?;
                }
            }
            _ => {
                let (base, rest) = Self::compact(fields, width)?;
                for entry in rest.chunks_exact(width) {
                    let offset = word_at(entry, 0)?;
                    let cost = if width == 8 { word_at(entry, 4)? } else { 1 };
                    push(base.checked_add(u64::from(offset))?, u64::from(cost))?;
                }
            }
        }
        Some(entries)
    }

    /// A compact log's base (its oldest entry's time) and its entries, `width` bytes each
    /// (after the tag); `None` when the bytes stop short of a whole entry.
    fn compact(fields: &[u8], width: usize) -> Option<(Micros, &[u8])> {
        let (base, entries) = fields.split_first_chunk::<8>()?;
        (entries.len() % width == 0).then_some((u64::from_le_bytes(*base), entries))
    }

    /// The log's state, in the narrowest form that holds it: offsets from the oldest
    /// entry's time in 32 bits when the log spans less than 2^32 µs (71 minutes), without
    /// costs when every cost is 1; else every time and cost in 64 bits. A dozen requests
    /// of cost 1 take 57 bytes instead of 193, and a client of up to five requests in the
    /// window keeps its state inline, with no allocation of its own.
    fn encode(entries: &[Entry]) -> StateBytes {
        let base = entries.first().map_or(0, |e| e.at);
        let span = entries.last().map_or(0, |e| e.at - base);
        let narrow = u32::try_from(span).is_ok();
        let offset = |e: &Entry| e.at - base;
        if narrow && entries.iter().all(|e| e.cost == 1) {
            let words = entries.iter().map(offset);
            return codec::encode_packed(
                tag::SLIDING_WINDOW_LOG_UNIT,
                base,
                4,
                entries.len(),
                words,
            );
        }
        if narrow && entries.iter().all(|e| u32::try_from(e.cost).is_ok()) {
            let words = entries.iter().map(|e| offset(e) | e.cost << 32);
            return codec::encode_packed(
                tag::SLIDING_WINDOW_LOG_NARROW,
                base,
                8,
                entries.len(),
                words,
            );
        }
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

    /// A request of `cost` judged on the log decoded.
    fn apply_decoded(state: Option<&[u8]>, now: Micros, rate: &Rate, cost: u64) -> Transition {
        let limit = rate.limit();
        let mut entries = Self::live(state, now, rate);
        let used = Self::used(&entries);
        // Checked, not saturating: with a limit of u64::MAX a saturated sum would pass.
        if used.checked_add(cost).is_none_or(|total| total > limit) {
            let wait = Self::wait_for(&entries, used, cost, now, rate);
            let reset = Self::until_empty(&entries, now, rate);
            return Transition::keep(Decision::deny(
                limit,
                limit.saturating_sub(used),
                micros(wait),
                micros(reset),
            ));
        }
        // Keep the log sorted even if the wall clock stepped back.
        let at = entries.partition_point(|e| e.at <= now);
        if at > 0 && entries[at - 1].at == now {
            entries[at - 1].cost += cost;
        } else {
            entries.insert(at, Entry { at: now, cost });
        }
        let reset = Self::until_empty(&entries, now, rate);
        Transition::put(
            Decision::allow(limit, limit - used - cost, micros(reset)),
            Self::encode(&entries),
            micros(reset),
        )
    }

    /// A request of cost 1 judged on the bytes of a log of requests of cost 1 (`0xA3`),
    /// without decoding it: its live entries are a run of its offsets, their cost is their
    /// number, and the new state is that run rebased on its oldest entry with `now`
    /// appended. Exactly [`apply_decoded`](Self::apply_decoded)'s answer and state, in
    /// one pass over the offsets instead of four over decoded entries; `None`, for the
    /// general path, for anything else: another form, an unreadable log, a clock that
    /// stepped back to or before the newest entry, a log that would span 2^32 µs.
    fn apply_unit(bytes: &[u8], now: Micros, rate: &Rate) -> Option<Transition> {
        let (&tag::SLIDING_WINDOW_LOG_UNIT, fields) = bytes.split_first()? else {
            return None;
        };
        let (base, offsets) = Self::compact(fields, 4)?;
        base.checked_add(u64::from(u32::MAX))?;
        // Within the bytes, as `count` says.
        let offset = |i: usize| word_at(offsets, 4 * i).unwrap_or_default();
        let count = offsets.len() / 4;
        let period = rate.period_micros();
        // The first entry still in the window, and the offsets in order.
        let mut first = count;
        let mut previous = 0;
        for i in 0..count {
            let current = offset(i);
            if current < previous {
                return None;
            }
            previous = current;
            let at = base + u64::from(current);
            if first == count && at.saturating_add(period) > now {
                first = i;
            }
        }
        let limit = rate.limit();
        let used = (count - first) as u64;
        let newest = (first < count).then(|| base + u64::from(offset(count - 1)));
        let until_empty = |newest: Option<Micros>| {
            newest.map_or(0, |at| {
                u128::from(at.saturating_add(period).saturating_sub(now))
            })
        };
        if used >= limit {
            // The entry whose leaving makes room for one more: `used - limit` entries
            // after the first live one.
            let leaving = base + u64::from(offset(first + (used - limit) as usize));
            let wait = u128::from(leaving.saturating_add(period).saturating_sub(now));
            return Some(Transition::keep(Decision::deny(
                limit,
                0,
                micros(wait),
                micros(until_empty(newest)),
            )));
        }
        if newest.is_some_and(|newest| newest >= now) {
            return None;
        }
        // The oldest live entry, and its offset (by which the live run is rebased); with
        // none live, the new entry alone (and the base, perhaps ahead of `now`, unused).
        let (oldest, shift) = if first < count {
            let shift = offset(first);
            (base + u64::from(shift), shift)
        } else {
            (now, 0)
        };
        let last = u32::try_from(now - oldest).ok()?;
        let live = (first..count).map(|i| u64::from(offset(i) - shift));
        let state = codec::encode_packed(
            tag::SLIDING_WINDOW_LOG_UNIT,
            oldest,
            4,
            count - first + 1,
            live.chain([u64::from(last)]),
        );
        let reset = micros(until_empty(Some(now)));
        Some(Transition::put(
            Decision::allow(limit, limit - used - 1, reset),
            state,
            reset,
        ))
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
        if cost == 1
            && let Some(judged) = state.and_then(|bytes| Self::apply_unit(bytes, now, rate))
        {
            return Ok(judged);
        }
        Ok(Self::apply_decoded(state, now, rate, cost))
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

/// The little-endian `u32` at `at` in `bytes`, if the bytes hold it.
fn word_at(bytes: &[u8], at: usize) -> Option<u32> {
    let word = bytes.get(at..at.checked_add(4)?)?;
    word.try_into().ok().map(u32::from_le_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::strategy::Write;
    use proptest::prelude::*;

    /// A sorted log: times from `base` on, steps that may reach past 32 bits, costs of 1
    /// mostly, some larger, some past 32 bits.
    fn log() -> impl Strategy<Value = Vec<Entry>> {
        let step = prop_oneof![8 => 0u64..5_000_000, 1 => 0u64..(1 << 34)];
        let cost = prop_oneof![8 => Just(1u64), 2 => 1u64..1000, 1 => 1u64..(1 << 40)];
        (0u64..(1 << 52), prop::collection::vec((step, cost), 1..40)).prop_map(|(base, steps)| {
            let mut at = base;
            steps
                .into_iter()
                .map(|(step, cost)| {
                    at += step;
                    Entry { at, cost }
                })
                .collect()
        })
    }

    proptest! {
        #[test]
        fn a_log_reads_back_as_written(entries in log()) {
            let state = SlidingWindowLog::encode(&entries);
            let read = SlidingWindowLog::decode(&state);
            prop_assert_eq!(read.as_deref(), Some(&entries[..]));
            let span = entries[entries.len() - 1].at - entries[0].at;
            let expected = match (span <= u64::from(u32::MAX), entries.iter().map(|e| e.cost).max()) {
                (true, Some(1)) => tag::SLIDING_WINDOW_LOG_UNIT,
                (true, Some(cost)) if cost <= u64::from(u32::MAX) => tag::SLIDING_WINDOW_LOG_NARROW,
                _ => tag::SLIDING_WINDOW_LOG,
            };
            prop_assert_eq!(state[0], expected);
        }

        #[test]
        fn any_bytes_decode_to_a_sorted_log_or_nothing(bytes in prop::collection::vec(any::<u8>(), 0..80)) {
            if let Some(entries) = SlidingWindowLog::decode(&bytes) {
                prop_assert!(entries.windows(2).all(|pair| pair[0].at <= pair[1].at));
                prop_assert!(entries.iter().all(|e| e.cost > 0));
            }
        }
    }

    /// A log of requests of cost 1 as `0xA3` bytes: any base, offsets in order or not.
    fn unit_log() -> impl Strategy<Value = Vec<u8>> {
        let base = prop_oneof![
            4 => 1_700_000_000_000_000u64..1_700_000_100_000_000,
            1 => any::<u64>(),
            1 => Just(u64::MAX - u64::from(u32::MAX)),
        ];
        let offsets = prop_oneof![
            4 => prop::collection::vec(0u32..3_000_000, 0..24),
            1 => prop::collection::vec(any::<u32>(), 0..24),
        ];
        (base, offsets, any::<bool>()).prop_map(|(base, mut offsets, sort)| {
            if sort {
                offsets.sort_unstable();
            }
            let mut bytes = vec![tag::SLIDING_WINDOW_LOG_UNIT];
            bytes.extend_from_slice(&base.to_le_bytes());
            offsets
                .iter()
                .for_each(|o| bytes.extend_from_slice(&o.to_le_bytes()));
            bytes
        })
    }

    proptest! {
        #[test]
        fn the_unit_path_answers_and_writes_as_the_decoded_one(
            bytes in unit_log(),
            ahead in prop_oneof![0u64..4_000_000, any::<u64>()],
            behind in prop_oneof![3 => Just(0u64), 1 => 0u64..4_000_000, 1 => any::<u64>()],
            limit in 1u64..30,
            period_ms in prop_oneof![1u64..3_000, Just(4_294_968), Just(7_200_000)],
        ) {
            let rate = Rate::new(limit, std::time::Duration::from_millis(period_ms)).unwrap();
            let base = u64::from_le_bytes(bytes[1..9].try_into().unwrap());
            // Mostly at or after the log's base; sometimes before it (a clock that
            // stepped back, a forged base).
            let now = base.saturating_add(ahead).saturating_sub(behind);
            let decoded = SlidingWindowLog::apply_decoded(Some(&bytes), now, &rate, 1);
            if let Some(unit) = SlidingWindowLog::apply_unit(&bytes, now, &rate) {
                prop_assert_eq!(unit, decoded);
            }
        }
    }

    #[test]
    fn the_unit_path_takes_a_busy_clients_log() {
        let rate: Rate = "20/s".parse().unwrap();
        let mut state = StateBytes::new();
        let mut now = 1_700_000_000_000_000;
        for _ in 0..40 {
            now += 70_000;
            let expected = SlidingWindowLog::apply_decoded(Some(&state), now, &rate, 1);
            let transition = SlidingWindowLog.apply(Some(&state), now, &rate, 1).unwrap();
            assert_eq!(transition, expected);
            if state.len() > 1 {
                assert!(SlidingWindowLog::apply_unit(&state, now, &rate).is_some());
            }
            if let Write::Put { state: next, .. } = transition.write {
                state = next;
            }
        }
    }

    #[test]
    fn a_dozen_requests_of_cost_one_take_57_bytes() {
        let entries: Vec<Entry> = (0..12)
            .map(|i| Entry {
                at: 1_700_000_000_000_000 + i * 70_000,
                cost: 1,
            })
            .collect();
        assert_eq!(SlidingWindowLog::encode(&entries).len(), 57);
        // Up to five such entries stay inline: no heap for the state at all.
        assert!(!SlidingWindowLog::encode(&entries[..5]).spilled());
    }

    #[test]
    fn malformed_compact_logs_are_refused() {
        let base = 1_700_000_000_000_000u64.to_le_bytes();
        let unit = |offsets: &[u32]| {
            let mut bytes = vec![tag::SLIDING_WINDOW_LOG_UNIT];
            bytes.extend_from_slice(&base);
            offsets
                .iter()
                .for_each(|o| bytes.extend_from_slice(&o.to_le_bytes()));
            bytes
        };
        assert!(SlidingWindowLog::decode(&unit(&[0, 5, 9])).is_some());
        // Out of order, cut short, no base.
        assert!(SlidingWindowLog::decode(&unit(&[0, 9, 5])).is_none());
        assert!(SlidingWindowLog::decode(&unit(&[0, 5])[..15]).is_none());
        assert!(SlidingWindowLog::decode(&[tag::SLIDING_WINDOW_LOG_UNIT, 1, 2]).is_none());
        // A cost of 0.
        let mut narrow = vec![tag::SLIDING_WINDOW_LOG_NARROW];
        narrow.extend_from_slice(&base);
        narrow.extend_from_slice(&[0; 8]);
        assert!(SlidingWindowLog::decode(&narrow).is_none());
    }
}

//! How values meet memcached's expiry: exptimes in memcached's encoding, and, under an
//! explicit clock, an 8-byte header holding each value's expiry on that clock.

use std::borrow::Cow;
use std::ops::Range;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::conn::Item;
use crate::clock::SharedClock;

/// The longest TTL memcached takes as relative seconds; longer ones are Unix times.
const RELATIVE_TTL_LIMIT: u64 = 30 * 24 * 3600;
/// How much longer than its TTL a key lives in memcached under an explicit clock.
const EXPLICIT_CLOCK_MARGIN: Duration = Duration::from_secs(3600);

/// When a written value expires.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Expiry {
    /// After this long.
    After(Duration),
    /// Never (until deleted, or the namespace is reset).
    Never,
    /// When the value it replaces would have.
    Unchanged,
}

/// A stored item as [`open`] reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Stored {
    /// Where the payload lies in the item's data; `None` when expired.
    pub(crate) payload: Option<Range<usize>>,
    /// Its expiry on the explicit clock (`u64::MAX`: none).
    expires_at: u64,
    /// Its memcached exptime as the server reported it.
    exptime: u64,
}

/// Wraps `payload` for storage: as it is, or (with an explicit `clock`) behind its expiry
/// time on that clock. Returns the bytes and memcached's exptime for them. `previous` is
/// the value being replaced, for [`Expiry::Unchanged`].
pub(crate) fn seal<'p>(
    clock: Option<&SharedClock>,
    payload: &'p [u8],
    expiry: Expiry,
    previous: Option<&Stored>,
) -> (Cow<'p, [u8]>, u64) {
    let Some(clock) = clock else {
        let exptime = match expiry {
            Expiry::After(ttl) => exptime(ttl),
            Expiry::Never => 0,
            Expiry::Unchanged => previous.map_or(0, |p| p.exptime),
        };
        return (Cow::Borrowed(payload), exptime);
    };
    let now = clock.now_micros();
    let expires_at = match expiry {
        Expiry::After(ttl) => {
            now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX))
        }
        Expiry::Never => u64::MAX,
        Expiry::Unchanged => previous.map_or(u64::MAX, |p| p.expires_at),
    };
    let exptime = match expires_at {
        u64::MAX => 0,
        at => exptime(Duration::from_micros(at.saturating_sub(now)) + EXPLICIT_CLOCK_MARGIN),
    };
    let mut sealed = Vec::with_capacity(8 + payload.len());
    sealed.extend_from_slice(&expires_at.to_le_bytes());
    sealed.extend_from_slice(payload);
    (Cow::Owned(sealed), exptime)
}

/// Unwraps a stored item: where its payload is (`None` when expired on the explicit
/// `clock`) and its expiry.
pub(crate) fn open(clock: Option<&SharedClock>, item: &Item) -> Stored {
    let whole = Stored {
        payload: Some(0..item.data.len()),
        expires_at: u64::MAX,
        exptime: item.exptime,
    };
    let Some(clock) = clock else {
        return whole;
    };
    let Some((header, _)) = item.data.split_first_chunk::<8>() else {
        // Not written by this backend: no expiry of its own.
        return whole;
    };
    let expires_at = u64::from_le_bytes(*header);
    let live = clock.now_micros() < expires_at;
    Stored {
        payload: live.then_some(8..item.data.len()),
        expires_at,
        exptime: item.exptime,
    }
}

/// Memcached's exptime for a TTL: whole seconds rounded up (at least 1, since 0 means
/// never), and beyond 30 days the Unix time it ends at.
pub(crate) fn exptime(ttl: Duration) -> u64 {
    let seconds = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
    let seconds = seconds.max(1);
    if seconds <= RELATIVE_TTL_LIMIT {
        return seconds;
    }
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    now.saturating_add(seconds)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::clock::ManualClock;

    #[test]
    fn exptimes() {
        assert_eq!(exptime(Duration::ZERO), 1, "0 would mean never");
        assert_eq!(exptime(Duration::from_millis(1)), 1);
        assert_eq!(exptime(Duration::from_millis(1500)), 2);
        assert_eq!(
            exptime(Duration::from_secs(RELATIVE_TTL_LIMIT)),
            RELATIVE_TTL_LIMIT
        );
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let absolute = exptime(Duration::from_secs(RELATIVE_TTL_LIMIT + 1));
        assert!(
            absolute > now + RELATIVE_TTL_LIMIT,
            "a Unix time beyond 30 days"
        );
    }

    fn item(data: Vec<u8>, exptime: u64) -> Item {
        Item {
            data,
            cas: 1,
            exptime,
        }
    }

    #[test]
    fn without_a_clock_values_are_stored_as_they_are() {
        let (bytes, exptime) = seal(None, b"v", Expiry::After(Duration::from_secs(5)), None);
        assert_eq!((&bytes[..], exptime), (&b"v"[..], 5));
        let stored = open(None, &item(b"v".to_vec(), 5));
        assert_eq!(stored.payload, Some(0..1));
        assert_eq!(seal(None, b"w", Expiry::Unchanged, Some(&stored)).1, 5);
        assert_eq!(seal(None, b"w", Expiry::Never, None).1, 0);
    }

    #[test]
    fn an_explicit_clock_judges_expiry() {
        let manual = ManualClock::new(1_000_000);
        let clock: SharedClock = Arc::new(manual.clone());
        let (bytes, exptime) = seal(
            Some(&clock),
            b"v",
            Expiry::After(Duration::from_secs(10)),
            None,
        );
        assert_eq!(exptime, 3610, "the TTL plus the margin");
        let stored = item(bytes.into_owned(), exptime);
        assert_eq!(open(Some(&clock), &stored).payload, Some(8..9));
        // Rewritten unchanged: same expiry on the clock.
        let kept = seal(
            Some(&clock),
            b"w",
            Expiry::Unchanged,
            Some(&open(Some(&clock), &stored)),
        );
        manual.advance(Duration::from_secs(10));
        assert_eq!(open(Some(&clock), &stored).payload, None);
        assert_eq!(
            open(Some(&clock), &item(kept.0.into_owned(), 1)).payload,
            None
        );
        // Bytes too short for a header are someone else's: read as they are.
        assert_eq!(
            open(Some(&clock), &item(b"abc".to_vec(), 0)).payload,
            Some(0..3)
        );
    }
}

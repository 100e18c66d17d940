//! [`SlotBytes`]: the bytes of a state the in-memory backend stores, in place when short.
//!
//! A strategy hands its state over as [`StateBytes`](crate::strategy::StateBytes), a
//! 40-byte small vector. The backend's record keeps it in 32 bytes instead: up to
//! [`IN_PLACE`] bytes in the record itself (the state of every built-in strategy but the
//! sliding log: 9 to 25 bytes), a longer one on the heap. With the key's digest, the
//! expiry and the window that makes a record of 64 bytes, one cache line (see
//! `memory.rs`).

use std::fmt;

use crate::inline_text::copy_short;

/// The most bytes a state keeps in place.
pub(crate) const IN_PLACE: usize = 30;

/// A stored state's bytes.
#[derive(Clone, PartialEq, Eq)]
pub(crate) enum SlotBytes {
    /// Up to [`IN_PLACE`] bytes: `bytes[..len]`.
    InPlace { len: u8, bytes: [u8; IN_PLACE] },
    /// More.
    Heap(Box<[u8]>),
}

impl SlotBytes {
    /// No bytes.
    pub(crate) const fn new() -> Self {
        SlotBytes::InPlace {
            len: 0,
            bytes: [0; IN_PLACE],
        }
    }

    /// The bytes.
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            SlotBytes::InPlace { len, bytes } => &bytes[..usize::from(*len)],
            SlotBytes::Heap(bytes) => bytes,
        }
    }

    /// Replaces the bytes with `from`. A short state written over a short one (every
    /// decision of a built-in strategy but the sliding log's) is copied in place, without
    /// a call to `memcpy`.
    #[inline]
    pub(crate) fn set(&mut self, from: &[u8]) {
        if let SlotBytes::InPlace { len, bytes } = self {
            if let Some(room) = bytes.get_mut(..from.len()) {
                copy_short(room, from);
                // At most `IN_PLACE`: `room` is part of `bytes`.
                *len = from.len() as u8;
                return;
            }
        }
        self.replace(from);
    }

    /// [`set`](Self::set) for a long state, or over one.
    #[cold]
    #[inline(never)]
    fn replace(&mut self, from: &[u8]) {
        *self = Self::from(from);
    }
}

impl From<&[u8]> for SlotBytes {
    fn from(from: &[u8]) -> Self {
        if from.len() > IN_PLACE {
            return SlotBytes::Heap(from.into());
        }
        let mut bytes = Self::new();
        bytes.set(from);
        bytes
    }
}

impl Default for SlotBytes {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SlotBytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.as_slice()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thirty_two_bytes_hold_a_state_in_place_or_on_the_heap() {
        assert_eq!(std::mem::size_of::<SlotBytes>(), 32);
    }

    #[test]
    fn every_length_reads_back_whatever_it_replaced() {
        let sample: Vec<u8> = (0..=80u8).map(|i| i.wrapping_mul(37) ^ 0x5A).collect();
        for before in [0, 1, 9, 17, 25, IN_PLACE, IN_PLACE + 1, 57, 80] {
            for after in 0..=sample.len() {
                let mut bytes = SlotBytes::from(&sample[sample.len() - before..]);
                assert_eq!(bytes.as_slice(), &sample[sample.len() - before..]);
                bytes.set(&sample[..after]);
                assert_eq!(bytes.as_slice(), &sample[..after], "{before} then {after}");
                assert_eq!(
                    matches!(bytes, SlotBytes::InPlace { .. }),
                    after <= IN_PLACE,
                    "{before} then {after}"
                );
            }
        }
    }
}

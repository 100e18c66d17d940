//! A fixed buffer of UTF-8 text in place: what a [`KeyText`](crate::key::KeyText) holds
//! until it outgrows it. Unlike a general string type it lets the key writer fill its
//! bytes directly, copying a short piece without a call to `memcpy` and checking it as it
//! goes, and then take the filled bytes as text without reading them again.

use crate::key_escapes::Escapes;

/// Up to `N` bytes of UTF-8 text, on the stack.
#[derive(Clone)]
pub(crate) struct InlineText<const N: usize> {
    bytes: [u8; N],
    /// How many of `bytes` hold the text. `bytes[..len]` is always UTF-8: every write
    /// appends whole `&str`s or ASCII bytes (see [`fill`](Self::fill)).
    len: usize,
}

impl<const N: usize> InlineText<N> {
    /// Empty text.
    pub(crate) const fn new() -> Self {
        Self {
            bytes: [0; N],
            len: 0,
        }
    }

    /// The text.
    pub(crate) fn as_str(&self) -> &str {
        // SAFETY: `bytes[..len]` is UTF-8: `try_push_str` appends a whole `&str`,
        // `try_push_ascii` one ASCII byte, and `fill` keeps the same rule (its writer
        // appends whole `&str`s, and what it reports as written ends at a piece's end).
        unsafe { std::str::from_utf8_unchecked(&self.bytes[..self.len]) }
    }

    /// Length in bytes.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Empties the text.
    pub(crate) fn clear(&mut self) {
        self.len = 0;
    }

    /// Appends `text`; `false`, appending nothing, when it does not fit.
    pub(crate) fn try_push_str(&mut self, text: &str) -> bool {
        match self.bytes.get_mut(self.len..self.len + text.len()) {
            Some(room) => {
                copy_short(room, text.as_bytes());
                self.len += text.len();
                true
            }
            None => false,
        }
    }

    /// Appends one ASCII byte; `false`, appending nothing, when it does not fit or is not
    /// ASCII.
    pub(crate) fn try_push_ascii(&mut self, byte: u8) -> bool {
        match self.bytes.get_mut(self.len) {
            Some(slot) if byte.is_ascii() => {
                *slot = byte;
                self.len += 1;
                true
            }
            _ => false,
        }
    }

    /// Replaces the text with what `write` appends through a [`Filler`]: kept if `write`
    /// returns `Some`, the text left empty if it returns `None`.
    pub(crate) fn fill<R>(
        &mut self,
        write: impl FnOnce(&mut Filler<'_, N>) -> Option<R>,
    ) -> Option<R> {
        let mut filler = Filler {
            bytes: &mut self.bytes,
            len: 0,
        };
        let out = write(&mut filler);
        self.len = if out.is_some() { filler.len } else { 0 };
        out
    }
}

impl<const N: usize> Default for InlineText<N> {
    fn default() -> Self {
        Self::new()
    }
}

/// Appends whole `&str`s to an [`InlineText`]'s bytes: the only writes it offers, so
/// what it has written is always UTF-8.
pub(crate) struct Filler<'a, const N: usize> {
    bytes: &'a mut [u8; N],
    len: usize,
}

impl<const N: usize> Filler<'_, N> {
    /// Appends `text`; `None`, appending nothing, when it does not fit.
    pub(crate) fn push_str(&mut self, text: &str) -> Option<()> {
        let room = self.bytes.get_mut(self.len..self.len + text.len())?;
        copy_short(room, text.as_bytes());
        self.len += text.len();
        Some(())
    }

    /// Appends `text` and tells whether any of its bytes is in `escapes`. `None`,
    /// appending nothing, when it does not fit.
    pub(crate) fn push_str_marked(&mut self, text: &str, escapes: Escapes) -> Option<bool> {
        let room = self.bytes.get_mut(self.len..self.len + text.len())?;
        copy_short(room, text.as_bytes());
        self.len += text.len();
        Some(escapes.any_in(text.as_bytes()))
    }
}

/// Copies `from` into `to`, of the same length. A key's pieces are short (an address, a
/// route, a method), and so is a stored state (see `backend/slot_bytes.rs`): up to 32
/// bytes they are copied in two overlapping loads and stores
/// of one width, which costs less than the call into the C library's `memcpy` that a
/// copy of unknown length becomes.
#[inline(always)]
pub(crate) fn copy_short(to: &mut [u8], from: &[u8]) {
    /// `from` into `to` through two copies of `W` bytes, the first from the start, the
    /// second up to the end: together they cover any length from `W` to `2 * W`.
    #[inline(always)]
    fn overlapping<const W: usize>(to: &mut [u8], from: &[u8]) {
        let len = from.len();
        to[..W].copy_from_slice(&from[..W]);
        to[len - W..].copy_from_slice(&from[len - W..]);
    }
    debug_assert_eq!(to.len(), from.len());
    match from.len() {
        0 => {}
        1..4 => {
            for (slot, &byte) in to.iter_mut().zip(from) {
                *slot = byte;
            }
        }
        4..8 => overlapping::<4>(to, from),
        8..16 => overlapping::<8>(to, from),
        16..=32 => overlapping::<16>(to, from),
        _ => to.copy_from_slice(from),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_what_fits_and_nothing_else() {
        let mut text = InlineText::<8>::new();
        assert!(text.try_push_str("abc"));
        assert!(text.try_push_ascii(b'-'));
        assert!(!text.try_push_ascii(0xC3));
        assert!(!text.try_push_str("12345"));
        assert_eq!(text.as_str(), "abc-");
        assert!(text.try_push_str("éé"));
        assert_eq!(text.as_str(), "abc-éé");
        assert!(!text.try_push_ascii(b'x'));
        assert_eq!(text.len(), 8);
        text.clear();
        assert_eq!(text.as_str(), "");
    }

    #[test]
    fn pieces_of_every_short_length_are_copied_whole() {
        let source: String = ('a'..='z').chain('A'..='Z').collect();
        // Each width of the short copy, its edges, and past it.
        for len in 0..=40 {
            for at in [0, 1, 7] {
                let piece = &source[..len];
                let mut text = InlineText::<96>::new();
                let kept = text.fill(|filler| {
                    filler.push_str(&"-".repeat(at))?;
                    filler.push_str(piece)?;
                    filler.push_str_marked(piece, Escapes::Scope)
                });
                assert_eq!(kept, Some(false), "{len} at {at}");
                assert_eq!(text.as_str(), format!("{}{piece}{piece}", "-".repeat(at)));
                // The same through try_push_str, which copies the same way.
                let mut pushed = InlineText::<96>::new();
                assert!(pushed.try_push_str(&"-".repeat(at)));
                assert!(pushed.try_push_str(piece));
                assert_eq!(pushed.as_str(), format!("{}{piece}", "-".repeat(at)));
            }
        }
    }

    #[test]
    fn a_fill_is_kept_whole_or_not_at_all() {
        let mut text = InlineText::<8>::new();
        let kept = text.fill(|filler| {
            filler.push_str("ab")?;
            filler.push_str_marked("c d", Escapes::Scope)
        });
        assert_eq!(kept, Some(true));
        assert_eq!(text.as_str(), "abc d");
        // Past the room: nothing of it is kept, not even what was written first.
        let refused = text.fill(|filler| {
            filler.push_str("abcd")?;
            filler.push_str_marked("efghi", Escapes::Scope)
        });
        assert_eq!(refused, None);
        assert_eq!(text.as_str(), "");
    }
}

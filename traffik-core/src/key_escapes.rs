//! The bytes a storage key escapes, in two sets: what no store accepts raw (escaped
//! everywhere in the key), and that plus the key's own structure (escaped in the uid and
//! the identity). Each set is kept two ways: a table, which the escaping loop looks up
//! byte by byte, and a test of a whole piece at once, which every key runs on each of its
//! pieces, since nearly no piece holds such a byte.
//!
//! On x86_64 the test compares 16 bytes at a time with SSE2 (part of the x86_64
//! baseline): a piece of up to 16 bytes costs about a dozen instructions instead of three
//! per byte through the table (the request path's key: 328 instructions down to 275).
//! Elsewhere it folds the table.

/// The bytes to escape in one part of a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Escapes {
    /// Bytes no store accepts raw: control characters, space, DEL, `%` (the escape
    /// itself) and every non-ASCII byte. Escaped in the scope.
    Scope,
    /// [`Escapes::Scope`] plus the key's structure: `:`, `{` and `}`. Escaped in the uid
    /// and identity.
    Component,
}

impl Escapes {
    /// Whether `byte` is in the set.
    pub(crate) fn contains(self, byte: u8) -> bool {
        self.table()[usize::from(byte)]
    }

    /// Whether any of `bytes` is in the set.
    #[inline]
    pub(crate) fn any_in(self, bytes: &[u8]) -> bool {
        #[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
        {
            sse2::any_in(self, bytes)
        }
        #[cfg(not(all(target_arch = "x86_64", target_feature = "sse2")))]
        {
            let table = self.table();
            bytes
                .iter()
                .fold(false, |any, &byte| any | table[usize::from(byte)])
        }
    }

    /// The set as a table, one entry per byte value.
    fn table(self) -> &'static [bool; 256] {
        match self {
            Escapes::Scope => &SCOPE,
            Escapes::Component => &COMPONENT,
        }
    }
}

/// [`Escapes::Scope`]'s definition.
const fn escaped_in_scope(byte: u8) -> bool {
    byte <= b' ' || byte >= 0x7F || byte == b'%'
}

/// [`Escapes::Component`]'s definition.
const fn escaped_in_component(byte: u8) -> bool {
    escaped_in_scope(byte) || byte == b':' || byte == b'{' || byte == b'}'
}

static SCOPE: [bool; 256] = table(false);
static COMPONENT: [bool; 256] = table(true);

/// The table of [`escaped_in_component`] if `component`, else of [`escaped_in_scope`].
const fn table(component: bool) -> [bool; 256] {
    let mut table = [false; 256];
    let mut byte = 0;
    while byte < table.len() {
        let value = byte as u8;
        table[byte] = if component {
            escaped_in_component(value)
        } else {
            escaped_in_scope(value)
        };
        byte += 1;
    }
    table
}

/// The SSE2 intrinsics are called in `unsafe` blocks: they require the `sse2` target
/// feature, which this module is compiled only with (every x86_64 target has it).
#[cfg(all(target_arch = "x86_64", target_feature = "sse2"))]
mod sse2 {
    use std::arch::x86_64::{
        __m128i, _mm_cmpeq_epi8, _mm_cmplt_epi8, _mm_movemask_epi8, _mm_or_si128, _mm_set_epi64x,
        _mm_set1_epi8, _mm_set1_epi32, _mm_set1_epi64x,
    };

    use super::Escapes;

    /// [`Escapes::any_in`]: the bytes are gathered into 16-byte vectors with plain
    /// loads, never past the slice (a short piece is repeated to fill the vector, which
    /// changes nothing for a test of whether any byte is in the set).
    #[inline]
    pub(super) fn any_in(escapes: Escapes, bytes: &[u8]) -> bool {
        let len = bytes.len();
        match len {
            0 => false,
            1..4 => {
                // The first, middle and last bytes cover every byte of one to three.
                let word = u32::from_le_bytes([bytes[0], bytes[len / 2], bytes[len - 1], bytes[0]]);
                // SAFETY: SSE2 is enabled (the module's `cfg`).
                marked(escapes, unsafe { _mm_set1_epi32(word as i32) })
            }
            4..8 => {
                let low = u64::from(four(bytes, 0));
                let high = u64::from(four(bytes, len - 4));
                // SAFETY: SSE2 is enabled (the module's `cfg`).
                marked(escapes, unsafe {
                    _mm_set1_epi64x((low | high << 32) as i64)
                })
            }
            _ => {
                // Whole 16-byte chunks, then the last 16 bytes (or, under 16, the first
                // and last 8), overlapping what came before.
                let mut start = 0;
                while start + 16 < len {
                    if marked(escapes, pair(bytes, start, start + 8)) {
                        return true;
                    }
                    start += 16;
                }
                let last = len.saturating_sub(16);
                marked(escapes, pair(bytes, last, len - 8))
            }
        }
    }

    /// The four bytes of `bytes` from `at`, little-endian.
    #[inline(always)]
    fn four(bytes: &[u8], at: usize) -> u32 {
        let mut word = [0u8; 4];
        word.copy_from_slice(&bytes[at..at + 4]);
        u32::from_le_bytes(word)
    }

    /// Eight bytes from `low` and eight from `high` in one vector.
    #[inline(always)]
    fn pair(bytes: &[u8], low: usize, high: usize) -> __m128i {
        let eight = |at: usize| {
            let mut word = [0u8; 8];
            word.copy_from_slice(&bytes[at..at + 8]);
            i64::from_le_bytes(word)
        };
        // SAFETY: SSE2 is enabled (the module's `cfg`).
        unsafe { _mm_set_epi64x(eight(high), eight(low)) }
    }

    /// Whether any of the 16 bytes of `vector` is in the set.
    #[inline(always)]
    fn marked(escapes: Escapes, vector: __m128i) -> bool {
        let byte = |value: u8| value as i8;
        // SAFETY: SSE2 is enabled (the module's `cfg`); these intrinsics touch no memory.
        unsafe {
            // A signed compare with 0x21 takes every byte up to a space and every byte
            // from 0x80 (negative as signed) at once.
            let mut hits = _mm_or_si128(
                _mm_cmplt_epi8(vector, _mm_set1_epi8(0x21)),
                _mm_or_si128(
                    _mm_cmpeq_epi8(vector, _mm_set1_epi8(0x7F)),
                    _mm_cmpeq_epi8(vector, _mm_set1_epi8(byte(b'%'))),
                ),
            );
            if escapes == Escapes::Component {
                hits = _mm_or_si128(
                    hits,
                    _mm_or_si128(
                        _mm_cmpeq_epi8(vector, _mm_set1_epi8(byte(b':'))),
                        _mm_or_si128(
                            _mm_cmpeq_epi8(vector, _mm_set1_epi8(byte(b'{'))),
                            _mm_cmpeq_epi8(vector, _mm_set1_epi8(byte(b'}'))),
                        ),
                    ),
                );
            }
            _mm_movemask_epi8(hits) != 0
        }
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_sets_hold_what_they_say() {
        for byte in 0..=255u8 {
            let raw_unsafe = byte <= b' ' || byte >= 0x7F || byte == b'%';
            assert_eq!(Escapes::Scope.contains(byte), raw_unsafe, "{byte:#04x}");
            assert_eq!(
                Escapes::Component.contains(byte),
                raw_unsafe || b":{}".contains(&byte),
                "{byte:#04x}"
            );
        }
    }

    #[test]
    fn one_marked_byte_is_found_at_any_place_in_any_length() {
        for set in [Escapes::Scope, Escapes::Component] {
            for len in 0..=70 {
                let clean = vec![b'a'; len];
                assert!(!set.any_in(&clean), "{set:?} {len}");
                for at in 0..len {
                    for byte in [b' ', 0x00, 0x7F, 0x80, 0xFF, b'%', b':', b'{', b'}'] {
                        let mut text = clean.clone();
                        text[at] = byte;
                        assert_eq!(
                            set.any_in(&text),
                            set.contains(byte),
                            "{set:?} {len} {at} {byte:#04x}"
                        );
                    }
                }
            }
        }
    }

    proptest! {
        #[test]
        fn agrees_with_the_table(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            for set in [Escapes::Scope, Escapes::Component] {
                let expected = bytes.iter().any(|&byte| set.contains(byte));
                prop_assert_eq!(set.any_in(&bytes), expected);
            }
        }

        #[test]
        fn agrees_with_the_table_on_printable_text(text in "[ -~]{0,80}") {
            for set in [Escapes::Scope, Escapes::Component] {
                let expected = text.bytes().any(|byte| set.contains(byte));
                prop_assert_eq!(set.any_in(text.as_bytes()), expected);
            }
        }
    }
}

//! Binary encoding of strategy state: one format tag byte, then little-endian `u64`s, or
//! (the sliding log's compact forms) one `u64` and then 32-bit words.
//!
//! The tag names the strategy and format version, so state written by another strategy
//! (or by anything else) is recognised as foreign and replaced by fresh state.

use super::StateBytes;

/// Format tags, one per built-in strategy state layout.
pub(crate) mod tag {
    pub const FIXED_WINDOW: u8 = 0xF1;
    /// The sliding window log, each entry as its time and cost in full.
    pub const SLIDING_WINDOW_LOG: u8 = 0xA1;
    /// The sliding window log, each entry as an offset from the oldest's time, all of
    /// cost 1.
    pub const SLIDING_WINDOW_LOG_UNIT: u8 = 0xA3;
    /// The sliding window log, each entry as an offset from the oldest's time and a cost,
    /// both 32 bits.
    pub const SLIDING_WINDOW_LOG_NARROW: u8 = 0xA4;
    pub const SLIDING_WINDOW_COUNTER: u8 = 0xA2;
    pub const TOKEN_BUCKET: u8 = 0xB1;
    pub const TOKEN_BUCKET_WITH_DEBT: u8 = 0xB2;
    pub const LEAKY_BUCKET: u8 = 0xC1;
    pub const LEAKY_BUCKET_WITH_QUEUE: u8 = 0xC2;
    pub const GCRA: u8 = 0xD1;
}

/// Encodes `fields` after `tag`. States that fit inline (every built-in's but the
/// sliding log's) are written straight into the inline buffer. Inline: every decision
/// writes its state through here, and a call left between codegen units cost about 50
/// instructions where the fields are known at the caller.
#[inline]
pub(crate) fn encode(tag: u8, fields: &[u64]) -> StateBytes {
    const INLINE: usize = 32;
    let len = 1 + 8 * fields.len();
    if len <= INLINE {
        let mut buffer = [0u8; INLINE];
        buffer[0] = tag;
        for (chunk, field) in buffer[1..len].chunks_exact_mut(8).zip(fields) {
            chunk.copy_from_slice(&field.to_le_bytes());
        }
        return StateBytes::from_buf_and_len(buffer, len);
    }
    encode_iter(tag, fields.len(), fields.iter().copied())
}

/// [`encode`] for `count` fields given one by one, for a state kept as something other
/// than a slice of words: no slice is built first. Fields past `count` are not written;
/// if fewer come, the encoding ends after the last one.
pub(crate) fn encode_iter(
    tag: u8,
    count: usize,
    fields: impl IntoIterator<Item = u64>,
) -> StateBytes {
    encode_words(&[tag], 8, count, fields)
}

/// `tag`, then `base` as a little-endian `u64`, then `count` words of `width` bytes
/// each (4 or 8), little-endian: the low bytes of each of `words`.
pub(crate) fn encode_packed(
    tag: u8,
    base: u64,
    width: usize,
    count: usize,
    words: impl IntoIterator<Item = u64>,
) -> StateBytes {
    let mut header = [tag; 9];
    header[1..].copy_from_slice(&base.to_le_bytes());
    encode_words(&header, width, count, words)
}

/// `header`, then up to `count` of `words` in `width` little-endian bytes each (their
/// low bytes), written into a state sized once; if fewer come, it ends after the last.
fn encode_words(
    header: &[u8],
    width: usize,
    count: usize,
    words: impl IntoIterator<Item = u64>,
) -> StateBytes {
    let start = header.len();
    let mut out = StateBytes::from_elem(0, start + width * count);
    out[..start].copy_from_slice(header);
    let mut written = 0;
    for (chunk, word) in out[start..].chunks_exact_mut(width).zip(words) {
        chunk.copy_from_slice(&word.to_le_bytes()[..width]);
        written += 1;
    }
    out.truncate(start + width * written);
    out
}

/// Decodes exactly `N` fields written by [`encode`] with the same `tag`; `None` for
/// anything else.
pub(crate) fn decode<const N: usize>(bytes: &[u8], tag: u8) -> Option<[u64; N]> {
    let (&first, rest) = bytes.split_first()?;
    if first != tag || rest.len() != 8 * N {
        return None;
    }
    let mut fields = [0u64; N];
    for (field, chunk) in fields.iter_mut().zip(rest.chunks_exact(8)) {
        *field = u64::from_le_bytes(chunk.try_into().ok()?);
    }
    Some(fields)
}

/// Decodes any number of fields written by [`encode`] with the same `tag`.
pub(crate) fn decode_all(bytes: &[u8], tag: u8) -> Option<impl Iterator<Item = u64> + '_> {
    let (&first, rest) = bytes.split_first()?;
    if first != tag || rest.len() % 8 != 0 {
        return None;
    }
    Some(
        rest.chunks_exact(8)
            .map(|chunk| u64::from_le_bytes(chunk.try_into().unwrap_or([0; 8]))),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_rejections() {
        let bytes = encode(7, &[1, u64::MAX]);
        assert_eq!(decode::<2>(&bytes, 7), Some([1, u64::MAX]));
        assert_eq!(decode::<2>(&bytes, 8), None);
        assert_eq!(decode::<1>(&bytes, 7), None);
        assert_eq!(decode::<2>(&bytes[..bytes.len() - 1], 7), None);
        assert_eq!(decode::<0>(&[], 7), None);
        assert_eq!(
            decode_all(&bytes, 7).map(|i| i.collect::<Vec<_>>()),
            Some(vec![1, u64::MAX])
        );
        assert!(decode_all(&bytes[..5], 7).is_none());
    }

    #[test]
    fn fields_given_one_by_one_encode_as_a_slice_does() {
        for count in [0u64, 1, 3, 4, 22] {
            let fields: Vec<u64> = (0..count).map(|i| i * 0x0101_0101_0101 + 1).collect();
            let one_by_one = encode_iter(9, fields.len(), fields.iter().copied());
            assert_eq!(one_by_one, encode(9, &fields), "{count} fields");
        }
        // Fewer than announced: what came, nothing more.
        assert_eq!(encode_iter(9, 3, [5u64]), encode(9, &[5]));
    }
}

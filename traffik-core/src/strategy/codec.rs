//! Binary encoding of strategy state: one format tag byte, then little-endian `u64`s.
//!
//! The tag names the strategy and format version, so state written by another strategy
//! (or by anything else) is recognised as foreign and replaced by fresh state.

use super::StateBytes;

/// Format tags, one per built-in strategy state layout.
pub(crate) mod tag {
    pub const FIXED_WINDOW: u8 = 0xF1;
    pub const SLIDING_WINDOW_LOG: u8 = 0xA1;
    pub const SLIDING_WINDOW_COUNTER: u8 = 0xA2;
    pub const TOKEN_BUCKET: u8 = 0xB1;
    pub const TOKEN_BUCKET_WITH_DEBT: u8 = 0xB2;
    pub const LEAKY_BUCKET: u8 = 0xC1;
    pub const LEAKY_BUCKET_WITH_QUEUE: u8 = 0xC2;
    pub const GCRA: u8 = 0xD1;
}

/// Encodes `fields` after `tag`. States that fit inline (every built-in's but the
/// sliding log's) are written straight into the inline buffer.
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
    let mut out = StateBytes::with_capacity(len);
    out.push(tag);
    for field in fields {
        out.extend_from_slice(&field.to_le_bytes());
    }
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
}

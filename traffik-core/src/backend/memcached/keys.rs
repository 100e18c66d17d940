//! Memcached keys: namespaced, generation-stamped, and safe for the text protocol.
//!
//! Memcached keys are at most 250 bytes of printable ASCII with no spaces. A key
//! `k` of namespace `ns` at generation `g` is stored at `escape(ns):g:escape(k)`, where
//! `escape` writes every byte outside `!`..`~`, and the escape characters `%` and `#`
//! and (in the namespace) `:`, as `%XX`. The result is injective: the namespace part holds
//! no `:`, the generation is digits, and the key part is read back byte for byte. A result
//! longer than 250 bytes keeps its first bytes and ends in `#` and the SHA-256 of the
//! whole key, so long keys stay distinct without being readable to an attacker who would
//! collide them. `#` appears nowhere else, so a hashed key never equals an escaped one.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

/// The longest key memcached accepts.
pub(crate) const MAX_KEY_LEN: usize = 250;
/// Hex digits of the SHA-256 that ends a hashed key.
const HASH_HEX: usize = 64;

/// The key an item `key` of `namespace` at `generation` is stored under.
pub(crate) fn item_key(namespace: &str, generation: u64, key: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + key.len() + 24);
    escape_into(&mut out, namespace.as_bytes(), true);
    out.push(':');
    out.push_str(itoa::Buffer::new().format(generation));
    out.push(':');
    escape_into(&mut out, key.as_bytes(), false);
    shorten(out)
}

/// The key that holds `namespace`'s generation number.
pub(crate) fn generation_key(namespace: &str) -> String {
    let mut out = String::with_capacity(namespace.len() + 4);
    escape_into(&mut out, namespace.as_bytes(), true);
    out.push_str(":gen");
    shorten(out)
}

/// Appends `bytes` to `out`, escaping what memcached would reject and the escape
/// characters themselves (and `:` when `colon` is set).
fn escape_into(out: &mut String, bytes: &[u8], colon: bool) {
    for &byte in bytes {
        let plain =
            byte.is_ascii_graphic() && !matches!(byte, b'%' | b'#') && !(colon && byte == b':');
        if plain {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// `key` itself when short enough, else its first bytes, `#` and the SHA-256 of all of it.
fn shorten(key: String) -> String {
    if key.len() <= MAX_KEY_LEN {
        return key;
    }
    let digest = Sha256::digest(key.as_bytes());
    // The escaped key is ASCII, so any byte index is a char boundary.
    let keep = MAX_KEY_LEN - 1 - HASH_HEX;
    let mut out = String::with_capacity(MAX_KEY_LEN);
    out.push_str(&key[..keep]);
    out.push('#');
    for byte in digest {
        let _ = write!(out, "{byte:02x}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_valid(key: &str) -> bool {
        key.len() <= MAX_KEY_LEN && key.bytes().all(|b| b.is_ascii_graphic())
    }

    #[test]
    fn plain_keys_read_as_they_are() {
        assert_eq!(
            item_key("app", 7, "{api:1.2.3.4}:GET"),
            "app:7:{api:1.2.3.4}:GET"
        );
        assert_eq!(generation_key("app"), "app:gen");
    }

    #[test]
    fn hostile_bytes_are_escaped() {
        let key = item_key("my app", 1, "crlf\r\nset x 0 0 1 emoji 🚦 100%#");
        assert!(is_valid(&key), "{key}");
        assert_eq!(
            key,
            "my%20app:1:crlf%0D%0Aset%20x%200%200%201%20emoji%20%F0%9F%9A%A6%20100%25%23"
        );
    }

    #[test]
    fn namespaces_with_colons_never_alias() {
        // ("a", gen 5, "x") against ("a:5", any gen, "x").
        assert_ne!(item_key("a", 5, "x"), item_key("a:5", 0, "x"));
        assert_ne!(item_key("a", 5, "1:x"), item_key("a:5", 1, "x"));
        assert_ne!(generation_key("a"), item_key("a", 0, "gen"));
    }

    #[test]
    fn long_keys_are_hashed_to_the_limit() {
        let long = "x".repeat(10_000);
        let key = item_key("app", 3, &long);
        assert_eq!(key.len(), MAX_KEY_LEN);
        assert!(is_valid(&key));
        let other = item_key("app", 3, &format!("{}y", "x".repeat(9_999)));
        assert_ne!(key, other, "same prefix, different tail");
        assert_eq!(key, item_key("app", 3, &long), "deterministic");
        // A key of exactly the limit is kept as it is.
        let exact = "k".repeat(MAX_KEY_LEN - "app:3:".len());
        assert_eq!(item_key("app", 3, &exact).len(), MAX_KEY_LEN);
        assert!(!item_key("app", 3, &exact).contains('#'));
        // Escaping can push a key over the limit: still valid.
        let spaces = " ".repeat(200);
        assert!(is_valid(&item_key("app", 3, &spaces)));
    }
}

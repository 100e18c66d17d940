//! Map keys of the in-memory backend: a 128-bit keyed digest of each storage key.
//!
//! A lookup by string compares the stored key's bytes, which live in their own heap
//! allocation: one more cache miss per decision once the map outgrows the cache, and one
//! more allocation per new key. A 128-bit digest under two random SipHash keys (a keyed
//! pseudo-random function) fits in the table's bucket instead. Two distinct keys share a
//! digest with probability 2^-128 per pair, and without the random keys nobody can pick
//! keys that do.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

/// The digest a key is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyDigest(u64, u64);

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly distributed: the table needs no further mixing.
        state.write_u64(self.0);
    }
}

/// Digests keys under two random SipHash keys, drawn once per backend.
#[derive(Debug, Clone, Default)]
pub(crate) struct Digester {
    first: RandomState,
    second: RandomState,
}

impl Digester {
    /// The digest of `parts` written one after another (`key` then `:window`, say): the
    /// same as the digest of their concatenation.
    pub(crate) fn digest(&self, parts: &[&[u8]]) -> KeyDigest {
        let mut first = self.first.build_hasher();
        let mut second = self.second.build_hasher();
        for part in parts {
            first.write(part);
            second.write(part);
        }
        KeyDigest(first.finish(), second.finish())
    }
}

/// Hands a [`KeyDigest`]'s first half to the table as its hash.
#[derive(Debug, Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        // Not reached for `KeyDigest`; fold anything else in rather than drop it.
        for &byte in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(byte);
        }
    }

    fn write_u64(&mut self, value: u64) {
        self.0 = value;
    }
}

/// The table's hasher.
pub(crate) type PassThroughState = BuildHasherDefault<PassThrough>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_digest_like_their_concatenation() {
        let digester = Digester::default();
        assert_eq!(
            digester.digest(&[b"client", b":42"]),
            digester.digest(&[b"client:42"])
        );
        assert_ne!(
            digester.digest(&[b"client:42"]),
            digester.digest(&[b"client:43"])
        );
        // Another backend draws other keys.
        assert_ne!(
            Digester::default().digest(&[b"client"]),
            digester.digest(&[b"client"])
        );
    }
}

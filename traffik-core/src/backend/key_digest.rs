//! Map keys of the in-memory backend: a 128-bit keyed digest of each storage key.
//!
//! A lookup by string compares the stored key's bytes, which live in their own heap
//! allocation: one more cache miss per decision once the map outgrows the cache, and one
//! more allocation per new key. A 128-bit digest under a random key (SipHash-1-3 with a
//! 128-bit output, a keyed pseudo-random function, in one pass over the key) fits in the
//! table's bucket instead. Two distinct keys share a digest with probability about 2^-128
//! per pair, and without the random key nobody can pick keys that do.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, BuildHasherDefault, Hash, Hasher};

use siphasher::sip128::{Hasher128, SipHasher13};

/// The digest a key is stored under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct KeyDigest(u64, u64);

impl Hash for KeyDigest {
    fn hash<H: Hasher>(&self, state: &mut H) {
        // Already uniformly distributed: the table needs no further mixing.
        state.write_u64(self.0);
    }
}

/// Digests keys under a random SipHash key, drawn once per backend.
#[derive(Debug, Clone)]
pub(crate) struct Digester {
    keys: (u64, u64),
}

impl Default for Digester {
    fn default() -> Self {
        // The standard library's per-process random seed, stirred by a fresh `RandomState`
        // each: no random-number crate needed for two words.
        let random = || RandomState::new().build_hasher().finish();
        Self {
            keys: (random(), random()),
        }
    }
}

impl Digester {
    /// The digest of `key`.
    pub(crate) fn digest(&self, key: &[u8]) -> KeyDigest {
        let mut hasher = SipHasher13::new_with_keys(self.keys.0, self.keys.1);
        hasher.write(key);
        let digest = hasher.finish128();
        KeyDigest(digest.h1, digest.h2)
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
    fn distinct_keys_and_backends_give_distinct_digests() {
        let digester = Digester::default();
        assert_eq!(digester.digest(b"client:42"), digester.digest(b"client:42"));
        assert_ne!(digester.digest(b"client:42"), digester.digest(b"client:43"));
        // Another backend draws another key.
        assert_ne!(
            Digester::default().digest(b"client"),
            digester.digest(b"client")
        );
    }
}

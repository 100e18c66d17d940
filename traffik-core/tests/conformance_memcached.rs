#![cfg(feature = "memcached")]
//! The backend conformance suite on a real memcached server.
//!
//! The backend is given the suite's manual clock: values then carry their expiry on that
//! clock, so the suite's expiry tests, which advance the clock without sleeping, hold on
//! memcached too.

mod conformance;
mod memcached_support;

use std::sync::Arc;

use traffik_core::{ManualClock, MemcachedBackend, SharedBackend};

fn memcached(namespace: &str, clock: ManualClock) -> SharedBackend {
    Arc::new(
        MemcachedBackend::builder(namespace)
            .url(memcached_support::url())
            .clock(clock)
            .build()
            .expect("memcached backend"),
    )
}

conformance_tests!({
    if memcached_support::skip() {
        return;
    }
    memcached
});

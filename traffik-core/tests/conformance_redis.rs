#![cfg(feature = "redis")]
//! The backend conformance suite on a real Redis server.
//!
//! The backend is given the suite's manual clock: the scripts then judge decisions and
//! expiry by that clock (keys still carry real TTLs, offset to match), so the suite's
//! expiry tests, which advance the clock without sleeping, hold on Redis too.

mod conformance;
mod redis_support;

use std::sync::Arc;

use traffik_core::{ManualClock, RedisBackend, SharedBackend};

fn redis(namespace: &str, clock: ManualClock) -> SharedBackend {
    Arc::new(
        RedisBackend::builder(namespace)
            .url(redis_support::url())
            .clock(clock)
            .build()
            .expect("redis backend"),
    )
}

conformance_tests!({
    if redis_support::skip() {
        return;
    }
    redis
});

/// The same suite on a Redis Cluster (`scripts/test.sh` starts one on 7000-7002).
mod cluster {
    use super::*;

    fn redis_cluster(namespace: &str, clock: ManualClock) -> SharedBackend {
        Arc::new(
            RedisBackend::builder(namespace)
                .cluster(redis_support::cluster_urls())
                .clock(clock)
                .build()
                .expect("redis cluster backend"),
        )
    }

    use super::conformance;

    conformance_tests!({
        if redis_support::skip_cluster() {
            return;
        }
        redis_cluster
    });
}

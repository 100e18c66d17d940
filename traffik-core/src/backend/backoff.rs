//! Jittered exponential backoff, for networked backends' retry and polling loops.

use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use crate::clock::{Clock, SystemClock};

/// Waits that double from a first wait up to a ceiling, each with up to half again of
/// random jitter, so that contenders that collided once do not collide in step again.
#[derive(Debug)]
pub(crate) struct Backoff {
    next: Duration,
    max: Duration,
}

impl Backoff {
    /// Waits starting at `first`, doubling up to `max`.
    pub(crate) fn new(first: Duration, max: Duration) -> Self {
        Self { next: first, max }
    }

    /// Sleeps the next wait, but no longer than `limit`.
    pub(crate) async fn wait_at_most(&mut self, limit: Duration) {
        let base = self.next;
        let jitter_range = u64::try_from(base.as_micros() / 2)
            .unwrap_or(u64::MAX)
            .max(1);
        let jitter = Duration::from_micros(random_u64() % jitter_range);
        tokio::time::sleep((base + jitter).min(limit)).await;
        self.next = (base * 2).min(self.max);
    }

    /// Sleeps the next wait.
    pub(crate) async fn wait(&mut self) {
        self.wait_at_most(Duration::MAX).await;
    }
}

/// A random `u64` from the standard library's per-instance hasher keys.
pub(crate) fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u64(SystemClock.now_micros());
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn waits_double_with_jitter_up_to_the_ceiling() {
        let mut backoff = Backoff::new(Duration::from_millis(2), Duration::from_millis(8));
        let mut waits = Vec::new();
        for _ in 0..5 {
            let start = tokio::time::Instant::now();
            backoff.wait().await;
            waits.push(start.elapsed());
        }
        for (wait, base) in waits.iter().zip([2, 4, 8, 8, 8]) {
            let base = Duration::from_millis(base);
            assert!(*wait >= base && *wait <= base + base / 2, "{waits:?}");
        }
        let start = tokio::time::Instant::now();
        backoff.wait_at_most(Duration::from_millis(1)).await;
        assert!(start.elapsed() <= Duration::from_millis(1));
    }
}

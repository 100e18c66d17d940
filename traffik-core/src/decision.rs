//! [`Decision`]: the outcome of one rate-limit check.

use std::time::Duration;

/// The outcome of one check: whether the request may proceed, and everything a caller
/// needs to answer the client (`Retry-After`, `RateLimit` headers).
///
/// ```
/// use std::time::Duration;
/// use traffik_core::Decision;
///
/// let denied = Decision::deny(10, 0, Duration::from_millis(300), Duration::from_secs(2));
/// assert!(!denied.allowed);
/// assert_eq!(denied.retry_after_secs(), 1); // 300 ms rounds up, never down to 0
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Decision {
    /// Whether the request is admitted.
    pub allowed: bool,
    /// How long to wait before the same request would be admitted; zero when allowed.
    pub wait: Duration,
    /// The most cost the strategy admits at once from a fresh state.
    pub limit: u64,
    /// How much cost could still be admitted right now, after this request.
    pub remaining: u64,
    /// How long until the quota is fully restored (window end, bucket full).
    pub reset: Duration,
}

impl Decision {
    /// An admitted request.
    pub const fn allow(limit: u64, remaining: u64, reset: Duration) -> Self {
        Self {
            allowed: true,
            wait: Duration::ZERO,
            limit,
            remaining,
            reset,
        }
    }

    /// A denied request that may succeed after `wait` (at least one microsecond).
    pub fn deny(limit: u64, remaining: u64, wait: Duration, reset: Duration) -> Self {
        Self {
            allowed: false,
            wait: wait.max(Duration::from_micros(1)),
            limit,
            remaining,
            reset: reset.max(wait),
        }
    }

    /// The decision for an unlimited rate or an exempt client.
    pub const fn unlimited() -> Self {
        Self::allow(u64::MAX, u64::MAX, Duration::ZERO)
    }

    /// The same decision with its wait raised to at least `floor` if it is a denial;
    /// an admitted request is left alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::Decision;
    ///
    /// let denied = Decision::deny(1, 0, Duration::from_millis(10), Duration::from_millis(10));
    /// assert_eq!(denied.with_min_wait(Duration::from_secs(1)).wait, Duration::from_secs(1));
    /// let allowed = Decision::allow(1, 0, Duration::ZERO);
    /// assert_eq!(allowed.with_min_wait(Duration::from_secs(1)).wait, Duration::ZERO);
    /// ```
    pub fn with_min_wait(mut self, floor: Duration) -> Self {
        if !self.allowed && self.wait < floor {
            self.wait = floor;
            self.reset = self.reset.max(floor);
        }
        self
    }

    /// The wait in whole seconds, rounded up; at least 1 for a denial, 0 when allowed.
    /// This is the value of a `Retry-After` header.
    pub fn retry_after_secs(&self) -> u64 {
        if self.allowed {
            return 0;
        }
        ceil_secs(self.wait).max(1)
    }

    /// The reset in whole seconds, rounded up.
    pub fn reset_secs(&self) -> u64 {
        ceil_secs(self.reset)
    }
}

fn ceil_secs(d: Duration) -> u64 {
    d.as_secs() + u64::from(d.subsec_nanos() > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up() {
        let d = |ms| Decision::deny(1, 0, Duration::from_millis(ms), Duration::ZERO);
        assert_eq!(d(1).retry_after_secs(), 1);
        assert_eq!(d(300).retry_after_secs(), 1);
        assert_eq!(d(1000).retry_after_secs(), 1);
        assert_eq!(d(1001).retry_after_secs(), 2);
        assert_eq!(d(0).retry_after_secs(), 1);
        assert_eq!(d(0).wait, Duration::from_micros(1));
        assert_eq!(Decision::allow(1, 1, Duration::ZERO).retry_after_secs(), 0);
    }
}

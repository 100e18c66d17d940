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
    /// How the decision was reached: by the backend, by a circuit breaker's fallback, or
    /// by a [`FailurePolicy`](crate::FailurePolicy) because the backend failed.
    pub source: DecisionSource,
    /// The strategy denied this request, but the throttle is in shadow mode
    /// ([`Throttle::shadow`](crate::Throttle::shadow)): it is let through (`allowed` is
    /// `true`), and `wait`, `remaining` and `reset` tell what the denial said.
    pub shadowed: bool,
}

/// How a [`Decision`] was reached.
///
/// Anything but [`DecisionSource::Backend`] means the throttle's usual store did not
/// judge the request, which callers, logs and metrics may want to tell apart.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::{Decision, DecisionSource};
///
/// let decided = Decision::allow(10, 9, Duration::from_secs(60));
/// assert_eq!(decided.source, DecisionSource::Backend);
/// assert!(decided.is_decided());
/// assert!(!Decision::fail_open().is_decided());
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DecisionSource {
    /// The backend judged the request (the usual case).
    #[default]
    Backend,
    /// A [`CircuitBreaker`](crate::CircuitBreaker)'s fallback backend judged it, because
    /// the primary backend was failing.
    Fallback,
    /// The backend failed and the failure policy let the request through unjudged
    /// ([`FailurePolicy::Allow`](crate::FailurePolicy::Allow)).
    FailOpen,
    /// The backend failed and the failure policy denied the request
    /// ([`FailurePolicy::Throttle`](crate::FailurePolicy::Throttle)).
    FailClosed,
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
            source: DecisionSource::Backend,
            shadowed: false,
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
            source: DecisionSource::Backend,
            shadowed: false,
        }
    }

    /// The decision for an unlimited rate or an exempt client.
    pub const fn unlimited() -> Self {
        Self::allow(u64::MAX, u64::MAX, Duration::ZERO)
    }

    /// A request let through unjudged because the backend failed (fail open): like
    /// [`unlimited`](Decision::unlimited), so no rate-limit header advertises a quota
    /// nobody computed, and marked [`DecisionSource::FailOpen`].
    ///
    /// ```
    /// use traffik_core::{Decision, DecisionSource};
    ///
    /// let open = Decision::fail_open();
    /// assert!(open.allowed);
    /// assert_eq!(open.source, DecisionSource::FailOpen);
    /// ```
    pub const fn fail_open() -> Self {
        Self::unlimited().with_source(DecisionSource::FailOpen)
    }

    /// A request denied for `wait` because the backend failed (fail closed), for a throttle
    /// whose limit is `limit`; marked [`DecisionSource::FailClosed`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::{Decision, DecisionSource};
    ///
    /// let closed = Decision::fail_closed(100, Duration::from_secs(5));
    /// assert!(!closed.allowed);
    /// assert_eq!(closed.retry_after_secs(), 5);
    /// assert_eq!(closed.source, DecisionSource::FailClosed);
    /// ```
    pub fn fail_closed(limit: u64, wait: Duration) -> Self {
        Self::deny(limit, 0, wait, wait).with_source(DecisionSource::FailClosed)
    }

    /// The same decision, marked as reached by `source`.
    pub const fn with_source(mut self, source: DecisionSource) -> Self {
        self.source = source;
        self
    }

    /// Whether the backend (or a circuit breaker's fallback) judged the request, rather
    /// than a failure policy.
    pub fn is_decided(&self) -> bool {
        matches!(
            self.source,
            DecisionSource::Backend | DecisionSource::Fallback
        )
    }

    /// A denial turned into a pass for shadow mode: `allowed` becomes `true` and
    /// [`shadowed`](Decision::shadowed) is set; `wait` keeps the wait the denial told, and
    /// `reset` is at least that wait, so rate-limit headers built from it still report
    /// the exhausted quota. An admitted request is left alone.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::Decision;
    ///
    /// let denied = Decision::deny(5, 0, Duration::from_secs(3), Duration::from_secs(3));
    /// let shadowed = denied.into_shadow();
    /// assert!(shadowed.allowed && shadowed.shadowed);
    /// assert_eq!(shadowed.wait, Duration::from_secs(3));
    /// assert_eq!(shadowed.retry_after_secs(), 0);
    /// ```
    pub fn into_shadow(mut self) -> Self {
        if !self.allowed {
            self.allowed = true;
            self.shadowed = true;
            self.reset = self.reset.max(self.wait);
        }
        self
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

//! The one error type of `traffik-core`.

use std::time::Duration;

/// What can go wrong while configuring a throttle or deciding a request.
///
/// ```
/// use traffik_core::{Error, Rate};
///
/// let err = "5/mins".parse::<Rate>().unwrap_err();
/// assert!(matches!(err, Error::InvalidRate { .. }));
/// assert!(err.to_string().contains("unknown unit"));
/// ```
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A rate string or rate components could not be understood.
    #[error("invalid rate {input:?}: {reason}")]
    InvalidRate {
        /// The text that was given (or a rendering of the components).
        input: String,
        /// What is wrong with it, and what would be right.
        reason: String,
    },
    /// A request asked for more than the strategy can ever grant at once.
    ///
    /// Denying such a request forever would be a silent bug, so it is an error instead.
    #[error("cost {cost} exceeds the {capacity} the strategy can ever grant at once")]
    CostExceedsCapacity {
        /// The cost of the request.
        cost: u64,
        /// The largest cost the strategy can ever admit.
        capacity: u64,
    },
    /// A strategy or throttle was configured with values that cannot work.
    #[error("invalid configuration: {0}")]
    Configuration(String),
    /// A backend operation failed (connection lost, timeout, server error...).
    #[error("backend error: {0}")]
    Backend(String),
    /// A stored value could not be used the way the operation needs it
    /// (for example, incrementing a key that holds text).
    #[error("stored value at {key:?} is not {expected}")]
    WrongType {
        /// The key that holds the value.
        key: String,
        /// What the operation expected to find.
        expected: &'static str,
    },
    /// A lock could not be acquired before its blocking timeout.
    #[error("lock {name:?} not acquired within {waited:?}")]
    LockTimeout {
        /// The lock's name.
        name: String,
        /// How long the caller waited.
        waited: Duration,
    },
    /// The backend was closed and can no longer serve requests.
    #[error("backend {0:?} is closed")]
    Closed(String),
    /// The backend did not answer within the time allowed for one decision (see
    /// [`Throttle::timeout`](crate::Throttle::timeout) and
    /// [`Backend::timeout`](crate::Backend::timeout)).
    #[error("backend did not answer within {0:?}")]
    Timeout(Duration),
    /// A [`CircuitBreaker`](crate::CircuitBreaker) is open: the backend failed
    /// repeatedly and is not called until its cool-down ends.
    #[error("backend {0:?} is unavailable: its circuit breaker is open")]
    CircuitOpen(String),
}

impl Error {
    /// Whether this is a failure of the backend (it could not be reached, did not answer
    /// in time, was closed, or a lock could not be taken) rather than an error in the
    /// configuration or the request.
    ///
    /// Backend failures are what a [`FailurePolicy`](crate::FailurePolicy) answers and
    /// what a [`CircuitBreaker`](crate::CircuitBreaker) counts; every other error
    /// ([`InvalidRate`](Error::InvalidRate),
    /// [`CostExceedsCapacity`](Error::CostExceedsCapacity),
    /// [`Configuration`](Error::Configuration), [`WrongType`](Error::WrongType)) is a
    /// mistake to surface, the same on every try.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::Error;
    ///
    /// assert!(Error::Backend("connection refused".into()).is_backend_failure());
    /// assert!(Error::Timeout(Duration::from_millis(250)).is_backend_failure());
    /// assert!(!Error::CostExceedsCapacity { cost: 10, capacity: 5 }.is_backend_failure());
    /// ```
    pub fn is_backend_failure(&self) -> bool {
        matches!(
            self,
            Error::Backend(_)
                | Error::Closed(_)
                | Error::LockTimeout { .. }
                | Error::Timeout(_)
                | Error::CircuitOpen(_)
        )
    }
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

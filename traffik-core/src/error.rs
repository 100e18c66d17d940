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
}

/// `Result` with [`Error`] as its error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

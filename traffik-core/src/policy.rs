//! What a throttle answers when its backend fails: [`FailurePolicy`] (the seed's
//! `on_error`), and how long a backend may take to decide ([`DEFAULT_TIMEOUT`]).
//!
//! Only backend failures go through the policy: the backend could not be reached, did not
//! answer in time ([`Error::Timeout`]), was closed, a lock could not be taken, or a
//! circuit breaker is open ([`Error::is_backend_failure`]). A configuration mistake
//! ([`Error::CostExceedsCapacity`], [`Error::InvalidRate`]...) is the same on every try
//! and always surfaces as an error.
//!
//! A throttle's own policy ([`Throttle::on_error`](crate::Throttle::on_error)) wins; a
//! throttle without one uses its backend's ([`Backend::failure_policy`], set with the
//! backends' `on_error` builder options), which is [`FailurePolicy::Raise`] unless
//! configured.
//!
//! [`Backend::failure_policy`]: crate::Backend::failure_policy

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

use crate::error::{Error, Result};

/// The default bound on one decision by a backend: 250 ms.
///
/// A decision is one round trip to a store (one Lua script call for Redis): well under a
/// millisecond on a local network, a few milliseconds across availability zones. 250 ms
/// is a hundred times a healthy round trip, so a busy but healthy server is not cut off,
/// while a request stuck on a dead or hung server pays at most a quarter of a second
/// before its throttle's [`FailurePolicy`] answers: less than a person notices as a
/// stall, and far below the timeouts of clients and load balancers.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(250);

/// The wait a `"throttle"` policy parsed from text tells clients: 5 s, long enough to
/// shed load from a failing store, short enough that clients see its recovery soon.
pub const DEFAULT_FAIL_CLOSED_WAIT: Duration = Duration::from_secs(5);

/// A custom failure policy: given what failed, say what to answer.
pub type FailureFn = dyn Fn(&FailureContext<'_>) -> FailureVerdict + Send + Sync;

/// What a throttle answers when its backend fails.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::{Error, FailurePolicy, FailureVerdict, Throttle};
///
/// // Fail open: the request passes, marked as not really decided.
/// let public = Throttle::new("public", "100/m")?.on_error(FailurePolicy::Allow);
/// // Fail closed: deny, telling the client to come back in 30 s.
/// let login = Throttle::new("login", "5/m")?.on_error(FailurePolicy::Throttle(Duration::from_secs(30)));
/// // Decide per failure: fail open on a timeout, return any other error.
/// let api = Throttle::new("api", "10/s")?.on_error(FailurePolicy::custom(|failure| {
///     match failure.error {
///         Error::Timeout(_) => FailureVerdict::Allow,
///         _ => FailureVerdict::Raise,
///     }
/// }));
/// # let _ = (public, login, api);
/// # Ok::<(), Error>(())
/// ```
///
/// It also parses from text (for configuration such as `TRAFFIK_ON_ERROR`): `allow`,
/// `raise`, `throttle` (a wait of [`DEFAULT_FAIL_CLOSED_WAIT`]) or `throttle:<wait>`
/// with a wait such as `30s`, `500ms`, `2m` or a number of seconds.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::FailurePolicy;
///
/// assert!(matches!("allow".parse(), Ok(FailurePolicy::Allow)));
/// assert!(matches!("RAISE".parse(), Ok(FailurePolicy::Raise)));
/// let closed: FailurePolicy = "throttle:30s".parse()?;
/// assert!(matches!(closed, FailurePolicy::Throttle(wait) if wait == Duration::from_secs(30)));
/// assert!("ignore".parse::<FailurePolicy>().is_err());
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Clone, Default)]
#[non_exhaustive]
pub enum FailurePolicy {
    /// Fail open: let the request through. The decision is
    /// [`Decision::fail_open`](crate::Decision::fail_open) (marked
    /// [`DecisionSource::FailOpen`](crate::DecisionSource::FailOpen), with no quota to
    /// advertise).
    Allow,
    /// Fail closed: deny the request, telling the client to wait this long. The decision
    /// is [`Decision::fail_closed`](crate::Decision::fail_closed).
    Throttle(Duration),
    /// Return the error to the caller (the axum integration answers
    /// `503 Service Unavailable`). The default.
    #[default]
    Raise,
    /// Ask a function; see [`FailurePolicy::custom`].
    Custom(Arc<FailureFn>),
}

impl FailurePolicy {
    /// The policy named by the environment variable `name` (`allow`, `throttle`,
    /// `throttle:<wait>` or `raise`, as [`FromStr`] reads them); [`FailurePolicy::Raise`]
    /// when it is not set.
    ///
    /// ```
    /// use traffik_core::policy::FailurePolicy;
    ///
    /// let policy = FailurePolicy::from_env("TRAFFIK_DOC_UNSET_POLICY")?;
    /// assert!(matches!(policy, FailurePolicy::Raise));
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn from_env(name: &str) -> Result<Self> {
        match std::env::var(name) {
            Ok(policy) => policy.parse(),
            Err(std::env::VarError::NotPresent) => Ok(FailurePolicy::Raise),
            Err(std::env::VarError::NotUnicode(_)) => {
                Err(Error::Configuration(format!("{name} is not valid UTF-8")))
            }
        }
    }

    /// A policy that asks `decide` what to answer for each failure, given the error, the
    /// throttle's uid, the client, the scope and the key.
    pub fn custom<F>(decide: F) -> Self
    where
        F: Fn(&FailureContext<'_>) -> FailureVerdict + Send + Sync + 'static,
    {
        Self::Custom(Arc::new(decide))
    }

    /// The answer for one failure.
    pub fn verdict(&self, failure: &FailureContext<'_>) -> FailureVerdict {
        match self {
            FailurePolicy::Allow => FailureVerdict::Allow,
            FailurePolicy::Throttle(wait) => FailureVerdict::Throttle(*wait),
            FailurePolicy::Raise => FailureVerdict::Raise,
            FailurePolicy::Custom(decide) => decide(failure),
        }
    }
}

impl fmt::Debug for FailurePolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FailurePolicy::Allow => f.write_str("Allow"),
            FailurePolicy::Throttle(wait) => f.debug_tuple("Throttle").field(wait).finish(),
            FailurePolicy::Raise => f.write_str("Raise"),
            FailurePolicy::Custom(_) => f.write_str("Custom(..)"),
        }
    }
}

impl FromStr for FailurePolicy {
    type Err = Error;

    fn from_str(text: &str) -> Result<Self> {
        let invalid = |reason: &str| {
            Error::Configuration(format!(
                "invalid failure policy {text:?}: {reason} (expected allow, raise, throttle or throttle:<wait> such as throttle:30s)"
            ))
        };
        let lower = text.trim().to_ascii_lowercase();
        let (name, wait) = match lower.split_once(':') {
            Some((name, wait)) => (name.trim(), Some(wait.trim())),
            None => (lower.as_str(), None),
        };
        match (name, wait) {
            ("allow", None) => Ok(FailurePolicy::Allow),
            ("raise", None) => Ok(FailurePolicy::Raise),
            ("throttle", None) => Ok(FailurePolicy::Throttle(DEFAULT_FAIL_CLOSED_WAIT)),
            ("throttle", Some(wait)) => parse_wait(wait)
                .map(FailurePolicy::Throttle)
                .ok_or_else(|| invalid("the wait is not a duration")),
            ("allow" | "raise", Some(_)) => Err(invalid("only throttle takes a wait")),
            _ => Err(invalid("unknown policy")),
        }
    }
}

/// `30s`, `500ms`, `2m`, `1h` or a number of seconds; at least one millisecond.
fn parse_wait(text: &str) -> Option<Duration> {
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let millis = match unit.trim() {
        "ms" => number,
        "" | "s" => number.checked_mul(1_000)?,
        "m" => number.checked_mul(60_000)?,
        "h" => number.checked_mul(3_600_000)?,
        _ => return None,
    };
    (millis > 0).then(|| Duration::from_millis(millis))
}

/// The answer a [`FailurePolicy`] gives for one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureVerdict {
    /// Let the request through, undecided.
    Allow,
    /// Deny the request, telling the client to wait this long.
    Throttle(Duration),
    /// Return the error.
    Raise,
}

/// What failed, for a custom [`FailurePolicy`].
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct FailureContext<'a> {
    /// The backend failure.
    pub error: &'a Error,
    /// The uid of the throttle whose decision failed.
    pub uid: &'a str,
    /// The client id.
    pub identity: &'a str,
    /// The scope of the request (for HTTP, `http:{METHOD}:{route}`).
    pub scope: &'a str,
    /// The storage key of the decision, relative to the backend's namespace.
    pub key: &'a str,
    /// The cost of the request.
    pub cost: u64,
    /// The namespace of the backend that failed.
    pub namespace: &'a str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits() {
        assert_eq!(parse_wait("30s"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("30"), Some(Duration::from_secs(30)));
        assert_eq!(parse_wait("500ms"), Some(Duration::from_millis(500)));
        assert_eq!(parse_wait("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_wait("1h"), Some(Duration::from_secs(3600)));
        assert_eq!(parse_wait("0s"), None);
        assert_eq!(parse_wait("s"), None);
        assert_eq!(parse_wait("5d"), None);
        assert_eq!(parse_wait("99999999999999999999h"), None);
        assert_eq!(parse_wait("18446744073709551615h"), None);
    }

    #[test]
    fn parses() {
        assert!(matches!(" Allow ".parse(), Ok(FailurePolicy::Allow)));
        assert!(matches!(
            "throttle".parse(),
            Ok(FailurePolicy::Throttle(DEFAULT_FAIL_CLOSED_WAIT))
        ));
        assert!(matches!(
            "throttle: 500ms".parse(),
            Ok(FailurePolicy::Throttle(wait)) if wait == Duration::from_millis(500)
        ));
        for bad in ["", "allow:5s", "throttle:", "throttle:x", "open", "raise:1"] {
            assert!(
                matches!(bad.parse::<FailurePolicy>(), Err(Error::Configuration(_))),
                "{bad:?}"
            );
        }
    }
}

//! [`Lock`]: a named, expiring lock held on a backend.

use std::fmt;
use std::time::Duration;

use super::BackendFuture;
use crate::error::Result;

/// How to take a lock.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::LockOptions;
///
/// let opts = LockOptions::new(Duration::from_secs(5)).blocking(Duration::from_secs(1));
/// assert_eq!(opts.ttl, Duration::from_secs(5));
/// assert_eq!(opts.wait, Some(Duration::from_secs(1)));
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LockOptions {
    /// How long the lock lives if its holder never releases it (a holder that died).
    pub ttl: Duration,
    /// How long to wait for a held lock; `None` fails at once.
    pub wait: Option<Duration>,
}

impl LockOptions {
    /// A lock that expires after `ttl` and does not wait if held.
    pub const fn new(ttl: Duration) -> Self {
        Self { ttl, wait: None }
    }

    /// Waits up to `timeout` for a held lock.
    pub const fn blocking(mut self, timeout: Duration) -> Self {
        self.wait = Some(timeout);
        self
    }
}

impl Default for LockOptions {
    /// A 10 s lock, waiting up to 1 s (the seed's `blocking_timeout=1`).
    fn default() -> Self {
        Self::new(Duration::from_secs(10)).blocking(Duration::from_secs(1))
    }
}

/// Releases one held lock; implemented by each backend.
pub trait LockRelease: Send + Sync + 'static {
    /// Releases the lock if this holder's token still owns it; `Ok(false)` if it had
    /// expired or been taken over.
    fn release(self: Box<Self>) -> BackendFuture<'static, Result<bool>>;
}

/// A held lock. Release it with [`Lock::release`]; dropping it releases it too (at once
/// on the in-memory backend, in a background task on networked ones), and its TTL
/// releases it if the holder dies.
pub struct Lock {
    name: String,
    token: String,
    release: Option<Box<dyn LockRelease>>,
}

impl Lock {
    /// A lock named `name` held with `token`, released by `release`.
    pub fn new(
        name: impl Into<String>,
        token: impl Into<String>,
        release: Box<dyn LockRelease>,
    ) -> Self {
        Self {
            name: name.into(),
            token: token.into(),
            release: Some(release),
        }
    }

    /// The lock's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The token that proves this holder owns the lock.
    pub fn token(&self) -> &str {
        &self.token
    }

    /// Releases the lock; `Ok(false)` if it had already expired or been taken over.
    pub async fn release(mut self) -> Result<bool> {
        match self.release.take() {
            Some(release) => release.release().await,
            None => Ok(false),
        }
    }
}

impl Drop for Lock {
    fn drop(&mut self) {
        let Some(release) = self.release.take() else {
            return;
        };
        if let Err(pending) = release.release().now_or_never() {
            match tokio::runtime::Handle::try_current() {
                Ok(handle) => {
                    handle.spawn(pending);
                }
                Err(_) => tracing::debug!(
                    lock = %self.name,
                    "lock dropped outside a runtime; it is released when its TTL ends"
                ),
            }
        }
    }
}

impl fmt::Debug for Lock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lock")
            .field("name", &self.name)
            .field("held", &self.release.is_some())
            .finish()
    }
}

/// Takes a lock by calling `attempt` until it returns one, waiting between attempts with a
/// jittered backoff for as long as `options` allow; [`Error::LockTimeout`] after that.
///
/// [`Error::LockTimeout`]: crate::Error::LockTimeout
#[cfg(any(feature = "redis", feature = "memcached"))]
pub(crate) async fn poll_for<F, Fut>(
    name: &str,
    options: LockOptions,
    mut attempt: F,
) -> Result<Lock>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Option<Lock>>>,
{
    let started = tokio::time::Instant::now();
    let mut backoff =
        super::backoff::Backoff::new(Duration::from_millis(1), Duration::from_millis(50));
    loop {
        if let Some(lock) = attempt().await? {
            return Ok(lock);
        }
        let waited = started.elapsed();
        match options.wait {
            Some(limit) if waited < limit => backoff.wait_at_most(limit - waited).await,
            _ => {
                return Err(crate::Error::LockTimeout {
                    name: name.to_owned(),
                    waited,
                });
            }
        }
    }
}

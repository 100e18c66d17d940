//! Storage backends: where throttle state lives.
//!
//! A [`Backend`] offers the primitives custom strategies are written with (`get`, `set`,
//! `delete`, `increment`, `increment_with_ttl`, `lock`), an atomic read-modify-write
//! ([`Backend::update`]) that runs any [`Algorithm`] correctly under concurrency, and
//! [`Backend::decide`], which backends may specialise (a server-side script, a lock-free
//! fast path).
//!
//! Keys given to a backend are relative to its namespace: the backend keeps namespaces
//! apart, and [`Backend::reset`] clears exactly its own.

#[cfg(any(feature = "redis", feature = "memcached"))]
mod backoff;
mod breaker;
mod future;
mod key_digest;
mod lock;
#[cfg(feature = "memcached")]
mod memcached;
mod memory;
#[cfg(feature = "redis")]
mod redis;
mod slot_bytes;

use std::fmt::Debug;
use std::sync::Arc;
use std::time::Duration;

#[cfg(feature = "redis")]
pub use self::redis::{
    ConnectFuture, ConnectionFactory, Pipelined, RedisBackend, RedisBackendBuilder, deadpool_redis,
};
pub use breaker::{BreakerState, CircuitBreaker, CircuitBreakerBuilder};
pub use future::BackendFuture;
pub use lock::{Lock, LockOptions, LockRelease};
#[cfg(feature = "memcached")]
pub use memcached::{MemcachedBackend, MemcachedBackendBuilder};
pub use memory::{InMemoryBackend, InMemoryBackendBuilder};

use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::policy::{DEFAULT_TIMEOUT, FailurePolicy};
use crate::rate::Rate;
use crate::strategy::{Algorithm, Write, check_cost, run, state_key};

/// The read-modify-write callback of [`Backend::update`]: given the stored bytes (or
/// `None`), say what to store. It may run more than once (a compare-and-swap retry), so it
/// must not have effects beyond what it captures.
pub type UpdateFn<'a> = dyn FnMut(Option<&[u8]>) -> Write + Send + 'a;

/// A store for throttle state. Implementations must be safe to share across tasks and
/// threads; every operation is atomic on its own.
///
/// Implement the required methods for a custom backend; `decide` and `peek` then work
/// for every [`Algorithm`] through [`update`](Backend::update).
pub trait Backend: Send + Sync + Debug + 'static {
    /// The namespace that prefixes every key of this backend.
    fn namespace(&self) -> &str;

    /// Whether state survives [`close`](Backend::close) (the seed's `persistent`).
    fn persistent(&self) -> bool {
        false
    }

    /// How long one decision on this backend may take before a throttle gives up on it
    /// with [`Error::Timeout`] and answers with its failure policy, unless the throttle
    /// sets its own ([`Throttle::timeout`](crate::Throttle::timeout)). Default:
    /// [`DEFAULT_TIMEOUT`] (250 ms); `Duration::MAX` for no bound.
    ///
    /// A throttle only starts the timer for a decision that does not complete at once, so
    /// an in-memory decision never pays for it.
    fn timeout(&self) -> Duration {
        DEFAULT_TIMEOUT
    }

    /// Whether every future [`decide_within`](Backend::decide_within) returns ends by
    /// itself within its limit, with [`Error::Timeout`] at the latest. A throttle whose
    /// decision is one `decide` then starts no timer of its own for it: the backend can
    /// bound many decisions with one timer (the Redis backend, one per pipeline), where a
    /// throttle needs one per decision. ([`decide`](Backend::decide) is bounded only as
    /// its caller bounds it.)
    ///
    /// The default is `false`: the throttle bounds each decision.
    fn bounds_decisions(&self) -> bool {
        false
    }

    /// Whether [`decide`](Backend::decide) always completes on its first poll (a store in
    /// this process). A throttle then decides in one synchronous step
    /// ([`Throttle::try_hit_now`](crate::Throttle::try_hit_now)), building no future.
    ///
    /// The default is `false`; a backend that says `true` and then returns a pending
    /// decision makes that decision fail with [`Error::Backend`].
    fn decides_in_place(&self) -> bool {
        false
    }

    /// Whether [`decide_at_once`](Backend::decide_at_once) may answer some decisions, on a
    /// backend that does not [decide in place](Backend::decides_in_place): a throttle then
    /// asks it first ([`Throttle::try_hit_at_once_joined`](crate::Throttle::try_hit_at_once_joined)).
    /// The Redis backend says `true` when it caches denials (`RedisBackendBuilder::cache_denials`).
    ///
    /// The default is `false`.
    fn may_decide_at_once(&self) -> bool {
        false
    }

    /// The decision [`decide`](Backend::decide) would give, when this backend knows it
    /// without I/O (the Redis backend: a denial its denial cache remembers); `None` when
    /// only `decide` can tell. Asked only when
    /// [`may_decide_at_once`](Backend::may_decide_at_once) or
    /// [`decides_in_place`](Backend::decides_in_place) says `true`; it must not change
    /// any state that `decide` would not. A backend that decides in place may answer
    /// here what `decide` would return ready (the in-memory backend does), sparing the
    /// ready future built around it; if it answers `None`, its `decide` is polled.
    ///
    /// The default is `None`.
    fn decide_at_once(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Option<Result<Decision>> {
        let _ = (key, algorithm, rate, cost);
        None
    }

    /// What a throttle without a failure policy of its own answers when this backend
    /// fails ([`Throttle::on_error`](crate::Throttle::on_error) overrides it). Default:
    /// [`FailurePolicy::Raise`].
    fn failure_policy(&self) -> FailurePolicy {
        FailurePolicy::Raise
    }

    /// Prepares the backend (connects, starts background work). Idempotent.
    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::ready(Ok(()))
    }

    /// The current time as this backend judges it (the server's clock for a networked
    /// store, the injected clock for the in-memory one).
    fn now(&self) -> BackendFuture<'_, Result<Micros>>;

    /// The value stored at `key`, if any and not expired.
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>>;

    /// Stores `value` at `key`, expiring after `ttl` (`None`: until deleted or reset).
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>>;

    /// Removes `key`; whether it was there.
    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>>;

    /// Atomically adds `amount` to the integer at `key` (missing counts as 0) and returns
    /// the new value. The key keeps its expiry.
    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>>;

    /// Atomically subtracts `amount`; see [`increment`](Backend::increment).
    fn decrement<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        match amount.checked_neg() {
            Some(negated) => self.increment(key, negated),
            None => BackendFuture::ready(Err(Error::Backend(format!(
                "cannot decrement {key:?} by {amount}"
            )))),
        }
    }

    /// Atomically adds `amount` to the integer at `key`; a key created by this call
    /// expires after `ttl`, an existing key keeps its expiry.
    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>>;

    /// Atomically replaces the bytes at `key` with what `f` decides from the current
    /// bytes. No other writer can interleave between the read and the write.
    fn update<'a>(&'a self, key: &'a str, f: &'a mut UpdateFn<'_>)
    -> BackendFuture<'a, Result<()>>;

    /// Takes the lock `name`; [`Error::LockTimeout`] if it is held past the wait.
    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>>;

    /// [`decide`](Backend::decide), to be answered within `limit` (a throttle's timeout)
    /// rather than the backend's [`timeout`](Backend::timeout). Only a backend that
    /// [bounds its decisions](Backend::bounds_decisions) keeps the limit; the default
    /// decides, and leaves the limit to the caller's timer.
    fn decide_within<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        let _ = limit;
        self.decide(key, algorithm, rate, cost)
    }

    /// Decides a request of `cost` for `key` with `algorithm`, atomically.
    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(decide_by_update(self, key, algorithm, rate, cost))
    }

    /// What a request of cost 1 for `key` would get now, consuming nothing.
    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            let now = self.now().await?;
            let key = state_key(algorithm, key, now, rate);
            let state = self.get(&key).await?;
            Ok(algorithm.peek(state.as_deref(), now, rate))
        })
    }

    /// Removes every key of this backend's namespace.
    fn reset(&self) -> BackendFuture<'_, Result<()>>;

    /// Releases resources; unless [`persistent`](Backend::persistent), clears the state
    /// first. Operations after `close` fail with [`Error::Closed`] until
    /// [`initialize`](Backend::initialize) is called again.
    fn close(&self) -> BackendFuture<'_, Result<()>>;
}

/// A shared backend handle.
pub type SharedBackend = Arc<dyn Backend>;

/// Decides a request with any [`Algorithm`] through [`Backend::update`]: the backend's
/// time, then one atomic read-modify-write of the state. The default
/// [`Backend::decide`], and the path a specialised backend falls back to for algorithms it
/// has no native form of.
pub async fn decide_by_update<B: Backend + ?Sized>(
    backend: &B,
    key: &str,
    algorithm: &dyn Algorithm,
    rate: &Rate,
    cost: u64,
) -> Result<Decision> {
    if rate.is_unlimited() {
        return Ok(Decision::unlimited());
    }
    check_cost(algorithm, rate, cost)?;
    let read = backend.now().await?;
    let window = algorithm.window(read, rate);
    let key = state_key(algorithm, key, read, rate);
    let mut outcome = None;
    let mut step = |state: Option<&[u8]>| {
        // Each attempt judges by the time read after the state it was given, when the
        // backend's clock answers at once (a local clock) and it is still in the key's
        // window: a time read before the wait for a connection, or before attempts lost
        // to other writers, would be older than the states they wrote, and would deny
        // what the limit admits.
        let now = match backend.now().into_ready() {
            Ok(Ok(fresh)) if fresh > read && algorithm.window(fresh, rate) == window => fresh,
            _ => read,
        };
        match run(algorithm, state, now, rate, cost) {
            Ok(transition) => {
                outcome = Some(Ok(transition.decision));
                transition.write
            }
            Err(error) => {
                outcome = Some(Err(error));
                Write::Keep
            }
        }
    };
    backend.update(&key, &mut step).await?;
    outcome.unwrap_or_else(|| Err(Error::Backend("update never called back".into())))
}

impl<B: Backend + ?Sized> Backend for Arc<B> {
    fn namespace(&self) -> &str {
        (**self).namespace()
    }
    fn persistent(&self) -> bool {
        (**self).persistent()
    }
    fn timeout(&self) -> Duration {
        (**self).timeout()
    }
    fn decides_in_place(&self) -> bool {
        (**self).decides_in_place()
    }
    fn may_decide_at_once(&self) -> bool {
        (**self).may_decide_at_once()
    }
    fn decide_at_once(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Option<Result<Decision>> {
        (**self).decide_at_once(key, algorithm, rate, cost)
    }
    fn bounds_decisions(&self) -> bool {
        (**self).bounds_decisions()
    }
    fn failure_policy(&self) -> FailurePolicy {
        (**self).failure_policy()
    }
    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        (**self).initialize()
    }
    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        (**self).now()
    }
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        (**self).get(key)
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        (**self).set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        (**self).delete(key)
    }
    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        (**self).increment(key, amount)
    }
    fn decrement<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        (**self).decrement(key, amount)
    }
    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        (**self).increment_with_ttl(key, amount, ttl)
    }
    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        (**self).update(key, f)
    }
    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        (**self).lock(name, options)
    }
    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        (**self).decide(key, algorithm, rate, cost)
    }
    fn decide_within<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        (**self).decide_within(key, algorithm, rate, cost, limit)
    }
    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        (**self).peek(key, algorithm, rate)
    }
    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        (**self).reset()
    }
    fn close(&self) -> BackendFuture<'_, Result<()>> {
        (**self).close()
    }
}

//! [`MemcachedBackend`]: state in memcached, shared by every process on the same server.
//!
//! * A [`FixedWindow`] request of cost 1 is one `ma` command: increment the window's
//!   counter, creating it (with the window's lifetime) when missing, atomically on the
//!   server. Every other decision, and every other strategy, is a compare-and-swap loop
//!   over the same pure state functions the in-memory backend runs: `mg` with the CAS
//!   token, the strategy, then `ms` with that token (or `add` for a new key), retried with
//!   a jittered backoff when another writer got in first, up to
//!   [`cas_attempts`](MemcachedBackendBuilder::cas_attempts) times.
//! * Locks are an `add` of a random token with a TTL; the holder releases its lock with a
//!   delete conditioned on the CAS token its `add` got back, so a holder whose lock expired
//!   and was taken over cannot release the new holder's lock.
//! * Keys are made safe for the protocol (see `keys.rs`): printable ASCII, at most 250
//!   bytes, the tail hashed with SHA-256 when longer; hostile keys can neither break nor
//!   inject a command.
//! * [`Backend::reset`] keeps no list of keys: keys carry the namespace's generation
//!   number, and `reset` increments it, so the old keys are never read again and expire
//!   on their TTLs. Other processes see a new generation within
//!   [`generation_refresh`](MemcachedBackendBuilder::generation_refresh).
//! * Memcached has no clock command: time is this host's clock (keep app servers in NTP
//!   sync), TTLs are whole seconds (rounded up), and TTLs beyond 30 days are sent as Unix
//!   times, as memcached requires.
//! * Counters are unsigned, as in memcached: a decrement stops at 0.
//! * With an explicit clock ([`MemcachedBackendBuilder::clock`], for tests and
//!   simulations) each value carries its expiry time on that clock in an 8-byte header
//!   and is judged expired by it; memcached's own TTL then only bounds how long the key
//!   lingers (the TTL plus an hour).

mod conn;
mod counter;
mod envelope;
mod generation;
mod keys;

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use self::conn::{ArithmeticError, Conn, Mode, Outcome, Pool, checkout};
use self::counter::DecimalFixedWindow;
use self::envelope::{Expiry, Stored, exptime, open, seal};
use self::generation::Generation;
use super::backoff::{Backoff, random_u64};
use super::{Backend, BackendFuture, Lock, LockOptions, LockRelease, UpdateFn, decide_by_update};
use crate::clock::{Clock, Micros, SharedClock, SystemClock};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::policy::{DEFAULT_TIMEOUT, FailurePolicy};
use crate::rate::Rate;
use crate::strategy::{Algorithm, Builtin, FixedWindow, StateBytes, Write, check_cost, state_key};

/// Keeps throttle state in memcached, shared by every process that uses the same server
/// and namespace.
///
/// ```no_run
/// use traffik_core::{Backend, FixedWindow, MemcachedBackend, Rate};
///
/// # async fn demo() -> traffik_core::Result<()> {
/// let backend = MemcachedBackend::builder("myapp")
///     .host("127.0.0.1", 11211)
///     .pool_size(10)
///     .build()?;
/// backend.initialize().await?;
/// let rate: Rate = "5/m".parse()?;
/// let decision = backend.decide("{api:10.0.0.1}", &FixedWindow, &rate, 1).await?;
/// assert!(decision.allowed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct MemcachedBackend {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    address: String,
    pool_size: usize,
    persistent: bool,
    pool: Pool,
    clock: Option<SharedClock>,
    closed: AtomicBool,
    cas_attempts: u32,
    on_error: FailurePolicy,
    timeout: Duration,
    generation: Generation,
    next_token: AtomicU64,
}

/// Configures a [`MemcachedBackend`]; see [`MemcachedBackend::builder`].
#[must_use]
#[derive(Debug, Clone)]
pub struct MemcachedBackendBuilder {
    namespace: String,
    address: String,
    pool_size: usize,
    persistent: bool,
    clock: Option<SharedClock>,
    timeout: Duration,
    cas_attempts: u32,
    generation_refresh: Duration,
    on_error: FailurePolicy,
    decision_timeout: Duration,
}

impl MemcachedBackendBuilder {
    /// The server at `host` and `port` (default `127.0.0.1`, `11211`).
    pub fn host(mut self, host: impl fmt::Display, port: u16) -> Self {
        self.address = format!("{host}:{port}");
        self
    }

    /// The server at a DSN: `host:port`, `memcached://host:port`, `tcp://host:port` or
    /// `unix:///path/to/socket`.
    pub fn url(mut self, dsn: impl AsRef<str>) -> Self {
        let dsn = dsn.as_ref().trim();
        self.address = match dsn.strip_prefix("memcached://") {
            Some(rest) => format!("tcp://{rest}"),
            None => dsn.to_owned(),
        };
        self
    }

    /// At most `size` connections (default 10, the seed's `pool_size`). A connection that
    /// fails is replaced by a new one.
    pub fn pool_size(mut self, size: usize) -> Self {
        self.pool_size = size;
        self
    }

    /// Keep state across [`Backend::close`] (default: cleared on close).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// What throttles without a failure policy of their own answer when memcached fails
    /// or is too slow (default: [`FailurePolicy::Raise`]); see [`Backend::failure_policy`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::policy::FailurePolicy;
    /// use traffik_core::{Backend, MemcachedBackend};
    ///
    /// let backend = MemcachedBackend::builder("myapp")
    ///     .on_error(FailurePolicy::Allow)
    ///     .timeout(Duration::from_millis(100))
    ///     .build()?;
    /// assert!(matches!(backend.failure_policy(), FailurePolicy::Allow));
    /// assert_eq!(backend.timeout(), Duration::from_millis(100));
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn on_error(mut self, policy: FailurePolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// How long one decision may take before a throttle gives up on it (default:
    /// [`DEFAULT_TIMEOUT`], 250 ms); see [`Backend::timeout`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.decision_timeout = limit;
        self
    }

    /// How long to wait for a free connection, or for a new one to connect (default 1 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// How many compare-and-swap rounds a read-modify-write may lose to concurrent writers
    /// before it fails with [`Error::Backend`] (default 64).
    pub fn cas_attempts(mut self, attempts: u32) -> Self {
        self.cas_attempts = attempts;
        self
    }

    /// How long a read of the namespace's generation is trusted before it is read again
    /// (default 1 s): a [`Backend::reset`] by another process takes effect here within
    /// this time. `Duration::ZERO` reads it for every operation (one more round trip).
    pub fn generation_refresh(mut self, refresh: Duration) -> Self {
        self.generation_refresh = refresh;
        self
    }

    /// Judges time and expiry by `clock` instead of this host's clock (tests, simulations).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// The backend; [`Error::Configuration`] for an empty address, a pool of size 0 or
    /// no compare-and-swap attempts. Connections are made on first use.
    pub fn build(self) -> Result<MemcachedBackend> {
        if self.address.is_empty() {
            return Err(Error::Configuration(
                "memcached: empty server address".into(),
            ));
        }
        if self.pool_size == 0 || self.cas_attempts == 0 {
            return Err(Error::Configuration(
                "memcached: pool_size and cas_attempts must be at least 1".into(),
            ));
        }
        // async-memcached reads URLs: a bare `host:port` becomes `tcp://host:port`.
        let dsn = if self.address.contains("://") {
            self.address.clone()
        } else {
            format!("tcp://{}", self.address)
        };
        let pool = conn::pool(dsn, self.pool_size, self.timeout)?;
        let generation = Generation::new(&self.namespace, self.generation_refresh);
        Ok(MemcachedBackend {
            inner: Arc::new(Inner {
                namespace: self.namespace,
                address: self.address,
                pool_size: self.pool_size,
                persistent: self.persistent,
                pool,
                clock: self.clock,
                closed: AtomicBool::new(false),
                cas_attempts: self.cas_attempts,
                on_error: self.on_error,
                timeout: self.decision_timeout,
                generation,
                next_token: AtomicU64::new(1),
            }),
        })
    }
}

/// What a compare-and-swap round writes.
enum Plan {
    Keep,
    Put(StateBytes, Expiry),
    Delete,
}

impl MemcachedBackend {
    /// Configures a backend for `namespace`.
    ///
    /// ```
    /// use traffik_core::{Backend, MemcachedBackend};
    ///
    /// let backend = MemcachedBackend::builder("myapp")
    ///     .url("memcached://127.0.0.1:11211")
    ///     .pool_size(4)
    ///     .persistent(true)
    ///     .build()?;
    /// assert!(backend.persistent());
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn builder(namespace: impl Into<String>) -> MemcachedBackendBuilder {
        MemcachedBackendBuilder {
            namespace: namespace.into(),
            address: "127.0.0.1:11211".into(),
            pool_size: 10,
            persistent: false,
            clock: None,
            timeout: Duration::from_secs(1),
            cas_attempts: 64,
            generation_refresh: Duration::from_secs(1),
            on_error: FailurePolicy::Raise,
            decision_timeout: DEFAULT_TIMEOUT,
        }
    }

    /// A backend on the server at `host` and `port` with the default pool.
    pub fn new(host: impl fmt::Display, port: u16, namespace: impl Into<String>) -> Result<Self> {
        Self::builder(namespace).host(host, port).build()
    }

    /// A backend on the server at a DSN (see [`MemcachedBackendBuilder::url`]).
    pub fn from_url(dsn: impl AsRef<str>, namespace: impl Into<String>) -> Result<Self> {
        Self::builder(namespace).url(dsn).build()
    }

    /// The server's address, as connections are made to it.
    pub fn address(&self) -> &str {
        &self.inner.address
    }

    /// The memcached key that `key` is stored under now (namespace and generation
    /// included, made safe for the protocol).
    pub async fn memcached_key(&self, key: &str) -> Result<String> {
        let generation = self.generation().await?;
        Ok(keys::item_key(&self.inner.namespace, generation, key))
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(self.inner.namespace.clone()));
        }
        Ok(())
    }

    async fn conn(&self) -> Result<Conn> {
        self.check_open()?;
        checkout(&self.inner.pool).await
    }

    /// The namespace's generation, read from the server at most every refresh period.
    async fn generation(&self) -> Result<u64> {
        match self.inner.generation.cached() {
            Some(generation) => Ok(generation),
            None => self.inner.generation.read(&mut self.conn().await?).await,
        }
    }

    /// Moves the namespace to a new generation: every key written before is out of sight.
    async fn bump_generation(&self) -> Result<()> {
        self.inner.generation.bump(&mut self.conn().await?).await
    }

    fn clock(&self) -> Option<&SharedClock> {
        self.inner.clock.as_ref()
    }

    fn clock_now(&self) -> Micros {
        match &self.inner.clock {
            Some(clock) => clock.now_micros(),
            None => SystemClock.now_micros(),
        }
    }

    /// Reads `full`, runs `step` on its payload, and writes what it plans only if nobody
    /// wrote in between; retries (re-reading, re-running `step`) when somebody did.
    async fn compare_and_swap(
        &self,
        full: &str,
        step: &mut (dyn FnMut(Option<&[u8]>) -> Plan + Send),
    ) -> Result<()> {
        let mut backoff = Backoff::new(Duration::from_micros(50), Duration::from_millis(5));
        for _ in 0..self.inner.cas_attempts {
            if self.try_compare_and_swap(full, step).await? {
                return Ok(());
            }
            backoff.wait().await;
        }
        Err(Error::Backend(format!(
            "memcached: {} compare-and-swap attempts on {full:?} all lost to concurrent writers",
            self.inner.cas_attempts
        )))
    }

    /// One round of [`compare_and_swap`](Self::compare_and_swap): whether it wrote (or had
    /// nothing to write).
    async fn try_compare_and_swap(
        &self,
        full: &str,
        step: &mut (dyn FnMut(Option<&[u8]>) -> Plan + Send),
    ) -> Result<bool> {
        let mut conn = self.conn().await?;
        let item = conn::get(&mut conn, full).await?;
        let stored = item.as_ref().map(|item| open(self.clock(), item));
        let payload = match (&item, &stored) {
            (
                Some(item),
                Some(Stored {
                    payload: Some(range),
                    ..
                }),
            ) => Some(&item.data[range.clone()]),
            _ => None,
        };
        let outcome = match step(payload) {
            Plan::Keep => return Ok(true),
            Plan::Put(value, expiry) => {
                let (bytes, exptime) = seal(self.clock(), &value, expiry, stored.as_ref());
                let mode = item.as_ref().map_or(Mode::Add, |item| Mode::Cas(item.cas));
                conn::set(&mut conn, full, &bytes, exptime, mode).await?
            }
            Plan::Delete => match &item {
                None => return Ok(true),
                Some(item) => conn::delete(&mut conn, full, Some(item.cas)).await?,
            },
        };
        Ok(matches!(outcome, Outcome::Done(_)))
    }

    /// Adds `amount` to the counter at `key`, creating it with `ttl` (or no expiry).
    async fn increment_async(&self, key: &str, amount: i64, ttl: Option<Duration>) -> Result<i64> {
        let full = self.memcached_key(key).await?;
        if self.inner.clock.is_none() {
            let mut conn = self.conn().await?;
            let exptime = ttl.map_or(0, exptime);
            let (delta, decrement) = (amount.unsigned_abs(), amount < 0);
            let initial = if decrement { 0 } else { delta };
            match conn::arithmetic(&mut conn, &full, delta, decrement, exptime, initial).await {
                Ok(value) => return to_i64(key, value),
                Err(ArithmeticError::NotANumber) => return Err(not_a_counter(key)),
                Err(ArithmeticError::Failed(error)) => return Err(error),
            }
        }
        // On an explicit clock the value carries its expiry header, which `ma` cannot
        // step over: the same arithmetic as a compare-and-swap.
        let mut result = Err(not_a_counter(key));
        let mut step = |current: Option<&[u8]>| {
            let base = match current {
                None => 0,
                Some(bytes) => match counter::parse_decimal(bytes) {
                    Some(value) => value,
                    None => {
                        result = Err(not_a_counter(key));
                        return Plan::Keep;
                    }
                },
            };
            let value = if amount < 0 {
                base.saturating_sub(amount.unsigned_abs())
            } else {
                base.wrapping_add(amount.unsigned_abs())
            };
            result = to_i64(key, value);
            let expiry = match (current, ttl) {
                (Some(_), _) => Expiry::Unchanged,
                (None, Some(ttl)) => Expiry::After(ttl),
                (None, None) => Expiry::Never,
            };
            Plan::Put(
                StateBytes::from_slice(itoa::Buffer::new().format(value).as_bytes()),
                expiry,
            )
        };
        self.compare_and_swap(&full, &mut step).await?;
        result
    }

    /// A [`FixedWindow`] request of cost 1 as one `ma`: `None` when the counter holds
    /// something else (corrupt state), for the compare-and-swap path to replace.
    async fn decide_by_increment(&self, key: &str, rate: &Rate) -> Result<Option<Decision>> {
        let now = self.clock_now();
        let full = self
            .memcached_key(&state_key(&FixedWindow, key, now, rate))
            .await?;
        let lifetime = exptime(DecimalFixedWindow::until_window_end(now, rate));
        let mut conn = self.conn().await?;
        match conn::arithmetic(&mut conn, &full, 1, false, lifetime, 1).await {
            Ok(total) => {
                let before = total.saturating_sub(1);
                Ok(Some(
                    DecimalFixedWindow::decide(before, now, rate, 1)?.decision,
                ))
            }
            Err(ArithmeticError::NotANumber) => Ok(None),
            Err(ArithmeticError::Failed(error)) => Err(error),
        }
    }

    async fn decide_async(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Result<Decision> {
        self.check_open()?;
        if rate.is_unlimited() {
            return Ok(Decision::unlimited());
        }
        check_cost(algorithm, rate, cost)?;
        let fixed_window = algorithm.builtin() == Some(Builtin::FixedWindow);
        if cost == 0 {
            let peek = self.peek_async(key, algorithm, rate).await?;
            return Ok(Decision::allow(peek.limit, peek.remaining, peek.reset));
        }
        if !fixed_window {
            return decide_by_update(self, key, algorithm, rate, cost).await;
        }
        if cost == 1 && self.inner.clock.is_none() {
            if let Some(decision) = self.decide_by_increment(key, rate).await? {
                return Ok(decision);
            }
        }
        decide_by_update(self, key, &DecimalFixedWindow, rate, cost).await
    }

    async fn peek_async(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
    ) -> Result<Decision> {
        self.check_open()?;
        if rate.is_unlimited() {
            return Ok(Decision::unlimited());
        }
        let algorithm: &dyn Algorithm = match algorithm.builtin() {
            Some(Builtin::FixedWindow) => &DecimalFixedWindow,
            _ => algorithm,
        };
        let now = self.clock_now();
        let state = self
            .get_async(&state_key(algorithm, key, now, rate))
            .await?;
        Ok(algorithm.peek(state.as_deref(), now, rate))
    }

    async fn get_async(&self, key: &str) -> Result<Option<Vec<u8>>> {
        let full = self.memcached_key(key).await?;
        let mut conn = self.conn().await?;
        let Some(mut item) = conn::get(&mut conn, &full).await? else {
            return Ok(None);
        };
        let Some(range) = open(self.clock(), &item).payload else {
            return Ok(None);
        };
        item.data.truncate(range.end);
        item.data.drain(..range.start);
        Ok(Some(item.data))
    }

    async fn set_async(&self, key: &str, value: &[u8], ttl: Option<Duration>) -> Result<()> {
        let full = self.memcached_key(key).await?;
        let expiry = ttl.map_or(Expiry::Never, Expiry::After);
        let (bytes, exptime) = seal(self.clock(), value, expiry, None);
        let mut conn = self.conn().await?;
        match conn::set(&mut conn, &full, &bytes, exptime, Mode::Set).await? {
            Outcome::Done(_) => Ok(()),
            other => Err(Error::Backend(format!(
                "memcached: set of {key:?}: {other:?}"
            ))),
        }
    }

    async fn delete_async(&self, key: &str) -> Result<bool> {
        let full = self.memcached_key(key).await?;
        let mut conn = self.conn().await?;
        Ok(matches!(
            conn::delete(&mut conn, &full, None).await?,
            Outcome::Done(_)
        ))
    }

    async fn update_async(&self, key: &str, f: &mut UpdateFn<'_>) -> Result<()> {
        let full = self.memcached_key(key).await?;
        let mut step = |current: Option<&[u8]>| match f(current) {
            Write::Keep => Plan::Keep,
            Write::Put { state, ttl } => Plan::Put(state, Expiry::After(ttl)),
            Write::Delete => Plan::Delete,
        };
        self.compare_and_swap(&full, &mut step).await
    }

    async fn lock_async(&self, name: &str, options: LockOptions) -> Result<Lock> {
        let full = self.memcached_key(name).await?;
        let token = format!(
            "{:016x}{:08x}",
            random_u64(),
            self.inner.next_token.fetch_add(1, Ordering::Relaxed)
        );
        super::lock::poll_for(name, options, || {
            self.try_lock(name, &full, &token, options.ttl)
        })
        .await
    }

    /// One attempt at a lock: `add` the token; on an explicit clock, also take over a lock
    /// whose time on that clock is up.
    async fn try_lock(
        &self,
        name: &str,
        full: &str,
        token: &str,
        ttl: Duration,
    ) -> Result<Option<Lock>> {
        let mut conn = self.conn().await?;
        let (bytes, exptime) = seal(self.clock(), token.as_bytes(), Expiry::After(ttl), None);
        let mut outcome = conn::set(&mut conn, full, &bytes, exptime, Mode::Add).await?;
        if outcome == Outcome::NotStored && self.inner.clock.is_some() {
            if let Some(item) = conn::get(&mut conn, full).await? {
                if open(self.clock(), &item).payload.is_none() {
                    outcome =
                        conn::set(&mut conn, full, &bytes, exptime, Mode::Cas(item.cas)).await?;
                }
            }
        }
        let Outcome::Done(cas) = outcome else {
            return Ok(None);
        };
        let cas = cas.ok_or_else(|| {
            Error::Backend("memcached: a lock was stored without a CAS token".into())
        })?;
        let release = MemcachedLockRelease {
            backend: self.clone(),
            key: full.to_owned(),
            cas,
        };
        Ok(Some(Lock::new(name, token, Box::new(release))))
    }

    async fn close_async(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Ok(());
        }
        let result = if self.inner.persistent {
            Ok(())
        } else {
            self.bump_generation().await
        };
        self.inner.closed.store(true, Ordering::Relaxed);
        // Drop idle connections; new ones are made if the backend is initialized again.
        self.inner.pool.retain(|_, _| false);
        result
    }
}

/// Releases a memcached lock by deleting it at the CAS token its `add` got.
struct MemcachedLockRelease {
    backend: MemcachedBackend,
    key: String,
    cas: u64,
}

impl LockRelease for MemcachedLockRelease {
    fn release(self: Box<Self>) -> BackendFuture<'static, Result<bool>> {
        BackendFuture::new(async move {
            let mut conn = self.backend.conn().await?;
            let outcome = conn::delete(&mut conn, &self.key, Some(self.cas)).await?;
            Ok(matches!(outcome, Outcome::Done(_)))
        })
    }
}

fn not_a_counter(key: &str) -> Error {
    Error::WrongType {
        key: key.to_owned(),
        expected: "a decimal counter",
    }
}

fn to_i64(key: &str, value: u64) -> Result<i64> {
    i64::try_from(value).map_err(|_| Error::WrongType {
        key: key.to_owned(),
        expected: "a counter below 2^63",
    })
}

impl fmt::Debug for MemcachedBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemcachedBackend")
            .field("namespace", &self.inner.namespace)
            .field("address", &self.inner.address)
            .field("pool_size", &self.inner.pool_size)
            .field("persistent", &self.inner.persistent)
            .field("explicit_clock", &self.inner.clock.is_some())
            .finish()
    }
}

impl fmt::Debug for Inner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Inner")
            .field("namespace", &self.namespace)
            .finish()
    }
}

impl Backend for MemcachedBackend {
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn persistent(&self) -> bool {
        self.inner.persistent
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.inner.on_error.clone()
    }

    /// Opens (or reopens) the backend and checks that the server answers.
    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            self.inner.closed.store(false, Ordering::Relaxed);
            let mut conn = self.conn().await?;
            conn::ping(&mut conn).await
        })
    }

    /// This host's clock (memcached has none to offer), or the explicit one.
    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        BackendFuture::ready(self.check_open().map(|()| self.clock_now()))
    }

    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        BackendFuture::new(self.get_async(key))
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(self.set_async(key, value, ttl))
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        BackendFuture::new(self.delete_async(key))
    }

    /// Adds to the counter with `ma` (atomic on the server); a decrement stops at 0.
    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(self.increment_async(key, amount, None))
    }

    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(self.increment_async(key, amount, Some(ttl)))
    }

    /// A compare-and-swap loop: `f` may run more than once.
    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(self.update_async(key, f))
    }

    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        BackendFuture::new(self.lock_async(name, options))
    }

    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(self.decide_async(key, algorithm, rate, cost))
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(self.peek_async(key, algorithm, rate))
    }

    /// Moves the namespace to a new generation; the old keys expire on their TTLs.
    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            self.check_open()?;
            self.bump_generation().await
        })
    }

    fn close(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(self.close_async())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builder_checks() {
        assert!(MemcachedBackend::builder("a").url("").build().is_err());
        assert!(MemcachedBackend::builder("a").pool_size(0).build().is_err());
        assert!(
            MemcachedBackend::builder("a")
                .cas_attempts(0)
                .build()
                .is_err()
        );
        let backend = MemcachedBackend::builder("a")
            .url("memcached://10.0.0.1:11311")
            .build()
            .unwrap();
        assert_eq!(backend.address(), "tcp://10.0.0.1:11311");
        assert_eq!(
            MemcachedBackend::new("cache.internal", 11211, "a")
                .unwrap()
                .address(),
            "cache.internal:11211"
        );
    }
}

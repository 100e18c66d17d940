//! [`InMemoryBackend`]: state in a sharded concurrent map, for one process.

use std::borrow::Borrow;
use std::cell::UnsafeCell;
use std::fmt;
use std::hash::{Hash, Hasher};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use dashmap::DashMap;
use dashmap::mapref::entry::{Entry, OccupiedEntry};
use dashmap::mapref::one::RefMut;

use super::key_digest::{Digester, KeyDigest, PassThroughState};
use super::slot_bytes::SlotBytes;
use super::{Backend, BackendFuture, Lock, LockOptions, LockRelease, UpdateFn};
use crate::clock::{Micros, SharedClock, SystemClock};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::policy::{DEFAULT_TIMEOUT, FailurePolicy};
use crate::rate::Rate;
use crate::strategy::{Algorithm, StateBytes, Write, run};

/// Expiry of a key stored without a TTL.
const NEVER: Micros = Micros::MAX;
/// Shards of the map: enough that a sweep holds each lock only briefly.
const SHARDS: usize = 64;
/// Default time between two sweeps of expired keys.
const DEFAULT_SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// The window of a slot written without one (every key but a windowed strategy's).
const NO_WINDOW: u64 = u64::MAX;

/// Records, found by the digest of their key (see `key_digest.rs`).
type Map = DashMap<Record, (), PassThroughState>;

/// A key's digest and its slot, in one 64-byte cache line: the map's element.
///
/// The map could hold the digest as its key and the slot as its value, but a pair of
/// them is 72 bytes, and a decision then read two cache lines of it (the digest to find
/// it, the slot to decide). With many clients the map outgrows the processor's caches,
/// and that second line can be a second miss per decision. One type aligned to a cache
/// line fills exactly one: the map's key is the whole record, found by its digest
/// ([`Borrow<KeyDigest>`]). A map never lends its keys mutably, so the slot sits in an
/// [`UnsafeCell`] that only [`slot_mut`] and [`occupied_slot_mut`] open for writing, each
/// under its shard's write lock.
#[repr(align(64))]
struct Record {
    id: KeyDigest,
    slot: UnsafeCell<Slot>,
}

const _: () = assert!(std::mem::size_of::<Record>() == 64);

// SAFETY: a `Record` is shared between threads only inside the map, and read or written
// only under its shard's lock: a `&Record` comes from a read or write guard, and a
// `&mut Slot` only from a write guard (exclusive of every other guard of its shard)
// borrowed mutably for as long as the `&mut Slot` lives (`slot_mut`,
// `occupied_slot_mut`), so no other reference to the slot exists meanwhile.
unsafe impl Sync for Record {}

impl Record {
    fn new(id: KeyDigest, slot: Slot) -> Self {
        Self {
            id,
            slot: UnsafeCell::new(slot),
        }
    }

    /// The slot, for reading.
    fn slot(&self) -> &Slot {
        // SAFETY: a `&mut Slot` is made only from a write guard borrowed mutably (see
        // `Sync` above), which no `&self` taken from the same guard can outlive and no
        // guard of another thread can hold at the same time.
        unsafe { &*self.slot.get() }
    }

    fn into_slot(self) -> Slot {
        self.slot.into_inner()
    }
}

/// The slot of the record `found`, under its shard's write lock.
fn slot_mut<'g>(found: &'g mut RefMut<'_, Record, ()>) -> &'g mut Slot {
    // SAFETY: `found` holds its shard's write lock, and is borrowed mutably for as long as
    // the slot is: no other reference to the record's slot exists meanwhile.
    unsafe { &mut *found.key().slot.get() }
}

/// [`slot_mut`] for a record reached through the map's entry API.
fn occupied_slot_mut<'g>(entry: &'g mut OccupiedEntry<'_, Record, ()>) -> &'g mut Slot {
    // SAFETY: as in `slot_mut`: the entry holds its shard's write lock and is borrowed
    // mutably for as long as the slot is.
    unsafe { &mut *entry.key().slot.get() }
}

impl Borrow<KeyDigest> for Record {
    fn borrow(&self) -> &KeyDigest {
        &self.id
    }
}

/// A record is its digest: hashed and compared as the digest is, so that the map finds
/// it by one ([`Borrow`]'s contract).
impl Hash for Record {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id.hash(state);
    }
}

impl PartialEq for Record {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}

impl Eq for Record {}

/// One stored value, when it expires, and the window it belongs to.
///
/// A windowed strategy (a fixed window: [`Algorithm::window`]) keeps one slot per key,
/// tagged with the window its state counts: a slot of an earlier window reads as absent.
/// This is what a key per window (`key:window`, as on Redis) gives, without a new entry
/// in the map at every window and the old ones left for the sweeper: the map holds one
/// slot per client whatever the period.
#[derive(Debug)]
struct Slot {
    value: SlotBytes,
    expires_at: Micros,
    window: u64,
}

impl Slot {
    /// A slot with nothing in it, expired.
    const fn empty() -> Self {
        Slot {
            value: SlotBytes::new(),
            expires_at: 0,
            window: NO_WINDOW,
        }
    }

    fn live(&self, now: Micros) -> Option<&[u8]> {
        (self.expires_at > now).then_some(self.value.as_slice())
    }

    /// The live state of `window` (`NO_WINDOW` for an unwindowed key).
    fn live_in(&self, now: Micros, window: u64) -> Option<&[u8]> {
        if self.window == window {
            self.live(now)
        } else {
            None
        }
    }

    /// Applies a write decided at `now` in `window`. Inline: every decision writes
    /// through here, and a call costs it about 25 instructions of its own.
    #[inline(always)]
    fn apply(&mut self, write: Write, now: Micros, window: u64) {
        match write {
            Write::Keep => {}
            Write::Put { state, ttl } => {
                self.value.set(&state);
                self.expires_at = expiry(now, ttl);
                self.window = window;
            }
            Write::Delete => self.expires_at = 0,
        }
    }
}

/// [`InMemoryBackend::with_slot_mut`] for a key not stored when it looked: once per
/// client (or per client's return after its state expired). Out of line and cold, so that
/// the usual path, a slot found, stays short in the instruction cache.
#[cold]
#[inline(never)]
fn with_new_slot<R>(map: &Map, id: KeyDigest, now: Micros, f: impl FnOnce(&mut Slot) -> R) -> R {
    match map.entry(Record::new(id, Slot::empty())) {
        Entry::Occupied(mut occupied) => f(occupied_slot_mut(&mut occupied)),
        Entry::Vacant(vacant) => {
            let mut slot = Slot::empty();
            let out = f(&mut slot);
            if slot.expires_at > now {
                let mut inserted = vacant.insert(());
                *slot_mut(&mut inserted) = slot;
            }
            out
        }
    }
}

fn expiry(now: Micros, ttl: Duration) -> Micros {
    now.saturating_add(u64::try_from(ttl.as_micros()).unwrap_or(u64::MAX))
}

/// Keeps throttle state in process memory: a sharded concurrent map (dashmap) with a
/// per-key TTL.
///
/// Fast and dependency-free; right for one process (development, tests, single-instance
/// apps). Every key expires: expired keys are invisible at once, and reclaimed by a
/// background sweeper (started when the backend is built inside a Tokio runtime, stopped
/// when the last handle is dropped or the backend is closed), so memory stays bounded
/// however many distinct clients come and go.
///
/// Clones share the same store.
///
/// ```
/// use traffik_core::{Backend, InMemoryBackend, Rate, strategy::FixedWindow};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = InMemoryBackend::new("myapp");
/// let rate: Rate = "2/m".parse()?;
/// assert!(backend.decide("client", &FixedWindow, &rate, 1).await?.allowed);
/// assert!(backend.decide("client", &FixedWindow, &rate, 1).await?.allowed);
/// assert!(!backend.decide("client", &FixedWindow, &rate, 1).await?.allowed);
/// # Ok::<(), traffik_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct InMemoryBackend {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    persistent: bool,
    on_error: FailurePolicy,
    timeout: Duration,
    clock: SharedClock,
    map: Map,
    digester: Digester,
    closed: AtomicBool,
    sweep_interval: Duration,
    sweeper: Mutex<Option<tokio::task::AbortHandle>>,
    next_token: AtomicU64,
    /// Wakes the tasks waiting for a lock when one is released.
    lock_released: tokio::sync::Notify,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(task) = self.sweeper.get_mut().ok().and_then(Option::take) {
            task.abort();
        }
    }
}

/// Configures an [`InMemoryBackend`]; see [`InMemoryBackend::builder`].
#[derive(Debug, Clone)]
#[must_use]
pub struct InMemoryBackendBuilder {
    namespace: String,
    persistent: bool,
    on_error: FailurePolicy,
    timeout: Duration,
    clock: SharedClock,
    sweep_interval: Duration,
}

impl InMemoryBackendBuilder {
    /// Keep state across [`Backend::close`] (default: cleared on close).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// What throttles without a failure policy of their own answer when this backend
    /// fails (default: [`FailurePolicy::Raise`]); see [`Backend::failure_policy`]. The
    /// in-memory backend fails only once closed.
    pub fn on_error(mut self, policy: FailurePolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// How long one decision may take (default:
    /// [`DEFAULT_TIMEOUT`](crate::policy::DEFAULT_TIMEOUT)); see [`Backend::timeout`].
    /// In-memory decisions complete at once, so this only bounds custom strategies that
    /// wait (for a lock, for example).
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// The clock that judges decisions and expiry (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl crate::clock::Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, already shared.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// Time between two sweeps of expired keys (default 10 s).
    pub fn sweep_interval(mut self, interval: Duration) -> Self {
        self.sweep_interval = interval.max(Duration::from_millis(1));
        self
    }

    /// The backend. Inside a Tokio runtime this starts the sweeper; elsewhere the sweeper
    /// starts with [`Backend::initialize`].
    pub fn build(self) -> InMemoryBackend {
        // The first read of the system clock calibrates it: pay that now, not on a request.
        let _ = self.clock.now_micros();
        let backend = InMemoryBackend {
            inner: Arc::new(Inner {
                namespace: self.namespace,
                persistent: self.persistent,
                on_error: self.on_error,
                timeout: self.timeout,
                clock: self.clock,
                map: DashMap::with_hasher_and_shard_amount(PassThroughState::default(), SHARDS),
                digester: Digester::default(),
                closed: AtomicBool::new(false),
                sweep_interval: self.sweep_interval,
                sweeper: Mutex::new(None),
                next_token: AtomicU64::new(1),
                lock_released: tokio::sync::Notify::new(),
            }),
        };
        backend.start_sweeper();
        backend
    }
}

impl InMemoryBackend {
    /// A backend with `namespace`, the system clock and default settings.
    pub fn new(namespace: impl Into<String>) -> Self {
        Self::builder(namespace).build()
    }

    /// Configures a backend.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::{Backend, FailurePolicy, InMemoryBackend, ManualClock};
    ///
    /// let backend = InMemoryBackend::builder("tests")
    ///     .persistent(true)
    ///     .clock(ManualClock::new(0))
    ///     .sweep_interval(Duration::from_secs(1))
    ///     .on_error(FailurePolicy::Allow)
    ///     .timeout(Duration::from_millis(100))
    ///     .build();
    /// assert!(backend.persistent());
    /// assert!(matches!(backend.failure_policy(), FailurePolicy::Allow));
    /// assert_eq!(backend.timeout(), Duration::from_millis(100));
    /// ```
    pub fn builder(namespace: impl Into<String>) -> InMemoryBackendBuilder {
        InMemoryBackendBuilder {
            namespace: namespace.into(),
            persistent: false,
            on_error: FailurePolicy::Raise,
            timeout: DEFAULT_TIMEOUT,
            clock: Arc::new(SystemClock),
            sweep_interval: DEFAULT_SWEEP_INTERVAL,
        }
    }

    /// Keys stored, counting expired ones the sweeper has not reclaimed yet.
    pub fn stored_keys(&self) -> usize {
        self.inner.map.len()
    }

    /// Removes every expired key now; returns how many were removed.
    pub fn purge_expired(&self) -> usize {
        self.inner.purge_expired()
    }

    /// Whether the background sweeper is running.
    pub fn sweeper_running(&self) -> bool {
        self.inner
            .sweeper
            .lock()
            .ok()
            .and_then(|task| task.as_ref().map(|t| !t.is_finished()))
            .unwrap_or(false)
    }

    fn start_sweeper(&self) {
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let Ok(mut slot) = self.inner.sweeper.lock() else {
            return;
        };
        if slot.as_ref().is_some_and(|task| !task.is_finished()) {
            return;
        }
        let weak: Weak<Inner> = Arc::downgrade(&self.inner);
        let interval = self.inner.sweep_interval;
        let task = runtime.spawn(async move {
            let mut ticks = tokio::time::interval(interval);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            ticks.tick().await;
            loop {
                ticks.tick().await;
                let Some(inner) = weak.upgrade() else { break };
                let removed = inner.purge_expired();
                if removed > 0 {
                    tracing::trace!(namespace = %inner.namespace, removed, "swept expired keys");
                }
            }
        });
        *slot = Some(task.abort_handle());
    }

    fn stop_sweeper(&self) {
        if let Some(task) = self.inner.sweeper.lock().ok().and_then(|mut t| t.take()) {
            task.abort();
        }
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(self.inner.namespace.clone()));
        }
        Ok(())
    }

    fn now_micros(&self) -> Micros {
        self.inner.clock.now_micros()
    }

    /// What `key` is stored under.
    fn id(&self, key: &str) -> KeyDigest {
        self.inner.digester.digest(key.as_bytes())
    }

    /// Runs `f` on the slot at `key` under the key's shard lock. A missing key is offered
    /// as an expired slot, inserted only if `f` makes it live.
    fn with_slot_mut<R>(&self, key: &str, now: Micros, f: impl FnOnce(&mut Slot) -> R) -> R {
        let map = &self.inner.map;
        let id = self.id(key);
        if let Some(mut found) = map.get_mut(&id) {
            return f(slot_mut(&mut found));
        }
        with_new_slot(map, id, now, f)
    }

    /// Runs `f` on the live bytes of `window` at `key` under the key's shard lock and
    /// applies its write.
    fn with_slot<R>(
        &self,
        key: &str,
        now: Micros,
        window: u64,
        f: impl FnOnce(Option<&[u8]>) -> (Write, R),
    ) -> R {
        self.with_slot_mut(key, now, |slot| {
            let (write, out) = f(slot.live_in(now, window));
            slot.apply(write, now, window);
            out
        })
    }

    fn decide_now(
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
        // `run` checks the cost against the capacity (under the shard lock, leaving the
        // state alone when it fails): checking here too would cost a second call.
        let now = self.now_micros();
        let step = |state: Option<&[u8]>| match run(algorithm, state, now, rate, cost) {
            Ok(transition) => (transition.write, Ok(transition.decision)),
            Err(error) => (Write::Keep, Err(error)),
        };
        let window = algorithm.window(now, rate).unwrap_or(NO_WINDOW);
        self.with_slot(key, now, window, step)
    }

    fn peek_now(&self, key: &str, algorithm: &dyn Algorithm, rate: &Rate) -> Result<Decision> {
        self.check_open()?;
        if rate.is_unlimited() {
            return Ok(Decision::unlimited());
        }
        let now = self.now_micros();
        let window = algorithm.window(now, rate).unwrap_or(NO_WINDOW);
        let found = self.inner.map.get(&self.id(key));
        Ok(algorithm.peek(
            found
                .as_ref()
                .and_then(|record| record.key().slot().live_in(now, window)),
            now,
            rate,
        ))
    }

    fn increment_now(&self, key: &str, amount: i64, ttl: Option<Duration>) -> Result<i64> {
        self.check_open()?;
        let now = self.now_micros();
        self.with_slot_mut(key, now, |slot| {
            let current = match slot.live_in(now, NO_WINDOW) {
                None => 0,
                Some(bytes) => parse_integer(bytes).ok_or_else(|| Error::WrongType {
                    key: key.to_owned(),
                    expected: "an integer",
                })?,
            };
            let next = current
                .checked_add(amount)
                .ok_or_else(|| Error::WrongType {
                    key: key.to_owned(),
                    expected: "an integer that can take this increment without overflow",
                })?;
            if slot.live_in(now, NO_WINDOW).is_none() {
                // A new key takes the TTL given; an existing key keeps its expiry.
                slot.expires_at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
                slot.window = NO_WINDOW;
            }
            slot.value.set(itoa::Buffer::new().format(next).as_bytes());
            Ok(next)
        })
    }
}

impl Inner {
    fn purge_expired(&self) -> usize {
        let now = self.clock.now_micros();
        let before = self.map.len();
        self.map.retain(|record, ()| record.slot().expires_at > now);
        let after = self.map.len();
        if after.saturating_mul(4) < self.map.capacity() {
            self.map.shrink_to_fit();
        }
        before.saturating_sub(after)
    }
}

fn parse_integer(bytes: &[u8]) -> Option<i64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

impl fmt::Debug for InMemoryBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InMemoryBackend")
            .field("namespace", &self.inner.namespace)
            .field("persistent", &self.inner.persistent)
            .field("keys", &self.inner.map.len())
            .finish()
    }
}

/// Releases an in-memory lock if its token still owns it.
struct MemoryLockRelease {
    backend: Weak<Inner>,
    name: String,
    token: StateBytes,
}

impl LockRelease for MemoryLockRelease {
    fn release(self: Box<Self>) -> BackendFuture<'static, Result<bool>> {
        let released = self.backend.upgrade().is_some_and(|inner| {
            let now = inner.clock.now_micros();
            let removed = inner
                .map
                .remove_if(
                    &inner.digester.digest(self.name.as_bytes()),
                    |record, ()| record.slot().live(now) == Some(&self.token[..]),
                )
                .is_some();
            if removed {
                inner.lock_released.notify_waiters();
            }
            removed
        });
        BackendFuture::ready(Ok(released))
    }
}

impl Backend for InMemoryBackend {
    fn decides_in_place(&self) -> bool {
        true
    }

    fn decide_at_once(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Option<Result<Decision>> {
        Some(self.decide_now(key, algorithm, rate, cost))
    }

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

    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        self.inner.closed.store(false, Ordering::Relaxed);
        self.start_sweeper();
        BackendFuture::ready(Ok(()))
    }

    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        BackendFuture::ready(self.check_open().map(|()| self.now_micros()))
    }

    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        let result = self.check_open().map(|()| {
            let now = self.now_micros();
            self.inner.map.get(&self.id(key)).and_then(|record| {
                record
                    .key()
                    .slot()
                    .live_in(now, NO_WINDOW)
                    .map(<[u8]>::to_vec)
            })
        });
        BackendFuture::ready(result)
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        let result = self.check_open().map(|()| {
            let now = self.now_micros();
            let expires_at = ttl.map_or(NEVER, |ttl| expiry(now, ttl));
            // In the record found, if any: the map keeps a key it already holds, and
            // here the key holds the slot.
            self.with_slot_mut(key, now, |slot| {
                slot.value.set(value);
                slot.expires_at = expires_at;
                slot.window = NO_WINDOW;
            });
        });
        BackendFuture::ready(result)
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        let result = self.check_open().map(|()| {
            let now = self.now_micros();
            self.inner
                .map
                .remove(&self.id(key))
                .is_some_and(|(record, ())| record.into_slot().expires_at > now)
        });
        BackendFuture::ready(result)
    }

    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::ready(self.increment_now(key, amount, None))
    }

    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::ready(self.increment_now(key, amount, Some(ttl)))
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        let result = self.check_open().map(|()| {
            let now = self.now_micros();
            self.with_slot(key, now, NO_WINDOW, |state| (f(state), ()));
        });
        BackendFuture::ready(result)
    }

    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        BackendFuture::new(async move {
            let token = self
                .inner
                .next_token
                .fetch_add(1, Ordering::Relaxed)
                .to_string();
            let token_bytes = StateBytes::from_slice(token.as_bytes());
            let started = tokio::time::Instant::now();
            let mut backoff = Duration::from_millis(1);
            loop {
                // Registered before trying, so a release between the try and the wait is
                // not missed.
                let mut released = std::pin::pin!(self.inner.lock_released.notified());
                released.as_mut().enable();
                self.check_open()?;
                let now = self.now_micros();
                let acquired = self.with_slot(name, now, NO_WINDOW, |state| match state {
                    Some(_) => (Write::Keep, false),
                    None => (
                        Write::Put {
                            state: token_bytes.clone(),
                            ttl: options.ttl,
                        },
                        true,
                    ),
                });
                if acquired {
                    let release = MemoryLockRelease {
                        backend: Arc::downgrade(&self.inner),
                        name: name.to_owned(),
                        token: token_bytes,
                    };
                    return Ok(Lock::new(name, token, Box::new(release)));
                }
                let waited = started.elapsed();
                match options.wait {
                    Some(limit) if waited < limit => {
                        // A release wakes the waiters at once; the timer covers a holder
                        // whose lock expires instead.
                        let timer = backoff.min(limit - waited);
                        if tokio::time::timeout(timer, released).await.is_err() {
                            backoff = (backoff * 2).min(Duration::from_millis(50));
                        }
                    }
                    _ => {
                        return Err(Error::LockTimeout {
                            name: name.to_owned(),
                            waited,
                        });
                    }
                }
            }
        })
    }

    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::ready(self.decide_now(key, algorithm, rate, cost))
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::ready(self.peek_now(key, algorithm, rate))
    }

    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        self.inner.map.clear();
        BackendFuture::ready(Ok(()))
    }

    fn close(&self) -> BackendFuture<'_, Result<()>> {
        self.stop_sweeper();
        if !self.inner.persistent {
            self.inner.map.clear();
        }
        self.inner.closed.store(true, Ordering::Relaxed);
        BackendFuture::ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::clock::ManualClock;
    use crate::strategy::FixedWindow;

    fn decide(backend: &InMemoryBackend, key: &str, rate: &Rate) -> Decision {
        match backend.decide(key, &FixedWindow, rate, 1).now_or_never() {
            Ok(Ok(decision)) => decision,
            _ => panic!("the in-memory decision is ready and succeeds"),
        }
    }

    /// A backend on a manual clock that reads `start`.
    fn on_manual_clock(start: Micros) -> (ManualClock, InMemoryBackend) {
        let clock = ManualClock::new(start);
        let backend = InMemoryBackend::builder("windows")
            .clock(clock.clone())
            .build();
        (clock, backend)
    }

    #[test]
    fn a_record_fills_one_cache_line_whatever_its_state() {
        assert_eq!(std::mem::size_of::<Record>(), 64);
        assert_eq!(std::mem::align_of::<Record>(), 64);
        let backend = InMemoryBackend::new("records");
        let long: Vec<u8> = (0..100).collect();
        // In place, on the heap, in place again, over the same record.
        for value in [&b"short"[..], &long, b"", &long[..30], &long[..31], b"x"] {
            let stored = backend
                .set("key", value, None)
                .now_or_never()
                .expect("ready");
            assert!(stored.is_ok());
            let read = backend.get("key").now_or_never().expect("ready");
            assert_eq!(read.expect("no error").as_deref(), Some(value));
        }
        assert_eq!(backend.stored_keys(), 1);
    }

    #[test]
    fn every_decision_is_answered_at_once_on_the_state_decide_keeps() {
        let (_clock, backend) = on_manual_clock(10);
        let rate: Rate = "2/s".parse().expect("a valid rate");
        let at_once = |key: &str| {
            backend
                .decide_at_once(key, &FixedWindow, &rate, 1)
                .expect("the in-memory backend answers at once")
                .expect("no error")
        };
        assert!(at_once("client").allowed);
        // One state whichever way it is asked.
        assert!(decide(&backend, "client", &rate).allowed);
        let third = at_once("client");
        assert!(!third.allowed);
        assert_eq!(third.remaining, 0);
        assert_eq!(backend.stored_keys(), 1);
    }

    #[test]
    fn a_windowed_strategy_keeps_one_slot_per_key_across_windows() {
        let (clock, backend) = on_manual_clock(0);
        let rate: Rate = "2/s".parse().expect("a valid rate");
        for window in 0..5u64 {
            clock.set(window * 1_000_000 + 10);
            assert!(decide(&backend, "client", &rate).allowed);
            assert!(decide(&backend, "client", &rate).allowed);
            assert!(
                !decide(&backend, "client", &rate).allowed,
                "window {window}"
            );
            // One slot for the key, not one more per window left for the sweeper.
            assert_eq!(backend.stored_keys(), 1);
        }
    }

    #[test]
    fn a_slot_of_an_earlier_window_reads_as_absent_even_before_it_expires() {
        let (clock, backend) = on_manual_clock(999_999);
        let rate: Rate = "1/s".parse().expect("a valid rate");
        assert!(decide(&backend, "client", &rate).allowed);
        assert!(!decide(&backend, "client", &rate).allowed);
        // Next window; the slot's state is the old window's, whatever its expiry says.
        clock.set(1_000_000);
        assert!(decide(&backend, "client", &rate).allowed);
        let peeked = backend
            .peek("client", &FixedWindow, &rate)
            .now_or_never()
            .expect("ready")
            .expect("a decision");
        assert!(!peeked.allowed, "the new window's hit is counted");
    }

    #[test]
    fn raw_reads_and_counters_do_not_see_windowed_state() {
        let backend = InMemoryBackend::new("windows");
        let rate: Rate = "5/m".parse().expect("a valid rate");
        assert!(decide(&backend, "client", &rate).allowed);
        let raw = backend.get("client").now_or_never().expect("ready");
        assert_eq!(raw.expect("no error"), None);
        let counted = backend
            .increment("client", 3)
            .now_or_never()
            .expect("ready");
        assert_eq!(counted.expect("no error"), 3);
    }
}

//! Writing custom strategies: the Rust twin of the seed README's "Writing Custom
//! Strategies".
//!
//! There are two ways to write a strategy:
//!
//! 1. **Implement [`Strategy`] over the backend primitives** (`get`, `set`, `increment`,
//!    `increment_with_ttl`, `lock`), the way the Python library's custom strategies are
//!    written. [`SimpleCounterStrategy`], [`AdaptiveRateStrategy`] and
//!    [`PriorityQueueStrategy`] are the seed's three examples written this way. Each holds
//!    a lock across its whole read-modify-write and releases it explicitly; every key it
//!    writes expires (the period plus the seed's one-second buffer).
//! 2. **Implement [`Algorithm`]**: a pure transition from the stored bytes to a decision
//!    and the new bytes. The backend runs it atomically (under a shard lock in memory, a
//!    compare-and-swap loop or a server-side script elsewhere), so it needs no lock and
//!    works on every backend. [`FirstRequestWindow`] is written this way. Prefer this
//!    form when the state fits in one key.
//!
//! Where the seed is sloppy, these versions correct it:
//!
//! - a denied request consumes nothing (except in the adaptive strategy, whose counter
//!   deliberately measures load: every arrival);
//! - a denial's wait is always in `(0, period]`, never 0 at a window's exact boundary;
//! - the priority queue is shared by all priority levels of one client (the seed keys it
//!   by the whole identity, priority included, so levels never meet and priorities have
//!   no effect), and a wait accounts for every entry that has to expire, not just the
//!   oldest;
//! - a cost above what can ever be admitted is an error, not a denial forever.
//!
//! Run it with `cargo run --example custom_strategy`; its tests with
//! `cargo test -p traffik --example custom_strategy`.

use std::future::Future;
use std::ops::Range;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tracing::{info, warn};
use traffik::strategy::{Algorithm, StateBytes, Strategy, Transition};
use traffik::{
    Backend, BackendFuture, Clock, Decision, Error, Identity, InMemoryBackend, LockOptions,
    ManualClock, Micros, Rate, Result, SystemClock, Throttle,
};

// ---------------------------------------------------------------------------------------
// Shared helpers
// ---------------------------------------------------------------------------------------

/// How long a strategy's keys live: the period plus the seed's one-second buffer
/// (`int(rate.expire // 1000) + 1`).
fn state_ttl(rate: &Rate) -> Duration {
    rate.period() + Duration::from_secs(1)
}

/// Runs `critical` while holding the lock `name`, then releases the lock explicitly, also
/// when `critical` fails.
///
/// Futures are lazy: nothing in `critical` runs before the lock is held. The lock waits up
/// to one second for a holder (the seed's `blocking=True, blocking_timeout=1`) and expires
/// after ten if its holder dies; a lock that cannot be taken is [`Error::LockTimeout`].
async fn with_lock<T>(
    backend: &dyn Backend,
    name: &str,
    critical: impl Future<Output = Result<T>>,
) -> Result<T> {
    let lock = backend.lock(name, LockOptions::default()).await?;
    let outcome = critical.await;
    match lock.release().await {
        Ok(true) => {}
        Ok(false) => warn!(
            lock = name,
            "lock expired before its release; another holder may have overlapped"
        ),
        Err(error) => warn!(lock = name, %error, "lock not released; it expires with its TTL"),
    }
    outcome
}

/// [`Error::CostExceedsCapacity`] when `cost` can never be admitted.
fn check_capacity(cost: u64, capacity: u64) -> Result<()> {
    if cost > capacity {
        return Err(Error::CostExceedsCapacity { cost, capacity });
    }
    Ok(())
}

/// A cost as the signed amount the counter primitives take.
fn signed(cost: u64) -> Result<i64> {
    i64::try_from(cost).map_err(|_| Error::Configuration(format!("cost {cost} is too large")))
}

/// A cost of 0 is a free pass: admitted, consuming nothing, reporting the current state.
fn free_pass(state: Decision) -> Decision {
    Decision::allow(state.limit, state.remaining, state.reset)
}

/// Microseconds from `now` until `start + period`, kept in `[1, period]` so that a denial
/// always waits, and never longer than a period (even if the clock stepped back).
fn until_end(start: Micros, period: Micros, now: Micros) -> Duration {
    let left = start.saturating_add(period).saturating_sub(now);
    Duration::from_micros(left.clamp(1, period))
}

/// An unsigned integer stored as decimal text, as the counter primitives store it.
fn parse_u64(bytes: &[u8]) -> Option<u64> {
    std::str::from_utf8(bytes).ok()?.trim().parse().ok()
}

// ---------------------------------------------------------------------------------------
// 1. Simple counter (the seed's `simple_counter_strategy`)
// ---------------------------------------------------------------------------------------

/// Counts requests in a window that starts at a client's first request and resets once
/// the window has passed: the seed's `simple_counter_strategy`.
///
/// State: `<key>:counter` (the count) and `<key>:timestamp` (the window's start), both
/// expiring a second after the window. The lock `lock:<key>:counter` is held across the
/// whole read-modify-write, so concurrent requests never over-admit.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimpleCounterStrategy;

impl SimpleCounterStrategy {
    /// The counter and timestamp keys for `key`.
    fn keys(key: &str) -> (String, String) {
        (format!("{key}:counter"), format!("{key}:timestamp"))
    }

    /// The live window at `now` as `(count, start)`; `None` if there is none (first
    /// request, window passed, or unreadable state, which counts as fresh).
    async fn window(
        backend: &dyn Backend,
        counter_key: &str,
        timestamp_key: &str,
        now: Micros,
        rate: &Rate,
    ) -> Result<Option<(u64, Micros)>> {
        let count = backend.get(counter_key).await?;
        let start = backend.get(timestamp_key).await?;
        let count = count.as_deref().and_then(parse_u64);
        let start = start.as_deref().and_then(parse_u64);
        Ok(match (count, start) {
            (Some(count), Some(start)) if now.saturating_sub(start) < rate.period_micros() => {
                Some((count, start))
            }
            _ => None,
        })
    }
}

impl Strategy for SimpleCounterStrategy {
    fn capacity(&self, rate: &Rate) -> Option<u64> {
        Some(rate.limit())
    }

    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            if cost == 0 {
                return Ok(free_pass(self.stat(key, rate, backend).await?));
            }
            let limit = rate.limit();
            check_capacity(cost, limit)?;
            let amount = signed(cost)?;
            let period = rate.period_micros();
            let (counter_key, timestamp_key) = Self::keys(key);
            let lock_name = format!("lock:{counter_key}");
            with_lock(backend, &lock_name, async {
                // Read the time under the lock: a request that waited for the lock is
                // judged when it runs, not when it arrived.
                let now = backend.now().await?;
                match Self::window(backend, &counter_key, &timestamp_key, now, rate).await? {
                    Some((count, start)) if count.saturating_add(cost) > limit => {
                        let wait = until_end(start, period, now);
                        Ok(Decision::deny(
                            limit,
                            limit.saturating_sub(count),
                            wait,
                            wait,
                        ))
                    }
                    Some((_, start)) => {
                        // Both keys keep the expiry they were created with.
                        let count = backend.increment(&counter_key, amount).await?;
                        let count = u64::try_from(count).unwrap_or(limit);
                        let reset = until_end(start, period, now);
                        Ok(Decision::allow(limit, limit.saturating_sub(count), reset))
                    }
                    None => {
                        let ttl = state_ttl(rate);
                        backend
                            .set(&counter_key, cost.to_string().as_bytes(), Some(ttl))
                            .await?;
                        backend
                            .set(&timestamp_key, now.to_string().as_bytes(), Some(ttl))
                            .await?;
                        Ok(Decision::allow(limit, limit - cost, rate.period()))
                    }
                }
            })
            .await
        })
    }

    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            let limit = rate.limit();
            let now = backend.now().await?;
            let (counter_key, timestamp_key) = Self::keys(key);
            // A read-only look needs no lock.
            Ok(
                match Self::window(backend, &counter_key, &timestamp_key, now, rate).await? {
                    None => Decision::allow(limit, limit, Duration::ZERO),
                    Some((count, start)) => {
                        let reset = until_end(start, rate.period_micros(), now);
                        if count < limit {
                            Decision::allow(limit, limit - count, reset)
                        } else {
                            Decision::deny(limit, 0, reset, reset)
                        }
                    }
                },
            )
        })
    }
}

// ---------------------------------------------------------------------------------------
// 2. Adaptive rate (the seed's `AdaptiveRateStrategy`)
// ---------------------------------------------------------------------------------------

/// Counts requests per aligned window and lowers the limit while the load is high: the
/// seed's `AdaptiveRateStrategy`.
///
/// The counter `<key>:adaptive:<window>` measures load, so every arrival counts, admitted
/// or not. Once it passes `load_threshold` of the limit, the limit in force drops to
/// `reduction_factor` of it and `<key>:load` says `high` (else `normal`). With the
/// defaults (0.8 and 0.5) a client gets 80% of the limit per window: the request that
/// crosses 80% meets a limit of 50%.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdaptiveRateStrategy {
    /// The share of the limit (0.8: 80%) above which the load counts as high.
    pub load_threshold: f64,
    /// The share of the limit (0.5: 50%) in force while the load is high.
    pub reduction_factor: f64,
}

impl Default for AdaptiveRateStrategy {
    /// The seed's defaults: high load above 80%, limit halved.
    fn default() -> Self {
        Self {
            load_threshold: 0.8,
            reduction_factor: 0.5,
        }
    }
}

impl AdaptiveRateStrategy {
    /// A strategy with a positive `load_threshold` and a `reduction_factor` in `(0, 1]`;
    /// [`Error::Configuration`] otherwise.
    pub fn new(load_threshold: f64, reduction_factor: f64) -> Result<Self> {
        if !(load_threshold.is_finite() && load_threshold > 0.0) {
            return Err(Error::Configuration(format!(
                "load_threshold must be a positive number, got {load_threshold}"
            )));
        }
        if !(reduction_factor > 0.0 && reduction_factor <= 1.0) {
            return Err(Error::Configuration(format!(
                "reduction_factor must be in (0, 1], got {reduction_factor}"
            )));
        }
        Ok(Self {
            load_threshold,
            reduction_factor,
        })
    }

    /// Whether `count` arrivals in a window are a high load under `limit`.
    pub fn is_high_load(&self, count: u64, limit: u64) -> bool {
        count as f64 / limit as f64 > self.load_threshold
    }

    /// The limit in force once `count` requests have arrived in the window.
    pub fn effective_limit(&self, count: u64, limit: u64) -> u64 {
        if self.is_high_load(count, limit) {
            // `as` saturates: a NaN factor gives 0, never a panic.
            ((limit as f64 * self.reduction_factor).floor() as u64).min(limit)
        } else {
            limit
        }
    }

    /// The most requests a window admits: the largest count `c <= limit` with
    /// `c <= effective_limit(c)`. Admissible counts run from 0 up to it with no gap, so a
    /// request is admitted exactly when its window's count stays within it.
    pub fn window_capacity(&self, limit: u64) -> u64 {
        let at_threshold = (self.load_threshold * limit as f64).floor() as u64;
        let reduced = self.effective_limit(u64::MAX, limit);
        // Neighbours of the threshold absorb floating-point rounding.
        [
            limit,
            at_threshold.saturating_add(1),
            at_threshold,
            at_threshold.saturating_sub(1),
            reduced,
        ]
        .into_iter()
        .filter(|&c| c <= limit && c <= self.effective_limit(c, limit))
        .max()
        .unwrap_or(0)
    }
}

impl Strategy for AdaptiveRateStrategy {
    fn capacity(&self, rate: &Rate) -> Option<u64> {
        Some(self.window_capacity(rate.limit()))
    }

    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            if cost == 0 {
                return Ok(free_pass(self.stat(key, rate, backend).await?));
            }
            let limit = rate.limit();
            let capacity = self.window_capacity(limit);
            check_capacity(cost, capacity)?;
            let amount = signed(cost)?;
            let period = rate.period_micros();
            let ttl = state_ttl(rate);
            let load_key = format!("{key}:load");
            // One lock per client (not per window, as in the seed) so that the time, and
            // with it the window, is read under the lock.
            let lock_name = format!("lock:{key}:adaptive");
            with_lock(backend, &lock_name, async {
                let now = backend.now().await?;
                let counter_key = format!("{key}:adaptive:{}", now / period);
                let count = backend
                    .increment_with_ttl(&counter_key, amount, ttl)
                    .await?;
                let count = u64::try_from(count).unwrap_or(0);
                let high = self.is_high_load(count, limit);
                let load: &[u8] = if high { b"high" } else { b"normal" };
                backend.set(&load_key, load, Some(ttl)).await?;
                let effective = self.effective_limit(count, limit);
                let wait = until_end(now - now % period, period, now);
                let remaining = capacity.saturating_sub(count);
                if count > effective {
                    Ok(Decision::deny(capacity, remaining, wait, wait))
                } else {
                    Ok(Decision::allow(capacity, remaining, wait))
                }
            })
            .await
        })
    }

    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            let capacity = self.window_capacity(rate.limit());
            let period = rate.period_micros();
            let now = backend.now().await?;
            let counter_key = format!("{key}:adaptive:{}", now / period);
            let count = backend
                .get(&counter_key)
                .await?
                .as_deref()
                .and_then(parse_u64)
                .unwrap_or(0);
            let reset = until_end(now - now % period, period, now);
            Ok(if count < capacity {
                Decision::allow(capacity, capacity - count, reset)
            } else {
                Decision::deny(capacity, 0, reset, reset)
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// 3. Priority queue (the seed's `PriorityQueueStrategy`)
// ---------------------------------------------------------------------------------------

/// How urgent a request is; the seed's `Priority`. Stored in JSON as its number.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(into = "u8", try_from = "u8")]
pub enum Priority {
    /// 1: counted against by every request.
    Low = 1,
    /// 2: the default.
    #[default]
    Normal = 2,
    /// 3.
    High = 3,
    /// 4: limited only by other critical requests.
    Critical = 4,
}

impl From<Priority> for u8 {
    fn from(priority: Priority) -> u8 {
        priority as u8
    }
}

impl TryFrom<u8> for Priority {
    type Error = String;

    fn try_from(level: u8) -> std::result::Result<Self, String> {
        match level {
            1 => Ok(Priority::Low),
            2 => Ok(Priority::Normal),
            3 => Ok(Priority::High),
            4 => Ok(Priority::Critical),
            other => Err(format!("no priority level {other} (expected 1 to 4)")),
        }
    }
}

/// One admitted request in a priority queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct QueueEntry {
    /// When it was admitted (microseconds since the epoch).
    timestamp: Micros,
    /// Its priority.
    priority: Priority,
    /// Its cost.
    #[serde(default = "one")]
    cost: u64,
}

/// The cost of an entry stored without one.
fn one() -> u64 {
    1
}

/// A key split into the priority it names and the key of the queue it shares with the
/// client's other priority levels.
#[derive(Debug, Clone, PartialEq, Eq)]
struct PriorityKey {
    /// The priority named by the key, if any valid one.
    priority: Option<Priority>,
    /// The key with its `priority:<level>:` prefix removed.
    client: String,
}

/// The byte range of the identity inside a throttle key `{uid:identity}...`, where the uid
/// and identity have their own `:`, `{` and `}` percent-escaped, so the first `}` ends the
/// tag and the first `:` in it ends the uid.
fn throttle_key_identity(key: &str) -> Option<Range<usize>> {
    let close = key.strip_prefix('{')?.find('}')? + 1;
    let colon = key[1..close].find(':')? + 1;
    Some(colon + 1..close)
}

/// Splits `key` into its priority and its client key.
///
/// The identity may start with `priority:<level>:`, as in the seed's identifier
/// (`priority:3:user:42`). In a throttle key (`{uid:identity}:scope`) the identity's `:`
/// is escaped as `%3A` (and a literal `%` as `%25`, so `%3A` there is always an escaped
/// `:`); only the identity is searched, never the uid or scope. A key not built by a
/// throttle is taken as the identity itself, with raw `:`.
///
/// The prefix is removed even when its level is invalid, so that a client cannot escape
/// its queue by inventing levels; an invalid level gets the default priority.
fn split_priority(key: &str) -> PriorityKey {
    let (identity, separator) = match throttle_key_identity(key) {
        Some(range) => (range, "%3A"),
        None => (0..key.len(), ":"),
    };
    let prefix = format!("priority{separator}");
    let Some(rest) = key[identity.clone()].strip_prefix(prefix.as_str()) else {
        return PriorityKey {
            priority: None,
            client: key.to_owned(),
        };
    };
    let (level, after) = rest.split_once(separator).unwrap_or((rest, ""));
    PriorityKey {
        priority: level
            .parse::<u8>()
            .ok()
            .and_then(|l| Priority::try_from(l).ok()),
        client: format!("{}{after}{}", &key[..identity.start], &key[identity.end..]),
    }
}

/// Admits up to `limit` cost per period counting, for each request, only the requests of
/// equal or higher priority: the seed's `PriorityQueueStrategy`.
///
/// So a high-priority request is admitted while low-priority ones fill the limit, but
/// not the other way round. The priority comes from the identity
/// (`priority:<level>:user:42`; see the seed's `priority_identifier`), and all levels of
/// one client share one queue, `<client key>:priority_queue`: a JSON log of the admitted
/// requests of the last period. Unreadable JSON starts a fresh queue. Being a log, it
/// suits modest limits.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PriorityQueueStrategy {
    /// The priority of a key that names none (or an invalid one).
    pub default_priority: Priority,
}

impl PriorityQueueStrategy {
    /// The priority of `key`, and the key of its queue.
    fn locate(&self, key: &str) -> (Priority, String) {
        let split = split_priority(key);
        (
            split.priority.unwrap_or(self.default_priority),
            format!("{}:priority_queue", split.client),
        )
    }

    /// The queue's live entries at `now`; unreadable JSON is an empty queue.
    async fn load(
        backend: &dyn Backend,
        queue_key: &str,
        now: Micros,
        rate: &Rate,
    ) -> Result<Vec<QueueEntry>> {
        let Some(bytes) = backend.get(queue_key).await? else {
            return Ok(Vec::new());
        };
        let mut queue: Vec<QueueEntry> = match serde_json::from_slice(&bytes) {
            Ok(queue) => queue,
            Err(error) => {
                warn!(key = queue_key, %error, "unreadable priority queue; starting a fresh one");
                Vec::new()
            }
        };
        queue.retain(|entry| now.saturating_sub(entry.timestamp) < rate.period_micros());
        Ok(queue)
    }

    /// The cost held by entries of `priority` or higher.
    fn competing(queue: &[QueueEntry], priority: Priority) -> u64 {
        queue
            .iter()
            .filter(|entry| entry.priority >= priority)
            .fold(0, |sum, entry| sum.saturating_add(entry.cost))
    }

    /// How long until `cost` of `priority` fits (`None`: it fits now), and how long until
    /// every competing entry has expired.
    fn wait(
        queue: &[QueueEntry],
        priority: Priority,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> (Option<Duration>, Duration) {
        let period = rate.period_micros();
        let mut competing: Vec<&QueueEntry> =
            queue.iter().filter(|e| e.priority >= priority).collect();
        competing.sort_unstable_by_key(|e| e.timestamp);
        let reset = competing
            .last()
            .map_or(Duration::ZERO, |e| until_end(e.timestamp, period, now));
        let held = Self::competing(queue, priority);
        let Some(excess) = held
            .saturating_add(cost)
            .checked_sub(rate.limit())
            .filter(|&excess| excess > 0)
        else {
            return (None, reset);
        };
        // The oldest entries expire first; wait until enough of them have.
        let mut freed = 0u64;
        for entry in competing {
            freed = freed.saturating_add(entry.cost);
            if freed >= excess {
                return (Some(until_end(entry.timestamp, period, now)), reset);
            }
        }
        // Unreachable while cost <= limit; a full period is the safe answer.
        (Some(rate.period()), reset)
    }
}

impl Strategy for PriorityQueueStrategy {
    fn capacity(&self, rate: &Rate) -> Option<u64> {
        Some(rate.limit())
    }

    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            if cost == 0 {
                return Ok(free_pass(self.stat(key, rate, backend).await?));
            }
            let limit = rate.limit();
            check_capacity(cost, limit)?;
            let (priority, queue_key) = self.locate(key);
            let lock_name = format!("lock:{queue_key}");
            with_lock(backend, &lock_name, async {
                let now = backend.now().await?;
                let mut queue = Self::load(backend, &queue_key, now, rate).await?;
                let (wait, reset) = Self::wait(&queue, priority, now, rate, cost);
                let decision = match wait {
                    Some(wait) => {
                        let held = Self::competing(&queue, priority);
                        Decision::deny(limit, limit.saturating_sub(held), wait, reset)
                    }
                    None => {
                        queue.push(QueueEntry {
                            timestamp: now,
                            priority,
                            cost,
                        });
                        let held = Self::competing(&queue, priority);
                        Decision::allow(limit, limit.saturating_sub(held), rate.period())
                    }
                };
                // Stored even on a denial: expired entries are dropped, and an unreadable
                // queue is replaced by a readable one.
                let json = serde_json::to_vec(&queue).map_err(|error| {
                    Error::Backend(format!("cannot encode the priority queue: {error}"))
                })?;
                backend
                    .set(&queue_key, &json, Some(state_ttl(rate)))
                    .await?;
                Ok(decision)
            })
            .await
        })
    }

    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            if rate.is_unlimited() {
                return Ok(Decision::unlimited());
            }
            let limit = rate.limit();
            let (priority, queue_key) = self.locate(key);
            let now = backend.now().await?;
            let queue = Self::load(backend, &queue_key, now, rate).await?;
            let held = Self::competing(&queue, priority);
            Ok(match Self::wait(&queue, priority, now, rate, 1) {
                (None, reset) => Decision::allow(limit, limit.saturating_sub(held), reset),
                (Some(wait), reset) => Decision::deny(limit, 0, wait, reset),
            })
        })
    }
}

// ---------------------------------------------------------------------------------------
// 4. A pure `Algorithm`: lock-free, and correct on every backend
// ---------------------------------------------------------------------------------------

/// Admits `limit` cost per period, the period starting at a client's first request rather
/// than at a clock-aligned boundary (compare [`traffik::FixedWindow`]).
///
/// As an [`Algorithm`] it never touches the backend: it maps the stored bytes (16 bytes,
/// the window's start and its count, little-endian) to a decision and the bytes to store.
/// The backend runs it atomically, so it needs no lock. Unreadable bytes are a fresh
/// window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FirstRequestWindow;

impl FirstRequestWindow {
    /// The window live at `now` as `(start, count)`, or a fresh one starting at `now`.
    fn window(state: Option<&[u8]>, now: Micros, rate: &Rate) -> (Micros, u64) {
        let decoded = state.and_then(|bytes| {
            let decoded = <[u8; 16]>::try_from(bytes).ok().map(|b| {
                let (start, count) = b.split_at(8);
                let word = |half: &[u8]| {
                    let mut word = [0; 8];
                    word.copy_from_slice(half);
                    u64::from_le_bytes(word)
                };
                (word(start), word(count))
            });
            if decoded.is_none() {
                warn!(
                    len = bytes.len(),
                    "unreadable first-request window; starting fresh"
                );
            }
            decoded
        });
        match decoded {
            Some((start, count)) if now.saturating_sub(start) < rate.period_micros() => {
                (start, count)
            }
            _ => (now, 0),
        }
    }

    fn encode(start: Micros, count: u64) -> StateBytes {
        let mut state = StateBytes::from_slice(&start.to_le_bytes());
        state.extend_from_slice(&count.to_le_bytes());
        state
    }
}

impl Algorithm for FirstRequestWindow {
    fn capacity(&self, rate: &Rate) -> u64 {
        rate.limit()
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        let limit = rate.limit();
        let (start, count) = Self::window(state, now, rate);
        let left = until_end(start, rate.period_micros(), now);
        Ok(
            match count.checked_add(cost).filter(|&total| total <= limit) {
                Some(total) => Transition::put(
                    Decision::allow(limit, limit - total, left),
                    Self::encode(start, total),
                    // The state means nothing once its window has ended.
                    left,
                ),
                None => Transition::keep(Decision::deny(
                    limit,
                    limit.saturating_sub(count),
                    left,
                    left,
                )),
            },
        )
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        let limit = rate.limit();
        let (start, count) = Self::window(state, now, rate);
        if count == 0 {
            return Decision::allow(limit, limit, Duration::ZERO);
        }
        let left = until_end(start, rate.period_micros(), now);
        if count < limit {
            Decision::allow(limit, limit - count, left)
        } else {
            Decision::deny(limit, 0, left, left)
        }
    }
}

// ---------------------------------------------------------------------------------------
// The demo
// ---------------------------------------------------------------------------------------

/// The scope every demo request is made in.
const SCOPE: &str = "GET:/api/data";

/// Sends `requests` requests from `client`, reports how many were admitted, then waits
/// out the first denial (by moving the clock) and reports the retry.
async fn burst(
    name: &str,
    throttle: &Throttle,
    client: &Identity,
    requests: usize,
    backend: &InMemoryBackend,
    clock: &ManualClock,
) -> Result<()> {
    let mut admitted = 0;
    let mut first_denial = None;
    for _ in 0..requests {
        let decision = throttle.hit(client, SCOPE, backend).await?;
        if decision.allowed {
            admitted += 1;
        } else if first_denial.is_none() {
            first_denial = Some(decision);
        }
    }
    info!(strategy = name, rate = %throttle.rate(), requests, admitted, "burst");
    if let Some(denied) = first_denial {
        info!(
            strategy = name,
            wait_ms = denied.wait.as_millis() as u64,
            retry_after_s = denied.retry_after_secs(),
            "throttled; waiting it out"
        );
        clock.advance(denied.wait);
        let retry = throttle.hit(client, SCOPE, backend).await?;
        info!(
            strategy = name,
            allowed = retry.allowed,
            remaining = retry.remaining,
            "retry"
        );
    }
    Ok(())
}

#[tokio::main]
async fn main() -> std::result::Result<(), Box<dyn std::error::Error + Send + Sync>> {
    tracing_subscriber::fmt().with_target(false).try_init()?;

    // A manual clock (starting now) lets the demo wait out denials without sleeping.
    let clock = ManualClock::new(SystemClock.now_micros());
    let backend = InMemoryBackend::builder("custom-strategies")
        .clock(clock.clone())
        .build();

    // The seed's usage: `HTTPThrottle(uid="simple", rate="10/m", strategy=...)`.
    let simple = Throttle::new("simple", "10/m")?.strategy(SimpleCounterStrategy);
    let user = Identity::client("user:42");
    burst("simple_counter", &simple, &user, 12, &backend, &clock).await?;

    let adaptive =
        Throttle::new("adaptive_api", "10/m")?.strategy(AdaptiveRateStrategy::new(0.7, 0.6)?);
    adaptive.validate()?;
    burst("adaptive", &adaptive, &user, 12, &backend, &clock).await?;
    let load_key = format!("{}:load", adaptive.key("user:42", SCOPE));
    let load = backend.get(&load_key).await?;
    let load = String::from_utf8_lossy(load.as_deref().unwrap_or(b"none")).into_owned();
    info!(strategy = "adaptive", load, "load after the retry");

    let priority = Throttle::new("priority_api", "3/m")?.strategy(PriorityQueueStrategy::default());
    let low = Identity::client("priority:1:user:42");
    let high = Identity::client("priority:3:user:42");
    for (label, client) in [("low", &low), ("low", &low), ("low", &low), ("low", &low)] {
        let decision = priority.hit(client, SCOPE, &backend).await?;
        info!(
            strategy = "priority",
            priority = label,
            allowed = decision.allowed,
            "request"
        );
    }
    let decision = priority.hit(&high, SCOPE, &backend).await?;
    info!(
        strategy = "priority",
        priority = "high",
        allowed = decision.allowed,
        "a high-priority request is admitted although low-priority ones fill the limit"
    );

    let pure = Throttle::new("first_request", "5/10s")?.strategy(FirstRequestWindow);
    burst("first_request_window", &pure, &user, 7, &backend, &clock).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    const START: Micros = 1_700_000_000_000_000;

    fn backend() -> (InMemoryBackend, ManualClock) {
        let clock = ManualClock::new(START);
        let backend = InMemoryBackend::builder("test")
            .clock(clock.clone())
            .build();
        (backend, clock)
    }

    /// `limit` requests are admitted, the next is denied with a wait in (0, period], and
    /// after that wait the client is admitted again.
    async fn limit_then_recover(throttle: &Throttle, admitted: u64) {
        let (backend, clock) = backend();
        let client = Identity::client("user:42");
        for i in 0..admitted {
            let decision = throttle.hit(&client, "s", &backend).await.unwrap();
            assert!(decision.allowed, "request {} should be admitted", i + 1);
            clock.advance(Duration::from_millis(100));
        }
        let denied = throttle.hit(&client, "s", &backend).await.unwrap();
        assert!(!denied.allowed, "request {} should be denied", admitted + 1);
        assert!(denied.wait > Duration::ZERO);
        assert!(denied.wait <= throttle.rate().period(), "{:?}", denied.wait);
        clock.advance(denied.wait);
        assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn simple_counter_limits_and_recovers() {
        let throttle = Throttle::new("simple", "5/s")
            .unwrap()
            .strategy(SimpleCounterStrategy);
        limit_then_recover(&throttle, 5).await;
    }

    #[tokio::test]
    async fn simple_counter_window_starts_at_first_request() {
        let (backend, clock) = backend();
        let throttle = Throttle::new("simple", "2/10s")
            .unwrap()
            .strategy(SimpleCounterStrategy);
        let client = Identity::client("c");
        clock.advance(Duration::from_secs(7));
        assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
        clock.advance(Duration::from_secs(4));
        assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
        let denied = throttle.hit(&client, "s", &backend).await.unwrap();
        assert_eq!(denied.wait, Duration::from_secs(6));
        // A denial consumes nothing, unlike the seed.
        let stat = throttle.stat(&client, "s", &backend).await.unwrap();
        assert_eq!(stat.remaining, 0);
    }

    #[tokio::test]
    async fn adaptive_with_no_reduction_admits_the_full_limit() {
        let strategy = AdaptiveRateStrategy::new(1.0, 0.5).unwrap();
        let throttle = Throttle::new("adaptive", "10/m")
            .unwrap()
            .strategy(strategy);
        limit_then_recover(&throttle, 10).await;
    }

    #[tokio::test]
    async fn adaptive_reduces_the_limit_above_the_threshold() {
        let strategy = AdaptiveRateStrategy::default();
        assert_eq!(strategy.effective_limit(8, 10), 10);
        assert_eq!(strategy.effective_limit(9, 10), 5);
        assert_eq!(strategy.window_capacity(10), 8);
        // A reduction above the threshold is the capacity.
        assert_eq!(
            AdaptiveRateStrategy::new(0.3, 0.6)
                .unwrap()
                .window_capacity(10),
            6
        );
        assert_eq!(
            AdaptiveRateStrategy::new(0.7, 0.6)
                .unwrap()
                .window_capacity(10),
            7
        );
        assert_eq!(
            AdaptiveRateStrategy::new(2.0, 0.6)
                .unwrap()
                .window_capacity(10),
            10
        );

        let throttle = Throttle::new("adaptive", "10/m")
            .unwrap()
            .strategy(strategy);
        limit_then_recover(&throttle, 8).await;

        let (backend, _clock) = backend();
        let client = Identity::client("c");
        for _ in 0..8 {
            assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
        }
        let load_key = format!("{}:load", throttle.key("c", "s"));
        assert_eq!(
            backend.get(&load_key).await.unwrap().as_deref(),
            Some(&b"normal"[..])
        );
        let denied = throttle.hit(&client, "s", &backend).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.limit, 8);
        assert_eq!(
            backend.get(&load_key).await.unwrap().as_deref(),
            Some(&b"high"[..])
        );
        // A cost that no window can admit is an error, not a denial forever.
        assert!(matches!(
            throttle.hit_with_cost(&client, "s", 9, &backend).await,
            Err(Error::CostExceedsCapacity { capacity: 8, .. })
        ));
    }

    #[test]
    fn adaptive_rejects_nonsense_settings() {
        assert!(AdaptiveRateStrategy::new(0.0, 0.5).is_err());
        assert!(AdaptiveRateStrategy::new(f64::NAN, 0.5).is_err());
        assert!(AdaptiveRateStrategy::new(0.8, 0.0).is_err());
        assert!(AdaptiveRateStrategy::new(0.8, 1.5).is_err());
    }

    #[tokio::test]
    async fn priority_queue_limits_and_recovers() {
        let throttle = Throttle::new("priority", "5/s")
            .unwrap()
            .strategy(PriorityQueueStrategy::default());
        limit_then_recover(&throttle, 5).await;
    }

    #[tokio::test]
    async fn high_priority_passes_low_priority_but_not_vice_versa() {
        let (backend, clock) = backend();
        let throttle = Throttle::new("priority", "3/m")
            .unwrap()
            .strategy(PriorityQueueStrategy::default());
        let low = Identity::client("priority:1:user:42");
        let high = Identity::client("priority:3:user:42");
        for _ in 0..3 {
            assert!(throttle.hit(&low, "s", &backend).await.unwrap().allowed);
        }
        assert!(!throttle.hit(&low, "s", &backend).await.unwrap().allowed);
        // Low-priority requests do not count against a high-priority one...
        for _ in 0..3 {
            assert!(throttle.hit(&high, "s", &backend).await.unwrap().allowed);
        }
        // ...but high-priority ones count against their own level.
        let denied = throttle.hit(&high, "s", &backend).await.unwrap();
        assert!(!denied.allowed);
        assert_eq!(denied.wait, Duration::from_secs(60));

        // The other way round: high-priority requests fill the limit for low ones.
        clock.advance(Duration::from_secs(60));
        for _ in 0..3 {
            assert!(throttle.hit(&high, "s", &backend).await.unwrap().allowed);
        }
        let denied = throttle.hit(&low, "s", &backend).await.unwrap();
        assert!(!denied.allowed);
        assert!(denied.wait > Duration::ZERO && denied.wait <= Duration::from_secs(60));
        // Another client has its own queue.
        let other = Identity::client("priority:1:user:7");
        assert!(throttle.hit(&other, "s", &backend).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn priority_wait_covers_every_entry_that_must_expire() {
        let (backend, clock) = backend();
        let throttle = Throttle::new("priority", "2/10s")
            .unwrap()
            .strategy(PriorityQueueStrategy::default());
        let low = Identity::client("priority:1:u");
        let high = Identity::client("priority:4:u");
        assert!(throttle.hit(&low, "s", &backend).await.unwrap().allowed); // t=0
        clock.advance(Duration::from_secs(1));
        assert!(throttle.hit(&high, "s", &backend).await.unwrap().allowed); // t=1
        clock.advance(Duration::from_secs(1));
        assert!(throttle.hit(&high, "s", &backend).await.unwrap().allowed); // t=2
        clock.advance(Duration::from_secs(1));
        // Three entries compete with a low request at t=3 and two must go: t=1's entry
        // expires at 11, so the wait is 8 s, not the seed's 7 s (oldest only).
        let denied = throttle.hit(&low, "s", &backend).await.unwrap();
        assert_eq!(denied.wait, Duration::from_secs(8));
        clock.advance(denied.wait - Duration::from_micros(1));
        assert!(!throttle.hit(&low, "s", &backend).await.unwrap().allowed);
        clock.advance(Duration::from_micros(1));
        assert!(throttle.hit(&low, "s", &backend).await.unwrap().allowed);
    }

    #[test]
    fn priority_is_parsed_from_the_identity_only() {
        let key = Throttle::new("api", "1/s")
            .unwrap()
            .key("priority:3:user:42", "GET:/x");
        assert_eq!(key, "{api:priority%3A3%3Auser%3A42}:GET:/x");
        let split = split_priority(&key);
        assert_eq!(split.priority, Some(Priority::High));
        assert_eq!(split.client, "{api:user%3A42}:GET:/x");

        // A raw key, as the seed's tests pass.
        let split = split_priority("priority:4:user:42");
        assert_eq!(split.priority, Some(Priority::Critical));
        assert_eq!(split.client, "user:42");

        // Invalid levels get the default but still share the client's queue.
        let strategy = PriorityQueueStrategy::default();
        let key_of = |id: &str| Throttle::new("api", "1/s").unwrap().key(id, "s");
        for id in [
            "priority:9:user:42",
            "priority:x:user:42",
            "priority::user:42",
        ] {
            assert_eq!(
                strategy.locate(&key_of(id)),
                (
                    Priority::Normal,
                    "{api:user%3A42}:s:priority_queue".to_owned()
                ),
                "{id}"
            );
        }
        // No prefix, a prefix in the scope or uid, an escaped `%3A` typed by the client:
        // no priority.
        for (uid, id, scope) in [
            ("api", "user:42", "s"),
            ("api", "user:42", "priority:4:x"),
            ("priority:4", "user", "s"),
            ("api", "priority%3A4%3Au", "s"),
        ] {
            let key = Throttle::new(uid, "1/s").unwrap().key(id, scope);
            let split = split_priority(&key);
            assert_eq!(
                split,
                PriorityKey {
                    priority: None,
                    client: key.clone()
                },
                "{key}"
            );
        }
    }

    #[tokio::test]
    async fn corrupt_queue_json_starts_a_fresh_queue() {
        let (backend, _clock) = backend();
        let throttle = Throttle::new("priority", "2/m")
            .unwrap()
            .strategy(PriorityQueueStrategy::default());
        let client = Identity::client("priority:2:user:1");
        let queue_key = format!("{}:priority_queue", throttle.key("user:1", "s"));
        let garbage: [&[u8]; 5] = [
            b"not json{",
            b"\xff\xfe",
            br#"[{"timestamp": 1, "priority": 9}]"#,
            br#"{"timestamp": 1}"#,
            b"",
        ];
        for bytes in garbage {
            backend.set(&queue_key, bytes, None).await.unwrap();
            let decision = throttle.hit(&client, "s", &backend).await.unwrap();
            assert!(decision.allowed);
            assert_eq!(decision.remaining, 1);
            let stored = backend.get(&queue_key).await.unwrap().unwrap();
            let queue: Vec<QueueEntry> = serde_json::from_slice(&stored).unwrap();
            assert_eq!(queue.len(), 1);
            assert_eq!(queue[0].priority, Priority::Normal);
        }
    }

    #[tokio::test]
    async fn first_request_window_limits_and_recovers() {
        let throttle = Throttle::new("pure", "5/s")
            .unwrap()
            .strategy(FirstRequestWindow);
        limit_then_recover(&throttle, 5).await;
    }

    #[tokio::test]
    async fn first_request_window_is_anchored_and_survives_corrupt_state() {
        let (backend, clock) = backend();
        let throttle = Throttle::new("pure", "1/10s")
            .unwrap()
            .strategy(FirstRequestWindow);
        let client = Identity::client("c");
        clock.advance(Duration::from_secs(7));
        assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
        let denied = throttle.hit(&client, "s", &backend).await.unwrap();
        assert_eq!(denied.wait, Duration::from_secs(10));
        backend
            .set(&throttle.key("c", "s"), b"junk", None)
            .await
            .unwrap();
        assert!(throttle.hit(&client, "s", &backend).await.unwrap().allowed);
    }

    #[tokio::test]
    async fn every_key_expires_and_every_lock_is_released() {
        let (backend, clock) = backend();
        let client = Identity::client("priority:3:user:42");
        let throttles = [
            Throttle::new("a", "2/10s")
                .unwrap()
                .strategy(SimpleCounterStrategy),
            Throttle::new("b", "2/10s")
                .unwrap()
                .strategy(AdaptiveRateStrategy::default()),
            Throttle::new("c", "2/10s")
                .unwrap()
                .strategy(PriorityQueueStrategy::default()),
            Throttle::new("d", "2/10s")
                .unwrap()
                .strategy(FirstRequestWindow),
        ];
        for throttle in &throttles {
            for _ in 0..3 {
                throttle.hit(&client, "s", &backend).await.unwrap();
            }
        }
        assert!(backend.stored_keys() > 0);
        // The period plus the one-second buffer, and a microsecond.
        clock.advance(Duration::from_secs(11) + Duration::from_micros(1));
        backend.purge_expired();
        assert_eq!(backend.stored_keys(), 0);
    }

    #[tokio::test]
    async fn unlimited_rates_and_free_passes_store_nothing() {
        let (backend, _clock) = backend();
        let client = Identity::client("c");
        for strategy in [
            Arc::new(SimpleCounterStrategy) as Arc<dyn Strategy>,
            Arc::new(AdaptiveRateStrategy::default()),
            Arc::new(PriorityQueueStrategy::default()),
        ] {
            let direct = strategy.hit("k", &Rate::UNLIMITED, 1, &backend).await;
            assert_eq!(direct.unwrap(), Decision::unlimited());
            let unlimited = Throttle::new("u", "unlimited")
                .unwrap()
                .shared_strategy(strategy.clone());
            assert_eq!(
                unlimited.hit(&client, "s", &backend).await.unwrap(),
                Decision::unlimited()
            );
            let free = Throttle::new("f", "1/s")
                .unwrap()
                .shared_strategy(strategy)
                .cost(0);
            assert!(free.hit(&client, "s", &backend).await.unwrap().allowed);
        }
        assert_eq!(backend.stored_keys(), 0);
    }

    #[tokio::test]
    async fn costs_above_the_limit_are_errors() {
        let (backend, _clock) = backend();
        let client = Identity::client("c");
        let throttle = Throttle::new("a", "3/s")
            .unwrap()
            .strategy(SimpleCounterStrategy);
        assert!(throttle.clone().cost(4).validate().is_err());
        assert!(matches!(
            throttle.hit_with_cost(&client, "s", 4, &backend).await,
            Err(Error::CostExceedsCapacity {
                cost: 4,
                capacity: 3
            })
        ));
        let decision = throttle
            .hit_with_cost(&client, "s", 3, &backend)
            .await
            .unwrap();
        assert!(decision.allowed);
        assert_eq!(decision.remaining, 0);
    }

    /// An in-memory backend whose operations yield to the scheduler first, as a networked
    /// backend's would: without the lock, concurrent read-modify-writes interleave.
    #[derive(Debug)]
    struct Yielding(InMemoryBackend);

    impl Backend for Yielding {
        fn namespace(&self) -> &str {
            self.0.namespace()
        }
        fn now(&self) -> BackendFuture<'_, Result<Micros>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.now().await
            })
        }
        fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.get(key).await
            })
        }
        fn set<'a>(
            &'a self,
            key: &'a str,
            value: &'a [u8],
            ttl: Option<Duration>,
        ) -> BackendFuture<'a, Result<()>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.set(key, value, ttl).await
            })
        }
        fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.delete(key).await
            })
        }
        fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.increment(key, amount).await
            })
        }
        fn increment_with_ttl<'a>(
            &'a self,
            key: &'a str,
            amount: i64,
            ttl: Duration,
        ) -> BackendFuture<'a, Result<i64>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.increment_with_ttl(key, amount, ttl).await
            })
        }
        fn update<'a>(
            &'a self,
            key: &'a str,
            f: &'a mut traffik::backend::UpdateFn<'_>,
        ) -> BackendFuture<'a, Result<()>> {
            BackendFuture::new(async move {
                tokio::task::yield_now().await;
                self.0.update(key, f).await
            })
        }
        fn lock<'a>(
            &'a self,
            name: &'a str,
            options: LockOptions,
        ) -> BackendFuture<'a, Result<traffik::Lock>> {
            self.0.lock(name, options)
        }
        fn reset(&self) -> BackendFuture<'_, Result<()>> {
            self.0.reset()
        }
        fn close(&self) -> BackendFuture<'_, Result<()>> {
            self.0.close()
        }
    }

    /// Sends `requests` concurrent requests at a limit of `limit`; the number admitted.
    async fn admitted_of(
        requests: usize,
        limit: u64,
        backend: Arc<dyn Backend>,
        strategy: Arc<dyn Strategy>,
    ) -> usize {
        let rate = Rate::new(limit, Duration::from_secs(60)).unwrap();
        let throttle = Throttle::new("concurrent", rate)
            .unwrap()
            .shared_strategy(strategy);
        let tasks: Vec<_> = (0..requests)
            .map(|_| {
                let backend = Arc::clone(&backend);
                let throttle = throttle.clone();
                tokio::spawn(async move {
                    let client = Identity::client("priority:2:user:42");
                    throttle.hit(&client, "s", &*backend).await
                })
            })
            .collect();
        let mut admitted = 0;
        for task in tasks {
            if task.await.unwrap().unwrap().allowed {
                admitted += 1;
            }
        }
        admitted
    }

    fn strategies() -> [Arc<dyn Strategy>; 3] {
        [
            Arc::new(SimpleCounterStrategy),
            Arc::new(PriorityQueueStrategy::default()),
            Arc::new(FirstRequestWindow),
        ]
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hits_never_over_admit() {
        for strategy in strategies() {
            let (memory, _clock) = backend();
            let admitted = admitted_of(50, 20, Arc::new(memory), Arc::clone(&strategy)).await;
            assert_eq!(admitted, 20, "{strategy:?}");
        }
    }

    /// On a backend whose operations really wait (as a networked one's do), concurrent
    /// read-modify-writes interleave unless the lock holds them apart.
    ///
    /// Kept small: every contender that finds the lock held sleeps with a growing backoff,
    /// so a crowd of contenders is served slowly and could outwait the one-second lock.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_hits_never_over_admit_when_operations_yield() {
        for strategy in strategies() {
            let (memory, _clock) = backend();
            let admitted =
                admitted_of(12, 5, Arc::new(Yielding(memory)), Arc::clone(&strategy)).await;
            assert_eq!(admitted, 5, "{strategy:?}");
        }
    }
}

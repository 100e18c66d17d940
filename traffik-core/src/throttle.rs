//! [`Throttle`]: a rate, a strategy and a cost under a unique id; framework-free.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::backend::{Backend, BackendFuture, SharedBackend};
use crate::clock::{Clock, SystemClock};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::key::{Identity, KeyText, key_prefix, scope_start, throttle_key, throttle_key_joined};
use crate::policy::{FailureContext, FailurePolicy, FailureVerdict};
use crate::rate::Rate;
use crate::strategy::{FixedWindow, Strategy};

/// Anything a throttle accepts as its rate: a [`Rate`], or text such as `"5/10s"`.
pub trait IntoRate {
    /// The rate, or [`Error::InvalidRate`].
    fn into_rate(self) -> Result<Rate>;
}

impl IntoRate for Rate {
    fn into_rate(self) -> Result<Rate> {
        Ok(self)
    }
}

impl IntoRate for &str {
    fn into_rate(self) -> Result<Rate> {
        Rate::parse(self)
    }
}

impl IntoRate for String {
    fn into_rate(self) -> Result<Rate> {
        Rate::parse(&self)
    }
}

impl IntoRate for &String {
    fn into_rate(self) -> Result<Rate> {
        Rate::parse(self)
    }
}

/// A rate limit with an identity: uid, rate, strategy, cost and policies. It decides
/// requests with [`Throttle::hit`]; the web integrations build on it.
///
/// # When the backend fails
///
/// Every decision is bounded in time: one that does not complete at once is given
/// [`timeout`](Throttle::timeout) (default: the backend's [`Backend::timeout`], 250 ms),
/// after which it fails with [`Error::Timeout`]. A backend failure is then answered by
/// the throttle's [`FailurePolicy`] ([`on_error`](Throttle::on_error); default: the
/// backend's [`Backend::failure_policy`], which is [`FailurePolicy::Raise`] unless
/// configured): let the request through, deny it, or return the error.
///
/// # Shadow mode
///
/// A throttle in [`shadow`](Throttle::shadow) mode decides and reports but never denies:
/// a request its strategy denies is let through, logged, counted
/// ([`shadow_denials`](Throttle::shadow_denials)) and marked
/// ([`Decision::shadowed`]), for rolling a new limit out safely.
///
/// ```
/// use traffik_core::{Identity, InMemoryBackend, Throttle, strategy::TokenBucket};
///
/// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
/// let backend = InMemoryBackend::new("app");
/// let throttle = Throttle::new("uploads", "2/m")?.strategy(TokenBucket::new());
/// let client = Identity::client("203.0.113.7");
/// assert!(throttle.hit(&client, "upload", &backend).await?.allowed);
/// assert!(throttle.hit(&client, "upload", &backend).await?.allowed);
/// let denied = throttle.hit(&client, "upload", &backend).await?;
/// assert!(!denied.allowed);
/// assert_eq!(denied.retry_after_secs(), 30);
/// // An exempt identity is never limited and costs nothing.
/// assert!(throttle.hit(&Identity::Exempt, "upload", &backend).await?.allowed);
/// # Ok::<(), traffik_core::Error>(())
/// # }).unwrap();
/// ```
#[derive(Clone)]
pub struct Throttle {
    uid: Arc<str>,
    /// What each of its keys starts with: the uid escaped once, not per decision.
    key_prefix: Arc<str>,
    rate: Rate,
    strategy: Arc<dyn Strategy>,
    cost: u64,
    min_wait_period: Duration,
    backend: Option<SharedBackend>,
    exempt: Arc<HashSet<String>>,
    on_error: Option<FailurePolicy>,
    timeout: Option<Duration>,
    shadow: bool,
    /// Shared by clones: what happened to this throttle's decisions.
    stats: Arc<Stats>,
}

/// Counters shared by a throttle's clones.
#[derive(Debug, Default)]
struct Stats {
    /// Requests a shadow throttle would have denied.
    shadow_denials: AtomicU64,
    /// When a backend failure was last logged at `warn`, in microseconds since the epoch.
    last_failure_warning: AtomicU64,
    /// Failures logged at `debug` only since then.
    quiet_failures: AtomicU64,
}

/// At most one `warn` per throttle and interval for backend failures: an outage under
/// load must not flood the logs.
const FAILURE_WARNING_INTERVAL_MICROS: u64 = 1_000_000;

impl Throttle {
    /// A throttle named `uid` (unique per limit: it separates the state of different
    /// throttles) admitting `rate`, with the [`FixedWindow`] strategy and cost 1.
    pub fn new(uid: impl Into<String>, rate: impl IntoRate) -> Result<Self> {
        let uid: String = uid.into();
        if uid.is_empty() {
            return Err(Error::Configuration(
                "a throttle's uid must not be empty".into(),
            ));
        }
        Ok(Self::with_rate(uid, rate.into_rate()?))
    }

    /// A throttle from an already valid [`Rate`] (for example one from
    /// [`rate!`](crate::rate!)); infallible.
    ///
    /// ```
    /// use traffik_core::{Throttle, rate};
    ///
    /// let throttle = Throttle::with_rate("api", rate!("10/m"));
    /// assert_eq!(throttle.rate().limit(), 10);
    /// ```
    pub fn with_rate(uid: impl Into<String>, rate: Rate) -> Self {
        let uid: String = uid.into();
        Self {
            key_prefix: key_prefix(&uid).as_str().into(),
            uid: uid.into(),
            rate,
            strategy: Arc::new(FixedWindow),
            cost: 1,
            min_wait_period: Duration::ZERO,
            backend: None,
            exempt: Arc::new(HashSet::new()),
            on_error: None,
            timeout: None,
            shadow: false,
            stats: Arc::default(),
        }
    }

    /// Uses `strategy` (default [`FixedWindow`]).
    pub fn strategy(mut self, strategy: impl Strategy) -> Self {
        self.strategy = Arc::new(strategy);
        self
    }

    /// Uses an already shared strategy.
    pub fn shared_strategy(mut self, strategy: Arc<dyn Strategy>) -> Self {
        self.strategy = strategy;
        self
    }

    /// Each request costs `cost` (default 1; 0 is a free pass).
    pub fn cost(mut self, cost: u64) -> Self {
        self.cost = cost;
        self
    }

    /// A throttled request is told to wait at least this long: a floor on the reported wait
    /// (`Retry-After`) of denials only. It does not lengthen the strategy's state: a client
    /// that comes back before the floor, once its strategy admits it again, is admitted.
    pub fn min_wait_period(mut self, floor: Duration) -> Self {
        self.min_wait_period = floor;
        self
    }

    /// Uses its own backend rather than the one given to [`hit`](Throttle::hit).
    pub fn backend(mut self, backend: impl Backend) -> Self {
        self.backend = Some(Arc::new(backend));
        self
    }

    /// Uses its own, already shared, backend.
    pub fn shared_backend(mut self, backend: SharedBackend) -> Self {
        self.backend = Some(backend);
        self
    }

    /// Client ids that bypass this throttle.
    pub fn exempt<I, S>(mut self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Arc::make_mut(&mut self.exempt).extend(ids.into_iter().map(Into::into));
        self
    }

    /// Answers backend failures with `policy` instead of the backend's
    /// [`failure_policy`](Backend::failure_policy). Configuration errors (a cost above
    /// the capacity, for example) are never answered by the policy: they are returned.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::{FailurePolicy, Throttle};
    ///
    /// let throttle = Throttle::new("login", "5/m")?
    ///     .on_error(FailurePolicy::Throttle(Duration::from_secs(30)));
    /// assert!(matches!(throttle.failure_policy(), Some(FailurePolicy::Throttle(_))));
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn on_error(mut self, policy: FailurePolicy) -> Self {
        self.on_error = Some(policy);
        self
    }

    /// Gives each decision at most `limit` (instead of the backend's
    /// [`timeout`](Backend::timeout)); past it the decision fails with
    /// [`Error::Timeout`], answered by the failure policy. `Duration::MAX` waits forever.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::Throttle;
    ///
    /// let throttle = Throttle::new("api", "10/s")?.timeout(Duration::from_millis(50));
    /// assert_eq!(throttle.decision_timeout(), Some(Duration::from_millis(50)));
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = Some(limit);
        self
    }

    /// Shadow mode: decide and report, but never deny. A request the strategy denies is
    /// let through with a [`Decision::shadowed`] decision (its `wait` and `remaining`
    /// still tell what the denial said), logged at `info` and counted in
    /// [`shadow_denials`](Throttle::shadow_denials). A backend failure never denies
    /// either: whatever the failure policy says, the request passes (logged at `warn`).
    /// Configuration errors are still returned.
    ///
    /// ```
    /// use traffik_core::{Identity, InMemoryBackend, Throttle};
    ///
    /// # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
    /// let backend = InMemoryBackend::new("app");
    /// let throttle = Throttle::new("new_limit", "1/m")?.shadow(true);
    /// let client = Identity::client("198.51.100.4");
    /// assert!(throttle.hit(&client, "api", &backend).await?.allowed);
    /// let over = throttle.hit(&client, "api", &backend).await?;
    /// assert!(over.allowed && over.shadowed);
    /// assert_eq!(throttle.shadow_denials(), 1);
    /// # Ok::<(), traffik_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub fn shadow(mut self, enabled: bool) -> Self {
        self.shadow = enabled;
        self
    }

    /// Checks the configuration as a whole: the cost must fit the strategy's capacity.
    /// Call it at start-up to fail early rather than at the first request.
    pub fn validate(&self) -> Result<()> {
        if self.rate.is_unlimited() {
            return Ok(());
        }
        match self.strategy.capacity(&self.rate) {
            Some(capacity) if self.cost > capacity => Err(Error::CostExceedsCapacity {
                cost: self.cost,
                capacity,
            }),
            _ => Ok(()),
        }
    }

    /// The throttle's uid.
    pub fn uid(&self) -> &str {
        &self.uid
    }

    /// The throttle's rate.
    pub fn rate(&self) -> &Rate {
        &self.rate
    }

    /// The throttle's strategy.
    pub fn strategy_ref(&self) -> &Arc<dyn Strategy> {
        &self.strategy
    }

    /// The floor on the wait of a throttled request.
    pub fn min_wait(&self) -> Duration {
        self.min_wait_period
    }

    /// The default cost of a request.
    pub fn default_cost(&self) -> u64 {
        self.cost
    }

    /// The throttle's own backend, if it has one.
    pub fn own_backend(&self) -> Option<&SharedBackend> {
        self.backend.as_ref()
    }

    /// The throttle's own failure policy, if it has one (otherwise the backend's
    /// applies).
    pub fn failure_policy(&self) -> Option<&FailurePolicy> {
        self.on_error.as_ref()
    }

    /// The throttle's own bound on one decision, if it has one (otherwise the backend's
    /// applies).
    pub fn decision_timeout(&self) -> Option<Duration> {
        self.timeout
    }

    /// Whether the throttle is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.shadow
    }

    /// How many requests this throttle (and its clones) let through in shadow mode that
    /// it would otherwise have denied.
    pub fn shadow_denials(&self) -> u64 {
        self.stats.shadow_denials.load(Ordering::Relaxed)
    }

    /// The storage key for `identity` in `scope`, relative to a backend's namespace.
    pub fn key(&self, identity: &str, scope: &str) -> String {
        throttle_key(&self.uid, identity, scope)
    }

    /// The client id to limit, or `None` when the request bypasses the throttle
    /// (exempt identity, exempt id, unlimited rate).
    fn limited_id<'a>(&self, identity: &'a Identity) -> Option<&'a str> {
        match identity {
            Identity::Client(id) if self.limits(id) => Some(id),
            _ => None,
        }
    }

    /// Whether requests from the client `id` count against the rate.
    fn limits(&self, id: &str) -> bool {
        !self.rate.is_unlimited() && !self.exempt.contains(id)
    }

    /// Decides one request of the default cost from `identity` in `scope`, on the
    /// throttle's own backend or else `backend`.
    pub async fn hit(
        &self,
        identity: &Identity,
        scope: &str,
        backend: &dyn Backend,
    ) -> Result<Decision> {
        self.hit_with_cost(identity, scope, self.cost, backend)
            .await
    }

    /// Decides one request of `cost`; see [`hit`](Throttle::hit).
    pub async fn hit_with_cost(
        &self,
        identity: &Identity,
        scope: &str,
        cost: u64,
        backend: &dyn Backend,
    ) -> Result<Decision> {
        match identity {
            Identity::Client(id) => self.hit_client(id, scope, cost, backend).await,
            Identity::Exempt => Ok(Decision::unlimited()),
        }
    }

    /// Decides one request of `cost` from the client whose id is `id` (what
    /// [`Identity::Client`] holds); see [`hit`](Throttle::hit). For callers that have the
    /// id as text already, without building an [`Identity`].
    ///
    /// ```
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// assert!(throttle.hit_client("10.0.0.1", "http:GET:/", 1, &backend).await?.allowed);
    /// assert!(!throttle.hit_client("10.0.0.1", "http:GET:/", 1, &backend).await?.allowed);
    /// # Ok::<(), traffik_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn hit_client(
        &self,
        id: &str,
        scope: &str,
        cost: u64,
        backend: &dyn Backend,
    ) -> Result<Decision> {
        self.hit_client_joined(id, std::slice::from_ref(&scope), cost, backend)
            .await
    }

    /// [`hit_client`](Throttle::hit_client) for a scope given in pieces, joined in order,
    /// as [`try_hit_now_joined`](Throttle::try_hit_now_joined) takes it: the pieces are
    /// written straight into the key, for a caller whose scope is made of parts (a prefix
    /// and a route) that it would otherwise join first.
    ///
    /// ```
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// let pieces = ["http:GET:", "/items"];
    /// assert!(throttle.hit_client_joined("10.0.0.1", &pieces, 1, &backend).await?.allowed);
    /// // The same scope, given whole: the same key, so the same quota.
    /// assert!(!throttle.hit_client("10.0.0.1", "http:GET:/items", 1, &backend).await?.allowed);
    /// # Ok::<(), traffik_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn hit_client_joined(
        &self,
        id: &str,
        scope: &[&str],
        cost: u64,
        backend: &dyn Backend,
    ) -> Result<Decision> {
        // On the stack, held by this future: no allocation for a key of ordinary size.
        let mut key = KeyText::new();
        self.hit_client_keyed(id, scope, cost, backend, &mut key)
            .await
    }

    /// [`hit_client_joined`](Throttle::hit_client_joined) with the key that
    /// [`try_hit_at_once_joined`](Throttle::try_hit_at_once_joined) wrote into `key` when
    /// it could not decide at once, so that it is not written twice; an empty `key` is
    /// written here first. A `key` that is not empty is taken as written for this `id`
    /// and `scope`: it is what the decision is stored under. A caller that keeps `key` in
    /// its own future (as the axum extractor's awaited path does) also spares the future a
    /// level of nesting.
    ///
    /// ```
    /// use traffik_core::key::KeyText;
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(async {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// let mut key = KeyText::new();
    /// let decided = throttle.hit_client_keyed("10.0.0.1", &["http:GET:", "/"], 1, &backend, &mut key);
    /// assert!(decided.await?.allowed);
    /// assert_eq!(key.as_str(), "{api:10.0.0.1}:http:GET:/");
    /// # Ok::<(), traffik_core::Error>(())
    /// # }).unwrap();
    /// ```
    pub async fn hit_client_keyed(
        &self,
        id: &str,
        scope: &[&str],
        cost: u64,
        backend: &dyn Backend,
        key: &mut KeyText,
    ) -> Result<Decision> {
        if !self.limits(id) {
            return Ok(Decision::unlimited());
        }
        if key.is_empty() {
            throttle_key_joined(key, &self.key_prefix, id, scope);
        }
        let key = key.as_str();
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        let limit = self.decision_limit(backend);
        let decided = Self::bounded(
            self.strategy
                .hit_within(key, &self.rate, cost, backend, limit),
            limit,
            self.strategy.hits_through_decide() && backend.bounds_decisions(),
        )
        .await;
        self.conclude(decided, || Hit {
            id,
            scope,
            key,
            cost,
            backend,
        })
    }

    /// Whether a decision on `backend` (or on the throttle's own backend) completes in
    /// one synchronous step: see [`try_hit_now`](Throttle::try_hit_now).
    pub fn decides_in_place(&self, backend: &dyn Backend) -> bool {
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        backend.decides_in_place() && self.strategy.hits_through_decide()
    }

    /// [`hit_client`](Throttle::hit_client) in one synchronous step, when the backend
    /// [decides in place](Backend::decides_in_place) (the in-memory backend) and the
    /// strategy decides through it: no future is built and the key is built on the
    /// stack. `None`, having done nothing, when the decision needs awaiting: call
    /// [`hit_client`](Throttle::hit_client) then.
    ///
    /// ```
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # fn main() -> traffik_core::Result<()> {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// let first = throttle.try_hit_now("10.0.0.1", "http:GET:/", 1, &backend);
    /// assert!(first.expect("in memory: decided at once")?.allowed);
    /// let second = throttle.try_hit_now("10.0.0.1", "http:GET:/", 1, &backend);
    /// assert!(!second.expect("in memory: decided at once")?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn try_hit_now(
        &self,
        id: &str,
        scope: &str,
        cost: u64,
        backend: &dyn Backend,
    ) -> Option<Result<Decision>> {
        self.try_hit_now_joined(id, std::slice::from_ref(&scope), cost, backend)
    }

    /// [`try_hit_now`](Throttle::try_hit_now) for a scope given in pieces, joined in
    /// order: the pieces are written straight into the key, for a caller whose scope is
    /// made of parts (a prefix and a route) that it would otherwise join first.
    ///
    /// ```
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # fn main() -> traffik_core::Result<()> {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// let first = throttle.try_hit_now_joined("10.0.0.1", &["http:GET:", "/items"], 1, &backend);
    /// assert!(first.expect("in memory: decided at once")?.allowed);
    /// // The same scope, given whole: the same key, so the same quota.
    /// let second = throttle.try_hit_now("10.0.0.1", "http:GET:/items", 1, &backend);
    /// assert!(!second.expect("in memory: decided at once")?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn try_hit_now_joined(
        &self,
        id: &str,
        scope: &[&str],
        cost: u64,
        backend: &dyn Backend,
    ) -> Option<Result<Decision>> {
        if self.limits(id) && !self.decides_in_place(backend) {
            return None;
        }
        let mut key = KeyText::new();
        self.try_hit_at_once_joined(id, scope, cost, backend, &mut key)
    }

    /// Whether [`try_hit_at_once_joined`](Throttle::try_hit_at_once_joined) may decide at
    /// once on `backend` (or on the throttle's own backend): it
    /// [decides in place](Throttle::decides_in_place), or it may answer some decisions
    /// without I/O ([`Backend::may_decide_at_once`]: the Redis backend's denial cache).
    #[inline]
    pub fn may_decide_at_once(&self, backend: &dyn Backend) -> bool {
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        self.strategy.hits_through_decide()
            && (backend.decides_in_place() || backend.may_decide_at_once())
    }

    /// [`try_hit_now_joined`](Throttle::try_hit_now_joined) for any backend: the decision
    /// when it comes without awaiting (always in memory; on Redis, a denial its denial
    /// cache remembers). `None` otherwise, with the key written into `key` when it was
    /// needed to ask: hand `key` to
    /// [`hit_client_keyed`](Throttle::hit_client_keyed) to await the decision without
    /// writing the key again.
    ///
    /// ```
    /// use traffik_core::key::KeyText;
    /// use traffik_core::{InMemoryBackend, Throttle};
    ///
    /// # fn main() -> traffik_core::Result<()> {
    /// let throttle = Throttle::new("api", "1/m")?;
    /// let backend = InMemoryBackend::new("app");
    /// let mut key = KeyText::new();
    /// let first = throttle.try_hit_at_once_joined("10.0.0.1", &["http:GET:", "/"], 1, &backend, &mut key);
    /// assert!(first.expect("in memory: decided at once")?.allowed);
    /// # Ok(()) }
    /// ```
    pub fn try_hit_at_once_joined(
        &self,
        id: &str,
        scope: &[&str],
        cost: u64,
        backend: &dyn Backend,
        key: &mut KeyText,
    ) -> Option<Result<Decision>> {
        if !self.limits(id) {
            return Some(Ok(Decision::unlimited()));
        }
        if !self.may_decide_at_once(backend) {
            return None;
        }
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        throttle_key_joined(key, &self.key_prefix, id, scope);
        let key = key.as_str();
        // Answered without a future where the backend can (the in-memory backend always,
        // the Redis denial cache for a denial it remembers); else, from a backend that
        // decides in place, its ready future.
        let decided = match self.strategy.hit_at_once(key, &self.rate, cost, backend) {
            // Admitted: passed on as it came, not taken apart and built again.
            admitted @ Some(Ok(Decision { allowed: true, .. })) => return admitted,
            Some(decided) => decided,
            None if backend.decides_in_place() => match self
                .strategy
                .hit(key, &self.rate, cost, backend)
                .now_or_never()
            {
                Ok(decided) => decided,
                // A pending future is dropped unpolled: nothing was sent anywhere.
                Err(_pending) => Err(Error::Backend(format!(
                    "backend {} claims to decide in place but returned a pending decision",
                    backend.namespace()
                ))),
            },
            None => return None,
        };
        Some(self.conclude(decided, || Hit {
            id,
            scope,
            key,
            cost,
            backend,
        }))
    }

    /// What a decided (or failed) hit comes to: the failure policy for a backend failure,
    /// the minimum wait, shadow mode, and the log lines. An admitted hit returns at once,
    /// inline in the caller, without gathering the hit's context (`hit`); the rest is
    /// [`conclude_refused`](Self::conclude_refused).
    #[inline]
    fn conclude<'a>(
        &self,
        decided: Result<Decision>,
        hit: impl FnOnce() -> Hit<'a>,
    ) -> Result<Decision> {
        match decided {
            Ok(decision) if decision.allowed => Ok(decision),
            refused => self.conclude_refused(refused, &hit()),
        }
    }

    /// [`conclude`](Self::conclude) for a denied or failed hit. The scope is joined as
    /// text only for the policy and the logs.
    #[inline(never)]
    fn conclude_refused(&self, decided: Result<Decision>, hit: &Hit<'_>) -> Result<Decision> {
        let Hit {
            id,
            key,
            cost,
            backend,
            ..
        } = *hit;
        let mut joined = String::new();
        let decision = match decided {
            Ok(decision) => decision,
            Err(error) if error.is_backend_failure() => {
                let failure = FailureContext {
                    error: &error,
                    uid: &self.uid,
                    identity: id,
                    scope: hit.scope_text(&mut joined),
                    key,
                    cost,
                    namespace: backend.namespace(),
                };
                match self.on_failure(&failure, backend) {
                    Some(decision) => decision,
                    None => return Err(error),
                }
            }
            Err(error) => return Err(error),
        };
        let decision = decision.with_min_wait(self.min_wait_period);
        if decision.allowed {
            return Ok(decision);
        }
        if self.shadow {
            self.stats.shadow_denials.fetch_add(1, Ordering::Relaxed);
            tracing::info!(
                uid = %self.uid,
                identity = id,
                scope = hit.scope_text(&mut joined),
                key,
                wait_ms = decision.wait.as_millis() as u64,
                source = ?decision.source,
                "shadow throttle would have throttled this request; let through"
            );
            return Ok(decision.into_shadow());
        }
        tracing::debug!(
            uid = %self.uid,
            identity = id,
            scope = hit.scope_text(&mut joined),
            wait_ms = decision.wait.as_millis() as u64,
            source = ?decision.source,
            "request throttled"
        );
        Ok(decision)
    }

    /// How long a decision on `backend` may take: the throttle's timeout, else the
    /// backend's.
    fn decision_limit(&self, backend: &dyn Backend) -> Duration {
        self.timeout.unwrap_or_else(|| backend.timeout())
    }

    /// Awaits a decision, for at most `limit`. A decision that completes on its first poll
    /// (the in-memory backend's) starts no timer; nor does one the backend ends within
    /// `limit` itself (`by_backend`: a single `decide` given that limit, on a backend that
    /// [bounds its decisions](Backend::bounds_decisions)).
    async fn bounded(
        decision: BackendFuture<'_, Result<Decision>>,
        limit: Duration,
        by_backend: bool,
    ) -> Result<Decision> {
        let pending = match decision.now_or_never() {
            Ok(done) => return done,
            Err(pending) => pending,
        };
        if by_backend {
            return pending.await;
        }
        match tokio::time::timeout(limit, pending).await {
            Ok(done) => done,
            Err(_) => Err(Error::Timeout(limit)),
        }
    }

    /// The decision the failure policy gives for a backend failure, or `None` to return
    /// the error.
    fn on_failure(&self, failure: &FailureContext<'_>, backend: &dyn Backend) -> Option<Decision> {
        let verdict = match &self.on_error {
            Some(policy) => policy.verdict(failure),
            None => backend.failure_policy().verdict(failure),
        };
        let (verdict, decision) = match verdict {
            FailureVerdict::Allow => ("allow", Some(Decision::fail_open())),
            FailureVerdict::Throttle(wait) => (
                "throttle",
                Some(Decision::fail_closed(self.rate.limit(), wait)),
            ),
            // A shadow throttle never stops a request, not even for a failure.
            FailureVerdict::Raise if self.shadow => ("allow (shadow)", Some(Decision::fail_open())),
            FailureVerdict::Raise => ("raise", None),
        };
        self.log_failure(failure, verdict);
        decision
    }

    /// Logs a backend failure: at `warn` at most once a second per throttle (with the
    /// number of failures logged at `debug` only since the last warning), else `debug`.
    fn log_failure(&self, failure: &FailureContext<'_>, verdict: &str) {
        let now = SystemClock.now_micros();
        let last = self.stats.last_failure_warning.load(Ordering::Relaxed);
        let warn = now.saturating_sub(last) >= FAILURE_WARNING_INTERVAL_MICROS
            && self
                .stats
                .last_failure_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok();
        if warn {
            let since_last_warning = self.stats.quiet_failures.swap(0, Ordering::Relaxed);
            tracing::warn!(
                uid = %failure.uid,
                key = failure.key,
                namespace = failure.namespace,
                error = %failure.error,
                verdict,
                since_last_warning,
                "rate-limit backend failed; answering with the failure policy"
            );
        } else {
            self.stats.quiet_failures.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(
                uid = %failure.uid,
                key = failure.key,
                namespace = failure.namespace,
                error = %failure.error,
                verdict,
                "rate-limit backend failed; answering with the failure policy"
            );
        }
    }

    /// What one request from `identity` in `scope` would get now, consuming nothing.
    ///
    /// Bounded by the same timeout as [`hit`](Throttle::hit); a backend failure is
    /// returned as an error (a report has nothing to fail open or closed).
    pub async fn stat(
        &self,
        identity: &Identity,
        scope: &str,
        backend: &dyn Backend,
    ) -> Result<Decision> {
        let Some(id) = self.limited_id(identity) else {
            return Ok(Decision::unlimited());
        };
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        let key = self.key(id, scope);
        let limit = self.decision_limit(backend);
        let stat = Self::bounded(self.strategy.stat(&key, &self.rate, backend), limit, false);
        Ok(stat.await?.with_min_wait(self.min_wait_period))
    }
}

impl fmt::Debug for Throttle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttle")
            .field("uid", &self.uid)
            .field("rate", &self.rate.to_string())
            .field("strategy", &self.strategy)
            .field("cost", &self.cost)
            .field("min_wait_period", &self.min_wait_period)
            .field("own_backend", &self.backend.is_some())
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .field("shadow", &self.shadow)
            .finish()
    }
}

/// One hit being decided: what the failure policy and the logs are told.
#[derive(Clone, Copy)]
struct Hit<'a> {
    id: &'a str,
    /// The scope, in the pieces the caller gave, joined in order.
    scope: &'a [&'a str],
    key: &'a str,
    cost: u64,
    backend: &'a dyn Backend,
}

impl Hit<'_> {
    /// The scope as text: as the key holds it, unless a byte of it had to be escaped
    /// there; otherwise its pieces joined into `joined` (an allocation only then).
    fn scope_text<'s>(&'s self, joined: &'s mut String) -> &'s str {
        match self.key.get(scope_start(self.key)..) {
            Some(text) if text.len() == self.scope.iter().map(|piece| piece.len()).sum() => text,
            _ => {
                *joined = self.scope.concat();
                joined
            }
        }
    }
}

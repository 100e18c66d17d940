//! [`Throttle`]: a rate, a strategy and a cost under a unique id; framework-free.

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use crate::backend::{Backend, SharedBackend};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::key::{Identity, throttle_key};
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
    rate: Rate,
    strategy: Arc<dyn Strategy>,
    cost: u64,
    min_wait_period: Duration,
    backend: Option<SharedBackend>,
    exempt: Arc<HashSet<String>>,
}

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
            uid: uid.into(),
            rate,
            strategy: Arc::new(FixedWindow),
            cost: 1,
            min_wait_period: Duration::ZERO,
            backend: None,
            exempt: Arc::new(HashSet::new()),
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

    /// The storage key for `identity` in `scope`, relative to a backend's namespace.
    pub fn key(&self, identity: &str, scope: &str) -> String {
        throttle_key(&self.uid, identity, scope)
    }

    /// The client id to limit, or `None` when the request bypasses the throttle
    /// (exempt identity, exempt id, unlimited rate).
    fn limited_id<'a>(&self, identity: &'a Identity) -> Option<&'a str> {
        match identity {
            Identity::Client(id) if !self.rate.is_unlimited() && !self.exempt.contains(id) => {
                Some(id)
            }
            _ => None,
        }
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
        let Some(id) = self.limited_id(identity) else {
            return Ok(Decision::unlimited());
        };
        let backend: &dyn Backend = self.backend.as_deref().unwrap_or(backend);
        let key = self.key(id, scope);
        let decision = self.strategy.hit(&key, &self.rate, cost, backend).await?;
        if !decision.allowed {
            tracing::debug!(
                uid = %self.uid,
                identity = id,
                scope,
                wait_ms = decision.wait.as_millis() as u64,
                "request throttled"
            );
        }
        Ok(decision.with_min_wait(self.min_wait_period))
    }

    /// What one request from `identity` in `scope` would get now, consuming nothing.
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
        Ok(self
            .strategy
            .stat(&key, &self.rate, backend)
            .await?
            .with_min_wait(self.min_wait_period))
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
            .finish()
    }
}

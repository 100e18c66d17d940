//! [`HttpThrottle`]: a throttle for HTTP requests, configured once and shared.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use axum::response::Response;
use futures_util::future::BoxFuture;
use http::request::Parts;
use traffik_core::{
    Backend, Decision, FailurePolicy, Identity, Rate, SharedBackend, Strategy, Throttle,
};

use crate::denial_response::RenderedDenials;
use crate::headers::{HeaderPolicy, PolicyField};
use crate::ws::WsOnThrottled;

/// What a custom throttled handler is told about the denial.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub struct ThrottledInfo<'a> {
    /// The throttle's uid.
    pub uid: &'a str,
    /// The throttle's rate.
    pub rate: &'a Rate,
    /// The denial, with its wait.
    pub decision: &'a Decision,
}

type SyncIdentifier = dyn Fn(&Parts) -> Identity + Send + Sync;
type AsyncIdentifier = dyn for<'a> Fn(&'a Parts) -> BoxFuture<'a, Identity> + Send + Sync;
type CostFn = dyn Fn(&Parts) -> u64 + Send + Sync;
type OnThrottled = dyn Fn(&Parts, ThrottledInfo<'_>) -> Response + Send + Sync;

/// How a throttle identifies clients.
#[derive(Clone)]
pub(crate) enum Identifier {
    /// The app's default: the client IP.
    Default,
    Sync(Arc<SyncIdentifier>),
    Async(Arc<AsyncIdentifier>),
}

#[derive(Clone)]
pub(crate) struct Inner {
    pub throttle: Throttle,
    pub identifier: Identifier,
    pub cost: Option<Arc<CostFn>>,
    pub on_throttled: Option<Arc<OnThrottled>>,
    pub headers: Option<HeaderPolicy>,
    pub dynamic_backend: bool,
    pub ws_on_throttled: WsOnThrottled,
    /// The `RateLimit-Policy` of this throttle's denials, rendered once.
    pub policy_field: PolicyField,
    /// The last default 429 rendered, reused while denials say the same.
    pub denials: RenderedDenials,
}

/// A throttle for HTTP requests: the axum twin of the seed's `HTTPThrottle`.
///
/// Build it once (usually with [`throttle!`](crate::throttle!)) and use it through the
/// [`Throttled`](crate::Throttled) extractor, the [`ThrottleLayer`](crate::ThrottleLayer) or
/// `#[throttled]`. Clones share one configuration.
///
/// ```
/// use std::time::Duration;
/// use traffik_axum::HttpThrottle;
/// use traffik_core::{Identity, TokenBucket, rate};
///
/// let throttle = HttpThrottle::new("user_quota", rate!("1000/h"))
///     .strategy(TokenBucket::with_burst(50))
///     .identifier(|parts| match parts.headers.get("x-user-id").and_then(|v| v.to_str().ok()) {
///         Some(user) => Identity::client(format!("user:{user}")),
///         None => Identity::client("anonymous"),
///     })
///     .cost(|parts| if parts.method == http::Method::POST { 5 } else { 1 })
///     .min_wait_period(Duration::from_secs(1));
/// assert_eq!(throttle.uid(), "user_quota");
/// ```
#[derive(Clone)]
pub struct HttpThrottle {
    inner: Arc<Inner>,
}

impl HttpThrottle {
    /// A throttle named `uid` (unique per limit) admitting `rate` per client, with the
    /// fixed-window strategy, the client IP as identity and cost 1.
    pub fn new(uid: impl Into<String>, rate: Rate) -> Self {
        Self::from_throttle(Throttle::with_rate(uid, rate))
    }

    /// A throttle from a rate in text (configuration): the error comes at start-up, never
    /// at the first request.
    ///
    /// ```
    /// use traffik_axum::HttpThrottle;
    ///
    /// assert!(HttpThrottle::parse("api", "10/m").is_ok());
    /// assert!(HttpThrottle::parse("api", "10/mins").is_err());
    /// ```
    pub fn parse(uid: impl Into<String>, rate: &str) -> traffik_core::Result<Self> {
        Ok(Self::from_throttle(Throttle::new(uid, rate)?))
    }

    /// Wraps a framework-free [`Throttle`].
    pub fn from_throttle(throttle: Throttle) -> Self {
        Self {
            inner: Arc::new(Inner {
                identifier: Identifier::Default,
                cost: None,
                on_throttled: None,
                headers: None,
                dynamic_backend: false,
                ws_on_throttled: WsOnThrottled::default(),
                policy_field: PolicyField::new(throttle.uid(), throttle.rate()),
                denials: RenderedDenials::default(),
                throttle,
            }),
        }
    }

    fn map(self, f: impl FnOnce(&mut Inner)) -> Self {
        let mut inner = Arc::unwrap_or_clone(self.inner);
        f(&mut inner);
        inner.policy_field = PolicyField::new(inner.throttle.uid(), inner.throttle.rate());
        inner.denials = RenderedDenials::default();
        Self {
            inner: Arc::new(inner),
        }
    }

    fn map_throttle(self, f: impl FnOnce(Throttle) -> Throttle) -> Self {
        self.map(|inner| inner.throttle = f(inner.throttle.clone()))
    }

    /// Uses `strategy` (default: fixed window).
    #[must_use]
    pub fn strategy(self, strategy: impl Strategy) -> Self {
        self.map_throttle(|t| t.strategy(strategy))
    }

    /// Identifies clients with `identifier` (default: the client IP, see
    /// [`ClientIpConfig`](crate::ClientIpConfig)). Return [`Identity::Exempt`] to let a
    /// request bypass the throttle.
    #[must_use]
    pub fn identifier<F>(self, identifier: F) -> Self
    where
        F: Fn(&Parts) -> Identity + Send + Sync + 'static,
    {
        self.map(|inner| inner.identifier = Identifier::Sync(Arc::new(identifier)))
    }

    /// Identifies clients with an async function (for example one that looks a token up).
    ///
    /// ```
    /// use traffik_axum::HttpThrottle;
    /// use traffik_core::{Identity, rate};
    ///
    /// let throttle = HttpThrottle::new("api", rate!("10/m")).identifier_async(|parts| {
    ///     Box::pin(async move {
    ///         let token = parts.headers.get("authorization").cloned();
    ///         match token {
    ///             Some(token) => Identity::client(format!("token:{token:?}")),
    ///             None => Identity::client("anonymous"),
    ///         }
    ///     })
    /// });
    /// # let _ = throttle;
    /// ```
    #[must_use]
    pub fn identifier_async<F>(self, identifier: F) -> Self
    where
        F: for<'a> Fn(&'a Parts) -> BoxFuture<'a, Identity> + Send + Sync + 'static,
    {
        self.map(|inner| inner.identifier = Identifier::Async(Arc::new(identifier)))
    }

    /// Each request costs `cost(parts)` instead of the fixed cost.
    #[must_use]
    pub fn cost<F>(self, cost: F) -> Self
    where
        F: Fn(&Parts) -> u64 + Send + Sync + 'static,
    {
        self.map(|inner| inner.cost = Some(Arc::new(cost)))
    }

    /// Each request costs `cost` (default 1; 0 is a free pass).
    #[must_use]
    pub fn fixed_cost(self, cost: u64) -> Self {
        self.map(|inner| {
            inner.cost = None;
        })
        .map_throttle(|t| t.cost(cost))
    }

    /// Uses its own backend instead of the app's.
    #[must_use]
    pub fn backend(self, backend: impl Backend) -> Self {
        self.map_throttle(|t| t.backend(backend))
    }

    /// Uses its own, already shared, backend.
    #[must_use]
    pub fn shared_backend(self, backend: SharedBackend) -> Self {
        self.map_throttle(|t| t.shared_backend(backend))
    }

    /// Takes the backend a middleware put in the request's extensions (a
    /// [`RequestBackend`](crate::RequestBackend)), falling back to the app's: the seed's
    /// `dynamic_backend=True`, for multi-tenant apps.
    #[must_use]
    pub fn dynamic_backend(self, dynamic: bool) -> Self {
        self.map(|inner| inner.dynamic_backend = dynamic)
    }

    /// A throttled request waits at least this long.
    #[must_use]
    pub fn min_wait_period(self, floor: Duration) -> Self {
        self.map_throttle(|t| t.min_wait_period(floor))
    }

    /// Answers backend failures with `policy` instead of the backend's default (see
    /// [`FailurePolicy`]): [`Allow`](FailurePolicy::Allow) lets the request through,
    /// [`Throttle`](FailurePolicy::Throttle) answers it like a throttled one (429 with
    /// `Retry-After`, or the [`on_throttled`](Self::on_throttled) handler's response), and
    /// [`Raise`](FailurePolicy::Raise) answers `503 Service Unavailable`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_axum::HttpThrottle;
    /// use traffik_core::{FailurePolicy, rate};
    ///
    /// let login = HttpThrottle::new("login", rate!("5/m"))
    ///     .on_error(FailurePolicy::Throttle(Duration::from_secs(30)))
    ///     .timeout(Duration::from_millis(100));
    /// assert!(login.throttle().failure_policy().is_some());
    /// ```
    #[must_use]
    pub fn on_error(self, policy: FailurePolicy) -> Self {
        self.map_throttle(|t| t.on_error(policy))
    }

    /// Gives each decision at most `limit` instead of the backend's timeout (250 ms by
    /// default); past it, the failure policy answers.
    #[must_use]
    pub fn timeout(self, limit: Duration) -> Self {
        self.map_throttle(|t| t.timeout(limit))
    }

    /// Shadow mode, for rolling a limit out safely: the throttle decides and reports, but
    /// never rejects. A request over the limit is let through, logged at `info` (uid,
    /// key, wait) and counted ([`shadow_denials`](Self::shadow_denials)); its decision is
    /// marked [`Decision::shadowed`] and still carries the exhausted quota, so the
    /// `RateLimit` headers report it (without `Retry-After`): a [`ThrottleLayer`] adds
    /// them to the response unless the header policy is
    /// [`Never`](crate::HeaderPolicy::Never), and a [`Throttled`](crate::Throttled)
    /// returned from the handler adds them too. WebSocket messages over the limit are
    /// processed. Backend failures never reject either.
    ///
    /// [`ThrottleLayer`]: crate::ThrottleLayer
    ///
    /// ```
    /// use traffik_axum::HttpThrottle;
    /// use traffik_core::rate;
    ///
    /// let candidate = HttpThrottle::new("new_api_limit", rate!("100/m")).shadow(true);
    /// assert!(candidate.is_shadow());
    /// assert_eq!(candidate.shadow_denials(), 0);
    /// ```
    #[must_use]
    pub fn shadow(self, enabled: bool) -> Self {
        self.map_throttle(|t| t.shadow(enabled))
    }

    /// Whether the throttle is in shadow mode.
    pub fn is_shadow(&self) -> bool {
        self.inner.throttle.is_shadow()
    }

    /// How many requests (or WebSocket messages) this throttle let through in shadow mode
    /// that it would otherwise have rejected.
    pub fn shadow_denials(&self) -> u64 {
        self.inner.throttle.shadow_denials()
    }

    /// Answers throttled requests with `handler` instead of the default 429.
    ///
    /// ```
    /// use axum::response::IntoResponse;
    /// use http::StatusCode;
    /// use traffik_axum::HttpThrottle;
    /// use traffik_core::rate;
    ///
    /// let throttle = HttpThrottle::new("api", rate!("100/m")).on_throttled(|_parts, info| {
    ///     let wait = info.decision.retry_after_secs();
    ///     (StatusCode::SERVICE_UNAVAILABLE, format!("busy, come back in {wait}s")).into_response()
    /// });
    /// # let _ = throttle;
    /// ```
    #[must_use]
    pub fn on_throttled<F>(self, handler: F) -> Self
    where
        F: Fn(&Parts, ThrottledInfo<'_>) -> Response + Send + Sync + 'static,
    {
        self.map(|inner| inner.on_throttled = Some(Arc::new(handler)))
    }

    /// Which rate-limit headers to send (default: the app's, see
    /// [`Traffik::headers`](crate::Traffik::headers)).
    #[must_use]
    pub fn headers(self, policy: HeaderPolicy) -> Self {
        self.map(|inner| inner.headers = Some(policy))
    }

    /// What a [`WsThrottle`](crate::WsThrottle) does with a message over the limit
    /// (default: notify the client and keep the connection).
    #[must_use]
    pub fn ws_on_throttled(self, action: WsOnThrottled) -> Self {
        self.map(|inner| inner.ws_on_throttled = action)
    }

    /// Client ids that bypass this throttle.
    #[must_use]
    pub fn exempt<I, S>(self, ids: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.map_throttle(|t| t.exempt(ids))
    }

    /// The throttle's uid.
    pub fn uid(&self) -> &str {
        self.inner.throttle.uid()
    }

    /// The throttle's rate.
    pub fn rate(&self) -> &Rate {
        self.inner.throttle.rate()
    }

    /// The framework-free throttle inside.
    pub fn throttle(&self) -> &Throttle {
        &self.inner.throttle
    }

    /// Checks the configuration as a whole (the cost fits the strategy); call it at
    /// start-up.
    pub fn validate(&self) -> traffik_core::Result<()> {
        self.inner.throttle.validate()
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.inner
    }
}

impl fmt::Debug for HttpThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpThrottle")
            .field("throttle", &self.inner.throttle)
            .field("dynamic_backend", &self.inner.dynamic_backend)
            .field("headers", &self.inner.headers)
            .finish_non_exhaustive()
    }
}

//! [`ThrottleLayer`] and [`MiddlewareThrottle`]: throttles applied across routes, with
//! filters, as a tower layer.

use std::fmt;
use std::sync::Arc;
use std::task::{Context, Poll};

use axum::extract::Request;
use axum::response::{IntoResponse, Response};
use futures_util::future::BoxFuture;
use http::Method;
use http::request::Parts;
use tower_layer::Layer;
use tower_service::Service;
use traffik_core::{Backend, Decision};

use crate::headers::{HeaderPolicy, RateLimitHeaders};
use crate::http_throttle::HttpThrottle;
use crate::state::Traffik;

type Hook = dyn for<'a> Fn(&'a Parts) -> BoxFuture<'a, bool> + Send + Sync;

/// Which paths a [`MiddlewareThrottle`] applies to.
#[derive(Clone, Debug)]
enum PathFilter {
    Prefix(String),
    Regex(regex_lite::Regex),
}

impl PathFilter {
    fn matches(&self, path: &str) -> bool {
        match self {
            PathFilter::Prefix(prefix) => path.starts_with(prefix.as_str()),
            PathFilter::Regex(regex) => regex.is_match(path),
        }
    }
}

/// An [`HttpThrottle`] with the filters that decide which requests it applies to: a path
/// (prefix or regex), a method set and an async hook, combined with AND. The seed's
/// `MiddlewareThrottle`.
///
/// By default a middleware throttle keeps one count per client across every request it
/// applies to (a global `/api/` quota); [`per_route`](Self::per_route) counts each route
/// apart.
///
/// ```
/// use http::Method;
/// use traffik_axum::{HttpThrottle, MiddlewareThrottle};
/// use traffik_core::rate;
///
/// let writes = MiddlewareThrottle::new(HttpThrottle::new("writes", rate!("10/m")))
///     .path("/api/")
///     .methods([Method::POST, Method::PUT, Method::DELETE])
///     .when(|parts| parts.headers.contains_key("authorization"));
/// let admin = MiddlewareThrottle::new(HttpThrottle::new("admin", rate!("5/m")))
///     .path_regex(r"^/admin/.*")?;
/// # let _ = (writes, admin);
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Clone)]
pub struct MiddlewareThrottle {
    throttle: HttpThrottle,
    path: Option<PathFilter>,
    methods: Option<Vec<Method>>,
    hook: Option<Arc<Hook>>,
    per_route: bool,
}

impl MiddlewareThrottle {
    /// Applies `throttle` to every request until filters narrow it.
    pub fn new(throttle: HttpThrottle) -> Self {
        Self {
            throttle,
            path: None,
            methods: None,
            hook: None,
            per_route: false,
        }
    }

    /// Only paths starting with `prefix`.
    #[must_use]
    pub fn path(mut self, prefix: impl Into<String>) -> Self {
        self.path = Some(PathFilter::Prefix(prefix.into()));
        self
    }

    /// Only paths matching `pattern` (a regular expression); an invalid pattern is
    /// [`Error::Configuration`](traffik_core::Error::Configuration), at start-up.
    pub fn path_regex(mut self, pattern: &str) -> traffik_core::Result<Self> {
        let regex = regex_lite::Regex::new(pattern).map_err(|error| {
            traffik_core::Error::Configuration(format!("invalid path pattern {pattern:?}: {error}"))
        })?;
        self.path = Some(PathFilter::Regex(regex));
        Ok(self)
    }

    /// Only these methods.
    #[must_use]
    pub fn methods(mut self, methods: impl IntoIterator<Item = Method>) -> Self {
        self.methods = Some(methods.into_iter().collect());
        self
    }

    /// Only requests for which the async `hook` answers `true`.
    #[must_use]
    pub fn hook<F>(mut self, hook: F) -> Self
    where
        F: for<'a> Fn(&'a Parts) -> BoxFuture<'a, bool> + Send + Sync + 'static,
    {
        self.hook = Some(Arc::new(hook));
        self
    }

    /// Only requests for which `predicate` answers `true` (a synchronous hook).
    #[must_use]
    pub fn when<F>(self, predicate: F) -> Self
    where
        F: Fn(&Parts) -> bool + Send + Sync + 'static,
    {
        self.hook(move |parts| {
            let answer = predicate(parts);
            Box::pin(async move { answer })
        })
    }

    /// Counts each route apart (`http:METHOD:/route` scope) instead of one count per
    /// client for all the requests this throttle applies to.
    #[must_use]
    pub fn per_route(mut self, per_route: bool) -> Self {
        self.per_route = per_route;
        self
    }

    /// The throttle.
    pub fn throttle(&self) -> &HttpThrottle {
        &self.throttle
    }

    async fn applies(&self, parts: &Parts) -> bool {
        if let Some(path) = &self.path {
            if !path.matches(parts.uri.path()) {
                return false;
            }
        }
        if let Some(methods) = &self.methods {
            if !methods.contains(&parts.method) {
                return false;
            }
        }
        match &self.hook {
            Some(hook) => hook(parts).await,
            None => true,
        }
    }
}

impl fmt::Debug for MiddlewareThrottle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MiddlewareThrottle")
            .field("throttle", &self.throttle)
            .field("path", &self.path)
            .field("methods", &self.methods)
            .field("hook", &self.hook.is_some())
            .field("per_route", &self.per_route)
            .finish()
    }
}

/// Applies [`MiddlewareThrottle`]s, in order, to every request through it (WebSocket
/// upgrade requests included): the first denial answers. The seed's `ThrottleMiddleware`.
///
/// ```
/// use axum::{Router, routing::get};
/// use traffik_axum::{HttpThrottle, MiddlewareThrottle, ThrottleLayer, Traffik};
/// use traffik_core::{InMemoryBackend, rate};
///
/// let traffik = Traffik::new(InMemoryBackend::new("api"));
/// let app: Router = Router::new()
///     .route("/api/data", get(|| async { "data" }))
///     .layer(
///         ThrottleLayer::new(traffik.clone())
///             .throttle(MiddlewareThrottle::new(HttpThrottle::new("api_global", rate!("100/m"))).path("/api/")),
///     )
///     .with_state(traffik);
/// ```
#[derive(Clone)]
pub struct ThrottleLayer {
    traffik: Traffik,
    throttles: Arc<Vec<MiddlewareThrottle>>,
}

impl ThrottleLayer {
    /// A layer deciding on `traffik`'s backend, with its defaults (usually the same
    /// `Traffik` as in the app state).
    pub fn new(traffik: Traffik) -> Self {
        Self {
            traffik,
            throttles: Arc::new(Vec::new()),
        }
    }

    /// A layer with a backend of its own.
    pub fn with_backend(backend: impl Backend) -> Self {
        Self::new(Traffik::new(backend))
    }

    /// Adds a throttle, applied after those added before it.
    #[must_use]
    pub fn throttle(mut self, throttle: MiddlewareThrottle) -> Self {
        Arc::make_mut(&mut self.throttles).push(throttle);
        self
    }

    /// Which rate-limit headers to send (default: the `Traffik`'s).
    #[must_use]
    pub fn headers(mut self, policy: HeaderPolicy) -> Self {
        self.traffik = self.traffik.headers(policy);
        self
    }
}

impl fmt::Debug for ThrottleLayer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleLayer")
            .field("throttles", &self.throttles)
            .finish()
    }
}

impl<S> Layer<S> for ThrottleLayer {
    type Service = ThrottleService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        ThrottleService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service a [`ThrottleLayer`] wraps around a route or router.
#[derive(Clone)]
pub struct ThrottleService<S> {
    inner: S,
    layer: ThrottleLayer,
}

impl<S> fmt::Debug for ThrottleService<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ThrottleService")
            .field("layer", &self.layer)
            .finish_non_exhaustive()
    }
}

impl<S> Service<Request> for ThrottleService<S>
where
    S: Service<Request, Response = Response> + Clone + Send + 'static,
    S::Future: Send + 'static,
{
    type Response = Response;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Response, S::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: Request) -> Self::Future {
        // The clone that was driven to readiness serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let layer = self.layer.clone();
        Box::pin(async move {
            let (parts, body) = request.into_parts();
            let mut passed: Vec<(&HttpThrottle, Decision)> = Vec::new();
            for throttle in layer.throttles.iter() {
                if !throttle.applies(&parts).await {
                    continue;
                }
                let scope = if throttle.per_route {
                    crate::enforce::http_scope(&parts)
                } else {
                    String::new()
                };
                match crate::enforce::enforce_in_scope(
                    &throttle.throttle,
                    &parts,
                    &layer.traffik,
                    &scope,
                )
                .await
                {
                    Ok(decision) => passed.push((&throttle.throttle, decision)),
                    Err(rejection) => return Ok(rejection.into_response()),
                }
            }
            let mut response = inner.call(Request::from_parts(parts, body)).await?;
            let mut headers = RateLimitHeaders::new();
            for (throttle, decision) in passed {
                let policy = throttle
                    .inner()
                    .headers
                    .unwrap_or(layer.traffik.header_policy());
                // A shadow throttle's would-be denial is reported like a denial would be:
                // that is what shadow mode is for.
                if policy.includes(decision.shadowed) {
                    headers.push(throttle.uid(), throttle.rate(), &decision);
                }
            }
            headers.apply(HeaderPolicy::Always, response.headers_mut());
            Ok(response)
        })
    }
}

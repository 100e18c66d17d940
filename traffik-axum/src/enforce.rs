//! Judging one request against one [`HttpThrottle`]: identify, scope, pick the backend,
//! decide, answer. The extractor, the layer and `#[throttled]` all go through here.

use axum::extract::MatchedPath;
use axum::response::Response;
use http::request::Parts;
use traffik_core::{Backend, Decision, Identity, SharedBackend};

use crate::headers::default_throttled_response;
use crate::http_throttle::{HttpThrottle, Identifier, ThrottledInfo};
use crate::rejection::ThrottleRejection;
use crate::state::Traffik;

/// A backend chosen per request by a middleware (for example per tenant), for throttles
/// built with [`HttpThrottle::dynamic_backend`]. Insert it into the request's extensions.
///
/// ```
/// use std::sync::Arc;
/// use axum::{extract::Request, middleware::Next, response::Response};
/// use traffik_axum::RequestBackend;
/// use traffik_core::InMemoryBackend;
///
/// async fn tenant_backend(mut request: Request, next: Next) -> Response {
///     let backend = InMemoryBackend::new("tenant_acme");
///     request.extensions_mut().insert(RequestBackend(Arc::new(backend)));
///     next.run(request).await
/// }
/// ```
#[derive(Clone, Debug)]
pub struct RequestBackend(pub SharedBackend);

/// The scope of an HTTP request: `http:{METHOD}:{route}`, with axum's matched route
/// (`/users/{id}`) so that ids do not multiply a client's quota; the raw path only where
/// no route matched. `HEAD` counts as `GET`, since axum answers it with the GET handler.
pub fn http_scope(parts: &Parts) -> String {
    let path = match parts.extensions.get::<MatchedPath>() {
        Some(matched) => matched.as_str(),
        None => parts.uri.path(),
    };
    let method = if parts.method == http::Method::HEAD {
        "GET"
    } else {
        parts.method.as_str()
    };
    let mut scope = String::with_capacity(6 + method.len() + path.len());
    scope.push_str("http:");
    scope.push_str(method);
    scope.push(':');
    scope.push_str(path);
    scope
}

/// Who the request comes from, according to the throttle (or the app's default).
pub(crate) async fn identify(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
) -> Result<Identity, ThrottleRejection> {
    match &throttle.inner().identifier {
        Identifier::Default => traffik
            .client_ip_config()
            .identity(parts)
            .map(Identity::Client)
            .map_err(ThrottleRejection::unknown_client),
        Identifier::Sync(identify) => Ok(identify(parts)),
        Identifier::Async(identify) => Ok(identify(parts).await),
    }
}

/// The backend for this request: the throttle's own, else (for dynamic throttles) the
/// request's, else the app's.
pub(crate) fn select_backend<'a>(
    throttle: &'a HttpThrottle,
    parts: &'a Parts,
    traffik: &'a Traffik,
) -> &'a SharedBackend {
    if let Some(own) = throttle.throttle().own_backend() {
        return own;
    }
    if throttle.inner().dynamic_backend {
        if let Some(RequestBackend(backend)) = parts.extensions.get::<RequestBackend>() {
            return backend;
        }
    }
    traffik.backend()
}

/// Judges one request in `scope`: `Ok` with the decision if it may proceed, or the
/// rejection to answer with.
pub(crate) async fn enforce_in_scope(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
    scope: &str,
) -> Result<Decision, ThrottleRejection> {
    let identity = identify(throttle, parts, traffik).await?;
    if identity.is_exempt() {
        return Ok(Decision::unlimited());
    }
    let inner = throttle.inner();
    let cost = match &inner.cost {
        Some(cost) => cost(parts),
        None => throttle.throttle().default_cost(),
    };
    let backend: &dyn Backend = select_backend(throttle, parts, traffik).as_ref();
    let decision = throttle
        .throttle()
        .hit_with_cost(&identity, scope, cost, backend)
        .await
        .map_err(ThrottleRejection::limiter)?;
    if decision.allowed {
        return Ok(decision);
    }
    Err(ThrottleRejection::throttled(
        decision,
        throttled_response(throttle, parts, traffik, &decision),
    ))
}

/// Judges one HTTP request; see [`enforce_in_scope`].
pub(crate) async fn enforce(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
) -> Result<Decision, ThrottleRejection> {
    enforce_in_scope(throttle, parts, traffik, &http_scope(parts)).await
}

fn throttled_response(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
    decision: &Decision,
) -> Response {
    let inner = throttle.inner();
    match &inner.on_throttled {
        Some(handler) => handler(
            parts,
            ThrottledInfo {
                uid: throttle.uid(),
                rate: throttle.rate(),
                decision,
            },
        ),
        None => default_throttled_response(
            throttle.uid(),
            throttle.rate(),
            decision,
            inner.headers.unwrap_or(traffik.header_policy()),
        ),
    }
}

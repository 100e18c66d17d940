//! Judging one request against one [`HttpThrottle`]: identify, scope, pick the backend,
//! decide, answer. The extractor, the layer and `#[throttled]` all go through here.

use axum::extract::MatchedPath;
use axum::response::Response;
use futures_util::future::BoxFuture;
use http::request::Parts;
use traffik_core::key::KeyText;
use traffik_core::{Backend, Decision, Identity, SharedBackend};

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
    http_scope_pieces(parts).as_ref().concat()
}

/// [`http_scope`] in pieces to be joined: the usual methods' `http:{METHOD}:` prefixes
/// are constants, so both paths write two pieces into the key and join nothing first.
fn http_scope_pieces(parts: &Parts) -> ScopePieces<'_> {
    let path = match parts.extensions.get::<MatchedPath>() {
        Some(matched) => matched.as_str(),
        None => parts.uri.path(),
    };
    let prefix = match parts.method {
        http::Method::GET | http::Method::HEAD => "http:GET:",
        http::Method::POST => "http:POST:",
        http::Method::PUT => "http:PUT:",
        http::Method::DELETE => "http:DELETE:",
        http::Method::PATCH => "http:PATCH:",
        ref other => {
            return ScopePieces {
                pieces: ["http:", other.as_str(), ":", path],
                len: 4,
            };
        }
    };
    ScopePieces {
        pieces: [prefix, path, "", ""],
        len: 2,
    }
}

/// The pieces of a request's scope: the first `len` of `pieces`. Only those are handed
/// to the key writer, which would otherwise step over the unused ones on every request.
struct ScopePieces<'a> {
    pieces: [&'a str; 4],
    len: usize,
}

impl<'a> AsRef<[&'a str]> for ScopePieces<'a> {
    fn as_ref(&self) -> &[&'a str] {
        &self.pieces[..self.len]
    }
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
    match enforce_now(throttle, parts, traffik, || [scope]) {
        Now::Admitted(decision) => Ok(decision),
        Now::Judged(judged) => judged,
        Now::Awaiting(decided) => decided.await,
        Now::Untried => Box::pin(enforce_awaited(throttle, parts, traffik, &[scope])).await,
    }
}

/// The awaited half of [`enforce_in_scope`], for what [`enforce_now`] left alone: an
/// asynchronous identifier, or a backend that does not decide in place. `scope` is given
/// in pieces, joined in the key.
///
/// Its callers box it. Its state (the key, the address, the backend's future: over a
/// kilobyte) would otherwise be part of every caller's future, and so of the future axum
/// boxes for each request, in memory too, where this path is never taken: a box past
/// the allocator's per-thread cache (1 KiB in glibc) costs a slower allocation and a
/// copy on every request.
async fn enforce_awaited(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
    scope: &[&str],
) -> Result<Decision, ThrottleRejection> {
    let mut address = None;
    let id = match identify_now(throttle, parts, traffik, &mut address) {
        Some(known) => known?,
        None => match identify(throttle, parts, traffik).await? {
            Identity::Client(id) => Some(ClientId::Named(id)),
            Identity::Exempt => None,
        },
    };
    let Some(id) = id else {
        return Ok(Decision::unlimited());
    };
    let backend: &dyn Backend = select_backend(throttle, parts, traffik).as_ref();
    let mut key = KeyText::new();
    let decided = throttle
        .throttle()
        .hit_client_keyed(
            id.as_str(),
            scope,
            cost_of(throttle, parts),
            backend,
            &mut key,
        )
        .await;
    judge(throttle, parts, traffik, decided)
}

/// What [`enforce_now`] came to.
pub(crate) enum Now<'a> {
    /// Admitted in one synchronous step, the usual outcome. A variant of its own, so that
    /// it is returned as it is rather than through a temporary the size of a rejection.
    Admitted(Decision),
    /// Judged in one synchronous step: refused, or admitted by the failure policy.
    Judged(Result<Decision, ThrottleRejection>),
    /// The backend must be awaited: this future finishes the decision with the key and
    /// the identity already worked out (boxed, as [`enforce_awaited`] is, and for the
    /// same reason).
    Awaiting(BoxFuture<'a, Result<Decision, ThrottleRejection>>),
    /// Nothing done: an asynchronous identifier, or a backend that never answers without
    /// I/O. [`enforce_awaited`] does it all.
    Untried,
}

/// [`enforce_in_scope`] in one synchronous step, when the client is identified without
/// awaiting (the default identifier or a synchronous one) and the backend answers without
/// I/O ([`Throttle::try_hit_at_once_joined`](traffik_core::Throttle::try_hit_at_once_joined)):
/// the in-memory path, with no future and no allocation, and a denial the Redis backend's
/// denial cache remembers. When such a backend must be asked after all, the future that
/// asks it. [`Now::Untried`], having done nothing, for any other identifier or backend.
/// `scope` gives the scope's pieces, joined in the key; it is called only when the
/// backend may answer at once.
pub(crate) fn enforce_now<'a, S: AsRef<[&'a str]> + Send + 'a>(
    throttle: &'a HttpThrottle,
    parts: &'a Parts,
    traffik: &'a Traffik,
    scope: impl FnOnce() -> S,
) -> Now<'a> {
    let backend: &dyn Backend = select_backend(throttle, parts, traffik).as_ref();
    let core = throttle.throttle();
    if !core.may_decide_at_once(backend) {
        return Now::Untried;
    }
    let scope = scope();
    let mut address = None;
    let id = match identify_now(throttle, parts, traffik, &mut address) {
        Some(Ok(Some(id))) => id,
        Some(Ok(None)) => return Now::Judged(Ok(Decision::unlimited())),
        Some(Err(rejection)) => return Now::Judged(Err(rejection)),
        None => return Now::Untried,
    };
    let cost = cost_of(throttle, parts);
    let mut key = KeyText::new();
    if let Some(decided) =
        core.try_hit_at_once_joined(id.as_str(), scope.as_ref(), cost, backend, &mut key)
    {
        return match decided {
            Ok(decision) if decision.allowed => Now::Admitted(decision),
            refused => Now::Judged(judge_refused(throttle, parts, traffik, refused)),
        };
    }
    Now::Awaiting(await_backend(
        throttle,
        parts,
        traffik,
        id.as_str(),
        scope,
        cost,
        key,
    ))
}

/// The future [`enforce_now`] hands back when the backend must be asked after all (the
/// Redis backend past its denial cache), with the key already written. Out of line and
/// cold: building it is no part of the in-memory path, whose code it would spread.
#[cold]
#[inline(never)]
fn await_backend<'a, S: AsRef<[&'a str]> + Send + 'a>(
    throttle: &'a HttpThrottle,
    parts: &'a Parts,
    traffik: &'a Traffik,
    id: &str,
    scope: S,
    cost: u64,
    mut key: KeyText,
) -> BoxFuture<'a, Result<Decision, ThrottleRejection>> {
    // The identity may live in the caller's stack: the future keeps its own copy.
    let mut id_text = KeyText::new();
    id_text.push_str(id);
    let core = throttle.throttle();
    let backend: &dyn Backend = select_backend(throttle, parts, traffik).as_ref();
    Box::pin(async move {
        let decided = core
            .hit_client_keyed(id_text.as_str(), scope.as_ref(), cost, backend, &mut key)
            .await;
        judge(throttle, parts, traffik, decided)
    })
}

/// A client's identity as a key names it.
enum ClientId<'a> {
    /// An address: borrowed from a proxy header, or written into the caller's buffer.
    Address(&'a str),
    /// What an identifier named.
    Named(String),
}

impl ClientId<'_> {
    fn as_str(&self) -> &str {
        match self {
            ClientId::Address(text) => text,
            ClientId::Named(name) => name,
        }
    }
}

/// [`identify`] when it needs no awaiting (the default identifier, a synchronous one):
/// the client, or `Ok(None)` for an exempt one. `None` for an asynchronous identifier.
/// An address is written into a buffer put in `address`, on the caller's stack, unless
/// a proxy header holds it as
/// [`ClientIpConfig::identity_of`](crate::client_ip::ClientIpConfig::identity_of) would
/// write it.
fn identify_now<'a>(
    throttle: &HttpThrottle,
    parts: &'a Parts,
    traffik: &Traffik,
    address: &'a mut Option<KeyText>,
) -> Option<Result<Option<ClientId<'a>>, ThrottleRejection>> {
    match &throttle.inner().identifier {
        Identifier::Default => Some(
            match traffik.client_ip_config().identity_text(parts, address) {
                Ok(text) => Ok(Some(ClientId::Address(text))),
                Err(error) => Err(ThrottleRejection::unknown_client(error)),
            },
        ),
        Identifier::Sync(identify) => Some(Ok(match identify(parts) {
            Identity::Client(id) => Some(ClientId::Named(id)),
            Identity::Exempt => None,
        })),
        Identifier::Async(_) => None,
    }
}

/// The cost of this request under `throttle`.
fn cost_of(throttle: &HttpThrottle, parts: &Parts) -> u64 {
    match &throttle.inner().cost {
        Some(cost) => cost(parts),
        None => throttle.throttle().default_cost(),
    }
}

/// What a decision comes to: the decision if the request may proceed, else the
/// rejection (429, or the error's answer). Inline, so that an admitted decision is written
/// straight into the caller's result; the rest is [`judge_refused`].
// The rejection holds the response itself, as `enforce_in_scope`'s does; boxing it would
// allocate once more per denial.
#[allow(clippy::result_large_err)]
#[inline]
fn judge(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
    decided: traffik_core::Result<Decision>,
) -> Result<Decision, ThrottleRejection> {
    match decided {
        Ok(decision) if decision.allowed => Ok(decision),
        refused => judge_refused(throttle, parts, traffik, refused),
    }
}

/// [`judge`] for a denied or failed decision.
#[allow(clippy::result_large_err)]
#[inline(never)]
fn judge_refused(
    throttle: &HttpThrottle,
    parts: &Parts,
    traffik: &Traffik,
    decided: traffik_core::Result<Decision>,
) -> Result<Decision, ThrottleRejection> {
    let decision = decided.map_err(ThrottleRejection::limiter)?;
    if decision.allowed {
        return Ok(decision);
    }
    Err(ThrottleRejection::throttled(
        decision,
        throttled_response(throttle, parts, traffik, &decision),
    ))
}

/// [`enforce_now`] for one HTTP request in its route's scope (built on the stack).
pub(crate) fn enforce_http_now<'a>(
    throttle: &'a HttpThrottle,
    parts: &'a Parts,
    traffik: &'a Traffik,
) -> Now<'a> {
    enforce_now(throttle, parts, traffik, || http_scope_pieces(parts))
}

/// The awaited path for one HTTP request in its route's scope, for a request
/// [`enforce_http_now`] left alone. Called after it, not instead: it does not try the
/// synchronous path again. Boxed: see [`enforce_awaited`]. The scope's pieces are written
/// into the key, as on the synchronous path (joining them first cost a Redis request
/// about 260 instructions).
pub(crate) fn enforce_http_awaited<'a>(
    throttle: &'a HttpThrottle,
    parts: &'a Parts,
    traffik: &'a Traffik,
) -> BoxFuture<'a, Result<Decision, ThrottleRejection>> {
    Box::pin(async move {
        let scope = http_scope_pieces(parts);
        enforce_awaited(throttle, parts, traffik, scope.as_ref()).await
    })
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
        None => inner.denials.response(
            throttle.uid(),
            throttle.rate(),
            decision,
            &inner.policy_field,
            inner.headers.unwrap_or(traffik.header_policy()),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(method: &str, path: &str) -> Parts {
        let request = http::Request::builder()
            .method(method)
            .uri(path)
            .body(())
            .expect("a valid request");
        request.into_parts().0
    }

    /// The extractor's future is part of the future axum boxes for every request. It
    /// must not carry the awaited path's state (key, address, a backend's future: over a
    /// kilobyte), which the in-memory path never uses: with it, the box of a plain
    /// handler passed glibc's per-thread cache (1 032 bytes) and cost every request a
    /// slow allocation and a copy. Nor the synchronous step's outcome (a rejection holds
    /// a response: 248 bytes in all): only the boxed future is held across the await.
    #[test]
    fn the_extractors_future_leaves_the_awaited_path_boxed() {
        use axum::extract::FromRequestParts;

        crate::throttle!(Limit = HttpThrottle::new("size", "10/m"));
        let (mut parts, ()) = http::Request::new(()).into_parts();
        let traffik = Traffik::new(traffik_core::InMemoryBackend::new("size"));
        let extract = <crate::Throttled<Limit> as FromRequestParts<Traffik>>::from_request_parts(
            &mut parts, &traffik,
        );
        let size = std::mem::size_of_val(&extract);
        assert!(size <= 160, "{size} bytes");
    }

    #[test]
    fn scope_names_the_method_and_path() {
        for (method, scope) in [
            ("GET", "http:GET:/items/7"),
            ("HEAD", "http:GET:/items/7"),
            ("POST", "http:POST:/items/7"),
            ("PUT", "http:PUT:/items/7"),
            ("DELETE", "http:DELETE:/items/7"),
            ("PATCH", "http:PATCH:/items/7"),
            ("OPTIONS", "http:OPTIONS:/items/7"),
            ("PURGE", "http:PURGE:/items/7"),
        ] {
            assert_eq!(http_scope(&parts(method, "/items/7?page=2")), scope);
        }
    }
}

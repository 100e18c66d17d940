//! [`Throttled<T>`]: the extractor that throttles a handler, and the [`throttle!`] macro
//! that declares the throttles it names.

use std::any::Any;
use std::borrow::Cow;
use std::fmt;
use std::marker::PhantomData;

use axum::extract::{FromRef, FromRequestParts};
use axum::response::{IntoResponseParts, ResponseParts};
use futures_util::future::BoxFuture;
use http::request::Parts;
use traffik_core::Decision;

use crate::enforce::Now;
use crate::headers::HeaderPolicy;
use crate::http_throttle::HttpThrottle;
use crate::rejection::ThrottleRejection;
use crate::state::Traffik;

/// Where a [`Throttled<T>`] finds its throttle: implemented by the types
/// [`throttle!`](crate::throttle!) declares.
pub trait ThrottleSource<S>: 'static {
    /// The throttle, from the app state `state`: borrowed when it is built once for the
    /// whole program (an initializer given to `throttle!`), owned when it comes from the
    /// state.
    fn http_throttle(state: &S) -> Cow<'static, HttpThrottle>;
}

/// Throttles a handler: the axum twin of FastAPI's `Depends(throttle)`.
///
/// `T` names a throttle declared with [`throttle!`](crate::throttle!). The extractor
/// identifies the client, decides on the app's backend ([`Traffik`] in the state), and
/// either lets the handler run or answers 429 with `Retry-After` and `RateLimit` headers.
/// Several `Throttled<_>` on one handler all apply, in order; the first denial answers.
///
/// Returned from the handler (it implements `IntoResponseParts`), it adds the
/// `RateLimit` headers of its decision to the response.
///
/// ```
/// use axum::{Router, routing::get};
/// use traffik_axum::{HttpThrottle, Throttled, Traffik, throttle};
/// use traffik_core::InMemoryBackend;
///
/// throttle!(ApiLimit = HttpThrottle::new("api", "10/m"));
///
/// async fn data(limit: Throttled<ApiLimit>) -> (Throttled<ApiLimit>, &'static str) {
///     (limit, "ok")
/// }
///
/// let app: Router = Router::new()
///     .route("/api/data", get(data))
///     .with_state(Traffik::new(InMemoryBackend::new("app")));
/// ```
pub struct Throttled<T> {
    throttle: Cow<'static, HttpThrottle>,
    decision: Decision,
    headers: HeaderPolicy,
    _source: PhantomData<fn() -> T>,
}

impl<T> Throttled<T> {
    /// The decision that let the request through (`remaining`, `reset`...).
    pub fn decision(&self) -> &Decision {
        &self.decision
    }

    /// The throttle that decided.
    pub fn throttle(&self) -> &HttpThrottle {
        &self.throttle
    }
}

impl<T> fmt::Debug for Throttled<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Throttled")
            .field("uid", &self.throttle.uid())
            .field("decision", &self.decision)
            .finish()
    }
}

impl<S, T> FromRequestParts<S> for Throttled<T>
where
    S: Send + Sync + 'static,
    T: ThrottleSource<S>,
    Traffik: FromRef<S>,
{
    type Rejection = ThrottleRejection;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        // The app's state is the `Traffik` itself (the usual case): borrowed, not cloned,
        // which would cost two atomic operations on its count per request. Any other
        // state hands over its `Traffik` through `FromRef`.
        let traffik: Cow<'_, Traffik> = match (state as &dyn Any).downcast_ref::<Traffik>() {
            Some(traffik) => Cow::Borrowed(traffik),
            None => Cow::Owned(Traffik::from_ref(state)),
        };
        let throttle = T::http_throttle(state);
        // In memory (or from a denial cache), decided in one synchronous step, before any
        // future is built; otherwise awaited. Only the boxed future is held across the
        // await: the synchronous outcome (a rejection holds a whole response) would
        // otherwise be part of this future, and so of the one axum boxes per request.
        let decision = {
            let step = match crate::enforce::enforce_http_now(&throttle, parts, &traffik) {
                Now::Admitted(decision) | Now::Judged(Ok(decision)) => Step::Decided(decision),
                Now::Judged(Err(rejection)) => return Err(rejection),
                Now::Awaiting(decided) => Step::Pending(decided),
                Now::Untried => Step::Pending(crate::enforce::enforce_http_awaited(
                    &throttle, parts, &traffik,
                )),
            };
            match step {
                Step::Decided(decision) => decision,
                Step::Pending(pending) => pending.await?,
            }
        };
        let headers = throttle.inner().headers.unwrap_or(traffik.header_policy());
        Ok(Self {
            throttle,
            decision,
            headers,
            _source: PhantomData,
        })
    }
}

/// Where the extractor's synchronous step left a request that may proceed.
enum Step<'a> {
    /// Admitted.
    Decided(Decision),
    /// To be decided by this future.
    Pending(BoxFuture<'a, Result<Decision, ThrottleRejection>>),
}

impl<T> IntoResponseParts for Throttled<T> {
    type Error = std::convert::Infallible;

    fn into_response_parts(self, mut res: ResponseParts) -> Result<ResponseParts, Self::Error> {
        if self.headers != HeaderPolicy::Never {
            crate::headers::append_headers(
                res.headers_mut(),
                self.throttle.uid(),
                self.throttle.rate(),
                &self.decision,
            );
        }
        Ok(res)
    }
}

/// Declares a throttle as a type, for [`Throttled<T>`], `ThrottleLayer` and
/// `#[throttled]`.
///
/// With an initializer, the throttle is built once, on first use, and shared; a rate
/// written as a string literal is checked at compile time:
///
/// ```
/// use traffik_axum::{HttpThrottle, throttle};
/// use traffik_core::TokenBucket;
///
/// throttle!(pub ApiLimit = HttpThrottle::new("api", "10/m"));
/// throttle!(Burst = HttpThrottle::new("burst", "5/s").strategy(TokenBucket::with_burst(10)));
/// ```
///
/// ```compile_fail
/// use traffik_axum::{HttpThrottle, throttle};
///
/// throttle!(Broken = HttpThrottle::new("api", "10/mins")); // unknown unit: compile error
/// ```
///
/// Without one, it declares a newtype around an [`HttpThrottle`] built at start-up (for
/// a rate from configuration) and kept in the app state, reached through `FromRef`:
///
/// ```
/// use axum::extract::FromRef;
/// use traffik_axum::{HttpThrottle, Traffik, throttle};
/// use traffik_core::InMemoryBackend;
///
/// throttle!(pub ConfiguredLimit);
///
/// #[derive(Clone)]
/// struct AppState {
///     traffik: Traffik,
///     limit: ConfiguredLimit,
/// }
///
/// // `#[derive(FromRef)]` (axum's `macros` feature) writes these two impls.
/// impl FromRef<AppState> for Traffik {
///     fn from_ref(state: &AppState) -> Self {
///         state.traffik.clone()
///     }
/// }
/// impl FromRef<AppState> for ConfiguredLimit {
///     fn from_ref(state: &AppState) -> Self {
///         state.limit.clone()
///     }
/// }
///
/// # fn main() -> Result<(), traffik_core::Error> {
/// let rate_from_config = "100/h";
/// let state = AppState {
///     traffik: Traffik::new(InMemoryBackend::new("app")),
///     limit: ConfiguredLimit(HttpThrottle::parse("configured", rate_from_config)?),
/// };
/// # let _ = state; Ok(()) }
/// ```
#[macro_export]
macro_rules! throttle {
    ($(#[$meta:meta])* $vis:vis $name:ident = HttpThrottle::new($uid:expr, $rate:literal $(,)?) $($rest:tt)*) => {
        $crate::throttle!(@static $(#[$meta])* $vis $name =
            HttpThrottle::new($uid, $crate::core::rate!($rate)) $($rest)*);
    };
    ($(#[$meta:meta])* $vis:vis $name:ident = $init:expr) => {
        $crate::throttle!(@static $(#[$meta])* $vis $name = $init);
    };
    (@static $(#[$meta:meta])* $vis:vis $name:ident = $init:expr) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, Default)]
        $vis struct $name;

        impl $name {
            /// The throttle, built on first use.
            $vis fn get() -> &'static $crate::HttpThrottle {
                static THROTTLE: ::std::sync::OnceLock<$crate::HttpThrottle> =
                    ::std::sync::OnceLock::new();
                THROTTLE.get_or_init(|| $init)
            }
        }

        impl<S> $crate::ThrottleSource<S> for $name {
            fn http_throttle(_state: &S) -> ::std::borrow::Cow<'static, $crate::HttpThrottle> {
                ::std::borrow::Cow::Borrowed($name::get())
            }
        }
    };
    ($(#[$meta:meta])* $vis:vis $name:ident) => {
        $(#[$meta])*
        #[derive(Debug, Clone)]
        $vis struct $name(pub $crate::HttpThrottle);

        impl<S> $crate::ThrottleSource<S> for $name
        where
            $name: $crate::__private::FromRef<S>,
        {
            fn http_throttle(state: &S) -> ::std::borrow::Cow<'static, $crate::HttpThrottle> {
                ::std::borrow::Cow::Owned(<$name as $crate::__private::FromRef<S>>::from_ref(state).0)
            }
        }
    };
}

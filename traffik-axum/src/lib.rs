//! axum integration for Traffik.
//!
//! - [`Traffik`] in the app state holds the backend and app-wide defaults.
//! - [`throttle!`] declares a throttle as a type; [`Throttled<T>`] applies it to a handler,
//!   the axum twin of FastAPI's `Depends(throttle)`.
//! - [`ThrottleLayer`] applies [`MiddlewareThrottle`]s across routes, with path, method
//!   and hook filters.
//! - [`WsThrottle<T>`] throttles WebSocket messages per client.
//! - Denials answer 429 with `Retry-After` and the IETF `RateLimit` fields, or whatever
//!   an [`HttpThrottle::on_throttled`] handler returns.
//!
//! ```
//! use axum::{Router, routing::get};
//! use traffik_axum::{HttpThrottle, Throttled, Traffik, throttle};
//! use traffik_core::InMemoryBackend;
//!
//! throttle!(BasicLimit = HttpThrottle::new("basic_limit", "5/10s"));
//!
//! async fn data(_: Throttled<BasicLimit>) -> &'static str {
//!     "Success"
//! }
//!
//! let app: Router = Router::new()
//!     .route("/api/data", get(data))
//!     .with_state(Traffik::new(InMemoryBackend::new("myapp")));
//! ```
//!
//! Clients are identified by their socket peer address by default, so serve the app with
//! `into_make_service_with_connect_info::<SocketAddr>()`.

#![warn(missing_docs)]

pub mod client_ip;
mod denial_response;
mod enforce;
mod extract;
mod header_lookup;
pub mod headers;
mod http_throttle;
mod ip_text;
mod layer;
mod rejection;
mod state;
mod trusted_nets;
mod ws;

pub use traffik_core as core;

pub use client_ip::{ClientIpConfig, ClientIpError};
pub use enforce::{RequestBackend, http_scope};
pub use extract::{ThrottleSource, Throttled};
pub use headers::HeaderPolicy;
pub use http_throttle::{HttpThrottle, ThrottledInfo};
pub use layer::{MiddlewareThrottle, ThrottleLayer, ThrottleService};
pub use rejection::ThrottleRejection;
pub use state::{ServeError, Traffik};
pub use ws::{WsOnThrottled, WsThrottle, WsVerdict};

#[doc(hidden)]
pub mod __private {
    pub use axum::extract::FromRef;
}

//! Per-user rate limiting: a quota per authenticated user rather than per IP address.
//!
//! The twin of the seed README's "More on Usage, Per-User Rate Limiting": the throttle
//! `user_quota` admits 1000 requests per hour to each user, whoever's network they come
//! from. Its identifier reads the user from the `Authorization: Bearer <user>` header;
//! requests without one are counted per client IP address instead.
//!
//! **This demo takes the bearer token itself as the user name.** A real app verifies the
//! token first (a JWT's signature and expiry, or a session lookup) and uses the verified
//! user id (the JWT's `sub` claim): an identifier that trusts unverified input lets a
//! client pick a fresh quota with every request. Verification that needs I/O belongs in
//! [`HttpThrottle::identifier_async`].
//!
//! The handler returns its [`Throttled<T>`], so every response carries the user's
//! remaining quota in the `RateLimit` header.
//!
//! ```sh
//! cargo run --example per_user
//! curl -i -H 'Authorization: Bearer alice' http://127.0.0.1:3000/api/data
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use std::net::SocketAddr;

use axum::extract::ConnectInfo;
use axum::http::HeaderMap;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;

throttle!(UserQuota = HttpThrottle::new("user_quota", "1000/h").identifier(user_identifier));

/// The user named by an `Authorization: Bearer <user>` header.
///
/// A real app verifies the token here and returns the user id it proves.
fn bearer_user(headers: &HeaderMap) -> Option<&str> {
    let value = headers.get(AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// The seed's `user_identifier`: `user:<id>` for an authenticated request, `ip:<address>`
/// for an anonymous one.
fn user_identifier(parts: &Parts) -> Identity {
    if let Some(user) = bearer_user(&parts.headers) {
        return Identity::client(format!("user:{user}"));
    }
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => Identity::client(format!("ip:{}", peer.ip())),
        None => Identity::client("anonymous"),
    }
}

/// `GET /api/data`: the data, and the user's remaining quota (in the body and in the
/// `RateLimit` header).
async fn get_data(quota: Throttled<UserQuota>) -> (Throttled<UserQuota>, Json<Value>) {
    let remaining = quota.decision().remaining;
    (
        quota,
        Json(json!({ "data": "value", "remaining": remaining })),
    )
}

/// The app, deciding on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/data", get(get_data))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("api"));

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/data as `Bearer alice`");

    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

//! Redis: `GET /api/limited`, five requests a minute per client, shared by every process.
//!
//! The twin of the seed README's "Quick Start Guide, 3. Using Decorators": a Redis
//! backend (namespace `api`, persistent) and a handler throttled with `#[throttled("5/m")]`.
//! Every app process pointed at the same Redis shares the limit: each decision is one Lua
//! script call, atomic on the server and judged by the server's clock.
//!
//! ```sh
//! redis-server &    # or any Redis 7
//! cargo run --example redis --features redis
//! curl -i http://127.0.0.1:3000/api/limited    # six times
//! ```
//!
//! `TRAFFIK_REDIS_URL` picks the server (default `redis://127.0.0.1:6379/0`) and
//! `TRAFFIK_ADDR` the address (default `127.0.0.1:3000`).
//!
//! `TRAFFIK_ON_ERROR` says what to answer when Redis fails (is down, or takes longer than
//! 250 ms to decide): `raise` (the default: `503 Service Unavailable`), `allow` (fail
//! open: the request goes through), `throttle` (fail closed: `429` with
//! `Retry-After: 5`) or `throttle:<wait>` such as `throttle:30s`.
//!
//! ```sh
//! TRAFFIK_ON_ERROR=allow cargo run --example redis --features redis
//! redis-cli shutdown nosave    # requests keep being answered, with 200
//! ```

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;
use traffik::{FailurePolicy, RedisBackend};

/// `GET /api/limited`: at most 5 requests a minute per client, across every process.
#[throttled("5/m")]
async fn limited_endpoint() -> Json<Value> {
    Json(json!({ "data": "Limited access" }))
}

/// The example's backend: Redis at `url`, namespace `api`, persistent, answering Redis
/// failures with `on_error`.
pub fn backend(url: &str, on_error: FailurePolicy) -> Result<RedisBackend, Error> {
    // The seed's `RedisBackend(connection=..., namespace="api", persistent=True)`: the
    // counters survive a restart of the app.
    RedisBackend::builder("api")
        .url(url)
        .persistent(true)
        .on_error(on_error)
        .build()
}

/// The app, deciding on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/limited", get(limited_endpoint))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let url = std::env::var("TRAFFIK_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let on_error = FailurePolicy::from_env("TRAFFIK_ON_ERROR")?;
    tracing::info!(?on_error, "answering Redis failures with this policy");
    let traffik = Traffik::new(backend(&url, on_error)?);

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, redis = %url, "try GET /api/limited");

    // The seed's lifespan: initialize the backend (connects to Redis), serve, close it.
    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

//! Memcached: `GET /api/data`, five requests per ten seconds per client, shared by every
//! process on the same memcached.
//!
//! The quick start on the seed README's "Memcached Backend": `MemcachedBackend` with a
//! host, a port, a namespace and a pool of ten connections. A fixed-window decision is
//! one `ma` (increment, creating the counter when missing) on the server; the other
//! strategies run a compare-and-swap loop.
//!
//! ```sh
//! memcached -d -l 127.0.0.1 -p 11211    # or any memcached 1.6
//! cargo run --example memcached --features memcached
//! curl -i http://127.0.0.1:3000/api/data    # six times
//! ```
//!
//! `TRAFFIK_MEMCACHED_URL` picks the server (default `127.0.0.1:11211`) and `TRAFFIK_ADDR`
//! the address (default `127.0.0.1:3000`).
//!
//! `TRAFFIK_ON_ERROR` says what to answer when memcached fails (is down, or takes longer
//! than 250 ms to decide): `raise` (the default: `503 Service Unavailable`), `allow` (fail
//! open: the request goes through), `throttle` (fail closed: `429` with `Retry-After: 5`)
//! or `throttle:<wait>` such as `throttle:30s`.

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;
use traffik::{FailurePolicy, MemcachedBackend};

throttle!(BasicLimit = HttpThrottle::new("basic_limit", "5/10s"));

/// `GET /api/data`: runs only when the client is within its limit.
async fn throttled_endpoint(_: Throttled<BasicLimit>) -> Json<Value> {
    Json(json!({ "message": "Success" }))
}

/// The app, deciding on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/data", get(throttled_endpoint))
        .with_state(traffik)
}

/// The seed's `MemcachedBackend(host=..., port=..., namespace="myapp", pool_size=10)`,
/// answering memcached failures with `on_error`.
pub fn backend(
    url: &str,
    namespace: &str,
    on_error: FailurePolicy,
) -> traffik::Result<MemcachedBackend> {
    MemcachedBackend::builder(namespace)
        .url(url)
        .pool_size(10)
        .on_error(on_error)
        .build()
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let url =
        std::env::var("TRAFFIK_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".to_owned());
    let on_error = FailurePolicy::from_env("TRAFFIK_ON_ERROR")?;
    tracing::info!(?on_error, "answering memcached failures with this policy");
    let traffik = Traffik::new(backend(&url, "myapp", on_error)?);

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, memcached = %url, "try GET /api/data");

    // Initialize the backend (checks that memcached answers), serve, close it.
    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

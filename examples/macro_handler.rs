//! `#[throttled]` on a handler: the twin of the seed README's Quick Start 3, "Using
//! Decorators".
//!
//! `GET /api/limited` answers `{"data":"Limited access"}` at most five times a minute per
//! client; the sixth request within the minute gets `429 Too Many Requests` with
//! `Retry-After` and the `RateLimit` headers. The rate is checked at compile time:
//! `#[throttled("5/mins")]` does not compile, and says `did you mean "5/min"?`.
//!
//! The seed's decorator stacks on a route; in axum the attribute sits on the handler and
//! turns into a `Throttled<_>` argument, so the limit is decided before the handler's
//! own extractors run. The backend comes from the app state, as for any `Throttled<_>`:
//! an in-memory backend in the namespace `api` by default or, as in the seed, Redis when
//! the `redis` feature is on and `TRAFFIK_REDIS_URL` is set. Nothing in the handler
//! changes.
//!
//! ```sh
//! cargo run --example macro_handler
//! curl -i http://127.0.0.1:3000/api/limited    # six times
//! TRAFFIK_REDIS_URL=redis://localhost:6379/0 cargo run --example macro_handler --features redis
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;

/// `GET /api/limited`: the seed's `@throttled(HTTPThrottle(uid="limited", rate="5/m"))`.
#[throttled("5/m", uid = "limited")]
pub async fn limited_endpoint() -> Json<Value> {
    Json(json!({ "data": "Limited access" }))
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

    let traffik = traffik_from_env()?;

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/limited");

    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

/// Redis when the `redis` feature is on and `TRAFFIK_REDIS_URL` is set, else in memory.
fn traffik_from_env() -> Result<Traffik, traffik::Error> {
    #[cfg(feature = "redis")]
    if let Ok(url) = std::env::var("TRAFFIK_REDIS_URL") {
        // The seed's `RedisBackend(connection=..., namespace="api", persistent=True)`.
        let backend = traffik::RedisBackend::builder("api")
            .url(url)
            .persistent(true)
            .build()?;
        tracing::info!("deciding on Redis");
        return Ok(Traffik::new(backend));
    }
    Ok(Traffik::new(InMemoryBackend::new("api")))
}

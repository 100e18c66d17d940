//! Quick start: `GET /api/data`, five requests per ten seconds per client.
//!
//! The twin of the seed README's "Quick Start Guide, 1. Basic HTTP Throttling with
//! Starlette": an in-memory backend (namespace `myapp`, not persistent), one throttle
//! `basic_limit` of `5/10s`, and an endpoint answering `{"message":"Success"}`.
//!
//! Clients are told apart by their IP address, so the app is served with
//! `into_make_service_with_connect_info::<SocketAddr>()`. The sixth request within ten
//! seconds gets `429 Too Many Requests`, `Retry-After` and the `RateLimit` headers.
//!
//! ```sh
//! cargo run --example quickstart
//! curl -i http://127.0.0.1:3000/api/data    # six times
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;

// The rate literal is checked at compile time: `"5/10sec"` compiles, `"5/10 fortnights"`
// does not.
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

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    // The seed's `InMemoryBackend(namespace="myapp", persistent=False)`: its counters are
    // dropped when the app stops.
    let backend = InMemoryBackend::builder("myapp").persistent(false).build();
    let traffik = Traffik::new(backend);

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/data");

    // The seed's `lifespan=backend.lifespan`: initialize the backend, serve, close it.
    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

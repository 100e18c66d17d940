//! Multiple rate limits on one endpoint: a burst limit and a sustained limit.
//!
//! The twin of the seed README's "More on Usage, Multiple Rate Limits per Endpoint":
//! `GET /api/data` admits at most 10 requests per minute (`burst`) and 100 per hour
//! (`sustained`) per client. In FastAPI that is two `Depends`; in axum, two
//! [`Throttled<T>`] arguments. They run in order: a request the burst limit denies is
//! answered `429` at once and does not count against the sustained limit; a request the
//! sustained limit denies has already counted against the burst limit.
//!
//! The handler also returns both extractors, which adds their `RateLimit-Policy` and
//! `RateLimit` headers to the `200` response, so clients see both quotas:
//!
//! ```text
//! RateLimit-Policy: "burst";q=10;w=60, "sustained";q=100;w=3600
//! RateLimit: "burst";r=9;t=60, "sustained";r=99;t=3600
//! ```
//!
//! ```sh
//! cargo run --example multiple_limits
//! curl -i http://127.0.0.1:3000/api/data
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;

// Burst limit: 10 per minute.
throttle!(BurstLimit = HttpThrottle::new("burst", "10/m"));
// Sustained limit: 100 per hour.
throttle!(SustainedLimit = HttpThrottle::new("sustained", "100/h"));

/// `GET /api/data`, under both limits.
async fn get_data(
    burst: Throttled<BurstLimit>,
    sustained: Throttled<SustainedLimit>,
) -> (
    Throttled<BurstLimit>,
    Throttled<SustainedLimit>,
    Json<Value>,
) {
    (burst, sustained, Json(json!({ "data": "value" })))
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
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/data");

    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

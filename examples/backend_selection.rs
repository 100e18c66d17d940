//! Choosing a throttle's backend: the twin of the seed README's "Throttle Backend
//! Selection".
//!
//! Most throttles use the app's backend, the one in the [`Traffik`] state (the seed's
//! lifespan backend). A throttle may carry its own instead; it then ignores the app's
//! backend entirely, and, being built once, keeps its state for as long as the process
//! runs (here: a separate in-memory store, in a real deployment perhaps another Redis).
//!
//! `GET /api/custom` is limited by both: `shared_backend` (`50/m`, on the app's backend)
//! and `custom_backend` (`100/m`, on its own backend). `GET /api/shared` by the first one
//! only.
//!
//! ```sh
//! cargo run --example backend_selection
//! curl -i http://127.0.0.1:3000/api/custom
//! ```

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// Uses its own backend, never the app's.
    pub WithOwnBackend = HttpThrottle::new("custom_backend", "100/m")
        .backend(InMemoryBackend::new("custom"))
);

throttle!(
    /// Uses the backend from the app state.
    pub WithSharedBackend = HttpThrottle::new("shared_backend", "50/m")
);

/// Both throttles apply, in order: the shared one first, then the one with its own
/// backend.
async fn endpoint_custom(
    _shared: Throttled<WithSharedBackend>,
    _own: Throttled<WithOwnBackend>,
) -> Json<Value> {
    Json(json!({ "message": "Uses its own backend" }))
}

async fn endpoint_shared(_shared: Throttled<WithSharedBackend>) -> Json<Value> {
    Json(json!({ "message": "Uses the app's backend" }))
}

/// The app, with `traffik` as the shared backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/custom", get(endpoint_custom))
        .route("/api/shared", get(endpoint_shared))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let shared = Traffik::new(InMemoryBackend::new("shared"));
    let app = app(shared.clone());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    // The lifespan opens and closes the shared backend; the throttle's own backend lives
    // as long as the throttle (the whole process).
    shared.serve(listener, app).await?;
    Ok(())
}

//! A custom throttled response: the twin of the seed README's "Custom Throttled Response".
//!
//! `GET /api/data` admits 100 requests per minute per client. Over the limit, instead of
//! the default `429` (plain text, `Retry-After` and `RateLimit` headers), the client gets
//! the seed's JSON body:
//!
//! ```text
//! HTTP/1.1 429 Too Many Requests
//! retry-after: 12
//! content-type: application/json
//!
//! {"error":"rate_limit_exceeded","message":"Too many requests. Retry in 12s","retry_after":12}
//! ```
//!
//! Unlike the seed (`wait_ms // 1000`), the wait is rounded up: a client told to retry
//! in `N` seconds is admitted when it does, and is never told to retry in 0 seconds.
//!
//! ```sh
//! cargo run --example custom_response
//! for i in $(seq 101); do curl -s http://127.0.0.1:3000/api/data; echo; done
//! ```

use axum::Json;
use axum::Router;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use http::header::RETRY_AFTER;
use http::request::Parts;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// The seed's `HTTPThrottle(uid="api", rate="100/m", handle_throttled=...)`.
    pub ApiLimit = HttpThrottle::new("api", "100/m").on_throttled(custom_throttled_handler)
);

/// The seed's `custom_throttled_handler`: 429 with a JSON body and `Retry-After`.
fn custom_throttled_handler(_parts: &Parts, info: ThrottledInfo<'_>) -> Response {
    let wait_seconds = info.decision.retry_after_secs();
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(RETRY_AFTER, wait_seconds.to_string())],
        Json(json!({
            "error": "rate_limit_exceeded",
            "message": format!("Too many requests. Retry in {wait_seconds}s"),
            "retry_after": wait_seconds,
        })),
    )
        .into_response()
}

async fn data(_: Throttled<ApiLimit>) -> Json<Value> {
    Json(json!({ "data": "value" }))
}

/// The app, on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/data", get(data))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("custom_response"));
    let app = app(traffik.clone());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    traffik.serve(listener, app).await?;
    Ok(())
}

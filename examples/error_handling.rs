//! Error handling: shaping the 429, configuration errors, anonymous clients.
//!
//! The twin of the seed README's "Error Handling" section, in axum terms:
//!
//! - **Handling rate limit exceptions.** The seed registers an exception handler for
//!   `ConnectionThrottled`. In axum an extractor's failure is a value: a handler that takes
//!   `Result<Throttled<T>, ThrottleRejection>` runs even when the client is over its limit
//!   and shapes its own answer, here
//!   `{"error":"rate_limit_exceeded","retry_after_seconds":N,"message":"..."}` with the
//!   library's `Retry-After` and `RateLimit` headers kept. (To change the answer of every
//!   route a throttle guards, give the throttle an [`HttpThrottle::on_throttled`] handler.)
//! - **Handling configuration errors.** The rate comes from configuration (the
//!   `API_RATE` environment variable, default `5/m`), so it is parsed at start-up with
//!   [`HttpThrottle::parse`]: a bad rate such as `10/mins` stops the app before it serves
//!   anything, with a message naming the problem, never at the first request. The
//!   throttle lives in the app state, declared with `throttle!(ApiLimit)` and reached
//!   through `FromRef`.
//! - **Handling anonymous connections.** The default identifier needs the client's address
//!   (`ConnectInfo<SocketAddr>`); without it the request cannot be judged and is answered
//!   `500`. This throttle's identifier falls back to `anonymous:<path>` instead, like the
//!   seed's `safe_identifier`, so the app also works when served without connect info
//!   (behind some test harnesses, or on a Unix socket).
//!
//! ```sh
//! API_RATE=3/m cargo run --example error_handling
//! curl -i http://127.0.0.1:3000/api/data
//! API_RATE=3/fortnight cargo run --example error_handling   # fails at start-up
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use std::process::ExitCode;

use axum::extract::FromRef;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;
use tokio::net::TcpListener;
use traffik::prelude::*;

// A throttle built at start-up from configuration and kept in the app state.
throttle!(pub ApiLimit);

/// The app state: the rate-limiting context and the configured throttle.
#[derive(Clone, FromRef)]
struct AppState {
    traffik: Traffik,
    api_limit: ApiLimit,
}

/// The `api` throttle admitting `rate` (configuration text) per client.
///
/// # Errors
///
/// [`traffik::Error::InvalidRate`] if `rate` is not a rate.
pub fn api_limit(rate: &str) -> Result<HttpThrottle, traffik::Error> {
    let client_ip = ClientIpConfig::new();
    let throttle = HttpThrottle::parse("api", rate)?.identifier(move |parts| {
        // The seed's `safe_identifier`: the client's address if known...
        match client_ip.identity(parts) {
            Ok(address) => Identity::client(address),
            // ...else one shared anonymous client per path.
            Err(error) => {
                tracing::debug!(%error, "client address unknown; counting it as anonymous");
                Identity::client(format!("anonymous:{}", parts.uri.path()))
            }
        }
    });
    throttle.validate()?;
    Ok(throttle)
}

/// `GET /api/data`: answers its own 429.
async fn get_data(limit: Result<Throttled<ApiLimit>, ThrottleRejection>) -> Response {
    match limit {
        Ok(_) => Json(json!({ "data": "value" })).into_response(),
        Err(rejection) => throttle_handler(rejection),
    }
}

/// The seed's `throttle_handler`: a JSON 429 of the app's own shape.
fn throttle_handler(rejection: ThrottleRejection) -> Response {
    let Some(retry_after) = rejection.retry_after_secs() else {
        // Not over the limit, but not judged either (the backend failed): keep the
        // library's answer (503 or 500), which it has logged.
        return rejection.into_response();
    };
    let message = rejection.to_string();
    // Keep the default answer's status and headers (`Retry-After`, `RateLimit-Policy`,
    // `RateLimit`); replace its body.
    let (parts, _default_body) = rejection.into_response().into_parts();
    let body = Json(json!({
        "error": "rate_limit_exceeded",
        "retry_after_seconds": retry_after,
        "message": message,
    }));
    (parts, body).into_response()
}

/// The app, deciding on `traffik`'s backend, with the `api` throttle admitting `rate`.
///
/// # Errors
///
/// [`traffik::Error::InvalidRate`] if `rate` is not a rate.
pub fn app(traffik: Traffik, rate: &str) -> Result<Router, traffik::Error> {
    let state = AppState {
        traffik,
        api_limit: ApiLimit(api_limit(rate)?),
    };
    Ok(Router::new()
        .route("/api/data", get(get_data))
        .with_state(state))
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt().init();
    match run().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "cannot start");
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let traffik = Traffik::new(InMemoryBackend::new("api"));
    // A bad rate is reported here, before the server starts.
    let rate = std::env::var("API_RATE").unwrap_or_else(|_| "5/m".to_owned());
    let app = app(traffik.clone(), &rate)?;

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, %rate, "try GET /api/data");

    traffik.serve(listener, app).await?;
    Ok(())
}

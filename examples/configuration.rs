//! Configuring throttles: the twin of the seed README's "Configuration Options" (rate
//! formats, custom client identification) and of `min_wait_period`.
//!
//! Rates:
//!
//! | route          | throttle  | rate                                           |
//! |----------------|-----------|------------------------------------------------|
//! | `/api/v1`      | `api_v1`  | `"100/m"`: 100 per minute                      |
//! | `/api/v2`      | `api_v2`  | `"5/10s"`: 5 per 10 seconds                    |
//! | `/api/v3`      | `api_v3`  | `"1000/500ms"`: 1000 per 500 ms                |
//! | `/api/daily`   | `daily`   | `"10000/d"`: 10000 per day                     |
//! | `/api/complex` | `complex` | `Rate::builder(100).minutes(5).seconds(30)`    |
//!
//! A rate written as a string literal in [`throttle!`] is checked at compile time
//! (`"10/mins"` does not build). A rate from components, or from configuration text
//! ([`HttpThrottle::parse`]), is checked when the app is built, so [`app`] returns a
//! `Result`: a bad rate stops the server at start-up, never at the first request.
//!
//! Supported units: `ms`, `s`/`sec`/`second`, `m`/`min`/`minute`, `h`/`hr`/`hour`,
//! `d`/`day` (and plurals), with an optional multiplier (`"5/10s"`) and `per` for `/`.
//!
//! Also:
//!
//! - `/api/user` (`user_limit`, `100/h`) identifies clients by user rather than by IP:
//!   the seed's `user_based_identifier`;
//! - `/api/login` (`login`, `3/10s`) makes a throttled client wait at least 30 seconds
//!   (`min_wait_period`), whatever the window says.
//!
//! Every handler returns its `Throttled<_>`, so each response carries the
//! `RateLimit-Policy` header describing its rate: `"api_v3";q=1000;w=1`, ...
//!
//! ```sh
//! cargo run --example configuration
//! curl -i http://127.0.0.1:3000/api/complex   # RateLimit-Policy: "complex";q=100;w=330
//! ```

use std::net::SocketAddr;
use std::time::Duration;

use axum::Json;
use axum::Router;
use axum::extract::{ConnectInfo, FromRef};
use axum::routing::get;
use http::request::Parts;
use serde_json::{Value, json};
use traffik::prelude::*;

// String format (recommended): checked at compile time.
throttle!(pub ApiV1 = HttpThrottle::new("api_v1", "100/m")); // 100 per minute
throttle!(pub ApiV2 = HttpThrottle::new("api_v2", "5/10s")); // 5 per 10 seconds
throttle!(pub ApiV3 = HttpThrottle::new("api_v3", "1000/500ms")); // 1000 per 500 ms
throttle!(pub Daily = HttpThrottle::new("daily", "10000/d")); // 10000 per day

throttle!(
    /// A rate from components, built at start-up and kept in the app state.
    pub Complex
);

throttle!(
    /// Clients identified by user.
    pub UserLimit = HttpThrottle::new("user_limit", "100/h").identifier(user_based_identifier)
);

throttle!(
    /// A throttled login attempt waits at least 30 seconds.
    pub LoginLimit =
        HttpThrottle::new("login", "3/10s").min_wait_period(Duration::from_secs(30))
);

/// The seed's `user_based_identifier`: the user's id, here from an `X-User-Id` header.
///
/// A real app takes the user from a credential it has verified (a session, a signed
/// token), never from a header the client can set to anything. Requests without a user
/// are identified by their IP, so that anonymous clients do not share one quota.
fn user_based_identifier(parts: &Parts) -> Identity {
    let user = parts
        .headers
        .get("x-user-id")
        .and_then(|value| value.to_str().ok())
        .filter(|user| !user.is_empty());
    if let Some(user) = user {
        return Identity::client(format!("user:{user}"));
    }
    match parts.extensions.get::<ConnectInfo<SocketAddr>>() {
        Some(ConnectInfo(peer)) => Identity::client(format!("ip:{}", peer.ip())),
        None => Identity::client("anonymous"),
    }
}

/// The app state: the rate-limiting context and the throttle built at start-up.
#[derive(Clone, FromRef)]
pub struct AppState {
    traffik: Traffik,
    complex: Complex,
}

fn answer<T>(limit: Throttled<T>, message: &str) -> (Throttled<T>, Json<Value>) {
    (limit, Json(json!({ "message": message })))
}

async fn api_v1(limit: Throttled<ApiV1>) -> (Throttled<ApiV1>, Json<Value>) {
    answer(limit, "100 per minute")
}

async fn api_v2(limit: Throttled<ApiV2>) -> (Throttled<ApiV2>, Json<Value>) {
    answer(limit, "5 per 10 seconds")
}

async fn api_v3(limit: Throttled<ApiV3>) -> (Throttled<ApiV3>, Json<Value>) {
    answer(limit, "1000 per 500 ms")
}

async fn daily(limit: Throttled<Daily>) -> (Throttled<Daily>, Json<Value>) {
    answer(limit, "10000 per day")
}

async fn complex(limit: Throttled<Complex>) -> (Throttled<Complex>, Json<Value>) {
    answer(limit, "100 per 5.5 minutes")
}

async fn user(limit: Throttled<UserLimit>) -> (Throttled<UserLimit>, Json<Value>) {
    answer(limit, "100 per hour per user")
}

async fn login(limit: Throttled<LoginLimit>) -> (Throttled<LoginLimit>, Json<Value>) {
    answer(limit, "logged in")
}

/// The app on `traffik`'s backend, or the configuration error that prevents it.
pub fn app(traffik: Traffik) -> Result<Router, traffik::Error> {
    // The seed's `Rate(limit=100, minutes=5, seconds=30)`: 100 per 5.5 minutes.
    let rate = Rate::builder(100).minutes(5).seconds(30).build()?;
    let state = AppState {
        traffik,
        complex: Complex(HttpThrottle::new("complex", rate)),
    };
    Ok(Router::new()
        .route("/api/v1", get(api_v1))
        .route("/api/v2", get(api_v2))
        .route("/api/v3", get(api_v3))
        .route("/api/daily", get(daily))
        .route("/api/complex", get(complex))
        .route("/api/user", get(user))
        .route("/api/login", get(login))
        .with_state(state))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("configuration"));
    let app = app(traffik.clone())?;

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    traffik.serve(listener, app).await?;
    Ok(())
}

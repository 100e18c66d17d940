//! Throttling as a dependency: `GET /api/hello`, ten requests per minute per client.
//!
//! The twin of the seed README's "Quick Start Guide, 2. FastAPI with Dependency
//! Injection". FastAPI declares `dependencies=[Depends(throttle)]`; axum declares the
//! throttle as a handler argument, the [`Throttled<T>`] extractor, which runs before the
//! handler and answers `429` instead of it when the client is over its limit.
//!
//! The backend is the seed's `InMemoryBackend(namespace="api")`, installed for the app by
//! [`Traffik::lifespan`] (`persistent=True, close_on_exit=True`): it is initialized before
//! the server starts and closed after it stops.
//!
//! ```sh
//! cargo run --example dependency_injection
//! curl -i http://127.0.0.1:3000/api/hello
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;
use tokio::net::TcpListener;
use traffik::prelude::*;

throttle!(EndpointLimit = HttpThrottle::new("endpoint_limit", "10/m"));

/// The body of `GET /api/hello`.
#[derive(Debug, Serialize)]
struct Hello {
    message: &'static str,
}

/// `GET /api/hello`: `Throttled<EndpointLimit>` is the `Depends(throttle)` of the seed;
/// the handler itself does not use it.
async fn say_hello(_: Throttled<EndpointLimit>) -> Json<Hello> {
    Json(Hello {
        message: "Hello World",
    })
}

/// The app, deciding on `traffik`'s backend (the router's state, like the backend a
/// FastAPI lifespan installs on the app).
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/hello", get(say_hello))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let backend = InMemoryBackend::builder("api").persistent(true).build();
    let traffik = Traffik::new(backend);

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/hello");

    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

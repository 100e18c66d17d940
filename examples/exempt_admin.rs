//! Exempting clients: the twin of the seed README's "Exempting Connections".
//!
//! `GET /api/data` admits 50 requests per minute per user. The identifier returns
//! [`Identity::Exempt`] (the seed's `UNLIMITED`) for admins: their requests bypass the
//! throttle entirely, cost nothing and are never counted.
//!
//! **The role here comes from request headers (`X-User-Role`, `X-User-Id`) to keep the
//! example short. Anyone can send `X-User-Role: admin`.** A real app derives the role
//! from a credential it has verified (a session, a signed token checked against its key)
//! before trusting it to lift a limit.
//!
//! ```sh
//! cargo run --example exempt_admin
//! curl -i -H 'X-User-Id: 42' http://127.0.0.1:3000/api/data       # limited
//! curl -i -H 'X-User-Role: admin' http://127.0.0.1:3000/api/data  # never limited
//! ```

use axum::Json;
use axum::Router;
use axum::routing::get;
use http::request::Parts;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// The seed's `HTTPThrottle(uid="api_limit", rate="50/m", identifier=admin_bypass_identifier)`.
    pub ApiLimit = HttpThrottle::new("api_limit", "50/m").identifier(admin_bypass_identifier)
);

/// A non-empty header value, if present and visible ASCII.
fn header<'a>(parts: &'a Parts, name: &str) -> Option<&'a str> {
    parts
        .headers
        .get(name)
        .and_then(|value| value.to_str().ok())
        .filter(|value| !value.is_empty())
}

/// The seed's `admin_bypass_identifier`: admins bypass throttling; other users are
/// limited each on their own; clients without a user id by their IP.
fn admin_bypass_identifier(parts: &Parts) -> Identity {
    if header(parts, "x-user-role") == Some("admin") {
        return Identity::Exempt;
    }
    if let Some(user) = header(parts, "x-user-id") {
        return Identity::client(format!("user:{user}"));
    }
    // The same identity the default identifier would give (the socket peer's IP).
    match ClientIpConfig::new().identity(parts) {
        Ok(ip) => Identity::client(format!("ip:{ip}")),
        Err(_) => Identity::client("anonymous"),
    }
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

    let traffik = Traffik::new(InMemoryBackend::new("exempt_admin"));
    let app = app(traffik.clone());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    traffik.serve(listener, app).await?;
    Ok(())
}

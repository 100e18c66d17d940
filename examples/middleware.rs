//! Throttle middleware: limits applied across routes, chosen by path, method and hooks.
//!
//! The twin of the seed README's "Throttle Middleware" section. The seed's
//! `ThrottleMiddleware` is a [`ThrottleLayer`]; each `MiddlewareThrottle` wraps an
//! [`HttpThrottle`] with filters, combined with AND. The throttles come from the seed's
//! "Basic Middleware Setup" (`api`), "Method-Based Filtering" (`writes`, `reads`), "Path
//! Pattern Filtering" (`admin`), "Custom Hook-Based Filtering" (`intensive`, `auth`) and
//! "Combined Filtering" (`complex`):
//!
//! | throttle    | rate     | applies to                                                |
//! |-------------|----------|-----------------------------------------------------------|
//! | `admin`     | `5/m`    | paths matching the regex `^/admin/.*`                     |
//! | `intensive` | `20/m`   | hook: `/api/reports/`, `/api/analytics/`, `/api/exports/` |
//! | `complex`   | `25/m`   | path `/api/` AND method POST AND hook: authenticated      |
//! | `writes`    | `10/m`   | methods POST, PUT, DELETE                                 |
//! | `reads`     | `1000/m` | methods GET, HEAD                                         |
//! | `auth`      | `200/m`  | hook: requests with an `Authorization` header             |
//! | `api`       | `100/m`  | paths starting with `/api/`                               |
//!
//! They run in that order, most specific first (the seed's "Order Matters"); the first one
//! that denies answers `429`, and the throttles after it are not consulted. Each one
//! keeps a single count per client across every request it applies to: twenty report
//! requests spread over `/api/reports/daily` and `/api/reports/weekly` exhaust `intensive`.
//! (`MiddlewareThrottle::per_route(true)` would count each route apart.)
//!
//! The layer sends the `RateLimit-Policy` and `RateLimit` headers on every response
//! ([`HeaderPolicy::Always`]), so each response names the throttles that counted it. The
//! default, [`HeaderPolicy::OnThrottled`], sends them on `429` responses only, which
//! discloses less about your capacity.
//!
//! ```sh
//! cargo run --example middleware
//! curl -i http://127.0.0.1:3000/api/items
//! curl -i -X POST -H 'Authorization: Bearer alice' http://127.0.0.1:3000/api/items
//! curl -i http://127.0.0.1:3000/admin/stats
//! ```
//!
//! `TRAFFIK_ADDR` changes the address (default `127.0.0.1:3000`).

use axum::extract::Path;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::routing::{get, put};
use axum::{Json, Router};
use futures_util::future::BoxFuture;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use traffik::prelude::*;

/// The seed's `authenticated_only` hook: the throttle applies to requests that carry
/// credentials. Hooks are async, so they may look things up; this one needs only headers.
fn authenticated_only(parts: &Parts) -> BoxFuture<'_, bool> {
    Box::pin(async move { parts.headers.contains_key(AUTHORIZATION) })
}

/// The paths of resource-intensive endpoints.
const INTENSIVE_PATHS: [&str; 3] = ["/api/reports/", "/api/analytics/", "/api/exports/"];

/// The seed's `intensive_operations` hook.
fn intensive_operations(parts: &Parts) -> BoxFuture<'_, bool> {
    Box::pin(async move {
        let path = parts.uri.path();
        INTENSIVE_PATHS
            .iter()
            .any(|prefix| path.starts_with(prefix))
    })
}

/// The layer: every throttle of the table above, in order.
pub fn throttle_layer(traffik: Traffik) -> ThrottleLayer {
    // Path pattern filtering: a regular expression...
    let admin = MiddlewareThrottle::new(HttpThrottle::new("admin", rate!("5/m")))
        .path_regex(r"^/admin/.*")
        .expect("`^/admin/.*` is a valid regular expression");
    // Custom hook-based filtering.
    let intensive = MiddlewareThrottle::new(HttpThrottle::new("intensive", rate!("20/m")))
        .hook(intensive_operations);
    // Combined filtering: path AND method AND hook.
    let complex = MiddlewareThrottle::new(HttpThrottle::new("complex", rate!("25/m")))
        .path("/api/")
        .methods([Method::POST])
        .hook(authenticated_only);
    // Method-based filtering: strict limits for writes, generous ones for reads.
    let writes = MiddlewareThrottle::new(HttpThrottle::new("writes", rate!("10/m"))).methods([
        Method::POST,
        Method::PUT,
        Method::DELETE,
    ]);
    let reads = MiddlewareThrottle::new(HttpThrottle::new("reads", rate!("1000/m")))
        .methods([Method::GET, Method::HEAD]);
    let auth =
        MiddlewareThrottle::new(HttpThrottle::new("auth", rate!("200/m"))).hook(authenticated_only);
    // ...and a path prefix: everything under `/api/`.
    let api = MiddlewareThrottle::new(HttpThrottle::new("api", rate!("100/m"))).path("/api/");

    ThrottleLayer::new(traffik)
        .headers(HeaderPolicy::Always)
        .throttle(admin)
        .throttle(intensive)
        .throttle(complex)
        .throttle(writes)
        .throttle(reads)
        .throttle(auth)
        .throttle(api)
}

async fn list_items() -> Json<Value> {
    Json(json!({ "items": ["apple", "pear"] }))
}

async fn create_item() -> (StatusCode, Json<Value>) {
    (StatusCode::CREATED, Json(json!({ "created": true })))
}

async fn update_item(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "updated": id }))
}

async fn delete_item(Path(id): Path<u64>) -> Json<Value> {
    Json(json!({ "deleted": id }))
}

async fn report(Path(name): Path<String>) -> Json<Value> {
    Json(json!({ "report": name }))
}

async fn admin_stats() -> Json<Value> {
    Json(json!({ "users": 42 }))
}

async fn health() -> &'static str {
    "ok"
}

/// The app: plain handlers, throttled by the layer around them.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/items", get(list_items).post(create_item))
        .route("/api/items/{id}", put(update_item).delete(delete_item))
        .route("/api/reports/{name}", get(report))
        .route("/admin/stats", get(admin_stats))
        .route("/health", get(health))
        .layer(throttle_layer(traffik))
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("api"));

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "try GET /api/items or /admin/stats");

    traffik.serve(listener, app(traffik.clone())).await?;
    Ok(())
}

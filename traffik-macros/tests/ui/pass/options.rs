//! Every option, alone and together.
#![deny(warnings)]

use std::sync::Arc;

use axum::Router;
use axum::http::request::Parts;
use axum::routing::get;
use traffik::prelude::*;

fn by_user(parts: &Parts) -> Identity {
    match parts.headers.get("x-user") {
        Some(user) => Identity::client(format!("{user:?}")),
        None => Identity::Exempt,
    }
}

fn request_cost(parts: &Parts) -> u64 {
    if parts.method == axum::http::Method::POST {
        2
    } else {
        1
    }
}

const HEAVY: u64 = 3;

#[throttled("5/m", uid = "with_uid")]
async fn with_uid() {}

#[throttled("5/m", strategy = TokenBucket::with_burst(10))]
async fn with_strategy() {}

#[throttled("5/m", identifier = by_user)]
async fn with_identifier() {}

#[throttled("5/m", identifier = |_: &Parts| Identity::client("everyone"))]
async fn with_identifier_closure() {}

#[throttled("5/m", cost = 2)]
async fn with_fixed_cost() {}

#[throttled("5/m", cost = HEAVY)]
async fn with_const_cost() {}

#[throttled("5/m", cost = request_cost)]
async fn with_cost_fn() {}

#[throttled("5/m", cost = |parts: &Parts| parts.uri.path().len() as u64)]
async fn with_cost_closure() {}

#[throttled("5/m", backend = InMemoryBackend::new("own"))]
async fn with_backend() {}

#[throttled("5/m", backend = Arc::new(InMemoryBackend::new("shared")))]
async fn with_shared_backend() {}

#[throttled(
    "100 per 10 seconds",
    uid = "everything",
    strategy = SlidingWindowLog,
    identifier = by_user,
    cost = request_cost,
    backend = InMemoryBackend::new("all"),
)]
async fn with_everything() -> &'static str {
    "ok"
}

#[throttled("unlimited")]
async fn unlimited() {}

fn main() {
    let _app: Router = Router::new()
        .route("/uid", get(with_uid))
        .route("/strategy", get(with_strategy))
        .route("/identifier", get(with_identifier))
        .route("/identifier_closure", get(with_identifier_closure))
        .route("/fixed", get(with_fixed_cost))
        .route("/const", get(with_const_cost))
        .route("/cost_fn", get(with_cost_fn))
        .route("/cost_closure", get(with_cost_closure))
        .route("/backend", get(with_backend))
        .route("/shared_backend", get(with_shared_backend))
        .route("/everything", get(with_everything))
        .route("/unlimited", get(unlimited))
        .with_state(Traffik::new(InMemoryBackend::new("app")));
}

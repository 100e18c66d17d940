//! Rate-limiting strategies: the twin of the seed README's "Rate Limiting Strategies" and
//! "Strategy Selection Based on Use Case".
//!
//! The seed's four throttles, each on its own route:
//!
//! | route              | throttle   | rate    | strategy                         |
//! |--------------------|------------|---------|----------------------------------|
//! | `/api/public`      | `public`   | `100/m` | token bucket, bursts up to 150   |
//! | `/api/payments`    | `payments` | `10/m`  | sliding window log (strict)      |
//! | `/api/external`    | `external` | `50/m`  | leaky bucket (smooth: 1 / 1.2 s) |
//! | `/api/simple`      | `simple`   | `200/m` | fixed window (the default)       |
//!
//! and the other built-in strategies:
//!
//! | route                 | throttle          | rate    | strategy                          |
//! |-----------------------|-------------------|---------|-----------------------------------|
//! | `/api/search`         | `search`          | `20/m`  | sliding window counter            |
//! | `/api/batch`          | `batch`           | `10/m`  | token bucket with a debt of 5     |
//! | `/api/notifications`  | `notifications`   | `30/m`  | leaky bucket with a queue of 5    |
//! | `/api/stream`         | `stream`          | `60/m`  | GCRA with bursts of 5             |
//!
//! Every handler returns its `Throttled<_>`, so successful responses carry the
//! `RateLimit-Policy` and `RateLimit` headers (remaining quota) as well as throttled ones.
//!
//! ```sh
//! cargo run --example strategies
//! curl -i http://127.0.0.1:3000/api/external   # 200
//! curl -i http://127.0.0.1:3000/api/external   # 429, Retry-After: 2
//! ```

use axum::Json;
use axum::Router;
use axum::routing::get;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// Public API: allow bursts.
    pub PublicApi = HttpThrottle::new("public", "100/m").strategy(TokenBucket::with_burst(150))
);
throttle!(
    /// Payment API: strict enforcement, no boundary effect.
    pub PaymentApi = HttpThrottle::new("payments", "10/m").strategy(SlidingWindowLog)
);
throttle!(
    /// Third-party API: smooth output.
    pub ExternalApi = HttpThrottle::new("external", "50/m").strategy(LeakyBucket)
);
throttle!(
    /// Simple rate limiting: the default fixed window.
    pub SimpleApi = HttpThrottle::new("simple", "200/m")
);
throttle!(
    /// Nearly as accurate as the log, in constant memory.
    pub SearchApi = HttpThrottle::new("search", "20/m").strategy(SlidingWindowCounter)
);
throttle!(
    /// A client may overdraw by five, then repays before it is admitted again.
    pub BatchApi =
        HttpThrottle::new("batch", "10/m").strategy(TokenBucketWithDebt::with_max_debt(5))
);
throttle!(
    /// Up to five requests queue; the queue drains at the rate.
    pub NotificationsApi = HttpThrottle::new("notifications", "30/m")
        .strategy(LeakyBucketWithQueue::with_queue_size(5))
);
throttle!(
    /// One timestamp per client; bursts of up to five.
    pub StreamApi = HttpThrottle::new("stream", "60/m").strategy(Gcra::with_burst(5))
);

/// The response of every route: which strategy let the request through.
fn admitted<T>(limit: Throttled<T>, strategy: &str) -> (Throttled<T>, Json<Value>) {
    let remaining = limit.decision().remaining;
    (
        limit,
        Json(json!({ "strategy": strategy, "remaining": remaining })),
    )
}

async fn public(limit: Throttled<PublicApi>) -> (Throttled<PublicApi>, Json<Value>) {
    admitted(limit, "token_bucket")
}

async fn payments(limit: Throttled<PaymentApi>) -> (Throttled<PaymentApi>, Json<Value>) {
    admitted(limit, "sliding_window_log")
}

async fn external(limit: Throttled<ExternalApi>) -> (Throttled<ExternalApi>, Json<Value>) {
    admitted(limit, "leaky_bucket")
}

async fn simple(limit: Throttled<SimpleApi>) -> (Throttled<SimpleApi>, Json<Value>) {
    admitted(limit, "fixed_window")
}

async fn search(limit: Throttled<SearchApi>) -> (Throttled<SearchApi>, Json<Value>) {
    admitted(limit, "sliding_window_counter")
}

async fn batch(limit: Throttled<BatchApi>) -> (Throttled<BatchApi>, Json<Value>) {
    admitted(limit, "token_bucket_with_debt")
}

async fn notifications(
    limit: Throttled<NotificationsApi>,
) -> (Throttled<NotificationsApi>, Json<Value>) {
    admitted(limit, "leaky_bucket_with_queue")
}

async fn stream(limit: Throttled<StreamApi>) -> (Throttled<StreamApi>, Json<Value>) {
    admitted(limit, "gcra")
}

/// The app: one route per strategy, on `traffik`'s backend.
pub fn app(traffik: Traffik) -> Router {
    Router::new()
        .route("/api/public", get(public))
        .route("/api/payments", get(payments))
        .route("/api/external", get(external))
        .route("/api/simple", get(simple))
        .route("/api/search", get(search))
        .route("/api/batch", get(batch))
        .route("/api/notifications", get(notifications))
        .route("/api/stream", get(stream))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("strategies"));
    let app = app(traffik.clone());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    traffik.serve(listener, app).await?;
    Ok(())
}

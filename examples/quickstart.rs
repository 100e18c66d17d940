//! Quick start: one throttle of "5/10s" per client on the in-memory backend.
//!
//! The twin of the seed README's first quick-start example, without a web framework:
//! a client makes seven requests to `GET /api/data`; the first five pass, the rest are
//! told how long to wait.
//!
//! ```sh
//! cargo run --example quickstart
//! ```

use traffik::prelude::*;

#[tokio::main]
async fn main() -> Result<(), traffik::Error> {
    tracing_subscriber::fmt().with_target(false).init();

    let backend = InMemoryBackend::new("myapp");
    let throttle = Throttle::new("basic_limit", "5/10s")?;
    let client = Identity::client("192.0.2.1");

    for request in 1..=7 {
        let decision = throttle
            .hit(&client, "http:GET:/api/data", &backend)
            .await?;
        if decision.allowed {
            tracing::info!(request, remaining = decision.remaining, "200 OK");
        } else {
            tracing::warn!(
                request,
                retry_after = decision.retry_after_secs(),
                "429 Too Many Requests"
            );
        }
    }
    backend.close().await
}

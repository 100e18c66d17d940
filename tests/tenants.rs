//! End to end: per-tenant backends chosen by a middleware (examples/multi_tenant.rs),
//! and which throttles use them.

mod common;

#[path = "../examples/multi_tenant.rs"]
#[allow(dead_code)]
mod multi_tenant;

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::middleware;
use axum::routing::get;
use common::{TestServer, client};
use http::StatusCode;
use multi_tenant::{TenantBackends, Tier};
use tokio::time::timeout;
use traffik::prelude::*;

/// How long any request may take before the test fails instead of hanging.
const STEP: Duration = Duration::from_secs(10);

const ACME: [(&str, &str); 2] = [("x-tenant", "premium"), ("x-tenant-id", "acme")];
const GLOBEX: [(&str, &str); 2] = [("x-tenant", "premium"), ("x-tenant-id", "globex")];

async fn status(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> StatusCode {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    timeout(STEP, request.send())
        .await
        .expect("request timed out")
        .expect("request")
        .status()
}

/// Sends requests until the first 429 (at most `max`); returns how many were admitted.
async fn admitted_before_429(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    max: usize,
) -> usize {
    for admitted in 0..max {
        match status(client, url, headers).await {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => return admitted,
            other => panic!("unexpected {other} for request {}", admitted + 1),
        }
    }
    panic!("{url}: no 429 after {max} requests");
}

fn current_hour() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_secs()
        / 3600
}

#[tokio::test]
async fn the_example_gives_each_tenant_its_own_quota() {
    let traffik = Traffik::new(InMemoryBackend::new("default"));
    let tenants = TenantBackends::new();
    let server = TestServer::start(multi_tenant::app(traffik.clone(), tenants.clone())).await;
    let client = client();
    let url = server.url("/api/data");
    let hour = current_hour();

    // Tenant acme spends its "1000/h" ...
    let admitted = admitted_before_429(&client, &url, &ACME, 1100).await;
    // ... and is still out of quota on later requests: one backend per tenant, reused.
    let acme_again = status(&client, &url, &ACME).await;
    // The same client, as another tenant or with no tenant at all, is not limited.
    assert_eq!(status(&client, &url, &GLOBEX).await, StatusCode::OK);
    assert_eq!(status(&client, &url, &[]).await, StatusCode::OK);

    // Three tenants, three backends, each created once.
    assert_eq!(tenants.count(), 3);
    assert!(Arc::ptr_eq(
        &tenants.backend(Tier::Premium, "acme"),
        &tenants.backend(Tier::Premium, "acme")
    ));
    assert_eq!(tenants.count(), 3);

    // Nothing was counted in the app's backend.
    let quota = multi_tenant::ApiQuota::get().throttle();
    let in_app_backend = quota
        .stat(
            &Identity::client("127.0.0.1"),
            "http:GET:/api/data",
            traffik.backend().as_ref(),
        )
        .await
        .expect("stat");
    assert_eq!(in_app_backend.remaining, 1000);

    // Tenant backends run on the system clock with hourly windows: if an hour ended
    // while this test ran, acme's count restarted and the exact figures do not hold.
    if current_hour() != hour {
        return;
    }
    assert_eq!(admitted, 1000);
    assert_eq!(acme_again, StatusCode::TOO_MANY_REQUESTS);
}

#[tokio::test]
async fn the_tenant_middleware_rejects_unknown_tiers_and_bad_ids() {
    let traffik = Traffik::new(InMemoryBackend::new("default"));
    let tenants = TenantBackends::new();
    let server = TestServer::start(multi_tenant::app(traffik, tenants.clone())).await;
    let client = client();
    let url = server.url("/api/data");

    let unknown_tier = [("x-tenant", "platinum"), ("x-tenant-id", "acme")];
    assert_eq!(
        status(&client, &url, &unknown_tier).await,
        StatusCode::BAD_REQUEST
    );
    let bad_id = [("x-tenant", "free"), ("x-tenant-id", "a b")];
    assert_eq!(
        status(&client, &url, &bad_id).await,
        StatusCode::BAD_REQUEST
    );
    assert_eq!(tenants.count(), 0);
}

// A sliding window log has no window boundary: nothing resets while a test runs.
throttle!(
    Dynamic = HttpThrottle::new("dynamic", "3/h")
        .strategy(SlidingWindowLog)
        .dynamic_backend(true)
);
throttle!(NotDynamic = HttpThrottle::new("not_dynamic", "3/h").strategy(SlidingWindowLog));
throttle!(
    OwnAndDynamic = HttpThrottle::new("own_and_dynamic", "3/h")
        .strategy(SlidingWindowLog)
        .backend(InMemoryBackend::new("own"))
        .dynamic_backend(true)
);

/// `/dynamic`, `/not-dynamic` and `/own` behind the tenant middleware; `/fallback` (the
/// dynamic throttle) outside it.
fn routes(traffik: Traffik, tenants: TenantBackends) -> Router {
    async fn dynamic(_: Throttled<Dynamic>) -> &'static str {
        "ok"
    }
    async fn not_dynamic(_: Throttled<NotDynamic>) -> &'static str {
        "ok"
    }
    async fn own(_: Throttled<OwnAndDynamic>) -> &'static str {
        "ok"
    }
    Router::new()
        .route("/dynamic", get(dynamic))
        .route("/not-dynamic", get(not_dynamic))
        .route("/own", get(own))
        .layer(middleware::from_fn_with_state(
            tenants,
            multi_tenant::tenant_backend,
        ))
        .route("/fallback", get(dynamic))
        .with_state(traffik)
}

#[tokio::test]
async fn a_dynamic_throttle_counts_in_each_tenants_backend() {
    let server = TestServer::start(routes(
        Traffik::new(InMemoryBackend::new("default")),
        TenantBackends::new(),
    ))
    .await;
    let client = client();
    let url = server.url("/dynamic");

    assert_eq!(admitted_before_429(&client, &url, &ACME, 10).await, 3);
    assert_eq!(
        status(&client, &url, &ACME).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(admitted_before_429(&client, &url, &GLOBEX, 10).await, 3);

    // Without a tenant backend in the request, the dynamic throttle uses the app's.
    let fallback = server.url("/fallback");
    assert_eq!(admitted_before_429(&client, &fallback, &ACME, 10).await, 3);
}

#[tokio::test]
async fn throttles_that_are_not_dynamic_ignore_the_request_backend() {
    let server = TestServer::start(routes(
        Traffik::new(InMemoryBackend::new("default")),
        TenantBackends::new(),
    ))
    .await;
    let client = client();
    let url = server.url("/not-dynamic");

    // One quota for the client, whatever tenant it claims: the app's backend.
    for _ in 0..2 {
        assert_eq!(status(&client, &url, &ACME).await, StatusCode::OK);
    }
    assert_eq!(status(&client, &url, &GLOBEX).await, StatusCode::OK);
    assert_eq!(
        status(&client, &url, &GLOBEX).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    assert_eq!(
        status(&client, &url, &[]).await,
        StatusCode::TOO_MANY_REQUESTS
    );
}

#[tokio::test]
async fn a_throttle_with_its_own_backend_ignores_the_request_backend() {
    let tenants = TenantBackends::new();
    let server = TestServer::start(routes(
        Traffik::new(InMemoryBackend::new("default")),
        tenants.clone(),
    ))
    .await;
    let client = client();
    let url = server.url("/own");

    // `dynamic_backend(true)` does not override a backend of the throttle's own.
    for _ in 0..2 {
        assert_eq!(status(&client, &url, &ACME).await, StatusCode::OK);
    }
    assert_eq!(status(&client, &url, &GLOBEX).await, StatusCode::OK);
    assert_eq!(
        status(&client, &url, &GLOBEX).await,
        StatusCode::TOO_MANY_REQUESTS
    );

    // And nothing was written to the tenants' backends.
    let throttle = OwnAndDynamic::get().throttle();
    let as_if_shared =
        Throttle::with_rate(throttle.uid(), *throttle.rate()).strategy(SlidingWindowLog);
    for tenant in ["acme", "globex"] {
        let backend = tenants.backend(Tier::Premium, tenant);
        let decision = as_if_shared
            .stat(
                &Identity::client("127.0.0.1"),
                "http:GET:/own",
                backend.as_ref(),
            )
            .await
            .expect("stat");
        assert_eq!(decision.remaining, 3, "{tenant}");
    }
}

//! One backend per tenant: the twin of the seed README's "Dynamic Backend Resolution for
//! Multi-Tenant Applications".
//!
//! A middleware finds the request's tenant (its tier from `X-Tenant:
//! enterprise|premium|free`, its id from `X-Tenant-Id`) and puts that tenant's backend
//! in the request as a [`RequestBackend`]. The throttle, built with
//! `.dynamic_backend(true)`, counts in whatever backend the request carries, so each
//! tenant's quota lives in its own store: one tenant exhausting its quota never touches
//! another's, even for the same client.
//!
//! Each tenant's backend is created once, on its first request, and cached in
//! [`TenantBackends`]; creating a backend per request would forget every count. In
//! production the tier would choose the kind of store (the seed puts paying tiers on
//! their own Redis); here every tenant gets an in-memory backend, namespaced by tier and
//! id.
//!
//! **The tenant comes from request headers to keep the example short.** A real app takes
//! it from a credential it has verified (the seed decodes a signed JWT), and would bound
//! the cache to the tenants it knows.
//!
//! Throttles without `dynamic_backend(true)`, and throttles with a backend of their own,
//! ignore the request's backend.
//!
//! ```sh
//! cargo run --example multi_tenant
//! curl -i -H 'X-Tenant: premium' -H 'X-Tenant-Id: acme' http://127.0.0.1:3000/api/data
//! ```

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::{Arc, PoisonError, RwLock};

use axum::Json;
use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use http::StatusCode;
use serde_json::{Value, json};
use traffik::prelude::*;

throttle!(
    /// The seed's shared throttle with dynamic backend resolution.
    pub ApiQuota = HttpThrottle::new("api_quota", "1000/h").dynamic_backend(true)
);

/// A tenant's tier (the seed's `TENANT_CONFIG` keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Tier {
    /// `enterprise`
    Enterprise,
    /// `premium`
    Premium,
    /// `free`: also the tier of requests that name none.
    Free,
}

impl Tier {
    fn as_str(self) -> &'static str {
        match self {
            Tier::Enterprise => "enterprise",
            Tier::Premium => "premium",
            Tier::Free => "free",
        }
    }
}

impl FromStr for Tier {
    type Err = String;

    fn from_str(tier: &str) -> Result<Self, Self::Err> {
        match tier {
            "enterprise" => Ok(Tier::Enterprise),
            "premium" => Ok(Tier::Premium),
            "free" => Ok(Tier::Free),
            other => Err(format!(
                "unknown tenant tier {other:?}: expected enterprise, premium or free"
            )),
        }
    }
}

/// The tenants' backends, each created on first use and then reused. Clones share the
/// same cache.
#[derive(Clone, Default)]
pub struct TenantBackends {
    backends: Arc<RwLock<HashMap<(Tier, String), SharedBackend>>>,
}

impl TenantBackends {
    /// An empty cache.
    pub fn new() -> Self {
        Self::default()
    }

    /// The backend of tenant `id` in `tier`, created the first time it is asked for.
    pub fn backend(&self, tier: Tier, id: &str) -> SharedBackend {
        let key = (tier, id.to_owned());
        // A panic elsewhere while holding the lock leaves the map itself valid.
        if let Some(backend) = self
            .backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .get(&key)
        {
            return Arc::clone(backend);
        }
        let mut backends = self
            .backends
            .write()
            .unwrap_or_else(PoisonError::into_inner);
        let backend = backends.entry(key).or_insert_with(|| {
            tracing::info!(tier = tier.as_str(), tenant = id, "new tenant backend");
            Arc::new(InMemoryBackend::new(format!(
                "tenant_{}_{id}",
                tier.as_str()
            )))
        });
        Arc::clone(backend)
    }

    /// How many tenants have a backend.
    pub fn count(&self) -> usize {
        self.backends
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }
}

/// A tenant id: 1 to 64 ASCII letters, digits, `-` or `_`.
fn valid_tenant_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The seed's `tenant_middleware`: finds the tenant and hands its backend to the
/// throttles of the request. No tenant headers: the `free` tier, tenant `anonymous`.
pub async fn tenant_backend(
    State(tenants): State<TenantBackends>,
    mut request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    let tier = match headers.get("x-tenant").map(|v| v.to_str()) {
        None => Tier::Free,
        Some(Ok(tier)) => match tier.parse() {
            Ok(tier) => tier,
            Err(message) => return (StatusCode::BAD_REQUEST, message).into_response(),
        },
        Some(Err(_)) => {
            return (StatusCode::BAD_REQUEST, "unreadable X-Tenant header").into_response();
        }
    };
    let id = match headers.get("x-tenant-id").map(|v| v.to_str()) {
        None => "anonymous",
        Some(Ok(id)) if valid_tenant_id(id) => id,
        Some(_) => {
            return (
                StatusCode::BAD_REQUEST,
                "X-Tenant-Id must be 1 to 64 letters, digits, '-' or '_'",
            )
                .into_response();
        }
    };
    let backend = tenants.backend(tier, id);
    request.extensions_mut().insert(RequestBackend(backend));
    next.run(request).await
}

async fn get_data(_: Throttled<ApiQuota>) -> Json<Value> {
    Json(json!({ "data": "tenant-specific data" }))
}

/// The app: the tenant middleware in front of `/api/data`. `traffik`'s backend serves
/// requests that reach a dynamic throttle without a tenant backend (none here) and every
/// throttle that is not dynamic.
pub fn app(traffik: Traffik, tenants: TenantBackends) -> Router {
    Router::new()
        .route("/api/data", get(get_data))
        .layer(middleware::from_fn_with_state(tenants, tenant_backend))
        .with_state(traffik)
}

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    tracing_subscriber::fmt().init();

    let traffik = Traffik::new(InMemoryBackend::new("default"));
    let app = app(traffik.clone(), TenantBackends::new());

    let addr = std::env::var("TRAFFIK_ADDR").unwrap_or_else(|_| "127.0.0.1:3000".to_owned());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    tracing::info!(addr = %listener.local_addr()?, "listening");

    traffik.serve(listener, app).await?;
    Ok(())
}

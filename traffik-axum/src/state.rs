//! [`Traffik`]: the backend and app-wide defaults, held in the app state.

use std::future::Future;
use std::sync::Arc;

use traffik_core::{Backend, SharedBackend};

use crate::client_ip::ClientIpConfig;
use crate::headers::HeaderPolicy;

/// The app's rate-limiting context: its backend and defaults. Put it in the router's
/// state (directly, or as a field of your state with `#[derive(FromRef)]`), the axum twin
/// of the seed's lifespan backend; every throttle without a backend of its own uses it.
///
/// ```
/// use axum::{Router, routing::get};
/// use traffik_axum::Traffik;
/// use traffik_core::InMemoryBackend;
///
/// let traffik = Traffik::new(InMemoryBackend::new("myapp"));
/// let app: Router = Router::new()
///     .route("/", get(|| async { "hello" }))
///     .with_state(traffik);
/// ```
#[derive(Clone, Debug)]
pub struct Traffik {
    backend: SharedBackend,
    client_ip: Arc<ClientIpConfig>,
    headers: HeaderPolicy,
}

impl Traffik {
    /// A context storing state in `backend`, identifying clients by their socket peer IP
    /// and sending rate-limit headers on throttled responses.
    pub fn new(backend: impl Backend) -> Self {
        Self::from_shared(Arc::new(backend))
    }

    /// A context on an already shared backend.
    pub fn from_shared(backend: SharedBackend) -> Self {
        Self {
            backend,
            client_ip: Arc::new(ClientIpConfig::default()),
            headers: HeaderPolicy::default(),
        }
    }

    /// How the default identifier finds the client IP (trusted proxies, IPv6 prefix).
    #[must_use]
    pub fn client_ip(mut self, config: ClientIpConfig) -> Self {
        self.client_ip = Arc::new(config);
        self
    }

    /// Which rate-limit headers throttles send unless they say otherwise.
    #[must_use]
    pub fn headers(mut self, policy: HeaderPolicy) -> Self {
        self.headers = policy;
        self
    }

    /// The app's backend.
    pub fn backend(&self) -> &SharedBackend {
        &self.backend
    }

    /// The client IP configuration.
    pub fn client_ip_config(&self) -> &ClientIpConfig {
        &self.client_ip
    }

    /// The default header policy.
    pub fn header_policy(&self) -> HeaderPolicy {
        self.headers
    }

    /// Runs `serve` between the backend's `initialize` and `close`: the app's lifespan.
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use traffik_axum::Traffik;
    /// use traffik_core::InMemoryBackend;
    ///
    /// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
    /// let traffik = Traffik::new(InMemoryBackend::new("app"));
    /// let app = Router::new().route("/", get(|| async { "hi" })).with_state(traffik.clone());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// traffik.lifespan(async { axum::serve(listener, app).await }).await??;
    /// # Ok(()) }
    /// ```
    pub async fn lifespan<F: Future>(&self, serve: F) -> traffik_core::Result<F::Output> {
        self.backend.initialize().await?;
        let output = serve.await;
        self.backend.close().await?;
        Ok(output)
    }
}

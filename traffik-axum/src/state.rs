//! [`Traffik`]: the backend and app-wide defaults, held in the app state.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use tokio::net::TcpListener;

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
    // One pointer: `FromRef` hands the extractor a clone per request.
    inner: Arc<Settings>,
}

/// What a [`Traffik`] holds.
#[derive(Clone, Debug)]
struct Settings {
    backend: SharedBackend,
    client_ip: ClientIpConfig,
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
            inner: Arc::new(Settings {
                backend,
                client_ip: ClientIpConfig::default(),
                headers: HeaderPolicy::default(),
            }),
        }
    }

    /// How the default identifier finds the client IP (trusted proxies, IPv6 prefix).
    #[must_use]
    pub fn client_ip(mut self, config: ClientIpConfig) -> Self {
        Arc::make_mut(&mut self.inner).client_ip = config;
        self
    }

    /// Which rate-limit headers throttles send unless they say otherwise.
    #[must_use]
    pub fn headers(mut self, policy: HeaderPolicy) -> Self {
        Arc::make_mut(&mut self.inner).headers = policy;
        self
    }

    /// The app's backend.
    pub fn backend(&self) -> &SharedBackend {
        &self.inner.backend
    }

    /// The client IP configuration.
    pub fn client_ip_config(&self) -> &ClientIpConfig {
        &self.inner.client_ip
    }

    /// The default header policy.
    pub fn header_policy(&self) -> HeaderPolicy {
        self.inner.headers
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
        self.inner.backend.initialize().await?;
        let output = serve.await;
        self.inner.backend.close().await?;
        Ok(output)
    }

    /// Serves `app` on `listener` for as long as the process runs, the way every Traffik
    /// example does: with connect info (the client IP the default identifier needs),
    /// inside the backend's [lifespan](Self::lifespan), stopping gracefully on ctrl-c.
    ///
    /// ```no_run
    /// use axum::{Router, routing::get};
    /// use traffik_axum::Traffik;
    /// use traffik_core::InMemoryBackend;
    ///
    /// # async fn run() -> Result<(), traffik_axum::ServeError> {
    /// let traffik = Traffik::new(InMemoryBackend::new("app"));
    /// let app = Router::new().route("/", get(|| async { "hi" })).with_state(traffik.clone());
    /// let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    /// traffik.serve(listener, app).await
    /// # }
    /// ```
    pub async fn serve(&self, listener: TcpListener, app: Router) -> Result<(), ServeError> {
        self.serve_until(listener, app, ctrl_c()).await
    }

    /// [`serve`](Self::serve), stopping gracefully when `shutdown` completes.
    pub async fn serve_until<F>(
        &self,
        listener: TcpListener,
        app: Router,
        shutdown: F,
    ) -> Result<(), ServeError>
    where
        F: Future<Output = ()> + Send + 'static,
    {
        tracing::info!(addr = %listener.local_addr()?, "serving");
        let service = app.into_make_service_with_connect_info::<SocketAddr>();
        self.lifespan(async {
            axum::serve(listener, service)
                .with_graceful_shutdown(shutdown)
                .await
        })
        .await??;
        Ok(())
    }
}

/// Why [`Traffik::serve`] stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The listener or a connection failed.
    #[error("server I/O error: {0}")]
    Io(#[from] std::io::Error),
    /// The backend could not be initialized or closed.
    #[error(transparent)]
    Backend(#[from] traffik_core::Error),
}

/// Resolves on ctrl-c; if the signal cannot be listened for, never (the server then runs
/// until it is killed).
async fn ctrl_c() {
    match tokio::signal::ctrl_c().await {
        Ok(()) => tracing::info!("shutting down"),
        Err(error) => {
            tracing::error!(%error, "cannot listen for ctrl-c; stop the server with a signal");
            std::future::pending::<()>().await;
        }
    }
}

//! One end-to-end bench setup, served on a loopback port until killed.
//!
//! ```sh
//! bench-server <setup> <shape> <port>
//! ```
//!
//! `setup` is one of [`SETUPS`] (two are references rather than limiters: `static-429`,
//! measured in the `over` shape of every run, see [`static_429`]; and
//! `direct-fixed-window`, a diagnostic run by hand, see [`Direct`]); `shape` is `under` (many clients, a quota none of them
//! reaches: 1000 per second per client) or `over` (a quota of 10 a minute, so a hot client
//! is refused nearly every time). Every setup answers `GET /api/data` with the same body;
//! clients are told apart by `X-Forwarded-For`, trusted from the loopback proxy
//! (Traffik: a `ClientIpConfig` trusting 127.0.0.1; tower_governor:
//! `SmartIpKeyExtractor`), so a load generator on loopback can simulate many clients.
//!
//! `scripts/bench.sh` drives it with wrk.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::process::ExitCode;
use std::sync::OnceLock;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{HeaderName, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio::net::TcpListener;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_governor::key_extractor::SmartIpKeyExtractor;
use traffik::prelude::*;
use traffik::{MemcachedBackend, RedisBackend};

/// Every setup, in the order the script runs and reports them.
const SETUPS: &[&str] = &[
    "bare",
    "memory-fixed-window",
    "memory-sliding-window-log",
    "memory-sliding-window-counter",
    "memory-token-bucket",
    "memory-token-bucket-with-debt",
    "memory-leaky-bucket",
    "memory-leaky-bucket-with-queue",
    "memory-gcra",
    "governor",
    "redis",
    "redis-cached",
    "memcached",
    "static-429",
    "direct-fixed-window",
];

/// The body every setup answers with.
const BODY: &str = "ok";

/// The route every setup serves.
const ROUTE: &str = "/api/data";

/// The traffic shape a server is set up for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Many clients, each far under its quota.
    Under,
    /// One hot client, far over its quota.
    Over,
}

impl Shape {
    /// Traffik's rate for this shape.
    fn rate(self) -> Rate {
        match self {
            Shape::Under => rate!("1000/s"),
            Shape::Over => rate!("10/m"),
        }
    }

    /// tower_governor's equivalent quota: (burst, replenish period of one element).
    fn governor_quota(self) -> (u32, Duration) {
        match self {
            Shape::Under => (1000, Duration::from_millis(1)),
            Shape::Over => (10, Duration::from_secs(6)),
        }
    }
}

/// The throttle of this process, set once in `main` before serving.
static CONFIGURED: OnceLock<HttpThrottle> = OnceLock::new();

throttle!(
    Limit = CONFIGURED
        .get()
        .expect("the throttle is set before serving")
        .clone()
);

/// The handler of every setup.
async fn bare() -> &'static str {
    BODY
}

/// A reference, not a limiter: the bytes of Traffik's default 429 for the `over` shape
/// (status, headers and body), all constant. What answering a denial costs hyper, the
/// kernel and wrk, with no limiter at all: the floor of every `over` figure.
async fn static_429() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [
            (header::CONTENT_TYPE, "application/json"),
            (header::RETRY_AFTER, "37"),
            (
                HeaderName::from_static("ratelimit-policy"),
                r#""bench";q=10;w=60"#,
            ),
            (HeaderName::from_static("ratelimit"), r#""bench";r=0;t=37"#),
        ],
        r#"{"detail":"Too many requests. Retry in 37 seconds."}"#,
    )
        .into_response()
}

/// A diagnostic, not a product setup: the work `Throttled<T>` does for the fixed window
/// (client IP from the trusted proxy's header, scope, key, one in-memory decision, the
/// default 429), written straight against Traffik's public API in one synchronous step,
/// with the app state borrowed rather than cloned. Comparing it with
/// `memory-fixed-window` separates the decision's cost from the extractor's.
struct Direct;

impl FromRequestParts<Traffik> for Direct {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, state: &Traffik) -> Result<Self, Response> {
        let throttle = Limit::get().throttle();
        let identity = state
            .client_ip_config()
            .identity(parts)
            .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response())?;
        let key = throttle.key(&identity, &traffik::axum::http_scope(parts));
        let decided = throttle
            .strategy_ref()
            .hit(&key, throttle.rate(), 1, state.backend().as_ref())
            .now_or_never();
        match decided {
            Ok(Ok(decision)) if decision.allowed => Ok(Direct),
            Ok(Ok(decision)) => Err(traffik::axum::headers::default_throttled_response(
                throttle.uid(),
                throttle.rate(),
                &decision,
                HeaderPolicy::OnThrottled,
            )),
            _ => Err(StatusCode::SERVICE_UNAVAILABLE.into_response()),
        }
    }
}

/// The handler behind [`Direct`].
async fn direct(_: Direct) -> &'static str {
    BODY
}

/// The same handler behind `Throttled<T>`.
async fn throttled(_: Throttled<Limit>) -> &'static str {
    BODY
}

/// A namespace no earlier run used, so a run never sees another's counters in Redis or
/// memcached.
fn fresh_namespace() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    format!("bench{}x{nanos}", std::process::id())
}

/// The in-memory strategy a `memory-*` setup names.
fn throttle_for(setup: &str, rate: Rate) -> Option<HttpThrottle> {
    let throttle = HttpThrottle::new("bench", rate);
    Some(match setup {
        "memory-fixed-window" | "direct-fixed-window" | "redis" | "redis-cached" | "memcached" => {
            throttle.strategy(FixedWindow)
        }
        "memory-sliding-window-log" => throttle.strategy(SlidingWindowLog),
        "memory-sliding-window-counter" => throttle.strategy(SlidingWindowCounter),
        "memory-token-bucket" => throttle.strategy(TokenBucket::new()),
        "memory-token-bucket-with-debt" => throttle.strategy(TokenBucketWithDebt::new()),
        "memory-leaky-bucket" => throttle.strategy(LeakyBucket),
        "memory-leaky-bucket-with-queue" => throttle.strategy(LeakyBucketWithQueue::new()),
        "memory-gcra" => throttle.strategy(Gcra::new()),
        _ => return None,
    })
}

/// The backend a setup decides on.
fn backend_for(setup: &str) -> Result<SharedBackend, Error> {
    let namespace = fresh_namespace();
    let redis_url =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let memcached_url =
        std::env::var("BENCH_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into());
    Ok(match setup {
        "redis" => std::sync::Arc::new(RedisBackend::builder(namespace).url(redis_url).build()?),
        "redis-cached" => std::sync::Arc::new(
            RedisBackend::builder(namespace)
                .url(redis_url)
                .cache_denials(true)
                .build()?,
        ),
        "memcached" => std::sync::Arc::new(
            MemcachedBackend::builder(namespace)
                .url(memcached_url)
                .build()?,
        ),
        _ => std::sync::Arc::new(InMemoryBackend::new(namespace)),
    })
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: bench-server <setup> <under|over> <port>\nsetups: {}",
        SETUPS.join(" ")
    );
    ExitCode::from(2)
}

async fn serve_plain(listener: TcpListener, app: Router) -> std::io::Result<()> {
    axum::serve(
        listener,
        app.into_make_service_with_connect_info::<SocketAddr>(),
    )
    .await
}

async fn run(setup: &str, shape: Shape, port: u16) -> Result<(), Box<dyn std::error::Error>> {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, port)).await?;
    match setup {
        "bare" => serve_plain(listener, Router::new().route(ROUTE, get(bare))).await?,
        "static-429" => serve_plain(listener, Router::new().route(ROUTE, get(static_429))).await?,
        "governor" => {
            let (burst, period) = shape.governor_quota();
            let config = GovernorConfigBuilder::default()
                .period(period)
                .burst_size(burst)
                .key_extractor(SmartIpKeyExtractor)
                .finish()
                .ok_or("invalid governor quota")?;
            // What tower_governor's README does: prune the keyed state from time to time.
            let limiter = config.limiter().clone();
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs(60));
                loop {
                    tick.tick().await;
                    limiter.retain_recent();
                }
            });
            let app = Router::new()
                .route(ROUTE, get(bare))
                .layer(GovernorLayer::new(config));
            serve_plain(listener, app).await?;
        }
        _ => {
            let throttle = throttle_for(setup, shape.rate()).ok_or("unknown setup")?;
            throttle.validate()?;
            CONFIGURED
                .set(throttle)
                .map_err(|_| "the throttle is set twice")?;
            let traffik = Traffik::from_shared(backend_for(setup)?)
                .client_ip(ClientIpConfig::new().trust_proxies([IpAddr::V4(Ipv4Addr::LOCALHOST)]));
            let app = if setup.starts_with("direct-") {
                Router::new().route(ROUTE, get(direct))
            } else {
                Router::new().route(ROUTE, get(throttled))
            }
            .with_state(traffik.clone());
            traffik
                .serve_until(listener, app, std::future::pending())
                .await?;
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [setup, shape, port] = args.as_slice() else {
        return usage();
    };
    if !SETUPS.contains(&setup.as_str()) {
        return usage();
    }
    let shape = match shape.as_str() {
        "under" => Shape::Under,
        "over" => Shape::Over,
        _ => return usage(),
    };
    let Ok(port) = port.parse::<u16>() else {
        return usage();
    };
    // Worker threads: BENCH_SERVER_THREADS, else one per CPU this process may run on (so
    // `taskset -c 0 bench-server ...` gives one).
    let mut runtime = tokio::runtime::Builder::new_multi_thread();
    runtime.enable_all();
    if let Some(threads) = std::env::var("BENCH_SERVER_THREADS")
        .ok()
        .and_then(|t| t.parse::<usize>().ok())
    {
        runtime.worker_threads(threads);
    }
    let runtime = match runtime.build() {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("bench-server: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(setup, shape, port)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("bench-server {setup}: {error}");
            ExitCode::FAILURE
        }
    }
}

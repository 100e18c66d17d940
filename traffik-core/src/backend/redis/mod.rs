//! [`RedisBackend`]: state in Redis (standalone or Cluster), shared by every process.
//!
//! * Every built-in strategy runs as one Lua function on the server (`scripts/*.lua`):
//!   one round trip per decision, atomic on the server, no client-side lock. On a
//!   standalone Redis 7 the functions are a library loaded once (`FCALL`; see
//!   [`RedisBackendBuilder::functions`]); in a cluster, or on a server without functions,
//!   they run as scripts (`EVALSHA`, falling back to `EVAL` once on `NOSCRIPT`). They
//!   read the server's `TIME`, so clock skew between app servers cannot break a limit,
//!   and every key they write has a TTL.
//! * On a standalone server, decisions made at the same moment go out together as one
//!   pipeline (one write, one read on the server), each with its own reply and its own
//!   errors; with functions, consecutive ones run in one call of the library's batch
//!   function, which reads the server's clock once for them all and runs each as if it
//!   were alone. [`RedisBackend::pipelined`] counts them.
//! * The scripts read and write the same bytes as the Rust strategies
//!   (`strategy/codec.rs`), so [`Backend::peek`], [`Backend::get`] and corrupt-state
//!   handling agree with every other backend. A differential test checks that the
//!   scripts and the Rust functions decide alike.
//! * Lua numbers are doubles, exact below 2^53. A configuration whose counts times its
//!   period in microseconds exceed 2^50 runs on the generic path instead
//!   ([`Backend::update`]: a compare-and-set script in a loop), which is exact for any
//!   configuration.
//! * With an explicit clock ([`RedisBackendBuilder::clock`], for tests and simulations)
//!   the scripts are given that clock's time, and expiry is judged against it too: keys
//!   still get a real Redis TTL (nothing leaks), offset so that it maps the clock's
//!   expiry time, and each read compares the key's `PEXPIRETIME` (Redis 7) with the
//!   given time.
//!
//! # Keys
//!
//! A key `k` is stored at `namespace:k`; [`Backend::reset`] deletes `namespace:*` with
//! `SCAN` in batches (on every primary of a cluster), never `KEYS`. Throttle keys carry a
//! Redis Cluster hash tag (`{uid:client}:scope`), so a fixed window's `k:window` lands in
//! the slot of `k`; in a cluster, a windowed built-in on a key without a hash tag takes
//! the generic path. Namespaces must not contain braces, and should not be a prefix of
//! another namespace followed by `:` (`a` and `a:b` share keys).

mod batch;
mod conn;
mod scripts;

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use arrayvec::ArrayVec;
use dashmap::DashMap;
use deadpool_redis::redis::{self, Cmd, FromRedisValue, RedisError, RedisResult, Value};

pub use batch::Pipelined;
use batch::{Call, Work};
pub use conn::{ConnectFuture, ConnectionFactory};
/// The deadpool-redis this backend is built on (and its `redis`), for building pools and
/// connections of matching versions.
pub use deadpool_redis;

use self::conn::{Conn, Deadline, Shared, Source, within};
use self::scripts::{LuaScript, Plan, SCRIPTS};
use super::backoff::{Backoff, random_u64};
use super::{Backend, BackendFuture, Lock, LockOptions, LockRelease, UpdateFn};
use crate::clock::{Clock, Micros, SharedClock, SystemClock};
use crate::decision::Decision;
use crate::error::{Error, Result};
use crate::key::KeyText;
use crate::policy::{DEFAULT_TIMEOUT, FailurePolicy};
use crate::rate::Rate;
use crate::strategy::{Algorithm, Builtin, Write, check_cost, state_key};

/// Keys deleted per `UNLINK` (and asked for per `SCAN` step) by [`Backend::reset`].
const RESET_BATCH: usize = 500;
/// How far ahead of an explicit clock's expiry time the real Redis expiry is set: room
/// for skew between this host and the server, and for an explicit clock set back (a
/// test of a wall clock stepping back) by up to this much from where it stood when the
/// backend was built. Keys of such a backend outlive their TTL by up to this in real
/// time; explicit clocks are for tests and simulations.
const EXPLICIT_CLOCK_MARGIN_MS: i64 = 86_400_000;
/// Default bound on getting a connection: from the pool (however exhausted), or made
/// anew. redis-rs gives a new connection 1 s; the rest is room for the pool's `PING`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(2);

/// Keeps throttle state in Redis, shared by every process that uses the same server
/// and namespace.
///
/// Built from a URL, an existing deadpool-redis pool, a Redis Cluster, or a connection
/// factory. Clones share the same connection.
///
/// ```no_run
/// use traffik_core::{Backend, RedisBackend, Rate, strategy::FixedWindow};
///
/// # async fn demo() -> traffik_core::Result<()> {
/// let backend = RedisBackend::from_url("redis://127.0.0.1:6379/0", "myapp")?;
/// backend.initialize().await?;
/// let rate: Rate = "5/m".parse()?;
/// let decision = backend.decide("{api:10.0.0.1}", &FixedWindow, &rate, 1).await?;
/// assert!(decision.allowed);
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct RedisBackend {
    inner: Arc<Inner>,
}

struct Inner {
    namespace: String,
    /// `namespace:`, prepended to every key.
    prefix: String,
    persistent: bool,
    on_error: FailurePolicy,
    timeout: Duration,
    /// An explicit clock and the offset (ms) from its expiry times to real ones.
    clock: Option<(SharedClock, i64)>,
    conn: Shared,
    closed: AtomicBool,
    denials: Option<DenialCache>,
    next_token: AtomicU64,
    /// Whether scripts run as the function library (`FCALL`); cleared for good when the
    /// server turns out not to have functions.
    functions: AtomicBool,
    /// Set while a call loads the function library (see [`LibraryLoad`]).
    loading_library: AtomicBool,
    /// The function library's successful loads so far.
    library_loads: AtomicU64,
}

/// Configures a [`RedisBackend`]; see [`RedisBackend::builder`].
#[must_use]
pub struct RedisBackendBuilder {
    namespace: String,
    persistent: bool,
    clock: Option<SharedClock>,
    source: Option<PendingSource>,
    cache_denials: bool,
    functions: bool,
    on_error: FailurePolicy,
    timeout: Duration,
    connect_timeout: Duration,
}

/// Where connections will come from; pools from URLs are made by
/// [`RedisBackendBuilder::build`], with the connect timeout.
enum PendingSource {
    Url(String),
    Cluster(Vec<String>),
    Ready(Source),
}

impl PendingSource {
    fn into_source(self, connect_timeout: Duration) -> Result<Source> {
        // Every wait of the pool is bounded: for a free slot, for a new connection, for
        // the `PING` that checks a connection before handing it out.
        let timeouts = deadpool_redis::Timeouts {
            wait: Some(connect_timeout),
            create: Some(connect_timeout),
            recycle: Some(connect_timeout),
        };
        match self {
            PendingSource::Url(url) => {
                let mut config = deadpool_redis::Config::from_url(url);
                config.pool = Some(deadpool_redis::PoolConfig {
                    timeouts,
                    ..deadpool_redis::PoolConfig::default()
                });
                config
                    .create_pool(Some(deadpool_redis::Runtime::Tokio1))
                    .map(Source::Pool)
                    .map_err(config_error)
            }
            PendingSource::Cluster(urls) => {
                let mut config = deadpool_redis::cluster::Config::from_urls(urls);
                config.pool = Some(deadpool_redis::cluster::PoolConfig {
                    timeouts,
                    ..deadpool_redis::cluster::PoolConfig::default()
                });
                config
                    .create_pool(Some(deadpool_redis::cluster::Runtime::Tokio1))
                    .map(Source::Cluster)
                    .map_err(config_error)
            }
            PendingSource::Ready(source) => Ok(source),
        }
    }
}

impl fmt::Debug for RedisBackendBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackendBuilder")
            .field("namespace", &self.namespace)
            .field("persistent", &self.persistent)
            .field("explicit_clock", &self.clock.is_some())
            .field("cache_denials", &self.cache_denials)
            .field("on_error", &self.on_error)
            .field("timeout", &self.timeout)
            .field("connect_timeout", &self.connect_timeout)
            .finish()
    }
}

fn config_error(e: impl fmt::Display) -> Error {
    Error::Configuration(format!("redis: {e}"))
}

impl RedisBackendBuilder {
    /// Connects to the server at `url` (`redis://host:port/db`), through a new
    /// deadpool-redis pool whose waits are bounded by the
    /// [`connect_timeout`](Self::connect_timeout).
    pub fn url(mut self, url: impl Into<String>) -> Self {
        self.source = Some(PendingSource::Url(url.into()));
        self
    }

    /// Uses an existing deadpool-redis pool (one connection is checked out and shared).
    /// Getting it is bounded by the [`connect_timeout`](Self::connect_timeout) whatever
    /// the pool's own timeouts.
    pub fn pool(mut self, pool: deadpool_redis::Pool) -> Self {
        self.source = Some(PendingSource::Ready(Source::Pool(pool)));
        self
    }

    /// Connects to a Redis Cluster through any of its nodes' URLs.
    pub fn cluster<I, S>(mut self, urls: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.source = Some(PendingSource::Cluster(
            urls.into_iter().map(Into::into).collect(),
        ));
        self
    }

    /// Uses an existing deadpool-redis Cluster pool.
    pub fn cluster_pool(mut self, pool: deadpool_redis::cluster::Pool) -> Self {
        self.source = Some(PendingSource::Ready(Source::Cluster(pool)));
        self
    }

    /// Makes connections with `factory` (called again only after a connection failed).
    ///
    /// ```no_run
    /// use traffik_core::RedisBackend;
    /// use traffik_core::backend::deadpool_redis::redis;
    ///
    /// let client = redis::Client::open("redis://127.0.0.1/").unwrap();
    /// let backend = RedisBackend::builder("app")
    ///     .connection_factory(move || {
    ///         let client = client.clone();
    ///         async move { client.get_multiplexed_async_connection().await }
    ///     })
    ///     .build()
    ///     .unwrap();
    /// ```
    pub fn connection_factory<F, Fut>(mut self, factory: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut:
            Future<Output = redis::RedisResult<redis::aio::MultiplexedConnection>> + Send + 'static,
    {
        let factory: ConnectionFactory = Arc::new(move || Box::pin(factory()));
        self.source = Some(PendingSource::Ready(Source::Factory(factory)));
        self
    }

    /// What throttles without a failure policy of their own answer when Redis fails
    /// (default: [`FailurePolicy::Raise`]); see [`Backend::failure_policy`].
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::{Backend, FailurePolicy, RedisBackend};
    ///
    /// let backend = RedisBackend::builder("api")
    ///     .url("redis://127.0.0.1:6379/0")
    ///     .on_error(FailurePolicy::Throttle(Duration::from_secs(5)))
    ///     .timeout(Duration::from_millis(100))
    ///     .build()?;
    /// assert!(matches!(backend.failure_policy(), FailurePolicy::Throttle(_)));
    /// assert_eq!(backend.timeout(), Duration::from_millis(100));
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn on_error(mut self, policy: FailurePolicy) -> Self {
        self.on_error = policy;
        self
    }

    /// How long one decision may take before a throttle gives up on it (default:
    /// [`DEFAULT_TIMEOUT`], 250 ms); see [`Backend::timeout`].
    pub fn timeout(mut self, limit: Duration) -> Self {
        self.timeout = limit;
        self
    }

    /// How long getting a connection may take: from the pool (waiting for a free slot,
    /// checking a connection) or made anew (default 2 s). Connecting runs apart from the
    /// requests that wait for it, so a connection slower to make than one decision's
    /// [`timeout`](Self::timeout) is still made, for the requests after.
    pub fn connect_timeout(mut self, limit: Duration) -> Self {
        self.connect_timeout = limit.max(Duration::from_millis(1));
        self
    }

    /// Keep state across [`Backend::close`] (default: cleared on close).
    pub fn persistent(mut self, persistent: bool) -> Self {
        self.persistent = persistent;
        self
    }

    /// Judges time by `clock` instead of the server's `TIME` (tests, simulations): the
    /// scripts are given its time, and expiry follows it.
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Some(Arc::new(clock));
        self
    }

    /// Keeps denials in process: once a key is denied until T, further requests for it
    /// (of at least the same cost, with the same strategy and rate) are denied before T
    /// without calling Redis. Off by default: with it, a `reset` or a change made by
    /// another process is seen only after T.
    pub fn cache_denials(mut self, enabled: bool) -> Self {
        self.cache_denials = enabled;
        self
    }

    /// Runs the built-in strategies as a Redis function library (`FCALL`, Redis 7 and
    /// later) rather than as scripts (`EVALSHA`). On by default, on a standalone server;
    /// a Redis Cluster always uses scripts.
    ///
    /// The library is loaded (`FUNCTION LOAD`) by the first call that finds it missing,
    /// which itself runs as a script; a server without functions (before Redis 7, or a
    /// user not allowed `FCALL` or `FUNCTION LOAD`) is detected the same way, and the
    /// backend uses scripts from then on. Functions decide exactly as scripts do, for
    /// less of Redis's time: a script call makes the helpers' closures every time, a
    /// function finds them made when its library was loaded.
    ///
    /// The library is named after a hash of its code (`traffik_<hash>`), so that
    /// processes running different versions of Traffik on one server each call their
    /// own. A library an older version left stays on the server until deleted
    /// (`FUNCTION DELETE`), as scripts stay in the script cache.
    pub fn functions(mut self, enabled: bool) -> Self {
        self.functions = enabled;
        self
    }

    /// The backend; [`Error::Configuration`] for a bad URL, a missing connection source,
    /// or a namespace containing `{` or `}` (it would capture the keys' hash tags).
    pub fn build(self) -> Result<RedisBackend> {
        if self.namespace.contains(['{', '}']) {
            return Err(config_error(format!(
                "namespace {:?} must not contain braces",
                self.namespace
            )));
        }
        let source = self
            .source
            .ok_or_else(|| {
                config_error("no connection source: give a URL, a pool, a cluster or a factory")
            })?
            .into_source(self.connect_timeout)?;
        let clock = self.clock.map(|clock| {
            let real_ms = i64::try_from(SystemClock.now_micros() / 1000).unwrap_or(i64::MAX);
            let clock_ms = i64::try_from(clock.now_micros() / 1000).unwrap_or(i64::MAX);
            (clock, real_ms - clock_ms + EXPLICIT_CLOCK_MARGIN_MS)
        });
        let functions = self.functions && !source.is_cluster();
        Ok(RedisBackend {
            inner: Arc::new(Inner {
                prefix: format!("{}:", self.namespace),
                namespace: self.namespace,
                persistent: self.persistent,
                on_error: self.on_error,
                timeout: self.timeout,
                clock,
                conn: Shared::new(source, self.connect_timeout),
                closed: AtomicBool::new(false),
                denials: self.cache_denials.then(DenialCache::default),
                next_token: AtomicU64::new(1),
                functions: AtomicBool::new(functions),
                loading_library: AtomicBool::new(false),
                library_loads: AtomicU64::new(0),
            }),
        })
    }
}

impl RedisBackend {
    /// Configures a backend.
    ///
    /// ```
    /// use traffik_core::{Backend, ManualClock, RedisBackend};
    ///
    /// let backend = RedisBackend::builder("tests")
    ///     .url("redis://127.0.0.1:6379/0")
    ///     .persistent(true)
    ///     .clock(ManualClock::new(0))
    ///     .build()?;
    /// assert!(backend.persistent());
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn builder(namespace: impl Into<String>) -> RedisBackendBuilder {
        RedisBackendBuilder {
            namespace: namespace.into(),
            persistent: false,
            clock: None,
            source: None,
            cache_denials: false,
            functions: true,
            on_error: FailurePolicy::Raise,
            timeout: DEFAULT_TIMEOUT,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }

    /// A backend on the server at `url`, judging time by the server's clock.
    pub fn from_url(url: impl Into<String>, namespace: impl Into<String>) -> Result<Self> {
        Self::builder(namespace).url(url).build()
    }

    /// A backend on an existing deadpool-redis pool.
    pub fn from_pool(pool: deadpool_redis::Pool, namespace: impl Into<String>) -> Result<Self> {
        Self::builder(namespace).pool(pool).build()
    }

    /// A backend on a Redis Cluster, reached through any of its nodes' URLs.
    pub fn from_cluster<I, S>(urls: I, namespace: impl Into<String>) -> Result<Self>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        Self::builder(namespace).cluster(urls).build()
    }

    /// Whether this backend talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        self.inner.conn.source().is_cluster()
    }

    /// The Redis key that `key` is stored under (`namespace:key`).
    pub fn redis_key(&self, key: &str) -> String {
        self.full_key(key).as_str().to_owned()
    }

    /// [`redis_key`](Self::redis_key), on the stack (for a key of ordinary size): what a
    /// decision sends and what the denial cache is looked up by.
    fn full_key(&self, key: &str) -> KeyText {
        let mut full = KeyText::new();
        full.push_str(&self.inner.prefix);
        full.push_str(key);
        full
    }

    /// The function and script calls (decisions first) coalesced into pipelines so far,
    /// how many pipelines they took, and how many commands Redis received for them (the
    /// function calls of a pipeline run in batch calls).
    ///
    /// ```no_run
    /// # async fn demo(backend: traffik_core::RedisBackend) {
    /// let sent = backend.pipelined();
    /// let mean_batch = sent.commands as f64 / sent.pipelines.max(1) as f64;
    /// let per_call = sent.commands as f64 / sent.calls.max(1) as f64;
    /// tracing::info!(mean_batch, per_call, "redis decisions per write, and per call");
    /// # }
    /// ```
    pub fn pipelined(&self) -> Pipelined {
        self.inner.conn.pipelined()
    }

    fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Relaxed) {
            return Err(Error::Closed(self.inner.namespace.clone()));
        }
        Ok(())
    }

    /// The explicit clock's time, if any.
    fn explicit_now(&self) -> Option<Micros> {
        self.inner
            .clock
            .as_ref()
            .map(|(clock, _)| clock.now_micros())
    }

    /// What a script call passes for its clock: the explicit clock's reading and its
    /// offset from the server's, or `None` for the server's own.
    fn clock_arguments(&self) -> Option<(Micros, i64)> {
        let (clock, offset) = self.inner.clock.as_ref()?;
        Some((clock.now_micros(), *offset))
    }

    /// The local time the denial cache is judged by.
    fn local_now(&self) -> Micros {
        self.explicit_now()
            .unwrap_or_else(|| SystemClock.now_micros())
    }

    /// Runs `cmd` on the shared connection.
    async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T> {
        self.check_open()?;
        let mut conn = self.inner.conn.get().await?;
        let result = self.inner.conn.watched(conn::query(&mut conn, cmd)).await;
        result.map_err(|e| self.failure(e))
    }

    /// Runs `script` on `key` with the clock arguments, then `args`: as a function of the
    /// library when the server has them, else as a script. Given up at `deadline`, if
    /// any, with [`Error::Timeout`].
    async fn eval<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &str,
        deadline: Option<&Deadline>,
        args: impl Fn(&mut Cmd),
    ) -> Result<T> {
        self.check_open()?;
        let build = |verb: &str, body: &str| {
            let mut cmd = Cmd::with_capacity(8, verb.len() + body.len() + key.len() + 64);
            cmd.arg(verb).arg(body).arg(1).arg(key);
            batch::write_clock(&mut cmd, self.clock_arguments());
            args(&mut cmd);
            cmd
        };
        let queued = || Work::Cmd(build("FCALL", &script.function));
        self.run_script(script, key, deadline, &build, queued).await
    }

    /// [`eval`](Self::eval) of a call given in parts (a decision): queued as such, so
    /// that the batching task writes it into a batch call without a `Cmd` of its own.
    /// Not an `async fn`: a layer of future less in every decision's.
    fn eval_call<'a>(
        &'a self,
        call: &'a Call,
        deadline: Option<&'a Deadline>,
    ) -> impl Future<Output = Result<Vec<u8>>> + Send + 'a {
        let build = move |verb: &str, body: &str| call.cmd(verb, body);
        let queued = move || Work::Call(call.clone());
        self.run_script(call.script, call.key.as_str(), deadline, build, queued)
    }

    /// What [`eval`](Self::eval) and [`eval_call`](Self::eval_call) share: `script` on
    /// `key`, as the library's function (`queued`, through the batching task) when the
    /// server has the library, else as a script; `build` writes the call with a verb and
    /// its body (a function's name, a SHA, a source).
    async fn run_script<T: FromRedisValue>(
        &self,
        script: &LuaScript,
        key: &str,
        deadline: Option<&Deadline>,
        build: impl Fn(&str, &str) -> Cmd,
        queued: impl FnOnce() -> Work,
    ) -> Result<T> {
        let build = &build;
        let reply = if self.inner.functions.load(Ordering::Relaxed) {
            let loads = self.inner.library_loads.load(Ordering::Acquire);
            match self.inner.conn.batched(queued(), deadline).await? {
                // Boxed, as `eval_source` below: rare, and large futures.
                Err(e) if missing_function(&e) => {
                    Box::pin(within(deadline, self.load_library(build, script, loads))).await?
                }
                Err(e) if without_functions(&e) => {
                    self.stop_functions(&e);
                    self.eval_script(build, script, deadline).await?
                }
                reply => reply,
            }
        } else {
            self.eval_script(build, script, deadline).await?
        };
        reply
            .and_then(|value| redis::from_redis_value(value).map_err(RedisError::from))
            .map_err(|e| self.script_error(e, key))
    }

    /// `script` as a script: `EVALSHA`, then `EVAL` with the source if this server's
    /// script cache does not have it yet (so that later calls find the SHA).
    async fn eval_script(
        &self,
        build: &impl Fn(&str, &str) -> Cmd,
        script: &LuaScript,
        deadline: Option<&Deadline>,
    ) -> Result<RedisResult<Value>> {
        match self
            .inner
            .conn
            .batched(Work::Cmd(build("EVALSHA", &script.sha)), deadline)
            .await?
        {
            // Boxed: a connection of its own is a future of kilobytes, which every
            // decision's future would otherwise carry and copy.
            Err(e) if e.code() == Some("NOSCRIPT") => {
                Box::pin(within(deadline, self.eval_source(build, script))).await
            }
            reply => Ok(reply),
        }
    }

    /// `script` sent whole (`EVAL`), on a connection of its own: it succeeds whatever is
    /// or is not loaded on the server.
    async fn eval_source(
        &self,
        build: &impl Fn(&str, &str) -> Cmd,
        script: &LuaScript,
    ) -> Result<RedisResult<Value>> {
        let mut conn: Conn = self.inner.conn.get().await?;
        let eval = build("EVAL", &script.source);
        Ok(self.inner.conn.watched(conn::query(&mut conn, &eval)).await)
    }

    /// After `FCALL` found no function: loads the library (`FUNCTION LOAD REPLACE`) for
    /// the calls to come, and answers this one as a script. `loads` is how many loads had
    /// succeeded when the `FCALL` was sent. Compiling the library takes Redis about a
    /// millisecond, so a backend loads it once per disappearance: not while another call
    /// loads it, nor when a load succeeded after this call's `FCALL` left (its answer was
    /// older than the library); those calls run as scripts. A server that refuses the
    /// library for good (no functions, not allowed, a library it cannot compile) is left to
    /// scripts from then on; any other failure (out of memory, a busy server, a dropped
    /// connection) leaves the next call to try again.
    async fn load_library(
        &self,
        build: &impl Fn(&str, &str) -> Cmd,
        script: &LuaScript,
        loads: u64,
    ) -> Result<RedisResult<Value>> {
        let loaded_since = self.inner.library_loads.load(Ordering::Acquire) != loads;
        let load = if loaded_since {
            None
        } else {
            LibraryLoad::start(&self.inner.loading_library)
        };
        if let Some(_loading) = load {
            let library = &SCRIPTS.library;
            let mut load = Cmd::new();
            load.arg("FUNCTION")
                .arg("LOAD")
                .arg("REPLACE")
                .arg(&library.source);
            let mut conn: Conn = self.inner.conn.get().await?;
            let loaded: RedisResult<String> =
                self.inner.conn.watched(conn::query(&mut conn, &load)).await;
            match loaded {
                Ok(_) => {
                    self.inner.library_loads.fetch_add(1, Ordering::AcqRel);
                    tracing::debug!(library = %library.name, "Redis function library loaded");
                }
                Err(e) if without_functions(&e) || not_compiled(&e) => self.stop_functions(&e),
                Err(e) => {
                    self.inner.conn.failed(&e);
                    tracing::debug!(error = %e, "Redis function library not loaded this time");
                }
            }
        }
        self.eval_source(build, script).await
    }

    /// Turns functions off for this backend, after the server refused them.
    fn stop_functions(&self, error: &RedisError) {
        if self.inner.functions.swap(false, Ordering::Relaxed) {
            tracing::warn!(
                namespace = %self.inner.namespace,
                %error,
                "Redis functions unavailable; Traffik runs its strategies as scripts"
            );
        }
    }

    /// `error` as this crate's, after forgetting the shared connection if it may be
    /// broken.
    fn failure(&self, error: RedisError) -> Error {
        self.inner.conn.failed(&error);
        backend_error(error)
    }

    fn script_error(&self, error: RedisError, key: &str) -> Error {
        match error.code() {
            Some("NOTINTEGER") => {
                return Error::WrongType {
                    key: key.to_owned(),
                    expected: "an integer that can take this increment without overflow",
                };
            }
            // A key of another Redis type (a list, a hash...): that key's problem, not an
            // outage, so it must not count towards a circuit breaker or a failure policy.
            Some("WRONGTYPE") => {
                return Error::WrongType {
                    key: key.to_owned(),
                    expected: "a string",
                };
            }
            _ => {}
        }
        self.failure(error)
    }

    /// Any algorithm: the time, then a compare-and-set loop on its state.
    async fn decide_generic(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Result<Decision> {
        super::decide_by_update(self, key, algorithm, rate, cost).await
    }

    /// The script for `algorithm` under `rate`, when it has one here.
    fn plan(&self, key: &str, algorithm: &dyn Algorithm, rate: &Rate) -> Option<Plan> {
        let plan = scripts::plan(algorithm.builtin()?, rate)?;
        // In a cluster, `key:window` shares `key`'s slot only through a hash tag.
        if plan.windowed && self.is_cluster() && !has_hash_tag(key) {
            return None;
        }
        Some(plan)
    }

    /// A decision, every wait of which ends by `deadline`, if any (see
    /// `bounds_decisions`).
    async fn decide_async(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
        deadline: Option<Deadline>,
    ) -> Result<Decision> {
        self.check_open()?;
        if rate.is_unlimited() {
            return Ok(Decision::unlimited());
        }
        check_cost(algorithm, rate, cost)?;
        if cost == 0 {
            // Boxed: a rare path, whose state every decision's future would carry.
            let peek = self.peek_async(key, algorithm, rate);
            let peek = Box::pin(within(deadline.as_ref(), peek)).await?;
            return Ok(Decision::allow(peek.limit, peek.remaining, peek.reset));
        }
        // A denial remembered in process was answered by `decide` before this future
        // was built.
        let decision = match self.plan(key, algorithm, rate) {
            // A built-in strategy: one script call (here rather than in a function of its
            // own, whose arguments the future would carry beside these).
            Some(plan) => {
                let mut numbers = ArrayVec::new();
                numbers.extend([rate.limit(), rate.period_micros(), cost]);
                numbers.extend(plan.extra[..plan.extra_len].iter().copied());
                let call = Call {
                    script: plan.script,
                    key: self.full_key(key),
                    clock: self.clock_arguments(),
                    numbers,
                };
                let reply: Vec<u8> = self.eval_call(&call, deadline.as_ref()).await?;
                decision_from(&reply)?
            }
            // Boxed, as the peek above.
            None => {
                let generic = self.decide_generic(key, algorithm, rate, cost);
                Box::pin(within(deadline.as_ref(), generic)).await?
            }
        };
        // Worked out after the wait, not carried through it.
        let fingerprint = algorithm.builtin().map(|b| (b, *rate));
        if let (Some(cache), Some(fingerprint)) = (&self.inner.denials, fingerprint) {
            if !decision.allowed {
                cache.record(
                    key.to_owned(),
                    fingerprint,
                    cost,
                    decision,
                    self.local_now(),
                );
            }
        }
        Ok(decision)
    }

    /// A decision: a remembered denial at once, else [`decide_async`](Self::decide_async)
    /// by `deadline`.
    fn decide_by<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
        deadline: Option<Deadline>,
    ) -> BackendFuture<'a, Result<Decision>> {
        match self.cached_denial(key, algorithm, rate, cost) {
            Some(denied) => BackendFuture::ready(Ok(denied)),
            None => BackendFuture::new(self.decide_async(key, algorithm, rate, cost, deadline)),
        }
    }

    /// The denial the [denial cache](RedisBackendBuilder::cache_denials) holds for this
    /// decision, if any: checked in place, so that a remembered denial is answered with
    /// no future to build or await. `None` for anything [`decide_async`](Self::decide_async)
    /// would not answer from the cache (a closed backend, an unlimited rate, a cost of
    /// zero or over the capacity, a custom algorithm).
    fn cached_denial(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Option<Decision> {
        let cache = self.inner.denials.as_ref()?;
        let builtin = algorithm.builtin()?;
        if self.inner.closed.load(Ordering::Relaxed)
            || rate.is_unlimited()
            || cost == 0
            || check_cost(algorithm, rate, cost).is_err()
        {
            return None;
        }
        cache.check(key, (builtin, *rate), cost, self.local_now())
    }

    async fn peek_async(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
    ) -> Result<Decision> {
        self.check_open()?;
        if rate.is_unlimited() {
            return Ok(Decision::unlimited());
        }
        // One round trip: the script reads the time and the state (computing the window
        // key for a fixed window), and the Rust algorithm judges them.
        let period = match (algorithm.builtin(), algorithm.window(0, rate)) {
            (_, None) => None,
            (Some(Builtin::FixedWindow), Some(_)) if self.plan(key, algorithm, rate).is_some() => {
                Some(rate.period_micros())
            }
            _ => {
                let now = self.now().await?;
                let key = state_key(algorithm, key, now, rate);
                let state = self.get(&key).await?;
                return Ok(algorithm.peek(state.as_deref(), now, rate));
            }
        };
        let full = self.redis_key(key);
        let (now, state): (String, Option<Vec<u8>>) = self
            .eval(&SCRIPTS.primitives, &full, None, |cmd| {
                cmd.arg("peek");
                match period {
                    Some(period) => cmd.arg(period),
                    None => cmd.arg(""),
                };
            })
            .await?;
        let now = parse_micros(&now)?;
        Ok(algorithm.peek(state.as_deref(), now, rate))
    }

    async fn primitive<T: FromRedisValue>(
        &self,
        key: &str,
        op: &str,
        args: impl Fn(&mut Cmd),
    ) -> Result<T> {
        let full = self.redis_key(key);
        self.eval(&SCRIPTS.primitives, &full, None, |cmd| {
            cmd.arg(op);
            args(cmd);
        })
        .await
    }

    async fn increment_async(&self, key: &str, amount: i64, ttl: Option<Duration>) -> Result<i64> {
        self.primitive(key, "incr", |cmd| {
            cmd.arg(amount);
            match ttl {
                Some(ttl) => cmd.arg(duration_micros(ttl)),
                None => cmd.arg(""),
            };
        })
        .await
    }

    async fn update_async(&self, key: &str, f: &mut UpdateFn<'_>) -> Result<()> {
        let mut backoff = Backoff::new(Duration::from_micros(100), Duration::from_millis(5));
        loop {
            let current = self.get(key).await?;
            let write = f(current.as_deref());
            let (op, value, ttl) = match &write {
                Write::Keep => return Ok(()),
                Write::Put { state, ttl } => ("put", &state[..], duration_micros(*ttl)),
                Write::Delete => ("del", &[][..], 0),
            };
            let written: i64 = self
                .primitive(key, "cas", |cmd| {
                    match &current {
                        Some(bytes) => cmd.arg("1").arg(&bytes[..]),
                        None => cmd.arg("0").arg(""),
                    };
                    cmd.arg(op).arg(value).arg(ttl);
                })
                .await?;
            if written == 1 {
                return Ok(());
            }
            // Another writer got in between: read again, after a short jittered pause.
            backoff.wait().await;
        }
    }

    async fn lock_async(&self, name: &str, options: LockOptions) -> Result<Lock> {
        let token = format!(
            "{:016x}{:08x}",
            random_u64(),
            self.inner.next_token.fetch_add(1, Ordering::Relaxed)
        );
        let ttl = duration_micros(options.ttl).max(1000);
        super::lock::poll_for(name, options, || async {
            let acquired: i64 = self
                .primitive(name, "lock", |cmd| {
                    cmd.arg(&token).arg(ttl);
                })
                .await?;
            Ok((acquired == 1).then(|| {
                let release = RedisLockRelease {
                    backend: self.clone(),
                    name: name.to_owned(),
                    token: token.clone(),
                };
                Lock::new(name, token.clone(), Box::new(release))
            }))
        })
        .await
    }

    /// Deletes every key matching `namespace:*`, with `SCAN` (never `KEYS`) on each
    /// primary.
    async fn reset_async(&self) -> Result<()> {
        self.check_open()?;
        if let Some(cache) = &self.inner.denials {
            cache.clear();
        }
        let pattern = format!("{}*", glob_escape(&self.inner.prefix));
        let mut conn = self.inner.conn.get().await?;
        match &mut conn {
            Conn::Single(_) => self.reset_node(&mut conn, &pattern, None).await,
            Conn::Cluster(_) => {
                let nodes: String = self
                    .query(&redis::cmd("CLUSTER").arg("NODES").clone())
                    .await?;
                for (host, port) in cluster_primaries(&nodes) {
                    self.reset_node(&mut conn, &pattern, Some((host, port)))
                        .await?;
                }
                Ok(())
            }
        }
    }

    async fn reset_node(
        &self,
        conn: &mut Conn,
        pattern: &str,
        node: Option<(String, u16)>,
    ) -> Result<()> {
        let mut cursor = 0u64;
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(RESET_BATCH);
            let reply: (u64, Vec<String>) = match (&node, &mut *conn) {
                (Some((host, port)), Conn::Cluster(cluster)) => {
                    use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
                    let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::ByAddress {
                        host: host.clone(),
                        port: *port,
                    });
                    let value = cluster
                        .route_command(scan, routing)
                        .await
                        .map_err(|e| self.failure(e))?;
                    FromRedisValue::from_redis_value(value)
                        .map_err(|e| Error::Backend(e.to_string()))?
                }
                _ => conn::query(conn, &scan)
                    .await
                    .map_err(|e| self.failure(e))?,
            };
            let (next, keys) = reply;
            if !keys.is_empty() {
                if node.is_some() {
                    // Keys of different slots: one UNLINK each, all in flight at once on
                    // the multiplexed connections.
                    let mut unlinks = tokio::task::JoinSet::new();
                    for key in keys {
                        let mut conn = conn.clone();
                        unlinks.spawn(async move {
                            let unlink = redis::cmd("UNLINK").arg(key).clone();
                            conn::query::<i64>(&mut conn, &unlink).await
                        });
                    }
                    while let Some(done) = unlinks.join_next().await {
                        done.map_err(|e| Error::Backend(e.to_string()))?
                            .map_err(|e| self.failure(e))?;
                    }
                } else {
                    let mut unlink = redis::cmd("UNLINK");
                    unlink.arg(&keys);
                    let _: i64 = conn::query(conn, &unlink)
                        .await
                        .map_err(|e| self.failure(e))?;
                }
            }
            if next == 0 {
                return Ok(());
            }
            cursor = next;
        }
    }
}

/// The primaries' addresses in a `CLUSTER NODES` reply.
fn cluster_primaries(nodes: &str) -> Vec<(String, u16)> {
    nodes
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let flags = fields.get(2)?;
            if !flags.split(',').any(|f| f == "master") || flags.contains("fail") {
                return None;
            }
            let address = fields.get(1)?.split('@').next()?;
            let (host, port) = address.rsplit_once(':')?;
            Some((host.to_owned(), port.parse().ok()?))
        })
        .collect()
}

/// Whether `key` has a Redis Cluster hash tag: a `{` followed later by a `}`, with
/// something between.
fn has_hash_tag(key: &str) -> bool {
    key.find('{')
        .and_then(|open| key[open + 1..].find('}'))
        .is_some_and(|len| len > 0)
}

/// Escapes the glob characters of `SCAN MATCH`.
fn glob_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if matches!(c, '*' | '?' | '[' | ']' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

fn backend_error(error: RedisError) -> Error {
    Error::Backend(error.to_string())
}

fn duration_micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

fn parse_micros(text: &str) -> Result<Micros> {
    text.parse()
        .map_err(|_| Error::Backend(format!("unexpected time from redis: {text:?}")))
}

/// A decision from a script's reply `{allowed, wait, limit, remaining, reset}`.
/// A decision as the scripts return it (`decision` in `prelude.lua`): allowed (one byte,
/// 0 or 1), then wait, limit, remaining and reset, each a little-endian `u64`.
fn decision_from(reply: &[u8]) -> Result<Decision> {
    let unexpected = || Error::Backend(format!("unexpected script reply {reply:?}"));
    let Some((&allowed, fields)) = reply.split_first() else {
        return Err(unexpected());
    };
    let Ok(fields) = <&[u8; 32]>::try_from(fields) else {
        return Err(unexpected());
    };
    let word = |i: usize| {
        let mut bytes = [0; 8];
        bytes.copy_from_slice(&fields[8 * i..8 * i + 8]);
        u64::from_le_bytes(bytes)
    };
    let (wait, limit, remaining, reset) =
        (word(0), word(1), word(2), Duration::from_micros(word(3)));
    Ok(match allowed {
        1 => Decision::allow(limit, remaining, reset),
        0 => Decision::deny(limit, remaining, Duration::from_micros(wait), reset),
        _ => return Err(unexpected()),
    })
}

/// Whether `FCALL` failed because the function is not loaded on this server (a new
/// server, a restart, `FUNCTION FLUSH`).
fn missing_function(error: &RedisError) -> bool {
    error.code() == Some("ERR")
        && error
            .detail()
            .is_some_and(|detail| detail.starts_with("Function not found"))
}

/// Whether `FUNCTION LOAD` failed on the library's code itself.
fn not_compiled(error: &RedisError) -> bool {
    error
        .detail()
        .is_some_and(|detail| detail.starts_with("Error compiling"))
}

/// The one library load a backend runs at a time: held while it runs, released when
/// dropped, so that a load abandoned half-way (its request timed out) does not block the
/// next.
struct LibraryLoad<'a>(&'a AtomicBool);

impl<'a> LibraryLoad<'a> {
    /// The right to load, unless a load is already under way.
    fn start(loading: &'a AtomicBool) -> Option<Self> {
        // Built only when the flag was clear: a guard made and dropped here would clear
        // the flag of the load under way.
        (!loading.swap(true, Ordering::AcqRel)).then(|| Self(loading))
    }
}

impl Drop for LibraryLoad<'_> {
    fn drop(&mut self) {
        self.0.store(false, Ordering::Release);
    }
}

/// Whether the server has no functions for this client: an unknown command (before
/// Redis 7, or a proxy that does not pass it on) or one the user is not allowed (`FCALL`
/// or `FUNCTION LOAD`; a key the user may not touch is refused to scripts alike, and
/// stays that decision's error).
fn without_functions(error: &RedisError) -> bool {
    let detail = error.detail().unwrap_or_default();
    match error.code() {
        Some("NOPERM") => detail.contains("'fcall'") || detail.contains("'function|"),
        Some("ERR") => detail.starts_with("unknown command"),
        _ => false,
    }
}

/// Denials remembered in process ([`RedisBackendBuilder::cache_denials`]), by key within
/// the backend's namespace (one cache per backend: the namespace would only lengthen
/// every key hashed).
#[derive(Default)]
struct DenialCache {
    map: DashMap<String, Denial, foldhash::fast::RandomState>,
}

#[derive(Clone, Copy)]
struct Denial {
    fingerprint: (Builtin, Rate),
    cost: u64,
    decision: Decision,
    /// When the decision was made, on the local clock.
    at: Micros,
}

/// Entries kept before expired ones are swept.
const DENIAL_CACHE_SWEEP: usize = 10_000;

impl DenialCache {
    fn check(
        &self,
        key: &str,
        fingerprint: (Builtin, Rate),
        cost: u64,
        now: Micros,
    ) -> Option<Decision> {
        let denial = *self.map.get(key)?;
        let elapsed = now.saturating_sub(denial.at);
        let wait = duration_micros(denial.decision.wait);
        if denial.fingerprint != fingerprint || cost < denial.cost || elapsed >= wait {
            return None;
        }
        let elapsed = Duration::from_micros(elapsed);
        Some(Decision::deny(
            denial.decision.limit,
            denial.decision.remaining,
            denial.decision.wait - elapsed,
            denial.decision.reset.saturating_sub(elapsed),
        ))
    }

    fn record(
        &self,
        key: String,
        fingerprint: (Builtin, Rate),
        cost: u64,
        decision: Decision,
        now: Micros,
    ) {
        if self.map.len() >= DENIAL_CACHE_SWEEP {
            self.map
                .retain(|_, d| now.saturating_sub(d.at) < duration_micros(d.decision.wait));
        }
        self.map.insert(
            key,
            Denial {
                fingerprint,
                cost,
                decision,
                at: now,
            },
        );
    }

    fn clear(&self) {
        self.map.clear();
    }
}

impl fmt::Debug for RedisBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisBackend")
            .field("namespace", &self.inner.namespace)
            .field("persistent", &self.inner.persistent)
            .field("source", self.inner.conn.source())
            .field("explicit_clock", &self.inner.clock.is_some())
            .field("cache_denials", &self.inner.denials.is_some())
            .finish()
    }
}

/// Releases a Redis lock if its token still owns it.
struct RedisLockRelease {
    backend: RedisBackend,
    name: String,
    token: String,
}

impl LockRelease for RedisLockRelease {
    fn release(self: Box<Self>) -> BackendFuture<'static, Result<bool>> {
        BackendFuture::new(async move {
            let released: i64 = self
                .backend
                .primitive(&self.name, "unlock", |cmd| {
                    cmd.arg(&self.token);
                })
                .await?;
            Ok(released == 1)
        })
    }
}

impl Backend for RedisBackend {
    fn namespace(&self) -> &str {
        &self.inner.namespace
    }

    fn persistent(&self) -> bool {
        self.inner.persistent
    }

    fn timeout(&self) -> Duration {
        self.inner.timeout
    }

    /// Every decision made by [`decide_within`](Backend::decide_within) ends by its limit:
    /// a queued one with the pipeline it went in (one timer for them all), any other under
    /// a timer of its own.
    fn bounds_decisions(&self) -> bool {
        true
    }

    fn may_decide_at_once(&self) -> bool {
        self.inner.denials.is_some()
    }

    fn decide_at_once(
        &self,
        key: &str,
        algorithm: &dyn Algorithm,
        rate: &Rate,
        cost: u64,
    ) -> Option<Result<Decision>> {
        self.cached_denial(key, algorithm, rate, cost).map(Ok)
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.inner.on_error.clone()
    }

    /// Opens (or reopens) the backend and checks that the server answers.
    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            self.inner.closed.store(false, Ordering::Relaxed);
            let _: String = self.query(&redis::cmd("PING")).await?;
            Ok(())
        })
    }

    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        if let Some(now) = self.explicit_now() {
            return BackendFuture::ready(self.check_open().map(|()| now));
        }
        BackendFuture::new(async move {
            let (secs, micros): (u64, u64) = self.query(&redis::cmd("TIME")).await?;
            Ok(secs * 1_000_000 + micros)
        })
    }

    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        BackendFuture::new(async move {
            if self.inner.clock.is_none() {
                return self.query(redis::cmd("GET").arg(self.redis_key(key))).await;
            }
            self.primitive(key, "get", |_| {}).await
        })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(async move {
            let mut cmd = redis::cmd("SET");
            cmd.arg(self.redis_key(key)).arg(value);
            if let Some(ttl) = ttl {
                let micros = duration_micros(ttl);
                match (&self.inner.clock, self.explicit_now()) {
                    (Some((_, offset)), Some(now)) => {
                        let at = now.saturating_add(micros).div_ceil(1000);
                        cmd.arg("PXAT")
                            .arg((at as i64).saturating_add(*offset).max(1));
                    }
                    _ => {
                        cmd.arg("PX").arg(micros.div_ceil(1000).max(1));
                    }
                }
            }
            let () = self.query(&cmd).await?;
            Ok(())
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        BackendFuture::new(async move {
            let deleted: i64 = if self.inner.clock.is_none() {
                self.query(redis::cmd("DEL").arg(self.redis_key(key)))
                    .await?
            } else {
                self.primitive(key, "del", |_| {}).await?
            };
            Ok(deleted > 0)
        })
    }

    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(self.increment_async(key, amount, None))
    }

    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(self.increment_async(key, amount, Some(ttl)))
    }

    /// A compare-and-set loop: read, run `f`, write only if the value is still the one
    /// read (a script), else retry. `f` may run more than once.
    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(self.update_async(key, f))
    }

    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        BackendFuture::new(self.lock_async(name, options))
    }

    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        // Called directly, not by a throttle: no limit but the connection's own.
        self.decide_by(key, algorithm, rate, cost, None)
    }

    fn decide_within<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        self.decide_by(key, algorithm, rate, cost, Deadline::after(limit))
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(self.peek_async(key, algorithm, rate))
    }

    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(self.reset_async())
    }

    fn close(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            if self.inner.closed.load(Ordering::Relaxed) {
                return Ok(());
            }
            let result = if self.inner.persistent {
                Ok(())
            } else {
                self.reset_async().await
            };
            self.inner.closed.store(true, Ordering::Relaxed);
            self.inner.conn.clear();
            result
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A decision's future is boxed on every call (`BackendFuture::new`). Past 1 032
    /// bytes glibc serves the box from its shared bins instead of the thread's cache,
    /// and the future is copied into it: the rare paths (connecting, a connection of
    /// one's own, loading the library, a peek) are boxed apart to keep it small. Built
    /// without a server: nothing is polled.
    #[test]
    fn a_decisions_future_fits_the_allocators_thread_cache() {
        let backend = RedisBackend::builder("size")
            .url("redis://127.0.0.1:6379")
            .build()
            .expect("a backend is built without connecting");
        let rate: Rate = "5/m".parse().expect("a rate");
        for algorithm in [&crate::FixedWindow as &dyn Algorithm, &crate::Gcra::new()] {
            let deadline = Deadline::after(DEFAULT_TIMEOUT);
            let decision = backend.decide_async("k", algorithm, &rate, 1, deadline);
            let size = std::mem::size_of_val(&decision);
            assert!(size <= 1032, "{algorithm:?}: {size} bytes");
        }
    }

    #[test]
    fn a_deadline_keeps_its_limit_and_none_is_past_every_instant() {
        let limit = Duration::from_nanos(60_000_001);
        let before = tokio::time::Instant::now();
        let deadline = Deadline::after(limit).expect("a deadline");
        assert_eq!(deadline.limit(), limit);
        assert!(deadline.at >= before + limit);
        assert!(Deadline::after(Duration::MAX).is_none());
    }

    /// The error a server answers with, as redis-rs reads it off the wire.
    fn server_error(line: &str) -> RedisError {
        match redis::parse_redis_value(format!("-{line}\r\n").as_bytes()) {
            Ok(Value::ServerError(error)) => error.into(),
            other => panic!("{line:?} read as {other:?}"),
        }
    }

    #[test]
    fn function_errors_are_told_apart() {
        let missing = server_error("ERR Function not found");
        assert!(missing_function(&missing) && !without_functions(&missing));
        for refused in [
            "ERR unknown command 'FCALL', with args beginning with: 'traffik_x' '1' ",
            "NOPERM this user has no permissions to run the 'fcall' command",
            "NOPERM this user has no permissions to run the 'function|load' command",
        ] {
            let error = server_error(refused);
            assert!(without_functions(&error), "{refused}");
            assert!(!missing_function(&error), "{refused}");
        }
        // A key the user may not touch is that decision's error, not a lack of functions.
        let keys = server_error(
            "NOPERM this user has no permissions to access one of the keys used as arguments",
        );
        assert!(!without_functions(&keys) && !missing_function(&keys));
        let bad_code = server_error("ERR Error compiling function: user_function:2: '=' expected");
        assert!(not_compiled(&bad_code) && !without_functions(&bad_code));
        let oom = server_error("OOM command not allowed when used memory > 'maxmemory'.");
        assert!(!not_compiled(&oom) && !without_functions(&oom) && !missing_function(&oom));
    }

    #[test]
    fn decisions_read_from_script_replies() {
        let mut reply = vec![1];
        for word in [0u64, 10, 7, 1 << 40] {
            reply.extend_from_slice(&word.to_le_bytes());
        }
        assert_eq!(
            decision_from(&reply).unwrap(),
            Decision::allow(10, 7, Duration::from_micros(1 << 40))
        );
        reply[0] = 0;
        reply[1] = 3;
        assert_eq!(
            decision_from(&reply).unwrap(),
            Decision::deny(
                10,
                7,
                Duration::from_micros(3),
                Duration::from_micros(1 << 40)
            )
        );
        for bad in [&[][..], &reply[..32], &[reply.clone(), vec![0]].concat()] {
            assert!(matches!(decision_from(bad), Err(Error::Backend(_))));
        }
        reply[0] = 2;
        assert!(matches!(decision_from(&reply), Err(Error::Backend(_))));
    }

    #[test]
    fn hash_tags() {
        assert!(has_hash_tag("{api:1.2.3.4}:http"));
        assert!(has_hash_tag("x{a}"));
        assert!(!has_hash_tag("{}x"));
        assert!(!has_hash_tag("client"));
        assert!(!has_hash_tag("a}{"));
    }

    #[test]
    fn glob() {
        assert_eq!(glob_escape("a*b?[c]\\:"), "a\\*b\\?\\[c\\]\\\\:");
    }

    #[test]
    fn primaries() {
        let nodes = "a1 127.0.0.1:7000@17000 myself,master - 0 0 1 connected 0-5460\n\
                     b2 127.0.0.1:7003@17003 slave a1 0 0 1 connected\n\
                     c3 127.0.0.1:7001@17001 master,fail - 0 0 2 connected\n\
                     d4 127.0.0.1:7002@17002 master - 0 0 3 connected 10923-16383\n";
        assert_eq!(
            cluster_primaries(nodes),
            vec![("127.0.0.1".into(), 7000), ("127.0.0.1".into(), 7002)]
        );
    }

    #[test]
    fn namespace_with_braces_is_refused() {
        let built = RedisBackend::builder("a{b}")
            .url("redis://127.0.0.1/")
            .build();
        assert!(matches!(built, Err(Error::Configuration(_))));
        assert!(matches!(
            RedisBackend::builder("a").build(),
            Err(Error::Configuration(_))
        ));
    }
}

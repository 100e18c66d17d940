//! The fault harness shared by the end-to-end reliability tests of the store backends
//! (`tests/reliability_redis.rs`, `tests/reliability_memcached.rs`): a store server run as
//! a child process on a spare loopback port (killed and restarted at will), a server that
//! accepts connections and never answers, a proxy that cuts connections without closing
//! them, timed requests, what each failure policy answers, and the kill-mid-traffic-then-
//! restart scenario.
//!
//! Each test file declares `mod common;` (for [`TestServer`]) and `mod faults;`.

#![allow(dead_code)]

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use axum::Router;
use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use traffik::policy::DEFAULT_TIMEOUT;
use traffik::prelude::*;
use traffik::{BreakerState, CircuitBreaker, FailurePolicy};

use crate::common::{TestServer, client};

/// How long any one request may take while the store misbehaves: the decision timeout plus
/// a generous margin for the HTTP round trip on a busy machine.
pub const BOUND: Duration = Duration::from_millis(DEFAULT_TIMEOUT.as_millis() as u64 + 1_000);

/// The fail-closed wait the tests configure: no real denial of the examples' limits says
/// this long.
pub const FAIL_CLOSED_WAIT: Duration = Duration::from_secs(3600);

pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
}

/// How to tell that a server is ready: it answers `request` with a reply starting with
/// `reply`.
#[derive(Debug, Clone, Copy)]
pub struct Probe {
    pub request: &'static [u8],
    pub reply: &'static [u8],
}

impl Probe {
    /// Whether the server on `port` answers the probe, within a second.
    pub async fn answered(self, port: u16) -> bool {
        let exchange = async {
            let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
            stream.write_all(self.request).await.ok()?;
            let mut reply = vec![0u8; self.reply.len()];
            stream.read_exact(&mut reply).await.ok()?;
            Some(reply == self.reply)
        };
        tokio::time::timeout(Duration::from_secs(1), exchange)
            .await
            .ok()
            .flatten()
            .unwrap_or(false)
    }
}

/// A store server run as a child process: its command line and its readiness probe.
#[derive(Debug)]
pub struct ServerSpec {
    /// The store's name, for messages: `Redis`, `Memcached`.
    pub name: &'static str,
    /// The program, looked up on `PATH`.
    pub program: &'static str,
    /// An argument that makes the program print its version and exit with success.
    pub version_arg: &'static str,
    /// The arguments that run it in the foreground on `127.0.0.1:<port>`, without
    /// persistence (a restarted server is empty).
    pub args: fn(port: u16) -> Vec<String>,
    /// Ready once this is answered.
    pub probe: Probe,
}

impl ServerSpec {
    /// Whether the program can be run: when `CI` is set it must be; otherwise the tests
    /// skip, saying why.
    pub fn available(&self) -> bool {
        init_logs();
        let found = Command::new(self.program)
            .arg(self.version_arg)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|status| status.success());
        if !found {
            assert!(
                std::env::var_os("CI").is_none(),
                "{} not found (CI is set: the {} fault tests must run)",
                self.program,
                self.name
            );
            tracing::warn!(
                "{} not found on PATH: skipping the {} fault tests",
                self.program,
                self.name
            );
        }
        found
    }
}

/// A free loopback port (free when asked; the server takes it right after).
pub fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a spare loopback port")
}

/// A [`ServerSpec`]'s child process on a loopback port, killed (and reaped) when dropped.
pub struct ChildServer {
    spec: &'static ServerSpec,
    pub port: u16,
    child: Option<Child>,
}

impl ChildServer {
    /// Starts a server on a spare port, or `None` to skip (no program, not on CI).
    pub async fn start(spec: &'static ServerSpec) -> Option<Self> {
        if !spec.available() {
            return None;
        }
        let mut server = Self {
            spec,
            port: spare_port(),
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    /// Starts the server again on the same port (fresh, empty: no persistence).
    pub async fn restart(&mut self) {
        self.kill();
        let child = Command::new(self.spec.program)
            .args((self.spec.args)(self.port))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|error| panic!("spawn {}: {error}", self.spec.program));
        self.child = Some(child);
        // Ready once it answers the probe: 200 tries, 25 ms apart (5 s at most).
        for _ in 0..200 {
            if self.spec.probe.answered(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("{} did not start on port {}", self.spec.program, self.port);
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// One answered request.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: StatusCode,
    pub retry_after: Option<u64>,
    pub elapsed: Duration,
    pub body: String,
}

/// `GET url` once, timed.
pub async fn get_url(client: &reqwest::Client, url: &str) -> Answer {
    let started = Instant::now();
    let response = client
        .get(url)
        .send()
        .await
        .expect("every request is answered");
    let status = response.status();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse().ok());
    let body = response.text().await.unwrap_or_default();
    Answer {
        status,
        retry_after,
        elapsed: started.elapsed(),
        body,
    }
}

/// `GET path` on `server` once, timed.
pub async fn get(client: &reqwest::Client, server: &TestServer, path: &str) -> Answer {
    get_url(client, &server.url(path)).await
}

/// What a policy answers while the store is down.
#[derive(Debug, Clone, Copy)]
pub enum Expect {
    /// 200.
    Allowed,
    /// 429 with `Retry-After` = [`FAIL_CLOSED_WAIT`].
    FailClosed,
    /// 503.
    Unavailable,
}

impl Expect {
    pub fn policy(self) -> FailurePolicy {
        match self {
            Expect::Allowed => "allow",
            Expect::FailClosed => "throttle:1h",
            Expect::Unavailable => "raise",
        }
        .parse()
        .expect("the examples' TRAFFIK_ON_ERROR values parse")
    }

    pub fn matches(self, answer: &Answer) -> bool {
        match self {
            Expect::Allowed => answer.status == StatusCode::OK,
            Expect::FailClosed => {
                answer.status == StatusCode::TOO_MANY_REQUESTS
                    && answer.retry_after == Some(FAIL_CLOSED_WAIT.as_secs())
            }
            Expect::Unavailable => {
                answer.status == StatusCode::SERVICE_UNAVAILABLE
                    && answer.body.starts_with("rate limiter error:")
            }
        }
    }
}

/// A limited route of an example app: its path, and its limit of `limit` requests per
/// `window_secs` seconds (a fixed window).
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub path: &'static str,
    pub limit: usize,
    pub window_secs: u64,
}

/// Whether `answer` is a real decision of a limit whose window is `window_secs` long: a
/// 200, or a 429 whose `Retry-After` is within the window.
pub fn is_real_decision(answer: &Answer, window_secs: u64) -> bool {
    answer.status == StatusCode::OK
        || (answer.status == StatusCode::TOO_MANY_REQUESTS
            && answer
                .retry_after
                .is_some_and(|secs| (1..=window_secs).contains(&secs)))
}

/// The fixed window of `window_secs` seconds that now falls in (the host clock).
pub fn window(window_secs: u64) -> u64 {
    SystemClock.now_micros() / (window_secs * 1_000_000)
}

/// Sends requests to `endpoint` until one is a real denial (the limit is enforced), at most
/// `tries`; every answer within [`BOUND`]. Returns the answers.
pub async fn until_limited(
    client: &reqwest::Client,
    server: &TestServer,
    endpoint: &Endpoint,
    tries: usize,
) -> Vec<Answer> {
    let mut answers = Vec::new();
    for _ in 0..tries {
        let answer = get(client, server, endpoint.path).await;
        assert!(answer.elapsed <= BOUND, "{answer:?}");
        let limited = answer.status == StatusCode::TOO_MANY_REQUESTS
            && is_real_decision(&answer, endpoint.window_secs);
        answers.push(answer);
        if limited {
            return answers;
        }
    }
    panic!("no request was limited in {tries} tries: {answers:#?}");
}

/// The store killed mid-traffic, then restarted on the same port, under one policy.
///
/// The server is started from `spec`; `app` builds the example's app on it, answering its
/// failures with the given policy; `endpoint` is the app's limited route. Healthy, the
/// limit holds; traffic from four clients at once is answered by the policy (within
/// [`BOUND`]) once the store is killed; restarted (empty) on the same port, the same app
/// limits again.
pub async fn killed_mid_traffic_then_restarted(
    spec: &'static ServerSpec,
    endpoint: &Endpoint,
    app: impl Fn(&ChildServer, FailurePolicy) -> Router,
    expect: Expect,
) {
    let Some(mut store) = ChildServer::start(spec).await else {
        return;
    };
    let server = TestServer::start(app(&store, expect.policy())).await;
    let client = client();
    let window_secs = endpoint.window_secs;

    // Healthy: `limit` a window, then 429.
    let before = window(window_secs);
    let answers = until_limited(&client, &server, endpoint, 2 * endpoint.limit + 2).await;
    if window(window_secs) == before {
        assert_eq!(answers.len(), endpoint.limit + 1, "{answers:#?}");
    }

    // Traffic from four clients at once; the store is killed once some of it was answered.
    // Each task stops once 40 requests were sent after the kill (or after 500 of its own).
    let killed = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(tokio::sync::watch::Sender::new(0usize));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), server.url(endpoint.path));
            let (killed, answered, after_kill) =
                (killed.clone(), answered.clone(), after_kill.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..500 {
                    let sent_after_kill = killed.load(Ordering::SeqCst);
                    let answer = get_url(&client, &url).await;
                    answers.push((sent_after_kill, answer));
                    answered.send_modify(|count| *count += 1);
                    if sent_after_kill && after_kill.fetch_add(1, Ordering::SeqCst) + 1 >= 40 {
                        break;
                    }
                    if after_kill.load(Ordering::SeqCst) >= 40 {
                        break;
                    }
                }
                answers
            })
        })
        .collect();
    let mut progress = answered.subscribe();
    tokio::time::timeout(
        Duration::from_secs(30),
        progress.wait_for(|count| *count >= 8),
    )
    .await
    .expect("traffic flows")
    .expect("traffic tasks alive");
    store.kill();
    killed.store(true, Ordering::SeqCst);

    let mut after = 0;
    for task in tasks {
        for (sent_after_kill, answer) in task.await.expect("traffic task") {
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            if sent_after_kill {
                after += 1;
                assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
            } else {
                assert!(
                    is_real_decision(&answer, window_secs) || expect.matches(&answer),
                    "{answer:?}"
                );
            }
        }
    }
    assert!(
        after >= 40,
        "only {after} requests were sent after the kill"
    );

    // Restarted (empty) on the same port: the same app limits again.
    store.restart().await;
    let answers = until_limited(&client, &server, endpoint, 100).await;
    let resumed = answers
        .iter()
        .position(|answer| is_real_decision(answer, window_secs))
        .expect("a real decision");
    let admitted = answers[resumed..]
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    assert!(
        (1..=2 * endpoint.limit).contains(&admitted),
        "after the restart the limit is {} a window ({} across a window edge): {answers:#?}",
        endpoint.limit,
        2 * endpoint.limit
    );
}

/// A TCP server that accepts connections, reads everything and never answers; stops when
/// dropped.
pub struct SilentServer {
    pub port: u16,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    pub async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let accepted = Arc::clone(&accepted);
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((mut stream, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(async move {
                        let mut buffer = [0u8; 4096];
                        while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                    });
                }
            }
        });
        Self {
            port,
            accepted,
            task,
        }
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

/// A TCP proxy in front of a server that can cut the connections it carries without
/// closing them, as a crashed host or a network partition does (and accept new ones it
/// never answers on), then heal for new connections only: a cut connection stays dead.
pub struct Partition {
    pub port: u16,
    /// `(cuts so far, whether new connections are cut too)`.
    state: Arc<tokio::sync::watch::Sender<(u64, bool)>>,
    accepted: Arc<AtomicUsize>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    pub async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(tokio::sync::watch::Sender::new((0u64, false)));
        let accepted = Arc::new(AtomicUsize::new(0));
        let task = tokio::spawn({
            let (state, accepted) = (Arc::clone(&state), Arc::clone(&accepted));
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    accepted.fetch_add(1, Ordering::SeqCst);
                    connections.spawn(Self::carry(client, upstream, state.subscribe()));
                }
            }
        });
        Self {
            port,
            state,
            accepted,
            task,
        }
    }

    /// Carries one connection until it is cut; then reads and drops whatever the client
    /// sends, answering nothing, until the client closes it.
    async fn carry(
        client: TcpStream,
        upstream: u16,
        mut state: tokio::sync::watch::Receiver<(u64, bool)>,
    ) {
        let (epoch, cut_at_birth) = *state.borrow_and_update();
        let (mut from_client, mut to_client) = client.into_split();
        let mut buffer = [0u8; 4096];
        if !cut_at_birth {
            let Ok(server) = TcpStream::connect(("127.0.0.1", upstream)).await else {
                return;
            };
            let (mut from_server, mut to_server) = server.into_split();
            let mut reply = [0u8; 4096];
            loop {
                tokio::select! {
                    read = from_client.read(&mut buffer) => match read {
                        Ok(n) if n > 0 => {
                            if to_server.write_all(&buffer[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    read = from_server.read(&mut reply) => match read {
                        Ok(n) if n > 0 => {
                            if to_client.write_all(&reply[..n]).await.is_err() {
                                return;
                            }
                        }
                        _ => return,
                    },
                    changed = state.changed() => {
                        if changed.is_err() || state.borrow_and_update().0 > epoch {
                            break; // Cut: the server's side goes silent for good.
                        }
                    }
                }
            }
        }
        while matches!(from_client.read(&mut buffer).await, Ok(n) if n > 0) {}
    }

    /// Cuts every connection, and every new one until [`heal`](Self::heal).
    pub fn cut(&self) {
        self.state.send_modify(|(epoch, cut)| {
            *epoch += 1;
            *cut = true;
        });
    }

    /// New connections are carried again; those cut stay dead.
    pub fn heal(&self) {
        self.state.send_modify(|(_, cut)| *cut = false);
    }

    /// How many connections it accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Through `partition`, which `server`'s backend connects through: answered as
/// [`Expect::Unavailable`] within [`BOUND`] while the partition is cut (nothing answers,
/// nothing closes), and answered 200 again once it heals, without restarting the app.
pub async fn answers_through_a_cut(
    partition: &Partition,
    client: &reqwest::Client,
    server: &TestServer,
    path: &str,
) {
    assert_eq!(get(client, server, path).await.status, http::StatusCode::OK);
    partition.cut();
    for _ in 0..6 {
        let answer = get(client, server, path).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        assert!(Expect::Unavailable.matches(&answer), "{answer:?}");
    }
    // Healed: the dead connections are given up and new ones made.
    partition.heal();
    let mut answers = Vec::new();
    for _ in 0..60 {
        let answer = get(client, server, path).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        let ok = answer.status == http::StatusCode::OK;
        answers.push(answer);
        if ok {
            return;
        }
    }
    panic!("still failing after the partition healed: {answers:#?}");
}

/// Against a server that accepts connections and never answers (its port given to `app`),
/// under each policy: every request, one at a time and ten at once, is answered as the
/// policy says within [`BOUND`]; under `raise` the body says the store timed out; and the
/// silent server did accept connections (the silence was answered, not a refusal).
pub async fn silence_answered_by_each_policy(
    path: &str,
    app: impl Fn(u16, FailurePolicy) -> Router,
) {
    init_logs();
    let silent = SilentServer::start().await;
    for expect in [Expect::Unavailable, Expect::Allowed, Expect::FailClosed] {
        let server = TestServer::start(app(silent.port, expect.policy())).await;
        let client = client();
        for _ in 0..3 {
            let answer = get(&client, &server, path).await;
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
        let burst = (0..10).map(|_| get(&client, &server, path));
        for answer in futures_util::future::join_all(burst).await {
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
        if let Expect::Unavailable = expect {
            let answer = get(&client, &server, path).await;
            assert!(
                answer.body.contains("did not answer within"),
                "the timeout answered: {answer:?}"
            );
        }
    }
    assert!(silent.accepted() > 0);
}

/// A [`CircuitBreaker`] around `backend` (the store `store` serves), with an in-memory
/// fallback, behind the app `app` builds: while the store is down the fallback decides and
/// limits; once the store is back and the cool-down (on a manual clock) is over, the first
/// probe closes the circuit and the store decides again.
pub async fn breaker_decides_on_its_fallback_while_down(
    store: &mut ChildServer,
    endpoint: &Endpoint,
    backend: impl Backend,
    app: impl FnOnce(Traffik) -> Router,
) {
    let clock = ManualClock::new(SystemClock.now_micros());
    let cool_down = Duration::from_secs(30);
    let breaker = CircuitBreaker::builder(backend)
        .failures(3)
        .successes(1)
        .cool_down(cool_down)
        .fallback(InMemoryBackend::new("fallback"))
        .clock(clock.clone())
        .build();
    let server = TestServer::start(app(Traffik::new(breaker.clone()))).await;
    let client = client();
    assert!(
        get(&client, &server, endpoint.path)
            .await
            .status
            .is_success()
    );

    // The store down: the fallback decides, and limits (its counts kept apart).
    store.kill();
    let answers = until_limited(&client, &server, endpoint, 20).await;
    assert!(
        answers
            .iter()
            .all(|answer| is_real_decision(answer, endpoint.window_secs)),
        "{answers:#?}"
    );
    assert_eq!(breaker.state(), BreakerState::Open);

    // The store back, cool-down over: the first probe closes the circuit; the store
    // decides again (its state was lost with the restart: the client starts afresh).
    store.restart().await;
    clock.advance(cool_down);
    let answer = get(&client, &server, endpoint.path).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(breaker.state(), BreakerState::Closed);
}

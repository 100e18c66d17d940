//! Redis faults, end to end: the `redis` example's app, served on a real socket, in front of
//! a `redis-server` this test starts itself on a spare loopback port, kills mid-traffic and
//! restarts; a server that accepts connections and never answers; an exhausted pool.
//!
//! Every request must be answered as the failure policy says, within the decision timeout
//! plus a margin (a bound, not a benchmark), and limiting must resume once Redis is back,
//! without restarting the app.
//!
//! When `CI` is set and `redis-server` is missing, the tests fail; otherwise they skip,
//! logging why.

#![cfg(feature = "redis")]

mod common;

#[allow(dead_code)]
#[path = "../examples/redis.rs"]
mod redis_example;

use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use http::StatusCode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use traffik::backend::deadpool_redis;
use traffik::policy::DEFAULT_TIMEOUT;
use traffik::prelude::*;
use traffik::{BreakerState, CircuitBreaker, FailurePolicy, RedisBackend};

use common::{TestServer, client};

/// How long any one request may take while Redis misbehaves: the decision timeout plus a
/// generous margin for the HTTP round trip on a busy machine.
const BOUND: Duration = Duration::from_millis(DEFAULT_TIMEOUT.as_millis() as u64 + 1_000);

/// The fail-closed wait the tests configure: no real 5-a-minute denial says this long.
const FAIL_CLOSED_WAIT: Duration = Duration::from_secs(3600);

fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_test_writer()
        .with_max_level(tracing::Level::WARN)
        .try_init();
}

/// Whether `redis-server` can be run: when `CI` is set it must be; otherwise the tests
/// skip, saying why.
fn redis_server_available() -> bool {
    init_logs();
    let found = Command::new("redis-server")
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if !found {
        assert!(
            std::env::var_os("CI").is_none(),
            "redis-server not found (CI is set: the Redis fault tests must run)"
        );
        tracing::warn!("redis-server not found on PATH: skipping the Redis fault tests");
    }
    found
}

/// A free loopback port (free when asked; the server takes it right after).
fn spare_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("a spare loopback port")
}

/// A `redis-server` child process on a loopback port, killed (and reaped) when dropped.
struct RedisServer {
    port: u16,
    child: Option<Child>,
}

impl RedisServer {
    /// Starts a server on a spare port, or `None` to skip (no `redis-server`, not on CI).
    async fn start() -> Option<Self> {
        if !redis_server_available() {
            return None;
        }
        let mut server = Self {
            port: spare_port(),
            child: None,
        };
        server.restart().await;
        Some(server)
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/0", self.port)
    }

    /// Starts the server again on the same port (fresh, empty: no persistence).
    async fn restart(&mut self) {
        self.kill();
        let child = Command::new("redis-server")
            .args(["--port", &self.port.to_string()])
            .args(["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .args(["--dir", &std::env::temp_dir().to_string_lossy()])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        self.child = Some(child);
        // Ready once it answers PING: 200 tries, 25 ms apart (5 s at most).
        for _ in 0..200 {
            if ping(self.port).await {
                return;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("redis-server did not start on port {}", self.port);
    }

    /// Kills the server at once (SIGKILL) and reaps it.
    fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Whether a Redis server on `port` answers `PING`, within a second.
async fn ping(port: u16) -> bool {
    let exchange = async {
        let mut stream = TcpStream::connect(("127.0.0.1", port)).await.ok()?;
        stream.write_all(b"PING\r\n").await.ok()?;
        let mut reply = [0u8; 7];
        stream.read_exact(&mut reply).await.ok()?;
        Some(&reply == b"+PONG\r\n")
    };
    tokio::time::timeout(Duration::from_secs(1), exchange)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

/// One answered request.
#[derive(Debug, Clone)]
struct Answer {
    status: StatusCode,
    retry_after: Option<u64>,
    elapsed: Duration,
    body: String,
}

/// `GET /api/limited` once, timed.
async fn get(client: &reqwest::Client, server: &TestServer) -> Answer {
    let started = Instant::now();
    let response = client
        .get(server.url("/api/limited"))
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

/// What a policy answers while Redis is down.
#[derive(Debug, Clone, Copy)]
enum Expect {
    /// 200.
    Allowed,
    /// 429 with `Retry-After` = [`FAIL_CLOSED_WAIT`].
    FailClosed,
    /// 503.
    Unavailable,
}

impl Expect {
    fn policy(self) -> FailurePolicy {
        match self {
            Expect::Allowed => "allow",
            Expect::FailClosed => "throttle:1h",
            Expect::Unavailable => "raise",
        }
        .parse()
        .expect("the example's TRAFFIK_ON_ERROR values parse")
    }

    fn matches(self, answer: &Answer) -> bool {
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

/// Whether `answer` is a real decision of the example's 5-a-minute limit.
fn is_real_decision(answer: &Answer) -> bool {
    answer.status == StatusCode::OK
        || (answer.status == StatusCode::TOO_MANY_REQUESTS
            && answer
                .retry_after
                .is_some_and(|secs| (1..=60).contains(&secs)))
}

/// The minute-long window the example's fixed window counts in.
fn window() -> u64 {
    SystemClock.now_micros() / 60_000_000
}

/// Sends requests until one is a real denial (the limit is enforced), at most `tries`;
/// every answer within [`BOUND`]. Returns the answers.
async fn until_limited(client: &reqwest::Client, server: &TestServer, tries: usize) -> Vec<Answer> {
    let mut answers = Vec::new();
    for _ in 0..tries {
        let answer = get(client, server).await;
        assert!(answer.elapsed <= BOUND, "{answer:?}");
        let limited = answer.status == StatusCode::TOO_MANY_REQUESTS && is_real_decision(&answer);
        answers.push(answer);
        if limited {
            return answers;
        }
    }
    panic!("no request was limited in {tries} tries: {answers:#?}");
}

/// Redis killed mid-traffic, then restarted on the same port, under one policy.
async fn killed_mid_traffic_then_restarted(expect: Expect) {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let backend = redis_example::backend(&redis.url(), expect.policy()).expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let client = client();

    // Healthy: five a minute, then 429.
    let before = window();
    let answers = until_limited(&client, &server, 12).await;
    if window() == before {
        assert_eq!(answers.len(), 6, "{answers:#?}");
    }

    // Traffic from four clients at once; Redis is killed once some of it was answered.
    // Each task stops once 40 requests were sent after the kill (or after 500 of its own).
    let killed = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(tokio::sync::watch::Sender::new(0usize));
    let after_kill = Arc::new(AtomicUsize::new(0));
    let tasks: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (client.clone(), server.url("/api/limited"));
            let (killed, answered, after_kill) =
                (killed.clone(), answered.clone(), after_kill.clone());
            tokio::spawn(async move {
                let mut answers = Vec::new();
                for _ in 0..500 {
                    let sent_after_kill = killed.load(Ordering::SeqCst);
                    let started = Instant::now();
                    let response = client.get(&url).send().await.expect("answered");
                    let answer = Answer {
                        status: response.status(),
                        retry_after: response
                            .headers()
                            .get("retry-after")
                            .and_then(|v| v.to_str().ok())
                            .and_then(|v| v.parse().ok()),
                        body: response.text().await.unwrap_or_default(),
                        elapsed: started.elapsed(),
                    };
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
    redis.kill();
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
                    is_real_decision(&answer) || expect.matches(&answer),
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
    redis.restart().await;
    let answers = until_limited(&client, &server, 100).await;
    let resumed = answers
        .iter()
        .position(is_real_decision)
        .expect("a real decision");
    let admitted = answers[resumed..]
        .iter()
        .filter(|answer| answer.status == StatusCode::OK)
        .count();
    assert!(
        (1..=10).contains(&admitted),
        "after the restart the limit is 5 a minute (10 across a window edge): {answers:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_allow_answers_200_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Allowed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_throttle_answers_429_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::FailClosed).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_mid_traffic_raise_answers_503_then_limits_after_restart() {
    killed_mid_traffic_then_restarted(Expect::Unavailable).await;
}

/// A TCP server that accepts connections, reads everything and never answers; stops when
/// dropped.
struct SilentServer {
    port: u16,
    task: tokio::task::JoinHandle<()>,
}

impl SilentServer {
    async fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let task = tokio::spawn(async move {
            let mut connections = tokio::task::JoinSet::new();
            while let Ok((mut stream, _)) = listener.accept().await {
                connections.spawn(async move {
                    let mut buffer = [0u8; 4096];
                    while matches!(stream.read(&mut buffer).await, Ok(n) if n > 0) {}
                });
            }
        });
        Self { port, task }
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        // Aborting the accept loop drops its JoinSet, which aborts every connection.
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_that_never_answers_is_answered_within_the_timeout() {
    init_logs();
    let silent = SilentServer::start().await;
    let url = format!("redis://127.0.0.1:{}/0", silent.port);
    for expect in [Expect::Unavailable, Expect::Allowed, Expect::FailClosed] {
        let backend = redis_example::backend(&url, expect.policy()).expect("backend");
        let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
        let client = client();
        // One at a time, then ten at once.
        for _ in 0..3 {
            let answer = get(&client, &server).await;
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
        let burst = (0..10).map(|_| get(&client, &server));
        for answer in futures_util::future::join_all(burst).await {
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
        if let Expect::Unavailable = expect {
            let answer = get(&client, &server).await;
            assert!(
                answer.body.contains("did not answer within"),
                "the timeout answered: {answer:?}"
            );
        }
    }
}

/// A TCP proxy in front of Redis that can cut the connections it carries without closing
/// them, as a crashed host or a network partition does (and accept new ones it never
/// answers on), then heal for new connections only: a cut connection stays dead.
struct Partition {
    port: u16,
    /// `(cuts so far, whether new connections are cut too)`.
    state: Arc<tokio::sync::watch::Sender<(u64, bool)>>,
    task: tokio::task::JoinHandle<()>,
}

impl Partition {
    async fn start(upstream: u16) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let state = Arc::new(tokio::sync::watch::Sender::new((0u64, false)));
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                let mut connections = tokio::task::JoinSet::new();
                while let Ok((client, _)) = listener.accept().await {
                    connections.spawn(Self::carry(client, upstream, state.subscribe()));
                }
            }
        });
        Self { port, state, task }
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
    fn cut(&self) {
        self.state.send_modify(|(epoch, cut)| {
            *epoch += 1;
            *cut = true;
        });
    }

    /// New connections are carried again; those cut stay dead.
    fn heal(&self) {
        self.state.send_modify(|(_, cut)| *cut = false);
    }
}

impl Drop for Partition {
    fn drop(&mut self) {
        self.task.abort();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_cut_without_closing_is_made_again() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    let partition = Partition::start(redis.port).await;
    let url = format!("redis://127.0.0.1:{}/0", partition.port);
    let backend = redis_example::backend(&url, FailurePolicy::Raise).expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let client = client();
    assert_eq!(get(&client, &server).await.status, StatusCode::OK);

    // Cut: nothing answers, nothing closes; every request is answered in time.
    partition.cut();
    for _ in 0..6 {
        let answer = get(&client, &server).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        assert!(Expect::Unavailable.matches(&answer), "{answer:?}");
    }

    // Healed: the dead connection is given up and a new one made, without restarting
    // the app.
    partition.heal();
    let mut answers = Vec::new();
    for _ in 0..60 {
        let answer = get(&client, &server).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        let ok = answer.status == StatusCode::OK;
        answers.push(answer);
        if ok {
            return;
        }
    }
    panic!("still failing after the partition healed: {answers:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_connection_slower_to_make_than_the_timeout_is_still_made() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // Every connection takes 600 ms to make, more than twice a decision's 250 ms: the
    // requests that wait for it give up, but the attempt goes on for the next ones.
    let redis_client = deadpool_redis::redis::Client::open(redis.url()).expect("redis client");
    let connects = Arc::new(AtomicUsize::new(0));
    let backend = RedisBackend::builder("slow-connect")
        .connection_factory({
            let connects = Arc::clone(&connects);
            move || {
                let (redis_client, connects) = (redis_client.clone(), Arc::clone(&connects));
                async move {
                    connects.fetch_add(1, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(600)).await;
                    redis_client.get_multiplexed_async_connection().await
                }
            }
        })
        .build()
        .expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let client = client();
    let mut answers = Vec::new();
    for _ in 0..20 {
        let answer = get(&client, &server).await;
        assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
        let ok = answer.status == StatusCode::OK;
        answers.push(answer);
        if ok {
            // One attempt served every request that waited for it.
            assert_eq!(connects.load(Ordering::SeqCst), 1, "{answers:#?}");
            return;
        }
        assert!(Expect::Unavailable.matches(answers.last().expect("answer")));
    }
    panic!("never connected: {answers:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_exhausted_pool_is_answered_by_the_policy_then_recovers() {
    let Some(redis) = RedisServer::start().await else {
        return;
    };
    // A pool of one connection, with no timeouts of its own, and that one held elsewhere.
    let mut config = deadpool_redis::Config::from_url(redis.url());
    config.pool = Some(deadpool_redis::PoolConfig::new(1));
    let pool = config
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .expect("pool");
    let held = pool.get().await.expect("the pool's only connection");

    for expect in [Expect::Unavailable, Expect::Allowed, Expect::FailClosed] {
        let backend = RedisBackend::builder(format!("exhausted-{expect:?}"))
            .pool(pool.clone())
            .on_error(expect.policy())
            .build()
            .expect("backend");
        let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
        let client = client();
        let burst = (0..5).map(|_| get(&client, &server));
        for answer in futures_util::future::join_all(burst).await {
            assert!(answer.elapsed <= BOUND, "too slow: {answer:?}");
            assert!(expect.matches(&answer), "{expect:?} expected: {answer:?}");
        }
    }

    // The connection comes back: a new app on the pool decides for real.
    drop(held);
    let backend = RedisBackend::builder("exhausted-recovered")
        .pool(pool)
        .build()
        .expect("backend");
    let server = TestServer::start(redis_example::app(Traffik::new(backend))).await;
    let answers = until_limited(&reqwest::Client::new(), &server, 100).await;
    assert!(
        answers.iter().any(|answer| answer.status == StatusCode::OK),
        "{answers:#?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_circuit_breaker_limits_on_its_fallback_while_redis_is_down() {
    let Some(mut redis) = RedisServer::start().await else {
        return;
    };
    let clock = ManualClock::new(SystemClock.now_micros());
    let cool_down = Duration::from_secs(30);
    let breaker = CircuitBreaker::builder(
        redis_example::backend(&redis.url(), FailurePolicy::Raise).expect("backend"),
    )
    .failures(3)
    .successes(1)
    .cool_down(cool_down)
    .fallback(InMemoryBackend::new("api-fallback"))
    .clock(clock.clone())
    .build();
    let server = TestServer::start(redis_example::app(Traffik::new(breaker.clone()))).await;
    let client = client();
    assert!(get(&client, &server).await.status.is_success());

    // Redis down: the fallback decides, and limits (five a minute, counted apart).
    redis.kill();
    let answers = until_limited(&client, &server, 20).await;
    assert!(answers.iter().all(is_real_decision), "{answers:#?}");
    assert_eq!(breaker.state(), BreakerState::Open);

    // Redis back, cool-down over: the first probe closes the circuit; Redis decides again
    // (its state was lost with the restart: the client starts afresh there).
    redis.restart().await;
    clock.advance(cool_down);
    let answer = get(&client, &server).await;
    assert_eq!(answer.status, StatusCode::OK, "{answer:?}");
    assert_eq!(breaker.state(), BreakerState::Closed);
}

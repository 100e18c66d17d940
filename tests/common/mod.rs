//! Shared helpers for the end-to-end tests: serve a router on a real loopback socket, and
//! send it requests.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use http::{HeaderMap, StatusCode};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio::time::timeout;

/// How long any request may take before the test fails instead of hanging.
pub const STEP: Duration = Duration::from_secs(10);

/// A router served on `127.0.0.1:0` with connect info; the server stops when dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl TestServer {
    /// Serves `app` (with `ConnectInfo<SocketAddr>`) on a fresh loopback port.
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(
                listener,
                app.into_make_service_with_connect_info::<SocketAddr>(),
            )
            .await
            .expect("serve");
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// `ws://127.0.0.1:port{path}`.
    pub fn ws_url(&self, path: &str) -> String {
        format!("ws://{}{path}", self.addr)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A router served on `127.0.0.1:0` *without* connect info (as an app served with plain
/// `axum::serve(listener, app)` would be); the server stops when dropped.
pub struct PlainServer {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl PlainServer {
    /// Serves `app` on a fresh loopback port, without `ConnectInfo`.
    pub async fn start(app: Router) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind loopback");
        let addr = listener.local_addr().expect("local addr");
        let task = tokio::spawn(async move {
            axum::serve(listener, app).await.expect("serve");
        });
        Self { addr, task }
    }

    /// `http://127.0.0.1:port{path}`.
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }
}

impl Drop for PlainServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// An HTTP client with a timeout, so that no test can hang.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// An answer, read whole.
#[derive(Debug)]
pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: String,
}

impl Reply {
    /// The header `name`; the test fails if it is missing.
    pub fn header(&self, name: &str) -> &str {
        self.optional_header(name)
            .unwrap_or_else(|| panic!("no {name} header in {self:?}"))
    }

    /// The header `name`, if present.
    pub fn optional_header(&self, name: &str) -> Option<&str> {
        self.headers
            .get(name)
            .map(|value| value.to_str().expect("a visible ASCII header"))
    }
}

/// `GET url` with `headers`, read whole, each step bounded by [`STEP`].
pub async fn get(client: &reqwest::Client, url: &str, headers: &[(&str, &str)]) -> Reply {
    let mut request = client.get(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = timeout(STEP, request.send())
        .await
        .expect("request timed out")
        .expect("request");
    let status = response.status();
    let headers = response.headers().clone();
    let body = timeout(STEP, response.text())
        .await
        .expect("body timed out")
        .expect("body");
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends requests until the first 429 (at most `max`): how many were admitted before it,
/// and the 429.
pub async fn admitted_before_429(
    client: &reqwest::Client,
    url: &str,
    headers: &[(&str, &str)],
    max: usize,
) -> (usize, Reply) {
    for admitted in 0..max {
        let reply = get(client, url, headers).await;
        match reply.status {
            StatusCode::OK => {}
            StatusCode::TOO_MANY_REQUESTS => return (admitted, reply),
            _ => panic!("unexpected answer to request {}: {reply:?}", admitted + 1),
        }
    }
    panic!("{url}: no 429 after {max} requests");
}

/// The Redis the tests share: `TRAFFIK_REDIS_URL`, else the local server on its default
/// port.
pub fn redis_url() -> String {
    std::env::var("TRAFFIK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// Whether the shared Redis answers on 127.0.0.1:6379. When `CI` is set a missing Redis
/// fails the test instead: the Redis tests must run there.
pub fn redis_reachable() -> bool {
    let reachable = std::net::TcpStream::connect_timeout(
        &SocketAddr::from(([127, 0, 0, 1], 6379)),
        Duration::from_secs(1),
    )
    .is_ok();
    if !reachable && std::env::var_os("CI").is_some() {
        panic!("redis not reachable on 127.0.0.1:6379 (CI is set: the Redis tests must run)");
    }
    reachable
}

//! Shared helpers for the end-to-end tests: serve a router on a real loopback socket.

#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

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

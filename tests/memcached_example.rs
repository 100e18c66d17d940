//! The `memcached` example on a real memcached: its app admits five requests per ten
//! seconds per client and answers the sixth with 429, and two app instances (each with
//! its own backend and connection pool, as two processes would have) share one limit.
//! When `CI` is set, a missing memcached fails the test; otherwise it skips.

#![cfg(feature = "memcached")]

mod common;

#[allow(dead_code)]
#[path = "../examples/memcached.rs"]
mod memcached_example;

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use common::{TestServer, client};
use reqwest::StatusCode;
use traffik::FailurePolicy;
use traffik::prelude::*;

fn memcached_url() -> Option<String> {
    let url = std::env::var("TRAFFIK_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into());
    let reachable = url
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr: SocketAddr| {
            TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
        });
    if reachable {
        return Some(url);
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "memcached not reachable at {url} (CI is set: the Memcached tests must run)"
    );
    eprintln!("skipping: memcached not reachable at {url}");
    None
}

/// A namespace no other run shares.
fn namespace() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("example-{}-{nanos}", std::process::id())
}

/// The example's ten-second window now (the host clock, which the backend judges by).
fn window() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() / 10_000_000)
}

async fn serve(url: &str, namespace: &str) -> TestServer {
    let backend =
        memcached_example::backend(url, namespace, FailurePolicy::Raise).expect("backend");
    let traffik = Traffik::new(backend);
    traffik
        .backend()
        .initialize()
        .await
        .expect("memcached answers");
    TestServer::start(memcached_example::app(traffik)).await
}

#[tokio::test]
async fn the_sixth_request_in_ten_seconds_is_refused() {
    let Some(url) = memcached_url() else { return };
    let http = client();
    // A window boundary inside the burst would refill it: retry on a fresh namespace
    // (two boundaries in two bursts of milliseconds cannot happen).
    for _ in 0..2 {
        let server = serve(&url, &namespace()).await;
        let start = window();
        let mut statuses = Vec::new();
        let mut last = None;
        for _ in 0..6 {
            let response = http.get(server.url("/api/data")).send().await.unwrap();
            statuses.push(response.status());
            last = Some(response);
        }
        if window() != start {
            continue;
        }
        let admitted = statuses.iter().filter(|s| **s == StatusCode::OK).count();
        assert_eq!(admitted, 5, "{statuses:?}");
        let refused = last.unwrap();
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        let retry: u64 = refused.headers()["retry-after"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        assert!((1..=10).contains(&retry), "{retry}");
        return;
    }
    panic!("two window boundaries in two bursts");
}

#[tokio::test]
async fn two_app_instances_share_one_limit() {
    let Some(url) = memcached_url() else { return };
    let http = client();
    for _ in 0..2 {
        let name = namespace();
        let (a, b) = (serve(&url, &name).await, serve(&url, &name).await);
        let start = window();
        let mut ok = 0;
        for i in 0..10 {
            let server = if i % 2 == 0 { &a } else { &b };
            let response = http.get(server.url("/api/data")).send().await.unwrap();
            if response.status() == StatusCode::OK {
                ok += 1;
            }
        }
        if window() == start {
            assert_eq!(ok, 5, "five between the two instances");
            return;
        }
    }
    panic!("two window boundaries in two bursts");
}

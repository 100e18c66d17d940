//! Two processes, one Redis: the `redis` example's app, served by two child processes of
//! this test binary on two ports, admits exactly its limit between them.
//!
//! Each child is this binary re-run with `TRAFFIK_CHILD_NAMESPACE` set: it serves the
//! example's app on `127.0.0.1:0`, writes `PORT <n>` to its stdout and serves until its
//! stdin closes. When `CI` is set, a missing Redis fails the test; otherwise it skips.

#![cfg(feature = "redis")]

mod common;

#[allow(dead_code)]
#[path = "../examples/redis.rs"]
mod redis_example;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use traffik::RedisBackend;
use traffik::prelude::*;

use common::{redis_reachable, redis_url};

const CHILD: &str = "TRAFFIK_CHILD_NAMESPACE";

/// The child's side: serve the example's app until stdin closes.
#[test]
fn child_server() {
    let Ok(namespace) = std::env::var(CHILD) else {
        return; // Run as a child only.
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async move {
        let backend = RedisBackend::builder(namespace)
            .url(redis_url())
            .build()
            .expect("redis backend");
        let traffik = Traffik::new(backend);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let mut stdout = std::io::stdout();
        writeln!(stdout, "PORT {port}").expect("stdout");
        stdout.flush().expect("flush");
        // Stop when the parent closes our stdin (or dies).
        let stop = tokio::task::spawn_blocking(|| {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
        });
        let app = redis_example::app(traffik.clone());
        traffik
            .serve_until(listener, app, async {
                let _ = stop.await;
            })
            .await
            .expect("serve");
    });
}

/// A child process serving the app; killed when dropped.
struct ChildServer {
    child: Child,
    port: u16,
}

impl ChildServer {
    fn start(namespace: &str) -> Self {
        let mut child = Command::new(std::env::current_exe().expect("test binary"))
            .args(["--exact", "child_server", "--nocapture", "--test-threads=1"])
            .env(CHILD, namespace)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn child");
        let stdout = child.stdout.take().expect("child stdout");
        let port = BufReader::new(stdout)
            .lines()
            .take(50)
            .map_while(Result::ok)
            // The harness writes `test child_server ... ` before the child's own line.
            .find_map(|line| {
                line.split("PORT ")
                    .nth(1)
                    .and_then(|p| p.trim().parse().ok())
            })
            .expect("the child reports its port");
        Self { child, port }
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        drop(self.child.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_on_one_redis_admit_exactly_the_limit() {
    if std::env::var_os(CHILD).is_some() || !redis_reachable() {
        return;
    }
    let namespace = format!("two-processes-{}", std::process::id());
    let (first, second) = tokio::task::spawn_blocking({
        let namespace = namespace.clone();
        move || {
            (
                ChildServer::start(&namespace),
                ChildServer::start(&namespace),
            )
        }
    })
    .await
    .expect("children");

    // 40 concurrent requests from one client, split over the two processes; the example
    // allows 5 a minute.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client");
    let requests = (0..40).map(|i| {
        let port = if i % 2 == 0 { first.port } else { second.port };
        let client = client.clone();
        async move {
            client
                .get(format!("http://127.0.0.1:{port}/api/limited"))
                .send()
                .await
                .expect("request")
                .status()
        }
    });
    let window = || SystemClock.now_micros() / 60_000_000;
    let before = window();
    let statuses = futures_util::future::join_all(requests).await;
    let ok = statuses.iter().filter(|s| s.is_success()).count();
    let limited = statuses.iter().filter(|s| s.as_u16() == 429).count();
    if window() == before {
        assert_eq!((ok, limited), (5, 35), "{statuses:?}");
    } else {
        // The burst straddled a minute boundary: two fixed windows, at most 5 each.
        assert!(ok <= 10 && ok + limited == 40, "{statuses:?}");
    }
}

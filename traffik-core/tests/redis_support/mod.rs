//! Shared by the Redis test files: where Redis is, and whether the tests may skip.
//!
//! The tests run against a real server at `TRAFFIK_REDIS_URL` (default
//! `redis://127.0.0.1:6379/0`; `scripts/test.sh` starts one). When `CI` is set, a missing
//! server fails the run; otherwise each test skips with a logged reason.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use traffik_core::backend::deadpool_redis::redis;
use traffik_core::{Backend, FixedWindow, Rate};

pub fn url() -> String {
    std::env::var("TRAFFIK_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

/// The cluster's seed URLs (`TRAFFIK_REDIS_CLUSTER_URLS`, comma-separated; default the
/// three primaries `scripts/test.sh` starts on 7000-7002).
pub fn cluster_urls() -> Vec<String> {
    std::env::var("TRAFFIK_REDIS_CLUSTER_URLS")
        .unwrap_or_else(|_| {
            "redis://127.0.0.1:7000,redis://127.0.0.1:7001,redis://127.0.0.1:7002".into()
        })
        .split(',')
        .map(str::to_owned)
        .collect()
}

fn reachable(url: &str) -> bool {
    let rest = url.split("://").nth(1).unwrap_or(url);
    let authority = rest.split('/').next().unwrap_or(rest);
    let host_port = authority.rsplit('@').next().unwrap_or(authority);
    let host_port = if host_port.contains(':') {
        host_port.to_owned()
    } else {
        format!("{host_port}:6379")
    };
    host_port
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

fn check(what: &str, urls: &[String]) -> bool {
    if urls.iter().all(|url| reachable(url)) {
        return false;
    }
    let reason = format!("{what} not reachable at {urls:?}");
    if std::env::var_os("CI").is_some() {
        panic!("{reason} (CI is set: the Redis tests must run)");
    }
    eprintln!("skipping Redis test: {reason}");
    true
}

/// Whether to skip: no standalone Redis and not in CI.
pub fn skip() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| check("redis", &[url()]))
}

/// Whether to skip the cluster tests: no cluster and not in CI.
pub fn skip_cluster() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| check("redis cluster", &cluster_urls()))
}

/// The names of the Traffik function libraries loaded on the server.
pub async fn function_libraries(conn: &mut redis::aio::MultiplexedConnection) -> Vec<String> {
    let libraries: Vec<HashMap<String, redis::Value>> = redis::cmd("FUNCTION")
        .arg("LIST")
        .arg("LIBRARYNAME")
        .arg("traffik_*")
        .query_async(conn)
        .await
        .unwrap();
    libraries
        .into_iter()
        .filter_map(|mut library| library.remove("library_name"))
        .map(|name| redis::from_redis_value(name).unwrap())
        .collect()
}

/// Deletes the Traffik function libraries (only those: the server may be shared).
pub async fn delete_function_libraries(conn: &mut redis::aio::MultiplexedConnection) {
    for name in function_libraries(conn).await {
        // Another test may have deleted it meanwhile.
        let _: redis::RedisResult<()> = redis::cmd("FUNCTION")
            .arg("DELETE")
            .arg(&name)
            .query_async(conn)
            .await;
    }
}

/// A namespace of its own for one test: `prefix-test-pid-n`.
pub fn namespace(prefix: &str, test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// A connection of the test's own, beside the backend's.
pub async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

/// Calls per command since the server started (`INFO commandstats`), by command name
/// (`evalsha`, `function|load`...).
pub async fn command_stats(conn: &mut redis::aio::MultiplexedConnection) -> HashMap<String, u64> {
    let info: String = redis::cmd("INFO")
        .arg("commandstats")
        .query_async(conn)
        .await
        .unwrap();
    info.lines()
        .filter_map(|line| {
            let (name, rest) = line.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = rest.split(',').find_map(|f| f.strip_prefix("calls="))?;
            Some((name.to_owned(), calls.parse().ok()?))
        })
        .collect()
}

/// Whether a fixed window at `rate` admits one more request for `key` on `backend`.
pub async fn admits(backend: &impl Backend, key: &str, rate: &Rate) -> bool {
    backend
        .decide(key, &FixedWindow, rate, 1)
        .await
        .unwrap()
        .allowed
}

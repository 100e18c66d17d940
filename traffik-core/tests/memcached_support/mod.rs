//! Shared by the Memcached test files: where memcached is, whether the tests may skip, and
//! raw access to the server that bypasses the backend.
//!
//! The tests run against a real server at `TRAFFIK_MEMCACHED_URL` (default
//! `127.0.0.1:11211`; `scripts/test.sh` starts one). When `CI` is set, a missing server
//! fails the run; otherwise each test skips with a logged reason.

#![allow(dead_code)]

use std::net::{TcpStream, ToSocketAddrs};
use std::sync::OnceLock;
use std::time::Duration;

use async_memcached::{AsciiProtocol, Client};

pub fn url() -> String {
    std::env::var("TRAFFIK_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into())
}

fn reachable(address: &str) -> bool {
    address
        .to_socket_addrs()
        .ok()
        .and_then(|mut addrs| addrs.next())
        .is_some_and(|addr| TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok())
}

/// Whether to skip: no memcached and not in CI.
pub fn skip() -> bool {
    static SKIP: OnceLock<bool> = OnceLock::new();
    *SKIP.get_or_init(|| {
        let address = url();
        if reachable(&address) {
            return false;
        }
        let reason = format!("memcached not reachable at {address}");
        if std::env::var_os("CI").is_some() {
            panic!("{reason} (CI is set: the Memcached tests must run)");
        }
        eprintln!("skipping Memcached test: {reason}");
        true
    })
}

/// A plain client on the test server, for reading and writing behind the backend's back.
pub async fn raw() -> Client {
    Client::new(format!("tcp://{}", url()))
        .await
        .expect("raw memcached client")
}

/// Writes `value` at the exact memcached key `key`, expiring in a minute.
pub async fn raw_set(key: &str, value: &[u8]) {
    raw()
        .await
        .set(key, value, Some(60), None)
        .await
        .expect("raw set");
}

/// The value at the exact memcached key `key`.
pub async fn raw_get(key: &str) -> Option<Vec<u8>> {
    raw()
        .await
        .get(key)
        .await
        .expect("raw get")
        .and_then(|value| value.data)
}

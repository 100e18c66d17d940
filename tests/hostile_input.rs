//! Hostile input over real sockets, with a real HTTP client: thousands of
//! `X-Forwarded-For` headers, 64 KiB header values, header values that are not UTF-8, and
//! throttle uids, client ids and namespaces holding `:`, `{`, `}`, `%` and spaces.
//!
//! The server always answers (200, 429, 400 or 431: never a dropped connection), within a
//! bounded time, and keeps serving; limits still apply per client, and no two
//! (uid, client) pairs share a count, on the in-memory backend and on Redis.
//!
//! The fuzzed, in-process side of this lives in `traffik-axum/tests/hostile_input.rs`.

mod common;

use std::time::{Duration, Instant};

use axum::Router;
use axum::routing::get;
use common::{TestServer, client};
use http::{HeaderMap, HeaderName, HeaderValue};
use reqwest::StatusCode;
use traffik::prelude::*;

/// A time aligned to every window of a day or less, in microseconds.
const T0: u64 = 20_000 * 86_400 * 1_000_000;

/// The longest any hostile request may take to be answered.
const BOUND: Duration = Duration::from_secs(5);

throttle!(PerClient = HttpThrottle::new("per_client", rate!("2/m")));

async fn handler(_: Throttled<PerClient>) -> &'static str {
    "ok"
}

/// 127.0.0.1 (the test client) is a trusted proxy, and every proxy header is read.
fn behind_proxy() -> ClientIpConfig {
    ClientIpConfig::new()
        .try_trust_proxies(["127.0.0.1", "10.0.0.0/8"])
        .unwrap()
        .proxy_headers([
            ProxyHeader::Forwarded,
            ProxyHeader::XForwardedFor,
            ProxyHeader::XRealIp,
        ])
}

fn traffik() -> Traffik {
    let backend = InMemoryBackend::builder("hostile")
        .clock(ManualClock::new(T0))
        .build();
    Traffik::new(backend).client_ip(behind_proxy())
}

/// The extractor app and the layer app, each on its own backend.
fn apps() -> [(&'static str, Router); 2] {
    let layer = MiddlewareThrottle::new(HttpThrottle::new("per_client", rate!("2/m")));
    [
        (
            "extractor",
            Router::new()
                .route("/data", get(handler))
                .with_state(traffik()),
        ),
        (
            "layer",
            Router::new()
                .route("/data", get(|| async { "ok" }))
                .layer(ThrottleLayer::new(traffik()).throttle(layer)),
        ),
    ]
}

/// Sends `GET /data` with `headers`; the status, or the transport error as text.
async fn send(http: &reqwest::Client, server: &TestServer, headers: HeaderMap) -> StatusCode {
    let started = Instant::now();
    let result = http.get(server.url("/data")).headers(headers).send().await;
    let elapsed = started.elapsed();
    assert!(elapsed < BOUND, "answered after {elapsed:?}");
    match result {
        Ok(response) => {
            let status = response.status();
            // Read the body too: the connection must be answered in full.
            response.bytes().await.expect("a complete body");
            status
        }
        Err(error) => panic!("the server dropped the request: {error:?}"),
    }
}

fn header_list(name: &str, values: impl IntoIterator<Item = Vec<u8>>) -> HeaderMap {
    let name = HeaderName::from_bytes(name.as_bytes()).unwrap();
    let mut headers = HeaderMap::new();
    for value in values {
        headers.append(name.clone(), HeaderValue::from_bytes(&value).unwrap());
    }
    headers
}

fn xff(value: &str) -> HeaderMap {
    header_list("x-forwarded-for", [value.as_bytes().to_vec()])
}

/// Huge and malformed header lists: each is answered with a status a client can act on,
/// in bounded time, and the server keeps serving afterwards.
#[tokio::test]
async fn huge_and_malformed_header_lists_are_answered() {
    let http = client();
    let ok_or_refused = [
        StatusCode::OK,
        StatusCode::TOO_MANY_REQUESTS,
        StatusCode::BAD_REQUEST,
        StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
    ];
    let proxy = |i: usize| format!("10.{}.{}.{}", i / 65536 % 256, i / 256 % 256, i % 256);
    let cases: Vec<(&str, HeaderMap)> = vec![
        (
            "5000 x-forwarded-for headers",
            header_list("x-forwarded-for", (0..5000).map(|i| proxy(i).into_bytes())),
        ),
        (
            "150 x-forwarded-for headers",
            header_list("x-forwarded-for", (0..150).map(|i| proxy(i).into_bytes())),
        ),
        (
            "90 forwarded headers",
            header_list(
                "forwarded",
                (0..90).map(|i| format!("for=\"{}\";proto=http", proxy(i)).into_bytes()),
            ),
        ),
        (
            "a 64 KiB x-forwarded-for of 6000 hops",
            xff(&(0..6000).map(proxy).collect::<Vec<_>>().join(", ")),
        ),
        (
            "one 64 KiB entry",
            xff(&format!("203.0.113.1{}", "0".repeat(64 * 1024))),
        ),
        (
            "64 KiB of quotes in forwarded",
            header_list("forwarded", [b"\\\"".repeat(32 * 1024)]),
        ),
        (
            "an unclosed quote in forwarded",
            header_list("forwarded", [b"for=\"203.0.113.9, for=10.0.0.1".to_vec()]),
        ),
        (
            "not UTF-8 everywhere",
            [
                ("x-forwarded-for", b"\xff\xfe, \x80".to_vec()),
                ("forwarded", b"for=\"\xc3\x28\";by=\xa0".to_vec()),
                ("x-real-ip", b"\xf0\x9f\x98".to_vec()),
            ]
            .into_iter()
            .fold(HeaderMap::new(), |mut headers, (name, value)| {
                headers.append(name, HeaderValue::from_bytes(&value).unwrap());
                headers
            }),
        ),
        (
            "every byte from 0x80 to 0xFF",
            header_list("x-forwarded-for", [(0x80..=0xFFu8).collect::<Vec<u8>>()]),
        ),
        (
            "90 headers of 1 KiB",
            (0..90).fold(HeaderMap::new(), |mut headers, i| {
                headers.append(
                    HeaderName::from_bytes(format!("x-junk-{i}").as_bytes()).unwrap(),
                    HeaderValue::from_bytes(&vec![b'a'; 1024]).unwrap(),
                );
                headers
            }),
        ),
    ];
    for (app_name, app) in apps() {
        let server = TestServer::start(app).await;
        for (what, headers) in &cases {
            let status = send(&http, &server, headers.clone()).await;
            assert!(
                ok_or_refused.contains(&status),
                "{app_name}, {what}: {status}"
            );
        }
        // Still serving: a plain request from a fresh client is admitted.
        let status = send(&http, &server, xff("198.51.100.77")).await;
        assert_eq!(
            status,
            StatusCode::OK,
            "{app_name}: after the hostile requests"
        );
    }
}

/// A 64 KiB `X-Forwarded-For`, thousands of header lines, or values that are not UTF-8:
/// the client the trusted proxy names is still limited on its own, and a client cannot
/// escape its limit by padding the header.
#[tokio::test]
async fn limits_hold_per_client_through_huge_headers() {
    let http = client();
    let padding = (0..6000)
        .map(|i| format!("198.18.{}.{}", i / 256 % 256, i % 256))
        .collect::<Vec<_>>()
        .join(", ");
    let padded = |client: &str| xff(&format!("{padding}, {client}"));
    for (app_name, app) in apps() {
        let server = TestServer::start(app).await;
        // 64 KiB of forged hops in front of 203.0.113.5: the client is 203.0.113.5.
        for expected in [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
        ] {
            let status = send(&http, &server, padded("203.0.113.5")).await;
            assert_eq!(status, expected, "{app_name}: padded 203.0.113.5");
        }
        // Another client behind the same padding has its own count.
        let status = send(&http, &server, padded("203.0.113.6")).await;
        assert_eq!(status, StatusCode::OK, "{app_name}: padded 203.0.113.6");
        // A different padding does not make 203.0.113.5 someone else.
        let status = send(&http, &server, xff("1.2.3.4, 203.0.113.5")).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{app_name}");

        // Junk that is not UTF-8 on the right ends the walk at the trusted peer: every
        // such request counts against 127.0.0.1, whatever its left side says.
        for (n, expected) in [
            StatusCode::OK,
            StatusCode::OK,
            StatusCode::TOO_MANY_REQUESTS,
        ]
        .into_iter()
        .enumerate()
        {
            let value = format!("203.0.113.{}, ", 100 + n).into_bytes();
            let headers = header_list("x-forwarded-for", [[&value[..], b"\xff\xfe"].concat()]);
            let status = send(&http, &server, headers).await;
            assert_eq!(status, expected, "{app_name}: non-UTF-8 hop #{n}");
        }
    }
}

// ---------------------------------------------------------------------------------------
// Hostile uids, client ids and namespaces
// ---------------------------------------------------------------------------------------

/// Uids and client ids chosen so that naive `uid:client` keys would collide
/// (`a:b` + `c` against `a` + `b:c`), plus braces, spaces and escapes.
const UIDS: [&str; 5] = ["a:b", "a", "{a", "a b", "a%3Ab"];
const CLIENTS: [&str; 5] = ["c", "b:c", "b}:c", "%3Ab:c", "c {x} y"];

/// One route per uid (`/u{n}`), each throttled by its own uid at 2 per minute, all on
/// `traffik`'s backend; the client is named by the `x-client` header.
fn hostile_app(traffik: Traffik) -> Router {
    let mut app = Router::new();
    for (n, uid) in UIDS.iter().enumerate() {
        let throttle = HttpThrottle::new(*uid, rate!("2/m")).identifier(|parts| {
            let client = parts.headers.get("x-client").map(|v| v.as_bytes());
            Identity::client(String::from_utf8_lossy(client.unwrap_or_default()))
        });
        let layer = ThrottleLayer::new(traffik.clone()).throttle(MiddlewareThrottle::new(throttle));
        app = app.route(&format!("/u{n}"), get(|| async { "ok" }).layer(layer));
    }
    app
}

/// Every (uid, client) pair is admitted twice, then throttled: no pair shares another's
/// count, on the server at `server`.
async fn assert_pairs_apart(http: &reqwest::Client, server: &TestServer, what: &str) {
    for round in 0..3 {
        for (n, uid) in UIDS.iter().enumerate() {
            for client in CLIENTS {
                let started = Instant::now();
                let response = http
                    .get(server.url(&format!("/u{n}")))
                    .header("x-client", client)
                    .send()
                    .await
                    .expect("answered");
                assert!(started.elapsed() < BOUND);
                let expected = if round < 2 {
                    StatusCode::OK
                } else {
                    StatusCode::TOO_MANY_REQUESTS
                };
                assert_eq!(
                    response.status(),
                    expected,
                    "{what}: round {round}, uid {uid:?}, client {client:?}"
                );
                if round == 2 {
                    assert!(response.headers().contains_key("retry-after"), "{what}");
                }
            }
        }
    }
}

#[tokio::test]
async fn hostile_uids_and_clients_keep_their_own_limits_in_memory() {
    let http = client();
    let backend = InMemoryBackend::builder("ns: {with} spaces %3A")
        .clock(ManualClock::new(T0))
        .build();
    let server = TestServer::start(hostile_app(Traffik::new(backend))).await;
    assert_pairs_apart(&http, &server, "in memory").await;
}

#[cfg(feature = "redis")]
#[path = "../traffik-core/tests/redis_support/mod.rs"]
mod redis_support;

#[cfg(feature = "redis")]
#[tokio::test]
async fn hostile_uids_clients_and_namespaces_keep_their_own_limits_on_redis() {
    if redis_support::skip() {
        return;
    }
    // Braces in a namespace would capture the keys' hash tags: refused.
    let braces = RedisBackend::builder("a{b}")
        .url(redis_support::url())
        .build();
    assert!(matches!(braces, Err(Error::Configuration(_))), "{braces:?}");

    let http = client();
    let base = format!("hostile ns:{}: %3A", std::process::id());
    let mut backends = Vec::new();
    for suffix in ["one", "two"] {
        let backend = RedisBackend::builder(format!("{base}:{suffix}"))
            .url(redis_support::url())
            .clock(ManualClock::new(T0))
            .build()
            .unwrap();
        backend.initialize().await.unwrap();
        backend.reset().await.unwrap();
        backends.push(backend);
    }
    // Each namespace keeps every pair apart, and neither sees the other's counts.
    for (backend, what) in backends.iter().zip(["namespace one", "namespace two"]) {
        let server = TestServer::start(hostile_app(Traffik::new(backend.clone()))).await;
        assert_pairs_apart(&http, &server, what).await;
    }
    for backend in &backends {
        backend.reset().await.unwrap();
    }
}

//! Hostile input at the axum edge, fuzzed: proxy headers (`Forwarded`, `X-Forwarded-For`,
//! `X-Real-IP`) holding anything, header values that are not UTF-8, thousands of hops,
//! and throttle uids and client ids holding key syntax.
//!
//! - Client IP: never a panic; an untrusted peer is always the client; from a trusted
//!   peer the answer is exactly what a reference walk of the hops says (generated hop
//!   lists), or at least an address written in the headers or the peer itself (arbitrary
//!   bytes).
//! - Throttles: uids and client ids holding `:`, `{`, `}`, `%`, spaces, CR/LF, NUL and
//!   emoji keep their own limits on one backend; nothing aliases, and a throttled answer
//!   is a well-formed 429.
//!
//! The same over real sockets, with huge header lists, lives in the root package's
//! `tests/hostile_input.rs`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::routing::get;
use http::{HeaderMap, HeaderValue, Request, StatusCode};
use proptest::prelude::*;
use tower::ServiceExt;
use traffik_axum::client_ip::{ClientIpConfig, ProxyHeader};
use traffik_axum::{HttpThrottle, MiddlewareThrottle, ThrottleLayer, Traffik};
use traffik_core::{Identity, InMemoryBackend, ManualClock, TokenBucket, rate};

/// The trusted proxies of these tests.
fn config() -> ClientIpConfig {
    ClientIpConfig::new()
        .try_trust_proxies(["10.0.0.0/8", "fd00::/8", "127.0.0.1"])
        .unwrap()
}

fn trusted(ip: IpAddr) -> bool {
    config().is_trusted(ip)
}

/// A trusted peer (the proxy the request came through).
const PROXY: IpAddr = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));

// ---------------------------------------------------------------------------------------
// A reference model of the walk
// ---------------------------------------------------------------------------------------

/// One hop of a generated proxy list.
#[derive(Debug, Clone)]
enum Hop {
    /// An address, written in the given form.
    Ip(IpAddr, Form),
    /// `unknown`.
    Unknown,
    /// An obfuscated identifier (`_hidden`).
    Obfuscated(String),
    /// Text that names no address.
    Garbage(String),
}

/// How an address is written.
#[derive(Debug, Clone, Copy)]
enum Form {
    Plain,
    Port(u16),
    Bracketed,
    /// `Forwarded` only: quoted, possibly with a quoted-pair escape inside.
    Quoted {
        port: Option<u16>,
        escape: bool,
    },
    /// An IPv4 address as an IPv4-mapped IPv6 address.
    Mapped,
}

fn ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        // Trusted: proxies of ours.
        (any::<[u8; 3]>()).prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        any::<u64>()
            .prop_map(|low| { IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | u128::from(low))) }),
        // Untrusted: clients.
        (any::<u8>()).prop_map(|d| IpAddr::V4(Ipv4Addr::new(203, 0, 113, d))),
        (any::<u8>()).prop_map(|d| IpAddr::V4(Ipv4Addr::new(198, 51, 100, d))),
        any::<u64>().prop_map(|low| {
            IpAddr::V6(Ipv6Addr::from((0x2001_0db8u128 << 96) | u128::from(low)))
        }),
        Just(IpAddr::V6(Ipv6Addr::LOCALHOST)),
    ]
}

fn form() -> impl Strategy<Value = Form> {
    prop_oneof![
        3 => Just(Form::Plain),
        1 => any::<u16>().prop_map(Form::Port),
        1 => Just(Form::Bracketed),
        1 => (prop::option::of(any::<u16>()), any::<bool>())
            .prop_map(|(port, escape)| Form::Quoted { port, escape }),
        1 => Just(Form::Mapped),
    ]
}

fn hop() -> impl Strategy<Value = Hop> {
    prop_oneof![
        8 => (ip(), form()).prop_map(|(ip, form)| Hop::Ip(ip, form)),
        1 => Just(Hop::Unknown),
        1 => "_[a-zA-Z0-9._-]{1,8}".prop_map(Hop::Obfuscated),
        // Always a letter past `f`: never an address.
        1 => "[g-z][a-z0-9.:_-]{0,12}".prop_map(Hop::Garbage),
        1 => prop::sample::select(vec![
            "300.1.1.1", "1.2.3", "1.2.3.4:", "1.2.3.4:123456", "[2001:db8::1", "2001:db8::1]",
            "[1.2.3.4]", "::ffff:1.2.3", "1.2.3.4.5", "[2001:db8::1]:", "[2001:db8::1]x",
        ])
        .prop_map(|s| Hop::Garbage(s.to_owned())),
    ]
}

/// A trusted proxy's address.
fn trusted_ip() -> impl Strategy<Value = IpAddr> {
    prop_oneof![
        (any::<[u8; 3]>()).prop_map(|[a, b, c]| IpAddr::V4(Ipv4Addr::new(10, a, b, c))),
        any::<u64>()
            .prop_map(|low| { IpAddr::V6(Ipv6Addr::from((0xfd00u128 << 112) | u128::from(low))) }),
    ]
}

/// A list of hops: anything, then a run of trusted proxies (long enough, often, to reach
/// the 64-hop limit), then a few more of anything.
fn hops() -> impl Strategy<Value = Vec<Hop>> {
    (
        prop::collection::vec(hop(), 0..20),
        prop::collection::vec(
            (trusted_ip(), form()).prop_map(|(ip, f)| Hop::Ip(ip, f)),
            0..75,
        ),
        prop::collection::vec(hop(), 0..3),
    )
        .prop_map(|(a, b, c)| [a, b, c].concat())
}

/// The address a hop names, if any (as the walk sees it: IPv4-mapped addresses are IPv4).
fn named(hop: &Hop) -> Option<IpAddr> {
    match hop {
        Hop::Ip(ip, _) => Some(ip.to_canonical()),
        _ => None,
    }
}

/// The host part of an address, in the form's spelling (shared by both headers).
fn host(ip: IpAddr, form: Form) -> String {
    match (ip, form) {
        (IpAddr::V4(v4), Form::Mapped) => format!("[::ffff:{v4}]"),
        (IpAddr::V6(v6), Form::Mapped) => format!("[{v6}]"),
        (IpAddr::V6(v6), Form::Plain) => v6.to_string(),
        (IpAddr::V6(v6), _) => format!("[{v6}]"),
        (IpAddr::V4(v4), _) => v4.to_string(),
    }
}

/// A hop as an `X-Forwarded-For` entry.
fn xff_entry(hop: &Hop) -> String {
    match hop {
        Hop::Ip(ip, form) => match form {
            Form::Plain => ip.to_string(),
            Form::Port(port)
            | Form::Quoted {
                port: Some(port), ..
            } => {
                format!("{}:{port}", host(*ip, *form))
            }
            Form::Bracketed | Form::Quoted { port: None, .. } => match ip {
                IpAddr::V6(v6) => format!("[{v6}]"),
                IpAddr::V4(v4) => v4.to_string(),
            },
            Form::Mapped => host(*ip, *form),
        },
        Hop::Unknown => "unknown".to_owned(),
        Hop::Obfuscated(id) | Hop::Garbage(id) => id.clone(),
    }
}

/// A hop as a `Forwarded` element, with a parameter or two around its `for=`.
fn forwarded_element(hop: &Hop, extra: u8) -> String {
    let node = match hop {
        Hop::Ip(ip, form) => match form {
            // Unquoted: only IPv4, or a bracketed IPv6 (tolerated, though RFC 7239 wants
            // quotes).
            Form::Plain => match ip {
                IpAddr::V4(v4) => v4.to_string(),
                IpAddr::V6(v6) => format!("\"{v6}\""),
            },
            Form::Port(port) => format!("\"{}:{port}\"", host(*ip, *form)),
            Form::Bracketed => host(*ip, *form),
            Form::Mapped => format!("\"{}\"", host(*ip, *form)),
            Form::Quoted { port, escape } => {
                let mut text = host(*ip, *form);
                if let Some(port) = port {
                    text = format!("{text}:{port}");
                }
                if *escape {
                    // A quoted-pair: `\.` is `.`, `\:` is `:`.
                    text = text.replacen('.', "\\.", 1).replacen(':', "\\:", 1);
                }
                format!("\"{text}\"")
            }
        },
        Hop::Unknown => "unknown".to_owned(),
        Hop::Obfuscated(id) => id.clone(),
        // Quoted, so that the element is well-formed and only the node is wrong.
        Hop::Garbage(text) => format!("\"{text}\""),
    };
    match extra % 4 {
        0 => format!("for={node}"),
        1 => format!("FOR={node};proto=https"),
        2 => format!("proto=http;by=\"[fd00::1]\" ; for={node}"),
        _ => format!("host=\"a,b;c\";for={node}"),
    }
}

/// The reference walk: from the right, skip trusted proxies; the first untrusted address
/// is the client; a hop naming no address, or the 65th, ends the walk at the last trusted
/// hop; all trusted: the leftmost. No hops: the peer.
fn expected(peer: IpAddr, hops: &[Hop]) -> IpAddr {
    if !trusted(peer) {
        return peer;
    }
    let mut last = peer;
    for (walked, hop) in hops.iter().rev().enumerate() {
        if walked >= 64 {
            return last;
        }
        match named(hop) {
            Some(ip) if !trusted(ip) => return ip,
            Some(ip) => last = ip,
            None => return last,
        }
    }
    last
}

/// Joins entries into header lines: each line holds consecutive entries, separated by a
/// comma and some optional white space.
fn lines(entries: &[String], breaks: &[bool], spaces: &[u8]) -> Vec<String> {
    let mut lines = vec![String::new()];
    for (i, entry) in entries.iter().enumerate() {
        let line = lines.last_mut().unwrap();
        if !line.is_empty() {
            line.push(',');
            line.push_str(["", " ", "\t", "  "][usize::from(spaces[i % spaces.len()] % 4)]);
        }
        line.push_str(entry);
        if breaks[i % breaks.len()] && i + 1 < entries.len() {
            lines.push(String::new());
        }
    }
    lines
}

fn headers(name: &str, lines: &[String]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for line in lines {
        headers.append(
            http::header::HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(line).unwrap(),
        );
    }
    headers
}

// ---------------------------------------------------------------------------------------
// Arbitrary bytes: only addresses actually written, or the peer
// ---------------------------------------------------------------------------------------

/// Every address spelled somewhere in `values` (a superset of what any header parser can
/// read from them): runs of address characters, with quoted-pair backslashes removed,
/// whole or with a trailing `:port` cut off.
fn written_addresses(values: &[Vec<u8>]) -> Vec<IpAddr> {
    let mut found = Vec::new();
    for value in values {
        let text = String::from_utf8_lossy(value).replace('\\', "");
        for token in text.split(|c: char| !(c.is_ascii_hexdigit() || c == '.' || c == ':')) {
            let mut candidates = vec![token];
            if let Some((head, _)) = token.rsplit_once(':') {
                candidates.push(head);
            }
            for candidate in candidates {
                if let Ok(ip) = candidate.parse::<IpAddr>() {
                    found.push(ip.to_canonical());
                }
            }
        }
    }
    found
}

/// Bytes that steer the parsers into their corners, including bytes that are not UTF-8.
fn header_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..120),
        3 => prop::collection::vec(
            prop::sample::select(
                b"\"\\,;=:[]_ \tfFoOrR0123456789.abcdefx\x80\xa0\xc3\xff".to_vec(),
            ),
            0..120,
        ),
        2 => prop::collection::vec(
            prop_oneof![
                Just(b"for=".to_vec()),
                Just(b"10.0.0.7".to_vec()),
                Just(b"203.0.113.5".to_vec()),
                Just(b"[2001:db8::5]:80".to_vec()),
                Just(b"\"[fd00::9]\"".to_vec()),
                Just(b"::ffff:10.1.1.1".to_vec()),
                Just(b", ".to_vec()),
                Just(b";".to_vec()),
                Just(b"\"".to_vec()),
                Just(b"\\".to_vec()),
                Just(b"\xff\xfe".to_vec()),
                Just(b"unknown".to_vec()),
                Just(b"_x".to_vec()),
            ],
            0..16,
        )
        .prop_map(|parts| parts.concat()),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1_000))]

    /// Generated `X-Forwarded-For` lists, over one or several header lines: exactly the
    /// reference walk's answer.
    #[test]
    fn xff_walk_matches_the_reference(
        hops in hops(),
        breaks in prop::collection::vec(any::<bool>(), 1..8),
        spaces in prop::collection::vec(any::<u8>(), 1..8),
        peer in prop_oneof![Just(PROXY), ip()],
    ) {
        let entries: Vec<String> = hops.iter().map(xff_entry).collect();
        let headers = headers("x-forwarded-for", &lines(&entries, &breaks, &spaces));
        let got = config().resolve_with_peer(peer, &headers);
        prop_assert_eq!(got, expected(peer, &hops), "{:?}", headers);
    }

    /// Generated `Forwarded` lists (quoted strings, escapes, brackets, ports, parameters
    /// around `for=`, commas inside quotes): exactly the reference walk's answer.
    #[test]
    fn forwarded_walk_matches_the_reference(
        hops in hops(),
        extras in prop::collection::vec(any::<u8>(), 1..8),
        breaks in prop::collection::vec(any::<bool>(), 1..8),
        spaces in prop::collection::vec(any::<u8>(), 1..8),
        peer in prop_oneof![Just(PROXY), ip()],
    ) {
        let entries: Vec<String> = hops
            .iter()
            .enumerate()
            .map(|(i, hop)| forwarded_element(hop, extras[i % extras.len()].wrapping_add(i as u8)))
            .collect();
        let headers = headers("forwarded", &lines(&entries, &breaks, &spaces));
        let config = config().proxy_headers([ProxyHeader::Forwarded]);
        let got = config.resolve_with_peer(peer, &headers);
        prop_assert_eq!(got, expected(peer, &hops), "{:?}", headers);
    }

    /// Arbitrary bytes in every proxy header (including bytes that are not UTF-8): no
    /// panic; an untrusted peer is the client whatever the headers say; a trusted peer's
    /// answer is the peer or an address written in the headers; the identity is always
    /// an address (or an IPv6 network) as text.
    #[test]
    fn arbitrary_header_bytes_give_the_peer_or_a_written_address(
        lines in prop::collection::vec(
            (prop::sample::select(vec!["forwarded", "x-forwarded-for", "x-real-ip", "cf-connecting-ip"]), header_bytes()),
            0..8,
        ),
        peer in prop_oneof![Just(PROXY), ip()],
        prefix in prop_oneof![Just(128u8), 0u8..=128],
    ) {
        let mut headers = HeaderMap::new();
        let mut values = Vec::new();
        for (name, bytes) in &lines {
            if let Ok(value) = HeaderValue::from_bytes(bytes) {
                headers.append(*name, value);
                values.push(bytes.clone());
            }
        }
        let config = config()
            .proxy_headers([
                ProxyHeader::Forwarded,
                ProxyHeader::XForwardedFor,
                ProxyHeader::XRealIp,
                ProxyHeader::SingleIp(http::header::HeaderName::from_static("cf-connecting-ip")),
            ])
            .ipv6_prefix(prefix);
        let got = config.resolve_with_peer(peer, &headers);
        if trusted(peer) {
            prop_assert!(
                got == peer.to_canonical() || written_addresses(&values).contains(&got),
                "{:?} from {:?}", got, headers
            );
        } else {
            prop_assert_eq!(got, peer.to_canonical());
        }
        let identity = config.identity_of(got);
        let parsed = identity.parse::<IpAddr>().is_ok()
            || identity.parse::<ipnet::IpNet>().is_ok();
        prop_assert!(parsed, "identity {:?}", identity);
    }

    /// A hop that is not UTF-8 names no address: on the right it ends the walk at the
    /// last trusted hop, on the left it is never reached.
    #[test]
    fn non_utf8_hops_are_never_believed(
        junk in prop::collection::vec(0x80u8..=0xFF, 1..40),
        client in any::<u8>(),
        quoted in any::<bool>(),
    ) {
        let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, client));
        for (name, config) in [
            ("x-forwarded-for", config()),
            ("forwarded", config().proxy_headers([ProxyHeader::Forwarded])),
            ("x-real-ip", config().proxy_headers([ProxyHeader::XRealIp])),
        ] {
            let wrap = |bytes: &[u8]| -> Vec<u8> {
                match (name, quoted) {
                    ("forwarded", true) => [&b"for=\""[..], bytes, b"\""].concat(),
                    ("forwarded", false) => [&b"for="[..], bytes].concat(),
                    _ => bytes.to_vec(),
                }
            };
            let client_text = wrap(client.to_string().as_bytes());
            let junk = wrap(&junk);

            // Junk on the right (appended last): the walk stops at the trusted peer.
            let mut right = HeaderMap::new();
            right.append(name, HeaderValue::from_bytes(&[&client_text[..], b", ", &junk].concat()).unwrap());
            prop_assert_eq!(config.resolve_with_peer(PROXY, &right), PROXY, "{}", name);

            // Junk on its own line after the client's line: the same.
            let mut lines = HeaderMap::new();
            lines.append(name, HeaderValue::from_bytes(&client_text).unwrap());
            lines.append(name, HeaderValue::from_bytes(&junk).unwrap());
            prop_assert_eq!(config.resolve_with_peer(PROXY, &lines), PROXY, "{}", name);

            // Junk on the left (written by the client): never reached.
            if name != "x-real-ip" {
                let mut left = HeaderMap::new();
                left.append(name, HeaderValue::from_bytes(&[&junk[..], b", ", &client_text].concat()).unwrap());
                prop_assert_eq!(config.resolve_with_peer(PROXY, &left), client, "{}", name);
            }
        }
    }
}

/// Thousands of hops, over one line or thousands of lines, and values of 64 KiB: the walk
/// looks at 64 hops and 8 KiB from the right at most, so a client cannot reach past them,
/// and it answers fast.
#[test]
fn thousands_of_hops_and_huge_values_are_cut_short() {
    let proxy = |i: usize| IpAddr::V4(Ipv4Addr::new(10, 1, (i / 256) as u8, (i % 256) as u8));
    let client = IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7));
    let forged = IpAddr::V4(Ipv4Addr::new(6, 6, 6, 6));
    let started = Instant::now();

    // 5000 trusted hops behind a forged client on the far left: the walk stops at the
    // 64th hop from the right, a trusted proxy; the forged address is never reached.
    let mut hops: Vec<String> = vec![forged.to_string()];
    hops.extend((0..5000).map(|i| proxy(i).to_string()));
    let one_line = headers("x-forwarded-for", &[hops.join(", ")]);
    let many_lines = headers("x-forwarded-for", &hops);
    for headers in [&one_line, &many_lines] {
        let got = config().resolve_with_peer(PROXY, headers);
        assert_eq!(
            got,
            proxy(5000 - 64),
            "stops at the 64th hop from the right"
        );
    }

    // The same walk stopped by the byte budget: trusted hops of 200 bytes each (padded
    // with white space) and their commas exhaust 8 KiB after the 40th from the right.
    let padded: Vec<String> = (0..200).map(|i| format!("{:>200}", proxy(i))).collect();
    let got = config().resolve_with_peer(PROXY, &headers("x-forwarded-for", &[padded.join(",")]));
    assert_eq!(got, proxy(200 - 40), "stops at the last hop within 8 KiB");

    // A 64 KiB value whose last entry is the client: found.
    let mut value = "1.1.1.1, ".repeat(64 * 1024 / 9);
    value.push_str(&client.to_string());
    assert!(value.len() >= 64 * 1024);
    let huge = headers("x-forwarded-for", &[value]);
    assert_eq!(config().resolve_with_peer(PROXY, &huge), client);

    // A single 64 KiB entry: over the budget, not believed.
    let blob = format!("{client}{}", "0".repeat(64 * 1024));
    let every_header = config().proxy_headers([
        ProxyHeader::Forwarded,
        ProxyHeader::XForwardedFor,
        ProxyHeader::XRealIp,
    ]);
    for name in ["x-forwarded-for", "x-real-ip", "forwarded"] {
        let got =
            every_header.resolve_with_peer(PROXY, &headers(name, std::slice::from_ref(&blob)));
        assert_eq!(got, PROXY, "{name}");
    }

    // 64 KiB of quotes and backslashes in `Forwarded`.
    let quotes = "\\\"".repeat(32 * 1024);
    let got = every_header.resolve_with_peer(PROXY, &headers("forwarded", &[quotes]));
    assert_eq!(got, PROXY);

    // Thousands of single-address headers: ambiguous, not believed.
    let many: Vec<String> = (0..5000).map(|_| client.to_string()).collect();
    assert_eq!(
        every_header.resolve_with_peer(PROXY, &headers("x-real-ip", &many)),
        PROXY
    );

    assert!(
        started.elapsed() < Duration::from_secs(5),
        "took {:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------------------
// Throttles with hostile uids and client ids, in process
// ---------------------------------------------------------------------------------------

/// Text built from the characters that have a meaning in keys, or could break a store.
fn hostile() -> impl Strategy<Value = String> {
    prop::collection::vec(
        prop::sample::select(vec![
            ':', '{', '}', '%', ' ', '\r', '\n', '\0', '\t', '😀', 'é', 'a', 'b', '3', '*',
        ]),
        1..7,
    )
    .prop_map(String::from_iter)
}

/// An app with one throttle per uid, all on one backend; the client is named by the
/// `x-client` header, an index into `clients`.
fn throttled_apps(uids: &[String], clients: &[String], windowed: bool) -> Vec<Router> {
    let backend = InMemoryBackend::builder("hostile: {ns} \r\n")
        .clock(ManualClock::new(1_700_000_000_000_000))
        .build();
    let traffik = Traffik::new(backend);
    uids.iter()
        .map(|uid| {
            let clients = clients.to_vec();
            let mut throttle =
                HttpThrottle::new(uid.clone(), rate!("2/m")).identifier(move |parts| {
                    let index: usize = parts.headers["x-client"].to_str().unwrap().parse().unwrap();
                    Identity::client(clients[index].clone())
                });
            if !windowed {
                throttle = throttle.strategy(TokenBucket::new());
            }
            Router::new().route("/{id}", get(|| async { "ok" })).layer(
                ThrottleLayer::new(traffik.clone()).throttle(MiddlewareThrottle::new(throttle)),
            )
        })
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    /// Every (uid, client) pair is admitted twice and then throttled, whatever the others
    /// did: no two pairs share a count. Throttled answers carry `Retry-After`.
    #[test]
    fn hostile_uids_and_clients_keep_their_own_limits(
        uids in prop::collection::hash_set(hostile(), 1..4),
        clients in prop::collection::hash_set(hostile(), 1..4),
        windowed in any::<bool>(),
    ) {
        let uids: Vec<String> = uids.into_iter().collect();
        let clients: Vec<String> = clients.into_iter().collect();
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let apps = throttled_apps(&uids, &clients, windowed);
        runtime.block_on(async {
            for round in 0..3 {
                for (uid, app) in uids.iter().zip(&apps) {
                    for (c, client) in clients.iter().enumerate() {
                        let request = Request::get(format!("/{round}"))
                            .header("x-client", c.to_string())
                            .body(Body::empty())
                            .unwrap();
                        let response = app.clone().oneshot(request).await.unwrap();
                        let expected = if round < 2 { StatusCode::OK } else { StatusCode::TOO_MANY_REQUESTS };
                        prop_assert_eq!(
                            response.status(), expected,
                            "round {} uid {:?} client {:?}", round, uid, client
                        );
                        if round == 2 {
                            prop_assert!(response.headers().contains_key("retry-after"));
                        }
                    }
                }
            }
            Ok(())
        })?;
    }
}

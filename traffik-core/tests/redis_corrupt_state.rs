#![cfg(feature = "redis")]
//! Corrupt state written straight into Redis, for every built-in strategy, on the script
//! path and on the generic (compare-and-set) path: the request is judged on fresh state,
//! exactly as a brand-new key would be, with no panic and no error; the state is then
//! replaced by a readable one with a TTL. A key holding another Redis type (a list, a
//! hash, a set, a sorted set) is a clear error naming the wrong type, never a panic, and
//! the backend keeps serving other keys.
//!
//! The in-memory twin of this file is `corrupt_state.rs`.

mod redis_support;

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use traffik_core::strategy::{Write, state_key};
use traffik_core::{
    Algorithm, Backend, Decision, Error, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue,
    ManualClock, Rate, RedisBackend, SlidingWindowCounter, SlidingWindowLog, TokenBucket,
    TokenBucketWithDebt,
};

/// A fixed time for the explicit clock, in microseconds.
const NOW: u64 = 1_700_000_003_000_000;

fn namespace(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "corrupt-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

async fn raw() -> redis::aio::MultiplexedConnection {
    redis::Client::open(redis_support::url())
        .unwrap()
        .get_multiplexed_async_connection()
        .await
        .unwrap()
}

fn algorithms() -> Vec<Box<dyn Algorithm>> {
    vec![
        Box::new(FixedWindow),
        Box::new(SlidingWindowLog),
        Box::new(SlidingWindowCounter),
        Box::new(TokenBucket::new()),
        Box::new(TokenBucket::with_burst(7)),
        Box::new(TokenBucketWithDebt::new()),
        Box::new(LeakyBucket),
        Box::new(LeakyBucketWithQueue::new()),
        Box::new(Gcra::new()),
        Box::new(Gcra::with_burst(2)),
    ]
}

/// A rate the scripts run, and one outside their exact range (limit × period over 2^50:
/// the generic path, a compare-and-set loop around the Rust function) whose buckets
/// still fit their state.
fn rates() -> [(&'static str, Rate); 2] {
    [
        ("script", "5/10s".parse().unwrap()),
        (
            "generic",
            Rate::new(1_000_000, Duration::from_secs(86_400)).unwrap(),
        ),
    ]
}

/// What to put at the state key before deciding. The labels name a case in assertion
/// messages (through `Debug`).
#[derive(Debug, Clone)]
#[allow(dead_code)]
enum Corruption {
    /// A string value (`SET`) no strategy can read under any rate: a wrong tag, a wrong
    /// length, a malformed log.
    Bytes(&'static str, Vec<u8>),
    /// A string value of the right shape whose values no strategy writes under the
    /// script rate (a bucket over its capacity, a GCRA time far ahead). Under the
    /// generic path's huge rate some of them are legal states, and are judged as such.
    Forged(&'static str, Vec<u8>),
    /// An integer made by `INCRBY` (Redis keeps it integer-encoded).
    Counter(i64),
    /// A Redis type other than a string.
    List,
    Hash,
    Set,
    SortedSet,
}

fn string_cases() -> Vec<Corruption> {
    use Corruption::{Bytes, Forged};
    let words = |tag: u8, fields: &[u64]| {
        let mut bytes = vec![tag];
        for f in fields {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        bytes
    };
    let mut cases = vec![
        Bytes("empty", vec![]),
        Bytes("one byte", vec![0xFF]),
        Bytes("text", b"not state at all".to_vec()),
        Bytes("number text", b"42".to_vec()),
        Bytes("negative number text", b"-7".to_vec()),
        Bytes("control characters", b"\r\n\0{:}".to_vec()),
        Bytes("emoji", "🦀🦀🦀".as_bytes().to_vec()),
        Bytes("a NaN", f64::NAN.to_le_bytes().to_vec()),
        Forged("bucket tag, NaN fields", {
            let mut b = vec![0xB1];
            b.extend_from_slice(&f64::NAN.to_le_bytes());
            b.extend_from_slice(&f64::INFINITY.to_le_bytes());
            b
        }),
        Bytes("half a log entry", words(0xA1, &[9])),
        Bytes("zero-cost log entry", words(0xA1, &[NOW - 1, 0])),
        Bytes("unsorted log", words(0xA1, &[NOW - 1, 1, NOW - 2, 1])),
        Forged("bucket level over capacity", words(0xB1, &[u64::MAX, NOW])),
        Bytes(
            "GCRA at the end of time",
            words(0xD1, &[u64::MAX, u64::MAX]),
        ),
        Forged("GCRA far ahead", words(0xD1, &[1, 0])),
        Bytes("huge garbage", vec![0xA5; 1 << 20]),
        Bytes("huge, tagged", {
            let mut b = vec![0xA1];
            b.resize(1 << 20, 0xFF);
            b
        }),
        Bytes("zeros", vec![0; 4096]),
    ];
    // Each tag too short and too long, and each strategy's well-formed-looking zero state
    // given to the others (foreign state).
    for tag in [0xF1u8, 0xA1, 0xA2, 0xB1, 0xB2, 0xC1, 0xC2, 0xD1] {
        cases.push(Bytes("tag, too short", vec![tag, 1, 2, 3]));
        cases.push(Bytes("tag, one byte short", {
            let mut b = words(tag, &[0, 0, 0]);
            b.pop();
            b
        }));
        cases.push(Bytes("tag, one byte long", {
            let mut b = words(tag, &[0, 0, 0]);
            b.push(0);
            b
        }));
    }
    cases
}

fn all_cases() -> Vec<Corruption> {
    let mut cases = string_cases();
    cases.extend([
        Corruption::Counter(42),
        Corruption::Counter(-1),
        Corruption::Counter(i64::MAX),
        Corruption::List,
        Corruption::Hash,
        Corruption::Set,
        Corruption::SortedSet,
    ]);
    cases
}

/// Writes `corruption` at the full Redis key `full`, with no TTL.
async fn write(conn: &mut redis::aio::MultiplexedConnection, full: &str, corruption: &Corruption) {
    let _: i64 = redis::cmd("DEL").arg(full).query_async(conn).await.unwrap();
    let mut cmd = match corruption {
        Corruption::Bytes(_, bytes) | Corruption::Forged(_, bytes) => {
            redis::cmd("SET").arg(full).arg(&bytes[..]).clone()
        }
        Corruption::Counter(n) => redis::cmd("INCRBY").arg(full).arg(*n).clone(),
        Corruption::List => redis::cmd("RPUSH").arg(full).arg("a").arg("b").clone(),
        Corruption::Hash => redis::cmd("HSET").arg(full).arg("f").arg("v").clone(),
        Corruption::Set => redis::cmd("SADD").arg(full).arg("m").clone(),
        Corruption::SortedSet => redis::cmd("ZADD").arg(full).arg(1).arg("m").clone(),
    };
    let _: redis::Value = cmd.query_async(conn).await.unwrap();
    cmd = redis::cmd("TYPE").arg(full).clone();
    let kind: String = cmd.query_async(conn).await.unwrap();
    let expected = match corruption {
        Corruption::Bytes(..) | Corruption::Forged(..) | Corruption::Counter(_) => "string",
        Corruption::List => "list",
        Corruption::Hash => "hash",
        Corruption::Set => "set",
        Corruption::SortedSet => "zset",
    };
    assert_eq!(kind, expected, "{corruption:?}");
}

async fn get_raw(conn: &mut redis::aio::MultiplexedConnection, full: &str) -> Option<Vec<u8>> {
    redis::cmd("GET").arg(full).query_async(conn).await.unwrap()
}

async fn pttl(conn: &mut redis::aio::MultiplexedConnection, full: &str) -> i64 {
    redis::cmd("PTTL")
        .arg(full)
        .query_async(conn)
        .await
        .unwrap()
}

/// The error a key of another Redis type gives: [`Error::WrongType`] naming the key (or a
/// backend error naming the wrong type, from a path that does not map it).
fn assert_wrong_type(result: Result<Decision, Error>, full: &str, what: &str) {
    match result {
        Err(Error::Backend(message)) => assert!(
            message.contains("WRONGTYPE") && message.contains("wrong kind of value"),
            "{what}: the error should name the wrong type: {message}"
        ),
        // The key named is the one the decision was asked for; a windowed strategy's
        // state lives at that key followed by `:window`.
        Err(Error::WrongType { key, .. }) => assert!(
            full.ends_with(&key) || key.ends_with(full) || full.starts_with(&key),
            "{what}: the error names {key:?}, not {full:?}"
        ),
        other => panic!("{what}: expected a wrong-type error, got {other:?}"),
    }
}

/// Every strategy, every rate path, every corruption, on a backend with an explicit clock
/// (so that a brand-new key and the corrupt one are judged at the same instant).
#[tokio::test]
async fn corrupt_state_in_redis_is_judged_fresh_for_every_strategy() {
    if redis_support::skip() {
        return;
    }
    let mut conn = raw().await;
    for (path, rate) in rates() {
        for algorithm in algorithms() {
            let ns = namespace(path);
            let backend = RedisBackend::builder(ns.as_str())
                .url(redis_support::url())
                .clock(ManualClock::new(NOW))
                .build()
                .unwrap();
            let algorithm = algorithm.as_ref();
            // The Rust function's answer on no state: what every backend must give.
            let pure = algorithm.apply(None, NOW, &rate, 1).unwrap();
            let pure_peek = algorithm.peek(None, NOW, &rate);
            for (n, corruption) in all_cases().iter().enumerate() {
                let what = format!("{algorithm:?} ({path}) on {corruption:?}");
                let what: String = what.chars().take(200).collect();
                let key = format!("{{case{n}:client}}");
                let fresh_key = format!("{{fresh{n}:client}}");
                let full = backend.redis_key(&state_key(algorithm, &key, NOW, &rate));
                let fresh_full = backend.redis_key(&state_key(algorithm, &fresh_key, NOW, &rate));
                write(&mut conn, &full, corruption).await;

                // A brand-new key, for comparison.
                let fresh_peek = backend.peek(&fresh_key, algorithm, &rate).await.unwrap();
                let fresh = backend
                    .decide(&fresh_key, algorithm, &rate, 1)
                    .await
                    .unwrap();
                assert_eq!(fresh, pure.decision, "{what}: a brand-new key");
                assert_eq!(fresh_peek, pure_peek, "{what}: a brand-new key's peek");

                let started = Instant::now();
                let peek = backend.peek(&key, algorithm, &rate).await;
                let decision = backend.decide(&key, algorithm, &rate, 1).await;
                assert!(
                    started.elapsed() < Duration::from_secs(5),
                    "{what}: took {:?}",
                    started.elapsed()
                );
                // What the Rust function makes of the bytes: fresh state for anything
                // it cannot read (checked here, so that each case is what it claims).
                let (expected, expected_peek) = match corruption {
                    Corruption::Bytes(_, bytes) => {
                        let rust = algorithm.apply(Some(bytes), NOW, &rate, 1).unwrap();
                        assert_eq!(rust, pure, "{what}: the Rust function reads it");
                        (fresh, fresh_peek)
                    }
                    Corruption::Forged(_, bytes) => {
                        let rust = algorithm.apply(Some(bytes), NOW, &rate, 1).unwrap();
                        let rust_peek = algorithm.peek(Some(bytes), NOW, &rate);
                        if path == "script" {
                            assert_eq!(rust, pure, "{what}: the Rust function trusts it");
                        }
                        (rust.decision, rust_peek)
                    }
                    _ => (fresh, fresh_peek),
                };
                match corruption {
                    Corruption::Bytes(..) | Corruption::Forged(..) | Corruption::Counter(_) => {
                        assert_eq!(peek.unwrap(), expected_peek, "{what}: peek");
                        assert_eq!(decision.unwrap(), expected, "{what}: decision");
                        if expected != fresh {
                            continue; // a legal state under this rate, judged as such
                        }
                        // The corrupt value was replaced by what a fresh key holds, and
                        // now expires.
                        assert_eq!(
                            get_raw(&mut conn, &full).await,
                            get_raw(&mut conn, &fresh_full).await,
                            "{what}: stored state"
                        );
                        let ttl = pttl(&mut conn, &full).await;
                        assert!(ttl > 0, "{what}: no TTL after the decision ({ttl})");
                        // And it counts from there, like the fresh key.
                        let again = backend.decide(&key, algorithm, &rate, 1).await.unwrap();
                        let fresh_again = backend
                            .decide(&fresh_key, algorithm, &rate, 1)
                            .await
                            .unwrap();
                        assert_eq!(again, fresh_again, "{what}: second decision");
                    }
                    _ => {
                        assert_wrong_type(peek, &full, &format!("{what}: peek"));
                        assert_wrong_type(decision, &full, &format!("{what}: decision"));
                        // The foreign value is left alone (it is not ours to delete)...
                        let kind: String = redis::cmd("TYPE")
                            .arg(&full)
                            .query_async(&mut conn)
                            .await
                            .unwrap();
                        assert_ne!(kind, "string", "{what}");
                        // ...and the backend keeps serving other keys.
                        let other = format!("{{other{n}:client}}");
                        let d = backend.decide(&other, algorithm, &rate, 1).await.unwrap();
                        assert_eq!(d, pure.decision, "{what}: another key afterwards");
                    }
                }
            }
            backend.reset().await.unwrap();
        }
    }
}

/// Without an explicit clock the scripts read the server's `TIME`: corrupt strings are
/// still judged fresh. (A fixed window's key carries the window id; the corrupt value is
/// written at this window's key and the next, in case the window turns meanwhile.)
#[tokio::test]
async fn corrupt_state_is_judged_fresh_on_the_server_clock() {
    if redis_support::skip() {
        return;
    }
    let mut conn = raw().await;
    let rate: Rate = "5/h".parse().unwrap();
    for algorithm in algorithms() {
        let algorithm = algorithm.as_ref();
        let backend = RedisBackend::from_url(redis_support::url(), namespace("server")).unwrap();
        for (n, corruption) in string_cases().iter().enumerate() {
            let what = format!("{algorithm:?} on {corruption:?}");
            let what: String = what.chars().take(200).collect();
            let key = format!("{{server{n}:client}}");
            let now = backend.now().await.unwrap();
            for at in [now, now + rate.period_micros()] {
                let full = backend.redis_key(&state_key(algorithm, &key, at, &rate));
                write(&mut conn, &full, corruption).await;
            }
            let decision = backend.decide(&key, algorithm, &rate, 1).await.unwrap();
            let fresh = algorithm.apply(None, now, &rate, 1).unwrap().decision;
            assert!(decision.allowed, "{what}: {decision:?}");
            assert_eq!(decision.limit, fresh.limit, "{what}");
            assert_eq!(decision.remaining, fresh.remaining, "{what}");
            let peek = backend.peek(&key, algorithm, &rate).await.unwrap();
            let after_one = algorithm
                .apply(None, now, &rate, 1)
                .ok()
                .and_then(|t| match t.write {
                    traffik_core::strategy::Write::Put { state, .. } => Some(state),
                    _ => None,
                })
                .map(|state| algorithm.peek(Some(&state), now, &rate))
                .unwrap();
            assert_eq!(peek.remaining, after_one.remaining, "{what}: peek");
        }
        backend.reset().await.unwrap();
    }
}

/// A well-formed but huge sliding log (50 000 entries, all out of the window) is read,
/// found empty and replaced, within a bounded time, on both paths.
#[tokio::test]
async fn a_huge_stale_log_is_judged_fresh_quickly() {
    if redis_support::skip() {
        return;
    }
    let mut conn = raw().await;
    let mut log = vec![0xA1u8];
    for i in 0..50_000u64 {
        log.extend_from_slice(&(NOW - 100_000_000_000 + i).to_le_bytes());
        log.extend_from_slice(&1u64.to_le_bytes());
    }
    for (path, rate) in rates() {
        let backend = RedisBackend::builder(namespace("huge-log"))
            .url(redis_support::url())
            .clock(ManualClock::new(NOW))
            .build()
            .unwrap();
        let full = backend.redis_key("{huge:client}");
        write(
            &mut conn,
            &full,
            &Corruption::Bytes("huge log", log.clone()),
        )
        .await;
        let started = Instant::now();
        let decision = backend
            .decide("{huge:client}", &SlidingWindowLog, &rate, 1)
            .await
            .unwrap();
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{path}: {:?}",
            started.elapsed()
        );
        let fresh = SlidingWindowLog.apply(None, NOW, &rate, 1).unwrap();
        assert_eq!(decision, fresh.decision, "{path}");
        let Write::Put { state, .. } = fresh.write else {
            panic!("{path}: a fresh log admitted nothing");
        };
        let stored = get_raw(&mut conn, &full).await.unwrap();
        assert_eq!(
            stored,
            state.to_vec(),
            "{path}: the stale entries were dropped"
        );
        backend.reset().await.unwrap();
    }
}

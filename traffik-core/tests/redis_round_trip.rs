#![cfg(feature = "redis")]
//! One round trip per decision: `INFO commandstats` before and after N decisions shows
//! exactly N `FCALL` calls (N `EVALSHA` with functions off), and every other command
//! counted is one the function runs inside (one `TIME` and one `GET` per call, one `SET`
//! per admitted request): no `PING` from a pool checkout, no client-side `TIME`, `GET` or
//! lock.

mod redis_support;

use std::collections::HashMap;

use deadpool_redis::redis;
use traffik_core::{
    Backend, FixedWindow, Gcra, Rate, RedisBackend, SlidingWindowCounter, SlidingWindowLog,
    TokenBucket,
};

fn delta(before: &HashMap<String, u64>, after: &HashMap<String, u64>) -> HashMap<String, u64> {
    after
        .iter()
        .map(|(name, calls)| (name.clone(), calls - before.get(name).copied().unwrap_or(0)))
        .filter(|(_, d)| *d > 0)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_call_per_decision_as_functions_and_as_scripts() {
    if redis_support::skip() {
        return;
    }
    // In turn, not as two tests: the counts are the server's, and one would count the
    // other's calls.
    one_call_per_decision(true, "fcall").await;
    one_call_per_decision(false, "evalsha").await;
}

/// N decisions of each of several strategies cost N calls of `verb` and the commands it
/// runs inside, nothing more.
async fn one_call_per_decision(functions: bool, verb: &str) {
    const N: u64 = 50;
    let client = redis::Client::open(redis_support::url()).unwrap();
    let mut stats_conn = client.get_multiplexed_async_connection().await.unwrap();
    let backend = RedisBackend::builder(format!("rt-{verb}-{}", std::process::id()))
        .url(redis_support::url())
        .functions(functions)
        .build()
        .unwrap();
    backend.initialize().await.unwrap();
    let rate: Rate = "30/m".parse().unwrap();
    let algorithms: [&dyn traffik_core::Algorithm; 5] = [
        &FixedWindow,
        &SlidingWindowLog,
        &SlidingWindowCounter,
        &TokenBucket::new(),
        &Gcra::new(),
    ];
    for algorithm in algorithms {
        // Warm up: the connection is made and the function library (or script) loaded.
        backend.decide("{warm}", algorithm, &rate, 1).await.unwrap();
        // Other clients of a shared server can add commands: retry a few times, which a
        // systematic extra round trip would fail every time.
        let mut last = HashMap::new();
        let passed = 'attempts: {
            for attempt in 0..3 {
                let key = format!("{{client-{attempt}}}:scope");
                let before = redis_support::command_stats(&mut stats_conn).await;
                let mut admitted = 0;
                for _ in 0..N {
                    admitted += u64::from(
                        backend
                            .decide(&key, algorithm, &rate, 1)
                            .await
                            .unwrap()
                            .allowed,
                    );
                }
                let after = redis_support::command_stats(&mut stats_conn).await;
                let mut d = delta(&before, &after);
                d.remove("info");
                let expected: HashMap<String, u64> = [
                    (verb.to_owned(), N),
                    ("time".to_owned(), N),
                    ("get".to_owned(), N),
                    ("set".to_owned(), admitted),
                ]
                .into_iter()
                .collect();
                if d == expected {
                    break 'attempts true;
                }
                last = d;
            }
            false
        };
        assert!(passed, "{algorithm:?}: commands counted {last:?}");
    }
    backend.reset().await.unwrap();
}

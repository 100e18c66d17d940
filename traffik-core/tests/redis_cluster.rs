#![cfg(feature = "redis")]
//! The Redis backend on a real 3-primary Redis Cluster (`scripts/test.sh` starts one on
//! 127.0.0.1:7000-7002): exact admission, hash-tagged windowed keys, untagged keys, and a
//! reset that scans every primary.

mod redis_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use deadpool_redis::redis;
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, Rate, RedisBackend, SlidingWindowLog, TokenBucket,
};

fn namespace(test: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    format!(
        "rc-{test}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn cluster(ns: &str) -> RedisBackend {
    RedisBackend::from_cluster(redis_support::cluster_urls(), ns).unwrap()
}

/// Keys matching `pattern` on every primary, counted node by node.
async fn count_keys(pattern: &str) -> usize {
    let mut total = 0;
    for url in redis_support::cluster_urls() {
        let mut conn = redis::Client::open(url)
            .unwrap()
            .get_multiplexed_async_connection()
            .await
            .unwrap();
        let mut cursor = 0u64;
        loop {
            let (next, keys): (u64, Vec<String>) = redis::cmd("SCAN")
                .arg(cursor)
                .arg("MATCH")
                .arg(pattern)
                .arg("COUNT")
                .arg(1000)
                .query_async(&mut conn)
                .await
                .unwrap();
            total += keys.len();
            if next == 0 {
                break;
            }
            cursor = next;
        }
    }
    total
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_hits_are_exact_on_a_cluster() {
    if redis_support::skip_cluster() {
        return;
    }
    let rate: Rate = "100/h".parse().unwrap();
    let algorithms: Vec<Arc<dyn Algorithm>> = vec![
        Arc::new(FixedWindow),
        Arc::new(SlidingWindowLog),
        Arc::new(TokenBucket::new()),
        Arc::new(Gcra::new()),
    ];
    for algorithm in algorithms {
        let ns = namespace("conc");
        let b = cluster(&ns);
        // Several clients, so that the keys spread over the primaries.
        for client in ["a", "b", "c"] {
            let admitted = Arc::new(AtomicU64::new(0));
            let tasks: Vec<_> = (0..200)
                .map(|_| {
                    let (b, algorithm, admitted) = (b.clone(), algorithm.clone(), admitted.clone());
                    let key = format!("{{api:{client}}}:http:GET:/");
                    tokio::spawn(async move {
                        if b.decide(&key, algorithm.as_ref(), &rate, 1)
                            .await
                            .unwrap()
                            .allowed
                        {
                            admitted.fetch_add(1, Ordering::SeqCst);
                        }
                    })
                })
                .collect();
            for t in tasks {
                t.await.unwrap();
            }
            assert_eq!(
                admitted.load(Ordering::SeqCst),
                100,
                "{algorithm:?} {client}"
            );
        }
        b.reset().await.unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn untagged_keys_still_limit_on_a_cluster() {
    if redis_support::skip_cluster() {
        return;
    }
    let b = cluster(&namespace("untagged"));
    let rate: Rate = "3/m".parse().unwrap();
    for _ in 0..3 {
        assert!(
            b.decide("plain-client", &FixedWindow, &rate, 1)
                .await
                .unwrap()
                .allowed
        );
    }
    assert!(
        !b.decide("plain-client", &FixedWindow, &rate, 1)
            .await
            .unwrap()
            .allowed
    );
    assert!(
        !b.peek("plain-client", &FixedWindow, &rate)
            .await
            .unwrap()
            .allowed
    );
    b.reset().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reset_clears_every_primary_and_only_its_namespace() {
    if redis_support::skip_cluster() {
        return;
    }
    let ns = namespace("reset");
    let mine = cluster(&ns);
    let other = cluster(&format!("{ns}x"));
    let ttl = Some(Duration::from_secs(600));
    for i in 0..600 {
        mine.set(&format!("{{k{i}}}"), b"v", ttl).await.unwrap();
    }
    other.set("{k1}", b"keep", ttl).await.unwrap();
    assert_eq!(count_keys(&format!("{ns}:*")).await, 600);
    mine.reset().await.unwrap();
    assert_eq!(count_keys(&format!("{ns}:*")).await, 0);
    assert_eq!(
        other.get("{k1}").await.unwrap().as_deref(),
        Some(&b"keep"[..])
    );
    other.reset().await.unwrap();
}

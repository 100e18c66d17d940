//! Decisions per second through the Redis backend at 64 concurrent callers, against a
//! plain `INCR` per call in the same run (the cheapest thing a Redis limiter can do).
//!
//! ```sh
//! cargo bench -p traffik-core --features redis --bench redis
//! ```
//!
//! `TRAFFIK_REDIS_URL` picks the server (default `redis://127.0.0.1:6379/0`);
//! `TRAFFIK_BENCH_SECS` the length of each measurement (default 3). Skips with a message
//! when no server answers.

mod support;

use std::sync::Arc;

use deadpool_redis::redis;
use support::{CALLERS, measure};
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, Rate, RedisBackend, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket,
};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

async fn run() {
    let url = std::env::var("TRAFFIK_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".to_owned());
    let secs = support::seconds();
    let pool = deadpool_redis::Config::from_url(&url)
        .create_pool(Some(deadpool_redis::Runtime::Tokio1))
        .unwrap();
    let shared = match pool.get().await {
        Ok(conn) => (*conn).clone(),
        Err(error) => {
            eprintln!("skipping the redis bench: no server at {url}: {error}");
            return;
        }
    };
    let backend = RedisBackend::from_pool(pool.clone(), "bench").unwrap();
    backend.initialize().await.unwrap();
    // Every caller has its own key, and the limit is never reached: this measures the
    // cost of a decision, not of a denial.
    let rate: Rate = "1000000/s".parse().unwrap();
    let keys: Arc<Vec<String>> = Arc::new((0..CALLERS).map(|i| format!("{{bench:{i}}}")).collect());

    println!("{CALLERS} concurrent callers, {secs} s each, {url}");
    let incr = {
        let (shared, keys) = (shared.clone(), keys.clone());
        measure(secs, move |caller| {
            let mut conn = shared.clone();
            let key = format!("bench:incr:{}", keys[caller]);
            async move {
                let _: i64 = redis::cmd("INCR")
                    .arg(&key)
                    .query_async(&mut conn)
                    .await
                    .unwrap();
            }
        })
        .await
    };
    println!(
        "{:<40} {incr:>10.0} /s",
        "INCR, shared multiplexed connection"
    );
    let incr_checkout = {
        let pool = pool.clone();
        measure(secs, move |caller| {
            let pool = pool.clone();
            let key = format!("bench:incr:{caller}");
            async move {
                let mut conn = pool.get().await.unwrap();
                let _: i64 = redis::cmd("INCR")
                    .arg(&key)
                    .query_async(&mut *conn)
                    .await
                    .unwrap();
            }
        })
        .await
    };
    println!(
        "{:<40} {incr_checkout:>10.0} /s",
        "INCR, pool checkout per call"
    );

    let algorithms: Vec<(&str, Arc<dyn Algorithm>)> = vec![
        ("fixed window", Arc::new(FixedWindow)),
        ("sliding window counter", Arc::new(SlidingWindowCounter)),
        ("token bucket", Arc::new(TokenBucket::new())),
        ("gcra", Arc::new(Gcra::new())),
        (
            "sliding window log (limit 100/s)",
            Arc::new(SlidingWindowLog),
        ),
    ];
    // The same decisions as scripts (`EVALSHA`), what a server without functions runs.
    let scripts = RedisBackend::builder("bench")
        .pool(pool.clone())
        .functions(false)
        .build()
        .unwrap();
    let as_scripts: Vec<(&str, Arc<dyn Algorithm>)> = vec![
        ("fixed window", Arc::new(FixedWindow)),
        ("gcra", Arc::new(Gcra::new())),
    ];
    let runs =
        algorithms
            .into_iter()
            .map(|(name, algorithm)| (format!("decide: {name}"), &backend, algorithm))
            .chain(as_scripts.into_iter().map(|(name, algorithm)| {
                (format!("decide as a script: {name}"), &scripts, algorithm)
            }));
    for (label, on, algorithm) in runs {
        let rate: Rate = if label.contains("sliding window log") {
            "100/s".parse().unwrap()
        } else {
            rate
        };
        let per_second = support::decisions(secs, on.clone(), algorithm, rate, keys.clone()).await;
        println!(
            "{label:<40} {per_second:>10.0} /s  ({:.2}x INCR)",
            per_second / incr
        );
    }
    backend.reset().await.unwrap();
    let mut conn = shared.clone();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg("bench:incr:*")
        .query_async(&mut conn)
        .await
        .unwrap();
    if !keys.is_empty() {
        let _: i64 = redis::cmd("DEL")
            .arg(&keys)
            .query_async(&mut conn)
            .await
            .unwrap();
    }
}

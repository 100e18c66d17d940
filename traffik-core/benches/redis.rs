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

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use deadpool_redis::redis;
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, Rate, RedisBackend, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket,
};

const CALLERS: usize = 64;

/// Runs `op` from `CALLERS` tasks for `secs`; operations per second.
async fn measure<F, Fut>(secs: f64, op: F) -> f64
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send,
{
    let op = Arc::new(op);
    let stop = Arc::new(AtomicBool::new(false));
    let count = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let tasks: Vec<_> = (0..CALLERS)
        .map(|caller| {
            let (op, stop, count) = (op.clone(), stop.clone(), count.clone());
            tokio::spawn(async move {
                while !stop.load(Ordering::Relaxed) {
                    op(caller).await;
                    count.fetch_add(1, Ordering::Relaxed);
                }
            })
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.unwrap();
    }
    count.load(Ordering::Relaxed) as f64 / started.elapsed().as_secs_f64()
}

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
    let secs: f64 = std::env::var("TRAFFIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
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
    for (name, algorithm) in algorithms {
        let rate: Rate = if name.starts_with("sliding window log") {
            "100/s".parse().unwrap()
        } else {
            rate
        };
        let rate = Arc::new(rate);
        let (backend, keys) = (backend.clone(), keys.clone());
        let per_second = measure(secs, move |caller| {
            let (backend, algorithm, keys, rate) = (
                backend.clone(),
                algorithm.clone(),
                keys.clone(),
                rate.clone(),
            );
            async move {
                backend
                    .decide(&keys[caller], algorithm.as_ref(), &rate, 1)
                    .await
                    .unwrap();
            }
        })
        .await;
        println!(
            "{:<40} {per_second:>10.0} /s  ({:.2}x INCR)",
            format!("decide: {name}"),
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

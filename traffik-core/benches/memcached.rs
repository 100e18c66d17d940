//! Decisions per second through the Memcached backend at 64 concurrent callers, beside a
//! plain `ma` (memcached's increment) in the same run: on a connection of its own per
//! caller, and through the backend's pool.
//!
//! ```sh
//! cargo bench -p traffik-core --features memcached --bench memcached
//! ```
//!
//! `TRAFFIK_MEMCACHED_URL` picks the server (default `127.0.0.1:11211`);
//! `TRAFFIK_BENCH_SECS` the length of each measurement (default 3). Skips with a message
//! when no server answers.

mod support;

use std::sync::Arc;

use async_memcached::{Client, MetaProtocol};
use support::{CALLERS, measure};
use tokio::sync::Mutex;
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, MemcachedBackend, Rate, SlidingWindowCounter,
    TokenBucket,
};

fn main() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run());
}

fn backend(url: &str, pool_size: usize) -> MemcachedBackend {
    MemcachedBackend::builder("bench")
        .url(url)
        .pool_size(pool_size)
        .build()
        .unwrap()
}

async fn run() {
    let url = std::env::var("TRAFFIK_MEMCACHED_URL").unwrap_or_else(|_| "127.0.0.1:11211".into());
    let secs = support::seconds();
    let pooled = backend(&url, CALLERS);
    if let Err(error) = pooled.initialize().await {
        eprintln!("skipping the memcached bench: no server at {url}: {error}");
        return;
    }
    // Every caller has its own key, and the limit is never reached: this measures the
    // cost of a decision, not of a denial.
    let rate: Rate = "1000000/s".parse().unwrap();
    let keys: Arc<Vec<String>> = Arc::new((0..CALLERS).map(|i| format!("{{bench:{i}}}")).collect());

    println!("{CALLERS} concurrent callers, {secs} s each, memcached at {url}");
    let mut clients = Vec::new();
    for _ in 0..CALLERS {
        clients.push(Mutex::new(
            Client::new(format!("tcp://{url}")).await.unwrap(),
        ));
    }
    let clients = Arc::new(clients);
    let raw = measure(secs, move |caller| {
        let clients = clients.clone();
        async move {
            let mut client = clients[caller].lock().await;
            let key = format!("bench:raw:{caller}");
            client
                .meta_increment(&key, false, None, Some(1), Some(&["N60", "J1", "v"]))
                .await
                .unwrap();
        }
    })
    .await;
    println!("{:<44} {raw:>10.0} /s", "ma, a connection per caller");

    let incr = {
        let (backend, keys) = (pooled.clone(), keys.clone());
        measure(secs, move |caller| {
            let (backend, keys) = (backend.clone(), keys.clone());
            async move {
                backend.increment(&keys[caller], 1).await.unwrap();
            }
        })
        .await
    };
    println!(
        "{:<44} {incr:>10.0} /s  ({:.2}x raw ma)",
        "Backend::increment (ma through the pool)",
        incr / raw
    );

    let algorithms: Vec<(&str, Arc<dyn Algorithm>, MemcachedBackend)> = vec![
        ("fixed window", Arc::new(FixedWindow), pooled.clone()),
        (
            "fixed window, pool of 10 (default)",
            Arc::new(FixedWindow),
            backend(&url, 10),
        ),
        ("token bucket", Arc::new(TokenBucket::new()), pooled.clone()),
        (
            "sliding window counter",
            Arc::new(SlidingWindowCounter),
            pooled.clone(),
        ),
        ("gcra", Arc::new(Gcra::new()), pooled.clone()),
    ];
    for (name, algorithm, backend) in algorithms {
        let per_second = support::decisions(secs, backend, algorithm, rate, keys.clone()).await;
        println!(
            "{:<44} {per_second:>10.0} /s  ({:.2}x raw ma, {:.2}x increment)",
            format!("decide: {name}"),
            per_second / raw,
            per_second / incr
        );
    }
    pooled.reset().await.unwrap();
}

//! Shared by the networked backends' benches: a fixed number of concurrent callers
//! running one operation in a loop for a while.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// Concurrent callers in every measurement.
pub const CALLERS: usize = 64;

/// Runs `op` from [`CALLERS`] tasks for `secs`; operations per second.
pub async fn measure<F, Fut>(secs: f64, op: F) -> f64
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

/// `TRAFFIK_BENCH_SECS`, the length of each measurement (default 3).
pub fn seconds() -> f64 {
    std::env::var("TRAFFIK_BENCH_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0)
}

/// Decisions per second of `algorithm` under `rate` on `backend`, each caller deciding
/// for its own key of `keys`.
pub async fn decisions<B>(
    secs: f64,
    backend: B,
    algorithm: Arc<dyn traffik_core::Algorithm>,
    rate: traffik_core::Rate,
    keys: Arc<Vec<String>>,
) -> f64
where
    B: traffik_core::Backend + Clone,
{
    let rate = Arc::new(rate);
    measure(secs, move |caller| {
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
    .await
}

//! Concurrency on a multi-threaded runtime: the in-memory backend admits exactly the
//! limit, for every strategy, however the hits interleave.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Barrier;
use traffik_core::{
    Algorithm, Backend, FixedWindow, Gcra, InMemoryBackend, LeakyBucketWithQueue, ManualClock,
    Rate, SlidingWindowCounter, SlidingWindowLog, TokenBucket, TokenBucketWithDebt,
};

fn strategies() -> Vec<Arc<dyn Algorithm>> {
    vec![
        Arc::new(FixedWindow),
        Arc::new(SlidingWindowLog),
        Arc::new(SlidingWindowCounter),
        Arc::new(TokenBucket::new()),
        Arc::new(TokenBucketWithDebt::with_max_debt(0)),
        Arc::new(LeakyBucketWithQueue::new()),
        Arc::new(Gcra::new()),
    ]
}

/// Fires `hits` concurrent requests at once and counts the admitted ones.
async fn race(
    backend: &InMemoryBackend,
    algorithm: &Arc<dyn Algorithm>,
    rate: Rate,
    hits: usize,
) -> u64 {
    let admitted = Arc::new(AtomicU64::new(0));
    let barrier = Arc::new(Barrier::new(hits));
    let tasks: Vec<_> = (0..hits)
        .map(|_| {
            let (backend, algorithm) = (backend.clone(), algorithm.clone());
            let (admitted, barrier) = (admitted.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let decision = backend
                    .decide("hot", algorithm.as_ref(), &rate, 1)
                    .await
                    .unwrap();
                if decision.allowed {
                    admitted.fetch_add(1, Ordering::SeqCst);
                }
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap();
    }
    admitted.load(Ordering::SeqCst)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn hundred_concurrent_hits_at_100_per_second_admit_exactly_100() {
    let rate: Rate = "100/s".parse().unwrap();
    for algorithm in strategies() {
        // The clock stands still, so no refill can blur the count.
        let clock = ManualClock::new(1_700_000_000_000_000);
        let backend = InMemoryBackend::builder("race").clock(clock).build();
        assert_eq!(
            race(&backend, &algorithm, rate, 150).await,
            100,
            "{algorithm:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn with_nine_of_ten_used_two_racing_hits_admit_exactly_one() {
    let rate: Rate = "10/m".parse().unwrap();
    for algorithm in strategies() {
        for round in 0..50 {
            let clock = ManualClock::new(1_700_000_000_000_000);
            let backend = InMemoryBackend::builder("race").clock(clock).build();
            for _ in 0..9 {
                assert!(
                    backend
                        .decide("hot", algorithm.as_ref(), &rate, 1)
                        .await
                        .unwrap()
                        .allowed
                );
            }
            assert_eq!(
                race(&backend, &algorithm, rate, 2).await,
                1,
                "{algorithm:?} round {round}"
            );
        }
    }
}

//! In-memory backend specifics: expiry, the sweeper's lifetime, persistence and close.

use std::time::Duration;

use traffik_core::{Backend, Error, FixedWindow, InMemoryBackend, ManualClock, Rate};

const NOW: u64 = 1_700_000_000_000_000;

fn backend(clock: &ManualClock) -> InMemoryBackend {
    InMemoryBackend::builder("mem").clock(clock.clone()).build()
}

#[tokio::test]
async fn keys_vanish_after_their_ttl() {
    let clock = ManualClock::new(NOW);
    let backend = backend(&clock);
    backend
        .set("a", b"1", Some(Duration::from_secs(5)))
        .await
        .unwrap();
    backend.set("forever", b"1", None).await.unwrap();
    clock.advance(Duration::from_micros(4_999_999));
    assert_eq!(backend.get("a").await.unwrap().as_deref(), Some(&b"1"[..]));
    clock.advance_micros(1);
    assert_eq!(backend.get("a").await.unwrap(), None);
    assert_eq!(backend.stored_keys(), 2, "expired but not yet reclaimed");
    assert_eq!(backend.purge_expired(), 1);
    assert_eq!(backend.stored_keys(), 1);
    assert!(backend.get("forever").await.unwrap().is_some());
}

#[tokio::test]
async fn decisions_leave_no_key_behind() {
    let clock = ManualClock::new(NOW);
    let backend = backend(&clock);
    let rate: Rate = "3/s".parse().unwrap();
    for client in 0..1_000 {
        backend
            .decide(&format!("client-{client}"), &FixedWindow, &rate, 1)
            .await
            .unwrap();
    }
    assert_eq!(backend.stored_keys(), 1_000);
    clock.advance(Duration::from_secs(1));
    assert_eq!(backend.purge_expired(), 1_000);
    assert_eq!(backend.stored_keys(), 0);
}

#[tokio::test(start_paused = true)]
async fn the_sweeper_reclaims_expired_keys_and_stops_with_the_backend() {
    let clock = ManualClock::new(NOW);
    let backend = InMemoryBackend::builder("sweep")
        .clock(clock.clone())
        .sweep_interval(Duration::from_secs(1))
        .build();
    assert!(backend.sweeper_running());
    let tasks = tokio::runtime::Handle::current().metrics();
    assert_eq!(tasks.num_alive_tasks(), 1);

    backend
        .set("a", b"1", Some(Duration::from_secs(1)))
        .await
        .unwrap();
    clock.advance(Duration::from_secs(2));
    // Virtual time: the sweeper's interval elapses without sleeping.
    tokio::time::sleep(Duration::from_millis(1_100)).await;
    assert_eq!(
        backend.stored_keys(),
        0,
        "the sweeper removed the expired key"
    );

    drop(backend);
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        tasks.num_alive_tasks(),
        0,
        "the sweeper ended with the backend"
    );
}

#[tokio::test]
async fn close_clears_unless_persistent_and_refuses_further_work() {
    let clock = ManualClock::new(NOW);
    let volatile = backend(&clock);
    volatile.set("a", b"1", None).await.unwrap();
    volatile.close().await.unwrap();
    assert!(!volatile.sweeper_running());
    assert!(matches!(volatile.get("a").await, Err(Error::Closed(_))));
    volatile.initialize().await.unwrap();
    assert_eq!(volatile.get("a").await.unwrap(), None);

    let persistent = InMemoryBackend::builder("p")
        .clock(clock)
        .persistent(true)
        .build();
    persistent.set("a", b"1", None).await.unwrap();
    persistent.close().await.unwrap();
    persistent.initialize().await.unwrap();
    assert!(persistent.get("a").await.unwrap().is_some());
}

#[tokio::test]
async fn built_outside_a_runtime_the_sweeper_starts_on_initialize() {
    let backend = std::thread::spawn(|| InMemoryBackend::new("outside"))
        .join()
        .unwrap();
    assert!(!backend.sweeper_running());
    backend.initialize().await.unwrap();
    assert!(backend.sweeper_running());
}

#[tokio::test]
async fn clones_share_one_store() {
    let a = InMemoryBackend::new("shared");
    let b = a.clone();
    a.set("k", b"v", None).await.unwrap();
    assert!(b.get("k").await.unwrap().is_some());
    b.reset().await.unwrap();
    assert!(a.get("k").await.unwrap().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_released_lock_wakes_its_waiters_at_once() {
    use std::sync::Arc;
    use traffik_core::LockOptions;

    // 100 tasks contend for one lock, each holding it across a few awaits. Time is virtual:
    // it moves only when every task waits on a timer. Woken by each release, the waiters
    // never need their back-off timers, so no virtual time passes.
    let backend = Arc::new(InMemoryBackend::new("locks"));
    let options = LockOptions::new(Duration::from_secs(10)).blocking(Duration::from_secs(2));
    let started = tokio::time::Instant::now();
    let tasks: Vec<_> = (0..100)
        .map(|_| {
            let backend = backend.clone();
            tokio::spawn(async move {
                let lock = backend.lock("shared", options).await?;
                for _ in 0..3 {
                    tokio::task::yield_now().await;
                }
                lock.release().await
            })
        })
        .collect();
    for task in tasks {
        assert_eq!(task.await.unwrap(), Ok(true));
    }
    assert!(
        started.elapsed() < Duration::from_millis(1),
        "{:?}",
        started.elapsed()
    );
}

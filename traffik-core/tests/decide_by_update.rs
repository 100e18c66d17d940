//! `decide_by_update`, the decision of backends without a script of their own (memcached,
//! custom backends): the time it judges by when time passes before the update runs (a
//! connection waited for, attempts lost to other writers).

use std::time::Duration;

use traffik_core::backend::{UpdateFn, decide_by_update};
use traffik_core::{
    Algorithm, Backend, BackendFuture, Decision, FixedWindow, Gcra, InMemoryBackend, Lock,
    LockOptions, ManualClock, Micros, Rate, Result,
};

/// An in-memory store on a manual clock whose `update` first lets `delay` pass, as a
/// network backend's update spends its time waiting.
#[derive(Debug)]
struct Late {
    store: InMemoryBackend,
    clock: ManualClock,
    delay: Duration,
}

impl Late {
    fn new(start: Micros, delay: Duration) -> Self {
        let clock = ManualClock::new(start);
        let store = InMemoryBackend::builder("late")
            .clock(clock.clone())
            .build();
        Self {
            store,
            clock,
            delay,
        }
    }
}

impl Backend for Late {
    fn namespace(&self) -> &str {
        "late"
    }
    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        self.store.now()
    }
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        self.store.get(key)
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        self.store.set(key, value, ttl)
    }
    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        self.store.delete(key)
    }
    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        self.store.increment(key, amount)
    }
    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        self.store.increment_with_ttl(key, amount, ttl)
    }
    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        self.clock.advance(self.delay);
        self.store.update(key, f)
    }
    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        self.store.lock(name, options)
    }
    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(decide_by_update(self, key, algorithm, rate, cost))
    }
    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        self.store.peek(key, algorithm, rate)
    }
    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        self.store.reset()
    }
    fn close(&self) -> BackendFuture<'_, Result<()>> {
        self.store.close()
    }
}

fn rate(text: &str) -> Rate {
    text.parse().expect("a valid rate")
}

#[tokio::test]
async fn an_update_judges_by_the_time_it_runs_at() {
    // GCRA at 2/s: two hits fill the burst; a third is admitted once 500 ms have passed.
    let backend = Late::new(1_700_000_000_000_000, Duration::ZERO);
    let gcra = Gcra::new();
    let rate = rate("2/s");
    for _ in 0..2 {
        assert!(backend.decide("k", &gcra, &rate, 1).await.unwrap().allowed);
    }
    // The third decision reads the time, then waits 500 ms for its update: judged at the
    // time read first it would be denied.
    let backend = Late {
        delay: Duration::from_millis(500),
        ..backend
    };
    let third = backend.decide("k", &gcra, &rate, 1).await.unwrap();
    assert!(third.allowed, "{third:?}");
}

#[tokio::test]
async fn a_window_is_judged_in_the_window_its_key_names() {
    // 10 ms before a window ends; the update runs 20 ms later, in the next window. The
    // state read is the first window's (its key names it), so the decision is that
    // window's: it resets when that window ends, 10 ms after the time read.
    let end = 1_700_000_000_000_000;
    let backend = Late::new(end - 10_000, Duration::from_millis(20));
    let decision = backend
        .decide("k", &FixedWindow, &rate("2/s"), 1)
        .await
        .unwrap();
    assert_eq!(decision.reset, Duration::from_millis(10), "{decision:?}");
}

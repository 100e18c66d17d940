//! Reliability of decisions when the backend misbehaves: failure policies, timeouts,
//! shadow mode, the circuit breaker and slow updates, on a fake backend that can be made
//! to fail, to hang or to be slow, and that counts the calls it receives.
//!
//! Time-dependent tests run on Tokio's paused clock (timeouts) or a `ManualClock` (the
//! breaker's cool-down): nothing sleeps.

use std::future::Future;
use std::sync::atomic::{AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use traffik_core::backend::{UpdateFn, decide_by_update};
use traffik_core::policy::DEFAULT_TIMEOUT;
use traffik_core::{
    Algorithm, Backend, BackendFuture, BreakerState, CircuitBreaker, Decision, DecisionSource,
    Error, FailurePolicy, FailureVerdict, FixedWindow, Gcra, Identity, InMemoryBackend, Lock,
    LockOptions, ManualClock, Micros, Rate, Result, Strategy, Throttle,
};

/// What the fake backend does with a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
enum Mode {
    /// Answers from an in-memory store.
    Healthy = 0,
    /// Fails at once with a backend error.
    Failing = 1,
    /// Never answers.
    Hanging = 2,
}

/// A backend that answers, fails or hangs on demand, and counts its calls.
#[derive(Debug, Clone)]
struct Flaky {
    store: InMemoryBackend,
    mode: Arc<AtomicU8>,
    calls: Arc<AtomicUsize>,
    policy: Option<FailurePolicy>,
    timeout: Option<Duration>,
    in_place: bool,
    /// Claims to bound its decisions (`Backend::bounds_decisions`), whatever its mode.
    bounding: bool,
    /// The limit of each `decide_within` call, in order.
    limits: Arc<Mutex<Vec<Duration>>>,
    /// A store on this clock, moved on by this much before each `update` runs: the time
    /// a network backend's update spends waiting for a connection.
    slow_updates: Option<(ManualClock, Duration)>,
}

impl Flaky {
    fn new(mode: Mode) -> Self {
        Self {
            store: InMemoryBackend::new("flaky"),
            mode: Arc::new(AtomicU8::new(mode as u8)),
            calls: Arc::new(AtomicUsize::new(0)),
            policy: None,
            timeout: None,
            in_place: false,
            bounding: false,
            limits: Arc::default(),
            slow_updates: None,
        }
    }

    /// A healthy backend whose store reads `clock`, and whose updates start `delay` after
    /// they are called.
    fn slow_updates(clock: &ManualClock, delay: Duration) -> Self {
        Self {
            store: InMemoryBackend::builder("flaky")
                .clock(clock.clone())
                .build(),
            slow_updates: Some((clock.clone(), delay)),
            ..Self::new(Mode::Healthy)
        }
    }

    /// Claims to decide in place (`Backend::decides_in_place`), whatever its mode.
    fn in_place(mut self) -> Self {
        self.in_place = true;
        self
    }

    /// Claims to bound its decisions (`Backend::bounds_decisions`), whatever its mode.
    fn bounding(mut self) -> Self {
        self.bounding = true;
        self
    }

    fn with_policy(mut self, policy: FailurePolicy) -> Self {
        self.policy = Some(policy);
        self
    }

    fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    fn set(&self, mode: Mode) {
        self.mode.store(mode as u8, Ordering::SeqCst);
    }

    fn limits(&self) -> Vec<Duration> {
        self.limits.lock().expect("limits").clone()
    }

    fn calls(&self) -> usize {
        self.calls.load(Ordering::SeqCst)
    }

    /// Counts the call, then answers with `op` on the store, fails or hangs.
    fn gate<'a, T: Send + 'a>(
        &'a self,
        op: impl FnOnce() -> BackendFuture<'a, Result<T>>,
    ) -> BackendFuture<'a, Result<T>> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        match self.mode.load(Ordering::SeqCst) {
            0 => op(),
            1 => BackendFuture::ready(Err(Error::Backend("injected failure".into()))),
            _ => BackendFuture::new(std::future::pending()),
        }
    }
}

impl Backend for Flaky {
    fn namespace(&self) -> &str {
        "flaky"
    }
    fn timeout(&self) -> Duration {
        self.timeout.unwrap_or(DEFAULT_TIMEOUT)
    }
    fn decides_in_place(&self) -> bool {
        self.in_place
    }
    fn bounds_decisions(&self) -> bool {
        self.bounding
    }
    fn failure_policy(&self) -> FailurePolicy {
        self.policy.clone().unwrap_or_default()
    }
    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        self.gate(|| self.store.now())
    }
    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        self.gate(|| self.store.get(key))
    }
    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        self.gate(|| self.store.set(key, value, ttl))
    }
    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        self.gate(|| self.store.delete(key))
    }
    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        self.gate(|| self.store.increment(key, amount))
    }
    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        self.gate(|| self.store.increment_with_ttl(key, amount, ttl))
    }
    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        if let Some((clock, delay)) = &self.slow_updates {
            clock.advance(*delay);
        }
        self.gate(|| self.store.update(key, f))
    }
    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        self.gate(|| self.store.lock(name, options))
    }
    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        self.gate(|| self.store.decide(key, algorithm, rate, cost))
    }
    fn decide_within<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
        limit: Duration,
    ) -> BackendFuture<'a, Result<Decision>> {
        self.limits.lock().expect("limits").push(limit);
        self.decide(key, algorithm, rate, cost)
    }
    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        self.gate(|| self.store.peek(key, algorithm, rate))
    }
    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        self.store.reset()
    }
    fn close(&self) -> BackendFuture<'_, Result<()>> {
        self.store.close()
    }
}

fn client() -> Identity {
    Identity::client("192.0.2.10")
}

fn rate(text: &str) -> Rate {
    text.parse().expect("rate")
}

/// Fails the test instead of hanging it if `future` does not complete within a minute
/// (of paused time, in the paused-clock tests: no real wait).
/// A strategy of its own, so not known to be one `decide` call: it reads the backend's
/// time, then decides as a fixed window.
#[derive(Debug)]
struct ReadsTheTimeFirst;

impl Strategy for ReadsTheTimeFirst {
    fn hit<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        cost: u64,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(async move {
            backend.now().await?;
            backend.decide(key, &FixedWindow, rate, cost).await
        })
    }

    fn stat<'a>(
        &'a self,
        key: &'a str,
        rate: &'a Rate,
        backend: &'a dyn Backend,
    ) -> BackendFuture<'a, Result<Decision>> {
        backend.peek(key, &FixedWindow, rate)
    }
}

async fn bounded<F: Future>(future: F) -> F::Output {
    tokio::time::timeout(Duration::from_secs(60), future)
        .await
        .expect("the decision must not hang")
}

// ---------------------------------------------------------------------------------------
// Failure policies
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn allow_policy_fails_open_and_marks_the_decision() {
    let backend = Flaky::new(Mode::Failing);
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Allow);
    let decision = throttle
        .hit(&client(), "s", &backend)
        .await
        .expect("fail open");
    assert!(decision.allowed);
    assert_eq!(decision.source, DecisionSource::FailOpen);
    assert!(!decision.is_decided());
    assert_eq!(backend.calls(), 1);
}

#[tokio::test]
async fn throttle_policy_fails_closed_with_its_wait() {
    let backend = Flaky::new(Mode::Failing);
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(7)));
    let decision = throttle
        .hit(&client(), "s", &backend)
        .await
        .expect("fail closed");
    assert!(!decision.allowed);
    assert_eq!(decision.wait, Duration::from_secs(7));
    assert_eq!(decision.retry_after_secs(), 7);
    assert_eq!(decision.source, DecisionSource::FailClosed);
    assert_eq!(decision.limit, 5);
}

#[tokio::test]
async fn raise_policy_returns_the_error() {
    let backend = Flaky::new(Mode::Failing);
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Raise);
    let error = throttle
        .hit(&client(), "s", &backend)
        .await
        .expect_err("raise");
    assert_eq!(error, Error::Backend("injected failure".into()));
}

#[tokio::test]
async fn custom_policy_is_given_the_failure_and_its_context() {
    #[derive(Debug, PartialEq)]
    struct Seen {
        error: Error,
        uid: String,
        identity: String,
        scope: String,
        key: String,
        cost: u64,
        namespace: String,
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = FailurePolicy::custom({
        let seen = Arc::clone(&seen);
        move |failure| {
            seen.lock().expect("seen").push(Seen {
                error: failure.error.clone(),
                uid: failure.uid.to_owned(),
                identity: failure.identity.to_owned(),
                scope: failure.scope.to_owned(),
                key: failure.key.to_owned(),
                cost: failure.cost,
                namespace: failure.namespace.to_owned(),
            });
            match failure.scope {
                "open" => FailureVerdict::Allow,
                "closed" => FailureVerdict::Throttle(Duration::from_secs(3)),
                _ => FailureVerdict::Raise,
            }
        }
    });
    let backend = Flaky::new(Mode::Failing);
    let throttle = Throttle::new("custom", "5/m")
        .expect("throttle")
        .on_error(policy);

    let open = throttle.hit(&client(), "open", &backend).await;
    assert_eq!(open.map(|d| d.source), Ok(DecisionSource::FailOpen));
    let closed = throttle
        .hit_with_cost(&client(), "closed", 2, &backend)
        .await
        .expect("closed");
    assert_eq!(
        (closed.allowed, closed.wait),
        (false, Duration::from_secs(3))
    );
    let raised = throttle.hit(&client(), "other", &backend).await;
    assert!(matches!(raised, Err(Error::Backend(_))));

    let seen = seen.lock().expect("seen");
    assert_eq!(seen.len(), 3);
    assert_eq!(
        seen[1],
        Seen {
            error: Error::Backend("injected failure".into()),
            uid: "custom".into(),
            identity: "192.0.2.10".into(),
            scope: "closed".into(),
            key: throttle.key("192.0.2.10", "closed"),
            cost: 2,
            namespace: "flaky".into(),
        }
    );
}

#[tokio::test]
async fn the_throttles_policy_wins_over_the_backends() {
    let backend = Flaky::new(Mode::Failing).with_policy(FailurePolicy::Allow);
    let inherits = Throttle::new("inherits", "5/m").expect("throttle");
    let decision = inherits
        .hit(&client(), "s", &backend)
        .await
        .expect("backend default");
    assert_eq!(decision.source, DecisionSource::FailOpen);

    let overrides = Throttle::new("overrides", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Raise);
    assert!(overrides.hit(&client(), "s", &backend).await.is_err());
}

#[tokio::test]
async fn without_any_policy_the_error_is_returned() {
    let backend = Flaky::new(Mode::Failing);
    assert!(matches!(backend.failure_policy(), FailurePolicy::Raise));
    let throttle = Throttle::new("api", "5/m").expect("throttle");
    assert!(matches!(
        throttle.hit(&client(), "s", &backend).await,
        Err(Error::Backend(_))
    ));
}

#[tokio::test]
async fn configuration_errors_are_never_answered_by_the_policy() {
    let backend = InMemoryBackend::builder("config")
        .on_error(FailurePolicy::Allow)
        .build();
    for policy in [
        FailurePolicy::Allow,
        FailurePolicy::Throttle(Duration::from_secs(1)),
    ] {
        let throttle = Throttle::new("api", "5/m")
            .expect("throttle")
            .on_error(policy)
            .shadow(true);
        let error = throttle
            .hit_with_cost(&client(), "s", 50, &backend)
            .await
            .expect_err("a cost above the capacity is a mistake, not an outage");
        assert_eq!(
            error,
            Error::CostExceedsCapacity {
                cost: 50,
                capacity: 5
            }
        );
    }
}

#[tokio::test]
async fn in_memory_backend_default_policy_answers_its_failures() {
    let backend = InMemoryBackend::builder("closed")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(2)))
        .build();
    backend.close().await.expect("close");
    let throttle = Throttle::new("api", "5/m").expect("throttle");
    let decision = throttle
        .hit(&client(), "s", &backend)
        .await
        .expect("fail closed");
    assert_eq!(
        (decision.allowed, decision.source, decision.wait),
        (false, DecisionSource::FailClosed, Duration::from_secs(2))
    );
}

// ---------------------------------------------------------------------------------------
// Timeouts
// ---------------------------------------------------------------------------------------

#[tokio::test(start_paused = true)]
async fn a_hanging_backend_is_answered_within_the_throttles_timeout() {
    let backend = Flaky::new(Mode::Hanging);
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .timeout(Duration::from_millis(100));
    let started = tokio::time::Instant::now();
    let result = bounded(throttle.hit(&client(), "s", &backend)).await;
    assert_eq!(result, Err(Error::Timeout(Duration::from_millis(100))));
    assert_eq!(started.elapsed(), Duration::from_millis(100));

    // `stat` is bounded the same way.
    let started = tokio::time::Instant::now();
    let result = bounded(throttle.stat(&client(), "s", &backend)).await;
    assert_eq!(result, Err(Error::Timeout(Duration::from_millis(100))));
    assert_eq!(started.elapsed(), Duration::from_millis(100));
}

#[tokio::test(start_paused = true)]
async fn without_its_own_timeout_a_throttle_uses_the_backends() {
    let throttle = Throttle::new("api", "5/m").expect("throttle");

    let custom = Flaky::new(Mode::Hanging).with_timeout(Duration::from_millis(40));
    let started = tokio::time::Instant::now();
    let result = bounded(throttle.hit(&client(), "s", &custom)).await;
    assert_eq!(result, Err(Error::Timeout(Duration::from_millis(40))));
    assert_eq!(started.elapsed(), Duration::from_millis(40));

    let default = Flaky::new(Mode::Hanging);
    let started = tokio::time::Instant::now();
    let result = bounded(throttle.hit(&client(), "s", &default)).await;
    assert_eq!(result, Err(Error::Timeout(DEFAULT_TIMEOUT)));
    assert_eq!(started.elapsed(), DEFAULT_TIMEOUT);
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_millis(250));
}

#[tokio::test(start_paused = true)]
async fn a_backend_that_bounds_its_decisions_is_left_to_keep_the_timeout() {
    // A backend that says it ends every decision within its limit, and hangs: a throttle
    // hands it the limit and starts no timer, and so waits on it.
    let backend = Flaky::new(Mode::Hanging).bounding();
    let throttle = Throttle::new("api", "5/m").expect("throttle");
    let waited =
        tokio::time::timeout(DEFAULT_TIMEOUT * 10, throttle.hit(&client(), "s", &backend)).await;
    assert!(waited.is_err(), "the throttle timed the decision itself");

    // The limit is the throttle's timeout when it has one, else the backend's.
    let own = Throttle::new("own", "5/m")
        .expect("throttle")
        .timeout(Duration::from_millis(100));
    let waited =
        tokio::time::timeout(DEFAULT_TIMEOUT * 10, own.hit(&client(), "s", &backend)).await;
    assert!(waited.is_err(), "the throttle timed the decision itself");
    assert_eq!(
        backend.limits(),
        [DEFAULT_TIMEOUT, Duration::from_millis(100)]
    );

    // A backend that does not bound its decisions is timed by the throttle, at its limit.
    let unbounded = Flaky::new(Mode::Hanging);
    let started = tokio::time::Instant::now();
    let result = bounded(own.hit(&client(), "s", &unbounded)).await;
    assert_eq!(result, Err(Error::Timeout(Duration::from_millis(100))));
    assert_eq!(started.elapsed(), Duration::from_millis(100));

    // So is a report (`stat` is a peek, not a decision) ...
    let started = tokio::time::Instant::now();
    let result = bounded(throttle.stat(&client(), "s", &backend)).await;
    assert_eq!(result, Err(Error::Timeout(DEFAULT_TIMEOUT)));
    assert_eq!(started.elapsed(), DEFAULT_TIMEOUT);

    // ... and a strategy whose hit is more than one decision.
    let custom = Throttle::new("custom", "5/m")
        .expect("throttle")
        .strategy(ReadsTheTimeFirst);
    let started = tokio::time::Instant::now();
    let result = bounded(custom.hit(&client(), "s", &backend)).await;
    assert_eq!(result, Err(Error::Timeout(DEFAULT_TIMEOUT)));
    assert_eq!(started.elapsed(), DEFAULT_TIMEOUT);
}

#[tokio::test(start_paused = true)]
async fn a_timeout_is_answered_by_the_failure_policy() {
    let backend = Flaky::new(Mode::Hanging);
    let open = Throttle::new("open", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Allow);
    let decision = bounded(open.hit(&client(), "s", &backend))
        .await
        .expect("fail open");
    assert_eq!(decision.source, DecisionSource::FailOpen);

    let closed = Throttle::new("closed", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(9)));
    let decision = bounded(closed.hit(&client(), "s", &backend))
        .await
        .expect("fail closed");
    assert_eq!(
        (decision.allowed, decision.wait),
        (false, Duration::from_secs(9))
    );
}

#[test]
fn a_decision_that_completes_at_once_starts_no_timer() {
    // A runtime without a time driver: starting a timer in it would panic.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let backend = InMemoryBackend::new("no-timer");
        let throttle = Throttle::new("api", "1/m").expect("throttle");
        assert!(
            throttle
                .hit(&client(), "s", &backend)
                .await
                .expect("hit")
                .allowed
        );
        assert!(
            !throttle
                .hit(&client(), "s", &backend)
                .await
                .expect("hit")
                .allowed
        );
        assert!(
            !throttle
                .stat(&client(), "s", &backend)
                .await
                .expect("stat")
                .allowed
        );
    });
}

// ---------------------------------------------------------------------------------------
// Shadow mode
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn shadow_mode_lets_denials_through_and_counts_them() {
    let backend = InMemoryBackend::new("shadow");
    let throttle = Throttle::new("candidate", "2/m")
        .expect("throttle")
        .shadow(true);
    let clone = throttle.clone();
    let mut shadowed = 0;
    for i in 0..5 {
        let decision = throttle
            .hit(&client(), "s", &backend)
            .await
            .expect("decision");
        assert!(decision.allowed, "request {i} must pass");
        if decision.shadowed {
            shadowed += 1;
            assert_eq!(decision.remaining, 0);
            assert!(decision.wait > Duration::ZERO);
            assert!(decision.reset >= decision.wait);
            assert_eq!(decision.retry_after_secs(), 0);
        }
    }
    assert_eq!(shadowed, 3);
    assert_eq!(throttle.shadow_denials(), 3);
    assert_eq!(clone.shadow_denials(), 3, "clones share the shadow counter");

    // The same limit, enforced, denies.
    let enforced = Throttle::new("candidate", "2/m").expect("throttle");
    assert!(
        !enforced
            .hit(&client(), "s", &backend)
            .await
            .expect("hit")
            .allowed
    );
    assert_eq!(enforced.shadow_denials(), 0);
}

#[tokio::test]
async fn shadow_mode_never_rejects_on_a_backend_failure() {
    let backend = Flaky::new(Mode::Failing);
    let raise = Throttle::new("raise", "2/m")
        .expect("throttle")
        .on_error(FailurePolicy::Raise)
        .shadow(true);
    let decision = raise
        .hit(&client(), "s", &backend)
        .await
        .expect("never an error in shadow mode");
    assert_eq!(
        (decision.allowed, decision.source),
        (true, DecisionSource::FailOpen)
    );

    let closed = Throttle::new("closed", "2/m")
        .expect("throttle")
        .on_error(FailurePolicy::Throttle(Duration::from_secs(4)))
        .shadow(true);
    let decision = closed.hit(&client(), "s", &backend).await.expect("pass");
    assert!(decision.allowed && decision.shadowed);
    assert_eq!(decision.source, DecisionSource::FailClosed);
    assert_eq!(closed.shadow_denials(), 1);
}

// ---------------------------------------------------------------------------------------
// Circuit breaker
// ---------------------------------------------------------------------------------------

const COOL_DOWN: Duration = Duration::from_secs(10);

fn breaker(inner: &Flaky, clock: &ManualClock) -> CircuitBreaker {
    CircuitBreaker::builder(inner.clone())
        .failures(3)
        .cool_down(COOL_DOWN)
        .successes(2)
        .clock(clock.clone())
        .build()
}

async fn decide(backend: &dyn Backend) -> Result<Decision> {
    backend.decide("k", &FixedWindow, &rate("100/m"), 1).await
}

#[tokio::test]
async fn breaker_opens_after_consecutive_failures_and_stops_calling_the_backend() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    for _ in 0..3 {
        assert_eq!(breaker.state(), BreakerState::Closed);
        assert!(matches!(decide(&breaker).await, Err(Error::Backend(_))));
    }
    assert_eq!(inner.calls(), 3);
    assert_eq!(breaker.state(), BreakerState::Open);

    // Open: answered at once, without a single call to the backend, even once it is
    // healthy again, until the cool-down ends.
    inner.set(Mode::Healthy);
    for _ in 0..20 {
        assert_eq!(
            decide(&breaker).await,
            Err(Error::CircuitOpen("flaky".into()))
        );
        clock.advance(Duration::from_millis(400));
    }
    assert_eq!(inner.calls(), 3);
    assert_eq!(breaker.state(), BreakerState::Open);

    // The throttle answers an open circuit with its failure policy.
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .on_error(FailurePolicy::Allow);
    let decision = throttle
        .hit(&client(), "s", &breaker)
        .await
        .expect("fail open");
    assert_eq!(decision.source, DecisionSource::FailOpen);
    assert_eq!(inner.calls(), 3);
}

#[tokio::test]
async fn breaker_counts_only_consecutive_failures() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    for round in 0..5 {
        for _ in 0..2 {
            assert!(decide(&breaker).await.is_err());
        }
        inner.set(Mode::Healthy);
        assert!(decide(&breaker).await.is_ok(), "round {round}");
        inner.set(Mode::Failing);
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(inner.calls(), 15);
}

/// Opens `breaker` (3 failures) and ends its cool-down.
async fn open_then_cool_down(breaker: &CircuitBreaker, inner: &Flaky, clock: &ManualClock) {
    inner.set(Mode::Failing);
    for _ in 0..3 {
        assert!(decide(breaker).await.is_err());
    }
    assert_eq!(breaker.state(), BreakerState::Open);
    clock.advance(COOL_DOWN - Duration::from_micros(1));
    assert_eq!(breaker.state(), BreakerState::Open);
    clock.advance(Duration::from_micros(1));
    assert_eq!(breaker.state(), BreakerState::HalfOpen);
}

#[tokio::test]
async fn breaker_closes_after_enough_successful_probes() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    open_then_cool_down(&breaker, &inner, &clock).await;
    inner.set(Mode::Healthy);

    assert!(decide(&breaker).await.expect("probe").allowed);
    assert_eq!(inner.calls(), 4);
    assert_eq!(breaker.state(), BreakerState::HalfOpen, "1 of 2 probes");
    assert!(decide(&breaker).await.expect("probe").allowed);
    assert_eq!(inner.calls(), 5);
    assert_eq!(breaker.state(), BreakerState::Closed);

    // Closed: every call goes through again.
    for _ in 0..10 {
        assert!(decide(&breaker).await.is_ok());
    }
    assert_eq!(inner.calls(), 15);
}

#[tokio::test]
async fn breaker_reopens_when_a_probe_fails() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    open_then_cool_down(&breaker, &inner, &clock).await;

    assert!(matches!(decide(&breaker).await, Err(Error::Backend(_))));
    assert_eq!(inner.calls(), 4, "one probe");
    assert_eq!(breaker.state(), BreakerState::Open);
    for _ in 0..5 {
        assert!(matches!(decide(&breaker).await, Err(Error::CircuitOpen(_))));
    }
    assert_eq!(inner.calls(), 4, "no call during the new cool-down");

    clock.advance(COOL_DOWN);
    inner.set(Mode::Healthy);
    assert!(decide(&breaker).await.is_ok());
    assert!(decide(&breaker).await.is_ok());
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(inner.calls(), 6);
}

/// Polls `future` once.
fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
    std::pin::Pin::new(future).poll(&mut Context::from_waker(Waker::noop()))
}

#[tokio::test]
async fn breaker_probes_one_call_at_a_time_and_counts_an_abandoned_probe_as_failed() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    open_then_cool_down(&breaker, &inner, &clock).await;
    inner.set(Mode::Hanging);

    let rate = rate("100/m");
    let mut probe = breaker.decide("k", &FixedWindow, &rate, 1);
    assert!(poll_once(&mut probe).is_pending());
    assert_eq!(inner.calls(), 4);
    // While the probe is out, other calls do not reach the backend.
    for _ in 0..5 {
        assert!(matches!(decide(&breaker).await, Err(Error::CircuitOpen(_))));
    }
    assert_eq!(inner.calls(), 4);

    // The probe is abandoned (a throttle's timeout dropped it): a failure.
    drop(probe);
    assert_eq!(breaker.state(), BreakerState::Open);
}

#[tokio::test(start_paused = true)]
async fn breaker_opens_on_decisions_cancelled_by_the_timeout() {
    let inner = Flaky::new(Mode::Hanging);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    let throttle = Throttle::new("api", "5/m")
        .expect("throttle")
        .timeout(Duration::from_millis(50))
        .on_error(FailurePolicy::Throttle(Duration::from_secs(1)));
    for _ in 0..3 {
        let started = tokio::time::Instant::now();
        let decision = bounded(throttle.hit(&client(), "s", &breaker))
            .await
            .expect("fail closed");
        assert_eq!(decision.source, DecisionSource::FailClosed);
        assert_eq!(started.elapsed(), Duration::from_millis(50));
    }
    assert_eq!(breaker.state(), BreakerState::Open);

    // Now answered without waiting at all.
    let started = tokio::time::Instant::now();
    for _ in 0..10 {
        let decision = bounded(throttle.hit(&client(), "s", &breaker))
            .await
            .expect("fail closed");
        assert_eq!(decision.source, DecisionSource::FailClosed);
    }
    assert_eq!(started.elapsed(), Duration::ZERO);
    assert_eq!(inner.calls(), 3);
}

#[tokio::test]
async fn breaker_decides_on_the_fallback_while_open() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let fallback = InMemoryBackend::builder("fallback")
        .clock(clock.clone())
        .build();
    let breaker = CircuitBreaker::builder(inner.clone())
        .failures(3)
        .cool_down(COOL_DOWN)
        .fallback(fallback)
        .clock(clock.clone())
        .build();
    let throttle = Throttle::new("api", "2/m").expect("throttle");

    // Closed but failing: each failed call is answered by the fallback.
    for _ in 0..2 {
        let decision = throttle
            .hit(&client(), "s", &breaker)
            .await
            .expect("fallback");
        assert!(decision.allowed);
        assert_eq!(decision.source, DecisionSource::Fallback);
    }
    assert_eq!(inner.calls(), 2);
    // The third failure opens the circuit; the fallback limits: 2 a minute.
    let third = throttle
        .hit(&client(), "s", &breaker)
        .await
        .expect("fallback");
    assert_eq!(
        (third.allowed, third.source),
        (false, DecisionSource::Fallback)
    );
    assert_eq!(breaker.state(), BreakerState::Open);
    for _ in 0..5 {
        let decision = throttle
            .hit(&client(), "s", &breaker)
            .await
            .expect("fallback");
        assert_eq!(
            (decision.allowed, decision.source),
            (false, DecisionSource::Fallback)
        );
    }
    assert_eq!(inner.calls(), 3, "no call to the backend while open");
}

#[tokio::test]
async fn breaker_ignores_configuration_errors() {
    let inner = Flaky::new(Mode::Healthy);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    for _ in 0..10 {
        let result = breaker.decide("k", &FixedWindow, &rate("5/m"), 50).await;
        assert!(matches!(result, Err(Error::CostExceedsCapacity { .. })));
    }
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert_eq!(inner.calls(), 10);
}

#[tokio::test]
async fn breaker_passes_every_primitive_through_the_circuit() {
    let inner = Flaky::new(Mode::Failing);
    let clock = ManualClock::new(1_000_000);
    let breaker = breaker(&inner, &clock);
    assert!(breaker.get("a").await.is_err());
    assert!(breaker.set("a", b"1", None).await.is_err());
    assert!(breaker.increment("a", 1).await.is_err());
    assert_eq!(breaker.state(), BreakerState::Open);
    assert!(matches!(
        breaker.increment_with_ttl("a", 1, COOL_DOWN).await,
        Err(Error::CircuitOpen(_))
    ));
    let mut keep = |_: Option<&[u8]>| traffik_core::strategy::Write::Keep;
    assert!(matches!(
        breaker.update("a", &mut keep).await,
        Err(Error::CircuitOpen(_))
    ));
    assert_eq!(inner.calls(), 3);

    // Half-open, then closed by two successful primitives.
    clock.advance(COOL_DOWN);
    inner.set(Mode::Healthy);
    breaker.set("a", b"7", None).await.expect("probe");
    assert_eq!(breaker.get("a").await.expect("probe"), Some(b"7".to_vec()));
    assert_eq!(breaker.state(), BreakerState::Closed);
    assert!(breaker.delete("a").await.expect("delete"));
}

#[test]
fn a_backend_that_needs_awaiting_is_left_alone_by_the_synchronous_path() {
    let backend = Flaky::new(Mode::Healthy);
    let throttle = Throttle::with_rate("api", rate("5/m"));
    assert!(!throttle.decides_in_place(&backend));
    assert!(throttle.try_hit_now("c", "s", 1, &backend).is_none());
    assert_eq!(backend.calls(), 0, "nothing was started");
}

#[tokio::test]
async fn the_synchronous_path_decides_once_on_a_backend_that_decides_in_place() {
    let backend = Flaky::new(Mode::Healthy).in_place();
    let throttle = Throttle::with_rate("api", rate("1/m"));
    let first = throttle.try_hit_now("c", "s", 1, &backend);
    assert!(first.expect("decided at once").expect("no error").allowed);
    let second = throttle.try_hit_now("c", "s", 1, &backend);
    assert!(!second.expect("decided at once").expect("no error").allowed);
    assert_eq!(backend.calls(), 2);
    // The same state as the awaited path: the two paths share the key.
    let third = throttle.hit(&Identity::client("c"), "s", &backend).await;
    assert!(!third.expect("no error").allowed);
}

#[test]
fn the_synchronous_path_applies_the_failure_policy() {
    let backend = Flaky::new(Mode::Failing)
        .in_place()
        .with_policy(FailurePolicy::Throttle(Duration::from_secs(3)));
    let throttle = Throttle::with_rate("api", rate("5/m"));
    let decided = throttle.try_hit_now("c", "s", 1, &backend);
    let decision = decided
        .expect("decided at once")
        .expect("the policy answers");
    assert!(!decision.allowed);
    assert_eq!(decision.wait, Duration::from_secs(3));
}

/// The scopes and keys a failure policy was told, in order.
type SeenScopes = Arc<Mutex<Vec<(String, String)>>>;

/// A throttle whose failure policy allows and records the scope and key it was told.
fn recording_scopes() -> (Throttle, SeenScopes) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let policy = FailurePolicy::custom({
        let seen = Arc::clone(&seen);
        move |failure| {
            seen.lock()
                .expect("seen")
                .push((failure.scope.to_owned(), failure.key.to_owned()));
            FailureVerdict::Allow
        }
    });
    (
        Throttle::with_rate("api", rate("5/m")).on_error(policy),
        seen,
    )
}

/// Scopes in pieces: joined; one whose bytes the key escapes; an empty one.
const SCOPE_PIECES: [&[&str]; 3] = [
    &["http:GET:", "/items/{id}"],
    &["http:GET:", "/caf\u{e9} menu"],
    &["", ""],
];

/// What a policy must have been told for [`SCOPE_PIECES`].
fn scopes_as_given(throttle: &Throttle) -> Vec<(String, String)> {
    ["http:GET:/items/{id}", "http:GET:/caf\u{e9} menu", ""]
        .iter()
        .map(|scope| ((*scope).to_owned(), throttle.key("c", scope)))
        .collect()
}

#[test]
fn the_synchronous_path_tells_the_policy_the_scope_as_given() {
    let (throttle, seen) = recording_scopes();
    let backend = Flaky::new(Mode::Failing).in_place();
    for pieces in SCOPE_PIECES {
        let decided = throttle.try_hit_now_joined("c", pieces, 1, &backend);
        assert!(
            decided
                .expect("decided at once")
                .expect("fail open")
                .allowed
        );
    }
    assert_eq!(*seen.lock().expect("seen"), scopes_as_given(&throttle));
}

#[tokio::test]
async fn the_awaited_path_tells_the_policy_the_scope_as_given() {
    let (throttle, seen) = recording_scopes();
    let backend = Flaky::new(Mode::Failing);
    for pieces in SCOPE_PIECES {
        let decided = throttle.hit_client_joined("c", pieces, 1, &backend).await;
        assert!(decided.expect("fail open").allowed);
    }
    assert_eq!(*seen.lock().expect("seen"), scopes_as_given(&throttle));
}

#[test]
fn a_backend_that_claims_to_decide_in_place_but_pends_fails_cleanly() {
    let backend = Flaky::new(Mode::Hanging).in_place();
    let throttle = Throttle::with_rate("api", rate("5/m"));
    match throttle.try_hit_now("c", "s", 1, &backend) {
        Some(Err(Error::Backend(message))) => assert!(message.contains("in place"), "{message}"),
        other => panic!("expected a backend error, got {other:?}"),
    }
    // Under a failure policy, the configured fallback answers.
    let allow = Throttle::with_rate("api", rate("5/m")).on_error(FailurePolicy::Allow);
    let decided = allow.try_hit_now("c", "s", 1, &backend);
    assert!(
        decided
            .expect("decided at once")
            .expect("fail open")
            .allowed
    );
}

// ---------------------------------------------------------------------------------------
// A slow backend: the time a decision by `decide_by_update` is judged at
// ---------------------------------------------------------------------------------------

#[tokio::test]
async fn a_slow_update_is_judged_by_the_time_it_runs_at() {
    // GCRA at 2/s: two hits fill the burst; a third is admitted once 500 ms have passed.
    let clock = ManualClock::new(1_700_000_000_000_000);
    let gcra = Gcra::new();
    let rate = rate("2/s");
    let prompt = Flaky::slow_updates(&clock, Duration::ZERO);
    for _ in 0..2 {
        let decision = decide_by_update(&prompt, "k", &gcra, &rate, 1).await;
        assert!(decision.expect("decision").allowed);
    }
    // The third reads the time, then waits 500 ms for its update: judged at the time it
    // read first, it would be denied.
    let slow = Flaky {
        slow_updates: Some((clock.clone(), Duration::from_millis(500))),
        ..prompt
    };
    let third = decide_by_update(&slow, "k", &gcra, &rate, 1).await;
    assert!(third.expect("decision").allowed);
}

#[tokio::test]
async fn a_slow_update_is_judged_in_the_window_its_key_names() {
    // 10 ms before a window ends; the update runs 20 ms later, in the next window. The
    // state read is the first window's (its key names it), so the decision is that
    // window's: it resets when that window ends, 10 ms after the time read.
    let clock = ManualClock::new(1_700_000_000_000_000 - 10_000);
    let slow = Flaky::slow_updates(&clock, Duration::from_millis(20));
    let decision = decide_by_update(&slow, "k", &FixedWindow, &rate("2/s"), 1)
        .await
        .expect("decision");
    assert_eq!(decision.reset, Duration::from_millis(10), "{decision:?}");
}

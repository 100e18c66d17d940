//! [`CircuitBreaker`]: stops calling a failing backend for a while, optionally deciding on
//! a fallback backend meanwhile.

use std::fmt;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use super::{Backend, BackendFuture, Lock, LockOptions, SharedBackend, UpdateFn};
use crate::clock::{Clock, Micros, SharedClock, SystemClock};
use crate::decision::{Decision, DecisionSource};
use crate::error::{Error, Result};
use crate::policy::FailurePolicy;
use crate::rate::Rate;
use crate::strategy::Algorithm;

/// Default consecutive failures that open the circuit.
const DEFAULT_FAILURES: u32 = 5;
/// Default time the circuit stays open before probing.
const DEFAULT_COOL_DOWN: Duration = Duration::from_secs(10);
/// Default successful probes that close the circuit again.
const DEFAULT_SUCCESSES: u32 = 2;

/// The state of a [`CircuitBreaker`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum BreakerState {
    /// The backend is trusted: every call goes to it.
    Closed,
    /// The backend failed repeatedly: it is not called until the cool-down ends.
    Open,
    /// The cool-down ended: one call at a time probes the backend.
    HalfOpen,
}

/// Wraps a [`Backend`] and stops calling it while it keeps failing.
///
/// * **Closed** (the start): every call goes to the backend. After
///   [`failures`](CircuitBreakerBuilder::failures) consecutive backend failures
///   ([`Error::is_backend_failure`]; a call abandoned before it answered, such as one a
///   throttle's timeout cancelled, counts as one) the circuit **opens** (logged at
///   `warn`).
/// * **Open**: the backend is not called at all for the
///   [`cool_down`](CircuitBreakerBuilder::cool_down). Calls go to the
///   [`fallback`](CircuitBreakerBuilder::fallback) backend if there is one (decisions are
///   then marked [`DecisionSource::Fallback`]), else fail at once with
///   [`Error::CircuitOpen`], which the throttle's failure policy answers.
/// * **Half-open** (after the cool-down): one call at a time is let through as a probe,
///   the others are treated as while open. A probe that fails opens the circuit again for
///   another cool-down; after [`successes`](CircuitBreakerBuilder::successes) successful
///   probes in a row the circuit **closes** (logged at `info`).
///
/// While closed, a call that fails is retried on the fallback, if any, so a request is
/// answered by the fallback rather than by the failure policy. Errors that are not
/// backend failures (a cost above the capacity...) neither count nor fall back.
///
/// The breaker's timeout and failure policy are its backend's. Time is read from a
/// [`Clock`] (default [`SystemClock`]), so tests drive it with a
/// [`ManualClock`](crate::ManualClock). Clones share the same state.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::{Backend, BreakerState, CircuitBreaker, InMemoryBackend};
///
/// # fn redis() -> InMemoryBackend { InMemoryBackend::new("app") }
/// let backend = CircuitBreaker::builder(redis())
///     .failures(5)
///     .cool_down(Duration::from_secs(10))
///     .successes(2)
///     .fallback(InMemoryBackend::new("app-fallback"))
///     .build();
/// assert_eq!(backend.state(), BreakerState::Closed);
/// assert_eq!(backend.namespace(), "app");
/// ```
#[derive(Clone)]
pub struct CircuitBreaker {
    inner: Arc<Inner>,
}

struct Inner {
    backend: SharedBackend,
    fallback: Option<SharedBackend>,
    clock: SharedClock,
    failures: u32,
    successes: u32,
    cool_down: Duration,
    state: Mutex<State>,
}

/// The breaker's state machine. `generation` changes on every transition, so the outcome
/// of a call started under an earlier state is ignored.
#[derive(Debug)]
struct State {
    generation: u64,
    phase: Phase,
}

#[derive(Debug, Clone, Copy)]
enum Phase {
    Closed {
        /// Consecutive failures so far.
        failures: u32,
    },
    Open {
        /// When probing may start.
        until: Micros,
    },
    HalfOpen {
        /// Successful probes so far.
        successes: u32,
        /// Whether a probe is in flight.
        probing: bool,
    },
}

/// Where a call goes.
enum Route<'a> {
    /// To the backend; the ticket records the outcome.
    Backend(Ticket<'a>),
    /// Not to the backend (open, or half-open with a probe in flight).
    Rejected,
}

/// How one call ended, for the state machine.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Success,
    Failure,
    /// An error that says nothing about the backend's health.
    Neutral,
}

fn outcome<T>(result: &Result<T>) -> Outcome {
    match result {
        Ok(_) => Outcome::Success,
        Err(error) if error.is_backend_failure() => Outcome::Failure,
        Err(_) => Outcome::Neutral,
    }
}

/// Configures a [`CircuitBreaker`]; see [`CircuitBreaker::builder`].
#[must_use]
pub struct CircuitBreakerBuilder {
    backend: SharedBackend,
    fallback: Option<SharedBackend>,
    clock: SharedClock,
    failures: u32,
    successes: u32,
    cool_down: Duration,
}

impl CircuitBreakerBuilder {
    /// Consecutive backend failures that open the circuit (default 5, at least 1).
    pub fn failures(mut self, failures: u32) -> Self {
        self.failures = failures.max(1);
        self
    }

    /// How long the circuit stays open before probing the backend (default 10 s).
    pub fn cool_down(mut self, cool_down: Duration) -> Self {
        self.cool_down = cool_down;
        self
    }

    /// Successful probes in a row that close the circuit again (default 2, at least 1).
    pub fn successes(mut self, successes: u32) -> Self {
        self.successes = successes.max(1);
        self
    }

    /// Decides on `fallback` (for example an [`InMemoryBackend`](crate::InMemoryBackend))
    /// while the circuit is open, and for calls that fail while it is closed.
    pub fn fallback(mut self, fallback: impl Backend) -> Self {
        self.fallback = Some(Arc::new(fallback));
        self
    }

    /// The fallback, already shared.
    pub fn shared_fallback(mut self, fallback: SharedBackend) -> Self {
        self.fallback = Some(fallback);
        self
    }

    /// The clock the cool-down is measured with (default: [`SystemClock`]).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// The clock, already shared.
    pub fn shared_clock(mut self, clock: SharedClock) -> Self {
        self.clock = clock;
        self
    }

    /// The breaker, closed.
    pub fn build(self) -> CircuitBreaker {
        CircuitBreaker {
            inner: Arc::new(Inner {
                backend: self.backend,
                fallback: self.fallback,
                clock: self.clock,
                failures: self.failures,
                successes: self.successes,
                cool_down: self.cool_down,
                state: Mutex::new(State {
                    generation: 0,
                    phase: Phase::Closed { failures: 0 },
                }),
            }),
        }
    }
}

impl fmt::Debug for CircuitBreakerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreakerBuilder")
            .field("backend", &self.backend)
            .field("fallback", &self.fallback)
            .field("failures", &self.failures)
            .field("successes", &self.successes)
            .field("cool_down", &self.cool_down)
            .finish()
    }
}

impl CircuitBreaker {
    /// A breaker around `backend` with default settings: opens after 5 consecutive
    /// failures, cools down for 10 s, closes after 2 successful probes, no fallback.
    pub fn new(backend: impl Backend) -> Self {
        Self::builder(backend).build()
    }

    /// Configures a breaker around `backend`.
    pub fn builder(backend: impl Backend) -> CircuitBreakerBuilder {
        Self::builder_shared(Arc::new(backend))
    }

    /// Configures a breaker around an already shared backend.
    pub fn builder_shared(backend: SharedBackend) -> CircuitBreakerBuilder {
        CircuitBreakerBuilder {
            backend,
            fallback: None,
            clock: Arc::new(SystemClock),
            failures: DEFAULT_FAILURES,
            successes: DEFAULT_SUCCESSES,
            cool_down: DEFAULT_COOL_DOWN,
        }
    }

    /// The state now. An open circuit whose cool-down has ended reads as half-open.
    pub fn state(&self) -> BreakerState {
        let now = self.inner.clock.now_micros();
        match self.inner.lock().phase {
            Phase::Closed { .. } => BreakerState::Closed,
            Phase::Open { until } if now < until => BreakerState::Open,
            Phase::Open { .. } | Phase::HalfOpen { .. } => BreakerState::HalfOpen,
        }
    }

    /// The wrapped backend.
    pub fn backend(&self) -> &SharedBackend {
        &self.inner.backend
    }

    /// The fallback backend, if any.
    pub fn fallback_backend(&self) -> Option<&SharedBackend> {
        self.inner.fallback.as_ref()
    }

    /// Runs `op` on the backend if the circuit lets it, else (or if it fails while
    /// closed) on the fallback; says whether the fallback answered.
    async fn call<'a, T>(
        &'a self,
        op: impl Fn(&'a dyn Backend) -> BackendFuture<'a, Result<T>>,
    ) -> (Result<T>, bool) {
        let failed = match self.inner.route() {
            Route::Backend(ticket) => {
                let result = op(self.inner.backend.as_ref()).await;
                let outcome = outcome(&result);
                ticket.finish(outcome);
                if outcome != Outcome::Failure {
                    return (result, false);
                }
                result
            }
            Route::Rejected => Err(self.open_error()),
        };
        match &self.inner.fallback {
            Some(fallback) => (op(fallback.as_ref()).await, true),
            None => (failed, false),
        }
    }

    /// Runs a decision (or peek) and marks a fallback's answer as such.
    async fn judge<'a>(
        &'a self,
        op: impl Fn(&'a dyn Backend) -> BackendFuture<'a, Result<Decision>>,
    ) -> Result<Decision> {
        match self.call(op).await {
            (Ok(decision), true) => Ok(decision.with_source(DecisionSource::Fallback)),
            (result, _) => result,
        }
    }

    fn open_error(&self) -> Error {
        Error::CircuitOpen(self.inner.backend.namespace().to_owned())
    }

    async fn update_async(&self, key: &str, f: &mut UpdateFn<'_>) -> Result<()> {
        let failed = match self.inner.route() {
            Route::Backend(ticket) => {
                let result = self.inner.backend.update(key, &mut *f).await;
                let outcome = outcome(&result);
                ticket.finish(outcome);
                if outcome != Outcome::Failure {
                    return result;
                }
                result
            }
            Route::Rejected => Err(self.open_error()),
        };
        match &self.inner.fallback {
            Some(fallback) => fallback.update(key, f).await,
            None => failed,
        }
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state is a few integers, always consistent: a panic elsewhere while it was
        // held cannot leave it half-written.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Whether a call may go to the backend now.
    fn route(&self) -> Route<'_> {
        let now = self.clock.now_micros();
        let mut state = self.lock();
        let generation = state.generation;
        match state.phase {
            Phase::Closed { .. } => Route::Backend(Ticket::new(self, generation, false)),
            Phase::Open { until } if now < until => Route::Rejected,
            Phase::Open { .. } => {
                tracing::info!(
                    namespace = self.backend.namespace(),
                    "circuit breaker half-open: probing the backend"
                );
                state.generation += 1;
                state.phase = Phase::HalfOpen {
                    successes: 0,
                    probing: true,
                };
                Route::Backend(Ticket::new(self, state.generation, true))
            }
            Phase::HalfOpen {
                successes,
                probing: false,
            } => {
                state.phase = Phase::HalfOpen {
                    successes,
                    probing: true,
                };
                Route::Backend(Ticket::new(self, generation, true))
            }
            Phase::HalfOpen { probing: true, .. } => Route::Rejected,
        }
    }

    /// Records how a call that went to the backend ended.
    fn record(&self, generation: u64, probe: bool, outcome: Outcome) {
        let now = self.clock.now_micros();
        let mut state = self.lock();
        if state.generation != generation {
            return;
        }
        match (state.phase, outcome) {
            (Phase::Closed { .. }, Outcome::Success) => {
                state.phase = Phase::Closed { failures: 0 };
            }
            (Phase::Closed { failures }, Outcome::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.failures {
                    self.open(&mut state, now, failures);
                } else {
                    state.phase = Phase::Closed { failures };
                }
            }
            (Phase::HalfOpen { successes, .. }, Outcome::Success) if probe => {
                let successes = successes.saturating_add(1);
                if successes >= self.successes {
                    tracing::info!(
                        namespace = self.backend.namespace(),
                        successes,
                        "circuit breaker closed: the backend answers again"
                    );
                    state.generation += 1;
                    state.phase = Phase::Closed { failures: 0 };
                } else {
                    state.phase = Phase::HalfOpen {
                        successes,
                        probing: false,
                    };
                }
            }
            (Phase::HalfOpen { .. }, Outcome::Failure) if probe => {
                self.open(&mut state, now, 1);
            }
            (Phase::HalfOpen { successes, .. }, Outcome::Neutral) if probe => {
                // The probe told nothing: let the next call probe.
                state.phase = Phase::HalfOpen {
                    successes,
                    probing: false,
                };
            }
            _ => {}
        }
    }

    fn open(&self, state: &mut State, now: Micros, failures: u32) {
        let cool_down = u64::try_from(self.cool_down.as_micros()).unwrap_or(u64::MAX);
        tracing::warn!(
            namespace = self.backend.namespace(),
            failures,
            cool_down_ms = self.cool_down.as_millis() as u64,
            fallback = self.fallback.is_some(),
            "circuit breaker open: not calling the backend until the cool-down ends"
        );
        state.generation += 1;
        state.phase = Phase::Open {
            until: now.saturating_add(cool_down),
        };
    }
}

/// A call that went to the backend. Finished with its outcome; dropped unfinished (the
/// call was abandoned, for example cancelled by a throttle's timeout), it counts as a
/// failure.
struct Ticket<'a> {
    inner: &'a Inner,
    generation: u64,
    probe: bool,
    finished: bool,
}

impl<'a> Ticket<'a> {
    fn new(inner: &'a Inner, generation: u64, probe: bool) -> Self {
        Self {
            inner,
            generation,
            probe,
            finished: false,
        }
    }

    fn finish(mut self, outcome: Outcome) {
        self.finished = true;
        self.inner.record(self.generation, self.probe, outcome);
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if !self.finished {
            self.inner
                .record(self.generation, self.probe, Outcome::Failure);
        }
    }
}

impl fmt::Debug for CircuitBreaker {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CircuitBreaker")
            .field("backend", &self.inner.backend)
            .field("fallback", &self.inner.fallback)
            .field("state", &self.state())
            .field("failures", &self.inner.failures)
            .field("successes", &self.inner.successes)
            .field("cool_down", &self.inner.cool_down)
            .finish()
    }
}

impl Backend for CircuitBreaker {
    fn namespace(&self) -> &str {
        self.inner.backend.namespace()
    }

    fn persistent(&self) -> bool {
        self.inner.backend.persistent()
    }

    fn timeout(&self) -> Duration {
        self.inner.backend.timeout()
    }

    fn failure_policy(&self) -> FailurePolicy {
        self.inner.backend.failure_policy()
    }

    /// Initializes the fallback, then the backend. With a fallback, a backend that cannot
    /// be reached yet is logged rather than an error: the breaker deals with it.
    fn initialize(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            if let Some(fallback) = &self.inner.fallback {
                fallback.initialize().await?;
            }
            match self.inner.backend.initialize().await {
                Err(error) if self.inner.fallback.is_some() && error.is_backend_failure() => {
                    tracing::warn!(
                        namespace = self.inner.backend.namespace(),
                        %error,
                        "backend unavailable at start-up; deciding on the fallback until it answers"
                    );
                    Ok(())
                }
                result => result,
            }
        })
    }

    fn now(&self) -> BackendFuture<'_, Result<Micros>> {
        BackendFuture::new(async move { self.call(|backend| backend.now()).await.0 })
    }

    fn get<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<Option<Vec<u8>>>> {
        BackendFuture::new(async move { self.call(move |backend| backend.get(key)).await.0 })
    }

    fn set<'a>(
        &'a self,
        key: &'a str,
        value: &'a [u8],
        ttl: Option<Duration>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(async move {
            self.call(move |backend| backend.set(key, value, ttl))
                .await
                .0
        })
    }

    fn delete<'a>(&'a self, key: &'a str) -> BackendFuture<'a, Result<bool>> {
        BackendFuture::new(async move { self.call(move |backend| backend.delete(key)).await.0 })
    }

    fn increment<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(async move {
            self.call(move |backend| backend.increment(key, amount))
                .await
                .0
        })
    }

    fn decrement<'a>(&'a self, key: &'a str, amount: i64) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(async move {
            self.call(move |backend| backend.decrement(key, amount))
                .await
                .0
        })
    }

    fn increment_with_ttl<'a>(
        &'a self,
        key: &'a str,
        amount: i64,
        ttl: Duration,
    ) -> BackendFuture<'a, Result<i64>> {
        BackendFuture::new(async move {
            self.call(move |backend| backend.increment_with_ttl(key, amount, ttl))
                .await
                .0
        })
    }

    fn update<'a>(
        &'a self,
        key: &'a str,
        f: &'a mut UpdateFn<'_>,
    ) -> BackendFuture<'a, Result<()>> {
        BackendFuture::new(self.update_async(key, f))
    }

    fn lock<'a>(&'a self, name: &'a str, options: LockOptions) -> BackendFuture<'a, Result<Lock>> {
        BackendFuture::new(async move {
            self.call(move |backend| backend.lock(name, options))
                .await
                .0
        })
    }

    fn decide<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
        cost: u64,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(self.judge(move |backend| backend.decide(key, algorithm, rate, cost)))
    }

    fn peek<'a>(
        &'a self,
        key: &'a str,
        algorithm: &'a dyn Algorithm,
        rate: &'a Rate,
    ) -> BackendFuture<'a, Result<Decision>> {
        BackendFuture::new(self.judge(move |backend| backend.peek(key, algorithm, rate)))
    }

    /// Resets the backend and the fallback, whatever the circuit's state.
    fn reset(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            if let Some(fallback) = &self.inner.fallback {
                fallback.reset().await?;
            }
            self.inner.backend.reset().await
        })
    }

    /// Closes the backend and the fallback (both, even if the first fails).
    fn close(&self) -> BackendFuture<'_, Result<()>> {
        BackendFuture::new(async move {
            let fallback = match &self.inner.fallback {
                Some(fallback) => fallback.close().await,
                None => Ok(()),
            };
            let backend = self.inner.backend.close().await;
            backend.and(fallback)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_are_clamped() {
        let breaker = CircuitBreaker::builder(crate::InMemoryBackend::new("t"))
            .failures(0)
            .successes(0)
            .build();
        assert_eq!(breaker.inner.failures, 1);
        assert_eq!(breaker.inner.successes, 1);
    }
}

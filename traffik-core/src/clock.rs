//! Clocks: where every strategy and backend reads the time.
//!
//! Time is wall-clock microseconds since the Unix epoch, so that several instances of an
//! app agree on window boundaries, and so that the value stays exact in a Lua double
//! (Redis scripts compute in the same unit).

use std::fmt::Debug;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Microseconds since the Unix epoch.
pub type Micros = u64;

/// A source of wall-clock time.
///
/// ```
/// use traffik_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(1_000);
/// clock.advance(std::time::Duration::from_millis(5));
/// assert_eq!(clock.now_micros(), 6_000);
/// ```
pub trait Clock: Send + Sync + Debug + 'static {
    /// The current time in microseconds since the Unix epoch.
    fn now_micros(&self) -> Micros;
}

/// The system's wall clock, read cheaply.
///
/// Reading the system clock costs a few dozen nanoseconds, a large share of an in-memory
/// decision; this clock reads the CPU's time-stamp counter instead (through `quanta`) and
/// maps it onto the system clock, re-reading the system clock every 100 ms so that it
/// follows NTP adjustments. The first read calibrates the counter (once per process).
///
/// ```
/// use traffik_core::{Clock, SystemClock};
///
/// assert!(SystemClock.now_micros() > 1_600_000_000_000_000);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> Micros {
        counter_clock().now_micros()
    }
}

/// How often the counter is re-anchored to the system clock, in microseconds.
const RESYNC_MICROS: u64 = 100_000;

/// The time-stamp counter, anchored to the system clock.
struct CounterClock {
    counter: quanta::Clock,
    /// System time minus counter time, in microseconds (two's complement).
    offset: AtomicU64,
    /// Counter time of the next re-anchoring.
    next_sync: AtomicU64,
}

fn counter_clock() -> &'static CounterClock {
    static CLOCK: OnceLock<CounterClock> = OnceLock::new();
    CLOCK.get_or_init(|| {
        let counter = quanta::Clock::new();
        let clock = CounterClock {
            counter,
            offset: AtomicU64::new(0),
            next_sync: AtomicU64::new(0),
        };
        clock.resync(clock.counter_micros());
        clock
    })
}

impl CounterClock {
    fn counter_micros(&self) -> u64 {
        self.counter.delta_as_nanos(0, self.counter.raw()) / 1_000
    }

    fn resync(&self, counter: u64) -> Micros {
        let wall = system_micros();
        self.offset
            .store(wall.wrapping_sub(counter), Ordering::Relaxed);
        self.next_sync
            .store(counter + RESYNC_MICROS, Ordering::Relaxed);
        wall
    }

    fn now_micros(&self) -> Micros {
        let counter = self.counter_micros();
        if counter >= self.next_sync.load(Ordering::Relaxed) {
            return self.resync(counter);
        }
        counter.wrapping_add(self.offset.load(Ordering::Relaxed))
    }
}

/// The system clock itself, in microseconds since the Unix epoch; a clock set before 1970
/// reads as the epoch rather than panicking.
fn system_micros() -> Micros {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as Micros)
}

/// A clock that moves only when told to; for tests.
///
/// Clones share the same time, so a test can keep one handle and give another to a
/// backend.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::{Clock, ManualClock};
///
/// let clock = ManualClock::new(0);
/// let handle = clock.clone();
/// handle.advance(Duration::from_secs(2));
/// assert_eq!(clock.now_micros(), 2_000_000);
/// clock.set(10);
/// assert_eq!(handle.now_micros(), 10);
/// ```
#[derive(Debug, Clone, Default)]
pub struct ManualClock {
    now: Arc<AtomicU64>,
}

impl ManualClock {
    /// A clock that reads `start_micros` until moved.
    pub fn new(start_micros: Micros) -> Self {
        Self {
            now: Arc::new(AtomicU64::new(start_micros)),
        }
    }

    /// Sets the time.
    pub fn set(&self, micros: Micros) {
        self.now.store(micros, Ordering::SeqCst);
    }

    /// Moves the time forward.
    pub fn advance(&self, by: Duration) {
        self.now
            .fetch_add(by.as_micros() as Micros, Ordering::SeqCst);
    }

    /// Moves the time forward by a number of microseconds.
    pub fn advance_micros(&self, by: Micros) {
        self.now.fetch_add(by, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now_micros(&self) -> Micros {
        self.now.load(Ordering::SeqCst)
    }
}

/// A shared clock handle.
pub type SharedClock = Arc<dyn Clock>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_clock_follows_the_system_time() {
        for _ in 0..1_000 {
            let before = system_micros();
            let read = SystemClock.now_micros();
            let after = system_micros();
            // Within a few milliseconds of the system clock (drift between re-anchorings
            // and the cost of the reads themselves).
            assert!(
                read + 5_000 >= before && read <= after + 5_000,
                "{before} {read} {after}"
            );
        }
    }
}

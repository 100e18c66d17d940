//! Clocks: where every strategy and backend reads the time.
//!
//! Time is wall-clock microseconds since the Unix epoch, so that several instances of an
//! app agree on window boundaries, and so that the value stays exact in a Lua double
//! (Redis scripts compute in the same unit).

use std::fmt::Debug;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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

/// The system's wall clock.
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
        // A clock set before 1970 reads as the epoch rather than panicking.
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_micros() as Micros)
    }
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

//! Leaky buckets: smooth output at the rate.

use super::codec::tag;
use super::meter::Meter;
use super::{Algorithm, Builtin, Transition};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// Perfectly smooth traffic: requests are admitted one at a time, spaced by
/// `period / limit` (times their cost). No bursts at all: `"50/m"` admits one request
/// every 1.2 s.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::strategy::{Algorithm, LeakyBucket, Write};
/// use traffik_core::Rate;
///
/// let rate: Rate = "50/m".parse()?;
/// let first = LeakyBucket.apply(None, 0, &rate, 1)?;
/// let Write::Put { state, .. } = first.write else { unreachable!() };
/// let second = LeakyBucket.apply(Some(&state), 0, &rate, 1)?;
/// assert_eq!(second.decision.wait, Duration::from_millis(1200));
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakyBucket;

impl LeakyBucket {
    fn meter(rate: &Rate) -> Meter {
        Meter {
            name: "leaky_bucket",
            tag: tag::LEAKY_BUCKET,
            capacity: rate.limit(),
            visible: rate.limit(),
            only_when_empty: true,
        }
    }
}

impl Algorithm for LeakyBucket {
    fn capacity(&self, rate: &Rate) -> u64 {
        rate.limit()
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        Self::meter(rate).apply(state, now, rate, cost)
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        Self::meter(rate).peek(state, now, rate)
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::LeakyBucket)
    }
}

/// A leaky bucket with a queue of `queue_size` (default: the rate's limit): requests join
/// the queue while it has room and the queue drains at the rate; a request that finds it
/// full is denied until enough has drained.
///
/// ```
/// use traffik_core::strategy::{Algorithm, LeakyBucketWithQueue};
/// use traffik_core::Rate;
///
/// let rate: Rate = "10/s".parse()?;
/// let queue = LeakyBucketWithQueue::with_queue_size(3);
/// assert!(queue.apply(None, 0, &rate, 3)?.decision.allowed);
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LeakyBucketWithQueue {
    queue_size: Option<u64>,
}

impl LeakyBucketWithQueue {
    /// A queue as long as the rate's limit.
    pub const fn new() -> Self {
        Self { queue_size: None }
    }

    /// A queue of `queue_size`.
    pub const fn with_queue_size(queue_size: u64) -> Self {
        Self {
            queue_size: Some(queue_size),
        }
    }

    fn meter(&self, rate: &Rate) -> Meter {
        let size = self.queue_size.unwrap_or(rate.limit());
        Meter {
            name: "leaky_bucket_with_queue",
            tag: tag::LEAKY_BUCKET_WITH_QUEUE,
            capacity: size,
            visible: size,
            only_when_empty: false,
        }
    }
}

impl Algorithm for LeakyBucketWithQueue {
    fn capacity(&self, rate: &Rate) -> u64 {
        self.meter(rate).capacity
    }

    fn apply(
        &self,
        state: Option<&[u8]>,
        now: Micros,
        rate: &Rate,
        cost: u64,
    ) -> Result<Transition> {
        self.meter(rate).apply(state, now, rate, cost)
    }

    fn peek(&self, state: Option<&[u8]>, now: Micros, rate: &Rate) -> Decision {
        self.meter(rate).peek(state, now, rate)
    }

    fn builtin(&self) -> Option<Builtin> {
        Some(Builtin::LeakyBucketWithQueue {
            queue_size: self.queue_size,
        })
    }
}

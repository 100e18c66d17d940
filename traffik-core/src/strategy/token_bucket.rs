//! Token buckets: bursts up to a bucket size, refilled continuously.

use super::codec::tag;
use super::meter::Meter;
use super::{Algorithm, Builtin, Transition};
use crate::clock::Micros;
use crate::decision::Decision;
use crate::error::Result;
use crate::rate::Rate;

/// A bucket of `burst` tokens (default: the rate's limit) that refills at the rate; each
/// request takes `cost` tokens.
///
/// Allows controlled bursts while holding the average to the rate. Over any span of
/// length `t`, at most `burst + rate × t` cost is admitted.
///
/// ```
/// use traffik_core::strategy::{Algorithm, TokenBucket};
/// use traffik_core::Rate;
///
/// let rate: Rate = "100/m".parse()?;
/// let bucket = TokenBucket::with_burst(150);
/// assert!(bucket.apply(None, 0, &rate, 150)?.decision.allowed);
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucket {
    burst: Option<u64>,
}

impl TokenBucket {
    /// A bucket as large as the rate's limit.
    pub const fn new() -> Self {
        Self { burst: None }
    }

    /// A bucket of `burst` tokens (the seed's `burst_size`).
    pub const fn with_burst(burst: u64) -> Self {
        Self { burst: Some(burst) }
    }

    fn meter(&self, rate: &Rate) -> Meter {
        let burst = self.burst.unwrap_or(rate.limit());
        Meter {
            name: "token_bucket",
            tag: tag::TOKEN_BUCKET,
            capacity: burst,
            visible: burst,
            only_when_empty: false,
        }
    }
}

impl Algorithm for TokenBucket {
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
        Some(Builtin::TokenBucket { burst: self.burst })
    }
}

/// A token bucket whose balance may go below zero, down to `-max_debt` (default: the
/// rate's limit).
///
/// A client may overdraw its bucket for a burst beyond its quota, then repays the debt
/// at the refill rate before it is admitted again. Headers report the bucket's size as
/// the limit and only a positive balance as remaining; the debt is an overdraft, not a
/// larger quota.
///
/// ```
/// use traffik_core::strategy::{Algorithm, TokenBucketWithDebt};
/// use traffik_core::Rate;
///
/// let rate: Rate = "10/s".parse()?;
/// let bucket = TokenBucketWithDebt::with_max_debt(5);
/// let t = bucket.apply(None, 0, &rate, 15)?; // 10 tokens and 5 of debt
/// assert!(t.decision.allowed);
/// assert_eq!(t.decision.remaining, 0);
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenBucketWithDebt {
    max_debt: Option<u64>,
}

impl TokenBucketWithDebt {
    /// A bucket whose debt may reach the rate's limit.
    pub const fn new() -> Self {
        Self { max_debt: None }
    }

    /// A bucket whose debt may reach `max_debt`.
    pub const fn with_max_debt(max_debt: u64) -> Self {
        Self {
            max_debt: Some(max_debt),
        }
    }

    fn meter(&self, rate: &Rate) -> Meter {
        let burst = rate.limit();
        let debt = self.max_debt.unwrap_or(burst);
        Meter {
            name: "token_bucket_with_debt",
            tag: tag::TOKEN_BUCKET_WITH_DEBT,
            capacity: burst.saturating_add(debt),
            visible: burst,
            only_when_empty: false,
        }
    }
}

impl Algorithm for TokenBucketWithDebt {
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
        Some(Builtin::TokenBucketWithDebt {
            max_debt: self.max_debt,
        })
    }
}

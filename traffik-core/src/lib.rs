//! The framework-free core of Traffik: rates, clocks, rate-limiting strategies, storage
//! backends and the [`Throttle`] that ties them together.
//!
//! ```
//! use traffik_core::{Identity, InMemoryBackend, Throttle};
//!
//! # tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(async {
//! let backend = InMemoryBackend::new("myapp");
//! let throttle = Throttle::new("basic_limit", "5/10s")?;
//! let client = Identity::client("192.0.2.1");
//! for _ in 0..5 {
//!     assert!(throttle.hit(&client, "GET:/api/data", &backend).await?.allowed);
//! }
//! assert!(!throttle.hit(&client, "GET:/api/data", &backend).await?.allowed);
//! # Ok::<(), traffik_core::Error>(())
//! # }).unwrap();
//! ```

#![warn(missing_docs)]

pub mod backend;
pub mod clock;
pub mod decision;
pub mod error;
mod inline_text;
pub mod key;
mod key_escapes;
pub mod policy;
pub mod rate;
pub mod strategy;
pub mod throttle;

pub use backend::{
    Backend, BackendFuture, BreakerState, CircuitBreaker, CircuitBreakerBuilder, InMemoryBackend,
    InMemoryBackendBuilder, Lock, LockOptions, SharedBackend,
};
#[cfg(feature = "memcached")]
pub use backend::{MemcachedBackend, MemcachedBackendBuilder};
#[cfg(feature = "redis")]
pub use backend::{RedisBackend, RedisBackendBuilder};
pub use clock::{Clock, ManualClock, Micros, SharedClock, SystemClock};
pub use decision::{Decision, DecisionSource};
pub use error::{Error, Result};
pub use key::Identity;
pub use policy::{FailureContext, FailurePolicy, FailureVerdict};
pub use rate::{Rate, RateBuilder};
pub use strategy::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, SlidingWindowCounter,
    SlidingWindowLog, Strategy, TokenBucket, TokenBucketWithDebt,
};
pub use throttle::{IntoRate, Throttle};

/// A [`Rate`] from a string literal, checked at compile time.
///
/// ```
/// use traffik_core::{Rate, rate};
///
/// let api: Rate = rate!("100/m");
/// assert_eq!(api.limit(), 100);
/// ```
///
/// ```compile_fail
/// let bad = traffik_core::rate!("0/m"); // a limit of 0 admits nothing: compile error
/// ```
#[macro_export]
macro_rules! rate {
    ($rate:literal) => {{
        const RATE: $crate::Rate = $crate::Rate::parse_const($rate);
        RATE
    }};
}

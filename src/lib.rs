//! Traffik: rate limiting for axum.
//!
//! This facade re-exports [`traffik_core`] (rates, strategies, backends),
//! [`traffik_axum`] and [`traffik_macros`]. Most code needs only the prelude:
//!
//! ```
//! use traffik::prelude::*;
//!
//! let rate: Rate = "100/m".parse()?;
//! let throttle = Throttle::new("api", rate)?.strategy(TokenBucket::with_burst(150));
//! assert_eq!(throttle.uid(), "api");
//! # Ok::<(), traffik::Error>(())
//! ```

pub use traffik_axum as axum;
pub use traffik_axum::{
    ClientIpConfig, HeaderPolicy, HttpThrottle, MiddlewareThrottle, RequestBackend, ThrottleLayer,
    ThrottleRejection, Throttled, Traffik, WsThrottle, throttle,
};
pub use traffik_core::*;
pub use traffik_macros as macros;
pub use traffik_macros::throttled;

/// The types most programs need.
pub mod prelude {
    pub use traffik_axum::client_ip::ProxyHeader;
    pub use traffik_axum::{
        ClientIpConfig, HeaderPolicy, HttpThrottle, MiddlewareThrottle, RequestBackend,
        ThrottleLayer, ThrottleRejection, Throttled, ThrottledInfo, Traffik, WsOnThrottled,
        WsThrottle, WsVerdict, throttle,
    };
    pub use traffik_core::strategy::{
        Algorithm, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, SlidingWindowCounter,
        SlidingWindowLog, Strategy, TokenBucket, TokenBucketWithDebt,
    };
    pub use traffik_core::{
        Backend, CircuitBreaker, Clock, Decision, Error, FailurePolicy, Identity, InMemoryBackend,
        ManualClock, Rate, SharedBackend, SystemClock, Throttle, rate,
    };
    pub use traffik_macros::throttled;

    #[cfg(feature = "memcached")]
    pub use traffik_core::MemcachedBackend;
    #[cfg(feature = "redis")]
    pub use traffik_core::RedisBackend;
}

/// The README's Rust examples, compiled and run as doctests so they cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

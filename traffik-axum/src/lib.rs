//! axum integration for Traffik.
//!
//! The `Throttled<T>` extractor, the throttle layer and WebSocket throttling build on
//! [`traffik_core`], which this crate re-exports as `core`.

pub use traffik_core as core;

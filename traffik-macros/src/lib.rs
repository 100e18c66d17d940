//! Procedural macros for Traffik.
//!
//! The `#[throttled("5/m")]` attribute arrives with the axum integration; this crate is
//! part of the workspace so that the facade's layout is stable.

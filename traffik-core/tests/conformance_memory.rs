//! The backend conformance suite on the in-memory backend.

mod conformance;

use std::sync::Arc;

use traffik_core::{InMemoryBackend, ManualClock, SharedBackend};

fn in_memory(namespace: &str, clock: ManualClock) -> SharedBackend {
    Arc::new(InMemoryBackend::builder(namespace).clock(clock).build())
}

conformance_tests!(in_memory);

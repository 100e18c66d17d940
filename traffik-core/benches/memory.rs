//! Heap held by the in-memory backend per stored key, and what the sweep gives back.
//!
//! A counting global allocator tracks live heap bytes (as requested from the allocator;
//! the allocator's own per-block overhead, typically 8 to 16 bytes, comes on top).
//! 1 000 000 distinct keys are decided under [`FixedWindow`] with a [`ManualClock`]; the
//! clock is then moved past the keys' TTL and [`InMemoryBackend::purge_expired`] must
//! leave no key behind. A smaller pass reports the same figure for every strategy.
//!
//! ```text
//! cargo bench -p traffik-core --bench memory
//! ```
//!
//! Exits with a failure if keys survive the purge or a figure exceeds its budget.

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::Write as _;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};
use std::time::Duration;

use traffik_core::key::throttle_key;
use traffik_core::strategy::{
    Algorithm, FixedWindow, Gcra, LeakyBucket, LeakyBucketWithQueue, SlidingWindowCounter,
    SlidingWindowLog, TokenBucket, TokenBucketWithDebt,
};
use traffik_core::{Backend, InMemoryBackend, ManualClock, Rate};

/// The system allocator, counting live bytes and live blocks.
struct Counting;

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);
static LIVE_BLOCKS: AtomicIsize = AtomicIsize::new(0);
static PEAK_BYTES: AtomicUsize = AtomicUsize::new(0);

impl Counting {
    fn grew(by: usize, blocks: isize) {
        let now = LIVE_BYTES.fetch_add(by as isize, Ordering::Relaxed) + by as isize;
        LIVE_BLOCKS.fetch_add(blocks, Ordering::Relaxed);
        PEAK_BYTES.fetch_max(now.max(0) as usize, Ordering::Relaxed);
    }

    fn shrank(by: usize, blocks: isize) {
        LIVE_BYTES.fetch_sub(by as isize, Ordering::Relaxed);
        LIVE_BLOCKS.fetch_sub(blocks, Ordering::Relaxed);
    }
}

// SAFETY: every call is forwarded unchanged to the system allocator; the counters only
// observe sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size(), 1);
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            Self::grew(layout.size(), 1);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as for `alloc`.
        unsafe { System.dealloc(ptr, layout) };
        Self::shrank(layout.size(), 1);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                Self::grew(new_size - layout.size(), 0);
            } else {
                Self::shrank(layout.size() - new_size, 0);
            }
        }
        new
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live_bytes() -> isize {
    LIVE_BYTES.load(Ordering::Relaxed)
}

fn live_blocks() -> isize {
    LIVE_BLOCKS.load(Ordering::Relaxed)
}

/// Keys stored in the big pass.
const KEYS: usize = 1_000_000;
/// Keys stored per strategy in the small pass.
const KEYS_PER_STRATEGY: usize = 100_000;
/// Budget for the big pass: live heap bytes per stored key.
const BUDGET_PER_KEY: f64 = 200.0;
/// 2023-11-14T22:13:20Z, on a whole minute so every key lands in the same window.
const START: u64 = 1_700_000_040_000_000;

/// Realistic storage keys: `{uid:client-ip}:http:GET:/route`, about 40 bytes.
fn keys(count: usize) -> Vec<String> {
    (0..count)
        .map(|i| {
            let ip = format!("10.{}.{}.{}", (i >> 16) & 0xff, (i >> 8) & 0xff, i & 0xff);
            throttle_key("api", &ip, "http:GET:/api/items/{id}")
        })
        .collect()
}

fn decide(backend: &InMemoryBackend, key: &str, algorithm: &dyn Algorithm, rate: &Rate) {
    let decision = backend
        .decide(key, algorithm, rate, 1)
        .now_or_never()
        .expect("the in-memory backend answers at once")
        .expect("decision");
    assert!(decision.allowed, "a fresh key is admitted");
}

struct Fill {
    keys: usize,
    bytes: isize,
    blocks: isize,
}

/// Decides every key once on a fresh backend; the heap the backend holds afterwards.
fn fill(
    clock: &ManualClock,
    keys: &[String],
    algorithm: &dyn Algorithm,
    rate: &Rate,
) -> (InMemoryBackend, Fill) {
    let (bytes_before, blocks_before) = (live_bytes(), live_blocks());
    let backend = InMemoryBackend::builder("bench")
        .clock(clock.clone())
        .build();
    for key in keys {
        decide(&backend, key, algorithm, rate);
    }
    let fill = Fill {
        keys: backend.stored_keys(),
        bytes: live_bytes() - bytes_before,
        blocks: live_blocks() - blocks_before,
    };
    (backend, fill)
}

fn per_key(bytes: isize, keys: usize) -> f64 {
    bytes as f64 / keys.max(1) as f64
}

fn main() {
    let mut out = std::io::stderr().lock();
    let mut failed = false;
    let rate: Rate = "100/m".parse().expect("valid rate");
    let clock = ManualClock::new(START);

    // The big pass: 1M keys under FixedWindow.
    let keys_1m = keys(KEYS);
    let mean_key = keys_1m.iter().map(String::len).sum::<usize>() as f64 / KEYS as f64;
    let (backend, filled) = fill(&clock, &keys_1m, &FixedWindow, &rate);
    let bytes_per_key = per_key(filled.bytes, filled.keys);
    writeln!(
        out,
        "fixed_window, {KEYS} distinct keys (mean key {mean_key:.1} B):"
    )
    .ok();
    writeln!(
        out,
        "  stored keys {}, live heap {:.1} MiB = {bytes_per_key:.1} B per key in {:.2} blocks per key (budget {BUDGET_PER_KEY} B)",
        filled.keys,
        filled.bytes as f64 / (1024.0 * 1024.0),
        filled.blocks as f64 / filled.keys.max(1) as f64,
    )
    .ok();
    if filled.keys != KEYS {
        writeln!(out, "  FAIL: expected {KEYS} stored keys").ok();
        failed = true;
    }
    if bytes_per_key > BUDGET_PER_KEY {
        writeln!(out, "  FAIL: over the budget of {BUDGET_PER_KEY} B per key").ok();
        failed = true;
    }

    // Past every key's TTL (a fixed window's state lives at most one period), then sweep.
    let before_purge = live_bytes();
    clock.advance(rate.period() + Duration::from_secs(1));
    let removed = backend.purge_expired();
    let left = backend.stored_keys();
    let retained = live_bytes() - (before_purge - filled.bytes);
    writeln!(
        out,
        "  after the TTL and purge_expired(): removed {removed}, keys left {left}, live heap {retained} B ({:.3} B per original key)",
        per_key(retained, KEYS),
    )
    .ok();
    if left != 0 {
        writeln!(out, "  FAIL: keys left after the purge").ok();
        failed = true;
    }
    drop(backend);
    drop(keys_1m);
    writeln!(
        out,
        "  peak live heap of the process: {:.1} MiB",
        PEAK_BYTES.load(Ordering::Relaxed) as f64 / (1024.0 * 1024.0)
    )
    .ok();

    // The small pass: every strategy, one decision per key.
    let keys_small = keys(KEYS_PER_STRATEGY);
    let strategies: [(&str, &dyn Algorithm); 8] = [
        ("fixed_window", &FixedWindow),
        ("sliding_window_log", &SlidingWindowLog),
        ("sliding_window_counter", &SlidingWindowCounter),
        ("token_bucket", &TokenBucket::new()),
        ("token_bucket_with_debt", &TokenBucketWithDebt::new()),
        ("leaky_bucket", &LeakyBucket),
        ("leaky_bucket_with_queue", &LeakyBucketWithQueue::new()),
        ("gcra", &Gcra::new()),
    ];
    writeln!(
        out,
        "every strategy, {KEYS_PER_STRATEGY} distinct keys, one decision each:"
    )
    .ok();
    for (name, algorithm) in strategies {
        let (backend, filled) = fill(&clock, &keys_small, algorithm, &rate);
        // The longest TTL of any built-in state is two periods (the sliding window
        // counter keeps the previous window).
        clock.advance(rate.period() * 2 + Duration::from_secs(1));
        backend.purge_expired();
        let left = backend.stored_keys();
        writeln!(
            out,
            "  {name:<24} {:>6.1} B per key, keys left after TTL + purge: {left}",
            per_key(filled.bytes, filled.keys),
        )
        .ok();
        if left != 0 {
            failed = true;
        }
    }

    if failed {
        writeln!(out, "memory bench: FAILED").ok();
        std::process::exit(1);
    }
}

//! The Lua scripts and how a built-in strategy maps onto one.
//!
//! Each script is `prelude.lua` followed by its own file. A built-in runs as its script
//! only when every quantity the script computes stays an exact integer in a Lua double
//! (below 2^53); see [`plan`]. Anything else takes the generic compare-and-set path.

use std::sync::LazyLock;

use deadpool_redis::redis;

use crate::rate::Rate;
use crate::strategy::Builtin;

const PRELUDE: &str = include_str!("scripts/prelude.lua");

/// One script: its full source and SHA1 (for `EVALSHA`).
#[derive(Debug)]
pub(super) struct LuaScript {
    pub source: String,
    pub sha: String,
}

impl LuaScript {
    fn new(body: &str) -> Self {
        let source = format!("{PRELUDE}{body}");
        let sha = redis::Script::new(&source).get_hash().to_owned();
        Self { source, sha }
    }
}

pub(super) struct Scripts {
    pub primitives: LuaScript,
    pub fixed_window: LuaScript,
    pub sliding_window_log: LuaScript,
    pub sliding_window_counter: LuaScript,
    pub meter: LuaScript,
    pub gcra: LuaScript,
}

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(|| Scripts {
    primitives: LuaScript::new(include_str!("scripts/primitives.lua")),
    fixed_window: LuaScript::new(include_str!("scripts/fixed_window.lua")),
    sliding_window_log: LuaScript::new(include_str!("scripts/sliding_window_log.lua")),
    sliding_window_counter: LuaScript::new(include_str!("scripts/sliding_window_counter.lua")),
    meter: LuaScript::new(include_str!("scripts/meter.lua")),
    gcra: LuaScript::new(include_str!("scripts/gcra.lua")),
});

/// Every product of a count and the period stays at or below this, so that sums of a few
/// of them stay below 2^53.
const MAX_SCALED: u128 = 1 << 50;

/// How to run one built-in decision as a script.
#[derive(Debug)]
pub(super) struct Plan {
    pub script: &'static LuaScript,
    /// Arguments after `limit, period, cost`.
    pub extra: [u64; 4],
    pub extra_len: usize,
    /// The state key gets `:window` appended by the script.
    pub windowed: bool,
}

/// Format tags of strategy/codec.rs (the scripts read and write the same bytes).
mod tag {
    pub const TOKEN_BUCKET: u64 = 0xB1;
    pub const TOKEN_BUCKET_WITH_DEBT: u64 = 0xB2;
    pub const LEAKY_BUCKET: u64 = 0xC1;
    pub const LEAKY_BUCKET_WITH_QUEUE: u64 = 0xC2;
}

/// Whether `rate` with the largest count `units` keeps every script quantity exact.
fn exact(rate: &Rate, units: u64) -> bool {
    let period = u128::from(rate.period_micros());
    let scaled = |n: u64| u128::from(n) * period <= MAX_SCALED;
    period > 0 && units > 0 && scaled(rate.limit()) && scaled(units)
}

/// The script for `builtin` under `rate`, or `None` when the configuration is outside the
/// range the scripts compute exactly (the caller then uses the generic path).
pub(super) fn plan(builtin: Builtin, rate: &Rate) -> Option<Plan> {
    let s = &*SCRIPTS;
    let limit = rate.limit();
    let simple = |script: &'static LuaScript, windowed: bool| Plan {
        script,
        extra: [0; 4],
        extra_len: 0,
        windowed,
    };
    let meter = |tag: u64, capacity: u64, visible: u64, empty: bool| {
        exact(rate, capacity.max(visible)).then_some(Plan {
            script: &s.meter,
            extra: [tag, capacity, visible, u64::from(empty)],
            extra_len: 4,
            windowed: false,
        })
    };
    match builtin {
        Builtin::FixedWindow => exact(rate, limit).then(|| simple(&s.fixed_window, true)),
        Builtin::SlidingWindowLog => {
            exact(rate, limit).then(|| simple(&s.sliding_window_log, false))
        }
        Builtin::SlidingWindowCounter => {
            exact(rate, limit).then(|| simple(&s.sliding_window_counter, false))
        }
        Builtin::TokenBucket { burst } => {
            let burst = burst.unwrap_or(limit);
            meter(tag::TOKEN_BUCKET, burst, burst, false)
        }
        Builtin::TokenBucketWithDebt { max_debt } => {
            let capacity = limit.checked_add(max_debt.unwrap_or(limit))?;
            meter(tag::TOKEN_BUCKET_WITH_DEBT, capacity, limit, false)
        }
        Builtin::LeakyBucket => meter(tag::LEAKY_BUCKET, limit, limit, true),
        Builtin::LeakyBucketWithQueue { queue_size } => {
            let size = queue_size.unwrap_or(limit);
            meter(tag::LEAKY_BUCKET_WITH_QUEUE, size, size, false)
        }
        Builtin::Gcra { burst } => {
            let burst = burst.unwrap_or(limit);
            // The script's wide integers hold now x limit in 96 bits.
            (exact(rate, burst) && limit <= 1 << 40).then_some(Plan {
                script: &s.gcra,
                extra: [burst, 0, 0, 0],
                extra_len: 1,
                windowed: false,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn ranges() {
        let rate: Rate = "100/m".parse().unwrap();
        assert!(plan(Builtin::FixedWindow, &rate).is_some());
        assert!(plan(Builtin::Gcra { burst: Some(10) }, &rate).is_some());
        let huge = Rate::new(1 << 40, Duration::from_secs(86_400)).unwrap();
        assert!(plan(Builtin::FixedWindow, &huge).is_none());
        assert!(
            plan(
                Builtin::TokenBucket {
                    burst: Some(u64::MAX)
                },
                &rate
            )
            .is_none()
        );
        assert!(
            plan(
                Builtin::TokenBucketWithDebt {
                    max_debt: Some(u64::MAX)
                },
                &rate
            )
            .is_none()
        );
    }

    #[test]
    fn scripts_differ() {
        let s = &*SCRIPTS;
        assert_ne!(s.meter.sha, s.gcra.sha);
        assert!(s.gcra.source.starts_with("-- Shared"));
    }
}

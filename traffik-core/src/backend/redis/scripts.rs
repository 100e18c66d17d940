//! The Lua scripts and how a built-in strategy maps onto one.
//!
//! Each script is `prelude.lua` (the helpers), then `clock.lua` (the time of the call),
//! then its own file, run with `EVALSHA`. The same pieces also make one Redis 7 function
//! library ([`Library`]): the helpers are defined once, when the library is loaded, and
//! each script becomes a function (`FCALL`) that reads the clock and runs its body. A call
//! then skips what `EVALSHA` repeats each time: making the helpers' closures. A built-in
//! runs as its script only when every quantity the script computes stays an exact
//! integer in a Lua double (below 2^53); see [`plan`]. Anything else takes the generic
//! compare-and-set path.
//!
//! The library also holds a batch function (`batch.lua`): several calls of its functions
//! in one `FCALL`, which the batching task sends in place of the calls it coalesced
//! (see `batch.rs`).

use std::fmt::Write as _;
use std::sync::LazyLock;

use deadpool_redis::redis;

use crate::rate::Rate;
use crate::strategy::Builtin;

const PRELUDE: &str = include_str!("scripts/prelude.lua");
const CLOCK: &str = include_str!("scripts/clock.lua");
const BATCH: &str = include_str!("scripts/batch.lua");

/// One script: its full source and SHA1 (for `EVAL`/`EVALSHA`), and the name of the same
/// code as a function of the [`Library`] (for `FCALL`).
#[derive(Debug)]
pub(super) struct LuaScript {
    pub source: String,
    pub sha: String,
    pub function: String,
}

/// The function library: every script as a function, under names that carry a hash of
/// the code, so that processes running different versions of Traffik against one server
/// each find their own functions.
#[derive(Debug)]
pub(super) struct Library {
    /// The library's name (`traffik_<hash>`).
    pub name: String,
    /// The code given to `FUNCTION LOAD`.
    pub source: String,
    /// The batch function's name.
    pub batch: String,
}

pub(super) struct Scripts {
    pub primitives: LuaScript,
    pub fixed_window: LuaScript,
    pub sliding_window_log: LuaScript,
    pub sliding_window_counter: LuaScript,
    pub meter: LuaScript,
    pub gcra: LuaScript,
    pub library: Library,
}

/// Each script's name (its function's suffix) and body.
const BODIES: [(&str, &str); 6] = [
    ("primitives", include_str!("scripts/primitives.lua")),
    ("fixed_window", include_str!("scripts/fixed_window.lua")),
    (
        "sliding_window_log",
        include_str!("scripts/sliding_window_log.lua"),
    ),
    (
        "sliding_window_counter",
        include_str!("scripts/sliding_window_counter.lua"),
    ),
    ("meter", include_str!("scripts/meter.lua")),
    ("gcra", include_str!("scripts/gcra.lua")),
];

pub(super) static SCRIPTS: LazyLock<Scripts> = LazyLock::new(build);

fn build() -> Scripts {
    let sha1 = |text: &str| redis::Script::new(text).get_hash().to_owned();
    // A script has no caller to read the server's time for it.
    let sources = BODIES.map(|(_, body)| format!("{PRELUDE}local SERVER_NOW\n{CLOCK}{body}"));
    let name = format!("traffik_{}", &sha1(&(sources.concat() + BATCH))[..16]);
    // Each body becomes a local function of the library, taking its keys and arguments
    // under the names scripts read them by (so that a body is the same text in both
    // forms) and the server's time when a batch already read it; each is registered as a
    // function of its own, and the batch function runs any of them.
    let mut library = format!("#!lua name={name}\n{PRELUDE}");
    for (function, body) in BODIES {
        let _ = write!(
            library,
            "\nlocal function run_{function}(KEYS, ARGV, SERVER_NOW)\n{CLOCK}{body}\nend\n\
             redis.register_function('{name}_{function}', \
             function(KEYS, ARGV) return run_{function}(KEYS, ARGV) end)\n"
        );
    }
    library.push_str("\nlocal BATCHED = {\n");
    for (function, _) in BODIES {
        let _ = writeln!(library, "  ['{name}_{function}'] = run_{function},");
    }
    let batch = format!("{name}_batch");
    let _ = write!(
        library,
        "}}\nredis.register_function('{batch}', function(KEYS, ARGV)\n{BATCH}\nend)\n"
    );
    let script = |index: usize| {
        let source = sources[index].clone();
        LuaScript {
            sha: sha1(&source),
            source,
            function: format!("{name}_{}", BODIES[index].0),
        }
    };
    Scripts {
        primitives: script(0),
        fixed_window: script(1),
        sliding_window_log: script(2),
        sliding_window_counter: script(3),
        meter: script(4),
        gcra: script(5),
        library: Library {
            name,
            source: library,
            batch,
        },
    }
}

/// Every product of a count and the period stays at or below this, so that sums of a few
/// of them stay below 2^53.
const MAX_SCALED: u128 = 1 << 50;

/// The most arguments a strategy's script takes after `limit, period, cost`.
pub(super) const EXTRA: usize = 4;

/// How to run one built-in decision as a script.
#[derive(Debug)]
pub(super) struct Plan {
    pub script: &'static LuaScript,
    /// Arguments after `limit, period, cost`.
    pub extra: [u64; EXTRA],
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
        extra: [0; EXTRA],
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

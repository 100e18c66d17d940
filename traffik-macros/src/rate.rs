//! The rate grammar, checked while the macro expands, for errors that say what is wrong.
//!
//! This mirrors `traffik_core::rate` (which the macro cannot depend on without building
//! tokio a second time for the compiler host). The generated code still goes through
//! `rate!`, so `traffik-core` stays the authority; a unit test of this crate compares
//! both parsers on a corpus and on generated inputs so they cannot drift.

/// A rate that passed the grammar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Parsed {
    /// `"unlimited"`.
    Unlimited,
    /// `limit` per `period_ms` milliseconds.
    Rate { limit: u64, period_ms: u64 },
}

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

const UNITS: [(&str, u64); 18] = [
    ("ms", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", MS_PER_SECOND),
    ("sec", MS_PER_SECOND),
    ("second", MS_PER_SECOND),
    ("seconds", MS_PER_SECOND),
    ("m", MS_PER_MINUTE),
    ("min", MS_PER_MINUTE),
    ("minute", MS_PER_MINUTE),
    ("minutes", MS_PER_MINUTE),
    ("h", MS_PER_HOUR),
    ("hr", MS_PER_HOUR),
    ("hour", MS_PER_HOUR),
    ("hours", MS_PER_HOUR),
    ("d", MS_PER_DAY),
    ("day", MS_PER_DAY),
    ("days", MS_PER_DAY),
];

const UNITS_HELP: &str = "units are ms, s, sec, m, min, h, hr, d, or millisecond(s), second(s), minute(s), hour(s), day(s)";
const EXAMPLE: &str = "as in \"5/m\", \"5/10s\" or \"100 per hour\"";

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// `bytes[start..end]` without surrounding white space, as a range.
fn trim(bytes: &[u8], mut start: usize, mut end: usize) -> (usize, usize) {
    while start < end && is_space(bytes[start]) {
        start += 1;
    }
    while end > start && is_space(bytes[end - 1]) {
        end -= 1;
    }
    (start, end)
}

fn text(input: &str, (start, end): (usize, usize)) -> &str {
    input.get(start..end).unwrap_or("")
}

/// The separator: `(end of limit, start of period)`: the first `/`, else the word `per`
/// between white space or digits.
fn separator(bytes: &[u8], start: usize, end: usize) -> Option<(usize, usize)> {
    if let Some(i) = bytes[start..end].iter().position(|&b| b == b'/') {
        return Some((start + i, start + i + 1));
    }
    let mut i = start + 1;
    while i + 3 < end {
        let before = bytes[i - 1];
        let after = bytes[i + 3];
        if bytes[i..i + 3].eq_ignore_ascii_case(b"per")
            && (is_space(before) || before.is_ascii_digit())
            && (is_space(after) || after.is_ascii_digit())
        {
            return Some((i, i + 3));
        }
        i += 1;
    }
    None
}

fn number(input: &str, span: (usize, usize), what: &str) -> Result<u64, String> {
    let digits = text(input, span);
    if digits.starts_with('-') {
        return Err(format!(
            "the {what} must not be negative; use a positive whole number"
        ));
    }
    if digits.is_empty() {
        return Err(format!(
            "the {what} is missing; write a positive whole number first, {EXAMPLE}"
        ));
    }
    if digits.bytes().any(|b| !b.is_ascii_digit() && b != b'.') {
        return Err(format!(
            "the {what} {digits:?} is not a whole number; {EXAMPLE}"
        ));
    }
    if digits.contains('.') {
        return Err(format!(
            "the {what} {digits:?} must be a whole number; use a smaller unit, like \"3/1500ms\" for 3 per 1.5 seconds"
        ));
    }
    digits
        .parse::<u64>()
        .map_err(|_| format!("the {what} {digits} is too large (it must fit in a u64)"))
}

/// A known unit a mistyped one most likely meant (`mins` -> `min`).
fn suggest_unit(unit: &str) -> Option<&'static str> {
    let lower = unit.to_ascii_lowercase();
    let stem = lower.strip_suffix('s').unwrap_or(&lower);
    UNITS
        .iter()
        .map(|(name, _)| *name)
        .filter(|name| stem == *name || (stem.len() >= 3 && name.starts_with(stem)))
        .max_by_key(|name| usize::from(stem == *name) * 100 + name.len())
}

/// Parses `input` with the grammar of `traffik_core::Rate::parse`; the error says what
/// is wrong and what would be right.
pub(crate) fn parse(input: &str) -> Result<Parsed, String> {
    let bytes = input.as_bytes();
    let all = trim(bytes, 0, bytes.len());
    if all.0 == all.1 {
        return Err(format!(
            "the rate is empty; write a limit and a period, {EXAMPLE}"
        ));
    }
    if text(input, all).eq_ignore_ascii_case("unlimited") {
        return Ok(Parsed::Unlimited);
    }
    let Some((limit_end, period_start)) = separator(bytes, all.0, all.1) else {
        let whole = text(input, all);
        return Err(if whole.bytes().all(|b| b.is_ascii_digit()) {
            format!(
                "the rate has no period; write \"{whole}/m\" for {whole} per minute, or \"{whole}/s\", \"{whole}/10s\", \"{whole}/h\"..."
            )
        } else {
            format!(
                "the rate has no period; write \"limit/period\" or \"limit per period\", {EXAMPLE}"
            )
        });
    };
    let limit = number(input, trim(bytes, all.0, limit_end), "limit")?;
    let period = trim(bytes, period_start, all.1);
    if period.0 == period.1 {
        return Err(format!(
            "the rate has no period after the separator; {EXAMPLE}"
        ));
    }
    let mut split = period.0;
    while split < period.1 && matches!(bytes[split], b'0'..=b'9' | b'-' | b'.') {
        split += 1;
    }
    let unit_span = trim(bytes, split, period.1);
    let multiplier = if split == period.0 {
        1
    } else {
        number(input, (period.0, split), "period multiplier")?
    };
    let unit = text(input, unit_span);
    if unit.is_empty() {
        let period = text(input, period);
        return Err(format!(
            "the period {period:?} has no unit; write \"{limit}/{period}s\" for seconds, or \"{limit}/{period}m\" for minutes ({UNITS_HELP})"
        ));
    }
    let Some(unit_ms) = UNITS
        .iter()
        .find(|(name, _)| unit.eq_ignore_ascii_case(name))
        .map(|(_, ms)| *ms)
    else {
        let period = text(input, (period.0, split));
        return Err(match suggest_unit(unit) {
            Some(known) => format!(
                "unknown unit {unit:?}; did you mean \"{limit}/{period}{known}\"? ({UNITS_HELP})"
            ),
            None => format!("unknown unit {unit:?}; {UNITS_HELP}"),
        });
    };
    if multiplier == 0 {
        return Err("the period multiplier must not be zero; a period is at least 1ms".into());
    }
    let Some(period_ms) = multiplier.checked_mul(unit_ms) else {
        return Err("the period is too long (overflow)".into());
    };
    if limit == 0 {
        return Err(
            "a limit of 0 admits nothing; write a positive limit, as in \"1/m\", or \"unlimited\" for no limit"
                .into(),
        );
    }
    if period_ms.checked_mul(1_000).is_none() {
        return Err("the period is too long (overflow)".into());
    }
    Ok(Parsed::Rate { limit, period_ms })
}

#[cfg(test)]
mod tests {
    use super::*;
    use traffik_core::Rate;

    /// What `traffik_core` makes of `input`, in this module's terms.
    fn core(input: &str) -> Option<Parsed> {
        Rate::parse(input).ok().map(|rate| {
            if rate.is_unlimited() {
                Parsed::Unlimited
            } else {
                Parsed::Rate {
                    limit: rate.limit(),
                    period_ms: u64::try_from(rate.period().as_millis()).unwrap_or(u64::MAX),
                }
            }
        })
    }

    fn agrees(input: &str) {
        assert_eq!(
            parse(input).ok(),
            core(input),
            "the parsers disagree on {input:?}"
        );
    }

    #[test]
    fn agrees_with_traffik_core_on_a_corpus() {
        let corpus = [
            "5/m",
            "5/10s",
            "10/30 seconds",
            "2 per second",
            "1000/500ms",
            "10000/d",
            " 5 / 10 S ",
            "5per10s",
            "5 per",
            "per 5s",
            "5/",
            "/m",
            "5",
            "",
            "   ",
            "unlimited",
            "UNLIMITED",
            " unlimited ",
            "0/m",
            "5/0s",
            "-5/m",
            "5/-1s",
            "1.5/s",
            "5/1.5s",
            "5/mins",
            "5/secs",
            "5/hrs",
            "5/x",
            "5/10",
            "5/ 10",
            "a/m",
            "5a/m",
            "18446744073709551615/ms",
            "18446744073709551616/ms",
            "1/18446744073709551615d",
            "1/18446744073709551615ms",
            "1/9999999999999999ms",
            "5/m/s",
            "5/1 0s",
            "5\u{a0}/m",
            "5/minute",
            "5/Minutes",
            "5/DAYS",
            "5/day",
            "3 PER 10 HOURS",
            "3per s",
            "3 pers",
            "5/10 ms",
            "5/10sec",
            "5//m",
            "5/m ",
            "5 /10 hr",
            "é/m",
            "5/é",
            "5 per é",
        ];
        for input in corpus {
            agrees(input);
        }
    }

    #[test]
    fn agrees_with_traffik_core_on_generated_inputs() {
        // Every string of up to 4 symbols from an alphabet that exercises each branch.
        let alphabet = [
            "5", "0", "1", "/", " ", "s", "m", "ms", "per", "-", ".", "x", "d",
        ];
        let mut inputs = vec![String::new()];
        for _ in 0..4 {
            let mut next = Vec::new();
            for prefix in &inputs {
                for symbol in alphabet {
                    next.push(format!("{prefix}{symbol}"));
                }
            }
            for input in &next {
                agrees(input);
            }
            inputs = next;
        }
    }

    #[test]
    fn errors_say_what_would_be_right() {
        let err = |input| parse(input).unwrap_err();
        assert!(
            err("5/mins").contains("did you mean \"5/min\"?"),
            "{}",
            err("5/mins")
        );
        assert!(err("5/10secs").contains("did you mean \"5/10sec\"?"));
        assert!(err("5").contains("\"5/m\""));
        assert!(err("0/m").contains("a limit of 0 admits nothing"));
        assert!(err("5/10").contains("\"5/10s\""));
        assert!(err("5/x").contains("unknown unit \"x\""));
    }
}

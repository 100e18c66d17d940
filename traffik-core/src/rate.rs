//! [`Rate`]: how many requests per period, and its text grammar.
//!
//! The grammar follows the Python Traffik library:
//!
//! ```text
//! rate       := limit sep period | "unlimited"
//! sep        := "/" | "per"
//! period     := [multiplier] unit
//! unit       := ms | millisecond(s) | s | sec | second(s) | m | min | minute(s)
//!             | h | hr | hour(s) | d | day(s)
//! ```
//!
//! Units are case-insensitive and spaces are tolerated anywhere between tokens:
//! `"5/10s"`, `"10/30 seconds"`, `"2 per second"`, `"1000/500ms"`, `"10000/d"`.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use crate::error::{Error, Result};

const MS_PER_SECOND: u64 = 1_000;
const MS_PER_MINUTE: u64 = 60 * MS_PER_SECOND;
const MS_PER_HOUR: u64 = 60 * MS_PER_MINUTE;
const MS_PER_DAY: u64 = 24 * MS_PER_HOUR;

/// Units in display preference order (largest first), with their canonical symbol.
const DISPLAY_UNITS: [(u64, &str); 5] = [
    (MS_PER_DAY, "d"),
    (MS_PER_HOUR, "h"),
    (MS_PER_MINUTE, "m"),
    (MS_PER_SECOND, "s"),
    (1, "ms"),
];

/// A rate limit: at most `limit` units of cost per `period`.
///
/// ```
/// use std::time::Duration;
/// use traffik_core::Rate;
///
/// let rate: Rate = "5/10s".parse()?;
/// assert_eq!(rate.limit(), 5);
/// assert_eq!(rate.period(), Duration::from_secs(10));
/// assert_eq!(rate.to_string(), "5/10s");
///
/// // The seed's `Rate(limit=100, minutes=5, seconds=30)`:
/// let rate = Rate::builder(100).minutes(5).seconds(30).build()?;
/// assert_eq!(rate.period(), Duration::from_secs(330));
///
/// assert!(Rate::UNLIMITED.is_unlimited());
/// # Ok::<(), traffik_core::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Rate {
    limit: u64,
    /// Period in whole milliseconds; 0 only for [`Rate::UNLIMITED`].
    period_ms: u64,
}

impl Rate {
    /// No limit at all: every request is allowed and nothing is stored.
    pub const UNLIMITED: Rate = Rate {
        limit: u64::MAX,
        period_ms: 0,
    };

    /// A rate of `limit` per `period`.
    ///
    /// The period must be a positive whole number of milliseconds and the limit positive.
    ///
    /// ```
    /// use std::time::Duration;
    /// use traffik_core::Rate;
    ///
    /// let rate = Rate::new(100, Duration::from_secs(60))?;
    /// assert_eq!(rate.to_string(), "100/m");
    /// assert!(Rate::new(0, Duration::from_secs(1)).is_err());
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn new(limit: u64, period: Duration) -> Result<Self> {
        let input = || format!("{limit} per {period:?}");
        if period.subsec_nanos() % 1_000_000 != 0 {
            return Err(invalid(
                input(),
                "the period must be a whole number of milliseconds",
            ));
        }
        let period_ms = u64::try_from(period.as_millis())
            .map_err(|_| invalid(input(), "the period is too long"))?;
        Self::from_parts(limit, period_ms, input)
    }

    /// Starts a rate from components, like the seed's
    /// `Rate(limit=100, minutes=5, seconds=30)`.
    ///
    /// ```
    /// use traffik_core::Rate;
    ///
    /// let rate = Rate::builder(1000).hours(1).minutes(30).build()?;
    /// assert_eq!(rate.to_string(), "1000/90m");
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn builder(limit: u64) -> RateBuilder {
        RateBuilder {
            limit,
            period_ms: Some(0),
        }
    }

    /// Parses a rate such as `"100/m"` or `"5 per 10 seconds"`; see the module docs.
    ///
    /// ```
    /// use traffik_core::Rate;
    ///
    /// assert_eq!(Rate::parse("2 per second")?, Rate::parse("2/s")?);
    /// assert!(Rate::parse("5").is_err());
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    pub fn parse(input: &str) -> Result<Self> {
        parse(input)
    }

    /// The most cost admitted per period (`u64::MAX` when unlimited).
    pub const fn limit(&self) -> u64 {
        self.limit
    }

    /// The period (zero when unlimited).
    pub const fn period(&self) -> Duration {
        Duration::from_millis(self.period_ms)
    }

    /// The period in microseconds, the time unit every strategy computes in.
    pub const fn period_micros(&self) -> u64 {
        self.period_ms * 1_000
    }

    /// Whether this is [`Rate::UNLIMITED`].
    pub const fn is_unlimited(&self) -> bool {
        self.period_ms == 0
    }

    /// Microseconds between two units of cost when the rate is spread evenly
    /// (the emission interval of GCRA and the leak interval of a leaky bucket).
    pub fn interval_micros(&self) -> f64 {
        self.period_micros() as f64 / self.limit as f64
    }

    fn from_parts(limit: u64, period_ms: u64, input: impl FnOnce() -> String) -> Result<Self> {
        if period_ms == 0 {
            return Err(invalid(input(), "the period must be longer than zero"));
        }
        if limit == 0 {
            return Err(invalid(
                input(),
                "a limit of 0 with a period admits nothing; use a positive limit, or Rate::UNLIMITED (\"unlimited\") for no limit",
            ));
        }
        period_ms
            .checked_mul(1_000)
            .ok_or_else(|| invalid(input(), "the period is too long (overflow)"))?;
        Ok(Rate { limit, period_ms })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_unlimited() {
            return f.write_str("unlimited");
        }
        let (unit_ms, symbol) = DISPLAY_UNITS
            .iter()
            .copied()
            .find(|(unit_ms, _)| self.period_ms % unit_ms == 0)
            .unwrap_or((1, "ms"));
        let multiplier = self.period_ms / unit_ms;
        if multiplier == 1 {
            write!(f, "{}/{symbol}", self.limit)
        } else {
            write!(f, "{}/{multiplier}{symbol}", self.limit)
        }
    }
}

impl FromStr for Rate {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        parse(s)
    }
}

impl TryFrom<&str> for Rate {
    type Error = Error;

    fn try_from(s: &str) -> Result<Self> {
        parse(s)
    }
}

impl TryFrom<String> for Rate {
    type Error = Error;

    fn try_from(s: String) -> Result<Self> {
        parse(&s)
    }
}

/// Builds a [`Rate`] from period components; see [`Rate::builder`].
#[derive(Debug, Clone, Copy)]
#[must_use]
pub struct RateBuilder {
    limit: u64,
    /// `None` once a component overflowed.
    period_ms: Option<u64>,
}

impl RateBuilder {
    fn add(mut self, amount: u64, unit_ms: u64) -> Self {
        self.period_ms = self
            .period_ms
            .and_then(|p| amount.checked_mul(unit_ms).and_then(|a| p.checked_add(a)));
        self
    }

    /// Adds milliseconds to the period.
    pub fn milliseconds(self, n: u64) -> Self {
        self.add(n, 1)
    }

    /// Adds seconds to the period.
    pub fn seconds(self, n: u64) -> Self {
        self.add(n, MS_PER_SECOND)
    }

    /// Adds minutes to the period.
    pub fn minutes(self, n: u64) -> Self {
        self.add(n, MS_PER_MINUTE)
    }

    /// Adds hours to the period.
    pub fn hours(self, n: u64) -> Self {
        self.add(n, MS_PER_HOUR)
    }

    /// Adds days to the period.
    pub fn days(self, n: u64) -> Self {
        self.add(n, MS_PER_DAY)
    }

    /// The rate, or [`Error::InvalidRate`] for a zero limit, a zero period or an overflow.
    pub fn build(self) -> Result<Rate> {
        let input = || format!("limit {} with period components", self.limit);
        let period_ms = self
            .period_ms
            .ok_or_else(|| invalid(input(), "the period is too long (overflow)"))?;
        Rate::from_parts(self.limit, period_ms, input)
    }
}

fn invalid(input: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::InvalidRate {
        input: input.into(),
        reason: reason.into(),
    }
}

fn unit_ms(unit: &str) -> Option<u64> {
    let unit = unit.to_ascii_lowercase();
    Some(match unit.as_str() {
        "ms" | "millisecond" | "milliseconds" => 1,
        "s" | "sec" | "second" | "seconds" => MS_PER_SECOND,
        "m" | "min" | "minute" | "minutes" => MS_PER_MINUTE,
        "h" | "hr" | "hour" | "hours" => MS_PER_HOUR,
        "d" | "day" | "days" => MS_PER_DAY,
        _ => return None,
    })
}

/// Splits `text` at its separator: `/`, or the word `per`.
fn split_separator(text: &str) -> Option<(&str, &str)> {
    if let Some((left, right)) = text.split_once('/') {
        return Some((left, right));
    }
    let lower = text.to_ascii_lowercase();
    let mut from = 0;
    while let Some(found) = lower[from..].find("per") {
        let at = from + found;
        let before_ok = lower[..at]
            .chars()
            .next_back()
            .is_some_and(|c| c.is_whitespace() || c.is_ascii_digit());
        let after_ok = lower[at + 3..]
            .chars()
            .next()
            .is_some_and(|c| c.is_whitespace() || c.is_ascii_digit());
        if before_ok && after_ok {
            return Some((&text[..at], &text[at + 3..]));
        }
        from = at + 3;
    }
    None
}

fn parse_number(text: &str, what: &str, input: &str) -> Result<u64> {
    if text.starts_with('-') {
        return Err(invalid(input, format!("the {what} must not be negative")));
    }
    if text.contains('.') && text.chars().all(|c| c.is_ascii_digit() || c == '.') {
        return Err(invalid(
            input,
            format!(
                "the {what} {text:?} must be a whole number (use a smaller unit, like 1500ms for 1.5s)"
            ),
        ));
    }
    if text.is_empty() || !text.chars().all(|c| c.is_ascii_digit()) {
        return Err(invalid(
            input,
            format!("the {what} {text:?} is not a whole number"),
        ));
    }
    text.parse::<u64>()
        .map_err(|_| invalid(input, format!("the {what} {text} is too large (overflow)")))
}

fn parse(input: &str) -> Result<Rate> {
    let text = input.trim();
    if text.is_empty() {
        return Err(invalid(input, "the rate is empty; expected e.g. \"100/m\""));
    }
    if text.eq_ignore_ascii_case("unlimited") {
        return Ok(Rate::UNLIMITED);
    }
    let Some((limit_text, period_text)) = split_separator(text) else {
        return Err(invalid(
            input,
            "no period: expected \"N/period\" or \"N per period\", e.g. \"5/10s\"",
        ));
    };
    let limit = parse_number(limit_text.trim(), "limit", input)?;
    let period_text = period_text.trim();
    if period_text.is_empty() {
        return Err(invalid(
            input,
            "no period after the separator: expected e.g. \"s\", \"10s\" or \"5 minutes\"",
        ));
    }
    let split = period_text
        .find(|c: char| !(c.is_ascii_digit() || c == '-' || c == '.'))
        .unwrap_or(period_text.len());
    let (multiplier_text, unit_text) = period_text.split_at(split);
    let unit_text = unit_text.trim();
    let multiplier = if multiplier_text.is_empty() {
        1
    } else {
        parse_number(multiplier_text, "period multiplier", input)?
    };
    if unit_text.is_empty() {
        return Err(invalid(
            input,
            format!("the period {period_text:?} has no unit; expected ms, s, m, h or d"),
        ));
    }
    let unit = unit_ms(unit_text).ok_or_else(|| {
        invalid(
            input,
            format!(
                "unknown unit {unit_text:?}; expected ms, s, sec, m, min, h, hr, d or their long forms (millisecond(s), second(s), minute(s), hour(s), day(s))"
            ),
        )
    })?;
    if multiplier == 0 {
        return Err(invalid(input, "the period multiplier must not be zero"));
    }
    let period_ms = multiplier
        .checked_mul(unit)
        .ok_or_else(|| invalid(input, "the period is too long (overflow)"))?;
    Rate::from_parts(limit, period_ms, || input.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(text: &str) -> Rate {
        Rate::parse(text).unwrap_or_else(|e| panic!("{text:?} should parse: {e}"))
    }

    fn reason(text: &str) -> String {
        match Rate::parse(text) {
            Err(Error::InvalidRate { reason, .. }) => reason,
            other => panic!("{text:?} should be invalid, got {other:?}"),
        }
    }

    #[test]
    fn every_unit_spelling() {
        let cases: [(&[&str], u64); 5] = [
            (
                &["ms", "millisecond", "milliseconds", "MS", "Milliseconds"],
                1,
            ),
            (
                &["s", "sec", "second", "seconds", "S", "SEC", "Seconds"],
                1_000,
            ),
            (
                &["m", "min", "minute", "minutes", "M", "MIN", "Minutes"],
                60_000,
            ),
            (&["h", "hr", "hour", "hours", "H", "HR", "Hours"], 3_600_000),
            (&["d", "day", "days", "D", "Days"], 86_400_000),
        ];
        for (spellings, unit_ms) in cases {
            for spelling in spellings {
                let rate = ok(&format!("7/{spelling}"));
                assert_eq!(rate.limit(), 7);
                assert_eq!(rate.period(), Duration::from_millis(unit_ms), "{spelling}");
                let rate = ok(&format!("7 per 3 {spelling}"));
                assert_eq!(
                    rate.period(),
                    Duration::from_millis(3 * unit_ms),
                    "{spelling}"
                );
            }
        }
    }

    #[test]
    fn seed_examples() {
        assert_eq!(ok("5/10s").period(), Duration::from_secs(10));
        assert_eq!(ok("10/30 seconds").period(), Duration::from_secs(30));
        assert_eq!(ok("2 per second"), ok("2/s"));
        assert_eq!(ok("1000/500ms").period(), Duration::from_millis(500));
        assert_eq!(ok("10000/d").period(), Duration::from_secs(86_400));
        assert_eq!(ok("100/m").limit(), 100);
        assert_eq!(ok("  5 / 10 s  "), ok("5/10s"));
        assert_eq!(ok("5per10s"), ok("5/10s"));
        assert_eq!(ok("3 PER MINUTE"), ok("3/m"));
    }

    #[test]
    fn components() {
        let rate = Rate::builder(100).minutes(5).seconds(30).build().unwrap();
        assert_eq!(rate.period(), Duration::from_secs(330));
        let rate = Rate::builder(1)
            .days(1)
            .hours(1)
            .minutes(1)
            .seconds(1)
            .milliseconds(1)
            .build()
            .unwrap();
        assert_eq!(rate.period(), Duration::from_millis(90_061_001));
        assert!(Rate::builder(5).build().is_err());
        assert!(Rate::builder(0).seconds(1).build().is_err());
        assert!(Rate::builder(1).days(u64::MAX).build().is_err());
        assert!(Rate::new(1, Duration::from_micros(1500)).is_err());
        assert!(Rate::new(1, Duration::ZERO).is_err());
    }

    #[test]
    fn unlimited() {
        assert!(Rate::UNLIMITED.is_unlimited());
        assert!(!ok("1/s").is_unlimited());
        assert_eq!(ok("unlimited"), Rate::UNLIMITED);
        assert_eq!(ok(" Unlimited "), Rate::UNLIMITED);
        assert_eq!(Rate::UNLIMITED.to_string(), "unlimited");
    }

    #[test]
    fn error_cases_name_the_problem() {
        assert!(reason("").contains("empty"));
        assert!(reason("   ").contains("empty"));
        assert!(reason("5").contains("no period"));
        assert!(reason("5 minutes").contains("no period"));
        assert!(reason("5/").contains("no period"));
        assert!(reason("5/mins").contains("unknown unit \"mins\""));
        assert!(reason("5/fortnight").contains("unknown unit"));
        assert!(reason("5/10").contains("no unit"));
        assert!(reason("5/0s").contains("must not be zero"));
        assert!(reason("-5/m").contains("negative"));
        assert!(reason("5/-1s").contains("negative"));
        assert!(reason("abc/m").contains("not a whole number"));
        assert!(reason("/m").contains("not a whole number"));
        assert!(reason("1.5/m").contains("whole number"));
        assert!(reason("5/1.5s").contains("smaller unit"));
        assert!(reason("99999999999999999999999/s").contains("overflow"));
        assert!(reason("5/99999999999999999999999s").contains("overflow"));
        assert!(reason(&format!("5/{}d", u64::MAX / 1000)).contains("overflow"));
        assert!(reason("0/m").contains("limit of 0"));
        assert!(reason("0 per 10 seconds").contains("limit of 0"));
    }

    #[test]
    fn error_message_includes_input() {
        let err = Rate::parse("5/mins").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("\"5/mins\""), "{text}");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "5/10s",
            "100/m",
            "1000/500ms",
            "10000/d",
            "1/h",
            "3/90m",
            "7/1500ms",
            "9/2d",
            "1/25h",
        ] {
            let rate = ok(text);
            assert_eq!(rate.to_string(), text);
            assert_eq!(ok(&rate.to_string()), rate);
        }
        assert_eq!(ok("10/30 seconds").to_string(), "10/30s");
        assert_eq!(ok("2 per 60 seconds").to_string(), "2/m");
        assert_eq!(ok("unlimited").to_string(), "unlimited");
    }

    #[test]
    fn conversions() {
        let rate: Rate = "5/s".try_into().unwrap();
        assert_eq!(rate, Rate::try_from(String::from("5/s")).unwrap());
        assert_eq!(rate.period_micros(), 1_000_000);
        assert!((rate.interval_micros() - 200_000.0).abs() < f64::EPSILON);
    }
}

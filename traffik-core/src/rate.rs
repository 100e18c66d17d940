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
        Self::checked(limit, period_ms).map_err(|problem| invalid(input(), problem.reason("")))
    }

    /// A rate of `limit` per `period_ms` milliseconds (a positive period), checked.
    const fn checked(limit: u64, period_ms: u64) -> Result<Self, Problem> {
        if limit == 0 {
            return Err(Problem::ZeroLimit);
        }
        if period_ms.checked_mul(1_000).is_none() {
            return Err(Problem::PeriodOverflow);
        }
        Ok(Rate { limit, period_ms })
    }

    /// Parses a rate at compile time: an invalid text is a compile error when used in a
    /// `const` (the [`rate!`](crate::rate!) macro does this for you), a panic otherwise.
    ///
    /// ```
    /// use traffik_core::Rate;
    ///
    /// const API: Rate = Rate::parse_const("10/m");
    /// assert_eq!(API, Rate::parse("10/m")?);
    /// # Ok::<(), traffik_core::Error>(())
    /// ```
    ///
    /// ```compile_fail
    /// use traffik_core::Rate;
    ///
    /// const BAD: Rate = Rate::parse_const("5/mins"); // unknown unit: does not compile
    /// ```
    pub const fn parse_const(input: &str) -> Rate {
        match parse_bytes(input.as_bytes()) {
            Ok(rate) => rate,
            Err(problem) => panic!("{}", problem.summary()),
        }
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

/// A byte range of the input, for error messages.
#[derive(Debug, Clone, Copy)]
struct Span {
    start: usize,
    end: usize,
}

/// What is wrong with a rate text. `const`-friendly: the runtime parser renders it with
/// the offending text, the compile-time parser panics with [`Problem::summary`].
#[derive(Debug, Clone, Copy)]
enum Problem {
    Empty,
    NoPeriod,
    NoPeriodAfterSeparator,
    Negative(&'static str),
    Fraction(&'static str, Span),
    NotNumber(&'static str, Span),
    TooLarge(&'static str, Span),
    NoUnit(Span),
    UnknownUnit(Span),
    ZeroMultiplier,
    PeriodOverflow,
    ZeroLimit,
}

const UNITS_HELP: &str = "expected ms, s, sec, m, min, h, hr, d or their long forms (millisecond(s), second(s), minute(s), hour(s), day(s))";
const ZERO_LIMIT_HELP: &str = "a limit of 0 with a period admits nothing; use a positive limit, or Rate::UNLIMITED (\"unlimited\") for no limit";

impl Problem {
    /// A message without the offending text (usable in `const` panics).
    const fn summary(self) -> &'static str {
        match self {
            Problem::Empty => "invalid rate: the rate is empty; expected e.g. \"100/m\"",
            Problem::NoPeriod => {
                "invalid rate: no period; expected \"N/period\" or \"N per period\", e.g. \"5/10s\""
            }
            Problem::NoPeriodAfterSeparator => {
                "invalid rate: no period after the separator; expected e.g. \"s\", \"10s\" or \"5 minutes\""
            }
            Problem::Negative(_) => "invalid rate: the limit and multiplier must not be negative",
            Problem::Fraction(..) => {
                "invalid rate: numbers must be whole (use a smaller unit, like 1500ms for 1.5s)"
            }
            Problem::NotNumber(..) => "invalid rate: the limit is not a whole number",
            Problem::TooLarge(..) | Problem::PeriodOverflow => {
                "invalid rate: a number is too large (overflow)"
            }
            Problem::NoUnit(_) => "invalid rate: the period has no unit; expected ms, s, m, h or d",
            Problem::UnknownUnit(_) => {
                "invalid rate: unknown unit; expected ms, s, sec, m, min, h, hr, d or their long forms"
            }
            Problem::ZeroMultiplier => "invalid rate: the period multiplier must not be zero",
            Problem::ZeroLimit => {
                "invalid rate: a limit of 0 with a period admits nothing; use a positive limit or \"unlimited\""
            }
        }
    }

    /// The full message, quoting the offending part of `input`.
    fn reason(self, input: &str) -> String {
        let text = |span: Span| input.get(span.start..span.end).unwrap_or("");
        match self {
            Problem::Empty => "the rate is empty; expected e.g. \"100/m\"".into(),
            Problem::NoPeriod => {
                "no period: expected \"N/period\" or \"N per period\", e.g. \"5/10s\"".into()
            }
            Problem::NoPeriodAfterSeparator => {
                "no period after the separator: expected e.g. \"s\", \"10s\" or \"5 minutes\""
                    .into()
            }
            Problem::Negative(what) => format!("the {what} must not be negative"),
            Problem::Fraction(what, span) => format!(
                "the {what} {:?} must be a whole number (use a smaller unit, like 1500ms for 1.5s)",
                text(span)
            ),
            Problem::NotNumber(what, span) => {
                format!("the {what} {:?} is not a whole number", text(span))
            }
            Problem::TooLarge(what, span) => {
                format!("the {what} {} is too large (overflow)", text(span))
            }
            Problem::NoUnit(span) => format!(
                "the period {:?} has no unit; expected ms, s, m, h or d",
                text(span)
            ),
            Problem::UnknownUnit(span) => format!("unknown unit {:?}; {UNITS_HELP}", text(span)),
            Problem::ZeroMultiplier => "the period multiplier must not be zero".into(),
            Problem::PeriodOverflow => "the period is too long (overflow)".into(),
            Problem::ZeroLimit => ZERO_LIMIT_HELP.into(),
        }
    }
}

const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r' | 0x0B | 0x0C)
}

/// `span` of `bytes` without surrounding white space.
const fn trim(bytes: &[u8], mut span: Span) -> Span {
    while span.start < span.end && is_space(bytes[span.start]) {
        span.start += 1;
    }
    while span.end > span.start && is_space(bytes[span.end - 1]) {
        span.end -= 1;
    }
    span
}

/// Whether `bytes[span]` equals `word` (lower-case ASCII) ignoring ASCII case.
const fn eq_word(bytes: &[u8], span: Span, word: &str) -> bool {
    let word = word.as_bytes();
    if span.end - span.start != word.len() {
        return false;
    }
    let mut i = 0;
    while i < word.len() {
        if bytes[span.start + i].to_ascii_lowercase() != word[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// The separator: `(end of limit, start of period)`.
const fn separator(bytes: &[u8], span: Span) -> Option<(usize, usize)> {
    let mut i = span.start;
    while i < span.end {
        if bytes[i] == b'/' {
            return Some((i, i + 1));
        }
        i += 1;
    }
    // The word "per", between white space or digits.
    let mut i = span.start + 1;
    while i + 3 < span.end {
        let word = Span {
            start: i,
            end: i + 3,
        };
        let before = bytes[i - 1];
        let after = bytes[i + 3];
        if eq_word(bytes, word, "per")
            && (is_space(before) || before.is_ascii_digit())
            && (is_space(after) || after.is_ascii_digit())
        {
            return Some((i, i + 3));
        }
        i += 1;
    }
    None
}

const fn number(bytes: &[u8], span: Span, what: &'static str) -> Result<u64, Problem> {
    if span.start < span.end && bytes[span.start] == b'-' {
        return Err(Problem::Negative(what));
    }
    if span.start == span.end {
        return Err(Problem::NotNumber(what, span));
    }
    let mut dots = 0;
    let mut others = 0;
    let mut i = span.start;
    while i < span.end {
        match bytes[i] {
            b'0'..=b'9' => {}
            b'.' => dots += 1,
            _ => others += 1,
        }
        i += 1;
    }
    if others > 0 {
        return Err(Problem::NotNumber(what, span));
    }
    if dots > 0 {
        return Err(Problem::Fraction(what, span));
    }
    let mut value: u64 = 0;
    let mut i = span.start;
    while i < span.end {
        let digit = (bytes[i] - b'0') as u64;
        value = match value.checked_mul(10) {
            Some(v) => match v.checked_add(digit) {
                Some(v) => v,
                None => return Err(Problem::TooLarge(what, span)),
            },
            None => return Err(Problem::TooLarge(what, span)),
        };
        i += 1;
    }
    Ok(value)
}

const fn unit_ms(bytes: &[u8], span: Span) -> Option<u64> {
    const TABLE: [(&str, u64); 17] = [
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
    ];
    if eq_word(bytes, span, "days") {
        return Some(MS_PER_DAY);
    }
    let mut i = 0;
    while i < TABLE.len() {
        if eq_word(bytes, span, TABLE[i].0) {
            return Some(TABLE[i].1);
        }
        i += 1;
    }
    None
}

/// The one grammar, shared by [`Rate::parse`] and [`Rate::parse_const`].
const fn parse_bytes(bytes: &[u8]) -> Result<Rate, Problem> {
    let all = trim(
        bytes,
        Span {
            start: 0,
            end: bytes.len(),
        },
    );
    if all.start == all.end {
        return Err(Problem::Empty);
    }
    if eq_word(bytes, all, "unlimited") {
        return Ok(Rate::UNLIMITED);
    }
    let Some((limit_end, period_start)) = separator(bytes, all) else {
        return Err(Problem::NoPeriod);
    };
    let limit = match number(
        bytes,
        trim(
            bytes,
            Span {
                start: all.start,
                end: limit_end,
            },
        ),
        "limit",
    ) {
        Ok(limit) => limit,
        Err(problem) => return Err(problem),
    };
    let period = trim(
        bytes,
        Span {
            start: period_start,
            end: all.end,
        },
    );
    if period.start == period.end {
        return Err(Problem::NoPeriodAfterSeparator);
    }
    let mut split = period.start;
    while split < period.end && matches!(bytes[split], b'0'..=b'9' | b'-' | b'.') {
        split += 1;
    }
    let multiplier_span = Span {
        start: period.start,
        end: split,
    };
    let unit_span = trim(
        bytes,
        Span {
            start: split,
            end: period.end,
        },
    );
    let multiplier = if split == period.start {
        1
    } else {
        match number(bytes, multiplier_span, "period multiplier") {
            Ok(m) => m,
            Err(problem) => return Err(problem),
        }
    };
    if unit_span.start == unit_span.end {
        return Err(Problem::NoUnit(period));
    }
    let Some(unit) = unit_ms(bytes, unit_span) else {
        return Err(Problem::UnknownUnit(unit_span));
    };
    if multiplier == 0 {
        return Err(Problem::ZeroMultiplier);
    }
    let Some(period_ms) = multiplier.checked_mul(unit) else {
        return Err(Problem::PeriodOverflow);
    };
    Rate::checked(limit, period_ms)
}

fn parse(input: &str) -> Result<Rate> {
    parse_bytes(input.as_bytes()).map_err(|problem| invalid(input, problem.reason(input)))
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
    fn compile_time_parser_agrees_with_runtime_parser() {
        let inputs = [
            "5/10s",
            "100/m",
            "2 per second",
            "10/30 seconds",
            "1000/500ms",
            "10000/d",
            "unlimited",
            "3 PER MINUTE",
            "5per10s",
            "",
            " ",
            "5",
            "5/",
            "5/mins",
            "5/10",
            "5/0s",
            "-5/m",
            "abc/m",
            "1.5/m",
            "5/1.5s",
            "0/m",
            "99999999999999999999/s",
            "5/9999999999999999d",
        ];
        for input in inputs {
            let runtime = Rate::parse(input).ok();
            let compile_time = std::panic::catch_unwind(|| Rate::parse_const(input)).ok();
            assert_eq!(runtime, compile_time, "{input:?}");
        }
        const RATE: Rate = crate::rate!("5/10s");
        assert_eq!(RATE, ok("5/10s"));
    }

    #[test]
    fn conversions() {
        let rate: Rate = "5/s".try_into().unwrap();
        assert_eq!(rate, Rate::try_from(String::from("5/s")).unwrap());
        assert_eq!(rate.period_micros(), 1_000_000);
        assert!((rate.interval_micros() - 200_000.0).abs() < f64::EPSILON);
    }
}

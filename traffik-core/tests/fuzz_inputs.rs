//! Bad input, fuzzed: the rate parser, the stored-state decoders of every built-in
//! strategy, the storage keys and the in-memory backend never panic on anything, and
//! answer sensibly.
//!
//! - Rate text: arbitrary strings, arbitrary bytes (as lossy UTF-8) and near-valid rates
//!   (huge numbers, zeros, unicode digits and white space) parse exactly as a reference
//!   model of the grammar says, and every parsed rate round-trips through its display.
//! - Stored state: arbitrary bytes, at arbitrary times (0 and `u64::MAX` included), with
//!   arbitrary rates and costs, given to `Algorithm::apply` and `Algorithm::peek`. Bytes
//!   the strategy cannot read are judged exactly as a fresh state; readable but forged
//!   bytes still give a coherent decision.
//! - Keys: uids, identities and scopes holding `:`, `{`, `}`, `%`, spaces, CR/LF, NUL and
//!   emoji give distinct keys for distinct inputs (the key decodes back to its parts), with
//!   nothing but visible ASCII in them, and such throttles never share a limit.

use std::future::Future;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use proptest::prelude::*;
use traffik_core::key::throttle_key;
use traffik_core::strategy::{Transition, Write, run, state_key};
use traffik_core::{
    Algorithm, Backend, Error, FixedWindow, Gcra, Identity, InMemoryBackend, LeakyBucket,
    LeakyBucketWithQueue, ManualClock, Rate, SlidingWindowCounter, SlidingWindowLog, Throttle,
    TokenBucket, TokenBucketWithDebt,
};

/// The longest period a rate can have: its microseconds must fit a `u64`.
const MAX_PERIOD_MS: u64 = u64::MAX / 1_000;

/// A realistic time: 2023-11-14, in microseconds since the epoch.
const NOW: u64 = 1_700_000_000_000_000;

/// Polls a future that needs no I/O (the in-memory backend's) to completion.
fn ready<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(value) => value,
        Poll::Pending => panic!("an in-memory operation should complete at once"),
    }
}

// ---------------------------------------------------------------------------------------
// The rate parser
// ---------------------------------------------------------------------------------------

/// The parser's white space (ASCII only: a Unicode space is not white space to it).
fn is_rate_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r' | '\x0B' | '\x0C')
}

/// What must hold of any parse result, whatever the input.
fn check_parse(input: &str) -> Result<(), TestCaseError> {
    match Rate::parse(input) {
        Ok(rate) if rate.is_unlimited() => {
            prop_assert!(
                input
                    .trim_matches(is_rate_space)
                    .eq_ignore_ascii_case("unlimited"),
                "{input:?} parsed as unlimited"
            );
        }
        Ok(rate) => {
            prop_assert!(rate.limit() > 0, "{input:?} gave a zero limit");
            prop_assert!(
                rate.period() >= Duration::from_millis(1),
                "{input:?} gave an empty period"
            );
            prop_assert_eq!(
                u128::from(rate.period_micros()),
                rate.period().as_micros(),
                "{:?}: the period in microseconds overflowed",
                input
            );
            // Only ASCII can make a rate.
            prop_assert!(input.is_ascii(), "{input:?} parsed though not ASCII");
            // The display is a rate text that parses back to the same rate...
            let shown = rate.to_string();
            prop_assert_eq!(Rate::parse(&shown).ok(), Some(rate), "{:?}", shown);
            // ...and the compile-time parser agrees with the runtime one.
            prop_assert_eq!(Rate::parse_const(input), rate);
        }
        Err(Error::InvalidRate {
            input: echoed,
            reason,
        }) => {
            prop_assert_eq!(echoed, input);
            prop_assert!(!reason.is_empty());
        }
        Err(other) => prop_assert!(false, "{input:?}: not an InvalidRate error: {other:?}"),
    }
    Ok(())
}

/// The units of the grammar and their length in milliseconds.
const UNITS: [(&str, u64); 18] = [
    ("ms", 1),
    ("millisecond", 1),
    ("milliseconds", 1),
    ("s", 1_000),
    ("sec", 1_000),
    ("second", 1_000),
    ("seconds", 1_000),
    ("m", 60_000),
    ("min", 60_000),
    ("minute", 60_000),
    ("minutes", 60_000),
    ("h", 3_600_000),
    ("hr", 3_600_000),
    ("hour", 3_600_000),
    ("hours", 3_600_000),
    ("d", 86_400_000),
    ("day", 86_400_000),
    ("days", 86_400_000),
];

/// A number as a rate text may (or may not) hold it.
fn number_text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<u64>().prop_map(|n| n.to_string()),
        2 => (0u64..=100).prop_map(|n| n.to_string()),
        1 => Just("18446744073709551615".to_owned()), // u64::MAX
        1 => Just("18446744073709551616".to_owned()), // u64::MAX + 1
        1 => Just("99999999999999999999999999999".to_owned()),
        1 => Just("0".to_owned()),
        1 => Just("000".to_owned()),
        1 => Just("007".to_owned()),
        1 => Just("-5".to_owned()),
        1 => Just("1.5".to_owned()),
        1 => Just("1e3".to_owned()),
        1 => Just("+5".to_owned()),
        1 => Just("٣".to_owned()),  // ARABIC-INDIC DIGIT THREE
        1 => Just("５".to_owned()),  // FULLWIDTH DIGIT FIVE
        1 => Just("𝟙𝟘".to_owned()), // MATHEMATICAL DOUBLE-STRUCK DIGITS
        1 => Just("1_000".to_owned()),
        1 => Just(String::new()),
    ]
}

/// White space, mostly what the parser accepts.
fn space_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => Just(String::new()),
        2 => Just(" ".to_owned()),
        1 => Just("\t \r\n\x0B\x0C".to_owned()),
        1 => Just("\u{A0}".to_owned()),   // NO-BREAK SPACE: not the parser's white space
        1 => Just("\u{2003}".to_owned()), // EM SPACE
        1 => Just("\u{3000}".to_owned()), // IDEOGRAPHIC SPACE
    ]
}

/// A unit, a wrong one, or one in odd case.
fn unit_text() -> impl Strategy<Value = String> {
    prop_oneof![
        6 => prop::sample::select(UNITS.to_vec()).prop_map(|(unit, _)| unit.to_owned()),
        2 => prop::sample::select(UNITS.to_vec()).prop_map(|(unit, _)| unit.to_uppercase()),
        1 => Just("mins".to_owned()),
        1 => Just("ｓ".to_owned()), // FULLWIDTH s
        1 => Just("sécond".to_owned()),
        1 => Just("ss".to_owned()),
        1 => Just(String::new()),
    ]
}

/// The value of an ASCII decimal number, or `None` if it is not one or exceeds u64.
fn model_number(text: &str) -> Option<u64> {
    if text.is_empty() || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    text.parse::<u128>()
        .ok()
        .and_then(|n| u64::try_from(n).ok())
}

/// What a near-valid rate text must parse to: `(limit, period_ms)`, or `None` for an error.
fn model_rate(
    spaces: &[String; 5],
    limit: &str,
    separator: &str,
    multiplier: &str,
    unit: &str,
) -> Option<(u64, u64)> {
    // Any non-ASCII white space stays inside a token and makes it invalid.
    if spaces.iter().any(|s| !s.chars().all(is_rate_space)) {
        return None;
    }
    // `/`, or the word `per` with white space or a digit on each side.
    if separator.trim_matches(is_rate_space) != "/"
        && !separator
            .trim_matches(is_rate_space)
            .eq_ignore_ascii_case("per")
    {
        return None;
    }
    if separator == "per" {
        let before = format!("{limit}{}", spaces[1]);
        let after = format!("{}{multiplier}{}{unit}", spaces[2], spaces[3]);
        let ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_digit() || is_rate_space(c));
        if !ok(before.chars().last()) || !ok(after.chars().next()) {
            return None;
        }
    }
    let limit = model_number(limit)?;
    let multiplier = if multiplier.is_empty() {
        1
    } else {
        model_number(multiplier)?
    };
    let unit_ms = UNITS
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case(unit))?
        .1;
    let period_ms = multiplier.checked_mul(unit_ms)?;
    period_ms.checked_mul(1_000)?;
    (limit > 0 && multiplier > 0).then_some((limit, period_ms))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Any text at all: no panic, and every success or failure is coherent.
    #[test]
    fn rate_parser_arbitrary_text(input in any::<String>()) {
        check_parse(&input)?;
    }

    /// Text made mostly of the grammar's own characters, to reach deep into the parser.
    #[test]
    fn rate_parser_grammar_soup(
        input in prop::collection::vec(
            prop::sample::select(
                "0123456789/ per PER.-+smhdinuteocrayl\t\n\r\u{A0}٣５é".chars().collect::<Vec<_>>(),
            ),
            0..24,
        ).prop_map(String::from_iter),
    ) {
        check_parse(&input)?;
    }

    /// Arbitrary bytes, read as lossy UTF-8.
    #[test]
    fn rate_parser_lossy_bytes(bytes in prop::collection::vec(any::<u8>(), 0..48)) {
        check_parse(&String::from_utf8_lossy(&bytes))?;
    }

    /// Near-valid rates parse exactly as the grammar says: huge numbers, zeros, signs,
    /// fractions, unicode digits and spaces, wrong units.
    #[test]
    fn rate_parser_near_valid_matches_the_grammar(
        spaces in [space_text(), space_text(), space_text(), space_text(), space_text()],
        limit in number_text(),
        separator in prop::sample::select(vec!["/", "per", " per ", "\tPER\t", " / ", "//", "\\"]),
        multiplier in prop_oneof![3 => Just(String::new()), 2 => number_text()],
        unit in unit_text(),
    ) {
        let input = format!(
            "{}{limit}{}{separator}{}{multiplier}{}{unit}{}",
            spaces[0], spaces[1], spaces[2], spaces[3], spaces[4]
        );
        check_parse(&input)?;
        let expected = model_rate(&spaces, &limit, separator, &multiplier, &unit);
        let parsed = Rate::parse(&input).ok().map(|r| (r.limit(), r.period().as_millis() as u64));
        prop_assert_eq!(parsed, expected, "{:?}", input);
    }
}

#[test]
fn rate_parser_named_edge_cases() {
    let max_period = format!("1/{MAX_PERIOD_MS}ms");
    let over_period = format!("1/{}ms", MAX_PERIOD_MS + 1);
    let cases: Vec<(&str, Option<(u64, u64)>)> = vec![
        ("18446744073709551615/s", Some((u64::MAX, 1_000))),
        ("18446744073709551616/s", None),
        ("1/18446744073709551616s", None),
        ("0/s", None),
        ("00/s", None),
        ("5/0s", None),
        ("5/00ms", None),
        ("-1/s", None),
        ("5/-1s", None),
        ("1.5/s", None),
        ("5/1.5s", None),
        ("٣/s", None),
        ("５/s", None),
        ("5/５s", None),
        ("5/ｓ", None),
        ("\u{A0}5/s", None),
        ("5/s\u{A0}", None),
        ("  5 / 10 s  ", Some((5, 10_000))),
        ("\t5\tper\t10\tseconds\r\n", Some((5, 10_000))),
        ("5per10s", Some((5, 10_000))),
        ("5pers", None),
        ("5/", None),
        ("/s", None),
        ("", None),
        ("   ", None),
        ("\0", None),
        ("5\0/s", None),
        ("5/s\0", None),
        (max_period.as_str(), Some((1, MAX_PERIOD_MS))),
        (over_period.as_str(), None),
        ("1/213503982334601d", None), // days × ms/day overflows u64
    ];
    for (input, expected) in cases {
        let parsed = Rate::parse(input);
        let got = parsed
            .as_ref()
            .ok()
            .map(|r| (r.limit(), r.period().as_millis() as u64));
        assert_eq!(got, expected, "{input:?}: {parsed:?}");
        if let Err(error) = parsed {
            assert!(matches!(error, Error::InvalidRate { .. }), "{input:?}");
            assert!(!error.to_string().is_empty());
        }
    }
    assert!(Rate::parse(" UNLIMITED ").unwrap().is_unlimited());
    assert!(Rate::parse("unlimited!").is_err());
}

// ---------------------------------------------------------------------------------------
// The stored-state decoders
// ---------------------------------------------------------------------------------------

/// Format tags of the built-in states (strategy/codec.rs).
const TAGS: [u8; 8] = [0xF1, 0xA1, 0xA2, 0xB1, 0xB2, 0xC1, 0xC2, 0xD1];

/// A built-in strategy and its optional parameter (burst, debt or queue size).
#[derive(Debug, Clone, Copy)]
enum Kind {
    FixedWindow,
    SlidingWindowLog,
    SlidingWindowCounter,
    TokenBucket(Option<u64>),
    TokenBucketWithDebt(Option<u64>),
    LeakyBucket,
    LeakyBucketWithQueue(Option<u64>),
    Gcra(Option<u64>),
}

impl Kind {
    fn algorithm(self) -> Box<dyn Algorithm> {
        match self {
            Kind::FixedWindow => Box::new(FixedWindow),
            Kind::SlidingWindowLog => Box::new(SlidingWindowLog),
            Kind::SlidingWindowCounter => Box::new(SlidingWindowCounter),
            Kind::TokenBucket(None) => Box::new(TokenBucket::new()),
            Kind::TokenBucket(Some(burst)) => Box::new(TokenBucket::with_burst(burst)),
            Kind::TokenBucketWithDebt(None) => Box::new(TokenBucketWithDebt::new()),
            Kind::TokenBucketWithDebt(Some(debt)) => {
                Box::new(TokenBucketWithDebt::with_max_debt(debt))
            }
            Kind::LeakyBucket => Box::new(LeakyBucket),
            Kind::LeakyBucketWithQueue(None) => Box::new(LeakyBucketWithQueue::new()),
            Kind::LeakyBucketWithQueue(Some(size)) => {
                Box::new(LeakyBucketWithQueue::with_queue_size(size))
            }
            Kind::Gcra(None) => Box::new(Gcra::new()),
            Kind::Gcra(Some(burst)) => Box::new(Gcra::with_burst(burst)),
        }
    }

    fn tag(self) -> u8 {
        match self {
            Kind::FixedWindow => 0xF1,
            Kind::SlidingWindowLog => 0xA1,
            Kind::SlidingWindowCounter => 0xA2,
            Kind::TokenBucket(_) => 0xB1,
            Kind::TokenBucketWithDebt(_) => 0xB2,
            Kind::LeakyBucket => 0xC1,
            Kind::LeakyBucketWithQueue(_) => 0xC2,
            Kind::Gcra(_) => 0xD1,
        }
    }

    /// The number of `u64` fields of a well-formed state (`None`: any even number).
    fn fields(self) -> Option<usize> {
        match self {
            Kind::FixedWindow => Some(1),
            Kind::SlidingWindowLog => None,
            Kind::SlidingWindowCounter => Some(3),
            _ => Some(2),
        }
    }

    /// Whether the strategy promises to judge `bytes` exactly as a fresh state, as its
    /// decoder documents: a wrong tag or length, and the values each decoder rejects.
    fn resets(self, bytes: &[u8], now: u64, rate: &Rate) -> bool {
        if let Kind::SlidingWindowLog = self {
            return sliding_log(bytes).is_none();
        }
        let Some((&tag, rest)) = bytes.split_first() else {
            return true;
        };
        if tag != self.tag() {
            return true;
        }
        let words: Vec<u64> = rest
            .chunks(8)
            .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect();
        let period = u128::from(rate.period_micros());
        let limit = rate.limit();
        match self.fields() {
            Some(n) if rest.len() != 8 * n => return true,
            None if rest.len() % 16 != 0 => return true,
            _ => {}
        }
        match self {
            Kind::FixedWindow | Kind::SlidingWindowCounter | Kind::SlidingWindowLog => false,
            // A level above the bucket's capacity is not one this strategy wrote.
            Kind::TokenBucket(_)
            | Kind::TokenBucketWithDebt(_)
            | Kind::LeakyBucket
            | Kind::LeakyBucketWithQueue(_) => {
                u128::from(words[0]) > u128::from(self.algorithm().capacity(rate)) * period
            }
            // A theoretical arrival time further ahead than the burst tolerance plus one
            // period is not one this strategy wrote.
            Kind::Gcra(burst) => {
                let tat = (u128::from(words[0]) << 64) | u128::from(words[1]);
                let now = u128::from(now) * u128::from(limit);
                let burst = u128::from(burst.unwrap_or(limit));
                let tolerance = (burst * period).saturating_add(period * u128::from(limit));
                tat.saturating_sub(now) > tolerance
            }
        }
    }
}

/// A sliding log's entries (time, cost), read from any of its three forms: every time
/// and cost in 64 bits (`0xA1`), or the oldest time in 64 bits then offsets from it in
/// 32 bits, alone (`0xA3`, costs of 1) or each with a 32-bit cost (`0xA4`). `None` for
/// what the strategy never writes: a wrong tag or length, a cost of 0, entries out of
/// order, a time past 2^64.
fn sliding_log(bytes: &[u8]) -> Option<Vec<(u64, u64)>> {
    let le = |c: &[u8]| {
        let mut word = [0u8; 8];
        word[..c.len()].copy_from_slice(c);
        u64::from_le_bytes(word)
    };
    let (&tag, rest) = bytes.split_first()?;
    let entries: Vec<(u64, u64)> = match tag {
        0xA1 if rest.len() % 16 == 0 => rest
            .chunks(16)
            .map(|c| (le(&c[..8]), le(&c[8..])))
            .collect(),
        0xA3 | 0xA4 => {
            let width = if tag == 0xA3 { 4 } else { 8 };
            if rest.len() < 8 || (rest.len() - 8) % width != 0 {
                return None;
            }
            let base = le(&rest[..8]);
            rest[8..]
                .chunks(width)
                .map(|c| {
                    let cost = if width == 8 { le(&c[4..]) } else { 1 };
                    Some((base.checked_add(le(&c[..4]))?, cost))
                })
                .collect::<Option<_>>()?
        }
        _ => return None,
    };
    let wrote = entries
        .iter()
        .enumerate()
        .all(|(i, &(at, cost))| cost != 0 && (i == 0 || entries[i - 1].0 <= at));
    wrote.then_some(entries)
}

fn kinds() -> impl Strategy<Value = Kind> {
    let param = || {
        prop_oneof![
            3 => Just(None),
            1 => Just(Some(0)),
            2 => (1u64..=50).prop_map(Some),
            1 => Just(Some(u64::MAX)),
            1 => any::<u64>().prop_map(Some),
        ]
    };
    prop_oneof![
        Just(Kind::FixedWindow),
        Just(Kind::SlidingWindowLog),
        Just(Kind::SlidingWindowCounter),
        param().prop_map(Kind::TokenBucket),
        param().prop_map(Kind::TokenBucketWithDebt),
        Just(Kind::LeakyBucket),
        param().prop_map(Kind::LeakyBucketWithQueue),
        param().prop_map(Kind::Gcra),
    ]
}

/// Rates from the everyday to the extreme (a limit of `u64::MAX`, a period whose
/// microseconds barely fit a `u64`).
fn rates() -> impl Strategy<Value = Rate> {
    let rate = |limit: u64, ms: u64| Rate::new(limit, Duration::from_millis(ms)).unwrap();
    prop_oneof![
        4 => (1u64..=1_000, 1u64..=3_600_000).prop_map(move |(l, p)| rate(l, p)),
        1 => Just(rate(1, 1)),
        1 => Just(rate(u64::MAX, 1)),
        1 => Just(rate(1, MAX_PERIOD_MS)),
        1 => Just(rate(u64::MAX, MAX_PERIOD_MS)),
        1 => Just(rate(1 << 40, 86_400_000)),
        2 => (1u64..=u64::MAX, 1u64..=MAX_PERIOD_MS).prop_map(move |(l, p)| rate(l, p)),
    ]
}

/// Times from the epoch to the end of `u64`.
fn times() -> impl Strategy<Value = u64> {
    prop_oneof![
        1 => Just(0u64),
        1 => Just(1u64),
        1 => Just(u64::MAX),
        1 => Just(u64::MAX - 1),
        4 => NOW..NOW + 86_400_000_000,
        2 => any::<u64>(),
    ]
}

/// A little-endian `u64` field with a bias towards edges.
fn field() -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(1u64),
        Just(u64::MAX),
        Just(u64::MAX - 1),
        Just(1u64 << 53),
        Just(1u64 << 63),
        NOW - 10_000_000..NOW + 10_000_000,
        0u64..100,
        any::<u64>(),
        Just(f64::NAN.to_bits()),
        Just(f64::INFINITY.to_bits()),
    ]
}

/// Stored bytes: arbitrary garbage, any tag with any fields, well-formed states of
/// arbitrary values, and truncated or extended ones.
fn state_bytes() -> impl Strategy<Value = Vec<u8>> {
    let tagged = |count: std::ops::Range<usize>| {
        (
            prop::sample::select(TAGS.to_vec()),
            prop::collection::vec(field(), count),
        )
            .prop_map(|(tag, fields)| {
                let mut bytes = vec![tag];
                for f in fields {
                    bytes.extend_from_slice(&f.to_le_bytes());
                }
                bytes
            })
    };
    prop_oneof![
        2 => prop::collection::vec(any::<u8>(), 0..80),
        4 => tagged(0..5),
        1 => tagged(0..40),
        1 => (tagged(1..5), 1usize..8).prop_map(|(mut bytes, cut)| {
            bytes.truncate(bytes.len().saturating_sub(cut));
            bytes
        }),
        1 => (tagged(1..5), prop::collection::vec(any::<u8>(), 1..8)).prop_map(|(mut b, extra)| {
            b.extend(extra);
            b
        }),
    ]
}

/// A well-formed sliding log of arbitrary entries (sorted, positive costs).
fn sorted_log() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec((field(), field()), 0..20).prop_map(|mut entries| {
        entries.sort();
        let mut bytes = vec![0xA1];
        for (at, cost) in entries {
            bytes.extend_from_slice(&at.to_le_bytes());
            bytes.extend_from_slice(&cost.max(1).to_le_bytes());
        }
        bytes
    })
}

/// A sliding log in a compact form (`0xA3`: offsets alone, `0xA4`: offsets and costs),
/// from any base, with offsets and costs of any 32-bit value: sorted or not, costs of 0
/// included.
fn compact_log() -> impl Strategy<Value = Vec<u8>> {
    (
        prop::sample::select(vec![0xA3u8, 0xA4]),
        field(),
        prop::collection::vec((any::<u32>(), any::<u32>()), 0..20),
        any::<bool>(),
    )
        .prop_map(|(tag, base, entries, sort)| {
            let mut entries = entries;
            if sort {
                entries.sort();
            }
            let mut bytes = vec![tag];
            bytes.extend_from_slice(&base.to_le_bytes());
            for (offset, cost) in entries {
                bytes.extend_from_slice(&offset.to_le_bytes());
                if tag == 0xA4 {
                    bytes.extend_from_slice(&cost.to_le_bytes());
                }
            }
            bytes
        })
}

/// A cost the strategy accepts (1 to its capacity), from a raw number.
fn cost_within(capacity: u64, raw: u64) -> u64 {
    1 + raw % capacity
}

/// The checks every transition must pass, for state `bytes` (or none).
fn check_transition(
    kind: Kind,
    bytes: Option<&[u8]>,
    now: u64,
    rate: &Rate,
    cost: u64,
) -> Result<Option<Transition>, TestCaseError> {
    let algorithm = kind.algorithm();
    let capacity = algorithm.capacity(rate);
    let got = algorithm.apply(bytes, now, rate, cost);
    let transition = match got {
        Ok(transition) => transition,
        Err(Error::Configuration(_)) => {
            // Only a bucket whose capacity times period cannot be held in its state.
            let scaled = u128::from(capacity) * u128::from(rate.period_micros());
            prop_assert!(
                scaled > u128::from(u64::MAX),
                "{kind:?} {rate}: configuration error for a representable bucket"
            );
            return Ok(None);
        }
        Err(other) => {
            return Err(TestCaseError::fail(format!(
                "{kind:?} {rate} at {now}: unexpected error {other:?}"
            )));
        }
    };
    let d = transition.decision;
    prop_assert!(
        d.remaining <= d.limit,
        "{kind:?} {rate} at {now} on {bytes:?}: {d:?}"
    );
    prop_assert_eq!(d.limit, algorithm.peek(None, now, rate).limit);
    match &transition.write {
        Write::Put { state, ttl } => {
            prop_assert!(d.allowed, "{kind:?}: a denial wrote state");
            // A state has a lifetime, except at the very end of time, where a sliding
            // log's entry can no longer outlive `now`.
            prop_assert!(
                *ttl > Duration::ZERO || now.checked_add(rate.period_micros()).is_none(),
                "{kind:?} {rate} at {now}: a state without a lifetime"
            );
            // What the strategy writes, it reads back: never taken for corrupt.
            prop_assert!(
                !kind.resets(state, now, rate),
                "{kind:?} {rate} at {now}: wrote state it would discard: {state:?}"
            );
            algorithm.peek(Some(state), now, rate);
        }
        Write::Keep => prop_assert!(!d.allowed, "{kind:?}: an admission stored nothing"),
        Write::Delete => prop_assert!(false, "{kind:?}: a built-in deleted its state"),
    }
    if !d.allowed {
        prop_assert!(d.wait > Duration::ZERO);
        prop_assert!(d.reset >= d.wait);
    }
    Ok(Some(transition))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(3_000))]

    /// Any bytes as any strategy's state, at any time, rate and cost: no panic; bytes the
    /// strategy cannot read give exactly the fresh state's transition and peek; readable
    /// bytes give a coherent transition.
    #[test]
    fn decoders_survive_any_bytes(
        kind in kinds(),
        bytes in prop_oneof![4 => state_bytes(), 1 => sorted_log(), 1 => compact_log()],
        now in times(),
        rate in rates(),
        raw_cost in prop_oneof![0u64..4, any::<u64>()],
    ) {
        let algorithm = kind.algorithm();
        let capacity = algorithm.capacity(&rate);

        // Peek takes no cost: always safe.
        let peek = algorithm.peek(Some(&bytes), now, &rate);
        let fresh_peek = algorithm.peek(None, now, &rate);
        prop_assert!(peek.remaining <= peek.limit || capacity == 0, "{kind:?}: {peek:?}");
        if capacity > 0 {
            prop_assert!(fresh_peek.allowed, "{kind:?} {rate}: a fresh state denies");
        }

        // The rules every strategy shares, through `run`.
        let free = run(algorithm.as_ref(), Some(&bytes), now, &rate, 0).unwrap();
        prop_assert!(free.decision.allowed);
        prop_assert_eq!(free.write, Write::Keep);
        if capacity < u64::MAX {
            let over = run(algorithm.as_ref(), Some(&bytes), now, &rate, capacity + 1);
            prop_assert_eq!(
                over,
                Err(Error::CostExceedsCapacity { cost: capacity + 1, capacity })
            );
        }
        if capacity == 0 {
            return Ok(());
        }

        let cost = cost_within(capacity, raw_cost);
        let fresh = check_transition(kind, None, now, &rate, cost)?;
        if let Some(fresh) = &fresh {
            prop_assert!(fresh.decision.allowed, "{kind:?} {rate}: fresh state denied cost {cost}");
        }
        let got = check_transition(kind, Some(&bytes), now, &rate, cost)?;
        if kind.resets(&bytes, now, &rate) {
            prop_assert_eq!(&got, &fresh, "{:?} {} at {} on {:?}", kind, rate, now, bytes);
            prop_assert_eq!(peek, fresh_peek, "{:?} {} at {} on {:?}", kind, rate, now, bytes);
        }
    }

    /// A state the strategy wrote itself, then mangled by one byte or cut short, never
    /// panics, and a cut state is judged fresh.
    #[test]
    fn decoders_survive_mangled_real_state(
        kind in kinds(),
        rate in rates(),
        now in NOW..NOW + 1_000_000_000,
        raw_costs in prop::collection::vec(any::<u64>(), 1..6),
        flip in (any::<prop::sample::Index>(), any::<u8>()),
        cut in 1usize..9,
    ) {
        let algorithm = kind.algorithm();
        let capacity = algorithm.capacity(&rate);
        prop_assume!(capacity > 0);
        let mut state: Option<Vec<u8>> = None;
        for raw in raw_costs {
            let cost = cost_within(capacity, raw);
            if let Ok(Transition { write: Write::Put { state: s, .. }, .. }) =
                algorithm.apply(state.as_deref(), now, &rate, cost)
            {
                state = Some(s.to_vec());
            }
        }
        let Some(state) = state else { return Ok(()) };

        let mut flipped = state.clone();
        let at = flip.0.index(flipped.len());
        flipped[at] ^= flip.1 | 1;
        check_transition(kind, Some(&flipped), now, &rate, 1)?;

        let cut_state = &state[..state.len().saturating_sub(cut)];
        let fresh = algorithm.apply(None, now, &rate, 1);
        let got = algorithm.apply(Some(cut_state), now, &rate, 1);
        if kind.resets(cut_state, now, &rate) {
            prop_assert_eq!(got, fresh);
        }
    }
}

/// The decoders' documented resets, named: each of these bytes is judged as no state at
/// all, for every strategy.
#[test]
fn unreadable_state_is_exactly_fresh_for_every_strategy() {
    let rate: Rate = "5/10s".parse().unwrap();
    let kinds = [
        Kind::FixedWindow,
        Kind::SlidingWindowLog,
        Kind::SlidingWindowCounter,
        Kind::TokenBucket(None),
        Kind::TokenBucketWithDebt(None),
        Kind::LeakyBucket,
        Kind::LeakyBucketWithQueue(None),
        Kind::Gcra(None),
    ];
    for kind in kinds {
        let algorithm = kind.algorithm();
        let fields = kind.fields().unwrap_or(2);
        let mut cases: Vec<Vec<u8>> = vec![
            vec![],
            vec![kind.tag(); 1 + 8 * fields - 1],
            vec![kind.tag(); 1 + 8 * fields + 1],
            b"42".to_vec(),
            "🦀 not state \r\n\0".as_bytes().to_vec(),
            vec![0u8; 1 << 16],
        ];
        cases.extend(
            TAGS.iter()
                .filter(|&&t| t != kind.tag())
                .map(|&t| [&[t][..], &vec![0u8; 8 * fields]].concat()),
        );
        for time in [0, NOW, u64::MAX] {
            let fresh = algorithm.apply(None, time, &rate, 1).unwrap();
            let fresh_peek = algorithm.peek(None, time, &rate);
            for bytes in &cases {
                assert!(kind.resets(bytes, time, &rate), "{kind:?} {bytes:?}");
                assert_eq!(
                    algorithm.apply(Some(bytes), time, &rate, 1).unwrap(),
                    fresh,
                    "{kind:?} at {time} on {bytes:?}"
                );
                assert_eq!(algorithm.peek(Some(bytes), time, &rate), fresh_peek);
            }
        }
    }
}

/// Forged states at the edges of the number range, which the decoders accept as
/// well-formed: no panic (no overflow), and a coherent answer.
#[test]
fn forged_states_at_the_edges_do_not_overflow() {
    let rates = [
        Rate::new(5, Duration::from_secs(10)).unwrap(),
        Rate::new(u64::MAX, Duration::from_millis(MAX_PERIOD_MS)).unwrap(),
        Rate::new(1, Duration::from_millis(MAX_PERIOD_MS)).unwrap(),
        Rate::new(u64::MAX, Duration::from_millis(1)).unwrap(),
    ];
    let words = |tag: u8, fields: &[u64]| {
        let mut bytes = vec![tag];
        for f in fields {
            bytes.extend_from_slice(&f.to_le_bytes());
        }
        bytes
    };
    let m = u64::MAX;
    let kinds = [
        (Kind::SlidingWindowLog, words(0xA1, &[m, m])),
        (Kind::SlidingWindowLog, words(0xA1, &[m - 1, 1, m, m])),
        (Kind::SlidingWindowLog, words(0xA1, &[0, m, m, 1])),
        (Kind::SlidingWindowCounter, words(0xA2, &[m, m, m])),
        (Kind::SlidingWindowCounter, words(0xA2, &[0, m, m])),
        (Kind::FixedWindow, words(0xF1, &[m])),
        (Kind::TokenBucket(None), words(0xB1, &[m, m])),
        (Kind::TokenBucketWithDebt(Some(m)), words(0xB2, &[m, 0])),
        (Kind::LeakyBucketWithQueue(Some(m)), words(0xC2, &[m, m])),
        (Kind::Gcra(None), words(0xD1, &[m, m])),
        (Kind::Gcra(Some(m)), words(0xD1, &[m >> 1, m])),
    ];
    for rate in &rates {
        for (kind, bytes) in &kinds {
            for now in [0, 1, NOW, m - 1, m] {
                let algorithm = kind.algorithm();
                let capacity = algorithm.capacity(rate);
                algorithm.peek(Some(bytes), now, rate);
                for cost in [1, capacity / 2 + 1, capacity] {
                    let result = check_transition(*kind, Some(bytes), now, rate, cost.max(1));
                    if let Err(failure) = result {
                        panic!("{kind:?} {rate} at {now}, cost {cost}: {failure}");
                    }
                    let result = check_transition(*kind, None, now, rate, cost.max(1));
                    if let Err(failure) = result {
                        panic!("{kind:?} {rate} at {now}, cost {cost}, fresh: {failure}");
                    }
                }
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Keys
// ---------------------------------------------------------------------------------------

/// Text built from the characters that have a meaning in keys, or could break a store.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(
            prop::sample::select(vec![
                ':', '{', '}', '%', ' ', '\r', '\n', '\0', '\t', '\x7F', '😀', 'é', 'a', 'b', '3',
                'A', '/', '*', '[', '\\', '"',
            ]),
            0..8,
        )
        .prop_map(String::from_iter),
        1 => any::<String>(),
        1 => Just("%3A".to_owned()),
        1 => Just("a:b".to_owned()),
    ]
}

/// Undoes the percent-escaping of a key component.
fn unescape(text: &str) -> Option<String> {
    let mut bytes = Vec::with_capacity(text.len());
    let mut rest = text.as_bytes();
    while let Some((&first, tail)) = rest.split_first() {
        if first == b'%' {
            let hex = std::str::from_utf8(tail.get(..2)?).ok()?;
            bytes.push(u8::from_str_radix(hex, 16).ok()?);
            rest = &tail[2..];
        } else {
            bytes.push(first);
            rest = tail;
        }
    }
    String::from_utf8(bytes).ok()
}

/// Reads a key back into `(uid, identity, scope)`: the proof that no two inputs share it.
fn decode_key(key: &str) -> Option<(String, String, String)> {
    let tagged = key.strip_prefix('{')?;
    let (uid, rest) = tagged.split_once(':')?;
    let (identity, rest) = rest.split_once('}')?;
    let scope = match rest {
        "" => "",
        rest => rest.strip_prefix(':').filter(|s| !s.is_empty())?,
    };
    Some((unescape(uid)?, unescape(identity)?, unescape(scope)?))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2_000))]

    /// Every key decodes back to exactly its parts (so distinct parts give distinct
    /// keys), holds only visible ASCII, and its hash tag is exactly `{uid:identity}`.
    #[test]
    fn keys_decode_back_to_their_parts(uid in hostile(), identity in hostile(), scope in hostile()) {
        let key = throttle_key(&uid, &identity, &scope);
        prop_assert!(
            key.bytes().all(|b| (0x21..=0x7E).contains(&b)),
            "a raw byte in {:?}", key
        );
        prop_assert_eq!(
            decode_key(&key),
            Some((uid.clone(), identity.clone(), scope.clone())),
            "{:?}", key
        );
        // The Redis Cluster hash tag is everything up to the first `}`: uid and identity.
        let tag_end = key.find('}').unwrap();
        prop_assert_eq!(key[1..tag_end].matches(':').count(), 1);
        prop_assert!(!key[1..tag_end].contains('{'), "{:?}", key);
    }

    /// Pairs of inputs from a tiny alphabet (so that near-collisions such as `a:b`+`c`
    /// against `a`+`b:c` are common): distinct inputs, distinct keys, and distinct
    /// state keys for a windowed strategy too.
    #[test]
    fn keys_are_injective(
        a in (hostile(), hostile(), hostile()),
        b in (hostile(), hostile(), hostile()),
        tiny in prop::collection::vec(
            (
                prop::sample::select(vec!["", ":", "{", "}", "%", "a", "%3A", " "]),
                prop::sample::select(vec!["", ":", "{", "}", "%", "a", "%3A", " "]),
                prop::sample::select(vec!["", ":", "{", "}", "%", "a", "%3A", ":1"]),
            ),
            2..6,
        ),
    ) {
        let rate: Rate = "5/s".parse().unwrap();
        let key_of = |(u, i, s): &(String, String, String)| throttle_key(u, i, s);
        if a != b {
            prop_assert_ne!(key_of(&a), key_of(&b));
        }
        let mut seen = std::collections::HashMap::new();
        for (u, i, s) in tiny {
            let key = throttle_key(u, i, s);
            let windowed = state_key(&FixedWindow, &key, NOW, &rate);
            if let Some(previous) = seen.insert(windowed.clone(), (u, i, s)) {
                prop_assert_eq!(previous, (u, i, s), "{:?} is shared", windowed);
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// The in-memory backend with hostile keys and namespaces
// ---------------------------------------------------------------------------------------

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    /// Throttles whose uids, client ids and scopes hold key syntax each keep their own
    /// limit on one in-memory backend (in a hostile namespace): nothing aliases.
    #[test]
    fn memory_backend_keeps_hostile_clients_apart(
        namespace in hostile(),
        clients in prop::collection::hash_set(
            (hostile().prop_filter("a uid", |u| !u.is_empty()), hostile(), hostile()),
            1..6,
        ),
        windowed in any::<bool>(),
    ) {
        let backend = InMemoryBackend::builder(namespace.clone())
            .clock(ManualClock::new(NOW))
            .build();
        prop_assert_eq!(backend.namespace(), namespace.as_str());
        let clients: Vec<_> = clients.into_iter().collect();
        let throttle = |uid: &str| {
            let throttle = Throttle::new(uid, "2/m").unwrap();
            if windowed { throttle } else { throttle.strategy(TokenBucket::new()) }
        };
        // Two rounds admitted for everyone, the third denied for everyone: a client that
        // shared another's state would be denied in the second round.
        for round in 0..3 {
            for (uid, id, scope) in &clients {
                let decision = ready(throttle(uid).hit(&Identity::client(id.clone()), scope, &backend))
                    .unwrap();
                prop_assert_eq!(
                    decision.allowed,
                    round < 2,
                    "round {} for {:?}", round, (uid, id, scope)
                );
            }
        }
        prop_assert_eq!(backend.stored_keys(), clients.len());
        // Peeking sees each client's own state.
        for (uid, id, scope) in &clients {
            let peek = ready(throttle(uid).stat(&Identity::client(id.clone()), scope, &backend)).unwrap();
            prop_assert!(!peek.allowed);
        }
        ready(backend.reset()).unwrap();
        prop_assert_eq!(backend.stored_keys(), 0);
    }

    /// The primitives take any key: what is set under one key is read back from it
    /// alone.
    #[test]
    fn memory_backend_primitives_take_any_key(
        keys in prop::collection::hash_set(hostile(), 1..8),
        value in prop::collection::vec(any::<u8>(), 0..32),
    ) {
        let backend = InMemoryBackend::builder("ns: {x} \r\n")
            .clock(ManualClock::new(NOW))
            .build();
        let keys: Vec<_> = keys.into_iter().collect();
        for (n, key) in keys.iter().enumerate() {
            let mut stored = value.clone();
            stored.push(n as u8);
            ready(backend.set(key, &stored, Some(Duration::from_secs(60)))).unwrap();
        }
        for (n, key) in keys.iter().enumerate() {
            let mut expected = value.clone();
            expected.push(n as u8);
            prop_assert_eq!(ready(backend.get(key)).unwrap(), Some(expected));
        }
        // Stored bytes that are not a number are not taken for one.
        for key in &keys {
            let incremented = ready(backend.increment(key, 1));
            let text = ready(backend.get(key)).unwrap().unwrap();
            match incremented {
                Ok(n) => prop_assert_eq!(text, n.to_string().into_bytes()),
                Err(error) => prop_assert!(matches!(error, Error::WrongType { .. }), "{error:?}"),
            }
        }
    }
}

#[test]
fn throttle_uids_must_not_be_empty_but_may_hold_anything_else() {
    assert!(matches!(
        Throttle::new("", "1/s"),
        Err(Error::Configuration(_))
    ));
    let backend = InMemoryBackend::builder("")
        .clock(ManualClock::new(NOW))
        .build();
    for uid in ["\0", "\r\n", "{", "}", ":", " ", "🦀", "%00"] {
        let throttle = Throttle::new(uid, "1/s").unwrap();
        let client = Identity::client(uid);
        assert!(ready(throttle.hit(&client, uid, &backend)).unwrap().allowed);
        assert!(!ready(throttle.hit(&client, uid, &backend)).unwrap().allowed);
    }
    assert_eq!(backend.stored_keys(), 8);
}

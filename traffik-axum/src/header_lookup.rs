//! Finding how often a request carries one header, cheaply for the usual request.
//!
//! `HeaderMap::get_all` hashes the name and probes the table: for a name that is not one
//! of `http`'s standard headers (`X-Forwarded-For`, `X-Real-IP`) that is a pass over the
//! name's bytes and a comparison, about 250 instructions. A request of a few headers is
//! cheaper to scan: a standard header's name differs from a custom one at its tag, and
//! another custom name mostly at its length.

use http::{HeaderMap, HeaderName, HeaderValue};

/// Header maps of up to this many values are scanned; larger ones are looked up.
const SCAN_UP_TO: usize = 16;

/// How often a header appears in a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Occurrence<'h> {
    /// Not at all.
    Absent,
    /// Exactly once, with this value.
    Once(&'h HeaderValue),
    /// More than once: read its lines with `HeaderMap::get_all`, in order.
    Repeated,
}

/// How often `name` appears in `headers`.
pub(crate) fn occurrence<'h>(headers: &'h HeaderMap, name: &HeaderName) -> Occurrence<'h> {
    if headers.len() > SCAN_UP_TO {
        let mut lines = headers.get_all(name).iter();
        return match (lines.next(), lines.next()) {
            (None, _) => Occurrence::Absent,
            (Some(line), None) => Occurrence::Once(line),
            (Some(_), Some(_)) => Occurrence::Repeated,
        };
    }
    let mut values = headers.iter();
    let Some((_, line)) = values.find(|(each, _)| *each == name) else {
        return Occurrence::Absent;
    };
    // The iteration order is not promised: any later value of the name counts.
    if values.any(|(each, _)| each == name) {
        return Occurrence::Repeated;
    }
    Occurrence::Once(line)
}

#[cfg(test)]
mod tests {
    use http::header::{ACCEPT, HOST};

    use super::*;

    const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
    // As long as `x-forwarded-for`, and not it: the scan must compare the bytes.
    const SAME_LENGTH: HeaderName = HeaderName::from_static("x-forwarded-fox");

    /// A map with `others` unrelated headers, then `lines` values of `X-Forwarded-For`
    /// (appended after the first `split` of the others), so that both the scan and the
    /// lookup are exercised.
    fn headers(others: usize, lines: &[&'static str], split: usize) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert(HOST, HeaderValue::from_static("example.test"));
        map.insert(SAME_LENGTH, HeaderValue::from_static("10.9.9.9"));
        let other = |i: usize| {
            HeaderName::from_bytes(format!("x-other-{i}").as_bytes()).expect("a valid name")
        };
        for i in 0..split.min(others) {
            map.append(other(i), HeaderValue::from_static("v"));
        }
        for line in lines {
            map.append(X_FORWARDED_FOR, HeaderValue::from_static(line));
        }
        for i in split.min(others)..others {
            map.append(other(i), HeaderValue::from_static("v"));
        }
        map.append(ACCEPT, HeaderValue::from_static("*/*"));
        map
    }

    #[test]
    fn small_and_large_maps_answer_alike() {
        // 3 + others values in all: up to 16 scanned, past it looked up.
        for others in [0, 5, 13, 14, 40] {
            for split in [0, others / 2, others] {
                let absent = headers(others, &[], split);
                assert_eq!(occurrence(&absent, &X_FORWARDED_FOR), Occurrence::Absent);

                let once = headers(others, &["203.0.113.7"], split);
                let Occurrence::Once(line) = occurrence(&once, &X_FORWARDED_FOR) else {
                    panic!("one line, {others} others");
                };
                assert_eq!(line, "203.0.113.7");

                let twice = headers(others, &["203.0.113.7", "10.0.0.1"], split);
                assert_eq!(
                    occurrence(&twice, &X_FORWARDED_FOR),
                    Occurrence::Repeated,
                    "{others} others"
                );
            }
        }
    }

    #[test]
    fn a_standard_header_is_found_too() {
        let map = headers(2, &[], 1);
        assert_eq!(
            occurrence(&map, &HOST),
            Occurrence::Once(&HeaderValue::from_static("example.test"))
        );
    }
}

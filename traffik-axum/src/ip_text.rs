//! IPv4 addresses read from and written as text on the request path, without the
//! general parsers' and formatters' detours. Both agree with the standard library's
//! `Ipv4Addr` parser and `Display` byte for byte (the parser's proptests below; the
//! writer's in `client_ip`, through `identity_of`).

use std::fmt;
use std::net::Ipv4Addr;

/// An IPv4 address in dotted decimal, as strictly as `str::parse::<Ipv4Addr>` reads it:
/// four decimal octets of one to three digits, each at most 255, without leading zeros,
/// and nothing else. `None` for anything else, an IPv6 address included.
///
/// The standard parser tries IPv4 and then IPv6 through a general reader; one address
/// in a proxy header, on every request, is read here octet by octet, in one pass.
pub(crate) fn parse_ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    // Shorter than "0.0.0.0" or longer than "255.255.255.255": not an address.
    if !(7..=15).contains(&bytes.len()) {
        return None;
    }
    let mut octets = [0u8; 4];
    let mut at = 0;
    for (index, octet) in octets.iter_mut().enumerate() {
        if index > 0 {
            if bytes.get(at) != Some(&b'.') {
                return None;
            }
            at += 1;
        }
        let (value, digits) = read_octet(&bytes[at..])?;
        *octet = value;
        at += digits;
    }
    (at == bytes.len()).then(|| Ipv4Addr::from(octets))
}

/// [`parse_ipv4`], with `bytes` as text: what it accepts is ASCII digits and dots, so the
/// address is its own text without the pass over it that `str::from_utf8` (or
/// `HeaderValue::to_str` over the whole line) would make.
pub(crate) fn parse_ipv4_text(bytes: &[u8]) -> Option<(Ipv4Addr, &str)> {
    let ip = parse_ipv4(bytes)?;
    debug_assert!(bytes.is_ascii());
    // SAFETY: `parse_ipv4` returns an address only when `bytes`, to its last byte
    // (`at == bytes.len()`), is octets of ASCII digits (`read_octet` admits a byte only
    // when `byte - b'0' < 10`) joined by `.`: ASCII throughout, so UTF-8.
    let text = unsafe { std::str::from_utf8_unchecked(bytes) };
    Some((ip, text))
}

/// The decimal octet `bytes` starts with and how many digits it took: one to three
/// digits, no leading zero before another digit, at most 255. A fourth digit is left
/// for the caller, which then finds no `.` (or no end) where it expects one.
fn read_octet(bytes: &[u8]) -> Option<(u8, usize)> {
    let digit = |at: usize| {
        bytes
            .get(at)
            .map(|byte| byte.wrapping_sub(b'0'))
            .filter(|value| *value < 10)
    };
    let first = digit(0)?;
    let Some(second) = digit(1) else {
        return Some((first, 1));
    };
    // "01": a leading zero, rejected as std does.
    if first == 0 {
        return None;
    }
    let Some(third) = digit(2) else {
        return Some((first * 10 + second, 2));
    };
    let value = u16::from(first) * 100 + u16::from(second) * 10 + u16::from(third);
    Some((u8::try_from(value).ok()?, 3))
}

/// Writes `ip` as `Ipv4Addr`'s `Display` does, built in place and written in one call.
pub(crate) fn write_ipv4(ip: Ipv4Addr, out: &mut impl fmt::Write) -> fmt::Result {
    // At most "255.255.255.255".
    let mut text = [0u8; 15];
    let mut len = 0;
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            text[len] = b'.';
            len += 1;
        }
        if octet >= 100 {
            text[len] = b'0' + octet / 100;
            len += 1;
        }
        if octet >= 10 {
            text[len] = b'0' + octet / 10 % 10;
            len += 1;
        }
        text[len] = b'0' + octet % 10;
        len += 1;
    }
    let written = &text[..len];
    debug_assert!(written.is_ascii());
    // SAFETY: every byte written above is `b'.'` or `b'0'` plus a digit below 10: ASCII,
    // so UTF-8. (`str::from_utf8` checked it again at about ten instructions a byte.)
    out.write_str(unsafe { std::str::from_utf8_unchecked(written) })
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    #[test]
    fn reads_what_std_reads_and_nothing_else() {
        for text in [
            "0.0.0.0",
            "255.255.255.255",
            "192.0.2.1",
            "10.0.0.01",
            "01.2.3.4",
            "00.0.0.0",
            "256.0.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "1.2.3.",
            ".1.2.3",
            "1..2.3",
            "1.2.3.4 ",
            " 1.2.3.4",
            "1.2.3.4:80",
            "1.2.3.1000",
            "1.2.3.0255",
            "::1",
            "",
            "+1.2.3.4",
            "1.2.3.4\0",
            "1.2.3.4.",
            "1.2.3.44.",
            "100.200.300.4",
            "1.2.3.2555",
            "255.255.255.2555",
            "1.2.3.25x",
            "1.2..34",
            "0.0.0.00",
            "099.1.1.1",
            "1234.1.1.1",
            "1.2.3.4.5.6.7.8",
            "１.2.3.4",
        ] {
            assert_eq!(
                parse_ipv4(text.as_bytes()),
                text.parse::<Ipv4Addr>().ok(),
                "{text:?}"
            );
        }
    }

    proptest! {
        #[test]
        fn agrees_with_std_on_any_text(text in "[0-9.]{0,20}|[0-9a-f:. x]{0,20}") {
            prop_assert_eq!(parse_ipv4(text.as_bytes()), text.parse::<Ipv4Addr>().ok());
        }

        #[test]
        fn takes_as_text_only_what_std_reads(bytes in prop::collection::vec(any::<u8>(), 0..20)) {
            let std = std::str::from_utf8(&bytes)
                .ok()
                .and_then(|text| Some((text.parse::<Ipv4Addr>().ok()?, text)));
            prop_assert_eq!(parse_ipv4_text(&bytes), std);
        }

        #[test]
        fn reads_every_address_std_writes(octets in any::<[u8; 4]>()) {
            let ip = Ipv4Addr::from(octets);
            prop_assert_eq!(parse_ipv4(ip.to_string().as_bytes()), Some(ip));
        }
    }
}

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
/// in a proxy header, on every request, is read here in one pass over its bytes.
pub(crate) fn parse_ipv4(bytes: &[u8]) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut index = 0;
    let mut value: u16 = 0;
    let mut digits = 0;
    for &byte in bytes {
        match byte {
            b'0'..=b'9' => {
                // A second digit after a leading zero: rejected, as std does.
                if digits == 3 || (digits > 0 && value == 0) {
                    return None;
                }
                value = value * 10 + u16::from(byte - b'0');
                digits += 1;
            }
            b'.' if digits > 0 && index < 3 => {
                octets[index] = u8::try_from(value).ok()?;
                index += 1;
                value = 0;
                digits = 0;
            }
            _ => return None,
        }
    }
    if index != 3 || digits == 0 {
        return None;
    }
    octets[3] = u8::try_from(value).ok()?;
    Some(Ipv4Addr::from(octets))
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
    // Only ASCII digits and dots were written.
    out.write_str(std::str::from_utf8(&text[..len]).map_err(|_| fmt::Error)?)
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
        fn reads_every_address_std_writes(octets in any::<[u8; 4]>()) {
            let ip = Ipv4Addr::from(octets);
            prop_assert_eq!(parse_ipv4(ip.to_string().as_bytes()), Some(ip));
        }
    }
}

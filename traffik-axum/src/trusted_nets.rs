//! The trusted proxies' networks, kept as address bits and masks for the membership test
//! every request behind a proxy makes.
//!
//! `IpNet::contains` works out the network's mask from its prefix length and matches
//! both address families on every call (about 60 instructions for one /32 network); with
//! each network stored as `(bits, mask)` in the address's own family, the test is an AND
//! and a compare per network.

use std::net::IpAddr;

use ipnet::IpNet;

/// Networks, as given (for equality, display and debugging), and as masks per family.
#[derive(Clone, Default)]
pub(crate) struct TrustedNets {
    nets: Vec<IpNet>,
    v4: Vec<Masked<u32>>,
    v6: Vec<Masked<u128>>,
}

/// A network as its address bits under its mask: `ip & mask == bits` for its members.
#[derive(Clone, Copy)]
struct Masked<T> {
    bits: T,
    mask: T,
}

impl TrustedNets {
    /// Adds `net` (already canonical: an IPv4-mapped network given as IPv4).
    pub(crate) fn push(&mut self, net: IpNet) {
        match net {
            IpNet::V4(v4) => self.v4.push(Masked {
                bits: u32::from(v4.network()),
                mask: u32::from(v4.netmask()),
            }),
            IpNet::V6(v6) => self.v6.push(Masked {
                bits: u128::from(v6.network()),
                mask: u128::from(v6.netmask()),
            }),
        }
        self.nets.push(net);
    }

    /// Whether `ip` (canonical: an IPv4-mapped address given as IPv4) is in one of the
    /// networks.
    #[inline]
    pub(crate) fn contains(&self, ip: &IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => {
                let ip = u32::from(*v4);
                self.v4.iter().any(|net| ip & net.mask == net.bits)
            }
            IpAddr::V6(v6) => {
                let ip = u128::from(*v6);
                self.v6.iter().any(|net| ip & net.mask == net.bits)
            }
        }
    }
}

impl Extend<IpNet> for TrustedNets {
    fn extend<I: IntoIterator<Item = IpNet>>(&mut self, nets: I) {
        for net in nets {
            self.push(net);
        }
    }
}

impl PartialEq for TrustedNets {
    fn eq(&self, other: &Self) -> bool {
        self.nets == other.nets
    }
}

impl Eq for TrustedNets {}

impl std::fmt::Debug for TrustedNets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(&self.nets).finish()
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn nets(list: &[&str]) -> TrustedNets {
        let mut nets = TrustedNets::default();
        nets.extend(
            list.iter()
                .map(|net| net.parse::<IpNet>().expect("a network")),
        );
        nets
    }

    #[test]
    fn members_of_each_family_are_found_in_their_own_networks() {
        let trusted = nets(&[
            "10.0.0.0/8",
            "192.0.2.7/32",
            "fd00::/8",
            "::1/128",
            "0.0.0.0/0",
        ]);
        let ip = |text: &str| text.parse::<IpAddr>().expect("an address");
        assert!(trusted.contains(&ip("10.200.3.4")));
        assert!(trusted.contains(&ip("192.0.2.7")));
        assert!(trusted.contains(&ip("fd12::1")));
        assert!(trusted.contains(&ip("::1")));
        // 0.0.0.0/0 takes every IPv4 address and no IPv6 one.
        assert!(trusted.contains(&ip("203.0.113.9")));
        assert!(!trusted.contains(&ip("::2")));
        assert!(!nets(&["10.0.0.0/8"]).contains(&ip("11.0.0.0")));
        assert!(!TrustedNets::default().contains(&ip("127.0.0.1")));
    }

    #[test]
    fn equality_and_debug_are_the_networks_given() {
        assert_eq!(nets(&["10.0.0.0/8"]), nets(&["10.0.0.0/8"]));
        assert_ne!(nets(&["10.0.0.0/8"]), nets(&["10.0.0.0/9"]));
        assert_eq!(
            format!("{:?}", nets(&["10.0.0.0/8", "::1/128"])),
            "[10.0.0.0/8, ::1/128]"
        );
    }

    proptest! {
        /// The masks answer what `IpNet::contains` answers, for any network and address
        /// of either family (host bits set in the network included).
        #[test]
        fn masks_agree_with_ipnet(
            v4 in any::<u32>(), len4 in 0u8..=32, probe4 in any::<u32>(),
            v6 in any::<u128>(), len6 in 0u8..=128, probe6 in any::<u128>(),
            near in any::<bool>(),
        ) {
            let net4 = IpNet::V4(ipnet::Ipv4Net::new(v4.into(), len4).expect("a prefix length"));
            let net6 = IpNet::V6(ipnet::Ipv6Net::new(v6.into(), len6).expect("a prefix length"));
            let mut trusted = TrustedNets::default();
            trusted.extend([net4, net6]);
            // Half the probes share the network's high bits, so members are tried too.
            let probe4 = if near { v4 ^ (probe4 & 0xFF) } else { probe4 };
            let probe6 = if near { v6 ^ (probe6 & 0xFFFF) } else { probe6 };
            for probe in [IpAddr::V4(probe4.into()), IpAddr::V6(probe6.into())] {
                let expected = net4.contains(&probe) || net6.contains(&probe);
                prop_assert_eq!(trusted.contains(&probe), expected, "{}", probe);
            }
        }
    }
}

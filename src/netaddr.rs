//! IP prefixes: the networks a peer's address is counted under by the
//! diversity, connection and rate limits.
//!
//! One type, [`IpPrefix`], at three granularities ([`Granularity`]):
//!
//! | granularity | IPv4 | IPv6 | used for |
//! |---|---|---|---|
//! | [`Granularity::Host`] | /32 | /64 | one address (an IPv6 host owns a /64) |
//! | [`Granularity::Net`] | /24 | /48 | one site or customer network |
//! | [`Granularity::WideNet`] | /16 | /32 | one operator or hosting provider |
//!
//! An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`) is counted as the IPv4
//! address it carries, so that a dual-stack socket cannot give one IPv4
//! peer a second, IPv6 identity. Prefixes of different granularities never
//! compare equal, so one map can count several granularities at once.
//!
//! Plain data, no I/O: part of the core, built without the `node` feature.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// How wide a network an [`IpPrefix`] names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Granularity {
    /// One address: IPv4 /32, IPv6 /64.
    Host,
    /// A network: IPv4 /24, IPv6 /48.
    Net,
    /// A wider network: IPv4 /16, IPv6 /32.
    WideNet,
}

impl Granularity {
    /// The prefix length of this granularity for IPv4 addresses.
    pub const fn v4_len(self) -> u8 {
        match self {
            Granularity::Host => 32,
            Granularity::Net => 24,
            Granularity::WideNet => 16,
        }
    }

    /// The prefix length of this granularity for IPv6 addresses.
    pub const fn v6_len(self) -> u8 {
        match self {
            Granularity::Host => 64,
            Granularity::Net => 48,
            Granularity::WideNet => 32,
        }
    }
}

/// The network an address belongs to at one [`Granularity`]: the address
/// with every bit past the prefix length cleared, and the granularity.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IpPrefix {
    network: IpAddr,
    granularity: Granularity,
}

impl IpPrefix {
    /// The prefix of `ip` at `granularity` (IPv4-mapped IPv6 as IPv4).
    pub fn new(ip: IpAddr, granularity: Granularity) -> Self {
        match ip.to_canonical() {
            IpAddr::V4(v4) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(granularity.v4_len()))
                    .unwrap_or(0);
                Self {
                    network: IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask)),
                    granularity,
                }
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(granularity.v6_len()))
                    .unwrap_or(0);
                Self {
                    network: IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask)),
                    granularity,
                }
            }
        }
    }

    /// The address itself: IPv4 /32, IPv6 /64.
    pub fn host(ip: IpAddr) -> Self {
        Self::new(ip, Granularity::Host)
    }

    /// The address's network: IPv4 /24, IPv6 /48.
    pub fn net(ip: IpAddr) -> Self {
        Self::new(ip, Granularity::Net)
    }

    /// The address's wider network: IPv4 /16, IPv6 /32.
    pub fn wide(ip: IpAddr) -> Self {
        Self::new(ip, Granularity::WideNet)
    }

    /// The first address of the network (host bits cleared).
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The granularity the prefix was taken at.
    pub fn granularity(&self) -> Granularity {
        self.granularity
    }

    /// The prefix length in bits.
    pub fn prefix_len(&self) -> u8 {
        match self.network {
            IpAddr::V4(_) => self.granularity.v4_len(),
            IpAddr::V6(_) => self.granularity.v6_len(),
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 as IPv4) lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Self::new(ip, self.granularity) == *self
    }
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.prefix_len())
    }
}

#[cfg(test)]
mod tests {
    use super::{Granularity, IpPrefix};
    use std::net::IpAddr;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ipv4_at_each_granularity() {
        let a = ip("192.0.2.77");
        assert_eq!(IpPrefix::host(a).to_string(), "192.0.2.77/32");
        assert_eq!(IpPrefix::net(a).to_string(), "192.0.2.0/24");
        assert_eq!(IpPrefix::wide(a).to_string(), "192.0.0.0/16");
        assert_eq!(IpPrefix::net(a).network(), ip("192.0.2.0"));
        assert_eq!(IpPrefix::wide(a).prefix_len(), 16);
        assert_eq!(IpPrefix::wide(a).granularity(), Granularity::WideNet);

        assert_ne!(IpPrefix::host(a), IpPrefix::host(ip("192.0.2.78")));
        assert_eq!(IpPrefix::net(a), IpPrefix::net(ip("192.0.2.1")));
        assert_ne!(IpPrefix::net(a), IpPrefix::net(ip("192.0.3.77")));
        assert_eq!(IpPrefix::wide(a), IpPrefix::wide(ip("192.0.255.255")));
        assert_ne!(IpPrefix::wide(a), IpPrefix::wide(ip("192.1.2.77")));
    }

    #[test]
    fn ipv6_at_each_granularity() {
        let a = ip("2001:db8:1:2:3:4:5:6");
        assert_eq!(IpPrefix::host(a).to_string(), "2001:db8:1:2::/64");
        assert_eq!(IpPrefix::net(a).to_string(), "2001:db8:1::/48");
        assert_eq!(IpPrefix::wide(a).to_string(), "2001:db8::/32");

        // An IPv6 host is its /64: the interface id is the host's to pick.
        assert_eq!(IpPrefix::host(a), IpPrefix::host(ip("2001:db8:1:2::9")));
        assert_ne!(IpPrefix::host(a), IpPrefix::host(ip("2001:db8:1:3::6")));
        assert_eq!(IpPrefix::net(a), IpPrefix::net(ip("2001:db8:1:ffff::1")));
        assert_ne!(IpPrefix::net(a), IpPrefix::net(ip("2001:db8:2:2::6")));
        assert_eq!(IpPrefix::wide(a), IpPrefix::wide(ip("2001:db8:ffff::1")));
        assert_ne!(IpPrefix::wide(a), IpPrefix::wide(ip("2001:db9:1:2::6")));
    }

    #[test]
    fn ipv4_mapped_ipv6_counts_as_ipv4() {
        for g in [Granularity::Host, Granularity::Net, Granularity::WideNet] {
            assert_eq!(
                IpPrefix::new(ip("::ffff:192.0.2.77"), g),
                IpPrefix::new(ip("192.0.2.77"), g),
                "{g:?}"
            );
        }
        assert_eq!(
            IpPrefix::net(ip("::ffff:10.1.2.3")).to_string(),
            "10.1.2.0/24"
        );
        // Only the mapped form: an ordinary IPv6 address whose low bits
        // spell an IPv4 address is IPv6.
        assert_ne!(
            IpPrefix::host(ip("2001:db8::c000:24d")),
            IpPrefix::host(ip("192.0.2.77"))
        );
    }

    #[test]
    fn families_and_granularities_never_collide() {
        // The same bits at different lengths or in different families are
        // different networks, so one map may hold them all.
        let v4 = ip("0.0.0.0");
        let v6 = ip("::");
        let all: Vec<IpPrefix> = [Granularity::Host, Granularity::Net, Granularity::WideNet]
            .into_iter()
            .flat_map(|g| [IpPrefix::new(v4, g), IpPrefix::new(v6, g)])
            .collect();
        for (i, a) in all.iter().enumerate() {
            for b in all.iter().skip(i + 1) {
                assert_ne!(a, b);
            }
        }
    }

    #[test]
    fn contains_matches_the_prefix_of_the_same_granularity() {
        let net = IpPrefix::wide(ip("100.64.7.9"));
        assert!(net.contains(ip("100.64.200.1")));
        assert!(net.contains(ip("::ffff:100.64.0.1")));
        assert!(!net.contains(ip("100.65.0.1")));
        assert!(!net.contains(ip("2001:db8::1")));
        let host = IpPrefix::host(ip("2001:db8:1:2::1"));
        assert!(host.contains(ip("2001:db8:1:2:ffff::1")));
        assert!(!host.contains(ip("2001:db8:1:3::1")));
    }
}

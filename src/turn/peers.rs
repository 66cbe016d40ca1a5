//! Which peers a relay reaches: the peer filter, sans-IO.
//!
//! A TURN relay sends where its clients ask. Left open, a client on the
//! Internet could reach what only the relay's host reaches: services on
//! the host itself (bound to 0.0.0.0 or to loopback), the private
//! networks behind it, link-local neighbours. [`PeerFilter::check`]
//! decides, for every peer of a CreatePermission, a ChannelBind, and
//! every datagram relayed either way, in this order (the first rule that
//! matches decides):
//!
//! 1. **Never:** port 0, an unspecified address (`0.0.0.0`, `::`), and
//!    the TURN listener's own address and port. No setting changes these.
//! 2. **The operator's allowed ranges** (`--turn-allowed-peers`,
//!    `turn_allowed_peers`): allowed, whatever the rules below say.
//! 3. **The operator's denied ranges** (`--turn-denied-peers`,
//!    `turn_denied_peers`): refused.
//! 4. **A relayed address of this same server** (another allocation's
//!    socket, which the server tells the filter): allowed, so that two
//!    clients of one relay reach each other through it (ICE pairs two
//!    relayed candidates of one server); the datagram ends in that
//!    allocation, which needs its own permission to deliver it.
//! 5. **The built-in refusals:** an address of the relay's own host (any
//!    local interface address, re-read by the I/O shell), loopback
//!    (127/8, ::1), RFC 1918 (10/8, 172.16/12, 192.168/16), shared
//!    address space (100.64/10, RFC 6598), link-local (169.254/16,
//!    fe80::/10), unique local (fc00::/7), multicast (224/4, ff00::/8),
//!    the limited broadcast (255.255.255.255).
//! 6. Anything else: allowed.
//!
//! This is coturn's meaning of `allowed-peer-ip` and `denied-peer-ip`:
//! an address in both the allowed and the denied ranges is allowed (so
//! one can deny a range but a few addresses in it), and the built-in
//! refusals are as if listed among the denied ranges. An IPv4-mapped
//! IPv6 address (`::ffff:a.b.c.d`) is judged as the IPv4 address it
//! carries, everywhere (ranges, host addresses, the operator's lists).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::str::FromStr;

/// Ranges in each of the operator's lists, at most.
pub const MAX_PEER_RULES: usize = 256;
/// Addresses of the relay's own host remembered, at most (a host with
/// more interface addresses has the first ones refused; the rest still
/// fall under the built-in ranges unless allowed).
pub const MAX_LOCAL_ADDRESSES: usize = 1024;

/// An IP range in CIDR notation (`10.0.0.0/8`, `2001:db8::/32`; a bare
/// address is one host). Host bits must be zero; an IPv4-mapped IPv6
/// range of at least /96 is stored as the IPv4 range it carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Cidr {
    network: IpAddr,
    len: u8,
}

impl Cidr {
    /// The range of `network` / `len`: `Err` when `len` is longer than
    /// the family allows or `network` has host bits set.
    pub fn new(network: IpAddr, len: u8) -> Result<Self, String> {
        let (network, len) = match network {
            IpAddr::V6(v6) if len >= 96 => match v6.to_ipv4_mapped() {
                Some(v4) => (IpAddr::V4(v4), len - 96),
                None => (network, len),
            },
            _ => (network, len),
        };
        let max = if network.is_ipv4() { 32 } else { 128 };
        if len > max {
            return Err(format!(
                "prefix length /{len} is longer than an {} address (/{max})",
                if network.is_ipv4() { "IPv4" } else { "IPv6" }
            ));
        }
        let cidr = Cidr { network, len };
        let masked = cidr.masked(network);
        if masked != network {
            return Err(format!(
                "host bits are set (the range /{len} starts at {masked}: write {masked}/{len})"
            ));
        }
        Ok(cidr)
    }

    /// The first address of the range.
    pub fn network(&self) -> IpAddr {
        self.network
    }

    /// The prefix length.
    pub fn prefix_len(&self) -> u8 {
        self.len
    }

    /// Whether the range is one address (/32, /128).
    pub fn is_host(&self) -> bool {
        self.len == if self.network.is_ipv4() { 32 } else { 128 }
    }

    /// `ip` with the bits past this range's length cleared.
    fn masked(&self, ip: IpAddr) -> IpAddr {
        match ip {
            IpAddr::V4(v4) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(v4) & mask))
            }
            IpAddr::V6(v6) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(v6) & mask))
            }
        }
    }

    /// Whether `ip` (IPv4-mapped IPv6 as IPv4) is in the range.
    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        ip.is_ipv4() == self.network.is_ipv4() && self.masked(ip) == self.network
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.network, self.len)
    }
}

impl FromStr for Cidr {
    type Err = String;

    /// Parses `ADDR/LEN` or a bare `ADDR`; the error names the value.
    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let bad =
            |why: String| format!("{text:?} is not an IP range (CIDR, e.g. 10.0.0.0/8): {why}");
        let (addr, len) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let ip: IpAddr = addr
            .parse()
            .map_err(|_| bad(format!("{addr:?} is not an IP address")))?;
        let len = match len {
            None => {
                if ip.is_ipv4() {
                    32
                } else {
                    128
                }
            }
            Some(l) => l
                .parse::<u8>()
                .map_err(|_| bad(format!("{l:?} is not a prefix length")))?,
        };
        Cidr::new(ip, len).map_err(bad)
    }
}

/// Parses a comma-separated list of ranges (`10.0.0.0/8,fc00::/7`); the
/// error names the bad value.
pub fn parse_cidr_list(s: &str) -> Result<Vec<Cidr>, String> {
    s.split(',')
        .filter(|part| !part.trim().is_empty())
        .map(str::parse)
        .collect()
}

/// Why a peer is refused (see the module docs for the order).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Port 0.
    PortZero,
    /// `0.0.0.0` or `::`.
    Unspecified,
    /// The TURN listener itself.
    Listener,
    /// In one of the operator's denied ranges.
    Denied(Cidr),
    /// An address of the relay's own host.
    OwnHost,
    /// Loopback (127/8, ::1).
    Loopback,
    /// RFC 1918 private (10/8, 172.16/12, 192.168/16).
    Private,
    /// Shared address space (100.64/10, carrier-grade NAT, RFC 6598).
    SharedAddressSpace,
    /// Link-local (169.254/16, fe80::/10).
    LinkLocal,
    /// Unique local (fc00::/7).
    UniqueLocal,
    /// Multicast (224/4, ff00::/8).
    Multicast,
    /// The limited broadcast address, 255.255.255.255.
    Broadcast,
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::PortZero => f.write_str("port 0"),
            Refusal::Unspecified => f.write_str("an unspecified address"),
            Refusal::Listener => f.write_str("the TURN listener itself"),
            Refusal::Denied(c) => write!(f, "in the denied range {c}"),
            Refusal::OwnHost => f.write_str("an address of the relay's own host"),
            Refusal::Loopback => f.write_str("loopback"),
            Refusal::Private => f.write_str("a private (RFC 1918) address"),
            Refusal::SharedAddressSpace => f.write_str("shared address space (100.64/10)"),
            Refusal::LinkLocal => f.write_str("link-local"),
            Refusal::UniqueLocal => f.write_str("unique local (fc00::/7)"),
            Refusal::Multicast => f.write_str("multicast"),
            Refusal::Broadcast => f.write_str("broadcast"),
        }
    }
}

/// The built-in refusal of `ip` (rule 5 without the host's own
/// addresses), if any; IPv4-mapped addresses judged as IPv4.
pub fn builtin_refusal(ip: IpAddr) -> Option<Refusal> {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, _, _] = v4.octets();
            if v4.is_loopback() {
                Some(Refusal::Loopback)
            } else if v4.is_private() {
                Some(Refusal::Private)
            } else if a == 100 && (b & 0xC0) == 64 {
                Some(Refusal::SharedAddressSpace)
            } else if v4.is_link_local() {
                Some(Refusal::LinkLocal)
            } else if v4.is_multicast() {
                Some(Refusal::Multicast)
            } else if v4.is_broadcast() {
                Some(Refusal::Broadcast)
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let first = v6.segments().first().copied().unwrap_or(0);
            if v6.is_loopback() {
                Some(Refusal::Loopback)
            } else if first & 0xFE00 == 0xFC00 {
                Some(Refusal::UniqueLocal)
            } else if first & 0xFFC0 == 0xFE80 {
                Some(Refusal::LinkLocal)
            } else if v6.is_multicast() {
                Some(Refusal::Multicast)
            } else {
                None
            }
        }
    }
}

/// The peer filter: the operator's ranges and the host's own addresses
/// (see the module docs for the rules).
#[derive(Debug, Clone, Default)]
pub struct PeerFilter {
    allowed: Vec<Cidr>,
    denied: Vec<Cidr>,
    local: Vec<IpAddr>,
}

impl PeerFilter {
    /// A filter with the operator's `allowed` and `denied` ranges (at
    /// most [`MAX_PEER_RULES`] each) and no host addresses yet.
    pub fn new(allowed: Vec<Cidr>, denied: Vec<Cidr>) -> Result<Self, String> {
        for (name, list) in [("allowed", &allowed), ("denied", &denied)] {
            if list.len() > MAX_PEER_RULES {
                return Err(format!(
                    "{} {name} peer ranges: at most {MAX_PEER_RULES}",
                    list.len()
                ));
            }
        }
        Ok(PeerFilter {
            allowed,
            denied,
            local: Vec::new(),
        })
    }

    /// The operator's allowed ranges.
    pub fn allowed(&self) -> &[Cidr] {
        &self.allowed
    }

    /// The operator's denied ranges.
    pub fn denied(&self) -> &[Cidr] {
        &self.denied
    }

    /// Replaces the addresses of the relay's own host (IPv4-mapped ones
    /// kept as IPv4, duplicates and unspecified addresses dropped, at
    /// most [`MAX_LOCAL_ADDRESSES`]).
    pub fn set_local_addresses(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        let mut local: Vec<IpAddr> = addrs
            .into_iter()
            .map(|ip| ip.to_canonical())
            .filter(|ip| !ip.is_unspecified())
            .take(MAX_LOCAL_ADDRESSES.saturating_mul(4))
            .collect();
        local.sort_unstable();
        local.dedup();
        local.truncate(MAX_LOCAL_ADDRESSES);
        self.local = local;
    }

    /// The addresses of the relay's own host, as last set.
    pub fn local_addresses(&self) -> &[IpAddr] {
        &self.local
    }

    /// Whether the relay listening on `listen` may send to (and receive
    /// from) `peer`; `own_relay` says whether `peer` is a relayed address
    /// of this server (rule 4). `Err` names the rule that refused it.
    pub fn check(
        &self,
        peer: SocketAddr,
        listen: SocketAddr,
        own_relay: bool,
    ) -> Result<(), Refusal> {
        let ip = peer.ip().to_canonical();
        if peer.port() == 0 {
            return Err(Refusal::PortZero);
        }
        if ip.is_unspecified() {
            return Err(Refusal::Unspecified);
        }
        if ip == listen.ip().to_canonical() && peer.port() == listen.port() {
            return Err(Refusal::Listener);
        }
        if self.allowed.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        if let Some(c) = self.denied.iter().find(|c| c.contains(ip)) {
            return Err(Refusal::Denied(*c));
        }
        if own_relay {
            return Ok(());
        }
        if ip == listen.ip().to_canonical() || self.local.binary_search(&ip).is_ok() {
            return Err(Refusal::OwnHost);
        }
        match builtin_refusal(ip) {
            Some(r) => Err(r),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn cidrs(s: &str) -> Vec<Cidr> {
        parse_cidr_list(s).unwrap()
    }

    const PUBLIC_LISTEN: &str = "192.0.2.1:3478";

    fn judge(filter: &PeerFilter, peer: &str) -> Result<(), Refusal> {
        filter.check(sa(peer), sa(PUBLIC_LISTEN), false)
    }

    #[test]
    fn cidr_parsing_and_errors_name_the_value() {
        let c: Cidr = "10.0.0.0/8".parse().unwrap();
        assert_eq!((c.network(), c.prefix_len()), (ip("10.0.0.0"), 8));
        assert_eq!(c.to_string(), "10.0.0.0/8");
        let host: Cidr = "198.51.100.7".parse().unwrap();
        assert!(host.is_host());
        assert_eq!(host.to_string(), "198.51.100.7/32");
        let v6: Cidr = " fc00::/7 ".parse().unwrap();
        assert_eq!(v6.to_string(), "fc00::/7");
        assert!("::1".parse::<Cidr>().unwrap().is_host());
        assert_eq!("0.0.0.0/0".parse::<Cidr>().unwrap().prefix_len(), 0);
        // An IPv4-mapped range is stored as IPv4.
        let mapped: Cidr = "::ffff:10.0.0.0/104".parse().unwrap();
        assert_eq!(mapped.to_string(), "10.0.0.0/8");
        for (bad, says) in [
            ("10.0.0/8", "\"10.0.0\" is not an IP address"),
            ("10.0.0.0/33", "longer than an IPv4 address"),
            ("::/129", "longer than an IPv6 address"),
            ("10.1.2.3/8", "write 10.0.0.0/8"),
            ("10.0.0.0/x", "\"x\" is not a prefix length"),
            ("10.0.0.0/-1", "not a prefix length"),
            ("example.org", "not an IP address"),
            ("", "not an IP address"),
        ] {
            let e = bad.parse::<Cidr>().unwrap_err();
            assert!(e.contains(&format!("{:?}", bad.trim())), "{bad}: {e}");
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert_eq!(
            parse_cidr_list("127.0.0.0/8, ::1/128,").unwrap(),
            vec!["127.0.0.0/8".parse().unwrap(), "::1".parse().unwrap()]
        );
        let e = parse_cidr_list("127.0.0.0/8,10.0.0.0/99").unwrap_err();
        assert!(e.contains("\"10.0.0.0/99\""), "{e}");
    }

    #[test]
    fn cidr_contains_ipv4_ipv6_and_mapped() {
        let c: Cidr = "172.16.0.0/12".parse().unwrap();
        assert!(c.contains(ip("172.16.0.0")));
        assert!(c.contains(ip("172.31.255.255")));
        assert!(!c.contains(ip("172.32.0.0")));
        assert!(!c.contains(ip("172.15.255.255")));
        assert!(c.contains(ip("::ffff:172.20.1.1")), "mapped as IPv4");
        assert!(!c.contains(ip("2001:db8::1")), "another family");
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        assert!(!all.contains(ip("::2")));
        let v6: Cidr = "2001:db8::/32".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:ffff::1")));
        assert!(!v6.contains(ip("2001:db9::1")));
    }

    /// Every built-in range, its edges, and its IPv4-mapped form.
    #[test]
    fn every_builtin_range_is_refused_and_its_neighbours_are_not() {
        let f = PeerFilter::default();
        let refused = [
            ("127.0.0.1", Refusal::Loopback),
            ("127.255.255.254", Refusal::Loopback),
            ("::1", Refusal::Loopback),
            ("10.0.0.1", Refusal::Private),
            ("10.255.255.255", Refusal::Private),
            ("172.16.0.1", Refusal::Private),
            ("172.31.255.254", Refusal::Private),
            ("192.168.0.1", Refusal::Private),
            ("192.168.255.254", Refusal::Private),
            ("100.64.0.1", Refusal::SharedAddressSpace),
            ("100.127.255.254", Refusal::SharedAddressSpace),
            ("169.254.0.1", Refusal::LinkLocal),
            ("169.254.255.254", Refusal::LinkLocal),
            ("fe80::1", Refusal::LinkLocal),
            ("febf:ffff::1", Refusal::LinkLocal),
            ("fc00::1", Refusal::UniqueLocal),
            ("fdff:ffff::1", Refusal::UniqueLocal),
            ("224.0.0.1", Refusal::Multicast),
            ("239.255.255.250", Refusal::Multicast),
            ("ff02::1", Refusal::Multicast),
            ("ff0e::1", Refusal::Multicast),
            ("255.255.255.255", Refusal::Broadcast),
        ];
        for (addr, why) in refused {
            let v4 = ip(addr).is_ipv4();
            let peer = if v4 {
                format!("{addr}:5000")
            } else {
                format!("[{addr}]:5000")
            };
            assert_eq!(judge(&f, &peer), Err(why), "{addr}");
            assert_eq!(builtin_refusal(ip(addr)), Some(why), "{addr}");
            if v4 {
                let mapped = format!("[::ffff:{addr}]:5000");
                assert_eq!(judge(&f, &mapped), Err(why), "{mapped}");
            }
        }
        for addr in [
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "223.255.255.255",
            "198.51.100.9",
            "[2001:db8::2]",
            "[fbff:ffff::1]",
            "[fe00::1]",
            "[fec0::1]",
            "[::ffff:8.8.8.8]",
        ] {
            assert_eq!(judge(&f, &format!("{addr}:5000")), Ok(()), "{addr}");
        }
    }

    #[test]
    fn never_port_zero_unspecified_or_the_listener_whatever_is_allowed() {
        let f = PeerFilter::new(cidrs("0.0.0.0/0,::/0"), vec![]).unwrap();
        assert_eq!(judge(&f, "198.51.100.9:0"), Err(Refusal::PortZero));
        assert_eq!(judge(&f, "0.0.0.0:9"), Err(Refusal::Unspecified));
        assert_eq!(judge(&f, "[::]:9"), Err(Refusal::Unspecified));
        assert_eq!(judge(&f, "[::ffff:0.0.0.0]:9"), Err(Refusal::Unspecified));
        assert_eq!(judge(&f, PUBLIC_LISTEN), Err(Refusal::Listener));
        assert_eq!(
            judge(&f, "[::ffff:192.0.2.1]:3478"),
            Err(Refusal::Listener),
            "the mapped form of the listener"
        );
        // Another port of the listening IP: allowed only because all is.
        assert_eq!(judge(&f, "192.0.2.1:5060"), Ok(()));
    }

    #[test]
    fn the_hosts_own_addresses_are_refused() {
        let mut f = PeerFilter::default();
        // The listening IP counts even before any interface list.
        assert_eq!(judge(&f, "192.0.2.1:5060"), Err(Refusal::OwnHost));
        assert_eq!(judge(&f, "198.51.100.20:22"), Ok(()));
        f.set_local_addresses([
            ip("198.51.100.20"),
            ip("2001:db8::20"),
            ip("::ffff:203.0.113.5"),
            ip("0.0.0.0"),
            ip("198.51.100.20"),
        ]);
        assert_eq!(f.local_addresses().len(), 3, "{:?}", f.local_addresses());
        assert_eq!(judge(&f, "198.51.100.20:22"), Err(Refusal::OwnHost));
        assert_eq!(
            judge(&f, "[::ffff:198.51.100.20]:22"),
            Err(Refusal::OwnHost)
        );
        assert_eq!(judge(&f, "[2001:db8::20]:22"), Err(Refusal::OwnHost));
        assert_eq!(judge(&f, "203.0.113.5:22"), Err(Refusal::OwnHost));
        assert_eq!(judge(&f, "198.51.100.21:22"), Ok(()));
        // A new list replaces the old one.
        f.set_local_addresses([ip("198.51.100.21")]);
        assert_eq!(judge(&f, "198.51.100.20:22"), Ok(()));
        assert_eq!(judge(&f, "198.51.100.21:22"), Err(Refusal::OwnHost));
        // Bounded.
        f.set_local_addresses(
            (0..=u16::MAX).map(|i| IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, i))),
        );
        assert_eq!(f.local_addresses().len(), MAX_LOCAL_ADDRESSES);
    }

    #[test]
    fn a_relayed_address_of_this_server_is_reachable_unless_denied() {
        let f = PeerFilter::new(vec![], cidrs("192.0.2.1/32")).unwrap();
        let relayed = sa("192.0.2.1:50000");
        let listen = sa(PUBLIC_LISTEN);
        assert_eq!(
            PeerFilter::default().check(relayed, listen, true),
            Ok(()),
            "another allocation's socket"
        );
        assert_eq!(
            PeerFilter::default().check(relayed, listen, false),
            Err(Refusal::OwnHost),
            "any other port of the host"
        );
        assert_eq!(
            f.check(relayed, listen, true),
            Err(Refusal::Denied(cidrs("192.0.2.1")[0])),
            "the operator's denial wins"
        );
        // Even a relayed socket cannot be the listener, or port 0.
        assert_eq!(
            PeerFilter::default().check(listen, listen, true),
            Err(Refusal::Listener)
        );
    }

    /// coturn's precedence: allowed over denied over the built-in
    /// refusals over the built-in allow.
    #[test]
    fn precedence_allowed_over_denied_over_builtin() {
        // The operator allows loopback: built-in refusal overridden.
        let f = PeerFilter::new(cidrs("127.0.0.0/8"), vec![]).unwrap();
        assert_eq!(judge(&f, "127.0.0.1:9000"), Ok(()));
        assert_eq!(judge(&f, "[::ffff:127.0.0.1]:9000"), Ok(()), "mapped");
        assert_eq!(
            judge(&f, "[::1]:9000"),
            Err(Refusal::Loopback),
            "not IPv6 ::1"
        );
        assert_eq!(judge(&f, "10.0.0.1:9000"), Err(Refusal::Private));
        // Allowed overrides the host's own addresses too.
        let mut f = PeerFilter::new(cidrs("198.51.100.20/32"), vec![]).unwrap();
        f.set_local_addresses([ip("198.51.100.20")]);
        assert_eq!(judge(&f, "198.51.100.20:9"), Ok(()));
        // Denied wins over the built-in allow.
        let f = PeerFilter::new(vec![], cidrs("198.51.100.0/24,2001:db8::/32")).unwrap();
        let denied = cidrs("198.51.100.0/24")[0];
        assert_eq!(judge(&f, "198.51.100.9:9"), Err(Refusal::Denied(denied)));
        assert_eq!(
            judge(&f, "[::ffff:198.51.100.9]:9"),
            Err(Refusal::Denied(denied))
        );
        assert!(matches!(
            judge(&f, "[2001:db8::9]:9"),
            Err(Refusal::Denied(_))
        ));
        assert_eq!(judge(&f, "203.0.113.9:9"), Ok(()));
        // In both: allowed (coturn: deny a range but a few addresses).
        let f = PeerFilter::new(cidrs("10.1.2.3"), cidrs("10.0.0.0/8")).unwrap();
        assert_eq!(judge(&f, "10.1.2.3:9"), Ok(()));
        assert_eq!(
            judge(&f, "10.1.2.4:9"),
            Err(Refusal::Denied(cidrs("10.0.0.0/8")[0])),
            "the operator's denial is named before the built-in one"
        );
        // A denied range inside an allowed one: allowed still wins.
        let f = PeerFilter::new(cidrs("0.0.0.0/0"), cidrs("8.8.8.0/24")).unwrap();
        assert_eq!(judge(&f, "8.8.8.8:53"), Ok(()));
    }

    #[test]
    fn the_operators_lists_are_bounded() {
        let many: Vec<Cidr> = (0..=MAX_PEER_RULES)
            .map(|i| {
                Cidr::new(
                    IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, i as u16, 0, 0, 0, 0, 0)),
                    48,
                )
                .unwrap()
            })
            .collect();
        let e = PeerFilter::new(many.clone(), vec![]).unwrap_err();
        assert!(e.contains("allowed") && e.contains("at most 256"), "{e}");
        let e = PeerFilter::new(vec![], many).unwrap_err();
        assert!(e.contains("denied"), "{e}");
    }
}

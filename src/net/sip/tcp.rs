//! The SIP listener's TCP connections, by peer: the send queue of each
//! and how many each IP address holds, bounded in all
//! ([`SIP_MAX_TCP_CONNECTIONS`]) and per address
//! ([`SIP_MAX_TCP_CONNECTIONS_PER_IP`]), inbound and outbound together.
//!
//! A connection over either bound is refused (the caller closes it at
//! once); refusals are counted. Each connection has an id, so that the
//! task of a connection that ended removes its own entry, never that of
//! a newer connection with the same peer.

#[cfg(doc)]
use crate::limits::{SIP_MAX_TCP_CONNECTIONS, SIP_MAX_TCP_CONNECTIONS_PER_IP};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};

/// Why a connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Refusal {
    /// As many connections as the listener holds are open.
    Full,
    /// As many connections as one address may hold are open with its
    /// address.
    PerAddress,
    /// A connection with this peer (address and port) is open already.
    Exists,
}

/// The open connections (see the module docs). `S` is what sends to a
/// connection (its queue's sender).
#[derive(Debug)]
pub(super) struct TcpPeers<S> {
    max: usize,
    max_per_ip: usize,
    senders: HashMap<SocketAddr, (u64, S)>,
    per_ip: HashMap<IpAddr, usize>,
    next_id: u64,
    refused_full: u64,
    refused_per_address: u64,
}

/// The address a peer counts against: IPv4-mapped IPv6 counts as IPv4.
fn ip_of(peer: &SocketAddr) -> IpAddr {
    peer.ip().to_canonical()
}

impl<S: Clone> TcpPeers<S> {
    /// No connections; at most `max` in all and `max_per_ip` per address.
    pub(super) fn new(max: usize, max_per_ip: usize) -> Self {
        Self {
            max,
            max_per_ip,
            senders: HashMap::new(),
            per_ip: HashMap::new(),
            next_id: 0,
            refused_full: 0,
            refused_per_address: 0,
        }
    }

    /// Whether a connection with `peer` could be taken now (before
    /// connecting to it); a refusal is counted.
    pub(super) fn admits(&mut self, peer: &SocketAddr) -> Result<(), Refusal> {
        if self.senders.contains_key(peer) {
            return Err(Refusal::Exists);
        }
        if self.senders.len() >= self.max {
            self.refused_full = self.refused_full.saturating_add(1);
            return Err(Refusal::Full);
        }
        if self.per_ip.get(&ip_of(peer)).copied().unwrap_or(0) >= self.max_per_ip {
            self.refused_per_address = self.refused_per_address.saturating_add(1);
            return Err(Refusal::PerAddress);
        }
        Ok(())
    }

    /// Takes a connection with `peer`: its id, or why it is refused (a
    /// refusal is counted).
    pub(super) fn insert(&mut self, peer: SocketAddr, sender: S) -> Result<u64, Refusal> {
        self.admits(&peer)?;
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        self.senders.insert(peer, (id, sender));
        *self.per_ip.entry(ip_of(&peer)).or_insert(0) += 1;
        Ok(id)
    }

    /// The sender of the connection with `peer`, if one is open.
    pub(super) fn get(&self, peer: &SocketAddr) -> Option<S> {
        self.senders.get(peer).map(|(_, s)| s.clone())
    }

    /// Forgets the connection `id` with `peer` (if it is still the one
    /// held for `peer`).
    pub(super) fn remove(&mut self, peer: &SocketAddr, id: u64) {
        if self.senders.get(peer).map(|(held, _)| *held) != Some(id) {
            return;
        }
        self.senders.remove(peer);
        let ip = ip_of(peer);
        if let Some(n) = self.per_ip.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_ip.remove(&ip);
            }
        }
    }

    /// Connections open.
    #[cfg(test)]
    pub(super) fn len(&self) -> usize {
        self.senders.len()
    }

    /// Connections open with `ip`.
    #[cfg(test)]
    pub(super) fn with_ip(&self, ip: IpAddr) -> usize {
        self.per_ip.get(&ip.to_canonical()).copied().unwrap_or(0)
    }

    /// Connections refused so far: (the listener was full, the address
    /// held its share).
    pub(super) fn refused(&self) -> (u64, u64) {
        (self.refused_full, self.refused_per_address)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ip: &str, port: u16) -> SocketAddr {
        SocketAddr::new(ip.parse().unwrap(), port)
    }

    #[test]
    fn an_address_holds_its_share_and_others_still_connect() {
        let mut peers = TcpPeers::new(10, 3);
        for port in 1..=3 {
            assert!(peers.insert(at("127.0.0.1", port), ()).is_ok());
        }
        assert_eq!(
            peers.insert(at("127.0.0.1", 4), ()),
            Err(Refusal::PerAddress)
        );
        // The same address as IPv4-mapped IPv6 is the same address.
        assert_eq!(
            peers.insert(at("::ffff:127.0.0.1", 5), ()),
            Err(Refusal::PerAddress)
        );
        assert!(peers.insert(at("127.0.0.2", 1), ()).is_ok());
        assert_eq!(
            (peers.len(), peers.with_ip("127.0.0.1".parse().unwrap())),
            (4, 3)
        );
        assert_eq!(peers.refused(), (0, 2));
    }

    #[test]
    fn the_listener_holds_its_maximum() {
        let mut peers = TcpPeers::new(2, 2);
        assert!(peers.insert(at("127.0.0.1", 1), ()).is_ok());
        assert!(peers.insert(at("127.0.0.2", 1), ()).is_ok());
        assert_eq!(peers.insert(at("127.0.0.3", 1), ()), Err(Refusal::Full));
        assert_eq!(peers.admits(&at("127.0.0.3", 1)), Err(Refusal::Full));
        assert_eq!(peers.refused(), (2, 0));
    }

    #[test]
    fn a_closed_connection_frees_its_place_once() {
        let mut peers = TcpPeers::new(10, 1);
        let peer = at("127.0.0.1", 1);
        let old = peers.insert(peer, "old").unwrap();
        assert_eq!(peers.insert(peer, "again"), Err(Refusal::Exists));
        peers.remove(&peer, old);
        assert_eq!(peers.with_ip(peer.ip()), 0);
        let new = peers.insert(peer, "new").unwrap();
        // The old connection's task removing it again does not remove
        // the new one.
        peers.remove(&peer, old);
        assert_eq!(peers.get(&peer), Some("new"));
        assert_eq!(peers.with_ip(peer.ip()), 1);
        assert_eq!(
            peers.insert(at("127.0.0.1", 2), "other"),
            Err(Refusal::PerAddress)
        );
        peers.remove(&peer, new);
        assert_eq!((peers.len(), peers.with_ip(peer.ip())), (0, 0));
        assert!(peers.insert(at("127.0.0.1", 2), "other").is_ok());
    }
}

//! Every open connection of a node, inbound and dialed, by peer: what the
//! core's enforcement closes when it bans a peer, and what the dialer
//! reuses.
//!
//! Bounded: inbound entries exist only while their connection holds a
//! [`super::limits::ConnectionSlot`] (the connection limits bound them);
//! dialed ones are capped at [`MAX_CACHED_CONNECTIONS`].

use super::client::PeerConnection;
use super::CLOSE_NORMAL;
use crate::identity::NodeId;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;

/// Dialed connections kept open for reuse, at most.
pub const MAX_CACHED_CONNECTIONS: usize = 256;

/// The node's connections (see the module docs).
#[derive(Debug, Default)]
pub struct Connections {
    /// Inbound, by `quinn::Connection::stable_id`.
    inbound: Mutex<HashMap<usize, (NodeId, SocketAddr, quinn::Connection)>>,
    /// Dialed, by peer.
    outbound: Mutex<HashMap<NodeId, PeerConnection>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Whether two addresses are the same endpoint, an IPv4 address and its
/// IPv4-mapped IPv6 form (as a dual-stack socket reports it) alike.
pub fn same_addr(a: SocketAddr, b: SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

impl Connections {
    /// Registers an inbound connection from `peer` at `remote`.
    pub fn add_inbound(&self, peer: NodeId, remote: SocketAddr, conn: quinn::Connection) {
        lock(&self.inbound).insert(conn.stable_id(), (peer, remote, conn));
    }

    /// Forgets an inbound connection that ended.
    pub fn remove_inbound(&self, conn: &quinn::Connection) {
        lock(&self.inbound).remove(&conn.stable_id());
    }

    /// The authenticated peers connected in now, with their addresses.
    pub fn inbound_peers(&self) -> Vec<(NodeId, SocketAddr)> {
        lock(&self.inbound)
            .values()
            .map(|(id, addr, _)| (*id, *addr))
            .collect()
    }

    /// The open dialed connection to `id` at `addr`, if any: a contact
    /// mentioned with a wrong address must not borrow the connection to
    /// the real peer (its answer would then seem to prove that address).
    pub fn outbound_at(&self, id: &NodeId, addr: SocketAddr) -> Option<PeerConnection> {
        let mut conns = lock(&self.outbound);
        match conns.get(id) {
            Some(c) if c.connection().close_reason().is_some() => {
                conns.remove(id);
                None
            }
            Some(c) if same_addr(c.connection().remote_address(), addr) => Some(c.clone()),
            _ => None,
        }
    }

    /// Keeps a dialed connection for reuse, making room if needed (closed
    /// ones first, then an arbitrary one).
    pub fn add_outbound(&self, peer: PeerConnection) {
        let mut conns = lock(&self.outbound);
        if conns.len() >= MAX_CACHED_CONNECTIONS {
            conns.retain(|_, c| c.connection().close_reason().is_none());
            if conns.len() >= MAX_CACHED_CONNECTIONS {
                if let Some(victim) = conns.keys().next().copied() {
                    if let Some(c) = conns.remove(&victim) {
                        c.close();
                    }
                }
            }
        }
        if let Some(old) = conns.insert(peer.peer_id(), peer) {
            old.close();
        }
    }

    /// Closes and forgets the dialed connection to `id` if it goes to
    /// `addr` (a failure at another address says nothing about it).
    pub fn forget_outbound_at(&self, id: &NodeId, addr: SocketAddr) {
        let mut conns = lock(&self.outbound);
        if conns
            .get(id)
            .is_some_and(|c| same_addr(c.connection().remote_address(), addr))
        {
            if let Some(c) = conns.remove(id) {
                c.connection().close(CLOSE_NORMAL.into(), b"");
            }
        }
    }

    /// The peers this node has an open dialed connection to.
    pub fn outbound_peers(&self) -> Vec<NodeId> {
        lock(&self.outbound)
            .iter()
            .filter(|(_, c)| c.connection().close_reason().is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// An open connection to `peer`, dialed (first) or inbound, and
    /// whether it is a dialed one.
    pub fn any_to(&self, peer: &NodeId) -> Option<(quinn::Connection, bool)> {
        if let Some(c) = lock(&self.outbound).get(peer) {
            if c.connection().close_reason().is_none() {
                return Some((c.connection().clone(), true));
            }
        }
        lock(&self.inbound)
            .values()
            .find(|(id, _, c)| id == peer && c.close_reason().is_none())
            .map(|(_, _, c)| (c.clone(), false))
    }

    /// Closes every connection to `peer`, inbound and dialed, with `code`
    /// and `reason`.
    pub fn close_all(&self, peer: &NodeId, code: u32, reason: &[u8]) {
        let inbound: Vec<quinn::Connection> = lock(&self.inbound)
            .values()
            .filter(|(id, _, _)| id == peer)
            .map(|(_, _, c)| c.clone())
            .collect();
        for c in inbound {
            c.close(code.into(), reason);
        }
        if let Some(c) = lock(&self.outbound).remove(peer) {
            c.connection().close(code.into(), reason);
        }
    }
}

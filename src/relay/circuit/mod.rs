//! Circuits, sans-IO: what a relay keeps of the circuits through it
//! ([`RelayCircuits`]), and how an originator builds one hop by hop
//! ([`Telescope`]), Tor-style: a CREATE to the first relay on the link
//! to it, then an EXTEND sealed to the current last hop, which creates
//! the next link's circuit and answers EXTENDED with the new hop's
//! handshake answer.
//!
//! A relay keeps, per circuit, the previous link (peer, circuit id) and
//! the next one: nothing else. The circuit id of each link is chosen by
//! the side that creates it (random, non-zero, unique among that peer's
//! circuits), so the ids of one circuit differ on every link.
//!
//! **Rendezvous.** The last hop of a circuit can be a rendezvous point:
//! the callee's circuit asks it to [`Control::Establish`] a secret, the
//! caller's circuit asks it to [`Control::Join`] that secret's cookie
//! ([`rendezvous_cookie`], which the callee publishes), and from then on
//! each payload delivered by one circuit is sent back down the other.
//! The rendezvous relay knows the two circuits' previous hops and the
//! cookie, not the endpoints. One caller at a time per cookie; a circuit
//! that ends unsplices its partner. Establishing a secret that another
//! circuit holds moves the cookie to the new circuit and tears the old
//! one down: only the callee knows the secret, and this is how it takes
//! its rendezvous back when its old circuit broke somewhere the relay
//! cannot see (the old splice goes with it, so its caller can join
//! again).
//!
//! Link messages ([`LinkMsg`]) go between neighbours; control messages
//! ([`Control`]) travel inside the end-to-end payload of a cell (see
//! `docs/protocol.md` §11).

mod msg;
mod telescope;

pub(crate) use msg::{decode_addr, encode_addr};
pub use msg::{Control, LinkMsg, COOKIE_LEN};
pub use telescope::{FromCircuit, PathHop, Telescope, TelescopeStep};

use super::cell::Cell;
use super::handshake::respond;
use super::keys::OnionKeys;
use super::onion::{OnionError, Peeled, RelayHop};
use crate::identity::NodeId;
use rand_core::{CryptoRng, RngCore};
use std::collections::HashMap;
use std::net::SocketAddr;

/// Circuits a relay carries at most.
pub const MAX_CIRCUITS: usize = 4096;
/// Circuits one previous peer may have through a relay at most.
pub const MAX_CIRCUITS_PER_PEER: usize = 64;

/// Why a circuit message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CircuitError {
    /// Bytes that are not a message of this format.
    #[error("malformed {0}")]
    Malformed(&'static str),
    /// A limit was reached.
    #[error("at the limit: {0}")]
    Full(&'static str),
    /// No such circuit on that link.
    #[error("no circuit {0} on that link")]
    Unknown(u32),
    /// A message out of turn.
    #[error("unexpected: {0}")]
    Unexpected(&'static str),
    /// The layer or handshake failed.
    #[error("{0}")]
    Crypto(String),
}

impl From<OnionError> for CircuitError {
    fn from(e: OnionError) -> Self {
        Self::Crypto(e.to_string())
    }
}

/// What a relay asks its driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelayAction {
    /// Send a link message to a neighbour.
    Link {
        /// The neighbour.
        to: NodeId,
        /// The message.
        msg: LinkMsg,
    },
    /// Connect to relay `to` at `addr` (it must prove `to` in the QUIC
    /// handshake) unless a link to it is open, then send it `msg` (the
    /// Create of an Extend). If that fails, the driver reports it with
    /// [`RelayCircuits::next_unreachable`].
    Connect {
        /// The next relay.
        to: NodeId,
        /// Where the originator said it is.
        addr: SocketAddr,
        /// The message.
        msg: LinkMsg,
    },
    /// Send a cell to a neighbour (one QUIC datagram).
    Cell {
        /// The neighbour.
        to: NodeId,
        /// The cell.
        cell: Box<Cell>,
    },
    /// A payload for this node as the circuit's last hop (an echo
    /// request, say): the circuit is named by its previous link.
    Deliver {
        /// The previous neighbour.
        from: NodeId,
        /// The circuit on that link.
        circ_id: u32,
        /// The payload.
        payload: Vec<u8>,
    },
}

/// One circuit through this relay.
struct Through {
    prev: (NodeId, u32),
    next: Option<(NodeId, u32)>,
    hop: RelayHop,
    /// The cookie this circuit established as a rendezvous point.
    cookie: Option<[u8; COOKIE_LEN]>,
    /// The circuit it is spliced to, by that circuit's previous link.
    spliced: Option<(NodeId, u32)>,
}

/// The cookie a rendezvous secret is known by: what the callee publishes
/// and callers [`Control::Join`]; the secret itself goes only in the
/// callee's [`Control::Establish`].
pub fn rendezvous_cookie(secret: &[u8; COOKIE_LEN]) -> [u8; COOKIE_LEN] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(b"p2psip rendezvous cookie v1\0");
    h.update(secret);
    h.finalize().into()
}

/// The circuits through one relay, bounded.
pub struct RelayCircuits {
    id: NodeId,
    onion: OnionKeys,
    circuits: Vec<Through>,
    /// (peer, circuit id on that link) → index into `circuits`.
    by_link: HashMap<(NodeId, u32), usize>,
    /// Rendezvous cookies → the establishing circuit's previous link
    /// (one per circuit at most, so bounded by [`MAX_CIRCUITS`]).
    cookies: HashMap<[u8; COOKIE_LEN], (NodeId, u32)>,
}

impl std::fmt::Debug for RelayCircuits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RelayCircuits")
            .field("id", &self.id)
            .field("circuits", &self.circuits.len())
            .finish_non_exhaustive()
    }
}

/// A fresh circuit id, non-zero and not in use with `peer`.
fn fresh_circ(
    by_link: &HashMap<(NodeId, u32), usize>,
    peer: NodeId,
    rng: &mut (impl RngCore + CryptoRng),
) -> u32 {
    loop {
        let id = rng.next_u32();
        if id != 0 && !by_link.contains_key(&(peer, id)) {
            return id;
        }
    }
}

/// Whether a relay may be dialed at `addr` at all: a real unicast
/// address and port (the QUIC handshake then proves who is there).
fn dialable(addr: &SocketAddr) -> bool {
    let ip = addr.ip().to_canonical();
    addr.port() != 0
        && !ip.is_unspecified()
        && !ip.is_multicast()
        && ip != std::net::IpAddr::V4(std::net::Ipv4Addr::BROADCAST)
}

/// What a relay knows of one circuit through it (see
/// [`RelayCircuits::view`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CircuitView {
    /// The previous neighbour.
    pub prev: NodeId,
    /// The next neighbour, if the circuit goes on.
    pub next: Option<NodeId>,
    /// Whether it is a rendezvous point's circuit (established or
    /// joined), and spliced to which previous neighbour's circuit.
    pub rendezvous: Option<Option<NodeId>>,
}

impl RelayCircuits {
    /// The circuits of relay `id` with onion keys `onion`.
    pub fn new(id: NodeId, onion: OnionKeys) -> Self {
        Self {
            id,
            onion,
            circuits: Vec::new(),
            by_link: HashMap::new(),
            cookies: HashMap::new(),
        }
    }

    /// The relay's onion keys (for its descriptor).
    pub fn onion_keys(&self) -> &OnionKeys {
        &self.onion
    }

    /// Rotates the onion keys at `now` (see [`OnionKeys::rotate`]);
    /// whether the current key changed (publish the descriptor again).
    /// Circuits already built keep their keys.
    pub fn rotate(&mut self, now: u64, rng: impl RngCore + CryptoRng) -> bool {
        self.onion.rotate(now, rng)
    }

    /// Circuits carried.
    pub fn len(&self) -> usize {
        self.circuits.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.circuits.is_empty()
    }

    /// The index of the circuit `circ_id` on the link to `peer`.
    fn slot(&self, peer: NodeId, circ_id: u32) -> Result<usize, CircuitError> {
        self.by_link
            .get(&(peer, circ_id))
            .copied()
            .ok_or(CircuitError::Unknown(circ_id))
    }

    /// What this relay knows of each circuit: its previous and next
    /// neighbour (and nothing else).
    pub fn neighbours(&self) -> Vec<(NodeId, Option<NodeId>)> {
        self.circuits
            .iter()
            .map(|c| (c.prev.0, c.next.map(|n| n.0)))
            .collect()
    }

    /// Everything this relay's state holds about each circuit: the
    /// neighbours, and for a rendezvous point the neighbour of the
    /// spliced circuit (never an endpoint: only the cookie and links).
    pub fn view(&self) -> Vec<CircuitView> {
        self.circuits
            .iter()
            .map(|c| CircuitView {
                prev: c.prev.0,
                next: c.next.map(|n| n.0),
                rendezvous: (c.cookie.is_some() || c.spliced.is_some())
                    .then(|| c.spliced.map(|s| s.0)),
            })
            .collect()
    }

    /// Every neighbour some circuit goes to or comes from.
    pub fn links(&self) -> Vec<NodeId> {
        let mut out: Vec<NodeId> = self
            .circuits
            .iter()
            .flat_map(|c| [Some(c.prev.0), c.next.map(|n| n.0)])
            .flatten()
            .collect();
        out.sort();
        out.dedup();
        out
    }

    /// A link message from neighbour `from`, at `now` (unix seconds:
    /// which onion keys are usable).
    pub fn on_link(
        &mut self,
        from: NodeId,
        msg: LinkMsg,
        now: u64,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<Vec<RelayAction>, CircuitError> {
        match msg {
            LinkMsg::Create {
                circ_id,
                onion,
                handshake,
            } => {
                if self.by_link.contains_key(&(from, circ_id)) {
                    return Err(CircuitError::Unexpected("Create of a circuit in use"));
                }
                if self.circuits.len() >= MAX_CIRCUITS {
                    return Err(CircuitError::Full("circuits"));
                }
                let from_peer = self.circuits.iter().filter(|c| c.prev.0 == from).count();
                if from_peer >= MAX_CIRCUITS_PER_PEER {
                    return Err(CircuitError::Full("circuits of one peer"));
                }
                let key = self
                    .onion
                    .find(&onion, now)
                    .ok_or(CircuitError::Unexpected(
                        "an onion key this relay does not hold",
                    ))?;
                let (keys, answer) = respond(&self.id, key, &handshake, &mut rng)
                    .map_err(|e| CircuitError::Crypto(e.to_string()))?;
                self.by_link.insert((from, circ_id), self.circuits.len());
                self.circuits.push(Through {
                    prev: (from, circ_id),
                    next: None,
                    hop: RelayHop::new(&keys),
                    cookie: None,
                    spliced: None,
                });
                Ok(vec![RelayAction::Link {
                    to: from,
                    msg: LinkMsg::Created { circ_id, answer },
                }])
            }
            LinkMsg::Created { circ_id, answer } => {
                // The next hop answered our Create: tell the originator.
                let i = self.slot(from, circ_id)?;
                let c = self
                    .circuits
                    .get_mut(i)
                    .ok_or(CircuitError::Unknown(circ_id))?;
                if c.next != Some((from, circ_id)) {
                    return Err(CircuitError::Unexpected("Created from the previous hop"));
                }
                let payload = Control::Extended { answer }.encode();
                let cell = c.hop.reply(c.prev.1, &payload, &mut rng)?;
                Ok(vec![RelayAction::Cell {
                    to: c.prev.0,
                    cell: Box::new(cell),
                }])
            }
            LinkMsg::Destroy { circ_id } => {
                let i = self.slot(from, circ_id)?;
                Ok(self.remove(i, from))
            }
        }
    }

    /// The driver could not reach the next relay of the circuit whose
    /// next link is (`to`, `circ_id`): the circuit is torn down (the
    /// originator sees a Destroy and builds another).
    pub fn next_unreachable(&mut self, to: NodeId, circ_id: u32) -> Vec<RelayAction> {
        match self.slot(to, circ_id) {
            Ok(i) => self.remove(i, to),
            Err(_) => Vec::new(),
        }
    }

    /// Every circuit with a link to `peer` is torn down (its connection
    /// closed): the other neighbours are told.
    pub fn peer_gone(&mut self, peer: NodeId) -> Vec<RelayAction> {
        let mut out = Vec::new();
        while let Some(i) = self
            .circuits
            .iter()
            .position(|c| c.prev.0 == peer || c.next.is_some_and(|n| n.0 == peer))
        {
            out.extend(self.remove(i, peer));
        }
        out
    }

    /// Forgets circuit `i`; tells its other neighbour.
    fn remove(&mut self, i: usize, told_by: NodeId) -> Vec<RelayAction> {
        if i >= self.circuits.len() {
            return Vec::new();
        }
        let c = self.circuits.swap_remove(i);
        self.by_link.remove(&c.prev);
        if let Some(next) = c.next {
            self.by_link.remove(&next);
        }
        // The circuit moved into slot `i` by swap_remove is re-indexed.
        if let Some(moved) = self.circuits.get(i) {
            self.by_link.insert(moved.prev, i);
            if let Some(next) = moved.next {
                self.by_link.insert(next, i);
            }
        }
        if let Some(cookie) = c.cookie {
            self.cookies.remove(&cookie);
        }
        // Its partner at a rendezvous is unspliced (its originator
        // notices the silence and joins again).
        if let Some(partner) = c.spliced {
            if let Some(p) = self
                .by_link
                .get(&partner)
                .and_then(|&j| self.circuits.get_mut(j))
            {
                p.spliced = None;
            }
        }
        let mut out = Vec::new();
        for (peer, circ_id) in [Some(c.prev), c.next].into_iter().flatten() {
            if peer != told_by {
                out.push(RelayAction::Link {
                    to: peer,
                    msg: LinkMsg::Destroy { circ_id },
                });
            }
        }
        out
    }

    /// A backward cell carrying `payload` on the circuit named by its
    /// previous link (`from`, `circ_id`), from this relay as its last
    /// hop (an echo, say).
    pub fn reply(
        &mut self,
        from: NodeId,
        circ_id: u32,
        payload: &[u8],
        rng: impl RngCore + CryptoRng,
    ) -> Result<RelayAction, CircuitError> {
        self.reply_control(from, circ_id, &Control::Payload(payload.to_vec()), rng)
    }

    fn reply_control(
        &mut self,
        from: NodeId,
        circ_id: u32,
        control: &Control,
        rng: impl RngCore + CryptoRng,
    ) -> Result<RelayAction, CircuitError> {
        let i = self.slot(from, circ_id)?;
        let c = self
            .circuits
            .get_mut(i)
            .ok_or(CircuitError::Unknown(circ_id))?;
        let cell = c.hop.reply(c.prev.1, &control.encode(), rng)?;
        Ok(RelayAction::Cell {
            to: c.prev.0,
            cell: Box::new(cell),
        })
    }

    /// A cell from neighbour `from`.
    pub fn on_cell(
        &mut self,
        from: NodeId,
        cell: &Cell,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<Vec<RelayAction>, CircuitError> {
        let i = self.slot(from, cell.circ_id)?;
        let by_link = &self.by_link;
        let c = self
            .circuits
            .get_mut(i)
            .ok_or(CircuitError::Unknown(cell.circ_id))?;
        if c.prev != (from, cell.circ_id) {
            // Backward: add this hop's layer.
            let cell = c.hop.wrap(cell, c.prev.1, &mut rng)?;
            return Ok(vec![RelayAction::Cell {
                to: c.prev.0,
                cell: Box::new(cell),
            }]);
        }
        // Forward: peel this hop's layer.
        let next_circ = c.next.map_or(0, |n| n.1);
        let payload = match c.hop.peel(cell, next_circ, &mut rng)? {
            Peeled::Forward(next_cell) => {
                let (to, _) = c
                    .next
                    .ok_or(CircuitError::Unexpected("a relay cell past the last hop"))?;
                return Ok(vec![RelayAction::Cell {
                    to,
                    cell: next_cell,
                }]);
            }
            Peeled::Deliver(payload) => payload,
        };
        let link = c.prev;
        match Control::decode(&payload)? {
            Control::Extend {
                next,
                addr,
                onion,
                handshake,
            } => {
                if c.next.is_some() || c.cookie.is_some() || c.spliced.is_some() {
                    return Err(CircuitError::Unexpected("Extend of an extended circuit"));
                }
                if next == self.id || next == c.prev.0 {
                    return Err(CircuitError::Unexpected("Extend to itself or back"));
                }
                if !dialable(&addr) {
                    return Err(CircuitError::Unexpected("Extend to an undialable address"));
                }
                let circ_id = fresh_circ(by_link, next, &mut rng);
                c.next = Some((next, circ_id));
                self.by_link.insert((next, circ_id), i);
                Ok(vec![RelayAction::Connect {
                    to: next,
                    addr,
                    msg: LinkMsg::Create {
                        circ_id,
                        onion,
                        handshake,
                    },
                }])
            }
            Control::Establish { cookie: secret } => {
                if c.next.is_some() || c.cookie.is_some() || c.spliced.is_some() {
                    return Err(CircuitError::Unexpected("Establish on a busy circuit"));
                }
                let cookie = rendezvous_cookie(&secret);
                let mut out = Vec::new();
                if let Some(&old) = self.cookies.get(&cookie) {
                    // The callee again, on a new circuit: the old one goes.
                    if let Ok(j) = self.slot(old.0, old.1) {
                        out = self.remove(j, self.id);
                    }
                }
                let i = self.slot(link.0, link.1)?;
                if let Some(c) = self.circuits.get_mut(i) {
                    c.cookie = Some(cookie);
                }
                self.cookies.insert(cookie, link);
                out.push(self.reply_control(link.0, link.1, &Control::Established, &mut rng)?);
                Ok(out)
            }
            Control::Join { cookie } => {
                if c.next.is_some() || c.cookie.is_some() || c.spliced.is_some() {
                    return Err(CircuitError::Unexpected("Join on a busy circuit"));
                }
                let callee = *self
                    .cookies
                    .get(&cookie)
                    .ok_or(CircuitError::Unexpected("Join of an unknown cookie"))?;
                let j = self.slot(callee.0, callee.1)?;
                let partner = self
                    .circuits
                    .get_mut(j)
                    .ok_or(CircuitError::Unknown(callee.1))?;
                if partner.spliced.is_some() {
                    return Err(CircuitError::Unexpected("Join of a rendezvous in a call"));
                }
                partner.spliced = Some(link);
                if let Some(c) = self.circuits.get_mut(i) {
                    c.spliced = Some(callee);
                }
                Ok(vec![
                    self.reply_control(link.0, link.1, &Control::Joined, &mut rng)?,
                    self.reply_control(callee.0, callee.1, &Control::Joined, &mut rng)?,
                ])
            }
            Control::Payload(payload) => match c.spliced {
                // At a rendezvous: down the other circuit.
                Some(partner) => Ok(vec![self.reply_control(
                    partner.0,
                    partner.1,
                    &Control::Payload(payload),
                    &mut rng,
                )?]),
                None => Ok(vec![RelayAction::Deliver {
                    from: link.0,
                    circ_id: link.1,
                    payload,
                }]),
            },
            Control::Extended { .. } | Control::Established | Control::Joined => {
                Err(CircuitError::Unexpected("an answer sent forward"))
            }
        }
    }
}

#[cfg(test)]
mod tests;

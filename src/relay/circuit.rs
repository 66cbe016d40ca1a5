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
//! Link messages ([`LinkMsg`]) go between neighbours; control messages
//! ([`Control`]) travel inside the end-to-end payload of a cell. Both
//! decoders are strict and fuzzed (`relay_cell`).

use super::cell::Cell;
use super::handshake::{respond, ClientHandshake, OnionKey, CLIENT_MSG_LEN, SERVER_MSG_LEN};
use super::onion::{HopKeys, OnionError, Originator, Peeled, Received, RelayHop};
use crate::identity::NodeId;
use rand_core::{CryptoRng, RngCore};
use std::collections::HashMap;

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

/// A message between neighbours on a link, outside cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMsg {
    /// Open circuit `circ_id` on this link with handshake `X`.
    Create {
        /// The new circuit's id on this link.
        circ_id: u32,
        /// The handshake's client message.
        handshake: [u8; CLIENT_MSG_LEN],
    },
    /// The answer to a Create.
    Created {
        /// The circuit.
        circ_id: u32,
        /// `Y | AUTH`.
        answer: [u8; SERVER_MSG_LEN],
    },
    /// Tear circuit `circ_id` down on this link (and onwards).
    Destroy {
        /// The circuit.
        circ_id: u32,
    },
}

const LINK_CREATE: u8 = 1;
const LINK_CREATED: u8 = 2;
const LINK_DESTROY: u8 = 3;

fn take<const N: usize>(bytes: &[u8], at: usize) -> Option<[u8; N]> {
    bytes.get(at..at + N)?.try_into().ok()
}

fn circ_at(bytes: &[u8]) -> Result<u32, CircuitError> {
    let id = take::<4>(bytes, 1)
        .map(u32::from_be_bytes)
        .ok_or(CircuitError::Malformed("link message"))?;
    if id == 0 {
        return Err(CircuitError::Malformed("circuit id 0"));
    }
    Ok(id)
}

impl LinkMsg {
    /// Its bytes: type, circuit id, fixed-size fields.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(5 + SERVER_MSG_LEN);
        match self {
            LinkMsg::Create { circ_id, handshake } => {
                out.push(LINK_CREATE);
                out.extend_from_slice(&circ_id.to_be_bytes());
                out.extend_from_slice(handshake);
            }
            LinkMsg::Created { circ_id, answer } => {
                out.push(LINK_CREATED);
                out.extend_from_slice(&circ_id.to_be_bytes());
                out.extend_from_slice(answer);
            }
            LinkMsg::Destroy { circ_id } => {
                out.push(LINK_DESTROY);
                out.extend_from_slice(&circ_id.to_be_bytes());
            }
        }
        out
    }

    /// Reads a link message, strictly (exact lengths, no circuit 0).
    pub fn decode(bytes: &[u8]) -> Result<Self, CircuitError> {
        let bad = CircuitError::Malformed("link message");
        let circ_id = circ_at(bytes)?;
        match (bytes.first(), bytes.len()) {
            (Some(&LINK_CREATE), n) if n == 5 + CLIENT_MSG_LEN => Ok(LinkMsg::Create {
                circ_id,
                handshake: take(bytes, 5).ok_or(bad)?,
            }),
            (Some(&LINK_CREATED), n) if n == 5 + SERVER_MSG_LEN => Ok(LinkMsg::Created {
                circ_id,
                answer: take(bytes, 5).ok_or(bad)?,
            }),
            (Some(&LINK_DESTROY), 5) => Ok(LinkMsg::Destroy { circ_id }),
            _ => Err(bad),
        }
    }
}

/// A control message inside a cell's end-to-end payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// To the last hop: extend the circuit to `next` (its onion key
    /// `onion`) with handshake `X`.
    Extend {
        /// The next relay.
        next: NodeId,
        /// The handshake's client message, for it.
        handshake: [u8; CLIENT_MSG_LEN],
    },
    /// From the (new) last hop's predecessor: the next relay's answer.
    Extended {
        /// `Y | AUTH` of the next relay.
        answer: [u8; SERVER_MSG_LEN],
    },
    /// Anything else: media or cover for the circuit's user.
    Payload(Vec<u8>),
}

const CTL_EXTEND: u8 = 0xE1;
const CTL_EXTENDED: u8 = 0xE2;
const CTL_PAYLOAD: u8 = 0xD0;

impl Control {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Control::Extend { next, handshake } => {
                let mut out = vec![CTL_EXTEND];
                out.extend_from_slice(next.as_bytes());
                out.extend_from_slice(handshake);
                out
            }
            Control::Extended { answer } => {
                let mut out = vec![CTL_EXTENDED];
                out.extend_from_slice(answer);
                out
            }
            Control::Payload(p) => {
                let mut out = vec![CTL_PAYLOAD];
                out.extend_from_slice(p);
                out
            }
        }
    }

    /// Reads a control message, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, CircuitError> {
        let bad = CircuitError::Malformed("control message");
        match (bytes.first(), bytes.len()) {
            (Some(&CTL_EXTEND), n) if n == 1 + 32 + CLIENT_MSG_LEN => Ok(Control::Extend {
                next: NodeId::from_bytes(take(bytes, 1).ok_or(bad.clone())?),
                handshake: take(bytes, 33).ok_or(bad)?,
            }),
            (Some(&CTL_EXTENDED), n) if n == 1 + SERVER_MSG_LEN => Ok(Control::Extended {
                answer: take(bytes, 1).ok_or(bad)?,
            }),
            (Some(&CTL_PAYLOAD), _) => Ok(Control::Payload(
                bytes.get(1..).unwrap_or_default().to_vec(),
            )),
            _ => Err(bad),
        }
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
    /// Send a cell to a neighbour (one QUIC datagram).
    Cell {
        /// The neighbour.
        to: NodeId,
        /// The cell.
        cell: Box<Cell>,
    },
    /// A payload for this node as the circuit's last hop (media for a
    /// rendezvous, or an echo): the circuit is named by its previous
    /// link.
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
}

/// The circuits through one relay, bounded.
pub struct RelayCircuits {
    id: NodeId,
    onion: OnionKey,
    circuits: Vec<Through>,
    /// (peer, circuit id on that link) → index into `circuits`.
    by_link: HashMap<(NodeId, u32), usize>,
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

impl RelayCircuits {
    /// The circuits of relay `id` with onion key `onion`.
    pub fn new(id: NodeId, onion: OnionKey) -> Self {
        Self {
            id,
            onion,
            circuits: Vec::new(),
            by_link: HashMap::new(),
        }
    }

    /// Circuits carried.
    pub fn len(&self) -> usize {
        self.circuits.len()
    }

    /// The index of the circuit `circ_id` on the link to `peer`.
    fn slot(&self, peer: NodeId, circ_id: u32) -> Result<usize, CircuitError> {
        self.by_link
            .get(&(peer, circ_id))
            .copied()
            .ok_or(CircuitError::Unknown(circ_id))
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.circuits.is_empty()
    }

    /// What this relay knows of each circuit: its previous and next
    /// neighbour (and nothing else).
    pub fn neighbours(&self) -> Vec<(NodeId, Option<NodeId>)> {
        self.circuits
            .iter()
            .map(|c| (c.prev.0, c.next.map(|n| n.0)))
            .collect()
    }

    /// A link message from neighbour `from`.
    pub fn on_link(
        &mut self,
        from: NodeId,
        msg: LinkMsg,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<Vec<RelayAction>, CircuitError> {
        match msg {
            LinkMsg::Create { circ_id, handshake } => {
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
                let (keys, answer) = respond(&self.id, &self.onion, &handshake, &mut rng)
                    .map_err(|e| CircuitError::Crypto(e.to_string()))?;
                self.by_link.insert((from, circ_id), self.circuits.len());
                self.circuits.push(Through {
                    prev: (from, circ_id),
                    next: None,
                    hop: RelayHop::new(&keys),
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
    /// hop (an echo, or media at a rendezvous).
    pub fn reply(
        &mut self,
        from: NodeId,
        circ_id: u32,
        payload: &[u8],
        rng: impl RngCore + CryptoRng,
    ) -> Result<RelayAction, CircuitError> {
        let i = self.slot(from, circ_id)?;
        let c = self
            .circuits
            .get_mut(i)
            .ok_or(CircuitError::Unknown(circ_id))?;
        let payload = Control::Payload(payload.to_vec()).encode();
        let cell = c.hop.reply(c.prev.1, &payload, rng)?;
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
        if c.prev == (from, cell.circ_id) {
            // Forward: peel this hop's layer.
            let next_circ = c.next.map_or(0, |n| n.1);
            match c.hop.peel(cell, next_circ, &mut rng)? {
                Peeled::Forward(next_cell) => {
                    let (to, _) = c
                        .next
                        .ok_or(CircuitError::Unexpected("a relay cell past the last hop"))?;
                    Ok(vec![RelayAction::Cell {
                        to,
                        cell: next_cell,
                    }])
                }
                Peeled::Deliver(payload) => match Control::decode(&payload)? {
                    Control::Extend { next, handshake } => {
                        if c.next.is_some() {
                            return Err(CircuitError::Unexpected("Extend of an extended circuit"));
                        }
                        if next == self.id || next == c.prev.0 {
                            return Err(CircuitError::Unexpected("Extend to itself or back"));
                        }
                        let circ_id = fresh_circ(by_link, next, &mut rng);
                        c.next = Some((next, circ_id));
                        self.by_link.insert((next, circ_id), i);
                        Ok(vec![RelayAction::Link {
                            to: next,
                            msg: LinkMsg::Create { circ_id, handshake },
                        }])
                    }
                    Control::Extended { .. } => {
                        Err(CircuitError::Unexpected("Extended sent forward"))
                    }
                    Control::Payload(payload) => Ok(vec![RelayAction::Deliver {
                        from: c.prev.0,
                        circ_id: c.prev.1,
                        payload,
                    }]),
                },
            }
        } else {
            // Backward: add this hop's layer.
            let cell = c.hop.wrap(cell, c.prev.1, &mut rng)?;
            Ok(vec![RelayAction::Cell {
                to: c.prev.0,
                cell: Box::new(cell),
            }])
        }
    }
}

/// A relay on a path: its id and onion key (from its descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathHop {
    /// The relay's node id.
    pub id: NodeId,
    /// Its onion key.
    pub onion: [u8; 32],
}

/// An originator building a circuit along `path`, one hop at a time.
pub struct Telescope {
    path: Vec<PathHop>,
    circ_id: u32,
    keys: Option<Originator>,
    pending: Option<ClientHandshake>,
}

impl std::fmt::Debug for Telescope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telescope")
            .field("path", &self.path.len())
            .field("built", &self.built())
            .finish_non_exhaustive()
    }
}

/// What the originator does next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelescopeStep {
    /// Send this link message to the first hop.
    Link(LinkMsg),
    /// Send this cell to the first hop.
    Cell(Box<Cell>),
    /// The circuit reaches every hop of the path.
    Built,
}

impl Telescope {
    /// Starts building along `path` (first hop first): the Create to
    /// send to the first hop.
    pub fn start(
        path: Vec<PathHop>,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<(Self, TelescopeStep), CircuitError> {
        let first = *path
            .first()
            .ok_or(CircuitError::Unexpected("an empty path"))?;
        let mut circ_id = 0;
        while circ_id == 0 {
            circ_id = rng.next_u32();
        }
        let (pending, handshake) = ClientHandshake::start(first.id, first.onion, &mut rng);
        Ok((
            Self {
                path,
                circ_id,
                keys: None,
                pending: Some(pending),
            },
            TelescopeStep::Link(LinkMsg::Create { circ_id, handshake }),
        ))
    }

    /// The circuit's id on the first link.
    pub fn circ_id(&self) -> u32 {
        self.circ_id
    }

    /// Hops built so far.
    pub fn built(&self) -> usize {
        self.keys.as_ref().map_or(0, Originator::len)
    }

    /// The first hop's Created.
    pub fn on_created(
        &mut self,
        answer: &[u8; SERVER_MSG_LEN],
        rng: impl RngCore + CryptoRng,
    ) -> Result<TelescopeStep, CircuitError> {
        if self.keys.is_some() {
            return Err(CircuitError::Unexpected("a second Created"));
        }
        let keys = self.finish(answer)?;
        self.keys = Some(Originator::new(&[keys])?);
        self.next_step(rng)
    }

    /// A cell from the first hop: an Extended while building; after,
    /// what the circuit carries back (which hop sent it, the payload).
    pub fn on_cell(
        &mut self,
        cell: &Cell,
        rng: impl RngCore + CryptoRng,
    ) -> Result<(TelescopeStep, Option<Received>), CircuitError> {
        let origin = self
            .keys
            .as_mut()
            .ok_or(CircuitError::Unexpected("a cell before Created"))?;
        let got = origin.open(cell)?;
        match Control::decode(&got.payload)? {
            Control::Extended { answer }
                if self.pending.is_some() && got.hop + 1 == origin.len() =>
            {
                let keys = self.finish(&answer)?;
                if let Some(origin) = self.keys.as_mut() {
                    origin.extend(&keys)?;
                }
                Ok((self.next_step(rng)?, None))
            }
            Control::Payload(payload) => Ok((
                TelescopeStep::Built,
                Some(Received {
                    hop: got.hop,
                    payload,
                }),
            )),
            _ => Err(CircuitError::Unexpected("a control message out of turn")),
        }
    }

    fn finish(&mut self, answer: &[u8; SERVER_MSG_LEN]) -> Result<HopKeys, CircuitError> {
        self.pending
            .take()
            .ok_or(CircuitError::Unexpected("an answer to no handshake"))?
            .finish(answer)
            .map_err(|e| CircuitError::Crypto(e.to_string()))
    }

    fn next_step(
        &mut self,
        mut rng: impl RngCore + CryptoRng,
    ) -> Result<TelescopeStep, CircuitError> {
        let built = self.built();
        let Some(next) = self.path.get(built).copied() else {
            return Ok(TelescopeStep::Built);
        };
        let (pending, handshake) = ClientHandshake::start(next.id, next.onion, &mut rng);
        self.pending = Some(pending);
        let payload = Control::Extend {
            next: next.id,
            handshake,
        }
        .encode();
        let circ_id = self.circ_id;
        let origin = self
            .keys
            .as_mut()
            .ok_or(CircuitError::Unexpected("no first hop"))?;
        let cell = origin.seal(circ_id, built - 1, &payload, rng)?;
        Ok(TelescopeStep::Cell(Box::new(cell)))
    }

    /// A cell carrying `payload` to the last hop (media, or cover).
    pub fn seal(
        &mut self,
        payload: &[u8],
        rng: impl RngCore + CryptoRng,
    ) -> Result<Cell, CircuitError> {
        if self.pending.is_some() || self.built() < self.path.len() {
            return Err(CircuitError::Unexpected("the circuit is not built"));
        }
        let circ_id = self.circ_id;
        let origin = self
            .keys
            .as_mut()
            .ok_or(CircuitError::Unexpected("no first hop"))?;
        let last = origin.len() - 1;
        Ok(origin.seal(
            circ_id,
            last,
            &Control::Payload(payload.to_vec()).encode(),
            rng,
        )?)
    }
}

#[cfg(test)]
mod tests;

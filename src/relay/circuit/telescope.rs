//! The originator's side of a circuit: [`Telescope`] builds it one hop
//! at a time (Create to the first relay, then Extend sealed to the
//! current last hop) and then seals and opens what it carries.

use super::msg::{Control, LinkMsg};
use super::CircuitError;
use crate::identity::NodeId;
use crate::relay::cell::Cell;
use crate::relay::handshake::{ClientHandshake, SERVER_MSG_LEN};
use crate::relay::onion::{HopKeys, Originator};
use rand_core::{CryptoRng, RngCore};
use std::net::SocketAddr;

/// A relay on a path: its id, overlay address and onion key (from its
/// descriptor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathHop {
    /// The relay's node id.
    pub id: NodeId,
    /// Where it listens (the previous hop dials it there; it must prove
    /// `id` in the QUIC handshake).
    pub addr: SocketAddr,
    /// Its onion key.
    pub onion: [u8; 32],
}

/// An originator building a circuit along a path, one hop at a time.
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

/// What the originator does next while building.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TelescopeStep {
    /// Send this link message to the first hop.
    Link(LinkMsg),
    /// Send this cell to the first hop.
    Cell(Box<Cell>),
    /// The circuit reaches every hop of the path.
    Built,
}

/// What a cell from the first hop brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromCircuit {
    /// While building: the next step.
    Step(TelescopeStep),
    /// A payload, from hop `hop` (0 = the first relay).
    Payload {
        /// The hop whose layer was innermost.
        hop: usize,
        /// The payload.
        payload: Vec<u8>,
    },
    /// The last hop keeps this circuit as a rendezvous point.
    Established,
    /// The last hop spliced this circuit to another.
    Joined,
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
        if path.len() > crate::relay::onion::MAX_LAYERS {
            return Err(CircuitError::Full("hops on a path"));
        }
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
            TelescopeStep::Link(LinkMsg::Create {
                circ_id,
                onion: first.onion,
                handshake,
            }),
        ))
    }

    /// The circuit's id on the first link.
    pub fn circ_id(&self) -> u32 {
        self.circ_id
    }

    /// The path.
    pub fn path(&self) -> &[PathHop] {
        &self.path
    }

    /// Hops built so far.
    pub fn built(&self) -> usize {
        self.keys.as_ref().map_or(0, Originator::len)
    }

    /// Whether every hop is built.
    pub fn is_built(&self) -> bool {
        self.pending.is_none() && self.built() == self.path.len()
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
    /// what the circuit carries back.
    pub fn on_cell(
        &mut self,
        cell: &Cell,
        rng: impl RngCore + CryptoRng,
    ) -> Result<FromCircuit, CircuitError> {
        let origin = self
            .keys
            .as_mut()
            .ok_or(CircuitError::Unexpected("a cell before Created"))?;
        let got = origin.open(cell)?;
        let last = got.hop + 1 == origin.len();
        match Control::decode(&got.payload)? {
            Control::Extended { answer } if self.pending.is_some() && last => {
                let keys = self.finish(&answer)?;
                if let Some(origin) = self.keys.as_mut() {
                    origin.extend(&keys)?;
                }
                Ok(FromCircuit::Step(self.next_step(rng)?))
            }
            Control::Payload(payload) => Ok(FromCircuit::Payload {
                hop: got.hop,
                payload,
            }),
            Control::Established if last && self.is_built() => Ok(FromCircuit::Established),
            Control::Joined if last && self.is_built() => Ok(FromCircuit::Joined),
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
            addr: next.addr,
            onion: next.onion,
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
        self.seal_control(&Control::Payload(payload.to_vec()), rng)
    }

    /// A cell carrying `control` to the last hop (a payload, or a
    /// rendezvous Establish or Join).
    pub fn seal_control(
        &mut self,
        control: &Control,
        rng: impl RngCore + CryptoRng,
    ) -> Result<Cell, CircuitError> {
        if !self.is_built() {
            return Err(CircuitError::Unexpected("the circuit is not built"));
        }
        let circ_id = self.circ_id;
        let origin = self
            .keys
            .as_mut()
            .ok_or(CircuitError::Unexpected("no first hop"))?;
        let last = origin.len().saturating_sub(1);
        Ok(origin.seal(circ_id, last, &control.encode(), rng)?)
    }
}

//! Circuits over the overlay's QUIC connections: the driver of
//! [`crate::relay`]. It moves link messages and cells as QUIC datagrams
//! (RFC 9221) between authenticated nodes, feeds them to the sans-IO
//! state ([`RelayCircuits`] when this node relays, a [`Telescope`] per
//! circuit it built), and does what they ask: send, dial the next relay,
//! answer an echo. It decides nothing itself.
//!
//! A datagram of a circuit starts with a tag byte (`docs/protocol.md`
//! §11): [`LINK_TAG`] then a [`LinkMsg`], or [`CELL_TAG`] then a
//! [`Cell`]. Media datagrams (§10) start with their version, 1, so the
//! two never mix. A node reads datagrams on every connection it accepted
//! (the server's task) and on every dialed connection it sent circuit
//! datagrams on (a reader task here), so a neighbour may answer on
//! whichever connection it has.
//!
//! Bounds: the circuits a relay carries are bounded by
//! [`RelayCircuits`]; a node builds at most [`MAX_OWN_CIRCUITS`] of its
//! own, each with a queue of [`CIRCUIT_QUEUE`] cells (more are dropped
//! and counted); reader tasks exist only for open connections.

use super::conns::Connections;
use super::dialer::Dialer;
use crate::identity::NodeId;
use crate::overlay::routing::Contact;
use crate::relay::cell::{Cell, CELL_LEN};
use crate::relay::circuit::{
    CircuitError, CircuitView, Control, FromCircuit, LinkMsg, PathHop, RelayAction, RelayCircuits,
    Telescope, TelescopeStep,
};
use crate::relay::handshake::SERVER_MSG_LEN;
use crate::relay::keys::OnionKeys;
use rand::rngs::OsRng;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tracing::debug;

/// The first byte of a datagram carrying a [`LinkMsg`].
pub const LINK_TAG: u8 = 0x40;
/// The first byte of a datagram carrying a [`Cell`].
pub const CELL_TAG: u8 = 0x41;
/// Circuits this node builds for itself at most, at once.
pub const MAX_OWN_CIRCUITS: usize = 64;
/// Cells queued for one of this node's circuits at most.
pub const CIRCUIT_QUEUE: usize = 256;
/// How long one step of a build (Create or Extend) may take.
pub const BUILD_STEP_TIMEOUT: Duration = Duration::from_secs(3);

/// An echo request: the last hop answers with [`ECHO_REPLY`] and the
/// same bytes (`p2psip media-test`, a relay's liveness).
pub const ECHO_REQUEST: u8 = 0x01;
/// An echo's answer.
pub const ECHO_REPLY: u8 = 0x02;

/// Whether a datagram belongs to circuits (else it is media, §10).
pub fn is_circuit_datagram(datagram: &[u8]) -> bool {
    matches!(datagram.first(), Some(&LINK_TAG) | Some(&CELL_TAG))
}

/// Now, unix seconds (which onion keys are usable).
fn unix_secs() -> u64 {
    u64::try_from(crate::unix_now()).unwrap_or(0)
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What reached one of this node's own circuits.
#[derive(Debug)]
enum Inbound {
    Created([u8; SERVER_MSG_LEN]),
    Destroyed,
    Cell(Box<Cell>),
}

/// Counters of the circuit traffic.
#[derive(Debug, Default)]
pub struct CircuitStats {
    /// Cells relayed on (this node a relay).
    pub cells_relayed: AtomicU64,
    /// Cells and link messages refused: undecodable, of no circuit,
    /// failing their layer, over a limit.
    pub refused: AtomicU64,
    /// Datagrams that could not be sent (no open link, buffer full).
    pub unsent: AtomicU64,
    /// Cells dropped because a circuit's queue was full.
    pub dropped: AtomicU64,
    /// Echo requests answered.
    pub echoes: AtomicU64,
}

/// Why a circuit could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BuildError {
    /// The first relay could not be reached.
    #[error("hop 1 unreachable: {0}")]
    Unreachable(String),
    /// Hop `hop` (1-based) did not answer in time.
    #[error("hop {hop} did not answer within {timeout:?}")]
    Timeout {
        /// The hop.
        hop: usize,
        /// The step timeout.
        timeout: Duration,
    },
    /// The circuit was torn down while being built at hop `hop`: a relay
    /// refused or could not reach the next.
    #[error("hop {hop} refused or could not reach the next relay")]
    Refused {
        /// The hop.
        hop: usize,
    },
    /// This node builds too many circuits already.
    #[error("too many circuits of this node")]
    TooMany,
    /// The circuit state refused a step.
    #[error(transparent)]
    Circuit(#[from] CircuitError),
}

/// The circuits of one node: the relay role (if on) and its own.
pub struct CircuitService {
    local: NodeId,
    dialer: Arc<Dialer>,
    conns: Arc<Connections>,
    relay: Mutex<Option<RelayCircuits>>,
    /// The random bytes that re-pad relayed cells: a ChaCha20 stream
    /// seeded from the OS (a system call per cell cost a third of a
    /// relay's time, `docs/benchmarks.md`). Keys come from the OS.
    padding: Mutex<rand_chacha::ChaCha20Rng>,
    own: Mutex<HashMap<(NodeId, u32), mpsc::Sender<Inbound>>>,
    readers: Mutex<HashSet<usize>>,
    stats: CircuitStats,
}

impl std::fmt::Debug for CircuitService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CircuitService")
            .field("local", &self.local)
            .field("relay", &lock(&self.relay).is_some())
            .finish_non_exhaustive()
    }
}

impl CircuitService {
    /// The circuits of node `local`, dialing with `dialer`.
    pub(crate) fn new(local: NodeId, dialer: Arc<Dialer>, conns: Arc<Connections>) -> Self {
        Self {
            local,
            dialer,
            conns,
            relay: Mutex::new(None),
            padding: Mutex::new(
                rand::SeedableRng::from_rng(OsRng)
                    .unwrap_or_else(|_| rand::SeedableRng::from_seed(rand::random::<[u8; 32]>())),
            ),
            own: Mutex::new(HashMap::new()),
            readers: Mutex::new(HashSet::new()),
            stats: CircuitStats::default(),
        }
    }

    /// Makes this node a relay with onion keys `onion` (a no-op if it
    /// relays already).
    pub fn enable_relay(&self, onion: OnionKeys) {
        let mut relay = lock(&self.relay);
        if relay.is_none() {
            *relay = Some(RelayCircuits::new(self.local, onion));
        }
    }

    /// Rotates the relay's onion keys at `now` (unix seconds) when due;
    /// whether the current key changed (publish the descriptor again).
    pub fn rotate_onion_keys(&self, now: u64) -> bool {
        lock(&self.relay)
            .as_mut()
            .is_some_and(|r| r.rotate(now, OsRng))
    }

    /// What this relay's descriptor offers at `now`: its onion keys,
    /// `addresses`, its circuit capacity and `turn` (`None` when it
    /// does not relay).
    pub fn relay_offer(
        &self,
        now: u64,
        addresses: Vec<std::net::SocketAddr>,
        turn: Option<std::net::SocketAddr>,
    ) -> Option<crate::overlay::record::RelayOffer> {
        let capacity = u32::try_from(crate::relay::circuit::MAX_CIRCUITS).unwrap_or(u32::MAX);
        lock(&self.relay)
            .as_ref()
            .map(|r| r.onion_keys().offer(now, addresses, capacity, true, turn))
    }

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// Whether this node relays.
    pub fn is_relay(&self) -> bool {
        lock(&self.relay).is_some()
    }

    /// What this relay knows of each circuit through it (empty when it
    /// relays none).
    pub fn relay_view(&self) -> Vec<CircuitView> {
        lock(&self.relay)
            .as_ref()
            .map(RelayCircuits::view)
            .unwrap_or_default()
    }

    /// How many circuits this node built are open.
    pub fn own_circuits(&self) -> usize {
        lock(&self.own).len()
    }

    /// The traffic counters.
    pub fn stats(&self) -> &CircuitStats {
        &self.stats
    }

    /// A circuit datagram from authenticated peer `peer` (the caller
    /// checked [`is_circuit_datagram`]).
    pub fn on_datagram(self: &Arc<Self>, peer: NodeId, datagram: &[u8]) {
        let Some((&tag, body)) = datagram.split_first() else {
            return;
        };
        let result = match tag {
            LINK_TAG => LinkMsg::decode(body).map(|msg| self.on_link(peer, msg)),
            CELL_TAG => Cell::decode(body)
                .map_err(|_| CircuitError::Malformed("cell"))
                .map(|cell| self.on_cell(peer, cell)),
            _ => Err(CircuitError::Malformed("circuit datagram")),
        };
        if let Err(e) = result {
            self.refused(peer, &e);
        }
    }

    fn refused(&self, peer: NodeId, e: &CircuitError) {
        self.stats.refused.fetch_add(1, Ordering::Relaxed);
        debug!(peer = %peer.fmt_short(), error = %e, "circuit datagram refused");
    }

    fn to_own(&self, peer: NodeId, circ_id: u32, inbound: Inbound) -> Result<(), Inbound> {
        let own = lock(&self.own);
        let Some(tx) = own.get(&(peer, circ_id)) else {
            return Err(inbound);
        };
        if tx.try_send(inbound).is_err() {
            self.stats.dropped.fetch_add(1, Ordering::Relaxed);
        }
        Ok(())
    }

    fn on_link(self: &Arc<Self>, peer: NodeId, msg: LinkMsg) {
        let circ_id = msg.circ_id();
        let msg = match msg {
            LinkMsg::Created { answer, .. } => {
                match self.to_own(peer, circ_id, Inbound::Created(answer)) {
                    Ok(()) => return,
                    Err(_) => msg,
                }
            }
            LinkMsg::Destroy { .. } => match self.to_own(peer, circ_id, Inbound::Destroyed) {
                Ok(()) => return,
                Err(_) => msg,
            },
            LinkMsg::Create { .. } => {
                if lock(&self.own).contains_key(&(peer, circ_id)) {
                    // The id names one of our circuits on this link.
                    self.send_link(peer, &LinkMsg::Destroy { circ_id });
                    return self.refused(peer, &CircuitError::Unexpected("Create of an id in use"));
                }
                msg
            }
        };
        let is_create = matches!(msg, LinkMsg::Create { .. });
        let result = match lock(&self.relay).as_mut() {
            Some(relay) => relay.on_link(peer, msg, unix_secs(), OsRng),
            None => Err(CircuitError::Unexpected(
                "a circuit message to a node that does not relay",
            )),
        };
        match result {
            Ok(actions) => self.execute(actions),
            Err(e) => {
                if is_create {
                    // Say no at once: the originator builds elsewhere.
                    self.send_link(peer, &LinkMsg::Destroy { circ_id });
                }
                self.refused(peer, &e);
            }
        }
    }

    fn on_cell(self: &Arc<Self>, peer: NodeId, cell: Cell) {
        let circ_id = cell.circ_id;
        let Err(Inbound::Cell(cell)) = self.to_own(peer, circ_id, Inbound::Cell(Box::new(cell)))
        else {
            return;
        };
        let result = match lock(&self.relay).as_mut() {
            Some(relay) => relay.on_cell(peer, &cell, &mut *lock(&self.padding)),
            None => Err(CircuitError::Unknown(circ_id)),
        };
        match result {
            Ok(actions) => {
                self.stats.cells_relayed.fetch_add(1, Ordering::Relaxed);
                self.execute(actions);
            }
            Err(e) => self.refused(peer, &e),
        }
    }

    /// Does what the relay state asked.
    fn execute(self: &Arc<Self>, actions: Vec<RelayAction>) {
        for action in actions {
            match action {
                RelayAction::Link { to, msg } => self.send_link(to, &msg),
                RelayAction::Cell { to, cell } => self.send_cell(to, &cell),
                RelayAction::Connect { to, addr, msg } => {
                    if self.conns.any_to(&to).is_some() {
                        self.send_link(to, &msg);
                        continue;
                    }
                    let svc = self.clone();
                    tokio::spawn(async move {
                        match svc.dialer.connect(Contact { id: to, addr }).await {
                            Ok(peer) => {
                                svc.ensure_reader(to, peer.connection());
                                svc.send_link(to, &msg);
                            }
                            Err(e) => {
                                debug!(next = %to.fmt_short(), %addr, error = %e, "cannot extend a circuit");
                                let more = lock(&svc.relay)
                                    .as_mut()
                                    .map(|r| r.next_unreachable(to, msg.circ_id()))
                                    .unwrap_or_default();
                                svc.execute(more);
                            }
                        }
                    });
                }
                RelayAction::Deliver {
                    from,
                    circ_id,
                    payload,
                } => self.deliver(from, circ_id, payload),
            }
        }
    }

    /// A payload for this node as a circuit's last hop: echo requests
    /// are answered; anything else is dropped.
    fn deliver(self: &Arc<Self>, from: NodeId, circ_id: u32, mut payload: Vec<u8>) {
        if payload.first() != Some(&ECHO_REQUEST) {
            self.stats.refused.fetch_add(1, Ordering::Relaxed);
            return;
        }
        if let Some(first) = payload.first_mut() {
            *first = ECHO_REPLY;
        }
        let reply = lock(&self.relay)
            .as_mut()
            .map(|r| r.reply(from, circ_id, &payload, OsRng));
        if let Some(Ok(action)) = reply {
            self.stats.echoes.fetch_add(1, Ordering::Relaxed);
            self.execute(vec![action]);
        }
    }

    fn send_link(self: &Arc<Self>, to: NodeId, msg: &LinkMsg) {
        self.send(to, LINK_TAG, &msg.encode());
    }

    fn send_cell(self: &Arc<Self>, to: NodeId, cell: &Cell) {
        self.send(to, CELL_TAG, &cell.encode());
    }

    /// One datagram to neighbour `to` on an open connection; a dialed
    /// one gets a reader so that the answers are read.
    fn send(self: &Arc<Self>, to: NodeId, tag: u8, body: &[u8]) -> bool {
        let Some((conn, dialed)) = self.conns.any_to(&to) else {
            self.stats.unsent.fetch_add(1, Ordering::Relaxed);
            return false;
        };
        if dialed {
            // The neighbour may answer on this connection too.
            self.ensure_reader(to, &conn);
        }
        let mut datagram = Vec::with_capacity(1 + body.len().max(CELL_LEN));
        datagram.push(tag);
        datagram.extend_from_slice(body);
        match conn.send_datagram(datagram.into()) {
            Ok(()) => true,
            Err(e) => {
                debug!(to = %to.fmt_short(), error = %e, "circuit datagram not sent");
                self.stats.unsent.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    /// Reads circuit datagrams on a connection this node dialed, once
    /// per connection, until it closes.
    fn ensure_reader(self: &Arc<Self>, peer: NodeId, conn: &quinn::Connection) {
        if !lock(&self.readers).insert(conn.stable_id()) {
            return;
        }
        let (svc, conn) = (Arc::downgrade(self), conn.clone());
        tokio::spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                let Some(svc) = svc.upgrade() else { return };
                if is_circuit_datagram(&datagram) {
                    svc.on_datagram(peer, &datagram);
                }
            }
            if let Some(svc) = svc.upgrade() {
                lock(&svc.readers).remove(&conn.stable_id());
                svc.link_closed(peer);
            }
        });
    }

    /// A connection to `peer` ended: if none is left, every circuit
    /// through it is torn down (the other neighbours are told) and this
    /// node's circuits through it end.
    pub fn link_closed(self: &Arc<Self>, peer: NodeId) {
        if self.conns.any_to(&peer).is_some() {
            return;
        }
        let actions = lock(&self.relay)
            .as_mut()
            .map(|r| r.peer_gone(peer))
            .unwrap_or_default();
        self.execute(actions);
        let own: Vec<mpsc::Sender<Inbound>> = lock(&self.own)
            .iter()
            .filter(|((first, _), _)| *first == peer)
            .map(|(_, tx)| tx.clone())
            .collect();
        for tx in own {
            let _ = tx.try_send(Inbound::Destroyed);
        }
    }

    /// Builds a circuit along `path` (first hop first), one hop at a
    /// time, each step within [`BUILD_STEP_TIMEOUT`].
    pub async fn build(self: &Arc<Self>, path: Vec<PathHop>) -> Result<Circuit, BuildError> {
        let first = *path
            .first()
            .ok_or(CircuitError::Unexpected("an empty path"))?;
        let peer = self
            .dialer
            .connect(Contact {
                id: first.id,
                addr: first.addr,
            })
            .await
            .map_err(|e| BuildError::Unreachable(e.to_string()))?;
        self.ensure_reader(first.id, peer.connection());
        let (telescope, step) = Telescope::start(path, OsRng)?;
        let (tx, rx) = mpsc::channel(CIRCUIT_QUEUE);
        {
            let mut own = lock(&self.own);
            if own.len() >= MAX_OWN_CIRCUITS {
                return Err(BuildError::TooMany);
            }
            if own.contains_key(&(first.id, telescope.circ_id())) {
                return Err(CircuitError::Unexpected("a circuit id drawn twice").into());
            }
            own.insert((first.id, telescope.circ_id()), tx);
        }
        let mut circuit = Circuit {
            svc: self.clone(),
            first: first.id,
            telescope,
            rx,
        };
        let mut step = step;
        loop {
            match step {
                TelescopeStep::Built => return Ok(circuit),
                TelescopeStep::Link(msg) => self.send_link(first.id, &msg),
                TelescopeStep::Cell(cell) => self.send_cell(first.id, &cell),
            }
            let hop = circuit.telescope.built() + 1;
            let inbound = tokio::time::timeout(BUILD_STEP_TIMEOUT, circuit.rx.recv())
                .await
                .map_err(|_| BuildError::Timeout {
                    hop,
                    timeout: BUILD_STEP_TIMEOUT,
                })?;
            step = match inbound {
                Some(Inbound::Created(answer)) => circuit.telescope.on_created(&answer, OsRng)?,
                Some(Inbound::Cell(cell)) => match circuit.telescope.on_cell(&cell, OsRng)? {
                    FromCircuit::Step(step) => step,
                    _ => return Err(CircuitError::Unexpected("a payload while building").into()),
                },
                Some(Inbound::Destroyed) | None => return Err(BuildError::Refused { hop }),
            };
        }
    }
}

/// A circuit this node built. Dropping it tears it down (a Destroy to
/// the first hop).
pub struct Circuit {
    svc: Arc<CircuitService>,
    first: NodeId,
    telescope: Telescope,
    rx: mpsc::Receiver<Inbound>,
}

impl std::fmt::Debug for Circuit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Circuit")
            .field("first", &self.first.fmt_short())
            .field("hops", &self.telescope.path().len())
            .finish_non_exhaustive()
    }
}

/// What [`Circuit::recv`] got.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Arrival {
    /// Something the circuit carried back.
    Message(FromCircuit),
    /// A cell that did not open (tampered, replayed, out of turn):
    /// dropped.
    Refused(CircuitError),
    /// The circuit is gone (torn down by a relay, or its first link
    /// closed).
    Closed,
}

impl Circuit {
    /// The relays of the circuit, first hop first.
    pub fn hops(&self) -> &[PathHop] {
        self.telescope.path()
    }

    /// Sends `payload` to the last hop (through every layer).
    pub fn send(&mut self, payload: &[u8]) -> Result<(), CircuitError> {
        self.send_control(&Control::Payload(payload.to_vec()))
    }

    /// Sends a control message to the last hop.
    pub fn send_control(&mut self, control: &Control) -> Result<(), CircuitError> {
        let cell = self.telescope.seal_control(control, OsRng)?;
        self.svc.send_cell(self.first, &cell);
        Ok(())
    }

    /// The next thing the circuit brings back.
    pub async fn recv(&mut self) -> Arrival {
        match self.rx.recv().await {
            Some(Inbound::Cell(cell)) => match self.telescope.on_cell(&cell, OsRng) {
                Ok(m) => Arrival::Message(m),
                Err(e) => Arrival::Refused(e),
            },
            Some(Inbound::Created(_)) => {
                Arrival::Refused(CircuitError::Unexpected("a Created after the build"))
            }
            Some(Inbound::Destroyed) | None => Arrival::Closed,
        }
    }
}

impl Drop for Circuit {
    fn drop(&mut self) {
        let circ_id = self.telescope.circ_id();
        if lock(&self.svc.own).remove(&(self.first, circ_id)).is_some() {
            self.svc
                .send_link(self.first, &LinkMsg::Destroy { circ_id });
        }
    }
}

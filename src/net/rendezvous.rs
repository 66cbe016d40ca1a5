//! Rendezvous over circuits (issue 12): the callee's node keeps a
//! circuit to a rendezvous relay and publishes a [`RendezvousHandle`]
//! (the relay, a cookie and an end-to-end key, never its own address);
//! a caller's node builds its own circuit to that relay and joins the
//! cookie; the relay splices the two ([`crate::relay::circuit`]). On top,
//! the two nodes run the end-to-end handshake of [`crate::relay::e2e`],
//! so the relays see sealed frames only.
//!
//! - [`Listener`]: the callee's side. It answers every caller that joins
//!   (one at a time: a new Hello starts a new session on the same
//!   circuit).
//! - [`Call`]: the caller's side.

use super::circuits::{Arrival, BuildError, Circuit, CircuitService};
use crate::relay::circuit::{CircuitError, Control, FromCircuit, PathHop, COOKIE_LEN};
use crate::relay::e2e::{EndToEnd, Frame};
pub use crate::relay::handle::RendezvousHandle;
use crate::relay::handshake::{respond, ClientHandshake, OnionKey};
use rand::rngs::OsRng;
use rand::RngCore;
use std::sync::Arc;
use std::time::Duration;

/// How long the rendezvous relay and the other end get to answer each
/// step (Establish, Join, Hello).
pub const RENDEZVOUS_STEP_TIMEOUT: Duration = Duration::from_secs(5);

/// What a session brought.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// A payload from the other end, opened.
    Data(Vec<u8>),
    /// A new caller joined (the callee's side; the previous session, if
    /// any, is over).
    Joined,
    /// Something that did not open or came out of turn: dropped.
    Refused(String),
    /// The circuit is gone.
    Closed,
}

fn refused(e: impl std::fmt::Display) -> SessionEvent {
    SessionEvent::Refused(e.to_string())
}

/// Waits for the control message or payload `want` picks, within the
/// step timeout; anything else is an error.
async fn expect<T>(
    circuit: &mut Circuit,
    what: &'static str,
    want: impl Fn(FromCircuit) -> Option<T>,
) -> Result<T, BuildError> {
    let hop = circuit.hops().len();
    match tokio::time::timeout(RENDEZVOUS_STEP_TIMEOUT, circuit.recv()).await {
        Ok(Arrival::Message(m)) => {
            want(m).ok_or(BuildError::Circuit(CircuitError::Unexpected(what)))
        }
        Ok(Arrival::Refused(e)) => Err(BuildError::Circuit(e)),
        Ok(Arrival::Closed) => Err(BuildError::Refused { hop }),
        Err(_) => Err(BuildError::Timeout {
            hop,
            timeout: RENDEZVOUS_STEP_TIMEOUT,
        }),
    }
}

/// The callee's side: a circuit kept at a rendezvous relay.
pub struct Listener {
    circuit: Circuit,
    handle: RendezvousHandle,
    key: OnionKey,
    session: Option<EndToEnd>,
}

impl std::fmt::Debug for Listener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listener")
            .field("circuit", &self.circuit)
            .field("in_session", &self.session.is_some())
            .finish_non_exhaustive()
    }
}

/// The caller's side: a circuit spliced to the callee's, with the
/// end-to-end keys agreed.
pub struct Call {
    circuit: Circuit,
    session: EndToEnd,
}

impl std::fmt::Debug for Call {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Call")
            .field("circuit", &self.circuit)
            .finish_non_exhaustive()
    }
}

/// Opens a payload of a session: a sealed frame under `session`.
fn open(session: Option<&mut EndToEnd>, payload: &[u8]) -> SessionEvent {
    match (Frame::decode(payload), session) {
        (Ok(Frame::Sealed { seq, ct }), Some(session)) => match session.open(seq, &ct) {
            Ok(plain) => SessionEvent::Data(plain.to_vec()),
            Err(e) => refused(e),
        },
        (Ok(_), _) => refused("a frame out of turn"),
        (Err(e), _) => refused(e),
    }
}

impl CircuitService {
    /// Builds a circuit along `path` (its last hop the rendezvous
    /// relay), establishes a fresh cookie there, and listens: the
    /// callee's side.
    pub async fn listen(self: &Arc<Self>, path: Vec<PathHop>) -> Result<Listener, BuildError> {
        let point = *path
            .last()
            .ok_or(CircuitError::Unexpected("an empty path"))?;
        let mut circuit = self.build(path).await?;
        let mut cookie = [0u8; COOKIE_LEN];
        OsRng.fill_bytes(&mut cookie);
        circuit.send_control(&Control::Establish { cookie })?;
        expect(&mut circuit, "an answer to Establish", |m| {
            (m == FromCircuit::Established).then_some(())
        })
        .await?;
        let key = OnionKey::generate(OsRng);
        let handle = RendezvousHandle {
            point,
            cookie,
            key: key.public(),
            node: self.local(),
        };
        Ok(Listener {
            circuit,
            handle,
            key,
            session: None,
        })
    }

    /// Builds a circuit along `path` and then to the handle's
    /// rendezvous relay, joins the callee's circuit there and agrees
    /// end-to-end keys with the callee's node: the caller's side.
    pub async fn call(
        self: &Arc<Self>,
        mut path: Vec<PathHop>,
        handle: &RendezvousHandle,
    ) -> Result<Call, BuildError> {
        if path.last().map(|h| h.id) != Some(handle.point.id) {
            path.push(handle.point);
        }
        let mut circuit = self.build(path).await?;
        circuit.send_control(&Control::Join {
            cookie: handle.cookie,
        })?;
        expect(&mut circuit, "an answer to Join", |m| {
            (m == FromCircuit::Joined).then_some(())
        })
        .await?;
        let (client, x) = ClientHandshake::start(handle.node, handle.key, OsRng);
        circuit.send(&Frame::Hello(x).encode())?;
        let answer = expect(&mut circuit, "the callee's Welcome", |m| match m {
            FromCircuit::Payload { payload, .. } => match Frame::decode(&payload) {
                Ok(Frame::Welcome(answer)) => Some(answer),
                _ => None,
            },
            _ => None,
        })
        .await?;
        let keys = client
            .finish(&answer)
            .map_err(|e| CircuitError::Crypto(e.to_string()))?;
        Ok(Call {
            circuit,
            session: EndToEnd::caller(&keys),
        })
    }
}

impl Listener {
    /// What callers need: publish it.
    pub fn handle(&self) -> RendezvousHandle {
        self.handle
    }

    /// The relays of the circuit to the rendezvous point.
    pub fn hops(&self) -> &[PathHop] {
        self.circuit.hops()
    }

    /// The next event: a caller's Hello is answered here (a new
    /// session), payloads of the session are opened.
    pub async fn recv(&mut self) -> SessionEvent {
        loop {
            let payload = match self.circuit.recv().await {
                Arrival::Message(FromCircuit::Joined) => {
                    self.session = None;
                    return SessionEvent::Joined;
                }
                Arrival::Message(FromCircuit::Payload { payload, .. }) => payload,
                Arrival::Message(_) => return refused("a control message out of turn"),
                Arrival::Refused(e) => return refused(e),
                Arrival::Closed => return SessionEvent::Closed,
            };
            if let Ok(Frame::Hello(x)) = Frame::decode(&payload) {
                match respond(&self.handle.node, &self.key, &x, OsRng) {
                    Ok((keys, answer)) => {
                        if let Err(e) = self.circuit.send(&Frame::Welcome(answer).encode()) {
                            return refused(e);
                        }
                        self.session = Some(EndToEnd::callee(&keys));
                        continue;
                    }
                    Err(e) => return refused(e),
                }
            }
            return open(self.session.as_mut(), &payload);
        }
    }

    /// Sends `plain` to the caller of the current session.
    pub fn send(&mut self, plain: &[u8]) -> Result<(), CircuitError> {
        let session = self
            .session
            .as_mut()
            .ok_or(CircuitError::Unexpected("no caller"))?;
        let frame = session.seal(plain)?;
        self.circuit.send(&frame)
    }
}

impl Call {
    /// The relays of the caller's circuit (its last the rendezvous).
    pub fn hops(&self) -> &[PathHop] {
        self.circuit.hops()
    }

    /// Sends `plain` to the callee.
    pub fn send(&mut self, plain: &[u8]) -> Result<(), CircuitError> {
        let frame = self.session.seal(plain)?;
        self.circuit.send(&frame)
    }

    /// The next thing the callee sent.
    pub async fn recv(&mut self) -> SessionEvent {
        match self.circuit.recv().await {
            Arrival::Message(FromCircuit::Payload { payload, .. }) => {
                open(Some(&mut self.session), &payload)
            }
            Arrival::Message(_) => refused("a control message out of turn"),
            Arrival::Refused(e) => refused(e),
            Arrival::Closed => SessionEvent::Closed,
        }
    }
}

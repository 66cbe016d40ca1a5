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

use super::circuits::{Arrival, BuildError, Circuit, CircuitService, ECHO_REPLY, ECHO_REQUEST};
use crate::relay::circuit::{
    rendezvous_cookie, CircuitError, Control, FromCircuit, PathHop, COOKIE_LEN,
};
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
    /// The rendezvous relay answered a probe ([`Listener::probe`]).
    Echo,
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
    /// What the cookie is the hash of: it establishes the cookie, and
    /// takes it back from a broken circuit.
    secret: [u8; COOKIE_LEN],
    key: Arc<OnionKey>,
    session: Option<EndToEnd>,
}

/// What listening again under the same handle takes
/// ([`CircuitService::resume`]): the handle and its end-to-end key.
#[derive(Clone)]
pub struct Resume {
    handle: RendezvousHandle,
    secret: [u8; COOKIE_LEN],
    key: Arc<OnionKey>,
}

impl std::fmt::Debug for Resume {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Resume")
            .field("point", &self.handle.point.id)
            .finish_non_exhaustive()
    }
}

impl Resume {
    /// The handle it resumes.
    pub fn handle(&self) -> &RendezvousHandle {
        &self.handle
    }
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
        let mut secret = [0u8; COOKIE_LEN];
        OsRng.fill_bytes(&mut secret);
        let key = Arc::new(OnionKey::generate(OsRng));
        let handle = RendezvousHandle {
            point,
            cookie: rendezvous_cookie(&secret),
            key: key.public(),
            node: self.local(),
        };
        self.resume(
            path,
            Resume {
                handle,
                secret,
                key,
            },
        )
        .await
    }

    /// Listens again under a handle whose circuit broke: a new circuit
    /// along `path` (which must end at the same rendezvous relay), the
    /// same cookie and end-to-end key, so that callers who hold the
    /// handle reach this node again. The relay moves the cookie to the
    /// new circuit (the secret proves it is the callee's) and tears the
    /// old one down, wherever it broke.
    pub async fn resume(
        self: &Arc<Self>,
        path: Vec<PathHop>,
        resume: Resume,
    ) -> Result<Listener, BuildError> {
        if path.last().map(|h| h.id) != Some(resume.handle.point.id) {
            return Err(
                CircuitError::Unexpected("a path that does not end at the rendezvous").into(),
            );
        }
        let mut circuit = self.build(path).await?;
        circuit.send_control(&Control::Establish {
            cookie: resume.secret,
        })?;
        expect(&mut circuit, "an answer to Establish", |m| {
            (m == FromCircuit::Established).then_some(())
        })
        .await?;
        Ok(Listener {
            circuit,
            handle: resume.handle,
            secret: resume.secret,
            key: resume.key,
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

    /// What listening again under this handle takes, once this
    /// listener's circuit broke.
    pub fn resumable(&self) -> Resume {
        Resume {
            handle: self.handle,
            secret: self.secret,
            key: self.key.clone(),
        }
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
                Arrival::Message(FromCircuit::Payload { payload, .. })
                    if payload.first() == Some(&ECHO_REPLY) =>
                {
                    return SessionEvent::Echo;
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

    /// Asks the rendezvous relay to echo (while no caller is spliced: a
    /// spliced relay would pass it on), so that a circuit that broke
    /// somewhere silent is noticed: the answer is [`SessionEvent::Echo`].
    pub fn probe(&mut self) -> Result<(), CircuitError> {
        let mut probe = vec![0u8; 16];
        if let Some(first) = probe.first_mut() {
            *first = ECHO_REQUEST;
        }
        self.circuit.send(&probe)
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

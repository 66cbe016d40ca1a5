//! The messages of circuits: [`LinkMsg`] between neighbours on a link
//! (outside cells), [`Control`] inside a cell's end-to-end payload. Both
//! decoders are strict (exact lengths, no trailing bytes) and fuzzed
//! (`relay_cell`); `docs/protocol.md` §11 is their normative description.

use super::CircuitError;
use crate::identity::NodeId;
use crate::relay::handshake::{CLIENT_MSG_LEN, SERVER_MSG_LEN};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// The length of a rendezvous cookie.
pub const COOKIE_LEN: usize = 32;

/// A message between neighbours on a link, outside cells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LinkMsg {
    /// Open circuit `circ_id` on this link with handshake `X` against
    /// the relay's onion key `onion` (its current or, during the
    /// rotation overlap, its previous one: the relay needs to know which).
    Create {
        /// The new circuit's id on this link.
        circ_id: u32,
        /// The public onion key the handshake uses.
        onion: [u8; 32],
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
    bytes.get(at..at.checked_add(N)?)?.try_into().ok()
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
        let mut out = Vec::with_capacity(5 + 32 + SERVER_MSG_LEN);
        match self {
            LinkMsg::Create {
                circ_id,
                onion,
                handshake,
            } => {
                out.push(LINK_CREATE);
                out.extend_from_slice(&circ_id.to_be_bytes());
                out.extend_from_slice(onion);
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
            (Some(&LINK_CREATE), n) if n == 5 + 32 + CLIENT_MSG_LEN => Ok(LinkMsg::Create {
                circ_id,
                onion: take(bytes, 5).ok_or(bad.clone())?,
                handshake: take(bytes, 5 + 32).ok_or(bad)?,
            }),
            (Some(&LINK_CREATED), n) if n == 5 + SERVER_MSG_LEN => Ok(LinkMsg::Created {
                circ_id,
                answer: take(bytes, 5).ok_or(bad)?,
            }),
            (Some(&LINK_DESTROY), 5) => Ok(LinkMsg::Destroy { circ_id }),
            _ => Err(bad),
        }
    }

    /// The circuit it is about, on its link.
    pub fn circ_id(&self) -> u32 {
        match self {
            LinkMsg::Create { circ_id, .. }
            | LinkMsg::Created { circ_id, .. }
            | LinkMsg::Destroy { circ_id } => *circ_id,
        }
    }
}

/// A control message inside a cell's end-to-end payload.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Control {
    /// To the last hop: extend the circuit to relay `next`, reached at
    /// `addr` (where it must prove its id), with handshake `X` against
    /// its onion key `onion`.
    Extend {
        /// The next relay.
        next: NodeId,
        /// Its overlay address.
        addr: SocketAddr,
        /// Its public onion key the handshake uses.
        onion: [u8; 32],
        /// The handshake's client message, for it.
        handshake: [u8; CLIENT_MSG_LEN],
    },
    /// From the (new) last hop's predecessor: the next relay's answer.
    Extended {
        /// `Y | AUTH` of the next relay.
        answer: [u8; SERVER_MSG_LEN],
    },
    /// To the last hop: keep this circuit as the rendezvous point named
    /// by `cookie` (the callee's side).
    Establish {
        /// The rendezvous cookie the callee publishes in its handle.
        cookie: [u8; COOKIE_LEN],
    },
    /// From the last hop: the rendezvous point is established.
    Established,
    /// To the last hop: splice this circuit to the one established
    /// under `cookie` (the caller's side).
    Join {
        /// The cookie from the callee's handle.
        cookie: [u8; COOKIE_LEN],
    },
    /// From the last hop: the circuits are spliced; payloads now reach
    /// the other side. Also sent to the callee's side when a caller
    /// joins.
    Joined,
    /// Anything else: media or cover for the circuit's user.
    Payload(Vec<u8>),
}

const CTL_EXTEND: u8 = 0xE1;
const CTL_EXTENDED: u8 = 0xE2;
const CTL_ESTABLISH: u8 = 0xE3;
const CTL_ESTABLISHED: u8 = 0xE4;
const CTL_JOIN: u8 = 0xE5;
const CTL_JOINED: u8 = 0xE6;
const CTL_PAYLOAD: u8 = 0xD0;

/// An address as `family (4 or 6) | ip | port`, 7 or 19 bytes.
pub(crate) fn encode_addr(addr: &SocketAddr, out: &mut Vec<u8>) {
    match addr.ip().to_canonical() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

/// Reads an address at `at`; with its length.
pub(crate) fn decode_addr(bytes: &[u8], at: usize) -> Option<(SocketAddr, usize)> {
    let (ip, len): (IpAddr, usize) = match bytes.get(at)? {
        4 => (Ipv4Addr::from(take::<4>(bytes, at + 1)?).into(), 4),
        6 => (Ipv6Addr::from(take::<16>(bytes, at + 1)?).into(), 16),
        _ => return None,
    };
    let port = u16::from_be_bytes(take::<2>(bytes, at + 1 + len)?);
    Some((SocketAddr::new(ip, port), 1 + len + 2))
}

impl Control {
    /// Its bytes.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 + 32 + 19 + 32 + CLIENT_MSG_LEN);
        match self {
            Control::Extend {
                next,
                addr,
                onion,
                handshake,
            } => {
                out.push(CTL_EXTEND);
                out.extend_from_slice(next.as_bytes());
                encode_addr(addr, &mut out);
                out.extend_from_slice(onion);
                out.extend_from_slice(handshake);
            }
            Control::Extended { answer } => {
                out.push(CTL_EXTENDED);
                out.extend_from_slice(answer);
            }
            Control::Establish { cookie } => {
                out.push(CTL_ESTABLISH);
                out.extend_from_slice(cookie);
            }
            Control::Established => out.push(CTL_ESTABLISHED),
            Control::Join { cookie } => {
                out.push(CTL_JOIN);
                out.extend_from_slice(cookie);
            }
            Control::Joined => out.push(CTL_JOINED),
            Control::Payload(p) => {
                out.push(CTL_PAYLOAD);
                out.extend_from_slice(p);
            }
        }
        out
    }

    /// Reads a control message, strictly.
    pub fn decode(bytes: &[u8]) -> Result<Self, CircuitError> {
        let bad = CircuitError::Malformed("control message");
        match (bytes.first(), bytes.len()) {
            (Some(&CTL_EXTEND), _) => {
                let next = NodeId::from_bytes(take(bytes, 1).ok_or(bad.clone())?);
                let (addr, len) = decode_addr(bytes, 33).ok_or(bad.clone())?;
                let at = 33 + len;
                if bytes.len() != at + 32 + CLIENT_MSG_LEN {
                    return Err(bad);
                }
                Ok(Control::Extend {
                    next,
                    addr,
                    onion: take(bytes, at).ok_or(bad.clone())?,
                    handshake: take(bytes, at + 32).ok_or(bad)?,
                })
            }
            (Some(&CTL_EXTENDED), n) if n == 1 + SERVER_MSG_LEN => Ok(Control::Extended {
                answer: take(bytes, 1).ok_or(bad)?,
            }),
            (Some(&CTL_ESTABLISH), n) if n == 1 + COOKIE_LEN => Ok(Control::Establish {
                cookie: take(bytes, 1).ok_or(bad)?,
            }),
            (Some(&CTL_ESTABLISHED), 1) => Ok(Control::Established),
            (Some(&CTL_JOIN), n) if n == 1 + COOKIE_LEN => Ok(Control::Join {
                cookie: take(bytes, 1).ok_or(bad)?,
            }),
            (Some(&CTL_JOINED), 1) => Ok(Control::Joined),
            (Some(&CTL_PAYLOAD), _) => Ok(Control::Payload(
                bytes.get(1..).unwrap_or_default().to_vec(),
            )),
            _ => Err(bad),
        }
    }
}

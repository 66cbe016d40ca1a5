//! The rendezvous handle (issue 12): what a callee's node publishes, in
//! its user's SIP registration, so that callers reach it through a
//! rendezvous relay without learning its address.
//!
//! In a registration entry it is one contact URI of the entry's node
//! (docs/protocol.md §11.6):
//!
//! ```text
//! contact = "p2psip-rv:" base64url-nopad(handle)
//! handle  = 0x01 | point_id (32) | point_addr (7 or 19) | point_onion (32)
//!           | cookie (32) | e2e_key (32)
//! ```
//!
//! `point_addr` is encoded as in an Extend (`family | ip | port`). The
//! node the handle leads to is the entry's node id: the end-to-end
//! handshake proves it, so the handle does not repeat it.

use super::circuit::{PathHop, COOKIE_LEN};
use crate::identity::NodeId;
use crate::limits::MAX_CONTACT_LEN;
use data_encoding::BASE64URL_NOPAD;
use std::fmt;

/// The scheme of a rendezvous contact.
pub const CONTACT_SCHEME: &str = "p2psip-rv:";
const VERSION: u8 = 1;

/// What a callee publishes so that callers reach it without learning
/// its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RendezvousHandle {
    /// The rendezvous relay.
    pub point: PathHop,
    /// The cookie the callee established there.
    pub cookie: [u8; COOKIE_LEN],
    /// The callee node's end-to-end key (X25519, public).
    pub key: [u8; 32],
    /// The callee node's id (the identity its end-to-end handshake
    /// proves; the one its user's registration binds).
    pub node: NodeId,
}

/// Why a contact is not a rendezvous handle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HandleError {
    /// Not a `p2psip-rv:` contact.
    NotRendezvous,
    /// Not base64url without padding.
    Encoding,
    /// An unknown handle version.
    Version(u8),
    /// Too short, too long, or a bad address.
    Malformed,
}

impl fmt::Display for HandleError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HandleError::NotRendezvous => write!(f, "not a {CONTACT_SCHEME} contact"),
            HandleError::Encoding => f.write_str("a rendezvous handle that is not base64url"),
            HandleError::Version(v) => {
                write!(f, "rendezvous handle version {v} (this node reads 1)")
            }
            HandleError::Malformed => f.write_str("a malformed rendezvous handle"),
        }
    }
}

impl std::error::Error for HandleError {}

fn take<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], HandleError> {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(HandleError::Malformed)
}

impl RendezvousHandle {
    /// The contact URI that publishes it (at most [`MAX_CONTACT_LEN`]
    /// bytes: 192 for an IPv4 point, 208 for IPv6).
    pub fn to_contact(&self) -> String {
        let mut raw = Vec::with_capacity(1 + 32 + 19 + 32 * 3);
        raw.push(VERSION);
        raw.extend_from_slice(self.point.id.as_bytes());
        super::circuit::encode_addr(&self.point.addr, &mut raw);
        raw.extend_from_slice(&self.point.onion);
        raw.extend_from_slice(&self.cookie);
        raw.extend_from_slice(&self.key);
        format!("{CONTACT_SCHEME}{}", BASE64URL_NOPAD.encode(&raw))
    }

    /// Reads a contact of a registration entry whose node is `node`.
    pub fn from_contact(contact: &str, node: NodeId) -> Result<Self, HandleError> {
        let encoded = contact
            .strip_prefix(CONTACT_SCHEME)
            .ok_or(HandleError::NotRendezvous)?;
        if contact.len() > MAX_CONTACT_LEN {
            return Err(HandleError::Malformed);
        }
        let raw = BASE64URL_NOPAD
            .decode(encoded.as_bytes())
            .map_err(|_| HandleError::Encoding)?;
        match raw.first() {
            Some(&VERSION) => {}
            Some(&v) => return Err(HandleError::Version(v)),
            None => return Err(HandleError::Malformed),
        }
        let id = NodeId::from_bytes(take(&raw, 1)?);
        let (addr, len) = super::circuit::decode_addr(&raw, 33).ok_or(HandleError::Malformed)?;
        let at = 33 + len;
        let onion = take(&raw, at)?;
        let cookie = take(&raw, at + 32)?;
        let key = take(&raw, at + 64)?;
        if raw.len() != at + 96 {
            return Err(HandleError::Malformed);
        }
        Ok(Self {
            point: PathHop { id, addr, onion },
            cookie,
            key,
            node,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddr;

    fn handle(addr: &str) -> RendezvousHandle {
        RendezvousHandle {
            point: PathHop {
                id: NodeId::from_bytes([1; 32]),
                addr: addr.parse::<SocketAddr>().unwrap(),
                onion: [2; 32],
            },
            cookie: [3; 32],
            key: [4; 32],
            node: NodeId::from_bytes([5; 32]),
        }
    }

    #[test]
    fn a_handle_round_trips_through_its_contact_within_the_contact_bound() {
        for addr in ["192.0.2.7:4433", "[2001:db8::1]:4433"] {
            let h = handle(addr);
            let contact = h.to_contact();
            assert!(contact.len() <= MAX_CONTACT_LEN, "{}", contact.len());
            assert_eq!(RendezvousHandle::from_contact(&contact, h.node), Ok(h));
        }
        assert_eq!(handle("192.0.2.7:1").to_contact().len(), 192);
    }

    #[test]
    fn anything_else_is_refused_with_its_reason() {
        let node = NodeId::from_bytes([5; 32]);
        let good = handle("192.0.2.7:4433").to_contact();
        let err = |c: &str| RendezvousHandle::from_contact(c, node).unwrap_err();
        assert_eq!(err("sip:alice@example.org"), HandleError::NotRendezvous);
        assert_eq!(err("p2psip-rv:!!"), HandleError::Encoding);
        assert_eq!(err(&format!("{good}AAA")), HandleError::Encoding);
        let mut raw = BASE64URL_NOPAD
            .decode(good.trim_start_matches(CONTACT_SCHEME).as_bytes())
            .unwrap();
        raw[0] = 2;
        let c = format!("{CONTACT_SCHEME}{}", BASE64URL_NOPAD.encode(&raw));
        assert_eq!(err(&c), HandleError::Version(2));
        raw[0] = 1;
        raw.push(0);
        let c = format!("{CONTACT_SCHEME}{}", BASE64URL_NOPAD.encode(&raw));
        assert_eq!(err(&c), HandleError::Malformed);
        raw.truncate(100);
        let c = format!("{CONTACT_SCHEME}{}", BASE64URL_NOPAD.encode(&raw));
        assert_eq!(err(&c), HandleError::Malformed);
        // An IPv4-mapped IPv6 point: one encoding per address only.
        raw = BASE64URL_NOPAD
            .decode(
                handle("[::ffff:192.0.2.7]:1")
                    .to_contact()
                    .trim_start_matches(CONTACT_SCHEME)
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(raw[33], 4, "encoded as IPv4");
    }
}

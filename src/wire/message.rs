//! Messages: one CBOR array each, `[type, fields...]`.
//!
//! | type | message | fields                                              |
//! |------|---------|-----------------------------------------------------|
//! | 1    | Ping    | `nonce: uint`                                       |
//! | 2    | Pong    | `nonce: uint, ip: bstr(4 / 16), port: uint(<65536)` |
//! | 3    | Error   | `code: uint(<65536), reason: tstr(<=256 bytes)`     |
//! | 4    | FindNode  | `overlay: tstr, target: bstr(32)`                 |
//! | 5    | Nodes     | `contacts: [* contact]`                           |
//! | 6    | FindValue | `overlay: tstr, key: bstr(32), kind: uint`        |
//! | 7    | Value     | `records: [* bstr], contacts: [* contact]`        |
//! | 8    | Store     | `overlay: tstr, record: bstr`                     |
//! | 9    | Stored    | `seq: uint`                                       |
//! | 10   | Sip       | `overlay: tstr, message: bstr(1..=65000)`         |
//! | 11   | SipReceived | (none)                                          |
//!
//! `contact = [node_id: bstr(32), ip: bstr(4 / 16), port: uint(<65536)]`.
//! Records travel as their own canonical encoding
//! ([`crate::overlay::record`]), verified by the receiver.

use super::cbor::{encoder, require_canonical, Reader};
use super::WireError;
use crate::identity::NodeId;
use crate::limits::{
    MAX_CONTACTS_PER_ANSWER, MAX_ERROR_REASON_LEN, MAX_OVERLAY_NAME_LEN, MAX_RECORDS_PER_ANSWER,
    MAX_RECORD_VALUE_LEN,
};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TYPE_PING: u64 = 1;
const TYPE_PONG: u64 = 2;
const TYPE_ERROR: u64 = 3;
const TYPE_FIND_NODE: u64 = 4;
const TYPE_NODES: u64 = 5;
const TYPE_FIND_VALUE: u64 = 6;
const TYPE_VALUE: u64 = 7;
const TYPE_STORE: u64 = 8;
const TYPE_STORED: u64 = 9;
const TYPE_SIP: u64 = 10;
const TYPE_SIP_RECEIVED: u64 = 11;

/// Longest encoded record carried in a message: the value bound plus room
/// for the record's other fields.
pub const MAX_RECORD_ENCODING_LEN: usize = MAX_RECORD_VALUE_LEN + 256;

/// A peer as the overlay names it: its node id and its address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Contact {
    /// The peer's node id.
    pub id: NodeId,
    /// Where it listens.
    pub addr: SocketAddr,
}

/// Error codes carried by [`Message::Error`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ErrorCode {
    /// 1: the frame announced a body longer than the maximum. Disconnects.
    FrameTooLarge,
    /// 2: the frame or message could not be decoded under the profile.
    /// Disconnects.
    MalformedMessage,
    /// 3: the message type is unknown to the receiver.
    UnknownMessageType,
    /// 4: a known message that is not a valid request (a Pong sent as a
    /// request, for instance).
    UnexpectedMessage,
    /// 5: the receiver is at a limit; try later.
    Busy,
    /// 6: the receiver failed for reasons of its own.
    Internal,
    /// 7: the request names another overlay than the receiver's.
    WrongOverlay,
    /// 8: a record was refused (it does not verify, rolls back, or is
    /// over a quota); the reason says which.
    RecordRefused,
    /// 9: the receiver refuses to store a record whose key it is not
    /// responsible for (it knows enough nodes closer to the key).
    NotResponsible,
    /// 10: the requester exceeded its request rate; the request was not
    /// processed. Retry later.
    RateLimited,
    /// 11: the receiver serves no SIP (it runs without a SIP listener).
    NoSip,
    /// Any other code, kept so that it re-encodes unchanged.
    Other(u16),
}

impl ErrorCode {
    /// The code's number on the wire.
    pub fn to_u16(self) -> u16 {
        match self {
            ErrorCode::FrameTooLarge => 1,
            ErrorCode::MalformedMessage => 2,
            ErrorCode::UnknownMessageType => 3,
            ErrorCode::UnexpectedMessage => 4,
            ErrorCode::Busy => 5,
            ErrorCode::Internal => 6,
            ErrorCode::WrongOverlay => 7,
            ErrorCode::RecordRefused => 8,
            ErrorCode::NotResponsible => 9,
            ErrorCode::RateLimited => 10,
            ErrorCode::NoSip => 11,
            ErrorCode::Other(n) => n,
        }
    }

    /// Its name in metrics and logs (`record_refused`, `rate_limited`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::MalformedMessage => "malformed_message",
            ErrorCode::UnknownMessageType => "unknown_message_type",
            ErrorCode::UnexpectedMessage => "unexpected_message",
            ErrorCode::Busy => "busy",
            ErrorCode::Internal => "internal",
            ErrorCode::WrongOverlay => "wrong_overlay",
            ErrorCode::RecordRefused => "record_refused",
            ErrorCode::NotResponsible => "not_responsible",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::NoSip => "no_sip",
            ErrorCode::Other(_) => "other",
        }
    }

    /// The code for a number on the wire.
    pub fn from_u16(n: u16) -> Self {
        match n {
            1 => ErrorCode::FrameTooLarge,
            2 => ErrorCode::MalformedMessage,
            3 => ErrorCode::UnknownMessageType,
            4 => ErrorCode::UnexpectedMessage,
            5 => ErrorCode::Busy,
            6 => ErrorCode::Internal,
            7 => ErrorCode::WrongOverlay,
            8 => ErrorCode::RecordRefused,
            9 => ErrorCode::NotResponsible,
            10 => ErrorCode::RateLimited,
            11 => ErrorCode::NoSip,
            n => ErrorCode::Other(n),
        }
    }
}

/// A protocol message.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Message {
    /// A liveness probe; the answer is a [`Message::Pong`] with the same
    /// nonce.
    Ping {
        /// Chosen by the sender, echoed in the Pong.
        nonce: u64,
    },
    /// The answer to a Ping.
    Pong {
        /// The Ping's nonce.
        nonce: u64,
        /// The address the responder sees the Ping coming from.
        observed: SocketAddr,
    },
    /// A refusal, with a code and a human-readable reason.
    Error {
        /// What went wrong.
        code: ErrorCode,
        /// Why, for humans; at most 256 bytes of UTF-8.
        reason: String,
    },
    /// Asks for the receiver's closest contacts to `target`.
    FindNode {
        /// The overlay the requester belongs to.
        overlay: String,
        /// The key looked up.
        target: [u8; 32],
    },
    /// The answer to FindNode: at most 32 contacts, closest first.
    Nodes {
        /// The contacts.
        contacts: Vec<Contact>,
    },
    /// Asks for the records of `kind` under `key` (and closer contacts).
    FindValue {
        /// The overlay the requester belongs to.
        overlay: String,
        /// The record key.
        key: [u8; 32],
        /// The record kind.
        kind: u64,
    },
    /// The answer to FindValue.
    Value {
        /// Encoded records (at most 4), each verified by the receiver.
        records: Vec<Vec<u8>>,
        /// Closer contacts, as in Nodes.
        contacts: Vec<Contact>,
    },
    /// Asks the receiver to store an encoded record.
    Store {
        /// The overlay the requester belongs to.
        overlay: String,
        /// The encoded record.
        record: Vec<u8>,
    },
    /// The answer to Store: the record is stored (durably, where the
    /// receiver persists records) at this sequence number.
    Stored {
        /// The sequence number now held.
        seq: u64,
    },
    /// Carries one SIP message (request or response, RFC 3261 bytes) to
    /// the receiver's SIP proxy: a call, or an answer, between the nodes
    /// of two phones.
    Sip {
        /// The overlay the requester belongs to.
        overlay: String,
        /// The SIP message, at most [`MAX_SIP_MESSAGE_LEN`] bytes.
        message: Vec<u8>,
    },
    /// The answer to Sip: the receiver's proxy took the message (what it
    /// makes of it comes back as SIP).
    SipReceived,
}

/// Longest SIP message a [`Message::Sip`] carries: what fits one frame
/// with the overlay name and the message's framing.
pub const MAX_SIP_MESSAGE_LEN: usize = 65_000;

fn encode_contacts(e: &mut minicbor::Encoder<Vec<u8>>, contacts: &[Contact]) {
    let _ = e.array(contacts.len() as u64);
    for c in contacts {
        let ip: Vec<u8> = match c.addr.ip() {
            IpAddr::V4(v4) => v4.octets().to_vec(),
            IpAddr::V6(v6) => v6.octets().to_vec(),
        };
        let _ = e
            .array(3)
            .and_then(|e| e.bytes(c.id.as_bytes())?.bytes(&ip)?.u16(c.addr.port()));
    }
}

fn decode_ip(bytes: &[u8], field: &'static str) -> Result<IpAddr, WireError> {
    if let Ok(o) = <[u8; 4]>::try_from(bytes) {
        Ok(IpAddr::V4(Ipv4Addr::from(o)))
    } else if let Ok(o) = <[u8; 16]>::try_from(bytes) {
        Ok(IpAddr::V6(Ipv6Addr::from(o)))
    } else {
        Err(WireError::FieldOutOfRange(field))
    }
}

fn decode_contacts(r: &mut Reader<'_>) -> Result<Vec<Contact>, WireError> {
    let n = r.array()?;
    if n > MAX_CONTACTS_PER_ANSWER as u64 {
        return Err(WireError::FieldOutOfRange("contacts"));
    }
    let mut out = Vec::with_capacity(n as usize);
    for _ in 0..n {
        if r.array()? != 3 {
            return Err(WireError::FieldOutOfRange("contact"));
        }
        let id = NodeId::from_bytes(r.bytes_exact("contact.node_id")?);
        let ip = decode_ip(r.bytes()?, "contact.ip")?;
        let port = r.u16("contact.port")?;
        out.push(Contact {
            id,
            addr: SocketAddr::new(ip, port),
        });
    }
    Ok(out)
}

fn decode_record(r: &mut Reader<'_>, field: &'static str) -> Result<Vec<u8>, WireError> {
    let b = r.bytes()?;
    if b.is_empty() || b.len() > MAX_RECORD_ENCODING_LEN {
        return Err(WireError::FieldOutOfRange(field));
    }
    Ok(b.to_vec())
}

impl Message {
    /// An Error message, its reason cut to the maximum length on a
    /// character boundary.
    pub fn error(code: ErrorCode, reason: &str) -> Self {
        let mut end = reason.len().min(MAX_ERROR_REASON_LEN);
        while !reason.is_char_boundary(end) {
            end -= 1;
        }
        Message::Error {
            code,
            reason: reason[..end].to_owned(),
        }
    }

    /// The message's name, for logs and errors.
    pub fn name(&self) -> &'static str {
        self.names().0
    }

    /// Its kind in metrics (`find_node`, `store`, ...).
    pub fn kind(&self) -> &'static str {
        self.names().1
    }

    /// Its name as the protocol writes it, and its kind in metrics.
    fn names(&self) -> (&'static str, &'static str) {
        match self {
            Message::Ping { .. } => ("Ping", "ping"),
            Message::Pong { .. } => ("Pong", "pong"),
            Message::Error { .. } => ("Error", "error"),
            Message::FindNode { .. } => ("FindNode", "find_node"),
            Message::Nodes { .. } => ("Nodes", "nodes"),
            Message::FindValue { .. } => ("FindValue", "find_value"),
            Message::Value { .. } => ("Value", "value"),
            Message::Store { .. } => ("Store", "store"),
            Message::Stored { .. } => ("Stored", "stored"),
            Message::Sip { .. } => ("Sip", "sip"),
            Message::SipReceived => ("SipReceived", "sip_received"),
        }
    }

    /// The canonical CBOR encoding.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        // Writing into a Vec is infallible; the results carry no error.
        let _ = match self {
            Message::Ping { nonce } => e.array(2).and_then(|e| e.u64(TYPE_PING)?.u64(*nonce)),
            Message::Pong { nonce, observed } => {
                let ip: Vec<u8> = match observed.ip() {
                    IpAddr::V4(v4) => v4.octets().to_vec(),
                    IpAddr::V6(v6) => v6.octets().to_vec(),
                };
                e.array(4).and_then(|e| {
                    e.u64(TYPE_PONG)?
                        .u64(*nonce)?
                        .bytes(&ip)?
                        .u16(observed.port())
                })
            }
            Message::Error { code, reason } => e
                .array(3)
                .and_then(|e| e.u64(TYPE_ERROR)?.u16(code.to_u16())?.str(reason)),
            Message::FindNode { overlay, target } => e
                .array(3)
                .and_then(|e| e.u64(TYPE_FIND_NODE)?.str(overlay)?.bytes(target)),
            Message::Nodes { contacts } => {
                let _ = e.array(2).and_then(|e| e.u64(TYPE_NODES));
                encode_contacts(&mut e, contacts);
                Ok(&mut e)
            }
            Message::FindValue { overlay, key, kind } => e
                .array(4)
                .and_then(|e| e.u64(TYPE_FIND_VALUE)?.str(overlay)?.bytes(key)?.u64(*kind)),
            Message::Value { records, contacts } => {
                let _ = e
                    .array(3)
                    .and_then(|e| e.u64(TYPE_VALUE)?.array(records.len() as u64));
                for rec in records {
                    let _ = e.bytes(rec);
                }
                encode_contacts(&mut e, contacts);
                Ok(&mut e)
            }
            Message::Store { overlay, record } => e
                .array(3)
                .and_then(|e| e.u64(TYPE_STORE)?.str(overlay)?.bytes(record)),
            Message::Stored { seq } => e.array(2).and_then(|e| e.u64(TYPE_STORED)?.u64(*seq)),
            Message::Sip { overlay, message } => e
                .array(3)
                .and_then(|e| e.u64(TYPE_SIP)?.str(overlay)?.bytes(message)),
            Message::SipReceived => e.array(1).and_then(|e| e.u64(TYPE_SIP_RECEIVED)),
        };
        e.into_writer()
    }

    /// Decodes one message under the strict profile.
    pub fn decode(input: &[u8]) -> Result<Self, WireError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let message_type = r.u64()?;
        let expected = match message_type {
            TYPE_PING => 2,
            TYPE_PONG => 4,
            TYPE_ERROR => 3,
            TYPE_FIND_NODE => 3,
            TYPE_NODES => 2,
            TYPE_FIND_VALUE => 4,
            TYPE_VALUE => 3,
            TYPE_STORE => 3,
            TYPE_STORED => 2,
            TYPE_SIP => 3,
            TYPE_SIP_RECEIVED => 1,
            other => return Err(WireError::UnknownMessageType(other)),
        };
        if arity != expected {
            return Err(WireError::WrongArity {
                message_type,
                expected,
                found: arity,
            });
        }
        let message = match message_type {
            TYPE_PING => Message::Ping { nonce: r.u64()? },
            TYPE_PONG => {
                let nonce = r.u64()?;
                let ip = match r.bytes()? {
                    b if b.len() == 4 => {
                        let o: [u8; 4] = b.try_into().map_err(|_| WireError::Truncated)?;
                        IpAddr::V4(Ipv4Addr::from(o))
                    }
                    b if b.len() == 16 => {
                        let o: [u8; 16] = b.try_into().map_err(|_| WireError::Truncated)?;
                        IpAddr::V6(Ipv6Addr::from(o))
                    }
                    _ => return Err(WireError::FieldOutOfRange("pong.ip")),
                };
                let port = r.u16("pong.port")?;
                Message::Pong {
                    nonce,
                    observed: SocketAddr::new(ip, port),
                }
            }
            TYPE_ERROR => {
                let code = ErrorCode::from_u16(r.u16("error.code")?);
                let reason = r.str("error.reason", MAX_ERROR_REASON_LEN)?.to_owned();
                Message::Error { code, reason }
            }
            TYPE_FIND_NODE => Message::FindNode {
                overlay: r.str("find_node.overlay", MAX_OVERLAY_NAME_LEN)?.to_owned(),
                target: r.bytes_exact("find_node.target")?,
            },
            TYPE_NODES => Message::Nodes {
                contacts: decode_contacts(&mut r)?,
            },
            TYPE_FIND_VALUE => Message::FindValue {
                overlay: r
                    .str("find_value.overlay", MAX_OVERLAY_NAME_LEN)?
                    .to_owned(),
                key: r.bytes_exact("find_value.key")?,
                kind: r.u64()?,
            },
            TYPE_VALUE => {
                let n = r.array()?;
                if n > MAX_RECORDS_PER_ANSWER as u64 {
                    return Err(WireError::FieldOutOfRange("value.records"));
                }
                let mut records = Vec::with_capacity(n as usize);
                for _ in 0..n {
                    records.push(decode_record(&mut r, "value.record")?);
                }
                Message::Value {
                    records,
                    contacts: decode_contacts(&mut r)?,
                }
            }
            TYPE_STORE => Message::Store {
                overlay: r.str("store.overlay", MAX_OVERLAY_NAME_LEN)?.to_owned(),
                record: decode_record(&mut r, "store.record")?,
            },
            TYPE_SIP => {
                let overlay = r.str("sip.overlay", MAX_OVERLAY_NAME_LEN)?.to_owned();
                let message = r.bytes()?;
                if message.is_empty() || message.len() > MAX_SIP_MESSAGE_LEN {
                    return Err(WireError::FieldOutOfRange("sip.message"));
                }
                Message::Sip {
                    overlay,
                    message: message.to_vec(),
                }
            }
            TYPE_SIP_RECEIVED => Message::SipReceived,
            _ => Message::Stored { seq: r.u64()? },
        };
        r.finish()?;
        require_canonical(input, &message.encode())?;
        Ok(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(s: &str) -> Vec<u8> {
        hex::decode(s.replace(' ', "")).unwrap()
    }

    /// The byte-exact examples of docs/protocol.md.
    #[test]
    fn documented_examples_are_byte_exact() {
        let ping = Message::Ping {
            nonce: 0x0123_4567_89ab_cdef,
        };
        assert_eq!(ping.encode(), hex("82 01 1b 0123456789abcdef"));
        let pong = Message::Pong {
            nonce: 0x0123_4567_89ab_cdef,
            observed: "127.0.0.1:4433".parse().unwrap(),
        };
        assert_eq!(
            pong.encode(),
            hex("84 02 1b 0123456789abcdef 44 7f000001 19 1151")
        );
        let err = Message::error(ErrorCode::MalformedMessage, "bad");
        assert_eq!(err.encode(), hex("83 03 02 63 626164"));
        for m in [ping, pong, err] {
            assert_eq!(Message::decode(&m.encode()), Ok(m));
        }
    }

    #[test]
    fn overlay_messages_round_trip_and_are_bounded() {
        let c = |n: u8, a: &str| Contact {
            id: NodeId::from_bytes([n; 32]),
            addr: a.parse().unwrap(),
        };
        let all = [
            Message::FindNode {
                overlay: "p2psip".into(),
                target: [7; 32],
            },
            Message::Nodes {
                contacts: vec![c(1, "127.0.0.1:4433"), c(2, "[::1]:9")],
            },
            Message::Nodes { contacts: vec![] },
            Message::FindValue {
                overlay: "o".into(),
                key: [9; 32],
                kind: 1,
            },
            Message::Value {
                records: vec![vec![1, 2, 3]],
                contacts: vec![c(3, "10.0.0.1:1")],
            },
            Message::Store {
                overlay: "o".into(),
                record: vec![0x86; 40],
            },
            Message::Stored { seq: 42 },
        ];
        for m in all {
            assert_eq!(Message::decode(&m.encode()), Ok(m.clone()), "{}", m.name());
        }
        // Documented example: FindNode("p2psip", 0x07 * 32).
        assert_eq!(
            hex::encode(
                Message::FindNode {
                    overlay: "p2psip".into(),
                    target: [7; 32]
                }
                .encode()
            ),
            format!("830466703270736970 5820{}", "07".repeat(32)).replace(' ', "")
        );
        // Too many contacts is refused from the array header.
        let many = Message::Nodes {
            contacts: (0..=MAX_CONTACTS_PER_ANSWER as u8)
                .map(|n| c(n, "10.0.0.1:1"))
                .collect(),
        };
        assert_eq!(
            Message::decode(&many.encode()),
            Err(WireError::FieldOutOfRange("contacts"))
        );
        // A record larger than any record is refused.
        let big = Message::Store {
            overlay: "o".into(),
            record: vec![0; MAX_RECORD_ENCODING_LEN + 1],
        };
        assert_eq!(
            Message::decode(&big.encode()),
            Err(WireError::FieldOutOfRange("store.record"))
        );
        // Five-byte contact address.
        let mut bad = hex("82 05 81 83 5820");
        bad.extend_from_slice(&[1; 32]);
        bad.extend_from_slice(&hex("45 0000000000 01"));
        assert_eq!(
            Message::decode(&bad),
            Err(WireError::FieldOutOfRange("contact.ip"))
        );
    }

    #[test]
    fn ipv6_pong_round_trips() {
        let m = Message::Pong {
            nonce: 7,
            observed: "[::1]:9".parse().unwrap(),
        };
        assert_eq!(Message::decode(&m.encode()), Ok(m));
    }

    #[test]
    fn unknown_types_and_bad_shapes_are_typed_errors() {
        assert_eq!(
            Message::decode(&hex("82 18 63 00")),
            Err(WireError::UnknownMessageType(99))
        );
        assert!(matches!(
            Message::decode(&hex("83 01 00 00")),
            Err(WireError::WrongArity { .. })
        ));
        assert_eq!(
            Message::decode(&hex("82 01 00 00")),
            Err(WireError::TrailingBytes)
        );
        assert_eq!(Message::decode(&hex("82 01")), Err(WireError::Truncated));
        assert_eq!(
            Message::decode(&hex("9f 01 00 ff")),
            Err(WireError::Indefinite)
        );
        // Pong with a 5-byte address.
        assert_eq!(
            Message::decode(&hex("84 02 00 45 0000000000 00")),
            Err(WireError::FieldOutOfRange("pong.ip"))
        );
        // Port above 65535.
        assert_eq!(
            Message::decode(&hex("84 02 00 44 7f000001 1a 00010000")),
            Err(WireError::FieldOutOfRange("pong.port"))
        );
        // Error reason that is not UTF-8.
        assert!(matches!(
            Message::decode(&hex("83 03 02 62 c328")),
            Err(WireError::Malformed(_))
        ));
    }

    #[test]
    fn non_shortest_integers_are_refused() {
        // nonce 5 written in one extra byte.
        assert_eq!(
            Message::decode(&hex("82 01 18 05")),
            Err(WireError::NonCanonical)
        );
        assert_eq!(
            Message::decode(&hex("82 01 05")),
            Ok(Message::Ping { nonce: 5 })
        );
    }

    #[test]
    fn long_reasons_are_cut_on_a_character_boundary() {
        let long = "é".repeat(200); // 400 bytes
        let Message::Error { reason, .. } = Message::error(ErrorCode::Internal, &long) else {
            unreachable!()
        };
        assert!(reason.len() <= MAX_ERROR_REASON_LEN);
        assert!(reason.chars().all(|c| c == 'é'));
    }

    #[test]
    fn oversized_reason_is_refused() {
        let mut e = encoder();
        e.array(3).unwrap().u64(3).unwrap().u16(2).unwrap();
        e.str(&"x".repeat(MAX_ERROR_REASON_LEN + 1)).unwrap();
        assert_eq!(
            Message::decode(&e.into_writer()),
            Err(WireError::FieldOutOfRange("error.reason"))
        );
    }

    /// The Sip examples of docs/protocol.md §9.
    #[test]
    fn sip_messages_are_byte_exact_and_bounded() {
        let sip = Message::Sip {
            overlay: "lab".into(),
            message: b"SIP".to_vec(),
        };
        assert_eq!(sip.encode(), hex("83 0a 63 6c6162 43 534950"));
        assert_eq!(Message::decode(&sip.encode()), Ok(sip));
        assert_eq!(Message::SipReceived.encode(), hex("81 0b"));
        assert_eq!(Message::decode(&hex("81 0b")), Ok(Message::SipReceived));
        // An empty message, or one longer than the maximum, is refused.
        assert_eq!(
            Message::decode(&hex("83 0a 63 6c6162 40")),
            Err(WireError::FieldOutOfRange("sip.message"))
        );
        let big = Message::Sip {
            overlay: "lab".into(),
            message: vec![b'x'; MAX_SIP_MESSAGE_LEN + 1],
        };
        assert_eq!(
            Message::decode(&big.encode()),
            Err(WireError::FieldOutOfRange("sip.message"))
        );
        let most = Message::Sip {
            overlay: "x".repeat(MAX_OVERLAY_NAME_LEN),
            message: vec![b'x'; MAX_SIP_MESSAGE_LEN],
        };
        assert!(
            most.encode().len() <= crate::limits::MAX_FRAME_LEN,
            "the largest Sip message fits one frame"
        );
    }

    #[test]
    fn error_codes_have_fixed_numbers_and_round_trip() {
        assert_eq!(ErrorCode::NotResponsible.to_u16(), 9);
        assert_eq!(ErrorCode::RateLimited.to_u16(), 10);
        for n in 0..=12u16 {
            assert_eq!(ErrorCode::from_u16(n).to_u16(), n);
        }
        assert_eq!(ErrorCode::NoSip.to_u16(), 11);
        assert_eq!(ErrorCode::from_u16(12), ErrorCode::Other(12));
        let refused = Message::error(ErrorCode::RateLimited, "slow down");
        assert_eq!(refused.encode(), hex("83 03 0a 69 736c6f7720646f776e"));
        assert_eq!(Message::decode(&refused.encode()), Ok(refused));
    }
}

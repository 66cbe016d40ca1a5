//! Messages: one CBOR array each, `[type, fields...]`.
//!
//! | type | message | fields                                              |
//! |------|---------|-----------------------------------------------------|
//! | 1    | Ping    | `nonce: uint`                                       |
//! | 2    | Pong    | `nonce: uint, ip: bstr(4 / 16), port: uint(<65536)` |
//! | 3    | Error   | `code: uint(<65536), reason: tstr(<=256 bytes)`     |

use super::cbor::{encoder, require_canonical, Reader};
use super::WireError;
use crate::limits::MAX_ERROR_REASON_LEN;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

const TYPE_PING: u64 = 1;
const TYPE_PONG: u64 = 2;
const TYPE_ERROR: u64 = 3;

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
            ErrorCode::Other(n) => n,
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
        match self {
            Message::Ping { .. } => "Ping",
            Message::Pong { .. } => "Pong",
            Message::Error { .. } => "Error",
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
            _ => {
                let code = ErrorCode::from_u16(r.u16("error.code")?);
                let reason = r.str("error.reason", MAX_ERROR_REASON_LEN)?.to_owned();
                Message::Error { code, reason }
            }
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
            Message::decode(&hex("82 09 00")),
            Err(WireError::UnknownMessageType(9))
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
}

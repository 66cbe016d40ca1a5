//! The wire protocol: framing and messages. This is the only code that
//! parses bytes received from the network.
//!
//! # Flow
//!
//! ```text
//!  client                                   server
//!    │  QUIC + TLS 1.3, ALPN "p2psip/1",       │
//!    │  both sides present a certificate      │
//!    │── open bidirectional stream ──────────►│
//!    │── frame(Ping{nonce}) + FIN ───────────►│
//!    │◄────────── frame(Pong{nonce, addr}) + FIN
//! ```
//!
//! One request and one response per bidirectional stream. A frame is a
//! 4-byte big-endian length followed by that many bytes of one CBOR
//! message ([`frame`]). Messages follow a strict CBOR profile
//! ([`message`], [`cbor`]): definite lengths, shortest-form integers,
//! exact arity, no trailing bytes, unknown message types refused with a
//! typed error. Decoding never panics, never recurses on attacker input and
//! never allocates from a length field before checking it against the bytes
//! present. `docs/protocol.md` is the normative description.

pub mod cbor;
pub mod frame;
pub mod message;

pub use frame::{decode_frame, encode_frame, frame_body_len};
pub use message::{ErrorCode, Message};

/// Why bytes from a peer were refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame announced a body longer than the maximum.
    #[error("frame of {len} bytes exceeds the maximum of {max}")]
    FrameTooLarge {
        /// The announced length.
        len: u64,
        /// The maximum.
        max: usize,
    },
    /// A frame announced an empty body.
    #[error("empty frame")]
    EmptyFrame,
    /// The bytes end before the frame or message does.
    #[error("truncated input")]
    Truncated,
    /// The bytes are not CBOR of the expected shape.
    #[error("malformed CBOR: {0}")]
    Malformed(String),
    /// An indefinite-length item, which the profile forbids.
    #[error("indefinite-length CBOR item")]
    Indefinite,
    /// A message array with the wrong number of fields.
    #[error("message type {message_type} has {expected} fields, got {found}")]
    WrongArity {
        /// The message type.
        message_type: u64,
        /// The fields the type has.
        expected: u64,
        /// The fields present.
        found: u64,
    },
    /// A message type this implementation does not know.
    #[error("unknown message type {0}")]
    UnknownMessageType(u64),
    /// A field is outside its allowed range or size.
    #[error("field {0} out of range")]
    FieldOutOfRange(&'static str),
    /// The encoding is valid CBOR but not the canonical encoding.
    #[error("non-canonical CBOR encoding")]
    NonCanonical,
    /// Bytes follow the message.
    #[error("trailing bytes after the message")]
    TrailingBytes,
}

impl WireError {
    /// The error code to send back to the peer that sent these bytes.
    pub fn code(&self) -> ErrorCode {
        match self {
            WireError::FrameTooLarge { .. } => ErrorCode::FrameTooLarge,
            WireError::UnknownMessageType(_) => ErrorCode::UnknownMessageType,
            _ => ErrorCode::MalformedMessage,
        }
    }

    /// Whether the error shows the peer breaking the framing or encoding
    /// (and so is disconnected), as opposed to merely sending a message
    /// type this node does not know.
    pub fn is_protocol_violation(&self) -> bool {
        !matches!(self, WireError::UnknownMessageType(_))
    }
}

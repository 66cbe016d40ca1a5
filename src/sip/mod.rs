//! The SIP front-end's sans-IO parts: the message parser and printer,
//! digest authentication, and the transaction layer ([`transaction`]).
//!
//! Phones speak plain SIP (RFC 3261) to their own node. Every byte they
//! send is read by [`Message::parse`] (a datagram) or
//! [`stream::StreamReader`] (a TCP stream, read incrementally), which are strict and bounded
//! (see [`message`] for the rules and [`crate::limits`] for the bounds)
//! and refuse with a [`SipError`] that names what was wrong and carries
//! the status code to answer with. No other code parses SIP bytes.
//!
//! The parser keeps header values as written and reads the ones the node
//! needs on demand ([`Via`], [`NameAddr`], [`CSeq`], [`SipUri`]); it
//! checks those a message cannot do without when it parses, so that a
//! parsed message always has them.

pub mod dialog;
pub mod digest;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod g711;
pub mod header;
pub mod identity;
pub mod media;
pub mod message;
pub mod proxy;
pub mod registrar;
pub mod sdp;
pub mod stream;
pub mod topology;
pub mod transaction;
pub mod typed;
pub mod uri;
pub mod voicemail;

#[cfg(test)]
mod tests;

pub use error::SipError;
pub use header::HeaderName;
pub use message::{error_reply, reason_phrase, Frame, Headers, Message, Method, Request, Response};
pub use typed::{CSeq, NameAddr, Via};
pub use uri::{Host, Param, SipUri};

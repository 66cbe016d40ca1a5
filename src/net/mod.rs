//! The I/O shell: a quinn endpoint whose rustls verifiers accept exactly
//! p2psip identities, and the node and client built on it.
//!
//! - [`tls`]: TLS 1.3-only configurations, ALPN `p2psip/1`, and the custom
//!   verifiers that turn a peer certificate into an authenticated [`NodeId`].
//! - [`limits`]: connection caps (total, per IPv4 /32 and IPv6 /64).
//! - [`server`]: a node that accepts connections and answers requests.
//! - [`client`]: dialing a node and sending requests (Ping).
//! - [`overlay`]: the overlay service (routing table, records) over QUIC.
//! - [`maintenance`]: the node's upkeep of its overlay (rejoin, hand-over,
//!   repair, republish, refresh, expiry, saving the routing table).
//! - [`circuits`]: onion circuits over QUIC datagrams (the relay role
//!   and this node's own circuits), driving [`crate::relay`].
//! - [`relays`]: the relay directory (publish, withdraw, find).
//! - [`rendezvous`]: calls through a rendezvous relay, end-to-end
//!   sealed ([`rendezvous::Listener`], [`rendezvous::Call`]).
//! - [`discovery`]: LAN discovery (mDNS/DNS-SD) for overlays with no
//!   bootstrap node.
//! - [`disk`]: records and contacts on disk (redb); [`commit`]: group
//!   commit of the record writes.
//! - [`turn`]: the TURN listener of a relay node (UDP sockets around the
//!   sans-IO [`crate::turn`] server).
//!
//! Every request is one bidirectional stream carrying one frame each way
//! (see [`crate::wire`]).

pub mod anonymous;
pub mod cert_cache;
pub mod circuits;
pub mod client;
pub mod commit;
pub mod conns;
pub mod core;
pub mod dialer;
pub mod discovery;
pub mod disk;
pub mod limits;
pub mod maintenance;
pub mod overlay;
pub mod relays;
pub mod rendezvous;
pub mod server;
pub mod sip;
mod stream;
pub mod tls;
pub mod transport;
pub mod turn;

pub use crate::overlay::rate::RateLimit;
pub use client::{Client, PeerConnection, PingReply};
pub use core::NodeCore;
pub use dialer::Dialer;
pub use limits::Limits;
pub use maintenance::Maintenance;
pub use server::{Node, NodeConfig};
pub use tls::{LocalIdentity, ALPN};

use crate::identity::{CertError, NodeId};
use crate::wire::{ErrorCode, WireError};

/// QUIC application close code: normal close (shutdown, done).
pub const CLOSE_NORMAL: u32 = 0;

/// The close reason of a node that stops. Its peers forget it at once
/// (it speaks only for itself: the connection authenticated it).
pub(crate) const CLOSE_REASON_LEAVING: &[u8] = b"node shutting down";

/// Whether a connection ended because the peer said it is leaving.
pub(crate) fn peer_is_leaving(e: &quinn::ConnectionError) -> bool {
    matches!(e, quinn::ConnectionError::ApplicationClosed(close)
        if close.error_code == CLOSE_NORMAL.into() && &close.reason[..] == CLOSE_REASON_LEAVING)
}
/// QUIC application close code: the peer broke the protocol (malformed or
/// oversized frame, undecodable message) and is disconnected.
pub const CLOSE_PROTOCOL_VIOLATION: u32 = 1;
/// QUIC application close code: the peer went on sending requests after
/// [`RateLimit::max_refused_in_a_row`] of them were refused for its rate,
/// and is disconnected.
pub const CLOSE_RATE_LIMITED: u32 = 2;
/// QUIC application close code: the peer is banned by this node's
/// reputation table (a protocol violation, provably wrong answers, or too
/// many over-rate requests); new connections from it are closed at once
/// with the same code until the ban ends.
pub const CLOSE_BANNED: u32 = 3;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NetError {
    /// Binding the UDP socket failed.
    #[error("cannot bind {addr}: {source}")]
    Bind {
        /// The address.
        addr: std::net::SocketAddr,
        /// The cause.
        source: std::io::Error,
    },
    /// The on-disk record store failed.
    #[error("{0}")]
    Disk(#[from] disk::DiskError),
    /// A local certificate or key could not be used.
    #[error("local identity: {0}")]
    Identity(#[from] CertError),
    /// rustls refused the configuration.
    #[error("TLS configuration: {0}")]
    Tls(#[from] rustls::Error),
    /// The dial could not start.
    #[error("cannot connect: {0}")]
    Connect(#[from] quinn::ConnectError),
    /// The connection failed or was closed; the text says by whom and why
    /// (a peer that refuses our certificate closes with a TLS alert).
    #[error("connection failed: {0}")]
    Connection(#[from] quinn::ConnectionError),
    /// The peer presented no usable certificate after the handshake.
    #[error("peer presented no verifiable certificate")]
    NoPeerIdentity,
    /// The peer did not answer in time.
    #[error("timed out waiting for the peer")]
    Timeout,
    /// The peer's answer was not a valid frame or message.
    #[error("invalid answer from peer: {0}")]
    Wire(#[from] WireError),
    /// The peer answered with an Error message.
    #[error("peer answered with error {code:?}: {reason}")]
    Remote {
        /// The error code.
        code: ErrorCode,
        /// The peer's reason.
        reason: String,
    },
    /// The peer answered with a message that does not answer the request.
    #[error("unexpected answer from peer: {0}")]
    UnexpectedReply(String),
    /// A stream failed (reset, stopped, or the connection was lost).
    #[error("stream failed: {0}")]
    Stream(String),
    /// The peer is banned by this node's reputation table: not dialed.
    #[error("peer is banned")]
    Banned,
    /// This node could not send the request in time: its own in-flight
    /// caps or its pacing of the peer held it back (no fault of the peer).
    #[error("this node is saturated; request not sent in time")]
    Saturated,
}

/// The authenticated id of the peer of `conn`, re-derived from the
/// certificate the verifier accepted (a verifier cannot hand data to the
/// application).
pub fn peer_node_id(conn: &quinn::Connection) -> Option<NodeId> {
    let certs = conn
        .peer_identity()?
        .downcast::<Vec<rustls::pki_types::CertificateDer<'static>>>()
        .ok()?;
    let leaf = certs.first()?;
    tls::node_id_of_verified_leaf(leaf)
}

//! Every numeric bound of the node, in one place.
//!
//! Each constant is a default: a deployment can tighten most of them through
//! configuration ([`crate::net::Limits`]), but nothing that parses network
//! bytes ever works without a bound.

use std::time::Duration;

/// Largest frame body (the CBOR message after the 4-byte length prefix)
/// that is accepted or sent: 64 KiB.
pub const MAX_FRAME_LEN: usize = 64 * 1024;

/// Length of the frame header: a big-endian `u32` giving the body length.
pub const FRAME_HEADER_LEN: usize = 4;

/// Longest reason string in an `Error` message, in bytes.
pub const MAX_ERROR_REASON_LEN: usize = 256;

/// Default admission puzzle for a public overlay: leading zero bits of
/// `SHA-256(NodeId)`. About 2^20 key generations per identity: roughly
/// seconds on a laptop for an honest node, and a real cost per Sybil
/// identity (see `docs/benchmarks.md` for the measured rate).
pub const DEFAULT_ID_DIFFICULTY: u8 = 20;

/// Highest difficulty the tools accept. 2^40 key generations is weeks of
/// CPU; anything above is a typo, not a policy.
pub const MAX_ID_DIFFICULTY: u8 = 40;

/// Default maximum of simultaneous connections (inbound, including those
/// still in their handshake).
pub const DEFAULT_MAX_CONNECTIONS: usize = 1024;

/// Default maximum of simultaneous inbound connections from one IPv4
/// address (/32) or one IPv6 /64.
pub const DEFAULT_MAX_CONNECTIONS_PER_IP: usize = 8;

/// Default maximum of bidirectional streams (requests) a peer may have open
/// on one connection at once.
pub const DEFAULT_MAX_STREAMS_PER_CONNECTION: u32 = 16;

/// Default idle timeout of a connection.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Time a connecting peer has to complete its handshake. Without it a
/// handshake kept alive by retransmitted Initial packets (which a spoofing
/// sender can produce blind) would hold a connection slot indefinitely.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Receive window of one stream: one whole frame and its header, so that
/// a peer can never make the node buffer more than a frame per stream.
pub const STREAM_RECEIVE_WINDOW: u32 = (FRAME_HEADER_LEN + MAX_FRAME_LEN) as u32;

/// Receive window of a whole connection, over all its streams: four
/// frames. Bounds what one connection can make the node buffer.
pub const CONNECTION_RECEIVE_WINDOW: u32 = 4 * STREAM_RECEIVE_WINDOW;

/// Longest idle timeout the node accepts (QUIC encodes it in milliseconds
/// as a varint; this is far below that bound).
pub const MAX_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// Time a peer has to deliver a whole request on a stream, and a client to
/// receive the answer. Bounds slow-loris streams.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a node's self-signed TLS certificate is valid. It is rebuilt at
/// every start and rotated by the running node well before it expires.
pub const SELF_SIGNED_VALIDITY: Duration = Duration::from_secs(7 * 24 * 3600);

/// How far in the past a freshly built certificate's `notBefore` is set, to
/// tolerate peers whose clocks run behind.
pub const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(3600);

/// Longest device binding accepted, in days.
pub const MAX_BINDING_DAYS: u32 = 3650;

/// Largest PEM file (key, certificate, binding) read from disk.
pub const MAX_PEM_FILE_LEN: u64 = 64 * 1024;

/// Largest number of trust anchors loaded.
pub const MAX_TRUST_ANCHORS: usize = 64;

// ---------------------------------------------------------------------------
// Overlay records and their storage (`overlay::record`, `overlay::store`).
// The record bounds are part of the protocol (docs/protocol.md, "Records"):
// every node must refuse the same records, so they are not configurable.
// The store bounds are the defaults of `overlay::store::StoreLimits`.

/// Largest record value (the `value` byte string of a record), in bytes.
/// With the fixed fields and the signature a record stays far below one
/// frame ([`MAX_FRAME_LEN`]).
pub const MAX_RECORD_VALUE_LEN: usize = 16 * 1024;

/// Longest lifetime a record may claim: a record whose `expires` lies more
/// than this after the verifier's `now` is refused. It bounds how long a
/// record (and its anti-rollback tombstone) can hold storage without its
/// owner publishing again.
pub const MAX_RECORD_LIFETIME: Duration = Duration::from_secs(30 * 24 * 3600);

/// Longest SIP address-of-record in a registration, in bytes.
pub const MAX_AOR_LEN: usize = 256;

/// Most entries (bound devices) in one SIP registration.
pub const MAX_REGISTRATION_ENTRIES: usize = 16;

/// Most contacts in one registration entry.
pub const MAX_CONTACTS_PER_ENTRY: usize = 8;

/// Longest contact (a SIP URI as text) in a registration entry, in bytes.
pub const MAX_CONTACT_LEN: usize = 256;

/// Longest name of an owner value (the name its key is derived from), in
/// bytes. Names are at least one byte long.
pub const MAX_OWNER_VALUE_NAME_LEN: usize = 128;

/// Default most slots (live records and anti-rollback tombstones) one owner
/// may hold in a node's record store.
pub const DEFAULT_STORE_MAX_SLOTS_PER_OWNER: usize = 128;

/// Default most bytes a node's record store accounts for: the encoded
/// records it holds plus [`STORE_SLOT_OVERHEAD`] per slot.
pub const DEFAULT_STORE_MAX_BYTES: usize = 64 * 1024 * 1024;

/// Bytes a record store charges for every slot on top of its record's
/// encoding, so that tombstones (slots whose record is gone) and tiny
/// records are not free.
pub const STORE_SLOT_OVERHEAD: usize = 128;

/// Most contacts in one Nodes or Value answer.
pub const MAX_CONTACTS_PER_ANSWER: usize = 32;

/// Most records in one Value answer.
pub const MAX_RECORDS_PER_ANSWER: usize = 4;

/// Longest overlay name, in bytes.
pub const MAX_OVERLAY_NAME_LEN: usize = 64;

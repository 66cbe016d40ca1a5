//! Standard TURN (RFC 8656 over UDP, with STUN, RFC 8489) for ordinary
//! ICE clients, served by relay nodes: the "distributed TURN" of issue 12
//! (`../shared/DESIGN.md`, "Anonymizing media relays"). Sans-IO: no
//! sockets, no clock (time is an input), no randomness (the nonce
//! secret is given); the node's `net::turn` drives it.
//!
//! - [`stun`]: the message codec: strict decoding, bounded attributes,
//!   FINGERPRINT, MESSAGE-INTEGRITY (HMAC-SHA1) checked in constant time.
//! - [`credentials`]: long-term keys (MD5(username:realm:password)), the
//!   users served, stateless nonces.
//! - [`server`]: the server's state machine: Binding, Allocate (with
//!   EVEN-PORT, its R bit and RESERVATION-TOKEN), Refresh,
//!   CreatePermission, ChannelBind, Send and Data indications,
//!   ChannelData; quotas, expiry, the limit on answers to strangers; it
//!   returns actions for the I/O.
//! - [`peers`]: the peer filter: which addresses the relay reaches (not
//!   its own host, loopback, private, link-local and the like, unless
//!   the operator allows them).
//! - [`fuzzing`]: the `stun_message` fuzz target's checks.
//!
//! Not served: TCP/TLS/DTLS transports to the server, relaying over TCP
//! (RFC 6062), DONT-FRAGMENT (answered 420), dual allocations
//! (ADDITIONAL-ADDRESS-FAMILY is ignored), MESSAGE-INTEGRITY-SHA256 and
//! USERHASH (RFC 8489's newer options; clients fall back to
//! MESSAGE-INTEGRITY), the third-party authorization of RFC 7635.

pub mod credentials;
pub mod fuzzing;
pub mod peers;
pub mod server;
pub mod stun;

/// Allocation lifetime when the client asks none (and the least granted), seconds.
pub const DEFAULT_LIFETIME: u32 = 600;
/// Longest allocation lifetime granted, seconds.
pub const MAX_LIFETIME: u32 = 3600;
/// Lifetime of a permission, seconds (RFC 8656 §9: 300, not configurable).
pub const PERMISSION_LIFETIME: u64 = 300;
/// Lifetime of a channel binding, seconds (RFC 8656 §12: 600).
pub const CHANNEL_LIFETIME: u64 = 600;
/// After a channel binding expires, its number and peer stay reserved
/// this long (RFC 8656 §12: "for 5 minutes").
pub const CHANNEL_COOLDOWN: u64 = 300;
/// How long a port reserved by EVEN-PORT's R bit waits for the Allocate
/// with its RESERVATION-TOKEN, seconds (RFC 8656 §7.2: "at least 30
/// seconds"); then its socket is closed.
pub const RESERVATION_LIFETIME: u64 = 30;
/// Allocations a server holds at most by default (beyond: 508); a
/// reserved port counts as one.
pub const DEFAULT_MAX_ALLOCATIONS: usize = 256;
/// Allocations one username may hold at most by default (beyond: 486).
pub const DEFAULT_MAX_ALLOCATIONS_PER_USER: usize = 8;
/// Permissions (peer IP addresses) per allocation at most.
pub const MAX_PERMISSIONS_PER_ALLOCATION: usize = 32;
/// Channels per allocation at most.
pub const MAX_CHANNELS_PER_ALLOCATION: usize = 32;
/// Longest USERNAME, REALM or NONCE read, in bytes (RFC 8489: 509, 763,
/// 763).
pub const MAX_TEXT_ATTR_LEN: usize = 763;

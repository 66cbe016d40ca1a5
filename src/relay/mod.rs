//! Anonymizing media relays, sans-IO (issue 12; `../shared/DESIGN.md`,
//! "Anonymizing media relays"): the cryptography of circuits, written
//! as plain state that the node and the simulator drive.
//!
//! - [`handshake`]: the per-hop key agreement, in the manner of Tor's
//!   ntor: one X25519 exchange with the relay's ephemeral key and one
//!   with its onion key, so that only the relay is authenticated and
//!   the keys have forward secrecy; per-hop keys from HKDF-SHA256.
//! - [`cell`]: the fixed-size cell every link carries (one per QUIC
//!   datagram), strictly decoded.
//! - [`onion`]: one ChaCha20-Poly1305 layer per hop, each with its own
//!   sequence numbers and replay window; the originator seals and opens
//!   all layers, a relay peels or adds its own.
//! - [`circuit`]: a relay's circuit table (previous and next link of
//!   each circuit, nothing more; bounded) and the originator's
//!   telescoping build (Create, then Extend through the hops built),
//!   teardown, and the link and control messages.
//! - [`schedule`]: one cell per 20 ms each way during a call, media or
//!   cover, so talk and silence look alike on every link.
//! - [`keys`]: a relay's onion keys over time ([`OnionKeys`]): rotated
//!   every two days, the previous key still answered for two more, then
//!   zeroized; the offer its descriptor carries.
//! - [`path`]: which relays a circuit uses: verified descriptors only,
//!   never an endpoint or a hop in an endpoint's network, no two hops in
//!   one IPv4 /16 or IPv6 /32, never a banned or suspect peer, weighted
//!   by reputation, within a latency budget; entered through long-lived
//!   guards ([`path::Guards`], saved between runs).
//!
//! Relay descriptors themselves are overlay records (kind 3,
//! [`crate::overlay::record::RelayDescriptor`]): published with
//! [`crate::overlay::record::sign_relay_descriptors`] under the relay's
//! own directory keys, found under all of
//! [`crate::overlay::record::relay_directory_keys`].
//!
//! - [`e2e`]: what the two ends of a rendezvous send each other, sealed
//!   under keys only they hold (the rendezvous itself is in
//!   [`circuit`]: Establish, Join, the splice).
//!
//! - [`handle`]: the rendezvous handle a callee publishes in its users'
//!   registrations (a `p2psip-rv:` contact).
//! - [`session`]: what two nodes say through a rendezvous during calls:
//!   fixed-size frames (SIP fragments, media, echoes, cover) sent at the
//!   constant rate, the pseudonyms by which they know each other, and
//!   failure detection.
//!
//! The I/O that carries all this over the overlay's QUIC datagrams is
//! `net::circuits` (and `net::rendezvous`, `net::relays`,
//! `net::anonymous` for calls with `--anonymous-calls`); TURN is `turn`.

pub mod cell;
pub mod circuit;
pub mod e2e;
pub mod handle;
pub mod handshake;
pub mod keys;
pub mod onion;
pub mod path;
pub mod schedule;
pub mod session;

pub use keys::OnionKeys;

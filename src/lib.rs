//! p2psip: a hardened peer-to-peer SIP overlay node.
//!
//! Every node and user has a self-certifying identity derived from an
//! Ed25519 key ([`identity`]); nodes talk over QUIC with mutual TLS whose
//! verifiers accept exactly those identities ([`net`]); every byte from the
//! network is parsed by [`wire`] alone, under explicit bounds ([`limits`]).
//!
//! # Layers
//!
//! ```text
//!   shell (`node`):  cli ──► admin ──► net
//!                     │                 │   drives
//!                     ▼                 ▼
//!   core:            sim ──drives──► overlay::{peers, query, placement}
//!                                      │   (every decision, once)
//!                                      ▼
//!                     reputation ◄──► overlay::{routing, lookup, density, rate, record, store}
//!                                      │
//!                                      ▼
//!                                    binding ──► wire ──► identity
//! ```
//!
//! The policy exists once: whom to ask, admit, evict, rate-limit or ban,
//! whether to serve a request, where a record goes and whether a holder
//! takes it are decided in the sans-IO core ([`overlay::peers::Peers`],
//! with [`overlay::peers::Peers::admit_request`] over the token buckets
//! of [`overlay::rate`]; [`overlay::query::Query`];
//! [`overlay::placement`]; [`overlay::store::admit_new_slot`]), which the
//! node ([`net`]) and the simulator
//! ([`sim`]) only drive: they move bytes and time and report what
//! happened. `reputation` and the overlay's data structures know each
//! other's types (a lookup fault is evidence; evidence ranks candidates);
//! everything else points right and down (every module may also use
//! `limits` and `netaddr`). The core touches no sockets or async tasks and
//! reads no clock: the time is an input (only the key search in
//! `identity` runs threads of its own). Without the default `node`
//! feature the crate is only that core, which is what the fuzz targets
//! build against.
//!
//! Inside [`net`] the modules form a chain with no cycle: `tls`,
//! `transport` (endpoint configs) → `client`, `conns` (every connection
//! by peer) → `core` (the core behind a lock, the wall clock, the one
//! enforcement path) → `dialer` (single-flight, paced, capped) →
//! `overlay` (the driver: queries, placement, the record store, `commit`
//! and `disk`) → `maintenance` → `server`.
//!
//! [`overlay`] holds the sans-IO S/Kademlia core, [`reputation`] the
//! sans-IO evidence and ban table, and [`sim`] a deterministic simulator
//! that runs the core at scale, with adversaries. [`netaddr`] has the IP
//! prefixes that the diversity, connection and rate limits count by.
//! [`admin`] is the node's owner-only local socket the CLI drives it
//! through. [`sip`] parses and prints the SIP messages phones send (the
//! only code that reads SIP bytes).
//!
//! # Non-features (for now)
//!
//! Media relays and the SIP front-end are described in `DESIGN.md`. Of
//! the front-end only its sans-IO message parser and printer exist
//! ([`sip`]: strict, bounded, fuzzed); no listener, registrar or proxy
//! uses it yet.

#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod binding;
mod fsutil;
pub mod identity;
pub mod limits;
pub mod metrics;
pub mod netaddr;
pub mod overlay;
pub mod relay;
pub mod reputation;
pub mod sim;
pub mod sip;
pub mod turn;
pub mod userdata;
pub mod wire;

#[cfg(feature = "node")]
pub mod admin;
#[cfg(feature = "node")]
pub mod cli;
#[cfg(feature = "node")]
pub mod net;

/// The current time as unix seconds, for the I/O shell to pass into the
/// core. Clock errors (a time before 1970) read as 0.
pub fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// The current time as unix microseconds: what record sequence numbers
/// grow with (a writer that could not see the previous record still
/// supersedes it). Clock errors read as 0.
pub fn unix_now_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
}

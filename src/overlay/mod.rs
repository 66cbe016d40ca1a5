//! The overlay core: S/Kademlia routing, lookups, signed records and their
//! storage rules, written as sans-IO state machines (`now` and randomness
//! are inputs; no sockets, clocks or tasks), driven by the node and by the
//! simulator alike.
//!
//! The decisions live in three modules: [`peers`] (admission, eviction,
//! bans: the one enforcement path; seeds; responsibility), [`query`] (one
//! whole lookup: asking, judging answers, stopping, widening, density
//! rounds) and [`placement`] (replicas, hand-over, repair, republish,
//! read repair, join refresh). The rest are the data structures they
//! decide over.

pub mod config;
pub mod density;
pub mod key;
pub mod lan;
pub mod lookup;
pub mod peers;
pub mod placement;
pub mod query;
pub mod rate;
pub mod record;
pub mod routing;
pub mod store;

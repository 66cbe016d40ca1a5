//! The overlay core: S/Kademlia routing, lookups, signed records and their
//! storage rules, written as sans-IO state machines (`now` and randomness
//! are inputs; no sockets, clocks or tasks), driven by the node and by the
//! simulator alike.

pub mod config;
pub mod density;
pub mod key;
pub mod lookup;
pub mod peers;
pub mod placement;
pub mod query;
pub mod record;
pub mod routing;
pub mod store;

//! Overlay parameters: what every node of one overlay must agree on.

use crate::limits::DEFAULT_ID_DIFFICULTY;

/// Default bucket size and number of closest nodes a lookup returns.
pub const DEFAULT_K: usize = 20;
/// Default number of parallel requests per lookup path.
pub const DEFAULT_ALPHA: usize = 3;
/// Default number of disjoint lookup paths (S/Kademlia's d).
pub const DEFAULT_DISJOINT_PATHS: usize = 4;
/// Default number of nodes a record is stored on.
pub const DEFAULT_REPLICATION: usize = 20;
/// Default maximum of peers from one IPv4 /24 (or IPv6 /48) in one bucket.
pub const DEFAULT_MAX_PER_PREFIX_PER_BUCKET: usize = 2;
/// Default maximum of peers from one IPv4 /24 (or IPv6 /48) in the whole
/// routing table.
pub const DEFAULT_MAX_PER_PREFIX_PER_TABLE: usize = 10;

/// The parameters of an overlay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayParams {
    /// The overlay's name; nodes refuse peers of another overlay.
    pub name: String,
    /// Bucket size; also how many closest nodes a lookup returns.
    pub k: usize,
    /// Parallel requests per lookup path.
    pub alpha: usize,
    /// Disjoint lookup paths.
    pub disjoint_paths: usize,
    /// Leading zero bits required of `SHA-256(NodeId)`.
    pub id_difficulty: u8,
    /// Nodes each record is stored on.
    pub replication: usize,
    /// Peers from one IPv4 /24 or IPv6 /48 allowed in one bucket.
    pub max_per_prefix_per_bucket: usize,
    /// Peers from one IPv4 /24 or IPv6 /48 allowed in the whole table.
    pub max_per_prefix_per_table: usize,
}

impl Default for OverlayParams {
    fn default() -> Self {
        Self {
            name: "p2psip".into(),
            k: DEFAULT_K,
            alpha: DEFAULT_ALPHA,
            disjoint_paths: DEFAULT_DISJOINT_PATHS,
            id_difficulty: DEFAULT_ID_DIFFICULTY,
            replication: DEFAULT_REPLICATION,
            max_per_prefix_per_bucket: DEFAULT_MAX_PER_PREFIX_PER_BUCKET,
            max_per_prefix_per_table: DEFAULT_MAX_PER_PREFIX_PER_TABLE,
        }
    }
}

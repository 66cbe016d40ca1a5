//! The 256-bit key space of the overlay and its XOR metric.
//!
//! Node ids and record keys live in the same space: a record is stored on
//! the nodes whose ids are closest to its key.

use crate::identity::NodeId;
use std::fmt;

/// A point of the key space: a node id or a record key.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub [u8; 32]);

impl Key {
    /// The XOR distance to `other`.
    pub fn distance(&self, other: &Key) -> Distance {
        let mut d = [0u8; 32];
        for (i, out) in d.iter_mut().enumerate() {
            *out = self.0[i] ^ other.0[i];
        }
        Distance(d)
    }
}

impl From<NodeId> for Key {
    fn from(id: NodeId) -> Self {
        Key(*id.as_bytes())
    }
}

impl From<&NodeId> for Key {
    fn from(id: &NodeId) -> Self {
        Key(*id.as_bytes())
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Key({})", hex::encode(&self.0[..5]))
    }
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// An XOR distance; compares as a big-endian 256-bit integer.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct Distance(pub [u8; 32]);

impl Distance {
    /// The index of the k-bucket a peer at this distance belongs to:
    /// 255 minus the number of leading zero bits, so bucket 255 holds the
    /// farthest half of the space and bucket 0 the single closest point.
    /// `None` for distance zero (the node itself).
    pub fn bucket_index(&self) -> Option<usize> {
        let mut zeros = 0usize;
        for b in self.0 {
            if b == 0 {
                zeros += 8;
            } else {
                zeros += b.leading_zeros() as usize;
                return Some(255 - zeros);
            }
        }
        None
    }

    /// Whether this is the zero distance.
    pub fn is_zero(&self) -> bool {
        self.0 == [0; 32]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn xor_metric_and_bucket_index() {
        let a = Key([0; 32]);
        let mut b = [0u8; 32];
        b[0] = 0x80;
        assert_eq!(a.distance(&Key(b)).bucket_index(), Some(255));
        let mut c = [0u8; 32];
        c[31] = 1;
        assert_eq!(a.distance(&Key(c)).bucket_index(), Some(0));
        assert_eq!(a.distance(&a).bucket_index(), None);
        assert!(a.distance(&Key(c)) < a.distance(&Key(b)));
        // Symmetry.
        assert_eq!(Key(b).distance(&Key(c)), Key(c).distance(&Key(b)));
    }
}

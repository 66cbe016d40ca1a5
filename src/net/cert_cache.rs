//! A bounded memory of peer certificates that already passed verification,
//! so that a peer reconnecting with the same certificate skips the parse
//! and the signature check (the expensive part of verification).
//!
//! What is cached is the outcome under one fixed [`VerifyPolicy`]: the
//! certificate's node id and validity window. On a hit the time-dependent
//! check (validity window) and the dial's expected id are still applied,
//! and the TLS handshake still proves possession of the key with its own
//! signature. Keys are SHA-256 digests of the whole certificate DER, so a
//! different certificate can never hit another's entry.
//!
//! [`VerifyPolicy`]: crate::identity::VerifyPolicy

use crate::identity::{CertError, NodeId};
use sha2::{Digest, Sha256};
use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

/// Default number of certificates remembered.
pub const DEFAULT_CERT_CACHE_ENTRIES: usize = 1024;

#[derive(Debug, Clone, Copy)]
struct Entry {
    node_id: NodeId,
    not_before: i64,
    not_after: i64,
}

#[derive(Debug, Default)]
struct Inner {
    // Keys are digests of peer-chosen bytes; std's SipHash with a random
    // key keeps collisions from being aimed anyway.
    entries: HashMap<[u8; 32], Entry>,
    // Insertion order, for first-in-first-out eviction.
    order: VecDeque<[u8; 32]>,
}

/// Certificates verified under one policy, at most `capacity` of them.
#[derive(Debug)]
pub struct CertCache {
    capacity: usize,
    inner: Mutex<Inner>,
}

impl CertCache {
    /// An empty cache holding at most `capacity` certificates.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            inner: Mutex::default(),
        }
    }

    /// The digest a certificate is cached under.
    pub fn digest(der: &[u8]) -> [u8; 32] {
        Sha256::digest(der).into()
    }

    /// The node id of a cached certificate if it is valid at `now`;
    /// `None` if it is not cached; an error if it is cached but outside
    /// its validity window now.
    pub fn lookup(&self, digest: &[u8; 32], now: i64) -> Option<Result<NodeId, CertError>> {
        let inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let e = inner.entries.get(digest)?;
        Some(if now < e.not_before {
            Err(CertError::NotYetValid {
                not_before: e.not_before,
                now,
            })
        } else if now > e.not_after {
            Err(CertError::Expired {
                not_after: e.not_after,
                now,
            })
        } else {
            Ok(e.node_id)
        })
    }

    /// Remembers a certificate that passed full verification.
    pub fn insert(&self, digest: [u8; 32], node_id: NodeId, not_before: i64, not_after: i64) {
        if self.capacity == 0 {
            return;
        }
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let entry = Entry {
            node_id,
            not_before,
            not_after,
        };
        if inner.entries.insert(digest, entry).is_some() {
            return;
        }
        inner.order.push_back(digest);
        while inner.order.len() > self.capacity {
            if let Some(old) = inner.order.pop_front() {
                inner.entries.remove(&old);
            }
        }
    }

    /// Certificates remembered now.
    pub fn len(&self) -> usize {
        self.inner
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entries
            .len()
    }

    /// Whether nothing is remembered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn hit_rechecks_the_validity_window() {
        let c = CertCache::new(4);
        c.insert([1; 32], id(1), 100, 200);
        assert_eq!(c.lookup(&[1; 32], 150).unwrap(), Ok(id(1)));
        assert!(matches!(
            c.lookup(&[1; 32], 99),
            Some(Err(CertError::NotYetValid { .. }))
        ));
        assert!(matches!(
            c.lookup(&[1; 32], 201),
            Some(Err(CertError::Expired { .. }))
        ));
        assert!(c.lookup(&[2; 32], 150).is_none());
    }

    #[test]
    fn capacity_is_a_hard_bound_with_fifo_eviction() {
        let c = CertCache::new(3);
        for n in 0..10u8 {
            c.insert([n; 32], id(n), 0, 10);
            assert!(c.len() <= 3);
        }
        assert!(c.lookup(&[6; 32], 5).is_none());
        assert!(c.lookup(&[9; 32], 5).is_some());
        let none = CertCache::new(0);
        none.insert([1; 32], id(1), 0, 10);
        assert!(none.is_empty());
    }
}

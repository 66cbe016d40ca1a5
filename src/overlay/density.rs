//! Density detection: is the neighbourhood of a key implausibly crowded?
//!
//! A content-eclipse attacker surrounds a key with identities of its own,
//! paying the admission puzzle plus the bits of prefix they share with the
//! key, so that a lookup for the key finds only them and replicas land on
//! them. In a random overlay of `n` nodes, ids are uniform in the key
//! space: the `i`-th closest node to any point lies at a distance of about
//! `i / n` of the space. The attacker's ids lie much closer than that.
//!
//! This module is sans-IO and total (no panics on any input; it is fed
//! ids that peers sent):
//!
//! - [`estimate_network_size`] estimates `n` from the ids closest to a
//!   point (normally the node's own id and its routing table's closest
//!   contacts, which its join and refresh made complete): the median over
//!   `i` of `(i - 1/3) / f_i`, `f_i` the `i`-th smallest distance as a
//!   fraction of the key space (`i - 1/3` is the median of a Gamma(i)
//!   variable, so each term is a median-unbiased estimate).
//! - [`dense_cluster`] looks at the ids a lookup found near a key and
//!   returns the [`DenseCluster`] they form if, for some `i` of at least
//!   [`DENSITY_MIN_CLUSTER`], the `i` closest lie within
//!   `i / (n · `[`DENSITY_FACTOR`]`)` of the key: in an honest overlay of
//!   the estimated size that happens for about one key in a thousand
//!   (the tests allow 2 in 1,000 for one sampled overlay).
//!   [`is_implausibly_dense`] is the yes/no form.
//! - The response is the driver's: widen. Repeat the lookup with every id
//!   of the cluster set aside ([`DenseCluster::contains`]: not asked, not
//!   taken from answers), so that it converges on the nodes an honest
//!   density would put nearest the key; place replicas on those too and
//!   read from them too; repeat (up to
//!   [`DENSITY_WIDEN_ROUNDS`](crate::limits::DENSITY_WIDEN_ROUNDS), merging
//!   clusters with [`DenseCluster::merge`]) while the new result is dense
//!   again.
//!
//! A cluster is described by the number of leading bits its ids share
//! with the key ([`DenseCluster::shared_bits`]): the attacker's ids are
//! cheapest as a subtree of the key space, and setting aside the subtree
//! (rather than only the ids seen) sets aside the members not found yet.
//! The subtree is chosen so that an honest overlay of the estimated size
//! would hold on average at most `2 · i / DENSITY_FACTOR` nodes in it
//! (about 2 for `i = 20`): those few honest nodes are passed over, and
//! the replicas go to the next ones.
//!
//! Limits: an attacker that spreads its ids just thinly enough to stay
//! under the threshold is not detected; it then needs honest nodes not to
//! fall among its ids, which the disjoint paths and replica spreading
//! make costly. The size estimate comes from the node's own neighbourhood:
//! an attacker crowding *that* (a node eclipse) inflates it and so blunts
//! detection for that one node; a node can take the median of the
//! estimates of several lookups of random keys instead.

use super::key::{Distance, Key};
use crate::identity::NodeId;
use crate::limits::{DENSITY_FACTOR, DENSITY_MAX_SAMPLE, DENSITY_MIN_CLUSTER};

/// Largest network size this module ever reports (far beyond any overlay;
/// keeps every product finite).
const MAX_ESTIMATE: f64 = 1e30;

/// A targeted cluster of ids around a key: the ids sharing at least
/// [`DenseCluster::shared_bits`] leading bits with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DenseCluster {
    /// Leading bits shared with the key by every id of the cluster
    /// (0..=256).
    pub shared_bits: u32,
    /// How many of the ids looked at fall in the cluster.
    pub members: usize,
}

impl DenseCluster {
    /// Whether `id` belongs to the cluster around `key` (shares at least
    /// [`DenseCluster::shared_bits`] leading bits with it): to be set
    /// aside by a widened lookup.
    pub fn contains(&self, key: &Key, id: &NodeId) -> bool {
        leading_zero_bits(&key.distance(&Key::from(id))) >= self.shared_bits
    }

    /// The cluster covering both (the wider subtree): for a widened
    /// lookup that found another dense cluster just outside the first.
    #[must_use]
    pub fn merge(self, other: DenseCluster) -> DenseCluster {
        DenseCluster {
            shared_bits: self.shared_bits.min(other.shared_bits),
            members: self.members.max(other.members),
        }
    }
}

/// Leading zero bits of a distance (256 for zero).
fn leading_zero_bits(d: &Distance) -> u32 {
    let mut zeros = 0u32;
    for b in d.0 {
        if b != 0 {
            return zeros + b.leading_zeros();
        }
        zeros += 8;
    }
    zeros
}

/// A distance as a fraction of the whole key space, in `[0, 1]` (the
/// largest distances round to 1.0 in an f64).
fn fraction(d: &Distance) -> f64 {
    d.0.iter()
        .rev()
        .fold(0.0f64, |acc, b| (acc + f64::from(*b)) / 256.0)
}

/// The distinct distances from `key` to `ids`, sorted, closest first, at
/// most [`DENSITY_MAX_SAMPLE`] of them (the closest).
fn sorted_distances(key: &Key, ids: &[NodeId]) -> Vec<Distance> {
    let mut d: Vec<Distance> = ids.iter().map(|id| key.distance(&Key::from(id))).collect();
    d.sort_unstable();
    d.dedup();
    d.truncate(DENSITY_MAX_SAMPLE);
    d
}

/// Estimates the number of nodes in the overlay from the ids closest to
/// `own` (normally the node's own id and its routing table's `k` closest
/// contacts to it; any key and the ids a lookup found nearest it work as
/// well, if no attacker crowds that key). Ids equal to `own` are ignored,
/// duplicates count once, and at most [`DENSITY_MAX_SAMPLE`] are used.
///
/// Returns at least 1 (the node itself) and is always finite; with no
/// usable id it returns 1.
pub fn estimate_network_size(own: &Key, closest: &[NodeId]) -> f64 {
    let distances = sorted_distances(own, closest);
    let mut estimates: Vec<f64> = distances
        .iter()
        .map(fraction)
        .filter(|f| *f > 0.0)
        .enumerate()
        .map(|(i, f)| ((i as f64 + 1.0 - 1.0 / 3.0) / f).min(MAX_ESTIMATE))
        .collect();
    if estimates.is_empty() {
        return 1.0;
    }
    estimates.sort_unstable_by(f64::total_cmp);
    let median = estimates.get(estimates.len() / 2).copied().unwrap_or(0.0);
    // + 1: the node itself.
    (median + 1.0).clamp(1.0, MAX_ESTIMATE)
}

/// The dense cluster the ids `found` near `key` form, if they are
/// implausibly dense for an overlay of `n_est` nodes: for some `i` of at
/// least [`DENSITY_MIN_CLUSTER`], the `i` closest distinct ids (of the
/// `k` closest, `k` at most [`DENSITY_MAX_SAMPLE`]) lie within
/// `i / (n_est · `[`DENSITY_FACTOR`]`)` of the key space. The cluster is
/// the subtree around `key` holding the largest such `i`.
///
/// `None` when nothing is dense, and for a `n_est` that is not a finite
/// number of at least 1.
pub fn dense_cluster(key: &Key, found: &[NodeId], n_est: f64, k: usize) -> Option<DenseCluster> {
    if !n_est.is_finite() || n_est < 1.0 {
        return None;
    }
    let n = n_est.min(MAX_ESTIMATE);
    let mut distances = sorted_distances(key, found);
    distances.truncate(k.clamp(1, DENSITY_MAX_SAMPLE));
    let mut last_dense: Option<&Distance> = None;
    for (i, d) in distances.iter().enumerate() {
        let count = i + 1;
        if count >= DENSITY_MIN_CLUSTER && fraction(d) * n * DENSITY_FACTOR < count as f64 {
            last_dense = Some(d);
        }
    }
    let shared_bits = leading_zero_bits(last_dense?);
    let members = distances
        .iter()
        .filter(|d| leading_zero_bits(d) >= shared_bits)
        .count();
    Some(DenseCluster {
        shared_bits,
        members,
    })
}

/// Whether the ids `found` near `key` are implausibly dense for an
/// overlay of `n_est` nodes (a targeted Sybil or eclipse cluster): see
/// [`dense_cluster`].
pub fn is_implausibly_dense(key: &Key, found: &[NodeId], n_est: f64, k: usize) -> bool {
    dense_cluster(key, found, n_est, k).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::rngs::StdRng;
    use rand::{RngCore, SeedableRng};

    fn random_ids(rng: &mut StdRng, n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                NodeId::from_bytes(b)
            })
            .collect()
    }

    /// The `k` of `ids` closest to `key`.
    fn closest(key: &Key, ids: &[NodeId], k: usize) -> Vec<NodeId> {
        let mut v = ids.to_vec();
        v.sort_by_key(|id| key.distance(&Key::from(id)));
        v.truncate(k);
        v
    }

    fn key(rng: &mut StdRng) -> Key {
        let mut b = [0u8; 32];
        rng.fill_bytes(&mut b);
        Key(b)
    }

    /// `n` ids sharing `bits` leading bits with `key`.
    fn cluster(rng: &mut StdRng, key: &Key, bits: u32, n: usize) -> Vec<NodeId> {
        (0..n)
            .map(|_| {
                let mut b = [0u8; 32];
                rng.fill_bytes(&mut b);
                for bit in 0..bits as usize {
                    let (byte, mask) = (bit / 8, 0x80u8 >> (bit % 8));
                    b[byte] = (b[byte] & !mask) | (key.0[byte] & mask);
                }
                NodeId::from_bytes(b)
            })
            .collect()
    }

    #[test]
    fn fraction_and_leading_zeros_read_the_distance_big_endian() {
        let mut d = [0u8; 32];
        d[0] = 0x80;
        assert_eq!(fraction(&Distance(d)), 0.5);
        assert_eq!(leading_zero_bits(&Distance(d)), 0);
        let mut d = [0u8; 32];
        d[1] = 0x01;
        assert_eq!(fraction(&Distance(d)), 1.0 / 65536.0);
        assert_eq!(leading_zero_bits(&Distance(d)), 15);
        assert_eq!(leading_zero_bits(&Distance([0; 32])), 256);
        assert_eq!(
            fraction(&Distance([0xff; 32])),
            1.0,
            "rounds, never above 1"
        );
    }

    #[test]
    fn the_size_estimate_is_within_a_factor_of_two_of_the_truth() {
        let mut rng = StdRng::seed_from_u64(1);
        for n in [100usize, 1000, 10_000] {
            let ids = random_ids(&mut rng, n);
            let mut within = 0;
            for own in ids.iter().take(50) {
                let own = Key::from(own);
                let near: Vec<NodeId> = closest(&own, &ids, 21);
                let est = estimate_network_size(&own, &near);
                if est > n as f64 / 2.0 && est < n as f64 * 2.0 {
                    within += 1;
                }
            }
            assert!(within >= 45, "n = {n}: {within} of 50 within 2x");
        }
    }

    #[test]
    fn an_honest_neighbourhood_is_almost_never_dense() {
        let mut rng = StdRng::seed_from_u64(2);
        let ids = random_ids(&mut rng, 5000);
        let own = Key::from(&ids[0]);
        let n_est = estimate_network_size(&own, &closest(&own, &ids, 21));
        let mut dense = 0;
        for _ in 0..2000 {
            let k = key(&mut rng);
            if is_implausibly_dense(&k, &closest(&k, &ids, 20), n_est, 20) {
                dense += 1;
            }
        }
        assert!(dense <= 4, "{dense} false alarms in 2000 keys");
    }

    #[test]
    fn a_targeted_cluster_is_found_and_set_aside() {
        let mut rng = StdRng::seed_from_u64(3);
        let honest = random_ids(&mut rng, 1000);
        let target = key(&mut rng);
        // 50 ids sharing log2(1000) + 4 = 14 bits with the key.
        let sybils = cluster(&mut rng, &target, 14, 50);
        let mut all = honest.clone();
        all.extend(&sybils);
        let own = Key::from(&honest[0]);
        let n_est = estimate_network_size(&own, &closest(&own, &all, 21));
        let found = closest(&target, &all, 20);
        let c = dense_cluster(&target, &found, n_est, 20).expect("dense");
        assert!(c.shared_bits >= 14, "{c:?}");
        assert_eq!(c.members, 20, "all 20 found are the attacker's");
        // Widen: set the cluster aside and look again; repeat while dense.
        let mut set_aside = c;
        for _ in 0..3 {
            let rest: Vec<NodeId> = all
                .iter()
                .filter(|id| !set_aside.contains(&target, id))
                .copied()
                .collect();
            match dense_cluster(&target, &closest(&target, &rest, 20), n_est, 20) {
                Some(more) => set_aside = set_aside.merge(more),
                None => break,
            }
        }
        assert!(sybils.iter().all(|s| set_aside.contains(&target, s)));
        let honest_set_aside = honest
            .iter()
            .filter(|h| set_aside.contains(&target, h))
            .count();
        assert!(
            honest_set_aside <= 2,
            "{honest_set_aside} honest nodes lost"
        );
    }

    #[test]
    fn total_on_hostile_input() {
        let k = Key([7; 32]);
        let same = vec![NodeId::from_bytes([7; 32]); 50];
        assert_eq!(estimate_network_size(&k, &same), 1.0);
        assert_eq!(estimate_network_size(&k, &[]), 1.0);
        // Every id at distance zero: one distinct id, too few for a cluster.
        assert_eq!(dense_cluster(&k, &same, 1000.0, 20), None);
        for bad in [f64::NAN, f64::INFINITY, -1.0, 0.0, 0.5] {
            assert_eq!(dense_cluster(&k, &same, bad, 20), None);
        }
        let mut rng = StdRng::seed_from_u64(4);
        let ids = random_ids(&mut rng, 3000);
        let est = estimate_network_size(&k, &ids);
        assert!(est.is_finite() && est >= 1.0);
        // Extreme sizes and k: no panic, a definite answer.
        assert!(dense_cluster(&k, &ids, f64::MAX, usize::MAX).is_none());
        assert!(dense_cluster(&k, &ids, 1.0, usize::MAX).is_some());
        assert_eq!(dense_cluster(&k, &ids, 1.0, 0), None);
        // Ids adjacent to the key: the estimate stays finite.
        let mut near = [7u8; 32];
        near[31] ^= 1;
        let est = estimate_network_size(&k, &[NodeId::from_bytes(near)]);
        assert!(est.is_finite() && est > 1e20);
    }
}

//! Where records go and which buckets a joining node refreshes: the
//! placement decisions the node and the simulator share.

use super::key::Key;
use super::lookup::spread_across_paths;
use super::peers::Peers;
use super::query::Found;
use super::routing::{Contact, RoutingTable};
use crate::identity::NodeId;

/// Farther buckets a joining node refreshes beyond its closest neighbour's
/// (a network of `n` nodes fills about `log2(n)` of them).
pub const JOIN_REFRESH_BUCKETS: usize = 16;

/// One holder of a replica.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replica {
    /// This node itself (it is among the closest to the key).
    Local,
    /// Another node.
    Remote(Contact),
}

/// Where a record of sequence `seq` under `key` goes, given what a
/// [`super::query::Goal::Place`] query found:
///
/// 1. the `replication` closest of this node and the nodes the query
///    found (taken round-robin across its disjoint paths with
///    [`super::peers::Defences::spread_replicas`], so that a path an
///    adversary steered gets at most its share; else the overall
///    closest), skipping peers that may not hold a replica;
/// 2. with a dense cluster found around the key ([`Found::dense`]), as
///    many again among the nodes found beyond it, so that the cluster
///    cannot hide the record;
/// 3. the holders of older versions the query met (at most `replication`
///    more), so that they do not go on serving them.
pub fn place_replicas(
    peers: &Peers,
    now_ms: u64,
    key: &Key,
    found: &Found,
    seq: u64,
) -> Vec<Replica> {
    let replication = peers.params().replication;
    let eligible = |c: &Contact| peers.may_hold_replica(now_ms, &c.id);
    let candidates: Vec<Contact> = if peers.defences().spread_replicas {
        let per_path: Vec<Vec<Contact>> = found
            .per_path
            .iter()
            .map(|path| path.iter().filter(|c| eligible(c)).copied().collect())
            .collect();
        spread_across_paths(&per_path, replication)
    } else {
        found
            .closest
            .iter()
            .map(|(c, _)| *c)
            .filter(eligible)
            .take(replication)
            .collect()
    };
    let mut chosen: Vec<Replica> = candidates.into_iter().map(Replica::Remote).collect();
    chosen.push(Replica::Local);
    let local = Key::from(peers.local());
    chosen.sort_by_key(|r| match r {
        Replica::Local => key.distance(&local),
        Replica::Remote(c) => key.distance(&Key::from(c.id)),
    });
    chosen.truncate(replication);
    let placed = |chosen: &[Replica], c: &Contact| {
        chosen
            .iter()
            .any(|r| matches!(r, Replica::Remote(h) if h.id == c.id))
    };
    if found.dense.is_some() {
        let per_path: Vec<Vec<Contact>> = found
            .beyond
            .iter()
            .map(|path| path.iter().filter(|c| eligible(c)).copied().collect())
            .collect();
        for c in spread_across_paths(&per_path, replication) {
            if !placed(&chosen, &c) {
                chosen.push(Replica::Remote(c));
            }
        }
    }
    let mut extra = 0;
    for (c, held) in &found.holders {
        if extra >= replication {
            break;
        }
        if *held < seq && eligible(c) && !placed(&chosen, c) {
            chosen.push(Replica::Remote(*c));
            extra += 1;
        }
    }
    chosen
}

/// Read repair: the holders a value read met that answered with an older
/// version than the newest it found (at most `replication`, peers that
/// may hold a replica), to be sent the newest, so that a stale copy left
/// by churn or an eclipse is not served again.
pub fn read_repair_targets(peers: &Peers, now_ms: u64, found: &Found) -> Vec<Contact> {
    let Some(best) = found.best_seq else {
        return Vec::new();
    };
    found
        .holders
        .iter()
        .filter(|(c, seq)| *seq < best && peers.may_hold_replica(now_ms, &c.id))
        .map(|(c, _)| *c)
        .take(peers.params().replication)
        .collect()
}

/// The buckets a node that joined refreshes with one lookup each: those
/// beyond its closest neighbour's ([`JOIN_REFRESH_BUCKETS`] at most), none
/// if its own-id lookup found nobody. Pick a key in each with
/// [`super::routing::RoutingTable::key_in_bucket`].
pub fn join_refresh_buckets(own: &Key, found: &Found) -> std::ops::Range<usize> {
    match found
        .closest
        .first()
        .and_then(|(c, _)| own.distance(&Key::from(c.id)).bucket_index())
    {
        Some(nearest) => (nearest + 1)..(nearest + 1 + JOIN_REFRESH_BUCKETS).min(256),
        None => 0..0,
    }
}

/// The rank of the point `of` among this node (`local`) and the contacts
/// of `table` by distance to `key` (0 = closest); `of` itself is not
/// counted.
pub fn rank_among(table: &RoutingTable, local: &Key, key: &Key, of: &Key) -> usize {
    let d = key.distance(of);
    let local_closer = key.distance(local) < d;
    table
        .count_closer(key, &d)
        .saturating_add(usize::from(local_closer))
}

/// Hand-over: whether `newcomer`, just admitted, is now among the
/// `replication` closest known nodes to `key` (this node included), so
/// that this node gives it the record it holds under `key` (Kademlia's
/// rule: a new node closer to a key holds what it should without waiting
/// for the next republish).
pub fn hand_over_to(
    table: &RoutingTable,
    replication: usize,
    key: &Key,
    newcomer: &NodeId,
) -> bool {
    table.contains(newcomer)
        && rank_among(table, &table.local(), key, &Key::from(*newcomer)) < replication
}

/// Repair: after `evicted` left the table, the node that takes its place
/// among the `replication` closest of (table ∪ this node) to `key`, if
/// the evicted node was one of them and the entrant is not this node.
pub fn repair_entrant(
    table: &RoutingTable,
    replication: usize,
    key: &Key,
    evicted: &NodeId,
) -> Option<Contact> {
    let r = replication.max(1);
    if table.contains(evicted) || rank_among(table, &table.local(), key, &Key::from(*evicted)) >= r
    {
        return None;
    }
    let local = table.local();
    let mut members: Vec<Option<Contact>> = table.closest(key, r).into_iter().map(Some).collect();
    members.push(None);
    members.sort_by_key(|m| key.distance(&m.map_or(local, |c| Key::from(c.id))));
    members.get(r - 1).copied().flatten()
}

/// Republish: the nodes to offer the record under `key` to (the
/// `replication` closest of the table, with as many spares again for
/// those that fail) and how many acknowledgements make it fully
/// replicated (one fewer when this node is itself among the closest).
pub fn republish_targets(
    table: &RoutingTable,
    replication: usize,
    key: &Key,
) -> (Vec<Contact>, usize) {
    let r = replication.max(1);
    let own = table.local();
    let local_is_holder = table.count_closer(key, &key.distance(&own)) < r;
    (
        table.closest(
            key,
            r.saturating_mul(crate::limits::RESPONSIBILITY_SLACK_FACTOR),
        ),
        r - usize::from(local_is_holder),
    )
}

//! Where records go, what churn moves, and how a node joins (which
//! buckets it refreshes, when it tries again): the placement decisions
//! the node and the simulator share.

use super::key::{Distance, Key};
use super::lookup::spread_across_paths;
use super::peers::{ChurnEvent, Peers};
use super::query::Found;
use super::routing::{Contact, RoutingTable};
use crate::identity::NodeId;
use crate::limits::{
    JOIN_MAX_ATTEMPTS, JOIN_MIN_ANSWERS, JOIN_RETRY_BACKOFF, JOIN_RETRY_MAX_BACKOFF,
};

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
/// 3. the holders of older versions the query met (at most
///    2 × `replication` more, the responsibility bound), so that they do
///    not go on serving them;
/// 4. this node itself when it holds an older version (`local_held`, the
///    sequence it holds under `key`), for the same reason.
pub fn place_replicas(
    peers: &Peers,
    now_ms: u64,
    key: &Key,
    found: &Found,
    seq: u64,
    local_held: Option<u64>,
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
    // As many holders of older versions as may legitimately hold the
    // record (the responsibility bound: hand-over and repair put copies on
    // nodes beyond the closest `replication`).
    let max_extra = replication.saturating_mul(crate::limits::RESPONSIBILITY_SLACK_FACTOR);
    let mut extra = 0;
    for (c, held) in &found.holders {
        if extra >= max_extra {
            break;
        }
        if *held < seq && eligible(c) && !placed(&chosen, c) {
            chosen.push(Replica::Remote(*c));
            extra += 1;
        }
    }
    if local_held.is_some_and(|held| held < seq) && !chosen.contains(&Replica::Local) {
        chosen.push(Replica::Local);
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

/// What a join does after the lookup of its own id.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum JoinStep {
    /// The lookup found the node's neighbourhood: refresh these buckets
    /// ([`join_refresh_buckets`]) and the join is done.
    Refresh(std::ops::Range<usize>),
    /// It found nobody: at `at_ms` (on the clock of the `now_ms` given),
    /// dial the bootstrap nodes again and look up the own id again.
    Retry {
        /// When to try again.
        at_ms: u64,
    },
    /// It found nobody and the attempts are spent
    /// ([`JOIN_MAX_ATTEMPTS`]): the node's bucket refreshes go on from
    /// whatever it knows.
    GiveUp,
}

/// A join's attempts, sans-IO: the driver dials its bootstrap nodes,
/// looks up its own id, learns the result ([`Peers::learn_found`]) and
/// reports the lookup to [`JoinPlan::on_own_lookup`], which says what
/// next ([`JoinStep`]). A join whose lookup got fewer than
/// [`JOIN_MIN_ANSWERS`] answers is tried again after
/// [`JOIN_RETRY_BACKOFF`], doubling per retry up to
/// [`JOIN_RETRY_MAX_BACKOFF`], [`JOIN_MAX_ATTEMPTS`] attempts in all.
///
/// ```text
/// let mut plan = JoinPlan::new();
/// loop {
///     dial bootstrap nodes; found = lookup(own id); learn found
///     match plan.on_own_lookup(now, &own, &found) {
///         Refresh(buckets) => { one lookup per bucket; break }
///         Retry { at_ms }  => wait until at_ms
///         GiveUp           => break
///     }
/// }
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JoinPlan {
    attempts: u32,
}

impl JoinPlan {
    /// A join about to make its first attempt.
    pub fn new() -> Self {
        Self::default()
    }

    /// The own-id lookup of an attempt ended at `now_ms` with `found`
    /// (`own` is this node's id as a key): what the join does next.
    pub fn on_own_lookup(&mut self, now_ms: u64, own: &Key, found: &Found) -> JoinStep {
        self.attempts = self.attempts.saturating_add(1);
        if found.closest.len() >= JOIN_MIN_ANSWERS {
            return JoinStep::Refresh(join_refresh_buckets(own, found));
        }
        if self.attempts >= JOIN_MAX_ATTEMPTS {
            return JoinStep::GiveUp;
        }
        JoinStep::Retry {
            at_ms: now_ms.saturating_add(Self::backoff_ms(self.attempts)),
        }
    }

    /// Attempts reported so far.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// The wait after the `failed`-th failed attempt (1-based), in ms.
    fn backoff_ms(failed: u32) -> u64 {
        let ms = |d: std::time::Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        let doublings = failed.saturating_sub(1).min(63);
        ms(JOIN_RETRY_BACKOFF)
            .saturating_mul(1u64 << doublings)
            .min(ms(JOIN_RETRY_MAX_BACKOFF))
    }
}

/// The (at most `limit`) items of `held` whose keys are nearest to
/// `point`, nearest first (items under one key in the order given):
/// what a churn event at `point` considers ([`churn_pushes`], bounded by
/// [`crate::limits::MAX_HANDOVER_RECORDS`]). O(`limit`) memory.
pub fn nearest_held<T>(
    point: &Key,
    held: impl IntoIterator<Item = (Key, T)>,
    limit: usize,
) -> Vec<(Key, T)> {
    let mut nearest: Vec<(Distance, Key, T)> = Vec::new();
    for (key, item) in held {
        let d = key.distance(point);
        if nearest.len() >= limit && nearest.last().is_none_or(|(far, ..)| d >= *far) {
            continue;
        }
        let at = nearest.partition_point(|(x, ..)| *x <= d);
        nearest.insert(at, (d, key, item));
        nearest.truncate(limit);
    }
    nearest
        .into_iter()
        .map(|(_, key, item)| (key, item))
        .collect()
}

/// What one churn event moves, of the `candidates` this node holds (the
/// ones nearest to the event's contact, [`nearest_held`]), each item to
/// the contact that should now hold it: for
/// [`ChurnEvent::Admitted`], the newcomer, for the keys of which it is
/// now a holder ([`hand_over_to`]); for [`ChurnEvent::Evicted`], the node
/// that takes the evicted one's place among a key's holders
/// ([`repair_entrant`]).
pub fn churn_pushes<T>(
    table: &RoutingTable,
    replication: usize,
    event: &ChurnEvent,
    candidates: impl IntoIterator<Item = (Key, T)>,
) -> Vec<(Contact, T)> {
    let candidates = candidates.into_iter();
    match event {
        ChurnEvent::Admitted(newcomer) => candidates
            .filter(|(key, _)| hand_over_to(table, replication, key, &newcomer.id))
            .map(|(_, item)| (*newcomer, item))
            .collect(),
        ChurnEvent::Evicted(evicted) => candidates
            .filter_map(|(key, item)| {
                repair_entrant(table, replication, &key, &evicted.id).map(|to| (to, item))
            })
            .collect(),
    }
}

/// The contact a churn event is about.
pub fn churn_contact(event: &ChurnEvent) -> Contact {
    match event {
        ChurnEvent::Admitted(c) | ChurnEvent::Evicted(c) => *c,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(first: u8) -> Contact {
        let mut id = [0u8; 32];
        id[0] = first;
        Contact {
            id: NodeId::from_bytes(id),
            addr: format!("10.{first}.0.1:4433").parse().unwrap(),
        }
    }

    #[test]
    fn a_join_that_found_nobody_retries_with_doubling_waits_then_gives_up() {
        let own = Key([0u8; 32]);
        let nobody = Found::default();
        let mut plan = JoinPlan::new();
        // No clock: the times are the inputs, the waits 1, 2, 4, 8 s.
        let mut now = 5_000;
        let mut waits = Vec::new();
        loop {
            match plan.on_own_lookup(now, &own, &nobody) {
                JoinStep::Retry { at_ms } => {
                    waits.push(at_ms - now);
                    // The next attempt's lookup ends 300 ms after it starts.
                    now = at_ms + 300;
                }
                JoinStep::GiveUp => break,
                JoinStep::Refresh(_) => panic!("nobody answered"),
            }
        }
        assert_eq!(waits, vec![1_000, 2_000, 4_000, 8_000]);
        assert_eq!(plan.attempts(), JOIN_MAX_ATTEMPTS);
        assert_eq!(JoinPlan::backoff_ms(20), 30_000, "capped");
    }

    #[test]
    fn a_join_that_found_its_neighbourhood_refreshes_at_once_even_after_retries() {
        let own = Key([0u8; 32]);
        let found = Found {
            // The closest neighbour shares 3 leading bits: bucket 252.
            closest: vec![(contact(0x10), 1)],
            ..Found::default()
        };
        let mut plan = JoinPlan::new();
        assert_eq!(
            plan.on_own_lookup(0, &own, &found),
            JoinStep::Refresh(join_refresh_buckets(&own, &found))
        );
        let mut plan = JoinPlan::new();
        assert_eq!(
            plan.on_own_lookup(0, &own, &Found::default()),
            JoinStep::Retry { at_ms: 1_000 }
        );
        match plan.on_own_lookup(1_200, &own, &found) {
            JoinStep::Refresh(buckets) => assert!(!buckets.is_empty()),
            other => panic!("{other:?}"),
        }
        assert_eq!(plan.attempts(), 2);
    }

    #[test]
    fn a_churn_event_considers_the_nearest_held_keys_only() {
        let point = Key([0u8; 32]);
        let held: Vec<(Key, u8)> = (1..=10u8)
            .rev()
            .map(|i| {
                let mut k = [0u8; 32];
                k[0] = i;
                (Key(k), i)
            })
            .collect();
        let nearest = nearest_held(&point, held.clone(), 3);
        assert_eq!(
            nearest.iter().map(|(_, i)| *i).collect::<Vec<_>>(),
            vec![1, 2, 3]
        );
        assert!(nearest_held(&point, held.clone(), 0).is_empty());
        assert_eq!(nearest_held(&point, held, 100).len(), 10);
    }
}

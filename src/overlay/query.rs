//! One whole lookup operation, sans-IO: the policy of asking, judging and
//! stopping that the node and the simulator share.
//!
//! A [`Query`] wraps the disjoint-path [`Lookup`] with everything around
//! it: seeds chosen by the [`Peers`] (standing, outbound, distance; banned
//! never; suspects asked last), answers judged (contacts that fail the
//! puzzle, too many contacts, forged records: evidence through
//! [`Peers::observe`]), a value read that stops after
//! [`Defences::value_answers`] holders, widening when the goal was not met
//! ([`Defences::widen_rounds`]), and density detection for value and
//! placement lookups: an implausibly dense cluster of ids around the key
//! is set aside and the lookup repeated beyond it, up to
//! [`DENSITY_WIDEN_ROUNDS`] times ([`crate::overlay::density`]).
//!
//! The driver sends what [`Query::poll_request`] names (FindNode for
//! [`Goal::Closest`] and [`Goal::Node`], FindValue otherwise), verifies
//! records itself (it owns them) and reports each outcome with
//! [`Query::on_answer`] or [`Query::on_failure`], until
//! [`Query::is_finished`]; then [`Query::found`] tells what was found.
//! Answers of requests a finished round left in flight are ignored.
//!
//! ```text
//! let mut q = Query::new(&peers, now, target, Goal::Value);
//! loop {
//!     while let Some(to) = q.poll_request(&mut peers, now) { send to `to` }
//!     if q.is_finished() { break }
//!     wait for one outcome: q.on_answer(&mut peers, now, from, answer) or q.on_failure(..)
//! }
//! q.found()
//! ```

use super::density::{self, DenseCluster};
use super::key::Key;
use super::lookup::{FaultKind, Lookup, PeerFault};
use super::peers::{Defences, Failure, Peers};
use super::routing::Contact;
use crate::identity::NodeId;
use crate::limits::{DENSITY_WIDEN_ROUNDS, MAX_FOUND_HOLDERS};
use crate::reputation::Evidence;

/// What a query is for, which decides what it asks, when it stops and
/// whether it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The nodes closest to a key (join, refresh, leave): FindNode, no
    /// failure signal, never widened, no density detection.
    Closest,
    /// The node whose id is the key: FindNode, failed (and widened) if it
    /// did not answer.
    Node,
    /// A valid record under the key: FindValue, stops after
    /// [`Defences::value_answers`] holders, failed (and widened) if none.
    Value,
    /// The nodes closest to a key, to place a record there: FindValue
    /// (with [`Defences::update_holders`]; FindNode without) that never
    /// stops early and collects the holders of any version
    /// ([`Found::holders`]).
    Place,
}

/// What the driver learned from one answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RecordsJudged {
    /// The highest sequence number among the answer's records that
    /// verified under the key; `None` if none did (or there were none).
    pub best_seq: Option<u64>,
    /// The worst thing its records proved about the peer (a forged record,
    /// a record under another key), if anything.
    pub worst: Option<Evidence>,
}

/// The outcome of a query.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The `k` closest nodes that answered in the first round (over its
    /// widenings), closest first, with the hop each was found at.
    pub closest: Vec<(Contact, u32)>,
    /// The closest nodes that answered on each disjoint path of the first
    /// round's last widening, closest first: see
    /// [`crate::overlay::lookup::spread_across_paths`].
    pub per_path: Vec<Vec<Contact>>,
    /// The implausibly dense cluster found around the key, if any: the
    /// lookup was repeated with it set aside.
    pub dense: Option<DenseCluster>,
    /// With `dense`: the closest nodes that answered on each path of the
    /// last repeat, the cluster set aside (where extra replicas go).
    pub beyond: Vec<Vec<Contact>>,
    /// For [`Goal::Place`] and [`Goal::Value`]: the nodes that answered
    /// with a verified record under the key, and the highest sequence each
    /// had (over all rounds, at most [`MAX_FOUND_HOLDERS`]): where older
    /// versions are to be replaced.
    pub holders: Vec<(Contact, u64)>,
    /// The highest sequence number found under the key (value reads).
    pub best_seq: Option<u64>,
    /// Whether the target node itself answered (for [`Goal::Node`]), and
    /// at which hop.
    pub target_hop: Option<u32>,
    /// Requests issued, over all rounds.
    pub requests: u32,
}

/// One lookup operation (see the module docs).
#[derive(Debug, Clone)]
pub struct Query {
    target: Key,
    goal: Goal,
    defences: Defences,
    k: usize,
    lookup: Lookup,
    /// The dense cluster set aside in the current round.
    exclude: Option<DenseCluster>,
    widen_left: u32,
    density_left: u32,
    /// Holders that answered with a verified record in this round.
    values_this_round: usize,
    first_round: bool,
    finished: bool,
    found: Found,
    /// Requests of finished rounds.
    past_requests: u32,
}

impl Query {
    /// A query for `target` from the node whose peers are `peers`.
    pub fn new(peers: &Peers, now_ms: u64, target: Key, goal: Goal) -> Self {
        let params = peers.params();
        let mut q = Self {
            target,
            goal,
            defences: *peers.defences(),
            k: params.k.max(1),
            lookup: Lookup::new(target, Vec::new(), peers.local(), params),
            exclude: None,
            widen_left: peers.defences().widen_rounds,
            density_left: DENSITY_WIDEN_ROUNDS,
            values_this_round: 0,
            first_round: true,
            finished: false,
            found: Found::default(),
            past_requests: 0,
        };
        q.start_round(peers, now_ms);
        q
    }

    /// Whether the query sends FindValue (else FindNode).
    pub fn wants_values(&self) -> bool {
        match self.goal {
            Goal::Value => true,
            Goal::Place => self.defences.update_holders,
            Goal::Closest | Goal::Node => false,
        }
    }

    /// The key looked up.
    pub fn target(&self) -> Key {
        self.target
    }

    /// The goal.
    pub fn goal(&self) -> Goal {
        self.goal
    }

    /// The dense cluster set aside in the current round, if any: contacts
    /// in it are not taken from answers.
    pub fn excluded(&self) -> Option<DenseCluster> {
        self.exclude
    }

    /// The next peer to ask, if any may be asked now. Peers banned since
    /// they became candidates are skipped.
    pub fn poll_request(&mut self, peers: &mut Peers, now_ms: u64) -> Option<Contact> {
        loop {
            if self.finished {
                return None;
            }
            match self.lookup.poll_request() {
                Some(req) if peers.is_banned(now_ms, &req.to.id) => {
                    self.lookup.on_failure(&req.to.id);
                    self.drain_faults(peers, now_ms, None);
                }
                Some(req) => return Some(req.to),
                None => {
                    if !self.lookup.is_finished() {
                        return None;
                    }
                    // The round ended without an answer in between (no
                    // seeds, every candidate banned): move on.
                    self.advance(peers, now_ms);
                    if self.finished {
                        return None;
                    }
                }
            }
        }
    }

    /// `from` answered with `contacts` and, for FindValue, records the
    /// driver judged.
    pub fn on_answer(
        &mut self,
        peers: &mut Peers,
        now_ms: u64,
        from: Contact,
        contacts: &[Contact],
        records: RecordsJudged,
    ) {
        if self.finished {
            return;
        }
        peers.answered(now_ms, from);
        // Padding an answer with ids that are then filtered out must not
        // hide that it named too many.
        let too_many = contacts.len() > self.k;
        let kept: Vec<Contact> = contacts
            .iter()
            .filter(|c| {
                !self
                    .exclude
                    .is_some_and(|x| x.contains(&self.target, &c.id))
                    && !peers.is_banned(now_ms, &c.id)
            })
            .copied()
            .collect();
        self.lookup.on_response(&from.id, &kept);
        for c in &kept {
            if peers.is_suspect(now_ms, &c.id) {
                self.lookup.demote(&c.id);
            }
        }
        let own_fault = too_many && kept.len() <= self.k;
        if own_fault {
            peers.on_fault(
                now_ms,
                &PeerFault {
                    peer: from.id,
                    kind: FaultKind::TooManyContacts,
                },
            );
        }
        let faulty = self.drain_faults(peers, now_ms, Some(&from.id)) || own_fault;
        if !faulty {
            let _ = peers.observe(
                now_ms,
                &from.id,
                records.worst.unwrap_or(Evidence::Verified),
            );
        }
        if NodeId::from_bytes(self.target.0) == from.id && self.found.target_hop.is_none() {
            let hop = self
                .lookup
                .result()
                .iter()
                .find(|(c, _)| c.id == from.id)
                .map_or(0, |(_, h)| *h);
            self.found.target_hop = Some(hop + 1);
        }
        if let Some(seq) = records.best_seq {
            self.values_this_round += 1;
            if self.found.best_seq.is_none_or(|best| seq > best) {
                self.found.best_seq = Some(seq);
            }
            if matches!(self.goal, Goal::Place | Goal::Value) {
                self.note_holder(from, seq);
            }
            if self.goal == Goal::Value
                && self.values_this_round >= self.defences.value_answers.max(1)
            {
                self.lookup.finish();
            }
        }
        self.advance(peers, now_ms);
    }

    /// The request to `from` failed.
    pub fn on_failure(&mut self, peers: &mut Peers, now_ms: u64, from: Contact, failure: Failure) {
        if self.finished {
            return;
        }
        peers.on_request_failed(now_ms, &from, failure);
        self.lookup.on_failure(&from.id);
        self.drain_faults(peers, now_ms, None);
        self.advance(peers, now_ms);
    }

    /// The disjoint path `id` was asked on in this round, if it was.
    pub fn path_of(&self, id: &NodeId) -> Option<usize> {
        self.lookup.path_of(id)
    }

    /// Whether the query is over.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// What the query found (so far, before it finished).
    pub fn found(&self) -> Found {
        let mut found = self.found.clone();
        found.requests = self.past_requests + self.lookup.requests();
        found
    }

    /// Whether the goal is met: for reads, whether to widen.
    fn goal_met(&self) -> bool {
        match self.goal {
            Goal::Closest | Goal::Place => true,
            Goal::Node => self.found.target_hop.is_some(),
            Goal::Value => self.found.best_seq.is_some(),
        }
    }

    fn note_holder(&mut self, from: Contact, seq: u64) {
        let holders = &mut self.found.holders;
        if let Some((_, s)) = holders.iter_mut().find(|(c, _)| c.id == from.id) {
            *s = (*s).max(seq);
        } else if holders.len() < MAX_FOUND_HOLDERS {
            holders.push((from, seq));
        }
    }

    /// Reports the lookup's faults to `peers`; returns whether `peer` was
    /// among the faulty. Unanswered requests were reported already.
    fn drain_faults(&mut self, peers: &mut Peers, now_ms: u64, peer: Option<&NodeId>) -> bool {
        let mut faulty = false;
        while let Some(fault) = self.lookup.poll_fault() {
            if fault.kind != FaultKind::Unresponsive {
                faulty |= Some(&fault.peer) == peer;
                peers.on_fault(now_ms, &fault);
            }
        }
        faulty
    }

    fn start_round(&mut self, peers: &Peers, now_ms: u64) {
        let seeds = peers.seeds(now_ms, &self.target, self.exclude.as_ref());
        let suspects: Vec<NodeId> = seeds
            .iter()
            .filter(|c| peers.is_suspect(now_ms, &c.id))
            .map(|c| c.id)
            .collect();
        self.past_requests += self.lookup.requests();
        self.lookup = Lookup::new(self.target, seeds, peers.local(), peers.params());
        for id in &suspects {
            self.lookup.demote(id);
        }
        self.values_this_round = 0;
        self.widen_left = self.defences.widen_rounds;
    }

    /// After an outcome: when the round's lookup is over, widens it, or
    /// repeats it beyond a dense cluster, or ends the query.
    fn advance(&mut self, peers: &Peers, now_ms: u64) {
        if self.finished || !self.lookup.is_finished() {
            return;
        }
        if !self.goal_met() && self.widen_left > 0 && self.lookup.widen() {
            self.widen_left -= 1;
            return;
        }
        let known = self.lookup.known_closest(self.k);
        if self.first_round {
            self.first_round = false;
            self.found.closest = self.lookup.result();
            self.found.per_path = self.lookup.result_per_path();
        } else {
            self.found.beyond = self.lookup.result_per_path();
        }
        // A table too small to estimate the overlay's size from (a young
        // overlay, a node just started) would make every key look dense.
        let detect = self.defences.density
            && matches!(self.goal, Goal::Value | Goal::Place)
            && self.density_left > 0
            && peers.table().len() >= self.k;
        if detect {
            let n_est = peers.estimated_size();
            if let Some(cluster) = density::dense_cluster(&self.target, &known, n_est, self.k) {
                let merged = self.found.dense.map_or(cluster, |old| old.merge(cluster));
                if self.found.dense != Some(merged) {
                    tracing::debug!(
                        key = %hex::encode(&self.target.0[..8]),
                        shared_bits = merged.shared_bits,
                        members = merged.members,
                        estimated_nodes = n_est.round(),
                        "implausibly dense ids around a key: repeating the lookup without them"
                    );
                    self.density_left -= 1;
                    self.found.dense = Some(merged);
                    self.exclude = Some(merged);
                    self.start_round(peers, now_ms);
                    return;
                }
            }
        }
        self.finished = true;
    }
}

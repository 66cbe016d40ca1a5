//! Iterative lookups over disjoint paths (S/Kademlia §4.4), as a sans-IO
//! state machine.
//!
//! Seeds from the local table (the driver picks them: the closest, or the
//! best by reputation among the closest) are dealt round-robin to `d`
//! paths; with fewer seeds than paths, the seeded paths' first answers
//! fill the empty ones, each seeded path its share. Each path runs its own
//! iterative Kademlia lookup with `alpha` requests in flight, and a node
//! belongs to one path only (the path that learned of it, or that path's
//! dealing): no node is queried on two paths, so an adversary on one path
//! cannot steer the others. A path ends when its
//! `k` closest live candidates have all answered.
//!
//! Answers are checked: contacts that fail the admission puzzle, answers
//! with more than `k` contacts and unanswered requests are reported as
//! [`PeerFault`]s, the one typed channel through which the reputation
//! subsystem will learn of them.
//!
//! Driving it (the caller owns sockets, clocks and timeouts):
//!
//! ```text
//! let mut l = Lookup::new(target, table.closest(&target, k), local, &params);
//! loop {
//!     while let Some(req) = l.poll_request() { send FindNode(target) to req.to }
//!     on answer: l.on_response(&from, &contacts)   on timeout: l.on_failure(&from)
//!     drain l.poll_fault()
//!     if l.is_finished() { break }
//! }
//! l.result()
//! ```

use super::config::OverlayParams;
use super::key::{Distance, Key};
use super::routing::Contact;
use crate::identity::NodeId;
use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

/// Candidates kept per path beyond which the farthest unqueried ones are
/// dropped: bounds memory whatever peers answer.
const MAX_CANDIDATES_PER_PATH_FACTOR: usize = 8;

/// What a peer did wrong during a lookup.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FaultKind {
    /// It returned a contact whose id fails the admission puzzle.
    InvalidContact,
    /// It returned more contacts than asked for.
    TooManyContacts,
    /// It did not answer (timeout, refused, or a broken answer).
    Unresponsive,
}

/// A fault observed of a peer; drained with [`Lookup::poll_fault`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFault {
    /// The peer at fault.
    pub peer: NodeId,
    /// What it did.
    pub kind: FaultKind,
}

/// A request the driver must send: `FindNode(target)` to `to`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Request {
    /// The peer to ask.
    pub to: Contact,
    /// The path the request belongs to.
    pub path: usize,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Fresh,
    InFlight,
    Answered,
    Failed,
}

#[derive(Debug, Clone)]
struct Candidate {
    contact: Contact,
    state: State,
    hop: u32,
}

#[derive(Debug, Clone, Default)]
struct Path {
    candidates: BTreeMap<Distance, Candidate>,
    in_flight: usize,
}

/// One lookup for the nodes closest to a key.
#[derive(Debug, Clone)]
pub struct Lookup {
    target: Key,
    local: NodeId,
    k: usize,
    alpha: usize,
    difficulty: u8,
    paths: Vec<Path>,
    /// Which path each known node belongs to.
    owner: HashMap<NodeId, usize>,
    next_path: usize,
    faults: VecDeque<PeerFault>,
    requests: u32,
    finished: bool,
    /// Nodes that answered before [`Lookup::widen`], for the result.
    retired: Vec<(Distance, Contact, u32)>,
    /// Candidates the driver distrusts ([`Lookup::demote`]): asked only
    /// when no trusted candidate among a path's `k` closest is left.
    demoted: HashSet<NodeId>,
    /// For each path left empty by the seeding (fewer seeds than paths),
    /// the seeded path whose answers fill it ([`Lookup::assign_feeders`]).
    feeder: Vec<Option<usize>>,
}

impl Lookup {
    /// A lookup for `target` seeded with `seeds` (normally the local
    /// table's `k` closest to `target`).
    pub fn new(target: Key, seeds: Vec<Contact>, local: NodeId, params: &OverlayParams) -> Self {
        let d = params.disjoint_paths.max(1);
        let mut lookup = Self {
            target,
            local,
            k: params.k.max(1),
            alpha: params.alpha.max(1),
            difficulty: params.id_difficulty,
            paths: vec![Path::default(); d],
            owner: HashMap::new(),
            next_path: 0,
            faults: VecDeque::new(),
            requests: 0,
            finished: false,
            retired: Vec::new(),
            demoted: HashSet::new(),
            feeder: vec![None; d],
        };
        let mut seeds = seeds;
        seeds.sort_by_key(|c| target.distance(&Key::from(c.id)));
        let mut i = 0;
        for c in seeds {
            if c.id == local || lookup.owner.contains_key(&c.id) {
                continue;
            }
            lookup.add_candidate(i % d, c, 0);
            i += 1;
        }
        lookup.assign_feeders();
        lookup
    }

    /// Gives each path the seeding left empty one seeded path to fill it
    /// from, round-robin: with `m` seeded paths of `d`, each seed's answers
    /// fill at most its share of the empty ones, so one fast adversarial
    /// seed cannot take over every path (a lone seed fills all: a joining
    /// node trusts its bootstrap node).
    fn assign_feeders(&mut self) {
        let seeded: Vec<usize> = (0..self.paths.len())
            .filter(|&i| !self.paths[i].candidates.is_empty())
            .collect();
        let mut next = 0usize;
        for (i, p) in self.paths.iter().enumerate() {
            let feeder = if p.candidates.is_empty() && !seeded.is_empty() {
                let f = seeded.get(next % seeded.len()).copied();
                next += 1;
                f
            } else {
                None
            };
            if let Some(slot) = self.feeder.get_mut(i) {
                *slot = feeder;
            }
        }
    }

    fn add_candidate(&mut self, path: usize, contact: Contact, hop: u32) {
        let distance = self.target.distance(&Key::from(contact.id));
        self.owner.insert(contact.id, path);
        let cap = self.k * MAX_CANDIDATES_PER_PATH_FACTOR;
        let p = &mut self.paths[path];
        p.candidates.insert(
            distance,
            Candidate {
                contact,
                state: State::Fresh,
                hop,
            },
        );
        if p.candidates.len() > cap {
            // Drop the farthest candidate not yet asked.
            let victim = p
                .candidates
                .iter()
                .rev()
                .find(|(_, c)| c.state == State::Fresh)
                .map(|(d, _)| *d);
            if let Some(v) = victim {
                p.candidates.remove(&v);
            }
        }
    }

    /// The next request to send, if the lookup wants one now.
    #[must_use]
    pub fn poll_request(&mut self) -> Option<Request> {
        if self.finished {
            return None;
        }
        let d = self.paths.len();
        for step in 0..d {
            let path = (self.next_path + step) % d;
            if let Some(req) = self.next_on_path(path) {
                self.next_path = (path + 1) % d;
                self.requests += 1;
                return Some(req);
            }
        }
        None
    }

    fn next_on_path(&mut self, path: usize) -> Option<Request> {
        let (k, alpha) = (self.k, self.alpha);
        let p = &mut self.paths[path];
        if p.in_flight >= alpha {
            return None;
        }
        // Only the k closest live candidates are worth asking; among them
        // the closest trusted one, else the closest demoted one.
        let fresh = |c: &&Candidate| c.state == State::Fresh;
        let live = || {
            p.candidates
                .iter()
                .filter(|(_, c)| c.state != State::Failed)
                .take(k)
        };
        let chosen = live()
            .filter(|(_, c)| fresh(c) && !self.demoted.contains(&c.contact.id))
            .chain(live().filter(|(_, c)| fresh(c)))
            .map(|(d, _)| *d)
            .next()?;
        let candidate = p.candidates.get_mut(&chosen)?;
        candidate.state = State::InFlight;
        p.in_flight += 1;
        Some(Request {
            to: candidate.contact,
            path,
        })
    }

    fn find_in_flight(&mut self, from: &NodeId) -> Option<(usize, Distance)> {
        let path = *self.owner.get(from)?;
        let distance = self.target.distance(&Key::from(*from));
        let c = self.paths[path].candidates.get(&distance)?;
        (c.state == State::InFlight).then_some((path, distance))
    }

    /// `from` answered with `contacts`. Answers from peers not asked (or
    /// asked already) are ignored.
    pub fn on_response(&mut self, from: &NodeId, contacts: &[Contact]) {
        let Some((path, distance)) = self.find_in_flight(from) else {
            return;
        };
        let hop = {
            let p = &mut self.paths[path];
            p.in_flight = p.in_flight.saturating_sub(1);
            let Some(c) = p.candidates.get_mut(&distance) else {
                return;
            };
            c.state = State::Answered;
            c.hop
        };
        if contacts.len() > self.k {
            self.faults.push_back(PeerFault {
                peer: *from,
                kind: FaultKind::TooManyContacts,
            });
        }
        let mut reported_invalid = false;
        let mut new: Vec<Contact> = Vec::new();
        // By id: an answer naming one id twice (with two addresses) must
        // not put it on two paths.
        let mut new_ids: HashSet<NodeId> = HashSet::new();
        for c in contacts.iter().take(self.k) {
            if !c.id.meets_difficulty(self.difficulty) {
                if !reported_invalid {
                    self.faults.push_back(PeerFault {
                        peer: *from,
                        kind: FaultKind::InvalidContact,
                    });
                    reported_invalid = true;
                }
                continue;
            }
            if c.id == self.local || self.owner.contains_key(&c.id) || !new_ids.insert(c.id) {
                continue;
            }
            new.push(*c);
        }
        // Paths the seeding left empty (fewer seeds than paths: a joining
        // node knows only its bootstrap node) and that this path feeds
        // take their share of this answer, closest first, round-robin with
        // the answering path; otherwise they would stay empty and the
        // lookup would run on fewer paths.
        let mut paths: Vec<usize> = vec![path];
        paths.extend((0..self.paths.len()).filter(|&i| {
            self.feeder.get(i).copied().flatten() == Some(path)
                && self.paths.get(i).is_some_and(|p| p.candidates.is_empty())
        }));
        new.sort_by_key(|c| self.target.distance(&Key::from(c.id)));
        for (i, c) in new.into_iter().enumerate() {
            let to = paths.get(i % paths.len()).copied().unwrap_or(path);
            self.add_candidate(to, c, hop + 1);
        }
    }

    /// The request to `from` failed (timeout, refusal, broken answer).
    pub fn on_failure(&mut self, from: &NodeId) {
        let Some((path, distance)) = self.find_in_flight(from) else {
            return;
        };
        let p = &mut self.paths[path];
        p.in_flight = p.in_flight.saturating_sub(1);
        if let Some(c) = p.candidates.get_mut(&distance) {
            c.state = State::Failed;
        }
        self.faults.push_back(PeerFault {
            peer: *from,
            kind: FaultKind::Unresponsive,
        });
    }

    /// Marks a candidate the driver distrusts (a suspect peer, in the
    /// reputation subsystem's terms): on its path it is asked only after
    /// every trusted candidate among the path's `k` closest, so that the
    /// answers of trusted peers get the chance to push it out of the `k`
    /// closest before it is asked at all. A demoted candidate still counts
    /// towards the path's end, and it is still asked when it stays among
    /// the `k` closest: demotion reorders, it never loses a node the
    /// lookup needs. Ids that are not (yet) candidates are remembered
    /// only up to the lookup's own candidate count.
    pub fn demote(&mut self, id: &NodeId) {
        let cap = self.k * MAX_CANDIDATES_PER_PATH_FACTOR * self.paths.len();
        if self.owner.contains_key(id) || self.demoted.len() < cap {
            self.demoted.insert(*id);
        }
    }

    /// The next fault observed, if any.
    #[must_use]
    pub fn poll_fault(&mut self) -> Option<PeerFault> {
        self.faults.pop_front()
    }

    fn path_done(&self, p: &Path) -> bool {
        p.in_flight == 0
            && p.candidates
                .values()
                .filter(|c| c.state != State::Failed)
                .take(self.k)
                .all(|c| c.state == State::Answered)
    }

    /// Whether every path has finished (or [`Lookup::finish`] was called).
    pub fn is_finished(&self) -> bool {
        self.finished || self.paths.iter().all(|p| self.path_done(p))
    }

    /// Ends the lookup early (for instance when a value was found).
    pub fn finish(&mut self) {
        self.finished = true;
    }

    /// Starts a second round when the first failed (the target node did
    /// not answer, or no valid record came back): every node already asked
    /// is set aside for good, and the candidates learned but never asked
    /// are dealt afresh to `d` new disjoint paths, closest first.
    ///
    /// Against colluders that answer with the colluders closest to the
    /// target, this is what breaks the attack: the colluders they name were
    /// all asked in the first round, so in the second their answers bring
    /// nothing new and the paths proceed through honest nodes. Returns
    /// `false` (and changes nothing) when no candidate is left to ask.
    pub fn widen(&mut self) -> bool {
        let fresh: Vec<(Distance, Contact, u32)> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|(_, c)| c.state == State::Fresh)
            .map(|(d, c)| (*d, c.contact, c.hop))
            .collect();
        if fresh.is_empty() {
            return false;
        }
        let d = self.paths.len();
        for p in std::mem::replace(&mut self.paths, vec![Path::default(); d]) {
            self.retired.extend(
                p.candidates
                    .into_iter()
                    .filter(|(_, c)| c.state == State::Answered)
                    .map(|(dist, c)| (dist, c.contact, c.hop)),
            );
        }
        let mut fresh = fresh;
        fresh.sort_unstable_by_key(|f| f.0);
        for (i, (_, contact, hop)) in fresh.into_iter().enumerate() {
            self.add_candidate(i % d, contact, hop);
        }
        self.assign_feeders();
        // Answers still in flight belong to the old round: they are
        // ignored when they arrive (the node is no longer in flight).
        self.finished = false;
        true
    }

    /// The closest nodes that answered on each path, closest first: for
    /// placing replicas across paths, so that a path an adversary steered
    /// holds at most its share of them.
    pub fn result_per_path(&self) -> Vec<Vec<Contact>> {
        self.paths
            .iter()
            .map(|p| {
                p.candidates
                    .values()
                    .filter(|c| c.state == State::Answered)
                    .map(|c| c.contact)
                    .take(self.k)
                    .collect()
            })
            .collect()
    }

    /// The `k` closest contacts that answered, over all paths (and rounds),
    /// closest first, each with the hop at which it was found.
    pub fn result(&self) -> Vec<(Contact, u32)> {
        let mut all: Vec<(Distance, Contact, u32)> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .filter(|(_, c)| c.state == State::Answered)
            .map(|(d, c)| (*d, c.contact, c.hop))
            .chain(self.retired.iter().copied())
            .collect();
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter()
            .take(self.k)
            .map(|(_, c, h)| (c, h))
            .collect()
    }

    /// Every node this lookup has heard of near the target (asked or not,
    /// answered or not, over all rounds), at most `n`, closest first: what
    /// density detection looks at, since a cluster that stops a value
    /// lookup early (two of its members replay a validly signed old
    /// record) has been named by its members before most of them answer.
    pub fn known_closest(&self, n: usize) -> Vec<NodeId> {
        let mut all: Vec<(Distance, NodeId)> = self
            .paths
            .iter()
            .flat_map(|p| p.candidates.iter())
            .map(|(d, c)| (*d, c.contact.id))
            .chain(self.retired.iter().map(|(d, c, _)| (*d, c.id)))
            .collect();
        all.sort_unstable();
        all.dedup();
        all.into_iter().take(n).map(|(_, id)| id).collect()
    }

    /// Requests issued so far.
    pub fn requests(&self) -> u32 {
        self.requests
    }

    /// The path each contact was used on, for checking disjointness.
    pub fn path_of(&self, id: &NodeId) -> Option<usize> {
        self.owner.get(id).copied()
    }

    /// The contacts queried on `path` (answered, failed or in flight).
    pub fn queried_on(&self, path: usize) -> Vec<NodeId> {
        self.paths
            .get(path)
            .map(|p| {
                p.candidates
                    .values()
                    .filter(|c| c.state != State::Fresh)
                    .map(|c| c.contact.id)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The target.
    pub fn target(&self) -> Key {
        self.target
    }
}

/// Up to `n` nodes taken round-robin from the paths' results (closest
/// first on each path, no node twice): where to place replicas and what to
/// learn from a lookup, so that a path an adversary steered contributes at
/// most its share (`1/d`).
pub fn spread_across_paths(per_path: &[Vec<Contact>], n: usize) -> Vec<Contact> {
    let mut out: Vec<Contact> = Vec::with_capacity(n.min(per_path.len() * 32));
    let longest = per_path.iter().map(Vec::len).max().unwrap_or(0);
    for rank in 0..longest {
        for path in per_path {
            if out.len() >= n {
                return out;
            }
            if let Some(c) = path.get(rank) {
                if !out.iter().any(|o| o.id == c.id) {
                    out.push(*c);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    fn id(n: u16) -> NodeId {
        let mut b = [0u8; 32];
        b[0] = (n >> 8) as u8;
        b[1] = n as u8;
        b[31] = 1;
        NodeId::from_bytes(b)
    }

    fn contact(n: u16) -> Contact {
        Contact {
            id: id(n),
            addr: format!("10.{}.{}.1:1", n >> 8, n & 0xff).parse().unwrap(),
        }
    }

    fn params(k: usize, alpha: usize, d: usize) -> OverlayParams {
        OverlayParams {
            k,
            alpha,
            disjoint_paths: d,
            id_difficulty: 0,
            ..OverlayParams::default()
        }
    }

    /// A toy network of 1024 nodes: node n knows the ten nodes that differ
    /// from it in one bit of the index (a hypercube), so greedy XOR
    /// routing reaches any target.
    fn answer(n: u16) -> Vec<Contact> {
        (0..10u16).map(|b| contact(n ^ (1 << b))).collect()
    }

    fn index_of(c: &Contact) -> u16 {
        (u16::from(c.id.as_bytes()[0]) << 8) | u16::from(c.id.as_bytes()[1])
    }

    #[test]
    fn disjoint_paths_never_share_a_queried_node() {
        let target = Key::from(id(700));
        let seeds: Vec<Contact> = (0..8).map(contact).collect();
        let mut l = Lookup::new(target, seeds, id(1023), &params(4, 2, 4));
        let mut rounds = 0;
        while !l.is_finished() && rounds < 10_000 {
            rounds += 1;
            let mut batch = Vec::new();
            while let Some(r) = l.poll_request() {
                batch.push(r);
            }
            if batch.is_empty() {
                break;
            }
            for r in batch {
                let mut a = answer(index_of(&r.to));
                // An honest node answers with its k closest to the target.
                a.sort_by_key(|c| target.distance(&Key::from(c.id)));
                a.truncate(4);
                l.on_response(&r.to.id, &a);
            }
        }
        assert!(l.is_finished());
        assert_eq!(l.poll_fault(), None, "honest answers raise no fault");
        let mut seen = HashSet::new();
        for p in 0..4 {
            for n in l.queried_on(p) {
                assert!(seen.insert(n), "{n:?} queried on two paths");
                assert_eq!(l.path_of(&n), Some(p));
            }
        }
        // Every path made progress towards the target.
        assert_eq!(l.result()[0].0.id, id(700));
    }

    /// Runs a one-path lookup (alpha 1, k 2) for id 0, seeded with ids
    /// 2, 3, 4, with `demoted` demoted: node 3 answers with node 1, node 1
    /// with node 0, every other node with nothing. Returns the order in
    /// which nodes were asked.
    fn ask_order(demoted: u16) -> Vec<u16> {
        let seeds: Vec<Contact> = (2..5).map(contact).collect();
        let mut l = Lookup::new(Key::from(id(0)), seeds, id(999), &params(2, 1, 1));
        l.demote(&id(demoted));
        let mut order = Vec::new();
        while let Some(r) = l.poll_request() {
            let n = index_of(&r.to);
            order.push(n);
            let answer = match n {
                3 => vec![contact(1)],
                1 => vec![contact(0)],
                _ => vec![],
            };
            l.on_response(&r.to.id, &answer);
        }
        assert!(l.is_finished());
        order
    }

    #[test]
    fn demoted_candidates_are_asked_after_trusted_ones() {
        // Without demotion: closest first, so 2 is asked, for nothing.
        assert_eq!(ask_order(999), vec![2, 3, 1, 0]);
        // Demoted, 2 waits; the trusted 3's answers push it out of the 2
        // closest before its turn, so it is never asked.
        assert_eq!(ask_order(2), vec![3, 1, 0]);
        // A demoted node that stays among the k closest is still asked
        // (demotion reorders, never drops a node the lookup needs).
        assert_eq!(ask_order(3), vec![2, 3, 1, 0]);
    }

    #[test]
    fn a_single_seed_s_answer_seeds_every_path() {
        // A joining node knows only its bootstrap node: one seed, four
        // paths. The bootstrap's answer is dealt across all four, so the
        // lookup runs on four disjoint paths, not one.
        let target = Key::from(id(700));
        let mut l = Lookup::new(target, vec![contact(0)], id(1023), &params(10, 2, 4));
        let first = l.poll_request().unwrap();
        assert_eq!((first.to.id, first.path), (id(0), 0));
        assert!(l.poll_request().is_none(), "the other paths are empty");
        l.on_response(&first.to.id, &answer(0));
        let mut paths = HashSet::new();
        while let Some(r) = l.poll_request() {
            paths.insert(r.path);
        }
        assert_eq!(paths, HashSet::from([0, 1, 2, 3]));
        // No node belongs to two paths.
        let owned: usize = (0..4)
            .map(|p| {
                answer(0)
                    .iter()
                    .filter(|c| l.path_of(&c.id) == Some(p))
                    .count()
            })
            .sum();
        assert_eq!(owned, 10);
    }

    #[test]
    fn two_seeds_each_fill_only_their_share_of_the_empty_paths() {
        // Two seeds, four paths: the first to answer must not take over
        // both empty paths.
        let target = Key::from(id(700));
        let seeds = vec![contact(0), contact(1)];
        let mut l = Lookup::new(target, seeds, id(1023), &params(10, 1, 4));
        let a = l.poll_request().unwrap();
        let b = l.poll_request().unwrap();
        assert!(l.poll_request().is_none());
        l.on_response(&a.to.id, &answer(index_of(&a.to)));
        let mut paths = HashSet::new();
        while let Some(r) = l.poll_request() {
            paths.insert(r.path);
        }
        // a's path and the one empty path it feeds run; the other empty
        // path waits for b.
        assert_eq!(paths.len(), 2, "{paths:?}");
        assert!(paths.contains(&a.path) && !paths.contains(&b.path));
    }

    #[test]
    fn an_id_named_twice_in_an_answer_lands_on_one_path() {
        let target = Key::from(id(700));
        let mut l = Lookup::new(target, vec![contact(0)], id(1023), &params(10, 2, 4));
        let first = l.poll_request().unwrap();
        let twin = Contact {
            id: id(5),
            addr: "10.9.9.9:1".parse().unwrap(),
        };
        l.on_response(&first.to.id, &[contact(5), twin, contact(6)]);
        let mut asked = Vec::new();
        while let Some(r) = l.poll_request() {
            asked.push(r.to.id);
        }
        assert_eq!(asked.iter().filter(|i| **i == id(5)).count(), 1);
        // Answering it ends its path: nothing stays in flight for ever.
        for id in asked {
            l.on_response(&id, &[]);
        }
        assert!(l.is_finished());
    }

    #[test]
    fn alpha_bounds_requests_in_flight_per_path() {
        let seeds: Vec<Contact> = (0..20).map(contact).collect();
        let mut l = Lookup::new(Key::from(id(5)), seeds, id(999), &params(20, 3, 2));
        let mut n = 0;
        while l.poll_request().is_some() {
            n += 1;
        }
        assert_eq!(n, 6, "alpha 3 on each of 2 paths");
    }

    #[test]
    fn faults_are_reported_and_failed_nodes_do_not_block_termination() {
        let mut p = params(2, 1, 1);
        p.id_difficulty = 8;
        // Seeds are not checked against the puzzle (they come from our own
        // table); answers are.
        let seeds = vec![contact(1), contact(2)];
        let mut l = Lookup::new(Key::from(id(1)), seeds, id(999), &p);
        let first = l.poll_request().unwrap();
        let too_many: Vec<Contact> = (10..20).map(contact).collect();
        l.on_response(&first.to.id, &too_many);
        let kinds: Vec<FaultKind> = std::iter::from_fn(|| l.poll_fault())
            .map(|f| f.kind)
            .collect();
        assert!(kinds.contains(&FaultKind::TooManyContacts));
        assert!(kinds.contains(&FaultKind::InvalidContact));
        let second = l.poll_request().unwrap();
        l.on_failure(&second.to.id);
        assert_eq!(
            l.poll_fault().map(|f| f.kind),
            Some(FaultKind::Unresponsive)
        );
        assert!(l.is_finished());
        assert_eq!(l.result().len(), 1);
        // Answers from peers never asked are ignored.
        l.on_response(&id(500), &[contact(501)]);
        assert_eq!(l.path_of(&id(501)), None);
    }
}

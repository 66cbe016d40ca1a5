//! A node's peers, sans-IO: the routing table and the reputation table
//! behind the one set of decisions about them — whom to admit, evict,
//! ban, ask first and trust with a replica — for the node and the
//! simulator alike.
//!
//! Every fault of a peer, from any connection and either direction,
//! lookup answers included, enters through [`Peers::observe`] (or the
//! typed helpers that map onto it: [`Peers::on_request_failed`],
//! [`Peers::on_fault`]). A peer that becomes banned there leaves the
//! routing table at once and a [`PeerAction::Disconnect`] is queued: the
//! driver closes every connection to it, inbound and dialed. That is the
//! one enforcement path.
//!
//! An incoming request is admitted through [`Peers::admit_request`], the
//! one decision the node's server and the simulator's flooded nodes both
//! call: the ban, the reputation's rate factor and the token buckets of
//! [`crate::overlay::rate`] (per peer and per source address), with a
//! refusal of the peer's own budget recorded as
//! [`Evidence::RateViolation`] through [`Peers::observe`].
//!
//! The clock is an input: every method that needs the time takes `now_ms`
//! (unix milliseconds in the node, virtual time in the simulator), and the
//! routing table and the reputation table are both kept on that clock.
//!
//! Driving it:
//!
//! ```text
//! peers.learn(now, contact, ListenProof::Verified)   a peer proved it listens there
//! peers.answered(now, contact)                       it answered a request of ours
//! peers.on_request_failed(now, &contact, failure)    it did not
//! peers.observe(now, &id, evidence)                  anything else it did
//! peers.admit_request(now, &id, ip, &mut streak)     it sent a request: serve it?
//! while let Some(a) = peers.poll_action() { close connections / ping }
//! while let Some(e) = peers.poll_churn() { hand over / repair records }
//! ```

use super::config::OverlayParams;
use super::density::{self, DenseCluster};
use super::key::Key;
use super::lookup::{spread_across_paths, FaultKind, PeerFault};
use super::rate::{RateLimit, RateRefusal, RefusalStreak, RequestLimiter};
use super::routing::{Contact, Eviction, InsertOutcome, RoutingTable};
use crate::identity::NodeId;
use crate::limits::{MAX_PENDING_PEER_ACTIONS, RESPONSIBILITY_SLACK_FACTOR};
use crate::reputation::{Evidence, Policy, Reputation, Standing, Verdict};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::time::Duration;

/// Which defences a core runs. The node runs [`Defences::P2PSIP`]; the
/// simulator also runs the baselines it compares against (plain Kademlia,
/// S/Kademlia) and ablations of single defences, through the same code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Defences {
    /// Keep a reputation table and act on it: bans, seed ranking,
    /// demotion of suspects, displacement in full buckets, replica
    /// eligibility, rate scaling. Without it no evidence is recorded.
    pub reputation: bool,
    /// Density detection around keys for value and placement lookups
    /// ([`crate::overlay::density`]).
    pub density: bool,
    /// How many times a node or value lookup that failed is widened
    /// ([`crate::overlay::lookup::Lookup::widen`]).
    pub widen_rounds: u32,
    /// A value lookup stops once this many holders answered with a valid
    /// record (the highest sequence wins); 1 stops at the first copy.
    pub value_answers: usize,
    /// Replicas are placed round-robin across the disjoint paths' results
    /// rather than on the overall closest nodes.
    pub spread_replicas: bool,
    /// Every node that answers a lookup enters the routing table (classic
    /// Kademlia). Without it, tables learn from verified inbound peers and
    /// from the results of join and refresh lookups, spread across paths.
    pub learn_responders: bool,
    /// A placement lookup asks what each node holds under the key and the
    /// new record also goes to the holders of older versions.
    pub update_holders: bool,
    /// Incoming requests are rate limited per peer and per source address
    /// ([`Peers::admit_request`]). Without it every request of a peer
    /// that is not banned is served.
    pub rate_limit: bool,
}

impl Defences {
    /// Everything p2psip does: what the node runs.
    pub const P2PSIP: Self = Self {
        reputation: true,
        density: true,
        widen_rounds: crate::limits::LOOKUP_WIDEN_ROUNDS,
        value_answers: crate::limits::VALUE_ANSWERS_BEFORE_STOPPING,
        spread_replicas: true,
        learn_responders: false,
        update_holders: true,
        rate_limit: true,
    };

    /// S/Kademlia as published: disjoint paths (the overlay's `d`),
    /// puzzle ids, no widening, no reputation, first copy wins.
    pub const SKADEMLIA: Self = Self {
        reputation: false,
        density: false,
        widen_rounds: 0,
        value_answers: 1,
        spread_replicas: false,
        learn_responders: true,
        update_holders: false,
        rate_limit: false,
    };

    /// Plain Kademlia (run with `d = 1`): as [`Defences::SKADEMLIA`].
    pub const KADEMLIA: Self = Self::SKADEMLIA;
}

impl Default for Defences {
    fn default() -> Self {
        Self::P2PSIP
    }
}

/// Whether a peer is known to accept connections at the address it is
/// learned with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ListenProof {
    /// This node dialed that address and the peer proved its id there
    /// (an answer to a request of ours, a dial-back, a bootstrap dial).
    Verified,
    /// The peer connected in from that address and no dial proved it
    /// listens there: it may be a pure client on an ephemeral port.
    Claimed,
}

/// Why a request to a peer got no usable answer: decides whether the
/// peer is at fault (evidence, a strike in the routing table) or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// No answer in time, though this node was not saturated.
    Timeout,
    /// No connection could be made, or it broke during the request.
    Unreachable,
    /// The peer answered that it is loaded (`RateLimited`, `Busy`): alive,
    /// and this node should slow down. No fault of the peer.
    Overloaded,
    /// The request failed on this node's side (its own in-flight cap, a
    /// timeout while it was saturated): says nothing about the peer.
    Local,
    /// It answered as no node of this overlay does (`WrongOverlay`, a
    /// message that is no answer): out of the table at once.
    NotInOverlay,
    /// Its answer broke the protocol (a malformed frame or message).
    Violation,
    /// Not asked: banned before the request was sent.
    Banned,
    /// It answered with a message of a type this node does not know (a
    /// newer version may send one): no fault, no strike.
    Unrecognised,
    /// It answered with an error that declines this one request (a record
    /// it refuses, a key it is not responsible for, a failure of its
    /// own): alive and of this overlay, so no fault and no strike.
    Declined,
}

impl Failure {
    /// Its name in metrics and logs (`timeout`, `unreachable`, ...).
    pub fn as_str(self) -> &'static str {
        match self {
            Failure::Timeout => "timeout",
            Failure::Unreachable => "unreachable",
            Failure::Overloaded => "overloaded",
            Failure::Local => "local",
            Failure::NotInOverlay => "not_in_overlay",
            Failure::Violation => "violation",
            Failure::Banned => "banned",
            Failure::Unrecognised => "unrecognised",
            Failure::Declined => "declined",
        }
    }
}

/// What the driver must do for the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum PeerAction {
    /// Close every connection to `peer` (inbound and dialed) and refuse
    /// new ones until `until_ms`: it was banned.
    Disconnect {
        /// The banned peer.
        peer: NodeId,
        /// When the ban ends (unix ms in the node).
        until_ms: u64,
    },
    /// Check whether `resident` (the least recently seen of a full
    /// bucket) is alive and report it with [`Peers::ping_result`].
    Ping {
        /// The resident to ping.
        resident: Contact,
    },
}

/// What the driver does with one request a peer sent
/// ([`Peers::admit_request`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Admission {
    /// Serve it.
    Serve,
    /// Answer it `RateLimited` without processing it.
    Refuse(RateRefusal),
    /// Refuse it and close the connection it came on: more than
    /// [`RateLimit::max_refused_in_a_row`] were refused in a row there.
    Close(RateRefusal),
    /// The peer is banned (before this request, or by its evidence): no
    /// answer, and the connection is closed. A new ban has queued its
    /// [`PeerAction::Disconnect`] for the peer's other connections.
    Banned,
}

/// A change of the routing table that may move records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnEvent {
    /// A contact entered the routing table: it may now be among the
    /// closest nodes to keys this node holds (hand-over).
    Admitted(Contact),
    /// A contact left the routing table: records it held need a new
    /// holder (repair).
    Evicted(Contact),
}

/// A node's peers: routing table, reputation and the decisions built on
/// them (see the module docs).
#[derive(Debug, Clone)]
pub struct Peers {
    local: NodeId,
    params: OverlayParams,
    defences: Defences,
    table: RoutingTable,
    reputation: Reputation,
    churn: VecDeque<ChurnEvent>,
    max_churn: usize,
    actions: VecDeque<PeerAction>,
    limiter: RequestLimiter,
}

impl Peers {
    /// The peers of node `local`, with an empty table. Churn events are
    /// not kept (see [`Peers::keep_churn`]).
    pub fn new(local: NodeId, params: &OverlayParams, defences: Defences, policy: Policy) -> Self {
        Self {
            local,
            table: RoutingTable::new(local, params),
            params: params.clone(),
            defences,
            reputation: Reputation::with_policy(policy),
            churn: VecDeque::new(),
            max_churn: 0,
            actions: VecDeque::new(),
            limiter: RequestLimiter::new(RateLimit::default()),
        }
    }

    /// Limits each peer's incoming requests to `limit` instead of
    /// [`RateLimit::default`]; counts start afresh.
    pub fn set_rate_limit(&mut self, limit: RateLimit) {
        self.limiter = RequestLimiter::new(limit);
    }

    /// Keeps up to `max` churn events for [`Peers::poll_churn`] (oldest
    /// dropped: a periodic republish covers what they would have done).
    pub fn keep_churn(&mut self, max: usize) {
        self.max_churn = max;
        self.churn.truncate(max);
    }

    /// Replaces the ban lengths and table size; the evidence is kept.
    pub fn set_reputation_policy(&mut self, policy: Policy) {
        self.reputation.set_policy(policy);
    }

    /// Replaces the reputation table (one loaded from disk), keeping the
    /// current policy.
    pub fn set_reputation(&mut self, mut table: Reputation) {
        table.set_policy(*self.reputation.policy());
        self.reputation = table;
    }

    // ------------------------------------------------------------------
    // Input

    /// Records `evidence` about `peer`: the one enforcement path. A peer
    /// banned by it leaves the routing table and a
    /// [`PeerAction::Disconnect`] is queued (once per ban).
    pub fn observe(&mut self, now_ms: u64, peer: &NodeId, evidence: Evidence) -> Verdict {
        if !self.defences.reputation {
            return Verdict::Keep;
        }
        let was_banned = self.reputation.is_banned(peer, now_ms);
        let verdict = self.reputation.observe(*peer, evidence, now_ms);
        if let Verdict::Disconnect { banned_until_ms } = verdict {
            if !was_banned {
                self.evict(peer);
                self.push_action(PeerAction::Disconnect {
                    peer: *peer,
                    until_ms: banned_until_ms,
                });
            }
        }
        verdict
    }

    /// `peer` sent a request from `source` at `now_ms`, on a connection
    /// whose refusals in a row are `streak`: whether to serve it. The one
    /// admission of incoming requests, for the node and the simulator:
    ///
    /// 1. a banned peer is not served ([`Admission::Banned`]);
    /// 2. with [`Defences::rate_limit`], the request takes a token from
    ///    the peer's bucket, its allowance scaled by
    ///    [`Peers::rate_factor`], and from its source address's (unscaled:
    ///    one good id must not raise the budget of the others behind its
    ///    address); a refused request takes none;
    /// 3. a refusal of the peer's own budget is its fault and recorded as
    ///    [`Evidence::RateViolation`] (an address's budget may be spent by
    ///    others behind it): a ban it causes is [`Admission::Banned`];
    /// 4. past [`RateLimit::max_refused_in_a_row`] refusals in a row the
    ///    connection is closed ([`Admission::Close`]).
    pub fn admit_request(
        &mut self,
        now_ms: u64,
        peer: &NodeId,
        source: IpAddr,
        streak: &mut RefusalStreak,
    ) -> Admission {
        if self.is_banned(now_ms, peer) {
            return Admission::Banned;
        }
        if !self.defences.rate_limit {
            streak.reset();
            return Admission::Serve;
        }
        let factor = self.rate_factor(now_ms, peer);
        let now = Duration::from_millis(now_ms);
        let why = match self.limiter.check_scaled(*peer, source, now, factor) {
            Ok(()) => {
                streak.reset();
                return Admission::Serve;
            }
            Err(why) => why,
        };
        if matches!(why, RateRefusal::Peer { .. })
            && matches!(
                self.observe(now_ms, peer, Evidence::RateViolation),
                Verdict::Disconnect { .. }
            )
        {
            return Admission::Banned;
        }
        if streak.refused(self.limiter.limit()) {
            Admission::Close(why)
        } else {
            Admission::Refuse(why)
        }
    }

    /// A request [`Peers::admit_request`] served carries SIP: it is
    /// charged to the peer's SIP budget instead of its overlay budget
    /// ([`RequestLimiter::reclassify_as_sip`]); `false` when that is spent
    /// (a rate violation, as for overlay requests).
    pub fn admit_sip(&mut self, now_ms: u64, peer: &NodeId, source: IpAddr) -> bool {
        if !self.defences.rate_limit {
            return true;
        }
        let factor = self.rate_factor(now_ms, peer);
        let now = Duration::from_millis(now_ms);
        if self
            .limiter
            .reclassify_as_sip(*peer, source, now, factor)
            .is_ok()
        {
            return true;
        }
        let _ = self.observe(now_ms, peer, Evidence::RateViolation);
        false
    }

    /// Records a fault a lookup reported (unanswered requests are
    /// reported through [`Peers::on_request_failed`] instead).
    pub fn on_fault(&mut self, now_ms: u64, fault: &PeerFault) {
        if fault.kind != FaultKind::Unresponsive {
            let _ = self.observe(now_ms, &fault.peer, fault.kind.into());
        }
    }

    /// A request to `peer` got no usable answer. Only failures that are
    /// the peer's fault count against it: a timeout or a broken connection
    /// is a strike (evicted after
    /// [`crate::overlay::routing::MAX_CONSECUTIVE_FAILURES`] in a row) and
    /// [`Evidence::Unresponsive`]; an overloaded peer or a failure on this
    /// node's side costs nothing, and so does a declined request; a peer
    /// of another overlay leaves the table; a protocol violation is
    /// evidence (a ban).
    pub fn on_request_failed(&mut self, now_ms: u64, peer: &Contact, failure: Failure) {
        match failure {
            Failure::Timeout | Failure::Unreachable => {
                let _ = self.observe(now_ms, &peer.id, Evidence::Unresponsive);
                let eviction = self.table.on_failure_evicting(&peer.id, now_ms);
                self.note_eviction(now_ms, eviction);
            }
            Failure::Overloaded
            | Failure::Local
            | Failure::Banned
            | Failure::Unrecognised
            | Failure::Declined => {}
            Failure::NotInOverlay => self.evict(&peer.id),
            Failure::Violation => {
                let _ = self.observe(now_ms, &peer.id, Evidence::ProtocolViolation);
            }
        }
    }

    /// Learns a peer seen on an authenticated connection. Only a peer
    /// whose address is [`ListenProof::Verified`] enters the table (a pure
    /// client's ephemeral address would be handed to others as a dead
    /// contact); a banned one never. In a full bucket the peer takes the
    /// place of a resident only if the reputation table condemns that
    /// resident ([`Reputation::prefer_resident`]); otherwise the oldest
    /// resident is to be pinged ([`PeerAction::Ping`]), as in Kademlia.
    pub fn learn(&mut self, now_ms: u64, peer: Contact, proof: ListenProof) {
        if proof != ListenProof::Verified
            || peer.id == self.local
            || self.is_banned(now_ms, &peer.id)
        {
            return;
        }
        let (outcome, displaced) = if self.defences.reputation {
            let reputation = &self.reputation;
            self.table.insert_displacing(peer, now_ms, |resident| {
                !reputation.prefer_resident(resident, &peer.id, now_ms)
            })
        } else {
            (self.table.insert(peer, now_ms), None)
        };
        if let Some(d) = displaced {
            self.note(ChurnEvent::Evicted(d));
        }
        match outcome {
            InsertOutcome::Inserted => self.note(ChurnEvent::Admitted(peer)),
            InsertOutcome::Full { ping } => self.push_action(PeerAction::Ping { resident: ping }),
            InsertOutcome::Refused(_) | InsertOutcome::Refreshed => {}
        }
    }

    /// `peer` answered a request this node sent to its address: that
    /// proves it listens there. A resident is refreshed and marked
    /// outbound ([`RoutingTable::mark_outbound`]); a responder that is not
    /// resident enters only with [`Defences::learn_responders`] (which
    /// nodes a lookup reaches is steered by others' answers, adversaries
    /// among them), else through [`Peers::learn_found`].
    pub fn answered(&mut self, now_ms: u64, peer: Contact) {
        if self.defences.learn_responders || self.table.contains(&peer.id) {
            self.learn(now_ms, peer, ListenProof::Verified);
            self.table.mark_outbound(&peer.id);
        }
    }

    /// Learns a peer this node dialed itself (a bootstrap node): as
    /// [`Peers::learn`] with a verified address, marked outbound.
    pub fn learn_outbound(&mut self, now_ms: u64, peer: Contact) {
        self.learn(now_ms, peer, ListenProof::Verified);
        self.table.mark_outbound(&peer.id);
    }

    /// Learns the result of a join or refresh lookup: the `k` closest
    /// taken round-robin across its disjoint paths, so that a path an
    /// adversary steered brings at most its share into the table. Returns
    /// how many of them are resident afterwards.
    pub fn learn_found(&mut self, now_ms: u64, per_path: &[Vec<Contact>]) -> usize {
        if self.defences.learn_responders {
            // Every responder was learned already.
            return 0;
        }
        let mut resident = 0;
        for c in spread_across_paths(per_path, self.params.k) {
            self.learn_outbound(now_ms, c);
            resident += usize::from(self.table.contains(&c.id));
        }
        resident
    }

    /// Puts back a contact this node had in its table before a restart
    /// (through the table's admission rules; no churn event: nothing
    /// moved). `None` for a banned contact.
    pub fn restore(&mut self, now_ms: u64, contact: Contact) -> Option<InsertOutcome> {
        if self.is_banned(now_ms, &contact.id) {
            return None;
        }
        Some(self.table.insert(contact, now_ms))
    }

    /// The outcome of a [`PeerAction::Ping`].
    pub fn ping_result(&mut self, now_ms: u64, id: &NodeId, alive: bool) {
        let eviction = self.table.on_ping_result(id, alive, now_ms);
        self.note_eviction(now_ms, Some(eviction));
    }

    /// `id` said it is leaving (it can only speak for itself: its
    /// connection authenticated it): forgotten at once.
    pub fn peer_left(&mut self, id: &NodeId) {
        self.evict(id);
    }

    /// Expires ended bans and tidies the reputation table.
    pub fn expire(&mut self, now_ms: u64) {
        self.reputation.expire(now_ms);
    }

    // ------------------------------------------------------------------
    // Decisions

    /// Whether `peer` is banned now: never dialed, served or admitted.
    pub fn is_banned(&self, now_ms: u64, peer: &NodeId) -> bool {
        self.defences.reputation && self.reputation.is_banned(peer, now_ms)
    }

    /// `peer`'s standing now (neutral for everyone without reputation).
    pub fn standing(&self, now_ms: u64, peer: &NodeId) -> Standing {
        if self.defences.reputation {
            self.reputation.standing(peer, now_ms)
        } else {
            Standing::Neutral
        }
    }

    /// Whether `peer` may be asked to hold a replica now.
    pub fn may_hold_replica(&self, now_ms: u64, peer: &NodeId) -> bool {
        !self.defences.reputation || self.reputation.may_hold_replica(peer, now_ms)
    }

    /// The factor by which `peer`'s request rate allowance is multiplied.
    pub fn rate_factor(&self, now_ms: u64, peer: &NodeId) -> f64 {
        if self.defences.reputation {
            self.reputation.rate_factor(peer, now_ms)
        } else {
            1.0
        }
    }

    /// The seeds of a lookup for `target`: the `k` best of the `2k`
    /// closest known contacts (of all contacts beyond `exclude`, when a
    /// dense cluster is set aside), by standing first, then outbound
    /// before inbound, then distance; banned ones never.
    pub fn seeds(&self, now_ms: u64, target: &Key, exclude: Option<&DenseCluster>) -> Vec<Contact> {
        let k = self.params.k;
        let reach = if exclude.is_some() {
            usize::MAX
        } else {
            k.saturating_mul(2)
        };
        let mut seeds = self.table.closest(target, reach);
        seeds.retain(|c| {
            !exclude.is_some_and(|x| x.contains(target, &c.id)) && !self.is_banned(now_ms, &c.id)
        });
        seeds.truncate(k.saturating_mul(2));
        if self.defences.reputation {
            // An attacker can connect in; it cannot make this node dial it.
            self.reputation.rank_candidates(&mut seeds, now_ms, |c| {
                (
                    c.id,
                    self.table.is_outbound(&c.id),
                    target.distance(&Key::from(c.id)),
                )
            });
        }
        seeds.truncate(k);
        seeds
    }

    /// Whether a lookup should ask `id` only after trusted candidates.
    pub fn is_suspect(&self, now_ms: u64, id: &NodeId) -> bool {
        self.standing(now_ms, id) == Standing::Suspect
    }

    /// The overlay's size as this node estimates it from its own
    /// neighbourhood ([`density::estimate_network_size`]).
    pub fn estimated_size(&self) -> f64 {
        let own = Key::from(self.local);
        let near: Vec<NodeId> = self
            .table
            .closest(&own, self.params.k.saturating_add(1))
            .iter()
            .map(|c| c.id)
            .collect();
        density::estimate_network_size(&own, &near)
    }

    /// How many nodes this node may know closer to a key than itself and
    /// still store its records: [`RESPONSIBILITY_SLACK_FACTOR`] ×
    /// `replication`.
    ///
    /// Why a slack: the `replication` closest nodes a publisher's lookup
    /// finds are not exactly the ones each of them counts as closer (dead
    /// contacts not yet evicted, nodes a lookup missed); a bound of exactly
    /// `replication` would refuse honest Stores at the margin and stall
    /// hand-over and repair during churn. Twice as many keeps a node from
    /// being made to store arbitrary keys far from its id (loosely for
    /// keys in its farthest buckets, which hold at most `k`: per-owner
    /// quotas and the store's size bound storage there).
    pub fn responsibility_bound(&self) -> usize {
        self.params
            .replication
            .max(1)
            .saturating_mul(RESPONSIBILITY_SLACK_FACTOR)
    }

    /// Known contacts strictly closer to `key` than this node, not
    /// counting an implausibly dense cluster around the key (a
    /// content-eclipse attacker must not make every honest node beyond
    /// its cluster refuse the replicas a writer places there).
    pub fn closer_than_local(&self, key: &Key) -> usize {
        let own = key.distance(&Key::from(self.local));
        let closer = self.table.count_closer(key, &own);
        let bound = self.responsibility_bound();
        if closer < bound || !self.defences.density {
            return closer;
        }
        let near: Vec<NodeId> = self
            .table
            .closest(key, self.params.k.max(bound))
            .iter()
            .map(|c| c.id)
            .collect();
        match density::dense_cluster(key, &near, self.estimated_size(), self.params.k) {
            Some(cluster) => self
                .table
                .closest(key, closer)
                .iter()
                .filter(|c| key.distance(&Key::from(c.id)) < own)
                .filter(|c| !cluster.contains(key, &c.id))
                .count(),
            None => closer,
        }
    }

    /// Whether this node stores records under `key`: it knows fewer than
    /// [`Peers::responsibility_bound`] nodes closer to it (outside a dense
    /// cluster).
    pub fn is_responsible(&self, key: &Key) -> bool {
        self.closer_than_local(key) < self.responsibility_bound()
    }

    /// Whether this node takes a replica under `key` that another node
    /// sends it: when it is responsible for the key, or when it already
    /// holds a record there (`holds`), which the new one updates. Refusing
    /// the update would leave the older version served until it expires;
    /// allowing it gives a spammer nothing new (the slot exists).
    pub fn accepts_replica(&self, key: &Key, holds: bool) -> bool {
        holds || self.is_responsible(key)
    }

    // ------------------------------------------------------------------
    // Output

    /// The next action for the driver.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<PeerAction> {
        self.actions.pop_front()
    }

    /// The oldest churn event not yet handled.
    #[must_use]
    pub fn poll_churn(&mut self) -> Option<ChurnEvent> {
        self.churn.pop_front()
    }

    // ------------------------------------------------------------------
    // Views

    /// This node's id.
    pub fn local(&self) -> NodeId {
        self.local
    }

    /// The overlay's parameters.
    pub fn params(&self) -> &OverlayParams {
        &self.params
    }

    /// The defences this core runs.
    pub fn defences(&self) -> &Defences {
        &self.defences
    }

    /// The routing table.
    pub fn table(&self) -> &RoutingTable {
        &self.table
    }

    /// The reputation table.
    pub fn reputation(&self) -> &Reputation {
        &self.reputation
    }

    /// The limit of each peer's incoming requests (before its
    /// [`Peers::rate_factor`]).
    pub fn rate_limit(&self) -> &RateLimit {
        self.limiter.limit()
    }

    /// Peers and source addresses the request limiter tracks (each at
    /// most [`crate::limits::MAX_RATE_LIMITED_KEYS`]).
    pub fn rate_limited(&self) -> (usize, usize) {
        self.limiter.tracked()
    }

    /// The `n` closest known contacts to `target`.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        self.table.closest(target, n)
    }

    // ------------------------------------------------------------------

    fn evict(&mut self, id: &NodeId) {
        if let Some(evicted) = self.table.remove(id) {
            self.note(ChurnEvent::Evicted(evicted));
        }
    }

    fn note(&mut self, event: ChurnEvent) {
        if self.max_churn == 0 {
            return;
        }
        if self.churn.len() >= self.max_churn {
            self.churn.pop_front();
        }
        self.churn.push_back(event);
    }

    fn note_eviction(&mut self, now_ms: u64, eviction: Option<Eviction>) {
        let Some(e) = eviction else {
            return;
        };
        if let Some(evicted) = e.evicted {
            self.note(ChurnEvent::Evicted(evicted));
        }
        if let Some(admitted) = e.admitted {
            if self.is_banned(now_ms, &admitted.id) {
                // The bucket's pending candidate was banned while it
                // waited for the ping: it never enters.
                let _ = self.table.remove(&admitted.id);
            } else {
                self.note(ChurnEvent::Admitted(admitted));
            }
        }
    }

    /// Queues an action; when the driver falls behind, the oldest ping is
    /// dropped first, and only with no ping queued the oldest disconnect
    /// (harmless: a banned peer stays refused at every accept, stream and
    /// dial, which ask [`Peers::is_banned`]).
    fn push_action(&mut self, action: PeerAction) {
        if self.actions.len() >= MAX_PENDING_PEER_ACTIONS {
            match self
                .actions
                .iter()
                .position(|a| matches!(a, PeerAction::Ping { .. }))
            {
                Some(i) => {
                    self.actions.remove(i);
                }
                None => {
                    if matches!(action, PeerAction::Ping { .. }) {
                        return;
                    }
                    self.actions.pop_front();
                }
            }
        }
        self.actions.push_back(action);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn contact(first: u8, net: u8) -> Contact {
        let mut id = [0u8; 32];
        id[0] = first;
        Contact {
            id: NodeId::from_bytes(id),
            addr: format!("10.{net}.0.1:4433").parse().unwrap(),
        }
    }

    #[test]
    fn a_pending_candidate_banned_while_it_waits_never_enters() {
        let params = OverlayParams {
            k: 1,
            id_difficulty: 0,
            ..OverlayParams::default()
        };
        let local = contact(0, 0).id;
        let mut peers = Peers::new(local, &params, Defences::P2PSIP, Policy::default());
        let (resident, newcomer) = (contact(0x80, 1), contact(0x81, 2));
        peers.learn(0, resident, ListenProof::Verified);
        // The bucket (k = 1) is full: the newcomer waits, the resident is
        // to be pinged.
        peers.learn(1, newcomer, ListenProof::Verified);
        assert_eq!(peers.poll_action(), Some(PeerAction::Ping { resident }));
        let _ = peers.observe(2, &newcomer.id, Evidence::ProtocolViolation);
        assert!(peers.is_banned(2, &newcomer.id));
        assert!(matches!(
            peers.poll_action(),
            Some(PeerAction::Disconnect { .. })
        ));
        // The resident turns out dead: its place stays empty.
        peers.ping_result(3, &resident.id, false);
        assert!(!peers.table().contains(&resident.id));
        assert!(!peers.table().contains(&newcomer.id));
        assert!(peers.table().is_empty());
    }

    #[test]
    fn only_failures_that_are_the_peers_fault_cost_it_its_place() {
        let params = OverlayParams {
            id_difficulty: 0,
            ..OverlayParams::default()
        };
        let mut peers = Peers::new(
            contact(0, 0).id,
            &params,
            Defences::P2PSIP,
            Policy::default(),
        );
        let peer = contact(0x80, 1);
        peers.learn(0, peer, ListenProof::Verified);
        // However often: no strike for what is no fault of the peer.
        for (t, failure) in [
            Failure::Declined,
            Failure::Overloaded,
            Failure::Local,
            Failure::Unrecognised,
        ]
        .into_iter()
        .cycle()
        .take(40)
        .enumerate()
        {
            peers.on_request_failed(t as u64, &peer, failure);
        }
        assert!(peers.table().contains(&peer.id));
        // Timeouts in a row are strikes: evicted.
        for t in 100..100 + crate::overlay::routing::MAX_CONSECUTIVE_FAILURES as u64 {
            peers.on_request_failed(t, &peer, Failure::Timeout);
        }
        assert!(!peers.table().contains(&peer.id));
        // An answer as of another overlay: out at once.
        let other = contact(0x90, 2);
        peers.learn(200, other, ListenProof::Verified);
        peers.on_request_failed(201, &other, Failure::NotInOverlay);
        assert!(!peers.table().contains(&other.id));
    }

    fn limited(defences: Defences) -> Peers {
        let mut peers = Peers::new(
            contact(0, 0).id,
            &OverlayParams::default(),
            defences,
            Policy::default(),
        );
        peers.set_rate_limit(RateLimit {
            burst: 3,
            refill_every: Duration::from_secs(3600),
            max_refused_in_a_row: 4,
        });
        peers
    }

    /// One admission sequence: served, refused, the connection closed,
    /// reconnected, until the evidence of its own refusals bans the peer.
    fn admissions(peers: &mut Peers, peer: &NodeId, ip: IpAddr) -> Vec<&'static str> {
        let mut streak = RefusalStreak::default();
        let mut log = Vec::new();
        for t in 0..200u64 {
            match peers.admit_request(1_000 + t, peer, ip, &mut streak) {
                Admission::Serve => log.push("serve"),
                Admission::Refuse(RateRefusal::Peer { .. }) => log.push("refuse"),
                Admission::Refuse(RateRefusal::Address { .. }) => log.push("refuse address"),
                Admission::Close(_) => {
                    log.push("close");
                    streak = RefusalStreak::default();
                }
                Admission::Banned => {
                    log.push("banned");
                    break;
                }
            }
        }
        log
    }

    #[test]
    fn over_its_rate_a_peer_is_refused_disconnected_and_then_banned() {
        let mut peers = limited(Defences::P2PSIP);
        let peer = contact(0x80, 1);
        peers.learn(0, peer, ListenProof::Verified);
        let log = admissions(&mut peers, &peer.id, peer.addr.ip());
        // 3 served; then every refusal is a RateViolation: a connection is
        // closed at its fifth refusal in a row, and the 19th (from a
        // neutral standing) bans.
        let mut expected = vec!["serve"; 3];
        for _ in 0..3 {
            expected.extend(["refuse"; 4]);
            expected.push("close");
        }
        expected.extend(["refuse", "refuse", "refuse", "banned"]);
        assert_eq!(log, expected);
        assert!(peers.is_banned(2_000, &peer.id));
        assert!(
            !peers.table().contains(&peer.id),
            "the one enforcement path"
        );
        assert!(matches!(
            peers.poll_action(),
            Some(PeerAction::Disconnect { peer: p, .. }) if p == peer.id
        ));
        let mut streak = RefusalStreak::default();
        assert_eq!(
            peers.admit_request(2_000, &peer.id, peer.addr.ip(), &mut streak),
            Admission::Banned
        );
    }

    #[test]
    fn an_addresss_budget_is_shared_and_its_refusals_are_no_ones_fault() {
        let mut peers = limited(Defences::P2PSIP);
        let ip: IpAddr = "10.9.0.1".parse().unwrap();
        let mut streak = RefusalStreak::default();
        let budget = 3 * crate::limits::RATE_LIMIT_PER_IP_FACTOR as usize;
        let served = (1..=100u8)
            .filter(|n| {
                let id = contact(*n, 9).id;
                peers.admit_request(5, &id, ip, &mut streak) == Admission::Serve
            })
            .count();
        assert_eq!(served, budget);
        // A refused request takes no token: only the served ids are tracked.
        assert_eq!(peers.rate_limited(), (budget, 1));
        assert!(peers.reputation().is_empty(), "no evidence against anyone");
    }

    #[test]
    fn without_rate_limits_every_request_of_a_peer_not_banned_is_served() {
        let mut peers = limited(Defences {
            rate_limit: false,
            ..Defences::P2PSIP
        });
        let peer = contact(0x80, 1);
        let mut streak = RefusalStreak::default();
        for t in 0..100 {
            assert_eq!(
                peers.admit_request(t, &peer.id, peer.addr.ip(), &mut streak),
                Admission::Serve
            );
        }
        let _ = peers.observe(100, &peer.id, Evidence::ProtocolViolation);
        assert_eq!(
            peers.admit_request(101, &peer.id, peer.addr.ip(), &mut streak),
            Admission::Banned
        );
    }
}

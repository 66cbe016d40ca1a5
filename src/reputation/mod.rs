//! The reputation subsystem: first-hand evidence about peers, turned into
//! a decaying score, temporary bans, and the decisions the overlay takes
//! with them. A sans-IO state machine: no sockets, no clock, no randomness.
//!
//! # Data flow
//!
//! ```text
//!  lookup PeerFault ─┐   record verify ─┐   wire decode ─┐   rate limiter ─┐
//!   (From<FaultKind>)│  (from_record_error)  (from_wire_error)  (RateViolation)
//!                    ▼                  ▼                ▼                 ▼
//!        Reputation::observe(peer, Evidence, now_ms) ──► Verdict::{Keep, Disconnect}
//!                    │
//!                    ├─ is_banned / score / standing       (connection hook, admin)
//!                    ├─ rank_candidates / compare_candidates (next hops, path seeds)
//!                    ├─ prefer_resident                     (routing-table eviction)
//!                    ├─ may_hold_replica / is_established   (replicas, relays)
//!                    ├─ rate_factor                         (per-peer rate limits)
//!                    └─ encode / decode                     (persisted across restarts)
//! ```
//!
//! # The score
//!
//! A peer's soft score is `reliability - load`, clamped to
//! [`REPUTATION_SCORE_MIN`]`..=`[`REPUTATION_SCORE_MAX`]; a peer never
//! observed scores 0 (neutral).
//!
//! - *Reliability* counts answers up ([`REPUTATION_ANSWERED_CREDIT`],
//!   [`REPUTATION_VERIFIED_CREDIT`]) and timeouts down
//!   ([`REPUTATION_UNRESPONSIVE_COST`]), never below
//!   [`REPUTATION_RELIABILITY_FLOOR`], and halves every
//!   [`REPUTATION_RELIABILITY_HALF_LIFE`]: churn and congestion are
//!   forgiven quickly.
//! - *Load* counts provable misbehaviour ([`REPUTATION_MISBEHAVIOUR_COST`]
//!   per wrong answer or protocol violation, [`REPUTATION_RATE_VIOLATION_COST`]
//!   per over-rate request), at most [`REPUTATION_MISBEHAVIOUR_CAP`], and
//!   halves every [`REPUTATION_MISBEHAVIOUR_HALF_LIFE`]. One provably wrong
//!   answer weighs as much as 25 timeouts, and unreliability alone can
//!   never sink a peer as low as misbehaviour does.
//!
//! # Bans
//!
//! Bans are kept apart from the score: a protocol violation (malformed or
//! oversized message), or fresh misbehaviour that takes the load to
//! [`REPUTATION_BAN_THRESHOLD`] (two forged records within hours, eighteen
//! over-rate requests), returns [`Verdict::Disconnect`] and bans the peer
//! until a fixed time. The first ban lasts [`Policy::ban_base`]; each further one
//! within [`REPUTATION_STRIKE_MEMORY`] of the previous doubles it, up to
//! [`Policy::ban_max`]. Offences while banned add no strike (a burst of bad
//! frames before the disconnect lands is one offence). Bans expire on their
//! own; [`Reputation::pardon`] lifts one early.
//!
//! # Bounded memory
//!
//! The table tracks at most [`Policy::max_peers`] peers. When a new peer
//! needs room, entries are forgotten in this order, so that a flood of
//! fresh (Sybil) identities only ever displaces other fresh identities:
//! 1. stale: neutral, no ban history, not heard from for
//!    [`REPUTATION_FORGET_AFTER`] (longest silent first);
//! 2. neutral: youngest relationship first (a flood churns through itself);
//! 3. good, then suspect, then peers with ban history: the weakest
//!    evidence (score closest to 0) first;
//! 4. active bans, only when every entry is one: the earliest to expire.
//!
//! Stale and neutral entries go in batches of 1/16 of the table, so that a
//! flood costs one linear scan per `max_peers / 16` new ids (plus the
//! map's O(log n) per id), not a scan per id.
//!
//! # Time
//!
//! Every `now_ms` is **unix time in milliseconds** (the wall clock, passed
//! in by the driver; the simulator passes its virtual clock). Bans and
//! decay are persisted with absolute times, which a monotonic clock could
//! not give across a restart. A clock that steps backwards is read as no
//! time elapsed; a persisted ban is cut to at most [`REPUTATION_BAN_MAX`]
//! from the `now` it is loaded at.
//!
//! # Persistence
//!
//! [`Reputation::encode`] writes canonical CBOR under the crate's strict
//! profile ([`crate::wire::cbor`]); [`Reputation::decode`] reads it back
//! strictly, refusing anything [`Reputation::encode`] would not have
//! written ([`DecodeError`]):
//!
//! ```text
//! table = [ version: 1, [ peer* ] ]        peers in strictly increasing id order,
//!                                          at most REPUTATION_MAX_PEERS
//! peer  = [ id: bytes .size 32,
//!           first_seen_ms, last_seen_ms, updated_ms,      unix milliseconds
//!           credit_mp, debit_mp,   reliability = (credit - debit) / 1000, one is 0
//!           load_mp,               misbehaviour load * 1000
//!           answered, verified, unverifiable, unresponsive,
//!           misbehaviour, violations, rate_violations,    counters, each < 2^32
//!           strikes, last_strike_ms,                      strikes <= REPUTATION_MAX_BAN_STRIKES
//!           banned_until_ms ]                             unix ms; 0: no ban
//! ```
//!
//! Scores are stored as they stood at `updated_ms` and decay from there
//! once loaded: a restart neither forgives nor refreshes anyone.
//!
//! # Non-features: second-hand opinions
//!
//! Only what this node observed itself, on its own authenticated
//! connections, counts. Opinions of other nodes are not exchanged or used:
//! with them, a Sybil group could slander an honest node (many identities
//! reporting it bad) or vouch for its own members, and bounding each
//! identity's influence would still leave the influence of many cheap
//! identities. First-hand evidence cannot be forged by third parties: a
//! peer can only change what this node thinks of *that peer*, by how it
//! behaves towards this node. The price is slower learning, which the
//! overlay's disjoint paths already tolerate.

mod entry;
mod evidence;
mod persist;

pub use evidence::{Evidence, Misbehaviour};
pub use persist::DecodeError;

use crate::identity::NodeId;
// Every reputation constant; their names all start with REPUTATION_.
use crate::limits::*;
use crate::overlay::key::Distance;
use crate::overlay::lookup::PeerFault;
use entry::{ms, Entry};
use std::cmp::{Ordering, Reverse};
use std::collections::BTreeMap;
use std::time::Duration;

const FORGET_AFTER_MS: u64 = ms(REPUTATION_FORGET_AFTER);
const ESTABLISHED_AGE_MS: u64 = ms(REPUTATION_ESTABLISHED_AGE);
const BAN_MAX_MS: u64 = ms(REPUTATION_BAN_MAX);

/// Neutral entries are forgotten this many to a table, at once, when room
/// is needed: amortises the scan that finds them.
const NEUTRAL_EVICTION_BATCHES: usize = 16;

/// The tunable part of the reputation policy; the weights are fixed
/// ([`crate::limits`]) so that every node judges alike.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    /// Most peers tracked; clamped to `1..=`[`REPUTATION_MAX_PEERS`].
    /// Default [`REPUTATION_MAX_PEERS`].
    pub max_peers: usize,
    /// Length of a first ban; at least 1 ms. Default
    /// [`REPUTATION_BAN_BASE`].
    pub ban_base: Duration,
    /// Longest ban; clamped to `ban_base..=`[`REPUTATION_BAN_MAX`].
    /// Default [`REPUTATION_BAN_MAX`].
    pub ban_max: Duration,
}

impl Default for Policy {
    fn default() -> Self {
        Self {
            max_peers: REPUTATION_MAX_PEERS,
            ban_base: REPUTATION_BAN_BASE,
            ban_max: REPUTATION_BAN_MAX,
        }
    }
}

impl Policy {
    fn cap(&self) -> usize {
        self.max_peers.clamp(1, REPUTATION_MAX_PEERS)
    }

    /// `(base, max)` ban lengths in ms, with `1 <= base <= max <= BAN_MAX_MS`.
    fn ban_bounds_ms(&self) -> (u64, u64) {
        let base = ms(self.ban_base).clamp(1, BAN_MAX_MS);
        (base, ms(self.ban_max).clamp(base, BAN_MAX_MS))
    }
}

/// What the driver must do after an observation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum Verdict {
    /// Nothing: carry on with the peer.
    Keep,
    /// Close every connection to the peer now and refuse new ones (see
    /// [`Reputation::is_banned`]) until `banned_until_ms` (unix ms).
    Disconnect {
        /// When the ban ends.
        banned_until_ms: u64,
    },
}

/// A peer's standing: its score in bands, worst first (so `Good` is the
/// greatest). Decisions compare standings, not raw scores, so that small
/// differences in score never override the overlay's own order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Standing {
    /// Under an active ban: not to be contacted or served.
    Banned,
    /// Score at or below [`REPUTATION_SUSPECT_SCORE`].
    Suspect,
    /// Unknown, or a score between the two thresholds.
    Neutral,
    /// Score at or above [`REPUTATION_GOOD_SCORE`].
    Good,
}

/// One peer as the admin interface shows it (`p2psip reputation`).
#[derive(Debug, Clone, PartialEq)]
pub struct PeerReport {
    /// The peer.
    pub id: NodeId,
    /// Its soft score at the report's time, in
    /// [`REPUTATION_SCORE_MIN`]`..=`[`REPUTATION_SCORE_MAX`] (0 is neutral).
    pub score: f64,
    /// Its standing at the report's time.
    pub standing: Standing,
    /// Requests it answered (including verified and unverifiable answers).
    pub answered: u32,
    /// Answers whose content verified.
    pub verified: u32,
    /// Answers whose content was refused for a reason that proves nothing.
    pub unverifiable: u32,
    /// Requests it left unanswered (timeouts, refusals).
    pub unresponsive: u32,
    /// Provably wrong answers.
    pub misbehaviour: u32,
    /// Protocol violations (malformed or oversized messages).
    pub violations: u32,
    /// Requests refused for exceeding its rate limit.
    pub rate_violations: u32,
    /// Bans still counting towards escalation.
    pub bans: u8,
    /// When this node first observed it (unix ms).
    pub first_seen_ms: u64,
    /// When this node last heard from it (unix ms).
    pub last_seen_ms: u64,
    /// When its active ban ends (unix ms); `None` if not banned.
    pub banned_until_ms: Option<u64>,
}

/// The reputation table: evidence about up to [`Policy::max_peers`] peers.
///
/// Feed it with [`Reputation::observe`] (or [`Reputation::on_fault`]) as
/// events happen, act on the returned [`Verdict`], and ask the decision
/// helpers when choosing peers. Persist it with [`Reputation::encode`] and
/// load it with [`Reputation::decode`]. Only report peers this node dealt
/// with itself over an authenticated connection, never contacts merely
/// mentioned by others.
#[derive(Debug, Clone, Default)]
pub struct Reputation {
    // A BTreeMap: deterministic iteration (reports, encoding, eviction ties)
    // and no hashing of attacker-chosen ids at all.
    peers: BTreeMap<NodeId, Entry>,
    policy: Policy,
}

impl Reputation {
    /// An empty table with the default [`Policy`].
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty table with `policy`.
    pub fn with_policy(policy: Policy) -> Self {
        Self {
            peers: BTreeMap::new(),
            policy,
        }
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Replaces the policy (for instance after [`Reputation::decode`]). A
    /// smaller `max_peers` takes effect at the next new peer.
    pub fn set_policy(&mut self, policy: Policy) {
        self.policy = policy;
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.peers.len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.peers.is_empty()
    }

    // ------------------------------------------------------------------
    // Input

    /// Records one first-hand observation of `peer` at `now_ms` (unix ms).
    /// Returns [`Verdict::Disconnect`] when the peer is banned (by this
    /// observation or still from an earlier one), else [`Verdict::Keep`].
    pub fn observe(&mut self, peer: NodeId, evidence: Evidence, now_ms: u64) -> Verdict {
        let policy = self.policy;
        let entry = self.entry_mut(peer, now_ms);
        entry.apply(evidence, now_ms, &policy);
        if entry.is_banned(now_ms) {
            Verdict::Disconnect {
                banned_until_ms: entry.banned_until_ms,
            }
        } else {
            Verdict::Keep
        }
    }

    /// Records a fault a lookup reported
    /// ([`crate::overlay::lookup::Lookup::poll_fault`]), mapped by
    /// `From<FaultKind> for Evidence`.
    pub fn on_fault(&mut self, fault: &PeerFault, now_ms: u64) -> Verdict {
        self.observe(fault.peer, fault.kind.into(), now_ms)
    }

    /// Lifts `peer`'s active ban (an operator's decision). Its evidence
    /// and ban history stay. Returns whether it was banned.
    pub fn pardon(&mut self, peer: &NodeId, now_ms: u64) -> bool {
        match self.peers.get_mut(peer) {
            Some(e) if e.is_banned(now_ms) => {
                e.banned_until_ms = 0;
                true
            }
            _ => false,
        }
    }

    /// Clears bans that have ended at `now_ms`; and, for a clock that
    /// stepped back, cuts any ban running beyond `now_ms + `
    /// [`REPUTATION_BAN_MAX`] to that and starts decay afresh from
    /// `now_ms` for scores last updated in the future. Bans are checked
    /// against `now` anyway; this tidies state loaded from disk. Ban
    /// history (strikes) stays.
    pub fn expire(&mut self, now_ms: u64) {
        let latest = now_ms.saturating_add(BAN_MAX_MS);
        for e in self.peers.values_mut() {
            e.updated_ms = e.updated_ms.min(now_ms);
            if e.banned_until_ms <= now_ms {
                e.banned_until_ms = 0;
            } else if e.banned_until_ms > latest {
                e.banned_until_ms = latest;
            }
        }
    }

    fn entry_mut(&mut self, peer: NodeId, now_ms: u64) -> &mut Entry {
        if !self.peers.contains_key(&peer) {
            self.make_room(now_ms);
        }
        self.peers.entry(peer).or_insert_with(|| Entry::new(now_ms))
    }

    /// Forgets entries until one more fits (see the module docs for the
    /// order).
    fn make_room(&mut self, now_ms: u64) {
        let cap = self.policy.cap();
        if self.peers.len() < cap {
            return;
        }
        let needed = self.peers.len() + 1 - cap;
        let mut keys: Vec<(EvictionKey, NodeId)> = self
            .peers
            .iter()
            .map(|(id, e)| (eviction_key(e, now_ms), *id))
            .collect();
        let Some(lowest) = keys.iter().map(|k| k.0 .0).min() else {
            return;
        };
        let mut count = needed;
        if lowest <= EvictionClass::Neutral {
            let batch = (cap / NEUTRAL_EVICTION_BATCHES).max(1);
            let cheap = keys.iter().filter(|k| k.0 .0 == lowest).count();
            count = count.max(batch.min(cheap));
        }
        // Linear selection of the `count` smallest keys; their order among
        // themselves does not matter.
        let count = count.min(keys.len());
        if count < keys.len() {
            keys.select_nth_unstable(count);
        }
        for (_, id) in keys.iter().take(count) {
            self.peers.remove(id);
        }
    }

    // ------------------------------------------------------------------
    // Decisions

    /// Whether `peer` is under an active ban at `now_ms`: its ban ends
    /// strictly after `now_ms`. The connection hook refuses a banned peer's
    /// connections and requests, and nothing is sent to it.
    pub fn is_banned(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.peers.get(peer).is_some_and(|e| e.is_banned(now_ms))
    }

    /// `peer`'s soft score at `now_ms`, in
    /// [`REPUTATION_SCORE_MIN`]`..=`[`REPUTATION_SCORE_MAX`]; 0 for a peer
    /// never observed (or forgotten). It ignores bans: ask
    /// [`Reputation::is_banned`] or [`Reputation::standing`] for those.
    pub fn score(&self, peer: &NodeId, now_ms: u64) -> f64 {
        self.peers.get(peer).map_or(0.0, |e| e.score(now_ms))
    }

    /// `peer`'s [`Standing`] at `now_ms`: `Banned` under an active ban,
    /// else its score's band (`Neutral` when unknown).
    pub fn standing(&self, peer: &NodeId, now_ms: u64) -> Standing {
        let Some(e) = self.peers.get(peer) else {
            return Standing::Neutral;
        };
        if e.is_banned(now_ms) {
            return Standing::Banned;
        }
        standing_of(e.score(now_ms))
    }

    /// Orders two candidate next hops, each given with its XOR distance to
    /// the target (which the caller computes): the better [`Standing`]
    /// first; within a standing the closer first; equal distances (the same
    /// node) compare equal. `Ordering::Less` means `a` goes first.
    pub fn compare_candidates(
        &self,
        a: (&NodeId, &Distance),
        b: (&NodeId, &Distance),
        now_ms: u64,
    ) -> Ordering {
        Reverse(self.standing(a.0, now_ms))
            .cmp(&Reverse(self.standing(b.0, now_ms)))
            .then_with(|| a.1.cmp(b.1))
    }

    /// Sorts `candidates` (next hops, disjoint-path seeds, relays) best
    /// first: the better [`Standing`] first; within a standing the
    /// caller's preferred ones first (lookup seeds: peers this node dialed
    /// itself, `RoutingTable::is_outbound`); then the closer. `key` gives
    /// each candidate's id, whether it is preferred, and its distance to
    /// the target. Banned candidates come last; the caller should skip
    /// them. Stable: equal candidates keep their order.
    pub fn rank_candidates<T>(
        &self,
        candidates: &mut [T],
        now_ms: u64,
        key: impl Fn(&T) -> (NodeId, bool, Distance),
    ) {
        candidates.sort_by_cached_key(|c| {
            let (id, preferred, distance) = key(c);
            (Reverse(self.standing(&id, now_ms)), !preferred, distance)
        });
    }

    /// Routing-table eviction: whether `resident` keeps its place against
    /// `newcomer` at `now_ms` (`true`: the newcomer waits or is dropped).
    /// The newcomer takes the place only if the resident is banned, or is
    /// suspect and the newcomer's standing is strictly better. So a
    /// newcomer, however good, never pushes out a resident in neutral or
    /// good standing (in particular a long-lived good peer), and a banned
    /// newcomer never pushes out anyone.
    pub fn prefer_resident(&self, resident: &NodeId, newcomer: &NodeId, now_ms: u64) -> bool {
        let r = self.standing(resident, now_ms);
        let n = self.standing(newcomer, now_ms);
        match r {
            Standing::Banned => n == Standing::Banned,
            Standing::Suspect => n <= r,
            Standing::Neutral | Standing::Good => true,
        }
    }

    /// Routing-table admission: whether `peer` may enter the table (or be
    /// a pending candidate) at `now_ms`: it is not banned.
    pub fn may_admit(&self, peer: &NodeId, now_ms: u64) -> bool {
        !self.is_banned(peer, now_ms)
    }

    /// Replica placement: whether `peer` may be asked to hold a replica at
    /// `now_ms`: not banned and score above [`REPUTATION_SUSPECT_SCORE`]
    /// (neutral newcomers are eligible, or a young overlay could store
    /// nothing). The caller skips ineligible peers and takes the next
    /// closest.
    pub fn may_hold_replica(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.standing(peer, now_ms) >= Standing::Neutral
    }

    /// Relay selection: whether `peer` is established at `now_ms`: in good
    /// standing and first observed at least [`REPUTATION_ESTABLISHED_AGE`]
    /// ago.
    pub fn is_established(&self, peer: &NodeId, now_ms: u64) -> bool {
        self.peers.get(peer).is_some_and(|e| {
            !e.is_banned(now_ms)
                && standing_of(e.score(now_ms)) == Standing::Good
                && now_ms.saturating_sub(e.first_seen_ms) >= ESTABLISHED_AGE_MS
        })
    }

    /// The factor by which `peer`'s request rate allowance (rate and burst)
    /// is multiplied at `now_ms`: 0 when banned; otherwise linear in the
    /// score, 1 for a neutral score of 0, [`REPUTATION_RATE_FACTOR_MAX`] at
    /// [`REPUTATION_SCORE_MAX`] and [`REPUTATION_RATE_FACTOR_MIN`] at
    /// [`REPUTATION_SCORE_MIN`].
    pub fn rate_factor(&self, peer: &NodeId, now_ms: u64) -> f64 {
        if self.is_banned(peer, now_ms) {
            return 0.0;
        }
        let s = self.score(peer, now_ms);
        let f = if s >= 0.0 {
            1.0 + (REPUTATION_RATE_FACTOR_MAX - 1.0) * s / REPUTATION_SCORE_MAX
        } else {
            1.0 - (1.0 - REPUTATION_RATE_FACTOR_MIN) * s / REPUTATION_SCORE_MIN
        };
        f.clamp(REPUTATION_RATE_FACTOR_MIN, REPUTATION_RATE_FACTOR_MAX)
    }

    // ------------------------------------------------------------------
    // Reports

    /// `peer`'s report at `now_ms`, if it is tracked.
    pub fn peer(&self, peer: &NodeId, now_ms: u64) -> Option<PeerReport> {
        self.peers.get(peer).map(|e| report(peer, e, now_ms))
    }

    /// Every tracked peer's report at `now_ms`, in id order.
    pub fn report(&self, now_ms: u64) -> Vec<PeerReport> {
        self.peers
            .iter()
            .map(|(id, e)| report(id, e, now_ms))
            .collect()
    }
}

fn standing_of(score: f64) -> Standing {
    if score <= REPUTATION_SUSPECT_SCORE {
        Standing::Suspect
    } else if score >= REPUTATION_GOOD_SCORE {
        Standing::Good
    } else {
        Standing::Neutral
    }
}

fn report(id: &NodeId, e: &Entry, now_ms: u64) -> PeerReport {
    let score = e.score(now_ms);
    let banned = e.is_banned(now_ms);
    PeerReport {
        id: *id,
        score,
        standing: if banned {
            Standing::Banned
        } else {
            standing_of(score)
        },
        answered: e.counts.answered,
        verified: e.counts.verified,
        unverifiable: e.counts.unverifiable,
        unresponsive: e.counts.unresponsive,
        misbehaviour: e.counts.misbehaviour,
        violations: e.counts.violations,
        rate_violations: e.counts.rate_violations,
        bans: e.strikes_at(now_ms),
        first_seen_ms: e.first_seen_ms,
        last_seen_ms: e.last_seen_ms,
        banned_until_ms: banned.then_some(e.banned_until_ms),
    }
}

/// Eviction classes, first forgotten first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum EvictionClass {
    Stale,
    Neutral,
    Good,
    Suspect,
    Struck,
    Banned,
}

/// Class, then two tie-breakers (smaller goes first); the id settles the rest.
type EvictionKey = (EvictionClass, u64, u64);

fn eviction_key(e: &Entry, now_ms: u64) -> EvictionKey {
    if e.is_banned(now_ms) {
        return (EvictionClass::Banned, e.banned_until_ms, 0);
    }
    let score = e.score(now_ms);
    // Milli-points; the float-to-int cast saturates.
    let weakness = (score.abs() * 1000.0) as u64;
    let youngest_first = u64::MAX - e.first_seen_ms;
    if e.strikes_at(now_ms) > 0 {
        return (EvictionClass::Struck, weakness, youngest_first);
    }
    match standing_of(score) {
        Standing::Suspect => (EvictionClass::Suspect, weakness, youngest_first),
        Standing::Good => (EvictionClass::Good, weakness, youngest_first),
        _ if now_ms.saturating_sub(e.last_seen_ms) >= FORGET_AFTER_MS => {
            (EvictionClass::Stale, e.last_seen_ms, weakness)
        }
        _ => (EvictionClass::Neutral, youngest_first, weakness),
    }
}

#[cfg(test)]
mod tests;

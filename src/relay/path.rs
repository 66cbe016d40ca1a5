//! Path choice: which relays a circuit goes through, and the guards every
//! circuit enters by. The one place this policy lives: the node and the
//! simulator call [`choose_path`] and report how circuits went
//! ([`Guards::note_success`], [`Guards::note_failure`]); they decide
//! nothing themselves. Sans-IO: the time, the RNG, the candidates and the
//! reputation table are inputs.
//!
//! # Rules
//!
//! Candidates are relays from verified descriptors ([`VerifiedRelay`],
//! built only from a [`VerifiedRecord`]), each with a round-trip estimate
//! if the node has one. In this order ([`Rule`]; the error names the rule
//! that left no candidate):
//!
//! 1. [`Rule::Unusable`]: the descriptor is live at `now`, not withdrawn,
//!    relays circuits, offers some capacity, and its current onion key is
//!    live;
//! 2. [`Rule::Endpoint`]: the relay is neither endpoint (this node, the
//!    other end if known) by node id;
//! 3. [`Rule::EndpointNetwork`]: none of its addresses lies in the IPv4
//!    /16 or IPv6 /32 ([`IpPrefix::wide`]) of an endpoint's address, so
//!    that a relay run next to an endpoint does not see it from both
//!    sides;
//! 4. [`Rule::Reputation`]: its [`Standing`] is neutral or good (never
//!    banned or suspect);
//! 5. [`Rule::Guard`]: the first hop is one of the node's guards;
//! 6. [`Rule::Diversity`]: no two hops share an IPv4 /16 or IPv6 /32 (a
//!    single operator or hosting network rarely spans several), nor a
//!    node id;
//! 7. [`Rule::LatencyBudget`]: the estimated one-way delay of the chain
//!    stays within [`PathParams::latency_budget`].
//!
//! Among the candidates left for a hop, one is drawn at random with a
//! weight that grows with its reputation score (1 at a neutral score of
//! 0, 11 at the maximum, down to 0.5 at the suspect threshold) and, up to
//! a factor of 2, with its claimed capacity ([`RELAY_PATH_CAPACITY_UNIT`]:
//! the claim is self-declared, so it is worth little).
//!
//! # Latency
//!
//! A voice call stays pleasant while the one-way delay stays under about
//! 150 ms (ITU-T G.114): the default budget
//! ([`RELAY_DEFAULT_LATENCY_BUDGET`]). A hop's one-way delay is estimated
//! as half its measured round-trip time from this node, or
//! [`RELAY_DEFAULT_HOP_DELAY`] (30 ms) when unknown; the chain's estimate
//! is their sum. This is coarse: the delays between relays are not known
//! to the node, and codec, jitter buffer and the constant-rate scheduler
//! add their own, so the budget is a guard against absurd paths
//! (three relays on three continents), not a promise.
//!
//! # Guards, and what they buy
//!
//! A node keeps [`RELAY_GUARDS`] entry relays, chosen once by the same
//! rules (preferring relays the reputation table calls established), and
//! enters every circuit through the first of them that suits it. Each
//! guard is kept for a time drawn uniformly between 30 and 60 days
//! ([`RELAY_GUARD_ROTATION_MIN`], [`RELAY_GUARD_ROTATION_MAX`]), unless
//! it is banned (replaced at once) or keeps failing: only after
//! [`RELAY_GUARD_MAX_FAILURES`] failures with no success in between,
//! spread over at least [`RELAY_GUARD_DOWN_TIME`], so that an attacker
//! who drops a guard's traffic for a while cannot make the node pick a
//! new one (perhaps the attacker's).
//!
//! Why (Tor's reasoning, Øverlier and Syverson 2006; Tor proposal 236):
//! the entry relay sees the caller's address. If every circuit picked a
//! fresh entry, an attacker running a fraction `f` of the relays would
//! be the entry of some circuit of almost every node after enough calls,
//! and with the last hop as well could link caller and callee by timing.
//! With guards, a node's chance of ever having a malicious entry is about
//! `f` per guard choice, not `1 − (1 − f)^circuits`: most nodes are never
//! seen at all. The cost: a node whose guard is malicious is seen on every
//! circuit until the guard rotates, and a guard that is down makes the
//! node's calls fail until it is replaced. The guards are saved
//! ([`Guards::encode`]) so a restart does not choose new ones.

use crate::identity::NodeId;
use crate::limits::{
    RELAY_DEFAULT_HOPS, RELAY_DEFAULT_HOP_DELAY, RELAY_DEFAULT_LATENCY_BUDGET, RELAY_GUARDS,
    RELAY_GUARD_DOWN_TIME, RELAY_GUARD_MAX_FAILURES, RELAY_GUARD_ROTATION_MAX,
    RELAY_GUARD_ROTATION_MIN, RELAY_MAX_HOPS, RELAY_PATH_CAPACITY_UNIT, REPUTATION_SCORE_MAX,
    REPUTATION_SUSPECT_SCORE,
};
use crate::netaddr::IpPrefix;
use crate::overlay::record::{RelayOffer, VerifiedRecord};
use crate::reputation::{Reputation, Standing};
use crate::wire::cbor::{encoder, require_canonical, Reader};
use crate::wire::WireError;
use rand::Rng;
use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// A relay as its verified descriptor offers it. Built only from a
/// [`VerifiedRecord`], so a path is made of checked descriptors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRelay {
    node_id: NodeId,
    offer: RelayOffer,
    expires: u64,
}

impl VerifiedRelay {
    /// The relay of a verified `RelayDescriptor` record; `None` for
    /// another kind or a withdrawn descriptor.
    pub fn from_record(record: &VerifiedRecord) -> Option<Self> {
        let desc = record.relay_descriptor()?;
        Some(Self {
            node_id: *desc.node_id(),
            offer: desc.offer()?.clone(),
            expires: record.expires(),
        })
    }

    /// The relay's node id.
    pub fn node_id(&self) -> &NodeId {
        &self.node_id
    }

    /// What it offers.
    pub fn offer(&self) -> &RelayOffer {
        &self.offer
    }

    /// When its descriptor record expires, unix seconds.
    pub fn expires(&self) -> u64 {
        self.expires
    }

    fn usable(&self, now: u64) -> bool {
        now < self.expires
            && self.offer.relays_circuits
            && self.offer.capacity > 0
            && self.offer.onion_key.is_live(now)
    }

    fn networks(&self) -> impl Iterator<Item = IpPrefix> + '_ {
        self.offer.addresses.iter().map(|a| IpPrefix::wide(a.ip()))
    }
}

/// A relay path choice may use, with what the node knows of it.
#[derive(Debug, Clone)]
pub struct Candidate {
    /// The relay.
    pub relay: VerifiedRelay,
    /// Round-trip time from this node, if measured.
    pub rtt: Option<Duration>,
}

/// The two ends of the circuit to be: no hop may be either, or sit in
/// either's network.
#[derive(Debug, Clone)]
pub struct Endpoints {
    /// This node.
    pub own_id: NodeId,
    /// This node's addresses (as the overlay sees them).
    pub own_addrs: Vec<IpAddr>,
    /// The other end, if known.
    pub peer_id: Option<NodeId>,
    /// The other end's addresses, if known.
    pub peer_addrs: Vec<IpAddr>,
}

impl Endpoints {
    fn ids(&self) -> impl Iterator<Item = &NodeId> {
        std::iter::once(&self.own_id).chain(self.peer_id.as_ref())
    }

    fn own_networks(&self) -> Vec<IpPrefix> {
        self.own_addrs
            .iter()
            .map(|ip| IpPrefix::wide(*ip))
            .collect()
    }

    fn networks(&self) -> Vec<IpPrefix> {
        self.own_addrs
            .iter()
            .chain(&self.peer_addrs)
            .map(|ip| IpPrefix::wide(*ip))
            .collect()
    }
}

/// How long and how fast a path should be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathParams {
    /// Hops, the guard included: 1 to [`RELAY_MAX_HOPS`]. Default
    /// [`RELAY_DEFAULT_HOPS`].
    pub hops: usize,
    /// Most estimated one-way delay of the chain. Default
    /// [`RELAY_DEFAULT_LATENCY_BUDGET`].
    pub latency_budget: Duration,
    /// One-way delay assumed for a hop of unknown round-trip time.
    /// Default [`RELAY_DEFAULT_HOP_DELAY`].
    pub unknown_hop_delay: Duration,
}

impl Default for PathParams {
    fn default() -> Self {
        Self {
            hops: RELAY_DEFAULT_HOPS,
            latency_budget: RELAY_DEFAULT_LATENCY_BUDGET,
            unknown_hop_delay: RELAY_DEFAULT_HOP_DELAY,
        }
    }
}

/// A rule of path choice (see the module docs), named by the error when
/// it leaves no candidate.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Rule {
    /// A live, non-withdrawn descriptor that relays circuits, with
    /// capacity and a live onion key.
    Unusable,
    /// Not an endpoint by node id.
    Endpoint,
    /// Not in an endpoint's IPv4 /16 or IPv6 /32.
    EndpointNetwork,
    /// Standing neutral or good.
    Reputation,
    /// The first hop is a guard that suits this circuit.
    Guard,
    /// No two hops in one IPv4 /16 or IPv6 /32, nor the same relay twice.
    Diversity,
    /// Within the latency budget.
    LatencyBudget,
}

impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Rule::Unusable => "a usable descriptor (live, relays circuits, live onion key)",
            Rule::Endpoint => "not an endpoint",
            Rule::EndpointNetwork => "not in an endpoint's /16 (IPv6 /32)",
            Rule::Reputation => "neutral or good standing",
            Rule::Guard => "a guard suited to this circuit",
            Rule::Diversity => "no two hops in one /16 (IPv6 /32)",
            Rule::LatencyBudget => "within the latency budget",
        })
    }
}

/// Why no path was chosen.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PathError {
    /// The hop count is 0 or above [`RELAY_MAX_HOPS`].
    #[error("a path has 1 to {RELAY_MAX_HOPS} hops, not {0}")]
    HopCount(usize),
    /// A rule left no candidate for a hop.
    #[error("no relay for hop {hop} of {hops}: rule \"{rule}\" left none of {before} candidates")]
    NoCandidate {
        /// The rule that emptied the set.
        rule: Rule,
        /// The hop (0 is the guard).
        hop: usize,
        /// The hops asked for.
        hops: usize,
        /// Candidates left before the rule.
        before: usize,
    },
}

/// One hop of a chosen path: what the circuit builder needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathHop {
    /// The relay's node id (the handshake's `ID`).
    pub node_id: NodeId,
    /// Its addresses, preferred first.
    pub addresses: Vec<SocketAddr>,
    /// Its current onion key (the handshake's `B`).
    pub onion_key: [u8; 32],
    /// The estimated one-way delay of the hop.
    pub delay: Duration,
}

/// A chosen path: the guard first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Path {
    /// The hops, entry first.
    pub hops: Vec<PathHop>,
    /// The sum of the hops' estimated delays.
    pub estimated_delay: Duration,
}

fn delay(c: &Candidate, params: &PathParams) -> Duration {
    c.rtt.map_or(params.unknown_hop_delay, |rtt| rtt / 2)
}

/// The weight of a candidate: its score (1 at 0, `1 + MAX/10` at the
/// maximum, 0.5 at the suspect threshold) times its capacity factor (1 to
/// 2).
fn weight(c: &Candidate, reputation: &Reputation, now_ms: u64) -> f64 {
    let score = reputation.score(c.relay.node_id(), now_ms);
    let by_score = if score >= 0.0 {
        1.0 + score.min(REPUTATION_SCORE_MAX) / 10.0
    } else {
        (1.0 + 0.5 * score / -REPUTATION_SUSPECT_SCORE).max(0.5)
    };
    let unit = f64::from(RELAY_PATH_CAPACITY_UNIT);
    let by_capacity = 1.0 + f64::from(c.relay.offer.capacity).min(unit) / unit;
    by_score * by_capacity
}

/// Draws one of `set` by weight; `None` if `set` is empty.
fn draw<'c>(
    set: &[&'c Candidate],
    reputation: &Reputation,
    now_ms: u64,
    rng: &mut impl Rng,
) -> Option<&'c Candidate> {
    let weights: Vec<f64> = set.iter().map(|c| weight(c, reputation, now_ms)).collect();
    let total: f64 = weights.iter().sum();
    if total.is_nan() || total <= 0.0 {
        return set.first().copied();
    }
    let mut x = rng.gen_range(0.0..total);
    for (c, w) in set.iter().zip(&weights) {
        if x < *w {
            return Some(c);
        }
        x -= w;
    }
    set.last().copied()
}

fn shares_network(a: &VerifiedRelay, b: &VerifiedRelay) -> bool {
    a.networks().any(|n| b.networks().any(|m| m == n))
}

/// Applies one rule to `set`; fails with the rule if it leaves nothing.
fn apply(
    set: Vec<&Candidate>,
    rule: Rule,
    hop: usize,
    hops: usize,
    keep: impl Fn(&Candidate) -> bool,
) -> Result<Vec<&Candidate>, PathError> {
    let before = set.len();
    let left: Vec<_> = set.into_iter().filter(|c| keep(c)).collect();
    if left.is_empty() {
        return Err(PathError::NoCandidate {
            rule,
            hop,
            hops,
            before,
        });
    }
    Ok(left)
}

/// One candidate per relay (the descriptor that lives longest: each relay
/// is found under two directory keys, perhaps in two versions).
fn dedup(candidates: &[Candidate]) -> Vec<&Candidate> {
    let mut by_id: BTreeMap<NodeId, &Candidate> = BTreeMap::new();
    for c in candidates {
        by_id
            .entry(c.relay.node_id)
            .and_modify(|held| {
                if c.relay.expires > held.relay.expires {
                    *held = c;
                }
            })
            .or_insert(c);
    }
    by_id.into_values().collect()
}

/// Chooses a path of `params.hops` relays among `candidates` at `now`
/// (unix seconds) for a circuit between `endpoints`, entering through one
/// of `guards` (which it first refreshes: retires guards that are banned,
/// expired or failed past the threshold, and chooses new ones as needed).
/// `reputation` is the node's table; `rng` the node's (seeded in tests
/// and in the simulator).
pub fn choose_path(
    candidates: &[Candidate],
    endpoints: &Endpoints,
    reputation: &Reputation,
    guards: &mut Guards,
    params: &PathParams,
    now: u64,
    rng: &mut impl Rng,
) -> Result<Path, PathError> {
    let hops = params.hops;
    if hops == 0 || hops > RELAY_MAX_HOPS {
        return Err(PathError::HopCount(hops));
    }
    let now_ms = now.saturating_mul(1000);
    // The rules that do not depend on the other end: what guards are
    // chosen from.
    let own_networks = endpoints.own_networks();
    let set = apply(dedup(candidates), Rule::Unusable, 0, hops, |c| {
        c.relay.usable(now)
    })?;
    let set = apply(set, Rule::Endpoint, 0, hops, |c| {
        c.relay.node_id != endpoints.own_id
    })?;
    let set = apply(set, Rule::EndpointNetwork, 0, hops, |c| {
        !c.relay.networks().any(|n| own_networks.contains(&n))
    })?;
    let base = apply(set, Rule::Reputation, 0, hops, |c| {
        reputation.standing(c.relay.node_id(), now_ms) >= Standing::Neutral
    })?;
    // This circuit's: not the other end, nor in its network.
    let networks = endpoints.networks();
    let set = apply(base.clone(), Rule::Endpoint, 0, hops, |c| {
        !endpoints.ids().any(|id| *id == c.relay.node_id)
    })?;
    let mut set = apply(set, Rule::EndpointNetwork, 0, hops, |c| {
        !c.relay.networks().any(|n| networks.contains(&n))
    })?;
    // New guards come from the relays that suit this circuit too (so the
    // first circuit has one), old ones are kept if merely unsuited to it.
    guards.refresh(&base, &set, reputation, params, now, rng);

    let min_delay = |set: &[&Candidate]| {
        set.iter()
            .map(|c| delay(c, params))
            .min()
            .unwrap_or_default()
    };
    let mut budget = params.latency_budget;
    let mut chosen: Vec<&Candidate> = Vec::with_capacity(hops);
    for hop in 0..hops {
        if hop > 0 {
            set = apply(set, Rule::Diversity, hop, hops, |c| {
                !chosen.iter().any(|h| {
                    h.relay.node_id == c.relay.node_id || shares_network(&h.relay, &c.relay)
                })
            })?;
        }
        // What the hops after this one cost at least.
        let rest =
            min_delay(&set).saturating_mul(u32::try_from(hops - hop - 1).unwrap_or(u32::MAX));
        let pick = if hop == 0 {
            let usable = apply(set.clone(), Rule::Guard, hop, hops, |c| {
                guards.guards.iter().any(|g| g.id == c.relay.node_id)
            })?;
            // In the guards' order, the primary first; a guard that
            // failed since its last success after those that did not
            // (Tor's "reachable" status: the node falls back on its
            // other guard, never on a new one).
            let mut ordered: Vec<&Guard> = guards.guards.iter().collect();
            ordered.sort_by_key(|g| g.failures > 0);
            let usable: Vec<&Candidate> = ordered
                .iter()
                .filter_map(|g| usable.iter().find(|c| c.relay.node_id == g.id).copied())
                .collect();
            let fitting = apply(usable, Rule::LatencyBudget, hop, hops, |c| {
                delay(c, params).saturating_add(rest) <= budget
            })?;
            fitting.first().copied()
        } else {
            let fitting = apply(set.clone(), Rule::LatencyBudget, hop, hops, |c| {
                delay(c, params).saturating_add(rest) <= budget
            })?;
            draw(&fitting, reputation, now_ms, rng)
        };
        let Some(pick) = pick else {
            // `apply` never returns an empty set.
            return Err(PathError::NoCandidate {
                rule: Rule::LatencyBudget,
                hop,
                hops,
                before: 0,
            });
        };
        budget = budget.saturating_sub(delay(pick, params));
        chosen.push(pick);
    }
    let hops: Vec<PathHop> = chosen
        .iter()
        .map(|c| PathHop {
            node_id: c.relay.node_id,
            addresses: c.relay.offer.addresses.clone(),
            onion_key: c.relay.offer.onion_key.key,
            delay: delay(c, params),
        })
        .collect();
    let estimated_delay = hops.iter().map(|h| h.delay).sum();
    Ok(Path {
        hops,
        estimated_delay,
    })
}

/// Chooses a path for a callee's rendezvous circuit: as [`choose_path`],
/// its last relay the rendezvous point, which is never one of the node's
/// guards (a circuit back to the point, after its first broke, must
/// enter through a guard other than the point, and the node has only
/// [`RELAY_GUARDS`]).
pub fn choose_rendezvous_path(
    candidates: &[Candidate],
    endpoints: &Endpoints,
    reputation: &Reputation,
    guards: &mut Guards,
    params: &PathParams,
    now: u64,
    rng: &mut impl Rng,
) -> Result<Path, PathError> {
    let mut left: Vec<Candidate> = candidates.to_vec();
    loop {
        let path = choose_path(&left, endpoints, reputation, guards, params, now, rng)?;
        let Some(point) = path.hops.last().map(|h| h.node_id) else {
            return Ok(path);
        };
        if !guards.guards.iter().any(|g| g.id == point) {
            return Ok(path);
        }
        // Choose again without it (bounded: one relay fewer each time).
        left.retain(|c| c.relay.node_id != point);
    }
}

/// Chooses a path to a rendezvous relay the other end chose (`point`,
/// from its handle): `params.hops` relays in all, the last of them
/// `point`. The others follow [`choose_path`]'s rules and also keep
/// clear of the point (neither it nor a relay in its network), and the
/// budget counts the point's hop at [`PathParams::unknown_hop_delay`]
/// unless `candidates` measured it.
#[allow(clippy::too_many_arguments)]
pub fn choose_path_to(
    candidates: &[Candidate],
    endpoints: &Endpoints,
    reputation: &Reputation,
    guards: &mut Guards,
    params: &PathParams,
    point: &crate::relay::circuit::PathHop,
    now: u64,
    rng: &mut impl Rng,
) -> Result<Path, PathError> {
    if params.hops < 2 || params.hops > RELAY_MAX_HOPS {
        return Err(PathError::HopCount(params.hops));
    }
    let point_network = IpPrefix::wide(point.addr.ip());
    let point_delay = candidates
        .iter()
        .find(|c| c.relay.node_id == point.id)
        .map_or(params.unknown_hop_delay, |c| delay(c, params));
    let clear: Vec<Candidate> = candidates
        .iter()
        .filter(|c| c.relay.node_id != point.id && !c.relay.networks().any(|n| n == point_network))
        .cloned()
        .collect();
    let before = PathParams {
        hops: params.hops - 1,
        latency_budget: params.latency_budget.saturating_sub(point_delay),
        ..*params
    };
    let mut path = choose_path(&clear, endpoints, reputation, guards, &before, now, rng)?;
    path.hops.push(PathHop {
        node_id: point.id,
        addresses: vec![point.addr],
        onion_key: point.onion,
        delay: point_delay,
    });
    path.estimated_delay = path.estimated_delay.saturating_add(point_delay);
    Ok(path)
}

impl Path {
    /// The hops as the circuit builder takes them (each relay at its
    /// first address); `None` if a hop has no address.
    pub fn circuit_hops(&self) -> Option<Vec<crate::relay::circuit::PathHop>> {
        self.hops
            .iter()
            .map(|h| {
                Some(crate::relay::circuit::PathHop {
                    id: h.node_id,
                    addr: *h.addresses.first()?,
                    onion: h.onion_key,
                })
            })
            .collect()
    }
}

/// One guard as a node keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guard {
    /// The relay.
    pub id: NodeId,
    /// When it was chosen, unix seconds.
    pub chosen: u64,
    /// When it is replaced in any case, unix seconds.
    pub until: u64,
    /// Failures since the last success.
    pub failures: u32,
    /// When the current run of failures began (0: not failing).
    pub failing_since: u64,
}

impl Guard {
    fn worn_out(&self, now: u64) -> bool {
        now >= self.until
            || (self.failures >= RELAY_GUARD_MAX_FAILURES
                && now.saturating_sub(self.failing_since) >= RELAY_GUARD_DOWN_TIME.as_secs())
    }
}

/// Why saved guard state was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum GuardStateError {
    /// Not the schema.
    #[error("malformed guard state: {0}")]
    Malformed(#[from] WireError),
    /// A version this implementation does not know.
    #[error("unsupported guard state version {0}")]
    UnsupportedVersion(u64),
    /// More guards than [`RELAY_GUARDS`].
    #[error("{0} guards, at most {RELAY_GUARDS}")]
    TooMany(u64),
    /// A guard whose fields contradict each other (listed twice, a
    /// lifetime outside the rotation range, failures without a start).
    #[error("inconsistent guard state: {0}")]
    Inconsistent(&'static str),
}

const GUARDS_VERSION: u64 = 1;

/// A node's guards (entry relays), saved between runs.
///
/// ```text
/// guards = [1, [* guard]]       ; at most RELAY_GUARDS, ids distinct
/// guard  = [id: bstr(32), chosen: uint, until: uint,
///           failures: uint (u32), failing_since: uint]   ; 0: not failing
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Guards {
    guards: Vec<Guard>,
}

impl Guards {
    /// No guards yet (the first path chooses them).
    pub fn new() -> Self {
        Self::default()
    }

    /// The guards, primary first.
    pub fn guards(&self) -> &[Guard] {
        &self.guards
    }

    /// A circuit through guard `id` was built at `now`: its failures are
    /// forgotten.
    pub fn note_success(&mut self, id: &NodeId, _now: u64) {
        if let Some(g) = self.guards.iter_mut().find(|g| g.id == *id) {
            g.failures = 0;
            g.failing_since = 0;
        }
    }

    /// A circuit through guard `id` failed at `now` (no answer, refused).
    /// The guard is replaced (by the next path choice) only once it has
    /// failed [`RELAY_GUARD_MAX_FAILURES`] times in a row over at least
    /// [`RELAY_GUARD_DOWN_TIME`].
    pub fn note_failure(&mut self, id: &NodeId, now: u64) {
        if let Some(g) = self.guards.iter_mut().find(|g| g.id == *id) {
            note_failure(g, now);
        }
    }

    /// Retires worn-out and banned guards, counts a guard missing from
    /// the usable relays `listed` as failing, and fills empty places from
    /// `set` (the relays that suit the circuit at hand),
    /// none sharing a network with another guard: among the relays fast
    /// enough for a path of `params` (if any are), the established ones
    /// (if any are).
    fn refresh(
        &mut self,
        listed: &[&Candidate],
        set: &[&Candidate],
        reputation: &Reputation,
        params: &PathParams,
        now: u64,
        rng: &mut impl Rng,
    ) {
        let others = u32::try_from(params.hops.saturating_sub(1)).unwrap_or(u32::MAX);
        let fastest = set
            .iter()
            .map(|c| delay(c, params))
            .min()
            .unwrap_or_default();
        let fits = |c: &Candidate| {
            delay(c, params).saturating_add(fastest.saturating_mul(others)) <= params.latency_budget
        };
        let now_ms = now.saturating_mul(1000);
        for g in &mut self.guards {
            if !listed.iter().any(|c| c.relay.node_id == g.id) {
                note_failure(g, now);
            }
        }
        // A retired guard is not chosen again in the same round: else a
        // failed guard could come straight back with a clean record.
        let retired: Vec<NodeId> = self
            .guards
            .iter()
            .filter(|g| g.worn_out(now) || reputation.is_banned(&g.id, now_ms))
            .map(|g| g.id)
            .collect();
        self.guards.retain(|g| !retired.contains(&g.id));
        while self.guards.len() < RELAY_GUARDS {
            let held: Vec<&Candidate> = set
                .iter()
                .filter(|c| self.guards.iter().any(|g| g.id == c.relay.node_id))
                .copied()
                .collect();
            let fresh: Vec<&Candidate> = set
                .iter()
                .filter(|c| {
                    !self.guards.iter().any(|g| g.id == c.relay.node_id)
                        && !retired.contains(&c.relay.node_id)
                        && !held.iter().any(|h| shares_network(&h.relay, &c.relay))
                })
                .copied()
                .collect();
            let fast: Vec<&Candidate> = fresh.iter().filter(|c| fits(c)).copied().collect();
            let fresh = if fast.is_empty() { fresh } else { fast };
            let established: Vec<&Candidate> = fresh
                .iter()
                .filter(|c| reputation.is_established(c.relay.node_id(), now_ms))
                .copied()
                .collect();
            let pool = if established.is_empty() {
                fresh
            } else {
                established
            };
            let Some(pick) = draw(&pool, reputation, now_ms, rng) else {
                break;
            };
            let life = rng
                .gen_range(RELAY_GUARD_ROTATION_MIN.as_secs()..=RELAY_GUARD_ROTATION_MAX.as_secs());
            self.guards.push(Guard {
                id: pick.relay.node_id,
                chosen: now,
                until: now.saturating_add(life),
                failures: 0,
                failing_since: 0,
            });
        }
    }

    /// The canonical CBOR encoding, to save in the node's directory.
    pub fn encode(&self) -> Vec<u8> {
        let mut e = encoder();
        let _ = e
            .array(2)
            .and_then(|e| e.u64(GUARDS_VERSION)?.array(self.guards.len() as u64))
            .and_then(|mut e| {
                for g in &self.guards {
                    e = e
                        .array(5)?
                        .bytes(g.id.as_bytes())?
                        .u64(g.chosen)?
                        .u64(g.until)?
                        .u32(g.failures)?
                        .u64(g.failing_since)?;
                }
                Ok(e)
            });
        e.into_writer()
    }

    /// Decodes saved guards, strictly: canonical, at most
    /// [`RELAY_GUARDS`], each consistent. A node that cannot read its
    /// guard file should say so and keep the file, not silently choose
    /// new guards (which is what an attacker who can corrupt it wants).
    pub fn decode(input: &[u8]) -> Result<Self, GuardStateError> {
        let mut r = Reader::new(input);
        let arity = r.array()?;
        let version = r.u64()?;
        if version != GUARDS_VERSION {
            return Err(GuardStateError::UnsupportedVersion(version));
        }
        if arity != 2 {
            return Err(WireError::WrongArity {
                message_type: version,
                expected: 2,
                found: arity,
            }
            .into());
        }
        let n = r.array()?;
        if n > RELAY_GUARDS as u64 {
            return Err(GuardStateError::TooMany(n));
        }
        let mut guards: Vec<Guard> = Vec::new();
        for _ in 0..n {
            if r.array()? != 5 {
                return Err(WireError::FieldOutOfRange("guard").into());
            }
            let id = NodeId::from_bytes(r.bytes_exact("guard.id")?);
            let chosen = r.u64()?;
            let until = r.u64()?;
            let failures = u32::try_from(r.u64()?)
                .map_err(|_| WireError::FieldOutOfRange("guard.failures"))?;
            let failing_since = r.u64()?;
            let life = until.checked_sub(chosen);
            let rotation = RELAY_GUARD_ROTATION_MIN.as_secs()..=RELAY_GUARD_ROTATION_MAX.as_secs();
            if !life.is_some_and(|l| rotation.contains(&l)) {
                return Err(GuardStateError::Inconsistent(
                    "lifetime outside the rotation range",
                ));
            }
            if (failures == 0) != (failing_since == 0) {
                return Err(GuardStateError::Inconsistent("failures without a start"));
            }
            if guards.iter().any(|g| g.id == id) {
                return Err(GuardStateError::Inconsistent("a guard listed twice"));
            }
            guards.push(Guard {
                id,
                chosen,
                until,
                failures,
                failing_since,
            });
        }
        r.finish()?;
        let out = Self { guards };
        require_canonical(input, &out.encode())?;
        Ok(out)
    }
}

fn note_failure(g: &mut Guard, now: u64) {
    if g.failures == 0 {
        g.failing_since = now.max(1);
    }
    g.failures = g.failures.saturating_add(1);
}

#[cfg(test)]
mod tests;

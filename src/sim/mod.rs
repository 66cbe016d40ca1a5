//! A deterministic simulator of the overlay: thousands of nodes running the
//! real routing table and lookup state machines ([`crate::overlay`]) on a
//! virtual clock over a virtual network with per-link latency, loss and
//! churn. Same configuration and seed, same report, byte for byte.
//!
//! What is simulated: FindNode / FindValue / Store exchanges, with the
//! responder learning the requester (as a node learns a peer from an
//! authenticated connection) and the requester learning every responder;
//! full buckets resolve their ping at once (a live resident always stays);
//! unanswered requests time out and evict the silent peer. Join is a
//! lookup of the node's own id followed by a refresh of the buckets beyond
//! its closest neighbour. Record values are opaque tags whose order is
//! their sequence number (a holder keeps the highest; a reader takes the
//! highest it got); forged records are one reserved tag ([`FORGED`]).
//! Adversaries are in [`attack`]. Optional, for the p2psip configuration:
//! a first-hand [`Reputation`] per honest node ([`SimConfig::reputation`]),
//! density detection with widening ([`SimConfig::density`]), and bounded
//! record stores, per-peer rate limits and a spam flood
//! ([`SimConfig::store`], [`SimConfig::rate_limit`], [`SimConfig::spam`]).

pub mod attack;

use crate::identity::NodeId;
use crate::limits::{DENSITY_WIDEN_ROUNDS, MAX_REQUESTS_PER_PEER_PER_SEC, PEER_REQUEST_BURST};
use crate::overlay::config::OverlayParams;
use crate::overlay::density::{self, DenseCluster};
use crate::overlay::key::Key;
use crate::overlay::lookup::{spread_across_paths, Lookup};
use crate::overlay::routing::{Contact, InsertOutcome, RoutingTable};
use crate::reputation::{Evidence, Misbehaviour, Policy, Reputation, Standing, Verdict};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// What to simulate.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Nodes in the overlay.
    pub nodes: usize,
    /// Lookups of random live nodes to measure.
    pub lookups: usize,
    /// Store-then-fetch pairs to measure.
    pub store_fetch: usize,
    /// Fraction of the nodes that crash (and as many that join) per
    /// virtual minute during the measurement.
    pub churn_per_min: f64,
    /// The seed of every random choice.
    pub seed: u64,
    /// Overlay parameters (k, alpha, d, replication; the puzzle is not
    /// simulated: ids are random).
    pub params: OverlayParams,
    /// Per-link one-way latency is uniform in this range, in ms.
    pub latency_ms: (u64, u64),
    /// Probability that a request or its answer is lost.
    pub loss: f64,
    /// How many times a failed node or value lookup is widened
    /// ([`Lookup::widen`]); 0 for plain Kademlia and S/Kademlia.
    pub widen_rounds: u32,
    /// Whether replicas are placed across the disjoint paths' results
    /// (round-robin) rather than on the overall closest nodes.
    pub spread_replicas: bool,
    /// Whether every node that answers a lookup enters the requester's
    /// routing table (classic Kademlia). Without it, as in the p2psip
    /// node, tables learn from inbound requests and from the results of
    /// the node's own join and refresh lookups, spread across paths.
    pub learn_responders: bool,
    /// How long a requester waits for an answer, in ms.
    pub timeout_ms: u64,
    /// Virtual time between two measured operations, in ms.
    pub interval_ms: u64,
    /// A value lookup stops once this many holders answered with a valid
    /// record (the real node's `VALUE_ANSWERS_BEFORE_STOPPING`, 2) and
    /// returns the highest; 1 stops at the first copy (classic Kademlia).
    pub value_answers: usize,
    /// Whether a store's placement lookup asks what each node holds under
    /// the key (FindValue, never stopping early) and sends the new record
    /// to the holders of older versions too, as the real node's `publish`
    /// does: otherwise replicas of successive versions, spread across
    /// paths, land on partly different nodes and reads find old ones.
    pub update_holders: bool,
    /// Whether every honest node keeps a first-hand [`Reputation`] of its
    /// peers (capped at [`SIM_REPUTATION_MAX_PEERS`]), fed from its
    /// lookups, and acts on it: banned peers are neither asked, learned,
    /// nor given replicas; lookup seeds are ranked by standing.
    pub reputation: bool,
    /// Whether node lookups for a key and value lookups check the ids they
    /// found for an implausibly dense cluster ([`crate::overlay::density`])
    /// and, if so, look again with the cluster set aside, read from what
    /// they find there too and place replicas there too.
    pub density: bool,
    /// Bounded record stores (for the `spam` adversary); `None`: unbounded.
    pub store: Option<StoreModel>,
    /// Whether honest nodes rate-limit each peer's requests
    /// ([`MAX_REQUESTS_PER_PEER_PER_SEC`], burst [`PEER_REQUEST_BURST`],
    /// scaled by the reputation's `rate_factor`) and report the excess as
    /// [`Evidence::RateViolation`].
    pub rate_limit: bool,
    /// Whether the `spam` adversaries flood during the measurement, and
    /// fetches are deferred until every record was stored (so that stored
    /// records are exposed to the flood for a while).
    pub spam: bool,
}

/// How a simulated node's record store is bounded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreModel {
    /// Records (honest and junk) a node holds at most.
    pub slots: usize,
    /// `Some(q)`: at most `q` records per owner and new records refused
    /// when full (the p2psip store, `overlay::store`); `None`: no quota
    /// and the oldest record evicted when full (a plain cache).
    pub per_owner: Option<usize>,
}

/// Peers a simulated node's reputation table tracks at most (the node's
/// default is `REPUTATION_MAX_PEERS`, 4096): keeps a 10,000-node run's
/// memory modest; the eviction order keeps banned and well-known peers.
pub const SIM_REPUTATION_MAX_PEERS: usize = 256;

/// Honest nodes each spammer floods, fixed for the run (its connections).
pub const SIM_SPAM_TARGETS: usize = 8;

/// A spammer sends this many times the per-peer rate limit to each target.
pub const SIM_SPAM_RATE_FACTOR: u32 = 2;

/// Requests a simulated node serves per second; beyond it, a share of the
/// requests it receives (honest ones included) go unanswered. An
/// assumption of the model, not a measured figure.
pub const SIM_NODE_CAPACITY_PER_SEC: u32 = 1000;

/// Record slots of a simulated store in `spam` runs: the real store holds
/// 64 MiB (tens of thousands of records); scaled down so that a flood of
/// the measurement's few virtual minutes reaches the steady state a long
/// flood would.
pub const SIM_STORE_SLOTS: usize = 1024;

impl Default for SimConfig {
    fn default() -> Self {
        Self {
            nodes: 1000,
            lookups: 1000,
            store_fetch: 100,
            churn_per_min: 0.0,
            seed: 1,
            params: OverlayParams {
                id_difficulty: 0,
                ..OverlayParams::default()
            },
            latency_ms: (10, 100),
            loss: 0.0,
            widen_rounds: 2,
            spread_replicas: true,
            learn_responders: false,
            timeout_ms: 1000,
            interval_ms: 100,
            value_answers: 2,
            update_holders: true,
            reputation: false,
            density: false,
            store: None,
            rate_limit: false,
            spam: false,
        }
    }
}

/// The measured outcome. Every field is a pure function of the config.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// Nodes simulated.
    pub nodes: usize,
    /// Lookups measured.
    pub lookups: usize,
    /// Fraction of lookups that reached their target node.
    pub success_rate: f64,
    /// Median hops to the target (successful lookups).
    pub hops_p50: u32,
    /// 95th percentile of hops.
    pub hops_p95: u32,
    /// Median virtual time until the target answered, ms.
    pub latency_ms_p50: u64,
    /// 95th percentile latency, ms.
    pub latency_ms_p95: u64,
    /// 99th percentile latency, ms.
    pub latency_ms_p99: u64,
    /// Requests sent per measured lookup.
    pub messages_per_lookup: f64,
    /// Store/fetch pairs measured.
    pub store_fetch: usize,
    /// Fraction of fetches that found the stored value.
    pub store_fetch_success_rate: f64,
    /// Fraction of fetches that found only an older version of the value
    /// (a stale copy: a record stored earlier under the same key).
    pub store_fetch_stale_rate: f64,
    /// Nodes that crashed during the measurement.
    pub crashed: usize,
    /// Nodes that joined during the measurement.
    pub joined: usize,
    /// Mean routing-table entries per live node at the end.
    pub table_entries_mean: f64,
    /// Estimated memory per node (routing table and records), bytes.
    pub memory_per_node_bytes: u64,
    /// Virtual duration of the measurement, seconds.
    pub virtual_seconds: f64,
}

impl SimReport {
    /// The report as a JSON object (field names are a stable contract).
    pub fn to_json(&self) -> String {
        format!(
            concat!(
                "{{\"nodes\":{},\"lookups\":{},\"success_rate\":{:.6},\"hops_p50\":{},",
                "\"hops_p95\":{},\"latency_ms_p50\":{},\"latency_ms_p95\":{},",
                "\"latency_ms_p99\":{},\"messages_per_lookup\":{:.3},\"store_fetch\":{},",
                "\"store_fetch_success_rate\":{:.6},\"store_fetch_stale_rate\":{:.6},",
                "\"crashed\":{},\"joined\":{},",
                "\"table_entries_mean\":{:.2},\"memory_per_node_bytes\":{},",
                "\"virtual_seconds\":{:.1}}}"
            ),
            self.nodes,
            self.lookups,
            self.success_rate,
            self.hops_p50,
            self.hops_p95,
            self.latency_ms_p50,
            self.latency_ms_p95,
            self.latency_ms_p99,
            self.messages_per_lookup,
            self.store_fetch,
            self.store_fetch_success_rate,
            self.store_fetch_stale_rate,
            self.crashed,
            self.joined,
            self.table_entries_mean,
            self.memory_per_node_bytes,
            self.virtual_seconds,
        )
    }
}

struct SimNode {
    contact: Contact,
    table: RoutingTable,
    /// Stored values: record key to an opaque value tag.
    records: HashMap<Key, u64>,
    alive: bool,
    behaviour: Behaviour,
    /// The node's first-hand reputation table ([`SimConfig::reputation`],
    /// honest nodes only).
    rep: Option<Box<Reputation>>,
    /// Junk, store order and rate limiters, for nodes a spammer targets.
    inbox: Option<Box<Inbox>>,
}

/// What a node flooded by spammers keeps.
#[derive(Debug, Default)]
struct Inbox {
    /// Token buckets per spamming peer: tokens and last refill (ms).
    buckets: HashMap<usize, (f64, u64)>,
    /// Junk records held per owner.
    junk_per_owner: HashMap<usize, usize>,
    /// Junk records held.
    junk: usize,
    /// Store order (plain-cache stores): `None` is a junk record.
    fifo: VecDeque<Option<Key>>,
    /// Share of the requests this node leaves unanswered during the
    /// current operation (overload).
    overload: f64,
}

/// What a simulated node does with the requests it receives (the
/// adversaries of `attack`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Follows the protocol.
    Honest,
    /// Accepts requests and never answers; stores nothing.
    Drop,
    /// Answers every FindNode and FindValue with the colluding nodes
    /// closest to the target, never with a value, and stores nothing
    /// (S/Kademlia's worst-case adversary: it knows every colluder).
    Misroute,
    /// Routes honestly but answers FindValue with a forged record (one
    /// that fails verification) and stores nothing.
    Forge,
    /// Routes honestly, stores nothing, and floods a few honest nodes
    /// with junk stores and lookups at twice the per-peer rate limit
    /// ([`SimConfig::spam`]).
    Spam,
}

/// A plain cache's eviction: the oldest records go until `slots` fit.
fn evict_oldest(records: &mut HashMap<Key, u64>, inbox: &mut Inbox, slots: usize) {
    while inbox.fifo.len() > slots {
        match inbox.fifo.pop_front() {
            Some(Some(key)) => {
                records.remove(&key);
            }
            Some(None) => inbox.junk = inbox.junk.saturating_sub(1),
            None => break,
        }
    }
}

/// The value tag of a forged record: the requester's verification of it
/// fails (a bad signature or a stale sequence number, in the real node).
pub const FORGED: u64 = u64::MAX;

/// A responder's answer: its closest contacts and the value it holds.
type Answer = (Vec<Contact>, Option<u64>);

/// What one simulated lookup found.
#[derive(Debug, Clone)]
pub struct LookupOutcome {
    /// The k closest nodes that answered, with the hop they were found at.
    pub closest: Vec<(Contact, u32)>,
    /// When (ms after the start) and at which hop the target node itself
    /// answered, if it did.
    pub target_reached: Option<(u64, u32)>,
    /// The value found (FindValue), and when.
    pub value: Option<(u64, u64)>,
    /// Requests sent.
    pub messages: u32,
    /// Forged records received (and refused).
    pub forged: u32,
    /// The closest nodes that answered on each path (of the last round).
    pub per_path: Vec<Vec<Contact>>,
    /// With [`SimConfig::density`]: the dense cluster found near the
    /// target (merged over the widening rounds), if any.
    pub dense: Option<DenseCluster>,
    /// With a dense cluster: the per-path results of the last lookup that
    /// set it aside (where replicas also go).
    pub beyond: Vec<Vec<Contact>>,
    /// The ids the lookup heard of nearest the target, answered or not
    /// (`Lookup::known_closest`): what density detection looks at.
    pub known: Vec<NodeId>,
    /// With [`Goal::Place`]: the nodes that answered with a value, and
    /// the value (bounded by the lookup's own requests).
    pub holders: Vec<(Contact, u64)>,
}

/// What a lookup is for, which decides whether it failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Goal {
    /// The nodes closest to a key (join, refresh, store): no failure
    /// signal, never widened.
    Closest,
    /// The node whose id is the target: failed if it did not answer.
    Node,
    /// A valid record under the target: failed if none came back.
    Value,
    /// The nodes closest to a key, to place a record there: responders
    /// also return what they hold under it ([`LookupOutcome::holders`]),
    /// and the lookup never stops early; no failure signal.
    Place,
}

fn goal_met(goal: Goal, out: &LookupOutcome) -> bool {
    match goal {
        Goal::Closest | Goal::Place => true,
        Goal::Node => out.target_reached.is_some(),
        Goal::Value => out.value.is_some(),
    }
}

/// The simulated overlay.
pub struct Simulator {
    config: SimConfig,
    rng: StdRng,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
    /// Misrouting adversaries by id, sorted: their shared knowledge.
    colluders: Vec<(Key, usize)>,
    /// Draws node ids and roles, apart from `rng`, so that runs of one
    /// seed under different defences create the same nodes in the same
    /// order whatever their lookups consumed.
    id_rng: StdRng,
    /// Virtual time, ms.
    now: u64,
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn percentile<T: Copy + Ord + Default>(sorted: &[T], p: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

impl Simulator {
    /// An empty simulator.
    pub fn new(config: SimConfig) -> Self {
        let rng = StdRng::seed_from_u64(config.seed);
        let id_rng = StdRng::seed_from_u64(splitmix(config.seed ^ 0x001d_5eed));
        Self {
            id_rng,
            config,
            rng,
            nodes: Vec::new(),
            index: HashMap::new(),
            colluders: Vec::new(),
            now: 0,
        }
    }

    /// Number of nodes ever created (live or crashed).
    pub fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// Live nodes.
    pub fn live_nodes(&self) -> usize {
        self.nodes.iter().filter(|n| n.alive).count()
    }

    fn new_node(&mut self) -> usize {
        let mut id = [0u8; 32];
        self.id_rng.fill_bytes(&mut id);
        let ip = self.honest_address(self.nodes.len());
        self.add_node(id, ip, Behaviour::Honest)
    }

    /// Honest nodes are spread over the address space as Internet hosts
    /// are: a hash of the node's number picks its address (unicast,
    /// outside 100.64.0.0/10, which attackers' prefixes come from), so two
    /// honest nodes rarely share a /24 and diversity limits seldom bind.
    fn honest_address(&self, n: usize) -> Ipv4Addr {
        let h = splitmix(0x1a7e_57ad ^ n as u64) as u32;
        let first = 1 + (h >> 24) % 223; // 1..=223
        let first = if first == 100 { 101 } else { first };
        Ipv4Addr::new(
            first as u8,
            (h >> 16) as u8,
            (h >> 8) as u8,
            1 + (h as u8 % 254),
        )
    }

    /// Adds a node with the given id, address and behaviour.
    fn add_node(&mut self, id: [u8; 32], ip: Ipv4Addr, behaviour: Behaviour) -> usize {
        let contact = Contact {
            id: NodeId::from_bytes(id),
            addr: SocketAddr::new(IpAddr::V4(ip), 4433),
        };
        let rep = (self.config.reputation && behaviour == Behaviour::Honest).then(|| {
            Box::new(Reputation::with_policy(Policy {
                max_peers: SIM_REPUTATION_MAX_PEERS,
                ..Policy::default()
            }))
        });
        let node = SimNode {
            contact,
            table: RoutingTable::new(contact.id, &self.config.params),
            records: HashMap::new(),
            alive: true,
            behaviour,
            rep,
            inbox: None,
        };
        let index = self.nodes.len();
        self.index.insert(contact.id, index);
        if behaviour == Behaviour::Misroute {
            let key = Key::from(contact.id);
            let at = self.colluders.partition_point(|(k, _)| *k < key);
            self.colluders.insert(at, (key, index));
        }
        self.nodes.push(node);
        index
    }

    /// The `k` live misrouting colluders closest to `target`: what every
    /// one of them answers. Colluders share one id-sorted list; the ids
    /// sharing the longest prefix with `target` are contiguous in it, so
    /// widening the prefix until `k` fit finds them without a full scan.
    fn colluders_closest(&self, target: &Key, k: usize) -> Vec<Contact> {
        let list = &self.colluders;
        let at = list.partition_point(|(key, _)| key < target);
        let mut lo = at;
        let mut hi = at;
        // Grow the window outwards, then keep the k XOR-closest of a
        // window of 4k around the target's position: the XOR-closest ids
        // of a sorted list lie within it except in rare boundary cases,
        // which only make the adversary slightly weaker.
        while hi - lo < 4 * k && (lo > 0 || hi < list.len()) {
            lo = lo.saturating_sub(1);
            hi = (hi + 1).min(list.len());
        }
        let mut window: Vec<&(Key, usize)> = list
            .get(lo..hi)
            .unwrap_or_default()
            .iter()
            .filter(|(_, i)| self.nodes[*i].alive)
            .collect();
        window.sort_by_key(|(key, _)| target.distance(key));
        window
            .into_iter()
            .take(k)
            .map(|(_, i)| self.nodes[*i].contact)
            .collect()
    }

    /// One-way latency of the link between two nodes, fixed per link.
    fn latency(&self, a: usize, b: usize) -> u64 {
        let (lo, hi) = self.config.latency_ms;
        let (x, y) = if a < b { (a, b) } else { (b, a) };
        let h = splitmix(self.config.seed ^ splitmix((x as u64) << 32 | y as u64));
        lo + h % (hi.saturating_sub(lo) + 1)
    }

    /// `node` learns `peer` as if from an authenticated connection.
    fn learn(&mut self, node: usize, peer: Contact) {
        let now = self.now;
        if self.is_banned_by(node, &peer.id) {
            return;
        }
        let n = &mut self.nodes[node];
        let (outcome, _) = match n.rep.as_deref() {
            Some(rep) => n.table.insert_displacing(peer, now, |resident| {
                !rep.prefer_resident(resident, &peer.id, now)
            }),
            None => (n.table.insert(peer, now), None),
        };
        if let InsertOutcome::Full { ping } = outcome {
            let alive = self
                .index
                .get(&ping.id)
                .is_some_and(|i| self.nodes[*i].alive);
            self.nodes[node].table.on_ping_result(&ping.id, alive, now);
        }
    }

    /// Runs one lookup from `from` for `target`. With `find_value`,
    /// responders holding a record under `target` return it and the lookup
    /// stops at the first value.
    pub fn lookup(&mut self, from: usize, target: Key, find_value: bool) -> LookupOutcome {
        let goal = if find_value {
            Goal::Value
        } else {
            Goal::Closest
        };
        self.lookup_for(from, target, goal)
    }

    /// Whether `node` keeps a reputation table that bans `peer` now.
    fn is_banned_by(&self, node: usize, peer: &NodeId) -> bool {
        self.nodes[node]
            .rep
            .as_ref()
            .is_some_and(|r| r.is_banned(peer, self.now))
    }

    /// Feeds `node`'s reputation table, if it keeps one.
    fn observe(&mut self, node: usize, peer: NodeId, evidence: Evidence, now: u64) -> Verdict {
        match self.nodes[node].rep.as_mut() {
            Some(r) => r.observe(peer, evidence, now),
            None => Verdict::Keep,
        }
    }

    /// Runs one lookup from `from` for `target` with the given goal. When
    /// the configuration is hardened and a node or value lookup fails, it
    /// is widened ([`Lookup::widen`]) up to [`SimConfig::widen_rounds`]
    /// times. With [`SimConfig::density`], a lookup for a key (not for a
    /// node) whose result is implausibly dense for the network size the
    /// node estimates from its own neighbourhood is repeated with the
    /// dense cluster set aside, up to [`DENSITY_WIDEN_ROUNDS`] times while
    /// the new result is dense again; values found in every round count
    /// (the highest wins), and [`LookupOutcome::beyond`] holds the last
    /// round's per-path results for replica placement.
    pub fn lookup_for(&mut self, from: usize, target: Key, goal: Goal) -> LookupOutcome {
        let mut out = self.lookup_round(from, target, goal, None);
        // As the node: no detection on node lookups, nor from a table too
        // small to estimate the overlay's size from.
        if !self.config.density
            || goal == Goal::Node
            || self.nodes[from].table.len() < self.config.params.k
        {
            return out;
        }
        let k = self.config.params.k;
        let own = Key::from(self.nodes[from].contact.id);
        let near: Vec<NodeId> = self.nodes[from]
            .table
            .closest(&own, k + 1)
            .iter()
            .map(|c| c.id)
            .collect();
        let n_est = density::estimate_network_size(&own, &near);
        let mut found: Vec<NodeId> = std::mem::take(&mut out.known);
        for _ in 0..DENSITY_WIDEN_ROUNDS {
            let Some(c) = density::dense_cluster(&target, &found, n_est, k) else {
                break;
            };
            let merged = out.dense.map_or(c, |old| old.merge(c));
            if out.dense == Some(merged) {
                break;
            }
            out.dense = Some(merged);
            let more = self.lookup_round(from, target, goal, Some(merged));
            out.messages += more.messages;
            out.forged += more.forged;
            if more.value.map(|(v, _)| v) > out.value.map(|(v, _)| v) {
                out.value = more.value;
            }
            found = more.known;
            out.beyond = more.per_path;
            out.holders.extend(more.holders);
        }
        out
    }

    /// One lookup (with its [`Lookup::widen`] rounds), setting aside the
    /// ids of `exclude` if given.
    fn lookup_round(
        &mut self,
        from: usize,
        target: Key,
        goal: Goal,
        exclude: Option<DenseCluster>,
    ) -> LookupOutcome {
        let find_value = goal == Goal::Value || goal == Goal::Place;
        let mut rounds_left = self.config.widen_rounds;
        let params = self.config.params.clone();
        let local = self.nodes[from].contact;
        let set_aside = |id: &NodeId| exclude.is_some_and(|c| c.contains(&target, id));
        // With a cluster set aside, the seeds come from beyond it, however
        // much of the table it fills near the key (as the node).
        let reach = if exclude.is_some() {
            usize::MAX
        } else {
            2 * params.k
        };
        let seeds = match self.nodes[from].rep.as_deref() {
            // Banned peers are skipped; the seeds are the k best by
            // standing, then outbound first, then distance, among twice as
            // many closest.
            Some(rep) => {
                let now = self.now;
                let table = &self.nodes[from].table;
                let mut seeds: Vec<Contact> = table
                    .closest(&target, reach)
                    .into_iter()
                    .filter(|c| !rep.is_banned(&c.id, now) && !set_aside(&c.id))
                    .take(2 * params.k)
                    .collect();
                // As the node: standing, then outbound peers, then distance.
                rep.rank_candidates(&mut seeds, now, |c| {
                    (
                        c.id,
                        table.is_outbound(&c.id),
                        target.distance(&Key::from(c.id)),
                    )
                });
                seeds.truncate(params.k);
                seeds
            }
            None => {
                let mut seeds = self.nodes[from].table.closest(&target, reach);
                seeds.retain(|c| !set_aside(&c.id));
                seeds.truncate(params.k);
                seeds
            }
        };
        let suspects: Vec<NodeId> = self.nodes[from]
            .rep
            .as_deref()
            .map_or_else(Vec::new, |rep| {
                seeds
                    .iter()
                    .filter(|c| rep.standing(&c.id, self.now) == Standing::Suspect)
                    .map(|c| c.id)
                    .collect()
            });
        let mut l = Lookup::new(target, seeds, local.id, &params);
        for id in &suspects {
            l.demote(id);
        }
        // (time, sequence, responder index); the answer waits under its
        // sequence number, None for a request that will time out.
        let mut events: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
        let mut answers: HashMap<u64, Option<Answer>> = HashMap::new();
        let mut seq = 0u64;
        let mut t = 0u64;
        let mut values_seen = 0usize;
        let mut out = LookupOutcome {
            closest: Vec::new(),
            target_reached: None,
            value: None,
            messages: 0,
            forged: 0,
            per_path: Vec::new(),
            dense: None,
            beyond: Vec::new(),
            known: Vec::new(),
            holders: Vec::new(),
        };
        let target_node = NodeId::from_bytes(target.0);
        loop {
            while let Some(req) = l.poll_request() {
                let Some(&to) = self.index.get(&req.to.id) else {
                    out.messages += 1;
                    continue;
                };
                if self.is_banned_by(from, &req.to.id) {
                    // Banned since it became a candidate: not asked.
                    l.on_failure(&req.to.id);
                    continue;
                }
                out.messages += 1;
                seq += 1;
                let lost = self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss.min(1.0));
                let overload = self.nodes[to].inbox.as_ref().map_or(0.0, |i| i.overload);
                let overloaded = overload > 0.0 && self.rng.gen_bool(overload.min(1.0));
                let behaviour = self.nodes[to].behaviour;
                if !self.nodes[to].alive || lost || overloaded || behaviour == Behaviour::Drop {
                    events.push(Reverse((t + self.config.timeout_ms, seq, to)));
                    answers.insert(seq, None);
                    continue;
                }
                // The responder learns the requester, then answers with its
                // k closest to the target (and the value if it holds one).
                self.learn(to, local);
                let (contacts, value) = match behaviour {
                    Behaviour::Misroute => (self.colluders_closest(&target, params.k), None),
                    Behaviour::Forge => (
                        self.nodes[to].table.closest(&target, params.k),
                        find_value.then_some(FORGED),
                    ),
                    Behaviour::Honest | Behaviour::Drop | Behaviour::Spam => (
                        self.nodes[to].table.closest(&target, params.k),
                        if find_value {
                            self.nodes[to].records.get(&target).copied()
                        } else {
                            None
                        },
                    ),
                };
                let rtt = 2 * self.latency(from, to);
                events.push(Reverse((t + rtt, seq, to)));
                answers.insert(seq, Some((contacts, value)));
            }
            let Some(Reverse((at, s, to))) = events.pop() else {
                if !goal_met(goal, &out) && rounds_left > 0 && l.widen() {
                    rounds_left -= 1;
                    continue;
                }
                break;
            };
            t = at;
            let peer = self.nodes[to].contact;
            let now = self.now.saturating_add(t);
            match answers.remove(&s).flatten() {
                Some((mut contacts, value)) => {
                    if exclude.is_some() || self.nodes[from].rep.is_some() {
                        let rep = self.nodes[from].rep.as_deref();
                        contacts.retain(|c| {
                            !set_aside(&c.id) && !rep.is_some_and(|r| r.is_banned(&c.id, now))
                        });
                    }
                    l.on_response(&peer.id, &contacts);
                    if let Some(rep) = self.nodes[from].rep.as_deref() {
                        for c in &contacts {
                            if rep.standing(&c.id, now) == Standing::Suspect {
                                l.demote(&c.id);
                            }
                        }
                    }
                    if self.config.learn_responders {
                        self.learn(from, peer);
                    }
                    if peer.id == target_node && out.target_reached.is_none() {
                        let hop = l
                            .result()
                            .iter()
                            .find(|(c, _)| c.id == peer.id)
                            .map_or(0, |(_, h)| *h);
                        out.target_reached = Some((t, hop + 1));
                    }
                    let evidence = match value {
                        // Verification fails: the lookup goes on.
                        Some(FORGED) => {
                            out.forged += 1;
                            Evidence::Misbehaved(Misbehaviour::BadRecord)
                        }
                        Some(v) if goal == Goal::Place => {
                            out.holders.push((peer, v));
                            Evidence::Verified
                        }
                        Some(v) => {
                            values_seen += 1;
                            if out.value.is_none_or(|(best, _)| v > best) {
                                out.value = Some((v, t));
                            }
                            if values_seen >= self.config.value_answers.max(1) {
                                l.finish();
                            }
                            Evidence::Verified
                        }
                        None => Evidence::Answered,
                    };
                    let _ = self.observe(from, peer.id, evidence, now);
                }
                None => {
                    l.on_failure(&peer.id);
                    let now = self.now;
                    self.nodes[from].table.on_failure(&peer.id, now);
                }
            }
            while let Some(fault) = l.poll_fault() {
                if let Some(rep) = self.nodes[from].rep.as_mut() {
                    if !rep.is_banned(&fault.peer, now) {
                        let _ = rep.on_fault(&fault, now);
                    }
                }
            }
            if l.is_finished() && (out.value.is_some() || events.is_empty()) {
                if !goal_met(goal, &out) && rounds_left > 0 && l.widen() {
                    rounds_left -= 1;
                    continue;
                }
                break;
            }
        }
        out.closest = l.result();
        out.per_path = l.result_per_path();
        out.known = l.known_closest(params.k);
        out
    }

    /// A random live node reads `key` back: `Some(true)` if it found
    /// `value`, `Some(false)` if only an older version, `None` if nothing
    /// (or no honest node is alive to read).
    fn read_back(&mut self, key: Key, value: u64) -> Option<bool> {
        if self.live_honest() == 0 {
            return None;
        }
        let reader = self.random_live();
        match self.fetch(reader, key) {
            Some(v) if v == value => Some(true),
            Some(v) if v < value => Some(false),
            _ => None,
        }
    }

    /// Adds a node that joins through a random live node: a lookup of its
    /// own id, then a refresh of every bucket beyond its closest neighbour.
    pub fn join(&mut self) -> usize {
        let me = self.new_node();
        self.join_existing(me);
        me
    }

    /// Joins the node `me` (already added) through a random live node.
    fn join_existing(&mut self, me: usize) {
        // Bootstrap nodes are configured by the operator, so trusted: the
        // node joins through a random live honest one.
        let live: Vec<usize> = (0..me)
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].behaviour == Behaviour::Honest)
            .collect();
        if live.is_empty() {
            return;
        }
        let via = live[self.rng.gen_range(0..live.len())];
        let via_contact = self.nodes[via].contact;
        self.learn(me, via_contact);
        self.nodes[me].table.mark_outbound(&via_contact.id);
        let own = Key::from(self.nodes[me].contact.id);
        let found = self.lookup_round(me, own, Goal::Closest, None);
        self.learn_results(me, &found);
        let nearest_bucket = found
            .closest
            .first()
            .and_then(|(c, _)| own.distance(&Key::from(c.id)).bucket_index())
            .unwrap_or(0);
        // Refresh: one lookup for a random id in each farther bucket that
        // a network of this size can fill (at most ~log2(n) + a few).
        for bucket in (nearest_bucket + 1)..256 {
            let target = self.random_key_in_bucket(own, bucket);
            let found = self.lookup_round(me, target, Goal::Closest, None);
            self.learn_results(me, &found);
            if bucket > nearest_bucket + 24 {
                break;
            }
        }
        self.hand_over_to(me);
    }

    /// A node that does not learn every responder learns the results of
    /// its join and refresh lookups instead, taken across the paths so that
    /// a path an adversary steered brings in at most its share.
    fn learn_results(&mut self, node: usize, found: &LookupOutcome) {
        if self.config.learn_responders {
            return;
        }
        for c in spread_across_paths(&found.per_path, self.config.params.k) {
            self.learn(node, c);
            // It answered this node's own lookup: an outbound peer.
            self.nodes[node].table.mark_outbound(&c.id);
        }
    }

    /// Hand-over to a newcomer: each of its closest neighbours gives it
    /// the records for which, in the neighbour's own view, the newcomer is
    /// now among the `replication` closest nodes (Kademlia's rule, so a
    /// new node closer to a key holds what it should without waiting for
    /// the next republish). Work is bounded by k neighbours' records.
    fn hand_over_to(&mut self, newcomer: usize) {
        let own = Key::from(self.nodes[newcomer].contact.id);
        let id = self.nodes[newcomer].contact.id;
        let r = self.config.params.replication;
        let neighbours = self.nodes[newcomer]
            .table
            .closest(&own, self.config.params.k);
        let mut given = Vec::new();
        for n in neighbours {
            let Some(&j) = self.index.get(&n.id) else {
                continue;
            };
            if !self.nodes[j].alive {
                continue;
            }
            for (key, value) in &self.nodes[j].records {
                let closest = self.nodes[j].table.closest(key, r);
                if closest.iter().any(|c| c.id == id) {
                    given.push((*key, *value));
                }
            }
        }
        for (key, value) in given {
            self.put_record(newcomer, key, value);
        }
    }

    /// A graceful leave: `node` stores each of its records on the
    /// `replication` closest other live nodes it finds, its neighbours
    /// forget it (the real node's "shutting down" close), and it stops.
    pub fn leave(&mut self, node: usize) {
        let Some(leaver) = self.nodes.get(node).filter(|n| n.alive) else {
            return;
        };
        let leaver_id = leaver.contact.id;
        let mut records: Vec<(Key, u64)> = leaver.records.iter().map(|(k, v)| (*k, *v)).collect();
        records.sort_unstable_by_key(|(k, _)| *k);
        let r = self.config.params.replication;
        for (key, value) in records {
            let found = self.lookup_round(node, key, Goal::Closest, None);
            let targets: Vec<usize> = found
                .closest
                .iter()
                .filter_map(|(c, _)| self.index.get(&c.id).copied())
                .filter(|i| *i != node && self.nodes[*i].alive)
                .take(r)
                .filter(|i| self.nodes[*i].behaviour == Behaviour::Honest)
                .collect();
            for t in targets {
                self.put_record(t, key, value);
            }
        }
        for i in 0..self.nodes.len() {
            if i != node && self.nodes[i].table.contains(&leaver_id) {
                // Told directly: no need to wait for failed pings.
                self.nodes[i].table.remove(&leaver_id);
            }
        }
        self.nodes[node].alive = false;
    }

    fn random_key_in_bucket(&mut self, own: Key, bucket: usize) -> Key {
        let mut k = [0u8; 32];
        self.rng.fill_bytes(&mut k);
        // Same bits as `own` above the bucket's bit, that bit flipped.
        let bit = 255 - bucket; // index from the most significant bit
        let mut out = [0u8; 32];
        for i in 0..256 {
            let byte = i / 8;
            let mask = 0x80u8 >> (i % 8);
            let b = match i.cmp(&bit) {
                std::cmp::Ordering::Less => own.0[byte] & mask,
                std::cmp::Ordering::Equal => !own.0[byte] & mask,
                std::cmp::Ordering::Greater => k[byte] & mask,
            };
            out[byte] |= b;
        }
        Key(out)
    }

    /// Crashes a random live node other than `keep`; returns it.
    fn crash_random(&mut self, keep: &HashSet<usize>) -> Option<usize> {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && !keep.contains(i))
            .collect();
        if live.is_empty() {
            return None;
        }
        let victim = live[self.rng.gen_range(0..live.len())];
        self.nodes[victim].alive = false;
        Some(victim)
    }

    /// A random live honest node (every node, when there are no
    /// adversaries): whom measured operations start from and look for.
    ///
    /// # Panics
    ///
    /// If no honest node is alive; [`Simulator::measure`] checks
    /// [`Simulator::live_honest`] first.
    fn random_live(&mut self) -> usize {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].behaviour == Behaviour::Honest)
            .collect();
        live[self.rng.gen_range(0..live.len())]
    }

    /// Live honest nodes.
    fn live_honest(&self) -> usize {
        self.nodes
            .iter()
            .filter(|n| n.alive && n.behaviour == Behaviour::Honest)
            .count()
    }

    /// Stores `value` under `key` from `from` on the `replication` closest
    /// nodes its lookup finds; returns how many hold it. With
    /// [`SimConfig::reputation`], peers that may not hold a replica are
    /// passed over for the next ones; with a dense cluster found near the
    /// key ([`SimConfig::density`]), as many replicas again go to the
    /// nodes found beyond it.
    pub fn store(&mut self, from: usize, key: Key, value: u64) -> usize {
        let goal = if self.config.update_holders {
            Goal::Place
        } else {
            Goal::Closest
        };
        let found = self.lookup_for(from, key, goal);
        let r = self.config.params.replication;
        let now = self.now;
        let rep = self.nodes[from].rep.as_deref();
        let eligible = |c: &Contact| rep.is_none_or(|r| r.may_hold_replica(&c.id, now));
        let mut placement: Vec<Contact> = if self.config.spread_replicas {
            spread_across_paths(&found.per_path, usize::MAX)
        } else {
            found.closest.into_iter().map(|(c, _)| c).collect()
        };
        placement.retain(eligible);
        placement.truncate(r);
        if found.dense.is_some() {
            let mut beyond = spread_across_paths(&found.beyond, usize::MAX);
            beyond.retain(|c| eligible(c) && !placement.iter().any(|p| p.id == c.id));
            beyond.truncate(r);
            placement.extend(beyond);
        }
        // Holders of older versions get the new one too (at most r more).
        let mut stale: Vec<Contact> = found
            .holders
            .iter()
            .filter(|(c, v)| *v < value && !placement.iter().any(|p| p.id == c.id))
            .map(|(c, _)| *c)
            .collect();
        stale.dedup_by_key(|c| c.id);
        stale.truncate(r);
        placement.extend(stale);
        let mut stored = 0;
        for c in placement {
            if let Some(&i) = self.index.get(&c.id) {
                // Adversaries acknowledge (or not) and keep nothing.
                if self.nodes[i].alive
                    && self.nodes[i].behaviour == Behaviour::Honest
                    && self.put_record(i, key, value)
                {
                    stored += 1;
                }
            }
        }
        stored
    }

    /// `node` stores `value` under `key` if it is newer than what it holds
    /// (a holder never rolls a record back), within its store's bounds
    /// ([`SimConfig::store`]). Returns whether it holds `value` now.
    fn put_record(&mut self, node: usize, key: Key, value: u64) -> bool {
        let model = self.config.store;
        let n = &mut self.nodes[node];
        match n.records.get(&key) {
            Some(v) if *v >= value => return *v == value,
            Some(_) => {
                n.records.insert(key, value);
                return true;
            }
            None => {}
        }
        if let (Some(model), Some(inbox)) = (model, n.inbox.as_deref_mut()) {
            match model.per_owner {
                Some(_) => {
                    if n.records.len() + inbox.junk >= model.slots {
                        return false;
                    }
                }
                None => {
                    inbox.fifo.push_back(Some(key));
                    n.records.insert(key, value);
                    evict_oldest(&mut n.records, inbox, model.slots);
                    return n.records.contains_key(&key);
                }
            }
        }
        n.records.insert(key, value);
        true
    }

    /// Fetches the value under `key` from `from`.
    pub fn fetch(&mut self, from: usize, key: Key) -> Option<u64> {
        self.lookup(from, key, true).value.map(|(v, _)| v)
    }

    /// Every holder of `key` re-stores it on the closest nodes it finds
    /// (the periodic and churn-triggered republish).
    pub fn republish(&mut self, key: Key) {
        let holders: Vec<(usize, u64)> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .filter_map(|i| self.nodes[i].records.get(&key).map(|v| (i, *v)))
            .collect();
        for (holder, value) in holders {
            self.store(holder, key, value);
        }
    }

    /// Table maintenance: every live node checks the liveness of its
    /// residents (the periodic ping of a real node) and evicts the dead.
    pub fn maintain(&mut self) {
        let now = self.now;
        for i in 0..self.nodes.len() {
            if !self.nodes[i].alive {
                continue;
            }
            let dead: Vec<NodeId> = self.nodes[i]
                .table
                .entries()
                .map(|(_, c, _, _)| c.id)
                .filter(|id| self.index.get(id).is_some_and(|j| !self.nodes[*j].alive))
                .collect();
            for id in dead {
                self.nodes[i].table.on_ping_result(&id, false, now);
            }
        }
    }

    /// The live nodes holding `key`.
    pub fn holders(&self, key: &Key) -> Vec<usize> {
        (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive && self.nodes[*i].records.contains_key(key))
            .collect()
    }

    /// Crashes the given nodes.
    pub fn crash(&mut self, nodes: &[usize]) {
        for n in nodes {
            if let Some(node) = self.nodes.get_mut(*n) {
                node.alive = false;
            }
        }
    }

    /// The spam plan: each spammer's [`SIM_SPAM_TARGETS`] honest targets,
    /// drawn from a hash of the seed (the same under every defence). Each
    /// target gets an [`Inbox`].
    fn spam_plan(&mut self) -> Vec<(usize, Vec<usize>)> {
        let n = self.nodes.len() as u64;
        let mut plan = Vec::new();
        for s in 0..self.nodes.len() {
            if self.nodes[s].behaviour != Behaviour::Spam {
                continue;
            }
            let mut targets = Vec::new();
            for attempt in 0..(SIM_SPAM_TARGETS as u64 * 16) {
                if targets.len() >= SIM_SPAM_TARGETS || n == 0 {
                    break;
                }
                let h = splitmix(self.config.seed ^ splitmix((s as u64) << 20 | attempt));
                let t = (h % n) as usize;
                if self.nodes[t].behaviour == Behaviour::Honest && !targets.contains(&t) {
                    targets.push(t);
                }
            }
            for t in &targets {
                self.nodes[*t].inbox.get_or_insert_with(Default::default);
            }
            plan.push((s, targets));
        }
        plan
    }

    /// One operation's worth ([`SimConfig::interval_ms`]) of spam: every
    /// live spammer sends [`SIM_SPAM_RATE_FACTOR`] times the per-peer rate
    /// limit to each of its targets, half junk stores (each under a fresh
    /// key, owned by the spammer), half junk lookups. With
    /// [`SimConfig::rate_limit`], a target admits what its token bucket
    /// for that peer allows, reports the excess to its reputation table as
    /// [`Evidence::RateViolation`] (which bans the spammer soon), and
    /// refuses a banned spammer outright. Admitted junk stores obey the
    /// store model; admitted requests beyond [`SIM_NODE_CAPACITY_PER_SEC`]
    /// overload the target, which then leaves that share of all requests
    /// unanswered until the next operation.
    fn flood(&mut self, plan: &[(usize, Vec<usize>)]) {
        let now = self.now;
        let interval_s = self.config.interval_ms as f64 / 1000.0;
        let per_op =
            (f64::from(MAX_REQUESTS_PER_PEER_PER_SEC * SIM_SPAM_RATE_FACTOR) * interval_s) as usize;
        let capacity = f64::from(SIM_NODE_CAPACITY_PER_SEC) * interval_s;
        let rate = f64::from(MAX_REQUESTS_PER_PEER_PER_SEC);
        let burst = f64::from(PEER_REQUEST_BURST);
        let mut load: HashMap<usize, usize> = HashMap::new();
        for (s, targets) in plan {
            if !self.nodes[*s].alive {
                continue;
            }
            let spammer = self.nodes[*s].contact.id;
            for &t in targets {
                if !self.nodes[t].alive {
                    continue;
                }
                let mut admitted = per_op;
                if self.config.rate_limit {
                    let SimNode { rep, inbox, .. } = &mut self.nodes[t];
                    let Some(inbox) = inbox.as_deref_mut() else {
                        continue;
                    };
                    // Without reputation (`--without reputation`) the limit
                    // still applies, unscaled, and nobody is banned.
                    let rep = rep.as_deref_mut();
                    if rep.as_deref().is_some_and(|r| r.is_banned(&spammer, now)) {
                        continue;
                    }
                    let factor = rep.as_deref().map_or(1.0, |r| r.rate_factor(&spammer, now));
                    let bucket = inbox.buckets.entry(*s).or_insert((burst * factor, now));
                    let elapsed = now.saturating_sub(bucket.1) as f64 / 1000.0;
                    bucket.0 = (bucket.0 + rate * factor * elapsed).min(burst * factor);
                    bucket.1 = now;
                    admitted = (bucket.0.max(0.0) as usize).min(per_op);
                    bucket.0 -= admitted as f64;
                    if let Some(rep) = rep {
                        for _ in admitted..per_op {
                            if rep.observe(spammer, Evidence::RateViolation, now) != Verdict::Keep {
                                break;
                            }
                        }
                    }
                }
                *load.entry(t).or_default() += admitted;
                let stores = admitted / 2;
                let model = self.config.store;
                let node = &mut self.nodes[t];
                if let (Some(model), Some(inbox)) = (model, node.inbox.as_deref_mut()) {
                    for _ in 0..stores {
                        match model.per_owner {
                            Some(quota) => {
                                let mine = inbox.junk_per_owner.entry(*s).or_default();
                                if *mine >= quota || node.records.len() + inbox.junk >= model.slots
                                {
                                    break;
                                }
                                *mine += 1;
                                inbox.junk += 1;
                            }
                            None => {
                                inbox.fifo.push_back(None);
                                inbox.junk += 1;
                                evict_oldest(&mut node.records, inbox, model.slots);
                            }
                        }
                    }
                }
            }
        }
        for (_, targets) in plan {
            for &t in targets {
                if let Some(inbox) = self.nodes[t].inbox.as_deref_mut() {
                    let a = load.get(&t).copied().unwrap_or(0) as f64;
                    inbox.overload = if a > capacity {
                        (a - capacity) / a
                    } else {
                        0.0
                    };
                }
            }
        }
    }

    /// Builds the overlay: `config.nodes` nodes joining one after another.
    pub fn bootstrap(&mut self) {
        for _ in 0..self.config.nodes {
            self.join();
        }
    }

    /// Bootstraps, then measures lookups and store/fetch pairs under churn.
    pub fn run(&mut self) -> SimReport {
        self.bootstrap();
        self.measure(|pair| {
            let mut key = [0u8; 32];
            key.copy_from_slice(&Sha256::digest(format!("sim-record-{pair}")));
            Key(key)
        })
    }

    /// Measures `config.lookups` lookups of random live honest nodes from
    /// random live honest nodes, then `config.store_fetch` stores (of the
    /// key `key_of(pair)`) each followed by a fetch from another random
    /// node, under churn.
    pub(crate) fn measure(&mut self, key_of: impl Fn(usize) -> Key) -> SimReport {
        let start = self.now;
        let mut churn_debt = 0.0f64;
        let churn_per_op =
            self.config.churn_per_min * self.config.nodes as f64 * self.config.interval_ms as f64
                / 60_000.0;
        let (mut crashed, mut joined) = (0usize, 0usize);
        let mut hops = Vec::new();
        let mut latencies = Vec::new();
        let mut messages = 0u64;
        let mut successes = 0usize;
        let plan = if self.config.spam {
            self.spam_plan()
        } else {
            Vec::new()
        };
        let mut churn = |sim: &mut Simulator, debt: &mut f64, keep: &HashSet<usize>| {
            if !plan.is_empty() {
                sim.flood(&plan);
            }
            *debt += churn_per_op;
            while *debt >= 1.0 {
                *debt -= 1.0;
                if sim.crash_random(keep).is_some() {
                    crashed += 1;
                }
                sim.join();
                joined += 1;
            }
        };
        for _ in 0..self.config.lookups {
            self.now += self.config.interval_ms;
            churn(self, &mut churn_debt, &HashSet::new());
            // Churn may have crashed every honest node: nothing to measure
            // from, the lookup fails.
            if self.live_honest() == 0 {
                continue;
            }
            let from = self.random_live();
            let mut to = self.random_live();
            while to == from && self.live_honest() > 1 {
                to = self.random_live();
            }
            let target = Key::from(self.nodes[to].contact.id);
            let out = self.lookup_for(from, target, Goal::Node);
            messages += u64::from(out.messages);
            if let Some((t, h)) = out.target_reached {
                successes += 1;
                hops.push(h);
                latencies.push(t);
            }
        }
        let (mut fetched, mut stale) = (0usize, 0usize);
        // With spam, every record is stored first and fetched afterwards,
        // so that it is exposed to the flood for a while.
        let deferred = self.config.spam;
        let mut written: Vec<(Key, u64)> = Vec::new();
        for pair in 0..self.config.store_fetch {
            self.now += self.config.interval_ms;
            let key = key_of(pair);
            // Increasing with the pair (a later store is a newer record of
            // its key), never the forged tag.
            let value = ((pair as u64 + 1) << 31) | (self.rng.next_u64() & 0x7fff_ffff);
            if self.live_honest() == 0 {
                continue;
            }
            let writer = self.random_live();
            self.store(writer, key, value);
            churn(self, &mut churn_debt, &HashSet::from([writer]));
            if deferred {
                written.push((key, value));
                continue;
            }
            match self.read_back(key, value) {
                Some(true) => fetched += 1,
                Some(false) => stale += 1,
                None => {}
            }
        }
        for (key, value) in written {
            self.now += self.config.interval_ms;
            churn(self, &mut churn_debt, &HashSet::new());
            match self.read_back(key, value) {
                Some(true) => fetched += 1,
                Some(false) => stale += 1,
                None => {}
            }
        }
        hops.sort_unstable();
        latencies.sort_unstable();
        let live: Vec<&SimNode> = self.nodes.iter().filter(|n| n.alive).collect();
        let entries: usize = live.iter().map(|n| n.table.len()).sum();
        let records: usize = live.iter().map(|n| n.records.len()).sum();
        let live_n = live.len().max(1);
        // Per entry: contact (32 + 28) + two timestamps; per bucket vector
        // headers; per record: key + tag + map overhead (estimates).
        let per_node = std::mem::size_of::<SimNode>() as u64
            + 256 * 56
            + (entries as u64 * 80 + records as u64 * 64) / live_n as u64;
        SimReport {
            nodes: self.config.nodes,
            lookups: self.config.lookups,
            success_rate: successes as f64 / self.config.lookups.max(1) as f64,
            hops_p50: percentile(&hops, 0.5),
            hops_p95: percentile(&hops, 0.95),
            latency_ms_p50: percentile(&latencies, 0.5),
            latency_ms_p95: percentile(&latencies, 0.95),
            latency_ms_p99: percentile(&latencies, 0.99),
            messages_per_lookup: messages as f64 / self.config.lookups.max(1) as f64,
            store_fetch: self.config.store_fetch,
            store_fetch_success_rate: fetched as f64 / self.config.store_fetch.max(1) as f64,
            store_fetch_stale_rate: stale as f64 / self.config.store_fetch.max(1) as f64,
            crashed,
            joined,
            table_entries_mean: entries as f64 / live_n as f64,
            memory_per_node_bytes: per_node,
            virtual_seconds: (self.now - start) as f64 / 1000.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn small(seed: u64) -> SimConfig {
        SimConfig {
            nodes: 200,
            lookups: 200,
            store_fetch: 20,
            seed,
            ..SimConfig::default()
        }
    }

    #[test]
    fn same_seed_same_report_byte_for_byte() {
        let tiny = |seed| SimConfig {
            nodes: 100,
            lookups: 100,
            store_fetch: 10,
            churn_per_min: 0.05,
            loss: 0.01,
            ..small(seed)
        };
        let a = Simulator::new(tiny(7)).run().to_json();
        let b = Simulator::new(tiny(7)).run().to_json();
        assert_eq!(a, b);
        let c = Simulator::new(tiny(8)).run().to_json();
        assert_ne!(a, c, "another seed, another run");
    }

    #[test]
    fn a_stable_overlay_finds_every_node_in_few_hops() {
        let r = Simulator::new(small(1)).run();
        assert_eq!(r.success_rate, 1.0, "{r:?}");
        assert_eq!(r.store_fetch_success_rate, 1.0, "{r:?}");
        assert!(r.hops_p50 <= 3, "{r:?}");
        assert!(r.table_entries_mean > 20.0, "{r:?}");
    }

    #[test]
    fn records_survive_the_crash_of_30_percent_of_their_holders() {
        let mut sim = Simulator::new(small(3));
        sim.bootstrap();
        let key = Key(Sha256::digest(b"survivor").into());
        let writer = sim.random_live();
        let stored = sim.store(writer, key, 42);
        assert_eq!(stored, 20, "stored on the replication factor's nodes");
        let holders = sim.holders(&key);
        let doomed: Vec<usize> = holders
            .iter()
            .copied()
            .take(holders.len() * 3 / 10)
            .collect();
        assert_eq!(doomed.len(), 6);
        sim.crash(&doomed);
        assert_eq!(sim.holders(&key).len(), 14);
        // Right after the crash, before anyone noticed: still found.
        for _ in 0..10 {
            let reader = sim.random_live();
            assert_eq!(sim.fetch(reader, key), Some(42));
        }
        // Once tables have dropped the dead (periodic liveness checks),
        // republishing restores the replication factor on live nodes.
        sim.maintain();
        sim.republish(key);
        assert!(sim.holders(&key).len() >= 20, "{}", sim.holders(&key).len());
        for _ in 0..20 {
            let reader = sim.random_live();
            assert_eq!(sim.fetch(reader, key), Some(42));
        }
    }

    /// The `n` live nodes closest to `key`, by the true distance.
    fn truly_closest(sim: &Simulator, key: &Key, n: usize) -> Vec<usize> {
        let mut live: Vec<usize> = (0..sim.nodes.len())
            .filter(|i| sim.nodes[*i].alive)
            .collect();
        live.sort_by_key(|i| key.distance(&Key::from(sim.nodes[*i].contact.id)));
        live.truncate(n);
        live
    }

    #[test]
    fn a_graceful_leave_hands_its_records_over_and_is_forgotten() {
        let mut sim = Simulator::new(small(5));
        sim.bootstrap();
        let key = Key(Sha256::digest(b"leaver").into());
        let writer = sim.random_live();
        assert_eq!(sim.store(writer, key, 7), 20);
        let leavers: Vec<usize> = sim.holders(&key).into_iter().take(5).collect();
        for l in &leavers {
            let id = sim.nodes[*l].contact.id;
            sim.leave(*l);
            assert!(
                sim.nodes
                    .iter()
                    .filter(|n| n.alive)
                    .all(|n| !n.table.contains(&id)),
                "no live table keeps a node that said goodbye"
            );
        }
        // No maintenance, no republish: the leavers' copies moved on.
        assert!(sim.holders(&key).len() >= 20, "{}", sim.holders(&key).len());
        let closest = truly_closest(&sim, &key, 20);
        let held = closest
            .iter()
            .filter(|i| sim.nodes[**i].records.contains_key(&key))
            .count();
        assert!(held >= 19, "{held} of the 20 closest hold the record");
        for _ in 0..10 {
            let reader = sim.random_live();
            assert_eq!(sim.fetch(reader, key), Some(7));
        }
    }

    #[test]
    fn newcomers_closer_to_a_key_receive_its_records() {
        let mut sim = Simulator::new(small(6));
        sim.bootstrap();
        let keys: Vec<Key> = (0..20u8).map(|i| Key(Sha256::digest([i]).into())).collect();
        for (i, key) in keys.iter().enumerate() {
            let writer = sim.random_live();
            assert_eq!(sim.store(writer, *key, i as u64), 20);
        }
        let first_newcomer = sim.nodes.len();
        for _ in 0..100 {
            sim.join();
        }
        // Newcomers that are now among a key's 20 closest nodes.
        let (mut should, mut hold) = (0, 0);
        for key in &keys {
            for i in truly_closest(&sim, key, 20) {
                if i >= first_newcomer {
                    should += 1;
                    if sim.nodes[i].records.contains_key(key) {
                        hold += 1;
                    }
                }
            }
        }
        assert!(
            should >= 50,
            "100 joins into 200 nodes: a third of each closest set is new ({should})"
        );
        assert!(
            hold * 100 >= should * 95,
            "{hold} of {should} newcomers hold what they should"
        );
    }

    #[test]
    fn lookups_survive_churn() {
        let r = Simulator::new(SimConfig {
            churn_per_min: 0.05,
            ..small(4)
        })
        .run();
        assert!(r.crashed > 0 && r.joined == r.crashed, "{r:?}");
        assert!(r.success_rate >= 0.97, "{r:?}");
    }
}

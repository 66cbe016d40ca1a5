//! A deterministic simulator of the overlay: thousands of nodes, each
//! running the node's own sans-IO core — its [`Peers`] (routing table,
//! reputation, the one enforcement path), one [`Query`] per lookup and
//! the placement rules of [`crate::overlay::placement`] — on a virtual
//! clock over a virtual network with per-link latency, loss and churn.
//! Same configuration and seed, same report, byte for byte.
//!
//! The simulator is a driver, as the node is: it carries requests and
//! answers, times them out and resolves the core's actions. Which peer to
//! ask, when to widen a lookup or repeat it beyond a dense cluster, when
//! a value read stops, where replicas go, whom to admit, evict or ban and
//! which buckets a joining node refreshes are decided in the core, so the
//! figures describe the node's policy, not a copy of it.
//!
//! What is simulated: FindNode / FindValue / Store exchanges. A responder
//! learns the requester as a verified listener (every simulated node
//! listens at its address) and answers with its `k` closest known
//! contacts and, for FindValue, the value it holds; the requester judges
//! the records ([`RecordsJudged`]) and its query the rest. Pings the core
//! asks for are resolved at once (a live resident always stays);
//! unanswered requests time out ([`Failure::Timeout`]). Join: the
//! bootstrap node learned as an outbound peer, a lookup of the node's own
//! id whose result is learned across paths ([`Peers::learn_found`]), then
//! what the core's [`JoinPlan`] says: one lookup per bucket of
//! [`crate::overlay::placement::join_refresh_buckets`], or, when the lookup found nobody, the same
//! again after a back-off on the virtual clock. Churn-driven hand-over and
//! repair are the node's: every honest node drains its core's churn
//! queue ([`Peers::poll_churn`]) and pushes what [`churn_pushes`] names,
//! as the node's upkeep does. Record values are
//! opaque tags whose order is their sequence number (a holder keeps the
//! highest; a reader takes the highest it got); forged records are one
//! reserved tag ([`FORGED`]), judged as [`Misbehaviour::BadRecord`].
//! Adversaries are in [`attack`]. The defences every honest node's core
//! runs are [`SimConfig::defences`]. A flooded node admits each junk
//! request through the core's [`Peers::admit_request`] (ban, rate factor,
//! token buckets, evidence), as the node's server does; a holder runs the
//! core's responsibility check ([`Peers::is_responsible`]) on every
//! replica stored on it by another node, and a bounded store admits a new
//! record by the store's own rule ([`admit_new_slot`]). What is the
//! simulator's own: the flood ([`SimConfig::spam`]), the store's size in
//! records ([`SimConfig::store`]) and the plain cache of the baselines.

pub mod attack;
mod membership;
mod records;
mod spam;

use crate::identity::NodeId;
use crate::limits::{
    MAX_HANDOVER_RECORDS, MAX_PENDING_CHURN_EVENTS, MAX_REQUESTS_PER_PEER_PER_SEC,
};
use crate::overlay::config::OverlayParams;
use crate::overlay::key::Key;
use crate::overlay::peers::{
    Admission, ChurnEvent, Defences, Failure, ListenProof, PeerAction, Peers,
};
use crate::overlay::placement::{
    churn_contact, churn_pushes, nearest_held, place_replicas, republish_targets, JoinPlan,
    JoinStep, Replica,
};
use crate::overlay::query::{Found, Goal, Query, RecordsJudged};
use crate::overlay::rate::RefusalStreak;
use crate::overlay::routing::Contact;
use crate::overlay::store::{admit_new_slot, StoreLimits};
use crate::reputation::{Evidence, Misbehaviour, Policy};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
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
    /// The defences every honest node's core runs: [`Defences::P2PSIP`]
    /// (what the node runs) by default; the attack baselines run
    /// [`Defences::KADEMLIA`] and [`Defences::SKADEMLIA`]. With
    /// reputation, each honest node's table is capped at
    /// [`SIM_REPUTATION_MAX_PEERS`] peers.
    pub defences: Defences,
    /// How long a requester waits for an answer, in ms.
    pub timeout_ms: u64,
    /// Virtual time between two measured operations, in ms.
    pub interval_ms: u64,
    /// Bounded record stores (for the `spam` adversary); `None`: unbounded.
    pub store: Option<StoreModel>,
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
    /// when full (the p2psip store: [`admit_new_slot`], the rule of
    /// [`crate::overlay::store::RecordStore::put`]); `None`: no quota and
    /// the oldest record evicted when full (a plain cache).
    pub per_owner: Option<usize>,
}

impl StoreModel {
    /// The p2psip store's bounds in the simulator's units, if it models
    /// one: its records are all of one size, so each costs one unit of
    /// [`StoreLimits::max_bytes`] and the bound is [`StoreModel::slots`].
    fn limits(&self) -> Option<StoreLimits> {
        self.per_owner.map(|quota| StoreLimits {
            max_slots_per_owner: quota,
            max_bytes: self.slots,
        })
    }
}

/// What a simulated record costs against [`StoreModel::limits`].
const SIM_RECORD_COST: usize = 1;

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
            defences: Defences::P2PSIP,
            timeout_ms: 1000,
            interval_ms: 100,
            store: None,
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
    /// The node's core: routing table, reputation and the decisions built
    /// on them (honest nodes run [`SimConfig::defences`], adversaries the
    /// same without reputation or density detection: they keep a table
    /// only to answer from).
    peers: Peers,
    /// Stored values: record key to an opaque value tag.
    records: HashMap<Key, u64>,
    alive: bool,
    behaviour: Behaviour,
    /// Junk, store order and connections, for nodes a spammer targets.
    inbox: Option<Box<Inbox>>,
    /// A join waiting to be tried again: its plan and bootstrap node.
    joining: Option<(JoinPlan, Contact)>,
}

/// What a node flooded by spammers keeps.
#[derive(Debug, Default)]
struct Inbox {
    /// The connection of each spamming peer: its requests refused in a
    /// row ([`Peers::admit_request`]; the token buckets are the core's).
    streaks: HashMap<usize, RefusalStreak>,
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

/// How the requester judges the value an answer carried: a forged record
/// proves misbehaviour ([`Misbehaviour::BadRecord`]); any other tag is a
/// record that verified, of that sequence.
fn judge(value: Option<u64>) -> RecordsJudged {
    match value {
        Some(FORGED) => RecordsJudged {
            best_seq: None,
            worst: Some(Evidence::Misbehaved(Misbehaviour::BadRecord)),
        },
        best_seq => RecordsJudged {
            best_seq,
            worst: None,
        },
    }
}

/// What becomes of one request.
enum Reply {
    /// An answer: the responder's contacts and the value it returned.
    Answer(Vec<Contact>, Option<u64>),
    /// The responder refused the connection: it bans the requester.
    Refused,
    /// Nothing comes back (a dead, overloaded or silent responder, or a
    /// lost message): the requester times out.
    Silent,
}

/// What one driven query found, and what it cost.
struct Run {
    /// What the core's query found.
    found: Found,
    /// Requests sent (candidates the core skipped as banned are not).
    messages: u32,
    /// When the target node itself answered, ms after the start (with
    /// [`Found::target_hop`]).
    target_ms: Option<u64>,
    /// Virtual time at which the query ended.
    end: u64,
}

/// The simulated overlay.
pub struct Simulator {
    config: SimConfig,
    rng: ChaCha8Rng,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
    /// Misrouting adversaries by id, sorted: their shared knowledge.
    colluders: Vec<(Key, usize)>,
    /// Draws node ids and roles, apart from `rng`, so that runs of one
    /// seed under different defences create the same nodes in the same
    /// order whatever their lookups consumed.
    id_rng: ChaCha8Rng,
    /// Virtual time, ms.
    now: u64,
    /// Joins to try again: (when, node), earliest first.
    join_retries: BinaryHeap<Reverse<(u64, usize)>>,
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
        let rng = ChaCha8Rng::seed_from_u64(config.seed);
        let id_rng = ChaCha8Rng::seed_from_u64(splitmix(config.seed ^ 0x001d_5eed));
        Self {
            id_rng,
            config,
            rng,
            nodes: Vec::new(),
            index: HashMap::new(),
            colluders: Vec::new(),
            now: 0,
            join_retries: BinaryHeap::new(),
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
        let defences = if behaviour == Behaviour::Honest {
            self.config.defences
        } else {
            Defences {
                reputation: false,
                density: false,
                ..self.config.defences
            }
        };
        let policy = Policy {
            max_peers: SIM_REPUTATION_MAX_PEERS,
            ..Policy::default()
        };
        let mut peers = Peers::new(contact.id, &self.config.params, defences, policy);
        if behaviour == Behaviour::Honest {
            // Adversaries hold nothing to hand over.
            peers.keep_churn(MAX_PENDING_CHURN_EVENTS);
        }
        let node = SimNode {
            contact,
            peers,
            records: HashMap::new(),
            alive: true,
            behaviour,
            inbox: None,
            joining: None,
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

    /// Runs one query of the core from `from` for `target`: sends what the
    /// query asks for, delivers each answer or timeout on the virtual
    /// clock (per-link latency, loss, overload, the responder's
    /// behaviour) and carries out the core's actions, until the query is
    /// over. Answers still in flight then are dropped, as a node drops the
    /// requests of a finished lookup.
    fn query(&mut self, from: usize, target: Key, goal: Goal) -> Run {
        let start = self.now;
        let requester = self.nodes[from].contact;
        let target_node = NodeId::from_bytes(target.0);
        let mut q = Query::new(&self.nodes[from].peers, start, target, goal);
        let values = q.wants_values();
        // (time after the start, sequence); what the request brings back
        // waits under its sequence number.
        let mut events: BinaryHeap<Reverse<(u64, u64)>> = BinaryHeap::new();
        let mut replies: HashMap<u64, (Contact, Reply)> = HashMap::new();
        let (mut seq, mut t, mut messages) = (0u64, 0u64, 0u32);
        let mut target_ms = None;
        loop {
            let now = start + t;
            while let Some(to) = q.poll_request(&mut self.nodes[from].peers, now) {
                messages += 1;
                seq += 1;
                let (reply, delay) = self.serve(from, requester, to, &target, values, now);
                events.push(Reverse((t + delay, seq)));
                replies.insert(seq, (to, reply));
            }
            self.drain_actions(from, now);
            if q.is_finished() {
                break;
            }
            // Nothing in flight and nothing to ask: cannot happen with the
            // core's lookup (a path with a candidate to ask asks it), but
            // never wait for ever.
            let Some(Reverse((at, s))) = events.pop() else {
                break;
            };
            t = at;
            let now = start + t;
            let Some((to, reply)) = replies.remove(&s) else {
                continue;
            };
            let peers = &mut self.nodes[from].peers;
            match reply {
                Reply::Answer(contacts, value) => {
                    if to.id == target_node && target_ms.is_none() {
                        target_ms = Some(t);
                    }
                    q.on_answer(peers, now, to, &contacts, judge(value));
                }
                Reply::Refused => q.on_failure(peers, now, to, Failure::Unreachable),
                Reply::Silent => q.on_failure(peers, now, to, Failure::Timeout),
            }
            self.drain_actions(from, now);
        }
        let found = q.found();
        Run {
            target_ms: target_ms.filter(|_| found.target_hop.is_some()),
            found,
            messages,
            end: start + t,
        }
    }

    /// Node `to` receives the request of `requester` (node `from`) for
    /// `target` at `now`: what comes back, and after how long. A responder
    /// that answers learns the requester first, as a node learns a peer
    /// that proved its id on a connection (every simulated node listens
    /// at its address); one that bans the requester refuses it.
    fn serve(
        &mut self,
        from: usize,
        requester: Contact,
        to: Contact,
        target: &Key,
        values: bool,
        now: u64,
    ) -> (Reply, u64) {
        let timeout = self.config.timeout_ms;
        let Some(&i) = self.index.get(&to.id) else {
            return (Reply::Silent, timeout);
        };
        let lost = self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss.min(1.0));
        let overload = self.nodes[i].inbox.as_ref().map_or(0.0, |x| x.overload);
        let overloaded = overload > 0.0 && self.rng.gen_bool(overload.min(1.0));
        let node = &self.nodes[i];
        if !node.alive || lost || overloaded || node.behaviour == Behaviour::Drop {
            return (Reply::Silent, timeout);
        }
        let rtt = 2 * self.latency(from, i);
        if node.peers.is_banned(now, &requester.id) {
            return (Reply::Refused, rtt);
        }
        self.nodes[i]
            .peers
            .learn(now, requester, ListenProof::Verified);
        self.drain_actions(i, now);
        let k = self.config.params.k;
        let node = &self.nodes[i];
        let reply = match node.behaviour {
            Behaviour::Misroute => Reply::Answer(self.colluders_closest(target, k), None),
            Behaviour::Forge => {
                Reply::Answer(node.peers.closest(target, k), values.then_some(FORGED))
            }
            Behaviour::Honest | Behaviour::Drop | Behaviour::Spam => Reply::Answer(
                node.peers.closest(target, k),
                values.then(|| node.records.get(target).copied()).flatten(),
            ),
        };
        (reply, rtt)
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

    /// Builds the overlay: `config.nodes` nodes joining one after another.
    /// Joins that found nobody are tried again as the core says, the
    /// virtual clock running on until the last is done.
    pub fn bootstrap(&mut self) {
        for _ in 0..self.config.nodes {
            self.join();
        }
        self.settle_joins();
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
            sim.run_due_joins();
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
            let run = self.query(from, target, Goal::Node);
            messages += u64::from(run.messages);
            if let (Some(h), Some(t)) = (run.found.target_hop, run.target_ms) {
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
        let entries: usize = live.iter().map(|n| n.peers.table().len()).sum();
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
mod tests;

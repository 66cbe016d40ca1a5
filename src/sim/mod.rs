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
    churn_contact, churn_pushes, nearest_held, place_replicas, JoinPlan, JoinStep, Replica,
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

    /// Carries out what `node`'s core asked for: a ping of a resident of a
    /// full bucket is answered at once (by a live node); a ban needs
    /// nothing more, since the simulator keeps no connections and the core
    /// already refuses the peer everywhere else. Then its churn events
    /// ([`Simulator::carry_churn`]).
    fn drain_actions(&mut self, node: usize, now: u64) {
        while let Some(action) = self.nodes[node].peers.poll_action() {
            match action {
                PeerAction::Ping { resident } => {
                    let alive = self
                        .index
                        .get(&resident.id)
                        .is_some_and(|i| self.nodes[*i].alive);
                    self.nodes[node].peers.ping_result(now, &resident.id, alive);
                }
                PeerAction::Disconnect { .. } => {}
            }
        }
        self.carry_churn(node);
    }

    /// Hand-over and repair, as the node's upkeep does them: for each
    /// churn event of `node`'s core ([`Peers::poll_churn`]), the records
    /// nearest to its contact ([`nearest_held`], at most
    /// [`MAX_HANDOVER_RECORDS`]) go where [`churn_pushes`] says (a Store
    /// costs no time; a dead or adversarial receiver keeps nothing, an
    /// honest one takes it as [`Simulator::accept_store`] decides).
    fn carry_churn(&mut self, node: usize) {
        while let Some(event) = self.nodes[node].peers.poll_churn() {
            let n = &self.nodes[node];
            if n.records.is_empty() {
                continue;
            }
            let pushes = self.churn_plan(node, &event);
            for (to, (key, value)) in pushes {
                let Some(&i) = self.index.get(&to.id) else {
                    continue;
                };
                // The receiver decides as the node's does: responsible
                // for the key, then within its store's bounds.
                if self.nodes[i].alive && self.nodes[i].behaviour == Behaviour::Honest {
                    self.accept_store(i, key, value);
                }
            }
        }
    }

    /// What `event` of `node`'s core moves of the records it holds: the
    /// node's `OverlayService::plan_churn` over the simulated store.
    fn churn_plan(&self, node: usize, event: &ChurnEvent) -> Vec<(Contact, (Key, u64))> {
        let n = &self.nodes[node];
        let point = Key::from(churn_contact(event).id);
        let held = n.records.iter().map(|(k, v)| (*k, (*k, *v)));
        let candidates = nearest_held(&point, held, MAX_HANDOVER_RECORDS);
        churn_pushes(
            n.peers.table(),
            self.config.params.replication,
            event,
            candidates,
        )
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

    /// Adds a node that joins through a random live honest node, as the
    /// node joins ([`Simulator::join_existing`]).
    pub fn join(&mut self) -> usize {
        let me = self.new_node();
        self.join_existing(me);
        me
    }

    /// Joins the node `me` (already added) through a random live honest
    /// node, as the node joins: an attempt ([`Simulator::join_attempt`])
    /// and, while the core's [`JoinPlan`] says so, more attempts later on
    /// the virtual clock ([`Simulator::run_due_joins`]). The records it
    /// should now hold come from its new neighbours' churn-driven
    /// hand-over, as they admit it ([`Simulator::carry_churn`]).
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
        self.join_attempt(me, via_contact, JoinPlan::new());
    }

    /// One attempt of `me`'s join through `via`, as the node's
    /// `OverlayService::join_attempt`: the bootstrap node learned as an
    /// outbound peer, a lookup of its own id whose result it learns, then
    /// the plan's step: a lookup (result learned) per bucket to refresh,
    /// or a retry queued for later.
    fn join_attempt(&mut self, me: usize, via: Contact, mut plan: JoinPlan) {
        let now = self.now;
        self.nodes[me].peers.learn_outbound(now, via);
        self.drain_actions(me, now);
        let own = Key::from(self.nodes[me].contact.id);
        let run = self.query(me, own, Goal::Closest);
        self.learn_found(me, &run.found);
        match plan.on_own_lookup(run.end, &own, &run.found) {
            JoinStep::Refresh(buckets) => {
                for bucket in buckets {
                    let mut random = [0u8; 32];
                    self.rng.fill_bytes(&mut random);
                    let Some(target) = self.nodes[me].peers.table().key_in_bucket(bucket, random)
                    else {
                        continue;
                    };
                    let found = self.query(me, target, Goal::Closest).found;
                    self.learn_found(me, &found);
                }
            }
            JoinStep::Retry { at_ms } => {
                self.nodes[me].joining = Some((plan, via));
                self.join_retries.push(Reverse((at_ms, me)));
            }
            JoinStep::GiveUp => {}
        }
    }

    /// Makes the join attempts due by now (of nodes still alive).
    fn run_due_joins(&mut self) {
        while let Some(&Reverse((at, me))) = self.join_retries.peek() {
            if at > self.now {
                break;
            }
            self.join_retries.pop();
            let Some((plan, via)) = self.nodes[me].joining.take() else {
                continue;
            };
            if self.nodes[me].alive {
                self.join_attempt(me, via, plan);
            }
        }
    }

    /// Lets virtual time run on until no join waits to be tried again.
    pub(crate) fn settle_joins(&mut self) {
        while let Some(&Reverse((at, _))) = self.join_retries.peek() {
            self.now = self.now.max(at);
            self.run_due_joins();
        }
    }

    /// `node` learns the result of its join or refresh lookup
    /// ([`Peers::learn_found`]).
    fn learn_found(&mut self, node: usize, found: &Found) {
        let now = self.now;
        let _ = self.nodes[node].peers.learn_found(now, &found.per_path);
        self.drain_actions(node, now);
    }

    /// A graceful leave: `node` stores each of its records on the
    /// `replication` closest other live nodes it finds, its neighbours
    /// forget it (the real node's "shutting down" close,
    /// [`Peers::peer_left`]), and it stops.
    pub fn leave(&mut self, node: usize) {
        let Some(leaver) = self.nodes.get(node).filter(|n| n.alive) else {
            return;
        };
        let leaver_id = leaver.contact.id;
        let mut records: Vec<(Key, u64)> = leaver.records.iter().map(|(k, v)| (*k, *v)).collect();
        records.sort_unstable_by_key(|(k, _)| *k);
        let r = self.config.params.replication;
        for (key, value) in records {
            let found = self.query(node, key, Goal::Closest).found;
            let targets: Vec<usize> = found
                .closest
                .iter()
                .filter_map(|(c, _)| self.index.get(&c.id).copied())
                .filter(|i| *i != node && self.nodes[*i].alive)
                .take(r)
                .filter(|i| self.nodes[*i].behaviour == Behaviour::Honest)
                .collect();
            for t in targets {
                self.accept_store(t, key, value);
            }
        }
        self.nodes[node].alive = false;
        let now = self.now;
        for i in 0..self.nodes.len() {
            if i != node {
                // Told directly: no need to wait for failed requests.
                self.nodes[i].peers.peer_left(&leaver_id);
                if self.nodes[i].alive {
                    self.drain_actions(i, now);
                }
            }
        }
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

    /// Stores `value` under `key` from `from`, as the node publishes: a
    /// placement query ([`Goal::Place`]) and the core's
    /// [`place_replicas`]; returns how many nodes hold it. The writer
    /// keeps a copy itself when it is among the closest
    /// ([`Replica::Local`]). Adversaries acknowledge (or not) and keep
    /// nothing.
    pub fn store(&mut self, from: usize, key: Key, value: u64) -> usize {
        let run = self.query(from, key, Goal::Place);
        let replicas = place_replicas(&self.nodes[from].peers, run.end, &key, &run.found, value);
        let mut stored = 0;
        for replica in replicas {
            let (holder, sent) = match replica {
                Replica::Local => (from, false),
                Replica::Remote(c) => match self.index.get(&c.id) {
                    Some(&i) => (i, true),
                    None => continue,
                },
            };
            if !self.nodes[holder].alive || self.nodes[holder].behaviour != Behaviour::Honest {
                continue;
            }
            // The writer's own copy: its lookup just found it among the
            // closest, no check against its own table (as the node).
            let kept = if sent {
                self.accept_store(holder, key, value)
            } else {
                self.put_record(holder, key, value)
            };
            stored += usize::from(kept);
        }
        stored
    }

    /// `holder` receives a Store of `value` under `key` from another node:
    /// as the node, it refuses a key it is not responsible for (the core's
    /// [`Peers::is_responsible`], `NotResponsible`), then stores within
    /// its bounds ([`Simulator::put_record`]). Returns whether it holds
    /// `value` now.
    fn accept_store(&mut self, holder: usize, key: Key, value: u64) -> bool {
        self.nodes[holder].peers.is_responsible(&key) && self.put_record(holder, key, value)
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
            match model.limits() {
                Some(limits) => {
                    // Honest records are not counted per owner: every
                    // writer holds far fewer than a quota's worth.
                    let held = (n.records.len() + inbox.junk).saturating_mul(SIM_RECORD_COST);
                    if admit_new_slot(&limits, 0, held, SIM_RECORD_COST).is_err() {
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

    /// Fetches the value under `key` from `from` (a [`Goal::Value`]
    /// query): the highest version it found.
    pub fn fetch(&mut self, from: usize, key: Key) -> Option<u64> {
        self.query(from, key, Goal::Value).found.best_seq
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
                .peers
                .table()
                .entries()
                .map(|(_, c, _, _)| c.id)
                .filter(|id| self.index.get(id).is_some_and(|j| !self.nodes[*j].alive))
                .collect();
            for id in dead {
                self.nodes[i].peers.ping_result(now, &id, false);
            }
            self.drain_actions(i, now);
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
    /// key, owned by the spammer), half junk lookups. A target admits each
    /// request through its core's [`Peers::admit_request`], as the node's
    /// server does: a banned spammer is refused, the allowance scales with
    /// its standing, the excess is [`Evidence::RateViolation`] (which bans
    /// it soon) and a connection refused too often in a row is closed
    /// (the spammer reconnects at the next operation). Admitted junk
    /// stores obey the store model; admitted requests beyond
    /// [`SIM_NODE_CAPACITY_PER_SEC`] overload the target, which then
    /// leaves that share of all requests unanswered until the next
    /// operation. Returns the requests each target served.
    fn flood(&mut self, plan: &[(usize, Vec<usize>)]) -> HashMap<usize, usize> {
        let now = self.now;
        let interval_s = self.config.interval_ms as f64 / 1000.0;
        let per_op =
            (f64::from(MAX_REQUESTS_PER_PEER_PER_SEC * SIM_SPAM_RATE_FACTOR) * interval_s) as usize;
        let capacity = f64::from(SIM_NODE_CAPACITY_PER_SEC) * interval_s;
        let mut load: HashMap<usize, usize> = HashMap::new();
        for (s, targets) in plan {
            if !self.nodes[*s].alive {
                continue;
            }
            let spammer = self.nodes[*s].contact;
            for &t in targets {
                if !self.nodes[t].alive {
                    continue;
                }
                let SimNode { peers, inbox, .. } = &mut self.nodes[t];
                let Some(inbox) = inbox.as_deref_mut() else {
                    continue;
                };
                let streak = inbox.streaks.entry(*s).or_default();
                let mut admitted = 0;
                for _ in 0..per_op {
                    match peers.admit_request(now, &spammer.id, spammer.addr.ip(), streak) {
                        Admission::Serve => admitted += 1,
                        Admission::Refuse(_) => {}
                        Admission::Close(_) => {
                            *streak = RefusalStreak::default();
                            break;
                        }
                        Admission::Banned => break,
                    }
                }
                self.drain_actions(t, now);
                *load.entry(t).or_default() += admitted;
                let stores = admitted / 2;
                let model = self.config.store;
                let node = &mut self.nodes[t];
                if let (Some(model), Some(inbox)) = (model, node.inbox.as_deref_mut()) {
                    for _ in 0..stores {
                        match model.limits() {
                            Some(limits) => {
                                let mine = inbox.junk_per_owner.entry(*s).or_default();
                                let held = (node.records.len() + inbox.junk)
                                    .saturating_mul(SIM_RECORD_COST);
                                if admit_new_slot(&limits, *mine, held, SIM_RECORD_COST).is_err() {
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
        load
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
        // Placed on the replication factor's nodes; one that knows
        // 2 × replication nodes closer refuses, as the node does.
        assert!((18..=20).contains(&stored), "{stored}");
        let holders = sim.holders(&key);
        assert_eq!(holders.len(), stored);
        let doomed: Vec<usize> = holders
            .iter()
            .copied()
            .take(holders.len() * 3 / 10)
            .collect();
        assert!(doomed.len() >= 5);
        sim.crash(&doomed);
        assert_eq!(sim.holders(&key).len(), stored - doomed.len());
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
                    .all(|n| !n.peers.table().contains(&id)),
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
            // A replica placed round-robin across the paths may land on
            // a node that knows 2 × replication closer ones: it refuses
            // (not responsible), as the node does: 14 of 20 at worst
            // here. What this test measures is the hand-over.
            let stored = sim.store(writer, *key, i as u64);
            assert!(stored > 10, "{i}: {stored}");
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
    fn a_join_whose_bootstrap_request_is_lost_tries_again_and_recovers() {
        let mut sim = Simulator::new(SimConfig {
            nodes: 60,
            ..small(11)
        });
        sim.bootstrap();
        // Every request is lost: the own-id lookup finds nobody.
        sim.config.loss = 1.0;
        let me = sim.join();
        assert_eq!(sim.nodes[me].peers.table().len(), 1, "its bootstrap node");
        let known_by = |sim: &Simulator| {
            let id = sim.nodes[me].contact.id;
            sim.nodes
                .iter()
                .filter(|n| n.peers.table().contains(&id))
                .count()
        };
        assert_eq!(known_by(&sim), 0, "nobody knows it");
        let Some((plan, _)) = &sim.nodes[me].joining else {
            panic!("a retry is planned");
        };
        assert_eq!(plan.attempts(), 1);
        // The retry is due 1 virtual second after the lookup timed out.
        let Some(&Reverse((at, who))) = sim.join_retries.peek() else {
            panic!("a retry is queued");
        };
        assert_eq!((who, at), (me, sim.now + sim.config.timeout_ms + 1000));
        // The network heals.
        sim.config.loss = 0.0;
        sim.now = at - 1;
        sim.run_due_joins();
        assert!(sim.nodes[me].joining.is_some(), "not due yet");
        sim.now = at;
        sim.run_due_joins();
        assert!(sim.nodes[me].joining.is_none());
        assert!(sim.nodes[me].peers.table().len() > 20);
        assert!(known_by(&sim) > 10, "{}", known_by(&sim));
        let from = sim.random_live();
        let target = Key::from(sim.nodes[me].contact.id);
        assert!(sim
            .query(from, target, Goal::Node)
            .found
            .target_hop
            .is_some());
    }

    /// The node's planning (`OverlayService::plan_churn`, over its record
    /// store) and the simulator's (`Simulator::churn_plan`, over its
    /// tags), given the same table, the same held keys and the same churn
    /// events, move the same records to the same contacts.
    #[test]
    fn the_node_and_the_simulator_move_records_alike_on_churn() {
        use crate::identity::SecretKey;
        use crate::net::overlay::OverlayService;
        use crate::overlay::record::{OwnerValue, RecordPolicy};
        use crate::wire::Message;

        let mut sim = Simulator::new(SimConfig {
            nodes: 60,
            ..small(12)
        });
        sim.bootstrap();
        let x = sim.random_live();
        let params = sim.config.params.clone();
        let node = OverlayService::new(
            sim.nodes[x].contact.id,
            params.clone(),
            RecordPolicy::self_certifying(params.name.clone()),
        );
        let table: Vec<Contact> = sim.nodes[x]
            .peers
            .table()
            .entries()
            .map(|(_, c, _, _)| c)
            .collect();
        for c in &table {
            node.learn(*c);
        }
        let ids = |v: Vec<Contact>| v.into_iter().map(|c| c.id).collect::<HashSet<_>>();
        assert_eq!(
            ids(node.routes().into_iter().map(|(_, c)| c).collect()),
            ids(table.clone())
        );
        while node.next_event().is_some() {}
        // The same records: signed ones for the node, tags for the
        // simulator, under keys the node is responsible for.
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let owner = SecretKey::from_seed(&[3; 32]);
        let expires = crate::unix_now() as u64 + 3600;
        let mut keys = Vec::new();
        for i in 0..200 {
            let r = OwnerValue::new(&format!("churn-{i}"), vec![])
                .unwrap()
                .sign(&owner, 1, expires);
            if !node.is_responsible(&r.key) {
                continue;
            }
            let store = Message::Store {
                overlay: params.name.clone(),
                record: r.encode(),
            };
            let answer = rt.block_on(node.answer(table[0], ListenProof::Verified, &store));
            assert!(matches!(answer, Some(Message::Stored { .. })), "{answer:?}");
            sim.nodes[x].records.insert(r.key, 1);
            keys.push(r.key);
            if keys.len() == 12 {
                break;
            }
        }
        assert_eq!(keys.len(), 12);
        while node.next_event().is_some() {}
        let key_of = |encoded: &[u8]| crate::overlay::record::Record::decode(encoded).unwrap().key;
        let now = sim.now;
        let (mut handed, mut repaired) = (0, 0);
        // Newcomers next to each key (some among its closest, some not),
        // then the eviction of contacts near the keys.
        for (i, key) in keys.iter().enumerate() {
            for flip in [0x01u8, 0x40] {
                let mut id = key.0;
                id[31] ^= flip;
                id[1] ^= flip;
                let newcomer = Contact {
                    id: NodeId::from_bytes(id),
                    addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::new(100, i as u8, flip, 1)), 4433),
                };
                sim.nodes[x]
                    .peers
                    .learn(now, newcomer, ListenProof::Verified);
                node.learn(newcomer);
            }
            let near = sim.nodes[x].peers.closest(key, 1);
            for c in near {
                sim.nodes[x].peers.peer_left(&c.id);
                node.core().with(|p, _| p.peer_left(&c.id));
            }
        }
        while let Some(event) = sim.nodes[x].peers.poll_churn() {
            assert_eq!(node.next_event(), Some(event));
            let in_sim: Vec<(Contact, Key)> = sim
                .churn_plan(x, &event)
                .into_iter()
                .map(|(to, (key, _))| (to, key))
                .collect();
            let in_node: Vec<(Contact, Key)> = node
                .plan_churn(&event)
                .into_iter()
                .map(|(to, encoded)| (to, key_of(&encoded)))
                .collect();
            assert_eq!(in_sim, in_node, "{event:?}");
            match event {
                ChurnEvent::Admitted(_) => handed += in_sim.len(),
                ChurnEvent::Evicted(_) => repaired += in_sim.len(),
            }
        }
        assert_eq!(node.next_event(), None);
        assert!(
            handed > 0 && repaired > 0,
            "{handed} handed over, {repaired} repaired"
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

    #[test]
    fn a_writer_among_the_closest_keeps_a_replica_itself() {
        let mut sim = Simulator::new(small(2));
        sim.bootstrap();
        let writer = sim.random_live();
        // The writer's own id: it is the closest node to the key.
        let key = Key::from(sim.nodes[writer].contact.id);
        let stored = sim.store(writer, key, 9);
        assert!(stored >= 18, "{stored}");
        let holders = sim.holders(&key);
        assert!(holders.contains(&writer), "{holders:?}");
        assert_eq!(holders.len(), stored);
        // A writer far from the key keeps nothing.
        let other = Key(Sha256::digest(b"far away").into());
        let far = truly_closest(&sim, &other, 200).last().copied().unwrap();
        assert!(sim.store(far, other, 3) >= 18);
        assert!(!sim.holders(&other).contains(&far));
    }

    /// A flooded node admits the spam through its core's own decision
    /// ([`Peers::admit_request`]): with whatever limit that core has, the
    /// flood serves what a bare core fed the same requests at the same
    /// times serves, request for request, until both ban the spammer; the
    /// junk it keeps stays within the store's quota ([`admit_new_slot`]).
    #[test]
    fn a_flooded_node_admits_as_its_core_decides() {
        use crate::overlay::rate::RateLimit;
        use std::time::Duration;
        let config = SimConfig {
            spam: true,
            store: Some(StoreModel {
                slots: 64,
                per_owner: Some(4),
            }),
            ..small(5)
        };
        let interval = config.interval_ms;
        let mut sim = Simulator::new(config);
        let target = sim.add_node([1; 32], Ipv4Addr::new(10, 0, 0, 1), Behaviour::Honest);
        let s = sim.add_node([2; 32], Ipv4Addr::new(10, 0, 0, 2), Behaviour::Spam);
        // Not the default limit: a copy of the policy in the simulator
        // would not know it.
        let limit = RateLimit {
            burst: 7,
            refill_every: Duration::from_millis(30),
            max_refused_in_a_row: 5,
        };
        sim.nodes[target].peers.set_rate_limit(limit);
        let plan = sim.spam_plan();
        assert_eq!(plan, vec![(s, vec![target])]);
        let spammer = sim.nodes[s].contact;
        let mut model = sim.nodes[target].peers.clone();
        let mut streak = RefusalStreak::default();
        let per_op =
            (MAX_REQUESTS_PER_PEER_PER_SEC * SIM_SPAM_RATE_FACTOR) as u64 * interval / 1000;
        let mut served_in_all = 0;
        for _ in 0..200 {
            sim.now += interval;
            let served = sim.flood(&plan).get(&target).copied().unwrap_or(0);
            let mut expected = 0;
            for _ in 0..per_op {
                match model.admit_request(sim.now, &spammer.id, spammer.addr.ip(), &mut streak) {
                    Admission::Serve => expected += 1,
                    Admission::Refuse(_) => {}
                    Admission::Close(_) => {
                        streak = RefusalStreak::default();
                        break;
                    }
                    Admission::Banned => break,
                }
            }
            assert_eq!(served, expected, "at {} ms", sim.now);
            served_in_all += served;
        }
        assert!(served_in_all > 7, "{served_in_all}");
        assert!(model.is_banned(sim.now, &spammer.id));
        let node = &sim.nodes[target];
        assert!(node.peers.is_banned(sim.now, &spammer.id));
        let junk = node.inbox.as_deref().map(|x| x.junk).unwrap_or(0);
        assert_eq!(junk, 4, "the quota of one owner");
    }
}

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
//! its closest neighbour. Not simulated yet: record signatures (values are
//! opaque tags here), republishing, adversaries.

use crate::identity::NodeId;
use crate::overlay::config::OverlayParams;
use crate::overlay::key::Key;
use crate::overlay::lookup::Lookup;
use crate::overlay::routing::{Contact, InsertOutcome, RoutingTable};
use rand::rngs::StdRng;
use rand::{Rng, RngCore, SeedableRng};
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
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
    /// How long a requester waits for an answer, in ms.
    pub timeout_ms: u64,
    /// Virtual time between two measured operations, in ms.
    pub interval_ms: u64,
}

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
            timeout_ms: 1000,
            interval_ms: 100,
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
                "\"store_fetch_success_rate\":{:.6},\"crashed\":{},\"joined\":{},",
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
}

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
}

/// The simulated overlay.
pub struct Simulator {
    config: SimConfig,
    rng: StdRng,
    nodes: Vec<SimNode>,
    index: HashMap<NodeId, usize>,
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
        Self {
            config,
            rng,
            nodes: Vec::new(),
            index: HashMap::new(),
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
        self.rng.fill_bytes(&mut id);
        let n = self.nodes.len() as u32;
        // Each node its own /24, so diversity limits do not bind here.
        let ip = Ipv4Addr::new(10 + (n >> 16) as u8, (n >> 8) as u8, n as u8, 1);
        let contact = Contact {
            id: NodeId::from_bytes(id),
            addr: SocketAddr::new(IpAddr::V4(ip), 4433),
        };
        let node = SimNode {
            contact,
            table: RoutingTable::new(contact.id, &self.config.params),
            records: HashMap::new(),
            alive: true,
        };
        self.index.insert(contact.id, self.nodes.len());
        self.nodes.push(node);
        self.nodes.len() - 1
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
        let outcome = self.nodes[node].table.insert(peer, now);
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
        let params = self.config.params.clone();
        let local = self.nodes[from].contact;
        let seeds = self.nodes[from].table.closest(&target, params.k);
        let mut l = Lookup::new(target, seeds, local.id, &params);
        // (time, sequence, responder index); the answer waits under its
        // sequence number, None for a request that will time out.
        let mut events: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
        let mut answers: HashMap<u64, Option<Answer>> = HashMap::new();
        let mut seq = 0u64;
        let mut t = 0u64;
        let mut out = LookupOutcome {
            closest: Vec::new(),
            target_reached: None,
            value: None,
            messages: 0,
        };
        let target_node = NodeId::from_bytes(target.0);
        loop {
            while let Some(req) = l.poll_request() {
                out.messages += 1;
                let Some(&to) = self.index.get(&req.to.id) else {
                    continue;
                };
                seq += 1;
                let lost = self.config.loss > 0.0 && self.rng.gen_bool(self.config.loss.min(1.0));
                if !self.nodes[to].alive || lost {
                    events.push(Reverse((t + self.config.timeout_ms, seq, to)));
                    answers.insert(seq, None);
                    continue;
                }
                // The responder learns the requester, then answers with its
                // k closest to the target (and the value if it holds one).
                self.learn(to, local);
                let contacts = self.nodes[to].table.closest(&target, params.k);
                let value = if find_value {
                    self.nodes[to].records.get(&target).copied()
                } else {
                    None
                };
                let rtt = 2 * self.latency(from, to);
                events.push(Reverse((t + rtt, seq, to)));
                answers.insert(seq, Some((contacts, value)));
            }
            let Some(Reverse((at, s, to))) = events.pop() else {
                break;
            };
            t = at;
            let peer = self.nodes[to].contact;
            match answers.remove(&s).flatten() {
                Some((contacts, value)) => {
                    l.on_response(&peer.id, &contacts);
                    self.learn(from, peer);
                    if peer.id == target_node && out.target_reached.is_none() {
                        let hop = l
                            .result()
                            .iter()
                            .find(|(c, _)| c.id == peer.id)
                            .map_or(0, |(_, h)| *h);
                        out.target_reached = Some((t, hop + 1));
                    }
                    if let (Some(v), None) = (value, out.value) {
                        out.value = Some((v, t));
                        l.finish();
                    }
                }
                None => {
                    l.on_failure(&peer.id);
                    let now = self.now;
                    self.nodes[from].table.on_failure(&peer.id, now);
                }
            }
            while l.poll_fault().is_some() {}
            if l.is_finished() && (out.value.is_some() || events.is_empty()) {
                break;
            }
        }
        out.closest = l.result();
        out
    }

    /// Adds a node that joins through a random live node: a lookup of its
    /// own id, then a refresh of every bucket beyond its closest neighbour.
    pub fn join(&mut self) -> usize {
        let me = self.new_node();
        let live: Vec<usize> = (0..me).filter(|i| self.nodes[*i].alive).collect();
        if live.is_empty() {
            return me;
        }
        let via = live[self.rng.gen_range(0..live.len())];
        let via_contact = self.nodes[via].contact;
        self.learn(me, via_contact);
        let own = Key::from(self.nodes[me].contact.id);
        let found = self.lookup(me, own, false);
        let nearest_bucket = found
            .closest
            .first()
            .and_then(|(c, _)| own.distance(&Key::from(c.id)).bucket_index())
            .unwrap_or(0);
        // Refresh: one lookup for a random id in each farther bucket that
        // a network of this size can fill (at most ~log2(n) + a few).
        for bucket in (nearest_bucket + 1)..256 {
            let target = self.random_key_in_bucket(own, bucket);
            self.lookup(me, target, false);
            if bucket > nearest_bucket + 24 {
                break;
            }
        }
        self.hand_over_to(me);
        me
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
            self.nodes[newcomer].records.insert(key, value);
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
            let found = self.lookup(node, key, false);
            let targets: Vec<usize> = found
                .closest
                .iter()
                .filter_map(|(c, _)| self.index.get(&c.id).copied())
                .filter(|i| *i != node && self.nodes[*i].alive)
                .take(r)
                .collect();
            for t in targets {
                self.nodes[t].records.insert(key, value);
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

    fn random_live(&mut self) -> usize {
        let live: Vec<usize> = (0..self.nodes.len())
            .filter(|i| self.nodes[*i].alive)
            .collect();
        live[self.rng.gen_range(0..live.len())]
    }

    /// Stores `value` under `key` from `from` on the `replication` closest
    /// nodes its lookup finds; returns how many hold it.
    pub fn store(&mut self, from: usize, key: Key, value: u64) -> usize {
        let found = self.lookup(from, key, false);
        let r = self.config.params.replication;
        let mut stored = 0;
        for (c, _) in found.closest.into_iter().take(r) {
            if let Some(&i) = self.index.get(&c.id) {
                if self.nodes[i].alive {
                    self.nodes[i].records.insert(key, value);
                    stored += 1;
                }
            }
        }
        stored
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

    /// Builds the overlay: `config.nodes` nodes joining one after another.
    pub fn bootstrap(&mut self) {
        for _ in 0..self.config.nodes {
            self.join();
        }
    }

    /// Bootstraps, then measures lookups and store/fetch pairs under churn.
    pub fn run(&mut self) -> SimReport {
        self.bootstrap();
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
        let mut churn = |sim: &mut Simulator, debt: &mut f64, keep: &HashSet<usize>| {
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
            let from = self.random_live();
            let mut to = self.random_live();
            while to == from && self.live_nodes() > 1 {
                to = self.random_live();
            }
            let target = Key::from(self.nodes[to].contact.id);
            let out = self.lookup(from, target, false);
            messages += u64::from(out.messages);
            if let Some((t, h)) = out.target_reached {
                successes += 1;
                hops.push(h);
                latencies.push(t);
            }
        }
        let mut fetched = 0usize;
        for pair in 0..self.config.store_fetch {
            self.now += self.config.interval_ms;
            let mut key = [0u8; 32];
            key.copy_from_slice(&Sha256::digest(format!("sim-record-{pair}")));
            let key = Key(key);
            let value = self.rng.next_u64();
            let writer = self.random_live();
            self.store(writer, key, value);
            churn(self, &mut churn_debt, &HashSet::from([writer]));
            let reader = self.random_live();
            if self.fetch(reader, key) == Some(value) {
                fetched += 1;
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

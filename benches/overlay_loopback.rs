//! Benchmark: the real node on loopback, printed as one Markdown table.
//!
//! 1. **Overlay.** 50 nodes in one tokio runtime, each a [`Node`] with its
//!    own quinn endpoint on its own loopback address (127.N.0.1, a distinct
//!    /16, and so /24, each so that the routing table's per-prefix limits
//!    apply as on a real network), joined one after the other through one
//!    bootstrap node. Measures lookup latency (FindNode of random keys, FindValue of stored
//!    and of missing keys), publish latency, and what one node sustains:
//!    concurrent lookups, concurrent publishes (`OverlayService::publish`:
//!    a lookup, then a Store on each of the `replication` closest nodes).
//!    The node's per-peer request rate limit caps what one node can ask of
//!    each peer, so the throughput runs are repeated on a second overlay
//!    whose nodes limit no peer.
//! 2. **Stores and memory.** A child process (this binary, run with
//!    `--memory-child DIR RATE`, `-` for no data directory) serves one
//!    standalone node that limits no peer's request rate (the default
//!    limit caps 32 writers at 3,200 Stores/s, and bans a writer that
//!    keeps going over it); this process stores 100,000 signed records
//!    into it with real Store requests over QUIC from 32 writers, one
//!    request at a time each (verification, the record store, and with a
//!    data directory a durable database write, group-committed with the
//!    concurrent ones), and the child reports its `VmRSS` and `VmHWM` from
//!    `/proc/self/status` before and after. Once without a data directory
//!    (the record store's own cost, Stores without the disk), once with
//!    one; then a third child restarts from that directory (loading and
//!    re-verifying every record) and reports the same. Separate processes
//!    keep the figures free of this process's nodes and writers. A
//!    standalone node knows almost nobody, so it is responsible for (and
//!    stores) every key.
//! 3. **Store rate.** The Store rate alone: fewer records into two more
//!    children, from the same 32 writers with 4 Stores in flight each,
//!    without and with a data directory.
//!
//! Nothing asserts a time; failures are counted and printed with their most
//! common reason.
//!
//! Run: `cargo bench --bench overlay_loopback` (release build; the figures
//! are recorded in `docs/benchmarks.md`). `P2PSIP_BENCH_QUICK=1` runs the
//! same code with 8 nodes, 1,000 records and tiny counts, as a CI smoke;
//! `P2PSIP_BENCH_ONLY=overlay`, `=memory` or `=rate` (the Store-rate runs)
//! picks phases (comma-separated).
//!
//! What the Store figures time: the records are signed and encoded before
//! the clock starts, and the writers are connected; timed are the Store
//! requests themselves, over QUIC from the writers (in this process) to
//! the node (its own process), on the same cores. The CPU time of both
//! processes during the Stores is printed per Store, so that the node's
//! cost can be told from the writers'.

use p2psip::identity::{SecretKey, VerifyPolicy};
use p2psip::net::server::RECORDS_FILE;
use p2psip::net::{Limits, LocalIdentity, NetError, Node, NodeConfig, RateLimit};
use p2psip::overlay::config::OverlayParams;
use p2psip::overlay::key::Key;
use p2psip::overlay::record::{OwnerValue, Record, RecordKind};
use p2psip::overlay::routing::Contact;
use p2psip::wire::{ErrorCode, Message};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::future::Future;
use std::io::{BufRead, BufReader, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod common;
use common::{cpu_time, progress, quick, rss_kib, runs, Table};

/// Admission puzzle of the benchmark overlay: low, so that the identities
/// take a fraction of a second, yet nonzero so that the checks still run.
const DIFFICULTY: u8 = 8;
/// The benchmark overlay's name.
const OVERLAY: &str = "bench-overlay";
/// The argument that makes this binary the memory phase's node.
const MEMORY_CHILD: &str = "--memory-child";
/// Payload of every benchmark record (an owner value's data), in bytes:
/// about the size of a small configuration or address-book entry.
const RECORD_DATA_LEN: usize = 100;
/// Records signed by one owner key: below the per-owner quota of a node's
/// store (`DEFAULT_STORE_MAX_SLOTS_PER_OWNER`, 128).
const RECORDS_PER_OWNER: usize = 64;
/// Writers of raw Store requests, each its own node id on its own address,
/// one request at a time each (the memory phase). Several, because a node
/// limits each peer's request rate and every writer paces itself within
/// the default allowance (100 requests/s, burst 200), as any polite node
/// does. (Writers serve no overlay, so the target never admits them to its
/// routing table.)
const WRITERS: usize = 32;
/// Writers in the Store-rate runs: enough that their politeness is not the
/// limit (96 × 100/s), so that the node's capacity is what is measured.
/// With 32, every run ended at exactly 4,062/s: 30,000 Stores over 32
/// writers are 938 each, a burst of 200 and 7.4 s at 100/s.
const RATE_WRITERS: usize = 96;
/// How often a writer retries a Store refused with `RateLimited` before
/// counting it as failed.
const RATE_LIMITED_RETRIES: usize = 100;
/// Resident-memory goal (issue 10; issue 3 asked for 200) for a node with
/// a data directory holding 100,000 records.
const MEMORY_GOAL_MIB: f64 = 100.0;

/// Durable Stores per second one node should take (issue 10).
const DURABLE_STORE_GOAL: f64 = 5_000.0;
/// Stores in flight per writer in the Store-rate runs.
const STORES_IN_FLIGHT_PER_WRITER: usize = 4;

/// How much work each measurement does; every loop is bounded in count
/// and in time.
struct Scale {
    nodes: usize,
    /// Sequential lookups per latency measurement.
    latency_lookups: usize,
    /// Sequential publishes for the publish latency.
    latency_publishes: usize,
    /// Publishes in a throughput run, at most.
    publishes: usize,
    /// Concurrent publishes from one node.
    publish_concurrency: usize,
    /// Wall-time bound of every throughput run.
    window: Duration,
    /// Concurrency levels of the lookup throughput runs.
    lookup_concurrency: &'static [usize],
    /// Records stored into the memory phase's node.
    memory_records: usize,
    /// Records stored in each Store-rate run.
    rate_records: usize,
}

impl Scale {
    fn new() -> Self {
        if quick() {
            Self {
                nodes: 8,
                latency_lookups: 30,
                latency_publishes: 10,
                publishes: 40,
                publish_concurrency: 4,
                window: Duration::from_secs(1),
                lookup_concurrency: &[1, 8],
                memory_records: 1_000,
                rate_records: 500,
            }
        } else {
            Self {
                nodes: 50,
                latency_lookups: 1_000,
                latency_publishes: 200,
                publishes: 20_000,
                publish_concurrency: 16,
                window: Duration::from_secs(15),
                lookup_concurrency: &[1, 8, 32],
                memory_records: 100_000,
                rate_records: 30_000,
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Keys, records, nodes

/// Deterministic keys whose node ids solve the benchmark's puzzle: seeds
/// `label ‖ counter`, counting up, keeping the first `count` that pass.
fn puzzle_keys(label: u8, count: usize) -> Vec<SecretKey> {
    let mut keys = Vec::with_capacity(count);
    let mut counter = 0u64;
    while keys.len() < count {
        let mut seed = [label; 32];
        seed[..8].copy_from_slice(&counter.to_le_bytes());
        let key = SecretKey::from_seed(&seed);
        if key.public().node_id().meets_difficulty(DIFFICULTY) {
            keys.push(key);
        }
        counter += 1;
    }
    keys
}

/// The memory phase's node key, known to both processes.
fn memory_node_key() -> SecretKey {
    puzzle_keys(0xee, 1).remove(0)
}

fn params() -> OverlayParams {
    // Default k, alpha, paths and replication: the figures are those of a
    // default overlay; only the puzzle is cheap.
    OverlayParams {
        name: OVERLAY.into(),
        id_difficulty: DIFFICULTY,
        ..OverlayParams::default()
    }
}

/// The request rate limit of a node: the default, or none.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Rate {
    Default,
    Off,
}

/// `count` valid owner-value records, signed by deterministic owner keys
/// (`label` tells the sets apart), [`RECORDS_PER_OWNER`] per owner.
fn signed_records(label: u8, count: usize) -> Vec<Record> {
    let expires = p2psip::unix_now() as u64 + 24 * 3600;
    let mut owner = None;
    (0..count)
        .map(|i| {
            if i % RECORDS_PER_OWNER == 0 {
                let mut seed = [label; 32];
                seed[..8].copy_from_slice(&(i / RECORDS_PER_OWNER).to_le_bytes());
                owner = Some(SecretKey::from_seed(&seed));
            }
            let owner = owner.as_ref().expect("set at i = 0");
            let mut data = vec![0u8; RECORD_DATA_LEN];
            data[..8].copy_from_slice(&(i as u64).to_le_bytes());
            OwnerValue::new(&format!("bench-{i}"), data)
                .expect("a valid owner value")
                .sign(owner, 1, expires)
        })
        .collect()
}

/// A node serving (in the current runtime) until stopped.
struct Running {
    node: Arc<Node>,
    contact: Contact,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Binds `key`'s node at `listen` and serves it. Must run inside a
    /// tokio runtime (the quinn endpoint needs one).
    fn start(
        key: &SecretKey,
        listen: SocketAddr,
        overlay: Option<OverlayParams>,
        data_dir: Option<PathBuf>,
        rate: Rate,
    ) -> Self {
        let identity =
            LocalIdentity::self_signed(key, p2psip::unix_now()).expect("self-signed certificate");
        let config = NodeConfig {
            identity,
            policy: VerifyPolicy::self_certifying(DIFFICULTY),
            limits: Limits::default(),
            overlay,
            data_dir,
        };
        let mut node = Node::bind(config, listen).expect("bind node");
        if rate == Rate::Off {
            node = node.with_rate_limit(RateLimit {
                refill_every: Duration::ZERO,
                ..RateLimit::default()
            });
        }
        let node = Arc::new(node);
        let contact = Contact {
            id: node.node_id(),
            addr: node.local_addr().expect("local address"),
        };
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = node.clone();
        let task = tokio::spawn(async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        Self {
            node,
            contact,
            stop,
            task,
        }
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Stops every node at once (each waits briefly for its peers).
async fn stop_all(nodes: Vec<Running>) {
    let stops: Vec<_> = nodes.into_iter().map(|r| tokio::spawn(r.stop())).collect();
    for s in stops {
        let _ = s.await;
    }
}

/// A FindNode (`kind` `None`) or FindValue lookup by `node`; succeeds when
/// it found what it looked for (closest nodes, or a verified record).
async fn lookup(node: Arc<Node>, key: Key, kind: Option<RecordKind>) -> Result<(), String> {
    let overlay = node.overlay().expect("an overlay node");
    let found = overlay.lookup(node.dialer(), key, kind).await;
    match kind {
        None if found.closest.is_empty() => Err("lookup found no node".into()),
        Some(_) if found.records.is_empty() => Err("lookup found no record".into()),
        _ => Ok(()),
    }
}

/// One Store request over QUIC from `from` to `to`, retried after a short
/// pause while the target answers `RateLimited` (counted in `limited`).
async fn raw_store(
    from: Arc<Node>,
    to: Contact,
    encoded: Vec<u8>,
    limited: Arc<AtomicUsize>,
) -> Result<(), String> {
    let request = Message::Store {
        overlay: OVERLAY.into(),
        record: encoded,
    };
    for _ in 0..RATE_LIMITED_RETRIES {
        match from.dialer().request(to, &request).await {
            Ok(Message::Stored { .. }) => return Ok(()),
            Err(NetError::Remote {
                code: ErrorCode::RateLimited,
                ..
            }) => {
                limited.fetch_add(1, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Ok(other) => return Err(format!("answer {}", other.name())),
            Err(e) => return Err(e.to_string()),
        }
    }
    Err("still rate limited after the retries".into())
}

// ---------------------------------------------------------------------------
// Measurement

/// The outcome of a bounded run of operations.
#[derive(Default)]
struct Run {
    /// The latency of every completed operation, failed ones included.
    latencies: Vec<Duration>,
    /// Why operations failed, and how often.
    failures: BTreeMap<String, usize>,
    /// From the start to the end of the last operation.
    elapsed: Duration,
}

impl Run {
    fn ops(&self) -> usize {
        self.latencies.len()
    }

    fn failed(&self) -> usize {
        self.failures.values().sum()
    }

    /// Successful operations per second.
    fn per_sec(&self) -> f64 {
        (self.ops() - self.failed()) as f64 / self.elapsed.as_secs_f64()
    }

    /// Nearest-rank percentile, `q` in (0, 1], in milliseconds.
    fn percentile_ms(&self, q: f64) -> f64 {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let rank = ((q * sorted.len() as f64).ceil() as usize).max(1);
        sorted
            .get(rank - 1)
            .map_or(f64::NAN, |d| d.as_secs_f64() * 1e3)
    }

    /// "p50 / p99 / max" in milliseconds.
    fn latency(&self) -> String {
        format!(
            "{:.1} / {:.1} / {:.1} ms",
            self.percentile_ms(0.5),
            self.percentile_ms(0.99),
            self.percentile_ms(1.0)
        )
    }

    /// "N" or "N, M failed (most common reason)".
    fn count(&self) -> String {
        match self.failures.iter().max_by_key(|(_, n)| **n) {
            None => format!("{}", self.ops()),
            Some((why, _)) => format!("{}, {} failed: {why}", self.ops(), self.failed()),
        }
    }
}

/// Runs `op(task, 0)`, `op(task, 1)`, … from `concurrency` tasks (`task`
/// is the index of the task running it) until `max_ops` have started or
/// `max_time` has passed; operations already started finish.
async fn run_ops<F, Fut>(concurrency: usize, max_ops: usize, max_time: Duration, op: F) -> Run
where
    F: Fn(usize, usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let deadline = start + max_time;
    let tasks: Vec<_> = (0..concurrency)
        .map(|task| {
            let (op, next) = (op.clone(), next.clone());
            tokio::spawn(async move {
                let mut run = Run::default();
                while Instant::now() < deadline {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    if i >= max_ops {
                        break;
                    }
                    let t = Instant::now();
                    let result = op(task, i).await;
                    run.latencies.push(t.elapsed());
                    if let Err(why) = result {
                        // Numbers (retry delays, counts) would split one
                        // reason into many.
                        let why: String = why.chars().filter(|c| !c.is_ascii_digit()).collect();
                        *run.failures.entry(why).or_default() += 1;
                    }
                }
                run
            })
        })
        .collect();
    let mut all = Run::default();
    for task in tasks {
        let run = task.await.expect("benchmark task");
        all.latencies.extend(run.latencies);
        for (why, n) in run.failures {
            *all.failures.entry(why).or_default() += n;
        }
    }
    all.elapsed = start.elapsed();
    all
}

fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}

/// Min / median / max routing table size over `nodes`.
fn table_sizes(nodes: &[Running]) -> String {
    let mut sizes: Vec<usize> = nodes
        .iter()
        .map(|n| n.node.overlay().expect("overlay node").table_len())
        .collect();
    sizes.sort_unstable();
    format!(
        "{} / {} / {}",
        sizes[0],
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1]
    )
}

/// Writers of raw Store requests: [`WRITERS`] plain nodes (no overlay),
/// each on its own address 127.N.0.1 with N from `first_net`.
fn start_writers(label: u8, first_net: usize, count: usize) -> Vec<Running> {
    puzzle_keys(label, count)
        .iter()
        .enumerate()
        .map(|(i, key)| {
            let listen = format!("127.{}.0.1:0", first_net + i)
                .parse()
                .expect("address");
            Running::start(key, listen, None, None, Rate::Default)
        })
        .collect()
}

/// Stores every record of `encoded` into `to`, `per_writer` tasks per
/// writer. Returns the run and how many Stores were refused `RateLimited`
/// (and retried).
async fn store_all(
    writers: &[Running],
    per_writer: usize,
    to: Contact,
    encoded: Arc<Vec<Vec<u8>>>,
    max_time: Duration,
) -> (Run, usize) {
    let from: Arc<Vec<Arc<Node>>> = Arc::new(writers.iter().map(|w| w.node.clone()).collect());
    let limited = Arc::new(AtomicUsize::new(0));
    let run = {
        let limited = limited.clone();
        let tasks = from.len() * per_writer.max(1);
        run_ops(tasks, encoded.len(), max_time, move |task, i| {
            raw_store(
                from[task % from.len()].clone(),
                to,
                encoded[i].clone(),
                limited.clone(),
            )
        })
        .await
    };
    (run, limited.load(Ordering::Relaxed))
}

// ---------------------------------------------------------------------------
// Phase 1: the overlay

/// `n` overlay nodes on 127.1.0.1 … 127.n.0.1, joined one by one through
/// the first. Returns them and the join times.
async fn build_overlay(n: usize, rate: Rate) -> (Vec<Running>, Run) {
    let keys = puzzle_keys(1, n);
    let start = Instant::now();
    let mut nodes = Vec::with_capacity(n);
    let mut joins = Run::default();
    for (i, key) in keys.iter().enumerate() {
        let listen = format!("127.{}.0.1:0", i + 1).parse().expect("address");
        let r = Running::start(key, listen, Some(params()), None, rate);
        if let Some(boot) = nodes.first().map(|b: &Running| b.contact) {
            let t0 = Instant::now();
            let overlay = r.node.overlay().expect("overlay node");
            overlay.join(r.node.dialer(), &[boot]).await;
            joins.latencies.push(t0.elapsed());
        }
        nodes.push(r);
    }
    joins.elapsed = start.elapsed();
    (nodes, joins)
}

/// Each node looks up a few random keys, so that connections (and the
/// certificate caches) exist before anything is timed, as on a node that
/// has been running for a while.
async fn warm_up(all: &Arc<Vec<Arc<Node>>>, rng: &mut StdRng) {
    let keys: Arc<Vec<Key>> = Arc::new((0..4 * all.len()).map(|_| Key(rng.gen())).collect());
    let all = all.clone();
    run_ops(
        all.len(),
        keys.len(),
        Duration::from_secs(120),
        move |_, i| lookup(all[i % all.len()].clone(), keys[i], None),
    )
    .await;
}

/// Publishes `records[i]` from a node; remembers the keys stored.
#[derive(Clone)]
struct Publisher {
    records: Arc<Vec<Record>>,
    /// Nodes in the overlay (this node included).
    nodes: usize,
    acks: Arc<AtomicUsize>,
    stored: Arc<Mutex<Vec<Key>>>,
}

impl Publisher {
    fn new(records: Vec<Record>, nodes: usize) -> Self {
        Self {
            records: Arc::new(records),
            nodes,
            acks: Arc::default(),
            stored: Arc::default(),
        }
    }

    fn publish(&self, node: Arc<Node>, i: usize) -> impl Future<Output = Result<(), String>> {
        let this = self.clone();
        async move {
            let overlay = node.overlay().expect("overlay node");
            let record = &this.records[i];
            let acks = overlay.publish(node.dialer(), record).await;
            this.acks.fetch_add(acks, Ordering::Relaxed);
            if acks > 0 {
                this.stored.lock().expect("lock").push(record.key);
            }
            // A publish succeeds when as many nodes as the overlay
            // replicates to (or all of a smaller overlay) stored it.
            let wanted = overlay.params().replication.min(this.nodes);
            if acks < wanted {
                return Err("fewer nodes than the replication factor acknowledged".into());
            }
            Ok(())
        }
    }

    /// Acknowledgements counted since the last call.
    fn take_acks(&self) -> usize {
        self.acks.swap(0, Ordering::Relaxed)
    }

    fn stored(&self) -> Arc<Vec<Key>> {
        Arc::new(self.stored.lock().expect("lock").clone())
    }
}

/// Latencies: sequential lookups and publishes, each from the next node in
/// turn. Returns the keys stored, for FindValue lookups.
async fn latency_runs(
    s: &Scale,
    t: &mut Table,
    all: &Arc<Vec<Arc<Node>>>,
    rng: &mut StdRng,
) -> Arc<Vec<Key>> {
    progress("lookup latency");
    let random: Arc<Vec<Key>> = Arc::new((0..s.latency_lookups).map(|_| Key(rng.gen())).collect());
    let run = {
        let (all, random) = (all.clone(), random.clone());
        run_ops(1, random.len(), s.window * 4, move |_, i| {
            lookup(all[i % all.len()].clone(), random[i], None)
        })
        .await
    };
    t.row(
        format!("FindNode of a random key, sequential, from each node in turn ({} lookups): latency p50 / p99 / max", run.count()),
        run.latency(),
    );

    progress("publish latency");
    let publisher = Publisher::new(signed_records(2, s.latency_publishes), all.len());
    let run = {
        let (all, publisher) = (all.clone(), publisher.clone());
        run_ops(1, s.latency_publishes, s.window * 4, move |_, i| {
            publisher.publish(all[i % all.len()].clone(), i)
        })
        .await
    };
    let replication = params().replication.min(all.len());
    t.row(
        format!("publish (a lookup, then a Store on each of the {replication} closest nodes in turn), sequential, from each node in turn ({} publishes): latency p50 / p99 / max", run.count()),
        run.latency(),
    );
    t.row(
        "replicas acknowledged per publish, mean",
        format!(
            "{:.1} of {replication}",
            publisher.take_acks() as f64 / run.ops().max(1) as f64
        ),
    );

    progress("FindValue latency");
    let stored = publisher.stored();
    let run = {
        let (all, stored) = (all.clone(), stored.clone());
        let count = s.latency_lookups.min(stored.len() * all.len());
        run_ops(1, count, s.window * 4, move |_, i| {
            // Every stored key, each from several nodes.
            let key = stored[i % stored.len()];
            let node = all[(i / stored.len() + i) % all.len()].clone();
            lookup(node, key, Some(RecordKind::OwnerValue))
        })
        .await
    };
    t.row(
        format!("FindValue of a stored key, sequential, from each node in turn ({} lookups): latency p50 / p99 / max", run.count()),
        run.latency(),
    );
    let run = {
        let (all, random) = (all.clone(), random.clone());
        run_ops(1, random.len(), s.window * 4, move |_, i| {
            lookup(
                all[i % all.len()].clone(),
                random[i],
                Some(RecordKind::OwnerValue),
            )
        })
        .await
    };
    // Nothing is stored under these keys: each lookup runs to the end, as
    // a FindNode does, and counts as "failed".
    t.row(
        format!(
            "FindValue of a missing key (runs to the end), sequential ({} lookups): latency p50 / p99 / max",
            run.ops()
        ),
        run.latency(),
    );
    stored
}

/// What one node sustains: concurrent lookups at several levels,
/// concurrent FindValues of stored keys, concurrent publishes. Each run
/// uses another node of `all` (from the middle on), so that a node whose
/// routing table a run damaged does not spoil the next run; the row says
/// how many contacts the node still had afterwards. `tag` names the rate
/// limit in the rows.
async fn throughput_runs(
    s: &Scale,
    t: &mut Table,
    all: &[Arc<Node>],
    stored: Arc<Vec<Key>>,
    records: u8,
    tag: &str,
) -> Vec<(usize, f64)> {
    let mut findnode_rates = Vec::new();
    let mut fresh = all.iter().cycle().skip(all.len() / 2).cloned();
    let mut next_node = move || fresh.next().expect("a node");
    let after = |one: &Arc<Node>| one.overlay().expect("overlay node").table_len();
    for &c in s.lookup_concurrency {
        let one = next_node();
        let before = after(&one);
        progress(&format!("FindNode throughput, {c} concurrent, {tag}"));
        let mut rng = StdRng::seed_from_u64(c as u64);
        let keys: Arc<Vec<Key>> = Arc::new((0..500_000).map(|_| Key(rng.gen())).collect());
        let run = {
            let one = one.clone();
            run_ops(c, keys.len(), s.window, move |_, i| {
                lookup(one.clone(), keys[i], None)
            })
            .await
        };
        let kept = after(&one);
        let succeeded = run.ops() - run.failed();
        t.row(
            format!(
                "FindNode lookups/s by one node, {c} concurrent, {tag} ({}; contacts before / after: {before} / {kept})",
                run.count(),
            ),
            format!("{:.0}", run.per_sec()),
        );
        t.row(
            format!(
                "FindNode goal, {c} concurrent, {tag}: contacts kept (>= 90 %), lookups succeeded (>= 99 %)"
            ),
            format!(
                "{:.1} %, {:.2} %",
                100.0 * kept as f64 / before.max(1) as f64,
                100.0 * succeeded as f64 / run.ops().max(1) as f64
            ),
        );
        findnode_rates.push((c, run.per_sec()));
        t.row(
            format!("FindNode latency, {c} concurrent, {tag}: p50 / p99 / max"),
            run.latency(),
        );
    }
    let c = *s.lookup_concurrency.last().expect("a concurrency level");
    progress(&format!("FindValue throughput, {c} concurrent, {tag}"));
    let one = next_node();
    let run = {
        let (one, stored) = (one.clone(), stored.clone());
        let max_ops = if stored.is_empty() { 0 } else { 1_000_000 };
        run_ops(c, max_ops, s.window, move |_, i| {
            let key = stored[i % stored.len()];
            lookup(one.clone(), key, Some(RecordKind::OwnerValue))
        })
        .await
    };
    t.row(
        format!(
            "FindValue lookups/s of stored keys by one node, {c} concurrent, {tag} ({}; contacts after: {})",
            run.count(),
            after(&one)
        ),
        format!("{:.0}", run.per_sec()),
    );
    t.row(
        format!("FindValue latency, {c} concurrent, {tag}: p50 / p99 / max"),
        run.latency(),
    );

    let c = s.publish_concurrency;
    progress(&format!("publish throughput, {c} concurrent, {tag}"));
    let publisher = Publisher::new(signed_records(records, s.publishes), s.nodes);
    let one = next_node();
    let run = {
        let (one, publisher) = (one.clone(), publisher.clone());
        run_ops(c, s.publishes, s.window, move |_, i| {
            publisher.publish(one.clone(), i)
        })
        .await
    };
    t.row(
        format!(
            "publishes/s by one node, {c} concurrent, {tag} ({}; contacts after: {})",
            run.count(),
            after(&one)
        ),
        format!("{:.0}", run.per_sec()),
    );
    let acks = publisher.take_acks() as f64;
    t.row(
        format!("replica Stores acknowledged/s during those publishes, {tag} (mean per publish)"),
        format!(
            "{:.0} ({:.1})",
            acks / run.elapsed.as_secs_f64(),
            acks / run.ops().max(1) as f64
        ),
    );
    t.row(
        format!("publish latency, {c} concurrent, {tag}: p50 / p99 / max"),
        run.latency(),
    );
    findnode_rates
}

async fn overlay_phase(s: &Scale, t: &mut Table) {
    let n = s.nodes;
    let mut rng = StdRng::seed_from_u64(3);

    progress(&format!("starting {n} nodes and joining them"));
    let (nodes, joins) = build_overlay(n, Rate::Default).await;
    t.row(
        "nodes started and joined one by one through one bootstrap node",
        format!("{n} in {:.1} s", joins.elapsed.as_secs_f64()),
    );
    t.row("join time per node, p50 / p99 / max", joins.latency());
    t.row(
        "routing table size after the joins, min / median / max",
        table_sizes(&nodes),
    );
    let all: Arc<Vec<Arc<Node>>> = Arc::new(nodes.iter().map(|r| r.node.clone()).collect());
    warm_up(&all, &mut rng).await;
    t.row(
        "routing table size after a warm-up of 4 lookups per node, min / median / max",
        table_sizes(&nodes),
    );

    let stored = latency_runs(s, t, &all, &mut rng).await;
    let tag = "default rate limit";
    let limited = throughput_runs(s, t, &all, stored.clone(), 3, tag).await;
    t.row(
        format!("routing table size after the runs, {tag}, min / median / max"),
        table_sizes(&nodes),
    );
    let (rss, hwm) = rss_kib();
    t.row(
        format!("this process with {n} nodes (and the benchmark's records): VmRSS / VmHWM"),
        format!("{:.0} / {:.0} MiB", mib(rss), mib(hwm)),
    );
    progress("stopping the nodes");
    drop(all);
    stop_all(nodes).await;

    // The same throughput runs on an overlay whose nodes limit no peer.
    progress(&format!("starting {n} nodes without rate limits"));
    let (nodes, _) = build_overlay(n, Rate::Off).await;
    let all: Arc<Vec<Arc<Node>>> = Arc::new(nodes.iter().map(|r| r.node.clone()).collect());
    warm_up(&all, &mut rng).await;
    // Records to look up: the same keys, published into this overlay.
    let publisher = Publisher::new(signed_records(2, s.latency_publishes), n);
    {
        let (all, publisher) = (all.clone(), publisher.clone());
        run_ops(4, s.latency_publishes, s.window * 4, move |_, i| {
            publisher.publish(all[i % all.len()].clone(), i)
        })
        .await;
    }
    let tag = "rate limit off";
    let unlimited = throughput_runs(s, t, &all, publisher.stored(), 5, tag).await;
    for ((c, with), (_, without)) in limited.iter().zip(&unlimited) {
        t.row(
            format!(
                "FindNode throughput, {c} concurrent: default rate limit / limit off (goal >= 0.8)"
            ),
            format!("{:.2}", with / without.max(f64::MIN_POSITIVE)),
        );
    }
    t.row(
        format!("routing table size after the runs, {tag}, min / median / max"),
        table_sizes(&nodes),
    );
    drop(all);
    stop_all(nodes).await;
}

// ---------------------------------------------------------------------------
// Phase 2: memory, in a child process

/// The child: serves the memory node until its stdin closes, with its
/// records in the data directory `dir` (`-`: in memory only), limiting
/// no peer's rate with `rate` [`Rate::Off`]. Prints
/// `listening ADDR RECORDS BIND_MS` once bound, and
/// `rss VMRSS_KIB VMHWM_KIB RECORDS` for every `rss` line it reads.
fn memory_child(dir: &str, rate: Rate) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let _guard = rt.enter();
    let t0 = Instant::now();
    let node = Running::start(
        &memory_node_key(),
        "127.0.0.1:0".parse().expect("address"),
        Some(params()),
        (dir != "-").then(|| PathBuf::from(dir)),
        rate,
    );
    let bind_ms = t0.elapsed().as_millis();
    let records = || node.node.overlay().expect("overlay node").records_len();
    println!("listening {} {} {bind_ms}", node.contact.addr, records());
    for line in std::io::stdin().lock().lines().map_while(Result::ok) {
        if line.trim() == "rss" {
            let (rss, hwm) = rss_kib();
            println!("rss {rss} {hwm} {}", records());
        }
    }
    rt.block_on(node.stop());
}

/// A running memory child and the lines it prints.
struct MemoryChild {
    child: Child,
    out: BufReader<ChildStdout>,
    addr: SocketAddr,
    /// Records it loaded from its data directory at start.
    loaded: usize,
    /// How long binding (including that load) took.
    bind: Duration,
}

/// What a memory child reported.
struct Rss {
    rss_kib: u64,
    hwm_kib: u64,
    records: usize,
}

impl MemoryChild {
    /// Starts a child with its records in `dir`, or in memory only.
    fn spawn(dir: Option<&Path>, rate: Rate) -> Self {
        let exe = std::env::current_exe().expect("path of this benchmark binary");
        let mut child = Command::new(exe)
            .arg(MEMORY_CHILD)
            .arg(dir.map_or("-".as_ref(), Path::as_os_str))
            .arg(if rate == Rate::Off {
                "rate-off"
            } else {
                "rate-default"
            })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("start the memory child");
        let mut out = BufReader::new(child.stdout.take().expect("piped stdout"));
        let line = read_line(&mut out);
        let f: Vec<&str> = line.split_whitespace().collect();
        assert!(
            f.len() == 4 && f[0] == "listening",
            "memory child said {line:?}"
        );
        Self {
            child,
            out,
            addr: f[1].parse().expect("address"),
            loaded: f[2].parse().expect("record count"),
            bind: Duration::from_millis(f[3].parse().expect("milliseconds")),
        }
    }

    fn rss(&mut self) -> Rss {
        let stdin = self.child.stdin.as_mut().expect("piped stdin");
        writeln!(stdin, "rss").expect("write to the memory child");
        let line = read_line(&mut self.out);
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().expect("number"))
            .collect();
        assert_eq!(f.len(), 3, "memory child said {line:?}");
        Rss {
            rss_kib: f[0],
            hwm_kib: f[1],
            records: f[2] as usize,
        }
    }

    /// Closes its stdin and waits until it has exited (and released the
    /// database).
    fn finish(mut self) {
        drop(self.child.stdin.take());
        let status = self.child.wait().expect("wait for the memory child");
        assert!(status.success(), "memory child failed: {status}");
    }
}

fn read_line(out: &mut BufReader<ChildStdout>) -> String {
    let mut line = String::new();
    out.read_line(&mut line)
        .expect("read from the memory child");
    line.trim().to_owned()
}

/// What one memory child went through: its idle and full memory, and the
/// Stores that filled it.
struct Filled {
    idle: Rss,
    full: Rss,
    stores: Run,
    limited: usize,
    /// CPU time (user + system) the node's process spent during the
    /// Stores.
    node_cpu: Duration,
    /// CPU time this process (the writers) spent during the Stores.
    writers_cpu: Duration,
}

impl Filled {
    /// "node N µs, writers M µs": CPU per successful Store.
    fn cpu_per_store(&self) -> String {
        let stores = (self.stores.ops() - self.stores.failed()).max(1) as f64;
        let us = |d: Duration| d.as_secs_f64() * 1e6 / stores;
        format!(
            "node {:.0} µs, writers {:.0} µs",
            us(self.node_cpu),
            us(self.writers_cpu)
        )
    }

    /// Stores/s the node's process would sustain if it had `cores` to
    /// itself at the CPU cost per Store measured here (an upper bound from
    /// CPU time: it ignores waiting for the disk).
    fn node_bound(&self, cores: usize) -> f64 {
        let stores = (self.stores.ops() - self.stores.failed()) as f64;
        cores as f64 * stores / self.node_cpu.as_secs_f64().max(1e-9)
    }
}

/// Starts a memory child (records in `dir`, or in memory only), stores
/// every record of `encoded` into it over QUIC from [`WRITERS`] writers
/// with `per_writer` Stores in flight each, and reads its memory before
/// and after.
fn fill_child(
    dir: Option<&Path>,
    rate: Rate,
    writers: usize,
    per_writer: usize,
    encoded: &Arc<Vec<Vec<u8>>>,
) -> Filled {
    let mut child = MemoryChild::spawn(dir, rate);
    let idle = child.rss();
    let to = Contact {
        id: memory_node_key().public().node_id(),
        addr: child.addr,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let child_pid = child.child.id().to_string();
    let ((stores, limited), (node_cpu, writers_cpu)) = rt.block_on(async {
        let writers = start_writers(10, 100, writers);
        // Connected before the clock starts: the figures are of Stores,
        // not of handshakes.
        for w in &writers {
            let _ = w.node.dialer().connect(to).await;
        }
        let cpu_before = (cpu_time(&child_pid), cpu_time("self"));
        // Bounded in time only as a safety net: the point is to hold every
        // record; what was stored is printed.
        let result = store_all(
            &writers,
            per_writer,
            to,
            encoded.clone(),
            Duration::from_secs(1800),
        )
        .await;
        let cpu = (
            cpu_time(&child_pid).saturating_sub(cpu_before.0),
            cpu_time("self").saturating_sub(cpu_before.1),
        );
        stop_all(writers).await;
        (result, cpu)
    });
    rt.shutdown_timeout(Duration::from_secs(5));
    let full = child.rss();
    child.finish();
    Filled {
        idle,
        full,
        stores,
        limited,
        node_cpu,
        writers_cpu,
    }
}

/// Resident bytes per record from the idle and the full figures.
fn bytes_per_record(f: &Filled) -> f64 {
    (f.full.rss_kib.saturating_sub(f.idle.rss_kib) * 1024) as f64 / f.full.records.max(1) as f64
}

/// `count` records signed and encoded before anything is timed: the
/// writers' signing is not charged to the node.
fn encoded_records(count: usize, t: &mut Table) -> Arc<Vec<Vec<u8>>> {
    progress(&format!("signing {count} records (not timed)"));
    let encoded: Vec<Vec<u8>> = signed_records(9, count)
        .iter()
        .map(Record::encode)
        .collect();
    t.row(
        format!("record: an owner value with {RECORD_DATA_LEN} bytes of data, encoded"),
        format!("{} bytes", encoded.first().map_or(0, Vec::len)),
    );
    Arc::new(encoded)
}

fn memory_phase(s: &Scale, t: &mut Table, encoded: &Arc<Vec<Vec<u8>>>) {
    let count = s.memory_records.min(encoded.len());
    let encoded: Arc<Vec<Vec<u8>>> = if count == encoded.len() {
        encoded.clone()
    } else {
        Arc::new(encoded[..count].to_vec())
    };

    // In memory only: what the record store itself costs, and the Store
    // rate without the disk.
    progress(&format!(
        "memory: {count} Stores over QUIC into a node without a data dir"
    ));
    let mem = fill_child(None, Rate::Off, WRITERS, 1, &encoded);
    t.row(
        format!("Stores/s over QUIC into one standalone node without a data dir, rate limit off, from {WRITERS} writers one request at a time each ({})", mem.stores.count()),
        format!("{:.0}", mem.stores.per_sec()),
    );
    t.row(
        "… CPU per Store, no data dir (user + system)",
        mem.cpu_per_store(),
    );
    t.row(
        "Store latency, no data dir: p50 / p99 / max",
        format!(
            "{} ({} RateLimited answers, retried)",
            mem.stores.latency(),
            mem.limited
        ),
    );
    t.row(
        "node without a data dir, idle: VmRSS",
        format!("{:.1} MiB", mib(mem.idle.rss_kib)),
    );
    t.row(
        format!(
            "node without a data dir holding {} records: VmRSS / VmHWM; resident bytes per record",
            mem.full.records
        ),
        format!(
            "{:.1} / {:.1} MiB; {:.0}",
            mib(mem.full.rss_kib),
            mib(mem.full.hwm_kib),
            bytes_per_record(&mem)
        ),
    );

    // With a data directory: every Store is a durable database write.
    progress(&format!(
        "memory: {count} Stores over QUIC into a node with a data dir"
    ));
    let dir = tempfile::tempdir().expect("temporary directory");
    let disk = fill_child(Some(dir.path()), Rate::Off, WRITERS, 1, &encoded);
    let db_bytes = std::fs::metadata(dir.path().join(RECORDS_FILE)).map_or(0, |m| m.len());
    t.row(
        format!("durable Stores/s over QUIC into one standalone node with a data dir, rate limit off, from {WRITERS} writers one request at a time each ({})", disk.stores.count()),
        format!("{:.0}", disk.stores.per_sec()),
    );
    t.row(
        "… CPU per durable Store (user + system)",
        disk.cpu_per_store(),
    );
    t.row(
        "durable Store latency: p50 / p99 / max",
        format!(
            "{} ({} RateLimited answers, retried)",
            disk.stores.latency(),
            disk.limited
        ),
    );
    t.row(
        "node with a data dir, idle: VmRSS",
        format!("{:.1} MiB", mib(disk.idle.rss_kib)),
    );
    t.row(
        format!(
            "node with a data dir holding {} records: VmRSS / VmHWM; resident bytes per record",
            disk.full.records
        ),
        format!(
            "{:.1} / {:.1} MiB; {:.0}",
            mib(disk.full.rss_kib),
            mib(disk.full.hwm_kib),
            bytes_per_record(&disk)
        ),
    );
    t.row(
        format!("{RECORDS_FILE} size; bytes per record"),
        format!(
            "{:.1} MiB; {:.0}",
            db_bytes as f64 / (1024.0 * 1024.0),
            db_bytes as f64 / disk.full.records.max(1) as f64
        ),
    );

    progress("memory: restarting from the data directory");
    let mut restarted = MemoryChild::spawn(Some(dir.path()), Rate::Off);
    let reloaded = restarted.rss();
    let (loaded, load_time) = (restarted.loaded, restarted.bind);
    restarted.finish();
    t.row(
        "node restarted from its data dir: records loaded (and re-verified) while binding",
        format!("{loaded} in {:.1} s", load_time.as_secs_f64()),
    );
    t.row(
        format!(
            "node restarted holding {} records: VmRSS / VmHWM",
            reloaded.records
        ),
        format!(
            "{:.1} / {:.1} MiB",
            mib(reloaded.rss_kib),
            mib(reloaded.hwm_kib)
        ),
    );
    let peak = mib(disk.full.hwm_kib.max(reloaded.hwm_kib));
    let met = disk.full.records == count && reloaded.records == count && peak < MEMORY_GOAL_MIB;
    t.row(
        format!("goal: a node (with a data dir) holding {count} records stays under {MEMORY_GOAL_MIB:.0} MiB resident (peak VmHWM of the filled and the restarted node)"),
        format!("{} ({peak:.1} MiB)", if met { "met" } else { "NOT met" }),
    );
    drop(dir);
}

fn rate_phase(s: &Scale, t: &mut Table, encoded: &Arc<Vec<Vec<u8>>>) {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    // The Store rate alone, without the per-peer rate limit (which caps
    // 32 writers at 3,200 Stores/s) and with several Stores in flight per
    // writer: the cost of durability is the gap between the two rows.
    let count = s.rate_records.min(encoded.len());
    let some: Arc<Vec<Vec<u8>>> = Arc::new(encoded[..count].to_vec());
    let in_flight = RATE_WRITERS * STORES_IN_FLIGHT_PER_WRITER;
    for durable in [false, true] {
        let what = if durable {
            "durable Stores/s over QUIC into one standalone node with a data dir"
        } else {
            "Stores/s over QUIC into one standalone node without a data dir"
        };
        progress(&format!("Store rate: {count} Stores, {what}"));
        let dir = tempfile::tempdir().expect("temporary directory");
        let run = fill_child(
            durable.then(|| dir.path()),
            Rate::Off,
            RATE_WRITERS,
            STORES_IN_FLIGHT_PER_WRITER,
            &some,
        );
        t.row(
            format!("{what}, rate limit off, from {RATE_WRITERS} writers with {STORES_IN_FLIGHT_PER_WRITER} Stores in flight each ({in_flight} at once; {})", run.stores.count()),
            format!("{:.0}", run.stores.per_sec()),
        );
        t.row(
            format!(
                "… latency, {}: p50 / p99 / max",
                if durable { "durable" } else { "no data dir" }
            ),
            run.stores.latency(),
        );
        t.row(
            format!(
                "… CPU per Store, {} (user + system); Stores/s the node's CPU time alone allows on {cores} cores",
                if durable { "durable" } else { "no data dir" }
            ),
            format!("{}; {:.0}", run.cpu_per_store(), run.node_bound(cores)),
        );
        if durable && !quick() {
            let rate = run.stores.per_sec();
            let all = run.stores.failed() == 0;
            t.row(
                format!("goal: at least {DURABLE_STORE_GOAL:.0} durable Stores/s into one node, every Store acknowledged (this run)"),
                format!(
                    "{} ({rate:.0}/s, {} failed)",
                    if rate >= DURABLE_STORE_GOAL && all { "met" } else { "NOT met" },
                    run.stores.failed()
                ),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    // `cargo bench` passes `--bench` (and any filter): ignored.
    if let Some(i) = args.iter().position(|a| a == MEMORY_CHILD) {
        let dir = args.get(i + 1).expect("--memory-child DIR|- RATE");
        let rate = match args.get(i + 2).map(String::as_str) {
            Some("rate-off") => Rate::Off,
            _ => Rate::Default,
        };
        memory_child(dir, rate);
        return;
    }
    let s = Scale::new();
    let mut table = Table::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    table.row("cores (= tokio worker threads)", format!("{threads}"));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if runs("overlay") {
        rt.block_on(overlay_phase(&s, &mut table));
    }
    // The nodes are stopped; their runtime must not compete with the
    // memory phase.
    rt.shutdown_timeout(Duration::from_secs(5));
    let (memory, rate) = (runs("memory"), runs("rate"));
    if memory || rate {
        let count = if memory {
            s.memory_records.max(s.rate_records)
        } else {
            s.rate_records
        };
        let encoded = encoded_records(count, &mut table);
        if memory {
            memory_phase(&s, &mut table, &encoded);
        }
        if rate {
            rate_phase(&s, &mut table, &encoded);
        }
    }
    table.print();
}

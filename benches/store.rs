//! Benchmark: what a stored record costs in memory, and how fast durable
//! Stores go, printed as one Markdown table.
//!
//! 1. **Record store memory.** A child process (this binary, run with
//!    `--store-child MODE COUNT`) fills a `RecordStore` with signed,
//!    verified records, one at a time (sign, encode, decode, verify, put:
//!    nothing but the store keeps them), and reports its `VmRSS` before
//!    and after from `/proc/self/status`, the records held and the bytes
//!    the store accounted. Modes: 256-byte records each of its own owner
//!    (the worst case for the store's per-owner table), 256-byte records
//!    64 per owner, and maximum-size records until the store refuses at
//!    its default byte bound (`DEFAULT_STORE_MAX_BYTES`). Resident bytes
//!    per record minus the encoding is what `STORE_SLOT_OVERHEAD` must
//!    cover.
//! 2. **Disk writes.** Into a fresh database in a temporary directory:
//!    one transaction per write (`DiskStore::save`, what a durable Store
//!    cost before group commit) from 1 and 32 threads, and group commit
//!    (`Committer::persist`) from 1, 32 and 128 concurrent writers.
//! 3. **Durable Stores into one node, in process.** `OverlayService::answer`
//!    of Store requests (decode, responsibility check, strict Ed25519
//!    verification, the record store, and with a data directory the group
//!    commit) from 32 and 128 concurrent writers, with and without a data
//!    directory. No QUIC: `benches/overlay_loopback.rs` measures Stores
//!    over the network.
//!
//! Nothing asserts a time. Run: `cargo bench --bench store` (release
//! build; figures in `docs/benchmarks.md`). `P2PSIP_BENCH_QUICK=1` runs the
//! same code with tiny counts (CI does, to keep it working);
//! `P2PSIP_BENCH_ONLY=memory,disk,node` picks phases.

use p2psip::identity::{NodeId, SecretKey};
use p2psip::limits::{DEFAULT_STORE_MAX_BYTES, MAX_RECORD_VALUE_LEN, STORE_SLOT_OVERHEAD};
use p2psip::net::commit::Committer;
use p2psip::net::disk::DiskStore;
use p2psip::net::overlay::OverlayService;
use p2psip::overlay::config::OverlayParams;
use p2psip::overlay::peers::ListenProof;
use p2psip::overlay::record::{OwnerValue, Record, RecordPolicy};
use p2psip::overlay::routing::Contact;
use p2psip::overlay::store::{RecordStore, StoreError, StoreLimits};
use p2psip::wire::Message;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod common;
use common::{cpu_time, progress, quick, rss_kib, runs, Table};

/// The argument that makes this binary a memory child.
const CHILD: &str = "--store-child";
/// The overlay of the in-process node.
const OVERLAY: &str = "bench-store";
/// Data of the small records: 100 bytes, which makes a 256-byte record.
const SMALL_DATA_LEN: usize = 100;
/// Records per owner in the "shared owners" mode (below the per-owner
/// quota of 128).
const RECORDS_PER_OWNER: usize = 64;

fn mib(bytes: f64) -> f64 {
    bytes / (1024.0 * 1024.0)
}

fn owner_key(label: u8, n: usize) -> SecretKey {
    let mut seed = [label; 32];
    seed[..8].copy_from_slice(&(n as u64).to_le_bytes());
    SecretKey::from_seed(&seed)
}

/// An owner value record named `name` of `owner` holding `data_len`
/// bytes, or the largest that fits when `data_len` is `None`.
fn owner_value(owner: &SecretKey, name: &str, data_len: Option<usize>, i: usize) -> Record {
    let expires = p2psip::unix_now() as u64 + 24 * 3600;
    let mut len = data_len.unwrap_or(MAX_RECORD_VALUE_LEN);
    loop {
        let mut data = vec![0x5a; len];
        if let Some(head) = data.get_mut(..8) {
            head.copy_from_slice(&(i as u64).to_le_bytes());
        }
        match OwnerValue::new(name, data) {
            Ok(v) => return v.sign(owner, 1, expires),
            Err(_) if data_len.is_none() && len > 0 => len -= 1,
            Err(e) => panic!("owner value: {e}"),
        }
    }
}

// ---------------------------------------------------------------------------
// 1. Record store memory, in a child process

/// What fills a child's store.
#[derive(Clone, Copy)]
enum Mode {
    /// 256-byte records, each of its own owner.
    SmallOwn,
    /// 256-byte records, 64 per owner.
    SmallShared,
    /// Maximum-size records, 64 per owner, until the store is full.
    MaxFill,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Mode::SmallOwn => "small-own",
            Mode::SmallShared => "small-shared",
            Mode::MaxFill => "max-fill",
        }
    }

    fn parse(s: &str) -> Self {
        match s {
            "small-own" => Mode::SmallOwn,
            "small-shared" => Mode::SmallShared,
            "max-fill" => Mode::MaxFill,
            other => panic!("unknown mode {other:?}"),
        }
    }
}

/// The child: fills a store and prints
/// `filled IDLE_KIB FULL_KIB HWM_KIB RECORDS ACCOUNTED ENCODED`.
fn child(mode: Mode, count: usize, max_bytes: usize) {
    let policy = RecordPolicy::self_certifying(OVERLAY);
    let now = p2psip::unix_now() as u64;
    let mut store = RecordStore::new(StoreLimits {
        max_bytes,
        ..StoreLimits::default()
    });
    let (idle, _) = rss_kib();
    let mut encoded_total = 0usize;
    let mut owner = None;
    for i in 0..count {
        let per_owner = match mode {
            Mode::SmallOwn => 1,
            Mode::SmallShared | Mode::MaxFill => RECORDS_PER_OWNER,
        };
        if i % per_owner == 0 {
            owner = Some(owner_key(0x51, i / per_owner));
        }
        let owner = owner.as_ref().expect("set at i = 0");
        let data_len = match mode {
            Mode::SmallOwn | Mode::SmallShared => Some(SMALL_DATA_LEN),
            Mode::MaxFill => None,
        };
        let bytes = owner_value(owner, &format!("r{i}"), data_len, i).encode();
        let verified = Record::decode(&bytes)
            .and_then(|r| r.verify(&policy, now))
            .expect("a valid record");
        drop(bytes);
        let len = verified.encoded().len();
        match store.put(verified, now) {
            Ok(_) => encoded_total += len,
            Err(StoreError::StoreFull { .. }) => break,
            Err(e) => panic!("store refused: {e}"),
        }
    }
    let (full, hwm) = rss_kib();
    println!(
        "filled {idle} {full} {hwm} {} {} {encoded_total}",
        store.len(),
        store.bytes()
    );
}

/// What a child reported.
struct Filled {
    idle_kib: u64,
    full_kib: u64,
    hwm_kib: u64,
    records: usize,
    accounted: usize,
    encoded: usize,
}

impl Filled {
    fn resident(&self) -> f64 {
        (self.full_kib.saturating_sub(self.idle_kib) * 1024) as f64
    }

    fn per_record(&self) -> f64 {
        self.resident() / self.records.max(1) as f64
    }

    fn mean_encoding(&self) -> f64 {
        self.encoded as f64 / self.records.max(1) as f64
    }
}

fn run_child(mode: Mode, count: usize, max_bytes: usize) -> Filled {
    let exe = std::env::current_exe().expect("path of this benchmark binary");
    let mut child = Command::new(exe)
        .args([
            CHILD,
            mode.name(),
            &count.to_string(),
            &max_bytes.to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the child");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("piped stdout"))
        .read_line(&mut line)
        .expect("read from the child");
    assert!(child.wait().expect("wait for the child").success());
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().expect("number"))
        .collect();
    assert_eq!(f.len(), 6, "child said {line:?}");
    Filled {
        idle_kib: f[0],
        full_kib: f[1],
        hwm_kib: f[2],
        records: f[3] as usize,
        accounted: f[4] as usize,
        encoded: f[5] as usize,
    }
}

fn memory_phase(t: &mut Table) {
    let small = if quick() { 2_000 } else { 100_000 };
    for (mode, what) in [
        (Mode::SmallOwn, "each of its own owner"),
        (Mode::SmallShared, "64 per owner"),
    ] {
        progress(&format!("memory: {small} small records, {what}"));
        let f = run_child(mode, small, usize::MAX);
        t.row(
            format!(
                "record store holding {} records of {:.0} bytes, {what}: resident bytes per record; minus the encoding",
                f.records,
                f.mean_encoding()
            ),
            format!("{:.0}; {:.0}", f.per_record(), f.per_record() - f.mean_encoding()),
        );
        t.row(
            format!("… accounted bytes per record (encoding + STORE_SLOT_OVERHEAD = {STORE_SLOT_OVERHEAD}); resident / accounted"),
            format!(
                "{:.0}; {:.2}",
                f.accounted as f64 / f.records.max(1) as f64,
                f.resident() / f.accounted.max(1) as f64
            ),
        );
    }
    let max_bytes = if quick() {
        4 * 1024 * 1024
    } else {
        DEFAULT_STORE_MAX_BYTES
    };
    progress(&format!(
        "memory: maximum-size records up to a byte bound of {max_bytes}"
    ));
    let f = run_child(Mode::MaxFill, usize::MAX, max_bytes);
    t.row(
        format!(
            "record store filled to its byte bound ({:.0} MiB) with records of {:.0} bytes: records; accounted MiB",
            mib(max_bytes as f64),
            f.mean_encoding()
        ),
        format!("{}; {:.1}", f.records, mib(f.accounted as f64)),
    );
    t.row(
        "… resident MiB (VmRSS full − idle); resident / accounted; process VmHWM",
        format!(
            "{:.1}; {:.3}; {:.1} MiB",
            mib(f.resident()),
            f.resident() / f.accounted.max(1) as f64,
            mib((f.hwm_kib * 1024) as f64)
        ),
    );
}

// ---------------------------------------------------------------------------
// 2. Disk writes

/// A slot and a 256-byte value for write `i`. The slot's key is a hash, as
/// a record's is (sequential slots would make a slot-keyed table look
/// cheaper than it is: every write would land in the same last leaf).
fn write_of(i: usize) -> (Vec<u8>, Vec<u8>) {
    use sha2::{Digest, Sha256};
    let mut slot = vec![0u8; 72];
    slot[..32].copy_from_slice(&Sha256::digest((i as u64).to_be_bytes()));
    let mut encoded = vec![0xa5u8; 256];
    encoded[..8].copy_from_slice(&(i as u64).to_le_bytes());
    (slot, encoded)
}

/// `count` writes, one transaction each, from `threads` threads.
fn one_transaction_each(dir: &std::path::Path, threads: usize, count: usize) -> f64 {
    let disk = Arc::new(DiskStore::open(&dir.join(format!("each-{threads}.redb"))).expect("db"));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let handles: Vec<_> = (0..threads)
        .map(|_| {
            let (disk, next) = (disk.clone(), next.clone());
            std::thread::spawn(move || loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (slot, encoded) = write_of(i);
                disk.save(&slot, &encoded).expect("save");
            })
        })
        .collect();
    for h in handles {
        h.join().expect("writer thread");
    }
    count as f64 / start.elapsed().as_secs_f64()
}

/// `count` writes through the committer from `writers` concurrent tasks.
async fn group_commit(dir: &std::path::Path, writers: usize, count: usize) -> f64 {
    let disk = Arc::new(DiskStore::open(&dir.join(format!("group-{writers}.redb"))).expect("db"));
    let committer = Arc::new(Committer::start(disk).expect("committer"));
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..writers {
        let (committer, next) = (committer.clone(), next.clone());
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let (slot, encoded) = write_of(i);
                committer.persist(slot, encoded).await.expect("persist");
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    count as f64 / start.elapsed().as_secs_f64()
}

fn disk_phase(t: &mut Table, rt: &tokio::runtime::Runtime) {
    let (each, group) = if quick() { (50, 500) } else { (2_000, 50_000) };
    let dir = tempfile::tempdir().expect("temporary directory");
    for threads in [1, 32] {
        progress(&format!(
            "disk: {each} writes, one transaction each, {threads} threads"
        ));
        let rate = one_transaction_each(dir.path(), threads, each);
        t.row(
            format!("durable writes/s, one transaction each (DiskStore::save), {threads} threads ({each} writes of 256 bytes)"),
            format!("{rate:.0}"),
        );
    }
    for writers in [1, 32, 128] {
        progress(&format!(
            "disk: {group} writes, group commit, {writers} writers"
        ));
        let cpu = cpu_time("self");
        let rate = rt.block_on(group_commit(dir.path(), writers, group));
        let cpu = cpu_time("self").saturating_sub(cpu);
        t.row(
            format!("durable writes/s, group commit (Committer::persist), {writers} concurrent writers ({group} writes of 256 bytes); CPU per write (user + system)"),
            format!(
                "{rate:.0}; {:.1} µs",
                cpu.as_secs_f64() * 1e6 / group as f64
            ),
        );
    }
}

// ---------------------------------------------------------------------------
// 3. Durable Stores into one node, in process

fn params() -> OverlayParams {
    OverlayParams {
        name: OVERLAY.into(),
        id_difficulty: 0,
        ..OverlayParams::default()
    }
}

/// Stores every record of `encoded` into `overlay` from `writers`
/// concurrent tasks, each writer its own peer; returns Stores/s.
async fn store_all(
    overlay: Arc<OverlayService>,
    writers: usize,
    encoded: Arc<Vec<Vec<u8>>>,
) -> f64 {
    let next = Arc::new(AtomicUsize::new(0));
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for w in 0..writers {
        let (overlay, next, encoded) = (overlay.clone(), next.clone(), encoded.clone());
        let peer = Contact {
            id: NodeId::from_bytes([w as u8 ^ 0x80; 32]),
            addr: SocketAddr::from(([10, w as u8, 0, 1], 4433)),
        };
        tasks.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(record) = encoded.get(i) else {
                    break;
                };
                let request = Message::Store {
                    overlay: OVERLAY.into(),
                    record: record.clone(),
                };
                // As the server answers a peer it knows listens there.
                match overlay.answer(peer, ListenProof::Verified, &request).await {
                    Some(Message::Stored { .. }) => {}
                    other => panic!("store {i} refused: {other:?}"),
                }
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    encoded.len() as f64 / start.elapsed().as_secs_f64()
}

fn node_phase(t: &mut Table, rt: &tokio::runtime::Runtime) {
    let count = if quick() { 500 } else { 40_000 };
    progress(&format!("node: signing {count} records"));
    let encoded: Vec<Vec<u8>> = (0..count)
        .map(|i| {
            let owner = owner_key(0x52, i / RECORDS_PER_OWNER);
            owner_value(&owner, &format!("r{i}"), Some(SMALL_DATA_LEN), i).encode()
        })
        .collect();
    let encoded = Arc::new(encoded);
    let local = NodeId::from_bytes([0; 32]);
    let dir = tempfile::tempdir().expect("temporary directory");
    for writers in [32, 128] {
        for durable in [false, true] {
            let service =
                OverlayService::new(local, params(), RecordPolicy::self_certifying(OVERLAY));
            let service = if durable {
                let path = dir.path().join(format!("node-{writers}.redb"));
                service
                    .with_disk(DiskStore::open(&path).expect("db"))
                    .expect("load")
                    .0
            } else {
                service
            };
            let what = if durable {
                "with a data dir (durable: acknowledged after the group commit)"
            } else {
                "without a data dir"
            };
            progress(&format!("node: {count} Stores, {writers} writers, {what}"));
            let cpu = cpu_time("self");
            let rate = rt.block_on(store_all(Arc::new(service), writers, encoded.clone()));
            let cpu = cpu_time("self").saturating_sub(cpu);
            t.row(
                format!("Stores/s into one node in process (OverlayService::answer, no QUIC), {writers} concurrent writers, {what} ({count} records of 256 bytes); CPU per Store (the process: node and writer tasks, user + system)"),
                format!("{rate:.0}; {:.0} µs", cpu.as_secs_f64() * 1e6 / count as f64),
            );
        }
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if let Some(i) = args.iter().position(|a| a == CHILD) {
        let arg = |n: usize| args.get(i + n).expect("--store-child MODE COUNT MAX_BYTES");
        child(
            Mode::parse(arg(1)),
            arg(2).parse().expect("count"),
            arg(3).parse().expect("max bytes"),
        );
        return;
    }
    let mut table = Table::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    table.row("cores (= tokio worker threads)", format!("{threads}"));
    if runs("memory") {
        memory_phase(&mut table);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if runs("disk") {
        disk_phase(&mut table, &rt);
    }
    if runs("node") {
        node_phase(&mut table, &rt);
    }
    rt.shutdown_timeout(Duration::from_secs(5));
    table.print();
}

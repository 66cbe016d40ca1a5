//! Benchmark: relays and circuits (issue 12, "Performance"), printed as
//! one Markdown table (and the simulator's own table after it).
//!
//! 1. **Sans-IO relay.** Three [`RelayCircuits`] and an originator's
//!    [`Telescope`], built in memory the way `src/relay/circuit/tests.rs`
//!    builds them (every message handed from one to the next, no I/O).
//!    Timed on one thread: the originator sealing cells of three layers,
//!    each relay peeling its layer forward (`RelayCircuits::on_cell`), the
//!    last hop taking the payload, and the way back (the last hop's
//!    reply, each relay's wrap, the originator opening three layers).
//!    The relays draw their padding from `OsRng`, as `net::circuits`
//!    drives them; the forward peel is timed with a seeded ChaCha20 too.
//! 2. **Real loopback over QUIC.** Real [`Node`]s on their own loopback
//!    addresses, circuits built with `CircuitService::build` and echoed by
//!    the last hop (`ECHO_REQUEST`), against direct QUIC datagrams echoed
//!    between two bare quinn endpoints with the node's TLS and transport
//!    configuration. For each of direct, 1-hop and 3-hop, in rounds:
//!    echoes a second with a window of packets in flight (several
//!    windows; order rotated each round), and round-trip latency at 50
//!    packets a second (the three links interleaved, so that they share
//!    the machine's noise).
//! 3. **Simulator, G.114.** The one-way delay of a 3+3-hop call over a
//!    model of continental link latencies (documented at [`REGIONS`],
//!    [`ACCESS_MS`] and [`CORE`], and in docs/benchmarks.md), relays
//!    chosen uniformly or by the real path choice
//!    (`relay::path::choose_path` for the callee, `choose_path_to` its
//!    rendezvous point for the caller; the default 150 ms budget and a
//!    tighter one), plus the per-hop processing measured in 1. Seeded:
//!    reproducible.
//!
//! Nothing asserts a time. Run: `cargo bench --bench relay` (release
//! build; the figures are recorded in `docs/benchmarks.md`).
//! `P2PSIP_BENCH_QUICK=1` runs the same code with tiny counts (a CI
//! smoke); `P2PSIP_BENCH_ONLY=sansio`, `=quic` or `=sim` picks phases
//! (comma-separated).

// Shared by every benchmark; this one does not read the memory figures.
#[allow(dead_code)]
mod common;

use common::{cpu_time, progress, quick, runs, Table};
use p2psip::identity::{NodeId, SecretKey, VerifyPolicy};
use p2psip::limits::RELAY_DEFAULT_LATENCY_BUDGET;
use p2psip::net::cert_cache::CertCache;
use p2psip::net::circuits::{Arrival, Circuit, ECHO_REPLY, ECHO_REQUEST};
use p2psip::net::tls::{server_config, PeerVerifier};
use p2psip::net::transport::{endpoint, quinn_client_config, transport_config};
use p2psip::net::{Limits, LocalIdentity, Node, NodeConfig};
use p2psip::overlay::record::{sign_relay_descriptors, OnionKeyInfo, RecordPolicy, RelayOffer};
use p2psip::relay::cell::{Cell, CELL_LEN};
use p2psip::relay::circuit::{
    FromCircuit, LinkMsg, PathHop, RelayAction, RelayCircuits, Telescope, TelescopeStep,
};
use p2psip::relay::keys::OnionKeys;
use p2psip::relay::path::{
    choose_path, choose_path_to, Candidate, Endpoints, Guards, PathError, PathParams, VerifiedRelay,
};
use p2psip::reputation::Reputation;
use rand::rngs::OsRng;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha20Rng;
use rand_core::{CryptoRng, RngCore};
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

/// The relays' clock in the sans-IO phase and the simulator (unix
/// seconds): which onion keys and descriptors are live.
const NOW: u64 = 1_800_000_000;
/// The seed of every seeded RNG here.
const SEED: u64 = 12;
/// An RTP packet of 20 ms of G.711 with its echo tag: what each cell
/// carries, as in `p2psip media-test`.
const PAYLOAD: usize = 173;

/// The counts of a run.
struct Scale {
    /// Cells through the sans-IO circuit.
    cells: usize,
    /// Cells per batch (sealed, then passed hop by hop).
    batch: usize,
    /// Rounds of the loopback measures (order rotated each round).
    rounds: usize,
    /// Echoes per throughput run.
    flood: u32,
    /// A throughput run's time limit.
    flood_limit: Duration,
    /// Echoes per latency run (at 50 a second).
    paced: u32,
    /// Simulated calls per scenario.
    calls: usize,
    /// Relays in the simulated world.
    relays: usize,
}

impl Scale {
    fn new() -> Self {
        if quick() {
            Self {
                cells: 2_000,
                batch: 500,
                rounds: 1,
                flood: 500,
                flood_limit: Duration::from_secs(5),
                paced: 20,
                calls: 100,
                relays: 60,
            }
        } else {
            Self {
                cells: 400_000,
                batch: 4_000,
                rounds: 3,
                flood: 50_000,
                flood_limit: Duration::from_secs(20),
                paced: 1_000,
                calls: 5_000,
                relays: 300,
            }
        }
    }
}

/// `q`-quantile of sorted `v` (nearest rank), 0 when empty.
fn quantile<T: Copy + Default>(sorted: &[T], q: f64) -> T {
    if sorted.is_empty() {
        return T::default();
    }
    let rank = ((q * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1]
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    quantile(&v, 0.5)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

// ---------------------------------------------------------------------
// 1. Sans-IO
// ---------------------------------------------------------------------

/// A circuit built in memory: its relays (first hop first) and the
/// originator's telescope.
struct Bench {
    origin: NodeId,
    relays: Vec<RelayCircuits>,
    ids: Vec<NodeId>,
    telescope: Telescope,
}

/// Hands `action`, sent by `from`, to the relays until something comes
/// back to a node that is not one of them (the originator): that action.
fn pump(
    relays: &mut [RelayCircuits],
    ids: &[NodeId],
    from: NodeId,
    action: RelayAction,
    rng: &mut (impl RngCore + CryptoRng),
) -> RelayAction {
    let mut queue = VecDeque::from([(from, action)]);
    while let Some((from, action)) = queue.pop_front() {
        let (to, result) = match &action {
            RelayAction::Link { to, msg } | RelayAction::Connect { to, msg, .. } => {
                // Every message crosses the "wire" as bytes.
                let msg = LinkMsg::decode(&msg.encode()).expect("a link message decodes");
                match ids.iter().position(|id| id == to) {
                    Some(i) => (*to, relays[i].on_link(from, msg, NOW, &mut *rng)),
                    None => return action,
                }
            }
            RelayAction::Cell { to, cell } => {
                let cell = Cell::decode(&cell.encode()).expect("a cell decodes");
                match ids.iter().position(|id| id == to) {
                    Some(i) => (*to, relays[i].on_cell(from, &cell, &mut *rng)),
                    None => return action,
                }
            }
            RelayAction::Deliver { .. } => panic!("a delivery while building: {action:?}"),
        };
        for a in result.expect("the relay takes the build step") {
            queue.push_back((to, a));
        }
    }
    panic!("nothing came back to the originator")
}

/// Builds a circuit of `hops` relays in memory (Create, then Extends),
/// as the unit tests of `relay::circuit` do.
fn build_in_memory(hops: u8, rng: &mut ChaCha20Rng) -> Bench {
    let origin = NodeId::from_bytes([0xAA; 32]);
    let (mut relays, mut ids, mut path) = (Vec::new(), Vec::new(), Vec::new());
    for i in 1..=hops {
        let id = NodeId::from_bytes([i; 32]);
        let onion = OnionKeys::new(NOW, &mut *rng);
        path.push(PathHop {
            id,
            addr: SocketAddr::from(([127, 0, 0, i], 4433)),
            onion: onion.current().public(),
        });
        ids.push(id);
        relays.push(RelayCircuits::new(id, onion));
    }
    let first = ids[0];
    let (mut telescope, mut step) = Telescope::start(path, &mut *rng).expect("a path");
    loop {
        let action = match step {
            TelescopeStep::Link(msg) => RelayAction::Link { to: first, msg },
            TelescopeStep::Cell(cell) => RelayAction::Cell { to: first, cell },
            TelescopeStep::Built => break,
        };
        step = match pump(&mut relays, &ids, origin, action, rng) {
            RelayAction::Link {
                msg: LinkMsg::Created { answer, .. },
                ..
            } => telescope.on_created(&answer, &mut *rng).expect("Created"),
            RelayAction::Cell { cell, .. } => match telescope.on_cell(&cell, &mut *rng) {
                Ok(FromCircuit::Step(step)) => step,
                other => panic!("while building: {other:?}"),
            },
            other => panic!("while building: {other:?}"),
        };
    }
    assert!(telescope.is_built());
    Bench {
        origin,
        relays,
        ids,
        telescope,
    }
}

/// The one cell a relay sent on, and to whom.
fn one_cell(actions: Vec<RelayAction>) -> (NodeId, Box<Cell>) {
    match <[RelayAction; 1]>::try_from(actions) {
        Ok([RelayAction::Cell { to, cell }]) => (to, cell),
        other => panic!("expected one cell: {other:?}"),
    }
}

/// Time per operation of the sans-IO phase (what the simulator adds per
/// hop).
#[derive(Clone, Copy, Default)]
struct Costs {
    /// The originator sealing three layers.
    seal3: Duration,
    /// A relay peeling its layer and passing the cell on.
    peel: Duration,
    /// The last hop opening its layer and taking the payload.
    deliver: Duration,
    /// The last hop sealing a reply.
    reply: Duration,
    /// A relay wrapping its layer around a backward cell.
    wrap: Duration,
    /// The originator opening three layers.
    open3: Duration,
}

fn per_sec(n: usize, d: Duration) -> f64 {
    n as f64 / d.as_secs_f64().max(1e-9)
}

fn sansio_phase(s: &Scale, t: &mut Table) -> Costs {
    progress("sans-IO: building a 3-hop circuit in memory");
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let mut b = build_in_memory(3, &mut rng);
    let payload = {
        let mut p = vec![0x55u8; PAYLOAD];
        p[0] = ECHO_REQUEST;
        p
    };
    let [id0, id1, id2] = [b.ids[0], b.ids[1], b.ids[2]];
    // Accumulated time and count per stage.
    let mut seal = Duration::ZERO;
    let mut peel = [Duration::ZERO; 2];
    let (mut deliver, mut reply, mut open) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    let mut wrap = [Duration::ZERO; 2];
    let mut done = 0usize;
    // The circuit ids of the links 1→2 and 2→3 (the last hop's reply
    // names its circuit by its previous link).
    let mut circ_23 = 0u32;
    let limit = Instant::now() + Duration::from_secs(60);
    progress(&format!(
        "sans-IO: {} cells in batches of {}",
        s.cells, s.batch
    ));
    while done < s.cells && Instant::now() < limit {
        let n = s.batch.min(s.cells - done);
        let t0 = Instant::now();
        let cells: Vec<Cell> = (0..n)
            .map(|_| b.telescope.seal(&payload, &mut rng).expect("seal"))
            .collect();
        seal += t0.elapsed();
        // Forward through the two middle relays: peel and pass on.
        let mut cells = cells;
        for (hop, from) in [(0usize, b.origin), (1, id0)] {
            let t0 = Instant::now();
            let out: Vec<Cell> = cells
                .iter()
                .map(|c| {
                    let (to, cell) = one_cell(
                        b.relays[hop]
                            .on_cell(from, c, OsRng)
                            .expect("a relay peels its layer"),
                    );
                    debug_assert_eq!(to, b.ids[hop + 1]);
                    *cell
                })
                .collect();
            peel[hop] += t0.elapsed();
            cells = out;
        }
        circ_23 = cells.first().map_or(circ_23, |c| c.circ_id);
        // The last hop takes the payload.
        let t0 = Instant::now();
        for c in &cells {
            let got = b.relays[2].on_cell(id1, c, OsRng).expect("the last hop");
            debug_assert!(matches!(got[..], [RelayAction::Deliver { .. }]));
        }
        deliver += t0.elapsed();
        // Back: the last hop's replies, wrapped by each relay, opened by
        // the originator.
        let t0 = Instant::now();
        let mut back: Vec<Cell> = (0..n)
            .map(|_| match b.relays[2].reply(id1, circ_23, &payload, OsRng) {
                Ok(RelayAction::Cell { cell, .. }) => *cell,
                other => panic!("reply: {other:?}"),
            })
            .collect();
        reply += t0.elapsed();
        for (hop, from) in [(1usize, id2), (0, id1)] {
            let t0 = Instant::now();
            back = back
                .iter()
                .map(|c| *one_cell(b.relays[hop].on_cell(from, c, OsRng).expect("wrap")).1)
                .collect();
            wrap[1 - hop] += t0.elapsed();
        }
        let t0 = Instant::now();
        for c in &back {
            match b.telescope.on_cell(c, &mut rng) {
                Ok(FromCircuit::Payload { hop: 2, .. }) => {}
                other => panic!("open: {other:?}"),
            }
        }
        open += t0.elapsed();
        done += n;
    }
    // The same forward peel with a seeded userspace CSPRNG for the
    // padding instead of the operating system's.
    let mut rng2 = ChaCha20Rng::seed_from_u64(SEED + 1);
    let mut b2 = build_in_memory(3, &mut rng2);
    let mut peel_chacha = Duration::ZERO;
    let mut done2 = 0usize;
    while done2 < done {
        let n = s.batch.min(done - done2);
        let cells: Vec<Cell> = (0..n)
            .map(|_| b2.telescope.seal(&payload, &mut rng2).expect("seal"))
            .collect();
        let t0 = Instant::now();
        for c in &cells {
            let out = b2.relays[0].on_cell(b2.origin, c, &mut rng2).expect("peel");
            std::hint::black_box(out);
        }
        peel_chacha += t0.elapsed();
        done2 += n;
    }
    let peel_all = peel[0] + peel[1];
    let wrap_all = wrap[0] + wrap[1];
    t.row(
        "sans-IO cells through the 3-hop circuit each way",
        format!("{done}"),
    );
    t.row(
        "relay forward: cells peeled and passed on per second, 1 core (hops 1 and 2, OsRng padding as the node)",
        format!(
            "{:.0} ({:.0} / {:.0}); {:.2} us a cell",
            per_sec(2 * done, peel_all),
            per_sec(done, peel[0]),
            per_sec(done, peel[1]),
            peel_all.as_secs_f64() * 1e6 / (2 * done) as f64
        ),
    );
    t.row(
        "relay forward with a seeded ChaCha20 RNG for the padding, hop 1, 1 core",
        format!("{:.0} cells/s", per_sec(done, peel_chacha)),
    );
    t.row(
        "last hop: cells opened and delivered per second, 1 core",
        format!("{:.0}", per_sec(done, deliver)),
    );
    t.row(
        "relay backward: cells wrapped and passed on per second, 1 core (hops 2 and 1)",
        format!("{:.0}", per_sec(2 * done, wrap_all)),
    );
    t.row(
        "last hop: replies sealed per second, 1 core",
        format!("{:.0}", per_sec(done, reply)),
    );
    t.row(
        "originator: cells sealed with 3 layers per second, 1 core",
        format!(
            "{:.0}; {:.2} us a cell",
            per_sec(done, seal),
            seal.as_secs_f64() * 1e6 / done as f64
        ),
    );
    t.row(
        "originator: cells of 3 layers opened per second, 1 core",
        format!("{:.0}", per_sec(done, open)),
    );
    let per_call = 2.0 * 50.0; // a cell each way every 20 ms
    t.row(
        "calls one core relays at the forward rate (100 cells/s a call: 50 each way)",
        format!("{:.0}", per_sec(2 * done, peel_all) / per_call),
    );
    let one = |d: Duration, n: usize| d / u32::try_from(n.max(1)).unwrap_or(u32::MAX);
    Costs {
        seal3: one(seal, done),
        peel: one(peel_all, 2 * done),
        deliver: one(deliver, done),
        reply: one(reply, done),
        wrap: one(wrap_all, 2 * done),
        open3: one(open, done),
    }
}

// ---------------------------------------------------------------------
// 2. Real loopback over QUIC
// ---------------------------------------------------------------------

fn key(i: u8) -> SecretKey {
    SecretKey::from_seed(&[i; 32])
}

/// A node serving in the current runtime until stopped.
struct Running {
    node: Arc<Node>,
    stop: oneshot::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Node `i` on its own loopback /16 (127.(80+i).0.1); a relay if
    /// `relay`. Its descriptor's part of the path is returned.
    fn start(i: u8, relay: bool) -> (Self, PathHop) {
        let identity = LocalIdentity::self_signed(&key(200 + i), p2psip::unix_now())
            .expect("self-signed certificate");
        let config = NodeConfig {
            identity,
            policy: VerifyPolicy::self_certifying(0),
            limits: Limits::default(),
            overlay: None,
            data_dir: None,
        };
        let listen: SocketAddr = format!("127.{}.0.1:0", 80 + i).parse().expect("an address");
        let node = Arc::new(Node::bind(config, listen).expect("bind node"));
        let onion = OnionKeys::new(
            u64::try_from(p2psip::unix_now()).expect("after 1970"),
            OsRng,
        );
        let hop = PathHop {
            id: node.node_id(),
            addr: node.local_addr().expect("local address"),
            onion: onion.current().public(),
        };
        if relay {
            node.circuits().enable_relay(onion);
        }
        let (stop, stopped) = oneshot::channel::<()>();
        let runner = node.clone();
        let task = tokio::spawn(async move {
            runner
                .run(async {
                    let _ = stopped.await;
                })
                .await
        });
        (Self { node, stop, task }, hop)
    }

    async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Two bare quinn endpoints with the node's TLS (mutual, p2psip
/// verifiers) and transport configuration; the server echoes every
/// datagram back on the same connection. Returns the client's
/// connection and the endpoints (kept alive by the caller).
async fn direct_pair() -> (quinn::Connection, [quinn::Endpoint; 2]) {
    let now = p2psip::unix_now();
    let server_id = LocalIdentity::self_signed(&key(190), now).expect("certificate");
    let client_id = LocalIdentity::self_signed(&key(191), now).expect("certificate");
    let policy = VerifyPolicy::self_certifying(0);
    let limits = Limits::default();
    let stls = server_config(
        &server_id,
        Arc::new(PeerVerifier::new(policy.clone(), None)),
    )
    .expect("server TLS");
    let sq = quinn::crypto::rustls::QuicServerConfig::try_from(stls).expect("QUIC server TLS");
    let mut sc = quinn::ServerConfig::with_crypto(Arc::new(sq));
    sc.transport_config(transport_config(&limits, limits.max_streams_per_connection));
    let server = endpoint("127.78.0.1:0".parse().expect("address"), Some(sc)).expect("endpoint");
    let addr = server.local_addr().expect("local address");
    let s = server.clone();
    tokio::spawn(async move {
        while let Some(incoming) = s.accept().await {
            tokio::spawn(async move {
                let Ok(conn) = incoming.await else { return };
                while let Ok(d) = conn.read_datagram().await {
                    if conn.send_datagram(d).is_err() {
                        return;
                    }
                }
            });
        }
    });
    let client = endpoint("127.79.0.1:0".parse().expect("address"), None).expect("endpoint");
    let cfg = quinn_client_config(
        &client_id,
        &policy,
        Some(server_id.node_id()),
        &Arc::new(CertCache::new(16)),
        &transport_config(&limits, 0),
    )
    .expect("client config");
    let conn = client
        .connect_with(cfg, addr, "p2psip.invalid")
        .expect("connect")
        .await
        .expect("handshake");
    (conn, [server, client])
}

/// What echoes go through.
enum Link {
    /// A QUIC connection whose other end echoes every datagram.
    Direct(quinn::Connection),
    /// A circuit whose last hop echoes `ECHO_REQUEST`s (boxed: it is
    /// much larger than a connection handle).
    Circuit(Box<Circuit>),
}

impl Link {
    fn name(&self) -> String {
        match self {
            Link::Direct(_) => "direct QUIC datagrams".into(),
            Link::Circuit(c) => format!("{}-hop circuit", c.hops().len()),
        }
    }

    /// Sends echo request `seq`: a circuit's payload is RTP-sized (the
    /// cell on the wire is 1 + [`CELL_LEN`] bytes); a direct datagram is
    /// as long as a circuit's datagram.
    fn send(&mut self, seq: u32) -> bool {
        let len = match self {
            Link::Direct(_) => 1 + CELL_LEN,
            Link::Circuit(_) => PAYLOAD,
        };
        let mut p = vec![0u8; len];
        p[0] = ECHO_REQUEST;
        p[1..5].copy_from_slice(&seq.to_be_bytes());
        match self {
            Link::Direct(c) => c.send_datagram(p.into()).is_ok(),
            Link::Circuit(c) => c.send(&p).is_ok(),
        }
    }

    /// The sequence number of the next echo back; `None` when the link
    /// is closed.
    async fn recv(&mut self) -> Option<u32> {
        loop {
            let bytes: Vec<u8> = match self {
                Link::Direct(c) => c.read_datagram().await.ok()?.to_vec(),
                Link::Circuit(c) => match c.recv().await {
                    Arrival::Message(FromCircuit::Payload { payload, .. })
                        if payload.first() == Some(&ECHO_REPLY) =>
                    {
                        payload
                    }
                    Arrival::Closed => return None,
                    _ => continue,
                },
            };
            if let Some(seq) = bytes.get(1..5) {
                let mut b = [0u8; 4];
                b.copy_from_slice(seq);
                return Some(u32::from_be_bytes(b));
            }
        }
    }
}

/// Packets in flight at most in the throughput runs, one run each (all
/// below the originator's circuit queue, `CIRCUIT_QUEUE` = 256, so that
/// it never drops): the best is the link's rate.
const WINDOWS: [u32; 3] = [16, 64, 224];
/// No echo for this long: the packets in flight are counted lost and the
/// window opens again.
const STALL: Duration = Duration::from_millis(200);

/// One throughput run.
struct Flood {
    /// Echoes a second, to the last echo.
    rate: f64,
    /// Echoes received.
    received: u32,
    /// Wall time, to the last echo.
    wall: Duration,
}

/// Sends `count` echo requests as fast as a window of `window` in flight
/// allows, within `limit`.
async fn flood(link: &mut Link, count: u32, window: u32, limit: Duration) -> Flood {
    let start = Instant::now();
    let deadline = start + limit;
    let (mut sent, mut received, mut inflight) = (0u32, 0u32, 0u32);
    let mut last = start;
    while Instant::now() < deadline {
        while sent < count && inflight < window {
            link.send(sent);
            sent += 1;
            inflight += 1;
        }
        match tokio::time::timeout(STALL, link.recv()).await {
            Ok(Some(_)) => {
                received += 1;
                inflight = inflight.saturating_sub(1);
                last = Instant::now();
                if sent == count && inflight == 0 {
                    break;
                }
            }
            Ok(None) => break,
            Err(_) if sent == count => break,
            Err(_) => inflight = 0,
        }
    }
    let wall = last - start;
    Flood {
        rate: f64::from(received) / wall.as_secs_f64().max(1e-9),
        received,
        wall,
    }
}

/// The interval between two echo requests on one link in the latency
/// runs (50 packets a second, as voice).
const PACE: Duration = Duration::from_millis(20);

/// Sends `count` echo requests on each link at 50 a second, the links
/// interleaved (each a third of the interval after the previous, so
/// that they share the machine's noise and never overlap); the round
/// trips of each link's echoes (sorted).
async fn paced_all(links: &mut [Link; 3], count: u32) -> [Vec<Duration>; 3] {
    let step = PACE / 3;
    let mut sent_at: [Vec<Instant>; 3] = Default::default();
    let mut rtts: [Vec<Duration>; 3] = Default::default();
    let total = 3 * count as usize;
    let mut sends = 0usize;
    let mut next = tokio::time::Instant::now();
    let [a, b, c] = links;
    loop {
        let sending = sends < total;
        // After the last request, its echo may take a second at most.
        let until = if sending {
            next
        } else {
            next + Duration::from_secs(1)
        };
        let got = tokio::select! {
            r = a.recv() => Some((0, r)),
            r = b.recv() => Some((1, r)),
            r = c.recv() => Some((2, r)),
            () = tokio::time::sleep_until(until) => None,
        };
        match got {
            Some((i, Some(seq))) => {
                if let Some(at) = sent_at[i].get(seq as usize) {
                    rtts[i].push(at.elapsed());
                }
                if rtts.iter().map(Vec::len).sum::<usize>() == total {
                    break;
                }
            }
            Some((_, None)) => break,
            None if !sending => break,
            None => {
                let i = sends % 3;
                let seq = u32::try_from(sent_at[i].len()).unwrap_or(u32::MAX);
                sent_at[i].push(Instant::now());
                match i {
                    0 => a.send(seq),
                    1 => b.send(seq),
                    _ => c.send(seq),
                };
                sends += 1;
                next += step;
            }
        }
    }
    for r in &mut rtts {
        r.sort();
    }
    rtts
}

/// What the loopback runs measured of one kind of link, over the
/// rounds.
#[derive(Default)]
struct Measured {
    /// Echoes a second per window of [`WINDOWS`], one per round.
    rates: [Vec<f64>; WINDOWS.len()],
    /// Echoes lost in the throughput runs.
    lost: u32,
    /// Echoes received and wall time in the throughput runs, and this
    /// process's CPU time meanwhile (every node, the load, the echo).
    echoes: u64,
    wall: Duration,
    cpu: Duration,
    /// Round trips at 50 a second, every round's.
    rtts: Vec<Duration>,
    /// The p99 of each round.
    p99s: Vec<f64>,
    /// Echoes lost in the latency runs.
    paced_lost: u32,
}

impl Measured {
    /// The best window's median rate.
    fn rate(&self) -> f64 {
        self.rates
            .iter()
            .map(|r| median(r.clone()))
            .fold(0.0, f64::max)
    }

    fn cpu_per_echo_us(&self) -> f64 {
        self.cpu.as_secs_f64() * 1e6 / (self.echoes.max(1) as f64)
    }

    fn rtt_ms(&self, q: f64) -> f64 {
        ms(quantile(&self.rtts, q))
    }
}

async fn quic_phase(s: &Scale, t: &mut Table) {
    progress("QUIC: starting the origin node and 3 relays");
    let (origin, _) = Running::start(0, false);
    let mut relays = Vec::new();
    let mut hops = Vec::new();
    for i in 1..=3 {
        let (r, h) = Running::start(i, true);
        relays.push(r);
        hops.push(h);
    }
    let (conn, endpoints) = direct_pair().await;
    let circuits = origin.node.circuits().clone();
    let one = circuits
        .build(vec![hops[0]])
        .await
        .expect("a 1-hop circuit");
    let three = circuits.build(hops.clone()).await.expect("a 3-hop circuit");
    let mut links = [
        Link::Direct(conn),
        Link::Circuit(Box::new(one)),
        Link::Circuit(Box::new(three)),
    ];
    // Warm-up: a few echoes each (connections, caches, lazy paths).
    let warm = paced_all(&mut links, 5).await;
    for (l, got) in links.iter().zip(&warm) {
        assert!(!got.is_empty(), "{} echoes nothing", l.name());
    }
    let mut m: [Measured; 3] = Default::default();
    for round in 0..s.rounds {
        for k in 0..3 {
            let i = (k + round) % 3;
            progress(&format!(
                "QUIC round {}: {} throughput",
                round + 1,
                links[i].name()
            ));
            for (w, &window) in WINDOWS.iter().enumerate() {
                let cpu0 = cpu_time("self");
                let f = flood(&mut links[i], s.flood, window, s.flood_limit).await;
                m[i].cpu += cpu_time("self").saturating_sub(cpu0);
                m[i].wall += f.wall;
                m[i].echoes += u64::from(f.received);
                m[i].lost += s.flood - f.received;
                m[i].rates[w].push(f.rate);
                // Late echoes of a stalled run drain before the next.
                while let Ok(Some(_)) =
                    tokio::time::timeout(Duration::from_millis(100), links[i].recv()).await
                {
                }
            }
        }
        progress(&format!(
            "QUIC round {}: latency at 50/s, the three interleaved",
            round + 1
        ));
        let rtts = paced_all(&mut links, s.paced).await;
        for (i, r) in rtts.into_iter().enumerate() {
            m[i].paced_lost += s.paced - u32::try_from(r.len()).unwrap_or(s.paced);
            m[i].p99s.push(ms(quantile(&r, 0.99)));
            m[i].rtts.extend(r);
        }
    }
    for mi in &mut m {
        mi.rtts.sort();
    }
    let names: Vec<String> = links.iter().map(Link::name).collect();
    t.row(
        "loopback rounds (order of the throughput runs rotated per round)",
        format!("{}", s.rounds),
    );
    let windows: Vec<String> = WINDOWS.iter().map(u32::to_string).collect();
    for (i, name) in names.iter().enumerate() {
        let per_window: Vec<String> = m[i]
            .rates
            .iter()
            .map(|r| format!("{:.0}", median(r.clone())))
            .collect();
        t.row(
            format!(
                "{name}: echoes/s, {} requests as fast as a window in flight allows; median over rounds at windows {} (lost in all runs)",
                s.flood,
                windows.join(" / ")
            ),
            format!("{} ({} lost)", per_window.join(" / "), m[i].lost),
        );
        t.row(
            format!("{name}: CPU of the whole process (every node, the load, the echo) per echo in those runs; cores busy"),
            format!(
                "{:.1} us; {:.2}",
                m[i].cpu_per_echo_us(),
                m[i].cpu.as_secs_f64() / m[i].wall.as_secs_f64().max(1e-9)
            ),
        );
    }
    for (i, name) in names.iter().enumerate() {
        let p99s: Vec<String> = m[i].p99s.iter().map(|p| format!("{p:.3}")).collect();
        t.row(
            format!(
                "{name}: round trip at 50 packets/s, {} packets x {} rounds, p50 / p99 / max (p99 per round; lost)",
                s.paced, s.rounds
            ),
            format!(
                "{:.3} / {:.3} / {:.3} ms ({}; {} lost)",
                m[i].rtt_ms(0.5),
                m[i].rtt_ms(0.99),
                m[i].rtt_ms(1.0),
                p99s.join(" / "),
                m[i].paced_lost
            ),
        );
    }
    t.row(
        "ratio 3-hop / direct echo rate, best window each (goal >= 0.5); 1-hop / direct",
        format!(
            "{:.3}; {:.3}",
            m[2].rate() / m[0].rate().max(1e-9),
            m[1].rate() / m[0].rate().max(1e-9)
        ),
    );
    let (p99, p50) = (|i: usize| m[i].rtt_ms(0.99), |i: usize| m[i].rtt_ms(0.5));
    t.row(
        "added round-trip p99 per hop: (p99 3-hop - p99 direct) / 3; p99 1-hop - p99 direct (goal <= 1 ms)",
        format!(
            "{:.3} ms; {:.3} ms",
            (p99(2) - p99(0)) / 3.0,
            p99(1) - p99(0)
        ),
    );
    t.row(
        "added round-trip p50 per hop: (p50 3-hop - p50 direct) / 3; p50 1-hop - p50 direct",
        format!(
            "{:.3} ms; {:.3} ms",
            (p50(2) - p50(0)) / 3.0,
            p50(1) - p50(0)
        ),
    );
    // Two more relays, each crossed twice per echo: four datagram hops,
    // each with a relay's layer and one more layer at the originator.
    let per_cell_hop = (m[2].cpu_per_echo_us() - m[1].cpu_per_echo_us()) / 4.0;
    t.row(
        "CPU per cell per relay in the real node, QUIC on both sides included (upper bound: with the originator's extra layer): (CPU per echo 3-hop - 1-hop) / 4; cells/s per core at that cost",
        format!(
            "{per_cell_hop:.1} us; {:.0}",
            1e6 / per_cell_hop.max(1e-9)
        ),
    );
    let stats = origin.node.circuits().stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    t.row(
        "origin node: cells dropped (circuit queue full) / unsent / refused",
        format!(
            "{} / {} / {}",
            load(&stats.dropped),
            load(&stats.unsent),
            load(&stats.refused)
        ),
    );
    let relayed: Vec<String> = relays
        .iter()
        .map(|r| {
            let st = r.node.circuits().stats();
            format!(
                "{} relayed, {} echoes, {} unsent, {} refused",
                load(&st.cells_relayed),
                load(&st.echoes),
                load(&st.unsent),
                load(&st.refused)
            )
        })
        .collect();
    t.row("relays 1 / 2 / 3: counters", relayed.join("; "));
    drop(links);
    for e in &endpoints {
        e.close(0u32.into(), b"");
    }
    origin.stop().await;
    for r in relays {
        r.stop().await;
    }
}

// ---------------------------------------------------------------------
// 3. Simulator: one-way delay of a 3+3-hop call against G.114
// ---------------------------------------------------------------------

/// The regions of the latency model, and the share of relays (and of
/// call ends) in each: an assumption, Europe-heavy like Tor's relays.
const REGIONS: [(&str, f64); 4] = [
    ("Europe", 0.40),
    ("North America", 0.30),
    ("East Asia", 0.20),
    ("Oceania", 0.10),
];

/// The latency model: every host (relay or call end) hangs off its
/// region's hub by an access delay of its own, drawn once, uniform in
/// [`ACCESS_MS`]; hubs are joined by the fixed one-way latencies of
/// [`CORE`]. So the one-way latency between hosts `a` and `b` is
/// `access(a) + core(region a, region b) + access(b)`: within a region
/// 7–35 ms (Europe, Oceania) or 17–45 ms (North America, East Asia);
/// across, the core figure plus 2–30 ms. Unlike independent draws per
/// pair, two relays close to one end are close to each other (the
/// triangle inequality holds), which is what path choice relies on when
/// it judges a path by its hops' distance from the end.
const ACCESS_MS: (f64, f64) = (1.0, 15.0);

/// One-way latency between region hubs, ms (indices into [`REGIONS`],
/// smaller first). The figures are halved round-trip times as public
/// ping tables give them: WonderProxy's city-pair pings
/// (wonderproxy.com/blog/miles-per-milisecond/, now
/// wondernetwork.com/pings: Paris–Milan 21 ms round trip, Paris–Moscow
/// 56, Dallas–New York 37, Fremont–New York 78, New York–Paris 78,
/// Fremont–Milan 171, Fremont–Sydney 185–192, Paris–Sydney 337–349,
/// Sydney–Brisbane 33–43), and for East Asia, which that table lacks,
/// the usual orders of magnitude (US–Asia about 80 ms one way,
/// Europe–Asia about 120) rather than a measured table.
const CORE: [((usize, usize), f64); 10] = [
    ((0, 0), 5.0),   // within Europe
    ((1, 1), 15.0),  // within North America
    ((2, 2), 15.0),  // within East Asia
    ((3, 3), 5.0),   // within Oceania
    ((0, 1), 40.0),  // transatlantic
    ((0, 2), 115.0), // Europe – East Asia
    ((0, 3), 150.0), // Europe – Oceania
    ((1, 2), 80.0),  // North America – East Asia
    ((1, 3), 90.0),  // North America – Oceania
    ((2, 3), 55.0),  // East Asia – Oceania
];

/// A well-mixed 64-bit hash (splitmix64): the per-pair draw.
fn mix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

/// Host `h`'s access delay to its region's hub, ms: fixed per host.
fn access(h: usize) -> f64 {
    let u = (mix(SEED ^ mix(h as u64)) >> 11) as f64 / (1u64 << 53) as f64;
    ACCESS_MS.0 + (ACCESS_MS.1 - ACCESS_MS.0) * u
}

/// The simulated world: hosts (relays first, then call ends) with their
/// regions.
struct World {
    region: Vec<usize>,
    relays: Vec<VerifiedRelay>,
}

impl World {
    /// One-way latency between hosts `a` and `b`, ms (see [`ACCESS_MS`]).
    fn latency(&self, a: usize, b: usize) -> f64 {
        if a == b {
            return 0.0;
        }
        let (ra, rb) = (self.region[a], self.region[b]);
        let pair = (ra.min(rb), ra.max(rb));
        let core = CORE
            .iter()
            .find(|(p, _)| *p == pair)
            .map_or(100.0, |(_, ms)| *ms);
        access(a) + core + access(b)
    }

    /// Adds a call end in `region`; its host index.
    fn add_end(&mut self, region: usize) -> usize {
        self.region.push(region);
        self.region.len() - 1
    }
}

fn pick_region(rng: &mut ChaCha20Rng) -> usize {
    let mut x: f64 = rng.gen_range(0.0..1.0);
    for (i, (_, share)) in REGIONS.iter().enumerate() {
        if x < *share {
            return i;
        }
        x -= share;
    }
    REGIONS.len() - 1
}

/// `n` relays with signed, verified descriptors, each in its own /16,
/// their regions drawn by [`REGIONS`]' shares.
fn world(n: usize, rng: &mut ChaCha20Rng) -> World {
    let policy = RecordPolicy::self_certifying("p2psip");
    let mut region = Vec::with_capacity(n);
    let mut relays = Vec::with_capacity(n);
    for i in 0..n {
        let mut seed = [0u8; 32];
        seed[..8].copy_from_slice(&(i as u64 + 1).to_be_bytes());
        let owner = SecretKey::from_seed(&seed);
        let onion = x25519_public(&seed);
        // Each relay in its own /16 (11.0/16, 11.1/16, ...), so that the
        // diversity rule never refuses a pair.
        let addr = SocketAddr::new(
            std::net::Ipv4Addr::new(11 + (i / 256) as u8, (i % 256) as u8, 0, 1).into(),
            4433,
        );
        let offer = RelayOffer {
            addresses: vec![addr],
            onion_key: OnionKeyInfo {
                key: onion,
                expires: NOW + 3 * 24 * 3600,
            },
            previous_onion_key: None,
            capacity: 100,
            relays_circuits: true,
            turn: None,
        };
        let records =
            sign_relay_descriptors(&owner, &policy, None, offer, 1, NOW).expect("a descriptor");
        let verified = records[0].verify(&policy, NOW).expect("it verifies");
        relays.push(VerifiedRelay::from_record(&verified).expect("a relay descriptor"));
        region.push(pick_region(rng));
    }
    World { region, relays }
}

fn x25519_public(seed: &[u8; 32]) -> [u8; 32] {
    let secret = x25519_dalek::StaticSecret::from(*seed);
    x25519_dalek::PublicKey::from(&secret).to_bytes()
}

/// A budget tighter than the default, to show what the budget buys: each
/// of three hops within about 30 ms of the end that chose it.
const TIGHT_BUDGET: Duration = Duration::from_millis(90);

/// How relays are chosen in a scenario.
#[derive(Clone, Copy, PartialEq)]
enum Choice {
    /// Distinct relays drawn uniformly among all.
    Uniform,
    /// `relay::path::choose_path` (the callee) and `choose_path_to` (the
    /// caller, to the callee's rendezvous point) with the default
    /// parameters but this latency budget (the default is 150 ms), each
    /// end estimating a relay's hop delay as half its true round trip to
    /// it.
    PathChoice(Duration),
}

/// The topology of a call.
#[derive(Clone, Copy, PartialEq)]
enum Topology {
    /// As `tests/circuits.rs` builds it: the callee's circuit of 3 relays
    /// ends at the rendezvous point; the caller's circuit is 2 relays of
    /// its own, then the rendezvous point (3 hops). 5 relays, 6 links.
    Shared,
    /// 3 relays of the caller's own before the rendezvous point, which is
    /// the callee's third: 6 relays, 7 links.
    CallerThreeMore,
}

/// The candidates as the end at host `end` sees them (round trip known:
/// twice the one-way latency).
fn candidates(w: &World, end: usize) -> Vec<Candidate> {
    w.relays
        .iter()
        .enumerate()
        .map(|(i, r)| Candidate {
            relay: r.clone(),
            rtt: Some(Duration::from_secs_f64(2.0 * w.latency(end, i) / 1e3)),
        })
        .collect()
}

fn relay_index(w: &World, id: &NodeId) -> usize {
    w.relays
        .iter()
        .position(|r| r.node_id() == id)
        .expect("a chosen relay is one of the world's")
}

/// Chooses `hops` relays of its own for the end at host `end` (its node
/// id `own`): for the callee, `point` is `None` and the last of them
/// becomes the rendezvous point; for the caller, `point` is the
/// callee's rendezvous point, which ends the caller's path and is not
/// among the relays returned (path choice: `choose_path_to`, the point's
/// hop counted in the budget).
fn choose(
    w: &World,
    choice: Choice,
    end: usize,
    own: NodeId,
    hops: usize,
    point: Option<usize>,
    rng: &mut ChaCha20Rng,
) -> Result<Vec<usize>, String> {
    match choice {
        Choice::Uniform => {
            let mut out = Vec::with_capacity(hops);
            while out.len() < hops {
                let i = rng.gen_range(0..w.relays.len());
                if Some(i) != point && !out.contains(&i) {
                    out.push(i);
                }
            }
            Ok(out)
        }
        Choice::PathChoice(budget) => {
            let cands = candidates(w, end);
            let endpoints = Endpoints {
                own_id: own,
                own_addrs: vec![std::net::IpAddr::from([198, 51, 100, 1])],
                peer_id: None,
                peer_addrs: Vec::new(),
            };
            let mut params = PathParams {
                hops,
                latency_budget: budget,
                ..PathParams::default()
            };
            let (reputation, mut guards) = (Reputation::new(), Guards::new());
            let path = match point {
                None => choose_path(
                    &cands,
                    &endpoints,
                    &reputation,
                    &mut guards,
                    &params,
                    NOW,
                    rng,
                ),
                Some(p) => {
                    let relay = &w.relays[p];
                    let point = PathHop {
                        id: *relay.node_id(),
                        addr: relay.offer().addresses[0],
                        onion: relay.offer().onion_key.key,
                    };
                    params.hops = hops + 1;
                    choose_path_to(
                        &cands,
                        &endpoints,
                        &reputation,
                        &mut guards,
                        &params,
                        &point,
                        NOW,
                        rng,
                    )
                }
            }
            .map_err(|e| match e {
                PathError::NoCandidate { rule, hop, .. } => format!("{rule:?} at hop {hop}"),
                e => e.to_string(),
            })?;
            Ok(path
                .hops
                .iter()
                .take(hops)
                .map(|h| relay_index(w, &h.node_id))
                .collect())
        }
    }
}

/// One scenario's one-way delays (ms, sorted) and failed path choices
/// (how many, and the most common reason).
fn scenario(
    w: &mut World,
    s: &Scale,
    choice: Choice,
    topology: Topology,
    same_region: bool,
    costs: &Costs,
    rng: &mut ChaCha20Rng,
) -> (Vec<f64>, usize, String) {
    let relays_base = w.relays.len();
    let mut delays = Vec::with_capacity(s.calls);
    let mut failed = 0;
    let mut reasons: std::collections::BTreeMap<String, usize> = Default::default();
    for call in 0..s.calls {
        w.region.truncate(relays_base);
        let caller_region = pick_region(rng);
        let callee_region = if same_region {
            caller_region
        } else {
            pick_region(rng)
        };
        let caller = w.add_end(caller_region);
        let callee = w.add_end(callee_region);
        let mut id = [0u8; 32];
        id[..8].copy_from_slice(&(call as u64).to_be_bytes());
        id[8] = 1;
        let caller_id = NodeId::from_bytes(id);
        id[8] = 2;
        let callee_id = NodeId::from_bytes(id);
        // The callee's circuit: b1, b2, rendezvous point.
        let callee_path = match choose(w, choice, callee, callee_id, 3, None, rng) {
            Ok(p) => p,
            Err(e) => {
                failed += 1;
                *reasons.entry(format!("callee: {e}")).or_default() += 1;
                continue;
            }
        };
        let rp = callee_path[2];
        let own = match topology {
            Topology::Shared => 2,
            Topology::CallerThreeMore => 3,
        };
        let caller_path = match choose(w, choice, caller, caller_id, own, Some(rp), rng) {
            Ok(p) => p,
            Err(e) => {
                failed += 1;
                *reasons.entry(format!("caller: {e}")).or_default() += 1;
                continue;
            }
        };
        // caller → a… → rp → b2 → b1 → callee
        let mut chain = vec![caller];
        chain.extend(&caller_path);
        chain.push(rp);
        chain.push(callee_path[1]);
        chain.push(callee_path[0]);
        chain.push(callee);
        let links: f64 = chain.windows(2).map(|p| w.latency(p[0], p[1])).sum();
        // Processing: the caller seals its layers; its relays peel; the
        // rendezvous point opens the caller's last layer and seals a
        // reply layer for the callee's circuit; the callee's relays wrap;
        // the callee opens its layers.
        let processing = costs.seal3
            + costs.peel * u32::try_from(own).unwrap_or(3)
            + costs.deliver
            + costs.reply
            + costs.wrap * 2
            + costs.open3;
        delays.push(links + ms(processing));
    }
    delays.sort_by(f64::total_cmp);
    let reason = reasons
        .into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(r, n)| format!("{r} ({n})"))
        .unwrap_or_default();
    (delays, failed, reason)
}

/// Runs the scenarios; their rows, for a table of their own.
fn sim_phase(s: &Scale, costs: &Costs, t: &mut Table) -> Vec<String> {
    progress(&format!(
        "simulator: {} relays, {} calls a scenario",
        s.relays, s.calls
    ));
    let mut rng = ChaCha20Rng::seed_from_u64(SEED);
    let mut w = world(s.relays, &mut rng);
    let per_region: Vec<String> = REGIONS
        .iter()
        .enumerate()
        .map(|(i, (name, _))| {
            let n = w.region.iter().filter(|r| **r == i).count();
            format!("{name} {n}")
        })
        .collect();
    t.row("simulated relays by region", per_region.join(", "));
    t.row(
        "per-hop processing added (from the sans-IO phase): seal 3 layers / peel / deliver / reply / wrap / open 3 layers",
        format!(
            "{:.2} / {:.2} / {:.2} / {:.2} / {:.2} / {:.2} us",
            costs.seal3.as_secs_f64() * 1e6,
            costs.peel.as_secs_f64() * 1e6,
            costs.deliver.as_secs_f64() * 1e6,
            costs.reply.as_secs_f64() * 1e6,
            costs.wrap.as_secs_f64() * 1e6,
            costs.open3.as_secs_f64() * 1e6
        ),
    );
    let mut rows = Vec::new();
    for topology in [Topology::Shared, Topology::CallerThreeMore] {
        for same in [true, false] {
            for choice in [
                Choice::Uniform,
                Choice::PathChoice(RELAY_DEFAULT_LATENCY_BUDGET),
                Choice::PathChoice(TIGHT_BUDGET),
            ] {
                let (d, failed, reason) =
                    scenario(&mut w, s, choice, topology, same, costs, &mut rng);
                let within = |limit: f64| {
                    100.0 * d.iter().filter(|x| **x <= limit).count() as f64 / d.len().max(1) as f64
                };
                rows.push(format!(
                    "| {} | {} | {} | {} | {:.1} | {:.1} | {:.1} | {:.1} | {:.1} | {} {} |",
                    match topology {
                        Topology::Shared => "2+RP+2 (5 relays, 6 links)",
                        Topology::CallerThreeMore => "3+RP+2 (6 relays, 7 links)",
                    },
                    if same { "same region" } else { "anywhere" },
                    match choice {
                        Choice::Uniform => "uniform".to_string(),
                        Choice::PathChoice(b) =>
                            format!("choose_path, {} ms budget", b.as_millis()),
                    },
                    d.len(),
                    quantile(&d, 0.5),
                    quantile(&d, 0.99),
                    d.last().copied().unwrap_or_default(),
                    within(150.0),
                    within(400.0),
                    failed,
                    reason
                ));
            }
        }
    }
    t.row(
        "simulated calls a scenario (seed)",
        format!("{} ({SEED})", s.calls),
    );
    rows
}

fn main() {
    let s = Scale::new();
    let mut table = Table::default();
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    table.row("cores", format!("{threads}"));
    let costs = if runs("sansio") || runs("sim") {
        sansio_phase(&s, &mut table)
    } else {
        Costs::default()
    };
    if runs("quic") {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("tokio runtime");
        rt.block_on(quic_phase(&s, &mut table));
        rt.shutdown_timeout(Duration::from_secs(5));
    }
    let sim_rows = if runs("sim") {
        sim_phase(&s, &costs, &mut table)
    } else {
        Vec::new()
    };
    table.print();
    if !sim_rows.is_empty() {
        println!();
        println!("| call | ends | relays | calls | one-way p50 ms | p99 ms | max ms | <= 150 ms % | <= 400 ms % | no path (most common reason) |");
        println!("|---|---|---|---|---|---|---|---|---|---|");
        for r in &sim_rows {
            println!("{r}");
        }
    }
}

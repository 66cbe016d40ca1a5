//! The overlay over real QUIC: 20 nodes, each with its own endpoint on its
//! own loopback address (127.N.0.1, a distinct /24 each, so the diversity
//! limits apply as on a real network), joining through one bootstrap node,
//! storing a signed record and finding it from every node, then losing a
//! third of the nodes. Then the upkeep of the overlay, each on a few
//! nodes: rejoining from a saved routing table, hand-over to a newcomer,
//! republish after the holders of a record stop, per-peer rate limits, and
//! the refusal of keys a node is not responsible for.

mod common;

use common::*;
use p2psip::identity::{NodeId, SecretKey, VerifyPolicy};
use p2psip::limits::RESPONSIBILITY_SLACK_FACTOR;
use p2psip::net::{Limits, LocalIdentity, Maintenance, NetError, Node, NodeConfig, RateLimit};
use p2psip::overlay::config::OverlayParams;
use p2psip::overlay::key::Key;
use p2psip::overlay::peers::ListenProof;
use p2psip::overlay::placement::{JoinPlan, JoinStep};
use p2psip::overlay::query::Goal;
use p2psip::overlay::record::{OwnerValue, Record, RecordKind};
use p2psip::overlay::routing::Contact;
use p2psip::wire::{ErrorCode, Message};
use std::net::SocketAddr;
use std::time::Duration;

const NODES: u8 = 20;

fn params() -> OverlayParams {
    OverlayParams {
        name: "test-overlay".into(),
        k: 8,
        alpha: 3,
        disjoint_paths: 2,
        replication: 8,
        id_difficulty: 0,
        ..OverlayParams::default()
    }
}

fn start(i: u8, overlay: OverlayParams) -> RunningNode {
    let key = key(100 + i);
    let identity = LocalIdentity::self_signed(&key, now()).expect("certificate");
    start_overlay_node(
        identity,
        VerifyPolicy::self_certifying(0),
        Limits::default(),
        format!("127.{}.0.1:0", i + 1).parse().unwrap(),
        overlay,
    )
}

fn contact(n: &RunningNode) -> Contact {
    Contact {
        id: n.node.node_id(),
        addr: n.addr,
    }
}

async fn fetch(n: &RunningNode, record: &Record) -> Vec<Vec<u8>> {
    let overlay = n.node.overlay().expect("overlay node");
    overlay
        .lookup(n.node.dialer(), record.key, Some(RecordKind::OwnerValue))
        .await
        .records
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn twenty_nodes_store_find_and_survive_losing_a_third() {
    let mut nodes: Vec<RunningNode> = Vec::new();
    nodes.push(start(0, params()));
    let boot = contact(&nodes[0]);
    for i in 1..NODES {
        let n = start(i, params());
        let overlay = n.node.overlay().unwrap().clone();
        let size = overlay.join(n.node.dialer(), &[boot]).await;
        assert!(size >= 1, "node {i} learned nobody");
        nodes.push(n);
    }
    // Every node knows several others; the bootstrap node learned them all
    // from their connections (up to its bucket sizes).
    for (i, n) in nodes.iter().enumerate() {
        let len = n.node.overlay().unwrap().table_len();
        assert!(len >= 3, "node {i} knows only {len}");
    }

    // A user stores a signed value through node 5.
    let user = SecretKey::from_seed(&[0xaa; 32]);
    let value = OwnerValue::new("greeting", b"hello overlay".to_vec()).unwrap();
    let expires = now() as u64 + 3600;
    let record = value.sign(&user, 1, expires);
    let writer = &nodes[5];
    let acks = writer
        .node
        .overlay()
        .unwrap()
        .publish(writer.node.dialer(), &record)
        .await;
    assert_eq!(acks, 8, "stored on the replication factor's nodes");

    // Every node finds it, verified.
    for (i, n) in nodes.iter().enumerate() {
        let found = fetch(n, &record).await;
        assert_eq!(found, vec![record.encode()], "node {i}");
    }

    // A forged record (another key claiming the owner's slot) is refused.
    let mut forged = record.clone();
    forged.seq = 2;
    let acks = writer
        .node
        .overlay()
        .unwrap()
        .publish(writer.node.dialer(), &forged)
        .await;
    assert_eq!(
        acks, 0,
        "a record with a broken signature is stored nowhere"
    );

    // Lose a third of the nodes (never the writer or the bootstrap node).
    let doomed: Vec<RunningNode> = nodes.drain(13..).collect();
    assert_eq!(doomed.len(), 7);
    for n in doomed {
        n.stop().await;
    }
    for (i, n) in nodes.iter().enumerate() {
        let found = fetch(n, &record).await;
        assert_eq!(found, vec![record.encode()], "node {i} after the crash");
    }
}

#[tokio::test]
async fn a_node_of_another_overlay_is_refused() {
    let a = start(40, params());
    let stranger = start(
        41,
        OverlayParams {
            name: "other-overlay".into(),
            ..params()
        },
    );
    let overlay = stranger.node.overlay().unwrap().clone();
    // One attempt (a whole join would try again for 15 s).
    let mut plan = JoinPlan::new();
    let step = overlay
        .join_attempt(stranger.node.dialer(), &[contact(&a)], &mut plan)
        .await;
    // The stranger's requests name its overlay: a answers WrongOverlay and
    // never admits it; the stranger drops a as unresponsive, and its join
    // found nobody.
    assert!(matches!(step, JoinStep::Retry { .. }), "{step:?}");
    assert_eq!(overlay.table_len(), 0);
    assert_eq!(a.node.overlay().unwrap().table_len(), 0);

    // Control: a node of the same overlay is admitted both ways.
    let friend = start(42, params());
    let fo = friend.node.overlay().unwrap().clone();
    fo.join(friend.node.dialer(), &[contact(&a)]).await;
    assert_eq!(fo.table_len(), 1);
    // a admits the friend once a dial-back proved it listens there.
    let ao = a.node.overlay().unwrap().clone();
    eventually("a admits the friend", || ao.table_len() == 1).await;
}

#[tokio::test]
async fn a_node_restarted_from_its_data_dir_still_serves_its_records() {
    let data = tempfile::tempdir().unwrap();
    let key = key(150);
    let listen: std::net::SocketAddr = "127.60.0.1:0".parse().unwrap();
    let config = |listen_identity: &SecretKey| p2psip::net::NodeConfig {
        identity: LocalIdentity::self_signed(listen_identity, now()).unwrap(),
        policy: VerifyPolicy::self_certifying(0),
        limits: Limits::default(),
        overlay: Some(params()),
        data_dir: Some(data.path().to_path_buf()),
    };
    let holder = start_configured(config(&key), listen);
    let other = start(61, params());
    let oo = other.node.overlay().unwrap().clone();
    oo.join(other.node.dialer(), &[contact(&holder)]).await;

    let user = SecretKey::from_seed(&[0xbb; 32]);
    let record = OwnerValue::new("voicemail-greeting", b"beep".to_vec())
        .unwrap()
        .sign(&user, 3, now() as u64 + 3600);
    let acks = oo.publish(other.node.dialer(), &record).await;
    assert_eq!(acks, 2, "stored on both nodes");
    assert_eq!(holder.node.overlay().unwrap().records_len(), 1);
    holder.stop().await;

    // Same identity, same data directory: the record is back. (The old
    // instance's tasks release the database a moment after it stops.)
    let mut restarted = None;
    for _ in 0..100 {
        if p2psip::net::Node::bind(config(&key), listen).is_ok() {
            restarted = Some(start_configured(config(&key), listen));
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    let restarted = restarted.expect("the data directory is released within 5 s");
    assert_eq!(restarted.node.overlay().unwrap().records_len(), 1);
    let answer = other
        .node
        .dialer()
        .request(
            contact(&restarted),
            &p2psip::wire::Message::FindValue {
                overlay: params().name,
                key: record.key.0,
                kind: RecordKind::OwnerValue.to_u64(),
            },
        )
        .await
        .unwrap();
    match answer {
        p2psip::wire::Message::Value { records, .. } => assert_eq!(records, vec![record.encode()]),
        other => panic!("unexpected answer {other:?}"),
    }
    // A lower sequence number is refused after the restart too.
    let older = OwnerValue::new("voicemail-greeting", b"old".to_vec())
        .unwrap()
        .sign(&user, 2, now() as u64 + 3600);
    let err = other
        .node
        .dialer()
        .request(
            contact(&restarted),
            &p2psip::wire::Message::Store {
                overlay: params().name,
                record: older.encode(),
            },
        )
        .await
        .unwrap_err();
    assert!(
        err.to_string().contains("lower than the 3 already seen"),
        "{err}"
    );
}

/// Concurrent Stores of successive versions of one record reach the disk
/// in the order the record store took them (group commit keeps a slot's
/// writes in order): reopened, the database holds exactly the version the
/// node held in memory, which is the newest acknowledged one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_versions_of_a_record_end_on_disk_as_in_memory() {
    use p2psip::net::disk::DiskStore;
    use p2psip::net::overlay::OverlayService;
    use p2psip::overlay::record::RecordPolicy;
    use std::sync::Arc;
    const VERSIONS: u64 = 64;
    let data = tempfile::tempdir().unwrap();
    for round in 0..4u8 {
        let user = SecretKey::from_seed(&[0xc0 + round; 32]);
        let expires = now() as u64 + 3600;
        let versions: Vec<Record> = (1..=VERSIONS)
            .map(|seq| {
                OwnerValue::new("config", seq.to_le_bytes().to_vec())
                    .unwrap()
                    .sign(&user, seq, expires)
            })
            .collect();
        let path = data.path().join(format!("records-{round}.redb"));
        let service = OverlayService::new(
            NodeId::from_bytes([0; 32]),
            params(),
            RecordPolicy::self_certifying(params().name),
        );
        let (service, _) = service.with_disk(DiskStore::open(&path).unwrap()).unwrap();
        let service = Arc::new(service);
        // Every version at once, in a scrambled order, each from its own
        // peer.
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..VERSIONS as usize {
            let record = versions[(i * 37 + usize::from(round)) % VERSIONS as usize].clone();
            let service = service.clone();
            let peer = Contact {
                id: NodeId::from_bytes([i as u8 | 0x80; 32]),
                addr: SocketAddr::from(([10, i as u8, 0, 1], 4433)),
            };
            tasks.spawn(async move {
                let request = Message::Store {
                    overlay: params().name,
                    record: record.encode(),
                };
                let answer = service.answer(peer, ListenProof::Verified, &request).await;
                (record.seq, matches!(answer, Some(Message::Stored { .. })))
            });
        }
        let mut acknowledged = Vec::new();
        while let Some(done) = tasks.join_next().await {
            let (seq, stored) = done.unwrap();
            if stored {
                acknowledged.push(seq);
            }
        }
        let held = service.local_records(&versions[0].key, RecordKind::OwnerValue);
        let newest = versions.last().unwrap().encode();
        assert_eq!(held, vec![newest.clone()], "round {round}");
        assert!(acknowledged.contains(&VERSIONS), "round {round}");
        // The last handle: dropping it stops the committer and closes the
        // database.
        drop(Arc::try_unwrap(service).expect("no other handle"));
        let rows = DiskStore::open(&path).unwrap().load_all().unwrap();
        assert_eq!(rows.len(), 1, "round {round}");
        assert_eq!(
            rows[0].1, newest,
            "round {round}: the disk holds another version"
        );
    }
}

/// Small overlays for the upkeep tests: `replication` copies, k = 8.
fn small(replication: usize) -> OverlayParams {
    OverlayParams {
        replication,
        ..params()
    }
}

/// The node id of node `i` (see [`start`]).
fn id_of(i: u8) -> NodeId {
    key(100 + i).public().node_id()
}

fn config(i: u8, overlay: OverlayParams, data: Option<&std::path::Path>) -> NodeConfig {
    NodeConfig {
        identity: LocalIdentity::self_signed(&key(100 + i), now()).expect("certificate"),
        policy: VerifyPolicy::self_certifying(0),
        limits: Limits::default(),
        overlay: Some(overlay),
        data_dir: data.map(|d| d.to_path_buf()),
    }
}

fn listen(i: u8) -> SocketAddr {
    format!("127.{}.0.1:0", i + 1).parse().unwrap()
}

/// Node `i` with its maintenance configured.
fn start_maintained(i: u8, overlay: OverlayParams, m: Maintenance) -> RunningNode {
    let node = Node::bind(config(i, overlay, None), listen(i)).expect("bind node");
    start_built(node.with_maintenance(m))
}

/// A signed value whose key, among the ids `ids`, is closest to them in
/// the order `wanted` gives: the first name (of a bounded search) for
/// which `wanted(order)` holds, `order` being the indices of `ids` sorted
/// by distance to the key.
fn value_placed(tag: &str, ids: &[NodeId], wanted: impl Fn(&[usize]) -> bool) -> Record {
    let user = SecretKey::from_seed(&[0xcc; 32]);
    for n in 0..2000 {
        let record = OwnerValue::new(&format!("{tag}-{n}"), b"payload".to_vec())
            .unwrap()
            .sign(&user, 1, now() as u64 + 3600);
        let mut order: Vec<usize> = (0..ids.len()).collect();
        order.sort_by_key(|i| record.key.distance(&Key::from(ids[*i])));
        if wanted(&order) {
            return record;
        }
    }
    panic!("no name in 2000 places the key as wanted");
}

fn holds(n: &RunningNode) -> usize {
    n.node.overlay().unwrap().records_len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_restarted_without_bootstrap_rejoins_through_its_saved_table() {
    let data = tempfile::tempdir().unwrap();
    let a = start(70, params());
    let b = start(71, params());
    let bo = b.node.overlay().unwrap().clone();
    bo.join(b.node.dialer(), &[contact(&a)]).await;
    // A record held by a and b only: published before x exists.
    let user = SecretKey::from_seed(&[0xdd; 32]);
    let record = OwnerValue::new("rejoin", b"still here".to_vec())
        .unwrap()
        .sign(&user, 1, now() as u64 + 3600);
    assert_eq!(bo.publish(b.node.dialer(), &record).await, 2);

    let x = start_configured(config(72, params(), Some(data.path())), listen(72));
    let xo = x.node.overlay().unwrap().clone();
    xo.join(x.node.dialer(), &[contact(&a)]).await;
    assert_eq!(xo.table_len(), 2, "x knows a and b");
    let at = x.addr;
    drop(xo);
    x.stop().await;
    // a and b saw x's connections close: whatever they see next is new.
    eventually("a and b drop the stopped node's connections", || {
        [&a, &b]
            .iter()
            .all(|n| n.node.peers().iter().all(|(id, _)| *id != id_of(72)))
    })
    .await;

    // Same identity, data directory and address; no bootstrap. (The old
    // instance's tasks release the socket and database a moment after it
    // stops.)
    let mut node = None;
    for _ in 0..100 {
        if let Ok(n) = Node::bind(config(72, params(), Some(data.path())), at) {
            node = Some(n);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let node = node.expect("the address and data directory are released within 5 s");
    let restored = node.overlay().unwrap().clone();
    assert_eq!(restored.table_len(), 2, "the saved contacts are back");
    let x = start_built(node);
    // The rejoin (run by the node itself) proves both ids again: a and b
    // see requests from x.
    eventually("a and b hear from the restarted node", || {
        [&a, &b]
            .iter()
            .all(|n| n.node.peers().iter().any(|(id, _)| *id == id_of(72)))
    })
    .await;
    let found = restored
        .lookup(x.node.dialer(), record.key, Some(RecordKind::OwnerValue))
        .await;
    assert_eq!(found.records, vec![record.encode()]);
    assert_eq!(restored.table_len(), 2);
}

/// A node whose bootstrap node is not up yet does not stay blind until
/// its hourly refresh: the core's join plan tries again (1 s after the
/// first attempt failed, which takes the 3 s dial timeout here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_join_tries_again_until_its_late_bootstrap_node_is_up() {
    let a = start(64, params());
    // b's address, free until b starts.
    let b_at = std::net::UdpSocket::bind(listen(65))
        .and_then(|s| s.local_addr())
        .unwrap();
    let b_contact = Contact {
        id: id_of(65),
        addr: b_at,
    };
    let x = start(66, params());
    let xo = x.node.overlay().unwrap().clone();
    let dialer = x.node.dialer().clone();
    let joining = tokio::spawn(async move { xo.join(&dialer, &[b_contact]).await });
    // The first attempt's dial fails after the 3 s timeout; a single
    // attempt would have ended then, with nobody known.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(!joining.is_finished(), "the join waits to try again");
    let b = start_configured(config(65, params(), None), b_at);
    let bo = b.node.overlay().unwrap().clone();
    assert_eq!(bo.join(b.node.dialer(), &[contact(&a)]).await, 1);
    let size = tokio::time::timeout(Duration::from_secs(20), joining)
        .await
        .expect("the join ends within its back-off")
        .unwrap();
    assert_eq!(size, 2, "x knows b and, through b, a");
    eventually("b admits x", || bo.table_len() == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_gave_up_joining_joins_when_its_bootstrap_node_comes_up() {
    // Expiry sweeps (where an empty table is noticed) every 300 ms.
    let m = Maintenance {
        expire_interval: Duration::from_millis(300),
        jitter: Duration::ZERO,
        ..Maintenance::default()
    };
    let a = start(67, params());
    let b_at = std::net::UdpSocket::bind(listen(68))
        .and_then(|s| s.local_addr())
        .unwrap();
    let b_contact = Contact {
        id: id_of(68),
        addr: b_at,
    };
    let x = start_maintained(69, params(), m);
    let xo = x.node.overlay().unwrap().clone();
    // Nobody answers at b's address for all of the join's attempts.
    assert_eq!(xo.join(x.node.dialer(), &[b_contact]).await, 0);
    let b = start_configured(config(68, params(), None), b_at);
    let bo = b.node.overlay().unwrap().clone();
    // (x may already have joined through b by now: at least a is known.)
    assert!(bo.join(b.node.dialer(), &[contact(&a)]).await >= 1);
    // Without the upkeep's rejoin, x would stay blind until its hourly
    // refresh (and that has nobody to ask).
    eventually("x joins again through b, and learns a", || {
        xo.table_len() == 2
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_newcomer_closer_to_a_key_is_handed_the_record() {
    // Replication 2 on three nodes; the newcomer (node 76) is closer to
    // the key than all of them.
    let ids: Vec<NodeId> = (73..=76).map(id_of).collect();
    let record = value_placed("handover", &ids, |order| order[0] == 3);
    let mut nodes = vec![start(73, small(2))];
    let boot = contact(&nodes[0]);
    for i in 74..=75 {
        let n = start(i, small(2));
        n.node
            .overlay()
            .unwrap()
            .join(n.node.dialer(), &[boot])
            .await;
        nodes.push(n);
    }
    let o = nodes[0].node.overlay().unwrap().clone();
    assert_eq!(o.publish(nodes[0].node.dialer(), &record).await, 2);
    assert_eq!(nodes.iter().map(holds).sum::<usize>(), 2);

    let newcomer = start(76, small(2));
    assert_eq!(holds(&newcomer), 0);
    let no = newcomer.node.overlay().unwrap().clone();
    assert_eq!(no.join(newcomer.node.dialer(), &[boot]).await, 3);
    eventually("the newcomer is handed the record", || {
        holds(&newcomer) == 1
    })
    .await;
    let answer = nodes[0]
        .node
        .dialer()
        .request(
            contact(&newcomer),
            &Message::FindValue {
                overlay: params().name,
                key: record.key.0,
                kind: RecordKind::OwnerValue.to_u64(),
            },
        )
        .await
        .unwrap();
    match answer {
        Message::Value { records, .. } => assert_eq!(records, vec![record.encode()]),
        other => panic!("unexpected answer {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn republish_moves_a_record_off_holders_that_stopped() {
    // Five nodes, replication 2, republish every 300 ms. The key's two
    // closest nodes hold it; node 80 (the bootstrap and reader) is the
    // farthest, so that its lookup finds only what others hold.
    let ids: Vec<NodeId> = (80..=84).map(id_of).collect();
    let record = value_placed("republish", &ids, |order| order[4] == 0);
    let m = Maintenance {
        republish_interval: Duration::from_millis(300),
        jitter: Duration::ZERO,
        ..Maintenance::default()
    };
    let mut nodes: Vec<Option<RunningNode>> = vec![Some(start_maintained(80, small(2), m))];
    let boot = contact(nodes[0].as_ref().unwrap());
    for i in 81..=84 {
        let n = start_maintained(i, small(2), m);
        n.node
            .overlay()
            .unwrap()
            .join(n.node.dialer(), &[boot])
            .await;
        nodes.push(Some(n));
    }
    let mut order: Vec<usize> = (0..5).collect();
    order.sort_by_key(|i| record.key.distance(&Key::from(ids[*i])));
    let reader = nodes[0].as_ref().unwrap();
    let ro = reader.node.overlay().unwrap().clone();
    assert_eq!(ro.publish(reader.node.dialer(), &record).await, 2);
    let held = |i: usize| nodes[order[i]].as_ref().map_or(0, holds);
    assert_eq!((held(0), held(1), held(2), held(3)), (1, 1, 0, 0));

    // The closest holder stops: the other republishes to the third.
    nodes[order[0]].take().unwrap().stop().await;
    let third = nodes[order[2]].as_ref().unwrap();
    eventually_polls("the third closest node gets the record", 1500, || {
        holds(third) == 1
    })
    .await;
    // The second holder stops too: the third republishes to the fourth.
    nodes[order[1]].take().unwrap().stop().await;
    let fourth = nodes[order[3]].as_ref().unwrap();
    eventually_polls("the fourth closest node gets the record", 1500, || {
        holds(fourth) == 1
    })
    .await;
    // Neither original holder is left, and a lookup still finds it.
    let reader = nodes[0].as_ref().unwrap();
    let found = ro
        .lookup(
            reader.node.dialer(),
            record.key,
            Some(RecordKind::OwnerValue),
        )
        .await;
    assert_eq!(found.records, vec![record.encode()]);
}

/// Node `i` allowing each peer `burst` requests and then (in practice)
/// none, a token per hour; with its limit.
fn start_rate_limited(i: u8, burst: u32, max_refused_in_a_row: u32) -> (RunningNode, RateLimit) {
    let limit = RateLimit {
        burst,
        refill_every: Duration::from_secs(3600),
        max_refused_in_a_row,
    };
    let node = Node::bind(config(i, params(), None), listen(i)).unwrap();
    (start_built(node.with_rate_limit(limit)), limit)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_over_its_rate_is_refused_then_disconnected_while_another_is_served() {
    // Five requests, then (in practice) none: a token per hour.
    let (server, _) = start_rate_limited(85, 5, 10);
    let id = server.node.node_id();
    let greedy = client(&key(86), VerifyPolicy::self_certifying(0), "127.87.0.1");
    let polite = client(&key(88), VerifyPolicy::self_certifying(0), "127.89.0.1");

    let conn = greedy.connect(server.addr, Some(id)).await.unwrap();
    let mut outcomes = Vec::new();
    for _ in 0..20 {
        let outcome = match conn.ping().await {
            Ok(_) => "pong",
            Err(NetError::Remote {
                code: ErrorCode::RateLimited,
                ..
            }) => "limited",
            Err(NetError::Connection(quinn::ConnectionError::ApplicationClosed(close)))
                if close.error_code == quinn::VarInt::from_u32(p2psip::net::CLOSE_RATE_LIMITED) =>
            {
                "closed"
            }
            Err(e) => panic!("unexpected error {e}"),
        };
        outcomes.push(outcome);
        if outcome == "closed" {
            break;
        }
    }
    let count = |what: &str| outcomes.iter().filter(|o| **o == what).count();
    assert_eq!(
        (count("pong"), count("limited"), count("closed")),
        (5, 10, 1),
        "{outcomes:?}"
    );
    assert_eq!(outcomes[..5], ["pong"; 5]);

    // Another peer has its own budget, served all along.
    let conn = polite.connect(server.addr, Some(id)).await.unwrap();
    for _ in 0..5 {
        conn.ping().await.unwrap();
    }
    match conn.ping().await {
        Err(NetError::Remote { code, reason }) => {
            assert_eq!(code, ErrorCode::RateLimited);
            assert!(reason.contains("node id"), "{reason}");
        }
        other => panic!("expected RateLimited, got {other:?}"),
    }
}

/// The node's server admits requests through its core's
/// `Peers::admit_request`, the decision the simulator's flooded nodes call
/// (`sim::tests::a_flooded_node_admits_as_its_core_decides`): a greedy
/// peer that reconnects each time it is disconnected meets, over QUIC,
/// exactly the admissions a bare core with the same limit makes of the
/// same requests (served, refused, the connection closed, then banned by
/// the evidence of its refusals). A server with its own limiter, or its own
/// order of checks, would not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_node_admits_requests_as_the_simulators_core_decides() {
    use p2psip::overlay::peers::{Admission, Defences, Peers};
    use p2psip::overlay::rate::RefusalStreak;
    use p2psip::reputation::{Evidence, Policy};

    let (server, limit) = start_rate_limited(130, 3, 4);
    let id = server.node.node_id();
    let greedy_key = key(131);
    let greedy_ip = "127.132.0.1";
    let greedy = client(&greedy_key, VerifyPolicy::self_certifying(0), greedy_ip);

    let closed = |e: &NetError, code: u32| {
        matches!(e, NetError::Connection(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code == quinn::VarInt::from_u32(code))
    };
    let mut over_quic = Vec::new();
    'connections: for _ in 0..10 {
        let conn = greedy.connect(server.addr, Some(id)).await.unwrap();
        for _ in 0..50 {
            match conn.ping().await {
                Ok(_) => over_quic.push("serve"),
                Err(NetError::Remote {
                    code: ErrorCode::RateLimited,
                    ..
                }) => over_quic.push("refuse"),
                Err(e) if closed(&e, p2psip::net::CLOSE_RATE_LIMITED) => {
                    over_quic.push("close");
                    continue 'connections;
                }
                Err(e) if closed(&e, p2psip::net::CLOSE_BANNED) => {
                    over_quic.push("banned");
                    break 'connections;
                }
                Err(e) => panic!("unexpected error {e} after {over_quic:?}"),
            }
        }
    }

    // The same requests, decided by a bare core: what the simulator runs.
    let mut core = Peers::new(id, &params(), Defences::P2PSIP, Policy::default());
    core.set_rate_limit(limit);
    let peer = greedy_key.public().node_id();
    let ip: std::net::IpAddr = greedy_ip.parse().unwrap();
    // A millisecond per request, as over QUIC at least: evidence decays
    // with time, and a ban at exactly the threshold needs none.
    let mut now = 1_800_000_000_000u64;
    let mut decided = Vec::new();
    'model: loop {
        // Every connection the server accepts is first seen.
        let _ = core.observe(now, &peer, Evidence::Seen);
        let mut streak = RefusalStreak::default();
        loop {
            now += 1;
            match core.admit_request(now, &peer, ip, &mut streak) {
                Admission::Serve => decided.push("serve"),
                Admission::Refuse(_) => decided.push("refuse"),
                Admission::Close(_) => {
                    decided.push("close");
                    continue 'model;
                }
                Admission::Banned => {
                    decided.push("banned");
                    break 'model;
                }
            }
        }
    }
    assert_eq!(over_quic, decided);
    assert_eq!(over_quic.last(), Some(&"banned"));
    assert!(over_quic.contains(&"close"), "{over_quic:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_for_a_key_the_node_is_not_responsible_for_is_refused() {
    // Replication 1: a node refuses once it knows SLACK × 1 closer nodes.
    let closer = RESPONSIBILITY_SLACK_FACTOR;
    let first = 90u8;
    let last = first + closer as u8;
    let ids: Vec<NodeId> = (first..=last).map(id_of).collect();
    // Node `first` is the farthest from the key.
    let record = value_placed("responsible", &ids, |order| order[closer] == 0);
    let x = start(first, small(1));
    let mut others = Vec::new();
    for i in first + 1..=last {
        let n = start(i, small(1));
        n.node
            .overlay()
            .unwrap()
            .join(n.node.dialer(), &[contact(&x)])
            .await;
        others.push(n);
    }
    let xo = x.node.overlay().unwrap().clone();
    // x admits each once a dial-back proved it listens.
    eventually("x knows the closer nodes", || xo.table_len() == closer).await;
    assert!(!xo.is_responsible(&record.key));
    let store = Message::Store {
        overlay: params().name,
        record: record.encode(),
    };
    let asker = &others[0];
    match asker.node.dialer().request(contact(&x), &store).await {
        Err(NetError::Remote { code, reason }) => {
            assert_eq!(code, ErrorCode::NotResponsible);
            assert!(
                reason.contains(&format!("knows {closer} nodes closer")),
                "{reason}"
            );
        }
        other => panic!("expected NotResponsible, got {other:?}"),
    }
    assert_eq!(holds(&x), 0);
    // Publishing through the refusing node still works: the closest node
    // stores it, and x does not keep a copy.
    assert_eq!(xo.publish(x.node.dialer(), &record).await, 1);
    assert_eq!(holds(&x), 0);
    assert_eq!(others.iter().map(holds).sum::<usize>(), 1);
}

/// A key whose node id shares at least `bits` leading bits with `target`
/// (an attacker's identity placed next to a key), the `n`-th such found
/// from `seed_tag` on.
fn key_near(target: &Key, bits: u32, seed_tag: u8, n: usize) -> SecretKey {
    let mut found = 0;
    for counter in 0u64.. {
        let mut seed = [seed_tag; 32];
        seed[..8].copy_from_slice(&counter.to_le_bytes());
        let k = SecretKey::from_seed(&seed);
        let d = target.distance(&Key::from(k.public().node_id()));
        let shared =
            d.0.iter()
                .position(|b| *b != 0)
                .map_or(256, |i| i as u32 * 8 + d.0[i].leading_zeros());
        if shared >= bits {
            if found == n {
                return k;
            }
            found += 1;
        }
    }
    unreachable!("the counter space is not exhausted")
}

/// A self-certifying node with `key`, on 127.`octet`.0.1, joined to
/// nobody yet.
fn start_keyed(key: &SecretKey, octet: u8, overlay: &OverlayParams) -> RunningNode {
    let identity = LocalIdentity::self_signed(key, now()).expect("certificate");
    start_overlay_node(
        identity,
        VerifyPolicy::self_certifying(0),
        Limits::default(),
        format!("127.{octet}.0.1:0").parse().unwrap(),
        overlay.clone(),
    )
}

/// Joins `n` through `boot`.
async fn join_via(n: &RunningNode, boot: Contact) {
    n.node
        .overlay()
        .unwrap()
        .join(n.node.dialer(), &[boot])
        .await;
}

/// The indices of the nodes that hold exactly `record` (encoded) in their
/// own store.
fn holding(nodes: &[RunningNode], record: &Record) -> Vec<usize> {
    nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| {
            n.node
                .overlay()
                .unwrap()
                .local_records(&record.key, RecordKind::OwnerValue)
                .contains(&record.encode())
        })
        .map(|(i, _)| i)
        .collect()
}

/// A content eclipse on real nodes: six identities sharing 10 leading
/// bits with a record's key (an honest overlay of 16 nodes has such a node
/// once in 64 keys, never six) join an overlay of ten honest nodes. The
/// writer's lookup notices the implausibly dense cluster and places
/// replicas beyond it too, and the honest nodes there accept them although
/// the cluster makes them look far from the key. When the whole cluster
/// vanishes (here: stops, the bluntest way to withhold a record), the
/// record is still found. Fails without either half of the defence
/// (checked by disabling each: no honest node then holds the record).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dense_cluster_around_a_key_cannot_hide_a_record() {
    // Replication 2: an honest node beyond the cluster knows more than
    // 2 x 2 nodes closer to the key (the six), so it would refuse the
    // replica as not its business if it counted the cluster.
    let p = OverlayParams {
        replication: 2,
        ..params()
    };
    let user = SecretKey::from_seed(&[0xcd; 32]);
    let value = OwnerValue::new("voicemail", b"call me back".to_vec()).unwrap();
    let record = value.sign(&user, 1, now() as u64 + 3600);

    let honest: Vec<RunningNode> = (0..10u8)
        .map(|i| start_keyed(&key(150 + i), 150 + i, &p))
        .collect();
    let boot = contact(&honest[0]);
    for n in &honest[1..] {
        join_via(n, boot).await;
    }
    let mut sybils: Vec<RunningNode> = Vec::new();
    for j in 0..6u8 {
        let n = start_keyed(&key_near(&record.key, 10, 0x5b, j.into()), 170 + j, &p);
        join_via(&n, boot).await;
        sybils.push(n);
    }
    // The honest nodes meet the newcomers (a refresh, as maintenance does).
    for n in &honest {
        let overlay = n.node.overlay().unwrap();
        let found = overlay.lookup(n.node.dialer(), record.key, None).await;
        overlay.learn_found(&found);
    }

    let writer = &honest[1];
    let acks = writer
        .node
        .overlay()
        .unwrap()
        .publish(writer.node.dialer(), &record)
        .await;
    let mut holders = holding(&honest, &record);
    holders.retain(|i| *i != 1);
    assert!(
        !holders.is_empty(),
        "no honest node but the writer holds the record ({acks} acks): the cluster got every replica"
    );

    // What the writer's placement lookup saw: the cluster.
    let placement = writer
        .node
        .overlay()
        .unwrap()
        .query(
            writer.node.dialer(),
            record.key,
            Goal::Place,
            Some(RecordKind::OwnerValue),
        )
        .await
        .outcome;
    let dense = placement
        .dense
        .expect("the writer noticed the dense cluster");
    assert!(dense.shared_bits >= 6, "{dense:?}");
    assert!(
        placement
            .beyond
            .iter()
            .flatten()
            .all(|c| !dense.contains(&record.key, &c.id)),
        "the repeat set the cluster aside"
    );

    // The whole cluster withholds the record: it is still found.
    for n in sybils {
        n.stop().await;
    }
    let reader_index = (2..10).find(|i| !holders.contains(i)).unwrap_or(2);
    let reader = &honest[reader_index];
    let found = reader
        .node
        .overlay()
        .unwrap()
        .lookup(
            reader.node.dialer(),
            record.key,
            Some(RecordKind::OwnerValue),
        )
        .await;
    assert_eq!(
        found.records,
        vec![record.encode()],
        "honest holders {holders:?}; the reader (node {reader_index}) found nothing"
    );
}

/// A new version of a record, published after nodes closer to its key
/// joined: its replicas go to the newcomers, so the publish also sends it
/// to every node its lookup found holding a version. Afterwards no node
/// serves the old one (a reader that stops after two holders could
/// otherwise meet two old copies).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_replaces_the_old_one_wherever_the_writer_finds_it() {
    let p = OverlayParams {
        replication: 3,
        ..params()
    };
    let mut nodes: Vec<RunningNode> = (0..10u8)
        .map(|i| start_keyed(&key(190 + i), 200 + i, &p))
        .collect();
    let boot = contact(&nodes[0]);
    for n in &nodes[1..] {
        join_via(n, boot).await;
    }
    let user = SecretKey::from_seed(&[0xce; 32]);
    let expires = now() as u64 + 3600;
    let version = |seq: u64| {
        OwnerValue::new("presence", format!("v{seq}").into_bytes())
            .unwrap()
            .sign(&user, seq, expires)
    };
    let (v1, v2) = (version(1), version(2));
    let w = &nodes[2];
    w.node
        .overlay()
        .unwrap()
        .publish(w.node.dialer(), &v1)
        .await;
    let v1_holders = holding(&nodes, &v1);
    assert!(v1_holders.len() >= 3, "{v1_holders:?}");

    // Three nodes much closer to the key join (6 bits in common with it:
    // a random node has that once in 64).
    for j in 0..3u8 {
        let n = start_keyed(&key_near(&v1.key, 6, 0x6c, j.into()), 210 + j, &p);
        join_via(&n, boot).await;
        nodes.push(n);
    }
    let w = &nodes[5];
    w.node
        .overlay()
        .unwrap()
        .publish(w.node.dialer(), &v2)
        .await;
    let v2_holders = holding(&nodes, &v2);
    assert!(
        (10..13).any(|i| v2_holders.contains(&i)),
        "the newcomers hold the new version: {v2_holders:?}"
    );
    // No node is left serving the old version.
    assert_eq!(
        holding(&nodes, &v1),
        Vec::<usize>::new(),
        "v2 at {v2_holders:?}"
    );
}

/// Pure clients never enter a routing table (issue 10): a peer on a
/// client-only endpoint that names the overlay in a FindNode, and pings,
/// is dialed back at the address it came from, found not listening, and
/// neither admitted nor handed to others. A peer with a real node's
/// identity that connects from another socket does not move that node's
/// entry to the unverified address. Control: the real node is admitted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_listen_never_enters_a_routing_table() {
    let a = start(60, params());
    let b = start(61, params());
    join_via(&b, contact(&a)).await;
    let ao = a.node.overlay().unwrap().clone();
    eventually("a admits b (b listens)", || ao.table_len() == 1).await;

    let find = Message::FindNode {
        overlay: "test-overlay".into(),
        target: [0x42; 32],
    };
    // A pure client with an identity of its own.
    let loner_key = key(162);
    let loner = client(&loner_key, VerifyPolicy::self_certifying(0), "127.63.0.1");
    let conn = loner.connect(a.addr, Some(a.node.node_id())).await.unwrap();
    assert!(matches!(
        conn.request(&find).await,
        Ok(Message::Nodes { .. })
    ));
    conn.ping().await.unwrap();
    // Another client that presents b's identity from another socket.
    let b_key = key(100 + 61);
    let spoof = client(&b_key, VerifyPolicy::self_certifying(0), "127.64.0.1");
    let sconn = spoof.connect(a.addr, Some(a.node.node_id())).await.unwrap();
    assert!(matches!(
        sconn.request(&find).await,
        Ok(Message::Nodes { .. })
    ));

    // Both dial-backs find no listener (each gives up after its timeout).
    eventually_polls("a's dial-backs ended", 1000, || ao.listen_checks().1 >= 2).await;
    let loner_id = loner_key.public().node_id();
    let routes = ao.routes();
    assert!(routes.iter().all(|(_, c)| c.id != loner_id), "{routes:?}");
    assert_eq!(routes.len(), 1);
    assert_eq!(
        routes[0].1,
        contact(&b),
        "b stays at the address it listens on"
    );
    // What a hands to others names neither.
    let answer = b.node.dialer().request(contact(&a), &find).await.unwrap();
    let Message::Nodes { contacts } = answer else {
        panic!("unexpected {answer:?}");
    };
    assert!(contacts
        .iter()
        .all(|c| c.id != loner_id && c.addr.ip() != loner.local_addr().unwrap().ip()));
    assert!(contacts
        .iter()
        .all(|c| c.addr.ip() != spoof.local_addr().unwrap().ip()));
}

/// Under load a node slows down instead of going blind (issue 10): one
/// node runs 32 concurrent lookups for a few seconds against peers with
/// the default rate limit. It paces itself within what they allow, so
/// none of them refuses it into a ban, it keeps at least 90 % of its
/// contacts, and at least 99 % of its lookups find nodes. Meanwhile a
/// flooder hammers another node with requests as fast as it can; that
/// node keeps its table and goes on answering the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_busy_node_slows_down_and_a_hammered_node_keeps_serving() {
    let nodes: Vec<RunningNode> = (0..8u8).map(|i| start(70 + i, params())).collect();
    let boot = contact(&nodes[0]);
    for n in &nodes[1..] {
        join_via(n, boot).await;
    }
    // Everyone meets everyone (a refresh, as maintenance does).
    for n in &nodes {
        let overlay = n.node.overlay().unwrap();
        let found = overlay.lookup(n.node.dialer(), Key([0x5a; 32]), None).await;
        overlay.learn_found(&found);
    }
    let busy = nodes[1].node.clone();
    let hammered = nodes[2].node.clone();
    let before_busy = busy.overlay().unwrap().table_len();
    let before_hammered = hammered.overlay().unwrap().table_len();
    assert!(before_busy >= 4, "table of {before_busy} after the joins");

    // The flooder: a pure client with FindNodes, 16 in flight, until it
    // is cut off, for at most 20 s or 20,000 requests (the node allows a
    // burst of 200 and 100/s).
    let flood_key = key(180);
    let flooder = client(&flood_key, VerifyPolicy::self_certifying(0), "127.81.0.1");
    let conn = flooder
        .connect(contact(&nodes[2]).addr, Some(hammered.node_id()))
        .await
        .unwrap();
    let flood = tokio::spawn(async move {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        let sent = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let workers: Vec<_> = (0..16)
            .map(|_| {
                let (conn, sent) = (conn.clone(), sent.clone());
                tokio::spawn(async move {
                    let find = Message::FindNode {
                        overlay: "test-overlay".into(),
                        target: [0x11; 32],
                    };
                    while tokio::time::Instant::now() < deadline
                        && sent.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 20_000
                    {
                        let r = conn.request(&find).await;
                        if r.is_err() && conn.connection().close_reason().is_some() {
                            break;
                        }
                    }
                })
            })
            .collect();
        for w in workers {
            let _ = w.await;
        }
    });

    // The busy node: 32 concurrent lookups, at most 3 s or 3,000 lookups.
    let started = std::time::Instant::now();
    let next = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (busy, next) = (busy.clone(), next.clone());
            tokio::spawn(async move {
                let (mut ok, mut all) = (0usize, 0usize);
                while started.elapsed() < Duration::from_secs(3)
                    && next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 3_000
                {
                    let target = Key(rand::random());
                    let found = busy
                        .overlay()
                        .unwrap()
                        .lookup(busy.dialer(), target, None)
                        .await;
                    all += 1;
                    ok += usize::from(!found.closest.is_empty());
                }
                (ok, all)
            })
        })
        .collect();
    let (mut ok, mut all) = (0, 0);
    for t in tasks {
        let (o, a) = t.await.unwrap();
        ok += o;
        all += a;
    }
    flood.await.unwrap();

    assert!(all >= 32, "only {all} lookups ran");
    assert!(ok * 100 >= all * 99, "{ok} of {all} lookups found nodes");
    let after_busy = busy.overlay().unwrap().table_len();
    assert!(
        after_busy * 10 >= before_busy * 9,
        "the busy node kept {after_busy} of {before_busy} contacts"
    );
    for n in &nodes {
        assert!(
            !n.node.core().is_banned(&busy.node_id()),
            "a peer banned the busy node"
        );
    }
    // The flooder went over its rate again and again: banned, and every
    // connection of it closed.
    let flooder_id = flood_key.public().node_id();
    assert!(
        hammered.core().is_banned(&flooder_id),
        "the flooder is not banned: {:?}",
        hammered
            .core()
            .report()
            .iter()
            .filter(|r| r.rate_violations > 0 || r.id == flooder_id)
            .collect::<Vec<_>>()
    );
    assert!(hammered.peers().iter().all(|(id, _)| *id != flooder_id));
    // The hammered node kept its table and still answers its peers.
    let after_hammered = hammered.overlay().unwrap().table_len();
    assert!(
        after_hammered * 10 >= before_hammered * 9,
        "the hammered node kept {after_hammered} of {before_hammered} contacts"
    );
    let answer = nodes[3]
        .node
        .dialer()
        .request(contact(&nodes[2]), &Message::Ping { nonce: 7 })
        .await;
    assert!(matches!(answer, Ok(Message::Pong { .. })), "{answer:?}");
}

/// The policy exists once (issue 10): one core instance (`Peers` and a
/// `Query`), cloned, is driven through a real QUIC exchange with six
/// running nodes and through the simulator's model of the same exchange
/// (an honest responder answers with its core's `k` closest, as
/// `sim::Simulator` serves), with the same inputs and the same injected
/// clock. Both make the same decisions: the same requests in the same
/// order, the same result per path, the same routing table and the same
/// reputation evidence afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_core_decides_alike_over_quic_and_in_the_simulators_model() {
    use p2psip::overlay::peers::{Defences, Peers};
    use p2psip::overlay::query::{Query, RecordsJudged};
    use p2psip::reputation::Policy;

    let nodes: Vec<RunningNode> = (0..6u8).map(|i| start(90 + i, params())).collect();
    let boot = contact(&nodes[0]);
    for n in &nodes[1..] {
        join_via(n, boot).await;
    }
    for n in &nodes {
        let overlay = n.node.overlay().unwrap();
        let found = overlay.lookup(n.node.dialer(), Key([0x77; 32]), None).await;
        overlay.learn_found(&found);
    }
    // The probe: a pure client (its requests change no table). One
    // request to each node first, so that each has dialed it back and
    // found no listener before the measured exchange.
    let probe_key = key(195);
    let probe = client(&probe_key, VerifyPolicy::self_certifying(0), "127.99.0.1");
    let target = Key([0x33; 32]);
    let find = Message::FindNode {
        overlay: params().name,
        target: target.0,
    };
    let mut conns = std::collections::HashMap::new();
    for n in &nodes {
        let conn = probe.connect(n.addr, Some(n.node.node_id())).await.unwrap();
        conns.insert(n.node.node_id(), conn);
    }
    let primes: Vec<_> = conns
        .values()
        .cloned()
        .map(|c| {
            let find = find.clone();
            tokio::spawn(async move { c.request(&find).await })
        })
        .collect();
    for p in primes {
        assert!(matches!(p.await.unwrap(), Ok(Message::Nodes { .. })));
    }

    // The simulator's model of each node: a core holding its table.
    let now = 1_800_000_000_000u64;
    let model: std::collections::HashMap<NodeId, Peers> = nodes
        .iter()
        .map(|n| {
            let mut p = Peers::new(
                n.node.node_id(),
                &params(),
                Defences::P2PSIP,
                Policy::default(),
            );
            for (_, c) in n.node.overlay().unwrap().routes() {
                p.learn_outbound(now, c);
            }
            (n.node.node_id(), p)
        })
        .collect();

    // One core: the probe knows two of the nodes.
    let mut start_core = Peers::new(
        probe_key.public().node_id(),
        &params(),
        Defences::P2PSIP,
        Policy::default(),
    );
    for n in &nodes[..2] {
        start_core.learn_outbound(now, contact(n));
    }

    // Over QUIC, one request at a time.
    let mut quic_core = start_core.clone();
    let mut q = Query::new(&quic_core, now, target, Goal::Closest);
    let mut quic_log = Vec::new();
    while let Some(to) = q.poll_request(&mut quic_core, now) {
        let answer = conns[&to.id].request(&find).await.unwrap();
        let Message::Nodes { contacts } = answer else {
            panic!("unexpected {answer:?}");
        };
        q.on_answer(&mut quic_core, now, to, &contacts, RecordsJudged::default());
        quic_log.push((to, contacts));
    }
    assert!(q.is_finished());
    let quic_found = q.found();

    // In the simulator's model, the same way.
    let mut sim_core = start_core.clone();
    let mut q = Query::new(&sim_core, now, target, Goal::Closest);
    let mut sim_log = Vec::new();
    while let Some(to) = q.poll_request(&mut sim_core, now) {
        let contacts = model[&to.id].closest(&target, params().k);
        q.on_answer(&mut sim_core, now, to, &contacts, RecordsJudged::default());
        sim_log.push((to, contacts));
    }
    assert!(q.is_finished());
    let sim_found = q.found();

    assert!(quic_log.len() >= 3, "the lookup iterated: {quic_log:?}");
    assert_eq!(quic_log, sim_log, "the same requests, the same answers");
    assert_eq!(quic_found.closest, sim_found.closest);
    assert_eq!(quic_found.per_path, sim_found.per_path);
    assert!(quic_found.closest.len() >= 3, "{:?}", quic_found.closest);
    let table = |p: &Peers| p.table().entries().collect::<Vec<_>>();
    assert_eq!(table(&quic_core), table(&sim_core));
    assert_eq!(
        quic_core.reputation().report(now),
        sim_core.reputation().report(now)
    );
}

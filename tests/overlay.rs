//! The overlay over real QUIC: 20 nodes, each with its own endpoint on its
//! own loopback address (127.N.0.1, a distinct /24 each, so the diversity
//! limits apply as on a real network), joining through one bootstrap node,
//! storing a signed record and finding it from every node, then losing a
//! third of the nodes.

mod common;

use common::*;
use p2psip::identity::{SecretKey, VerifyPolicy};
use p2psip::net::{Limits, LocalIdentity};
use p2psip::overlay::config::OverlayParams;
use p2psip::overlay::record::{OwnerValue, Record, RecordKind};
use p2psip::overlay::routing::Contact;

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
    overlay.join(stranger.node.dialer(), &[contact(&a)]).await;
    // The stranger's requests name its overlay: a answers WrongOverlay and
    // never admits it; the stranger drops a as unresponsive.
    assert_eq!(overlay.table_len(), 0);
    assert_eq!(a.node.overlay().unwrap().table_len(), 0);

    // Control: a node of the same overlay is admitted both ways.
    let friend = start(42, params());
    let fo = friend.node.overlay().unwrap().clone();
    fo.join(friend.node.dialer(), &[contact(&a)]).await;
    assert_eq!(fo.table_len(), 1);
    assert_eq!(a.node.overlay().unwrap().table_len(), 1);
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

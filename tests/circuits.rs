//! Onion circuits between real nodes over QUIC on loopback: built hop by
//! hop, carrying cells both ways, each relay knowing only its
//! neighbours, torn down when a relay goes away.

mod common;

use common::*;
use p2psip::identity::{NodeId, VerifyPolicy};
use p2psip::net::circuits::{Arrival, BuildError, ECHO_REPLY, ECHO_REQUEST};
use p2psip::net::{Limits, LocalIdentity};
use p2psip::relay::circuit::{CircuitView, FromCircuit, PathHop};
use p2psip::relay::handshake::OnionKey;
use rand::rngs::OsRng;
use std::time::Duration;

/// Node `i` on its own loopback /16; a relay if `relay`.
fn node(i: u8, relay: bool) -> (RunningNode, PathHop) {
    let identity = LocalIdentity::self_signed(&key(150 + i), now()).expect("certificate");
    let listen = format!("127.{}.0.1:0", 60 + i).parse().unwrap();
    let n = start_node_with(
        identity,
        VerifyPolicy::self_certifying(0),
        Limits::default(),
        listen,
    );
    let onion = OnionKey::generate(OsRng);
    let hop = PathHop {
        id: n.node.node_id(),
        addr: n.addr,
        onion: onion.public(),
    };
    if relay {
        n.node.circuits().enable_relay(onion);
    }
    (n, hop)
}

fn echo(i: u8) -> Vec<u8> {
    let mut p = vec![i; 173];
    p[0] = ECHO_REQUEST;
    p
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_three_hop_circuit_over_quic_echoes_and_each_relay_knows_only_its_neighbours() {
    let (origin, me) = node(0, false);
    let (r1, h1) = node(1, true);
    let (r2, h2) = node(2, true);
    let (r3, h3) = node(3, true);
    let mut circuit = origin
        .node
        .circuits()
        .build(vec![h1, h2, h3])
        .await
        .expect("built");
    // Each relay's own state: its two neighbours, nothing else.
    let only = |prev: NodeId, next: Option<NodeId>| {
        vec![CircuitView {
            prev,
            next,
            rendezvous: None,
        }]
    };
    assert_eq!(r1.node.circuits().relay_view(), only(me.id, Some(h2.id)));
    assert_eq!(r2.node.circuits().relay_view(), only(h1.id, Some(h3.id)));
    assert_eq!(r3.node.circuits().relay_view(), only(h2.id, None));
    // Fifty RTP-sized echo requests, paced; every one comes back from
    // the last hop.
    let mut back = Vec::new();
    for i in 0..50u8 {
        circuit.send(&echo(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    while back.len() < 50 {
        match tokio::time::timeout(Duration::from_secs(5), circuit.recv()).await {
            Ok(Arrival::Message(FromCircuit::Payload { hop, payload })) => {
                assert_eq!(hop, 2, "answered by the last hop");
                back.push(payload)
            }
            other => panic!("after {} echoes: {other:?}", back.len()),
        }
    }
    for (i, p) in back.iter().enumerate() {
        let mut want = echo(p[1]);
        want[0] = ECHO_REPLY;
        assert_eq!(p, &want, "echo {i}");
    }
    back.sort();
    back.dedup();
    assert_eq!(back.len(), 50, "no duplicates");
    assert_eq!(
        r3.node
            .circuits()
            .stats()
            .echoes
            .load(std::sync::atomic::Ordering::Relaxed),
        50
    );
    // Dropping the circuit tears it down at every relay.
    drop(circuit);
    eventually("every relay forgets the circuit", || {
        [&r1, &r2, &r3]
            .iter()
            .all(|r| r.node.circuits().relay_view().is_empty())
    })
    .await;
    assert_eq!(origin.node.circuits().own_circuits(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_that_goes_away_ends_the_circuits_through_it() {
    let (origin, _) = node(10, false);
    let (r1, h1) = node(11, true);
    let (r2, h2) = node(12, true);
    let (r3, h3) = node(13, true);
    let mut circuit = origin
        .node
        .circuits()
        .build(vec![h1, h2, h3])
        .await
        .expect("built");
    r2.stop().await;
    // Its neighbours tear the circuit down; the originator hears it.
    let ended = tokio::time::timeout(Duration::from_secs(5), circuit.recv()).await;
    assert!(matches!(ended, Ok(Arrival::Closed)), "{ended:?}");
    eventually("the other relays forget the circuit", || {
        r1.node.circuits().relay_view().is_empty() && r3.node.circuits().relay_view().is_empty()
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn builds_fail_fast_and_say_where() {
    let (origin, _) = node(20, false);
    let (_r1, h1) = node(21, true);
    let (_plain, not_a_relay) = node(22, false);
    let (_r3, mut h3) = node(23, true);
    // A node that does not relay refuses the Extend's Create at once.
    let started = std::time::Instant::now();
    let err = origin
        .node
        .circuits()
        .build(vec![h1, not_a_relay])
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Refused { hop: 2 }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused, not timed out"
    );
    // A relay named with another onion key cannot answer the handshake:
    // the circuit's keys are never agreed with an impostor.
    h3.onion = OnionKey::generate(OsRng).public();
    let err = origin
        .node
        .circuits()
        .build(vec![h1, h3])
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Circuit(_)), "{err}");
    // A first hop that is not there.
    let mut gone = h1;
    gone.addr = "127.0.0.1:9".parse().unwrap();
    let err = origin.node.circuits().build(vec![gone]).await.unwrap_err();
    assert!(matches!(err, BuildError::Unreachable(_)), "{err}");
    assert_eq!(origin.node.circuits().own_circuits(), 0);
}

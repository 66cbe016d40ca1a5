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
use p2psip::relay::keys::OnionKeys;
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
    let onion = OnionKeys::new(now() as u64, OsRng);
    let hop = PathHop {
        id: n.node.node_id(),
        addr: n.addr,
        onion: onion.current().public(),
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
    // A relay asked to use an onion key it does not hold says no at
    // once (only the key's holder could answer the handshake anyway:
    // `relay::handshake` tests it).
    h3.onion = OnionKey::generate(OsRng).public();
    let started = std::time::Instant::now();
    let err = origin
        .node
        .circuits()
        .build(vec![h1, h3])
        .await
        .unwrap_err();
    assert!(matches!(err, BuildError::Refused { hop: 2 }), "{err}");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "refused, not timed out"
    );
    // A first hop that is not there.
    let mut gone = h1;
    gone.addr = "127.0.0.1:9".parse().unwrap();
    let err = origin.node.circuits().build(vec![gone]).await.unwrap_err();
    assert!(matches!(err, BuildError::Unreachable(_)), "{err}");
    assert_eq!(origin.node.circuits().own_circuits(), 0);
}

/// Everyone a node has a connection with, either way.
fn connected(n: &RunningNode) -> Vec<NodeId> {
    let mut ids: Vec<NodeId> = n.node.peers().into_iter().map(|(id, _)| id).collect();
    ids.extend(n.node.dialer().connected());
    ids
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_through_a_rendezvous_carries_sealed_media_both_ways_and_no_relay_knows_both_ends() {
    use p2psip::net::rendezvous::SessionEvent;
    let (caller, caller_hop) = node(30, false);
    let (callee, callee_hop) = node(31, false);
    let mut relays: Vec<(RunningNode, PathHop)> = (32..37).map(|i| node(i, true)).collect();
    let hop = |i: usize| relays[i].1;
    // The callee: 3 hops, the last the rendezvous point (relay 4).
    let mut listener = callee
        .node
        .circuits()
        .listen(vec![hop(2), hop(3), hop(4)])
        .await
        .expect("listening");
    let handle = listener.handle();
    assert_eq!(handle.point.id, hop(4).id);
    assert_eq!(handle.node, callee_hop.id);
    let echo_task = tokio::spawn(async move {
        let mut joined = 0;
        loop {
            match listener.recv().await {
                SessionEvent::Data(mut p) if p.first() == Some(&ECHO_REQUEST) => {
                    p[0] = ECHO_REPLY;
                    listener.send(&p).unwrap();
                }
                SessionEvent::Joined => joined += 1,
                SessionEvent::Closed => return joined,
                other => panic!("callee got {other:?}"),
            }
        }
    });
    // The caller: its own 2 hops, then the rendezvous point.
    let mut call = caller
        .node
        .circuits()
        .call(vec![hop(0), hop(1)], &handle)
        .await
        .expect("call set up");
    assert_eq!(call.hops().len(), 3);
    for i in 0..50u8 {
        call.send(&echo(i)).unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    let mut back = Vec::new();
    while back.len() < 50 {
        match tokio::time::timeout(Duration::from_secs(5), call.recv()).await {
            Ok(SessionEvent::Data(p)) => back.push(p),
            other => panic!("after {} echoes: {other:?}", back.len()),
        }
    }
    back.sort();
    back.dedup();
    assert_eq!(back.len(), 50);
    assert!(back.iter().all(|p| p[0] == ECHO_REPLY && p.len() == 173));
    // Knowledge, from each relay's own state and connections: only the
    // caller's first relay has the caller as a neighbour, only the
    // callee's first relay the callee; the rendezvous point has two
    // circuits from relays, spliced; no relay is connected to both ends.
    for (i, (r, _)) in relays.iter().enumerate() {
        let view = r.node.circuits().relay_view();
        let knows = |x: NodeId| view.iter().any(|v| v.prev == x || v.next == Some(x));
        assert_eq!(knows(caller_hop.id), i == 0, "relay {i}: {view:?}");
        assert_eq!(knows(callee_hop.id), i == 2, "relay {i}: {view:?}");
        let conns = connected(r);
        assert!(
            !(conns.contains(&caller_hop.id) && conns.contains(&callee_hop.id)),
            "relay {i} is connected to both ends"
        );
    }
    let mut at_point: Vec<CircuitView> = relays[4].0.node.circuits().relay_view();
    at_point.sort_by_key(|v| v.prev);
    let mut want = vec![
        CircuitView {
            prev: hop(1).id,
            next: None,
            rendezvous: Some(Some(hop(3).id)),
        },
        CircuitView {
            prev: hop(3).id,
            next: None,
            rendezvous: Some(Some(hop(1).id)),
        },
    ];
    want.sort_by_key(|v| v.prev);
    assert_eq!(at_point, want);
    // Neither end is connected to the other.
    assert!(!connected(&caller).contains(&callee_hop.id));
    assert!(!connected(&callee).contains(&caller_hop.id));
    // The caller hangs up; the callee's circuit stays for the next one.
    drop(call);
    eventually("the rendezvous point unsplices", || {
        relays[4].0.node.circuits().relay_view()
            == vec![CircuitView {
                prev: hop(3).id,
                next: None,
                rendezvous: Some(None),
            }]
    })
    .await;
    // A second caller reaches the same listener.
    let mut again = caller
        .node
        .circuits()
        .call(vec![hop(1)], &handle)
        .await
        .expect("second call");
    again.send(&echo(7)).unwrap();
    let got = tokio::time::timeout(Duration::from_secs(5), again.recv()).await;
    assert!(
        matches!(got, Ok(SessionEvent::Data(ref p)) if p[0] == ECHO_REPLY),
        "{got:?}"
    );
    drop(again);
    relays.remove(2).0.stop().await;
    let joined = tokio::time::timeout(Duration::from_secs(5), echo_task)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(joined, 2, "two callers joined, then the circuit ended");
}

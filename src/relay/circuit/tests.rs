use super::*;
use crate::relay::onion::Received;
use rand::rngs::OsRng;
use std::collections::VecDeque;

const ORIGIN: NodeId = NodeId::from_bytes([0xAA; 32]);

/// Relays 1..=n and their descriptors' path.
fn relays(n: u8) -> (Vec<RelayCircuits>, Vec<PathHop>) {
    let mut rs = Vec::new();
    let mut path = Vec::new();
    for i in 1..=n {
        let id = NodeId::from_bytes([i; 32]);
        let onion = OnionKey::generate(OsRng);
        path.push(PathHop {
            id,
            onion: onion.public(),
        });
        rs.push(RelayCircuits::new(id, onion));
    }
    (rs, path)
}

/// What crossed the links, for the tests to look at.
#[derive(Default)]
struct Wire {
    /// (from, to, circuit id) of every message and cell.
    seen: Vec<(NodeId, NodeId, u32)>,
}

/// Delivers relay actions until none are left; returns what reached
/// the originator and what relays delivered to themselves.
fn pump(
    rs: &mut [RelayCircuits],
    wire: &mut Wire,
    mut queue: VecDeque<(NodeId, RelayAction)>,
) -> (Vec<RelayAction>, Vec<(NodeId, Vec<u8>)>) {
    let (mut to_origin, mut delivered) = (Vec::new(), Vec::new());
    while let Some((from, action)) = queue.pop_front() {
        let (to, result) = match &action {
            RelayAction::Link { to, msg } => {
                let circ = match msg {
                    LinkMsg::Create { circ_id, .. }
                    | LinkMsg::Created { circ_id, .. }
                    | LinkMsg::Destroy { circ_id } => *circ_id,
                };
                wire.seen.push((from, *to, circ));
                // Every message crosses the wire as bytes.
                let msg = LinkMsg::decode(&msg.encode()).unwrap();
                match rs.iter().position(|r| r.id == *to) {
                    Some(i) => (*to, rs[i].on_link(from, msg, OsRng)),
                    None => {
                        to_origin.push(action.clone());
                        continue;
                    }
                }
            }
            RelayAction::Cell { to, cell } => {
                wire.seen.push((from, *to, cell.circ_id));
                let cell = Cell::decode(&cell.encode()).unwrap();
                match rs.iter().position(|r| r.id == *to) {
                    Some(i) => (*to, rs[i].on_cell(from, &cell, OsRng)),
                    None => {
                        to_origin.push(action.clone());
                        continue;
                    }
                }
            }
            RelayAction::Deliver { payload, .. } => {
                delivered.push((from, payload.clone()));
                continue;
            }
        };
        for a in result.unwrap() {
            queue.push_back((to, a));
        }
    }
    (to_origin, delivered)
}

/// Builds a circuit along all of `rs`; the originator's telescope.
fn build(rs: &mut [RelayCircuits], path: Vec<PathHop>, wire: &mut Wire) -> Telescope {
    let first = path[0].id;
    let (mut t, mut step) = Telescope::start(path, OsRng).unwrap();
    loop {
        let action = match step {
            TelescopeStep::Link(msg) => RelayAction::Link { to: first, msg },
            TelescopeStep::Cell(cell) => RelayAction::Cell { to: first, cell },
            TelescopeStep::Built => return t,
        };
        let (back, _) = pump(rs, wire, VecDeque::from([(ORIGIN, action)]));
        assert_eq!(back.len(), 1, "{back:?}");
        step = match &back[0] {
            RelayAction::Link {
                msg: LinkMsg::Created { answer, .. },
                ..
            } => t.on_created(answer, OsRng).unwrap(),
            RelayAction::Cell { cell, .. } => t.on_cell(cell, OsRng).unwrap().0,
            other => panic!("{other:?}"),
        };
    }
}

#[test]
fn a_three_hop_circuit_is_built_carries_both_ways_and_each_relay_knows_only_its_neighbours() {
    let (mut rs, path) = relays(3);
    let ids: Vec<NodeId> = path.iter().map(|p| p.id).collect();
    let mut wire = Wire::default();
    let mut t = build(&mut rs, path, &mut wire);
    assert_eq!(t.built(), 3);
    // Knowledge, from each relay's own state: its two neighbours only.
    assert_eq!(rs[0].neighbours(), vec![(ORIGIN, Some(ids[1]))]);
    assert_eq!(rs[1].neighbours(), vec![(ids[0], Some(ids[2]))]);
    assert_eq!(rs[2].neighbours(), vec![(ids[1], None)]);
    // One circuit id per link, and they differ.
    let mut per_link: Vec<(NodeId, NodeId, u32)> = wire.seen.clone();
    per_link.iter_mut().for_each(|(a, b, _)| {
        if a > b {
            std::mem::swap(a, b)
        }
    });
    per_link.sort();
    per_link.dedup();
    assert_eq!(per_link.len(), 3, "{per_link:?}");
    let mut circs: Vec<u32> = per_link.iter().map(|l| l.2).collect();
    circs.dedup();
    assert_eq!(circs.len(), 3, "ids differ per hop: {circs:?}");
    // Media to the last hop, and its answer back.
    let cell = t.seal(b"rtp", OsRng).unwrap();
    let first = ids[0];
    let action = RelayAction::Cell {
        to: first,
        cell: Box::new(cell),
    };
    let (_, delivered) = pump(&mut rs, &mut wire, VecDeque::from([(ORIGIN, action)]));
    assert_eq!(delivered, vec![(ids[2], b"rtp".to_vec())]);
    let reply = rs[2]
        .reply(ids[1], per_link_circ(&wire, ids[1], ids[2]), b"echo", OsRng)
        .unwrap();
    let (back, _) = pump(&mut rs, &mut wire, VecDeque::from([(ids[2], reply)]));
    let RelayAction::Cell { cell, .. } = &back[0] else {
        panic!("{back:?}")
    };
    let (_, got) = t.on_cell(cell, OsRng).unwrap();
    assert_eq!(
        got,
        Some(Received {
            hop: 2,
            payload: b"echo".to_vec()
        })
    );
}

/// The circuit id on the link between `a` and `b`.
fn per_link_circ(wire: &Wire, a: NodeId, b: NodeId) -> u32 {
    wire.seen
        .iter()
        .find(|(x, y, _)| (*x, *y) == (a, b) || (*x, *y) == (b, a))
        .map(|l| l.2)
        .unwrap()
}

#[test]
fn destroy_tears_the_circuit_down_hop_by_hop() {
    let (mut rs, path) = relays(3);
    let first = path[0].id;
    let mut wire = Wire::default();
    let t = build(&mut rs, path, &mut wire);
    let destroy = RelayAction::Link {
        to: first,
        msg: LinkMsg::Destroy {
            circ_id: t.circ_id(),
        },
    };
    let (back, _) = pump(&mut rs, &mut wire, VecDeque::from([(ORIGIN, destroy)]));
    assert!(back.is_empty(), "{back:?}");
    assert!(rs.iter().all(RelayCircuits::is_empty));
}

#[test]
fn bad_messages_are_refused_and_limits_hold() {
    let (mut rs, path) = relays(1);
    let peer = NodeId::from_bytes([0x55; 32]);
    // A cell on no circuit, a Created nobody asked for.
    let cell = Cell::decode(&[1u8; crate::relay::cell::CELL_LEN]).unwrap_or_else(|_| {
        let mut b = [0u8; crate::relay::cell::CELL_LEN];
        b[3] = 1;
        Cell::decode(&b).unwrap()
    });
    assert!(matches!(
        rs[0].on_cell(peer, &cell, OsRng),
        Err(CircuitError::Unknown(_))
    ));
    assert!(rs[0]
        .on_link(
            peer,
            LinkMsg::Created {
                circ_id: 9,
                answer: [0; 64]
            },
            OsRng
        )
        .is_err());
    // One peer may hold MAX_CIRCUITS_PER_PEER circuits, not one more.
    for i in 1..=MAX_CIRCUITS_PER_PEER as u32 {
        let (_, handshake) = ClientHandshake::start(path[0].id, path[0].onion, OsRng);
        rs[0]
            .on_link(
                peer,
                LinkMsg::Create {
                    circ_id: i,
                    handshake,
                },
                OsRng,
            )
            .unwrap();
    }
    let (_, handshake) = ClientHandshake::start(path[0].id, path[0].onion, OsRng);
    assert_eq!(
        rs[0].on_link(
            peer,
            LinkMsg::Create {
                circ_id: 999,
                handshake
            },
            OsRng
        ),
        Err(CircuitError::Full("circuits of one peer"))
    );
    // A Create reusing a live id is refused.
    let (_, handshake) = ClientHandshake::start(path[0].id, path[0].onion, OsRng);
    assert!(rs[0]
        .on_link(
            NodeId::from_bytes([0x66; 32]),
            LinkMsg::Create {
                circ_id: 1,
                handshake
            },
            OsRng
        )
        .is_ok());
    // Strict decoders.
    assert!(LinkMsg::decode(&[1, 0, 0, 0, 0]).is_err(), "circuit 0");
    assert!(
        LinkMsg::decode(&[3, 0, 0, 0, 1, 0]).is_err(),
        "trailing byte"
    );
    assert!(Control::decode(&[0xE1; 10]).is_err());
    assert!(Control::decode(&[]).is_err());
    for msg in [
        LinkMsg::Create {
            circ_id: 5,
            handshake: [7; 32],
        },
        LinkMsg::Created {
            circ_id: 5,
            answer: [8; 64],
        },
        LinkMsg::Destroy { circ_id: 5 },
    ] {
        assert_eq!(LinkMsg::decode(&msg.encode()), Ok(msg));
    }
}

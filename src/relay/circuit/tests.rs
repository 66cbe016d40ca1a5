use super::*;
use crate::relay::handshake::ClientHandshake;
use crate::relay::keys::OnionKeys;
use rand::rngs::OsRng;
use std::collections::VecDeque;
use std::net::SocketAddr;

/// The relays' clock.
const NOW: u64 = 1_800_000_000;

const ORIGIN: NodeId = NodeId::from_bytes([0xAA; 32]);

/// Relays 1..=n and their descriptors' path.
fn relays(n: u8) -> (Vec<RelayCircuits>, Vec<PathHop>) {
    let mut rs = Vec::new();
    let mut path = Vec::new();
    for i in 1..=n {
        let id = NodeId::from_bytes([i; 32]);
        let onion = OnionKeys::new(NOW, OsRng);
        path.push(PathHop {
            id,
            addr: SocketAddr::from(([127, 0, 0, i], 4433)),
            onion: onion.current().public(),
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
            RelayAction::Link { to, msg } | RelayAction::Connect { to, msg, .. } => {
                wire.seen.push((from, *to, msg.circ_id()));
                // Every message crosses the wire as bytes.
                let msg = LinkMsg::decode(&msg.encode()).unwrap();
                match rs.iter().position(|r| r.id == *to) {
                    Some(i) => (*to, rs[i].on_link(from, msg, NOW, OsRng)),
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
    build_from(ORIGIN, rs, path, wire)
}

/// Builds a circuit along `path` for originator `origin`.
fn build_from(
    origin: NodeId,
    rs: &mut [RelayCircuits],
    path: Vec<PathHop>,
    wire: &mut Wire,
) -> Telescope {
    let first = path[0].id;
    let (mut t, mut step) = Telescope::start(path, OsRng).unwrap();
    loop {
        let action = match step {
            TelescopeStep::Link(msg) => RelayAction::Link { to: first, msg },
            TelescopeStep::Cell(cell) => RelayAction::Cell { to: first, cell },
            TelescopeStep::Built => return t,
        };
        let (back, _) = pump(rs, wire, VecDeque::from([(origin, action)]));
        assert_eq!(back.len(), 1, "{back:?}");
        step = match &back[0] {
            RelayAction::Link {
                msg: LinkMsg::Created { answer, .. },
                ..
            } => t.on_created(answer, OsRng).unwrap(),
            RelayAction::Cell { cell, .. } => match t.on_cell(cell, OsRng).unwrap() {
                FromCircuit::Step(step) => step,
                other => panic!("{other:?}"),
            },
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
    assert_eq!(
        t.on_cell(cell, OsRng).unwrap(),
        FromCircuit::Payload {
            hop: 2,
            payload: b"echo".to_vec()
        }
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
            NOW,
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
                    onion: path[0].onion,
                    handshake,
                },
                NOW,
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
                onion: path[0].onion,
                handshake
            },
            NOW,
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
                onion: path[0].onion,
                handshake
            },
            NOW,
            OsRng
        )
        .is_ok());
    // A Create for an onion key the relay does not hold (or no longer:
    // past its lifetime) is refused.
    let (_, handshake) = ClientHandshake::start(path[0].id, path[0].onion, OsRng);
    for (onion, now) in [([0x77; 32], NOW), (path[0].onion, NOW + 365 * 86_400)] {
        assert_eq!(
            rs[0].on_link(
                NodeId::from_bytes([0x67; 32]),
                LinkMsg::Create {
                    circ_id: 2,
                    onion,
                    handshake
                },
                now,
                OsRng
            ),
            Err(CircuitError::Unexpected(
                "an onion key this relay does not hold"
            ))
        );
    }
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
            onion: [6; 32],
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

/// The cells that came back to `origin`, opened by its telescope.
fn opened(t: &mut Telescope, origin: NodeId, back: &[RelayAction]) -> Vec<FromCircuit> {
    back.iter()
        .filter_map(|a| match a {
            RelayAction::Cell { to, cell } if *to == origin => {
                Some(t.on_cell(cell, OsRng).unwrap())
            }
            _ => None,
        })
        .collect()
}

#[test]
fn a_rendezvous_splices_two_circuits_and_knows_neither_endpoint() {
    const CALLER: NodeId = NodeId::from_bytes([0xC1; 32]);
    const CALLEE: NodeId = NodeId::from_bytes([0xCE; 32]);
    let (mut rs, path) = relays(5);
    let ids: Vec<NodeId> = path.iter().map(|p| p.id).collect();
    let mut wire = Wire::default();
    // The callee's circuit ends at relay 3 (the rendezvous point).
    let callee_path = vec![path[4], path[3], path[2]];
    let mut callee = build_from(CALLEE, &mut rs, callee_path, &mut wire);
    let cookie = [0x42; COOKIE_LEN];
    let establish = callee
        .seal_control(&Control::Establish { cookie }, OsRng)
        .unwrap();
    let first = ids[4];
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        VecDeque::from([(
            CALLEE,
            RelayAction::Cell {
                to: first,
                cell: Box::new(establish),
            },
        )]),
    );
    assert_eq!(
        opened(&mut callee, CALLEE, &back),
        vec![FromCircuit::Established]
    );
    // An unknown cookie is refused; the caller joins with the right one.
    let mut caller = build_from(CALLER, &mut rs, vec![path[0], path[1], path[2]], &mut wire);
    let join = |t: &mut Telescope, cookie| {
        let cell = t.seal_control(&Control::Join { cookie }, OsRng).unwrap();
        RelayAction::Cell {
            to: ids[0],
            cell: Box::new(cell),
        }
    };
    let wrong = join(&mut caller, [0x43; COOKIE_LEN]);
    let mut refused = false;
    let mut queue = VecDeque::from([(CALLER, wrong)]);
    while let Some((from, RelayAction::Cell { to, cell })) = queue.pop_front() {
        let i = rs.iter().position(|r| r.id == to).unwrap();
        match rs[i].on_cell(from, &cell, OsRng) {
            Ok(actions) => queue.extend(actions.into_iter().map(|a| (to, a))),
            Err(e) => {
                assert_eq!(e, CircuitError::Unexpected("Join of an unknown cookie"));
                refused = true;
            }
        }
    }
    assert!(refused);
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        VecDeque::from([(CALLER, join(&mut caller, rendezvous_cookie(&cookie)))]),
    );
    assert_eq!(
        opened(&mut caller, CALLER, &back),
        vec![FromCircuit::Joined]
    );
    assert_eq!(
        opened(&mut callee, CALLEE, &back),
        vec![FromCircuit::Joined]
    );
    // Media both ways through the splice.
    let cell = caller.seal(b"hello", OsRng).unwrap();
    let (back, delivered) = pump(
        &mut rs,
        &mut wire,
        VecDeque::from([(
            CALLER,
            RelayAction::Cell {
                to: ids[0],
                cell: Box::new(cell),
            },
        )]),
    );
    assert!(delivered.is_empty(), "the rendezvous point keeps nothing");
    assert_eq!(
        opened(&mut callee, CALLEE, &back),
        vec![FromCircuit::Payload {
            hop: 2,
            payload: b"hello".to_vec()
        }]
    );
    let cell = callee.seal(b"hi", OsRng).unwrap();
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        VecDeque::from([(
            CALLEE,
            RelayAction::Cell {
                to: first,
                cell: Box::new(cell),
            },
        )]),
    );
    assert_eq!(
        opened(&mut caller, CALLER, &back),
        vec![FromCircuit::Payload {
            hop: 2,
            payload: b"hi".to_vec()
        }]
    );
    // Knowledge: only each endpoint's first hop has it as a neighbour;
    // the rendezvous point sees two circuits from relays, spliced.
    for (i, r) in rs.iter().enumerate() {
        for v in r.view() {
            let knows = |x: NodeId| v.prev == x || v.next == Some(x);
            assert_eq!(knows(CALLER), i == 0, "relay {i}: {v:?}");
            assert_eq!(knows(CALLEE), i == 4, "relay {i}: {v:?}");
        }
    }
    let mut rp = rs[2].view();
    rp.sort_by_key(|v| v.prev);
    let mut want = vec![
        CircuitView {
            prev: ids[1],
            next: None,
            rendezvous: Some(Some(ids[3])),
        },
        CircuitView {
            prev: ids[3],
            next: None,
            rendezvous: Some(Some(ids[1])),
        },
    ];
    want.sort_by_key(|v| v.prev);
    assert_eq!(rp, want);
    // A second caller cannot take over the call.
    let mut other = build_from(
        NodeId::from_bytes([0xC2; 32]),
        &mut rs,
        vec![path[1], path[2]],
        &mut wire,
    );
    let cell = other
        .seal_control(
            &Control::Join {
                cookie: rendezvous_cookie(&cookie),
            },
            OsRng,
        )
        .unwrap();
    let r1 = rs.iter().position(|r| r.id == ids[1]).unwrap();
    let forwarded = rs[r1]
        .on_cell(NodeId::from_bytes([0xC2; 32]), &cell, OsRng)
        .unwrap();
    let RelayAction::Cell { cell, .. } = &forwarded[0] else {
        panic!("{forwarded:?}")
    };
    assert_eq!(
        rs[2].on_cell(ids[1], cell, OsRng),
        Err(CircuitError::Unexpected("Join of a rendezvous in a call"))
    );
    // The caller hangs up: the callee's circuit stays, unspliced.
    let destroy = RelayAction::Link {
        to: ids[0],
        msg: LinkMsg::Destroy {
            circ_id: caller.circ_id(),
        },
    };
    pump(&mut rs, &mut wire, VecDeque::from([(CALLER, destroy)]));
    assert!(rs[2]
        .view()
        .iter()
        .any(|v| v.prev == ids[3] && v.rendezvous == Some(None)));
}

#[test]
fn the_callee_takes_its_rendezvous_back_on_a_new_circuit_and_the_caller_joins_again() {
    const CALLER: NodeId = NodeId::from_bytes([0xC1; 32]);
    const CALLEE: NodeId = NodeId::from_bytes([0xCE; 32]);
    let (mut rs, path) = relays(5);
    let ids: Vec<NodeId> = path.iter().map(|p| p.id).collect();
    let mut wire = Wire::default();
    let secret = [0x42; COOKIE_LEN];
    let cookie = rendezvous_cookie(&secret);
    assert_ne!(cookie, secret, "the published cookie is not the secret");
    let send = |t: &mut Telescope, from: NodeId, to: NodeId, control: Control| {
        let cell = t.seal_control(&control, OsRng).unwrap();
        VecDeque::from([(
            from,
            RelayAction::Cell {
                to,
                cell: Box::new(cell),
            },
        )])
    };
    let mut old = build_from(CALLEE, &mut rs, vec![path[4], path[3], path[2]], &mut wire);
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        send(
            &mut old,
            CALLEE,
            ids[4],
            Control::Establish { cookie: secret },
        ),
    );
    assert_eq!(
        opened(&mut old, CALLEE, &back),
        vec![FromCircuit::Established]
    );
    let mut caller = build_from(CALLER, &mut rs, vec![path[0], path[1], path[2]], &mut wire);
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        send(&mut caller, CALLER, ids[0], Control::Join { cookie }),
    );
    assert_eq!(
        opened(&mut caller, CALLER, &back),
        vec![FromCircuit::Joined]
    );
    // The callee's old circuit breaks where the point cannot see; the
    // callee comes back on another circuit with the same secret.
    let mut new = build_from(CALLEE, &mut rs, vec![path[4], path[2]], &mut wire);
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        send(
            &mut new,
            CALLEE,
            ids[4],
            Control::Establish { cookie: secret },
        ),
    );
    assert_eq!(
        opened(&mut new, CALLEE, &back),
        vec![FromCircuit::Established]
    );
    // The old circuit is gone from the point and from the relay before
    // it; the caller's circuit is unspliced, and joins again.
    assert!(rs[3].view().is_empty(), "{:?}", rs[3].view());
    assert!(rs[2].view().iter().all(|v| v.prev != ids[3]));
    assert!(rs[2]
        .view()
        .iter()
        .any(|v| v.prev == ids[4] && v.rendezvous == Some(None)));
    let (back, _) = pump(
        &mut rs,
        &mut wire,
        send(&mut caller, CALLER, ids[0], Control::Join { cookie }),
    );
    assert_eq!(
        opened(&mut caller, CALLER, &back),
        vec![FromCircuit::Joined]
    );
    assert_eq!(opened(&mut new, CALLEE, &back), vec![FromCircuit::Joined]);
    // Joining with the secret, or establishing the cookie, is something
    // else entirely: it reaches nobody.
    let mut stranger = build_from(CALLER, &mut rs, vec![path[1], path[2]], &mut wire);
    let cell = stranger
        .seal_control(&Control::Join { cookie: secret }, OsRng)
        .unwrap();
    let fwd = rs[1].on_cell(CALLER, &cell, OsRng).unwrap();
    let RelayAction::Cell { cell, .. } = &fwd[0] else {
        panic!("{fwd:?}")
    };
    assert_eq!(
        rs[2].on_cell(ids[1], cell, OsRng),
        Err(CircuitError::Unexpected("Join of an unknown cookie"))
    );
}

#[test]
fn control_messages_round_trip_and_extend_names_a_dialable_address() {
    let handshake = [7; crate::relay::handshake::CLIENT_MSG_LEN];
    for msg in [
        Control::Extend {
            next: NodeId::from_bytes([1; 32]),
            addr: "10.0.0.1:4433".parse().unwrap(),
            onion: [2; 32],
            handshake,
        },
        Control::Extend {
            next: NodeId::from_bytes([1; 32]),
            addr: "[2001:db8::1]:4433".parse().unwrap(),
            onion: [2; 32],
            handshake,
        },
        Control::Extended { answer: [9; 64] },
        Control::Establish {
            cookie: [3; COOKIE_LEN],
        },
        Control::Established,
        Control::Join {
            cookie: [4; COOKIE_LEN],
        },
        Control::Joined,
        Control::Payload(b"rtp".to_vec()),
    ] {
        let bytes = msg.encode();
        assert_eq!(Control::decode(&bytes), Ok(msg.clone()));
        if !matches!(msg, Control::Payload(_)) {
            // Exact lengths: one byte more or less is refused.
            let mut longer = bytes.clone();
            longer.push(0);
            assert!(Control::decode(&longer).is_err(), "{msg:?}");
            assert!(
                Control::decode(&bytes[..bytes.len() - 1]).is_err(),
                "{msg:?}"
            );
        }
    }
    // A bad address family.
    let mut bytes = Control::Extend {
        next: NodeId::from_bytes([1; 32]),
        addr: "10.0.0.1:1".parse().unwrap(),
        onion: [2; 32],
        handshake,
    }
    .encode();
    bytes[33] = 5;
    assert!(Control::decode(&bytes).is_err());
    // An IPv4 address written as IPv4-mapped IPv6: one encoding only.
    let mut mapped = vec![0xE1];
    mapped.extend_from_slice(&[1; 32]);
    mapped.push(6);
    mapped.extend_from_slice(
        &"::ffff:10.0.0.1"
            .parse::<std::net::Ipv6Addr>()
            .unwrap()
            .octets(),
    );
    mapped.extend_from_slice(&4433u16.to_be_bytes());
    mapped.extend_from_slice(&[2; 32]);
    mapped.extend_from_slice(&handshake);
    assert!(Control::decode(&mapped).is_err());
    // A relay refuses to extend to an address nobody can be at.
    let (mut rs, path) = relays(1);
    let mut wire = Wire::default();
    let mut t = build(&mut rs, path, &mut wire);
    for addr in ["0.0.0.0:4433", "10.0.0.1:0", "224.0.0.1:4433", "[::]:4433"] {
        let (_, handshake) = ClientHandshake::start(NodeId::from_bytes([9; 32]), [9; 32], OsRng);
        let extend = Control::Extend {
            next: NodeId::from_bytes([9; 32]),
            addr: addr.parse().unwrap(),
            onion: [9; 32],
            handshake,
        };
        let cell = t.seal_control(&extend, OsRng).unwrap();
        assert_eq!(
            rs[0].on_cell(ORIGIN, &cell, OsRng),
            Err(CircuitError::Unexpected("Extend to an undialable address")),
            "{addr}"
        );
    }
}

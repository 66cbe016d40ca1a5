use super::*;
use crate::identity::NodeId;
use crate::relay::cell::CELL_LEN;
use crate::relay::handshake::{respond, ClientHandshake, OnionKey};
use rand::rngs::OsRng;

/// A circuit of `n` relays, keys agreed by real handshakes.
fn circuit(n: usize) -> (Originator, Vec<RelayHop>) {
    let mut keys = Vec::new();
    let mut relays = Vec::new();
    for i in 0..n {
        let id = NodeId::from_bytes([i as u8 + 1; 32]);
        let onion = OnionKey::generate(OsRng);
        let (client, x) = ClientHandshake::start(id, onion.public(), OsRng);
        let (relay_keys, answer) = respond(&id, &onion, &x, OsRng).unwrap();
        keys.push(client.finish(&answer).unwrap());
        relays.push(RelayHop::new(&relay_keys));
    }
    (Originator::new(&keys).unwrap(), relays)
}

/// Passes a forward cell through `relays` until one delivers it; the
/// cells seen on each link.
fn forward_through(relays: &mut [RelayHop], mut cell: Cell) -> (Vec<u8>, Vec<Cell>) {
    let mut links = vec![cell.clone()];
    for (i, relay) in relays.iter_mut().enumerate() {
        match relay.peel(&cell, 100 + i as u32, OsRng).unwrap() {
            Peeled::Forward(next) => {
                links.push((*next).clone());
                cell = *next;
            }
            Peeled::Deliver(payload) => return (payload, links),
        }
    }
    panic!("nobody delivered");
}

#[test]
fn layers_round_trip_both_ways_through_three_hops() {
    let (mut origin, mut relays) = circuit(3);
    let rtp: Vec<u8> = (0..172u32).map(|i| i as u8).collect();
    let cell = origin.seal(1, 2, &rtp, OsRng).unwrap();
    let (delivered, links) = forward_through(&mut relays, cell);
    assert_eq!(delivered, rtp);
    assert_eq!(links.len(), 3);
    // Every link carries a full cell; each hop's circuit id is its own.
    for (i, c) in links.iter().enumerate() {
        assert_eq!(c.encode().len(), CELL_LEN);
        if i > 0 {
            assert_eq!(c.circ_id, 100 + i as u32 - 1);
        }
    }
    // Each link's body differs entirely from the next (a layer came off,
    // fresh padding went on): nothing to match a cell across a relay by.
    for pair in links.windows(2) {
        let same = pair[0]
            .body
            .iter()
            .zip(pair[1].body.iter())
            .filter(|(a, b)| a == b)
            .count();
        assert!(same < 16, "{same} bytes alike across a hop");
    }
    // Back: the last hop answers, the others wrap, the originator opens.
    let mut back = relays[2].reply(102, b"echo", OsRng).unwrap();
    back = relays[1].wrap(&back, 101, OsRng).unwrap();
    back = relays[0].wrap(&back, 1, OsRng).unwrap();
    assert_eq!(back.encode().len(), CELL_LEN);
    assert_eq!(
        origin.open(&back).unwrap(),
        Received {
            hop: 2,
            payload: b"echo".to_vec()
        }
    );
    // A cell for the first hop stops there.
    let to_first = origin.seal(1, 0, b"hi", OsRng).unwrap();
    assert_eq!(
        relays[0].peel(&to_first, 100, OsRng).unwrap(),
        Peeled::Deliver(b"hi".to_vec())
    );
}

#[test]
fn a_tampered_cell_is_refused_by_the_hop_that_holds_its_layer() {
    let (mut origin, mut relays) = circuit(3);
    let cell = origin.seal(1, 2, b"media", OsRng).unwrap();
    let Peeled::Forward(mut second) = relays[0].peel(&cell, 100, OsRng).unwrap() else {
        panic!("not forwarded");
    };
    // The first relay (or anyone on the link after it) alters the inner
    // layer: the second hop refuses it; the third never sees it.
    second.body[5] ^= 0x01;
    assert_eq!(
        relays[1].peel(&second, 101, OsRng),
        Err(OnionError::Tampered)
    );
    // Flipped on the first link: the first hop refuses it.
    let mut cell = origin.seal(1, 2, b"media", OsRng).unwrap();
    cell.body[0] ^= 0x80;
    assert_eq!(relays[0].peel(&cell, 100, OsRng), Err(OnionError::Tampered));
    // A wrong sequence number is a wrong nonce: refused too.
    let mut cell = origin.seal(1, 2, b"media", OsRng).unwrap();
    cell.seq += 1;
    assert_eq!(relays[0].peel(&cell, 100, OsRng), Err(OnionError::Tampered));
    // Backward: a relay that alters the inner cell is caught by the
    // originator at that layer.
    let mut back = relays[2].reply(102, b"x", OsRng).unwrap();
    back.body[3] ^= 1;
    let back = relays[1].wrap(&back, 101, OsRng).unwrap();
    let back = relays[0].wrap(&back, 1, OsRng).unwrap();
    assert_eq!(origin.open(&back), Err(OnionError::Tampered));
    // The refused forgeries burned no sequence numbers: honest cells
    // still pass.
    let cell = origin.seal(1, 2, b"still here", OsRng).unwrap();
    assert_eq!(forward_through(&mut relays, cell).0, b"still here");
}

#[test]
fn replays_are_dropped_and_reordering_within_the_window_is_not() {
    let (mut origin, mut relays) = circuit(1);
    let cells: Vec<Cell> = (0..5)
        .map(|i| origin.seal(1, 0, &[i], OsRng).unwrap())
        .collect();
    // Out of order: fine, once each.
    for i in [1, 0, 3, 2, 4] {
        assert_eq!(
            relays[0].peel(&cells[i], 0, OsRng),
            Ok(Peeled::Deliver(vec![i as u8]))
        );
    }
    for c in &cells {
        assert_eq!(
            relays[0].peel(c, 0, OsRng),
            Err(OnionError::Replayed(c.seq))
        );
    }
    // Beyond the window: too old.
    let old = origin.seal(1, 0, b"old", OsRng).unwrap();
    for _ in 0..ReplayWindow::WIDTH {
        let c = origin.seal(1, 0, b"new", OsRng).unwrap();
        relays[0].peel(&c, 0, OsRng).unwrap();
    }
    assert_eq!(
        relays[0].peel(&old, 0, OsRng),
        Err(OnionError::Replayed(old.seq))
    );
    // The originator's windows hold too.
    let back = relays[0].reply(1, b"r", OsRng).unwrap();
    assert!(origin.open(&back).is_ok());
    assert_eq!(origin.open(&back), Err(OnionError::Replayed(back.seq)));
}

#[test]
fn sizes_are_bounded() {
    let (mut origin, _) = circuit(MAX_LAYERS);
    assert!(origin
        .seal(1, MAX_LAYERS - 1, &[0; PAYLOAD_MAX], OsRng)
        .is_ok());
    assert!(matches!(
        origin.seal(1, 0, &[0; PAYLOAD_MAX + 1], OsRng),
        Err(OnionError::TooLarge(_))
    ));
    assert!(matches!(
        origin.seal(1, MAX_LAYERS, b"", OsRng),
        Err(OnionError::TooLarge(_))
    ));
    assert!(Originator::new(&[]).is_err());
}

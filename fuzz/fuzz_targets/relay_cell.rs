//! What a relay reads from its links: link messages (Create, Created,
//! Destroy), control messages and end-to-end frames decode strictly and re-encode to the
//! same bytes; a cell from a link of a circuit: never a panic; a cell
//! decoded re-encodes to the same bytes; a relay opening it (with keys of a real
//! handshake) either refuses it or, for a forward cell, passes on a
//! full-size cell. Forged cells never verify, so what is exercised is
//! the refusal path and the bounds.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::identity::NodeId;
use p2psip::relay::cell::{Cell, CELL_LEN};
use p2psip::relay::circuit::{Control, LinkMsg};
use p2psip::relay::e2e::Frame;
use p2psip::relay::handshake::{respond, OnionKey};
use p2psip::relay::onion::{Peeled, RelayHop};
use rand_chacha::rand_core::SeedableRng;
use rand_chacha::ChaCha20Rng;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = LinkMsg::decode(data) {
        assert_eq!(msg.encode(), data);
    }
    if let Ok(msg) = Control::decode(data) {
        assert_eq!(msg.encode(), data);
    }
    if let Ok(frame) = Frame::decode(data) {
        assert_eq!(frame.encode(), data);
    }
    let Ok(cell) = Cell::decode(data) else {
        return;
    };
    assert_eq!(&cell.encode()[..], data);
    let mut rng = ChaCha20Rng::seed_from_u64(7);
    let id = NodeId::from_bytes([1; 32]);
    let onion = OnionKey::generate(&mut rng);
    // The client's X is the first 32 bytes of the body: mostly not a
    // valid handshake, which must be refused cleanly too.
    let x: [u8; 32] = cell.body[..32].try_into().unwrap_or([9; 32]);
    let Ok((keys, _)) = respond(&id, &onion, &x, &mut rng) else {
        return;
    };
    let mut hop = RelayHop::new(&keys);
    if let Ok(Peeled::Forward(next)) = hop.peel(&cell, 5, &mut rng) {
        assert_eq!(next.encode().len(), CELL_LEN);
    }
    let _ = hop.wrap(&cell, 5, &mut rng);
});

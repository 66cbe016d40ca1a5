//! The body of the `stun_message` fuzz target, here so that
//! `tests/fuzz_corpus.rs` replays the committed corpus through exactly
//! the same checks. Only the fuzz target and the tests call it; it
//! panics when an invariant breaks (that is its purpose).

use super::credentials::{LongTermKey, NonceSecret, Users};
use super::peers::{Cidr, PeerFilter};
use super::server::{Action, Server, ServerConfig, Via};
use super::stun::{attr, method, Class, Message, MessageBuilder};
use std::net::SocketAddr;

const REALM: &str = "p2psip";
const USER: &str = "fuzz";
const NOW: u64 = 1_000_000;

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap_or(SocketAddr::from(([127, 0, 0, 1], 1)))
}

/// Drains the server's actions, checking what it sends: every datagram
/// to a client decodes (STUN or ChannelData) and fits UDP.
fn drain(s: &mut Server) -> Vec<Action> {
    let mut out = Vec::new();
    while let Some(a) = s.poll_action() {
        if let Action::Transmit {
            via: Via::Listener,
            data,
            ..
        } = &a
        {
            assert!(data.len() <= 65_535, "a datagram larger than UDP allows");
            let channel = data.first().is_some_and(|b| b >> 6 == 1);
            assert!(
                channel || Message::decode(data).is_ok(),
                "the server sent a STUN message it cannot decode"
            );
        }
        out.push(a);
        assert!(out.len() <= 64, "one input, a bounded number of actions");
    }
    out
}

/// The key's user signing `attrs` as a request of `m` with `nonce`.
fn signed(
    m: u16,
    tid: [u8; 12],
    attrs: &[(u16, &[u8])],
    nonce: &str,
    key: &LongTermKey,
) -> Vec<u8> {
    let mut b = MessageBuilder::new(m, Class::Request, tid);
    for (t, v) in attrs {
        if ![attr::USERNAME, attr::REALM, attr::NONCE].contains(t) {
            b.add(*t, v);
        }
    }
    b.add(attr::USERNAME, USER.as_bytes())
        .add(attr::REALM, REALM.as_bytes())
        .add(attr::NONCE, nonce.as_bytes())
        .add_integrity(key.as_bytes());
    b.into_bytes().unwrap_or_default()
}

/// Decodes `data` as STUN (integrity checked, attributes read back, the
/// message rebuilt to the same attributes), then feeds it to a server
/// holding an allocation with a permission and a channel: as it is,
/// signed with a valid user's key, from a stranger, and as a peer's
/// datagram on the relay; then lets time pass.
pub fn fuzz_datagram(data: &[u8]) {
    if let Ok(m) = Message::decode(data) {
        let _ = m.verify_integrity(b"key");
        let _ = m.text(attr::USERNAME, "USERNAME", 763);
        let _ = m.xor_address(attr::XOR_PEER_ADDRESS);
        let _ = m.u32_attr(attr::LIFETIME, "LIFETIME");
        let _ = m.error_code();
        let _ = m.unknown_required(&[]);
        let mut b = MessageBuilder::new(m.method, m.class, m.transaction_id);
        for (t, v) in m.attributes() {
            b.add(*t, v);
        }
        if let Ok(again) = b.into_bytes() {
            let m2 = Message::decode(&again).expect("a rebuilt message decodes");
            assert_eq!(m2.attributes(), m.attributes());
            assert_eq!((m2.method, m2.class), (m.method, m.class));
        }
    }

    let listen = addr("127.0.0.1:3478");
    let client = addr("127.0.0.1:40000");
    let peer = addr("127.0.0.1:9000");
    let relayed = addr("127.0.0.1:50000");
    let key = LongTermKey::derive(USER, REALM, b"password");
    let mut users = Users::new();
    let _ = users.insert(USER, key.clone());
    let secret = NonceSecret::new([3; 32]);
    let nonce = secret.nonce(NOW, client);
    let mut config = ServerConfig::new(REALM, listen, secret);
    // Loopback peers allowed, as the tests on loopback run the node.
    let loopback: Vec<Cidr> = "127.0.0.0/8".parse().into_iter().collect();
    config.peers = PeerFilter::new(loopback, vec![]).unwrap_or_default();
    let mut s = Server::new(config);
    s.set_users(users);
    // An allocation, a permission and channel 0x4000 to the peer.
    let transport: &[u8] = &[17, 0, 0, 0];
    s.handle_client(
        NOW,
        client,
        &signed(
            method::ALLOCATE,
            [1; 12],
            &[(attr::REQUESTED_TRANSPORT, transport)],
            &nonce,
            &key,
        ),
    );
    let mut relay = None;
    for a in drain(&mut s) {
        if let Action::OpenRelay { id, .. } = a {
            relay = Some(id);
            s.relay_opened(NOW, id, relayed);
        }
    }
    let Some(relay) = relay else {
        panic!("the setup allocation failed");
    };
    drain(&mut s);
    let peer_attr = super::stun::encode_xor_address(peer, &[2; 12]);
    let channel: &[u8] = &[0x40, 0, 0, 0];
    s.handle_client(
        NOW,
        client,
        &signed(
            method::CHANNEL_BIND,
            [2; 12],
            &[
                (attr::CHANNEL_NUMBER, channel),
                (attr::XOR_PEER_ADDRESS, &peer_attr),
            ],
            &nonce,
            &key,
        ),
    );
    drain(&mut s);

    // The input as it came, from the client and from a stranger.
    s.handle_client(NOW, client, data);
    drain(&mut s);
    s.handle_client(NOW, addr("192.0.2.9:7"), data);
    drain(&mut s);
    // Its attributes, signed: the authenticated paths.
    if let Ok(m) = Message::decode(data) {
        let attrs: Vec<(u16, &[u8])> = m.attributes().to_vec();
        let req = signed(m.method, m.transaction_id, &attrs, &nonce, &key);
        s.handle_client(NOW + 1, client, &req);
        for a in drain(&mut s) {
            if let Action::OpenRelay { id, .. } = a {
                s.relay_opened(NOW + 1, id, addr("127.0.0.1:50002"));
                drain(&mut s);
            }
        }
    }
    // As a peer's datagram on the relay.
    s.handle_peer(NOW + 2, relay, peer, data);
    drain(&mut s);
    // Time passes: everything ends.
    let later = u64::from(data.first().copied().unwrap_or(0)) * 30;
    s.handle_timeout(NOW + later);
    drain(&mut s);
    s.handle_timeout(NOW + 4 * 3600);
    drain(&mut s);
    assert_eq!(s.allocation_count(), 0, "every allocation expires");
    assert_eq!(s.reservation_count(), 0, "every reserved port expires");
}

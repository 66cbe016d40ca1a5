//! The SIP core on whatever parses: a request or a response, from a
//! phone or from a node of the overlay, reaching a proxy that serves
//! accounts (one with a phone bound), never panics, and whatever it
//! sends is a message that parses again.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::identity::SecretKey;
use p2psip::sip::digest::DigestSecret;
use p2psip::sip::proxy::{Action, Located, Proxy};
use p2psip::sip::registrar::{Account, DEFAULT_ALGORITHMS};
use p2psip::sip::transaction::Transport;
use p2psip::sip::Message;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

fuzz_target!(|data: &[u8]| {
    let Some((&selector, bytes)) = data.split_first() else {
        return;
    };
    let Ok(message) = Message::parse(bytes) else {
        return;
    };
    let me = SecretKey::from_seed(&[1; 32]).public().node_id();
    let other = SecretKey::from_seed(&[2; 32]).public().node_id();
    let local: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let mut proxy = Proxy::new(me, "lab.example", local, [7; 32]);
    proxy.registrar_mut().set_accounts(vec![Account {
        aor: "sip:alice@lab.example".into(),
        secret: DigestSecret::from_password("alice", "lab.example", b"pw"),
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
    }]);
    let peer: SocketAddr = "127.0.0.1:6001".parse().unwrap();
    let transport = match selector % 3 {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        _ => Transport::Overlay(other),
    };
    let now = Instant::now();
    let unix_ms = 1_750_000_000_000;
    let mut actions = match message {
        Message::Request(r) => proxy.handle_request(now, unix_ms, peer, transport, r),
        Message::Response(r) => proxy.handle_response(now, r),
    };
    // Answer every lookup, then let every timer run out.
    let lookups: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Locate { lookup, .. } => Some(*lookup),
            _ => None,
        })
        .collect();
    for lookup in lookups {
        let found = match selector / 3 % 3 {
            0 => Located::NotFound,
            1 => Located::NoLiveEntry,
            _ => Located::Nodes(vec![other, me]),
        };
        actions.extend(proxy.located(now, lookup, found));
    }
    actions.extend(proxy.handle_timeout(now + Duration::from_secs(200), unix_ms + 200_000));
    for action in actions {
        if let Action::Send(t) = action {
            let bytes = t.message.to_bytes();
            assert!(
                Message::parse(&bytes).is_ok(),
                "the proxy sent what does not parse"
            );
        }
    }
});

//! The server as scenarios: a client speaking to it through bytes, the
//! relayed sockets simulated, time stepped by hand.

use super::*;
use crate::turn::credentials::{LongTermKey, NonceSecret, Users};
use crate::turn::peers::{parse_cidr_list, PeerFilter, Refusal};
use crate::turn::stun::{self, attr, method, Class, Message, MessageBuilder};

const REALM: &str = "p2psip";
const LISTEN: &str = "127.0.0.1:3478";
const PEER: &str = "127.0.0.1:9000";

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn key(user: &str, password: &str) -> LongTermKey {
    LongTermKey::derive(user, REALM, password.as_bytes())
}

/// A server on `listen` whose operator allows `allowed` (ranges).
fn server_on(listen: &str, allowed: &str, max_total: usize, max_per_user: usize) -> Server {
    let mut config = ServerConfig::new(REALM, addr(listen), NonceSecret::new([5; 32]));
    config.max_allocations = max_total;
    config.max_allocations_per_user = max_per_user;
    config.peers = PeerFilter::new(parse_cidr_list(allowed).unwrap(), vec![]).unwrap();
    let mut s = Server::new(config);
    let mut users = Users::new();
    users.insert("alice", key("alice", "secret")).unwrap();
    users.insert("bob", key("bob", "hunter2")).unwrap();
    s.set_users(users);
    s
}

/// A server on loopback whose operator allows loopback peers (as the
/// tests on loopback run the node: `--turn-allowed-peers 127.0.0.0/8`).
fn server_with(max_total: usize, max_per_user: usize) -> Server {
    server_on(LISTEN, "127.0.0.0/8", max_total, max_per_user)
}

fn server() -> Server {
    server_with(DEFAULT_MAX_ALLOCATIONS, DEFAULT_MAX_ALLOCATIONS_PER_USER)
}

fn drain(s: &mut Server) -> Vec<Action> {
    std::iter::from_fn(|| s.poll_action()).collect()
}

/// The one datagram the server sent to the client `to` (and nothing else).
fn reply(s: &mut Server, to: SocketAddr) -> Vec<u8> {
    let actions = drain(s);
    assert_eq!(actions.len(), 1, "{actions:?}");
    match &actions[0] {
        Action::Transmit {
            via: Via::Listener,
            to: t,
            data,
        } if *t == to => data.clone(),
        other => panic!("expected a reply to {to}, got {other:?}"),
    }
}

/// A client with credentials, learning the nonce from the first 401.
struct Client {
    from: SocketAddr,
    user: String,
    key: LongTermKey,
    nonce: Option<String>,
    tid: u8,
}

impl Client {
    fn new(from: &str, user: &str, password: &str) -> Self {
        Client {
            from: addr(from),
            user: user.into(),
            key: key(user, password),
            nonce: None,
            tid: 0,
        }
    }

    fn next_tid(&mut self) -> [u8; 12] {
        self.tid += 1;
        let mut t = [0u8; 12];
        t[0] = self.tid;
        t[1..3].copy_from_slice(&self.from.port().to_be_bytes());
        t
    }

    /// A request of `m` with `extra` attributes, signed when a nonce is known.
    fn request(&mut self, m: u16, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let tid = self.next_tid();
        let mut b = MessageBuilder::new(m, Class::Request, tid);
        for (t, v) in extra {
            b.add(*t, v);
        }
        if let Some(nonce) = &self.nonce {
            b.add(attr::USERNAME, self.user.as_bytes())
                .add(attr::REALM, REALM.as_bytes())
                .add(attr::NONCE, nonce.as_bytes())
                .add_integrity(self.key.as_bytes());
        }
        b.finish().unwrap()
    }

    /// Sends `m` (retrying once after a 401 or 438 with the nonce
    /// given); returns the final response's bytes.
    fn call(&mut self, s: &mut Server, now: u64, m: u16, extra: &[(u16, Vec<u8>)]) -> Vec<u8> {
        for attempt in 0..2 {
            let req = self.request(m, extra);
            s.handle_client(now, self.from, &req);
            let actions = drain(s);
            let mut response = None;
            for a in actions {
                match a {
                    Action::OpenRelay {
                        id,
                        even_port,
                        reserve,
                        ..
                    } => {
                        // The driver: an even port (and the next) when asked.
                        let port = if even_port || reserve.is_some() {
                            50000 + 2 * id
                        } else {
                            50000 + id
                        };
                        let port = u16::try_from(port).unwrap();
                        s.relay_opened(now, id, SocketAddr::new(s.config.listen.ip(), port));
                        response = Some(reply(s, self.from));
                    }
                    Action::Transmit {
                        via: Via::Listener,
                        to,
                        data,
                    } if to == self.from => response = Some(data),
                    other => panic!("unexpected {other:?}"),
                }
            }
            let data = response.expect("a response");
            let msg = Message::decode(&data).unwrap();
            let code = msg.error_code();
            if matches!(code, Some(401 | 438)) {
                let nonce = msg.text(attr::NONCE, "NONCE", 100).unwrap().unwrap();
                assert_eq!(msg.get(attr::REALM), Some(REALM.as_bytes()));
                let first_challenge = self.nonce.is_none() || code == Some(438);
                self.nonce = Some(nonce.to_owned());
                if attempt == 0 && first_challenge {
                    continue;
                }
            }
            return data;
        }
        panic!("no final response")
    }

    /// Allocates; returns the relayed address.
    fn allocate(&mut self, s: &mut Server, now: u64) -> SocketAddr {
        let data = self.call(s, now, method::ALLOCATE, &[transport(17)]);
        let msg = Message::decode(&data).unwrap();
        assert_eq!(msg.class, Class::Success, "error {:?}", msg.error_code());
        msg.verify_integrity(self.key.as_bytes()).unwrap();
        assert_eq!(
            msg.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(),
            Some(self.from)
        );
        assert_eq!(msg.u32_attr(attr::LIFETIME, "LIFETIME").unwrap(), Some(600));
        msg.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().unwrap()
    }

    fn permit(&mut self, s: &mut Server, now: u64, peer: SocketAddr) -> Option<u16> {
        // IPv4 peers are XORed with the cookie only: any id will do.
        let t = [0u8; 12];
        let v = stun::encode_xor_address(peer, &t);
        let data = self.call(
            s,
            now,
            method::CREATE_PERMISSION,
            &[(attr::XOR_PEER_ADDRESS, v)],
        );
        Message::decode(&data).unwrap().error_code()
    }

    fn bind(&mut self, s: &mut Server, now: u64, number: u16, peer: SocketAddr) -> Option<u16> {
        let t = [0u8; 12];
        let v = stun::encode_xor_address(peer, &t);
        let mut n = number.to_be_bytes().to_vec();
        n.extend_from_slice(&[0, 0]);
        let data = self.call(
            s,
            now,
            method::CHANNEL_BIND,
            &[(attr::CHANNEL_NUMBER, n), (attr::XOR_PEER_ADDRESS, v)],
        );
        Message::decode(&data).unwrap().error_code()
    }
}

fn transport(proto: u8) -> (u16, Vec<u8>) {
    (attr::REQUESTED_TRANSPORT, vec![proto, 0, 0, 0])
}

fn code_of(data: &[u8]) -> Option<u16> {
    Message::decode(data).unwrap().error_code()
}

#[test]
fn binding_answers_anyone_with_the_mapped_address() {
    let mut s = server();
    let from = addr("192.0.2.7:4000");
    let mut b = MessageBuilder::new(method::BINDING, Class::Request, [3; 12]);
    b.add_fingerprint();
    s.handle_client(0, from, &b.finish().unwrap());
    let data = reply(&mut s, from);
    let m = Message::decode(&data).unwrap();
    assert_eq!((m.method, m.class), (method::BINDING, Class::Success));
    assert_eq!(m.transaction_id, [3; 12]);
    assert!(m.has_fingerprint());
    assert_eq!(m.xor_address(attr::XOR_MAPPED_ADDRESS).unwrap(), Some(from));
}

#[test]
fn allocate_is_challenged_401_then_succeeds() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40000", "alice", "secret");
    // First without credentials: 401 with REALM and NONCE, no integrity.
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(10, c.from, &req);
    let data = reply(&mut s, c.from);
    let m = Message::decode(&data).unwrap();
    assert_eq!(m.error_code(), Some(401));
    assert!(!m.has_integrity());
    assert_eq!(m.get(attr::REALM), Some(&b"p2psip"[..]));
    assert!(m.get(attr::NONCE).is_some());
    assert_eq!(s.allocation_count(), 0);
    let relayed = c.allocate(&mut s, 10);
    assert_eq!(relayed, addr("127.0.0.1:50001"));
    assert_eq!(s.allocation_count(), 1);
    assert_eq!(s.stats().allocations, 1);
}

#[test]
fn wrong_password_and_unknown_user_get_401() {
    let mut s = server();
    for (user, pass) in [("alice", "wrong"), ("mallory", "secret")] {
        let mut c = Client::new("127.0.0.1:40001", user, pass);
        let data = c.call(&mut s, 0, method::ALLOCATE, &[transport(17)]);
        assert_eq!(code_of(&data), Some(401), "{user}");
        assert!(!Message::decode(&data).unwrap().has_integrity());
    }
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn a_stale_nonce_gets_438_with_a_fresh_one() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40002", "alice", "secret");
    c.allocate(&mut s, 0);
    // Much later the nonce is stale: 438, and the retry with the new one works.
    let old = c.nonce.clone();
    let later = crate::turn::credentials::NONCE_LIFETIME + 5;
    let req = c.request(method::REFRESH, &[]);
    s.handle_client(later, c.from, &req);
    let data = reply(&mut s, c.from);
    assert_eq!(code_of(&data), Some(438));
    let fresh = Message::decode(&data).unwrap();
    let fresh = fresh.text(attr::NONCE, "NONCE", 100).unwrap().unwrap();
    assert_ne!(Some(fresh), old.as_deref());
    c.nonce = Some(fresh.to_owned());
    let data = c.call(&mut s, later, method::REFRESH, &[]);
    assert_eq!(code_of(&data), None);
    // A nonce given to another client is stale for this one.
    let mut other = Client::new("127.0.0.1:40003", "alice", "secret");
    other.nonce = c.nonce.clone();
    let req = other.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(later, other.from, &req);
    assert_eq!(code_of(&reply(&mut s, other.from)), Some(438));
}

#[test]
fn only_udp_is_relayed_and_unknown_attributes_are_named() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40004", "alice", "secret");
    let data = c.call(&mut s, 0, method::ALLOCATE, &[transport(6)]);
    assert_eq!(code_of(&data), Some(442));
    Message::decode(&data)
        .unwrap()
        .verify_integrity(c.key.as_bytes())
        .unwrap();
    let data = c.call(&mut s, 0, method::ALLOCATE, &[]);
    assert_eq!(code_of(&data), Some(400));
    let data = c.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::DONT_FRAGMENT, vec![])],
    );
    assert_eq!(code_of(&data), Some(420));
    let m = Message::decode(&data).unwrap();
    assert_eq!(m.get(attr::UNKNOWN_ATTRIBUTES), Some(&[0x00, 0x1A][..]));
    let data = c.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[
            transport(17),
            (attr::REQUESTED_ADDRESS_FAMILY, vec![2, 0, 0, 0]),
        ],
    );
    assert_eq!(code_of(&data), Some(440));
    assert_eq!(s.allocation_count(), 0);
}

#[test]
fn quota_per_user_486_and_in_all_508() {
    let mut s = server_with(3, 2);
    for port in [41000, 41001] {
        Client::new(&format!("127.0.0.1:{port}"), "alice", "secret").allocate(&mut s, 0);
    }
    let mut third = Client::new("127.0.0.1:41002", "alice", "secret");
    let data = third.call(&mut s, 0, method::ALLOCATE, &[transport(17)]);
    assert_eq!(code_of(&data), Some(486));
    // Another user still gets one, then the server is full.
    Client::new("127.0.0.1:41003", "bob", "hunter2").allocate(&mut s, 0);
    let mut bob2 = Client::new("127.0.0.1:41004", "bob", "hunter2");
    let data = bob2.call(&mut s, 0, method::ALLOCATE, &[transport(17)]);
    assert_eq!(code_of(&data), Some(508));
    assert_eq!(s.allocation_count(), 3);
    assert_eq!(s.stats().quota_refused, 2);
}

#[test]
fn a_retransmitted_allocate_gets_the_same_answer_another_gets_437() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40005", "alice", "secret");
    c.allocate(&mut s, 0);
    // Replay the exact request that succeeded: same response bytes.
    c.tid -= 1;
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(1, c.from, &req);
    let again = reply(&mut s, c.from);
    assert_eq!(Message::decode(&again).unwrap().class, Class::Success);
    let data = c.call(&mut s, 1, method::ALLOCATE, &[transport(17)]);
    assert_eq!(code_of(&data), Some(437));
}

/// A client with an allocation and what the relay sends for it.
fn relayed_setup() -> (Server, Client, RelayId) {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40006", "alice", "secret");
    c.allocate(&mut s, 0);
    (s, c, 1)
}

fn send_indication(c: &mut Client, peer: SocketAddr, data: &[u8]) -> Vec<u8> {
    let tid = c.next_tid();
    let mut b = MessageBuilder::new(method::SEND, Class::Indication, tid);
    b.add_xor_address(attr::XOR_PEER_ADDRESS, peer)
        .add(attr::DATA, data);
    b.finish().unwrap()
}

#[test]
fn nothing_is_relayed_without_a_permission() {
    let (mut s, mut c, relay) = relayed_setup();
    let peer = addr(PEER);
    let ind = send_indication(&mut c, peer, b"hello");
    s.handle_client(1, c.from, &ind);
    assert!(drain(&mut s).is_empty(), "no permission: dropped");
    s.handle_peer(1, relay, peer, b"sneaky");
    assert!(
        drain(&mut s).is_empty(),
        "inbound without permission: dropped"
    );
    assert_eq!(c.permit(&mut s, 1, peer), None);
    s.handle_client(2, c.from, &ind);
    assert_eq!(
        drain(&mut s),
        vec![Action::Transmit {
            via: Via::Relay(relay),
            to: peer,
            data: b"hello".to_vec()
        }]
    );
    // The permission is per IP: another port of the peer's IP may answer.
    s.handle_peer(2, relay, addr("127.0.0.1:9001"), b"back");
    let data = reply(&mut s, c.from);
    let m = Message::decode(&data).unwrap();
    assert_eq!((m.method, m.class), (method::DATA, Class::Indication));
    assert_eq!(m.get(attr::DATA), Some(&b"back"[..]));
    assert_eq!(
        m.xor_address(attr::XOR_PEER_ADDRESS).unwrap(),
        Some(addr("127.0.0.1:9001"))
    );
    // Another IP: still nothing.
    s.handle_peer(2, relay, addr("127.0.0.2:9000"), b"x");
    assert!(drain(&mut s).is_empty());
    // Permissions last 300 s.
    s.handle_timeout(1 + PERMISSION_LIFETIME);
    assert!(drain(&mut s).is_empty());
    s.handle_client(1 + PERMISSION_LIFETIME, c.from, &ind);
    assert!(drain(&mut s).is_empty(), "permission expired");
}

#[test]
fn forbidden_peers_get_403() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40007", "alice", "secret");
    c.allocate(&mut s, 0);
    // Allowed 127.0.0.0/8 does not open these.
    for peer in [
        "0.0.0.0:9",
        "224.0.0.1:9",
        "255.255.255.255:9",
        "10.0.0.1:9",
        LISTEN,
        "127.0.0.1:0",
    ] {
        assert_eq!(c.permit(&mut s, 0, addr(peer)), Some(403), "{peer}");
    }
    assert_eq!(s.stats().peers_refused, 6);
    // Another family, IPv4-mapped included (judged as IPv4).
    assert_eq!(c.permit(&mut s, 0, addr("[::1]:9")), Some(443));
    assert_eq!(
        c.permit(&mut s, 0, addr("[::ffff:8.8.8.8]:9")),
        Some(443),
        "an IPv4-mapped peer of an IPv4 relay"
    );
    // A relay on a public address does not reach loopback or its host.
    let config = ServerConfig::new(REALM, addr("192.0.2.1:3478"), NonceSecret::new([1; 32]));
    let mut public = Server::new(config);
    public.set_local_addresses([ip("192.0.2.1"), ip("198.51.100.20")]);
    assert_eq!(
        public.peer_refusal(addr("127.0.0.1:22")),
        Some(Refusal::Loopback)
    );
    assert_eq!(
        public.peer_refusal(addr("192.0.2.1:22")),
        Some(Refusal::OwnHost)
    );
    assert_eq!(
        public.peer_refusal(addr("198.51.100.20:22")),
        Some(Refusal::OwnHost)
    );
    assert!(public.peer_allowed(addr("198.51.100.9:5000")));
    let v6 = Server::new(ServerConfig::new(
        REALM,
        addr("[2001:db8::1]:3478"),
        NonceSecret::new([1; 32]),
    ));
    assert!(
        !v6.peer_allowed(addr("[::ffff:127.0.0.1]:22")),
        "IPv4-mapped"
    );
    assert!(!v6.peer_allowed(addr("[::1]:22")));
    assert!(!v6.peer_allowed(addr("[fe80::1]:22")));
    assert!(!v6.peer_allowed(addr("[fd00::1]:22")));
    assert!(v6.peer_allowed(addr("[2001:db8::2]:5000")));
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// Without the operator's allowance, a relay on loopback refuses
/// loopback peers: CreatePermission and ChannelBind get 403, and nothing
/// is relayed there.
#[test]
fn loopback_peers_are_refused_403_unless_allowed() {
    let mut s = server_on(LISTEN, "", 16, 8);
    let mut c = Client::new("127.0.0.1:40020", "alice", "secret");
    c.allocate(&mut s, 0);
    assert_eq!(c.permit(&mut s, 0, addr(PEER)), Some(403));
    assert_eq!(c.bind(&mut s, 0, 0x4000, addr(PEER)), Some(403));
    let ind = send_indication(&mut c, addr(PEER), b"x");
    s.handle_client(0, c.from, &ind);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.stats().to_peers, 0);
    assert_eq!(s.stats().peers_refused, 2);
    // The 403's reason does not say which rule refused it.
    let data = c.call(
        &mut s,
        0,
        method::CREATE_PERMISSION,
        &[(
            attr::XOR_PEER_ADDRESS,
            stun::encode_xor_address(addr(PEER), &[0; 12]),
        )],
    );
    let msg = Message::decode(&data).unwrap();
    let reason = String::from_utf8_lossy(msg.get(attr::ERROR_CODE).unwrap()).to_string();
    assert!(reason.contains("Forbidden"), "{reason}");
    assert!(!reason.contains("loopback"), "{reason}");
    // Public peers are reached.
    assert_eq!(c.permit(&mut s, 0, addr("198.51.100.9:9")), None);
}

/// The host's addresses as the driver last gave them decide, for new
/// permissions and for every datagram on existing ones.
#[test]
fn the_hosts_addresses_are_refused_as_the_driver_updates_them() {
    let mut s = server_on("192.0.2.1:3478", "", 16, 8);
    let mut c = Client::new("203.0.113.7:40021", "alice", "secret");
    let relayed = c.allocate(&mut s, 0);
    assert_eq!(relayed.ip(), ip("192.0.2.1"));
    let peer = addr("198.51.100.20:5000");
    assert_eq!(c.permit(&mut s, 0, peer), None);
    assert_eq!(c.bind(&mut s, 0, 0x4000, peer), None);
    // The address turns out to be the host's own (a new interface).
    s.set_local_addresses([ip("198.51.100.20")]);
    assert_eq!(c.permit(&mut s, 0, peer), Some(403));
    let ind = send_indication(&mut c, peer, b"x");
    s.handle_client(0, c.from, &ind);
    assert!(drain(&mut s).is_empty(), "Send indication dropped");
    s.handle_client(0, c.from, &[0x40, 0x00, 0x00, 0x01, b'y']);
    assert!(drain(&mut s).is_empty(), "ChannelData dropped");
    s.handle_peer(0, 1, peer, b"z");
    assert!(drain(&mut s).is_empty(), "nothing from it either");
    assert_eq!(s.stats().to_peers, 0);
    // It goes away again: relayed once more.
    s.set_local_addresses([]);
    s.handle_client(0, c.from, &[0x40, 0x00, 0x00, 0x01, b'y']);
    assert_eq!(
        drain(&mut s),
        vec![Action::Transmit {
            via: Via::Relay(1),
            to: peer,
            data: b"y".to_vec()
        }]
    );
}

/// Two clients of one relay reach each other's relayed address (ICE's
/// relay-to-relay pair), but no other port of the relay's host.
#[test]
fn another_allocations_relayed_address_is_reachable_no_other_port() {
    let mut s = server_on("192.0.2.1:3478", "", 16, 8);
    let mut a = Client::new("203.0.113.7:40022", "alice", "secret");
    let mut b = Client::new("198.51.100.8:40023", "bob", "hunter2");
    let relayed_a = a.allocate(&mut s, 0);
    let relayed_b = b.allocate(&mut s, 0);
    assert_eq!(a.permit(&mut s, 0, relayed_b), None);
    assert_eq!(b.permit(&mut s, 0, relayed_a), None);
    assert_eq!(a.permit(&mut s, 0, addr("192.0.2.1:5060")), Some(403));
    // a → b's relayed address: leaves a's relay...
    let ind = send_indication(&mut a, relayed_b, b"hi");
    s.handle_client(0, a.from, &ind);
    assert_eq!(
        drain(&mut s),
        vec![Action::Transmit {
            via: Via::Relay(1),
            to: relayed_b,
            data: b"hi".to_vec()
        }]
    );
    // ...but not to another port of the host, though a's permission for
    // the host's IP exists.
    let ind = send_indication(&mut a, addr("192.0.2.1:5060"), b"no");
    s.handle_client(0, a.from, &ind);
    assert!(drain(&mut s).is_empty());
    // Arriving at b's relay from a's relayed address: to b.
    s.handle_peer(0, 2, relayed_a, b"hi");
    match drain(&mut s).as_slice() {
        [Action::Transmit {
            via: Via::Listener,
            to,
            ..
        }] => assert_eq!(*to, b.from),
        other => panic!("{other:?}"),
    }
    // Once b's allocation is gone, its port is the host's again.
    let req = b.request(
        method::REFRESH,
        &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())],
    );
    s.handle_client(0, b.from, &req);
    assert!(drain(&mut s).contains(&Action::CloseRelay { id: 2 }));
    assert_eq!(s.peer_refusal(relayed_b), Some(Refusal::OwnHost));
}

#[test]
fn channels_follow_the_binding_rules() {
    let (mut s, mut c, relay) = relayed_setup();
    let peer = addr(PEER);
    let other = addr("127.0.0.1:9002");
    assert_eq!(
        c.bind(&mut s, 1, 0x3FFF, peer),
        Some(400),
        "below the range"
    );
    assert_eq!(
        c.bind(&mut s, 1, 0x8000, peer),
        Some(400),
        "above the range"
    );
    assert_eq!(c.bind(&mut s, 1, 0x4000, peer), None);
    assert_eq!(c.bind(&mut s, 1, 0x4000, peer), None, "a refresh is fine");
    assert_eq!(c.bind(&mut s, 1, 0x4000, other), Some(400), "number taken");
    assert_eq!(c.bind(&mut s, 1, 0x4001, peer), Some(400), "peer taken");
    // The binding installed a permission: ChannelData both ways.
    let mut frame = vec![0x40, 0x00, 0x00, 0x03];
    frame.extend_from_slice(b"abc\0");
    s.handle_client(2, c.from, &frame);
    assert_eq!(
        drain(&mut s),
        vec![Action::Transmit {
            via: Via::Relay(relay),
            to: peer,
            data: b"abc".to_vec()
        }]
    );
    s.handle_peer(2, relay, peer, b"xyz");
    assert_eq!(
        reply(&mut s, c.from),
        vec![0x40, 0x00, 0x00, 0x03, b'x', b'y', b'z']
    );
    // An unbound channel, or a frame longer than its datagram: dropped.
    s.handle_client(2, c.from, &[0x40, 0x01, 0x00, 0x01, 0]);
    s.handle_client(2, c.from, &[0x7F, 0xFF, 0x00, 0x01, 0]);
    s.handle_client(2, c.from, &[0x40, 0x00, 0x00, 0x09, 0]);
    assert!(drain(&mut s).is_empty());
    // After 600 s the channel is unusable, and reserved for 300 s more.
    let later = 1 + CHANNEL_LIFETIME;
    s.handle_client(later, c.from, &frame);
    assert!(drain(&mut s).is_empty());
    assert_eq!(
        c.bind(&mut s, later, 0x4000, other),
        Some(400),
        "still reserved"
    );
    let free = later + CHANNEL_COOLDOWN;
    s.handle_timeout(free);
    drain(&mut s);
    let mut c2 = Client::new("127.0.0.1:40008", "alice", "secret");
    let _ = c2.allocate(&mut s, free);
    assert_eq!(c2.bind(&mut s, free, 0x4000, other), None);
}

#[test]
fn channel_and_permission_tables_are_bounded() {
    let (mut s, mut c, _) = relayed_setup();
    for i in 0..MAX_CHANNELS_PER_ALLOCATION as u16 {
        let peer = addr(&format!("127.0.1.{}:7000", i + 1));
        assert_eq!(c.bind(&mut s, 1, 0x4000 + i, peer), None);
    }
    assert_eq!(c.bind(&mut s, 1, 0x7FFF, addr("127.0.2.1:7000")), Some(508));
    assert_eq!(c.permit(&mut s, 1, addr("127.0.2.2:7000")), Some(508));
}

#[test]
fn refresh_extends_and_zero_deletes() {
    let (mut s, mut c, relay) = relayed_setup();
    let data = c.call(
        &mut s,
        100,
        method::REFRESH,
        &[(attr::LIFETIME, 3600u32.to_be_bytes().to_vec())],
    );
    let m = Message::decode(&data).unwrap();
    assert_eq!(
        m.u32_attr(attr::LIFETIME, "LIFETIME").unwrap(),
        Some(MAX_LIFETIME)
    );
    let data = c.call(
        &mut s,
        100,
        method::REFRESH,
        &[(attr::LIFETIME, 99_999u32.to_be_bytes().to_vec())],
    );
    assert_eq!(
        Message::decode(&data)
            .unwrap()
            .u32_attr(attr::LIFETIME, "LIFETIME")
            .unwrap(),
        Some(MAX_LIFETIME),
        "capped"
    );
    // Not expired at the old 600 s.
    s.handle_timeout(700);
    assert!(drain(&mut s).is_empty());
    assert_eq!(s.allocation_count(), 1);
    // Another user cannot touch it.
    let mut bob = Client::new("127.0.0.1:40006", "bob", "hunter2");
    let data = bob.call(&mut s, 700, method::REFRESH, &[]);
    assert_eq!(code_of(&data), Some(441));
    // (A refresh at 700 s learns a fresh nonce on the way: 438, retry.)
    assert_eq!(code_of(&c.call(&mut s, 700, method::REFRESH, &[])), None);
    // Lifetime 0 deletes it and closes the relay.
    let req = c.request(method::REFRESH, &[(attr::LIFETIME, vec![0, 0, 0, 0])]);
    s.handle_client(700, c.from, &req);
    let actions = drain(&mut s);
    assert!(
        actions.contains(&Action::CloseRelay { id: relay }),
        "{actions:?}"
    );
    assert_eq!(s.allocation_count(), 0);
    let data = c.call(&mut s, 701, method::REFRESH, &[]);
    assert_eq!(code_of(&data), Some(437));
}

#[test]
fn allocations_expire_and_close_their_relay() {
    let (mut s, _c, relay) = relayed_setup();
    s.handle_timeout(599);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(600);
    assert_eq!(drain(&mut s), vec![Action::CloseRelay { id: relay }]);
    assert_eq!(s.allocation_count(), 0);
    // A late datagram for the closed relay goes nowhere.
    s.handle_peer(601, relay, addr(PEER), b"late");
    assert!(drain(&mut s).is_empty());
}

#[test]
fn a_relay_that_cannot_open_refuses_508_and_frees_the_slot() {
    let mut s = server_with(1, 1);
    let mut c = Client::new("127.0.0.1:40009", "alice", "secret");
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    let first = reply(&mut s, c.from);
    let nonce = Message::decode(&first).unwrap();
    c.nonce = Some(
        nonce
            .text(attr::NONCE, "NONCE", 100)
            .unwrap()
            .unwrap()
            .to_owned(),
    );
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    let id = match drain(&mut s).as_slice() {
        [Action::OpenRelay { id, ip, .. }] => {
            assert_eq!(*ip, addr(LISTEN).ip());
            *id
        }
        other => panic!("{other:?}"),
    };
    s.relay_failed(id);
    assert_eq!(code_of(&reply(&mut s, c.from)), Some(508));
    assert_eq!(s.allocation_count(), 0);
    c.allocate(&mut s, 1);
}

#[test]
fn malformed_requests_get_400_naming_the_fault_others_are_dropped() {
    let mut s = server();
    let from = addr("127.0.0.1:40010");
    let mut b = MessageBuilder::new(method::ALLOCATE, Class::Request, [4; 12]);
    b.add(attr::SOFTWARE, b"x");
    let mut raw = b.finish().unwrap();
    raw[22..24].copy_from_slice(&[0, 200]);
    s.handle_client(0, from, &raw);
    let data = reply(&mut s, from);
    let m = Message::decode(&data).unwrap();
    assert_eq!(m.error_code(), Some(400));
    let reason = String::from_utf8_lossy(&m.get(attr::ERROR_CODE).unwrap()[4..]).into_owned();
    assert!(reason.contains("runs past"), "{reason}");
    for junk in [&b""[..], &[0xff; 30], &[0x40], &[0x00; 10]] {
        s.handle_client(0, from, junk);
    }
    assert!(drain(&mut s).is_empty());
}

#[test]
fn even_port_is_asked_of_the_driver_and_checked() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40011", "alice", "secret");
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    let first = reply(&mut s, c.from);
    let m = Message::decode(&first).unwrap();
    c.nonce = Some(
        m.text(attr::NONCE, "NONCE", 100)
            .unwrap()
            .unwrap()
            .to_owned(),
    );
    let req = c.request(
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0])],
    );
    s.handle_client(0, c.from, &req);
    let id = match drain(&mut s).as_slice() {
        [Action::OpenRelay {
            id,
            even_port: true,
            ..
        }] => *id,
        other => panic!("{other:?}"),
    };
    // A driver that gets it wrong: refused 508, the relay closed.
    s.relay_opened(0, id, addr("127.0.0.1:50001"));
    let actions = drain(&mut s);
    assert!(actions.contains(&Action::CloseRelay { id }), "{actions:?}");
    let refusal = actions
        .iter()
        .find_map(|a| match a {
            Action::Transmit { data, .. } => Some(data.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(code_of(&refusal), Some(508));
    assert_eq!(s.allocation_count(), 0);
}

/// The RESERVATION-TOKEN of a success response.
fn token_of(data: &[u8]) -> Vec<u8> {
    Message::decode(data)
        .unwrap()
        .get(attr::RESERVATION_TOKEN)
        .expect("a RESERVATION-TOKEN")
        .to_vec()
}

fn relayed_of(data: &[u8]) -> SocketAddr {
    let m = Message::decode(data).unwrap();
    assert_eq!(m.class, Class::Success, "error {:?}", m.error_code());
    m.xor_address(attr::XOR_RELAYED_ADDRESS).unwrap().unwrap()
}

/// RFC 8656 §7.2: EVEN-PORT with R=1 gives an even port, reserves the
/// next, and returns a token; an Allocate with the token gets that port
/// (its socket already open), once.
#[test]
fn even_port_with_r_reserves_the_next_port_and_the_token_claims_it() {
    let mut s = server();
    let mut rtp = Client::new("127.0.0.1:40030", "alice", "secret");
    let data = rtp.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0x80])],
    );
    let relayed = relayed_of(&data);
    assert_eq!(relayed.port() % 2, 0, "{relayed}");
    let token = token_of(&data);
    assert_eq!(token.len(), RESERVATION_TOKEN_LEN);
    Message::decode(&data)
        .unwrap()
        .verify_integrity(rtp.key.as_bytes())
        .unwrap();
    assert_eq!((s.allocation_count(), s.reservation_count()), (1, 1));
    assert_eq!(s.stats().reservations, 1);
    // Without R: an even port, no token.
    let mut plain = Client::new("127.0.0.1:40031", "alice", "secret");
    let data = plain.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0x00])],
    );
    assert_eq!(relayed_of(&data).port() % 2, 0);
    assert!(Message::decode(&data)
        .unwrap()
        .get(attr::RESERVATION_TOKEN)
        .is_none());
    // The token, from another client address of the same user: the next
    // port, answered at once (no socket to open).
    let mut rtcp = Client::new("127.0.0.1:40032", "alice", "secret");
    let data = rtcp.call(
        &mut s,
        1,
        method::ALLOCATE,
        &[transport(17), (attr::RESERVATION_TOKEN, token.clone())],
    );
    let claimed = relayed_of(&data);
    assert_eq!(claimed, SocketAddr::new(relayed.ip(), relayed.port() + 1));
    assert!(Message::decode(&data)
        .unwrap()
        .get(attr::RESERVATION_TOKEN)
        .is_none());
    assert_eq!((s.allocation_count(), s.reservation_count()), (3, 0));
    assert_eq!(s.stats().reservations_claimed, 1);
    // It relays through the reserved socket's id.
    let reserved_id = 1 | RESERVED_RELAY_BIT;
    assert_eq!(rtcp.permit(&mut s, 1, addr(PEER)), None);
    s.handle_peer(1, reserved_id, addr(PEER), b"rtcp");
    match drain(&mut s).as_slice() {
        [Action::Transmit {
            via: Via::Listener,
            to,
            ..
        }] => assert_eq!(*to, rtcp.from),
        other => panic!("{other:?}"),
    }
    let ind = send_indication(&mut rtcp, addr(PEER), b"out");
    s.handle_client(1, rtcp.from, &ind);
    assert_eq!(
        drain(&mut s),
        vec![Action::Transmit {
            via: Via::Relay(reserved_id),
            to: addr(PEER),
            data: b"out".to_vec()
        }]
    );
    // A token is good once.
    let mut again = Client::new("127.0.0.1:40033", "alice", "secret");
    let data = again.call(
        &mut s,
        1,
        method::ALLOCATE,
        &[transport(17), (attr::RESERVATION_TOKEN, token)],
    );
    assert_eq!(code_of(&data), Some(508));
    // Deleting the claimed allocation closes the reserved socket.
    let req = rtcp.request(
        method::REFRESH,
        &[(attr::LIFETIME, 0u32.to_be_bytes().to_vec())],
    );
    s.handle_client(1, rtcp.from, &req);
    assert!(drain(&mut s).contains(&Action::CloseRelay { id: reserved_id }));
}

#[test]
fn reservation_rules_400_508_expiry_other_users_and_quota() {
    let mut s = server_with(16, 3);
    let mut c = Client::new("127.0.0.1:40040", "alice", "secret");
    let mut ask = |s: &mut Server, extra: Vec<(u16, Vec<u8>)>| {
        let mut attrs = vec![transport(17)];
        attrs.extend(extra);
        c.call(s, 0, method::ALLOCATE, &attrs)
    };
    let token = (attr::RESERVATION_TOKEN, vec![7u8; 8]);
    // RFC 8656 §7.2: with EVEN-PORT or REQUESTED-ADDRESS-FAMILY, 400.
    let both = ask(&mut s, vec![token.clone(), (attr::EVEN_PORT, vec![0x80])]);
    assert_eq!(code_of(&both), Some(400));
    let family = ask(
        &mut s,
        vec![
            token.clone(),
            (attr::REQUESTED_ADDRESS_FAMILY, vec![1, 0, 0, 0]),
        ],
    );
    assert_eq!(code_of(&family), Some(400));
    let short = ask(&mut s, vec![(attr::RESERVATION_TOKEN, vec![7u8; 7])]);
    assert_eq!(code_of(&short), Some(400));
    let bad_even = ask(&mut s, vec![(attr::EVEN_PORT, vec![0x80, 0, 0, 0])]);
    assert_eq!(code_of(&bad_even), Some(400));
    // An unknown token: 508.
    assert_eq!(code_of(&ask(&mut s, vec![token])), Some(508));
    assert_eq!(s.allocation_count(), 0);

    // A reservation takes a quota slot: 3 per user, R=1 takes two.
    let mut r1 = Client::new("127.0.0.1:40041", "alice", "secret");
    let data = r1.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0x80])],
    );
    let token = token_of(&data);
    let mut r2 = Client::new("127.0.0.1:40042", "alice", "secret");
    let data = r2.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0x80])],
    );
    assert_eq!(code_of(&data), Some(486), "2 held, 2 more asked, 3 allowed");
    let mut plain = Client::new("127.0.0.1:40043", "alice", "secret");
    let _ = plain.allocate(&mut s, 0);
    let mut more = Client::new("127.0.0.1:40044", "alice", "secret");
    let data = more.call(&mut s, 0, method::ALLOCATE, &[transport(17)]);
    assert_eq!(code_of(&data), Some(486), "the reservation counts");

    // Another user cannot claim it.
    let mut bob = Client::new("127.0.0.1:40045", "bob", "hunter2");
    let data = bob.call(
        &mut s,
        0,
        method::ALLOCATE,
        &[transport(17), (attr::RESERVATION_TOKEN, token.clone())],
    );
    assert_eq!(code_of(&data), Some(508));
    assert_eq!(s.reservation_count(), 1, "still reserved for alice");

    // 30 s later it is gone, its socket closed; its slot is free again.
    s.handle_timeout(RESERVATION_LIFETIME - 1);
    assert!(drain(&mut s).is_empty());
    s.handle_timeout(RESERVATION_LIFETIME);
    assert_eq!(
        drain(&mut s),
        vec![Action::CloseRelay {
            id: 1 | RESERVED_RELAY_BIT
        }]
    );
    assert_eq!(s.reservation_count(), 0);
    let mut late = Client::new("127.0.0.1:40046", "alice", "secret");
    let data = late.call(
        &mut s,
        RESERVATION_LIFETIME,
        method::ALLOCATE,
        &[transport(17), (attr::RESERVATION_TOKEN, token)],
    );
    assert_eq!(code_of(&data), Some(508));
    let data = more.call(
        &mut s,
        RESERVATION_LIFETIME,
        method::ALLOCATE,
        &[transport(17)],
    );
    assert_eq!(Message::decode(&data).unwrap().class, Class::Success);
}

#[test]
fn a_pair_the_driver_gets_wrong_is_refused_and_both_sockets_closed() {
    let mut s = server();
    let mut c = Client::new("127.0.0.1:40050", "alice", "secret");
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    let challenge = reply(&mut s, c.from);
    c.nonce = Some(
        Message::decode(&challenge)
            .unwrap()
            .text(attr::NONCE, "NONCE", 100)
            .unwrap()
            .unwrap()
            .to_owned(),
    );
    let req = c.request(
        method::ALLOCATE,
        &[transport(17), (attr::EVEN_PORT, vec![0x80])],
    );
    s.handle_client(0, c.from, &req);
    let id = match drain(&mut s).as_slice() {
        [Action::OpenRelay {
            id,
            even_port: true,
            reserve: Some(r),
            ..
        }] => {
            assert_eq!(*r, *id | RESERVED_RELAY_BIT);
            *id
        }
        other => panic!("{other:?}"),
    };
    s.relay_opened(0, id, addr("127.0.0.1:50001"));
    let actions = drain(&mut s);
    assert!(actions.contains(&Action::CloseRelay { id }), "{actions:?}");
    assert!(
        actions.contains(&Action::CloseRelay {
            id: id | RESERVED_RELAY_BIT
        }),
        "{actions:?}"
    );
    assert_eq!((s.allocation_count(), s.reservation_count()), (0, 0));
}

/// A unauthenticated request drawing an error answer (401, 400, 420).
fn stranger_allocate(tid: u8) -> Vec<u8> {
    let mut b = MessageBuilder::new(method::ALLOCATE, Class::Request, [tid; 12]);
    b.add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0]);
    b.finish().unwrap()
}

/// The 401s (and other answers without credentials) one source address
/// draws are limited: beyond the burst its requests are dropped, counted,
/// until the bucket refills; other sources and authenticated requests
/// are not affected.
#[test]
fn unauthenticated_answers_are_limited_per_source_address() {
    use crate::limits::{TURN_CHALLENGE_BURST, TURN_CHALLENGE_REFILL, TURN_MAX_CHALLENGED_SOURCES};
    let mut s = server();
    // A real client from the address takes its nonce first.
    let mut c = Client::new("198.51.100.1:1000", "alice", "secret");
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    let challenge = reply(&mut s, c.from);
    assert_eq!(code_of(&challenge), Some(401));
    c.nonce = Some(
        Message::decode(&challenge)
            .unwrap()
            .text(attr::NONCE, "NONCE", 100)
            .unwrap()
            .unwrap()
            .to_owned(),
    );
    // A flood from the same IP (any port) uses up the rest.
    let spoofed = addr("198.51.100.1:2000");
    let mut answered = 0usize;
    let mut bytes_in = 0usize;
    let mut bytes_out = 0usize;
    for i in 0..100u32 {
        let req = stranger_allocate(i as u8);
        bytes_in += req.len();
        s.handle_client(0, SocketAddr::new(spoofed.ip(), 2000 + i as u16), &req);
        for a in drain(&mut s) {
            if let Action::Transmit { data, .. } = a {
                assert_eq!(code_of(&data), Some(401));
                answered += 1;
                bytes_out += data.len();
            }
        }
    }
    assert_eq!(answered, TURN_CHALLENGE_BURST as usize - 1);
    assert_eq!(s.stats().challenges_dropped, 100 - answered as u64);
    // Each 401 is over 3 times its request; over the flood, the
    // answers are about as many bytes as the requests.
    assert!(
        bytes_out <= bytes_in * 11 / 10,
        "a flood of 100 drew {bytes_out} B for {bytes_in} B"
    );
    // Malformed requests (400) and unknown attributes in a Binding (420)
    // count too; a plain Binding is still answered.
    let mut b = MessageBuilder::new(method::ALLOCATE, Class::Request, [9; 12]);
    b.add(attr::SOFTWARE, b"x");
    let mut bad = b.finish().unwrap();
    bad[22..24].copy_from_slice(&[0, 200]);
    s.handle_client(0, spoofed, &bad);
    let mut b = MessageBuilder::new(method::BINDING, Class::Request, [10; 12]);
    b.add(0x0031, b"x");
    s.handle_client(0, spoofed, &b.finish().unwrap());
    assert!(drain(&mut s).is_empty());
    let binding = MessageBuilder::new(method::BINDING, Class::Request, [11; 12])
        .finish()
        .unwrap();
    s.handle_client(0, spoofed, &binding);
    assert_eq!(drain(&mut s).len(), 1, "Binding answered");
    // The real client's signed request is served.
    let req = c.request(method::ALLOCATE, &[transport(17)]);
    s.handle_client(0, c.from, &req);
    assert!(matches!(
        drain(&mut s).as_slice(),
        [Action::OpenRelay { .. }]
    ));
    // Another address is not limited by this one.
    let other = addr("198.51.100.2:2000");
    s.handle_client(0, other, &stranger_allocate(1));
    assert_eq!(code_of(&reply(&mut s, other)), Some(401));
    // One second later: a second's worth of answers more.
    let per_second =
        (Duration::from_secs(1).as_millis() / TURN_CHALLENGE_REFILL.as_millis()) as usize;
    let mut answered = 0;
    for i in 0..50u8 {
        s.handle_client(1, spoofed, &stranger_allocate(i));
        answered += drain(&mut s).len();
    }
    assert_eq!(answered, per_second);
    // The table of sources is bounded.
    for i in 0..(TURN_MAX_CHALLENGED_SOURCES + 100) as u32 {
        let from = SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::from(0xC633_6400 + i)), 9);
        s.handle_client(2, from, &stranger_allocate(1));
    }
    drain(&mut s);
    assert!(s.challenges.len() <= TURN_MAX_CHALLENGED_SOURCES);
}

//! The holes found from outside (issue 24), each closed and shown here
//! on the sans-IO core: a node with two registered phones, attacked by
//! strangers who can send it any packet from any address. No sockets,
//! no sleeps; media ports are counted out of a [`VirtualPorts`].

use super::*;
use crate::sip::dialog::DialogState;
use crate::sip::media::{Anchor, Carrier, Leg, TableAnchor, VirtualPorts};
use std::sync::Mutex;

/// The proxy's anchor, shared with the test so that it can count ports.
#[derive(Clone)]
struct Shared(Arc<Mutex<TableAnchor<VirtualPorts>>>);

impl Shared {
    fn open_blocks(&self) -> usize {
        self.0.lock().unwrap().ports.open_blocks()
    }
}

/// The proxy of node 1 with alice's phone at :6001 and bob's at :7001
/// registered, media anchored on virtual ports.
fn node_with_phones(now: Instant) -> (Proxy, Shared) {
    let mut p = proxy();
    let media = Shared(Arc::new(Mutex::new(TableAnchor {
        table: crate::sip::media::MediaTable::new(),
        ports: VirtualPorts::new("127.0.0.1".parse().unwrap()),
    })));
    p.set_media(Box::new(media.0.clone()));
    register(&mut p, now, "alice", 6001);
    register(&mut p, now, "bob", 7001);
    (p, media)
}

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n"
    )
    .into_bytes()
}

fn with_sdp<M>(mut message: M, body: Vec<u8>) -> M
where
    M: AsMut<Headers> + WithBody,
{
    message
        .as_mut()
        .set(HeaderName::ContentType, "application/sdp");
    message.set_body(body);
    message
}

trait WithBody {
    fn set_body(&mut self, body: Vec<u8>);
}
impl WithBody for Request {
    fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }
}
impl WithBody for Response {
    fn set_body(&mut self, body: Vec<u8>) {
        self.body = body;
    }
}
impl AsMut<Headers> for Request {
    fn as_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}
impl AsMut<Headers> for Response {
    fn as_mut(&mut self) -> &mut Headers {
        &mut self.headers
    }
}

fn stranger(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 66], port))
}

/// alice calls bob with an offer; bob's phone answers 200 with its own.
/// Returns the INVITE as bob got it and bob's 200.
fn alice_calls_bob(p: &mut Proxy, now: Instant, branch: &str) -> (Request, Response) {
    let offer = with_sdp(
        invite("alice", "bob", 6001, branch),
        sdp("127.0.0.1", 40000),
    );
    let (_, actions) = authorized(p, now, 6001, offer, "alice", b"pw");
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("the INVITE reached bob");
    let ok = with_sdp(answer(&to_bob, 200), sdp("127.0.0.1", 50000));
    let actions = p.handle_response(now, phone(7001), Transport::Udp, ok.clone());
    assert!(
        sent(&actions).iter().any(|t| t.peer == phone(6001)),
        "{actions:?}"
    );
    (to_bob, ok)
}

#[test]
fn finding_1_a_forged_to_tag_does_not_skip_authentication() {
    let now = Instant::now();
    let (mut p, media) = node_with_phones(now);
    let mut forged = invite("mallory", "bob", 6666, "forged");
    forged.headers.set(
        HeaderName::From,
        "<sip:mallory@evil.example>;tag=m".to_owned(),
    );
    forged
        .headers
        .set(HeaderName::To, format!("<{}>;tag=anything", aor("bob")));
    let forged = with_sdp(forged, sdp("203.0.113.9", 4000));
    let before = p.transactions();
    let actions = p.handle_request(now, T0_MS, stranger(6666), Transport::Udp, forged);
    let out = sent(&actions);
    assert_eq!(out.len(), 1, "{actions:?}");
    assert_eq!(out[0].peer, stranger(6666), "bob's phone never rang");
    assert_eq!(response_of(out[0]).code, 481);
    assert_eq!(p.transactions(), before, "answered statelessly");
    assert_eq!(media.open_blocks(), 0, "no media port opened");
}

#[test]
fn finding_2_stray_answers_open_no_media_port() {
    let now = Instant::now();
    let (mut p, media) = node_with_phones(now);
    for i in 0..10 {
        let mut stray = Response {
            code: 183,
            reason: "Session Progress".into(),
            headers: Headers::new(),
            body: Vec::new(),
        };
        stray.headers.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-p2p-guess{i}"),
        );
        stray
            .headers
            .push(HeaderName::From, format!("<{}>;tag=a", aor("alice")));
        stray
            .headers
            .push(HeaderName::To, format!("<{}>;tag=b", aor("bob")));
        stray.headers.push(HeaderName::CallId, format!("stray-{i}"));
        stray.headers.push(HeaderName::CSeq, "1 INVITE");
        let stray = with_sdp(stray, sdp("203.0.113.9", 4000));
        let actions = p.handle_response(now, stranger(5000 + i), Transport::Udp, stray);
        assert!(actions.is_empty(), "{actions:?}");
    }
    assert_eq!(media.open_blocks(), 0);
}

#[test]
fn finding_2_a_forged_answer_to_a_real_call_is_dropped() {
    let now = Instant::now();
    let (mut p, media) = node_with_phones(now);
    let offer = with_sdp(
        invite("alice", "bob", 6001, "real"),
        sdp("127.0.0.1", 40000),
    );
    let (_, actions) = authorized(&mut p, now, 6001, offer, "alice", b"pw");
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .unwrap();
    let blocks = media.open_blocks();
    // The stranger saw the INVITE go by (same branch): its 200 comes from
    // another address, and changes nothing.
    let forged = with_sdp(answer(&to_bob, 200), sdp("203.0.113.9", 4000));
    let actions = p.handle_response(now, stranger(7001), Transport::Udp, forged);
    assert!(actions.is_empty(), "{actions:?}");
    assert_eq!(media.open_blocks(), blocks);
    let call_id = to_bob.headers.get(&HeaderName::CallId).unwrap();
    assert_eq!(
        p.dialogs().state(call_id, "caller"),
        Some(DialogState::Early)
    );
    // Bob's real 200 still goes through.
    let ok = with_sdp(answer(&to_bob, 200), sdp("127.0.0.1", 50000));
    let actions = p.handle_response(now, phone(7001), Transport::Udp, ok);
    assert!(sent(&actions).iter().any(|t| t.peer == phone(6001)));
    assert_eq!(
        p.dialogs().state(call_id, "caller"),
        Some(DialogState::Confirmed)
    );
}

#[test]
fn finding_3_media_goes_only_to_the_host_a_phone_signals_from() {
    // The table's side of it: media for a phone whose SDP names a third
    // host goes to the phone's SIP address, at the SDP's port.
    let now = Instant::now();
    let mut anchor = TableAnchor {
        table: crate::sip::media::MediaTable::new(),
        ports: VirtualPorts::new("127.0.0.1".parse().unwrap()),
    };
    let phone_addr = phone(6001);
    anchor
        .described(
            now,
            "c",
            Leg::Phone(phone_addr),
            Carrier::Other,
            &sdp("203.0.113.9", 4000),
        )
        .unwrap();
    anchor
        .described(
            now,
            "c",
            Leg::Node(node(2)),
            Carrier::Accepted,
            &sdp("127.0.0.2", 20000),
        )
        .unwrap();
    let mut out = Vec::new();
    let header = crate::sip::media::DatagramHeader {
        tag: crate::sip::media::tag_of("c"),
        stream: 0,
        component: crate::sip::media::Component::Rtp,
    };
    let _ = anchor.table.node_packet(now, node(2), header, &mut out);
    match out.as_slice() {
        [crate::sip::media::Relay::Phone { to, .. }] => {
            assert_eq!(*to, SocketAddr::new(phone_addr.ip(), 4000))
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn finding_4_strangers_end_no_call_and_drop_no_leg() {
    let now = Instant::now();
    let (mut p, media) = node_with_phones(now);
    let (to_bob, _) = alice_calls_bob(&mut p, now, "up");
    let call_id = to_bob.headers.get(&HeaderName::CallId).unwrap().to_owned();
    let blocks = media.open_blocks();
    assert_eq!(blocks, 2, "one block per phone");
    // A BYE naming the call, from the right tags, but from a stranger.
    let bye = |from: SocketAddr, branch: &str| {
        parse_request(&format!(
            "BYE sip:alice@127.0.0.1:6001 SIP/2.0\n\
             Via: SIP/2.0/UDP {from};branch=z9hG4bK{branch}\n\
             From: <{b}>;tag=callee\nTo: <{a}>;tag=caller\nCall-ID: {call_id}\n\
             CSeq: 2 BYE\nMax-Forwards: 70\nContent-Length: 0\n\n",
            a = aor("alice"),
            b = aor("bob"),
        ))
    };
    let actions = p.handle_request(
        now,
        T0_MS,
        stranger(7001),
        Transport::Udp,
        bye(stranger(7001), "evil"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 481);
    assert_eq!(sent(&actions).len(), 1);
    // A CANCEL of the INVITE's branch from a stranger.
    let mut cancel = to_bob.clone();
    cancel.method = Method::Cancel;
    cancel.headers.set(HeaderName::CSeq, "1 CANCEL");
    let actions = p.handle_request(now, T0_MS, stranger(6001), Transport::Udp, cancel);
    assert_eq!(response_of(sent(&actions)[0]).code, 481);
    assert_eq!(media.open_blocks(), blocks, "the call's media is untouched");
    assert_eq!(
        p.dialogs().state(&call_id, "caller"),
        Some(DialogState::Confirmed)
    );
    // Bob's own BYE ends it: forwarded to alice, media closed.
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(7001),
        Transport::Udp,
        bye(phone(7001), "bob-bye"),
    );
    assert!(
        sent(&actions).iter().any(|t| t.peer == phone(6001)),
        "{actions:?}"
    );
    assert_eq!(media.open_blocks(), 0);
    assert_eq!(
        p.dialogs().state(&call_id, "caller"),
        Some(DialogState::Ended)
    );
}

#[test]
fn finding_5_a_strangers_invite_draws_one_small_stateless_answer() {
    let now = Instant::now();
    let (mut p, _) = node_with_phones(now);
    let before = p.transactions();
    // The request of the report: 389 bytes, no credentials.
    let request = invite("alice", "bob", 6666, "amplify");
    let size = Message::Request(request.clone()).to_bytes().len();
    let mut answered = 0;
    let mut actions = p.handle_request(now, T0_MS, stranger(6666), Transport::Udp, request);
    // Every timer the node would run, for a minute.
    for s in 1..=64 {
        actions.extend(p.handle_timeout(now + Duration::from_secs(s), T0_MS + s * 1000));
    }
    for t in sent(&actions) {
        assert_eq!(t.peer, stranger(6666));
        answered += t.message.to_bytes().len();
    }
    assert_eq!(sent(&actions).len(), 1, "one answer, never retransmitted");
    println!("{size} bytes drew {answered} bytes back");
    assert!(
        answered <= 3 * size,
        "{answered} bytes drawn by {size} bytes"
    );
    assert!(p.transactions().0 <= before.0);
}

#[test]
fn finding_5_spoofed_invites_do_not_fill_the_transaction_table() {
    let now = Instant::now();
    let (mut p, _) = node_with_phones(now);
    let before = p.transactions();
    for i in 0..2_000u16 {
        let from = SocketAddr::from(([127, 1, (i >> 8) as u8, i as u8], 5060));
        p.handle_request(
            now,
            T0_MS,
            from,
            Transport::Udp,
            invite("alice", "bob", 5060, &format!("s{i}")),
        );
    }
    assert_eq!(p.transactions(), before);
    // alice still calls bob.
    let (_, actions) = call_from_phone(&mut p, now, "alice", "bob", 6001, "after");
    assert!(sent(&actions).iter().any(|t| t.peer == phone(7001)));
}

#[test]
fn finding_6_one_bad_phone_does_not_lock_out_its_neighbours() {
    let now = Instant::now();
    let mut p = proxy();
    // alice's phone has a wrong password: it locks out alice, from there.
    for i in 0..SIP_AUTH_FAILURE_BURST {
        authorized(
            &mut p,
            now,
            6001,
            invite("alice", "carol", 6001, &format!("wrong{i}")),
            "alice",
            b"wrong",
        );
    }
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(6001),
        Transport::Udp,
        invite("alice", "carol", 6001, "locked"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 403);
    // bob behind the same address (one NAT) calls as usual.
    let (_, actions) = call_from_phone(&mut p, now, "bob", "carol", 6002, "neighbour");
    assert!(
        actions.iter().any(|a| matches!(a, Action::Locate { .. })),
        "{actions:?}"
    );
    // One source guessing many accounts is stopped all the same.
    let mut q = proxy();
    let mut refused = 0;
    for i in 0..(2 * crate::limits::SIP_AUTH_FAILURE_BURST_PER_SOURCE) {
        let user = if i % 2 == 0 { "alice" } else { "bob" };
        let actions = q.handle_request(
            now,
            T0_MS,
            phone(6001),
            Transport::Udp,
            invite(user, "carol", 6001, &format!("g{i}")),
        );
        let challenge = response_of(sent(&actions)[0]).clone();
        if challenge.code == 403 {
            refused += 1;
            continue;
        }
        let mut again = invite(user, "carol", 6001, &format!("g{i}-a"));
        let creds = answer_challenge(&challenge, user, b"guess", "INVITE", &again.uri.to_string());
        again.headers.push(HeaderName::ProxyAuthorization, creds);
        q.handle_request(now, T0_MS, phone(6001), Transport::Udp, again);
    }
    assert!(refused > 0, "the per-source budget stopped the guessing");
}

#[test]
fn finding_9_final_answers_the_proxy_makes_carry_a_to_tag() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "carol", 6001, "t480");
    let Some(Action::Locate { lookup, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    let actions = p.located(now, *lookup, Located::Nodes(vec![node(2)]));
    let transmit = sent(&actions)[0].clone();
    let actions = p.send_failed(now, &transmit);
    let r = response_of(sent(&actions)[0]);
    assert_eq!(r.code, 480);
    assert!(
        r.headers.get(&HeaderName::To).unwrap().contains(";tag="),
        "{r:?}"
    );
    let (_, actions) = call_from_phone(&mut p, now, "alice", "dave", 6001, "t408");
    let Some(Action::Locate { lookup, .. }) = actions.last() else {
        panic!("{actions:?}")
    };
    p.located(now, *lookup, Located::Nodes(vec![node(3)]));
    let actions = p.handle_timeout(now + Duration::from_secs(33), T0_MS);
    let r = sent(&actions)
        .into_iter()
        .map(response_of)
        .find(|r| r.code == 408)
        .expect("408");
    assert!(
        r.headers.get(&HeaderName::To).unwrap().contains(";tag="),
        "{r:?}"
    );
    // Stateless refusals too, the same tag for a retransmission.
    let stray = |p: &mut Proxy| {
        let mut r = invite("alice", "bob", 6666, "x");
        r.headers
            .set(HeaderName::To, format!("<{}>;tag=zz", aor("bob")));
        let actions = p.handle_request(now, T0_MS, stranger(1), Transport::Udp, r);
        response_of(sent(&actions)[0])
            .headers
            .get(&HeaderName::To)
            .unwrap()
            .to_owned()
    };
    assert_eq!(stray(&mut p), stray(&mut p));
}

// What the review of the dialog layer found (each failed before its fix).

#[test]
fn review_a_node_that_knows_a_call_id_cannot_join_that_calls_media() {
    let now = Instant::now();
    let (mut p, media) = node_with_phones(now);
    alice_calls_bob(&mut p, now, "victim");
    let mut evil = with_sdp(
        invite("mallory", "alice", 9, "evil"),
        sdp("10.9.9.9", 30000),
    );
    evil.headers.set(HeaderName::CallId, "call-victim");
    evil.headers
        .set(HeaderName::From, format!("<{}>;tag=evil", aor("mallory")));
    let actions = p.handle_request(now, T0_MS, UNRESOLVED, Transport::Overlay(node(3)), evil);
    assert!(
        sent(&actions).iter().all(|t| t.peer != phone(6001)),
        "{actions:?}"
    );
    let mut out = Vec::new();
    let header = crate::sip::media::DatagramHeader {
        tag: crate::sip::media::tag_of("call-victim"),
        stream: 0,
        component: crate::sip::media::Component::Rtp,
    };
    let _ = media
        .0
        .lock()
        .unwrap()
        .table
        .node_packet(now, node(3), header, &mut out);
    assert!(out.is_empty(), "node 3's datagram went to {out:?}");
    assert_eq!(media.open_blocks(), 2, "the call's ports are untouched");
}

#[test]
fn review_an_overlay_node_cannot_make_a_phone_account_busy() {
    let now = Instant::now();
    let (mut p, _media) = node_with_phones(now);
    for i in 0..crate::limits::SIP_MAX_DIALOGS_PER_ACCOUNT {
        let ring = invite("mallory", "bob", 9, &format!("ring{i}"));
        let _ = p.handle_request(now, T0_MS, UNRESOLVED, Transport::Overlay(node(3)), ring);
    }
    let (_, actions) = call_from_phone(&mut p, now, "bob", "alice", 7001, "out");
    assert!(
        sent(&actions).iter().any(|t| t.peer == phone(6001)),
        "bob's own call reached alice"
    );
}

#[test]
fn review_a_phone_whose_invite_went_over_tcp_hangs_up_over_udp() {
    let now = Instant::now();
    let (mut p, _media) = node_with_phones(now);
    let req = invite("alice", "bob", 6001, "tcpcall");
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Tcp, req.clone());
    let challenge = response_of(sent(&actions)[0]).clone();
    let mut again = req;
    again.headers.set(
        HeaderName::Via,
        "SIP/2.0/TCP 127.0.0.1:6001;branch=z9hG4bKtcpcall-2",
    );
    again.headers.set(HeaderName::CSeq, "2 INVITE");
    let creds = answer_challenge(&challenge, "alice", b"pw", "INVITE", &again.uri.to_string());
    again.headers.push(HeaderName::ProxyAuthorization, creds);
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Tcp, again);
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("reached bob");
    let _ = p.handle_response(now, phone(7001), Transport::Udp, answer(&to_bob, 200));
    let bye = parse_request(&format!(
        "BYE sip:bob@127.0.0.1:7001 SIP/2.0\nVia: SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKbye1\n\
         From: <{a}>;tag=caller\nTo: <{b}>;tag=callee\nCall-ID: call-tcpcall\nCSeq: 3 BYE\n\
         Max-Forwards: 70\nContent-Length: 0\n\n",
        a = aor("alice"),
        b = aor("bob")
    ));
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, bye);
    assert!(
        sent(&actions).iter().any(|t| t.peer == phone(7001)),
        "alice's BYE over UDP reached bob"
    );
}

#[test]
fn review_a_retry_with_the_same_call_id_and_from_tag_goes_through() {
    let now = Instant::now();
    let (mut p, _media) = node_with_phones(now);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "bob", 6001, "retry");
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("reached bob");
    let _ = p.handle_response(now, phone(7001), Transport::Udp, answer(&to_bob, 422));
    let mut again = invite("alice", "bob", 6001, "retry");
    again.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKretry-second",
    );
    again.headers.set(HeaderName::CSeq, "3 INVITE");
    let (_, actions) = authorized(&mut p, now, 6001, again, "alice", b"pw");
    assert!(
        sent(&actions).iter().any(|t| t.peer == phone(7001)),
        "the retry reached bob"
    );
}

#[test]
fn review_a_call_refused_at_this_node_leaves_no_dialog_behind() {
    let now = Instant::now();
    let (mut p, _media) = node_with_phones(now);
    let before = p.dialogs().len();
    for i in 0..100 {
        let mut inv = invite("mallory", "bob", 9, &format!("fill{i}"));
        inv.headers
            .set(HeaderName::ContentType, "multipart/mixed;boundary=x");
        inv.body = b"--x--\r\n".to_vec();
        let actions = p.handle_request(now, T0_MS, UNRESOLVED, Transport::Overlay(node(3)), inv);
        assert!(sent(&actions)
            .iter()
            .any(|t| matches!(t.message.as_ref(), Message::Response(r) if r.code == 488)));
    }
    assert_eq!(p.dialogs().len(), before, "refused calls do not linger");
}

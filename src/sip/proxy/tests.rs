//! The proxy's decisions, with injected instants: no sockets, no sleeps.

use super::*;
use crate::identity::SecretKey;
use crate::limits::SIP_AUTH_FAILURE_BURST;
use crate::sip::digest::{response as digest, Algorithm, DigestSecret};
use crate::sip::registrar::{Account, DEFAULT_ALGORITHMS};

const DOMAIN: &str = "lab.example";
const T0_MS: u64 = 1_750_000_000_000;

fn node(seed: u8) -> NodeId {
    SecretKey::from_seed(&[seed; 32]).public().node_id()
}

fn aor(user: &str) -> String {
    format!("sip:{user}@{DOMAIN}")
}

fn phone(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A proxy of node 1 at 127.0.0.1:5060 serving alice and bob.
fn proxy() -> Proxy {
    let mut p = Proxy::new(node(1), DOMAIN, phone(5060), [9; 32]);
    let accounts = ["alice", "bob"]
        .into_iter()
        .map(|u| Account {
            aor: aor(u),
            secret: DigestSecret::from_password(u, DOMAIN, b"pw"),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
        })
        .collect();
    p.registrar_mut().set_accounts(accounts);
    p
}

fn parse_request(text: &str) -> Request {
    match Message::parse(text.replace('\n', "\r\n").as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

fn sent(actions: &[Action]) -> Vec<&Transmit> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(t) => Some(t),
            _ => None,
        })
        .collect()
}

fn response_of(t: &Transmit) -> &Response {
    match t.message.as_ref() {
        Message::Response(r) => r,
        Message::Request(r) => panic!("a request: {}", r.method),
    }
}

fn request_of(t: &Transmit) -> &Request {
    match t.message.as_ref() {
        Message::Request(r) => r,
        Message::Response(r) => panic!("a response: {}", r.code),
    }
}

/// Registers `user`'s phone at `port` (through the digest challenge).
fn register(p: &mut Proxy, now: Instant, user: &str, port: u16) {
    let reg = |cseq: u32, auth: &str| {
        parse_request(&format!(
            "REGISTER sip:{DOMAIN} SIP/2.0\n\
             Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-r{port}-{cseq}\n\
             From: <{a}>;tag=r\nTo: <{a}>\nCall-ID: reg-{port}\nCSeq: {cseq} REGISTER\n\
             Contact: <sip:{user}@127.0.0.1:{port}>\n{auth}Content-Length: 0\n\n",
            a = aor(user)
        ))
    };
    let actions = p.handle_request(now, T0_MS, phone(port), Transport::Udp, reg(1, ""));
    let challenge = response_of(sent(&actions)[0]).clone();
    assert_eq!(challenge.code, 401);
    let auth = format!(
        "Authorization: {}\n",
        answer_challenge(
            &challenge,
            user,
            b"pw",
            "REGISTER",
            &format!("sip:{DOMAIN}")
        )
    );
    let actions = p.handle_request(now, T0_MS, phone(port), Transport::Udp, reg(2, &auth));
    // The AOR's first phone is published before the 200; another phone
    // of an AOR the overlay already knows here is answered at once.
    let done = match actions.first() {
        Some(Action::Publish {
            reply: Some(id), ..
        }) => p.published(now, *id, true),
        _ => actions,
    };
    assert_eq!(response_of(sent(&done)[0]).code, 200);
}

/// The credentials (a header value) that answer `challenge`'s first
/// SHA-256 challenge, for `user` with `password`.
fn answer_challenge(
    challenge: &Response,
    user: &str,
    password: &[u8],
    method: &str,
    uri: &str,
) -> String {
    let header = challenge
        .headers
        .get(&HeaderName::WwwAuthenticate)
        .or_else(|| challenge.headers.get(&HeaderName::ProxyAuthenticate))
        .unwrap();
    let start = header.find("nonce=\"").unwrap() + 7;
    let nonce = &header[start..start + header[start..].find('"').unwrap()];
    let secret = DigestSecret::from_password(user, DOMAIN, password);
    let answer = digest(
        Algorithm::Sha256,
        secret.ha1(Algorithm::Sha256),
        nonce,
        "00000001",
        "c",
        method,
        uri,
    );
    format!(
        "Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{answer}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\""
    )
}

/// Sends `request` from the phone at `port`, answers the 407 as
/// `auth_user` with `password` (a new transaction: new branch, next
/// CSeq) and returns the request as sent the second time and what the
/// proxy did with it.
fn authorized(
    p: &mut Proxy,
    now: Instant,
    port: u16,
    request: Request,
    auth_user: &str,
    password: &[u8],
) -> (Request, Vec<Action>) {
    let actions = p.handle_request(now, T0_MS, phone(port), Transport::Udp, request.clone());
    let challenge = response_of(sent(&actions)[0]).clone();
    assert_eq!(challenge.code, 407, "{challenge:?}");
    assert!(challenge
        .headers
        .get(&HeaderName::ProxyAuthenticate)
        .is_some());
    let mut again = request;
    let via = again.headers.get(&HeaderName::Via).unwrap().to_owned();
    again.headers.set(HeaderName::Via, format!("{via}-auth"));
    let cseq = again.headers.get(&HeaderName::CSeq).unwrap().to_owned();
    let (number, method) = cseq.split_once(' ').unwrap();
    let next = number.parse::<u32>().unwrap() + 1;
    again
        .headers
        .set(HeaderName::CSeq, format!("{next} {method}"));
    let credentials = answer_challenge(
        &challenge,
        auth_user,
        password,
        again.method.as_str(),
        &again.uri.to_string(),
    );
    again
        .headers
        .push(HeaderName::ProxyAuthorization, credentials);
    let actions = p.handle_request(now, T0_MS, phone(port), Transport::Udp, again.clone());
    (again, actions)
}

/// An INVITE from `from`'s phone at `port`, answered with its digest.
fn call_from_phone(
    p: &mut Proxy,
    now: Instant,
    from: &str,
    to: &str,
    port: u16,
    branch: &str,
) -> (Request, Vec<Action>) {
    authorized(p, now, port, invite(from, to, port, branch), from, b"pw")
}

fn invite(from: &str, to: &str, port: u16, branch: &str) -> Request {
    parse_request(&format!(
        "INVITE {t} SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\n\
         From: <{f}>;tag=caller\nTo: <{t}>\nCall-ID: call-{branch}\nCSeq: 1 INVITE\n\
         Contact: <sip:{from}@127.0.0.1:{port}>\nMax-Forwards: 70\n\
         P-Asserted-Identity: <sip:ceo@{DOMAIN}>\nContent-Length: 0\n\n",
        f = aor(from),
        t = aor(to)
    ))
}

/// A response to `request` as the next hop writes it.
fn answer(request: &Request, code: u16) -> Response {
    let mut r = request.reply(code, Some("callee"));
    r.headers.remove(&HeaderName::Server);
    r
}

#[test]
fn a_call_to_a_remote_aor_is_located_forwarded_and_answered_back() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "carol", 6001, "inv1");
    // 100 Trying at once, and a lookup of carol.
    assert_eq!(response_of(sent(&actions)[0]).code, 100);
    let Some(Action::Locate { lookup, aor: found }) = actions.last() else {
        panic!("{actions:?}");
    };
    assert_eq!(found, &aor("carol"));
    // Carol is at node 2: the INVITE goes there, Record-Routed and with
    // this node's Via on top, the phone's claims of identity removed.
    let actions = p.located(now, *lookup, Located::Nodes(vec![node(1), node(2)]));
    let out = sent(&actions);
    assert_eq!(out.len(), 1, "not to itself: {actions:?}");
    assert_eq!(out[0].transport, Transport::Overlay(node(2)));
    let forwarded = request_of(out[0]).clone();
    let rr = forwarded.headers.get(&HeaderName::RecordRoute).unwrap();
    assert!(rr.contains(&format!("{NODE_PARAM}={}", node(1))), "{rr}");
    // Only this node's Via leaves it: nothing in the request names the
    // phone's address (its Via stays here, its Contact is a token).
    let vias = forwarded.headers.values(&HeaderName::Via).unwrap();
    assert_eq!(vias.len(), 1, "{vias:?}");
    // Between nodes the Via names the overlay's transport, QUIC.
    assert!(vias[0].starts_with("SIP/2.0/QUIC 127.0.0.1:5060;branch=z9hG4bK-p2p-"));
    let wire =
        String::from_utf8_lossy(&Message::Request(forwarded.clone()).to_bytes()).into_owned();
    assert!(!wire.contains("127.0.0.1:6001"), "{wire}");
    assert_eq!(forwarded.max_forwards(), Some(69));
    assert_eq!(forwarded.headers.get(&HeaderName::PAssertedIdentity), None);
    assert_eq!(
        forwarded.headers.get(&HeaderName::ProxyAuthorization),
        None,
        "the phone's credentials stay at its node"
    );

    // 180 then 200 come back from node 2; each reaches the phone with
    // this node's Via gone.
    for code in [180, 200] {
        let actions = p.handle_response(
            now,
            UNRESOLVED,
            Transport::Overlay(node(2)),
            answer(&forwarded, code),
        );
        let out = sent(&actions);
        assert_eq!(out.len(), 1, "{code}: {actions:?}");
        assert_eq!(out[0].peer, phone(6001));
        let r = response_of(out[0]);
        assert_eq!(r.code, code);
        // The phone's own Via, back as it sent it.
        assert_eq!(
            r.headers.values(&HeaderName::Via).unwrap(),
            vec!["SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKinv1-auth"]
        );
    }
    // The phone's ACK follows the Route set: this node, then node 2.
    let ack = parse_request(&format!(
        "ACK sip:carol@127.0.0.1:7000 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKack1\n\
         Route: <sip:127.0.0.1:5060;lr;{NODE_PARAM}={}>, <sip:127.0.0.2:5060;lr;{NODE_PARAM}={}>\n\
         From: <{}>;tag=caller\nTo: <{}>;tag=callee\nCall-ID: call-inv1\nCSeq: 2 ACK\n\
         Max-Forwards: 70\nContent-Length: 0\n\n",
        node(1),
        node(2),
        aor("alice"),
        aor("carol")
    ));
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, ack);
    let out = sent(&actions);
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].transport, Transport::Overlay(node(2)));
    let routes = request_of(out[0])
        .headers
        .values(&HeaderName::Route)
        .unwrap();
    assert_eq!(routes.len(), 1, "its own Route was removed: {routes:?}");
}

#[test]
fn failed_lookups_and_branches_give_404_480_and_408() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    // A callee per call: a located callee is cached.
    let call = |p: &mut Proxy, branch: &str| {
        let callee = format!("carol-{branch}");
        let (_, actions) = call_from_phone(p, now, "alice", &callee, 6001, branch);
        match actions.last() {
            Some(Action::Locate { lookup, .. }) => *lookup,
            other => panic!("{other:?}"),
        }
    };
    let final_code = |actions: &[Action]| {
        sent(actions)
            .into_iter()
            .filter(|t| matches!(t.message.as_ref(), Message::Response(_)))
            .map(|t| response_of(t).code)
            .next_back()
    };
    let l = call(&mut p, "a");
    assert_eq!(final_code(&p.located(now, l, Located::NotFound)), Some(404));
    let l = call(&mut p, "b");
    assert_eq!(
        final_code(&p.located(now, l, Located::NoLiveEntry)),
        Some(480)
    );
    // The only node listed is this one (a stale entry): 480.
    let l = call(&mut p, "c");
    assert_eq!(
        final_code(&p.located(now, l, Located::Nodes(vec![node(1)]))),
        Some(480)
    );
    // The callee's node cannot be reached: 480.
    let l = call(&mut p, "d");
    let actions = p.located(now, l, Located::Nodes(vec![node(2)]));
    let transmit = sent(&actions)[0].clone();
    assert_eq!(final_code(&p.send_failed(now, &transmit)), Some(480));
    // Nobody answers: after Timer B (32 s), 408.
    let l = call(&mut p, "e");
    p.located(now, l, Located::Nodes(vec![node(3)]));
    let late = now + Duration::from_secs(33);
    assert_eq!(final_code(&p.handle_timeout(late, T0_MS)), Some(408));
}

#[test]
fn phones_call_out_only_as_an_aor_they_prove_by_digest() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    let locates = |actions: &[Action]| actions.iter().any(|a| matches!(a, Action::Locate { .. }));
    // From its registered address, but no credentials: challenged (407),
    // not located.
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(6001),
        Transport::Udp,
        invite("alice", "carol", 6001, "nocreds"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 407);
    assert!(!locates(&actions));
    // Bob's AOR with alice's credentials: 403.
    let (_, actions) = authorized(
        &mut p,
        now,
        6001,
        invite("bob", "carol", 6001, "asbob"),
        "alice",
        b"pw",
    );
    let refused = response_of(sent(&actions)[0]);
    assert_eq!(refused.code, 403);
    assert!(!locates(&actions));
    // An AOR this node does not serve: 403 at once, no challenge.
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(6001),
        Transport::Udp,
        invite("mallory", "carol", 6001, "foreign"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 403);
    // A wrong password is challenged again and counted.
    let (_, actions) = authorized(
        &mut p,
        now,
        6001,
        invite("alice", "carol", 6001, "wrongpw"),
        "alice",
        b"not-pw",
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 407);
    assert_eq!(p.registrar().stats().auth_failures, 1);
    // The right one, from an address alice never registered from: the
    // digest is what counts, not the source.
    let (_, actions) = call_from_phone(&mut p, now, "alice", "carol", 6099, "elsewhere");
    assert!(locates(&actions), "{actions:?}");
    assert_eq!(p.registrar().stats().calls_authorized, 1);
}

#[test]
fn a_preloaded_route_does_not_skip_authentication() {
    let now = Instant::now();
    let mut p = proxy();
    let mut routed = invite("alice", "carol", 6001, "preloaded");
    routed.headers.push(
        HeaderName::Route,
        format!("<sip:127.0.0.2:5060;lr;{NODE_PARAM}={}>", node(2)),
    );
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, routed);
    let out = sent(&actions);
    assert_eq!(out.len(), 1, "{actions:?}");
    assert_eq!(response_of(out[0]).code, 407);
}

#[test]
fn a_bad_password_flood_locks_the_source_out_of_calls_too() {
    let now = Instant::now();
    let mut p = proxy();
    for i in 0..SIP_AUTH_FAILURE_BURST {
        let (_, actions) = authorized(
            &mut p,
            now,
            6001,
            invite("alice", "carol", 6001, &format!("guess{i}")),
            "alice",
            b"guess",
        );
        assert_eq!(response_of(sent(&actions)[0]).code, 407);
    }
    // Even the right password is refused now, from that address only.
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(6001),
        Transport::Udp,
        invite("alice", "carol", 6001, "locked"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 403);
    assert_eq!(p.registrar().stats().locked_out, 1);
    let other = SocketAddr::from(([127, 0, 0, 9], 6001));
    let actions = p.handle_request(
        now,
        T0_MS,
        other,
        Transport::Udp,
        invite("alice", "carol", 6001, "other"),
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 407);
}

#[test]
fn a_call_from_the_overlay_forks_to_the_local_phones_and_the_best_answer_wins() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "bob", 7001);
    register(&mut p, now, "bob", 7002);
    let from_node = Transport::Overlay(node(2));
    let mut call = invite("alice", "bob", 5062, "fork1");
    // As node 2 forwards it: its Via on top.
    call.headers.push_front(
        HeaderName::Via,
        "SIP/2.0/TCP 127.0.0.2:5060;branch=z9hG4bK-p2p-n2",
    );
    let actions = p.handle_request(now, T0_MS, phone(5062), from_node, call);
    let out = sent(&actions);
    // One INVITE to each phone (no 100 over the reliable overlay).
    assert!(out.iter().all(|t| t.transport != from_node), "{actions:?}");
    let branches: Vec<Request> = out.iter().map(|t| request_of(t).clone()).collect();
    let sent_to: Vec<SocketAddr> = out.iter().map(|t| t.peer).collect();
    let mut peers: Vec<SocketAddr> = out.iter().map(|t| t.peer).collect();
    peers.sort();
    assert_eq!(peers, vec![phone(7001), phone(7002)]);
    assert!(branches
        .iter()
        .all(|b| b.uri.to_string().starts_with("sip:bob@127.0.0.1:700")));
    // One phone is busy, the other declines: nothing goes up until both
    // answered, then the best (6xx over 4xx).
    let first = p.handle_response(now, sent_to[0], Transport::Udp, answer(&branches[0], 486));
    assert!(
        sent(&first).iter().all(|t| t.transport != from_node),
        "{first:?}"
    );
    let second = p.handle_response(now, sent_to[1], Transport::Udp, answer(&branches[1], 603));
    let up: Vec<&Transmit> = sent(&second)
        .into_iter()
        .filter(|t| t.transport == from_node)
        .collect();
    assert_eq!(up.len(), 1);
    assert_eq!(response_of(up[0]).code, 603);
}

#[test]
fn a_cancel_is_answered_and_passed_to_the_pending_branches() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    register(&mut p, now, "bob", 7001);
    let (call, actions) = call_from_phone(&mut p, now, "alice", "bob", 6001, "c1");
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("forwarded to bob's phone");
    let mut cancel = call.clone();
    cancel.method = Method::Cancel;
    cancel.headers.set(HeaderName::CSeq, "2 CANCEL");
    cancel.headers.remove(&HeaderName::ProxyAuthorization);
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, cancel);
    let out = sent(&actions);
    assert_eq!(response_of(out[0]).code, 200);
    let passed = request_of(out[1]);
    assert_eq!(passed.method, Method::Cancel);
    assert_eq!(out[1].peer, phone(7001));
    assert_eq!(
        passed.headers.values(&HeaderName::Via).unwrap()[0],
        to_bob.headers.values(&HeaderName::Via).unwrap()[0],
        "a CANCEL has the branch of the INVITE it cancels"
    );
    // A CANCEL for nothing: 481.
    let mut stray = invite("alice", "bob", 6001, "nothing");
    stray.method = Method::Cancel;
    stray.headers.set(HeaderName::CSeq, "1 CANCEL");
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, stray);
    assert_eq!(response_of(sent(&actions)[0]).code, 481);
}

#[test]
fn max_forwards_and_unroutable_requests_are_answered() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "bob", 7001);
    let mut looped = invite("alice", "bob", 5062, "loop");
    looped.headers.set(HeaderName::MaxForwards, "0");
    let actions = p.handle_request(now, T0_MS, phone(5062), Transport::Overlay(node(2)), looped);
    assert_eq!(response_of(sent(&actions)[0]).code, 483);
    // From the overlay, for a phone no longer here: 480.
    let gone = invite("alice", "dave", 5062, "gone");
    let actions = p.handle_request(now, T0_MS, phone(5062), Transport::Overlay(node(2)), gone);
    assert_eq!(response_of(sent(&actions)[0]).code, 480);
    // A request for another domain: 404, never relayed.
    let mut elsewhere = invite("bob", "bob", 7001, "else");
    elsewhere.uri = SipUri::parse("sip:bob@example.org").unwrap();
    let (_, actions) = authorized(&mut p, now, 7001, elsewhere, "bob", b"pw");
    assert_eq!(response_of(sent(&actions)[0]).code, 404);
}

#[test]
fn the_callers_node_signs_and_the_callees_node_asserts_or_refuses() {
    let now = Instant::now();
    let key = Arc::new(crate::sip::identity::Signer {
        key: SecretKey::from_seed(&[42; 32]),
        cert: None,
    });
    let alice = crate::overlay::record::self_certifying_aor(&key.key.public().user_id(), DOMAIN);
    let user = alice
        .strip_prefix("sip:")
        .and_then(|a| a.split('@').next())
        .unwrap()
        .to_owned();
    // Node 1 serves alice (self-certifying), node 2 serves bob.
    let mut a = Proxy::new(node(1), DOMAIN, phone(5060), [9; 32]);
    a.registrar_mut().set_accounts(vec![Account {
        aor: alice.clone(),
        secret: DigestSecret::from_password(&user, DOMAIN, b"pw"),
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
    }]);
    a.set_signers([(alice.clone(), key.clone())].into_iter().collect());
    register(&mut a, now, &user, 6001);
    let mut b = Proxy::new(node(2), DOMAIN, phone(5062), [8; 32]);
    b.registrar_mut().set_accounts(vec![Account {
        aor: aor("bob"),
        secret: DigestSecret::from_password("bob", DOMAIN, b"pw"),
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
    }]);
    register(&mut b, now, "bob", 7001);

    let (_, actions) = authorized(
        &mut a,
        now,
        6001,
        invite(&user, "bob", 6001, "id1"),
        &user,
        b"pw",
    );
    let Some(Action::Locate { lookup, .. }) = actions.last() else {
        panic!("{actions:?}");
    };
    let actions = a.located(now, *lookup, Located::Nodes(vec![node(2)]));
    let signed = request_of(sent(&actions)[0]).clone();
    assert!(signed.headers.get(&HeaderName::Identity).is_some());

    // At node 2: bob's phone learns who calls, as verified.
    let deliver = |b: &mut Proxy, request: Request| {
        b.handle_request(
            now,
            T0_MS + 1_000,
            phone(5060),
            Transport::Overlay(node(1)),
            request,
        )
    };
    let actions = deliver(&mut b, signed.clone());
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("forwarded to bob");
    assert_eq!(
        to_bob.headers.get(&HeaderName::PAssertedIdentity),
        Some(format!("<{alice}>").as_str())
    );
    // A node that changes the callee (or anything signed): 438.
    let mut forged = signed.clone();
    forged.headers.set(HeaderName::CallId, "another-call");
    forged.headers.set(
        HeaderName::Via,
        "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-forged",
    );
    let actions = deliver(&mut b, forged);
    assert_eq!(response_of(sent(&actions)[0]).code, 438);
    // A node that sends no Identity, or a PAI of its own: the call goes
    // through, unverified.
    let mut bare = signed.clone();
    bare.headers.remove(&HeaderName::Identity);
    // (Another call: the first one's dialog is held here.)
    bare.headers.set(HeaderName::CallId, "an-unsigned-call");
    bare.headers.set(
        HeaderName::Via,
        "SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-bare",
    );
    bare.headers
        .push(HeaderName::PAssertedIdentity, "<sip:ceo@lab.example>");
    let actions = deliver(&mut b, bare);
    let to_bob = sent(&actions)
        .into_iter()
        .find(|t| t.peer == phone(7001))
        .map(|t| request_of(t).clone())
        .expect("forwarded to bob, unverified");
    assert_eq!(to_bob.headers.get(&HeaderName::PAssertedIdentity), None);
}

#[test]
fn a_located_callee_is_not_looked_up_again_for_a_while() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    let call = |p: &mut Proxy, at: Instant, branch: &str| {
        call_from_phone(p, at, "alice", "carol", 6001, branch).1
    };
    let first = call(&mut p, now, "k1");
    let Some(Action::Locate { lookup, .. }) = first.last() else {
        panic!("{first:?}");
    };
    p.located(now, *lookup, Located::Nodes(vec![node(2)]));
    // Within the TTL: straight to node 2.
    let second = call(&mut p, now + Duration::from_secs(1), "k2");
    assert!(!second.iter().any(|a| matches!(a, Action::Locate { .. })));
    assert!(sent(&second)
        .iter()
        .any(|t| t.transport == Transport::Overlay(node(2))));
    // After it: looked up again. A failed lookup is never cached.
    let third = call(&mut p, now + LOCATION_CACHE_TTL, "k3");
    assert!(matches!(third.last(), Some(Action::Locate { .. })));
}

mod mwi;
mod outside;
mod userdata;
mod voicemail;

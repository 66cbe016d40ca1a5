//! The registrar's decisions, with injected times and no sockets.

use super::*;
use crate::sip::digest::response;
use crate::sip::Message;

const DOMAIN: &str = "p2psip";
const ALICE: &str = "sip:alice@p2psip";
const BOB: &str = "sip:bob@p2psip";
const T0: u64 = 1_750_000_000_000;

fn registrar() -> Registrar {
    let mut r = Registrar::new(DOMAIN, [5; 32]);
    r.set_local_ip("127.0.0.1".parse().unwrap());
    let accounts = [("alice", ALICE, "alice-pw"), ("bob", BOB, "bob-pw")]
        .into_iter()
        .map(|(user, aor, pw)| Account {
            aor: aor.into(),
            secret: DigestSecret::from_password(user, DOMAIN, pw.as_bytes()),
            algorithms: DEFAULT_ALGORITHMS.to_vec(),
        })
        .collect();
    assert!(r.set_accounts(accounts).is_empty());
    r
}

fn phone(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A REGISTER for `aor` with `extra` header lines.
fn register(aor: &str, cseq: u32, extra: &str) -> Request {
    let text = format!(
        "REGISTER sip:{DOMAIN} SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK-{cseq}\r\n\
         From: <{aor}>;tag=f1\r\nTo: <{aor}>\r\nCall-ID: reg-1\r\n\
         CSeq: {cseq} REGISTER\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    );
    match Message::parse(text.as_bytes()).unwrap() {
        Message::Request(r) => r,
        Message::Response(_) => unreachable!(),
    }
}

/// The nonce of the challenge for `algorithm` in a 401.
fn nonce(response: &Response, algorithm: Algorithm) -> String {
    let challenge = response
        .headers
        .all(&HeaderName::WwwAuthenticate)
        .find(|c| c.contains(&format!("algorithm={}", algorithm.as_str())))
        .unwrap();
    let start = challenge.find("nonce=\"").unwrap() + 7;
    let rest = &challenge[start..];
    rest[..rest.find('"').unwrap()].to_owned()
}

/// The Authorization line a phone sends for `user` with `password`.
fn authorization(user: &str, password: &str, nonce: &str, nc: u32, alg: Algorithm) -> String {
    let secret = DigestSecret::from_password(user, DOMAIN, password.as_bytes());
    let nc = format!("{nc:08x}");
    let uri = format!("sip:{DOMAIN}");
    let digest = response(alg, secret.ha1(alg), nonce, &nc, "cn", "REGISTER", &uri);
    format!(
        "Authorization: Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", \
         uri=\"{uri}\", response=\"{digest}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"cn\"\r\n",
        alg.as_str()
    )
}

fn answer(outcome: Registered) -> Response {
    match outcome {
        Registered::Answer(r) => r,
        Registered::Changed { response, .. } => response,
    }
}

/// Registers alice's phone at `port` for `expires` seconds, through the
/// challenge, at `now`.
fn bind(r: &mut Registrar, now: u64, port: u16, cseq: u32, expires: u64) -> Registered {
    let challenge =
        answer(r.register(now, phone(port), Transport::Udp, &register(ALICE, cseq, "")));
    assert_eq!(challenge.code, 401);
    let n = nonce(&challenge, Algorithm::Sha256);
    let extra = format!(
        "{}Contact: <sip:alice@127.0.0.1:{port}>;expires={expires}\r\n",
        authorization("alice", "alice-pw", &n, 1, Algorithm::Sha256)
    );
    r.register(
        now,
        phone(port),
        Transport::Udp,
        &register(ALICE, cseq + 1, &extra),
    )
}

#[test]
fn a_phone_registers_after_the_challenge_and_the_overlay_learns_the_node_only() {
    let mut r = registrar();
    let challenge = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 1, "")));
    assert_eq!(challenge.code, 401);
    let algorithms: Vec<&str> = challenge
        .headers
        .all(&HeaderName::WwwAuthenticate)
        .collect();
    assert_eq!(algorithms.len(), 2);
    assert!(
        algorithms[0].contains("SHA-256"),
        "SHA-256 first: {algorithms:?}"
    );
    assert!(algorithms[1].contains("MD5"));
    assert!(challenge
        .headers
        .get(&HeaderName::To)
        .unwrap()
        .contains(";tag="));

    match bind(&mut r, T0, 5070, 1, 600) {
        Registered::Changed {
            response,
            aor,
            change,
        } => {
            assert_eq!(response.code, 200);
            assert_eq!(
                response.headers.get(&HeaderName::Contact),
                Some("<sip:alice@127.0.0.1:5070>;expires=600")
            );
            assert_eq!(aor, ALICE);
            assert_eq!(
                change,
                DeviceChange::Bind {
                    contacts: Vec::new(),
                    expires: T0 / 1000 + 600
                },
                "the phone's contact stays on the node"
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(r.bindings(ALICE).len(), 1);
    assert_eq!(r.bindings(ALICE)[0].source, phone(5070));
    assert_eq!(r.stats().accepted, 1);
}

#[test]
fn md5_works_for_old_phones() {
    let mut r = registrar();
    let challenge = answer(r.register(T0, phone(5070), Transport::Tcp, &register(ALICE, 1, "")));
    let n = nonce(&challenge, Algorithm::Md5);
    let extra = format!(
        "{}Contact: <sip:alice@127.0.0.1:5070;transport=tcp>\r\n",
        authorization("alice", "alice-pw", &n, 1, Algorithm::Md5)
    );
    let ok = answer(r.register(T0, phone(5070), Transport::Tcp, &register(ALICE, 2, &extra)));
    assert_eq!(ok.code, 200);
    assert_eq!(
        ok.headers.get(&HeaderName::Contact),
        Some("<sip:alice@127.0.0.1:5070;transport=tcp>;expires=3600"),
        "no expires asked: the default, capped"
    );
    assert_eq!(r.bindings(ALICE)[0].transport, Transport::Tcp);
}

#[test]
fn a_foreign_aor_or_domain_is_refused_with_a_warning() {
    let mut r = registrar();
    let foreign = answer(r.register(
        T0,
        phone(5070),
        Transport::Udp,
        &register("sip:carol@p2psip", 1, ""),
    ));
    assert_eq!(foreign.code, 403);
    assert!(foreign
        .headers
        .get(&HeaderName::Warning)
        .unwrap()
        .contains("does not serve"));

    let mut elsewhere = register(ALICE, 1, "");
    elsewhere.uri = SipUri::parse("sip:example.org").unwrap();
    let refused = answer(r.register(T0, phone(5070), Transport::Udp, &elsewhere));
    assert_eq!(refused.code, 403);

    // The listener's own address names the registrar too.
    let mut by_ip = register(ALICE, 1, "");
    by_ip.uri = SipUri::parse("sip:127.0.0.1:5060").unwrap();
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &by_ip)).code,
        401
    );
}

#[test]
fn bad_passwords_are_counted_and_lock_the_source_out_but_not_others() {
    let mut r = registrar();
    for attempt in 0..SIP_AUTH_FAILURE_BURST {
        let challenge =
            answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 1, "")));
        let n = nonce(&challenge, Algorithm::Sha256);
        let extra = authorization("alice", "wrong", &n, 1, Algorithm::Sha256);
        let refused = answer(r.register(
            T0,
            phone(5070),
            Transport::Udp,
            &register(ALICE, 2 + attempt, &extra),
        ));
        assert_eq!(refused.code, 401, "attempt {attempt}");
    }
    assert_eq!(r.stats().auth_failures, u64::from(SIP_AUTH_FAILURE_BURST));
    let locked = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 9, "")));
    assert_eq!(locked.code, 403);
    assert_eq!(r.stats().locked_out, 1);
    // Another address (another phone) still registers.
    let other = SocketAddr::from(([127, 0, 0, 2], 5070));
    let challenge = answer(r.register(T0, other, Transport::Udp, &register(BOB, 1, "")));
    let n = nonce(&challenge, Algorithm::Sha256);
    let extra = format!(
        "{}Contact: <sip:bob@127.0.0.2:5070>\r\n",
        authorization("bob", "bob-pw", &n, 1, Algorithm::Sha256)
    );
    assert_eq!(
        answer(r.register(T0, other, Transport::Udp, &register(BOB, 2, &extra))).code,
        200
    );
    // The locked-out source may try again once the bucket refilled.
    let later = T0 + SIP_AUTH_FAILURE_REFILL.as_millis() as u64;
    assert_eq!(
        answer(r.register(later, phone(5070), Transport::Udp, &register(ALICE, 10, ""))).code,
        401
    );
}

#[test]
fn another_accounts_credentials_and_replays_are_refused() {
    let mut r = registrar();
    let challenge = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 1, "")));
    let n = nonce(&challenge, Algorithm::Sha256);
    // Bob's good password does not register alice.
    let bobs = authorization("bob", "bob-pw", &n, 1, Algorithm::Sha256);
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 2, &bobs))).code,
        403
    );
    // A good answer works once; replayed (same nc), it is refused.
    let good = format!(
        "{}Contact: <sip:alice@127.0.0.1:5070>\r\n",
        authorization("alice", "alice-pw", &n, 1, Algorithm::Sha256)
    );
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 3, &good))).code,
        200
    );
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 4, &good))).code,
        401
    );
    // An old nonce with the right password: stale, not a failure.
    let failures = r.stats().auth_failures;
    let late = T0 + crate::limits::SIP_NONCE_LIFETIME.as_millis() as u64 + 1;
    let again = authorization("alice", "alice-pw", &n, 2, Algorithm::Sha256);
    let stale = answer(r.register(
        late,
        phone(5070),
        Transport::Udp,
        &register(ALICE, 5, &again),
    ));
    assert_eq!(stale.code, 401);
    assert!(stale
        .headers
        .get(&HeaderName::WwwAuthenticate)
        .unwrap()
        .contains("stale=true"));
    assert_eq!(r.stats().auth_failures, failures);
}

/// What the overlay is told: the node bound until `secs` after T0.
fn bound_until(secs: u64) -> DeviceChange {
    DeviceChange::Bind {
        contacts: Vec::new(),
        expires: T0 / 1000 + secs,
    }
}

#[test]
fn the_overlay_hears_of_an_aor_when_its_entry_is_missing_half_spent_or_withdrawn() {
    let mut r = registrar();
    let s = |secs: u64| T0 + secs * 1000;
    let published = |outcome: Registered| match outcome {
        Registered::Changed {
            response, change, ..
        } => {
            assert_eq!(response.code, 200);
            Some(change)
        }
        Registered::Answer(response) => {
            assert_eq!(response.code, 200);
            None
        }
    };
    // The first phone: announced, for at least SIP_ANNOUNCE_MIN_LIFE.
    assert_eq!(
        published(bind(&mut r, T0, 5070, 1, 60)),
        Some(bound_until(600))
    );
    // Its refreshes, and a second phone of alice, change nothing the
    // overlay holds: answered at once, nothing published.
    assert_eq!(published(bind(&mut r, s(30), 5070, 3, 60)), None);
    assert_eq!(published(bind(&mut r, s(30), 5071, 1, 600)), None);
    assert!(r.expire(s(200)).is_empty());
    // Half spent (wanted: until 30 + 600 s; 299 s of 600 left): announced
    // again by the timer, once.
    assert_eq!(r.expire(s(301)), vec![(ALICE.to_owned(), bound_until(901))]);
    assert!(r.expire(s(302)).is_empty());
    // The first phone lapses: the second remains, the entry stays.
    assert!(r.expire(s(500)).is_empty());
    assert_eq!(r.bindings(ALICE).len(), 1);
    // A failed publication is forgotten: the next REGISTER publishes.
    r.announce_failed(ALICE);
    assert_eq!(
        published(bind(&mut r, s(501), 5071, 3, 600)),
        Some(bound_until(1101))
    );
    // The last phone unregisters: the node is withdrawn.
    match bind(&mut r, s(502), 5071, 5, 0) {
        Registered::Changed {
            response, change, ..
        } => {
            assert_eq!(response.headers.get(&HeaderName::Contact), None);
            assert_eq!(change, DeviceChange::Unbind);
        }
        other => panic!("{other:?}"),
    }
    assert!(r.bindings(ALICE).is_empty());
    assert_eq!(r.next_expiry(), None);
    // Bound again, then lapsed: withdrawn by the timer.
    assert!(published(bind(&mut r, s(600), 5072, 1, 60)).is_some());
    assert_eq!(
        r.expire(s(661)),
        vec![(ALICE.to_owned(), DeviceChange::Unbind)]
    );
}

#[test]
fn too_brief_out_of_order_and_wildcard_rules() {
    let mut r = registrar();
    let brief = answer(bind(&mut r, T0, 5070, 1, 10));
    assert_eq!(brief.code, 423);
    assert_eq!(brief.headers.get(&HeaderName::MinExpires), Some("60"));
    assert!(matches!(
        bind(&mut r, T0, 5070, 5, 600),
        Registered::Changed { .. }
    ));
    // An older CSeq in the same Call-ID: refused, the binding unchanged.
    let old = answer(bind(&mut r, T0, 5070, 2, 900));
    assert_eq!(old.code, 500);
    assert_eq!(r.bindings(ALICE)[0].expires_ms, T0 + 600_000);
    // Contact: * without Expires: 0 is malformed; with it, everything goes.
    let challenge = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 20, "")));
    let n = nonce(&challenge, Algorithm::Sha256);
    let auth = authorization("alice", "alice-pw", &n, 1, Algorithm::Sha256);
    let star = format!("{auth}Contact: *\r\n");
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 21, &star))).code,
        400
    );
    let auth = authorization("alice", "alice-pw", &n, 2, Algorithm::Sha256);
    let star = format!("{auth}Contact: *\r\nExpires: 0\r\n");
    match r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 22, &star)) {
        Registered::Changed { change, .. } => assert_eq!(change, DeviceChange::Unbind),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_flood_from_one_address_is_dropped_while_another_registers() {
    let mut r = registrar();
    let flooder = phone(5070).ip();
    let admitted = (0..200).filter(|_| r.admit_register(T0, flooder)).count();
    assert_eq!(admitted, SIP_REGISTER_BURST as usize);
    assert_eq!(r.stats().rate_limited, 200 - u64::from(SIP_REGISTER_BURST));
    let other = SocketAddr::from(([127, 0, 0, 2], 5070));
    assert!(r.admit_register(T0, other.ip()));
    // The flooder's budget comes back at the sustained rate.
    let later = T0 + SIP_REGISTER_REFILL.as_millis() as u64;
    assert!(r.admit_register(later, flooder));
    assert!(!r.admit_register(later, flooder));
    assert_eq!(
        answer(r.register(T0, other, Transport::Udp, &register(BOB, 1, ""))).code,
        401
    );
}

#[test]
fn dropping_an_account_unbinds_its_aor() {
    let mut r = registrar();
    assert!(matches!(
        bind(&mut r, T0, 5070, 1, 600),
        Registered::Changed { .. }
    ));
    let only_bob = vec![Account {
        aor: BOB.into(),
        secret: DigestSecret::from_password("bob", DOMAIN, b"bob-pw"),
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
    }];
    assert_eq!(
        r.set_accounts(only_bob),
        vec![(ALICE.to_owned(), DeviceChange::Unbind)]
    );
    assert!(r.bindings(ALICE).is_empty());
}

#[test]
fn aors_are_normalised() {
    let uri = SipUri::parse("sip:Alice@P2PSIP:5060;transport=tcp").unwrap();
    assert_eq!(aor_of(&uri).as_deref(), Some("sip:Alice@p2psip"));
    assert_eq!(aor_of(&SipUri::parse("sip:p2psip").unwrap()), None);
}

#[test]
fn an_account_chooses_its_algorithms_and_their_order() {
    let mut r = registrar();
    let md5_first = vec![Account {
        aor: ALICE.into(),
        secret: DigestSecret::from_password("alice", DOMAIN, b"alice-pw"),
        algorithms: vec![Algorithm::Md5, Algorithm::Sha256],
    }];
    r.set_accounts(md5_first);
    let challenge = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 1, "")));
    let first = challenge.headers.get(&HeaderName::WwwAuthenticate).unwrap();
    assert!(first.contains("algorithm=MD5"), "{first}");

    let sha_only = vec![Account {
        aor: ALICE.into(),
        secret: DigestSecret::from_password("alice", DOMAIN, b"alice-pw"),
        algorithms: vec![Algorithm::Sha256],
    }];
    r.set_accounts(sha_only);
    let challenge = answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 2, "")));
    assert_eq!(
        challenge.headers.all(&HeaderName::WwwAuthenticate).count(),
        1
    );
    // An MD5 answer, right password and all, is refused.
    let n = nonce(&challenge, Algorithm::Sha256);
    let md5 = authorization("alice", "alice-pw", &n, 1, Algorithm::Md5);
    assert_eq!(
        answer(r.register(T0, phone(5070), Transport::Udp, &register(ALICE, 3, &md5))).code,
        401
    );
    assert_eq!(r.stats().auth_failures, 1);
}

#[test]
fn the_operator_unbinds_one_phone_then_the_rest_and_the_overlay_hears_of_the_last() {
    let mut r = registrar();
    let s = |secs: u64| T0 + secs * 1000;
    assert!(matches!(
        bind(&mut r, T0, 5070, 1, 600),
        Registered::Changed { .. }
    ));
    assert!(matches!(
        bind(&mut r, T0, 5071, 3, 600),
        Registered::Answer(_)
    ));
    assert_eq!(r.bindings(ALICE).len(), 2);

    // One phone, named as `sip users` prints it (angle brackets allowed):
    // it goes, the other stays, the overlay entry stays.
    let one = r
        .unbind(ALICE, Some("<sip:alice@127.0.0.1:5070>"), s(10))
        .unwrap();
    assert_eq!(one.change, None);
    assert_eq!(one.removed.len(), 1);
    assert_eq!(one.removed[0].uri, "sip:alice@127.0.0.1:5070");
    assert_eq!(one.removed[0].source, phone(5070));
    assert_eq!(one.removed[0].transport, Transport::Udp);
    assert_eq!(one.removed[0].expires_ms, T0 + 600_000);
    let left: Vec<&str> = r.bindings(ALICE).iter().map(|b| b.uri.as_str()).collect();
    assert_eq!(left, ["sip:alice@127.0.0.1:5071"]);

    // The same phone again: nothing changes, the error names both.
    let again = r
        .unbind(ALICE, Some("sip:alice@127.0.0.1:5070"), s(11))
        .unwrap_err();
    assert_eq!(
        again,
        UnbindError::NoSuchContact {
            aor: ALICE.into(),
            contact: "sip:alice@127.0.0.1:5070".into()
        }
    );
    assert!(again.to_string().contains(ALICE));
    assert!(again.to_string().contains("sip:alice@127.0.0.1:5070"));
    assert_eq!(r.bindings(ALICE).len(), 1);

    // Every phone: the last goes and the AOR is withdrawn, once.
    let rest = r.unbind(ALICE, None, s(12)).unwrap();
    assert_eq!(rest.change, Some(DeviceChange::Unbind));
    assert_eq!(rest.removed.len(), 1);
    assert_eq!(rest.removed[0].source, phone(5071));
    assert!(r.bindings(ALICE).is_empty());
    assert_eq!(r.all_bindings().count(), 0);
    assert_eq!(r.next_expiry(), None);
    assert!(r.expire(s(700)).is_empty(), "withdrawn once, not twice");
    let none = r.unbind(ALICE, None, s(13)).unwrap_err();
    assert_eq!(none, UnbindError::NotBound { aor: ALICE.into() });
    assert!(none.to_string().contains(ALICE));

    // The phone registers again: the overlay hears of it at once.
    assert!(matches!(
        bind(&mut r, s(20), 5070, 5, 600),
        Registered::Changed { .. }
    ));
}

#[test]
fn unbinding_all_of_an_aor_takes_every_phone_and_touches_no_other_aor() {
    let mut r = registrar();
    bind(&mut r, T0, 5070, 1, 600);
    bind(&mut r, T0, 5071, 3, 600);
    let all = r.unbind(ALICE, None, T0 + 1).unwrap();
    let mut removed: Vec<u16> = all.removed.iter().map(|b| b.source.port()).collect();
    removed.sort_unstable();
    assert_eq!(removed, [5070, 5071]);
    assert_eq!(all.change, Some(DeviceChange::Unbind));
    // bob has no phone; an AOR not served has none either.
    assert_eq!(
        r.unbind(BOB, None, T0 + 2),
        Err(UnbindError::NotBound { aor: BOB.into() })
    );
    assert!(r.unbind("sip:carol@p2psip", None, T0 + 2).is_err());
}

#[test]
fn a_lapsed_binding_is_not_unbound_and_still_lapses_into_a_withdrawal() {
    let mut r = registrar();
    bind(&mut r, T0, 5070, 1, 60);
    let late = T0 + 61_000;
    assert_eq!(
        r.unbind(ALICE, None, late),
        Err(UnbindError::NotBound { aor: ALICE.into() })
    );
    assert_eq!(
        r.unbind(ALICE, Some("sip:alice@127.0.0.1:5070"), late),
        Err(UnbindError::NotBound { aor: ALICE.into() })
    );
    // The refusal changed nothing: the timer still withdraws the AOR.
    assert_eq!(
        r.expire(late),
        vec![(ALICE.to_owned(), DeviceChange::Unbind)]
    );
}

//! The user's data in the call path: dialling by name, the callee's
//! settings, the caller's name as the callee knows it.

use super::*;
use crate::userdata::{AddressBook, Settings};

const BOB_HEX: &str = "b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0";

fn with_data(p: &mut Proxy) {
    p.set_user_data_accounts([aor("alice"), aor("bob")].into_iter().collect());
}

fn data(book: &[(&str, &str)], settings: &[(&str, &str)]) -> UserData {
    let mut d = UserData {
        book: AddressBook::new(),
        settings: Settings::new(),
    };
    for (n, a) in book {
        d.book.add(n, a).unwrap();
    }
    for (k, v) in settings {
        d.settings.set(k, v).unwrap();
    }
    d
}

fn reads(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::ReadUserData { account } => Some(account.as_str()),
            _ => None,
        })
        .collect()
}

fn locates(actions: &[Action]) -> Vec<&str> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Locate { aor, .. } => Some(aor.as_str()),
            _ => None,
        })
        .collect()
}

#[test]
fn a_name_alice_dialled_is_the_aor_her_book_gives_it_read_once() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    let bob = format!("sip:{BOB_HEX}@{DOMAIN}");
    let (_, actions) = call_from_phone(&mut p, now, "alice", "bobby", 6001, "n1");
    // 100 at once, then alice's data is read; nothing is located yet.
    assert_eq!(response_of(sent(&actions)[0]).code, 100);
    assert_eq!(reads(&actions), [aor("alice")]);
    assert!(locates(&actions).is_empty());
    let actions = p.user_data(now, &aor("alice"), data(&[("Bobby", &bob)], &[]));
    assert_eq!(locates(&actions), [bob.as_str()]);
    // The next call by name costs no read: the book is at hand.
    let later = now + Duration::from_secs(5);
    let (_, actions) = call_from_phone(&mut p, later, "alice", "BOBBY", 6001, "n2");
    assert!(reads(&actions).is_empty(), "{actions:?}");
    assert_eq!(locates(&actions), [bob.as_str()]);
    // After the cache's time it is read again.
    let (_, actions) = call_from_phone(&mut p, now + USER_DATA_TTL, "alice", "bobby", 6001, "n3");
    assert_eq!(reads(&actions), [aor("alice")]);
}

#[test]
fn a_name_not_in_the_book_is_404_saying_so() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "zed", 6001, "z1");
    assert_eq!(reads(&actions), [aor("alice")]);
    let actions = p.user_data(now, &aor("alice"), data(&[], &[]));
    let out = sent(&actions);
    let r = response_of(out[0]);
    assert_eq!(r.code, 404);
    assert_eq!(
        r.headers.get(&HeaderName::Warning),
        Some(format!("399 {DOMAIN} \"no contact named zed\"").as_str())
    );
    assert!(locates(&actions).is_empty(), "a name is no AOR here");
}

#[test]
fn a_call_waits_for_data_at_most_so_long_then_goes_on_without() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "zed", 6001, "w1");
    assert_eq!(reads(&actions), [aor("alice")]);
    assert_eq!(
        p.poll_timeout().map(|t| t <= now + USER_DATA_WAIT),
        Some(true)
    );
    let actions = p.handle_timeout(now + USER_DATA_WAIT, T0_MS + 10_000);
    let codes: Vec<u16> = sent(&actions)
        .iter()
        .filter(|t| matches!(t.message.as_ref(), Message::Response(_)))
        .map(|t| response_of(t).code)
        .collect();
    assert!(codes.contains(&404), "{actions:?}");
}

/// A call from node 2 (the caller's node) for alice, served here, with
/// `caller` as its verified caller (asserted as a local phone would be:
/// bob's phone is here too).
fn call_to_alice(p: &mut Proxy, now: Instant, branch: &str) -> Vec<Action> {
    register(p, now, "alice", 6001);
    register(p, now, "bob", 7001);
    let (_, actions) = call_from_phone(p, now, "bob", "alice", 7001, branch);
    actions
}

#[test]
fn the_callees_settings_decline_block_or_forward_before_anything_rings() {
    let now = Instant::now();
    let bob = aor("bob");
    let carol = format!("sip:{BOB_HEX}@{DOMAIN}");
    for (settings, book, want) in [
        (vec![("do_not_disturb", "on")], vec![], Some(486)),
        (vec![("blocked", "b")], vec![("b", bob.as_str())], Some(603)),
        (vec![("blocked", bob.as_str())], vec![], Some(603)),
        (
            vec![("forward_always", "c")],
            vec![("c", carol.as_str())],
            None,
        ),
    ] {
        let mut p = proxy();
        with_data(&mut p);
        let actions = call_to_alice(&mut p, now, "s1");
        assert_eq!(reads(&actions), [aor("alice")], "{actions:?}");
        let actions = p.user_data(now, &aor("alice"), data(&book, &settings));
        let rung = sent(&actions)
            .iter()
            .any(|t| t.peer == phone(6001) && matches!(t.message.as_ref(), Message::Request(_)));
        assert!(!rung, "alice's phone must not ring: {settings:?}");
        match want {
            Some(code) => {
                let r = response_of(sent(&actions)[0]);
                assert_eq!(r.code, code, "{settings:?}");
            }
            None => assert_eq!(locates(&actions), [carol.as_str()], "{settings:?}"),
        }
    }
}

#[test]
fn the_callees_phone_shows_the_callees_own_name_for_the_caller() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    let actions = call_to_alice(&mut p, now, "d1");
    assert_eq!(reads(&actions), [aor("alice")]);
    let actions = p.user_data(now, &aor("alice"), data(&[("Bobby.B", &aor("bob"))], &[]));
    let to_phone: Vec<&Transmit> = sent(&actions)
        .into_iter()
        .filter(|t| t.peer == phone(6001))
        .collect();
    assert_eq!(to_phone.len(), 1, "{actions:?}");
    let invite = request_of(to_phone[0]);
    assert_eq!(
        invite.headers.get(&HeaderName::From),
        Some(format!("\"Bobby.B\" <{}>;tag=caller", aor("bob")).as_str())
    );
    // Who calls is still asserted from the verified AOR, not the name.
    assert_eq!(
        invite.headers.get(&HeaderName::PAssertedIdentity),
        Some(format!("<{}>", aor("bob")).as_str())
    );
}

#[test]
fn users_without_an_encryption_key_never_wait() {
    let now = Instant::now();
    let mut p = proxy();
    // No data accounts: a name is looked up as an AOR, as before.
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "bobby", 6001, "k1");
    assert!(reads(&actions).is_empty());
    assert_eq!(locates(&actions), [aor("bobby")]);
}

#[test]
fn a_call_cancelled_while_it_waits_for_data_rings_nobody() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    let (invite, actions) = {
        register(&mut p, now, "alice", 6001);
        register(&mut p, now, "bob", 7001);
        call_from_phone(&mut p, now, "bob", "alice", 7001, "c1")
    };
    assert_eq!(reads(&actions), [aor("alice")]);
    let mut cancel = invite.clone();
    cancel.method = Method::Cancel;
    let cseq = cancel.headers.get(&HeaderName::CSeq).unwrap().to_owned();
    let number = cseq.split_once(' ').unwrap().0.to_owned();
    cancel
        .headers
        .set(HeaderName::CSeq, format!("{number} CANCEL"));
    cancel.headers.remove(&HeaderName::ProxyAuthorization);
    let actions = p.handle_request(now, T0_MS, phone(7001), Transport::Udp, cancel);
    let codes: Vec<u16> = sent(&actions).iter().map(|t| response_of(t).code).collect();
    assert_eq!(codes, [200, 487], "{actions:?}");
    // The data arrives: nothing rings.
    let actions = p.user_data(now, &aor("alice"), data(&[], &[]));
    assert!(sent(&actions).is_empty(), "{actions:?}");
}

#[test]
fn a_name_for_a_user_served_here_meets_that_users_settings() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    register(&mut p, now, "bob", 7001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "bee", 6001, "l1");
    assert_eq!(reads(&actions), [aor("alice")]);
    // alice's book names bob, served here: bob's settings are read next.
    let actions = p.user_data(now, &aor("alice"), data(&[("bee", &aor("bob"))], &[]));
    assert_eq!(reads(&actions), [aor("bob")], "{actions:?}");
    let actions = p.user_data(now, &aor("bob"), data(&[], &[("do_not_disturb", "on")]));
    let rung = sent(&actions).iter().any(|t| t.peer == phone(7001));
    assert!(!rung, "{actions:?}");
    assert_eq!(response_of(sent(&actions)[0]).code, 486);
}

#[test]
fn when_too_many_calls_wait_for_data_the_next_is_refused_not_let_through() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    let from_node = Transport::Overlay(node(2));
    let mut refused = None;
    for i in 0..=SIP_MAX_PARKED {
        let mut call = invite("mallory", "alice", 5062, &format!("flood{i}"));
        call.headers.push_front(
            HeaderName::Via,
            format!("SIP/2.0/QUIC 127.0.0.2:5060;branch=z9hG4bK-p2p-f{i}"),
        );
        let actions = p.handle_request(now, T0_MS, phone(5062), from_node, call);
        assert!(
            !sent(&actions).iter().any(|t| t.peer == phone(6001)),
            "alice's phone rang before her settings were read"
        );
        if let Some(t) = sent(&actions).first() {
            refused = Some((i, response_of(t).code));
        }
    }
    assert_eq!(refused, Some((SIP_MAX_PARKED, 503)));
}

#[test]
fn a_call_that_gave_up_waiting_goes_on_with_the_last_known_settings() {
    let now = Instant::now();
    let mut p = proxy();
    with_data(&mut p);
    register(&mut p, now, "alice", 6001);
    register(&mut p, now, "bob", 7001);
    // alice's settings were read once (do-not-disturb)...
    let (_, actions) = call_from_phone(&mut p, now, "bob", "alice", 7001, "g1");
    assert_eq!(reads(&actions), [aor("alice")]);
    let actions = p.user_data(now, &aor("alice"), data(&[], &[("do_not_disturb", "on")]));
    assert_eq!(response_of(sent(&actions)[0]).code, 486);
    // ...and long after, a read never comes back: the call still meets
    // them rather than none.
    let later = now + USER_DATA_TTL * 4;
    let (_, actions) = call_from_phone(&mut p, later, "bob", "alice", 7001, "g2");
    assert_eq!(reads(&actions), [aor("alice")]);
    let actions = p.handle_timeout(later + USER_DATA_WAIT, T0_MS + 200_000);
    let codes: Vec<u16> = sent(&actions)
        .iter()
        .filter(|t| matches!(t.message.as_ref(), Message::Response(_)))
        .map(|t| response_of(t).code)
        .collect();
    assert!(codes.contains(&486), "{actions:?}");
    assert!(!sent(&actions).iter().any(|t| t.peer == phone(6001)));
}

//! Calls to the callee's voice mail: after the phones rang for the
//! callee's `voicemail_after`, or at once when no phone is reachable.

use super::*;
use crate::userdata::{AddressBook, Settings};

/// Where the node's voicemail agent answers, in these tests.
fn agent() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 5099))
}

fn settings(pairs: &[(&str, &str)]) -> UserData {
    let mut d = UserData {
        book: AddressBook::new(),
        settings: Settings::new(),
    };
    for (k, v) in pairs {
        d.settings.set(k, v).unwrap();
    }
    d
}

/// A proxy with voice mail; bob's phone calls alice, whose phone is
/// registered here and whose settings are `pairs`. Returns what reached
/// alice's phone and the agent.
fn ring_alice(p: &mut Proxy, now: Instant, pairs: &[(&str, &str)]) -> Vec<Action> {
    p.set_user_data_accounts([aor("alice"), aor("bob")].into_iter().collect());
    p.set_voicemail(Some(agent()));
    register(p, now, "alice", 6001);
    register(p, now, "bob", 7001);
    let (_, actions) = call_from_phone(p, now, "bob", "alice", 7001, "vm1");
    assert!(
        actions
            .iter()
            .any(|a| matches!(a, Action::ReadUserData { account } if *account == aor("alice"))),
        "{actions:?}"
    );
    p.user_data(now, &aor("alice"), settings(pairs))
}

fn requests_to(actions: &[Action], to: SocketAddr) -> Vec<&Request> {
    sent(actions)
        .into_iter()
        .filter(|t| t.peer == to)
        .filter_map(|t| match t.message.as_ref() {
            Message::Request(r) => Some(r),
            Message::Response(_) => None,
        })
        .collect()
}

#[test]
fn an_unanswered_call_goes_to_voice_mail_after_the_callees_time() {
    let now = Instant::now();
    let mut p = proxy();
    let actions = ring_alice(&mut p, now, &[("voicemail_after", "7")]);
    let invites = requests_to(&actions, phone(6001));
    assert_eq!(invites.len(), 1, "alice's phone rings first");
    assert_eq!(
        p.poll_timeout().map(|t| t <= now + Duration::from_secs(7)),
        Some(true)
    );
    // Before the deadline nothing moves.
    let early = p.handle_timeout(now + Duration::from_secs(6), T0_MS + 6_000);
    assert!(requests_to(&early, agent()).is_empty(), "{early:?}");
    // At it, the phone is cancelled and the agent gets the call, the
    // caller asserted as verified (bob, this node's own phone).
    let later = now + Duration::from_secs(7);
    let actions = p.handle_timeout(later, T0_MS + 7_000);
    // (Retransmissions of the INVITE aside.)
    let cancels: Vec<&Request> = requests_to(&actions, phone(6001))
        .into_iter()
        .filter(|r| r.method == Method::Cancel)
        .collect();
    assert_eq!(cancels.len(), 1, "{actions:?}");
    let to_agent = requests_to(&actions, agent());
    assert_eq!(to_agent.len(), 1, "{actions:?}");
    let invite = to_agent[0];
    assert_eq!(invite.method, Method::Invite);
    assert_eq!(invite.uri.to_string(), format!("sip:alice@{}", agent()));
    assert_eq!(
        invite.headers.get(&HeaderName::PAssertedIdentity),
        Some(format!("<{}>", aor("bob")).as_str())
    );
    assert!(invite
        .headers
        .get(&HeaderName::RecordRoute)
        .is_some_and(|rr| rr.contains(NODE_PARAM)));
    // Once: the deadline does not fire again (retransmissions aside).
    let branch = invite.headers.get(&HeaderName::Via).map(str::to_owned);
    let again = p.handle_timeout(later + Duration::from_secs(30), T0_MS + 37_000);
    assert!(requests_to(&again, agent()).iter().all(|r| r
        .headers
        .get(&HeaderName::Via)
        .map(str::to_owned)
        == branch));
    // The phone's 487 does not end the call: the agent's branch is open.
    let cancelled = answer(invites[0], 487);
    let actions = p.handle_response(later, phone(6001), Transport::Udp, cancelled);
    let upstream: Vec<u16> = sent(&actions)
        .iter()
        .filter(|t| t.peer == phone(7001))
        .filter_map(|t| match t.message.as_ref() {
            Message::Response(r) => Some(r.code),
            Message::Request(_) => None,
        })
        .collect();
    assert!(!upstream.contains(&487), "{actions:?}");
    // The agent answers: the caller gets its 200.
    let ok = answer(invite, 200);
    let actions = p.handle_response(later, agent(), Transport::Udp, ok);
    let codes: Vec<u16> = sent(&actions)
        .iter()
        .filter(|t| t.peer == phone(7001))
        .map(|t| response_of(t).code)
        .collect();
    assert_eq!(codes, [200], "{actions:?}");
}

#[test]
fn no_voice_mail_when_the_callee_turned_it_off_or_answered() {
    let now = Instant::now();
    let later = now + Duration::from_secs(60);
    // Off: the deadline never comes.
    let mut p = proxy();
    ring_alice(&mut p, now, &[("voicemail", "off")]);
    let actions = p.handle_timeout(later, T0_MS + 60_000);
    assert!(requests_to(&actions, agent()).is_empty(), "{actions:?}");
    // Answered in time: nothing goes to voice mail.
    let mut p = proxy();
    let actions = ring_alice(&mut p, now, &[]);
    let invite = requests_to(&actions, phone(6001))[0].clone();
    let actions = p.handle_response(now, phone(6001), Transport::Udp, answer(&invite, 200));
    assert!(!sent(&actions).is_empty());
    let actions = p.handle_timeout(later, T0_MS + 60_000);
    assert!(requests_to(&actions, agent()).is_empty(), "{actions:?}");
    // No agent at this node: no voice mail either.
    let mut p = proxy();
    let actions = ring_alice(&mut p, now, &[]);
    assert!(!requests_to(&actions, phone(6001)).is_empty());
    p.set_voicemail(None);
    let mut q = proxy();
    q.set_user_data_accounts([aor("alice"), aor("bob")].into_iter().collect());
    register(&mut q, now, "alice", 6001);
    register(&mut q, now, "bob", 7001);
    call_from_phone(&mut q, now, "bob", "alice", 7001, "nv");
    q.user_data(now, &aor("alice"), settings(&[]));
    let actions = q.handle_timeout(later, T0_MS + 60_000);
    assert!(sent(&actions).iter().all(|t| t.peer != agent()));
}

#[test]
fn a_phone_that_cannot_be_reached_sends_the_call_to_voice_mail_at_once() {
    let now = Instant::now();
    let mut p = proxy();
    let actions = ring_alice(&mut p, now, &[("voicemail_after", "300")]);
    let invite = requests_to(&actions, phone(6001))[0].clone();
    // The phone's transaction gives up (408, as Timer B would).
    let timeout = answer(&invite, 408);
    let actions = p.handle_response(now, phone(6001), Transport::Udp, timeout);
    let to_agent = requests_to(&actions, agent());
    assert_eq!(to_agent.len(), 1, "{actions:?}");
    // The caller has no final answer yet.
    assert!(sent(&actions)
        .iter()
        .filter(|t| t.peer == phone(7001))
        .all(|t| response_of(t).code < 200));
    // The agent fails too: now the caller gets the failure.
    let actions = p.handle_response(now, agent(), Transport::Udp, answer(to_agent[0], 503));
    let codes: Vec<u16> = sent(&actions)
        .iter()
        .filter(|t| t.peer == phone(7001))
        .map(|t| response_of(t).code)
        .collect();
    assert_eq!(codes.len(), 1, "{actions:?}");
    assert!(codes[0] >= 400);
}

#[test]
fn a_callee_served_here_with_no_phone_online_gets_voice_mail_from_the_lookup() {
    let now = Instant::now();
    let mut p = proxy();
    p.set_user_data_accounts([aor("alice"), aor("bob")].into_iter().collect());
    p.set_voicemail(Some(agent()));
    register(&mut p, now, "bob", 7001);
    let (_, actions) = call_from_phone(&mut p, now, "bob", "alice", 7001, "nl");
    assert!(!actions.is_empty());
    let actions = p.user_data(now, &aor("alice"), settings(&[]));
    let lookup = actions
        .iter()
        .find_map(|a| match a {
            Action::Locate { lookup, .. } => Some(*lookup),
            _ => None,
        })
        .expect("alice has no phone here: she is looked up");
    let actions = p.located(now, lookup, Located::NoLiveEntry);
    let to_agent = requests_to(&actions, agent());
    assert_eq!(to_agent.len(), 1, "{actions:?}");
    assert_eq!(
        to_agent[0].headers.get(&HeaderName::PAssertedIdentity),
        Some(format!("<{}>", aor("bob")).as_str())
    );
}

#[test]
fn a_phone_calling_voicemail_reaches_the_agent_to_listen_to_its_own_messages() {
    let now = Instant::now();
    let mut p = proxy();
    p.set_user_data_accounts([aor("alice")].into_iter().collect());
    p.set_voicemail(Some(agent()));
    register(&mut p, now, "alice", 6001);
    let (_, actions) = call_from_phone(&mut p, now, "alice", "voicemail", 6001, "pb");
    let to_agent = requests_to(&actions, agent());
    assert_eq!(to_agent.len(), 1, "{actions:?}");
    assert_eq!(
        to_agent[0].uri.to_string(),
        format!("sip:{PLAYBACK_PREFIX}alice@{}", agent())
    );
    // Whose messages: the caller's, as this node asserts it (the phone's
    // own P-Asserted-Identity is not believed).
    assert_eq!(
        to_agent[0].headers.get(&HeaderName::PAssertedIdentity),
        Some(format!("<{}>", aor("alice")).as_str())
    );
    // A node without voice mail, or a user without keys here: the name
    // is no mailbox, it is looked up as any AOR.
    let mut q = proxy();
    q.set_voicemail(Some(agent()));
    register(&mut q, now, "bob", 7001);
    let (_, actions) = call_from_phone(&mut q, now, "bob", "voicemail", 7001, "pc");
    assert!(requests_to(&actions, agent()).is_empty());
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::Locate { aor: found, .. } if *found == aor("voicemail"))));
}

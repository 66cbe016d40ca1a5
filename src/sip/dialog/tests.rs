//! The dialog table's rules, with injected instants: no sockets, no sleeps.

use super::*;
use crate::identity::SecretKey;

fn node(seed: u8) -> NodeId {
    SecretKey::from_seed(&[seed; 32]).public().node_id()
}

fn addr(last: u8, port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, last], port))
}

fn phone(user: &str, last: u8, port: u16) -> Party {
    Party::Phone {
        aor: format!("sip:{user}@lab.example"),
        source: addr(last, port),
        transport: Transport::Udp,
    }
}

/// alice's phone calls node 2; the node answers with tag `t2`.
fn call(d: &mut Dialogs, now: Instant, call_id: &str) {
    d.open(
        now,
        call_id,
        "a1",
        phone("alice", 1, 5070),
        vec![Party::Node(node(2))],
    )
    .unwrap();
    assert!(d.answered(now, call_id, "a1", "t2", &Party::Node(node(2)), true));
}

#[test]
fn a_to_tag_is_not_a_dialog() {
    let d = Dialogs::new();
    let refused = d.authorize("c1", "a1", "anything", addr(9, 5060), Transport::Udp);
    assert_eq!(refused, Err(DialogError::NoDialog));
    assert_eq!(DialogError::NoDialog.code(), 481);
}

#[test]
fn each_side_may_send_only_from_the_party_that_holds_it() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    call(&mut d, now, "c1");
    // The caller's phone, from its own address: to the callee's node.
    let ok = d
        .authorize("c1", "a1", "t2", addr(1, 5070), Transport::Udp)
        .unwrap();
    assert_eq!(ok.side, Side::Caller);
    assert_eq!(ok.to, vec![Party::Node(node(2))]);
    // The callee's node, over its connection: to the caller's phone.
    let ok = d
        .authorize("c1", "t2", "a1", addr(200, 1), Transport::Overlay(node(2)))
        .unwrap();
    assert_eq!(ok.side, Side::Callee);
    assert_eq!(ok.to, vec![phone("alice", 1, 5070)]);
    // The caller's phone from another port, or over TCP, is still it
    // (a NAT's new mapping, RFC 3261 §18.1.1's switch to TCP).
    for (peer, transport) in [
        (addr(1, 5071), Transport::Udp),
        (addr(1, 6000), Transport::Tcp),
    ] {
        assert!(d.authorize("c1", "a1", "t2", peer, transport).is_ok());
    }
    // Strangers: another address over UDP or TCP, another node, the
    // right tags in the wrong order.
    for (peer, transport) in [
        (addr(9, 5070), Transport::Udp),
        (addr(1, 5070), Transport::Overlay(node(3))),
        (addr(9, 5070), Transport::Tcp),
    ] {
        assert_eq!(
            d.authorize("c1", "a1", "t2", peer, transport),
            Err(DialogError::NotAParty),
            "{peer} over {transport:?}"
        );
    }
    assert_eq!(
        d.authorize("c1", "t2", "a1", addr(1, 5070), Transport::Overlay(node(3))),
        Err(DialogError::NotAParty)
    );
    // Tags the dialog never had.
    assert_eq!(
        d.authorize("c1", "a1", "forged", addr(1, 5070), Transport::Udp),
        Err(DialogError::NoDialog)
    );
    assert_eq!(
        d.authorize("c2", "a1", "t2", addr(1, 5070), Transport::Udp),
        Err(DialogError::NoDialog)
    );
}

#[test]
fn only_a_party_the_invite_went_to_joins_the_callee_side() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    d.open(
        now,
        "c1",
        "a1",
        phone("alice", 1, 5070),
        vec![Party::Node(node(2))],
    )
    .unwrap();
    assert!(!d.answered(now, "c1", "a1", "t3", &Party::Node(node(3)), true));
    assert_eq!(d.state("c1", "a1"), Some(DialogState::Early));
    assert!(d.answered(now, "c1", "a1", "t2", &Party::Node(node(2)), false));
    assert_eq!(d.state("c1", "a1"), Some(DialogState::Early));
    assert!(d.answered(now, "c1", "a1", "t2", &Party::Node(node(2)), true));
    assert_eq!(d.state("c1", "a1"), Some(DialogState::Confirmed));
}

#[test]
fn an_ended_dialog_lingers_then_goes_and_its_budget_comes_back() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    call(&mut d, now, "c1");
    assert_eq!(d.of_account("sip:alice@lab.example"), 1);
    assert!(d.live("c1"));
    assert!(d.end(now, "c1", "a1"));
    assert!(!d.end(now, "c1", "a1"), "ends once");
    assert!(!d.live("c1"));
    // Its account's budget comes back at once, not after the linger.
    assert_eq!(d.of_account("sip:alice@lab.example"), 0);
    // Retransmissions still match while it lingers.
    assert!(d
        .authorize("c1", "a1", "t2", addr(1, 5070), Transport::Udp)
        .is_ok());
    assert_eq!(d.next_in(now), Some(SIP_DIALOG_LINGER));
    assert!(d.handle_timeout(now + SIP_DIALOG_LINGER).is_empty());
    assert!(d.is_empty());
    assert_eq!(d.of_account("sip:alice@lab.example"), 0);
}

#[test]
fn early_dialogs_lapse_and_confirmed_ones_last_longer() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    d.open(
        now,
        "early",
        "a1",
        phone("alice", 1, 5070),
        vec![Party::Node(node(2))],
    )
    .unwrap();
    call(&mut d, now, "up");
    let lapsed = d.handle_timeout(now + SIP_DIALOG_EARLY_TIMEOUT);
    assert_eq!(lapsed, vec!["early".to_owned()]);
    assert_eq!(d.len(), 1);
    assert_eq!(
        d.handle_timeout(now + SIP_DIALOG_MAX_AGE),
        vec!["up".to_owned()]
    );
    assert!(d.is_empty());
}

#[test]
fn dialogs_are_bounded_per_account_and_per_source() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    for i in 0..SIP_MAX_DIALOGS_PER_ACCOUNT {
        d.open(now, &format!("c{i}"), "a", phone("alice", 1, 5070), vec![])
            .unwrap();
    }
    let refused = d.open(now, "one-more", "a", phone("alice", 1, 5070), vec![]);
    assert_eq!(
        refused,
        Err(DialogError::AccountBusy("sip:alice@lab.example".into()))
    );
    assert_eq!(refused.unwrap_err().code(), 486);
    // Calls *to* alice do not count against her account: whoever may
    // ring her (any node) could otherwise make her busy for her own calls.
    let to_alice = d.open(
        now,
        "in",
        "n",
        Party::Node(node(2)),
        vec![phone("alice", 1, 5070)],
    );
    assert!(to_alice.is_ok());
    // Bob behind the same address is not alice.
    d.open(now, "bob", "b", phone("bob", 1, 5080), vec![])
        .unwrap();
    // One node may open at most SIP_MAX_DIALOGS_PER_SOURCE.
    for i in 0..SIP_MAX_DIALOGS_PER_SOURCE {
        d.open(now, &format!("n{i}"), "n", Party::Node(node(3)), vec![])
            .unwrap();
    }
    assert_eq!(
        d.open(now, "n-more", "n", Party::Node(node(3)), vec![]),
        Err(DialogError::SourceBusy)
    );
    assert_eq!(
        d.open(now, "n0", "n", Party::Node(node(4)), vec![]),
        Err(DialogError::Exists)
    );
}

#[test]
fn a_call_id_held_by_one_caller_is_not_opened_by_another() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    call(&mut d, now, "c1");
    // Another node, or another account, with the same Call-ID and its own
    // tag would join that call's media (found by Call-ID): refused.
    assert_eq!(
        d.open(
            now,
            "c1",
            "evil",
            Party::Node(node(3)),
            vec![phone("alice", 1, 5070)]
        ),
        Err(DialogError::Exists)
    );
    assert_eq!(
        d.open(now, "c1", "evil", phone("bob", 1, 5080), vec![]),
        Err(DialogError::Exists)
    );
}

#[test]
fn the_same_caller_may_retry_with_the_same_call_id_and_tag_after_a_failure() {
    let now = Instant::now();
    let mut d = Dialogs::new();
    let alice = phone("alice", 1, 5070);
    d.open(now, "c1", "a1", alice.clone(), vec![Party::Node(node(2))])
        .unwrap();
    // Still going: the same identifiers are the same dialog.
    assert_eq!(
        d.open(now, "c1", "a1", alice.clone(), vec![Party::Node(node(2))]),
        Err(DialogError::Exists)
    );
    // Its INVITE failed (a 422, a 407 from downstream): the retry opens.
    d.end(now, "c1", "a1");
    d.open(now, "c1", "a1", alice, vec![Party::Node(node(2))])
        .unwrap();
    assert_eq!(d.state("c1", "a1"), Some(DialogState::Early));
    // A discarded dialog leaves nothing behind.
    d.discard("c1", "a1");
    assert!(d.is_empty());
    assert_eq!(d.of_account("sip:alice@lab.example"), 0);
}

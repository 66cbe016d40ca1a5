//! Message-waiting indication: a phone subscribes to its own account's
//! voice mail and is notified when the counts change.

use super::*;
use crate::sip::proxy::mwi::MailboxCounts;

fn subscribe(from: &str, to: &str, port: u16, branch: &str, event: &str) -> Request {
    parse_request(&format!(
        "SUBSCRIBE {t} SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{branch}\n\
         From: <{f}>;tag=phone\nTo: <{t}>\nCall-ID: sub-{branch}\nCSeq: 1 SUBSCRIBE\n\
         Contact: <sip:{from}@127.0.0.1:{port}>\nMax-Forwards: 70\n\
         Event: {event}\nExpires: 600\nContent-Length: 0\n\n",
        f = aor(from),
        t = aor(to)
    ))
}

fn notifies(actions: &[Action]) -> Vec<&Request> {
    sent(actions)
        .into_iter()
        .filter_map(|t| match t.message.as_ref() {
            Message::Request(r) if r.method == Method::Notify => Some(r),
            _ => None,
        })
        .collect()
}

fn body(r: &Request) -> String {
    String::from_utf8(r.body.clone()).unwrap()
}

#[test]
fn a_phone_subscribes_to_its_own_voice_mail_and_hears_of_new_messages() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    let request = subscribe("alice", "alice", 6001, "s1", "message-summary");
    let (sent_again, actions) = authorized(&mut p, now, 6001, request, "alice", b"pw");
    let ok = response_of(sent(&actions)[0]);
    assert_eq!(ok.code, 200);
    assert_eq!(ok.headers.get(&HeaderName::Expires), Some("600"));
    let our_tag = response_to_tag(ok).unwrap();
    // A NOTIFY at once, to the phone's Contact, with what is known (none).
    let first = notifies(&actions);
    assert_eq!(first.len(), 1, "{actions:?}");
    assert_eq!(first[0].uri.to_string(), "sip:alice@127.0.0.1:6001");
    assert_eq!(
        first[0].headers.get(&HeaderName::Event),
        Some("message-summary")
    );
    assert!(body(first[0]).starts_with("Messages-Waiting: no\r\n"));
    assert!(actions
        .iter()
        .any(|a| matches!(a, Action::ReadMailbox { account } if *account == aor("alice"))));
    // The counts come: yes, 1 new. The same counts again: nothing.
    let counts = MailboxCounts { new: 1, old: 2 };
    let actions = p.mailbox_counts(now, &aor("alice"), counts);
    let n = notifies(&actions);
    assert_eq!(n.len(), 1);
    let text = body(n[0]);
    assert!(text.contains("Messages-Waiting: yes\r\n"), "{text}");
    assert!(text.contains("Voice-Message: 1/2\r\n"), "{text}");
    assert!(text.contains(&format!("Message-Account: {}\r\n", aor("alice"))));
    assert_eq!(
        n[0].headers.get(&HeaderName::From),
        Some(format!("<{}>;tag={our_tag}", aor("alice")).as_str())
    );
    assert!(notifies(&p.mailbox_counts(now, &aor("alice"), counts)).is_empty());
    // bob's counts tell alice's phone nothing.
    assert!(notifies(&p.mailbox_counts(now, &aor("bob"), counts)).is_empty());
    // A refresh from another host is refused; unsubscribing ends it.
    let mut refresh = sent_again.clone();
    refresh
        .headers
        .set(HeaderName::To, format!("<{}>;tag={our_tag}", aor("alice")));
    refresh.headers.set(HeaderName::CSeq, "3 SUBSCRIBE");
    refresh.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.2:6001;branch=z9hG4bKs1-stranger",
    );
    let stranger = SocketAddr::from(([127, 0, 0, 2], 6001));
    let actions = p.handle_request(now, T0_MS, stranger, Transport::Udp, refresh.clone());
    assert_eq!(response_of(sent(&actions)[0]).code, 481);
    refresh.headers.set(
        HeaderName::Via,
        "SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bKs1-bye",
    );
    refresh.headers.set(HeaderName::Expires, "0");
    let actions = p.handle_request(now, T0_MS, phone(6001), Transport::Udp, refresh);
    assert_eq!(response_of(sent(&actions)[0]).code, 200);
    let last = notifies(&actions);
    assert_eq!(last.len(), 1);
    assert!(last[0]
        .headers
        .get(&HeaderName::Other("Subscription-State".into()))
        .is_some_and(|s| s.starts_with("terminated")));
    let counts = MailboxCounts { new: 3, old: 0 };
    assert!(notifies(&p.mailbox_counts(now, &aor("alice"), counts)).is_empty());
}

#[test]
fn only_ones_own_mailbox_only_message_summary_and_subscriptions_lapse() {
    let now = Instant::now();
    let mut p = proxy();
    register(&mut p, now, "alice", 6001);
    // bob's voice mail: not alice's to watch.
    let (_, actions) = authorized(
        &mut p,
        now,
        6001,
        subscribe("alice", "bob", 6001, "o1", "message-summary"),
        "alice",
        b"pw",
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 403);
    assert!(notifies(&actions).is_empty());
    // Another event package is none of the node's business: routed as
    // before (here to alice's phone), not answered.
    let (_, actions) = authorized(
        &mut p,
        now,
        6001,
        subscribe("alice", "alice", 6001, "o2", "presence"),
        "alice",
        b"pw",
    );
    assert!(notifies(&actions).is_empty());
    assert!(
        sent(&actions).iter().any(|t| matches!(
            t.message.as_ref(),
            Message::Request(r) if r.method == Method::Subscribe
        )),
        "{actions:?}"
    );
    // From the overlay: refused.
    let from_node = subscribe("alice", "alice", 6001, "o3", "message-summary");
    let actions = p.handle_request(
        now,
        T0_MS,
        phone(6001),
        Transport::Overlay(node(2)),
        from_node,
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 403);
    // A subscription lapses at its expiry: no NOTIFY after.
    let (_, actions) = authorized(
        &mut p,
        now,
        6001,
        subscribe("alice", "alice", 6001, "o4", "message-summary"),
        "alice",
        b"pw",
    );
    assert_eq!(response_of(sent(&actions)[0]).code, 200);
    let later = now + Duration::from_secs(601);
    p.handle_timeout(later, T0_MS + 601_000);
    let counts = MailboxCounts { new: 1, old: 0 };
    assert!(notifies(&p.mailbox_counts(later, &aor("alice"), counts)).is_empty());
}

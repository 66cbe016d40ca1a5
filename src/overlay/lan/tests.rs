use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};

fn id(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

const LAN: IpAddr = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));

/// The TXT properties a node announces, as the parser sees them.
fn txt(of: &NodeId, overlay: &str) -> Vec<(&'static str, String)> {
    txt_properties(of, overlay)
}

fn heard<'a>(
    props: &'a [(&'static str, String)],
) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> {
    props.iter().map(|(k, v)| (*k, Some(v.as_bytes())))
}

#[test]
fn an_announcement_round_trips_and_is_checked_against_this_node() {
    let props = txt(&id(2), "lab");
    assert_eq!(
        parse_txt(heard(&props), &id(1), "lab", 0),
        Ok(Announced { id: id(2) })
    );
    assert_eq!(
        parse_txt(heard(&props), &id(1), "other", 0),
        Err(LanRefusal::OtherOverlay("lab".into()))
    );
    assert_eq!(
        parse_txt(heard(&props), &id(2), "lab", 0),
        Err(LanRefusal::Own)
    );
    // An id that fails the overlay's puzzle is refused before any dial.
    let need = (id(2).puzzle_bits() + 1) as u8;
    assert!(matches!(
        parse_txt(heard(&props), &id(1), "lab", need),
        Err(LanRefusal::Puzzle { .. })
    ));
}

#[test]
fn malformed_announcements_are_refused_naming_what_is_wrong() {
    let own = id(1);
    let check = |props: &[(&str, Option<&[u8]>)]| {
        parse_txt(props.iter().copied(), &own, "lab", 0).unwrap_err()
    };
    let hex = id(2).to_string();
    let good_id = Some(hex.as_bytes());
    assert_eq!(
        check(&[("id", good_id), ("overlay", Some(b"lab"))]),
        LanRefusal::Missing("v")
    );
    assert_eq!(
        check(&[("v", Some(b"1")), ("overlay", Some(b"lab"))]),
        LanRefusal::Missing("id")
    );
    assert_eq!(
        check(&[("v", Some(b"1")), ("id", good_id), ("overlay", None)]),
        LanRefusal::Missing("overlay")
    );
    assert_eq!(
        check(&[
            ("v", Some(b"2")),
            ("id", good_id),
            ("overlay", Some(b"lab"))
        ]),
        LanRefusal::Version("2".into())
    );
    assert_eq!(
        check(&[
            ("v", Some(b"1")),
            ("id", Some(b"zz")),
            ("overlay", Some(b"lab"))
        ]),
        LanRefusal::BadId
    );
    // Not UTF-8, far too long: cut and escaped, never trusted.
    let long = vec![0xffu8; 300];
    match check(&[("v", Some(b"1")), ("id", good_id), ("overlay", Some(&long))]) {
        LanRefusal::OtherOverlay(name) => assert_eq!(name.chars().count(), 64),
        other => panic!("{other:?}"),
    }
    // The first of a repeated key counts (RFC 6763 §6.4); keys are
    // case-insensitive.
    let props: [(&str, Option<&[u8]>); 4] = [
        ("V", Some(b"1")),
        ("id", good_id),
        ("overlay", Some(b"lab")),
        ("overlay", Some(b"other")),
    ];
    assert_eq!(
        parse_txt(props.iter().copied(), &own, "lab", 0),
        Ok(Announced { id: id(2) })
    );
}

#[test]
fn only_lan_addresses_of_this_nodes_family_are_dialed() {
    let v6_local: IpAddr = "fd00::1".parse().unwrap();
    let lo: IpAddr = Ipv4Addr::LOCALHOST.into();
    let cases: [(&str, IpAddr, bool); 16] = [
        ("10.1.2.3", LAN, true),
        ("172.16.0.1", LAN, true),
        ("192.168.7.7", LAN, true),
        ("169.254.3.4", LAN, true),
        ("100.64.0.1", LAN, true),
        ("100.128.0.1", LAN, false),
        ("8.8.8.8", LAN, false),
        ("0.0.0.0", LAN, false),
        ("224.0.0.251", LAN, false),
        ("255.255.255.255", LAN, false),
        ("127.0.0.1", LAN, false),
        ("127.0.0.2", lo, true),
        ("10.0.0.1", lo, false),
        ("fd12::5", v6_local, true),
        ("fe80::1", v6_local, false),
        ("2001:db8::1", v6_local, false),
    ];
    for (ip, local, want) in cases {
        let ip: IpAddr = ip.parse().unwrap();
        assert_eq!(dialable(ip, local), want, "{ip} from {local}");
    }
    assert!(!dialable(Ipv6Addr::LOCALHOST.into(), lo), "family differs");
    assert!(!dialable("fd12::5".parse().unwrap(), LAN), "family differs");
}

#[test]
fn a_candidate_is_dialed_once_then_backs_off_or_rechecks() {
    let mut c = LanCandidates::new(id(1), "lab", 0, LAN);
    let props = txt(&id(2), "lab");
    let addrs = [addr("192.168.1.20:4433"), addr("8.8.8.8:4433")];
    assert_eq!(c.on_heard(0, "a", heard(&props), addrs), Ok(id(2)));
    let dials = c.due(0, |_| false);
    assert_eq!(
        dials,
        vec![Dial {
            id: id(2),
            addrs: vec![addr("192.168.1.20:4433")]
        }]
    );
    // Not again while it is being dialed, however long that takes.
    assert!(c.due(RETRY_MAX_MS, |_| false).is_empty());
    let mut t = RETRY_MAX_MS;
    c.on_dialed(t, &id(2), false);
    assert!(c.due(t + RETRY_BASE_MS * 2 - 1, |_| false).is_empty());
    t += RETRY_BASE_MS * 2;
    assert_eq!(c.due(t, |_| false).len(), 1);
    // Failures back off exponentially, up to the cap.
    let mut waits = Vec::new();
    for _ in 0..10 {
        c.on_dialed(t, &id(2), false);
        // Heard again, the same: that changes nothing but its age.
        c.on_heard(t, "a", heard(&props), addrs).unwrap();
        let wait = (1..=RETRY_MAX_MS)
            .map(|w| w * 1_000)
            .find(|&w| !c.due(t + w, |_| false).is_empty())
            .unwrap();
        waits.push(wait);
        t += wait;
    }
    assert_eq!(
        waits,
        [8_000, 16_000, 32_000, 64_000, 128_000, 256_000, 300_000, 300_000, 300_000, 300_000]
    );
    // Reached: looked at again only after RECHECK_MS, and not dialed
    // while it is in the routing table.
    c.on_dialed(t, &id(2), true);
    assert!(c.due(t + RECHECK_MS - 1, |_| false).is_empty());
    assert!(c.due(t + RECHECK_MS, |_| true).is_empty());
    assert!(c.due(t + 2 * RECHECK_MS - 1, |_| false).is_empty());
    assert_eq!(c.due(t + 2 * RECHECK_MS, |_| false).len(), 1);
}

#[test]
fn new_addresses_make_a_candidate_due_again() {
    let mut c = LanCandidates::new(id(1), "lab", 0, LAN);
    let props = txt(&id(2), "lab");
    c.on_heard(0, "a", heard(&props), [addr("10.0.0.2:1")])
        .unwrap();
    assert_eq!(c.due(0, |_| false).len(), 1);
    c.on_dialed(0, &id(2), false);
    // The same again: nothing new to try.
    c.on_heard(5, "a", heard(&props), [addr("10.0.0.2:1")])
        .unwrap();
    assert!(c.due(5, |_| false).is_empty());
    c.on_heard(6, "a", heard(&props), [addr("10.0.0.3:1")])
        .unwrap();
    assert_eq!(c.due(6, |_| false)[0].addrs, vec![addr("10.0.0.3:1")]);
}

#[test]
fn announcements_cannot_grow_the_table_or_the_dials_without_bound() {
    let mut c = LanCandidates::new(id(0), "lab", 0, LAN);
    // Many addresses: kept sorted, at most MAX_ADDRS_PER_CANDIDATE, port 0 refused.
    let many: Vec<SocketAddr> = (1..=20)
        .rev()
        .map(|i| addr(&format!("10.0.0.{i}:9")))
        .chain([addr("10.0.0.99:0")])
        .collect();
    c.on_heard(0, "x", heard(&txt(&id(1), "lab")), many)
        .unwrap();
    let dial = c.due(0, |_| false);
    assert_eq!(dial[0].addrs.len(), MAX_ADDRS_PER_CANDIDATE);
    assert_eq!(dial[0].addrs[0], addr("10.0.0.1:9"));
    c.on_dialed(0, &id(1), true);
    // Only public addresses: refused, nothing kept.
    assert_eq!(
        c.on_heard(0, "y", heard(&txt(&id(2), "lab")), [addr("1.1.1.1:9")]),
        Err(LanRefusal::NoAddress)
    );
    // A flood of fresh ids fills the table but never evicts the node
    // that proved itself, and never asks for more than a round's dials.
    for n in 2..=250u8 {
        let props = txt(&id(n), "lab");
        c.on_heard(1, &format!("s{n}"), heard(&props), [addr("10.0.1.1:9")])
            .unwrap();
    }
    assert_eq!(c.len(), MAX_CANDIDATES);
    assert_eq!(c.due(ROUND_MS, |_| false).len(), MAX_DIALS_PER_ROUND);
    // However often it is asked within the round.
    assert!(c.due(ROUND_MS + 1, |_| false).is_empty());
    assert!(c.due(2 * ROUND_MS - 1, |_| false).is_empty());
    assert_eq!(c.due(2 * ROUND_MS, |_| false).len(), MAX_DIALS_PER_ROUND);
    c.on_removed("x");
    assert_eq!(
        c.len(),
        MAX_CANDIDATES - 1,
        "the reached one was still there"
    );
    // Once every candidate has been reached, newcomers are refused.
    let mut full = LanCandidates::new(id(0), "lab", 0, LAN);
    for n in 1..=MAX_CANDIDATES as u8 {
        let props = txt(&id(n), "lab");
        full.on_heard(0, "s", heard(&props), [addr("10.0.1.1:9")])
            .unwrap();
        full.on_dialed(0, &id(n), true);
    }
    let props = txt(&id(200), "lab");
    assert_eq!(
        full.on_heard(0, "t", heard(&props), [addr("10.0.1.1:9")]),
        Err(LanRefusal::Full)
    );
}

#[test]
fn candidates_not_heard_of_for_long_are_forgotten() {
    let mut c = LanCandidates::new(id(1), "lab", 0, LAN);
    c.on_heard(0, "a", heard(&txt(&id(2), "lab")), [addr("10.0.0.2:1")])
        .unwrap();
    assert!(c.due(CANDIDATE_TTL_MS, |_| false).is_empty());
    assert!(c.is_empty());
}

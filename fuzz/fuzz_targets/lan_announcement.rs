//! What LAN discovery hears: DNS-SD TXT properties and addresses from
//! anybody on the link. Never a panic; the candidate table stays within
//! its bounds, and a dial is only ever asked for at an address this node
//! would dial (LAN ranges of its own family), at most a round's worth.
//!
//! Input: announcements, each a length byte and that many bytes of TXT
//! rdata (strings prefixed by their length, `key=value`, as RFC 6763
//! writes them), then a byte counting addresses, each 4 bytes of IPv4
//! and 2 of port.
#![no_main]
use libfuzzer_sys::fuzz_target;
use p2psip::identity::NodeId;
use p2psip::overlay::lan::{
    dialable, LanCandidates, MAX_ADDRS_PER_CANDIDATE, MAX_CANDIDATES, MAX_DIALS_PER_ROUND,
};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Splits TXT rdata into (key, value) pairs as a DNS-SD client does.
fn txt(mut rdata: &[u8]) -> Vec<(&str, Option<&[u8]>)> {
    let mut out = Vec::new();
    while let Some((&len, rest)) = rdata.split_first() {
        let len = usize::from(len).min(rest.len());
        let (entry, rest) = rest.split_at(len);
        rdata = rest;
        let (key, value) = match entry.iter().position(|&b| b == b'=') {
            Some(eq) => (&entry[..eq], Some(&entry[eq + 1..])),
            None => (entry, None),
        };
        if let Ok(key) = std::str::from_utf8(key) {
            out.push((key, value));
        }
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let local = IpAddr::V4(Ipv4Addr::new(192, 168, 1, 10));
    let mut table = LanCandidates::new(NodeId::from_bytes([7; 32]), "lab", 0, local);
    let mut rest = data;
    let mut now = 0u64;
    while let Some((&len, tail)) = rest.split_first() {
        let len = usize::from(len).min(tail.len());
        let (rdata, tail) = tail.split_at(len);
        let (count, mut tail) = match tail.split_first() {
            Some((&c, t)) => (usize::from(c % 8), t),
            None => (0, tail),
        };
        let mut addrs = Vec::new();
        for _ in 0..count {
            if tail.len() < 6 {
                break;
            }
            let (a, t) = tail.split_at(6);
            tail = t;
            let ip = Ipv4Addr::new(a[0], a[1], a[2], a[3]);
            addrs.push(SocketAddr::new(ip.into(), u16::from_be_bytes([a[4], a[5]])));
        }
        rest = tail;
        now += 1_000;
        let _ = table.on_heard(now, "fuzz", txt(rdata), addrs);
        assert!(table.len() <= MAX_CANDIDATES);
        let dials = table.due(now, |_| false);
        assert!(dials.len() <= MAX_DIALS_PER_ROUND);
        for dial in dials {
            assert!(!dial.addrs.is_empty() && dial.addrs.len() <= MAX_ADDRS_PER_CANDIDATE);
            for a in &dial.addrs {
                assert!(dialable(a.ip(), local) && a.port() != 0, "{a}");
            }
            table.on_dialed(now, &dial.id, now % 3000 == 0);
        }
    }
});

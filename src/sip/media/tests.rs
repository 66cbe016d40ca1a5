use super::*;
use std::collections::HashSet;
use std::time::Duration;

/// Ports from a counter; remembers what is open.
#[derive(Default)]
struct FakePorts {
    next: u64,
    open: HashSet<u64>,
    fail: bool,
}

impl PortSource for FakePorts {
    fn open(&mut self, streams: usize, _phone: SocketAddr) -> Result<PortBlock, MediaError> {
        if self.fail {
            return Err(MediaError::Ports("none left".into()));
        }
        self.next += 1;
        self.open.insert(self.next);
        let base = 20_000 + 10 * u16::try_from(self.next).unwrap();
        Ok(PortBlock {
            id: self.next,
            ip: "127.0.0.1".parse().unwrap(),
            rtp_ports: (0..streams).map(|i| base + 2 * i as u16).collect(),
        })
    }
    fn close(&mut self, block: u64) {
        assert!(self.open.remove(&block), "block {block} closed twice");
    }
}

fn sdp(ip: &str, port: u16) -> Vec<u8> {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
m=audio {port} RTP/AVP 0\r\n"
    )
    .into_bytes()
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn node(n: u8) -> NodeId {
    NodeId::from_bytes([n; 32])
}

const CALL: &str = "call-1@example";

fn header(stream: u8, component: Component) -> DatagramHeader {
    DatagramHeader {
        tag: tag_of(CALL),
        stream,
        component,
    }
}

#[test]
fn the_callers_node_relays_between_its_phone_and_the_callees_node() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    let phone = addr("127.0.0.5:5060");
    let offer = table
        .from_phone(
            now,
            &mut ports,
            CALL,
            phone,
            Carrier::Other,
            &sdp("127.0.0.5", 4000),
        )
        .unwrap();
    let text = String::from_utf8(offer).unwrap();
    assert!(text.contains("m=audio 20010 "), "{text}");
    assert!(
        !text.contains("4000") && !text.contains("127.0.0.5"),
        "{text}"
    );
    let mut out = Vec::new();
    // Before the callee's node answers, the phone's media goes nowhere.
    let _ = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.5:4000"), &mut out);
    assert!(out.is_empty());
    table
        .from_node(
            now,
            &mut ports,
            CALL,
            node(2),
            Carrier::Accepted,
            &sdp("127.0.0.9", 20030),
        )
        .unwrap();
    let _ = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.5:4000"), &mut out);
    assert_eq!(
        out,
        vec![Relay::Node {
            node: node(2),
            header: header(0, Component::Rtp)
        }]
    );
    let _ = table.node_packet(now, node(2), header(0, Component::Rtcp), &mut out);
    // Symmetric RTP: RTCP goes where the phone's RTCP came from if it
    // sent any, else to the port after its RTP port.
    assert_eq!(
        out,
        vec![Relay::Phone {
            block: 1,
            stream: 0,
            component: Component::Rtcp,
            to: addr("127.0.0.5:4001")
        }]
    );
    // A phone at its SDP's address is believed, whatever port it sends
    // from (SIPp streams from another port than it receives on).
    let _ = table.phone_packet(now, 1, 0, Component::Rtcp, addr("127.0.0.5:7777"), &mut out);
    let _ = table.node_packet(now, node(2), header(0, Component::Rtcp), &mut out);
    assert!(matches!(out[..], [Relay::Phone { to, .. }] if to == addr("127.0.0.5:4001")));
    // Not from the phone's address, not from a party, not a stream of
    // the call: dropped.
    let dropped = table.stats().dropped;
    let _ = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.66:4000"), &mut out);
    assert!(out.is_empty());
    let _ = table.node_packet(now, node(3), header(0, Component::Rtp), &mut out);
    assert!(out.is_empty());
    let _ = table.node_packet(now, node(2), header(1, Component::Rtp), &mut out);
    assert!(out.is_empty());
    let _ = table.phone_packet(now, 99, 0, Component::Rtp, addr("127.0.0.5:4000"), &mut out);
    assert!(out.is_empty());
    assert_eq!(table.stats().dropped, dropped + 4);
    table.end(&mut ports, CALL);
    assert!(ports.open.is_empty());
    assert_eq!(table.stats().sessions, 0);
    assert_eq!(table.stats().blocks, 0);
}

#[test]
fn a_phone_behind_a_nat_gets_its_media_where_it_sends_from() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    // Its SIP comes from the NAT's address, its SDP names its own.
    let phone = addr("198.51.100.7:5060");
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            phone,
            Carrier::Other,
            &sdp("10.0.0.5", 4000),
        )
        .unwrap();
    table
        .from_node(
            now,
            &mut ports,
            CALL,
            node(2),
            Carrier::Accepted,
            &sdp("127.0.0.9", 20030),
        )
        .unwrap();
    let mut out = Vec::new();
    // Before it sends, its media goes to the host its SIP came from at
    // the port its SDP names: never to the address its SDP names (a
    // private one here; a third host's, for an attacker).
    let _ = table.node_packet(now, node(2), header(0, Component::Rtp), &mut out);
    assert!(matches!(out[..], [Relay::Phone { to, .. }] if to == addr("198.51.100.7:4000")));
    let _ = table.phone_packet(
        now,
        1,
        0,
        Component::Rtp,
        addr("198.51.100.7:31000"),
        &mut out,
    );
    assert_eq!(out.len(), 1);
    let _ = table.node_packet(now, node(2), header(0, Component::Rtp), &mut out);
    assert!(matches!(out[..], [Relay::Phone { to, .. }] if to == addr("198.51.100.7:31000")));
    // Another address is refused.
    let _ = table.phone_packet(
        now,
        1,
        0,
        Component::Rtp,
        addr("198.51.100.8:31000"),
        &mut out,
    );
    assert!(out.is_empty());
}

#[test]
fn the_callees_node_forks_and_keeps_the_phone_that_answered() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    let (p1, p2) = (addr("127.0.0.11:5060"), addr("127.0.0.12:5060"));
    table
        .from_node(
            now,
            &mut ports,
            CALL,
            node(1),
            Carrier::Other,
            &sdp("127.0.0.9", 31000),
        )
        .unwrap();
    for p in [p1, p2] {
        let text = String::from_utf8(
            table
                .to_phone(now, &mut ports, CALL, p, &sdp("127.0.0.9", 31000))
                .unwrap(),
        )
        .unwrap();
        assert!(!text.contains("31000"), "{text}");
    }
    // Retransmitting to a phone keeps its ports.
    let again = table
        .to_phone(now, &mut ports, CALL, p1, &sdp("127.0.0.9", 31000))
        .unwrap();
    assert!(String::from_utf8(again).unwrap().contains("m=audio 20010 "));
    assert_eq!(ports.open.len(), 2);
    // Early media from the first phone; then the second answers.
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            p1,
            Carrier::Other,
            &sdp("127.0.0.11", 4000),
        )
        .unwrap();
    let mut out = Vec::new();
    let _ = table.node_packet(now, node(1), header(0, Component::Rtp), &mut out);
    assert_eq!(out.len(), 1);
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            p2,
            Carrier::Accepted,
            &sdp("127.0.0.12", 4002),
        )
        .unwrap();
    assert_eq!(ports.open.len(), 1, "the losing fork's ports are closed");
    let _ = table.node_packet(now, node(1), header(0, Component::Rtp), &mut out);
    assert_eq!(
        out,
        vec![Relay::Phone {
            block: 2,
            stream: 0,
            component: Component::Rtp,
            to: addr("127.0.0.12:4002")
        }]
    );
    // A refused re-INVITE leaves the answered call up; the idle timer
    // ends it.
    table.failed(&mut ports, CALL);
    assert_eq!(table.stats().sessions, 1);
    let _ = table.node_packet(now, node(1), header(0, Component::Rtp), &mut out);
    assert_eq!(
        table.expire(
            now + MEDIA_IDLE_TIMEOUT - Duration::from_secs(1),
            &mut ports
        ),
        0
    );
    assert_eq!(table.expire(now + MEDIA_IDLE_TIMEOUT, &mut ports), 1);
    assert!(ports.open.is_empty());
}

#[test]
fn two_phones_of_one_node_reach_each_other_through_it() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    let (p1, p2) = (addr("127.0.0.1:5061"), addr("127.0.0.1:5062"));
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            p1,
            Carrier::Other,
            &sdp("127.0.0.1", 4000),
        )
        .unwrap();
    table
        .to_phone(now, &mut ports, CALL, p2, &sdp("127.0.0.1", 20010))
        .unwrap();
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            p2,
            Carrier::Accepted,
            &sdp("127.0.0.1", 5000),
        )
        .unwrap();
    let answer = table
        .to_phone(now, &mut ports, CALL, p1, &sdp("127.0.0.1", 20020))
        .unwrap();
    assert!(String::from_utf8(answer)
        .unwrap()
        .contains("m=audio 20010 "));
    let mut out = Vec::new();
    let _ = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.1:4000"), &mut out);
    assert_eq!(
        out,
        vec![Relay::Phone {
            block: 2,
            stream: 0,
            component: Component::Rtp,
            to: addr("127.0.0.1:5000")
        }]
    );
    let _ = table.phone_packet(now, 2, 0, Component::Rtp, addr("127.0.0.1:5000"), &mut out);
    assert!(matches!(out[..], [Relay::Phone { block: 1, to, .. }] if to == addr("127.0.0.1:4000")));
    // A call that never got its 2xx is closed by its failure.
    table.failed(&mut ports, "another call");
    table.failed(&mut ports, CALL);
    assert_eq!(table.stats().sessions, 1, "answered: kept");
}

#[test]
fn an_unanswered_call_that_fails_releases_its_ports() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            addr("127.0.0.1:5061"),
            Carrier::Other,
            &sdp("127.0.0.1", 4000),
        )
        .unwrap();
    table.failed(&mut ports, CALL);
    assert!(ports.open.is_empty());
    assert_eq!(table.stats(), MediaStats::default());
}

#[test]
fn bounds_and_failures_leave_nothing_behind() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    ports.fail = true;
    let err = table
        .from_phone(
            now,
            &mut ports,
            CALL,
            addr("127.0.0.1:5061"),
            Carrier::Other,
            &sdp("127.0.0.1", 4000),
        )
        .unwrap_err();
    assert_eq!(err, MediaError::Ports("none left".into()));
    assert_eq!(table.stats().sessions, 0);
    ports.fail = false;
    // Garbage SDP opens nothing.
    assert!(matches!(
        table.from_node(now, &mut ports, CALL, node(1), Carrier::Other, b"v=1\r\n"),
        Err(MediaError::Sdp(_))
    ));
    assert_eq!(table.stats().sessions, 0);
    for i in 0..MEDIA_MAX_PARTIES {
        table
            .from_node(
                now,
                &mut ports,
                CALL,
                node(i as u8),
                Carrier::Other,
                &sdp("127.0.0.1", 4000),
            )
            .unwrap();
    }
    assert_eq!(
        table.from_node(
            now,
            &mut ports,
            CALL,
            node(200),
            Carrier::Other,
            &sdp("127.0.0.1", 4000)
        ),
        Err(MediaError::PartiesFull)
    );
    for i in 1..MEDIA_MAX_SESSIONS {
        table
            .from_node(
                now,
                &mut ports,
                &format!("call {i}"),
                node(1),
                Carrier::Other,
                &sdp("127.0.0.1", 4000),
            )
            .unwrap();
    }
    assert_eq!(
        table.from_node(
            now,
            &mut ports,
            "one more",
            node(1),
            Carrier::Other,
            &sdp("127.0.0.1", 4000)
        ),
        Err(MediaError::SessionsFull)
    );
}

#[test]
fn a_description_with_more_streams_gets_a_bigger_block() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    let phone = addr("127.0.0.1:5061");
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            phone,
            Carrier::Other,
            &sdp("127.0.0.1", 4000),
        )
        .unwrap();
    let two = b"v=0\r\no=- 1 2 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
m=audio 4000 RTP/AVP 0\r\nm=audio 4002 RTP/AVP 0\r\n";
    let out = table
        .from_phone(now, &mut ports, CALL, phone, Carrier::Other, two)
        .unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("m=audio 20020 ") && text.contains("m=audio 20022 "),
        "{text}"
    );
    assert_eq!(ports.open.iter().copied().collect::<Vec<_>>(), vec![2]);
}

#[test]
fn datagram_headers_round_trip_and_refuse_what_they_do_not_know() {
    let h = DatagramHeader {
        tag: tag_of("x"),
        stream: 3,
        component: Component::Rtcp,
    };
    let mut bytes = h.encode().to_vec();
    assert_eq!(bytes[0], 1);
    assert_eq!(&bytes[1..9], &tag_of("x"));
    assert_eq!(&bytes[9..], &[3, 1]);
    bytes.extend_from_slice(b"payload");
    assert_eq!(DatagramHeader::decode(&bytes), Ok((h, &b"payload"[..])));
    assert!(DatagramHeader::decode(&bytes[..10]).is_err());
    for (at, value) in [(0, 2u8), (9, MEDIA_MAX_STREAMS as u8), (10, 2)] {
        let mut bad = bytes.clone();
        bad[at] = value;
        assert!(DatagramHeader::decode(&bad).is_err(), "byte {at} = {value}");
    }
    // The tag is the documented hash (docs/protocol.md §10).
    // (computed with Python hashlib, independently of this code)
    assert_eq!(
        hex::encode(tag_of("a84b4c76e66710@pc33.atlanta.example.com")),
        "58c30c7c60ee9aba"
    );
}

#[test]
fn the_first_dropped_packet_of_a_call_says_why_once() {
    let now = Instant::now();
    let (mut table, mut ports) = (MediaTable::new(), FakePorts::default());
    let phone = addr("127.0.0.5:5060");
    table
        .from_phone(
            now,
            &mut ports,
            CALL,
            phone,
            Carrier::Other,
            &sdp("127.0.0.5", 4000),
        )
        .unwrap();
    let mut out = Vec::new();
    // The other side has not answered: nowhere to send yet.
    let first = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.5:4000"), &mut out);
    assert_eq!(first, Some(Dropped::NoDestination));
    // The same call's later drops are counted, not reported again.
    let again = table.phone_packet(now, 1, 0, Component::Rtp, addr("127.0.0.66:4000"), &mut out);
    assert_eq!(again, None);
    assert_eq!(table.stats().dropped, 2);
    // Another call: a stranger node's datagram for an unknown call, and
    // one from a node that is no party of this call.
    let unknown = DatagramHeader {
        tag: tag_of("no-such-call"),
        stream: 0,
        component: Component::Rtp,
    };
    assert_eq!(
        table.node_packet(now, node(3), unknown, &mut out),
        Some(Dropped::NoSession)
    );
    assert_eq!(table.node_packet(now, node(3), unknown, &mut out), None);
    let mut fresh = MediaTable::new();
    fresh
        .from_phone(
            now,
            &mut ports,
            CALL,
            phone,
            Carrier::Other,
            &sdp("127.0.0.5", 4000),
        )
        .unwrap();
    assert_eq!(
        fresh.node_packet(now, node(3), header(0, Component::Rtp), &mut out),
        Some(Dropped::NotAParty)
    );
    let mut wrong = MediaTable::new();
    let block = {
        wrong
            .from_phone(
                now,
                &mut ports,
                CALL,
                phone,
                Carrier::Other,
                &sdp("127.0.0.5", 4000),
            )
            .unwrap();
        ports.next
    };
    assert_eq!(
        wrong.phone_packet(
            now,
            block,
            0,
            Component::Rtp,
            addr("127.0.0.66:4000"),
            &mut out
        ),
        Some(Dropped::WrongSource)
    );
}

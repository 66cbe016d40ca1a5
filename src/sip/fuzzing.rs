//! The checks of the `sdp_media`, `sip_proxy` and `sip_stream` fuzz targets, shared
//! with the test that replays their corpora (tests/fuzz_corpus.rs): one
//! definition of what must hold.

use super::media::{DatagramHeader, DATAGRAM_HEADER_LEN};
use super::sdp::{kept_attribute, Sdp};
use std::net::IpAddr;

/// Reads `data` as SDP and as a media datagram. Panics if a property
/// fails: a parsed description, rewritten to the node, parses again with
/// the same streams, each at the node's address (or refused, or on
/// hold), and nothing but the lines and attributes a call needs; a
/// decoded datagram
/// header encodes to the bytes it came from.
pub fn sdp_media(data: &[u8]) {
    if let Ok(sdp) = Sdp::parse(data) {
        let node: IpAddr = "192.0.2.1".parse().expect("literal");
        let ports: Vec<u16> = (0..sdp.streams().len())
            .map(|i| 20_000 + 2 * i as u16)
            .collect();
        let out = sdp.rewrite(node, &ports);
        let again = Sdp::parse(&out).expect("a rewritten description parses");
        assert_eq!(again.streams().len(), sdp.streams().len());
        for ((before, after), port) in sdp.streams().iter().zip(again.streams()).zip(&ports) {
            match before.rtp {
                Some(_) => assert_eq!(after.rtp.map(|a| (a.ip(), a.port())), Some((node, *port))),
                None => assert_eq!(after.rtp, None, "refused or held streams stay so"),
            }
        }
        // Only what a call needs passes, and every address is the node's.
        let text = String::from_utf8(out).expect("SDP is text");
        for line in text.split("\r\n").filter(|l| !l.is_empty()) {
            let (kind, value) = line.split_at(2);
            match kind {
                "v=" | "t=" | "b=" | "m=" => {}
                "s=" => assert_eq!(value, "-"),
                "a=" => assert!(kept_attribute(value), "{line}"),
                "o=" | "c=" => {
                    let addr = value.rsplit(' ').next().unwrap_or_default();
                    let ip: IpAddr = addr.parse().expect("an IP address");
                    assert!(ip == node || ip.is_unspecified(), "{line}");
                    if kind == "o=" {
                        assert!(value.starts_with("- "), "{line}");
                    }
                }
                _ => panic!("a line the rewrite does not pass on: {line}"),
            }
        }
    }
    if let Ok((header, payload)) = DatagramHeader::decode(data) {
        assert_eq!(Some(&header.encode()[..]), data.get(..DATAGRAM_HEADER_LEN));
        assert_eq!(payload.len() + DATAGRAM_HEADER_LEN, data.len());
    }
}

/// Runs one input through a proxy that serves one account, the way the
/// `sip_proxy` fuzz target does: the first byte picks the transport the
/// message came over (UDP, TCP, the overlay) and what its lookups find;
/// the rest is the SIP message. Panics if the proxy sends anything that
/// does not parse again; returns how many messages it sent.
pub fn sip_proxy(data: &[u8]) -> usize {
    use super::digest::DigestSecret;
    use super::proxy::{Action, Located, Proxy};
    use super::registrar::{Account, DEFAULT_ALGORITHMS};
    use super::transaction::Transport;
    use super::Message;
    use crate::identity::SecretKey;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    let Some((&selector, bytes)) = data.split_first() else {
        return 0;
    };
    let Ok(message) = Message::parse(bytes) else {
        return 0;
    };
    let me = SecretKey::from_seed(&[1; 32]).public().node_id();
    let other = SecretKey::from_seed(&[2; 32]).public().node_id();
    let local = SocketAddr::from(([127, 0, 0, 1], 5060));
    let mut proxy = Proxy::new(me, "lab.example", local, [7; 32]);
    proxy.registrar_mut().set_accounts(vec![Account {
        aor: "sip:alice@lab.example".into(),
        secret: DigestSecret::from_password("alice", "lab.example", b"pw"),
        algorithms: DEFAULT_ALGORITHMS.to_vec(),
    }]);
    let peer = SocketAddr::from(([127, 0, 0, 1], 6001));
    let transport = match selector % 3 {
        0 => Transport::Udp,
        1 => Transport::Tcp,
        _ => Transport::Overlay(other),
    };
    let now = Instant::now();
    let unix_ms = 1_750_000_000_000;
    let mut actions = match message {
        Message::Request(r) => proxy.handle_request(now, unix_ms, peer, transport, r),
        Message::Response(r) => proxy.handle_response(now, r),
    };
    // Answer every lookup, then let every timer run out.
    let lookups: Vec<u64> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Locate { lookup, .. } => Some(*lookup),
            _ => None,
        })
        .collect();
    for lookup in lookups {
        let found = match selector / 3 % 3 {
            0 => Located::NotFound,
            1 => Located::NoLiveEntry,
            _ => Located::Nodes(vec![other, me]),
        };
        actions.extend(proxy.located(now, lookup, found));
    }
    actions.extend(proxy.handle_timeout(now + Duration::from_secs(200), unix_ms + 200_000));
    let mut sent = 0;
    for action in actions {
        if let Action::Send(t) = action {
            assert!(
                Message::parse(&t.message.to_bytes()).is_ok(),
                "the proxy sent what does not parse"
            );
            sent += 1;
        }
    }
    sent
}

/// Reads `data` as a TCP stream the way the `sip_stream` fuzz target
/// does: the first two bytes choose how the rest is cut into reads (the
/// largest read, 1 to 256 bytes, and the seed of the cuts); the rest is
/// the stream. Panics unless a [`StreamReader`](super::stream::StreamReader)
/// fed those reads gives the frames [`Message::parse_stream`](super::Message::parse_stream)
/// gives on the whole buffer, fails when it fails (with the same error,
/// unless one of the two is the size limit, which the reader applies
/// before it looks for the end of a header section), holds what it has
/// left over, and scanned each byte at most once. Returns `(frames, refused)`.
pub fn sip_stream(data: &[u8]) -> (usize, bool) {
    use super::error::SipError;
    use super::message::{Frame, Message};
    use super::stream::StreamReader;
    use crate::limits::SIP_MAX_MESSAGE_LEN;

    let (max_read, mut seed, stream) = match data {
        [a, b, rest @ ..] => (1usize << (a % 9), u32::from(*b) | 0x100, rest),
        _ => return (0, false),
    };
    // One message's worth: the reader never holds more than a message and
    // a read (the listener reads 16 KiB at a time).
    let stream = stream
        .get(..stream.len().min(SIP_MAX_MESSAGE_LEN))
        .unwrap_or_default();

    // The whole buffer, frame after frame.
    let mut whole = Vec::new();
    let mut rest = stream;
    let whole_error = loop {
        match Message::parse_stream(rest) {
            Ok(None) => break None,
            Err(e) => break Some(e),
            Ok(Some(frame)) => {
                let used = match &frame {
                    Frame::Ping => 4,
                    Frame::Blank => 2,
                    Frame::Message(_, used) => *used,
                };
                assert!(used > 0 && used <= rest.len(), "a frame of {used} bytes");
                rest = rest.get(used..).unwrap_or_default();
                whole.push(frame);
            }
        }
    };

    // The same bytes in reads of random sizes.
    let mut reader = StreamReader::new();
    let mut frames = Vec::new();
    let mut left = stream;
    let mut reader_error = None;
    'reads: while !left.is_empty() {
        seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12_345);
        let size = 1 + (seed >> 8) as usize % max_read;
        let (read, after) = left.split_at(size.min(left.len()));
        left = after;
        if let Err(e) = reader.feed(read) {
            reader_error = Some(e);
            break;
        }
        loop {
            match reader.next_frame() {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(e) => {
                    reader_error = Some(e);
                    break 'reads;
                }
            }
        }
    }
    assert!(
        reader.scanned_total() <= stream.len() as u64,
        "scanned {} of {} bytes",
        reader.scanned_total(),
        stream.len()
    );
    assert_eq!(frames, whole, "frames differ");
    let too_large = |e: &Option<SipError>| matches!(e, Some(SipError::MessageTooLarge { .. }));
    match (&reader_error, &whole_error) {
        (None, None) => assert_eq!(reader.buffered(), rest.len(), "left over"),
        (Some(_), Some(_)) if too_large(&reader_error) || too_large(&whole_error) => {}
        (a, b) => assert_eq!(a, b, "errors differ"),
    }
    (frames.len(), reader_error.is_some())
}

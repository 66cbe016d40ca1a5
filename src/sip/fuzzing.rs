//! The checks of the `sdp_media`, `sip_proxy`, `sip_dialog`, `sip_stream` and `voicemail_ua` fuzz targets, shared
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
    // alice keeps an address book and settings: calls for her read them.
    proxy.set_user_data_accounts(["sip:alice@lab.example".to_owned()].into_iter().collect());
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
        Message::Response(r) => proxy.handle_response(now, peer, transport, r),
    };
    // Hand over alice's data (as the selector picks), then answer every
    // lookup, then let every timer run out.
    let reads: Vec<String> = actions
        .iter()
        .filter_map(|a| match a {
            Action::ReadUserData { account } => Some(account.clone()),
            _ => None,
        })
        .collect();
    for account in reads {
        actions.extend(proxy.user_data(now, &account, user_data_variant(selector / 9)));
    }
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

/// The user data the `sip_proxy` harness hands over for `variant`: none,
/// a book, do-not-disturb, a blocked caller, a forward by name.
fn user_data_variant(variant: u8) -> super::proxy::UserData {
    let mut data = super::proxy::UserData::default();
    let bob = "sip:bob@lab.example";
    let _ = data.book.add("bobby", bob);
    let _ = data.book.add("carol", "sip:carol@example.org");
    let setting = match variant % 5 {
        0 => None,
        1 => Some(("do_not_disturb", "on")),
        2 => Some(("blocked", "bobby")),
        3 => Some(("forward_always", "bobby")),
        _ => Some(("forward_always", "sip:alice@lab.example")),
    };
    if let Some((key, value)) = setting {
        let _ = data.settings.set(key, value);
    }
    data
}

/// Runs one input through the dialog layer the way the `sip_dialog` fuzz
/// target does. A node serves alice (phone at 127.0.0.1:6001) and bob
/// (127.0.0.1:7001), both registered, and carries a call from alice to
/// bob, answered, its media anchored on virtual ports. The input is
/// then a series of messages separated by a NUL byte, each led by a
/// byte that picks its sender: alice's phone, bob's phone, a stranger's
/// address (UDP or TCP), the caller's node or another node.
///
/// Panics if a rule of the dialog layer fails: nothing a stranger's
/// address sends reaches a phone, opens a media port or draws back more
/// than one answer, and that one goes back to the stranger; whatever
/// the node sends parses again, and goes only to a phone of this node,
/// to a node of the overlay, or back to the sender. Returns how many
/// messages were sent.
pub fn sip_dialog(data: &[u8]) -> usize {
    use super::digest::{response, Algorithm, DigestSecret};
    use super::media::{MediaTable, TableAnchor, VirtualPorts};
    use super::proxy::{Action, Proxy};
    use super::registrar::{Account, DEFAULT_ALGORITHMS};
    use super::transaction::{Transmit, Transport};
    use super::{HeaderName, Message, Request};
    use crate::identity::SecretKey;
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};
    use std::time::{Duration, Instant};

    const DOMAIN: &str = "lab.example";
    const T0_MS: u64 = 1_750_000_000_000;
    let me = SecretKey::from_seed(&[1; 32]).public().node_id();
    let node2 = SecretKey::from_seed(&[2; 32]).public().node_id();
    let node3 = SecretKey::from_seed(&[3; 32]).public().node_id();
    let at = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
    let (alice, bob) = (at(6001), at(7001));
    let stranger = SocketAddr::from(([127, 0, 0, 66], 5060));

    // The anchor is shared so that open ports can be counted.
    fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
        m.lock().unwrap_or_else(|e| e.into_inner())
    }
    let anchor = Arc::new(Mutex::new(TableAnchor {
        table: MediaTable::new(),
        ports: VirtualPorts::new(at(5060).ip()),
    }));
    let mut proxy = Proxy::new(me, DOMAIN, at(5060), [7; 32]);
    proxy.set_media(Box::new(anchor.clone()));
    proxy.registrar_mut().set_accounts(
        ["alice", "bob"]
            .into_iter()
            .map(|u| Account {
                aor: format!("sip:{u}@{DOMAIN}"),
                secret: DigestSecret::from_password(u, DOMAIN, b"pw"),
                algorithms: DEFAULT_ALGORITHMS.to_vec(),
            })
            .collect(),
    );
    let now = Instant::now();
    let parse = |text: String| match Message::parse(text.replace('\n', "\r\n").as_bytes()) {
        Ok(Message::Request(r)) => Some(r),
        _ => None,
    };
    let sends = |actions: Vec<Action>| -> Vec<Transmit> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Send(t) => Some(t),
                Action::Publish {
                    reply: Some(_id), ..
                } => None,
                _ => None,
            })
            .collect()
    };
    // Answers a challenge in `answer` to `request` with user's password.
    let credentials = |answer: &Transmit, user: &str, request: &Request| -> Option<String> {
        let Message::Response(r) = answer.message.as_ref() else {
            return None;
        };
        let header = r
            .headers
            .get(&HeaderName::WwwAuthenticate)
            .or_else(|| r.headers.get(&HeaderName::ProxyAuthenticate))?;
        let start = header.find("nonce=\"")? + 7;
        let nonce = header.get(start..)?.split('"').next()?;
        let secret = DigestSecret::from_password(user, DOMAIN, b"pw");
        let uri = request.uri.to_string();
        let answer = response(
            Algorithm::Sha256,
            secret.ha1(Algorithm::Sha256),
            nonce,
            "00000001",
            "c",
            request.method.as_str(),
            &uri,
        );
        Some(format!(
            "Digest username=\"{user}\", realm=\"{DOMAIN}\", nonce=\"{nonce}\", uri=\"{uri}\", \
             response=\"{answer}\", algorithm=SHA-256, qop=auth, nc=00000001, cnonce=\"c\""
        ))
    };
    // Registers both phones.
    for (user, phone) in [("alice", alice), ("bob", bob)] {
        let register = |cseq: u32| {
            parse(format!(
                "REGISTER sip:{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {phone};branch=z9hG4bK-r{cseq}\n\
                 From: <sip:{user}@{DOMAIN}>;tag=r\nTo: <sip:{user}@{DOMAIN}>\nCall-ID: reg-{user}\n\
                 CSeq: {cseq} REGISTER\nContact: <sip:{user}@{phone}>\nContent-Length: 0\n\n"
            ))
        };
        let Some(first) = register(1) else { return 0 };
        let out = sends(proxy.handle_request(now, T0_MS, phone, Transport::Udp, first.clone()));
        let Some(mut second) = register(2) else {
            return 0;
        };
        let Some(creds) = out.first().and_then(|a| credentials(a, user, &second)) else {
            return 0;
        };
        second.headers.push(HeaderName::Authorization, creds);
        for action in proxy.handle_request(now, T0_MS, phone, Transport::Udp, second) {
            if let Action::Publish {
                reply: Some(id), ..
            } = action
            {
                let _ = proxy.published(now, id, true);
            }
        }
    }
    // alice calls bob, with an offer; bob answers 200 with his.
    let sdp = |port: u16| {
        format!("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\n")
    };
    let invite = |cseq: u32| {
        parse(format!(
            "INVITE sip:bob@{DOMAIN} SIP/2.0\nVia: SIP/2.0/UDP {alice};branch=z9hG4bK-i{cseq}\n\
             From: <sip:alice@{DOMAIN}>;tag=caller\nTo: <sip:bob@{DOMAIN}>\nCall-ID: call-1\n\
             CSeq: {cseq} INVITE\nContact: <sip:alice@{alice}>\nContent-Type: application/sdp\n\
             Max-Forwards: 70\nContent-Length: 0\n\n"
        ))
        .map(|mut r| {
            r.body = sdp(40000).into_bytes();
            r
        })
    };
    let Some(first) = invite(1) else { return 0 };
    let out = sends(proxy.handle_request(now, T0_MS, alice, Transport::Udp, first));
    let Some(mut second) = invite(2) else {
        return 0;
    };
    let Some(creds) = out.iter().find_map(|a| credentials(a, "alice", &second)) else {
        return 0;
    };
    second.headers.push(HeaderName::ProxyAuthorization, creds);
    let out = sends(proxy.handle_request(now, T0_MS, alice, Transport::Udp, second));
    if let Some(Message::Request(to_bob)) = out
        .iter()
        .find(|t| t.peer == bob)
        .map(|t| t.message.as_ref())
    {
        let mut ok = to_bob.reply(200, Some("callee"));
        ok.headers.set(HeaderName::ContentType, "application/sdp");
        ok.body = sdp(50000).into_bytes();
        let _ = proxy.handle_response(now, bob, Transport::Udp, ok);
    }

    // The setup itself must hold, or the fuzzing tests nothing.
    assert_eq!(
        proxy.dialogs().state("call-1", "caller"),
        Some(super::dialog::DialogState::Confirmed),
        "the harness's call is up"
    );
    assert_eq!(
        lock(&anchor).ports.open_blocks(),
        2,
        "one port block per phone"
    );

    // The input: messages, each led by its sender.
    let mut sent = 0;
    let mut clock = now;
    for chunk in data.split(|b| *b == 0) {
        let Some((&who, bytes)) = chunk.split_first() else {
            continue;
        };
        let Ok(message) = Message::parse(bytes) else {
            continue;
        };
        clock += Duration::from_millis(u64::from(who >> 4) * 100);
        let (peer, transport) = match who % 6 {
            0 => (alice, Transport::Udp),
            1 => (bob, Transport::Udp),
            2 => (stranger, Transport::Udp),
            3 => (stranger, Transport::Tcp),
            4 => (super::proxy::UNRESOLVED, Transport::Overlay(node2)),
            _ => (super::proxy::UNRESOLVED, Transport::Overlay(node3)),
        };
        let from_stranger = peer == stranger;
        let blocks_before = lock(&anchor).ports.open_blocks();
        let size = bytes.len();
        let actions = match message {
            Message::Request(r) => proxy.handle_request(clock, T0_MS, peer, transport, r),
            Message::Response(r) => proxy.handle_response(clock, peer, transport, r),
        };
        let out = sends(actions);
        for t in &out {
            let bytes = t.message.to_bytes();
            assert!(
                Message::parse(&bytes).is_ok(),
                "the node sent what does not parse"
            );
            let to_phone = matches!(t.transport, Transport::Udp | Transport::Tcp);
            assert!(
                !to_phone || t.peer == alice || t.peer == bob || t.peer == peer,
                "sent to a third address: {}",
                t.peer
            );
            sent += 1;
        }
        if from_stranger {
            assert!(out.len() <= 1, "a stranger drew {} messages", out.len());
            let back: usize = out.iter().map(|t| t.message.to_bytes().len()).sum();
            for t in &out {
                assert_eq!(t.peer, stranger, "a stranger's packet reached {}", t.peer);
            }
            // The answer copies the request's Via, From, To, Call-ID and
            // CSeq and adds at most a status line, a tag, a Warning and
            // two digest challenges.
            assert!(back <= size + 700, "{size} bytes drew {back} back");
            assert_eq!(
                lock(&anchor).ports.open_blocks(),
                blocks_before,
                "a stranger opened or closed media ports"
            );
        }
    }
    // Every timer runs out: nothing panics, and what is sent parses.
    for t in sends(proxy.handle_timeout(clock + Duration::from_secs(300), T0_MS + 300_000)) {
        assert!(Message::parse(&t.message.to_bytes()).is_ok());
        sent += 1;
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

/// What the `voicemail_ua` harness learned from the UA's outputs.
struct VoicemailSeen {
    /// Outputs so far.
    made: usize,
    /// The To tag of the last 200 to an INVITE.
    tag: Option<String>,
    /// The branch of the last request the UA sent.
    branch: Option<String>,
    /// The Call-IDs of the playback calls the UA asked messages for, the
    /// last last.
    fetched: Vec<String>,
}

impl VoicemailSeen {
    /// Checks what the UA made; `parsed`: whether the SIP it sends must
    /// parse (it answers a message that parsed, or a timer sent it).
    fn check(&mut self, out: Vec<super::voicemail::VoicemailOutput>, parsed: bool) {
        use super::voicemail::rtp::parse_rtp;
        use super::voicemail::VoicemailOutput;
        use super::{HeaderName, Message, NameAddr, Via};

        assert!(
            out.len() <= VOICEMAIL_MAX_OUTPUTS,
            "{} outputs at once",
            out.len()
        );
        for o in out {
            self.made += 1;
            match o {
                VoicemailOutput::Sip { to, bytes } => {
                    assert_eq!(to, VOICEMAIL_PROXY, "SIP to {to}");
                    assert!(bytes.len() <= crate::limits::SIP_MAX_MESSAGE_LEN);
                    match Message::parse(&bytes) {
                        Ok(Message::Response(r)) => {
                            let tag = r
                                .headers
                                .get(&HeaderName::To)
                                .and_then(|to| NameAddr::parse("To", to).ok())
                                .and_then(|to| to.tag().map(str::to_owned));
                            if r.code == 200 && !r.body.is_empty() {
                                self.tag = tag;
                            }
                        }
                        Ok(Message::Request(r)) => {
                            self.branch = r
                                .headers
                                .get(&HeaderName::Via)
                                .and_then(|via| Via::parse(via).ok())
                                .and_then(|via| via.branch().map(str::to_owned));
                        }
                        Err(e) => assert!(!parsed, "the UA sent what does not parse: {e}"),
                    }
                }
                VoicemailOutput::Rtp { bytes, .. } => {
                    let (header, payload) = parse_rtp(&bytes).expect("the UA's RTP parses");
                    assert!(matches!(header.payload_type, 0 | 8));
                    assert!(!payload.is_empty() && payload.len() <= 160);
                }
                VoicemailOutput::Recorded(r) => {
                    assert!(!r.audio.is_empty() && r.audio.len() <= VOICEMAIL_MAX_AUDIO);
                    assert_eq!(r.duration.as_micros(), r.audio.len() as u128 * 125);
                }
                VoicemailOutput::Fetch { call_id, account } => {
                    let user = account
                        .strip_prefix("sip:")
                        .and_then(|a| a.strip_suffix("@lab.example"));
                    assert!(user.is_some_and(|u| !u.is_empty()), "Fetch of {account}");
                    self.fetched.push(call_id);
                }
            }
        }
    }
}

/// The proxy of the `voicemail_ua` harness.
const VOICEMAIL_PROXY: std::net::SocketAddr =
    std::net::SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 5060);

/// The most audio the `voicemail_ua` harness's UA records (2 s).
const VOICEMAIL_MAX_AUDIO: usize = 2 * 8000;

/// The most outputs the `voicemail_ua` harness accepts from one call of
/// the UA (its timers run as they fall due, so nothing piles up).
const VOICEMAIL_MAX_OUTPUTS: usize = 64;

/// A playback INVITE of the `voicemail_ua` harness: Call-ID
/// `play-{n}`, from `bytes` = `[formats, identity, port]` (missing
/// bytes read as 0). `formats`: the offer's (0 "0 8 101", 1 "8 0", 2 "8"
/// sendonly, 3 "0" inactive); `identity`: 0 the owner asserted (bob),
/// 1 another asserted, 2 none, 3 the user `play.` alone; `port`: the
/// offer's media port, 40000 + 2 × (port mod 4). Returns the INVITE and
/// whether it must be refused.
fn voicemail_playback_invite(n: u32, bytes: &[u8]) -> (String, bool) {
    let byte = |i: usize| bytes.get(i).copied().unwrap_or(0);
    let (formats, direction) = match byte(0) % 4 {
        0 => ("0 8 101", ""),
        1 => ("8 0", ""),
        2 => ("8", "a=sendonly\r\n"),
        _ => ("0", "a=inactive\r\n"),
    };
    let (user, identity) = match byte(1) % 4 {
        0 => ("play.bob", "P-Asserted-Identity: <sip:bob@lab.example>\r\n"),
        1 => (
            "play.bob",
            "P-Asserted-Identity: <sip:alice@lab.example>\r\n",
        ),
        2 => ("play.bob", ""),
        _ => ("play.", "P-Asserted-Identity: <sip:bob@lab.example>\r\n"),
    };
    let port = 40000 + 2 * u16::from(byte(2) % 4);
    let sdp = format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\n{direction}"
    );
    let invite = format!(
        "INVITE sip:{user}@127.0.0.1:5070 SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-play-{n}\r\n\
         Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
         From: <sip:bob@lab.example>;tag=owner\r\nTo: <sip:voicemail@lab.example>\r\n\
         Call-ID: play-{n}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:6002>\r\n\
         {identity}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    (invite, byte(1) % 4 != 0)
}

/// The messages the `voicemail_ua` harness hands a playback call, from
/// `bytes` = `[count, header × count, pattern…]`: at most 64 messages
/// (more than the UA plays), each header's bit 0 its codec (PCMU, PCMA)
/// and its other bits its length in 500 bytes (up to 63500, more than
/// the UA plays), the bytes the pattern repeated.
fn voicemail_messages(bytes: &[u8]) -> Vec<super::voicemail::Message> {
    use super::voicemail::{Codec, Message};
    let Some((&count, rest)) = bytes.split_first() else {
        return Vec::new();
    };
    let count = usize::from(count).min(64);
    let (headers, pattern) = rest.split_at(count.min(rest.len()));
    let pattern = if pattern.is_empty() {
        &[0xd5][..]
    } else {
        pattern
    };
    (0..count)
        .map(|i| {
            let header = headers.get(i).copied().unwrap_or(0);
            let codec = if header & 1 == 0 {
                Codec::Pcmu
            } else {
                Codec::Pcma
            };
            let len = usize::from(header >> 1) * 500;
            Message {
                codec,
                audio: pattern.iter().copied().cycle().take(len).collect(),
            }
        })
        .collect()
}

/// Runs one input against a voicemail UA with a call up, the way the
/// `voicemail_ua` fuzz target does. After a valid INVITE (answered 200),
/// the input is a list of chunks, each `[selector, length (2 bytes, big
/// endian), bytes]` (a short last chunk takes what is left). The
/// selector's high nibble advances the clock by that many 50 ms (timers
/// run); its low bits say what the bytes are: 0 SIP from the proxy, 1 RTP
/// from the call's media address, 2 RTP from another address, 3 SIP from
/// a stranger. With bit 2 set, SIP has `$T` replaced by the To tag of the
/// UA's last 200 to an INVITE and `$B` by the branch of its last request
/// (so that in-dialog requests and answers to its BYE can be written),
/// and RTP bytes become the payload of a well-formed PCMU packet. With
/// bit 3 set, SIP is instead a playback INVITE of the harness's (its
/// Call-ID `play-0`, `play-1`, …; see `voicemail_playback_invite`), and
/// RTP from the media address is instead a call of `messages()` (see
/// `voicemail_messages` for the list after the first byte, whose low two
/// bits choose the Call-ID: the last one fetched, `call-1` (recording),
/// `play-0`, or one never seen).
///
/// Panics if the UA sends SIP anywhere but to the proxy, answers a
/// stranger, sends what does not parse (SIP from a timer or in answer to
/// a message that parsed; RTP always), records more than its limit,
/// holds more calls than its limit, makes more than 64 outputs at once,
/// takes a playback INVITE it must refuse or asks for messages without
/// answering 200, answers `messages()` for a call it never
/// asked messages for, or has anything left once every timer has run
/// out. Returns how many outputs it made.
pub fn voicemail_ua(data: &[u8]) -> usize {
    use super::voicemail::rtp::{write_rtp, RtpHeader};
    use super::voicemail::{VoicemailConfig, VoicemailOutput, VoicemailUa};
    use super::Message;
    use std::net::SocketAddr;
    use std::time::{Duration, Instant};

    let at = |ip: [u8; 4], port: u16| SocketAddr::from((ip, port));
    let proxy = VOICEMAIL_PROXY;
    let media = at([127, 0, 0, 1], 40000);
    let stranger = at([127, 0, 0, 66], 40000);
    let config = VoicemailConfig {
        sip: at([127, 0, 0, 1], 5070),
        rtp: at([127, 0, 0, 1], 30000),
        proxy,
        domain: "lab.example".to_owned(),
        max_calls: 4,
        max_duration: Duration::from_micros(VOICEMAIL_MAX_AUDIO as u64 * 125),
        greeting: Duration::from_millis(100),
        silence_timeout: Duration::from_secs(3),
    };
    let max_calls = config.max_calls;
    let mut ua = VoicemailUa::new(config, [3; 32]);
    let mut now = Instant::now();
    let mut seen = VoicemailSeen {
        made: 0,
        tag: None,
        branch: None,
        fetched: Vec::new(),
    };
    let mut playbacks = 0u32;

    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=audio 40000 RTP/AVP 0 8 101\r\n";
    let invite = format!(
        "INVITE sip:bob@lab.example SIP/2.0\r\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-proxy-1\r\n\
         Record-Route: <sip:127.0.0.1:5060;lr>\r\n\
         From: <sip:alice@lab.example>;tag=caller\r\nTo: <sip:bob@lab.example>\r\n\
         Call-ID: call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:6001>\r\n\
         P-Asserted-Identity: <sip:alice@lab.example>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    );
    seen.check(ua.handle_sip(now, 0, proxy, invite.as_bytes()), true);
    // The setup itself must hold, or the fuzzing tests nothing.
    assert!(seen.tag.is_some(), "the harness's call is answered");

    let mut rest = data;
    let mut seq = 0u16;
    while let Some((&selector, after)) = rest.split_first() {
        let (len, after) = match after {
            [hi, lo, tail @ ..] => (usize::from(u16::from_be_bytes([*hi, *lo])), tail),
            _ => (after.len(), &[][..]),
        };
        let (chunk, after) = after.split_at(len.min(after.len()));
        rest = after;
        now += Duration::from_millis(50 * u64::from(selector >> 4));
        while let Some(due) = ua.poll_timeout().filter(|due| *due <= now) {
            seen.check(ua.handle_timeout(due), true);
        }
        let templated = selector & 4 != 0;
        let sip = if templated {
            String::from_utf8_lossy(chunk)
                .replace("$T", seen.tag.as_deref().unwrap_or_default())
                .replace("$B", seen.branch.as_deref().unwrap_or_default())
                .into_bytes()
        } else {
            chunk.to_vec()
        };
        let rtp = if templated {
            seq = seq.wrapping_add(1);
            let header = RtpHeader {
                marker: false,
                payload_type: 0,
                sequence: seq,
                timestamp: u32::from(seq).wrapping_mul(160),
                ssrc: 7,
            };
            write_rtp(&header, chunk)
        } else {
            chunk.to_vec()
        };
        let playback = selector & 8 != 0;
        match selector & 3 {
            0 if playback => {
                let (invite, refused) = voicemail_playback_invite(playbacks, chunk);
                let call_id = format!("play-{playbacks}");
                playbacks = playbacks.wrapping_add(1);
                let out = ua.handle_sip(now, 0, proxy, invite.as_bytes());
                let fetched = out.iter().any(
                    |o| matches!(o, VoicemailOutput::Fetch { call_id: id, .. } if *id == call_id),
                );
                let answered = out.iter().any(|o| match o {
                    VoicemailOutput::Sip { bytes, .. } => {
                        matches!(Message::parse(bytes), Ok(Message::Response(r)) if r.code == 200)
                    }
                    _ => false,
                });
                // (The input may have made a call of that Call-ID itself:
                // then the INVITE is a retransmission, 200 without Fetch.)
                assert!(!fetched || answered, "a Fetch without a 200");
                assert!(
                    !(refused && fetched),
                    "a playback INVITE to refuse was taken"
                );
                seen.check(out, true);
            }
            1 if playback => {
                let target = chunk.first().copied().unwrap_or(0) % 4;
                let call_id = match target {
                    0 => seen.fetched.last().cloned().unwrap_or_default(),
                    1 => "call-1".to_owned(),
                    2 => "play-0".to_owned(),
                    _ => "nobody".to_owned(),
                };
                let messages = voicemail_messages(chunk.get(1..).unwrap_or_default());
                let out = ua.messages(now, &call_id, messages);
                if !seen.fetched.contains(&call_id) {
                    assert!(out.is_empty(), "messages() for {call_id} did something");
                }
                seen.check(out, true);
            }
            0 => {
                let parsed = Message::parse(&sip).is_ok();
                seen.check(ua.handle_sip(now, 0, proxy, &sip), parsed);
            }
            1 => seen.check(ua.handle_rtp(now, media, &rtp), true),
            2 => seen.check(ua.handle_rtp(now, stranger, &rtp), true),
            _ => {
                let out = ua.handle_sip(now, 0, stranger, &sip);
                assert!(out.is_empty(), "a stranger drew an answer");
            }
        }
        assert!(ua.calls() <= max_calls, "{} calls", ua.calls());
    }
    // Every timer runs out, and nothing is left.
    let mut steps = 0;
    while let Some(due) = ua.poll_timeout() {
        steps += 1;
        assert!(steps < 100_000, "the timers never settle");
        assert!(
            due <= now + Duration::from_secs(200),
            "a timer too far away"
        );
        seen.check(ua.handle_timeout(due.max(now)), true);
    }
    assert_eq!(ua.calls(), 0, "calls outlive their timers");
    seen.made
}

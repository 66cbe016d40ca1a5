//! The voicemail UA as scenarios on virtual time: no sockets, no sleeps.

use super::rtp::{parse_rtp, write_rtp, RtpHeader};
use super::*;
use crate::sip::g711;
use crate::sip::sdp::Sdp;

const DOMAIN: &str = "lab.example";
const T0_MS: u64 = 1_750_000_000_000;

fn at(ip: [u8; 4], port: u16) -> SocketAddr {
    SocketAddr::from((ip, port))
}

fn proxy() -> SocketAddr {
    at([127, 0, 0, 1], 5060)
}

fn ua_sip() -> SocketAddr {
    at([127, 0, 0, 1], 5070)
}

fn ua_rtp() -> SocketAddr {
    at([127, 0, 0, 1], 30000)
}

/// Where the caller's media is (the proxy's anchor, in the offer).
fn media() -> SocketAddr {
    at([127, 0, 0, 1], 40000)
}

fn config() -> VoicemailConfig {
    VoicemailConfig {
        sip: ua_sip(),
        rtp: ua_rtp(),
        proxy: proxy(),
        domain: DOMAIN.to_owned(),
        ..VoicemailConfig::default()
    }
}

fn offer(port: u16, formats: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP {formats}\r\na=rtpmap:0 PCMU/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// An INVITE as the proxy forwards it: two Vias, two Record-Routes, the
/// caller's asserted identity.
fn invite(call_id: &str, cseq: u32, sdp: &str) -> Vec<u8> {
    let head = format!(
        "INVITE sip:bob@{DOMAIN} SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-proxy-{call_id}-{cseq}\n\
         Via: SIP/2.0/UDP 127.0.0.1:6001;branch=z9hG4bK-phone-{call_id}-{cseq}\n\
         Record-Route: <sip:127.0.0.1:5060;lr;node=aa>\n\
         Record-Route: <sip:192.0.2.7:5060;lr>\n\
         Max-Forwards: 69\n\
         From: \"Alice\" <sip:alice@{DOMAIN}>;tag=caller-{call_id}\n\
         To: <sip:bob@{DOMAIN}>\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} INVITE\n\
         Contact: <sip:alice@127.0.0.1:6001>\n\
         P-Asserted-Identity: <sip:alice@{DOMAIN}>, <tel:+15551234>\n\
         Content-Type: application/sdp\n"
    )
    .replace('\n', "\r\n");
    format!("{head}Content-Length: {}\r\n\r\n{sdp}", sdp.len()).into_bytes()
}

/// A request of the caller inside the dialog (`to_tag` empty: none).
fn in_dialog(method: &str, call_id: &str, cseq: u32, to_tag: &str) -> Vec<u8> {
    let to_tag = if to_tag.is_empty() {
        String::new()
    } else {
        format!(";tag={to_tag}")
    };
    format!(
        "{method} sip:voicemail@127.0.0.1:5070 SIP/2.0\n\
         Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-{method}-{call_id}-{cseq}\n\
         Max-Forwards: 70\n\
         From: \"Alice\" <sip:alice@{DOMAIN}>;tag=caller-{call_id}\n\
         To: <sip:bob@{DOMAIN}>{to_tag}\n\
         Call-ID: {call_id}\n\
         CSeq: {cseq} {method}\n\
         Content-Length: 0\n\n"
    )
    .replace('\n', "\r\n")
    .into_bytes()
}

fn parse(bytes: &[u8]) -> SipMessage {
    SipMessage::parse(bytes).expect("the UA sends SIP that parses")
}

/// The SIP messages among `out`, each checked to go to the proxy.
fn sips(out: &[VoicemailOutput]) -> Vec<SipMessage> {
    out.iter()
        .filter_map(|o| match o {
            VoicemailOutput::Sip { to, bytes } => {
                assert_eq!(*to, proxy());
                Some(parse(bytes))
            }
            _ => None,
        })
        .collect()
}

fn responses(out: &[VoicemailOutput]) -> Vec<Response> {
    sips(out)
        .into_iter()
        .map(|m| match m {
            SipMessage::Response(r) => r,
            SipMessage::Request(r) => panic!("a {} where a response was expected", r.method),
        })
        .collect()
}

fn requests(out: &[VoicemailOutput]) -> Vec<Request> {
    sips(out)
        .into_iter()
        .filter_map(|m| match m {
            SipMessage::Request(r) => Some(r),
            SipMessage::Response(_) => None,
        })
        .collect()
}

/// The one response in `out`.
fn response(out: &[VoicemailOutput]) -> Response {
    let mut all = responses(out);
    assert_eq!(all.len(), 1, "{out:?}");
    all.remove(0)
}

fn rtps(out: &[VoicemailOutput]) -> Vec<(RtpHeader, Vec<u8>)> {
    out.iter()
        .filter_map(|o| match o {
            VoicemailOutput::Rtp { to, bytes } => {
                assert_eq!(*to, media());
                let (header, payload) = parse_rtp(bytes).expect("the UA's RTP parses");
                Some((header, payload.to_vec()))
            }
            _ => None,
        })
        .collect()
}

fn recordings(out: &[VoicemailOutput]) -> Vec<Recording> {
    out.iter()
        .filter_map(|o| match o {
            VoicemailOutput::Recorded(r) => Some(r.clone()),
            _ => None,
        })
        .collect()
}

fn to_tag(message: &Response) -> String {
    NameAddr::parse("To", message.headers.get(&HeaderName::To).unwrap())
        .unwrap()
        .tag()
        .unwrap()
        .to_owned()
}

/// A UA on virtual time.
struct Lab {
    ua: VoicemailUa,
    t0: Instant,
    now: Instant,
}

impl Lab {
    fn new(config: VoicemailConfig) -> Self {
        let t0 = Instant::now();
        Self {
            ua: VoicemailUa::new(config, [5; 32]),
            t0,
            now: t0,
        }
    }

    fn sip(&mut self, bytes: &[u8]) -> Vec<VoicemailOutput> {
        let unix_ms = T0_MS + (self.now - self.t0).as_millis() as u64;
        self.ua.handle_sip(self.now, unix_ms, proxy(), bytes)
    }

    fn rtp(&mut self, from: SocketAddr, packet: &[u8]) -> Vec<VoicemailOutput> {
        self.ua.handle_rtp(self.now, from, packet)
    }

    /// Runs every timer due up to `t0 + t`, with the instant each output
    /// came at (relative to t0).
    fn run_to(&mut self, t: Duration) -> Vec<(Duration, VoicemailOutput)> {
        let end = self.t0 + t;
        let mut out = Vec::new();
        for _ in 0..100_000 {
            match self.ua.poll_timeout() {
                Some(due) if due <= end => {
                    self.now = self.now.max(due);
                    let at = self.now - self.t0;
                    out.extend(
                        self.ua
                            .handle_timeout(self.now)
                            .into_iter()
                            .map(|o| (at, o)),
                    );
                }
                _ => {
                    self.now = self.now.max(end);
                    return out;
                }
            }
        }
        panic!("the timers never settle");
    }

    /// Runs the timers for `d` more.
    fn advance(&mut self, d: Duration) -> Vec<VoicemailOutput> {
        let t = self.now - self.t0 + d;
        self.run_to(t).into_iter().map(|(_, o)| o).collect()
    }

    /// A call answered and acknowledged, and its beep played: the UA's
    /// To tag.
    fn answered(&mut self, call_id: &str, sdp: &str) -> String {
        let ok = response(&self.sip(&invite(call_id, 1, sdp)));
        assert_eq!(ok.code, 200);
        let tag = to_tag(&ok);
        assert!(self.sip(&in_dialog("ACK", call_id, 1, &tag)).is_empty());
        let beep = self.advance(Duration::from_millis(600));
        assert!(!rtps(&beep).is_empty());
        tag
    }
}

/// A phone's RTP stream: 440 Hz µ-law in 20 ms packets.
struct Talker {
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    sample: u64,
    payload_type: u8,
}

impl Talker {
    fn new(seq: u16) -> Self {
        Self {
            ssrc: 0x1234_5678,
            seq,
            timestamp: 1000,
            sample: 0,
            payload_type: 0,
        }
    }

    /// The next packet and its payload.
    fn next(&mut self) -> (Vec<u8>, Vec<u8>) {
        let samples = g711::tone(440.0, 6000, self.sample, PACKET_SAMPLES);
        let payload = Codec::from_payload_type(self.payload_type)
            .unwrap_or(Codec::Pcmu)
            .encode(&samples);
        let packet = write_rtp(
            &RtpHeader {
                marker: self.sample == 0,
                payload_type: self.payload_type,
                sequence: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
            },
            &payload,
        );
        self.seq = self.seq.wrapping_add(1);
        self.timestamp = self.timestamp.wrapping_add(PACKET_SAMPLES as u32);
        self.sample += PACKET_SAMPLES as u64;
        (packet, payload)
    }
}

/// Upward zero crossings per second of `samples` at 8 kHz.
fn frequency(samples: &[i16]) -> f64 {
    let crossings = samples.windows(2).filter(|w| w[0] < 0 && w[1] >= 0).count();
    crossings as f64 * 8000.0 / samples.len() as f64
}

#[test]
fn a_full_call_leaves_the_message_that_was_spoken() {
    let mut lab = Lab::new(config());
    // The INVITE is answered at once, with an answer at the UA's socket.
    let out = lab.sip(&invite("call-1", 1, &offer(40000, "8 0 101")));
    let ok = response(&out);
    assert_eq!(ok.code, 200);
    assert_eq!(lab.ua.calls(), 1);
    let tag = to_tag(&ok);
    assert_eq!(
        ok.headers.get(&HeaderName::Contact),
        Some("<sip:voicemail@127.0.0.1:5070>")
    );
    assert_eq!(
        ok.headers.all(&HeaderName::RecordRoute).collect::<Vec<_>>(),
        ["<sip:127.0.0.1:5060;lr;node=aa>", "<sip:192.0.2.7:5060;lr>"]
    );
    assert_eq!(ok.headers.all(&HeaderName::Via).count(), 2);
    assert_eq!(
        ok.headers.get(&HeaderName::ContentType),
        Some("application/sdp")
    );
    let answer = Sdp::parse(&ok.body).expect("the answer parses");
    assert_eq!(answer.streams().len(), 1);
    assert_eq!(answer.streams()[0].rtp, Some(ua_rtp()));
    let text = String::from_utf8(ok.body.clone()).unwrap();
    assert!(text.contains("c=IN IP4 127.0.0.1\r\n"), "{text}");
    assert!(
        text.contains("m=audio 30000 RTP/AVP 0\r\n"),
        "PCMU preferred: {text}"
    );
    assert!(text.contains("a=rtpmap:0 PCMU/8000\r\n"), "{text}");
    assert!(text.contains("a=sendrecv\r\n") && text.contains("a=ptime:20\r\n"));
    assert!(lab.sip(&in_dialog("ACK", "call-1", 1, &tag)).is_empty());

    // The beep: 25 packets of 20 ms at 1 kHz, paced by the timer.
    let beep = lab.run_to(Duration::from_millis(600));
    assert!(sips(&beep.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()).is_empty());
    let packets: Vec<(Duration, (RtpHeader, Vec<u8>))> = beep
        .iter()
        .flat_map(|(t, o)| rtps(std::slice::from_ref(o)).into_iter().map(|p| (*t, p)))
        .collect();
    assert_eq!(packets.len(), 25);
    let mut audio = Vec::new();
    for (i, (t, (header, payload))) in packets.iter().enumerate() {
        assert_eq!(*t, PACKET_INTERVAL * i as u32);
        assert_eq!(header.marker, i == 0);
        assert_eq!(header.payload_type, 0);
        assert_eq!(header.ssrc, packets[0].1 .0.ssrc);
        assert_eq!(
            header.sequence,
            packets[0].1 .0.sequence.wrapping_add(i as u16)
        );
        assert_eq!(
            header.timestamp,
            packets[0].1 .0.timestamp.wrapping_add(160 * i as u32)
        );
        assert_eq!(payload.len(), PACKET_SAMPLES);
        audio.extend(Codec::Pcmu.decode(payload));
    }
    let f = frequency(&audio);
    assert!((f - 1000.0).abs() < 20.0, "the beep is at {f} Hz");
    assert!(audio.iter().map(|s| s.abs()).max().unwrap() > 7000);

    // 3 s of speech, with sequence numbers that wrap.
    let mut talker = Talker::new(65_500);
    let mut sent = Vec::new();
    for _ in 0..150 {
        let (packet, payload) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
        sent.extend(payload);
        assert!(lab.advance(PACKET_INTERVAL).is_empty());
    }
    // The caller hangs up.
    let out = lab.sip(&in_dialog("BYE", "call-1", 2, &tag));
    assert_eq!(response(&out).code, 200);
    let recorded = recordings(&out);
    assert_eq!(recorded.len(), 1);
    let r = &recorded[0];
    assert_eq!(r.account, format!("sip:bob@{DOMAIN}"));
    assert_eq!(r.caller.as_deref(), Some("sip:alice@lab.example"));
    assert_eq!(r.claimed_from, "sip:alice@lab.example");
    assert_eq!(r.call_id, "call-1");
    assert_eq!(r.started_unix_ms, T0_MS);
    assert_eq!(r.codec, Codec::Pcmu);
    let ms = r.duration.as_millis() as i64;
    assert!((ms - 3000).abs() <= 20, "{ms} ms");
    assert_eq!(r.audio, sent);
    let f = frequency(&r.codec.decode(&r.audio));
    assert!((f - 440.0).abs() < 10.0, "{f} Hz");
    // Nothing is left, and a retransmitted BYE is still answered.
    assert_eq!(lab.ua.calls(), 0);
    assert!(lab.ua.media.is_empty());
    assert_eq!(lab.ua.poll_timeout(), None);
    let again = lab.sip(&in_dialog("BYE", "call-1", 2, &tag));
    assert_eq!(response(&again).code, 200);
    assert!(recordings(&again).is_empty());
}

#[test]
fn pcma_and_other_streams_are_answered_as_rfc_3264_asks() {
    let mut lab = Lab::new(config());
    let sdp = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
               m=video 40010 RTP/AVP 96\r\n\
               m=audio 40020 RTP/SAVP 0\r\n\
               m=audio 40000 RTP/AVP 8 101\r\na=sendonly\r\n";
    let ok = response(&lab.sip(&invite("c", 1, sdp)));
    assert_eq!(ok.code, 200);
    let text = String::from_utf8(ok.body.clone()).unwrap();
    assert!(text.contains("m=video 0 RTP/AVP 96\r\n"), "{text}");
    assert!(text.contains("m=audio 0 RTP/SAVP 0\r\n"), "{text}");
    assert!(text.contains("m=audio 30000 RTP/AVP 8\r\na=rtpmap:8 PCMA/8000\r\n"));
    assert!(text.contains("a=recvonly\r\n"), "a sendonly offer: {text}");
    let answer = Sdp::parse(&ok.body).unwrap();
    let rtp: Vec<_> = answer.streams().iter().map(|s| s.rtp).collect();
    assert_eq!(rtp, [None, None, Some(ua_rtp())]);
    // The UA does not send into a stream it only receives: no beep, and
    // A-law audio is recorded from the start.
    let out = lab.advance(Duration::from_millis(100));
    assert!(rtps(&out).is_empty());
    let mut talker = Talker::new(1);
    talker.payload_type = 8;
    let (packet, payload) = talker.next();
    assert!(lab.rtp(media(), &packet).is_empty());
    let out = lab.sip(&in_dialog("BYE", "c", 2, &to_tag(&ok)));
    let r = recordings(&out).remove(0);
    assert_eq!((r.codec, r.audio), (Codec::Pcma, payload));
}

#[test]
fn packets_from_elsewhere_or_of_another_type_are_not_recorded() {
    let mut lab = Lab::new(config());
    let tag = lab.answered("c", &offer(40000, "0 101"));
    let mut talker = Talker::new(7);
    let (first, first_payload) = talker.next();
    // The same packet from another port, another host: dropped.
    assert!(lab.rtp(at([127, 0, 0, 1], 40001), &first).is_empty());
    assert!(lab.rtp(at([127, 0, 0, 2], 40000), &first).is_empty());
    // Telephone events, comfort noise, A-law on a µ-law call: ignored.
    for pt in [101, 13, 8] {
        talker.payload_type = pt;
        let (packet, _) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
    }
    // The caller's packet from the offer's address, as the IPv4-mapped
    // address a dual-stack socket reports: recorded.
    let mapped: SocketAddr = "[::ffff:127.0.0.1]:40000".parse().unwrap();
    assert!(lab.rtp(mapped, &first).is_empty());
    let out = lab.sip(&in_dialog("BYE", "c", 2, &tag));
    assert_eq!(recordings(&out).remove(0).audio, first_payload);
}

#[test]
fn duplicates_and_late_packets_are_dropped_and_gaps_kept() {
    let mut lab = Lab::new(config());
    let tag = lab.answered("c", &offer(40000, "0"));
    let mut talker = Talker::new(65_534);
    let packets: Vec<(Vec<u8>, Vec<u8>)> = (0..6).map(|_| talker.next()).collect();
    // Sequence 65534, 65535, 0, 1, 2, 3 sent as: 0 1 1 3 2 4 0 5.
    for i in [0, 1, 1, 3, 2, 4, 0, 5] {
        assert!(lab.rtp(media(), &packets[i].0).is_empty());
    }
    let want: Vec<u8> = [0, 1, 3, 4, 5]
        .iter()
        .flat_map(|&i| packets[i].1.clone())
        .collect();
    // A new source starts its own numbering.
    let mut other = Talker::new(100);
    other.ssrc = 99;
    let (packet, payload) = other.next();
    assert!(lab.rtp(media(), &packet).is_empty());
    let out = lab.sip(&in_dialog("BYE", "c", 2, &tag));
    let r = recordings(&out).remove(0);
    assert_eq!(r.audio, [want, payload].concat());
}

#[test]
fn audio_during_the_beep_is_not_kept() {
    let mut lab = Lab::new(config());
    let ok = response(&lab.sip(&invite("c", 1, &offer(40000, "0"))));
    let mut talker = Talker::new(1);
    let (early, _) = talker.next();
    let _ = lab.advance(Duration::from_millis(100));
    assert!(lab.rtp(media(), &early).is_empty());
    let _ = lab.advance(Duration::from_millis(500));
    let (late, payload) = talker.next();
    assert!(lab.rtp(media(), &late).is_empty());
    let out = lab.sip(&in_dialog("BYE", "c", 2, &to_tag(&ok)));
    assert_eq!(recordings(&out).remove(0).audio, payload);
}

#[test]
fn the_200_is_retransmitted_until_the_ack() {
    let mut lab = Lab::new(VoicemailConfig {
        silence_timeout: Duration::from_secs(100),
        ..config()
    });
    let first = lab.sip(&invite("c", 1, &offer(40000, "0")));
    let ok = response(&first);
    // A retransmitted INVITE gets the same 200.
    let again = lab.sip(&invite("c", 1, &offer(40000, "0")));
    assert_eq!(again, first);
    // T1, doubling, at most T2: 0.5, 1.5, 3.5, 7.5, 11.5 s.
    let out = lab.run_to(Duration::from_millis(12_000));
    let times: Vec<u128> = out
        .iter()
        .filter(|(_, o)| matches!(o, VoicemailOutput::Sip { .. }))
        .map(|(t, o)| {
            assert_eq!(o, &first[0]);
            t.as_millis()
        })
        .collect();
    assert_eq!(times, [500, 1500, 3500, 7500, 11_500]);
    assert!(lab.sip(&in_dialog("ACK", "c", 1, &to_tag(&ok))).is_empty());
    // Feed RTP so that the silence timer stays quiet, and listen.
    let mut talker = Talker::new(1);
    for _ in 0..40 {
        let (packet, _) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
        assert!(sips(&lab.advance(Duration::from_secs(1))).is_empty());
    }
    assert_eq!(lab.ua.calls(), 1);
}

#[test]
fn no_ack_in_64_t1_ends_the_call_with_a_bye() {
    let mut lab = Lab::new(VoicemailConfig {
        silence_timeout: Duration::from_secs(100),
        ..config()
    });
    let ok = response(&lab.sip(&invite("c", 1, &offer(40000, "0"))));
    let out = lab.run_to(Duration::from_millis(31_999));
    // Ten retransmissions: 0.5, 1.5, 3.5, 7.5, then every 4 s to 31.5 s.
    let all: Vec<VoicemailOutput> = out.into_iter().map(|(_, o)| o).collect();
    assert_eq!(responses(&all).len(), 10);
    let out = lab.advance(Duration::from_millis(1));
    let byes = requests(&out);
    assert_eq!(byes.len(), 1);
    assert_eq!(byes[0].method, Method::Bye);
    assert!(recordings(&out).is_empty(), "nothing was said");
    assert_eq!(lab.ua.calls(), 0);
    let from = NameAddr::parse("From", byes[0].headers.get(&HeaderName::From).unwrap()).unwrap();
    assert_eq!(from.tag(), Some(to_tag(&ok).as_str()));
    // A late ACK or INVITE retransmission changes nothing.
    assert!(lab.sip(&in_dialog("ACK", "c", 1, &to_tag(&ok))).is_empty());
    assert!(lab.sip(&invite("c", 1, &offer(40000, "0"))).is_empty());
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn a_full_recording_ends_with_the_uas_bye() {
    let mut lab = Lab::new(VoicemailConfig {
        max_duration: Duration::from_secs(1),
        ..config()
    });
    let tag = lab.answered("c", &offer(40000, "0"));
    let mut talker = Talker::new(1);
    let mut sent = Vec::new();
    let mut out = Vec::new();
    for i in 0..60 {
        let (packet, payload) = talker.next();
        out = lab.rtp(media(), &packet);
        sent.extend(payload);
        if i < 49 {
            assert!(out.is_empty(), "packet {i}");
        } else {
            break;
        }
    }
    // The 50th packet fills the second: BYE, and the message.
    let bye = requests(&out).remove(0);
    let r = recordings(&out).remove(0);
    assert_eq!(r.duration, Duration::from_secs(1));
    assert_eq!(r.audio, sent);
    assert_eq!(lab.ua.calls(), 0);
    // RFC 3261 §12.2.1.1: to the remote target, along the route set.
    assert_eq!(bye.method, Method::Bye);
    assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:6001");
    assert_eq!(
        bye.headers.all(&HeaderName::Route).collect::<Vec<_>>(),
        ["<sip:127.0.0.1:5060;lr;node=aa>", "<sip:192.0.2.7:5060;lr>"]
    );
    let bye_message = SipMessage::Request(bye.clone());
    assert_eq!(bye_message.from().unwrap().tag(), Some(tag.as_str()));
    assert_eq!(
        bye_message.from().unwrap().uri.to_string(),
        "sip:bob@lab.example"
    );
    assert_eq!(bye_message.to().unwrap().tag(), Some("caller-c"));
    assert_eq!(
        bye_message.to().unwrap().display.as_deref(),
        Some("\"Alice\"")
    );
    assert_eq!(bye_message.call_id().unwrap(), "c");
    assert_eq!(bye_message.cseq().unwrap().seq, 1);
    assert_eq!(bye_message.cseq().unwrap().method, Method::Bye);
    assert_eq!(bye.max_forwards(), Some(70));
    let vias = bye_message.vias().unwrap();
    assert_eq!(vias.len(), 1);
    assert_eq!(
        vias[0].to_string().split(';').next(),
        Some("SIP/2.0/UDP 127.0.0.1:5070")
    );
    assert!(vias[0].branch().unwrap().starts_with("z9hG4bK"));
    // Later packets go nowhere.
    let (packet, _) = talker.next();
    assert!(lab.rtp(media(), &packet).is_empty());
    // The BYE is retransmitted (T1 doubling) until its 200.
    let out = lab.advance(Duration::from_millis(1600));
    let resent = requests(&out);
    assert_eq!(resent.len(), 2);
    assert!(resent.iter().all(|r| *r == bye));
    // A response of another transaction changes nothing.
    let mut stray = bye.reply(200, None);
    stray.headers.set(HeaderName::CSeq, "7 BYE");
    assert!(lab.sip(&SipMessage::Response(stray).to_bytes()).is_empty());
    assert!(lab.ua.poll_timeout().is_some());
    let done = SipMessage::Response(bye.reply(200, None)).to_bytes();
    assert!(lab.sip(&done).is_empty());
    assert_eq!(lab.ua.poll_timeout(), None);
    assert!(lab.advance(Duration::from_secs(60)).is_empty());
}

#[test]
fn an_unanswered_bye_gives_up_after_64_t1() {
    let mut lab = Lab::new(config());
    lab.answered("c", &offer(40000, "0"));
    // No RTP: the silence timeout hangs up 10 s after the beep.
    let out = lab.run_to(Duration::from_secs(60));
    let times: Vec<u128> = out
        .iter()
        .filter(|(_, o)| matches!(o, VoicemailOutput::Sip { .. }))
        .map(|(t, _)| t.as_millis())
        .collect();
    // The beep ends at 500 ms; the BYE at 10.5 s, then T1 doubling to T2
    // until 64 × T1 after the first.
    assert_eq!(
        times,
        [10_500, 11_000, 12_000, 14_000, 18_000, 22_000, 26_000, 30_000, 34_000, 38_000, 42_000]
    );
    assert_eq!(lab.ua.poll_timeout(), None);
    assert!(lab.ua.byes.is_empty());
}

#[test]
fn silence_after_some_speech_hangs_up_with_the_message() {
    let mut lab = Lab::new(config());
    lab.answered("c", &offer(40000, "0"));
    let mut talker = Talker::new(1);
    let mut sent = Vec::new();
    for _ in 0..50 {
        let (packet, payload) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
        sent.extend(payload);
        assert!(lab.advance(PACKET_INTERVAL).is_empty());
    }
    let last_packet = lab.now - PACKET_INTERVAL;
    let out = lab.run_to(Duration::from_secs(30));
    let (t, _) = out
        .iter()
        .find(|(_, o)| matches!(o, VoicemailOutput::Recorded(_)))
        .unwrap();
    assert_eq!(lab.t0 + *t, last_packet + Duration::from_secs(10));
    let all: Vec<VoicemailOutput> = out.into_iter().map(|(_, o)| o).collect();
    assert_eq!(recordings(&all).remove(0).audio, sent);
    assert_eq!(requests(&all)[0].method, Method::Bye);
}

#[test]
fn a_caller_too_slow_for_real_time_is_cut_off() {
    let mut lab = Lab::new(VoicemailConfig {
        max_duration: Duration::from_secs(2),
        ..config()
    });
    lab.answered("c", &offer(40000, "0"));
    // One packet every 5 s: never silent for 10 s, never 2 s of audio.
    let mut talker = Talker::new(1);
    let mut ended = None;
    for i in 0..10 {
        let (packet, _) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
        let out = lab.advance(Duration::from_secs(5));
        if !recordings(&out).is_empty() {
            ended = Some(i);
            break;
        }
    }
    // The recording began at 0.5 s: it ends at 0.5 + 2 + 5 s.
    assert_eq!(ended, Some(1));
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn the_ua_is_busy_when_full() {
    let mut lab = Lab::new(VoicemailConfig {
        max_calls: 2,
        ..config()
    });
    for (i, port) in [40000, 40002].into_iter().enumerate() {
        let out = lab.sip(&invite(&format!("c{i}"), 1, &offer(port, "0")));
        assert_eq!(response(&out).code, 200);
    }
    let out = lab.sip(&invite("c2", 1, &offer(40004, "0")));
    let busy = response(&out);
    assert_eq!(busy.code, 486);
    assert!(
        to_tag(&busy).len() >= 8,
        "a final response carries a To tag"
    );
    assert_eq!(lab.ua.calls(), 2);
    // Nor can two calls share one media address.
    let mut lab = Lab::new(config());
    assert_eq!(
        response(&lab.sip(&invite("a", 1, &offer(40000, "0")))).code,
        200
    );
    assert_eq!(
        response(&lab.sip(&invite("b", 1, &offer(40000, "0")))).code,
        486
    );
}

#[test]
fn an_offer_without_g711_is_not_acceptable() {
    let mut lab = Lab::new(config());
    for (i, sdp) in [
        offer(40000, "18 101"),
        String::new(),
        "v=0\r\nbroken\r\n".to_owned(),
        offer(40000, "0").replace("RTP/AVP", "RTP/SAVP"),
        offer(0, "0"),
        offer(40000, "0").replace("c=IN IP4 127.0.0.1", "c=IN IP4 0.0.0.0"),
        offer(40000, "0").replace("m=audio", "m=video"),
        offer(40000, "00 80 08"),
    ]
    .iter()
    .enumerate()
    {
        let out = lab.sip(&invite(&format!("c{i}"), 1, sdp));
        assert_eq!(response(&out).code, 488, "{sdp:?}");
    }
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn sip_from_anyone_but_the_proxy_is_dropped() {
    let mut lab = Lab::new(config());
    for from in [at([127, 0, 0, 1], 5061), at([127, 0, 0, 2], 5060), ua_sip()] {
        let out = lab
            .ua
            .handle_sip(lab.now, T0_MS, from, &invite("c", 1, &offer(40000, "0")));
        assert!(out.is_empty());
    }
    assert_eq!(lab.ua.calls(), 0);
    assert!(lab.sip(b"garbage").is_empty());
    // Junk with the headers to answer gets the parser's 400.
    let bad = String::from_utf8(invite("c", 1, ""))
        .unwrap()
        .replace("Max-Forwards: 69", "Max-Forwards: x");
    assert_eq!(response(&lab.sip(bad.as_bytes())).code, 400);
}

#[test]
fn malformed_rtp_is_dropped_without_a_panic() {
    let mut lab = Lab::new(config());
    let tag = lab.answered("c", &offer(40000, "0"));
    let mut talker = Talker::new(1);
    let (good, _) = talker.next();
    let mut bad = Vec::new();
    bad.push(good[..11].to_vec()); // truncated header
    let mut csrc = good[..16].to_vec();
    csrc[0] |= 0x0f; // 15 CSRCs in 4 bytes
    bad.push(csrc);
    let mut ext = good.clone();
    ext[0] |= 0x10;
    ext[14] = 0xff; // an extension of 65535 words
    ext[15] = 0xff;
    bad.push(ext);
    let mut pad = good.clone();
    pad[0] |= 0x20;
    *pad.last_mut().unwrap() = 200; // 200 bytes of padding in 160
    bad.push(pad);
    let mut version = good.clone();
    version[0] = 0x40;
    bad.push(version);
    bad.push(Vec::new());
    bad.push(vec![0x80; 5000]);
    for packet in &bad {
        assert!(lab.rtp(media(), packet).is_empty());
    }
    let out = lab.sip(&in_dialog("BYE", "c", 2, &tag));
    assert!(recordings(&out).is_empty(), "nothing was recorded");
}

#[test]
fn requests_the_ua_does_not_serve_are_answered_and_change_nothing() {
    let mut lab = Lab::new(config());
    let tag = lab.answered("c", &offer(40000, "0"));
    let code = |lab: &mut Lab, bytes: Vec<u8>| response(&lab.sip(&bytes)).code;
    // Outside a dialog.
    let options = response(&lab.sip(&in_dialog("OPTIONS", "x", 1, "")));
    assert_eq!(options.code, 200);
    assert!(options
        .headers
        .get(&HeaderName::Allow)
        .unwrap()
        .contains("BYE"));
    let message = response(&lab.sip(&in_dialog("MESSAGE", "x", 1, "")));
    assert_eq!(message.code, 405);
    assert_eq!(
        message.headers.get(&HeaderName::Allow),
        Some("INVITE, ACK, BYE, CANCEL, OPTIONS")
    );
    assert_eq!(code(&mut lab, in_dialog("BYE", "x", 1, "")), 481);
    assert_eq!(code(&mut lab, in_dialog("BYE", "x", 1, "nope")), 481);
    assert_eq!(code(&mut lab, in_dialog("CANCEL", "x", 1, "")), 481);
    assert!(lab.sip(&in_dialog("ACK", "x", 1, "zz")).is_empty());
    // A CANCEL of the answered INVITE: 200, and the call goes on.
    assert_eq!(code(&mut lab, in_dialog("CANCEL", "c", 1, "")), 200);
    // In the dialog.
    assert_eq!(code(&mut lab, in_dialog("INVITE", "c", 3, &tag)), 488);
    assert_eq!(code(&mut lab, in_dialog("UPDATE", "c", 4, &tag)), 488);
    assert_eq!(code(&mut lab, in_dialog("OPTIONS", "c", 5, &tag)), 200);
    assert_eq!(code(&mut lab, in_dialog("INFO", "c", 6, &tag)), 200);
    assert_eq!(code(&mut lab, in_dialog("REFER", "c", 7, &tag)), 405);
    assert_eq!(code(&mut lab, in_dialog("BYE", "c", 8, "wrong-tag")), 481);
    // A new INVITE of the same Call-ID from another branch of a fork.
    assert_eq!(code(&mut lab, invite("c", 9, &offer(40002, "0"))), 482);
    // Extensions the UA does not support.
    let require = String::from_utf8(invite("r", 1, &offer(40002, "0")))
        .unwrap()
        .replace(
            "Max-Forwards: 69",
            "Max-Forwards: 69\r\nRequire: 100rel, timer",
        );
    let refused = response(&lab.sip(require.as_bytes()));
    assert_eq!(refused.code, 420);
    assert_eq!(
        refused.headers.get(&HeaderName::Unsupported),
        Some("100rel, timer")
    );
    assert_eq!(lab.ua.calls(), 1);
    let out = lab.sip(&in_dialog("BYE", "c", 10, &tag));
    assert_eq!(response(&out).code, 200);
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn an_invite_without_what_a_dialog_needs_is_refused() {
    let mut lab = Lab::new(config());
    let text = String::from_utf8(invite("c", 1, &offer(40000, "0"))).unwrap();
    let no_contact = text.replace("Contact: <sip:alice@127.0.0.1:6001>\r\n", "");
    assert_eq!(response(&lab.sip(no_contact.as_bytes())).code, 400);
    let no_user = text.replace("INVITE sip:bob@", "INVITE sip:");
    assert_eq!(response(&lab.sip(no_user.as_bytes())).code, 404);
    let bad_route = text.replace("<sip:192.0.2.7:5060;lr>", "<junk>");
    assert_eq!(response(&lab.sip(bad_route.as_bytes())).code, 400);
    // Without P-Asserted-Identity the caller is unverified.
    let anonymous = text.replace(
        "P-Asserted-Identity: <sip:alice@lab.example>, <tel:+15551234>\r\n",
        "",
    );
    let ok = response(&lab.sip(anonymous.as_bytes()));
    assert_eq!(ok.code, 200);
    assert_eq!(lab.ua.calls(), 1);
    let call = lab.ua.calls.get("c").unwrap();
    assert_eq!(call.caller, None);
    assert_eq!(call.claimed_from, "sip:alice@lab.example");
}

#[test]
fn ended_calls_are_remembered_for_a_while_only() {
    let mut lab = Lab::new(config());
    for i in 0..(ENDED_CALLS + 10) {
        let call_id = format!("c{i}");
        let ok = response(&lab.sip(&invite(&call_id, 1, &offer(40000, "0"))));
        let out = lab.sip(&in_dialog("BYE", &call_id, 2, &to_tag(&ok)));
        assert_eq!(response(&out).code, 200);
    }
    assert_eq!(lab.ua.ended.len(), ENDED_CALLS);
    assert_eq!(lab.ua.calls(), 0);
    let last = format!("c{}", ENDED_CALLS + 9);
    assert_eq!(
        response(&lab.sip(&in_dialog("BYE", &last, 2, "t"))).code,
        200
    );
    // After 64 × T1 a BYE finds nothing.
    let _ = lab.advance(TIMER_64T1);
    assert_eq!(
        response(&lab.sip(&in_dialog("BYE", &last, 2, "t"))).code,
        481
    );
}

#[test]
fn the_limits_of_the_configuration_are_capped() {
    let ua = VoicemailUa::new(
        VoicemailConfig {
            max_calls: usize::MAX,
            max_duration: Duration::from_secs(1 << 40),
            greeting: Duration::from_secs(3600),
            silence_timeout: Duration::MAX,
            ..config()
        },
        [0; 32],
    );
    assert_eq!(ua.config().max_calls, MAX_CALLS_LIMIT);
    assert_eq!(ua.config().max_duration, MAX_DURATION_LIMIT);
    assert_eq!(ua.config().greeting, MAX_GREETING);
    assert_eq!(ua.config().silence_timeout, MAX_DURATION_LIMIT);
    assert!(format!("{ua:?}").contains("calls: 0"));
    assert_eq!(ua.max_audio(), 600 * 8000);
}

#[test]
fn codecs_name_their_payload_types() {
    for codec in [Codec::Pcmu, Codec::Pcma] {
        assert_eq!(Codec::from_payload_type(codec.payload_type()), Some(codec));
        let samples = g711::tone(440.0, 5000, 0, 80);
        let round = codec.decode(&codec.encode(&samples));
        assert!(samples.iter().zip(&round).all(|(a, b)| (a - b).abs() < 200));
    }
    assert_eq!(Codec::from_payload_type(101), None);
    assert_eq!((Codec::Pcmu.name(), Codec::Pcma.name()), ("PCMU", "PCMA"));
}

/// A playback INVITE as the proxy sends it: bob, asserted, calls
/// `sip:voicemail@…` to listen to his messages.
fn play_invite(call_id: &str, sdp: &str) -> Vec<u8> {
    String::from_utf8(invite(call_id, 1, sdp))
        .unwrap()
        .replace(
            &format!("INVITE sip:bob@{DOMAIN}"),
            "INVITE sip:play.bob@127.0.0.1:5070",
        )
        .replace(
            &format!("P-Asserted-Identity: <sip:alice@{DOMAIN}>, <tel:+15551234>"),
            &format!("P-Asserted-Identity: <sip:bob@{DOMAIN}>"),
        )
        .into_bytes()
}

/// The UA's BYE in `out`, sent once and maybe retransmitted.
fn the_bye(out: &[VoicemailOutput]) -> Request {
    let sent = requests(out);
    assert!(!sent.is_empty(), "no BYE in {out:?}");
    assert!(sent
        .iter()
        .all(|r| r.method == Method::Bye && *r == sent[0]));
    sent[0].clone()
}

fn fetches(out: &[VoicemailOutput]) -> Vec<(String, String)> {
    out.iter()
        .filter_map(|o| match o {
            VoicemailOutput::Fetch { call_id, account } => Some((call_id.clone(), account.clone())),
            _ => None,
        })
        .collect()
}

/// The RTP packets among timed outputs, with their instants.
fn timed_rtps(out: &[(Duration, VoicemailOutput)]) -> Vec<(Duration, RtpHeader, Vec<u8>)> {
    out.iter()
        .flat_map(|(t, o)| {
            rtps(std::slice::from_ref(o))
                .into_iter()
                .map(|(h, p)| (*t, h, p))
        })
        .collect()
}

/// A playback call answered (200 and Fetch) and acknowledged: its tag.
fn playback_answered(lab: &mut Lab, call_id: &str, sdp: &str) -> String {
    let out = lab.sip(&play_invite(call_id, sdp));
    assert_eq!(out.len(), 2, "{out:?}");
    let ok = response(&out);
    assert_eq!(ok.code, 200);
    assert_eq!(
        fetches(&out),
        [(call_id.to_owned(), format!("sip:bob@{DOMAIN}"))]
    );
    let tag = to_tag(&ok);
    assert!(lab.sip(&in_dialog("ACK", call_id, 1, &tag)).is_empty());
    tag
}

/// `n` samples of a tone, from sample 0.
fn tone(hz: f64, n: usize) -> Vec<i16> {
    g711::tone(hz, 6000, 0, n)
}

#[test]
fn a_playback_call_plays_each_message_after_a_beep_then_hangs_up() {
    let mut lab = Lab::new(config());
    // Answered as a recording call is (µ-law preferred), but silent: the
    // UA asks the driver for bob's messages and waits.
    let out = lab.sip(&play_invite("p", &offer(40000, "8 0 101")));
    let ok = response(&out);
    assert_eq!(ok.code, 200);
    let text = String::from_utf8(ok.body.clone()).unwrap();
    assert!(text.contains("m=audio 30000 RTP/AVP 0\r\n"), "{text}");
    assert_eq!(
        fetches(&out),
        [("p".to_owned(), format!("sip:bob@{DOMAIN}"))]
    );
    // A retransmitted INVITE gets the 200 again, not another Fetch.
    let again = lab.sip(&play_invite("p", &offer(40000, "8 0 101")));
    assert_eq!(again, out[..1]);
    assert!(lab.sip(&in_dialog("ACK", "p", 1, &to_tag(&ok))).is_empty());
    assert!(lab.advance(Duration::from_secs(2)).is_empty());
    assert_eq!(lab.ua.calls(), 1);

    // Two messages, newest first: µ-law as the call, then A-law.
    let first = Codec::Pcmu.encode(&tone(440.0, 1000));
    let second_samples = tone(600.0, 800);
    let second = Codec::Pcma.encode(&second_samples);
    let start = lab.now - lab.t0;
    let out = lab.ua.messages(
        lab.now,
        "p",
        vec![
            Message {
                codec: Codec::Pcmu,
                audio: first.clone(),
            },
            Message {
                codec: Codec::Pcma,
                audio: second.clone(),
            },
        ],
    );
    // The first packet leaves at once.
    let mut timed: Vec<(Duration, VoicemailOutput)> = out.into_iter().map(|o| (start, o)).collect();
    assert_eq!(timed.len(), 1);
    timed.extend(lab.run_to(start + Duration::from_secs(5)));
    let packets = timed_rtps(&timed);
    // Beep (25), 1000 bytes (7), beep (25), 800 bytes (5).
    assert_eq!(packets.len(), 25 + 7 + 25 + 5);
    for (i, (t, header, _)) in packets.iter().enumerate() {
        assert_eq!(*t, start + PACKET_INTERVAL * i as u32);
        assert_eq!(header.marker, i == 0);
        assert_eq!(header.payload_type, 0);
        assert_eq!(header.ssrc, packets[0].1.ssrc);
        assert_eq!(
            header.sequence,
            packets[0].1.sequence.wrapping_add(i as u16)
        );
        assert_eq!(
            header.timestamp,
            packets[0].1.timestamp.wrapping_add(160 * i as u32)
        );
    }
    let payloads = |range: std::ops::Range<usize>| -> Vec<u8> {
        packets[range]
            .iter()
            .flat_map(|(_, _, p)| p.clone())
            .collect()
    };
    for beep in [payloads(0..25), payloads(32..57)] {
        assert_eq!(beep.len(), 4000);
        let f = frequency(&Codec::Pcmu.decode(&beep));
        assert!((f - 1000.0).abs() < 20.0, "the beep is at {f} Hz");
    }
    // The µ-law message as it was recorded, byte for byte.
    assert_eq!(payloads(25..32), first);
    assert_eq!(packets[31].2.len(), 1000 - 6 * 160);
    // The A-law message transcoded to µ-law.
    let played = payloads(57..62);
    assert_eq!(played, Codec::Pcmu.encode(&Codec::Pcma.decode(&second)));
    let heard = Codec::Pcmu.decode(&played);
    assert_eq!(heard.len(), second_samples.len());
    for (a, b) in heard.iter().zip(&second_samples) {
        assert!((i32::from(*a) - i32::from(*b)).abs() <= 400, "{a} for {b}");
    }
    // Then the UA's BYE, 20 ms after the last packet, and nothing
    // recorded.
    let all: Vec<VoicemailOutput> = timed.iter().map(|(_, o)| o.clone()).collect();
    let bye = the_bye(&all);
    assert_eq!(bye.uri.to_string(), "sip:alice@127.0.0.1:6001");
    let bye_at = timed
        .iter()
        .find(|(_, o)| matches!(o, VoicemailOutput::Sip { .. }))
        .map(|(t, _)| *t);
    assert_eq!(bye_at, Some(start + PACKET_INTERVAL * 62));
    assert!(recordings(&all).is_empty());
    assert_eq!(lab.ua.calls(), 0);
    assert!(lab.ua.media.is_empty());
    // The BYE's 200 ends its transaction; nothing is left.
    let done = SipMessage::Response(bye.reply(200, None)).to_bytes();
    assert!(lab.sip(&done).is_empty());
    assert_eq!(lab.ua.poll_timeout(), None);
    // Messages for the ended call do nothing.
    assert!(lab.ua.messages(lab.now, "p", Vec::new()).is_empty());
}

#[test]
fn an_a_law_call_plays_a_law_messages_as_they_are() {
    let mut lab = Lab::new(config());
    playback_answered(&mut lab, "p", &offer(40000, "8"));
    let alaw = Codec::Pcma.encode(&tone(440.0, 320));
    let ulaw_samples = tone(440.0, 160);
    let ulaw = Codec::Pcmu.encode(&ulaw_samples);
    let mut out = lab.ua.messages(
        lab.now,
        "p",
        vec![
            Message {
                codec: Codec::Pcma,
                audio: alaw.clone(),
            },
            Message {
                codec: Codec::Pcmu,
                audio: ulaw.clone(),
            },
        ],
    );
    out.extend(lab.advance(Duration::from_secs(3)));
    let packets = rtps(&out);
    assert_eq!(packets.len(), 25 + 2 + 25 + 1);
    assert!(packets.iter().all(|(h, _)| h.payload_type == 8));
    let message: Vec<u8> = packets[25..27]
        .iter()
        .flat_map(|(_, p)| p.clone())
        .collect();
    assert_eq!(message, alaw);
    assert_eq!(
        packets[52].1,
        Codec::Pcma.encode(&Codec::Pcmu.decode(&ulaw))
    );
    the_bye(&out);
}

#[test]
fn the_callers_bye_ends_playback_at_once() {
    let mut lab = Lab::new(config());
    let tag = playback_answered(&mut lab, "p", &offer(40000, "0"));
    let mut out = lab.ua.messages(
        lab.now,
        "p",
        vec![Message {
            codec: Codec::Pcmu,
            audio: vec![0x55; 16000],
        }],
    );
    out.extend(lab.advance(Duration::from_millis(990)));
    assert_eq!(rtps(&out).len(), 50);
    // What the caller sends is not kept, and changes nothing.
    let mut talker = Talker::new(1);
    for _ in 0..5 {
        let (packet, _) = talker.next();
        assert!(lab.rtp(media(), &packet).is_empty());
    }
    let out = lab.sip(&in_dialog("BYE", "p", 2, &tag));
    assert_eq!(response(&out).code, 200);
    assert_eq!(out.len(), 1, "no recording: {out:?}");
    assert_eq!(lab.ua.calls(), 0);
    assert_eq!(lab.ua.poll_timeout(), None);
    assert!(lab.advance(Duration::from_secs(5)).is_empty());
    assert_eq!(
        response(&lab.sip(&in_dialog("BYE", "p", 2, &tag))).code,
        200
    );
}

#[test]
fn without_messages_the_call_beeps_long_after_the_fetch_timeout() {
    // The silence timeout (10 s) is shorter than the wait: it does not
    // apply to playback.
    let mut lab = Lab::new(config());
    playback_answered(&mut lab, "p", &offer(40000, "0"));
    let acked = lab.now - lab.t0;
    assert!(lab
        .run_to(acked + FETCH_TIMEOUT - Duration::from_millis(1))
        .is_empty());
    let out = lab.run_to(acked + FETCH_TIMEOUT + Duration::from_secs(2));
    let packets = timed_rtps(&out);
    assert_eq!(packets.len(), 50, "one 1 s beep");
    assert_eq!(packets[0].0, acked + FETCH_TIMEOUT);
    let beep: Vec<u8> = packets.iter().flat_map(|(_, _, p)| p.clone()).collect();
    let f = frequency(&Codec::Pcmu.decode(&beep));
    assert!((f - 1000.0).abs() < 20.0, "{f} Hz");
    let bye = out
        .iter()
        .find(|(_, o)| matches!(o, VoicemailOutput::Sip { .. }))
        .unwrap();
    assert_eq!(bye.0, acked + FETCH_TIMEOUT + NO_MESSAGES_BEEP);
    assert_eq!(lab.ua.calls(), 0);
    // Messages that come too late do nothing.
    assert!(lab.ua.messages(lab.now, "p", Vec::new()).is_empty());

    // An empty list plays the same beep at once.
    let mut lab = Lab::new(config());
    playback_answered(&mut lab, "q", &offer(40000, "0"));
    let mut out = lab.ua.messages(lab.now, "q", Vec::new());
    out.extend(lab.advance(Duration::from_secs(2)));
    assert_eq!(rtps(&out).len(), 50);
    the_bye(&out);
    // Without an ACK the call ends after 64 × T1, as any call.
    let mut lab = Lab::new(config());
    let out = lab.sip(&play_invite("r", &offer(40000, "0")));
    assert_eq!(fetches(&out).len(), 1);
    let out = lab.run_to(TIMER_64T1);
    assert!(rtps(&out.iter().map(|(_, o)| o.clone()).collect::<Vec<_>>()).is_empty());
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn messages_for_a_call_that_does_not_wait_for_them_do_nothing() {
    let mut lab = Lab::new(config());
    let one = || {
        vec![Message {
            codec: Codec::Pcmu,
            audio: vec![0x55; 160],
        }]
    };
    assert!(lab.ua.messages(lab.now, "nobody", one()).is_empty());
    // A recording call.
    lab.answered("rec", &offer(40000, "0"));
    assert!(lab.ua.messages(lab.now, "rec", one()).is_empty());
    // A playback call already playing.
    playback_answered(&mut lab, "p", &offer(40002, "0"));
    let out = lab.ua.messages(lab.now, "p", one());
    assert!(
        matches!(out[..], [VoicemailOutput::Rtp { to, .. }] if to == at([127, 0, 0, 1], 40002)),
        "{out:?}"
    );
    assert!(lab.ua.messages(lab.now, "p", one()).is_empty());
    assert_eq!(lab.ua.calls(), 2);
}

#[test]
fn at_most_50_messages_are_played_each_cut_at_its_limit() {
    let mut lab = Lab::new(config());
    playback_answered(&mut lab, "p", &offer(40000, "0"));
    let messages: Vec<Message> = (0..60u8)
        .map(|i| Message {
            codec: Codec::Pcmu,
            audio: vec![i; 160],
        })
        .collect();
    let mut out = lab.ua.messages(lab.now, "p", messages);
    out.extend(lab.advance(Duration::from_secs(60)));
    let packets = rtps(&out);
    assert_eq!(packets.len(), MAX_PLAYBACK_MESSAGES * (25 + 1));
    for (i, chunk) in packets.chunks(26).enumerate() {
        assert_eq!(chunk[25].1, vec![i as u8; 160], "message {i}");
    }
    the_bye(&out);

    // A message longer than max_duration + 5 s is cut there.
    let mut lab = Lab::new(VoicemailConfig {
        max_duration: Duration::from_secs(1),
        ..config()
    });
    playback_answered(&mut lab, "p", &offer(40000, "0"));
    let long = Message {
        codec: Codec::Pcmu,
        audio: vec![0x42; 8000 * 10],
    };
    let mut out = lab.ua.messages(lab.now, "p", vec![long]);
    out.extend(lab.advance(Duration::from_secs(20)));
    let played: usize = rtps(&out)[25..].iter().map(|(_, p)| p.len()).sum();
    assert_eq!(played, 6 * 8000);
}

#[test]
fn a_late_driver_gets_no_burst_of_playback() {
    let mut lab = Lab::new(config());
    playback_answered(&mut lab, "p", &offer(40000, "0"));
    let _ = lab.ua.messages(lab.now, "p", Vec::new());
    // Woken 500 ms late: 10 packets, the rest paced from now.
    lab.now += Duration::from_millis(500);
    let out = lab.ua.handle_timeout(lab.now);
    assert_eq!(rtps(&out).len(), MAX_BURST);
    assert_eq!(lab.ua.poll_timeout(), Some(lab.now + PACKET_INTERVAL));
    let out = lab.advance(Duration::from_secs(2));
    assert_eq!(rtps(&out).len(), 50 - 1 - MAX_BURST);
    the_bye(&out);
}

#[test]
fn playback_is_the_asserted_owners_only() {
    let mut lab = Lab::new(config());
    let text = String::from_utf8(play_invite("p", &offer(40000, "0"))).unwrap();
    let pai = "P-Asserted-Identity: <sip:bob@lab.example>\r\n";
    let asserted = |identity: &str| format!("P-Asserted-Identity: {identity}\r\n");
    for (i, (from, to, code)) in [
        ("INVITE sip:play.bob@", "INVITE sip:play.@".to_owned(), 404),
        (pai, String::new(), 403),
        (pai, asserted("<sip:carol@lab.example>"), 403),
        (pai, asserted("<sip:bob@other.example>"), 403),
        (pai, asserted("<tel:+15551234>, <sip:bob@lab.example>"), 403),
    ]
    .into_iter()
    .enumerate()
    {
        assert!(text.contains(from));
        let changed = text
            .replace(from, &to)
            .replace("Call-ID: p", &format!("Call-ID: p{i}"));
        let out = lab.sip(changed.as_bytes());
        assert_eq!(response(&out).code, code, "{changed}");
        assert!(fetches(&out).is_empty());
    }
    assert_eq!(lab.ua.calls(), 0);
    // The domain is compared as a host: case does not matter.
    let upper = text.replace(pai, &asserted("\"Bob\" <sip:bob@LAB.example>"));
    let out = lab.sip(upper.as_bytes());
    assert_eq!(response(&out).code, 200);
    assert_eq!(fetches(&out).len(), 1);
}

#[test]
fn a_playback_call_that_cannot_send_hangs_up_at_once() {
    let mut lab = Lab::new(config());
    let sdp = offer(40000, "0") + "a=sendonly\r\n";
    playback_answered(&mut lab, "p", &sdp);
    let out = lab.ua.messages(
        lab.now,
        "p",
        vec![Message {
            codec: Codec::Pcmu,
            audio: vec![0x55; 1600],
        }],
    );
    assert!(rtps(&out).is_empty());
    assert_eq!(requests(&out)[0].method, Method::Bye);
    assert_eq!(lab.ua.calls(), 0);
}

#[test]
fn the_fuzz_seeds_run_through_the_harness() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/voicemail_ua");
    let mut seeds = 0;
    for entry in std::fs::read_dir(dir).expect("the seed corpus is committed") {
        let data = std::fs::read(entry.unwrap().path()).unwrap();
        assert!(crate::sip::fuzzing::voicemail_ua(&data) > 1);
        seeds += 1;
    }
    assert!(seeds >= 3);
    // A playback call: answered (port 40002), acknowledged, three
    // messages (the last cut at the harness's 7 s), then messages for a
    // call never fetched, and a refused INVITE.
    let mut input = Vec::new();
    let mut chunk = |selector: u8, bytes: &[u8]| {
        input.push(selector);
        input.extend_from_slice(&(bytes.len() as u16).to_be_bytes());
        input.extend_from_slice(bytes);
    };
    chunk(0x08, &[1, 0, 1]);
    let ack = "ACK sip:voicemail@127.0.0.1:5070 SIP/2.0\r\n\
               Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-ack\r\n\
               From: <sip:bob@lab.example>;tag=owner\r\n\
               To: <sip:voicemail@lab.example>;tag=$T\r\n\
               Call-ID: play-0\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n";
    chunk(0x14, ack.as_bytes());
    chunk(0x29, &[0, 3, 2, 3, 255, 1, 2, 3]);
    chunk(0x09, &[3, 1, 2]);
    chunk(0x18, &[0, 1, 2]);
    let playback = crate::sip::fuzzing::voicemail_ua(&input);
    assert!(playback > 2 * 25 + 2 * 8 + 25 + 350, "{playback} outputs");
    // Junk, and nothing at all, pass too.
    assert!(crate::sip::fuzzing::voicemail_ua(&[]) >= 1);
    assert!(crate::sip::fuzzing::voicemail_ua(&[0xff; 300]) >= 1);
}

//! The voicemail user agent, sans-IO: a tiny SIP UAS that answers every
//! call the node routes to it, plays a beep and records what the caller
//! says.
//!
//! The node reaches it over UDP on loopback as if it were one of its
//! phones: the proxy forwards an unanswered call's INVITE to it, anchors
//! the media to its RTP socket and routes ACK and BYE to it in the dialog
//! (Record-Route). Like quinn-proto, this type opens no socket and reads
//! no clock: the driver hands it datagrams and instants, and sends what
//! it returns.
//!
//! ```text
//!  proxy                         VoicemailUa                     caller's media
//!    │ INVITE (offer)                 │                                │
//!    │───────────────────────────────▶│ 200 OK (answer), resent        │
//!    │◀───────────────────────────────│ T1, 2T1, … ≤ T2 until the ACK  │
//!    │ ACK                            │                                │
//!    │───────────────────────────────▶│ beep: RTP every 20 ms ────────▶│
//!    │                                │◀──────────────── RTP (recorded)│
//!    │ BYE         (or the UA's BYE)  │                                │
//!    │───────────────────────────────▶│ 200 OK, Recorded               │
//! ```
//!
//! - **Who may talk to it.** SIP from any address but the proxy's is
//!   dropped unread; RTP is taken only from the exact address the offer
//!   named for the call's stream (the proxy's anchor), of the negotiated
//!   payload type.
//! - **What it records.** After the beep, the G.711 payloads (PCMU or
//!   PCMA, as negotiated) in RTP sequence order: duplicates and packets
//!   older than the last are dropped, a gap stays a gap, audio received
//!   during the beep is not kept. At most `max_duration` of audio; then
//!   the UA hangs up itself.
//! - **When a call ends.** The caller's BYE; the UA's BYE when the
//!   recording is full, when no RTP came for `silence_timeout` after the
//!   beep, when the recording phase outlasts `max_duration` by
//!   [`RECORDING_SLACK`] (a caller sending too slowly), or when no ACK
//!   came in 64 × T1 (RFC 3261 §13.3.1.4). Each end with audio yields one
//!   [`Recording`].
//! - **Bounds.** At most `max_calls` calls (beyond: 486), each with at
//!   most `max_duration` × 8000 bytes of audio (a playback call: of
//!   [`MAX_PLAYBACK_MESSAGES`] messages of (`max_duration` +
//!   [`PLAYBACK_SLACK`]) × 8000 bytes at most); as many BYE transactions
//!   of the UA in flight; [`ENDED_CALLS`] Call-IDs of ended calls, so
//!   that a retransmitted BYE still gets its 200. A forgotten call leaves
//!   nothing else behind. The configured limits are themselves capped
//!   ([`MAX_CALLS_LIMIT`], [`MAX_DURATION_LIMIT`], [`MAX_GREETING`]), so
//!   that no instant the UA computes can overflow.
//!
//! **Playback.** A call whose Request-URI user is `play.{user}` is the
//! owner of `sip:{user}@{domain}` listening to their messages: the proxy
//! sends it so, with the owner as the P-Asserted-Identity (an INVITE
//! whose first P-Asserted-Identity is not that account is refused with
//! 403; `play.` alone gets 404). It is answered like any call, and the
//! UA emits [`VoicemailOutput::Fetch`] instead of beeping; the call then
//! waits, silent, until the driver hands the messages, newest first, to
//! [`VoicemailUa::messages`] (or [`FETCH_TIMEOUT`] after the ACK, as if
//! there were none). It plays, paced like the beep, a [`MESSAGE_BEEP`]
//! then the message for each message (transcoded to the call's codec),
//! or one [`NO_MESSAGES_BEEP`] when there is none, and hangs up with its
//! BYE. At most [`MAX_PLAYBACK_MESSAGES`] messages, each cut at
//! `max_duration` + [`PLAYBACK_SLACK`]. RTP received is ignored, the
//! silence timeout does not apply, the caller's BYE ends it at once, and
//! it records nothing. A call whose answer does not send (a `sendonly`
//! offer) hangs up as soon as it would start playing.
//!
//! ```text
//!  proxy              VoicemailUa                driver      caller's media
//!    │ INVITE play.USER    │                        │               │
//!    │────────────────────▶│ 200 OK, Fetch ────────▶│               │
//!    │ ACK                 │                        │               │
//!    │────────────────────▶│◀── messages(call, [m…])│               │
//!    │                     │ beep, m1, beep, m2 … RTP every 20 ms ─▶│
//!    │◀────────────────────│ BYE                                    │
//! ```
//!
//! Not implemented: offers without PCMU or PCMA (488), SRTP, delayed
//! offers (an INVITE without SDP: 488), re-INVITE and UPDATE (488, the
//! call goes on), any SIP extension named in Require (420), and DTMF.

mod offer;
pub(crate) mod rtp;
#[cfg(test)]
mod tests;

use super::g711;
use super::typed::BRANCH_MAGIC_COOKIE;
use super::{
    error_reply, CSeq, HeaderName, Headers, Host, Message as SipMessage, Method, NameAddr, Request,
    Response, SipUri, Via,
};
use offer::{answer_sdp, choose_stream, Direction};
use rand_chacha::ChaCha20Rng;
use rand_core::{RngCore, SeedableRng};
use rtp::{parse_rtp, write_rtp, RtpHeader};
use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

/// RFC 3261's T1: the first retransmission interval (500 ms).
pub const T1: Duration = Duration::from_millis(500);

/// RFC 3261's T2: the longest retransmission interval (4 s).
pub const T2: Duration = Duration::from_secs(4);

/// 64 × T1 (32 s): how long the 200 waits for its ACK, and the UA's BYE
/// for its final response.
pub const TIMER_64T1: Duration = Duration::from_secs(32);

/// Samples in one RTP packet of the beep (20 ms at 8 kHz).
pub const PACKET_SAMPLES: usize = 160;

/// The time one RTP packet of the beep lasts.
pub const PACKET_INTERVAL: Duration = Duration::from_millis(20);

/// The beep's frequency.
pub const BEEP_HZ: f64 = 1000.0;

/// The beep's peak amplitude (about −12 dBFS).
pub const BEEP_AMPLITUDE: i16 = 8000;

/// The most concurrent calls any configuration allows.
pub const MAX_CALLS_LIMIT: usize = 1024;

/// The longest message any configuration allows (10 minutes: 4.8 MB).
pub const MAX_DURATION_LIMIT: Duration = Duration::from_secs(600);

/// The longest beep any configuration allows.
pub const MAX_GREETING: Duration = Duration::from_secs(10);

/// How long the recording phase may outlast `max_duration` in time, for
/// a caller whose packets come slower than real time.
pub const RECORDING_SLACK: Duration = Duration::from_secs(5);

/// Call-IDs of ended calls kept (each for 64 × T1), to answer a
/// retransmitted BYE with 200.
pub const ENDED_CALLS: usize = 64;

/// The prefix of a Request-URI user that asks for playback:
/// `play.{user}` plays the messages of `sip:{user}@{domain}`.
pub const PLAYBACK_PREFIX: &str = "play.";

/// The most messages one playback call plays; the driver's others (the
/// oldest: they come newest first) are dropped.
pub const MAX_PLAYBACK_MESSAGES: usize = 50;

/// How much longer than `max_duration` a message played may be; beyond,
/// its audio is cut.
pub const PLAYBACK_SLACK: Duration = Duration::from_secs(5);

/// How long after the ACK a playback call waits for
/// [`VoicemailUa::messages`]; then it plays as if there were none.
pub const FETCH_TIMEOUT: Duration = Duration::from_secs(15);

/// The beep before each message played.
pub const MESSAGE_BEEP: Duration = Duration::from_millis(500);

/// The beep that tells there is no message.
pub const NO_MESSAGES_BEEP: Duration = Duration::from_secs(1);

/// The most packets one playback call sends in one
/// [`VoicemailUa::handle_timeout`] when the driver wakes late: the rest
/// of the backlog is played late rather than in a burst.
const MAX_BURST: usize = 10;

/// The methods the UA answers (its `Allow`).
const ALLOW: &str = "INVITE, ACK, BYE, CANCEL, OPTIONS";

/// How the voicemail UA is set up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailConfig {
    /// The UA's own SIP socket address (its Contact and Via).
    pub sip: SocketAddr,
    /// The UA's one RTP socket: all calls share it, and packets are told
    /// apart by their source address. Its IP address is the one the SDP
    /// answer names, so it must not be unspecified.
    pub rtp: SocketAddr,
    /// The node's SIP address: SIP from any other address is dropped.
    pub proxy: SocketAddr,
    /// The overlay's domain: the account of a call is
    /// `sip:{request-uri user}@{domain}`.
    pub domain: String,
    /// Concurrent calls, at most (capped at [`MAX_CALLS_LIMIT`]); beyond,
    /// 486 Busy Here.
    pub max_calls: usize,
    /// The most audio one message records (capped at
    /// [`MAX_DURATION_LIMIT`]); then the UA hangs up.
    pub max_duration: Duration,
    /// How long the beep before the recording lasts (capped at
    /// [`MAX_GREETING`]).
    pub greeting: Duration,
    /// After the beep, how long without RTP before the UA hangs up
    /// (capped at [`MAX_DURATION_LIMIT`]).
    pub silence_timeout: Duration,
}

impl Default for VoicemailConfig {
    /// Unspecified addresses (the driver sets them), the domain
    /// `localhost`, 16 calls, 60 s messages, a 500 ms beep and a 10 s
    /// silence timeout.
    fn default() -> Self {
        let unspecified = SocketAddr::from((Ipv4Addr::UNSPECIFIED, 0));
        Self {
            sip: unspecified,
            rtp: unspecified,
            proxy: unspecified,
            domain: "localhost".to_owned(),
            max_calls: 16,
            max_duration: Duration::from_secs(60),
            greeting: Duration::from_millis(500),
            silence_timeout: Duration::from_secs(10),
        }
    }
}

/// The audio codecs the UA speaks: G.711 at 8 kHz, one byte a sample.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Codec {
    /// G.711 µ-law, RTP payload type 0.
    Pcmu,
    /// G.711 A-law, RTP payload type 8.
    Pcma,
}

impl Codec {
    /// The static RTP payload type (RFC 3551).
    pub fn payload_type(self) -> u8 {
        match self {
            Codec::Pcmu => 0,
            Codec::Pcma => 8,
        }
    }

    /// The codec of a static payload type, if it is one of these.
    pub fn from_payload_type(payload_type: u8) -> Option<Codec> {
        match payload_type {
            0 => Some(Codec::Pcmu),
            8 => Some(Codec::Pcma),
            _ => None,
        }
    }

    /// The encoding name of `a=rtpmap`.
    pub fn name(self) -> &'static str {
        match self {
            Codec::Pcmu => "PCMU",
            Codec::Pcma => "PCMA",
        }
    }

    /// Decodes a payload to linear samples.
    pub fn decode(self, payload: &[u8]) -> Vec<i16> {
        match self {
            Codec::Pcmu => g711::decode_ulaw(payload),
            Codec::Pcma => g711::decode_alaw(payload),
        }
    }

    /// Encodes linear samples as a payload.
    pub fn encode(self, samples: &[i16]) -> Vec<u8> {
        match self {
            Codec::Pcmu => g711::encode_ulaw(samples),
            Codec::Pcma => g711::encode_alaw(samples),
        }
    }
}

/// A message left on the voicemail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recording {
    /// The callee: `sip:{user}@{domain}`, the user of the Request-URI.
    pub account: String,
    /// The verified caller: the URI of the first P-Asserted-Identity
    /// (which only the node sets), if there was one.
    pub caller: Option<String>,
    /// The From URI, as the caller claimed it (unverified).
    pub claimed_from: String,
    /// The call's Call-ID.
    pub call_id: String,
    /// When the INVITE came, in milliseconds since the Unix epoch.
    pub started_unix_ms: u64,
    /// The audio's length: its samples over 8000.
    pub duration: Duration,
    /// The codec the audio is in.
    pub codec: Codec,
    /// The G.711 payload bytes, in RTP sequence order.
    pub audio: Vec<u8>,
}

/// A message handed to a playback call (see [`VoicemailUa::messages`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// The codec the audio is in.
    pub codec: Codec,
    /// The G.711 bytes, as recorded (one a sample).
    pub audio: Vec<u8>,
}

/// What the UA asks the driver to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoicemailOutput {
    /// Send a SIP datagram from the SIP socket.
    Sip {
        /// Where to (always the proxy).
        to: SocketAddr,
        /// The datagram.
        bytes: Vec<u8>,
    },
    /// Send an RTP packet from the RTP socket.
    Rtp {
        /// Where to (the call's media address).
        to: SocketAddr,
        /// The packet.
        bytes: Vec<u8>,
    },
    /// A call ended with a message: store it.
    Recorded(Recording),
    /// A playback call was answered: find the messages of `account`,
    /// open them, and hand them to [`VoicemailUa::messages`] with
    /// `call_id` (within [`FETCH_TIMEOUT`] of the ACK).
    Fetch {
        /// The playback call's Call-ID.
        call_id: String,
        /// Whose messages: `sip:{user}@{domain}`, the asserted caller.
        account: String,
    },
}

/// A retransmission schedule: when next, and the interval after that.
#[derive(Debug, Clone, Copy)]
struct Resend {
    at: Instant,
    interval: Duration,
}

impl Resend {
    /// The schedule of a message first sent at `now`: again after T1.
    fn first(now: Instant) -> Resend {
        Resend {
            at: now + T1,
            interval: T1,
        }
    }

    /// The schedule after a retransmission at `now`: the interval
    /// doubles, up to T2 (RFC 3261 §13.3.1.4, §17.1.2.2).
    fn next(self, now: Instant) -> Resend {
        let interval = (self.interval * 2).min(T2);
        Resend {
            at: now + interval,
            interval,
        }
    }
}

/// Where a call's media is.
#[derive(Debug, Clone, Copy)]
enum Phase {
    /// Playing the beep: the next packet is due at `next`, `sent`
    /// samples of it went out; when all did, the beep ends at `next`.
    Greeting { next: Instant, sent: usize },
    /// Recording since `since`; RTP was last heard at `heard`.
    Recording { since: Instant, heard: Instant },
    /// Playback, waiting for the messages: until `deadline`, set by the
    /// ACK.
    Fetching { deadline: Option<Instant> },
    /// Playback: the next packet of the playlist is due at `next`; when
    /// the playlist is done, the UA hangs up at `next`.
    Playing { next: Instant },
}

/// A part of what a playback call plays.
#[derive(Debug)]
enum Segment {
    /// A beep of `samples`, `sent` of them played.
    Beep { samples: usize, sent: usize },
    /// A message in `codec`, `sent` bytes of it played.
    Audio {
        codec: Codec,
        audio: Vec<u8>,
        sent: usize,
    },
}

/// One call in progress.
#[derive(Debug)]
struct Call {
    call_id: String,
    /// The UA's To tag.
    local_tag: String,
    /// The caller's From tag.
    remote_tag: Option<String>,
    /// The INVITE's CSeq number.
    invite_cseq: u32,
    /// Our side, the From of our requests: the INVITE's To, with our tag.
    local_party: String,
    /// The caller's side, the To of our requests: the INVITE's From.
    remote_party: String,
    /// Where in-dialog requests go: the INVITE's Contact.
    remote_target: SipUri,
    /// The INVITE's Record-Route values, in order.
    route_set: Vec<String>,
    /// The CSeq number of our last request.
    local_cseq: u32,
    /// The 200 OK, as sent.
    ok: Vec<u8>,
    /// Its retransmissions, until the ACK.
    ok_resend: Option<Resend>,
    /// When the UA gives up waiting for the ACK.
    ack_deadline: Option<Instant>,
    /// Where the caller's media is (the offer's address), canonical.
    media: SocketAddr,
    codec: Codec,
    /// The beep's length in samples (0 when the answer does not send).
    beep_samples: usize,
    /// Whether the answer sends media.
    sends: bool,
    ssrc: u32,
    seq: u16,
    timestamp: u32,
    phase: Phase,
    /// What a playback call has left to play (empty when recording).
    playlist: VecDeque<Segment>,
    /// Whether the next packet is the first the call sends.
    first_packet: bool,
    audio: Vec<u8>,
    /// The last packet recorded: its SSRC and sequence number.
    last: Option<(u32, u16)>,
    account: String,
    caller: Option<String>,
    claimed_from: String,
    started_unix_ms: u64,
}

impl Call {
    /// The call's next timer.
    fn next_timeout(&self, config: &VoicemailConfig) -> Option<Instant> {
        let media = match self.phase {
            Phase::Greeting { next, .. } | Phase::Playing { next } => Some(next),
            Phase::Recording { since, heard } => Some(
                (heard + config.silence_timeout).min(since + config.max_duration + RECORDING_SLACK),
            ),
            Phase::Fetching { deadline } => deadline,
        };
        [self.ok_resend.map(|r| r.at), self.ack_deadline, media]
            .into_iter()
            .flatten()
            .min()
    }

    /// Starts playing `messages` (newest first) at `now`, each cut at
    /// `max_bytes`: a beep and the message for each, at most
    /// [`MAX_PLAYBACK_MESSAGES`]; a long beep if there is none; nothing
    /// if the call does not send.
    fn play(&mut self, now: Instant, messages: Vec<Message>, max_bytes: usize) {
        let samples = |d: Duration| usize::try_from(d.as_micros() / 125).unwrap_or(0);
        self.playlist.clear();
        if !self.sends {
            // Nothing to play: the UA hangs up at `now`.
        } else if messages.is_empty() {
            self.playlist.push_back(Segment::Beep {
                samples: samples(NO_MESSAGES_BEEP),
                sent: 0,
            });
        } else {
            for mut message in messages.into_iter().take(MAX_PLAYBACK_MESSAGES) {
                if message.audio.len() > max_bytes {
                    message.audio.truncate(max_bytes);
                    message.audio.shrink_to_fit();
                }
                self.playlist.push_back(Segment::Beep {
                    samples: samples(MESSAGE_BEEP),
                    sent: 0,
                });
                self.playlist.push_back(Segment::Audio {
                    codec: message.codec,
                    audio: message.audio,
                    sent: 0,
                });
            }
        }
        self.phase = Phase::Playing { next: now };
    }

    /// The next RTP packet of the playlist, if anything is left.
    fn next_playback_packet(&mut self) -> Option<Vec<u8>> {
        loop {
            let payload = match self.playlist.front_mut()? {
                Segment::Beep { samples, sent } => {
                    let n = PACKET_SAMPLES.min(samples.saturating_sub(*sent));
                    let tone = g711::tone(BEEP_HZ, BEEP_AMPLITUDE, *sent as u64, n);
                    *sent += n;
                    self.codec.encode(&tone)
                }
                Segment::Audio { codec, audio, sent } => {
                    let start = (*sent).min(audio.len());
                    let end = start.saturating_add(PACKET_SAMPLES).min(audio.len());
                    let chunk = audio.get(start..end).unwrap_or_default();
                    *sent = end;
                    if *codec == self.codec {
                        chunk.to_vec()
                    } else {
                        self.codec.encode(&codec.decode(chunk))
                    }
                }
            };
            let done = match self.playlist.front() {
                Some(Segment::Beep { samples, sent }) => sent >= samples,
                Some(Segment::Audio { audio, sent, .. }) => *sent >= audio.len(),
                None => true,
            };
            if done {
                self.playlist.pop_front();
            }
            if payload.is_empty() {
                continue;
            }
            let header = RtpHeader {
                marker: std::mem::take(&mut self.first_packet),
                payload_type: self.codec.payload_type(),
                sequence: self.seq,
                timestamp: self.timestamp,
                ssrc: self.ssrc,
            };
            self.seq = self.seq.wrapping_add(1);
            // The packet's 20 ms slot, however much of it the payload fills.
            self.timestamp = self.timestamp.wrapping_add(PACKET_SAMPLES as u32);
            return Some(write_rtp(&header, &payload));
        }
    }

    /// What the caller recorded.
    fn recording(&mut self) -> Option<Recording> {
        if self.audio.is_empty() {
            return None;
        }
        let audio = std::mem::take(&mut self.audio);
        let samples = u64::try_from(audio.len()).unwrap_or(u64::MAX);
        Some(Recording {
            account: std::mem::take(&mut self.account),
            caller: self.caller.take(),
            claimed_from: std::mem::take(&mut self.claimed_from),
            call_id: self.call_id.clone(),
            started_unix_ms: self.started_unix_ms,
            duration: Duration::from_micros(samples.saturating_mul(125)),
            codec: self.codec,
            audio,
        })
    }
}

/// A BYE the UA sent, retransmitted until a final response or 64 × T1.
#[derive(Debug)]
struct ByeTransaction {
    call_id: String,
    cseq: u32,
    branch: String,
    bytes: Vec<u8>,
    resend: Resend,
    deadline: Instant,
}

/// The voicemail user agent (see the module docs). Its `Debug` shows
/// counts, not the calls' audio.
///
/// Feed it what arrives: SIP datagrams with [`handle_sip`](Self::handle_sip),
/// RTP packets with [`handle_rtp`](Self::handle_rtp); send what each call
/// returns, in order. After each call, ask
/// [`poll_timeout`](Self::poll_timeout) when to wake next and then call
/// [`handle_timeout`](Self::handle_timeout) (early or late calls are
/// harmless: it does what is due). While a beep or a playback plays the
/// timer fires every 20 ms. A playback call asks for its messages with
/// [`VoicemailOutput::Fetch`]: answer with [`messages`](Self::messages).
pub struct VoicemailUa {
    config: VoicemailConfig,
    rng: ChaCha20Rng,
    /// The calls, by Call-ID. A B-tree: attacker-chosen keys cannot
    /// degrade it, and timers fire in a reproducible order.
    calls: BTreeMap<String, Call>,
    /// The Call-ID of each call's media address (canonical).
    media: BTreeMap<SocketAddr, String>,
    /// The UA's BYEs awaiting a final response, oldest first.
    byes: VecDeque<ByeTransaction>,
    /// Recently ended Call-IDs and when they ended, oldest first.
    ended: VecDeque<(String, Instant)>,
}

impl std::fmt::Debug for VoicemailUa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VoicemailUa")
            .field("sip", &self.config.sip)
            .field("rtp", &self.config.rtp)
            .field("calls", &self.calls.len())
            .field("byes", &self.byes.len())
            .field("ended", &self.ended.len())
            .finish_non_exhaustive()
    }
}

/// `addr` with an IPv4-mapped IPv6 address read as IPv4, so that a
/// dual-stack socket's view of a peer compares equal to the SDP's.
fn canonical(addr: SocketAddr) -> SocketAddr {
    SocketAddr::new(addr.ip().to_canonical(), addr.port())
}

impl VoicemailUa {
    /// A UA with no call. `seed` makes its tags, branches, SSRCs and
    /// sequence numbers: give it fresh randomness (from the OS) so that
    /// nobody can guess them.
    pub fn new(mut config: VoicemailConfig, seed: [u8; 32]) -> Self {
        config.max_calls = config.max_calls.min(MAX_CALLS_LIMIT);
        config.max_duration = config.max_duration.min(MAX_DURATION_LIMIT);
        config.greeting = config.greeting.min(MAX_GREETING);
        config.silence_timeout = config.silence_timeout.min(MAX_DURATION_LIMIT);
        Self {
            config,
            rng: ChaCha20Rng::from_seed(seed),
            calls: BTreeMap::new(),
            media: BTreeMap::new(),
            byes: VecDeque::new(),
            ended: VecDeque::new(),
        }
    }

    /// The configuration, with its limits capped.
    pub fn config(&self) -> &VoicemailConfig {
        &self.config
    }

    /// Calls in progress (the UA's BYEs awaiting an answer not counted).
    pub fn calls(&self) -> usize {
        self.calls.len()
    }

    /// The most audio bytes one message holds.
    fn max_audio(&self) -> usize {
        usize::try_from(self.config.max_duration.as_micros() / 125).unwrap_or(usize::MAX)
    }

    /// The most audio bytes one message played holds.
    fn max_playback_audio(&self) -> usize {
        usize::try_from((self.config.max_duration + PLAYBACK_SLACK).as_micros() / 125)
            .unwrap_or(usize::MAX)
    }

    /// Hands a playback call its messages, newest first (see the module
    /// docs), after [`VoicemailOutput::Fetch`]: it starts playing them at
    /// once. Beyond [`MAX_PLAYBACK_MESSAGES`] they are dropped, and each
    /// is cut at `max_duration` + [`PLAYBACK_SLACK`]. For a call that is
    /// not waiting for its messages (unknown, ended, recording, or
    /// already playing) it does nothing and returns nothing.
    #[must_use]
    pub fn messages(
        &mut self,
        now: Instant,
        call_id: &str,
        messages: Vec<Message>,
    ) -> Vec<VoicemailOutput> {
        let mut out = Vec::new();
        let max_bytes = self.max_playback_audio();
        let Some(call) = self.calls.get_mut(call_id) else {
            return out;
        };
        if !matches!(call.phase, Phase::Fetching { .. }) {
            return out;
        }
        call.play(now, messages, max_bytes);
        self.call_timeout(now, call_id, &mut out);
        out
    }

    /// `n` random bytes in hex.
    fn random_hex(&mut self, n: usize) -> String {
        let mut bytes = vec![0u8; n];
        self.rng.fill_bytes(&mut bytes);
        hex::encode(bytes)
    }

    /// A SIP datagram to the proxy.
    fn sip(&self, message: SipMessage) -> VoicemailOutput {
        VoicemailOutput::Sip {
            to: self.config.proxy,
            bytes: message.to_bytes(),
        }
    }

    /// A reply to `request` (with a fresh To tag if it has none).
    fn reply(&mut self, request: &Request, code: u16) -> Response {
        let tag = self.random_hex(8);
        request.reply(code, Some(&tag))
    }

    /// Handles a SIP datagram from `from`, received at `now` (`unix_ms`
    /// on the wall clock, for the recording's date).
    #[must_use]
    pub fn handle_sip(
        &mut self,
        now: Instant,
        unix_ms: u64,
        from: SocketAddr,
        datagram: &[u8],
    ) -> Vec<VoicemailOutput> {
        if canonical(from) != canonical(self.config.proxy) {
            return Vec::new();
        }
        let mut out = Vec::new();
        match SipMessage::parse(datagram) {
            Ok(SipMessage::Request(request)) => self.on_request(now, unix_ms, &request, &mut out),
            Ok(SipMessage::Response(response)) => self.on_response(now, &response),
            Err(error) => {
                if let Some(answer) = error_reply(datagram, &error) {
                    out.push(self.sip(SipMessage::Response(answer)));
                }
            }
        }
        out
    }

    /// Handles an RTP packet from `from`, received at `now`.
    #[must_use]
    pub fn handle_rtp(
        &mut self,
        now: Instant,
        from: SocketAddr,
        packet: &[u8],
    ) -> Vec<VoicemailOutput> {
        let mut out = Vec::new();
        let max_audio = self.max_audio();
        let Some(call_id) = self.media.get(&canonical(from)) else {
            return out;
        };
        let Some(call) = self.calls.get_mut(call_id) else {
            return out;
        };
        let Ok((header, payload)) = parse_rtp(packet) else {
            return out;
        };
        let Phase::Recording { since, .. } = call.phase else {
            // Whatever comes during the beep is not kept.
            return out;
        };
        // Any well-formed packet from the caller's address shows the
        // caller is still there (comfort noise, DTMF events included).
        call.phase = Phase::Recording { since, heard: now };
        if header.payload_type != call.codec.payload_type() {
            return out;
        }
        if let Some((ssrc, last)) = call.last {
            // Newer than the last by 1 to 2^15 - 1, modulo 2^16; a new
            // source starts its own numbering.
            let ahead = header.sequence.wrapping_sub(last);
            if ssrc == header.ssrc && (ahead == 0 || ahead >= 0x8000) {
                return out;
            }
        }
        call.last = Some((header.ssrc, header.sequence));
        let room = max_audio.saturating_sub(call.audio.len());
        call.audio
            .extend_from_slice(payload.get(..payload.len().min(room)).unwrap_or_default());
        if call.audio.len() >= max_audio {
            let call_id = call_id.clone();
            self.hang_up(now, &call_id, &mut out);
        }
        out
    }

    /// When [`handle_timeout`](Self::handle_timeout) is next due, if
    /// anything waits.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Instant> {
        let calls = self
            .calls
            .values()
            .filter_map(|c| c.next_timeout(&self.config));
        let byes = self.byes.iter().map(|b| b.resend.at.min(b.deadline));
        calls.chain(byes).min()
    }

    /// Does what is due at `now`: retransmissions, the beep's packets,
    /// the end of calls that timed out.
    #[must_use]
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<VoicemailOutput> {
        let mut out = Vec::new();
        let due: Vec<String> = self
            .calls
            .iter()
            .filter(|(_, c)| c.next_timeout(&self.config).is_some_and(|t| t <= now))
            .map(|(id, _)| id.clone())
            .collect();
        for call_id in due {
            self.call_timeout(now, &call_id, &mut out);
        }
        self.byes.retain(|b| b.deadline > now);
        for bye in &mut self.byes {
            if bye.resend.at <= now {
                out.push(VoicemailOutput::Sip {
                    to: self.config.proxy,
                    bytes: bye.bytes.clone(),
                });
                bye.resend = bye.resend.next(now);
            }
        }
        out
    }

    /// The timers of one call.
    fn call_timeout(&mut self, now: Instant, call_id: &str, out: &mut Vec<VoicemailOutput>) {
        let config = &self.config;
        let Some(call) = self.calls.get_mut(call_id) else {
            return;
        };
        if let Some(resend) = call.ok_resend.filter(|r| r.at <= now) {
            out.push(VoicemailOutput::Sip {
                to: config.proxy,
                bytes: call.ok.clone(),
            });
            call.ok_resend = Some(resend.next(now));
        }
        let mut hang_up = call.ack_deadline.is_some_and(|t| t <= now);
        match call.phase {
            Phase::Greeting { mut next, mut sent } => {
                while next <= now && sent < call.beep_samples {
                    let n = PACKET_SAMPLES.min(call.beep_samples - sent);
                    out.push(VoicemailOutput::Rtp {
                        to: call.media,
                        bytes: beep_packet(call, sent, n),
                    });
                    sent += n;
                    next += PACKET_INTERVAL;
                }
                call.phase = if next <= now {
                    // The last packet has played: the recording starts.
                    Phase::Recording {
                        since: now,
                        heard: now,
                    }
                } else {
                    Phase::Greeting { next, sent }
                };
            }
            Phase::Recording { since, heard } => {
                hang_up |= now >= heard + config.silence_timeout
                    || now >= since + config.max_duration + RECORDING_SLACK;
            }
            Phase::Fetching { deadline } => {
                if deadline.is_some_and(|t| t <= now) {
                    // No messages came: as if there were none.
                    call.play(now, Vec::new(), 0);
                }
            }
            Phase::Playing { .. } => {}
        }
        if let Phase::Playing { mut next } = call.phase {
            let mut burst = 0;
            while next <= now {
                if burst == MAX_BURST {
                    // Woken late: the rest plays late, not in a burst.
                    next = now + PACKET_INTERVAL;
                    break;
                }
                let Some(bytes) = call.next_playback_packet() else {
                    // The last packet has played.
                    hang_up = true;
                    break;
                };
                out.push(VoicemailOutput::Rtp {
                    to: call.media,
                    bytes,
                });
                burst += 1;
                next += PACKET_INTERVAL;
            }
            call.phase = Phase::Playing { next };
        }
        if hang_up {
            self.hang_up(now, call_id, out);
        }
    }

    /// Forgets a call, and its media address.
    fn remove_call(&mut self, call_id: &str) -> Option<Call> {
        let call = self.calls.remove(call_id)?;
        self.media.remove(&call.media);
        Some(call)
    }

    /// Whether `call_id` ended less than 64 × T1 ago.
    fn ended(&self, call_id: &str, now: Instant) -> bool {
        self.ended
            .iter()
            .any(|(id, at)| id == call_id && now < *at + TIMER_64T1)
    }

    /// Remembers that `call_id` ended at `now`, forgetting the oldest
    /// ended calls past [`ENDED_CALLS`] or 64 × T1.
    fn remember_ended(&mut self, call_id: String, now: Instant) {
        while self.ended.len() >= ENDED_CALLS
            || self
                .ended
                .front()
                .is_some_and(|(_, at)| now >= *at + TIMER_64T1)
        {
            self.ended.pop_front();
        }
        self.ended.push_back((call_id, now));
    }

    /// Ends a call with the UA's BYE (RFC 3261 §12.2.1.1, §15.1.1),
    /// retransmitted until a final response or 64 × T1; yields the
    /// recording.
    fn hang_up(&mut self, now: Instant, call_id: &str, out: &mut Vec<VoicemailOutput>) {
        let Some(mut call) = self.remove_call(call_id) else {
            return;
        };
        call.local_cseq = call.local_cseq.wrapping_add(1).clamp(1, 0x7fff_ffff);
        let cseq = call.local_cseq;
        let branch = format!("{BRANCH_MAGIC_COOKIE}{}", self.random_hex(12));
        let mut headers = Headers::new();
        headers.push(
            HeaderName::Via,
            format!("SIP/2.0/UDP {};branch={branch}", self.config.sip),
        );
        headers.push(HeaderName::MaxForwards, "70");
        for route in &call.route_set {
            headers.push(HeaderName::Route, route.as_str());
        }
        headers.push(HeaderName::From, call.local_party.as_str());
        headers.push(HeaderName::To, call.remote_party.as_str());
        headers.push(HeaderName::CallId, call.call_id.as_str());
        headers.push(HeaderName::CSeq, format!("{cseq} BYE"));
        let bye = SipMessage::Request(Request {
            method: Method::Bye,
            uri: call.remote_target.clone(),
            headers,
            body: Vec::new(),
        });
        let bytes = bye.to_bytes();
        out.push(VoicemailOutput::Sip {
            to: self.config.proxy,
            bytes: bytes.clone(),
        });
        if let Some(recording) = call.recording() {
            out.push(VoicemailOutput::Recorded(recording));
        }
        // As many BYEs in flight as calls: the oldest gives way.
        while self.byes.len() >= self.config.max_calls.max(1) {
            self.byes.pop_front();
        }
        self.byes.push_back(ByeTransaction {
            call_id: call.call_id.clone(),
            cseq,
            branch,
            bytes,
            resend: Resend::first(now),
            deadline: now + TIMER_64T1,
        });
        self.remember_ended(call.call_id, now);
    }

    fn on_request(
        &mut self,
        now: Instant,
        unix_ms: u64,
        request: &Request,
        out: &mut Vec<VoicemailOutput>,
    ) {
        let Some(ids) = Ids::of(&request.headers) else {
            return;
        };
        let method = &request.method;
        if *method == Method::Ack {
            self.on_ack(now, &ids);
            return;
        }
        if *method == Method::Cancel {
            // The UA answers at once, so a CANCEL always comes too late
            // (RFC 3261 §9.2): 200, and the call goes on.
            let known = self
                .calls
                .get(ids.call_id)
                .is_some_and(|c| c.invite_cseq == ids.cseq.seq)
                || self.ended(ids.call_id, now);
            let answer = self.reply(request, if known { 200 } else { 481 });
            out.push(self.sip(SipMessage::Response(answer)));
            return;
        }
        match request.headers.values(&HeaderName::Require) {
            Ok(required) if required.is_empty() => {}
            Ok(required) => {
                let unsupported = required.join(", ");
                let mut answer = self.reply(request, 420);
                answer.headers.push(HeaderName::Unsupported, unsupported);
                out.push(self.sip(SipMessage::Response(answer)));
                return;
            }
            Err(_) => {
                let answer = self.reply(request, 400);
                out.push(self.sip(SipMessage::Response(answer)));
                return;
            }
        }
        let Some(to_tag) = ids.to.tag() else {
            let answer = match method {
                Method::Invite => return self.on_invite(now, unix_ms, request, &ids, out),
                Method::Options => self.allow(request, 200),
                // RFC 3261 §15.1.2: a BYE that names no dialog.
                Method::Bye => self.reply(request, 481),
                _ => self.allow(request, 405),
            };
            out.push(self.sip(SipMessage::Response(answer)));
            return;
        };
        let in_dialog = self
            .calls
            .get(ids.call_id)
            .is_some_and(|c| c.local_tag == to_tag && c.remote_tag.as_deref() == ids.from.tag());
        let answer = match method {
            _ if !in_dialog => {
                // A retransmitted BYE of a call that just ended.
                let code = if *method == Method::Bye && self.ended(ids.call_id, now) {
                    200
                } else {
                    481
                };
                self.reply(request, code)
            }
            Method::Bye => {
                let answer = self.reply(request, 200);
                out.push(self.sip(SipMessage::Response(answer)));
                if let Some(mut call) = self.remove_call(ids.call_id) {
                    if let Some(recording) = call.recording() {
                        out.push(VoicemailOutput::Recorded(recording));
                    }
                    self.remember_ended(call.call_id, now);
                }
                return;
            }
            // The call keeps its one stream as it is.
            Method::Invite | Method::Update => self.reply(request, 488),
            Method::Options => self.allow(request, 200),
            // DTMF and the like: taken, and ignored.
            Method::Info => self.reply(request, 200),
            _ => self.allow(request, 405),
        };
        out.push(self.sip(SipMessage::Response(answer)));
    }

    /// A reply with the UA's `Allow`.
    fn allow(&mut self, request: &Request, code: u16) -> Response {
        let mut answer = self.reply(request, code);
        answer.headers.push(HeaderName::Allow, ALLOW);
        answer
    }

    /// The ACK of a 200 ends its retransmissions, and starts a playback
    /// call's wait for its messages.
    fn on_ack(&mut self, now: Instant, ids: &Ids<'_>) {
        let Some(call) = self.calls.get_mut(ids.call_id) else {
            return;
        };
        if ids.to.tag() == Some(call.local_tag.as_str())
            && ids.from.tag() == call.remote_tag.as_deref()
            && ids.cseq.seq == call.invite_cseq
        {
            call.ok_resend = None;
            call.ack_deadline = None;
            if let Phase::Fetching { deadline: None } = call.phase {
                call.phase = Phase::Fetching {
                    deadline: Some(now + FETCH_TIMEOUT),
                };
            }
        }
    }

    /// A dialog-creating INVITE: answered at once, 200 with the SDP
    /// answer, or refused.
    fn on_invite(
        &mut self,
        now: Instant,
        unix_ms: u64,
        request: &Request,
        ids: &Ids<'_>,
        out: &mut Vec<VoicemailOutput>,
    ) {
        if let Some(call) = self.calls.get(ids.call_id) {
            if call.remote_tag.as_deref() == ids.from.tag() && call.invite_cseq == ids.cseq.seq {
                // A retransmission: the same 200 again.
                out.push(VoicemailOutput::Sip {
                    to: self.config.proxy,
                    bytes: call.ok.clone(),
                });
            } else {
                // Another INVITE of the same call (RFC 3261 §8.2.2.2).
                let answer = self.reply(request, 482);
                out.push(self.sip(SipMessage::Response(answer)));
            }
            return;
        }
        if self.ended(ids.call_id, now) {
            // A late retransmission of a call that ended.
            return;
        }
        match self.accept(now, unix_ms, request, ids) {
            Ok(ok) => {
                out.push(VoicemailOutput::Sip {
                    to: self.config.proxy,
                    bytes: ok,
                });
                if let Some(call) = self
                    .calls
                    .get(ids.call_id)
                    .filter(|c| matches!(c.phase, Phase::Fetching { .. }))
                {
                    out.push(VoicemailOutput::Fetch {
                        call_id: call.call_id.clone(),
                        account: call.account.clone(),
                    });
                }
            }
            Err(code) => {
                let answer = self.reply(request, code);
                out.push(self.sip(SipMessage::Response(answer)));
            }
        }
    }

    /// Takes a new call: its 200's bytes, or the status to refuse with.
    fn accept(
        &mut self,
        now: Instant,
        unix_ms: u64,
        request: &Request,
        ids: &Ids<'_>,
    ) -> Result<Vec<u8>, u16> {
        if self.calls.len() >= self.config.max_calls {
            return Err(486);
        }
        let user = request.uri.user.as_deref().ok_or(404u16)?;
        let caller = request
            .headers
            .values(&HeaderName::PAssertedIdentity)
            .ok()
            .and_then(|values| {
                values
                    .first()
                    .map(|v| NameAddr::parse("P-Asserted-Identity", v))
            })
            .and_then(Result::ok)
            .map(|identity| identity.uri);
        let (user, playback) = match user.strip_prefix(PLAYBACK_PREFIX) {
            None => (user, false),
            Some("") => return Err(404),
            Some(owner) => {
                // Only the mailbox's owner, as the node asserts it.
                let owner_calls = caller.as_ref().is_some_and(|uri| {
                    uri.user.as_deref() == Some(owner)
                        && Host::parse(&self.config.domain).is_ok_and(|d| uri.host.matches(&d))
                });
                if !owner_calls {
                    return Err(403);
                }
                (owner, true)
            }
        };
        let contact = request
            .headers
            .values(&HeaderName::Contact)
            .ok()
            .and_then(|values| values.first().map(|v| NameAddr::parse("Contact", v)))
            .and_then(Result::ok)
            .ok_or(400u16)?;
        let route_set: Vec<String> = request
            .headers
            .values(&HeaderName::RecordRoute)
            .map_err(|_| 400u16)?
            .into_iter()
            .map(str::to_owned)
            .collect();
        if route_set
            .iter()
            .any(|r| NameAddr::parse("Record-Route", r).is_err())
        {
            return Err(400);
        }
        let (index, media, codec, offered) = choose_stream(&request.body).ok_or(488u16)?;
        if self.media.contains_key(&media) {
            // Two calls cannot share the caller's media address.
            return Err(486);
        }
        let direction = offered
            .get(index)
            .map_or(Direction::SendRecv, |s| s.direction.answer());
        let tag = self.random_hex(8);
        let session = self.rng.next_u32();
        let body = answer_sdp(&offered, index, codec, direction, self.config.rtp, session);
        let mut ok = request.reply(200, Some(&tag));
        for record_route in request.headers.all(&HeaderName::RecordRoute) {
            ok.headers.push(HeaderName::RecordRoute, record_route);
        }
        ok.headers.push(
            HeaderName::Contact,
            format!("<sip:voicemail@{}>", self.config.sip),
        );
        ok.headers.push(HeaderName::Allow, ALLOW);
        ok.headers.push(HeaderName::ContentType, "application/sdp");
        ok.body = body;
        let local_party = ok
            .headers
            .get(&HeaderName::To)
            .unwrap_or_default()
            .to_owned();
        let bytes = SipMessage::Response(ok).to_bytes();
        let caller = caller.map(|uri| uri.to_string());
        let beep_samples = if direction.sends() && !playback {
            usize::try_from(self.config.greeting.as_micros() / 125).unwrap_or(0)
        } else {
            0
        };
        let call = Call {
            call_id: ids.call_id.to_owned(),
            local_tag: tag,
            remote_tag: ids.from.tag().map(str::to_owned),
            invite_cseq: ids.cseq.seq,
            local_party,
            remote_party: request
                .headers
                .get(&HeaderName::From)
                .unwrap_or_default()
                .to_owned(),
            remote_target: contact.uri,
            route_set,
            local_cseq: 0,
            ok: bytes.clone(),
            ok_resend: Some(Resend::first(now)),
            ack_deadline: Some(now + TIMER_64T1),
            media,
            codec,
            beep_samples,
            sends: direction.sends(),
            ssrc: self.rng.next_u32(),
            seq: (self.rng.next_u32() & 0xffff) as u16,
            timestamp: self.rng.next_u32(),
            // The first packet leaves at once, after the 200; a playback
            // call waits for its messages.
            phase: if playback {
                Phase::Fetching { deadline: None }
            } else {
                Phase::Greeting { next: now, sent: 0 }
            },
            playlist: VecDeque::new(),
            first_packet: true,
            audio: Vec::new(),
            last: None,
            account: format!("sip:{user}@{}", self.config.domain),
            caller,
            claimed_from: ids.from.uri.to_string(),
            started_unix_ms: unix_ms,
        };
        self.media.insert(media, call.call_id.clone());
        self.calls.insert(call.call_id.clone(), call);
        Ok(bytes)
    }

    /// A response: to one of the UA's BYEs, or ignored.
    fn on_response(&mut self, now: Instant, response: &Response) {
        let Some(ids) = Ids::of(&response.headers) else {
            return;
        };
        let branch = response
            .headers
            .values(&HeaderName::Via)
            .ok()
            .and_then(|vias| vias.first().and_then(|v| Via::parse(v).ok()))
            .and_then(|via| via.branch().map(str::to_owned));
        let Some(i) = self.byes.iter().position(|b| {
            b.call_id == ids.call_id
                && b.cseq == ids.cseq.seq
                && ids.cseq.method == Method::Bye
                && branch.as_deref() == Some(b.branch.as_str())
        }) else {
            return;
        };
        if response.code >= 200 {
            self.byes.remove(i);
        } else if let Some(bye) = self.byes.get_mut(i) {
            // Proceeding (RFC 3261 §17.1.2.2): every T2 from now on.
            bye.resend = Resend {
                at: now + T2,
                interval: T2,
            };
        }
    }
}

/// The identifying headers of a message (the parser checked them).
struct Ids<'a> {
    call_id: &'a str,
    from: NameAddr,
    to: NameAddr,
    cseq: CSeq,
}

impl<'a> Ids<'a> {
    fn of(headers: &'a Headers) -> Option<Self> {
        Some(Ids {
            call_id: headers.get(&HeaderName::CallId)?,
            from: NameAddr::parse("From", headers.get(&HeaderName::From)?).ok()?,
            to: NameAddr::parse("To", headers.get(&HeaderName::To)?).ok()?,
            cseq: CSeq::parse(headers.get(&HeaderName::CSeq)?).ok()?,
        })
    }
}

/// The beep's packet of `n` samples from sample `sent` on.
fn beep_packet(call: &mut Call, sent: usize, n: usize) -> Vec<u8> {
    let samples = g711::tone(BEEP_HZ, BEEP_AMPLITUDE, sent as u64, n);
    let header = RtpHeader {
        marker: sent == 0,
        payload_type: call.codec.payload_type(),
        sequence: call.seq,
        timestamp: call.timestamp,
        ssrc: call.ssrc,
    };
    call.seq = call.seq.wrapping_add(1);
    call.timestamp = call
        .timestamp
        .wrapping_add(u32::try_from(n).unwrap_or(u32::MAX));
    write_rtp(&header, &call.codec.encode(&samples))
}

//! What two nodes say inside an end-to-end session through a rendezvous
//! (issue 12, `--anonymous-calls`), sans-IO: the frames, the constant-rate
//! outbox that sends them, SIP reassembly, the pseudonyms by which each
//! node knows the other, and failure detection.
//!
//! Every frame is exactly [`FRAME_LEN`] bytes of plaintext (the largest an
//! end-to-end sealed frame carries in one cell), padded with zeros, so
//! that not even the rendezvous relay — which sees the end-to-end frames'
//! lengths — can tell media from cover or signalling:
//!
//! ```text
//! frame = 0x00 | zeros                                   Cover
//!       / 0x01 | session (16)                            Open (caller → callee, first)
//!       / 0x02 | msg: u16 | index: u8 | count: u8 | len: u8 | data   SIP fragment
//!       / 0x03 | len: u8 | datagram                      Media (a node media datagram)
//!       / 0x04 | seq: u32 | sent_us: u64 | len: u8 | data            Echo request
//!       / 0x05 | seq: u32 | sent_us: u64 | hops: u8 | len: u8 | data Echo reply
//! ```
//!
//! (then zeros to [`FRAME_LEN`]). A SIP message travels as up to
//! [`SIP_MAX_FRAGMENTS`] fragments ([`CIRCUIT_SIP_MAX_LEN`] bytes at most);
//! at 50 cells a second a 1,500-byte INVITE takes 9 cells, 180 ms.
//!
//! # Pseudonyms
//!
//! The caller draws a random session id and sends it, sealed, in its
//! first frame ([`SessionFrame::Open`]; again after a rebuild, which is
//! how the callee knows the new circuit continues the old session). Both
//! ends derive two pseudonymous node ids from it ([`aliases`]): in SIP
//! across the session each node names itself by its alias (its
//! Record-Route, Via and contacts), never by its node id or address, and
//! knows the other by the other's alias. Only the two ends know the
//! session id (it is end-to-end sealed), so nobody else can continue the
//! session.
//!
//! # Failure
//!
//! Both ends send a cell every 20 ms whatever happens, so a quiet
//! circuit is a broken one: [`Health`] declares the circuit failed when
//! nothing arrived for [`SILENCE_LIMIT_MS`], when fewer than a quarter of
//! the expected cells arrived over [`LOSS_WINDOW_MS`] (drops, or cells a
//! relay tampered with, which the next hop's layer refuses), or when
//! echoes take more than [`DELAY_LIMIT_MS`] for [`DELAY_STRIKES`] probes in
//! a row (a relay that delays). The driver then rebuilds the circuit.

use super::e2e::E2E_PLAINTEXT_MAX;
use super::schedule::{ConstantRate, Tick, VOICE_INTERVAL_MS};
use crate::identity::NodeId;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::fmt;

/// Every frame's length: the plaintext of one sealed cell.
pub const FRAME_LEN: usize = E2E_PLAINTEXT_MAX;
/// A session id's length.
pub const SESSION_ID_LEN: usize = 16;
/// The data a SIP fragment carries at most.
pub const SIP_FRAGMENT_MAX: usize = FRAME_LEN - 6;
/// The largest media datagram a frame carries.
pub const MEDIA_MAX: usize = FRAME_LEN - 2;
/// The data an echo request carries at most.
pub const ECHO_DATA_MAX: usize = FRAME_LEN - 15;
/// The largest SIP message a session carries.
pub const CIRCUIT_SIP_MAX_LEN: usize = 8 * 1024;
/// Fragments of one SIP message, at most.
pub const SIP_MAX_FRAGMENTS: usize = CIRCUIT_SIP_MAX_LEN.div_ceil(SIP_FRAGMENT_MAX);
/// SIP messages being reassembled at once, at most (the oldest goes).
pub const REASSEMBLY_SLOTS: usize = 4;
/// SIP fragments waiting to be sent, at most (two whole messages).
pub const SIP_QUEUE: usize = 2 * SIP_MAX_FRAGMENTS;
/// Nothing heard for this long: the circuit is broken.
pub const SILENCE_LIMIT_MS: u64 = 1_500;
/// The window over which loss is judged.
pub const LOSS_WINDOW_MS: u64 = 2_000;
/// An echo slower than this (round trip) counts against the circuit:
/// twice G.114's 400 ms one-way limit.
pub const DELAY_LIMIT_MS: u64 = 800;
/// Slow echoes in a row that break the circuit.
pub const DELAY_STRIKES: u32 = 3;
/// How often an end probes its circuit with an echo (in place of a
/// cover cell, so that probes do not show).
pub const PROBE_EVERY_MS: u64 = 1_000;

const _: () = assert!(SIP_MAX_FRAGMENTS <= u8::MAX as usize);
// G.711's 20 ms RTP packet (172 bytes) with its media header fits a
// frame, and so does media-test's 160-byte payload.
const _: () = assert!(MEDIA_MAX >= 172 + crate::sip::media::DATAGRAM_HEADER_LEN);
const _: () = assert!(ECHO_DATA_MAX >= 160);
const _: () = assert!(FRAME_LEN <= u8::MAX as usize + 6);

const COVER: u8 = 0x00;
const OPEN: u8 = 0x01;
const SIP: u8 = 0x02;
const MEDIA: u8 = 0x03;
const ECHO_REQUEST: u8 = 0x04;
const ECHO_REPLY: u8 = 0x05;

/// A frame of a session (see the module docs for the layout).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionFrame {
    /// Nothing: sent when nothing waits.
    Cover,
    /// The caller's first frame on a circuit: which session it carries.
    Open {
        /// The session id.
        session: [u8; SESSION_ID_LEN],
    },
    /// A fragment of a SIP message.
    Sip {
        /// The message's number (per sender, wrapping).
        msg: u16,
        /// This fragment's index.
        index: u8,
        /// Fragments of the message.
        count: u8,
        /// At most [`SIP_FRAGMENT_MAX`] bytes.
        data: Vec<u8>,
    },
    /// A media datagram (docs/protocol.md §10's header, then RTP or RTCP).
    Media(Vec<u8>),
    /// An echo request (`p2psip media-test`, and the circuit's probes).
    EchoRequest {
        /// The sender's number.
        seq: u32,
        /// The sender's clock when sent, microseconds.
        sent_us: u64,
        /// At most [`ECHO_DATA_MAX`] bytes, returned as they are.
        data: Vec<u8>,
    },
    /// The answer to an echo request.
    EchoReply {
        /// The request's number.
        seq: u32,
        /// The request's clock.
        sent_us: u64,
        /// Relays of the answering end's circuit.
        hops: u8,
        /// The request's data.
        data: Vec<u8>,
    },
}

/// Why a frame or a message was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionError {
    /// A frame not [`FRAME_LEN`] bytes long.
    FrameLength(usize),
    /// An unknown frame type.
    UnknownFrame(u8),
    /// A length field beyond the frame.
    BadLength,
    /// A SIP fragment whose index or count is impossible, or disagrees
    /// with the message's other fragments.
    BadFragment,
    /// A SIP message larger than [`CIRCUIT_SIP_MAX_LEN`].
    SipTooLarge(usize),
    /// A payload larger than its frame carries.
    TooLarge(usize),
    /// Too many SIP fragments waiting: the circuit is not keeping up.
    QueueFull,
}

impl fmt::Display for SessionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SessionError::FrameLength(n) => {
                write!(f, "a session frame of {n} bytes (they are {FRAME_LEN})")
            }
            SessionError::UnknownFrame(t) => write!(f, "unknown session frame type {t:#04x}"),
            SessionError::BadLength => f.write_str("a session frame's length field overruns it"),
            SessionError::BadFragment => f.write_str("an inconsistent SIP fragment"),
            SessionError::SipTooLarge(n) => write!(
                f,
                "a SIP message of {n} bytes (a circuit carries at most {CIRCUIT_SIP_MAX_LEN})"
            ),
            SessionError::TooLarge(n) => write!(f, "a payload of {n} bytes does not fit a frame"),
            SessionError::QueueFull => f.write_str("the session's SIP queue is full"),
        }
    }
}

impl std::error::Error for SessionError {}

fn get<const N: usize>(bytes: &[u8], at: usize) -> Result<[u8; N], SessionError> {
    bytes
        .get(at..at + N)
        .and_then(|s| s.try_into().ok())
        .ok_or(SessionError::BadLength)
}

/// `len: u8 | data` at `at`.
fn sized(bytes: &[u8], at: usize) -> Result<Vec<u8>, SessionError> {
    let [len] = get::<1>(bytes, at)?;
    bytes
        .get(at + 1..at + 1 + usize::from(len))
        .map(<[u8]>::to_vec)
        .ok_or(SessionError::BadLength)
}

fn push_sized(out: &mut Vec<u8>, data: &[u8]) {
    // Lengths are checked by the constructors and by encode's caller.
    out.push(u8::try_from(data.len()).unwrap_or(u8::MAX));
    out.extend_from_slice(data.get(..usize::from(u8::MAX)).unwrap_or(data));
}

impl SessionFrame {
    /// Its [`FRAME_LEN`] bytes; an error if a payload does not fit.
    pub fn encode(&self) -> Result<Vec<u8>, SessionError> {
        let mut out = Vec::with_capacity(FRAME_LEN);
        let (limit, len) = match self {
            SessionFrame::Cover => {
                out.push(COVER);
                (0, 0)
            }
            SessionFrame::Open { session } => {
                out.push(OPEN);
                out.extend_from_slice(session);
                (0, 0)
            }
            SessionFrame::Sip {
                msg,
                index,
                count,
                data,
            } => {
                out.push(SIP);
                out.extend_from_slice(&msg.to_be_bytes());
                out.extend_from_slice(&[*index, *count]);
                push_sized(&mut out, data);
                (SIP_FRAGMENT_MAX, data.len())
            }
            SessionFrame::Media(datagram) => {
                out.push(MEDIA);
                push_sized(&mut out, datagram);
                (MEDIA_MAX, datagram.len())
            }
            SessionFrame::EchoRequest { seq, sent_us, data } => {
                out.push(ECHO_REQUEST);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&sent_us.to_be_bytes());
                push_sized(&mut out, data);
                (ECHO_DATA_MAX, data.len())
            }
            SessionFrame::EchoReply {
                seq,
                sent_us,
                hops,
                data,
            } => {
                out.push(ECHO_REPLY);
                out.extend_from_slice(&seq.to_be_bytes());
                out.extend_from_slice(&sent_us.to_be_bytes());
                out.push(*hops);
                push_sized(&mut out, data);
                (ECHO_DATA_MAX, data.len())
            }
        };
        if len > limit {
            return Err(SessionError::TooLarge(len));
        }
        out.resize(FRAME_LEN, 0);
        Ok(out)
    }

    /// Reads a frame: exactly [`FRAME_LEN`] bytes, a known type, lengths
    /// within the frame (the padding is not read).
    pub fn decode(bytes: &[u8]) -> Result<Self, SessionError> {
        if bytes.len() != FRAME_LEN {
            return Err(SessionError::FrameLength(bytes.len()));
        }
        let [kind] = get::<1>(bytes, 0)?;
        Ok(match kind {
            COVER => SessionFrame::Cover,
            OPEN => SessionFrame::Open {
                session: get(bytes, 1)?,
            },
            SIP => {
                let msg = u16::from_be_bytes(get(bytes, 1)?);
                let [index, count] = get::<2>(bytes, 3)?;
                if count == 0 || index >= count || usize::from(count) > SIP_MAX_FRAGMENTS {
                    return Err(SessionError::BadFragment);
                }
                SessionFrame::Sip {
                    msg,
                    index,
                    count,
                    data: sized(bytes, 5)?,
                }
            }
            MEDIA => SessionFrame::Media(sized(bytes, 1)?),
            ECHO_REQUEST => {
                let data = sized(bytes, 13)?;
                // Its reply carries one byte more: what a reply cannot
                // carry is refused here (found by fuzzing).
                if data.len() > ECHO_DATA_MAX {
                    return Err(SessionError::BadLength);
                }
                SessionFrame::EchoRequest {
                    seq: u32::from_be_bytes(get(bytes, 1)?),
                    sent_us: u64::from_be_bytes(get(bytes, 5)?),
                    data,
                }
            }
            ECHO_REPLY => {
                let [hops] = get::<1>(bytes, 13)?;
                SessionFrame::EchoReply {
                    seq: u32::from_be_bytes(get(bytes, 1)?),
                    sent_us: u64::from_be_bytes(get(bytes, 5)?),
                    hops,
                    data: sized(bytes, 14)?,
                }
            }
            other => return Err(SessionError::UnknownFrame(other)),
        })
    }
}

/// The two pseudonymous node ids of a session: `(caller's, callee's)`.
/// Each end names itself by its own in the SIP it sends through the
/// session, and the other by the other's.
pub fn aliases(session: &[u8; SESSION_ID_LEN]) -> (NodeId, NodeId) {
    let alias = |role: &[u8]| {
        let mut h = Sha256::new();
        h.update(b"p2psip session alias v1\0");
        h.update(role);
        h.update(session);
        NodeId::from_bytes(h.finalize().into())
    };
    (alias(b"caller"), alias(b"callee"))
}

/// The fragments of a SIP message numbered `msg`.
pub fn fragment(msg: u16, bytes: &[u8]) -> Result<Vec<SessionFrame>, SessionError> {
    if bytes.is_empty() || bytes.len() > CIRCUIT_SIP_MAX_LEN {
        return Err(SessionError::SipTooLarge(bytes.len()));
    }
    let chunks: Vec<&[u8]> = bytes.chunks(SIP_FRAGMENT_MAX).collect();
    let count = u8::try_from(chunks.len()).map_err(|_| SessionError::SipTooLarge(bytes.len()))?;
    Ok(chunks
        .into_iter()
        .zip(0u8..)
        .map(|(chunk, index)| SessionFrame::Sip {
            msg,
            index,
            count,
            data: chunk.to_vec(),
        })
        .collect())
}

/// One message being put together.
#[derive(Debug)]
struct Partial {
    msg: u16,
    parts: Vec<Option<Vec<u8>>>,
    have: usize,
}

/// SIP messages put back together from their fragments, in whatever
/// order the fragments come; at most [`REASSEMBLY_SLOTS`] at once (a new
/// message pushes out the oldest incomplete one).
#[derive(Debug, Default)]
pub struct Reassembly {
    partial: VecDeque<Partial>,
}

impl Reassembly {
    /// A fragment arrived: the whole message once its last fragment is
    /// in.
    pub fn push(
        &mut self,
        msg: u16,
        index: u8,
        count: u8,
        data: Vec<u8>,
    ) -> Result<Option<Vec<u8>>, SessionError> {
        let (index, count) = (usize::from(index), usize::from(count));
        if count == 0 || index >= count || count > SIP_MAX_FRAGMENTS {
            return Err(SessionError::BadFragment);
        }
        // Every fragment but the last is full: anything else would be a
        // way to make the reassembled message exceed its bound.
        let last = index + 1 == count;
        if data.len() > SIP_FRAGMENT_MAX || (!last && data.len() != SIP_FRAGMENT_MAX) {
            return Err(SessionError::BadFragment);
        }
        // Nor may the last make the whole exceed the bound (45 full
        // fragments would: found by fuzzing).
        if last && (count - 1) * SIP_FRAGMENT_MAX + data.len() > CIRCUIT_SIP_MAX_LEN {
            return Err(SessionError::SipTooLarge(
                (count - 1) * SIP_FRAGMENT_MAX + data.len(),
            ));
        }
        if count == 1 {
            return Ok(Some(data));
        }
        let at = match self.partial.iter().position(|p| p.msg == msg) {
            Some(at) => at,
            None => {
                if self.partial.len() >= REASSEMBLY_SLOTS {
                    self.partial.pop_front();
                }
                self.partial.push_back(Partial {
                    msg,
                    parts: vec![None; count],
                    have: 0,
                });
                self.partial.len() - 1
            }
        };
        let Some(partial) = self.partial.get_mut(at) else {
            return Err(SessionError::BadFragment);
        };
        if partial.parts.len() != count {
            self.partial.remove(at);
            return Err(SessionError::BadFragment);
        }
        if let Some(slot) = partial.parts.get_mut(index) {
            if slot.is_none() {
                partial.have += 1;
            }
            *slot = Some(data);
        }
        if partial.have < count {
            return Ok(None);
        }
        let done = self.partial.remove(at).map(|p| p.parts).unwrap_or_default();
        Ok(Some(done.into_iter().flatten().flatten().collect()))
    }
}

/// One end's outgoing frames at the constant rate: one per
/// [`VOICE_INTERVAL_MS`], media first, SIP fragments and then echoes in
/// between (every other cell at least when both media and they wait, so
/// neither starves: a probe must not wait behind a call's media), cover
/// otherwise.
#[derive(Debug)]
pub struct Outbox {
    rate: ConstantRate,
    sip: VecDeque<SessionFrame>,
    echoes: VecDeque<SessionFrame>,
    next_msg: u16,
    sip_turn: bool,
    sent: u64,
}

impl Outbox {
    /// An outbox whose first cell is due at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            rate: ConstantRate::new(now_ms, VOICE_INTERVAL_MS),
            sip: VecDeque::new(),
            echoes: VecDeque::new(),
            next_msg: 0,
            sip_turn: false,
            sent: 0,
        }
    }

    /// Queues a SIP message.
    pub fn push_sip(&mut self, bytes: &[u8]) -> Result<(), SessionError> {
        let frames = fragment(self.next_msg, bytes)?;
        if self.sip.len() + frames.len() > SIP_QUEUE {
            return Err(SessionError::QueueFull);
        }
        self.next_msg = self.next_msg.wrapping_add(1);
        self.sip.extend(frames);
        Ok(())
    }

    /// Queues a media datagram (the oldest waiting goes when too many
    /// wait: late voice is useless).
    pub fn push_media(&mut self, datagram: Vec<u8>) -> Result<(), SessionError> {
        if datagram.len() > MEDIA_MAX {
            return Err(SessionError::TooLarge(datagram.len()));
        }
        self.rate.push(datagram);
        Ok(())
    }

    /// Queues an echo request or reply (sent in place of a cover cell;
    /// at most a few wait).
    pub fn push_echo(&mut self, frame: SessionFrame) {
        if frame.encode().is_err() {
            return;
        }
        if self.echoes.len() >= super::schedule::MAX_WAITING {
            self.echoes.pop_front();
        }
        self.echoes.push_back(frame);
    }

    /// When the next frame is due.
    pub fn next_due_ms(&self) -> u64 {
        self.rate.next_due_ms()
    }

    /// Media datagrams dropped because too many waited.
    pub fn media_dropped(&self) -> u64 {
        self.rate.dropped()
    }

    /// Frames sent so far.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// The frames due by `now_ms`, encoded.
    pub fn poll(&mut self, now_ms: u64) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        for tick in self.rate.poll(now_ms) {
            let frame = match tick {
                Tick::Media(m)
                    if !self.sip_turn || (self.sip.is_empty() && self.echoes.is_empty()) =>
                {
                    self.sip_turn = true;
                    SessionFrame::Media(m)
                }
                tick => {
                    if let Tick::Media(m) = tick {
                        // SIP's turn: the media goes back to wait.
                        self.rate.push_front(m);
                    }
                    self.sip_turn = false;
                    match self.sip.pop_front().or_else(|| self.echoes.pop_front()) {
                        Some(f) => f,
                        None => SessionFrame::Cover,
                    }
                }
            };
            // Every queued frame was checked when queued.
            if let Ok(bytes) = frame.encode() {
                out.push(bytes);
                self.sent += 1;
            }
        }
        out
    }
}

/// Why [`Health`] gave up on a circuit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Nothing arrived for this long (ms).
    Silent(u64),
    /// Too few cells arrived over [`LOSS_WINDOW_MS`].
    Loss {
        /// Cells that arrived.
        received: u64,
        /// Cells the other end sent (at its constant rate).
        expected: u64,
    },
    /// Echoes took too long [`DELAY_STRIKES`] times in a row; the last
    /// round trip (ms).
    Delay(u64),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Silent(ms) => write!(f, "nothing arrived for {ms} ms"),
            Failure::Loss { received, expected } => {
                write!(f, "{received} of {expected} cells arrived")
            }
            Failure::Delay(ms) => write!(
                f,
                "{DELAY_STRIKES} echoes in a row took over {DELAY_LIMIT_MS} ms (last {ms} ms)"
            ),
        }
    }
}

/// Failure detection of one circuit of a session, from what arrives at
/// one end (see the module docs): the policy, in one place.
#[derive(Debug)]
pub struct Health {
    start_ms: u64,
    last_heard_ms: u64,
    /// Arrival times within the loss window.
    arrivals: VecDeque<u64>,
    slow: u32,
    last_rtt: u64,
    last_probe_ms: u64,
    next_probe: u32,
}

impl Health {
    /// A circuit that started carrying the session at `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            start_ms: now_ms,
            last_heard_ms: now_ms,
            arrivals: VecDeque::new(),
            slow: 0,
            last_rtt: 0,
            last_probe_ms: now_ms,
            next_probe: 0,
        }
    }

    /// A frame of the session arrived (it opened: relays' tampering
    /// never gets here).
    pub fn heard(&mut self, now_ms: u64) {
        self.last_heard_ms = now_ms;
        // At most the cells of one window at twice the rate are kept.
        let cap = 2 * (LOSS_WINDOW_MS / VOICE_INTERVAL_MS) as usize;
        if self.arrivals.len() >= cap {
            self.arrivals.pop_front();
        }
        self.arrivals.push_back(now_ms);
    }

    /// An echo of a probe came back after `rtt_ms`.
    pub fn echoed(&mut self, rtt_ms: u64) {
        if rtt_ms > DELAY_LIMIT_MS {
            self.slow += 1;
        } else {
            self.slow = 0;
        }
        self.last_rtt = rtt_ms;
    }

    /// A probe to send now, if one is due: its sequence number (the
    /// driver sends an [`SessionFrame::EchoRequest`] with it). Probes go
    /// out in place of cover cells; one a second.
    pub fn probe(&mut self, now_ms: u64) -> Option<u32> {
        if now_ms.saturating_sub(self.last_probe_ms) < PROBE_EVERY_MS {
            return None;
        }
        self.last_probe_ms = now_ms;
        self.next_probe = self.next_probe.wrapping_add(1);
        Some(self.next_probe)
    }

    /// Whether the circuit has failed by `now_ms`.
    pub fn check(&mut self, now_ms: u64) -> Option<Failure> {
        let quiet = now_ms.saturating_sub(self.last_heard_ms);
        if quiet >= SILENCE_LIMIT_MS {
            return Some(Failure::Silent(quiet));
        }
        let since = now_ms.saturating_sub(LOSS_WINDOW_MS);
        while self.arrivals.front().is_some_and(|t| *t < since) {
            self.arrivals.pop_front();
        }
        // Judged only once a whole window has passed since the start.
        if now_ms.saturating_sub(self.start_ms) >= LOSS_WINDOW_MS {
            let expected = LOSS_WINDOW_MS / VOICE_INTERVAL_MS;
            let received = self.arrivals.len() as u64;
            if received * 4 < expected {
                return Some(Failure::Loss { received, expected });
            }
        }
        if self.slow >= DELAY_STRIKES {
            return Some(Failure::Delay(self.last_rtt));
        }
        None
    }
}

#[cfg(test)]
mod tests;

//! The offer/answer of the voicemail UA (RFC 3264), over what
//! [`Sdp::parse`] accepted: which stream of the offer it takes, and the
//! answer it gives.
//!
//! `Sdp` keeps where each stream is, not its media kind, transport,
//! formats or direction; those are read here from the `m=` and `a=`
//! lines of the body `Sdp::parse` accepted, whose lines are therefore
//! well formed and bounded.

use super::{canonical, Codec};
use crate::sip::sdp::Sdp;
use std::net::SocketAddr;

/// How the answer sets the stream's direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Direction {
    SendRecv,
    SendOnly,
    RecvOnly,
    Inactive,
}

impl Direction {
    pub(super) fn attribute(self) -> &'static str {
        match self {
            Direction::SendRecv => "sendrecv",
            Direction::SendOnly => "sendonly",
            Direction::RecvOnly => "recvonly",
            Direction::Inactive => "inactive",
        }
    }

    /// The answer's direction to an offer's (RFC 3264 §6.1).
    pub(super) fn answer(self) -> Direction {
        match self {
            Direction::SendRecv => Direction::SendRecv,
            Direction::SendOnly => Direction::RecvOnly,
            Direction::RecvOnly => Direction::SendOnly,
            Direction::Inactive => Direction::Inactive,
        }
    }

    pub(super) fn sends(self) -> bool {
        matches!(self, Direction::SendRecv | Direction::SendOnly)
    }
}

/// A stream of an offer, as its `m=` line and direction read.
#[derive(Debug)]
pub(super) struct OfferStream<'a> {
    kind: &'a str,
    proto: &'a str,
    formats: &'a str,
    pub(super) direction: Direction,
}

/// The `m=` sections of an SDP body that [`Sdp::parse`] accepted, in
/// the same order as its streams: what `Sdp` does not keep (media kind,
/// transport, formats, direction).
fn offer_streams(body: &str) -> Vec<OfferStream<'_>> {
    let mut session = Direction::SendRecv;
    let mut streams: Vec<OfferStream<'_>> = Vec::new();
    for line in body.split('\n') {
        let line = line.strip_suffix('\r').unwrap_or(line);
        if let Some(media) = line.strip_prefix("m=") {
            let mut fields = media.splitn(4, ' ');
            let kind = fields.next().unwrap_or_default();
            let _port = fields.next();
            let proto = fields.next().unwrap_or_default();
            let formats = fields.next().unwrap_or_default();
            streams.push(OfferStream {
                kind,
                proto,
                formats,
                direction: session,
            });
            continue;
        }
        let direction = match line {
            "a=sendrecv" => Direction::SendRecv,
            "a=sendonly" => Direction::SendOnly,
            "a=recvonly" => Direction::RecvOnly,
            "a=inactive" => Direction::Inactive,
            _ => continue,
        };
        match streams.last_mut() {
            Some(stream) => stream.direction = direction,
            None => session = direction,
        }
    }
    streams
}

/// The stream the UA takes from an offer: its index, its address, the
/// codec, and the offer's direction. The first audio stream over plain
/// RTP with an address that offers PCMU or PCMA; PCMU if both.
pub(super) fn choose_stream(
    body: &[u8],
) -> Option<(usize, SocketAddr, Codec, Vec<OfferStream<'_>>)> {
    let sdp = Sdp::parse(body).ok()?;
    let text = std::str::from_utf8(body).ok()?;
    let offered = offer_streams(text);
    if offered.len() != sdp.streams().len() {
        return None;
    }
    let (index, addr, codec) =
        sdp.streams()
            .iter()
            .zip(&offered)
            .enumerate()
            .find_map(|(i, (stream, offer))| {
                let addr = stream.rtp?;
                if offer.kind != "audio" || !offer.proto.eq_ignore_ascii_case("RTP/AVP") {
                    return None;
                }
                let has = |pt: &str| offer.formats.split(' ').any(|f| f == pt);
                let codec = if has("0") {
                    Codec::Pcmu
                } else if has("8") {
                    Codec::Pcma
                } else {
                    return None;
                };
                Some((i, addr, codec))
            })?;
    Some((index, canonical(addr), codec, offered))
}

/// The SDP answer: the chosen stream at the UA's RTP address with one
/// codec, every other stream refused (port 0), as RFC 3264 §6 asks.
pub(super) fn answer_sdp(
    offered: &[OfferStream<'_>],
    chosen: usize,
    codec: Codec,
    direction: Direction,
    rtp: SocketAddr,
    session: u32,
) -> Vec<u8> {
    let ip = rtp.ip();
    let family = if ip.is_ipv4() { "IP4" } else { "IP6" };
    let pt = codec.payload_type();
    let mut out = format!(
        "v=0\r\no=- {session} {session} IN {family} {ip}\r\ns=-\r\nc=IN {family} {ip}\r\nt=0 0\r\n"
    );
    for (i, offer) in offered.iter().enumerate() {
        if i == chosen {
            out.push_str(&format!(
                "m=audio {} RTP/AVP {pt}\r\na=rtpmap:{pt} {}/8000\r\na=ptime:20\r\na={}\r\n",
                rtp.port(),
                codec.name(),
                direction.attribute()
            ));
        } else {
            let line = format!("m={} 0 {} {}", offer.kind, offer.proto, offer.formats);
            out.push_str(line.trim_end());
            out.push_str("\r\n");
        }
    }
    out.into_bytes()
}

//! SDP (RFC 8866) as far as anchoring media needs it: where a phone
//! receives each stream, and the same description pointing at the node.
//!
//! The node never lets a phone learn the other phone's address, so every
//! description that crosses it is rewritten ([`Sdp::rewrite`]): the
//! origin (`o=`) and connection (`c=`) addresses become the node's, each
//! media line's (`m=`) port the node's port for that stream, and the
//! attributes that would carry addresses past the rewrite (ICE
//! candidates, `a=rtcp:`) are dropped. The parser is strict and bounded
//! ([`SDP_MAX_LINES`], [`SDP_MAX_LINE_LEN`], [`MEDIA_MAX_STREAMS`]):
//! what it cannot rewrite with certainty (multicast, port ranges, a
//! stream without an address) it refuses, rather than pass an address
//! on.

use crate::limits::MEDIA_MAX_STREAMS;
use std::net::{IpAddr, SocketAddr};
use thiserror::Error;

/// Lines an SDP body may have, at most.
pub const SDP_MAX_LINES: usize = 256;

/// Bytes one SDP line may have, at most.
pub const SDP_MAX_LINE_LEN: usize = 1024;

/// Why an SDP body was refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SdpError {
    /// Not UTF-8 text.
    #[error("SDP is not UTF-8 text")]
    NotText,
    /// The first line is not `v=0`.
    #[error("SDP does not start with v=0")]
    NoVersion,
    /// More lines than [`SDP_MAX_LINES`].
    #[error("SDP of more than {SDP_MAX_LINES} lines")]
    TooManyLines,
    /// A line longer than [`SDP_MAX_LINE_LEN`].
    #[error("SDP line {line} longer than {SDP_MAX_LINE_LEN} bytes")]
    LineTooLong {
        /// The line's number, from 1.
        line: usize,
    },
    /// A line that is not `<letter>=<value>`.
    #[error("SDP line {line} is not <type>=<value>")]
    BadLine {
        /// The line's number, from 1.
        line: usize,
    },
    /// A malformed origin, connection or media line.
    #[error("SDP line {line}: malformed {what}")]
    Malformed {
        /// The line's number, from 1.
        line: usize,
        /// Which field.
        what: &'static str,
    },
    /// More media lines than [`MEDIA_MAX_STREAMS`].
    #[error("SDP with more than {MEDIA_MAX_STREAMS} media streams")]
    TooManyStreams,
    /// A form the node does not anchor (multicast, a port range).
    #[error("SDP line {line}: {what} is not supported")]
    Unsupported {
        /// The line's number, from 1.
        line: usize,
        /// What.
        what: &'static str,
    },
    /// A media stream with a port and no connection address.
    #[error("SDP media stream {stream} has no connection address")]
    NoAddress {
        /// The stream's index, from 0.
        stream: usize,
    },
}

/// One media stream (`m=` section) as the phone described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MediaStream {
    /// Where the phone receives RTP: `None` when the stream is refused
    /// (port 0) or on hold (address 0.0.0.0 or ::).
    pub rtp: Option<SocketAddr>,
    /// Whether RTCP shares the RTP port (`a=rtcp-mux`).
    pub rtcp_mux: bool,
    /// The port as written (0: the stream is refused).
    pub port: u16,
}

impl MediaStream {
    /// Where the phone receives RTCP: the RTP port, or the next one.
    pub fn rtcp(&self) -> Option<SocketAddr> {
        let rtp = self.rtp?;
        if self.rtcp_mux {
            return Some(rtp);
        }
        Some(SocketAddr::new(rtp.ip(), rtp.port().checked_add(1)?))
    }
}

/// What a line is, for the rewrite.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// Kept verbatim.
    Keep(String),
    /// `o=`: the fields before the address type.
    Origin { user_session_version: String },
    /// `c=` with an address (`unspecified`: 0.0.0.0 or ::, kept).
    Connection { unspecified: Option<String> },
    /// `m=`: the media type, and what follows the port.
    Media {
        index: usize,
        kind: String,
        rest: String,
    },
}

/// A parsed SDP body (see the module docs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sdp {
    lines: Vec<Line>,
    streams: Vec<MediaStream>,
}

/// The attributes a call needs, passed on as written; every other
/// attribute is dropped (ICE candidates, `a=rtcp:`, `a=ssrc:` whose
/// CNAME is often user@address, vendor extensions).
pub const KEPT_ATTRIBUTES: &[&str] = &[
    "rtpmap",
    "fmtp",
    "ptime",
    "maxptime",
    "sendrecv",
    "sendonly",
    "recvonly",
    "inactive",
    "rtcp-mux",
    "rtcp-rsize",
    "rtcp-fb",
    "mid",
    "group",
    "label",
    "setup",
    "fingerprint",
    "crypto",
    "framerate",
    "silencesupp",
];

/// Whether an attribute (`name[:value]`) is passed on.
pub fn kept_attribute(attribute: &str) -> bool {
    let name = attribute.split(':').next().unwrap_or_default();
    KEPT_ATTRIBUTES
        .iter()
        .any(|kept| kept.eq_ignore_ascii_case(name))
}

/// Whether `s` is 1 to 20 ASCII digits.
fn digits(s: &str) -> bool {
    (1..=20).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_digit())
}

/// `IN IP4 <addr>` or `IN IP6 <addr>`: the address (refusing multicast
/// TTL and count suffixes and names).
fn connection_address(value: &str, line: usize) -> Result<IpAddr, SdpError> {
    let mut fields = value.split(' ');
    let (Some(net), Some(kind), Some(addr), None) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err(SdpError::Malformed {
            line,
            what: "connection address",
        });
    };
    if net != "IN" || !matches!(kind, "IP4" | "IP6") {
        return Err(SdpError::Malformed {
            line,
            what: "network or address type",
        });
    }
    if addr.contains('/') {
        return Err(SdpError::Unsupported {
            line,
            what: "a multicast address",
        });
    }
    let ip: IpAddr = addr.parse().map_err(|_| SdpError::Unsupported {
        line,
        what: "a connection address that is not an IP address",
    })?;
    if ip.is_multicast() || matches!((kind, ip), ("IP4", IpAddr::V6(_)) | ("IP6", IpAddr::V4(_))) {
        return Err(SdpError::Unsupported {
            line,
            what: "a multicast or mismatched address",
        });
    }
    Ok(ip)
}

impl Sdp {
    /// Parses an SDP body (see the module docs for what is refused).
    pub fn parse(body: &[u8]) -> Result<Sdp, SdpError> {
        let text = std::str::from_utf8(body).map_err(|_| SdpError::NotText)?;
        let mut lines = Vec::new();
        // Per stream: its port and connection address (None: the
        // session's), and whether it muxes RTCP.
        let mut media: Vec<(u16, Option<IpAddr>, bool)> = Vec::new();
        let mut session_address: Option<IpAddr> = None;
        for (n, raw) in text.split('\n').enumerate() {
            let line = n + 1;
            let raw = raw.strip_suffix('\r').unwrap_or(raw);
            if raw.is_empty() {
                continue;
            }
            if line > SDP_MAX_LINES {
                return Err(SdpError::TooManyLines);
            }
            if raw.len() > SDP_MAX_LINE_LEN {
                return Err(SdpError::LineTooLong { line });
            }
            let mut chars = raw.chars();
            let (Some(kind), Some('=')) = (chars.next(), chars.next()) else {
                return Err(SdpError::BadLine { line });
            };
            if !kind.is_ascii_lowercase() || raw.contains('\r') {
                return Err(SdpError::BadLine { line });
            }
            let value = raw.get(2..).unwrap_or_default();
            if lines.is_empty() && raw != "v=0" {
                return Err(SdpError::NoVersion);
            }
            let parsed = match kind {
                'o' => {
                    // The user name and address are replaced, not read
                    // (either may name the phone's host).
                    let fields: Vec<&str> = value.split(' ').collect();
                    match fields[..] {
                        [_, id, version, _, _, _] if digits(id) && digits(version) => {
                            Line::Origin {
                                user_session_version: format!("- {id} {version}"),
                            }
                        }
                        _ => {
                            return Err(SdpError::Malformed {
                                line,
                                what: "origin",
                            })
                        }
                    }
                }
                'c' => {
                    let ip = connection_address(value, line)?;
                    match media.last_mut() {
                        Some(m) => m.1 = Some(ip),
                        None => session_address = Some(ip),
                    }
                    Line::Connection {
                        unspecified: ip.is_unspecified().then(|| value.to_owned()),
                    }
                }
                'm' => {
                    if media.len() >= MEDIA_MAX_STREAMS {
                        return Err(SdpError::TooManyStreams);
                    }
                    let mut fields = value.splitn(3, ' ');
                    let (Some(kind), Some(port), Some(rest)) =
                        (fields.next(), fields.next(), fields.next())
                    else {
                        return Err(SdpError::Malformed {
                            line,
                            what: "media",
                        });
                    };
                    if port.contains('/') {
                        return Err(SdpError::Unsupported {
                            line,
                            what: "a media port range",
                        });
                    }
                    let port: u16 = port.parse().map_err(|_| SdpError::Malformed {
                        line,
                        what: "media port",
                    })?;
                    if kind.is_empty() || rest.is_empty() {
                        return Err(SdpError::Malformed {
                            line,
                            what: "media",
                        });
                    }
                    media.push((port, None, false));
                    Line::Media {
                        index: media.len() - 1,
                        kind: kind.to_owned(),
                        rest: rest.to_owned(),
                    }
                }
                'a' if !kept_attribute(value) => continue,
                'a' => {
                    if value.eq_ignore_ascii_case("rtcp-mux") {
                        if let Some(m) = media.last_mut() {
                            m.2 = true;
                        }
                    }
                    Line::Keep(raw.to_owned())
                }
                // Free text (which phones fill with host names): blank.
                's' => Line::Keep("s=-".to_owned()),
                't' => match value.split(' ').collect::<Vec<_>>()[..] {
                    [start, stop] if digits(start) && digits(stop) => Line::Keep(raw.to_owned()),
                    _ => {
                        return Err(SdpError::Malformed {
                            line,
                            what: "timing",
                        })
                    }
                },
                'b' => match value.split_once(':') {
                    Some((kind, n))
                        if digits(n)
                            && !kind.is_empty()
                            && kind.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') =>
                    {
                        Line::Keep(raw.to_owned())
                    }
                    _ => continue,
                },
                'v' => Line::Keep(raw.to_owned()),
                // i=, u=, e=, p=, k=, r=, z= and unknown types: dropped.
                _ => continue,
            };
            lines.push(parsed);
        }
        if lines.is_empty() {
            return Err(SdpError::NoVersion);
        }
        let mut streams = Vec::with_capacity(media.len());
        for (stream, (port, address, rtcp_mux)) in media.into_iter().enumerate() {
            let ip = address.or(session_address);
            let rtp = match ip {
                None if port != 0 => return Err(SdpError::NoAddress { stream }),
                Some(ip) if port != 0 && !ip.is_unspecified() => Some(SocketAddr::new(ip, port)),
                _ => None,
            };
            streams.push(MediaStream {
                rtp,
                rtcp_mux,
                port,
            });
        }
        Ok(Sdp { lines, streams })
    }

    /// The media streams, in order.
    pub fn streams(&self) -> &[MediaStream] {
        &self.streams
    }

    /// The description with the node at `ip` in place of the phone:
    /// stream `i` at `ports[i]` (its RTCP at the next port), refused
    /// streams kept refused, held ones kept on hold. `ports` has one
    /// entry per stream (missing entries leave the port 0: refused).
    pub fn rewrite(&self, ip: IpAddr, ports: &[u16]) -> Vec<u8> {
        let kind = if ip.is_ipv4() { "IP4" } else { "IP6" };
        let mut out = String::new();
        for line in &self.lines {
            match line {
                Line::Keep(raw) => out.push_str(raw),
                Line::Origin {
                    user_session_version,
                } => out.push_str(&format!("o={user_session_version} IN {kind} {ip}")),
                Line::Connection {
                    unspecified: Some(value),
                } => out.push_str(&format!("c={value}")),
                Line::Connection { unspecified: None } => {
                    out.push_str(&format!("c=IN {kind} {ip}"))
                }
                Line::Media { index, kind, rest } => {
                    let written = self.streams.get(*index).map_or(0, |s| s.port);
                    let port = match written {
                        0 => 0,
                        _ => ports.get(*index).copied().unwrap_or(0),
                    };
                    out.push_str(&format!("m={kind} {port} {rest}"));
                }
            }
            out.push_str("\r\n");
        }
        out.into_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\n\
s=-\r\n\
c=IN IP4 192.0.2.10\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\n\
a=rtcp:49171 IN IP4 192.0.2.10\r\n\
a=candidate:1 1 UDP 2130706431 192.0.2.10 49170 typ host\r\n\
a=ice-ufrag:abcd\r\n\
m=video 0 RTP/AVP 31\r\n";

    #[test]
    fn streams_are_where_the_phone_receives() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        assert_eq!(
            sdp.streams(),
            &[
                MediaStream {
                    rtp: Some("192.0.2.10:49170".parse().unwrap()),
                    rtcp_mux: false,
                    port: 49170
                },
                MediaStream {
                    rtp: None,
                    rtcp_mux: false,
                    port: 0
                },
            ]
        );
        assert_eq!(
            sdp.streams()[0].rtcp(),
            Some("192.0.2.10:49171".parse().unwrap())
        );
    }

    #[test]
    fn the_rewrite_leaves_no_address_of_the_phone() {
        let sdp = Sdp::parse(OFFER.as_bytes()).unwrap();
        let out = sdp.rewrite("127.0.0.1".parse().unwrap(), &[20000, 20002]);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(!text.contains("192.0.2.10"), "{text}");
        assert!(!text.contains("49170"), "{text}");
        assert_eq!(
            text,
            "v=0\r\no=- 2890844526 2890844526 IN IP4 127.0.0.1\r\ns=-\r\n\
c=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 8 101\r\n\
a=rtpmap:0 PCMU/8000\r\nm=video 0 RTP/AVP 31\r\n"
        );
        // What the node wrote reads back as the node.
        let again = Sdp::parse(&out).unwrap();
        assert_eq!(
            again.streams()[0].rtp,
            Some("127.0.0.1:20000".parse().unwrap())
        );
        assert_eq!(again.streams()[1].rtp, None);
    }

    #[test]
    fn media_level_addresses_and_hold_and_mux() {
        let body = "v=0\no=- 1 1 IN IP6 ::1\ns=-\nt=0 0\n\
m=audio 4000 RTP/AVP 0\nc=IN IP6 2001:db8::1\na=rtcp-mux\n\
m=audio 4002 RTP/AVP 0\nc=IN IP4 0.0.0.0\n";
        let sdp = Sdp::parse(body.as_bytes()).unwrap();
        assert_eq!(
            sdp.streams()[0].rtp,
            Some("[2001:db8::1]:4000".parse().unwrap())
        );
        assert!(sdp.streams()[0].rtcp_mux);
        assert_eq!(sdp.streams()[0].rtcp(), sdp.streams()[0].rtp);
        assert_eq!(sdp.streams()[1].rtp, None, "on hold");
        let text = String::from_utf8(sdp.rewrite("::1".parse().unwrap(), &[30000, 30002])).unwrap();
        assert!(
            text.contains("c=IN IP4 0.0.0.0\r\n"),
            "hold is kept: {text}"
        );
        assert!(text.contains("c=IN IP6 ::1\r\n"));
        assert!(!text.contains("2001:db8"));
    }

    #[test]
    fn what_cannot_be_rewritten_for_certain_is_refused() {
        let cases: &[(&str, SdpError)] = &[
            ("", SdpError::NoVersion),
            ("v=1\r\n", SdpError::NoVersion),
            ("v=0\r\nbad\r\n", SdpError::BadLine { line: 2 }),
            ("v=0\r\nX=1\r\n", SdpError::BadLine { line: 2 }),
            (
                "v=0\r\nc=IN IP4 224.2.1.1/127\r\n",
                SdpError::Unsupported {
                    line: 2,
                    what: "a multicast address",
                },
            ),
            (
                "v=0\r\nc=IN IP4 host.example\r\n",
                SdpError::Unsupported {
                    line: 2,
                    what: "a connection address that is not an IP address",
                },
            ),
            (
                "v=0\r\nc=IN IP4 192.0.2.1\r\nm=audio 4000/2 RTP/AVP 0\r\n",
                SdpError::Unsupported {
                    line: 3,
                    what: "a media port range",
                },
            ),
            (
                "v=0\r\nm=audio 4000 RTP/AVP 0\r\n",
                SdpError::NoAddress { stream: 0 },
            ),
            (
                "v=0\r\nm=audio 99999 RTP/AVP 0\r\n",
                SdpError::Malformed {
                    line: 2,
                    what: "media port",
                },
            ),
            (
                "v=0\r\no=a b\r\n",
                SdpError::Malformed {
                    line: 2,
                    what: "origin",
                },
            ),
        ];
        for (body, want) in cases {
            assert_eq!(Sdp::parse(body.as_bytes()).as_ref(), Err(want), "{body:?}");
        }
        let many = format!(
            "v=0\r\nc=IN IP4 192.0.2.1\r\n{}",
            "m=audio 4000 RTP/AVP 0\r\n".repeat(MEDIA_MAX_STREAMS + 1)
        );
        assert_eq!(Sdp::parse(many.as_bytes()), Err(SdpError::TooManyStreams));
        let long = format!("v=0\r\ns={}\r\n", "x".repeat(SDP_MAX_LINE_LEN));
        assert_eq!(
            Sdp::parse(long.as_bytes()),
            Err(SdpError::LineTooLong { line: 2 })
        );
        let lines = format!("v=0\r\n{}", "a=x\r\n".repeat(SDP_MAX_LINES));
        assert_eq!(Sdp::parse(lines.as_bytes()), Err(SdpError::TooManyLines));
        assert_eq!(Sdp::parse(&[0xff, 0xfe]), Err(SdpError::NotText));
    }
}

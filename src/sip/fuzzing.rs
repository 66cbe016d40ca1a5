//! The checks of the `sdp_media` fuzz target, shared with the test that
//! replays its corpus (tests/fuzz_corpus.rs): one definition of what must
//! hold.

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

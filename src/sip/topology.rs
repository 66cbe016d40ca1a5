//! Topology hiding at the edge of an anonymous session (issue 12,
//! `--anonymous-calls`), sans-IO.
//!
//! Across the overlay a node names itself in the SIP it forwards: its
//! Record-Route carries its node id (`p2p-node=`), its Via, Record-Route
//! and the contacts it substitutes for its phones carry its SIP
//! listener's address. Through a circuit neither may reach the other
//! end, so at the session's edge [`hide`] puts the node's pseudonym in
//! place of its id and [`ANONYMOUS_HOST`] in place of its address, and
//! [`reveal`] undoes it on what comes back (a Route naming the pseudonym
//! names this node). Only the headers that carry them are touched (Via,
//! Record-Route, Route, Contact, in full or compact form); Call-ID,
//! From, To and the body pass as they are (the Identity signature
//! covers Call-ID and the body).
//!
//! What the phones themselves write (Call-ID, User-Agent, display
//! names) is theirs: a phone that puts its address in its Call-ID shows
//! it to the other end. SECURITY.md says so.

/// The host a node stands for itself under in a session.
pub const ANONYMOUS_HOST: &str = "anonymous.invalid";

/// Whether a header line (name and colon first) is one that names hops.
fn names_hops(line: &[u8]) -> bool {
    let Some(colon) = line.iter().position(|&b| b == b':') else {
        return false;
    };
    let name = line.get(..colon).unwrap_or_default().trim_ascii();
    ["via", "v", "record-route", "route", "contact", "m"]
        .iter()
        .any(|h| name.eq_ignore_ascii_case(h.as_bytes()))
}

/// Replaces every `from` in `line` by `to`; with `whole_port`, not where
/// a digit follows (`127.0.0.1:506` must not match `127.0.0.1:5060`).
fn replace(line: &[u8], from: &[u8], to: &[u8], whole_port: bool, out: &mut Vec<u8>) {
    let mut i = 0;
    while i < line.len() {
        let rest = line.get(i..).unwrap_or_default();
        if !from.is_empty() && rest.starts_with(from) {
            let after = rest.get(from.len()).copied();
            if !(whole_port && after.is_some_and(|b| b.is_ascii_digit())) {
                out.extend_from_slice(to);
                i += from.len();
                continue;
            }
        }
        if let Some(&b) = line.get(i) {
            out.push(b);
        }
        i += 1;
    }
}

/// Rewrites the hop-naming header lines of `message`: each pair of
/// `(from, to, whole_port)` in turn. The start line and body pass.
fn rewrite(message: &[u8], pairs: &[(&[u8], &[u8], bool)]) -> Vec<u8> {
    let head_end = message
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map_or(message.len(), |p| p + 2);
    let (head, body) = message.split_at(head_end.min(message.len()));
    let mut out = Vec::with_capacity(message.len() + 64);
    for (n, line) in head.split_inclusive(|&b| b == b'\n').enumerate() {
        if n == 0 || !names_hops(line) {
            out.extend_from_slice(line);
            continue;
        }
        let mut current = line.to_vec();
        for (from, to, whole_port) in pairs {
            let mut next = Vec::with_capacity(current.len() + 16);
            replace(&current, from, to, *whole_port, &mut next);
            current = next;
        }
        out.extend_from_slice(&current);
    }
    out.extend_from_slice(body);
    out
}

/// What leaves through a session: the node's id (`node_hex`, 64
/// lowercase hex) becomes its pseudonym (`alias_hex`), its SIP address
/// (`local`, `ip:port` as the proxy writes it) [`ANONYMOUS_HOST`].
pub fn hide(message: &[u8], node_hex: &str, alias_hex: &str, local: &str) -> Vec<u8> {
    rewrite(
        message,
        &[
            (node_hex.as_bytes(), alias_hex.as_bytes(), false),
            (local.as_bytes(), ANONYMOUS_HOST.as_bytes(), true),
        ],
    )
}

/// What came through a session: the node's pseudonym names the node
/// again, [`ANONYMOUS_HOST`] its SIP address.
pub fn reveal(message: &[u8], node_hex: &str, alias_hex: &str, local: &str) -> Vec<u8> {
    rewrite(
        message,
        &[
            (alias_hex.as_bytes(), node_hex.as_bytes(), false),
            (ANONYMOUS_HOST.as_bytes(), local.as_bytes(), false),
        ],
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: &str = "aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11aa11";
    const ALIAS: &str = "bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22bb22";

    fn invite(host: &str, node: &str) -> String {
        format!(
            "INVITE sip:bob@p2psip SIP/2.0\r\n\
             Via: SIP/2.0/TCP {host};branch=z9hG4bK-p2p-1\r\n\
             Record-Route: <sip:{host};lr;p2p-node={node}>\r\n\
             m: <sip:p2p-tok@{host}>\r\n\
             Call-ID: 1-2@127.0.0.1:5060\r\n\
             From: <sip:alice@p2psip>;tag=1\r\n\
             Content-Length: 24\r\n\
             \r\n\
             c=IN IP4 127.0.0.1:5060\r\n"
        )
    }

    #[test]
    fn the_node_is_hidden_in_hop_headers_only_and_revealed_again() {
        let local = "127.0.0.1:5060";
        let original = invite(local, NODE);
        let hidden = hide(original.as_bytes(), NODE, ALIAS, local);
        let text = String::from_utf8(hidden.clone()).unwrap();
        assert_eq!(
            text,
            format!(
                "INVITE sip:bob@p2psip SIP/2.0\r\n\
                 Via: SIP/2.0/TCP {ANONYMOUS_HOST};branch=z9hG4bK-p2p-1\r\n\
                 Record-Route: <sip:{ANONYMOUS_HOST};lr;p2p-node={ALIAS}>\r\n\
                 m: <sip:p2p-tok@{ANONYMOUS_HOST}>\r\n\
                 Call-ID: 1-2@127.0.0.1:5060\r\n\
                 From: <sip:alice@p2psip>;tag=1\r\n\
                 Content-Length: 24\r\n\
                 \r\n\
                 c=IN IP4 127.0.0.1:5060\r\n"
            )
        );
        assert!(!text.contains(NODE));
        assert_eq!(
            reveal(&hidden, NODE, ALIAS, local),
            original.as_bytes(),
            "revealed as it was"
        );
    }

    #[test]
    fn a_longer_port_is_not_mistaken_for_the_node() {
        let line = invite("127.0.0.1:50601", NODE);
        let hidden = hide(line.as_bytes(), NODE, ALIAS, "127.0.0.1:5060");
        assert!(String::from_utf8(hidden)
            .unwrap()
            .contains("Via: SIP/2.0/TCP 127.0.0.1:50601;"));
    }

    #[test]
    fn garbage_passes_through_without_panicking() {
        for input in [&b""[..], b"\r\n\r\n", b"Via", b"Via:", b"\xff\xfe:\r\n\r\n"] {
            let _ = reveal(input, NODE, ALIAS, "127.0.0.1:5060");
            let _ = hide(input, NODE, ALIAS, "127.0.0.1:5060");
        }
    }
}

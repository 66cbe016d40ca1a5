//! Parser tests: well-formed messages in the shapes real phones send, and
//! torture messages in the spirit of RFC 4475, each refused for the
//! reason it should be.

use super::*;
use crate::limits::{SIP_MAX_HEADERS, SIP_MAX_LINE_LEN, SIP_MAX_MESSAGE_LEN, SIP_MAX_VIAS};

/// A valid INVITE: compact forms, odd case, a folded header, two Via
/// values on one line, an unknown header and an SDP body.
const INVITE: &str = "INVITE sip:bob@biloxi.example;transport=udp SIP/2.0\r\n\
v: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bKnashds8 , SIP/2.0/TCP 192.0.2.1:5070;branch=z9hG4bK1\r\n\
MAX-FORWARDS: 70\r\n\
t: Bob <sip:bob@biloxi.example>\r\n\
f: \"Alice\" <sip:alice@atlanta.example>;tag=1928301774\r\n\
i: a84b4c76e66710@pc33.atlanta.example\r\n\
CSeq: 314159 INVITE\r\n\
m: <sip:alice@pc33.atlanta.example>\r\n\
Subject: a subject\r\n   folded onto\r\n\tthree lines\r\n\
X-Unknown-Header: kept as written\r\n\
c: application/sdp\r\n\
l: 17\r\n\
\r\n\
v=0\r\no=- 1 1 IN\r\n";

fn invite() -> Request {
    match Message::parse(INVITE.as_bytes()) {
        Ok(Message::Request(r)) => r,
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_phones_invite_parses() {
    let r = invite();
    assert_eq!(r.method, Method::Invite);
    assert_eq!(r.uri.user.as_deref(), Some("bob"));
    assert_eq!(r.uri.param("transport"), Some(Some("udp")));
    assert_eq!(r.body, b"v=0\r\no=- 1 1 IN\r\n");
    assert_eq!(r.max_forwards(), Some(70));
    let m = Message::Request(r.clone());
    let vias = m.vias().unwrap();
    assert_eq!(vias.len(), 2);
    assert_eq!(vias[0].branch(), Some("z9hG4bKnashds8"));
    assert_eq!(vias[1].port, Some(5070));
    assert_eq!(m.call_id().unwrap(), "a84b4c76e66710@pc33.atlanta.example");
    assert_eq!(m.cseq().unwrap().seq, 314159);
    assert_eq!(m.from().unwrap().tag(), Some("1928301774"));
    assert_eq!(m.to().unwrap().tag(), None);
    assert_eq!(
        r.headers.get(&HeaderName::Subject),
        Some("a subject folded onto three lines")
    );
    assert_eq!(
        r.headers.get(&HeaderName::from_wire("x-unknown-header")),
        Some("kept as written")
    );
    // Content-Length is not a header: the body's length is the truth.
    assert_eq!(r.headers.get(&HeaderName::ContentLength), None);
}

#[test]
fn printing_and_parsing_again_gives_the_same_message() {
    let m = Message::Request(invite());
    let bytes = m.to_bytes();
    assert_eq!(Message::parse(&bytes).unwrap(), m);
    // The printed form is canonical: full names, one Content-Length.
    let text = String::from_utf8(bytes).unwrap();
    assert!(text.starts_with("INVITE sip:bob@biloxi.example;transport=udp SIP/2.0\r\nVia: "));
    assert!(text.contains("\r\nContent-Length: 17\r\n\r\nv=0"));
}

#[test]
fn a_response_parses() {
    let bytes = b"SIP/2.0 180 Ringing and more words\r\n\
Via: SIP/2.0/UDP pc33.atlanta.example;branch=z9hG4bKnashds8;received=192.0.2.1\r\n\
To: Bob <sip:bob@biloxi.example>;tag=a6c85cf\r\n\
From: Alice <sip:alice@atlanta.example>;tag=1928301774\r\n\
Call-ID: a84b4c76e66710\r\n\
CSeq: 314159 INVITE\r\n\
Content-Length: 0\r\n\r\n";
    match Message::parse(bytes) {
        Ok(Message::Response(r)) => {
            assert_eq!(r.code, 180);
            assert_eq!(r.reason, "Ringing and more words");
            assert!(r.body.is_empty());
        }
        other => panic!("{other:?}"),
    }
    // An empty reason phrase is allowed.
    let empty = String::from_utf8_lossy(bytes).replace("180 Ringing and more words", "200 ");
    assert!(Message::parse(empty.as_bytes()).is_ok());
}

/// A minimal valid request, with `extra` header lines and `body`.
fn request(extra: &str, body: &str) -> Vec<u8> {
    format!(
        "OPTIONS sip:node.example SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n\
From: <sip:a@example.com>;tag=1\r\n\
To: <sip:node.example>\r\n\
Call-ID: c1\r\n\
CSeq: 1 OPTIONS\r\n\
{extra}\r\n{body}"
    )
    .into_bytes()
}

#[test]
fn datagram_bodies_follow_content_length() {
    // Without Content-Length the body is the rest of the datagram.
    let m = Message::parse(&request("", "hello")).unwrap();
    assert_eq!(body(&m), b"hello");
    // Bytes beyond Content-Length are ignored (RFC 3261 §18.3).
    let m = Message::parse(&request("Content-Length: 3\r\n", "hello")).unwrap();
    assert_eq!(body(&m), b"hel");
    // Fewer bytes than announced: refused.
    assert_eq!(
        Message::parse(&request("Content-Length: 9\r\n", "hello")),
        Err(SipError::BodyTruncated {
            len: 5,
            announced: 9
        })
    );
    // Leading zeros are a number too.
    let m = Message::parse(&request("l: 0005\r\n", "hello")).unwrap();
    assert_eq!(body(&m), b"hello");
}

fn body(m: &Message) -> &[u8] {
    match m {
        Message::Request(r) => &r.body,
        Message::Response(r) => &r.body,
    }
}

#[test]
fn torture_messages_are_refused_for_what_is_wrong() {
    let valid = String::from_utf8(request("", "")).unwrap();
    let cases: Vec<(String, SipError)> = vec![
        (
            valid.replace("\r\nTo:", "\nTo:"),
            SipError::BareLineEnd { line: 3 },
        ),
        (
            valid.replace("Call-ID: c1\r\n", ""),
            SipError::MissingHeader("Call-ID"),
        ),
        (
            valid.replace("Via: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx\r\n", ""),
            SipError::MissingHeader("Via"),
        ),
        (
            valid.replace(
                "CSeq: 1 OPTIONS\r\n",
                "CSeq: 1 OPTIONS\r\nCSeq: 2 OPTIONS\r\n",
            ),
            SipError::DuplicateHeader("CSeq"),
        ),
        (
            valid.replace("CSeq: 1 OPTIONS", "CSeq: 1 INVITE"),
            SipError::CSeqMethodMismatch {
                method: "OPTIONS".into(),
                cseq: "INVITE".into(),
            },
        ),
        (
            valid.replace("SIP/2.0\r\nVia", "SIP/7.0\r\nVia"),
            SipError::UnsupportedVersion("SIP/7.0".into()),
        ),
        (
            valid.replace("OPTIONS sip:node.example", "OPTIONS  sip:node.example"),
            SipError::BadStartLine("request line is not <method> <uri> SIP/2.0 with single spaces"),
        ),
        (
            valid.replace("OPTIONS sip:node.example", "OPT@ONS sip:node.example"),
            SipError::BadMethod("OPT@ONS".into()),
        ),
        (
            valid.replace("sip:node.example SIP", "tel:+15550100 SIP"),
            SipError::UnsupportedUriScheme("tel".into()),
        ),
        (
            valid
                .replace("To: <sip", "To : <sip")
                .replace("To :", "T o:"),
            SipError::BadHeaderName { line: 4 },
        ),
        (
            valid.replace("Call-ID: c1", "Call-ID c1"),
            SipError::BadHeaderName { line: 5 },
        ),
        (
            valid.replace("Call-ID: c1", "Call-ID: c\u{7f}1"),
            SipError::BadHeaderValue {
                name: "Call-ID".into(),
            },
        ),
        (
            valid.replace("Call-ID: c1", "Call-ID: c 1"),
            SipError::BadHeader {
                header: "Call-ID",
                why: "empty or has white space",
            },
        ),
        (
            valid.replace("\r\nVia:", "\r\n Via:"),
            SipError::BadFolding { line: 2 },
        ),
        (
            valid.replace("CSeq: 1 OPTIONS", "CSeq: 1 OPTIONS\r\nContent-Length: -3"),
            SipError::BadHeader {
                header: "Content-Length",
                why: "not a decimal number",
            },
        ),
        (
            valid.replace(
                "CSeq: 1 OPTIONS",
                "CSeq: 1 OPTIONS\r\nl: 1\r\nContent-Length: 1",
            ),
            SipError::DuplicateHeader("Content-Length"),
        ),
        (
            valid.replace(
                "CSeq: 1 OPTIONS",
                "CSeq: 1 OPTIONS\r\nContent-Length: 99999999999999999999",
            ),
            SipError::MessageTooLarge {
                len: usize::MAX,
                max: SIP_MAX_MESSAGE_LEN,
            },
        ),
        (
            valid.replace(
                "CSeq: 1 OPTIONS",
                "CSeq: 1 OPTIONS\r\nMax-Forwards: seventy",
            ),
            SipError::BadHeader {
                header: "Max-Forwards",
                why: "not a number of at most 3 digits",
            },
        ),
        (
            valid.replace("\r\n\r\n", "\r\n"),
            SipError::UnterminatedHeaders,
        ),
        (
            "SIP/2.0 99 Low\r\n\r\n".into(),
            SipError::BadStatusCode("99".into()),
        ),
        (
            "SIP/2.0 700 High\r\n\r\n".into(),
            SipError::BadStatusCode("700".into()),
        ),
        ("\r\n\r\n".into(), SipError::Empty),
    ];
    for (text, want) in cases {
        assert_eq!(
            Message::parse(text.as_bytes()),
            Err(want.clone()),
            "{text:?}"
        );
        // The error names what was wrong.
        assert!(!want.to_string().is_empty());
    }
    // Not UTF-8 in a header value.
    let mut bytes = request("X-Bin: \u{e9}\r\n", "");
    let at = bytes.iter().position(|&b| b == 0xc3).unwrap();
    bytes[at] = 0xff;
    assert_eq!(
        Message::parse(&bytes),
        Err(SipError::BadHeaderValue {
            name: "X-Bin".into()
        })
    );
}

#[test]
fn every_bound_is_enforced() {
    let too_big = vec![b'a'; SIP_MAX_MESSAGE_LEN + 1];
    assert_eq!(
        Message::parse(&too_big),
        Err(SipError::MessageTooLarge {
            len: SIP_MAX_MESSAGE_LEN + 1,
            max: SIP_MAX_MESSAGE_LEN
        })
    );
    let many = "X-A: 1\r\n".repeat(SIP_MAX_HEADERS);
    assert_eq!(
        Message::parse(&request(&many, "")),
        Err(SipError::TooManyHeaders {
            max: SIP_MAX_HEADERS
        })
    );
    // Exactly the maximum is fine (six headers are in the template).
    let most = "X-A: 1\r\n".repeat(SIP_MAX_HEADERS - 5);
    assert!(Message::parse(&request(&most, "")).is_ok());
    let long = format!("X-Long: {}\r\n", "a".repeat(SIP_MAX_LINE_LEN));
    assert!(matches!(
        Message::parse(&request(&long, "")),
        Err(SipError::LineTooLong { line: 7, .. })
    ));
    // A fold cannot dodge the line bound.
    let folded = format!(
        "X-Long: {}\r\n {}\r\n",
        "a".repeat(SIP_MAX_LINE_LEN / 2),
        "b".repeat(SIP_MAX_LINE_LEN / 2)
    );
    assert!(matches!(
        Message::parse(&request(&folded, "")),
        Err(SipError::LineTooLong { .. })
    ));
    let vias = "Via: SIP/2.0/UDP h;branch=z9hG4bKy\r\n".repeat(SIP_MAX_VIAS);
    assert_eq!(
        Message::parse(&request(&vias, "")),
        Err(SipError::TooManyVias { max: SIP_MAX_VIAS })
    );
}

#[test]
fn error_status_codes() {
    assert_eq!(
        SipError::UnsupportedVersion("SIP/3.0".into()).status_code(),
        505
    );
    assert_eq!(
        SipError::UnsupportedUriScheme("tel".into()).status_code(),
        416
    );
    assert_eq!(SipError::MissingHeader("Call-ID").status_code(), 400);
    assert_eq!(
        SipError::MessageTooLarge { len: 1, max: 0 }.status_code(),
        513
    );
}

#[test]
fn a_stream_yields_messages_pings_and_waits_for_more() {
    let one = request("Content-Length: 5\r\n", "hello");
    let mut stream = b"\r\n\r\n".to_vec();
    stream.extend_from_slice(&one);
    stream.extend_from_slice(b"\r\n");
    stream.extend_from_slice(&one);

    assert_eq!(Message::parse_stream(&stream), Ok(Some(Frame::Ping)));
    let rest = &stream[4..];
    let Ok(Some(Frame::Message(m, used))) = Message::parse_stream(rest) else {
        panic!("a message");
    };
    assert_eq!(used, one.len());
    assert_eq!(body(&m), b"hello");
    let rest = &rest[used..];
    assert_eq!(Message::parse_stream(rest), Ok(Some(Frame::Blank)));
    let rest = &rest[2..];
    assert!(matches!(
        Message::parse_stream(rest),
        Ok(Some(Frame::Message(_, n))) if n == rest.len()
    ));
    // Every proper prefix needs more bytes.
    for cut in 0..one.len() {
        assert_eq!(Message::parse_stream(&one[..cut]), Ok(None), "cut at {cut}");
    }
    assert_eq!(Message::parse_stream(b"\r\n\r"), Ok(None));
    // A stream message needs Content-Length.
    assert_eq!(
        Message::parse_stream(&request("", "")),
        Err(SipError::MissingContentLength)
    );
    // A header section that never ends is refused at the bound.
    let endless = vec![b'a'; SIP_MAX_MESSAGE_LEN];
    assert!(matches!(
        Message::parse_stream(&endless),
        Err(SipError::MessageTooLarge { .. })
    ));
    // So is a body announced beyond it.
    let big = request(&format!("Content-Length: {SIP_MAX_MESSAGE_LEN}\r\n"), "");
    assert!(matches!(
        Message::parse_stream(&big),
        Err(SipError::MessageTooLarge { .. })
    ));
}

#[test]
fn headers_can_be_edited_as_a_proxy_does() {
    let mut r = invite();
    r.headers
        .push_front(HeaderName::Via, "SIP/2.0/UDP node.example;branch=z9hG4bKp");
    r.headers.set(HeaderName::MaxForwards, "69");
    r.headers
        .push(HeaderName::RecordRoute, "<sip:node.example;lr>");
    let m = Message::Request(r);
    let again = Message::parse(&m.to_bytes()).unwrap();
    assert_eq!(again.vias().unwrap().len(), 3);
    assert_eq!(
        again.vias().unwrap()[0].branch(),
        Some("z9hG4bKp"),
        "the new Via is on top"
    );
    let Message::Request(r) = again else {
        panic!("a request")
    };
    assert_eq!(r.max_forwards(), Some(69));
    r.headers.values(&HeaderName::RecordRoute).unwrap();
}

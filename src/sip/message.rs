//! SIP messages (RFC 3261 §7): parsing from a datagram or a stream, and
//! printing back.
//!
//! The parser is strict and bounded: lines end in CRLF, the message is at
//! most [`SIP_MAX_MESSAGE_LEN`] bytes, with at most [`SIP_MAX_HEADERS`]
//! header fields of at most [`SIP_MAX_LINE_LEN`] bytes each and at most
//! [`SIP_MAX_VIAS`] Via values. Folded header lines are unfolded (the fold
//! reads as one space). A message is refused unless it carries Via, From,
//! To, Call-ID and CSeq, each well formed, and (for a request) a CSeq
//! whose method is the request's. Content-Length is not kept as a header:
//! the body's length is the truth, and printing writes it.

use super::error::SipError;
use super::header::{is_token, split_list, HeaderName};
use super::typed::{CSeq, NameAddr, Via};
use super::uri::SipUri;
use crate::limits::{SIP_MAX_HEADERS, SIP_MAX_LINE_LEN, SIP_MAX_MESSAGE_LEN, SIP_MAX_VIAS};
use std::fmt;

macro_rules! methods {
    ($( $(#[$doc:meta])* $variant:ident = $name:literal; )*) => {
        /// A request method. Methods are case-sensitive (RFC 3261 §7.1).
        #[derive(Debug, Clone, PartialEq, Eq, Hash)]
        #[non_exhaustive]
        pub enum Method {
            $( $(#[$doc])* $variant, )*
            /// Any other method (an extension token).
            Other(String),
        }

        impl Method {
            /// Parses a method token.
            pub fn parse(s: &str) -> Result<Self, SipError> {
                match s {
                    $( $name => Ok(Method::$variant), )*
                    _ if is_token(s) => Ok(Method::Other(s.to_owned())),
                    _ => Err(SipError::BadMethod(s.chars().take(32).collect())),
                }
            }

            /// The method as written on the wire.
            pub fn as_str(&self) -> &str {
                match self {
                    $( Method::$variant => $name, )*
                    Method::Other(s) => s,
                }
            }
        }
    };
}

methods! {
    /// `ACK`.
    Ack = "ACK";
    /// `BYE`.
    Bye = "BYE";
    /// `CANCEL`.
    Cancel = "CANCEL";
    /// `INFO`.
    Info = "INFO";
    /// `INVITE`.
    Invite = "INVITE";
    /// `MESSAGE`.
    Message = "MESSAGE";
    /// `NOTIFY`.
    Notify = "NOTIFY";
    /// `OPTIONS`.
    Options = "OPTIONS";
    /// `PRACK`.
    Prack = "PRACK";
    /// `PUBLISH`.
    Publish = "PUBLISH";
    /// `REFER`.
    Refer = "REFER";
    /// `REGISTER`.
    Register = "REGISTER";
    /// `SUBSCRIBE`.
    Subscribe = "SUBSCRIBE";
    /// `UPDATE`.
    Update = "UPDATE";
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message's header fields, in order, values as written (unfolded and
/// trimmed). Content-Length is never among them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Headers(Vec<(HeaderName, String)>);

impl Headers {
    /// No headers.
    pub fn new() -> Self {
        Self::default()
    }

    /// The first value of the header `name`, as written.
    pub fn get(&self, name: &HeaderName) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every line's value of the header `name`, in order.
    pub fn all<'a>(&'a self, name: &'a HeaderName) -> impl Iterator<Item = &'a str> + 'a {
        self.0
            .iter()
            .filter(move |(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of the list header `name`, split at its commas (see
    /// [`split_list`]), in order.
    pub fn values(&self, name: &HeaderName) -> Result<Vec<&str>, SipError> {
        let mut out = Vec::new();
        for (_, v) in self.0.iter().filter(|(n, _)| n == name) {
            if name.is_list() {
                out.extend(split_list(static_name(name), v)?);
            } else {
                out.push(v);
            }
        }
        Ok(out)
    }

    /// Appends a header line.
    pub fn push(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.push((name, value.into()));
    }

    /// Puts a header line first among the lines (a proxy's new Via or
    /// Record-Route goes on top).
    pub fn push_front(&mut self, name: HeaderName, value: impl Into<String>) {
        self.0.insert(0, (name, value.into()));
    }

    /// Removes the first value of the list header `name` (the top Via a
    /// proxy added, the top Route naming it) and returns it: its line
    /// goes if it held only that value, else keeps the others.
    pub fn pop_first_value(&mut self, name: &HeaderName) -> Option<String> {
        let i = self.0.iter().position(|(n, _)| n == name)?;
        let (_, line) = self.0.get(i)?;
        let values = split_list(static_name(name), line).ok()?;
        let (first, rest) = values.split_first()?;
        let first = (*first).to_owned();
        if rest.is_empty() {
            self.0.remove(i);
        } else {
            let rest = rest.join(", ");
            if let Some(slot) = self.0.get_mut(i) {
                slot.1 = rest;
            }
        }
        Some(first)
    }

    /// Removes every line of the header `name`.
    pub fn remove(&mut self, name: &HeaderName) {
        self.0.retain(|(n, _)| n != name);
    }

    /// Replaces every line of the header `name` with one line.
    pub fn set(&mut self, name: HeaderName, value: impl Into<String>) {
        let value = value.into();
        match self.0.iter().position(|(n, _)| *n == name) {
            Some(i) => {
                self.remove(&name);
                self.0.insert(i.min(self.0.len()), (name, value));
            }
            None => self.0.push((name, value)),
        }
    }

    /// The header lines, in order.
    pub fn iter(&self) -> impl Iterator<Item = (&HeaderName, &str)> {
        self.0.iter().map(|(n, v)| (n, v.as_str()))
    }

    /// How many header lines there are.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// The name errors give a header: canonical for known headers.
fn static_name(name: &HeaderName) -> &'static str {
    match name {
        HeaderName::Via => "Via",
        HeaderName::Contact => "Contact",
        HeaderName::Route => "Route",
        HeaderName::RecordRoute => "Record-Route",
        HeaderName::From => "From",
        HeaderName::To => "To",
        HeaderName::CallId => "Call-ID",
        HeaderName::CSeq => "CSeq",
        HeaderName::MaxForwards => "Max-Forwards",
        HeaderName::ContentLength => "Content-Length",
        HeaderName::ContentType => "Content-Type",
        HeaderName::Expires => "Expires",
        _ => "header",
    }
}

/// A SIP request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Request {
    /// The method.
    pub method: Method,
    /// The Request-URI.
    pub uri: SipUri,
    /// The header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A SIP response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    /// The status code, 100 to 699.
    pub code: u16,
    /// The reason phrase, as written.
    pub reason: String,
    /// The header fields.
    pub headers: Headers,
    /// The body.
    pub body: Vec<u8>,
}

/// A SIP request or response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// A request.
    Request(Request),
    /// A response.
    Response(Response),
}

/// What [`Message::parse_stream`] found at the front of a stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// A complete message, and how many bytes it took (leading line ends
    /// included).
    Message(Box<Message>, usize),
    /// A keep-alive ping, `CRLF CRLF` (RFC 5626 §3.5.1): 4 bytes to drop,
    /// answered with one `CRLF`.
    Ping,
    /// A lone `CRLF` between messages (a keep-alive pong, or slack): 2
    /// bytes to drop.
    Blank,
}

/// Finds the empty line that ends the header section: the index of the
/// `\r\n\r\n`, if any.
fn find_head_end(bytes: &[u8]) -> Option<usize> {
    bytes.windows(4).position(|w| w == b"\r\n\r\n")
}

impl Message {
    /// Parses one message from a datagram (UDP). Without Content-Length
    /// the body is the rest of the datagram; with it, bytes beyond it are
    /// ignored and fewer bytes are an error (RFC 3261 §18.3). Line ends
    /// before the start line are skipped; a datagram of nothing else is
    /// [`SipError::Empty`] (a keep-alive).
    pub fn parse(datagram: &[u8]) -> Result<Message, SipError> {
        if datagram.len() > SIP_MAX_MESSAGE_LEN {
            return Err(SipError::MessageTooLarge {
                len: datagram.len(),
                max: SIP_MAX_MESSAGE_LEN,
            });
        }
        let start = skip_line_ends(datagram);
        let bytes = datagram.get(start..).unwrap_or_default();
        if bytes.is_empty() {
            return Err(SipError::Empty);
        }
        let end = find_head_end(bytes).ok_or(SipError::UnterminatedHeaders)?;
        let (head, rest) = bytes.split_at(end);
        let rest = rest.get(4..).unwrap_or_default();
        let (start_line, headers, content_length) = parse_head(head)?;
        let body = match content_length {
            Some(n) if n <= rest.len() => rest.get(..n).unwrap_or_default(),
            Some(n) => {
                return Err(SipError::BodyTruncated {
                    len: rest.len(),
                    announced: n,
                })
            }
            None => rest,
        };
        Ok(start_line.into_message(headers, body.to_vec()))
    }

    /// Parses the message at the front of a stream (TCP): `Ok(None)` when
    /// more bytes are needed. A message needs Content-Length here. Errors
    /// are final: the stream cannot be resynchronised and is closed.
    pub fn parse_stream(buf: &[u8]) -> Result<Option<Frame>, SipError> {
        if buf.starts_with(b"\r\n\r\n") {
            return Ok(Some(Frame::Ping));
        }
        if buf.starts_with(b"\r\n") {
            // A lone CRLF, or the start of a ping: wait for a third byte.
            return Ok(match buf.get(2) {
                None => None,
                Some(b'\r') if buf.len() < 4 => None,
                Some(_) => Some(Frame::Blank),
            });
        }
        let head_end = match find_head_end(buf) {
            Some(end) => end,
            None if buf.len() >= SIP_MAX_MESSAGE_LEN => {
                return Err(SipError::MessageTooLarge {
                    len: buf.len(),
                    max: SIP_MAX_MESSAGE_LEN,
                })
            }
            None => return Ok(None),
        };
        let head = buf.get(..head_end).unwrap_or_default();
        let (start_line, headers, content_length) = parse_head(head)?;
        let body_len = content_length.ok_or(SipError::MissingContentLength)?;
        let total = head_end + 4 + body_len;
        if total > SIP_MAX_MESSAGE_LEN {
            return Err(SipError::MessageTooLarge {
                len: total,
                max: SIP_MAX_MESSAGE_LEN,
            });
        }
        let Some(body) = buf.get(head_end + 4..total) else {
            return Ok(None);
        };
        Ok(Some(Frame::Message(
            Box::new(start_line.into_message(headers, body.to_vec())),
            total,
        )))
    }

    /// The message's bytes: the start line, the header fields, a
    /// Content-Length for the body, an empty line and the body.
    pub fn to_bytes(&self) -> Vec<u8> {
        let (headers, body) = match self {
            Message::Request(r) => (&r.headers, &r.body),
            Message::Response(r) => (&r.headers, &r.body),
        };
        let mut out = Vec::with_capacity(512 + body.len());
        match self {
            Message::Request(r) => {
                out.extend_from_slice(format!("{} {} SIP/2.0\r\n", r.method, r.uri).as_bytes())
            }
            Message::Response(r) => {
                out.extend_from_slice(format!("SIP/2.0 {} {}\r\n", r.code, r.reason).as_bytes())
            }
        }
        for (name, value) in headers.iter() {
            out.extend_from_slice(name.as_str().as_bytes());
            out.extend_from_slice(b": ");
            out.extend_from_slice(value.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(format!("Content-Length: {}\r\n\r\n", body.len()).as_bytes());
        out.extend_from_slice(body);
        out
    }

    /// The header fields.
    pub fn headers(&self) -> &Headers {
        match self {
            Message::Request(r) => &r.headers,
            Message::Response(r) => &r.headers,
        }
    }

    /// The Via values, topmost first.
    pub fn vias(&self) -> Result<Vec<Via>, SipError> {
        self.headers()
            .values(&HeaderName::Via)?
            .into_iter()
            .map(Via::parse)
            .collect()
    }

    /// The CSeq.
    pub fn cseq(&self) -> Result<CSeq, SipError> {
        CSeq::parse(required(self.headers(), HeaderName::CSeq, "CSeq")?)
    }

    /// The Call-ID.
    pub fn call_id(&self) -> Result<&str, SipError> {
        required(self.headers(), HeaderName::CallId, "Call-ID")
    }

    /// The From value.
    pub fn from(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse("From", required(self.headers(), HeaderName::From, "From")?)
    }

    /// The To value.
    pub fn to(&self) -> Result<NameAddr, SipError> {
        NameAddr::parse("To", required(self.headers(), HeaderName::To, "To")?)
    }
}

fn required<'a>(
    headers: &'a Headers,
    name: HeaderName,
    label: &'static str,
) -> Result<&'a str, SipError> {
    headers.get(&name).ok_or(SipError::MissingHeader(label))
}

/// How many bytes of `CRLF`s stand before the start line.
fn skip_line_ends(bytes: &[u8]) -> usize {
    let mut i = 0;
    while bytes.get(i..i + 2) == Some(b"\r\n") {
        i += 2;
    }
    i
}

/// A complete header section, parsed once, waiting for its body: what
/// [`super::stream::StreamReader`] keeps between the empty line and the
/// last body byte.
#[derive(Debug)]
pub(super) struct Head {
    start: StartLine,
    headers: Headers,
    content_length: Option<usize>,
}

impl Head {
    /// Parses a header section (without its final empty line), as
    /// [`Message::parse_stream`] does.
    pub(super) fn parse(head: &[u8]) -> Result<Self, SipError> {
        let (start, headers, content_length) = parse_head(head)?;
        Ok(Self {
            start,
            headers,
            content_length,
        })
    }

    /// The Content-Length the header section announced, if any (at most
    /// [`SIP_MAX_MESSAGE_LEN`]: the parser refused more).
    pub(super) fn content_length(&self) -> Option<usize> {
        self.content_length
    }

    /// The message, with its body.
    pub(super) fn into_message(self, body: Vec<u8>) -> Message {
        self.start.into_message(self.headers, body)
    }
}

/// A parsed start line, waiting for its headers and body.
#[derive(Debug)]
enum StartLine {
    Request(Method, SipUri),
    Response(u16, String),
}

impl StartLine {
    fn into_message(self, headers: Headers, body: Vec<u8>) -> Message {
        match self {
            StartLine::Request(method, uri) => Message::Request(Request {
                method,
                uri,
                headers,
                body,
            }),
            StartLine::Response(code, reason) => Message::Response(Response {
                code,
                reason,
                headers,
                body,
            }),
        }
    }
}

/// Whether `v` is `SIP/2.0` (the version is case-insensitive).
fn check_version(v: &str) -> Result<(), SipError> {
    if v.eq_ignore_ascii_case("SIP/2.0") {
        Ok(())
    } else {
        Err(SipError::UnsupportedVersion(v.chars().take(32).collect()))
    }
}

fn parse_start_line(line: &str) -> Result<StartLine, SipError> {
    if line.len() >= 4
        && line
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("SIP/"))
    {
        // Status-Line = SIP-Version SP Status-Code SP Reason-Phrase
        let mut parts = line.splitn(3, ' ');
        let (Some(version), Some(code), reason) = (parts.next(), parts.next(), parts.next()) else {
            return Err(SipError::BadStartLine("status line without a code"));
        };
        check_version(version)?;
        let valid = code.len() == 3 && code.bytes().all(|b| b.is_ascii_digit());
        let code_num: u16 = code.parse().unwrap_or(0);
        if !valid || !(100..=699).contains(&code_num) {
            return Err(SipError::BadStatusCode(code.chars().take(8).collect()));
        }
        let reason = reason.unwrap_or_default();
        if reason.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SipError::BadStartLine(
                "control character in the reason phrase",
            ));
        }
        return Ok(StartLine::Response(code_num, reason.to_owned()));
    }
    // Request-Line = Method SP Request-URI SP SIP-Version
    let mut parts = line.split(' ');
    let (Some(method), Some(uri), Some(version), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(SipError::BadStartLine(
            "request line is not <method> <uri> SIP/2.0 with single spaces",
        ));
    };
    let method = Method::parse(method)?;
    check_version(version)?;
    Ok(StartLine::Request(method, SipUri::parse(uri)?))
}

/// Splits the header section into lines, checks the line ends, unfolds
/// continuation lines and bounds every line.
fn unfold(head: &[u8]) -> Result<Vec<String>, SipError> {
    let mut lines: Vec<String> = Vec::new();
    let line_feeds = head.iter().filter(|&&b| b == b'\n').count();
    for (i, raw) in head.split(|&b| b == b'\n').enumerate() {
        let number = i + 1;
        // Every line but the last ended in "\n"; it must have been "\r\n".
        let line = if i == line_feeds {
            raw
        } else {
            raw.strip_suffix(b"\r")
                .ok_or(SipError::BareLineEnd { line: number })?
        };
        if line.contains(&b'\r') {
            return Err(SipError::BareLineEnd { line: number });
        }
        let line = std::str::from_utf8(line).map_err(|_| match lines.first() {
            None => SipError::BadStartLine("not UTF-8"),
            Some(_) => SipError::BadHeaderValue {
                name: String::from_utf8_lossy(
                    line.split(|&b| b == b':').next().unwrap_or_default(),
                )
                .chars()
                .take(64)
                .collect(),
            },
        })?;
        if line.starts_with([' ', '\t']) {
            let folds_a_header = lines.len() > 1;
            match lines.last_mut() {
                Some(prev) if folds_a_header => {
                    prev.push(' ');
                    prev.push_str(line.trim_start_matches([' ', '\t']));
                }
                _ => return Err(SipError::BadFolding { line: number }),
            }
        } else {
            if lines.len() > SIP_MAX_HEADERS {
                return Err(SipError::TooManyHeaders {
                    max: SIP_MAX_HEADERS,
                });
            }
            lines.push(line.to_owned());
        }
        if let Some(last) = lines.last() {
            if last.len() > SIP_MAX_LINE_LEN {
                return Err(SipError::LineTooLong {
                    line: lines.len(),
                    len: last.len(),
                    max: SIP_MAX_LINE_LEN,
                });
            }
        }
    }
    Ok(lines)
}

/// Headers that a message carries at most once.
const SINGLETONS: [(HeaderName, &str); 5] = [
    (HeaderName::CallId, "Call-ID"),
    (HeaderName::CSeq, "CSeq"),
    (HeaderName::From, "From"),
    (HeaderName::To, "To"),
    (HeaderName::MaxForwards, "Max-Forwards"),
];

/// Parses the header section (without its final empty line): the start
/// line, the header fields (Content-Length taken out) and the announced
/// body length.
fn parse_head(head: &[u8]) -> Result<(StartLine, Headers, Option<usize>), SipError> {
    let lines = unfold(head)?;
    let (first, rest) = lines.split_first().ok_or(SipError::BadStartLine("empty"))?;
    let start = parse_start_line(first)?;
    let mut headers = Headers::new();
    let mut content_length = None;
    for (i, line) in rest.iter().enumerate() {
        let number = i + 2;
        let (name, value) = line
            .split_once(':')
            .ok_or(SipError::BadHeaderName { line: number })?;
        let name = name.trim_end_matches([' ', '\t']);
        if !is_token(name) {
            return Err(SipError::BadHeaderName { line: number });
        }
        let value = value.trim_matches([' ', '\t']);
        if value.chars().any(|c| c.is_control() && c != '\t') {
            return Err(SipError::BadHeaderValue {
                name: name.chars().take(64).collect(),
            });
        }
        let name = HeaderName::from_wire(name);
        if name == HeaderName::ContentLength {
            if content_length.is_some() {
                return Err(SipError::DuplicateHeader("Content-Length"));
            }
            content_length = Some(parse_content_length(value)?);
            continue;
        }
        headers.push(name, value);
    }
    for (name, label) in &SINGLETONS {
        if headers.all(name).nth(1).is_some() {
            return Err(SipError::DuplicateHeader(label));
        }
    }
    check_required(&start, &headers)?;
    Ok((start, headers, content_length))
}

fn parse_content_length(value: &str) -> Result<usize, SipError> {
    let bad = |why| SipError::BadHeader {
        header: "Content-Length",
        why,
    };
    if value.is_empty() || !value.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad("not a decimal number"));
    }
    let digits = value.trim_start_matches('0');
    if digits.len() > 6 {
        return Err(SipError::MessageTooLarge {
            len: usize::MAX,
            max: SIP_MAX_MESSAGE_LEN,
        });
    }
    let n: usize = if digits.is_empty() {
        0
    } else {
        digits.parse().map_err(|_| bad("not a decimal number"))?
    };
    if n > SIP_MAX_MESSAGE_LEN {
        return Err(SipError::MessageTooLarge {
            len: n,
            max: SIP_MAX_MESSAGE_LEN,
        });
    }
    Ok(n)
}

/// Checks what every request and response must carry, well formed.
fn check_required(start: &StartLine, headers: &Headers) -> Result<(), SipError> {
    let vias = headers.values(&HeaderName::Via)?;
    if vias.is_empty() {
        return Err(SipError::MissingHeader("Via"));
    }
    if vias.len() > SIP_MAX_VIAS {
        return Err(SipError::TooManyVias { max: SIP_MAX_VIAS });
    }
    for via in vias {
        Via::parse(via)?;
    }
    let from = headers
        .get(&HeaderName::From)
        .ok_or(SipError::MissingHeader("From"))?;
    NameAddr::parse("From", from)?;
    let to = headers
        .get(&HeaderName::To)
        .ok_or(SipError::MissingHeader("To"))?;
    NameAddr::parse("To", to)?;
    let call_id = headers
        .get(&HeaderName::CallId)
        .ok_or(SipError::MissingHeader("Call-ID"))?;
    // callid = word [ "@" word ]: no spaces, not empty.
    if call_id.is_empty() || call_id.contains([' ', '\t']) {
        return Err(SipError::BadHeader {
            header: "Call-ID",
            why: "empty or has white space",
        });
    }
    let cseq = headers
        .get(&HeaderName::CSeq)
        .ok_or(SipError::MissingHeader("CSeq"))?;
    let cseq = CSeq::parse(cseq)?;
    if let Some(mf) = headers.get(&HeaderName::MaxForwards) {
        if mf.is_empty() || mf.len() > 3 || !mf.bytes().all(|b| b.is_ascii_digit()) {
            return Err(SipError::BadHeader {
                header: "Max-Forwards",
                why: "not a number of at most 3 digits",
            });
        }
    }
    if let StartLine::Request(method, _) = start {
        if cseq.method != *method {
            return Err(SipError::CSeqMethodMismatch {
                method: method.to_string(),
                cseq: cseq.method.to_string(),
            });
        }
    }
    Ok(())
}

impl Request {
    /// The Max-Forwards value, if present (checked when parsed).
    pub fn max_forwards(&self) -> Option<u8> {
        self.headers
            .get(&HeaderName::MaxForwards)
            .and_then(|v| v.parse::<u16>().ok())
            .map(|n| u8::try_from(n).unwrap_or(u8::MAX))
    }

    /// A response to this request (RFC 3261 §8.2.6.2): its Via values,
    /// From, Call-ID and CSeq copied; its To, with `to_tag` added when
    /// the To has no tag yet; the standard reason phrase of `code`; no
    /// body.
    pub fn reply(&self, code: u16, to_tag: Option<&str>) -> Response {
        let mut headers = Headers::new();
        for (name, value) in self.headers.iter() {
            match name {
                HeaderName::Via | HeaderName::From | HeaderName::CallId | HeaderName::CSeq => {
                    headers.push(name.clone(), value)
                }
                HeaderName::To => match to_tag {
                    Some(tag) if !has_tag(value) => {
                        headers.push(HeaderName::To, format!("{value};tag={tag}"))
                    }
                    _ => headers.push(HeaderName::To, value),
                },
                _ => {}
            }
        }
        Response {
            code,
            reason: reason_phrase(code).to_owned(),
            headers,
            body: Vec::new(),
        }
    }
}

/// The answer to a request the parser refused, when one is possible:
/// the error's status code (400, 505, 513, 416) with the refusal in the
/// reason phrase, to the request's Via, From, To, Call-ID and CSeq as
/// written. `None` when the bytes are not a request, or lack any of those
/// headers (then the message is dropped). The answer copies only lines
/// of the request and adds a status line and a Content-Length (under 160
/// bytes), so it amplifies nothing worth the name.
pub fn error_reply(bytes: &[u8], error: &SipError) -> Option<Response> {
    let bytes = bytes.get(..bytes.len().min(SIP_MAX_MESSAGE_LEN))?;
    let text = bytes.get(skip_line_ends(bytes)..)?;
    let head = text.get(..find_head_end(text).unwrap_or(text.len()))?;
    let head = std::str::from_utf8(head).ok()?;
    let mut lines = head.split("\r\n");
    let first = lines.next()?;
    let method = first.split(' ').next()?;
    if first.starts_with("SIP/") || !is_token(method) || method == "ACK" {
        // A response, junk, or an ACK (never answered).
        return None;
    }
    let wanted = [
        HeaderName::Via,
        HeaderName::From,
        HeaderName::To,
        HeaderName::CallId,
        HeaderName::CSeq,
    ];
    let mut headers = Headers::new();
    let mut vias = 0;
    for line in lines.take(SIP_MAX_HEADERS) {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let name = HeaderName::from_wire(name.trim());
        let value = value.trim();
        let printable = value
            .bytes()
            .all(|b| b == b'\t' || (b' '..0x7f).contains(&b) || b >= 0x80);
        if !wanted.contains(&name) || !printable || value.is_empty() {
            continue;
        }
        if name == HeaderName::Via {
            vias += 1;
            if vias > SIP_MAX_VIAS {
                return None;
            }
        } else if headers.get(&name).is_some() {
            continue;
        }
        headers.push(name, value);
    }
    if wanted.iter().any(|h| headers.get(h).is_none()) {
        return None;
    }
    let code = error.status_code();
    let why: String = error
        .to_string()
        .chars()
        .filter(|c| c.is_ascii_graphic() || *c == ' ')
        .take(96)
        .collect();
    Some(Response {
        code,
        reason: format!("{} ({why})", reason_phrase(code)),
        headers,
        body: Vec::new(),
    })
}

/// Whether a To value carries a tag (a value that does not parse has
/// none the node could rely on; the parser checked To when it parsed).
fn has_tag(to: &str) -> bool {
    NameAddr::parse("To", to).is_ok_and(|n| n.tag().is_some())
}

/// The reason phrase RFC 3261 §21 (and later RFCs) give `code`.
pub fn reason_phrase(code: u16) -> &'static str {
    match code {
        100 => "Trying",
        180 => "Ringing",
        181 => "Call Is Being Forwarded",
        183 => "Session Progress",
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        407 => "Proxy Authentication Required",
        408 => "Request Timeout",
        413 => "Request Entity Too Large",
        416 => "Unsupported URI Scheme",
        420 => "Bad Extension",
        423 => "Interval Too Brief",
        438 => "Invalid Identity Header",
        480 => "Temporarily Unavailable",
        481 => "Call/Transaction Does Not Exist",
        482 => "Loop Detected",
        483 => "Too Many Hops",
        486 => "Busy Here",
        487 => "Request Terminated",
        488 => "Not Acceptable Here",
        500 => "Server Internal Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        504 => "Server Time-out",
        505 => "Version Not Supported",
        513 => "Message Too Large",
        603 => "Decline",
        _ => match code / 100 {
            1 => "Progress",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            5 => "Server Error",
            _ => "Global Failure",
        },
    }
}

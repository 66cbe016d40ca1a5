//! What can be wrong with SIP bytes: one typed error per reason, each
//! naming what it found, and the response a server may answer it with.

use thiserror::Error;

/// Why SIP bytes were refused.
///
/// Every variant names what was wrong so that a log line (and the reason
/// phrase of a `400`) tells the sender precisely what to fix.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[non_exhaustive]
pub enum SipError {
    /// The message is longer than the node accepts.
    #[error("SIP message of {len} bytes exceeds the maximum of {max}")]
    MessageTooLarge {
        /// Its length (or the length seen so far, on a stream).
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// Nothing but line ends (a keep-alive, not a message).
    #[error("empty SIP message")]
    Empty,
    /// The header section does not end with an empty line.
    #[error("SIP header section does not end (no empty line)")]
    UnterminatedHeaders,
    /// A line ends in a bare LF or a bare CR instead of CRLF.
    #[error("line {line}: bare CR or LF (SIP lines end in CRLF)")]
    BareLineEnd {
        /// The line's number, from 1.
        line: usize,
    },
    /// A line is longer than the node accepts.
    #[error("line {line} of {len} bytes exceeds the maximum of {max}")]
    LineTooLong {
        /// The line's number, from 1 (after unfolding).
        line: usize,
        /// Its length.
        len: usize,
        /// The maximum.
        max: usize,
    },
    /// The start line is neither a request line nor a status line.
    #[error("malformed start line: {0}")]
    BadStartLine(&'static str),
    /// A SIP version other than 2.0.
    #[error("unsupported SIP version {0:?}")]
    UnsupportedVersion(String),
    /// A request method that is not a token.
    #[error("malformed method {0:?}")]
    BadMethod(String),
    /// A status code outside 100..=699.
    #[error("status code {0:?} out of range 100-699")]
    BadStatusCode(String),
    /// A URI that does not parse, or is too long.
    #[error("malformed URI: {0}")]
    BadUri(&'static str),
    /// A Request-URI of a scheme other than `sip` or `sips`.
    #[error("unsupported URI scheme {0:?}")]
    UnsupportedUriScheme(String),
    /// A header line without a colon, or with a name that is not a token.
    #[error("line {line}: malformed header field name")]
    BadHeaderName {
        /// The line's number, from 1 (after unfolding).
        line: usize,
    },
    /// A header value with control characters or invalid UTF-8.
    #[error("header {name}: value has control characters or is not UTF-8")]
    BadHeaderValue {
        /// The header's name as written.
        name: String,
    },
    /// A continuation line where no header field precedes it.
    #[error("line {line}: continuation line without a header field")]
    BadFolding {
        /// The line's number, from 1.
        line: usize,
    },
    /// More header fields than the node accepts.
    #[error("more than {max} header fields")]
    TooManyHeaders {
        /// The maximum.
        max: usize,
    },
    /// More Via values than the node accepts.
    #[error("more than {max} Via values")]
    TooManyVias {
        /// The maximum.
        max: usize,
    },
    /// More parameters on a URI or header value than the node accepts.
    #[error("more than {max} parameters")]
    TooManyParams {
        /// The maximum.
        max: usize,
    },
    /// A header every request and response must carry is missing.
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    /// A header that may appear once appears more than once.
    #[error("header {0} appears more than once")]
    DuplicateHeader(&'static str),
    /// A header value that does not parse as its header's syntax.
    #[error("malformed {header} value: {why}")]
    BadHeader {
        /// The header's canonical name.
        header: &'static str,
        /// What was wrong.
        why: &'static str,
    },
    /// The CSeq method differs from the request's method.
    #[error("CSeq method {cseq} does not match the request method {method}")]
    CSeqMethodMismatch {
        /// The request's method.
        method: String,
        /// The method in CSeq.
        cseq: String,
    },
    /// A message on a stream (TCP) without Content-Length.
    #[error("missing Content-Length on a stream transport")]
    MissingContentLength,
    /// Fewer body bytes than Content-Length announces.
    #[error("body of {len} bytes is shorter than its Content-Length {announced}")]
    BodyTruncated {
        /// The body bytes present.
        len: usize,
        /// What Content-Length announced.
        announced: usize,
    },
}

impl SipError {
    /// The status code a server may answer a request refused for this
    /// reason with (RFC 3261 §8.2, §16.3, §21.4). The caller answers only
    /// when it could read enough of the request to build a response
    /// (Via, From, To, Call-ID, CSeq); otherwise it drops the bytes.
    pub fn status_code(&self) -> u16 {
        match self {
            SipError::MessageTooLarge { .. } => 513,
            SipError::UnsupportedVersion(_) => 505,
            SipError::UnsupportedUriScheme(_) => 416,
            _ => 400,
        }
    }
}

//! Header field names (case-insensitive, with RFC 3261's compact forms)
//! and the splitting of comma-separated header values.

use super::error::SipError;
use std::fmt;

macro_rules! header_names {
    ($( $(#[$doc:meta])* $variant:ident = $canonical:literal $(, $compact:literal)? ; )*) => {
        /// A header field's name. The names this node works with are
        /// variants; any other is kept as written in [`HeaderName::Other`].
        /// Names compare case-insensitively, and compact forms (`v`, `f`,
        /// `i`, …) read as their full names (RFC 3261 §7.3.3).
        #[derive(Debug, Clone, Eq)]
        #[non_exhaustive]
        pub enum HeaderName {
            $( $(#[$doc])* $variant, )*
            /// Any other header, as written.
            Other(String),
        }

        impl HeaderName {
            /// The name a header line gives, in any case or compact form.
            /// The caller has checked it is a token.
            pub fn from_wire(name: &str) -> Self {
                $(
                    if name.eq_ignore_ascii_case($canonical)
                        $( || name.eq_ignore_ascii_case($compact) )?
                    {
                        return HeaderName::$variant;
                    }
                )*
                HeaderName::Other(name.to_owned())
            }

            /// The canonical spelling (the name as written for others).
            pub fn as_str(&self) -> &str {
                match self {
                    $( HeaderName::$variant => $canonical, )*
                    HeaderName::Other(name) => name,
                }
            }
        }
    };
}

header_names! {
    /// `Accept`.
    Accept = "Accept";
    /// `Allow`.
    Allow = "Allow";
    /// `Allow-Events` (compact `u`).
    AllowEvents = "Allow-Events", "u";
    /// `Authorization`.
    Authorization = "Authorization";
    /// `Call-ID` (compact `i`).
    CallId = "Call-ID", "i";
    /// `Contact` (compact `m`).
    Contact = "Contact", "m";
    /// `Content-Encoding` (compact `e`).
    ContentEncoding = "Content-Encoding", "e";
    /// `Content-Length` (compact `l`).
    ContentLength = "Content-Length", "l";
    /// `Content-Type` (compact `c`).
    ContentType = "Content-Type", "c";
    /// `CSeq`.
    CSeq = "CSeq";
    /// `Event` (compact `o`).
    Event = "Event", "o";
    /// `Expires`.
    Expires = "Expires";
    /// `From` (compact `f`).
    From = "From", "f";
    /// `Identity` (RFC 8224; compact `y`).
    Identity = "Identity", "y";
    /// `Max-Forwards`.
    MaxForwards = "Max-Forwards";
    /// `Min-Expires`.
    MinExpires = "Min-Expires";
    /// `P-Asserted-Identity` (RFC 3325).
    PAssertedIdentity = "P-Asserted-Identity";
    /// `Proxy-Authenticate`.
    ProxyAuthenticate = "Proxy-Authenticate";
    /// `Proxy-Authorization`.
    ProxyAuthorization = "Proxy-Authorization";
    /// `Proxy-Require`.
    ProxyRequire = "Proxy-Require";
    /// `Record-Route`.
    RecordRoute = "Record-Route";
    /// `Refer-To` (compact `r`).
    ReferTo = "Refer-To", "r";
    /// `Referred-By` (compact `b`).
    ReferredBy = "Referred-By", "b";
    /// `Require`.
    Require = "Require";
    /// `Route`.
    Route = "Route";
    /// `Server`.
    Server = "Server";
    /// `Session-Expires` (compact `x`).
    SessionExpires = "Session-Expires", "x";
    /// `Subject` (compact `s`).
    Subject = "Subject", "s";
    /// `Supported` (compact `k`).
    Supported = "Supported", "k";
    /// `To` (compact `t`).
    To = "To", "t";
    /// `Unsupported`.
    Unsupported = "Unsupported";
    /// `User-Agent`.
    UserAgent = "User-Agent";
    /// `Via` (compact `v`).
    Via = "Via", "v";
    /// `Warning`.
    Warning = "Warning";
    /// `WWW-Authenticate`.
    WwwAuthenticate = "WWW-Authenticate";
}

impl HeaderName {
    /// Whether the header's values form a comma-separated list (RFC 3261
    /// §7.3.1), so that one line may carry several values. The
    /// authentication headers are not lists: their commas separate
    /// parameters of one challenge or credential.
    pub fn is_list(&self) -> bool {
        matches!(
            self,
            HeaderName::Accept
                | HeaderName::Allow
                | HeaderName::AllowEvents
                | HeaderName::Contact
                | HeaderName::ContentEncoding
                | HeaderName::PAssertedIdentity
                | HeaderName::ProxyRequire
                | HeaderName::RecordRoute
                | HeaderName::Require
                | HeaderName::Route
                | HeaderName::Supported
                | HeaderName::Unsupported
                | HeaderName::Via
                | HeaderName::Warning
        )
    }
}

impl PartialEq for HeaderName {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (HeaderName::Other(a), HeaderName::Other(b)) => a.eq_ignore_ascii_case(b),
            (a, b) => std::mem::discriminant(a) == std::mem::discriminant(b),
        }
    }
}

impl fmt::Display for HeaderName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `b` is a `token` character (RFC 3261 §25.1).
pub(crate) fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-.!%*_+`'~".contains(&b)
}

/// Whether `s` is a non-empty `token`.
pub(crate) fn is_token(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(is_token_char)
}

/// The bytes of a header value outside its double-quoted strings (with
/// their backslash escapes), with their offsets: what every splitter of
/// header values scans. The quotes themselves are not yielded.
pub(crate) struct Unquoted<'a> {
    bytes: &'a [u8],
    at: usize,
    quoted: bool,
    escaped: bool,
}

impl<'a> Unquoted<'a> {
    /// Scans `s`.
    pub(crate) fn new(s: &'a str) -> Self {
        Self {
            bytes: s.as_bytes(),
            at: 0,
            quoted: false,
            escaped: false,
        }
    }

    /// Whether the text ended inside a quoted string (or an escape).
    pub(crate) fn unterminated(&self) -> bool {
        self.quoted
    }
}

impl Iterator for Unquoted<'_> {
    type Item = (usize, u8);

    fn next(&mut self) -> Option<(usize, u8)> {
        while let Some(&b) = self.bytes.get(self.at) {
            let i = self.at;
            self.at += 1;
            if self.quoted {
                match (self.escaped, b) {
                    (true, _) => self.escaped = false,
                    (false, b'\\') => self.escaped = true,
                    (false, b'"') => self.quoted = false,
                    _ => {}
                }
            } else if b == b'"' {
                self.quoted = true;
            } else {
                return Some((i, b));
            }
        }
        None
    }
}

/// Splits a list header's value at the commas that separate its values:
/// not those inside a quoted string (with its backslash escapes) or
/// between `<` and `>`. Each value is trimmed; an empty one is an error.
pub fn split_list<'a>(header: &'static str, value: &'a str) -> Result<Vec<&'a str>, SipError> {
    let bad = |why| SipError::BadHeader { header, why };
    let mut out = Vec::new();
    let mut angle = false;
    let mut start = 0;
    let mut scan = Unquoted::new(value);
    for (i, b) in scan.by_ref() {
        match b {
            b'<' if !angle => angle = true,
            b'>' if angle => angle = false,
            b',' if !angle => {
                let item = value.get(start..i).unwrap_or_default().trim();
                if item.is_empty() {
                    return Err(bad("empty list element"));
                }
                out.push(item);
                start = i + 1;
            }
            _ => {}
        }
    }
    if scan.unterminated() {
        return Err(bad("unterminated quoted string"));
    }
    if angle {
        return Err(bad("unterminated <"));
    }
    let last = value.get(start..).unwrap_or_default().trim();
    if last.is_empty() {
        return Err(bad("empty list element"));
    }
    out.push(last);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_case_insensitive_and_compact_forms_read_as_full_names() {
        assert_eq!(HeaderName::from_wire("v"), HeaderName::Via);
        assert_eq!(HeaderName::from_wire("VIA"), HeaderName::Via);
        assert_eq!(HeaderName::from_wire("call-id"), HeaderName::CallId);
        assert_eq!(HeaderName::from_wire("i"), HeaderName::CallId);
        assert_eq!(HeaderName::from_wire("l").as_str(), "Content-Length");
        let other = HeaderName::from_wire("X-Custom");
        assert_eq!(other, HeaderName::from_wire("x-CUSTOM"));
        assert_eq!(other.as_str(), "X-Custom");
        assert_ne!(other, HeaderName::Via);
    }

    #[test]
    fn lists_split_outside_quotes_and_angle_brackets() {
        let v = split_list(
            "Contact",
            r#""Bob, \"the\" builder" <sip:bob@b.example;x=1,2>;q=0.5 , <sip:b2@b.example>"#,
        )
        .unwrap();
        assert_eq!(
            v,
            [
                r#""Bob, \"the\" builder" <sip:bob@b.example;x=1,2>;q=0.5"#,
                "<sip:b2@b.example>"
            ]
        );
        assert!(split_list("Via", "a,,b").is_err());
        assert!(split_list("Via", "a,").is_err());
        assert!(split_list("Contact", "\"open").is_err());
        assert!(split_list("Contact", "<sip:a").is_err());
    }
}

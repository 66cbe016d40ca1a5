//! The header values the node reads: name-addr (From, To, Contact, Route,
//! Record-Route), Via and CSeq (RFC 3261 §20, §25.1).

use super::error::SipError;
use super::header::{is_token, Unquoted};
use super::message::Method;
use super::uri::{param, parse_host_port, Host, Param, SipUri};
use crate::limits::SIP_MAX_PARAMS;
use std::fmt;

/// Splits `s` at each `sep` outside double quotes (with backslash escapes).
fn split_outside_quotes(s: &str, sep: u8) -> Vec<&str> {
    let mut out = Vec::new();
    let mut start = 0;
    for (i, b) in Unquoted::new(s) {
        if b == sep {
            out.push(s.get(start..i).unwrap_or_default());
            start = i + 1;
        }
    }
    out.push(s.get(start..).unwrap_or_default());
    out
}

/// Whether `s` is one whole quoted string (escapes allowed inside).
fn is_quoted_string(s: &str) -> bool {
    let Some(inner) = s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) else {
        return false;
    };
    let mut escaped = false;
    for b in inner.bytes() {
        match (escaped, b) {
            (true, _) => escaped = false,
            (false, b'\\') => escaped = true,
            (false, b'"') => return false,
            _ => {}
        }
    }
    !escaped
}

/// Parses header parameters: `s` is the text after the value's first
/// `;`. A value is a token, a host, or a quoted string.
fn parse_header_params(header: &'static str, s: &str) -> Result<Vec<Param>, SipError> {
    let bad = |why| SipError::BadHeader { header, why };
    let mut params = Vec::new();
    for p in split_outside_quotes(s, b';') {
        if params.len() >= SIP_MAX_PARAMS {
            return Err(SipError::TooManyParams {
                max: SIP_MAX_PARAMS,
            });
        }
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n.trim(), Some(v.trim())),
            None => (p.trim(), None),
        };
        if !is_token(name) {
            return Err(bad("malformed parameter name"));
        }
        if let Some(v) = value {
            let host_like = !v.is_empty()
                && v.bytes()
                    .all(|b| super::header::is_token_char(b) || b"[]:".contains(&b));
            if !(host_like || is_quoted_string(v)) {
                return Err(bad("malformed parameter value"));
            }
        }
        params.push(Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
    }
    Ok(params)
}

/// Prints `;name[=value]` for each parameter.
fn write_params(f: &mut fmt::Formatter<'_>, params: &[Param]) -> fmt::Result {
    for p in params {
        write!(f, ";{}", p.name)?;
        if let Some(v) = &p.value {
            write!(f, "={v}")?;
        }
    }
    Ok(())
}

/// A name-addr or addr-spec with header parameters: the value of From,
/// To, Contact, Route and Record-Route (RFC 3261 §20.10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NameAddr {
    /// The display name, as written (quotes kept when it was quoted).
    pub display: Option<String>,
    /// The URI.
    pub uri: SipUri,
    /// Header parameters (`;tag=…`, `;expires=…`, `;q=…`), in order.
    pub params: Vec<Param>,
}

impl NameAddr {
    /// Parses one value (of a list already split at its commas).
    /// Without angle brackets, parameters after the URI belong to the
    /// header, not the URI (RFC 3261 §20.10).
    pub fn parse(header: &'static str, s: &str) -> Result<Self, SipError> {
        let bad = |why| SipError::BadHeader { header, why };
        let s = s.trim();
        let (display, uri, rest) = if let Some(lt) = find_angle(s) {
            let display = s.get(..lt).unwrap_or_default().trim();
            let display = if display.is_empty() {
                None
            } else if is_quoted_string(display)
                || display
                    .split([' ', '\t'])
                    .filter(|w| !w.is_empty())
                    .all(is_token)
            {
                Some(display.to_owned())
            } else {
                return Err(bad("malformed display name"));
            };
            let after = s.get(lt + 1..).unwrap_or_default();
            let (uri, rest) = after.split_once('>').ok_or(bad("unterminated <"))?;
            (display, uri, rest)
        } else {
            match s.split_once(';') {
                Some((uri, params)) => (None, uri, s.get(uri.len()..).unwrap_or(params)),
                None => (None, s, ""),
            }
        };
        let uri = SipUri::parse(uri.trim())?;
        let rest = rest.trim();
        let params = if rest.is_empty() {
            Vec::new()
        } else {
            let p = rest.strip_prefix(';').ok_or(bad("junk after the URI"))?;
            parse_header_params(header, p)?
        };
        Ok(NameAddr {
            display,
            uri,
            params,
        })
    }

    /// The `tag` parameter (From and To).
    pub fn tag(&self) -> Option<&str> {
        param(&self.params, "tag").flatten()
    }

    /// The value of the header parameter `name`: `None` if absent,
    /// `Some(None)` if present without a value.
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }
}

/// The byte offset of the `<` that opens a name-addr's URI: the first one
/// outside a quoted display name.
fn find_angle(s: &str) -> Option<usize> {
    Unquoted::new(s).find(|(_, b)| *b == b'<').map(|(i, _)| i)
}

impl fmt::Display for NameAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(d) = &self.display {
            write!(f, "{d} ")?;
        }
        write!(f, "<{}>", self.uri)?;
        write_params(f, &self.params)
    }
}

/// One Via value (RFC 3261 §20.42): `SIP/2.0/UDP host:port;branch=…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Via {
    /// The transport (`UDP`, `TCP`, `TLS`, …), as written.
    pub transport: String,
    /// The sent-by host.
    pub host: Host,
    /// The sent-by port, if given.
    pub port: Option<u16>,
    /// Parameters (`branch`, `received`, `rport`, …), in order.
    pub params: Vec<Param>,
}

/// The magic cookie that starts an RFC 3261 branch.
pub const BRANCH_MAGIC_COOKIE: &str = "z9hG4bK";

impl Via {
    /// Parses one Via value (of a list already split at its commas).
    pub fn parse(s: &str) -> Result<Self, SipError> {
        let bad = |why| SipError::BadHeader { header: "Via", why };
        let s = s.trim();
        let (protocol, rest) = s
            .split_once([' ', '\t'])
            .ok_or(bad("no sent-by after the protocol"))?;
        let mut parts = protocol.split('/');
        let (name, version, transport) = (parts.next(), parts.next(), parts.next());
        if parts.next().is_some() {
            return Err(bad("malformed sent-protocol"));
        }
        match (name, version, transport) {
            (Some(n), Some(v), Some(t))
                if n.eq_ignore_ascii_case("SIP") && v == "2.0" && is_token(t) => {}
            _ => return Err(bad("sent-protocol is not SIP/2.0/<transport>")),
        }
        let transport = transport.unwrap_or_default().to_owned();
        let rest = rest.trim_start();
        let (sent_by, params) = match split_outside_quotes(rest, b';').split_first() {
            Some((sent_by, _)) => {
                let params = rest.get(sent_by.len()..).unwrap_or_default();
                (sent_by.trim(), params.strip_prefix(';'))
            }
            None => (rest, None),
        };
        let (host, port) = parse_host_port(sent_by).map_err(|_| bad("malformed sent-by"))?;
        let params = match params {
            Some(p) => parse_header_params("Via", p)?,
            None => Vec::new(),
        };
        Ok(Via {
            transport,
            host,
            port,
            params,
        })
    }

    /// The `branch` parameter (the transaction id when it starts with
    /// [`BRANCH_MAGIC_COOKIE`]).
    pub fn branch(&self) -> Option<&str> {
        param(&self.params, "branch").flatten()
    }

    /// The value of the parameter `name`: `None` if absent, `Some(None)`
    /// if present without a value (`;rport`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }
}

impl fmt::Display for Via {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SIP/2.0/{} {}", self.transport, self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        write_params(f, &self.params)
    }
}

/// A CSeq value: sequence number and method (RFC 3261 §20.16).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CSeq {
    /// The sequence number, below 2^31.
    pub seq: u32,
    /// The method.
    pub method: Method,
}

impl CSeq {
    /// Parses a CSeq value.
    pub fn parse(s: &str) -> Result<Self, SipError> {
        let bad = |why| SipError::BadHeader {
            header: "CSeq",
            why,
        };
        let mut words = s.split([' ', '\t']).filter(|w| !w.is_empty());
        let (Some(seq), Some(method), None) = (words.next(), words.next(), words.next()) else {
            return Err(bad("not <number> <method>"));
        };
        if seq.len() > 10 || !seq.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad("malformed sequence number"));
        }
        let seq: u32 = seq
            .parse()
            .ok()
            .filter(|n| *n < 1 << 31)
            .ok_or(bad("sequence number not below 2^31"))?;
        Ok(CSeq {
            seq,
            method: Method::parse(method)?,
        })
    }
}

impl fmt::Display for CSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.seq, self.method)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn name_addr_forms() {
        let a = NameAddr::parse(
            "From",
            r#""Alice \"A\" Liddell" <sip:alice@atlanta.example;transport=tcp>;tag=1928301774"#,
        )
        .unwrap();
        assert_eq!(a.display.as_deref(), Some(r#""Alice \"A\" Liddell""#));
        assert_eq!(a.uri.param("transport"), Some(Some("tcp")));
        assert_eq!(a.tag(), Some("1928301774"));

        // addr-spec: the parameters belong to the header.
        let b = NameAddr::parse("To", "sip:bob@biloxi.example;tag=a6c85cf").unwrap();
        assert_eq!(b.uri.params, []);
        assert_eq!(b.tag(), Some("a6c85cf"));

        let c =
            NameAddr::parse("Contact", "Bob Smith <sip:bob@192.0.2.4>;expires=60;q=0.7").unwrap();
        assert_eq!(c.display.as_deref(), Some("Bob Smith"));
        assert_eq!(c.param("expires"), Some(Some("60")));
        assert_eq!(
            NameAddr::parse("Contact", &c.to_string()).unwrap(),
            c,
            "prints back"
        );
    }

    #[test]
    fn bad_name_addrs_name_the_header() {
        for s in [
            "<sip:a@b",
            "Bad\u{1}Name <sip:a@b>",
            "<sip:a@b> junk",
            "<sip:a@b>;=x",
            "<sip:a@b>;tag=\"open",
        ] {
            match NameAddr::parse("From", s) {
                Err(SipError::BadHeader { header: "From", .. }) => {}
                other => panic!("{s:?}: {other:?}"),
            }
        }
        assert!(matches!(
            NameAddr::parse("To", "<tel:+15550100>"),
            Err(SipError::UnsupportedUriScheme(_))
        ));
    }

    #[test]
    fn via_values() {
        let v = Via::parse(
            "SIP/2.0/UDP pc33.atlanta.example:5066;branch=z9hG4bK776asdhds;rport;received=192.0.2.1",
        )
        .unwrap();
        assert_eq!(v.transport, "UDP");
        assert_eq!(v.port, Some(5066));
        assert_eq!(v.branch(), Some("z9hG4bK776asdhds"));
        assert_eq!(v.param("rport"), Some(None));
        assert_eq!(Via::parse(&v.to_string()).unwrap(), v);
        let v6 = Via::parse("SIP/2.0/TCP [2001:db8::9]:5070;branch=z9hG4bKx").unwrap();
        assert_eq!(v6.port, Some(5070));
        for bad in [
            "SIP/2.0/UDP",
            "SIP/3.0/UDP host",
            "SIP/2.0 host",
            "SIP/2.0/UDP/X host",
            "SIP/2.0/UDP host:port",
            "SIP/2.0/UDP host;=1",
        ] {
            assert!(
                matches!(
                    Via::parse(bad),
                    Err(SipError::BadHeader { header: "Via", .. })
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn cseq_values() {
        let c = CSeq::parse("4711 INVITE").unwrap();
        assert_eq!((c.seq, &c.method), (4711, &Method::Invite));
        assert_eq!(c.to_string(), "4711 INVITE");
        for bad in [
            "INVITE",
            "1 INVITE x",
            "-1 INVITE",
            "2147483648 INVITE",
            "99999999999 BYE",
        ] {
            assert!(CSeq::parse(bad).is_err(), "{bad}");
        }
    }
}

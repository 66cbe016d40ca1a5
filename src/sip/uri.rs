//! SIP and SIPS URIs (RFC 3261 §19.1): strict, bounded, and printed back
//! so that they parse to the same value.

use super::error::SipError;
use crate::limits::{SIP_MAX_PARAMS, SIP_MAX_URI_LEN};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The host of a SIP URI or Via.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Host {
    /// A domain name, as written (compare with [`Host::matches`]).
    Domain(String),
    /// An IPv4 or IPv6 address.
    Ip(IpAddr),
}

impl Host {
    /// Parses a host: a domain name, an IPv4 address or an IPv6 reference
    /// (`[::1]`).
    pub fn parse(s: &str) -> Result<Self, SipError> {
        if let Some(inner) = s.strip_prefix('[') {
            let inner = inner
                .strip_suffix(']')
                .ok_or(SipError::BadUri("unterminated IPv6 reference"))?;
            let ip: Ipv6Addr = inner
                .parse()
                .map_err(|_| SipError::BadUri("malformed IPv6 address"))?;
            return Ok(Host::Ip(IpAddr::V6(ip)));
        }
        if s.bytes().all(|b| b.is_ascii_digit() || b == b'.') && !s.is_empty() {
            if let Ok(ip) = s.parse::<Ipv4Addr>() {
                return Ok(Host::Ip(IpAddr::V4(ip)));
            }
        }
        // hostname = *( domainlabel "." ) toplabel [ "." ]
        let labels = s.strip_suffix('.').unwrap_or(s);
        let valid = !labels.is_empty()
            && labels.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                    && !label.starts_with('-')
                    && !label.ends_with('-')
            });
        if !valid {
            return Err(SipError::BadUri("malformed host"));
        }
        Ok(Host::Domain(s.to_owned()))
    }

    /// Whether two hosts are the same (domains case-insensitively).
    pub fn matches(&self, other: &Host) -> bool {
        match (self, other) {
            (Host::Domain(a), Host::Domain(b)) => a
                .trim_end_matches('.')
                .eq_ignore_ascii_case(b.trim_end_matches('.')),
            (Host::Ip(a), Host::Ip(b)) => a == b,
            _ => false,
        }
    }
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Domain(d) => f.write_str(d),
            Host::Ip(IpAddr::V4(ip)) => write!(f, "{ip}"),
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
        }
    }
}

/// A parameter: `;name` or `;name=value`, as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Param {
    /// Its name (compare case-insensitively).
    pub name: String,
    /// Its value, if it has one.
    pub value: Option<String>,
}

/// The value of the parameter `name` (case-insensitive) in `params`:
/// `None` if absent, `Some(None)` if present without a value.
pub fn param<'a>(params: &'a [Param], name: &str) -> Option<Option<&'a str>> {
    params
        .iter()
        .find(|p| p.name.eq_ignore_ascii_case(name))
        .map(|p| p.value.as_deref())
}

/// A `sip:` or `sips:` URI.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SipUri {
    /// `sips:` (TLS end to end) rather than `sip:`.
    pub secure: bool,
    /// The user part, as written (escapes kept).
    pub user: Option<String>,
    /// The password part, as written (deprecated by RFC 3261, kept only to
    /// print the URI back).
    pub password: Option<String>,
    /// The host.
    pub host: Host,
    /// The port, if given.
    pub port: Option<u16>,
    /// URI parameters (`;transport=tcp`, `;lr`, …), in order.
    pub params: Vec<Param>,
    /// URI headers (`?subject=x&…`), in order, as written.
    pub headers: Vec<(String, String)>,
}

/// RFC 3261 `unreserved`.
fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-_.!~*'()".contains(&b)
}

/// Whether every byte of `s` is `unreserved`, an `extra` byte, or part of
/// a `%HH` escape.
fn is_escaped_text(s: &str, extra: &[u8]) -> bool {
    let b = s.as_bytes();
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return false;
            }
            i += 3;
        } else if is_unreserved(c) || extra.contains(&c) {
            i += 1;
        } else {
            return false;
        }
    }
    true
}

/// `user-unreserved`.
const USER_EXTRA: &[u8] = b"&=+$,;?/";
/// Password characters beyond `unreserved`.
const PASSWORD_EXTRA: &[u8] = b"&=+$,";
/// `param-unreserved`.
const PARAM_EXTRA: &[u8] = b"[]/:&+$";
/// `hnv-unreserved`.
const HEADER_EXTRA: &[u8] = b"[]/?:+$";

/// Parses `host[:port]` (IPv6 references in brackets).
pub(crate) fn parse_host_port(s: &str) -> Result<(Host, Option<u16>), SipError> {
    let (host, port) = if s.starts_with('[') {
        match s.find(']') {
            Some(end) => {
                let (host, rest) = s.split_at(end + 1);
                match rest.strip_prefix(':') {
                    Some(port) => (host, Some(port)),
                    None if rest.is_empty() => (host, None),
                    None => return Err(SipError::BadUri("junk after IPv6 reference")),
                }
            }
            None => return Err(SipError::BadUri("unterminated IPv6 reference")),
        }
    } else {
        match s.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (s, None),
        }
    };
    let port = match port {
        Some(p) if !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()) => Some(
            p.parse::<u16>()
                .map_err(|_| SipError::BadUri("port out of range"))?,
        ),
        Some(_) => return Err(SipError::BadUri("malformed port")),
        None => None,
    };
    Ok((Host::parse(host)?, port))
}

/// Parses `;`-separated URI parameters (the text after the first `;`).
fn parse_uri_params(s: &str) -> Result<Vec<Param>, SipError> {
    let mut params = Vec::new();
    for p in s.split(';') {
        if params.len() >= SIP_MAX_PARAMS {
            return Err(SipError::TooManyParams {
                max: SIP_MAX_PARAMS,
            });
        }
        let (name, value) = match p.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (p, None),
        };
        if name.is_empty() || !is_escaped_text(name, PARAM_EXTRA) {
            return Err(SipError::BadUri("malformed parameter name"));
        }
        if let Some(v) = value {
            if v.is_empty() || !is_escaped_text(v, PARAM_EXTRA) {
                return Err(SipError::BadUri("malformed parameter value"));
            }
        }
        params.push(Param {
            name: name.to_owned(),
            value: value.map(str::to_owned),
        });
    }
    Ok(params)
}

impl SipUri {
    /// Parses a SIP or SIPS URI. Another scheme (`tel:`, `http:`) is
    /// [`SipError::UnsupportedUriScheme`].
    pub fn parse(s: &str) -> Result<Self, SipError> {
        if s.len() > SIP_MAX_URI_LEN {
            return Err(SipError::BadUri("longer than the maximum"));
        }
        let (scheme, rest) = s.split_once(':').ok_or(SipError::BadUri("no scheme"))?;
        let secure = if scheme.eq_ignore_ascii_case("sip") {
            false
        } else if scheme.eq_ignore_ascii_case("sips") {
            true
        } else if !scheme.is_empty()
            && scheme
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
        {
            return Err(SipError::UnsupportedUriScheme(scheme.to_owned()));
        } else {
            return Err(SipError::BadUri("malformed scheme"));
        };
        let (rest, headers) = match rest.split_once('?') {
            Some((r, h)) => (r, Some(h)),
            None => (rest, None),
        };
        let (user, password, hostpart) = match rest.split_once('@') {
            Some((userinfo, hostpart)) => {
                if hostpart.contains('@') {
                    return Err(SipError::BadUri("more than one @"));
                }
                let (user, password) = match userinfo.split_once(':') {
                    Some((u, p)) => (u, Some(p)),
                    None => (userinfo, None),
                };
                if user.is_empty() || !is_escaped_text(user, USER_EXTRA) {
                    return Err(SipError::BadUri("malformed user"));
                }
                if let Some(p) = password {
                    if !is_escaped_text(p, PASSWORD_EXTRA) {
                        return Err(SipError::BadUri("malformed password"));
                    }
                }
                (Some(user.to_owned()), password.map(str::to_owned), hostpart)
            }
            None => (None, None, rest),
        };
        let (hostport, params) = match hostpart.split_once(';') {
            Some((hp, params)) => (hp, parse_uri_params(params)?),
            None => (hostpart, Vec::new()),
        };
        let (host, port) = parse_host_port(hostport)?;
        let mut uri_headers = Vec::new();
        if let Some(h) = headers {
            for pair in h.split('&') {
                if uri_headers.len() >= SIP_MAX_PARAMS {
                    return Err(SipError::TooManyParams {
                        max: SIP_MAX_PARAMS,
                    });
                }
                let (name, value) = pair
                    .split_once('=')
                    .ok_or(SipError::BadUri("URI header without ="))?;
                if name.is_empty()
                    || !is_escaped_text(name, HEADER_EXTRA)
                    || !is_escaped_text(value, HEADER_EXTRA)
                {
                    return Err(SipError::BadUri("malformed URI header"));
                }
                uri_headers.push((name.to_owned(), value.to_owned()));
            }
        }
        Ok(SipUri {
            secure,
            user,
            password,
            host,
            port,
            params,
            headers: uri_headers,
        })
    }

    /// The value of the URI parameter `name`: `None` if absent,
    /// `Some(None)` if present without a value (`;lr`).
    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        param(&self.params, name)
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.secure { "sips:" } else { "sip:" })?;
        if let Some(user) = &self.user {
            f.write_str(user)?;
            if let Some(password) = &self.password {
                write!(f, ":{password}")?;
            }
            f.write_str("@")?;
        }
        write!(f, "{}", self.host)?;
        if let Some(port) = self.port {
            write!(f, ":{port}")?;
        }
        for p in &self.params {
            write!(f, ";{}", p.name)?;
            if let Some(v) = &p.value {
                write!(f, "={v}")?;
            }
        }
        for (i, (name, value)) in self.headers.iter().enumerate() {
            write!(f, "{}{name}={value}", if i == 0 { '?' } else { '&' })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_uri_parses_and_prints_back() {
        let s = "sips:alice;day=tue:se%20cret@Atlanta.example.com:5061;transport=tcp;lr?subject=project%20x&priority=urgent";
        let uri = SipUri::parse(s).unwrap();
        assert!(uri.secure);
        assert_eq!(uri.user.as_deref(), Some("alice;day=tue"));
        assert_eq!(uri.password.as_deref(), Some("se%20cret"));
        assert!(uri
            .host
            .matches(&Host::Domain("atlanta.example.com".into())));
        assert_eq!(uri.port, Some(5061));
        assert_eq!(uri.param("transport"), Some(Some("tcp")));
        assert_eq!(uri.param("LR"), Some(None));
        assert_eq!(uri.param("maddr"), None);
        assert_eq!(uri.headers.len(), 2);
        assert_eq!(uri.to_string(), s);
        assert_eq!(SipUri::parse(&uri.to_string()).unwrap(), uri);
    }

    #[test]
    fn addresses_parse_as_addresses() {
        let v4 = SipUri::parse("sip:192.0.2.1:5060").unwrap();
        assert_eq!(v4.host, Host::Ip("192.0.2.1".parse().unwrap()));
        let v6 = SipUri::parse("sip:bob@[2001:db8::10]:5070").unwrap();
        assert_eq!(v6.host, Host::Ip("2001:db8::10".parse().unwrap()));
        assert_eq!(v6.port, Some(5070));
        assert_eq!(v6.to_string(), "sip:bob@[2001:db8::10]:5070");
    }

    #[test]
    fn malformed_uris_name_what_is_wrong() {
        let cases = [
            ("bob@example.com", SipError::BadUri("no scheme")),
            (
                "tel:+1-555-0100",
                SipError::UnsupportedUriScheme("tel".into()),
            ),
            ("s p:x", SipError::BadUri("malformed scheme")),
            ("sip:a@b@c", SipError::BadUri("more than one @")),
            ("sip:@host", SipError::BadUri("malformed user")),
            ("sip:bo b@host", SipError::BadUri("malformed user")),
            ("sip:host:99999", SipError::BadUri("port out of range")),
            ("sip:host:", SipError::BadUri("malformed port")),
            ("sip:host:5x", SipError::BadUri("malformed port")),
            ("sip:[::1", SipError::BadUri("unterminated IPv6 reference")),
            ("sip:[::1]x", SipError::BadUri("junk after IPv6 reference")),
            ("sip:[zz::1]", SipError::BadUri("malformed IPv6 address")),
            ("sip:-bad-.example", SipError::BadUri("malformed host")),
            ("sip:", SipError::BadUri("malformed host")),
            ("sip:host;=x", SipError::BadUri("malformed parameter name")),
            ("sip:host;a=", SipError::BadUri("malformed parameter value")),
            (
                "sip:host;a%zz",
                SipError::BadUri("malformed parameter name"),
            ),
            ("sip:host?novalue", SipError::BadUri("URI header without =")),
        ];
        for (s, want) in cases {
            assert_eq!(SipUri::parse(s), Err(want), "{s}");
        }
        let long = format!("sip:{}@host", "a".repeat(SIP_MAX_URI_LEN));
        assert_eq!(
            SipUri::parse(&long),
            Err(SipError::BadUri("longer than the maximum"))
        );
        let many = format!("sip:host{}", ";p".repeat(SIP_MAX_PARAMS + 1));
        assert_eq!(
            SipUri::parse(&many),
            Err(SipError::TooManyParams {
                max: SIP_MAX_PARAMS
            })
        );
    }
}

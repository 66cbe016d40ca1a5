//! SIP digest authentication (RFC 3261 §22, RFC 7616 as RFC 8760 brings
//! it to SIP): SHA-256, and MD5 for old phones; `qop=auth` only.
//!
//! The node never keeps a password: a [`DigestSecret`] holds `H(A1)` =
//! `H(username ":" realm ":" password)` per algorithm, which is what the
//! node needs to check a response (and, like a password, lets whoever
//! holds it answer challenges for that realm: it is stored 0600 and
//! zeroized on drop).
//!
//! Nonces are stateless: the issue time and an HMAC-SHA-256 over it and
//! the realm under a key the node draws at start, so issuing one costs no
//! memory (a flood of unauthenticated REGISTERs fills nothing). A nonce is
//! good for [`SIP_NONCE_LIFETIME`]; later it is *stale* and the phone is
//! challenged again without a second password prompt. Replays are refused
//! by the nonce count: the node remembers, for the nonces that
//! authenticated something, the highest count seen, and takes only higher
//! ones. That memory is bounded ([`SIP_MAX_TRACKED_NONCES`]); forgetting
//! the oldest nonce makes every nonce as old as it stale, so a forgotten
//! nonce can never be replayed.

use crate::limits::{SIP_MAX_AUTH_PARAMS, SIP_MAX_TRACKED_NONCES, SIP_NONCE_LIFETIME};
use hmac::{Hmac, Mac};
use md5::Md5;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use subtle::ConstantTimeEq;
use thiserror::Error;
use zeroize::Zeroize;

/// A digest algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    /// `SHA-256` (RFC 8760): offered first.
    Sha256,
    /// `MD5`: for phones that know nothing else.
    Md5,
}

impl Algorithm {
    /// The name on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Md5 => "MD5",
        }
    }

    /// The algorithm a name on the wire (any case) names.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else {
            None
        }
    }

    /// `H(data)`, lowercase hex.
    fn hash_hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
        }
    }
}

/// Why a request's credentials were not accepted.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum AuthError {
    /// The Authorization value does not parse.
    #[error("malformed credentials: {0}")]
    Malformed(&'static str),
    /// Credentials for another realm.
    #[error("credentials for realm {0:?}, not this node's")]
    WrongRealm(String),
    /// An algorithm other than SHA-256 and MD5.
    #[error("unsupported digest algorithm {0:?}")]
    UnsupportedAlgorithm(String),
    /// A `qop` other than `auth` (or none: RFC 2069 digests have no
    /// replay protection).
    #[error("qop must be auth")]
    UnsupportedQop,
    /// A nonce this node did not issue.
    #[error("nonce not issued by this node")]
    UnknownNonce,
    /// A nonce too old, or forgotten: challenge again with `stale=true`.
    #[error("stale nonce")]
    Stale,
    /// A nonce count not above the last one seen with this nonce.
    #[error("nonce count replayed")]
    Replayed,
    /// The digest URI is not the Request-URI.
    #[error("digest uri is not the Request-URI")]
    UriMismatch,
    /// Another user than the secret's.
    #[error("credentials name another user")]
    WrongUser,
    /// The response does not match: a wrong password.
    #[error("wrong response (bad password)")]
    BadResponse,
}

/// What the node keeps of a user's password: `H(A1)` for each algorithm.
#[derive(Clone)]
pub struct DigestSecret {
    username: String,
    realm: String,
    ha1_sha256: String,
    ha1_md5: String,
}

impl DigestSecret {
    /// Derives the secret from a password (the password is not kept).
    pub fn from_password(username: &str, realm: &str, password: &[u8]) -> Self {
        let mut a1 = format!("{username}:{realm}:").into_bytes();
        a1.extend_from_slice(password);
        let secret = Self::from_ha1(
            username,
            realm,
            Algorithm::Sha256.hash_hex(&a1),
            Algorithm::Md5.hash_hex(&a1),
        );
        a1.zeroize();
        secret
    }

    /// The secret from stored `H(A1)` values (lowercase hex).
    pub fn from_ha1(username: &str, realm: &str, ha1_sha256: String, ha1_md5: String) -> Self {
        Self {
            username: username.to_owned(),
            realm: realm.to_owned(),
            ha1_sha256,
            ha1_md5,
        }
    }

    /// The user name the phone authenticates as.
    pub fn username(&self) -> &str {
        &self.username
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    /// `H(A1)` under `algorithm`, lowercase hex (to store).
    pub fn ha1(&self, algorithm: Algorithm) -> &str {
        match algorithm {
            Algorithm::Sha256 => &self.ha1_sha256,
            Algorithm::Md5 => &self.ha1_md5,
        }
    }
}

impl Drop for DigestSecret {
    fn drop(&mut self) {
        self.ha1_sha256.zeroize();
        self.ha1_md5.zeroize();
    }
}

impl std::fmt::Debug for DigestSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DigestSecret")
            .field("username", &self.username)
            .field("realm", &self.realm)
            .finish_non_exhaustive()
    }
}

/// The credentials of an `Authorization` (or `Proxy-Authorization`)
/// header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// `username`.
    pub username: String,
    /// `realm`.
    pub realm: String,
    /// `nonce`.
    pub nonce: String,
    /// `uri`: the Request-URI as the phone wrote it.
    pub uri: String,
    /// `response`: the digest, hex.
    pub response: String,
    /// `algorithm` (MD5 when absent, RFC 7616 §3.4).
    pub algorithm: String,
    /// `qop`, if present.
    pub qop: Option<String>,
    /// `nc`, if present.
    pub nc: Option<String>,
    /// `cnonce`, if present.
    pub cnonce: Option<String>,
}

/// Longest value of one auth parameter, in bytes.
const MAX_AUTH_PARAM_LEN: usize = 512;

/// Parses `Digest name=value, …` (values tokens or quoted strings).
fn auth_params(value: &str) -> Result<HashMap<String, String>, AuthError> {
    let value = value.trim();
    let rest = match value.split_once([' ', '\t']) {
        Some((scheme, rest)) if scheme.eq_ignore_ascii_case("Digest") => rest,
        _ => return Err(AuthError::Malformed("not a Digest scheme")),
    };
    let mut params = HashMap::new();
    let bytes = rest.as_bytes();
    let mut i = 0;
    loop {
        while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t')) {
            i += 1;
        }
        let name_start = i;
        while bytes
            .get(i)
            .is_some_and(|&b| super::header::is_token_char(b))
        {
            i += 1;
        }
        let name = rest
            .get(name_start..i)
            .unwrap_or_default()
            .to_ascii_lowercase();
        if name.is_empty() {
            return Err(AuthError::Malformed("parameter without a name"));
        }
        while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t')) {
            i += 1;
        }
        if bytes.get(i) != Some(&b'=') {
            return Err(AuthError::Malformed("parameter without ="));
        }
        i += 1;
        while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t')) {
            i += 1;
        }
        let mut v = String::new();
        if bytes.get(i) == Some(&b'"') {
            i += 1;
            loop {
                match bytes.get(i) {
                    None => return Err(AuthError::Malformed("unterminated quoted string")),
                    Some(b'"') => {
                        i += 1;
                        break;
                    }
                    Some(b'\\') => {
                        let c = rest.get(i + 1..).and_then(|s| s.chars().next());
                        let c = c.ok_or(AuthError::Malformed("unterminated quoted string"))?;
                        v.push(c);
                        i += 1 + c.len_utf8();
                    }
                    Some(_) => {
                        let c = rest.get(i..).and_then(|s| s.chars().next());
                        let c = c.ok_or(AuthError::Malformed("not UTF-8"))?;
                        v.push(c);
                        i += c.len_utf8();
                    }
                }
                if v.len() > MAX_AUTH_PARAM_LEN {
                    return Err(AuthError::Malformed("parameter value too long"));
                }
            }
        } else {
            let start = i;
            while bytes
                .get(i)
                .is_some_and(|&b| super::header::is_token_char(b))
            {
                i += 1;
            }
            v = rest.get(start..i).unwrap_or_default().to_owned();
            if v.is_empty() {
                return Err(AuthError::Malformed("parameter without a value"));
            }
        }
        if v.len() > MAX_AUTH_PARAM_LEN {
            return Err(AuthError::Malformed("parameter value too long"));
        }
        if params.insert(name, v).is_some() {
            return Err(AuthError::Malformed("parameter given twice"));
        }
        if params.len() > SIP_MAX_AUTH_PARAMS {
            return Err(AuthError::Malformed("too many parameters"));
        }
        while bytes.get(i).is_some_and(|b| matches!(b, b' ' | b'\t')) {
            i += 1;
        }
        match bytes.get(i) {
            None => break,
            Some(b',') => i += 1,
            Some(_) => return Err(AuthError::Malformed("parameters not separated by commas")),
        }
    }
    Ok(params)
}

impl Credentials {
    /// Parses an `Authorization` value.
    pub fn parse(value: &str) -> Result<Self, AuthError> {
        let mut p = auth_params(value)?;
        let mut take = |name: &'static str| p.remove(name);
        let mut need = |name: &'static str, missing: &'static str| {
            take(name).ok_or(AuthError::Malformed(missing))
        };
        let username = need("username", "no username")?;
        let realm = need("realm", "no realm")?;
        let nonce = need("nonce", "no nonce")?;
        let uri = need("uri", "no uri")?;
        let response = need("response", "no response")?;
        let algorithm = take("algorithm").unwrap_or_else(|| "MD5".to_owned());
        Ok(Credentials {
            username,
            realm,
            nonce,
            uri,
            response,
            algorithm,
            qop: take("qop"),
            nc: take("nc"),
            cnonce: take("cnonce"),
        })
    }
}

/// Issues challenges and checks credentials for one realm (see the module
/// docs).
pub struct Authenticator {
    realm: String,
    key: [u8; 32],
    /// Highest nonce count seen per nonce, by nonce.
    counts: HashMap<String, (u64, u32)>,
    /// The nonces in `counts` by issue time, oldest first.
    by_age: BTreeMap<(u64, String), ()>,
    /// Nonces issued at or before this time that are not in `counts` were
    /// forgotten: stale.
    forgotten_up_to: Option<u64>,
    /// The serial number of the last nonce issued.
    serial: u64,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator")
            .field("realm", &self.realm)
            .field("tracked_nonces", &self.counts.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Authenticator {
    fn drop(&mut self) {
        self.key.zeroize();
    }
}

type HmacSha256 = Hmac<Sha256>;

impl Authenticator {
    /// An authenticator for `realm` whose nonces are keyed with `key`
    /// (random, drawn at start: nonces do not outlive the process).
    pub fn new(realm: &str, key: [u8; 32]) -> Self {
        Self {
            realm: realm.to_owned(),
            key,
            counts: HashMap::new(),
            by_age: BTreeMap::new(),
            forgotten_up_to: None,
            serial: 0,
        }
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.realm
    }

    fn mac(&self, issued_ms: u64, serial: u64) -> [u8; 16] {
        let mut out = [0u8; 16];
        // A key of any length is accepted by HMAC: this cannot fail.
        if let Ok(mut mac) = HmacSha256::new_from_slice(&self.key) {
            mac.update(&issued_ms.to_be_bytes());
            mac.update(&serial.to_be_bytes());
            mac.update(self.realm.as_bytes());
            let tag = mac.finalize().into_bytes();
            out.copy_from_slice(tag.get(..16).unwrap_or(&[0u8; 16]));
        }
        out
    }

    /// A fresh nonce issued at `now_ms`: the time, a serial number (so
    /// that two phones challenged in the same millisecond get distinct
    /// nonces, each with its own count) and a MAC over both.
    pub fn nonce(&mut self, now_ms: u64) -> String {
        self.serial = self.serial.wrapping_add(1);
        let mut raw = now_ms.to_be_bytes().to_vec();
        raw.extend_from_slice(&self.serial.to_be_bytes());
        raw.extend_from_slice(&self.mac(now_ms, self.serial));
        hex::encode(raw)
    }

    /// A `WWW-Authenticate` value: a challenge with a fresh nonce.
    /// `stale` tells the phone its password was right but the nonce old.
    pub fn challenge(&mut self, now_ms: u64, algorithm: Algorithm, stale: bool) -> String {
        let nonce = self.nonce(now_ms);
        challenge(&self.realm, &nonce, algorithm, stale)
    }

    /// When a nonce of this node was issued; `None` if it is not one.
    fn issued(&self, nonce: &str) -> Option<u64> {
        let raw = hex::decode(nonce).ok()?;
        if raw.len() != 32 {
            return None;
        }
        let (time, rest) = raw.split_at(8);
        let (serial, tag) = rest.split_at(8);
        let issued = u64::from_be_bytes(time.try_into().ok()?);
        let serial = u64::from_be_bytes(serial.try_into().ok()?);
        bool::from(self.mac(issued, serial).ct_eq(tag)).then_some(issued)
    }

    /// Checks `creds` of a `method` request to `request_uri` against the
    /// user's `secret` at `now_ms`. On success the nonce count is
    /// remembered, so the same credentials are refused a second time.
    pub fn verify(
        &mut self,
        now_ms: u64,
        method: &str,
        request_uri: &str,
        creds: &Credentials,
        secret: &DigestSecret,
    ) -> Result<(), AuthError> {
        if creds.realm != self.realm || secret.realm() != self.realm {
            return Err(AuthError::WrongRealm(
                creds.realm.chars().take(64).collect(),
            ));
        }
        if creds.username != secret.username() {
            return Err(AuthError::WrongUser);
        }
        let algorithm = Algorithm::parse(&creds.algorithm).ok_or_else(|| {
            AuthError::UnsupportedAlgorithm(creds.algorithm.chars().take(32).collect())
        })?;
        if creds.qop.as_deref() != Some("auth") {
            return Err(AuthError::UnsupportedQop);
        }
        let (Some(nc), Some(cnonce)) = (&creds.nc, &creds.cnonce) else {
            return Err(AuthError::Malformed("qop=auth without nc and cnonce"));
        };
        let count = (nc.len() == 8)
            .then(|| u32::from_str_radix(nc, 16).ok())
            .flatten()
            .ok_or(AuthError::Malformed("nc is not 8 hex digits"))?;
        if !uri_matches(&creds.uri, request_uri) {
            return Err(AuthError::UriMismatch);
        }
        let issued = self.issued(&creds.nonce).ok_or(AuthError::UnknownNonce)?;
        let expected = response(
            algorithm,
            secret.ha1(algorithm),
            &creds.nonce,
            nc,
            cnonce,
            method,
            &creds.uri,
        );
        let given = creds.response.to_ascii_lowercase();
        if !bool::from(expected.as_bytes().ct_eq(given.as_bytes())) {
            return Err(AuthError::BadResponse);
        }
        // The password was right: from here on the phone gets `stale`.
        let age = now_ms.saturating_sub(issued);
        if age > SIP_NONCE_LIFETIME.as_millis() as u64 || issued > now_ms.saturating_add(1000) {
            return Err(AuthError::Stale);
        }
        match self.counts.get_mut(&creds.nonce) {
            Some((_, last)) if count <= *last => return Err(AuthError::Replayed),
            Some((_, last)) => *last = count,
            None => {
                if self.forgotten_up_to.is_some_and(|t| issued <= t) {
                    return Err(AuthError::Stale);
                }
                self.track(issued, creds.nonce.clone(), count);
            }
        }
        Ok(())
    }

    fn track(&mut self, issued: u64, nonce: String, count: u32) {
        while self.counts.len() >= SIP_MAX_TRACKED_NONCES {
            let Some(((t, oldest), ())) = self.by_age.pop_first() else {
                break;
            };
            self.counts.remove(&oldest);
            self.forgotten_up_to = Some(self.forgotten_up_to.map_or(t, |f| f.max(t)));
        }
        self.by_age.insert((issued, nonce.clone()), ());
        self.counts.insert(nonce, (issued, count));
    }

    /// Forgets nonces past their lifetime (their use would be stale
    /// anyway); call now and then.
    pub fn expire(&mut self, now_ms: u64) {
        let lifetime = SIP_NONCE_LIFETIME.as_millis() as u64;
        while let Some(((t, _), ())) = self.by_age.first_key_value() {
            if now_ms.saturating_sub(*t) <= lifetime {
                break;
            }
            if let Some(((_, nonce), ())) = self.by_age.pop_first() {
                self.counts.remove(&nonce);
            }
        }
    }

    /// How many nonces are remembered.
    pub fn tracked(&self) -> usize {
        self.counts.len()
    }
}

/// A `WWW-Authenticate` value for `realm` with `nonce`.
pub fn challenge(realm: &str, nonce: &str, algorithm: Algorithm, stale: bool) -> String {
    format!(
        "Digest realm=\"{realm}\", nonce=\"{nonce}\", algorithm={}, qop=\"auth\"{}",
        algorithm.as_str(),
        if stale { ", stale=true" } else { "" }
    )
}

/// The `response` of `qop=auth` (RFC 7616 §3.4.1): `H(H(A1) ":" nonce
/// ":" nc ":" cnonce ":auth:" H(method ":" uri))`, lowercase hex.
pub fn response(
    algorithm: Algorithm,
    ha1: &str,
    nonce: &str,
    nc: &str,
    cnonce: &str,
    method: &str,
    uri: &str,
) -> String {
    let ha2 = algorithm.hash_hex(format!("{method}:{uri}").as_bytes());
    algorithm.hash_hex(format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}").as_bytes())
}

/// Whether the digest URI names the Request-URI: equal as text, or as
/// parsed SIP URIs.
fn uri_matches(digest_uri: &str, request_uri: &str) -> bool {
    digest_uri == request_uri
        || matches!(
            (
                super::uri::SipUri::parse(digest_uri),
                super::uri::SipUri::parse(request_uri)
            ),
            (Ok(a), Ok(b)) if a == b
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_match_rfc_7616() {
        // RFC 7616 §3.9.1 (HTTP, but the same computation).
        let secret =
            DigestSecret::from_password("Mufasa", "http-auth@example.org", b"Circle of Life");
        let r = |a| {
            response(
                a,
                secret.ha1(a),
                "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
                "00000001",
                "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ",
                "GET",
                "/dir/index.html",
            )
        };
        assert_eq!(r(Algorithm::Md5), "8ca523f5e9506fed4657c9700eebdbec");
        assert_eq!(
            r(Algorithm::Sha256),
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    const REALM: &str = "lab.example";
    const URI: &str = "sip:lab.example";

    /// What a phone sends: credentials answering `nonce` with `password`.
    fn answer(nonce: &str, nc: u32, password: &[u8], algorithm: Algorithm) -> Credentials {
        let s = DigestSecret::from_password("alice", REALM, password);
        let nc = format!("{nc:08x}");
        let value = format!(
            "Digest username=\"alice\", realm=\"{REALM}\", nonce=\"{nonce}\", uri=\"{URI}\", \
             response=\"{}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"c0ffee\"",
            response(
                algorithm,
                s.ha1(algorithm),
                nonce,
                &nc,
                "c0ffee",
                "REGISTER",
                URI
            ),
            algorithm.as_str()
        );
        Credentials::parse(&value).unwrap()
    }

    #[test]
    fn phones_challenged_in_the_same_millisecond_get_their_own_nonces() {
        let secret = DigestSecret::from_password("alice", REALM, b"s3cret");
        let mut auth = Authenticator::new(REALM, [7; 32]);
        let (a, b) = (auth.nonce(1_000), auth.nonce(1_000));
        assert_ne!(a, b);
        for nonce in [a, b] {
            let creds = answer(&nonce, 1, b"s3cret", Algorithm::Sha256);
            assert_eq!(auth.verify(1_000, "REGISTER", URI, &creds, &secret), Ok(()));
        }
    }

    #[test]
    fn a_right_password_passes_once_and_a_replay_or_wrong_password_does_not() {
        let secret = DigestSecret::from_password("alice", REALM, b"s3cret");
        let mut auth = Authenticator::new(REALM, [7; 32]);
        let nonce = auth.nonce(1_000);
        for algorithm in [Algorithm::Sha256, Algorithm::Md5] {
            let n = if algorithm == Algorithm::Sha256 { 1 } else { 2 };
            let creds = answer(&nonce, n, b"s3cret", algorithm);
            assert_eq!(auth.verify(2_000, "REGISTER", URI, &creds, &secret), Ok(()));
            // The same credentials again: a replay.
            assert_eq!(
                auth.verify(2_001, "REGISTER", URI, &creds, &secret),
                Err(AuthError::Replayed)
            );
        }
        let wrong = answer(&nonce, 3, b"guess", Algorithm::Sha256);
        assert_eq!(
            auth.verify(2_002, "REGISTER", URI, &wrong, &secret),
            Err(AuthError::BadResponse)
        );
        // Another method than the one answered.
        let creds = answer(&nonce, 4, b"s3cret", Algorithm::Sha256);
        assert_eq!(
            auth.verify(2_003, "INVITE", URI, &creds, &secret),
            Err(AuthError::BadResponse)
        );
        assert_eq!(
            auth.verify(2_003, "REGISTER", "sip:other.example", &creds, &secret),
            Err(AuthError::UriMismatch)
        );
    }

    #[test]
    fn nonces_are_this_nodes_and_go_stale() {
        let secret = DigestSecret::from_password("alice", REALM, b"s3cret");
        let mut auth = Authenticator::new(REALM, [7; 32]);
        let mut other = Authenticator::new(REALM, [8; 32]);
        let foreign = answer(&other.nonce(1_000), 1, b"s3cret", Algorithm::Sha256);
        assert_eq!(
            auth.verify(1_000, "REGISTER", URI, &foreign, &secret),
            Err(AuthError::UnknownNonce)
        );
        let nonce = auth.nonce(1_000);
        let late = 1_000 + SIP_NONCE_LIFETIME.as_millis() as u64 + 1;
        let creds = answer(&nonce, 1, b"s3cret", Algorithm::Sha256);
        assert_eq!(
            auth.verify(late, "REGISTER", URI, &creds, &secret),
            Err(AuthError::Stale)
        );
        // A wrong password is told as such even with an old nonce.
        let wrong = answer(&nonce, 1, b"guess", Algorithm::Sha256);
        assert_eq!(
            auth.verify(late, "REGISTER", URI, &wrong, &secret),
            Err(AuthError::BadResponse)
        );
        assert!(auth
            .challenge(late, Algorithm::Sha256, true)
            .ends_with("stale=true"));
    }

    #[test]
    fn the_nonce_memory_is_bounded_and_forgetting_never_allows_a_replay() {
        let secret = DigestSecret::from_password("alice", REALM, b"s3cret");
        let mut auth = Authenticator::new(REALM, [7; 32]);
        let first = answer(&auth.nonce(1), 1, b"s3cret", Algorithm::Md5);
        assert_eq!(auth.verify(10, "REGISTER", URI, &first, &secret), Ok(()));
        for t in 2..(SIP_MAX_TRACKED_NONCES as u64 + 2) {
            let c = answer(&auth.nonce(t), 1, b"s3cret", Algorithm::Md5);
            assert_eq!(auth.verify(t + 10, "REGISTER", URI, &c, &secret), Ok(()));
        }
        assert_eq!(auth.tracked(), SIP_MAX_TRACKED_NONCES);
        // The first nonce was forgotten: its replay is stale, not accepted.
        assert_eq!(
            auth.verify(20_000, "REGISTER", URI, &first, &secret),
            Err(AuthError::Stale)
        );
        auth.expire(
            10 + SIP_NONCE_LIFETIME.as_millis() as u64 + SIP_MAX_TRACKED_NONCES as u64 + 10,
        );
        assert_eq!(auth.tracked(), 0);
    }

    #[test]
    fn credentials_parse_strictly() {
        let ok = Credentials::parse(
            "Digest username=\"bob\",realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"ab\", qop=auth, nc=00000001, cnonce=\"c\\\"q\"",
        )
        .unwrap();
        assert_eq!(ok.cnonce.as_deref(), Some("c\"q"));
        assert_eq!(ok.algorithm, "MD5", "the default algorithm");
        for (bad, why) in [
            ("Basic dXNlcg==", "not a Digest scheme"),
            ("Digest username=\"a\"", "no realm"),
            (
                "Digest username=\"a\", username=\"b\"",
                "parameter given twice",
            ),
            ("Digest username=\"a", "unterminated quoted string"),
            ("Digest username", "parameter without ="),
            (
                "Digest username=\"a\" realm=\"b\"",
                "parameters not separated by commas",
            ),
            ("Digest =x", "parameter without a name"),
        ] {
            assert_eq!(
                Credentials::parse(bad),
                Err(AuthError::Malformed(why)),
                "{bad}"
            );
        }
        let long = format!("Digest username=\"{}\"", "a".repeat(600));
        assert_eq!(
            Credentials::parse(&long),
            Err(AuthError::Malformed("parameter value too long"))
        );
        let many: String = (0..40).map(|i| format!("p{i}=x, ")).collect();
        assert_eq!(
            Credentials::parse(&format!("Digest {many}username=u")),
            Err(AuthError::Malformed("too many parameters"))
        );
    }
}

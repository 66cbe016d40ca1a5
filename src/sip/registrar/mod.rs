//! The registrar (RFC 3261 §10.3), sans-IO: a phone's REGISTER for an
//! AOR the node serves, authenticated by digest, becomes a binding the
//! node keeps locally and a change of the AOR's registration in the
//! overlay, which the driver publishes.
//!
//! The registrar decides everything about a REGISTER: whether its
//! Request-URI names this registrar, whether the node serves its AOR,
//! whether the source may try (a token bucket of REGISTERs per source
//! address; of authentication failures one per source address and auth
//! user, so that a misconfigured phone locks out only its own account
//! from its address, and a larger one per source address,
//! [`crate::overlay::rate`]),
//! whether the credentials are good, which bindings result and what the
//! overlay must learn ([`DeviceChange`]). It reads no clock (the time is
//! an argument, unix milliseconds) and draws no randomness (tags and
//! nonces come from a key given at construction).
//!
//! The phones' own contacts never leave the node: the overlay learns
//! only that the AOR is reached through this node (its entry has no
//! contacts); calls for the AOR come to the node, which forks them to
//! the phones bound here.

use super::digest::{Algorithm, AuthError, Credentials, DigestSecret};
use super::header::HeaderName;
use super::message::{Request, Response};
use super::transaction::Transport;
use super::typed::NameAddr;
use super::uri::{Host, SipUri};
use crate::limits::{
    SIP_ANNOUNCE_MIN_LIFE, SIP_AUTH_FAILURE_BURST, SIP_AUTH_FAILURE_BURST_PER_SOURCE,
    SIP_AUTH_FAILURE_REFILL, SIP_DEFAULT_EXPIRES, SIP_MAX_ACCOUNTS, SIP_MAX_BINDINGS_PER_AOR,
    SIP_MAX_EXPIRES, SIP_MAX_RATE_LIMITED_SOURCES, SIP_MIN_EXPIRES, SIP_REGISTER_BURST,
    SIP_REGISTER_REFILL,
};
use crate::netaddr::IpPrefix;
use crate::overlay::rate::{KeyedBuckets, RateLimit};
use crate::overlay::record::DeviceChange;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;
use tracing::info;

/// An auth user as a failure bucket's key: a keyed hash (fixed size and
/// `Copy`; the names are the node's own accounts or what a stranger
/// wrote).
type AuthUserKey = [u8; 16];

/// A user the node serves: the AOR and the digest secret of its phones.
#[derive(Debug, Clone)]
pub struct Account {
    /// The address-of-record, normalised ([`aor_of`]).
    pub aor: String,
    /// The digest secret (its username is the account's auth user).
    pub secret: DigestSecret,
    /// The algorithms its phones may answer with, in the order the
    /// challenge offers them (not empty; SHA-256 then MD5 by default, MD5
    /// first for phones that read only the first challenge).
    pub algorithms: Vec<Algorithm>,
}

/// The digest algorithms an account allows by default: SHA-256, then
/// MD5 for old phones (RFC 8760 §2.4: the first a phone supports wins).
pub const DEFAULT_ALGORITHMS: [Algorithm; 2] = [Algorithm::Sha256, Algorithm::Md5];

/// One phone bound to an AOR at this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhoneBinding {
    /// The phone's Contact URI, as it wrote it.
    pub uri: String,
    /// When the binding lapses, unix milliseconds.
    pub expires_ms: u64,
    /// The Call-ID of the REGISTERs that maintain it.
    pub call_id: String,
    /// The CSeq of the last of them.
    pub cseq: u32,
    /// Where the REGISTER came from (the phone's address as seen).
    pub source: SocketAddr,
    /// Over which transport.
    pub transport: Transport,
}

/// What the registrar made of a REGISTER.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Registered {
    /// Answer with this; nothing else changed.
    Answer(Response),
    /// The AOR's bindings changed: publish `change` for `aor` in the
    /// overlay, then answer with `response` (the driver may answer 503
    /// instead if no node of the overlay stored it).
    Changed {
        /// The 200 OK listing the bindings.
        response: Response,
        /// The AOR whose registration changed.
        aor: String,
        /// What the overlay must learn.
        change: DeviceChange,
    },
}

/// Who challenges: the registrar (401, `WWW-Authenticate`,
/// `Authorization`) or the proxy (407, `Proxy-Authenticate`,
/// `Proxy-Authorization`), RFC 3261 §22.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Challenger {
    Registrar,
    Proxy,
}

impl Challenger {
    fn code(self) -> u16 {
        match self {
            Challenger::Registrar => 401,
            Challenger::Proxy => 407,
        }
    }

    fn challenge_header(self) -> HeaderName {
        match self {
            Challenger::Registrar => HeaderName::WwwAuthenticate,
            Challenger::Proxy => HeaderName::ProxyAuthenticate,
        }
    }

    fn credentials_header(self) -> HeaderName {
        match self {
            Challenger::Registrar => HeaderName::Authorization,
            Challenger::Proxy => HeaderName::ProxyAuthorization,
        }
    }
}

/// Counters for operators and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RegistrarStats {
    /// REGISTERs accepted (bindings changed or listed).
    pub accepted: u64,
    /// Credentials refused, of REGISTERs and of calls (wrong password,
    /// replayed or unknown nonce, unknown user).
    pub auth_failures: u64,
    /// REGISTERs and calls refused because their source failed too often.
    pub locked_out: u64,
    /// Requests of phones (calls) whose Proxy-Authorization was good.
    pub calls_authorized: u64,
    /// REGISTERs dropped by the per-source rate limit.
    pub rate_limited: u64,
}

/// The registrar of one node (see the module docs).
pub struct Registrar {
    domain: String,
    local_ip: Option<IpAddr>,
    auth: super::digest::Authenticator,
    tag_key: [u8; 32],
    /// Accounts by auth user.
    accounts: HashMap<String, Account>,
    /// Auth users by AOR.
    by_aor: HashMap<String, String>,
    /// Phones bound, by AOR.
    bindings: HashMap<String, Vec<PhoneBinding>>,
    /// Until when (unix ms) the overlay holds this node's entry for an
    /// AOR, by the publication last asked for (forgotten if it failed).
    announced: HashMap<String, u64>,
    registers: KeyedBuckets<IpPrefix>,
    /// Failed authentications per (source, auth user): one phone with a
    /// wrong password locks out its own account from its address, not
    /// its neighbours behind the same NAT.
    failures: KeyedBuckets<(IpPrefix, AuthUserKey)>,
    /// Failed authentications per source, of every account together: a
    /// source guessing many accounts' passwords is stopped too.
    source_failures: KeyedBuckets<IpPrefix>,
    stats: RegistrarStats,
}

impl std::fmt::Debug for Registrar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registrar")
            .field("domain", &self.domain)
            .field("accounts", &self.accounts.len())
            .field("bound_aors", &self.bindings.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

impl Drop for Registrar {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.tag_key);
    }
}

/// The normalised AOR of a URI: `sip:user@host`, the host lowercase, no
/// port, parameters or headers (the form accounts and overlay keys use).
/// `None` for a URI without a user part.
pub fn aor_of(uri: &SipUri) -> Option<String> {
    let user = uri.user.as_deref()?;
    let scheme = if uri.secure { "sips" } else { "sip" };
    Some(format!(
        "{scheme}:{user}@{}",
        uri.host.to_string().to_ascii_lowercase()
    ))
}

fn domain_key(secret: &[u8; 32], label: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(b"p2psip-registrar-v1 ");
    h.update(label);
    h.update(secret);
    h.finalize().into()
}

fn ms(now_ms: u64) -> Duration {
    Duration::from_millis(now_ms)
}

impl Registrar {
    /// The key of `auth_user`'s failure bucket.
    fn auth_user_key(&self, auth_user: &str) -> AuthUserKey {
        let mut h = Sha256::new();
        h.update(self.tag_key);
        h.update(b"auth-user ");
        h.update(auth_user.as_bytes());
        let mut key = [0u8; 16];
        key.copy_from_slice(h.finalize().get(..16).unwrap_or(&[0; 16]));
        key
    }

    /// A registrar for the overlay `domain` (the digest realm too), its
    /// nonces and tags keyed from `secret` (random, drawn at start).
    pub fn new(domain: &str, secret: [u8; 32]) -> Self {
        let register_limit = RateLimit {
            burst: SIP_REGISTER_BURST,
            refill_every: SIP_REGISTER_REFILL,
            max_refused_in_a_row: u32::MAX,
        };
        let failure_limit = RateLimit {
            burst: SIP_AUTH_FAILURE_BURST,
            refill_every: SIP_AUTH_FAILURE_REFILL,
            max_refused_in_a_row: u32::MAX,
        };
        let source_failure_limit = RateLimit {
            burst: SIP_AUTH_FAILURE_BURST_PER_SOURCE,
            ..failure_limit
        };
        Self {
            domain: domain.to_ascii_lowercase(),
            local_ip: None,
            auth: super::digest::Authenticator::new(domain, domain_key(&secret, b"nonce")),
            tag_key: domain_key(&secret, b"tag"),
            accounts: HashMap::new(),
            by_aor: HashMap::new(),
            bindings: HashMap::new(),
            announced: HashMap::new(),
            registers: KeyedBuckets::new(register_limit, SIP_MAX_RATE_LIMITED_SOURCES),
            failures: KeyedBuckets::new(failure_limit, SIP_MAX_RATE_LIMITED_SOURCES),
            source_failures: KeyedBuckets::new(source_failure_limit, SIP_MAX_RATE_LIMITED_SOURCES),
            stats: RegistrarStats::default(),
        }
    }

    /// The address the listener is bound to: a Request-URI naming its IP
    /// names this registrar (any IP does when it is unspecified).
    pub fn set_local_ip(&mut self, ip: IpAddr) {
        self.local_ip = Some(ip);
    }

    /// Replaces the accounts (at most [`SIP_MAX_ACCOUNTS`]; the rest are
    /// ignored). The bindings of AORs no longer served are dropped, and
    /// returned so that the driver unbinds them in the overlay.
    pub fn set_accounts(&mut self, accounts: Vec<Account>) -> Vec<(String, DeviceChange)> {
        self.accounts.clear();
        self.by_aor.clear();
        for account in accounts.into_iter().take(SIP_MAX_ACCOUNTS) {
            self.by_aor
                .insert(account.aor.clone(), account.secret.username().to_owned());
            self.accounts
                .insert(account.secret.username().to_owned(), account);
        }
        let gone: Vec<String> = self
            .bindings
            .keys()
            .filter(|aor| !self.by_aor.contains_key(*aor))
            .cloned()
            .collect();
        gone.into_iter()
            .filter_map(|aor| self.bindings.remove(&aor).map(|_| aor))
            .map(|aor| (aor, DeviceChange::Unbind))
            .collect()
    }

    /// The accounts, by auth user.
    pub fn accounts(&self) -> impl Iterator<Item = &Account> {
        self.accounts.values()
    }

    /// Whether `aor` (normalised) is an account of this node.
    pub fn serves(&self, aor: &str) -> bool {
        self.accounts.values().any(|a| a.aor == aor)
    }

    /// The phones bound to `aor` (normalised).
    pub fn bindings(&self, aor: &str) -> &[PhoneBinding] {
        self.bindings.get(aor).map_or(&[], Vec::as_slice)
    }

    /// The counters.
    pub fn stats(&self) -> RegistrarStats {
        self.stats
    }

    /// Whether `uri` names this registrar: the overlay's domain, or the
    /// listener's address.
    fn names_this_registrar(&self, uri: &SipUri) -> bool {
        match &uri.host {
            Host::Domain(name) => name.eq_ignore_ascii_case(&self.domain),
            Host::Ip(ip) => self.is_local(*ip),
        }
    }

    fn is_local(&self, ip: IpAddr) -> bool {
        match self.local_ip {
            Some(local) if local.is_unspecified() => true,
            Some(local) => local == ip,
            None => false,
        }
    }

    /// A tag for the To of a response to `request`: unique per request,
    /// unguessable without the key.
    fn tag(&self, request: &Request) -> String {
        let mut tag = [0u8; 8];
        if let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&self.tag_key) {
            mac.update(
                request
                    .headers
                    .get(&HeaderName::CallId)
                    .unwrap_or("")
                    .as_bytes(),
            );
            mac.update(
                request
                    .headers
                    .get(&HeaderName::CSeq)
                    .unwrap_or("")
                    .as_bytes(),
            );
            mac.update(
                request
                    .headers
                    .get(&HeaderName::From)
                    .unwrap_or("")
                    .as_bytes(),
            );
            let out = mac.finalize().into_bytes();
            if let Some(head) = out.get(..8) {
                tag.copy_from_slice(head);
            }
        }
        hex::encode(tag)
    }

    fn reply(&self, request: &Request, code: u16) -> Response {
        request.reply(code, Some(&self.tag(request)))
    }

    fn refusal(&self, request: &Request, code: u16, warning: &str) -> Response {
        let mut response = self.reply(request, code);
        response.headers.push(
            HeaderName::Warning,
            format!("399 {} \"{warning}\"", self.domain),
        );
        response
    }

    fn refuse(&self, request: &Request, code: u16, warning: &str) -> Registered {
        Registered::Answer(self.refusal(request, code, warning))
    }

    /// A challenge (401 for a REGISTER, 407 for what a phone sends
    /// through the proxy) carrying one per algorithm the account of
    /// `auth_user` allows, in its order (RFC 8760 §2.4: the phone uses the
    /// first it supports).
    fn challenge(
        &mut self,
        request: &Request,
        now_ms: u64,
        auth_user: &str,
        stale: bool,
        by: Challenger,
    ) -> Response {
        let mut response = self.reply(request, by.code());
        // One nonce for all: the phone answers one of them.
        let nonce = self.auth.nonce(now_ms);
        let algorithms = self
            .accounts
            .get(auth_user)
            .map_or(DEFAULT_ALGORITHMS.to_vec(), |a| a.algorithms.clone());
        for algorithm in algorithms {
            response.headers.push(
                by.challenge_header(),
                super::digest::challenge(self.auth.realm(), &nonce, algorithm, stale),
            );
        }
        response
    }

    /// Counts an authentication failure of `source` and challenges again.
    fn failed(
        &mut self,
        request: &Request,
        now_ms: u64,
        source: IpAddr,
        auth_user: &str,
        by: Challenger,
    ) -> Response {
        self.stats.auth_failures += 1;
        info!(%source, auth_user, method = %request.method, "SIP authentication failed");
        // The buckets may run dry here: the next attempt is refused.
        let key = (IpPrefix::host(source), self.auth_user_key(auth_user));
        let _ = self.failures.try_take(key, ms(now_ms));
        let _ = self
            .source_failures
            .try_take(IpPrefix::host(source), ms(now_ms));
        self.challenge(request, now_ms, auth_user, false, by)
    }

    /// Checks the digest credentials of `request` from `source` for the
    /// account of `auth_user`: `Ok` if they are good and fresh, else the
    /// answer (a challenge, or 403 for a source locked out or another
    /// account's credentials). Failures of every kind of request count
    /// against the same per-source budget.
    fn authenticate(
        &mut self,
        now_ms: u64,
        source: IpAddr,
        request: &Request,
        auth_user: &str,
        by: Challenger,
    ) -> Result<(), Response> {
        self.auth.expire(now_ms);
        let key = (IpPrefix::host(source), self.auth_user_key(auth_user));
        let locked = self.failures.check(&key, ms(now_ms)).is_err()
            || self
                .source_failures
                .check(&IpPrefix::host(source), ms(now_ms))
                .is_err();
        if locked {
            self.stats.locked_out += 1;
            info!(%source, auth_user, "SIP request refused: locked out after failed authentications");
            return Err(self.refusal(request, 403, "too many failed authentications; try later"));
        }
        let Some(header) = request.headers.get(&by.credentials_header()) else {
            return Err(self.challenge(request, now_ms, auth_user, false, by));
        };
        let Ok(creds) = Credentials::parse(header) else {
            return Err(self.failed(request, now_ms, source, auth_user, by));
        };
        if creds.username != auth_user {
            // Another account's credentials, or none the node knows.
            return Err(match self.accounts.contains_key(&creds.username) {
                true => self.refusal(request, 403, "these credentials do not own that AOR"),
                false => self.failed(request, now_ms, source, auth_user, by),
            });
        }
        let Some(account) = self.accounts.get(auth_user) else {
            return Err(self.failed(request, now_ms, source, auth_user, by));
        };
        let allowed =
            Algorithm::parse(&creds.algorithm).is_some_and(|alg| account.algorithms.contains(&alg));
        if !allowed {
            return Err(self.failed(request, now_ms, source, auth_user, by));
        }
        let secret = account.secret.clone();
        match self.auth.verify(
            now_ms,
            request.method.as_str(),
            &request.uri.to_string(),
            &creds,
            &secret,
        ) {
            Ok(()) => Ok(()),
            Err(AuthError::Stale) => Err(self.challenge(request, now_ms, auth_user, true, by)),
            Err(_) => Err(self.failed(request, now_ms, source, auth_user, by)),
        }
    }

    /// Authenticates a request that a phone at `source` sends through
    /// this node outside a dialog (an INVITE, a MESSAGE, ...) as `aor`,
    /// the AOR its From names (RFC 3261 §22.3, proxy authentication).
    /// `Ok` if this node serves `aor` and the request's
    /// Proxy-Authorization proves that account's secret; otherwise the
    /// answer to send: 403 (not an AOR served here, or locked out) or a
    /// 407 challenge. A wrong answer counts as a failure like a
    /// REGISTER's.
    pub fn authorize(
        &mut self,
        now_ms: u64,
        source: IpAddr,
        request: &Request,
        aor: &str,
    ) -> Result<(), Response> {
        let Some(auth_user) = self.by_aor.get(aor).cloned() else {
            return Err(self.refusal(
                request,
                403,
                "this node does not serve the address-of-record in From",
            ));
        };
        let result = self.authenticate(now_ms, source, request, &auth_user, Challenger::Proxy);
        if result.is_ok() {
            self.stats.calls_authorized += 1;
        }
        result
    }

    /// Whether a REGISTER from `source` may be handled at `now_ms` (the
    /// per-source rate limit; a retransmission counts too). The driver
    /// asks before the request opens a transaction, and drops it
    /// unanswered when refused: answering a flood would only amplify it.
    pub fn admit_register(&mut self, now_ms: u64, source: IpAddr) -> bool {
        let admitted = self
            .registers
            .try_take(IpPrefix::host(source), ms(now_ms))
            .is_ok();
        if !admitted {
            self.stats.rate_limited += 1;
        }
        admitted
    }

    /// Handles a REGISTER from `source` over `transport` at `now_ms`
    /// (admitted by [`Registrar::admit_register`]).
    pub fn register(
        &mut self,
        now_ms: u64,
        source: SocketAddr,
        transport: Transport,
        request: &Request,
    ) -> Registered {
        if !self.names_this_registrar(&request.uri) {
            return self.refuse(
                request,
                403,
                "this node is the registrar of its overlay only",
            );
        }
        let Some(aor) = request.headers.get(&HeaderName::To).and_then(|to| {
            NameAddr::parse("To", to)
                .ok()
                .and_then(|to| aor_of(&to.uri))
        }) else {
            return self.refuse(request, 400, "the To names no address-of-record");
        };
        let Some(auth_user) = self.by_aor.get(&aor).cloned() else {
            return self.refuse(
                request,
                403,
                "this node does not serve that address-of-record",
            );
        };
        if let Err(answer) = self.authenticate(
            now_ms,
            source.ip(),
            request,
            &auth_user,
            Challenger::Registrar,
        ) {
            return Registered::Answer(answer);
        }
        self.update(now_ms, source, transport, request, aor)
    }

    /// Applies an authenticated REGISTER's contacts (§10.3 steps 6–8).
    fn update(
        &mut self,
        now_ms: u64,
        source: SocketAddr,
        transport: Transport,
        request: &Request,
        aor: String,
    ) -> Registered {
        let call_id = request
            .headers
            .get(&HeaderName::CallId)
            .unwrap_or("")
            .to_owned();
        let cseq = match request
            .headers
            .get(&HeaderName::CSeq)
            .map(super::CSeq::parse)
        {
            Some(Ok(c)) => c.seq,
            _ => return self.refuse(request, 400, "bad CSeq"),
        };
        let default_expires = match request.headers.get(&HeaderName::Expires) {
            None => SIP_DEFAULT_EXPIRES,
            Some(v) => match v.trim().parse::<u64>() {
                Ok(n) => n,
                Err(_) => return self.refuse(request, 400, "Expires is not a number of seconds"),
            },
        };
        let values = match request.headers.values(&HeaderName::Contact) {
            Ok(v) => v,
            Err(_) => return self.refuse(request, 400, "malformed Contact"),
        };
        let mut bound = self.bindings.get(&aor).cloned().unwrap_or_default();
        bound.retain(|b| b.expires_ms > now_ms);
        let before = bound.clone();
        if values.iter().any(|v| v.trim() == "*") {
            if values.len() != 1 || default_expires != 0 {
                return self.refuse(
                    request,
                    400,
                    "Contact: * needs Expires: 0 and no other contact",
                );
            }
            if bound.iter().any(|b| b.call_id == call_id && b.cseq >= cseq) {
                return self.refuse(request, 500, "out-of-order REGISTER");
            }
            bound.clear();
        }
        for value in values.iter().filter(|v| v.trim() != "*") {
            let Ok(contact) = NameAddr::parse("Contact", value) else {
                return self.refuse(request, 400, "malformed Contact");
            };
            let expires = match contact.param("expires") {
                Some(Some(v)) => match v.parse::<u64>() {
                    Ok(n) => n,
                    Err(_) => return self.refuse(request, 400, "bad expires parameter"),
                },
                _ => default_expires,
            };
            if expires != 0 && expires < SIP_MIN_EXPIRES {
                let mut response = self.reply(request, 423);
                response
                    .headers
                    .push(HeaderName::MinExpires, SIP_MIN_EXPIRES.to_string());
                return Registered::Answer(response);
            }
            let expires = expires.min(SIP_MAX_EXPIRES);
            let uri = contact.uri.to_string();
            match bound.iter().position(|b| b.uri == uri) {
                Some(i) => {
                    let stale = bound
                        .get(i)
                        .is_some_and(|b| b.call_id == call_id && b.cseq >= cseq);
                    if stale {
                        return self.refuse(request, 500, "out-of-order REGISTER");
                    }
                    if expires == 0 {
                        bound.remove(i);
                    } else if let Some(b) = bound.get_mut(i) {
                        b.expires_ms = now_ms.saturating_add(expires * 1000);
                        b.call_id.clone_from(&call_id);
                        b.cseq = cseq;
                        b.source = source;
                        b.transport = transport;
                    }
                }
                None if expires == 0 => {}
                None => {
                    if bound.len() >= SIP_MAX_BINDINGS_PER_AOR {
                        return self.refuse(request, 403, "too many phones bound to this AOR");
                    }
                    bound.push(PhoneBinding {
                        uri,
                        expires_ms: now_ms.saturating_add(expires * 1000),
                        call_id: call_id.clone(),
                        cseq,
                        source,
                        transport,
                    });
                }
            }
        }
        self.stats.accepted += 1;
        let mut response = self.reply(request, 200);
        for b in &bound {
            let left = b.expires_ms.saturating_sub(now_ms).div_ceil(1000);
            response
                .headers
                .push(HeaderName::Contact, format!("<{}>;expires={left}", b.uri));
        }
        let change = presence(&bound, now_ms);
        let changed = match &change {
            // The last phone left: withdraw the entry.
            DeviceChange::Unbind => !before.is_empty() || self.announced.contains_key(&aor),
            // A phone came or stayed: announce only if the entry the
            // overlay holds is missing or half spent (a refresh, or
            // another phone of the AOR, usually changes nothing there).
            DeviceChange::Bind { expires, .. } => self.needs_announcing(&aor, *expires, now_ms),
        };
        if bound.is_empty() {
            self.bindings.remove(&aor);
        } else {
            self.bindings.insert(aor.clone(), bound);
        }
        if changed {
            self.announcing(&aor, &change);
            Registered::Changed {
                response,
                aor,
                change,
            }
        } else {
            Registered::Answer(response)
        }
    }

    /// Drops the bindings that lapsed by `now_ms`; returns the overlay
    /// changes that follow (an AOR whose last phone lapsed is unbound).
    pub fn expire(&mut self, now_ms: u64) -> Vec<(String, DeviceChange)> {
        let mut changes = Vec::new();
        self.bindings.retain(|aor, bound| {
            let before = bound.len();
            bound.retain(|b| b.expires_ms > now_ms);
            if bound.is_empty() && before > 0 {
                changes.push((aor.clone(), DeviceChange::Unbind));
            }
            !bound.is_empty()
        });
        // Phones still bound whose entry in the overlay is half spent:
        // announced again before it lapses.
        let renew: Vec<(String, DeviceChange)> = self
            .bindings
            .iter()
            .filter_map(|(aor, bound)| match presence(bound, now_ms) {
                DeviceChange::Bind { expires, contacts }
                    if self.needs_announcing(aor, expires, now_ms)
                        && self.announced.contains_key(aor) =>
                {
                    Some((aor.clone(), DeviceChange::Bind { contacts, expires }))
                }
                _ => None,
            })
            .collect();
        changes.extend(renew);
        for (aor, change) in &changes {
            self.announcing(aor, change);
        }
        changes
    }

    /// Whether the overlay must learn that `aor` is bound here until
    /// `expires` (unix seconds): nothing is announced yet, or what is
    /// has less than half of the wanted life left.
    fn needs_announcing(&self, aor: &str, expires: u64, now_ms: u64) -> bool {
        let wanted = expires.saturating_mul(1000);
        match self.announced.get(aor) {
            None => true,
            Some(&until) => {
                until < wanted && until.saturating_sub(now_ms) < wanted.saturating_sub(now_ms) / 2
            }
        }
    }

    /// Notes the publication of `change` for `aor` as asked for (it is
    /// forgotten again by [`Registrar::announce_failed`]).
    fn announcing(&mut self, aor: &str, change: &DeviceChange) {
        match change {
            DeviceChange::Bind { expires, .. } => {
                self.announced
                    .insert(aor.to_owned(), expires.saturating_mul(1000));
            }
            DeviceChange::Unbind => {
                self.announced.remove(aor);
            }
        }
    }

    /// The publication for `aor` failed: the overlay may hold nothing,
    /// so the next REGISTER of the AOR publishes again.
    pub fn announce_failed(&mut self, aor: &str) {
        self.announced.remove(aor);
    }

    /// What the overlay should hold for `aor` at `now_ms`: this node bound
    /// until its last phone lapses (at least [`SIP_ANNOUNCE_MIN_LIFE`]
    /// from now), or unbound.
    pub fn presence(&self, aor: &str, now_ms: u64) -> DeviceChange {
        presence(self.bindings(aor), now_ms)
    }

    /// Every AOR with phones bound here, and their phones.
    pub fn all_bindings(&self) -> impl Iterator<Item = (&str, &[PhoneBinding])> {
        self.bindings
            .iter()
            .map(|(aor, b)| (aor.as_str(), b.as_slice()))
    }

    /// When the next binding lapses, unix milliseconds.
    pub fn next_expiry(&self) -> Option<u64> {
        self.bindings
            .values()
            .flat_map(|bound| bound.iter().map(|b| b.expires_ms))
            .min()
    }

    /// Removes phones bound to `aor` (normalised, [`aor_of`]) on the
    /// operator's word at `now_ms`: the one whose Contact URI is
    /// `contact`, or every one when `contact` is `None`. Returns what was
    /// removed and, when no phone of the AOR is left, the overlay change
    /// that follows (the AOR unbound, as when its last phone lapses).
    /// Bindings that have lapsed by `now_ms` are not there to remove;
    /// with nothing to remove, nothing changes.
    pub fn unbind(
        &mut self,
        aor: &str,
        contact: Option<&str>,
        now_ms: u64,
    ) -> Result<Unbound, UnbindError> {
        let live = |b: &PhoneBinding| b.expires_ms > now_ms;
        let Some(bound) = self
            .bindings
            .get_mut(aor)
            .filter(|bound| bound.iter().any(live))
        else {
            return Err(UnbindError::NotBound {
                aor: aor.to_owned(),
            });
        };
        let chosen = |b: &PhoneBinding| live(b) && contact.is_none_or(|c| same_contact(&b.uri, c));
        if !bound.iter().any(chosen) {
            return Err(UnbindError::NoSuchContact {
                aor: aor.to_owned(),
                contact: contact.unwrap_or_default().to_owned(),
            });
        }
        let (removed, kept): (Vec<PhoneBinding>, Vec<PhoneBinding>) =
            std::mem::take(bound).into_iter().partition(chosen);
        let left = kept.iter().any(live);
        *bound = kept;
        let change = if left {
            None
        } else {
            // The last phone left: withdraw the entry, as `expire` does.
            self.bindings.remove(aor);
            self.announcing(aor, &DeviceChange::Unbind);
            Some(DeviceChange::Unbind)
        };
        Ok(Unbound { removed, change })
    }
}

/// What [`Registrar::unbind`] removed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unbound {
    /// The bindings removed.
    pub removed: Vec<PhoneBinding>,
    /// What the overlay must learn: `Some(DeviceChange::Unbind)` when the
    /// AOR has no phone left here, `None` while others remain.
    pub change: Option<DeviceChange>,
}

/// Why [`Registrar::unbind`] removed nothing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UnbindError {
    /// No phone is bound to the AOR.
    #[error("no phone is bound to {aor} at this node")]
    NotBound {
        /// The AOR.
        aor: String,
    },
    /// Phones are bound to the AOR, but none with that Contact.
    #[error("no phone of {aor} is bound with the contact {contact}")]
    NoSuchContact {
        /// The AOR.
        aor: String,
        /// The Contact URI asked for.
        contact: String,
    },
}

/// Whether `given` (as an operator types it: with or without `<>`)
/// names the bound Contact URI `bound`: the same text, or the same URI
/// once both are parsed.
fn same_contact(bound: &str, given: &str) -> bool {
    let given = given.trim();
    let given = given
        .strip_prefix('<')
        .and_then(|g| g.strip_suffix('>'))
        .unwrap_or(given);
    bound == given
        || matches!(
            (SipUri::parse(bound), SipUri::parse(given)),
            (Ok(a), Ok(b)) if a.to_string() == b.to_string()
        )
}

/// The overlay's view of an AOR's phones here at `now_ms`: bound until
/// the last of them lapses, and at least [`SIP_ANNOUNCE_MIN_LIFE`] (in
/// whole seconds, rounded up), or gone.
fn presence(bound: &[PhoneBinding], now_ms: u64) -> DeviceChange {
    let floor = now_ms.saturating_add(SIP_ANNOUNCE_MIN_LIFE * 1000);
    match bound.iter().map(|b| b.expires_ms).max() {
        Some(last) => DeviceChange::Bind {
            contacts: Vec::new(),
            expires: last.max(floor).div_ceil(1000),
        },
        None => DeviceChange::Unbind,
    }
}

#[cfg(test)]
mod tests;

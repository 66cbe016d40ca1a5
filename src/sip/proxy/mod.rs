//! The node's SIP core, sans-IO: the registrar and a transaction-stateful
//! proxy (RFC 3261 §16) between the node's phones and the overlay.
//!
//! A node is the registrar and outbound proxy of its own phones. A call
//! from one of them to an AOR is located in the overlay (the driver looks
//! the AOR up and reports the nodes its registration lists,
//! [`Proxy::located`]) and forwarded, inside the overlay's authenticated
//! QUIC, to those nodes ([`Transport::Overlay`]); each forks it to the
//! phones bound there. Responses return hop by hop along the Vias; each
//! node Record-Routes the dialog with a URI naming its node id, so that
//! ACK, BYE, re-INVITE, UPDATE and CANCEL follow the same nodes.
//!
//! Decisions made here and nowhere else: whom a request goes to (a local
//! phone, a node of the overlay, nobody), which response goes back
//! (forking picks the best final answer: 6xx, else the lowest), when a
//! branch failed (480 when the callee's node is unreachable, 408 when no
//! answer came), and whom the node refuses (requests from phones that are
//! not registered here, §16.3 checks, loops of Max-Forwards).
//!
//! The proxy reads no clock and no socket: the driver passes instants
//! and unix times, hands it what arrives, and carries out the
//! [`Action`]s it returns.

use super::dialog::{DialogState, Dialogs, InDialog, Party};
use super::header::HeaderName;
use super::identity::{self, IdentityError, Signer};
use super::media::{Anchor, Carrier, Leg, MediaError};
use super::message::{Headers, Message, Method, Request, Response};
use super::registrar::{aor_of, PhoneBinding, Registered, Registrar};
use super::transaction::{
    ClientReceived, ClientTransactions, ServerReceived, ServerTransactions, TimerConfig,
    TimerOutput, Transmit, Transport, TxError, TxId,
};
use super::typed::NameAddr;
use super::uri::{Host, SipUri};
use crate::identity::NodeId;
use crate::limits::{SIP_MAX_FORK_NODES, SIP_MAX_TRANSACTIONS};
use crate::overlay::record::RecordPolicy;
use sha2::{Digest, Sha256};
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tracing::{debug, info};

mod mwi;
#[cfg(test)]
mod tests;
mod userdata;

pub use mwi::{MailboxCounts, MESSAGE_SUMMARY, MWI_MAX_EXPIRES, SIP_MAX_MWI_SUBSCRIPTIONS};
use userdata::{decide_for_callee, CalleeDecision, Parked, UserDataCache};
pub use userdata::{UserData, SIP_MAX_PARKED, USER_DATA_TTL, USER_DATA_WAIT};

/// The URI parameter by which a Record-Route (and so a Route) names the
/// node it leads to: 64 hex digits of its node id.
pub const NODE_PARAM: &str = "p2p-node";

/// The user part by which a node's hidden contacts are known
/// ([`Proxy::hidden_contact`]).
pub const HIDDEN_CONTACT_PREFIX: &str = "p2p-";

/// How long a forwarding context outlives its final response, to pass
/// on retransmitted 2xx responses (64 × T1).
const CONTEXT_LINGER: Duration = Duration::from_secs(32);

/// The peer address of a message for a node of the overlay: the driver
/// resolves the node's address from its id ([`Transport::Overlay`]).
pub const UNRESOLVED: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::UNSPECIFIED,
    0,
));

/// The longest the phones ring before a call goes to voice mail, whatever
/// the user's `voicemail_after` (which may say up to 300 s): proxies on the
/// way give up on an INVITE at about 180 s (RFC 3261 Timer C).
pub const MAX_RING_BEFORE_VOICEMAIL: Duration = Duration::from_secs(150);

/// The user part a phone calls to listen to its user's voice mail
/// (`sip:voicemail@<overlay>`).
pub const VOICEMAIL_USER: &str = "voicemail";

/// The prefix of the Request-URI user by which the proxy asks the
/// voicemail agent to play an account's messages (`play.<user>`).
pub const PLAYBACK_PREFIX: &str = "play.";

/// How long a lookup's answer locates its AOR for later calls: a phone
/// that moved to another node is found after this at most (a call to
/// the old node meanwhile gets 480 there).
pub const LOCATION_CACHE_TTL: Duration = Duration::from_secs(5);

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send a message: to a phone (UDP, TCP) or a node (the overlay).
    Send(Transmit),
    /// Look `aor` up in the overlay and report with [`Proxy::located`].
    Locate {
        /// The lookup's handle.
        lookup: u64,
        /// The AOR (normalised).
        aor: String,
    },
    /// Read the address book and settings of `account` (an AOR served
    /// here) from the overlay, open them with the user's key, and report
    /// with [`Proxy::user_data`] (empty data when there is none or it
    /// cannot be read).
    ReadUserData {
        /// The account's AOR.
        account: String,
    },
    /// Read the voice mail of `account` (an AOR served here) and report
    /// its counts with [`Proxy::mailbox_counts`]: a phone subscribed to
    /// them.
    ReadMailbox {
        /// The account's AOR.
        account: String,
    },
    /// Publish what the overlay should hold for `aor` (the registrar's
    /// [`Registrar::presence`]) and report with [`Proxy::published`] when
    /// `reply` is set.
    Publish {
        /// The AOR whose phones changed.
        aor: String,
        /// The REGISTER transaction waiting for the publication.
        reply: Option<TxId>,
    },
}

/// What a lookup of an AOR found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Located {
    /// The nodes a valid registration lists as live (bindings verified).
    Nodes(Vec<NodeId>),
    /// A registration, none of whose entries is live.
    NoLiveEntry,
    /// No registration of the AOR in the overlay.
    NotFound,
}

/// One branch of a forwarded request.
#[derive(Debug, Clone)]
struct Branch {
    client: TxId,
    /// Whom it went to: the only party its responses are taken from.
    party: Party,
    /// The request as forwarded (for its CANCEL).
    request: Request,
    /// Its final response's code, once one came (or was made up).
    final_code: Option<u16>,
}

/// A request being forwarded: its server transaction and its branches.
#[derive(Debug)]
struct Forward {
    /// Where responses go when the server transaction cannot take them
    /// (a second 2xx).
    upstream: (SocketAddr, Transport),
    request: Request,
    branches: Vec<Branch>,
    /// The best final response of the branches so far.
    best: Option<Response>,
    /// A final response went upstream.
    answered: bool,
    /// The dialog a dialog-creating INVITE opened: Call-ID and the
    /// caller's tag.
    dialog: Option<(String, String)>,
    /// Who sent the request.
    origin: Party,
    /// Whether the request is part of a call (a dialog-creating INVITE,
    /// or a request inside a dialog): only then is its media anchored.
    in_call: bool,
    /// When the context may go (after it answered).
    linger_until: Option<Instant>,
    /// The callee's voice mail, when the callee has it on.
    voicemail: Option<VoicemailPlan>,
}

/// A call that goes to the callee's voice mail when no phone answers in
/// time, or none is reachable.
#[derive(Debug, Clone)]
struct VoicemailPlan {
    /// The callee (an account served here).
    account: String,
    /// The caller as verified, if it was.
    caller: Option<String>,
    /// How long the phones ring first.
    after: Duration,
    /// The call went to voice mail already.
    started: bool,
}

/// An INVITE (or other request) waiting for its AOR's lookup.
#[derive(Debug)]
struct Pending {
    server: TxId,
    request: Request,
    /// Who sent it.
    origin: Party,
    /// When it came (unix ms): the time its Identity is signed at.
    unix_ms: u64,
    /// Where it came from.
    upstream: (SocketAddr, Transport),
    /// The name the caller dialled, when its book did not hold it.
    dialled: Option<String>,
    /// The callee's voice mail, when the callee has it on.
    voicemail: Option<VoicemailPlan>,
}

/// The node's SIP core (see the module docs).
pub struct Proxy {
    me: NodeId,
    me_hex: String,
    domain: String,
    local: SocketAddr,
    branch_key: [u8; 32],
    branch_serial: u64,
    registrar: Registrar,
    server: ServerTransactions,
    client: ClientTransactions,
    forwards: HashMap<TxId, Forward>,
    by_client: HashMap<TxId, TxId>,
    lookups: HashMap<u64, Pending>,
    next_lookup: u64,
    /// REGISTER transactions waiting for their publication: their 200.
    waiting: HashMap<TxId, Response>,
    /// The keys that sign the calls of the AORs served here.
    signers: HashMap<String, Arc<Signer>>,
    /// How callers are proved in this overlay (by key, or by CA).
    records: RecordPolicy,
    /// Lookups in flight, by handle: their AOR.
    locating: HashMap<u64, String>,
    /// When forwarding contexts may go, earliest first (stale entries,
    /// of contexts gone, are skipped).
    lingering: BinaryHeap<Reverse<(Instant, TxId)>>,
    /// When the registrar last looked for lapsed bindings (unix ms).
    last_expiry_ms: u64,
    /// Where AORs were found lately (at most [`SIP_MAX_TRANSACTIONS`]).
    locations: HashMap<String, (Instant, Vec<NodeId>)>,
    /// The dialogs of the calls this node carries: who may send what.
    dialogs: Dialogs,
    /// Media anchoring, carried out where the core says.
    media: Box<dyn Anchor + Send>,
    /// The address books and settings of the users served here, and the
    /// requests waiting for them.
    user_data: UserDataCache,
    /// The accounts whose data the driver can read (those with an
    /// encryption key); calls of others never wait for data.
    data_accounts: std::collections::HashSet<String>,
    /// Set while a request that gave up waiting for user data is routed:
    /// it goes on with the data last known.
    gave_up_waiting: bool,
    /// Where this node's voice mail answers (its SIP address), if it has
    /// voice mail.
    voicemail: Option<SocketAddr>,
    /// When calls with voice mail stop ringing the phones, earliest first
    /// (entries of contexts gone or answered are skipped).
    ring_deadlines: BinaryHeap<Reverse<(Instant, TxId)>>,
    /// The phones' subscriptions to their accounts' voice mail.
    mwi: mwi::Subscriptions,
}

/// The anchor of a proxy given none: it anchors nothing, so it refuses
/// every SDP body rather than pass an address on.
struct NoAnchor;

impl Anchor for NoAnchor {
    fn described(
        &mut self,
        _: Instant,
        _: &str,
        _: Leg,
        _: Carrier,
        _: &[u8],
    ) -> Result<Option<Vec<u8>>, MediaError> {
        Err(MediaError::Ports("no media relay at this node".into()))
    }
    fn to_phone(
        &mut self,
        _: Instant,
        _: &str,
        _: SocketAddr,
        _: &[u8],
    ) -> Result<Vec<u8>, MediaError> {
        Err(MediaError::Ports("no media relay at this node".into()))
    }
    fn end(&mut self, _: &str) {}
    fn failed(&mut self, _: &str) {}
}

impl std::fmt::Debug for Proxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Proxy")
            .field("me", &self.me)
            .field("domain", &self.domain)
            .field("forwards", &self.forwards.len())
            .field("lookups", &self.lookups.len())
            .finish_non_exhaustive()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.branch_key);
    }
}

fn send(peer: SocketAddr, transport: Transport, message: Message) -> Action {
    Action::Send(Transmit {
        peer,
        transport,
        message: Box::new(message),
    })
}

/// The better of two final responses for the requester (§16.7 step 6,
/// simplified): a 6xx, else the lowest code.
fn better(a: &Response, b: &Response) -> bool {
    match (a.code >= 600, b.code >= 600) {
        (true, false) => true,
        (false, true) => false,
        _ => a.code < b.code,
    }
}

/// Where to reach a bound phone: over UDP, the address its REGISTER came
/// from (it crosses NATs, RFC 3581 style); over TCP, the port its contact
/// names on the host its REGISTER came from, when the contact is an IP
/// address (the phone listens there, and the driver connects if the
/// REGISTER's connection is gone), else the REGISTER's connection.
fn phone_address(binding: &PhoneBinding, contact: &SipUri) -> SocketAddr {
    match (binding.transport, &contact.host) {
        // The port its contact names, on the host its REGISTER came
        // from: never a third host a Contact names (the node would dial
        // it and send it SIP and media).
        (Transport::Tcp, Host::Ip(_)) => {
            SocketAddr::new(binding.source.ip(), contact.port.unwrap_or(5060))
        }
        _ => binding.source,
    }
}

/// Counts a hop off a request's Max-Forwards (70 if it had none);
/// `false` if it had none left (the request goes no further: 483).
fn decrement_max_forwards(request: &mut Request) -> bool {
    match request.max_forwards() {
        Some(0) => false,
        Some(n) => {
            request
                .headers
                .set(HeaderName::MaxForwards, (n - 1).to_string());
            true
        }
        None => {
            request.headers.set(HeaderName::MaxForwards, "70");
            true
        }
    }
}

/// Whether a request is inside a dialog (its To has a tag).
fn in_dialog(request: &Request) -> bool {
    to_tag(request).is_some()
}

/// Where one branch of a request goes.
#[derive(Debug, Clone)]
struct Target {
    addr: SocketAddr,
    transport: Transport,
    /// The Request-URI it gets (a phone's contact), if another.
    uri: Option<SipUri>,
    /// The party it is.
    party: Party,
}

impl Target {
    fn node(node: NodeId) -> Self {
        Target {
            addr: UNRESOLVED,
            transport: Transport::Overlay(node),
            uri: None,
            party: Party::Node(node),
        }
    }

    fn phone(aor: &str, addr: SocketAddr, transport: Transport, contact: SipUri) -> Self {
        Target {
            addr,
            transport,
            uri: Some(contact),
            party: Party::Phone {
                aor: aor.to_owned(),
                source: addr,
                transport,
            },
        }
    }

    fn party(party: &Party) -> Self {
        let (addr, transport) = party.peer();
        Target {
            addr,
            transport,
            uri: None,
            party: party.clone(),
        }
    }
}

/// What a request other than REGISTER and ACK was admitted as.
#[derive(Debug)]
enum Admitted {
    /// A CANCEL from where its INVITE came from.
    Cancel,
    /// A request outside any dialog, from this authenticated party.
    New(Party),
    /// A request inside a dialog held here, from the party of its side.
    InDialog(InDialog),
}

/// The tag of the From or To header `name` (`label`), if it has one. A
/// header that does not parse has none: a request whose To does not
/// parse is treated as new (and authenticated so).
fn tag_in(headers: &Headers, name: HeaderName, label: &'static str) -> Option<String> {
    headers
        .get(&name)
        .and_then(|value| NameAddr::parse(label, value).ok())
        .and_then(|addr| addr.tag().map(str::to_owned))
}

/// The tag of a request's To, if it has one.
fn to_tag(request: &Request) -> Option<String> {
    tag_in(&request.headers, HeaderName::To, "To")
}

/// The tag of a request's From.
fn from_tag(request: &Request) -> Option<String> {
    tag_in(&request.headers, HeaderName::From, "From")
}

/// The tag of a response's To, if it has one.
fn response_to_tag(response: &Response) -> Option<String> {
    tag_in(&response.headers, HeaderName::To, "To")
}

fn has_to_tag(response: &Response) -> bool {
    response_to_tag(response).is_some()
}

/// Tags the To of a final response the node built (RFC 3261 §8.2.6.2).
fn add_to_tag(response: &mut Response, tag: &str) {
    if let Some(to) = response.headers.get(&HeaderName::To).map(str::to_owned) {
        if !has_to_tag(response) {
            response
                .headers
                .set(HeaderName::To, format!("{to};tag={tag}"));
        }
    }
}

/// A message's SDP body, if it has one; an error for a body that may
/// hold addresses the node cannot rewrite (multipart).
pub fn sdp_body<'a>(headers: &Headers, body: &'a [u8]) -> Result<Option<&'a [u8]>, &'static str> {
    if body.is_empty() {
        return Ok(None);
    }
    let kind = headers
        .get(&HeaderName::ContentType)
        .map(|t| {
            t.split(';')
                .next()
                .unwrap_or_default()
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_else(|| "application/sdp".to_owned());
    match kind.as_str() {
        "application/sdp" => Ok(Some(body)),
        k if k.starts_with("multipart/") => Err("multipart bodies are not anchored"),
        _ => Ok(None),
    }
}

impl Proxy {
    /// The core of node `me` for the overlay `domain`, its SIP listener
    /// at `local`, keyed from `secret` (random, drawn at start).
    pub fn new(me: NodeId, domain: &str, local: SocketAddr, secret: [u8; 32]) -> Self {
        let mut registrar = Registrar::new(domain, secret);
        registrar.set_local_ip(local.ip());
        let mut h = Sha256::new();
        h.update(b"p2psip-proxy-branch-v1 ");
        h.update(secret);
        Self {
            me,
            me_hex: me.to_string(),
            domain: domain.to_ascii_lowercase(),
            local,
            branch_key: h.finalize().into(),
            branch_serial: 0,
            registrar,
            server: ServerTransactions::new(TimerConfig::default()),
            client: ClientTransactions::new(TimerConfig::default()),
            forwards: HashMap::new(),
            by_client: HashMap::new(),
            lookups: HashMap::new(),
            next_lookup: 0,
            waiting: HashMap::new(),
            signers: HashMap::new(),
            lingering: BinaryHeap::new(),
            last_expiry_ms: 0,
            records: RecordPolicy::self_certifying(domain.to_ascii_lowercase()),
            locating: HashMap::new(),
            locations: HashMap::new(),
            dialogs: Dialogs::new(),
            media: Box::new(NoAnchor),
            user_data: UserDataCache::default(),
            data_accounts: std::collections::HashSet::new(),
            gave_up_waiting: false,
            voicemail: None,
            ring_deadlines: BinaryHeap::new(),
            mwi: mwi::Subscriptions::default(),
        }
    }

    /// Where media is anchored (without one, every SDP body is refused
    /// 488: the node never passes a phone's address on).
    pub fn set_media(&mut self, media: Box<dyn Anchor + Send>) {
        self.media = media;
    }

    /// Gives this node voice mail answering at `at` (the SIP address of
    /// its voicemail agent, `crate::sip::voicemail`), or none: calls to
    /// the users served here who have `voicemail` on go there when no
    /// phone answers within their `voicemail_after`, or none is
    /// reachable (408, 480).
    pub fn set_voicemail(&mut self, at: Option<SocketAddr>) {
        self.voicemail = at;
    }

    /// The dialogs held.
    pub fn dialogs(&self) -> &Dialogs {
        &self.dialogs
    }

    /// The user keys that sign the calls of the AORs served here
    /// (RFC 8224 style, [`super::identity`]), by AOR.
    pub fn set_signers(&mut self, signers: HashMap<String, Arc<Signer>>) {
        self.signers = signers;
    }

    /// How this overlay proves its callers: by their self-certifying
    /// AORs (the default), or by user certificates of its CA.
    pub fn set_record_policy(&mut self, records: RecordPolicy) {
        self.records = records;
    }

    /// The registrar.
    pub fn registrar(&self) -> &Registrar {
        &self.registrar
    }

    /// The registrar, to change its accounts.
    pub fn registrar_mut(&mut self) -> &mut Registrar {
        &mut self.registrar
    }

    /// Server and client transactions in progress.
    pub fn transactions(&self) -> (usize, usize) {
        (self.server.len(), self.client.len())
    }

    /// A fresh branch for a request this node sends: unguessable, so that
    /// nobody but the next hop can answer it.
    fn branch(&mut self) -> String {
        self.branch_serial = self.branch_serial.wrapping_add(1);
        let mut h = Sha256::new();
        h.update(self.branch_key);
        h.update(self.branch_serial.to_be_bytes());
        let digest = h.finalize();
        format!(
            "z9hG4bK-p2p-{}",
            hex::encode(digest.get(..12).unwrap_or_default())
        )
    }

    /// The URI by which this node Record-Routes.
    fn record_route(&self) -> String {
        format!("<sip:{};lr;{NODE_PARAM}={}>", self.local, self.me_hex)
    }

    /// Whether a Route value names this node.
    fn is_mine(&self, route: &str) -> bool {
        let Ok(route) = NameAddr::parse("Route", route) else {
            return false;
        };
        match route.uri.param(NODE_PARAM) {
            Some(Some(node)) => node.eq_ignore_ascii_case(&self.me_hex),
            _ => {
                route.uri.host == Host::Ip(self.local.ip())
                    && route.uri.port.unwrap_or(5060) == self.local.port()
            }
        }
    }

    /// Whether a Request-URI names the node itself (no user part, the
    /// domain or the listener's address).
    fn names_me(&self, uri: &SipUri) -> bool {
        uri.user.is_none()
            && match &uri.host {
                Host::Domain(d) => d.eq_ignore_ascii_case(&self.domain),
                Host::Ip(ip) => *ip == self.local.ip() || self.local.ip().is_unspecified(),
            }
    }

    /// Answers server transaction `id` (with the node's Server header).
    fn respond(&mut self, now: Instant, id: TxId, mut response: Response) -> Vec<Action> {
        response.headers.set(
            HeaderName::Server,
            concat!("p2psip/", env!("CARGO_PKG_VERSION")),
        );
        match self.server.respond(now, id, response) {
            Ok(t) => vec![Action::Send(t)],
            Err(_) => Vec::new(),
        }
    }

    fn reply(
        &mut self,
        now: Instant,
        id: TxId,
        request: &Request,
        code: u16,
        warning: Option<&str>,
    ) -> Vec<Action> {
        let mut response = request.reply(code, Some(&self.branch()));
        if let Some(w) = warning {
            response
                .headers
                .push(HeaderName::Warning, format!("399 {} \"{w}\"", self.domain));
        }
        self.respond(now, id, response)
    }

    /// A request arrived from `peer` over `transport`.
    ///
    /// What a request may do is decided before it opens anything: a
    /// retransmission goes to its transaction; a REGISTER to the
    /// registrar; a request inside a dialog must match a dialog held here
    /// and come from the party holding the side it claims; a new request
    /// from a phone must prove an account of this node by digest (a node
    /// of the overlay is proved by its connection). Whatever is refused
    /// on the way is answered statelessly: no transaction, no
    /// retransmission, one small answer per request (as Kamailio's
    /// `sl_send_reply`), so a stranger's packet costs the node no state
    /// and draws back no more than it sent.
    pub fn handle_request(
        &mut self,
        now: Instant,
        unix_ms: u64,
        peer: SocketAddr,
        transport: Transport,
        request: Request,
    ) -> Vec<Action> {
        let from_phone = !matches!(transport, Transport::Overlay(_));
        if request.method == Method::Register
            && (!from_phone || !self.registrar.admit_register(unix_ms, peer.ip()))
        {
            // Phones register at their own node only; a flood is dropped.
            return Vec::new();
        }
        // A retransmission, or the ACK of a non-2xx answer: its
        // transaction's, which opens nothing.
        if self.server.holds(&request) {
            return match self.server.receive(now, peer, transport, &request) {
                Ok(ServerReceived::Absorbed(resend)) => {
                    resend.into_iter().map(Action::Send).collect()
                }
                Ok(ServerReceived::AckFor2xx) => {
                    self.in_dialog_ack(now, unix_ms, peer, transport, request)
                }
                _ => Vec::new(),
            };
        }
        if request.method == Method::Ack {
            return self.in_dialog_ack(now, unix_ms, peer, transport, request);
        }
        if request.method == Method::Register {
            return self.register(now, unix_ms, peer, transport, request);
        }
        if request.method == Method::Subscribe && mwi::is_message_summary(&request) {
            return self.subscribe(now, unix_ms, peer, transport, request);
        }
        let admitted = match self.admit(now, unix_ms, peer, transport, &request) {
            Ok(admitted) => admitted,
            Err(answer) => return answer,
        };
        let id = match self.server.receive(now, peer, transport, &request) {
            Ok(ServerReceived::New(id)) => id,
            Ok(ServerReceived::Absorbed(resend)) => {
                return resend.into_iter().map(Action::Send).collect()
            }
            Ok(ServerReceived::AckFor2xx) | Err(TxError::AckIsNotATransaction) => {
                return Vec::new()
            }
            Err(TxError::Full(_)) => {
                return self.stateless(peer, transport, &request, 503, Some("too busy"))
            }
            Err(e) => return self.stateless(peer, transport, &request, 400, Some(&e.to_string())),
        };
        match admitted {
            Admitted::Cancel => self.cancel(now, id, request),
            Admitted::New(origin) => self.route(now, unix_ms, id, peer, transport, origin, request),
            Admitted::InDialog(dialog) => {
                self.route_in_dialog(now, unix_ms, id, (peer, transport), dialog, request)
            }
        }
    }

    /// A REGISTER (admitted by the rate limit): the registrar decides.
    /// Its refusals and challenges go statelessly; a change of bindings
    /// waits in a transaction for its publication.
    fn register(
        &mut self,
        now: Instant,
        unix_ms: u64,
        peer: SocketAddr,
        transport: Transport,
        request: Request,
    ) -> Vec<Action> {
        match self.registrar.register(unix_ms, peer, transport, &request) {
            Registered::Answer(response) => {
                vec![send(peer, transport, Message::Response(response))]
            }
            Registered::Changed {
                response,
                aor,
                change,
            } => {
                match &change {
                    crate::overlay::record::DeviceChange::Unbind => {
                        info!(%aor, source = %peer, "SIP registration removed: no phone left")
                    }
                    _ => info!(%aor, source = %peer, "SIP registration accepted"),
                }
                match self.server.receive(now, peer, transport, &request) {
                    Ok(ServerReceived::New(id)) => {
                        self.waiting.insert(id, response);
                        vec![Action::Publish {
                            aor,
                            reply: Some(id),
                        }]
                    }
                    // The bindings changed all the same: publish them.
                    _ => vec![Action::Publish { aor, reply: None }],
                }
            }
        }
    }

    /// Decides whether a request other than REGISTER and ACK may open a
    /// transaction here, and as whose: `Err` holds the stateless answer.
    fn admit(
        &mut self,
        now: Instant,
        unix_ms: u64,
        peer: SocketAddr,
        transport: Transport,
        request: &Request,
    ) -> Result<Admitted, Vec<Action>> {
        if request.method == Method::Cancel {
            // A CANCEL comes from where its INVITE came from, or from no
            // one: anyone else's is 481, and cancels nothing.
            let same_source = self
                .server
                .invite_for_cancel(request)
                .and_then(|invite| self.server.peer_of(invite))
                .is_some_and(|(p, t)| Party::same_peer((p, t), (peer, transport)));
            if same_source {
                return Ok(Admitted::Cancel);
            }
            return Err(self.stateless(peer, transport, request, 481, None));
        }
        if request.method == Method::Options && self.names_me(&request.uri) {
            let mut response = request.reply(200, Some(&self.stateless_tag(request)));
            response.headers.push(
                HeaderName::Other("Allow".into()),
                "INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, UPDATE, INFO, MESSAGE, NOTIFY",
            );
            return Err(vec![send(peer, transport, Message::Response(response))]);
        }
        if let Some(to_tag) = to_tag(request) {
            // A To tag is not a dialog: the dialog must be held here, and
            // the request must come from the party holding its side.
            let call_id = request.headers.get(&HeaderName::CallId).unwrap_or_default();
            let from_tag = from_tag(request).unwrap_or_default();
            return match self
                .dialogs
                .authorize(call_id, &from_tag, &to_tag, peer, transport)
            {
                Ok(dialog) => Ok(Admitted::InDialog(dialog)),
                Err(e) => {
                    debug!(%peer, method = %request.method, error = %e, "in-dialog request refused");
                    Err(self.stateless(peer, transport, request, 481, None))
                }
            };
        }
        match transport {
            // A node of the overlay is proved by its QUIC connection.
            Transport::Overlay(node) => Ok(Admitted::New(Party::Node(node))),
            Transport::Udp | Transport::Tcp => {
                match self.authorize_caller(unix_ms, peer, request) {
                    Ok(aor) => Ok(Admitted::New(Party::Phone {
                        aor,
                        source: peer,
                        transport,
                    })),
                    Err(mut answer) => {
                        let _ = now;
                        if answer.code >= 300 && !has_to_tag(&answer) {
                            let tag = self.stateless_tag(request);
                            add_to_tag(&mut answer, &tag);
                        }
                        Err(vec![send(peer, transport, Message::Response(answer))])
                    }
                }
            }
        }
    }

    /// The To tag of the stateless answers to `request`: the same for
    /// its retransmissions, unguessable to anyone else.
    fn stateless_tag(&self, request: &Request) -> String {
        let mut h = Sha256::new();
        h.update(b"p2psip-stateless-tag-v1 ");
        h.update(self.branch_key);
        h.update(request.headers.get(&HeaderName::CallId).unwrap_or_default());
        h.update(b"\n");
        h.update(from_tag(request).unwrap_or_default());
        format!(
            "s{}",
            hex::encode(h.finalize().get(..8).unwrap_or_default())
        )
    }

    /// A stateless answer to `request` (its To tagged when it had none).
    fn stateless(
        &self,
        peer: SocketAddr,
        transport: Transport,
        request: &Request,
        code: u16,
        warning: Option<&str>,
    ) -> Vec<Action> {
        let mut response = request.reply(code, Some(&self.stateless_tag(request)));
        if let Some(w) = warning {
            response
                .headers
                .push(HeaderName::Warning, format!("399 {} \"{w}\"", self.domain));
        }
        vec![send(peer, transport, Message::Response(response))]
    }

    /// An ACK of a 2xx: routed like a request inside its dialog, without
    /// a transaction, from a party of that dialog only (anyone else's is
    /// dropped: an ACK is never answered).
    fn in_dialog_ack(
        &mut self,
        now: Instant,
        unix_ms: u64,
        peer: SocketAddr,
        transport: Transport,
        mut request: Request,
    ) -> Vec<Action> {
        let (Some(to_tag), Some(from_tag)) = (to_tag(&request), from_tag(&request)) else {
            return Vec::new();
        };
        let call_id = request.headers.get(&HeaderName::CallId).unwrap_or_default();
        let dialog = match self
            .dialogs
            .authorize(call_id, &from_tag, &to_tag, peer, transport)
        {
            Ok(dialog) => dialog,
            Err(e) => {
                debug!(%peer, error = %e, "ACK outside a dialog dropped");
                return Vec::new();
            }
        };
        if !decrement_max_forwards(&mut request) {
            return Vec::new();
        }
        let Ok(target) = self.in_dialog_target(unix_ms, &dialog, &mut request) else {
            return Vec::new();
        };
        let Ok(()) = self.anchor_request(now, &dialog.from, &target, &mut request) else {
            return Vec::new();
        };
        if let Some(uri) = target.uri.clone() {
            request.uri = uri;
        }
        let copy = self.forwarded(&request, target.transport, None);
        vec![send(target.addr, target.transport, Message::Request(copy))]
    }

    /// Where a request inside a dialog goes: the next node its Route
    /// names, or the phone its Request-URI names, or the dialog's other
    /// side; it must be a party of the other side either way.
    fn in_dialog_target(
        &self,
        unix_ms: u64,
        dialog: &InDialog,
        request: &mut Request,
    ) -> Result<Target, &'static str> {
        let target = match self.next_route(request) {
            Some(Some(node)) => Target::node(node),
            Some(None) => return Err("no route through this node"),
            None => match self.phone_at(&request.uri, unix_ms) {
                Some(phone) => phone,
                None => match dialog.to.first() {
                    Some(party) => Target::party(party),
                    None => return Err("the dialog has no other side"),
                },
            },
        };
        if dialog.to.iter().any(|p| p.same(&target.party)) {
            Ok(target)
        } else {
            Err("not a party of this dialog")
        }
    }

    /// Media of a request: the SDP body its sender described is anchored
    /// for that party, and rewritten for a phone it goes to. `Err` if it
    /// cannot be (the request is refused 488, never sent on with an
    /// address in it).
    fn anchor_request(
        &mut self,
        now: Instant,
        sender: &Party,
        target: &Target,
        request: &mut Request,
    ) -> Result<(), String> {
        let body = match sdp_body(&request.headers, &request.body) {
            Ok(Some(body)) => body.to_vec(),
            Ok(None) => return Ok(()),
            Err(why) => return Err(why.to_owned()),
        };
        let call_id = request
            .headers
            .get(&HeaderName::CallId)
            .unwrap_or_default()
            .to_owned();
        let mut body =
            match self
                .media
                .described(now, &call_id, sender.leg(), Carrier::Other, &body)
            {
                Ok(Some(rewritten)) => rewritten,
                Ok(None) => body,
                Err(e) => return Err(e.to_string()),
            };
        if let Party::Phone { source, .. } = &target.party {
            body = self
                .media
                .to_phone(now, &call_id, *source, &body)
                .map_err(|e| e.to_string())?;
        }
        request.body = body;
        Ok(())
    }

    /// Decides where a request that starts something goes (§16.4–16.5)
    /// and forwards it, or answers it.
    #[allow(clippy::too_many_arguments)]
    fn route(
        &mut self,
        now: Instant,
        unix_ms: u64,
        id: TxId,
        peer: SocketAddr,
        transport: Transport,
        origin: Party,
        mut request: Request,
    ) -> Vec<Action> {
        let from_phone = !matches!(transport, Transport::Overlay(_));
        let needs = self.user_data_needed(now, &origin, &request);
        let missing = if self.gave_up_waiting {
            Vec::new()
        } else {
            self.user_data.missing(now, &needs)
        };
        if !missing.is_empty() && self.user_data.parked.len() >= SIP_MAX_PARKED {
            // Going on without would skip the callee's blocked list.
            return self.reply(now, id, &request, 503, Some("too busy"));
        }
        if !missing.is_empty() {
            let mut actions = Vec::new();
            if request.method == Method::Invite && from_phone {
                actions.extend(self.respond(now, id, request.reply(100, None)));
            }
            for account in missing {
                if self.user_data.start_reading(&account) {
                    actions.push(Action::ReadUserData { account });
                }
            }
            self.user_data.parked.push(Parked {
                id,
                peer,
                transport,
                origin,
                request,
                unix_ms,
                since: now,
                needs,
            });
            return actions;
        }
        if !decrement_max_forwards(&mut request) {
            return self.reply(now, id, &request, 483, None);
        }
        // Who calls is asserted by this node (its own phones) or by a
        // verified signature, never by what a phone or a node wrote.
        request.headers.remove(&HeaderName::PAssertedIdentity);
        let mut caller = origin.account().map(str::to_owned);
        if from_phone {
            request.headers.remove(&HeaderName::Identity);
            // The credentials were for this node: they go no further.
            request.headers.remove(&HeaderName::ProxyAuthorization);
        }
        // A next hop named by a Route: a node of the overlay, by id.
        if let Some(node) = self.next_route(&mut request) {
            return match node {
                Some(node) => {
                    let target = vec![Target::node(node)];
                    self.forward(
                        now,
                        unix_ms,
                        id,
                        (peer, transport),
                        origin,
                        request,
                        target,
                        false,
                    )
                }
                None => self.reply(now, id, &request, 403, Some("no route through this node")),
            };
        }
        // A name the caller's phone dialled: the caller's address book
        // says which AOR it is.
        let mut dialled_name = None;
        let caller_data = origin
            .account()
            .filter(|a| from_phone && self.data_accounts.contains(*a));
        // The caller's own voice mail, to listen to.
        let playback = caller_data
            .filter(|_| request.method == Method::Invite && self.is_voicemail_uri(&request.uri))
            .and_then(|account| {
                self.playback_target(account)
                    .map(|t| (account.to_owned(), t))
            });
        if let Some((account, target)) = playback {
            set_asserted_caller(&mut request, Some(&account));
            info!(%account, "SIP call to listen to voice mail");
            return self.forward(
                now,
                unix_ms,
                id,
                (peer, transport),
                origin,
                request,
                vec![target],
                false,
            );
        }
        if let Some(account) = caller_data {
            if let Some(name) = self.dialled_name(&request.uri) {
                let book = self.known_user_data(now, account);
                match book.as_ref().and_then(|d| d.book.resolve(&name)) {
                    Some(aor) => match SipUri::parse(aor) {
                        Ok(uri) => {
                            debug!(%name, %aor, "dialled by name");
                            request.uri = uri;
                        }
                        Err(_) => return self.reply(now, id, &request, 404, None),
                    },
                    // In a self-certifying overlay a name is no AOR.
                    None if self.records.enrolled.is_none() => {
                        let why = format!("no contact named {name}");
                        return self.reply(now, id, &request, 404, Some(&why));
                    }
                    None => dialled_name = Some(name),
                }
            }
        }
        let uri = request.uri.clone();
        // An AOR of the overlay: the location service.
        if uri.user.is_some()
            && matches!(&uri.host, Host::Domain(d) if d.eq_ignore_ascii_case(&self.domain))
        {
            let Some(mut aor) = aor_of(&uri) else {
                return self.reply(now, id, &request, 404, None);
            };
            if !from_phone && request.method == Method::Invite {
                match identity::verify(&request, &self.records, unix_ms / 1000) {
                    Ok(from) => caller = Some(from),
                    Err(IdentityError::Absent) => {}
                    Err(e) => {
                        return self.reply(now, id, &request, 438, Some(&e.to_string()));
                    }
                }
            }
            let mut local = self.local_targets(&aor, unix_ms);
            // A new call to a user served here: the user's settings.
            let mut forwarded = false;
            let mut voicemail = None;
            if request.method == Method::Invite {
                if let Some(data) = self.known_user_data(now, &aor) {
                    match decide_for_callee(&data, caller.as_deref()) {
                        CalleeDecision::Ring => {}
                        CalleeDecision::Refuse(code, why) => {
                            info!(callee = %aor, code, why, "SIP call refused by the callee's settings");
                            return self.reply(now, id, &request, code, Some(why));
                        }
                        CalleeDecision::Forward(to) => match SipUri::parse(&to) {
                            Ok(uri)
                                if aor_of(&uri).is_some_and(|a| !a.eq_ignore_ascii_case(&aor)) =>
                            {
                                info!(callee = %aor, to = %to, "SIP call forwarded by the callee's settings");
                                request.uri = uri;
                                aor = aor_of(&request.uri).unwrap_or_default();
                                local = self.local_targets(&aor, unix_ms);
                                forwarded = true;
                                // This node re-anchors the media, so the
                                // caller's signature over the body no
                                // longer holds: the call goes on unsigned.
                                request.headers.remove(&HeaderName::Identity);
                            }
                            _ => {}
                        },
                    }
                    if !forwarded
                        && self.voicemail.is_some()
                        && data.settings.voicemail()
                        && !in_dialog(&request)
                    {
                        voicemail = Some(VoicemailPlan {
                            account: aor.clone(),
                            caller: caller.clone(),
                            after: Duration::from_secs(data.settings.voicemail_after().into())
                                .min(MAX_RING_BEFORE_VOICEMAIL),
                            started: false,
                        });
                    }
                    // The callee's own name for the caller, for the
                    // callee's phones only (never sent on).
                    if !forwarded {
                        if let Some(name) = caller.as_deref().and_then(|c| data.book.name_of(c)) {
                            set_from_display(&mut request, name);
                        }
                    }
                }
            }
            if let (Some(caller), false) = (&caller, local.is_empty()) {
                // To this node's phones: who calls, as verified. (Across
                // the overlay the call is signed with the caller's key
                // once its body is final: `forward`.)
                request
                    .headers
                    .push(HeaderName::PAssertedIdentity, format!("<{caller}>"));
            }
            if !local.is_empty() {
                let actions = self.forward(
                    now,
                    unix_ms,
                    id,
                    (peer, transport),
                    origin,
                    request,
                    local,
                    false,
                );
                self.plan_voicemail(now, id, voicemail);
                return actions;
            }
            if !from_phone && !forwarded {
                // The overlay sent a call for a phone no longer here.
                return self.reply(
                    now,
                    id,
                    &request,
                    480,
                    Some("no phone of that AOR is registered here"),
                );
            }
            let mut actions = Vec::new();
            if request.method == Method::Invite {
                actions.extend(self.respond(now, id, request.reply(100, None)));
            }
            self.next_lookup += 1;
            let lookup = self.next_lookup;
            self.lookups.insert(
                lookup,
                Pending {
                    server: id,
                    request,
                    origin,
                    unix_ms,
                    upstream: (peer, transport),
                    dialled: dialled_name,
                    voicemail,
                },
            );
            // A callee located a moment ago is not looked up again.
            if let Some(nodes) = self.cached_location(now, &aor) {
                actions.extend(self.located(now, lookup, Located::Nodes(nodes)));
                return actions;
            }
            self.locating.insert(lookup, aor.clone());
            actions.push(Action::Locate { lookup, aor });
            return actions;
        }
        // A phone's contact here, named outside a dialog: only this
        // node's own phones may be reached so (a stranger may not ring a
        // phone by its contact).
        if let Some(target) = self.phone_at(&uri, unix_ms) {
            return self.forward(
                now,
                unix_ms,
                id,
                (peer, transport),
                origin,
                request,
                vec![target],
                false,
            );
        }
        self.reply(now, id, &request, 404, Some("no such user or phone here"))
    }

    /// Forwards a request inside a dialog to the other side's party, the
    /// request's media anchored; a BYE ends the dialog and its media.
    fn route_in_dialog(
        &mut self,
        now: Instant,
        unix_ms: u64,
        id: TxId,
        upstream: (SocketAddr, Transport),
        dialog: InDialog,
        mut request: Request,
    ) -> Vec<Action> {
        if !decrement_max_forwards(&mut request) {
            return self.reply(now, id, &request, 483, None);
        }
        request.headers.remove(&HeaderName::PAssertedIdentity);
        request.headers.remove(&HeaderName::ProxyAuthorization);
        if !matches!(upstream.1, Transport::Overlay(_)) {
            request.headers.remove(&HeaderName::Identity);
        }
        if dialog.state == DialogState::Ended && request.method != Method::Bye {
            return self.reply(now, id, &request, 481, Some("the call has ended"));
        }
        let target = match self.in_dialog_target(unix_ms, &dialog, &mut request) {
            Ok(target) => target,
            Err(why) => return self.reply(now, id, &request, 403, Some(why)),
        };
        if request.method == Method::Bye {
            let call_id = request
                .headers
                .get(&HeaderName::CallId)
                .unwrap_or_default()
                .to_owned();
            let caller_tag = match dialog.side {
                super::dialog::Side::Caller => from_tag(&request),
                super::dialog::Side::Callee => to_tag(&request),
            }
            .unwrap_or_default();
            if self.dialogs.end(now, &call_id, &caller_tag) {
                info!(by = %dialog.from, "SIP call ended (BYE)");
            }
            if !self.dialogs.live(&call_id) {
                self.media.end(&call_id);
            }
        }
        let origin = dialog.from;
        self.forward(
            now,
            unix_ms,
            id,
            upstream,
            origin,
            request,
            vec![target],
            false,
        )
    }

    /// Takes this node's own Route off `request` (the first, if it names
    /// this node), then reads the next: `None` if no Route is left,
    /// `Some(Some(node))` if it leads to another node of the overlay,
    /// `Some(None)` if it leads nowhere this node goes.
    fn next_route(&self, request: &mut Request) -> Option<Option<NodeId>> {
        if request.headers.get(&HeaderName::Route).is_some_and(|r| {
            self.route_values(r)
                .first()
                .is_some_and(|v| self.is_mine(v))
        }) {
            request.headers.pop_first_value(&HeaderName::Route);
        }
        let next = request
            .headers
            .get(&HeaderName::Route)
            .and_then(|r| self.route_values(r).into_iter().next())?;
        let node = NameAddr::parse("Route", &next).ok().and_then(|n| {
            n.uri
                .param(NODE_PARAM)
                .flatten()
                .and_then(|h| h.parse::<NodeId>().ok())
        });
        Some(node.filter(|n| *n != self.me))
    }

    fn route_values(&self, line: &str) -> Vec<String> {
        super::header::split_list("Route", line)
            .map(|v| v.into_iter().map(str::to_owned).collect())
            .unwrap_or_default()
    }

    /// A phone may start something through this node (a call, a
    /// message) only as an AOR this node serves, proving its account's
    /// secret by digest (a 407 challenge first): returns that AOR, or the
    /// answer to send. Its source address proves nothing (UDP is spoofed
    /// at will).
    fn authorize_caller(
        &mut self,
        unix_ms: u64,
        peer: SocketAddr,
        request: &Request,
    ) -> Result<String, Response> {
        let Some(from) = request
            .headers
            .get(&HeaderName::From)
            .and_then(|f| NameAddr::parse("From", f).ok())
            .and_then(|f| aor_of(&f.uri))
        else {
            let mut answer = request.reply(403, Some(&self.branch()));
            answer.headers.push(
                HeaderName::Warning,
                format!("399 {} \"the From names no AOR\"", self.domain),
            );
            return Err(answer);
        };
        self.registrar
            .authorize(unix_ms, peer.ip(), request, &from)
            .map(|()| from)
    }

    /// The accounts whose data routing `request` from `origin` needs: the
    /// caller's book when its phone dialled a name, the callee's
    /// settings when the callee is a user served here.
    fn user_data_needed(&self, now: Instant, origin: &Party, request: &Request) -> Vec<String> {
        let mut needs = Vec::new();
        if request.method != Method::Invite || in_dialog(request) {
            return needs;
        }
        // Listening to one's voice mail needs neither book nor settings.
        if self.voicemail.is_some() && self.is_voicemail_uri(&request.uri) {
            return needs;
        }
        let mut callee_uri = request.uri.clone();
        if let Some(account) = origin.account() {
            if let Some(name) = self
                .dialled_name(&request.uri)
                .filter(|_| self.data_accounts.contains(account))
            {
                needs.push(account.to_owned());
                // Once the book is at hand, the callee is the AOR it
                // names: its settings are needed too.
                let named = self
                    .known_user_data(now, account)
                    .and_then(|d| d.book.resolve(&name).and_then(|a| SipUri::parse(a).ok()));
                if let Some(uri) = named {
                    callee_uri = uri;
                }
            }
        }
        let ours =
            matches!(&callee_uri.host, Host::Domain(d) if d.eq_ignore_ascii_case(&self.domain));
        if let Some(callee) = aor_of(&callee_uri).filter(|_| ours) {
            if self.data_accounts.contains(&callee) && !needs.contains(&callee) {
                needs.push(callee);
            }
        }
        needs
    }

    /// The data of `account`: fresh, or when a request gave up waiting
    /// for it, the last known.
    fn known_user_data(&self, now: Instant, account: &str) -> Option<Arc<UserData>> {
        self.user_data.get(now, account).or_else(|| {
            self.gave_up_waiting
                .then(|| self.user_data.last_known(account))
                .flatten()
        })
    }

    /// The contact name `uri` dials, if it dials one: a user part that
    /// is a valid name, in this overlay's domain, that is not a
    /// self-certifying AOR (64 hex digits) nor an AOR served here.
    fn dialled_name(&self, uri: &SipUri) -> Option<String> {
        let user = uri.user.as_deref()?;
        let ours = matches!(&uri.host, Host::Domain(d) if d.eq_ignore_ascii_case(&self.domain));
        let self_certifying = user.len() == 64 && user.bytes().all(|b| b.is_ascii_hexdigit());
        let served = aor_of(uri).is_some_and(|aor| self.registrar.serves(&aor));
        (ours
            && !self_certifying
            && !served
            && !user.starts_with(HIDDEN_CONTACT_PREFIX)
            && crate::userdata::check_contact_name(user).is_ok())
        .then(|| user.to_owned())
    }

    /// The accounts (AORs) whose address book and settings the driver
    /// can read: calls by them and to them consult their data.
    pub fn set_user_data_accounts(&mut self, accounts: std::collections::HashSet<String>) {
        self.data_accounts = accounts;
    }

    /// The driver read `account`'s data: requests that waited for it go
    /// on.
    pub fn user_data(&mut self, now: Instant, account: &str, data: UserData) -> Vec<Action> {
        self.user_data.insert(now, account, data);
        self.resume_parked(now)
    }

    /// Forgets what was read of `account` (the user changed it through
    /// this node): the next call reads it again.
    pub fn forget_user_data(&mut self, account: &str) {
        self.user_data.forget(account);
    }

    fn resume_parked(&mut self, now: Instant) -> Vec<Action> {
        let mut actions = Vec::new();
        for (p, gave_up) in self.user_data.ready(now) {
            self.gave_up_waiting = gave_up;
            actions.extend(self.route(
                now,
                p.unix_ms,
                p.id,
                p.peer,
                p.transport,
                p.origin,
                p.request,
            ));
            self.gave_up_waiting = false;
        }
        actions
    }

    /// The phones bound here to `aor`: where to send, with their contact
    /// as the Request-URI.
    fn local_targets(&self, aor: &str, unix_ms: u64) -> Vec<Target> {
        self.registrar
            .bindings(aor)
            .iter()
            .filter(|b| b.expires_ms > unix_ms)
            .filter_map(|b| {
                let uri = SipUri::parse(&b.uri).ok()?;
                Some(Target::phone(aor, phone_address(b, &uri), b.transport, uri))
            })
            .collect()
    }

    /// The phone whose contact is `uri`, if one is bound here: where to
    /// send, and its contact (the Request-URI it gets). `uri` is the
    /// contact as the phone wrote it, or as this node hid it
    /// ([`Proxy::hidden_contact`]).
    fn phone_at(&self, uri: &SipUri, unix_ms: u64) -> Option<Target> {
        let hidden = uri
            .user
            .as_deref()
            .and_then(|u| u.strip_prefix(HIDDEN_CONTACT_PREFIX))
            .filter(|_| {
                self.names_me(&SipUri {
                    user: None,
                    ..uri.clone()
                })
            });
        self.registrar
            .all_bindings()
            .flat_map(|(aor, phones)| phones.iter().map(move |b| (aor, b)))
            .filter(|(_, b)| b.expires_ms > unix_ms)
            .find_map(|(aor, b)| {
                let contact = SipUri::parse(&b.uri).ok()?;
                let matches = match hidden {
                    Some(token) => token == self.contact_token(aor, &b.uri),
                    None => contact.host == uri.host && contact.port == uri.port,
                };
                matches.then(|| {
                    let addr = phone_address(b, &contact);
                    Target::phone(aor, addr, b.transport, contact)
                })
            })
    }

    /// The token that stands for a phone's contact outside the node.
    fn contact_token(&self, aor: &str, contact: &str) -> String {
        let mut h = Sha256::new();
        h.update(b"p2psip-contact-v1 ");
        h.update(self.branch_key);
        h.update(aor.as_bytes());
        h.update(b"\n");
        h.update(contact.as_bytes());
        hex::encode(h.finalize().get(..12).unwrap_or_default())
    }

    /// The Contact this node writes in place of the one of its phone at
    /// `phone` (the address it sends from, or the node sends it to): a
    /// URI at the node's listener whose user part only this node can
    /// map back to the phone (docs/sip.md, "Media": no phone learns the
    /// other's address). `None` if no phone is bound there.
    fn hidden_contact(&self, phone: SocketAddr) -> Option<String> {
        self.registrar
            .all_bindings()
            .flat_map(|(aor, phones)| phones.iter().map(move |b| (aor, b)))
            .find(|(_, b)| {
                b.source == phone
                    || SipUri::parse(&b.uri).is_ok_and(|c| phone_address(b, &c) == phone)
            })
            .map(|(aor, b)| {
                format!(
                    "<sip:{HIDDEN_CONTACT_PREFIX}{}@{}>",
                    self.contact_token(aor, &b.uri),
                    self.local
                )
            })
    }

    /// Replaces the Contact of a message from this node's phone at
    /// `phone` that leaves for the overlay.
    fn hide_contact(&self, headers: &mut Headers, phone: SocketAddr) {
        if headers.get(&HeaderName::Contact).is_none() {
            return;
        }
        match self.hidden_contact(phone) {
            Some(contact) => headers.set(HeaderName::Contact, contact),
            None => headers.set(HeaderName::Contact, format!("<sip:{}>", self.local)),
        }
    }

    /// The request as this node forwards it to one target.
    fn forwarded(
        &mut self,
        request: &Request,
        transport: Transport,
        uri: Option<SipUri>,
    ) -> Request {
        let mut out = request.clone();
        if let Some(uri) = uri {
            out.uri = uri;
        }
        if request.method == Method::Invite && !in_dialog(request) {
            out.headers
                .push_front(HeaderName::RecordRoute, self.record_route());
        }
        // Into the overlay a request carries this node's Via only: the
        // Vias before it (the phone's address among them) stay here, and
        // the responses get them back (`on_branch_response`).
        if matches!(transport, Transport::Overlay(_)) {
            out.headers.remove(&HeaderName::Via);
        }
        let branch = self.branch();
        out.headers.push_front(
            HeaderName::Via,
            format!(
                "SIP/2.0/{} {};branch={branch}",
                transport.via_token(),
                self.local
            ),
        );
        out
    }

    /// Forwards a request to its targets (forking when several), each in
    /// a client transaction; an INVITE is answered 100 first unless
    /// `tried` (it was, before its lookup). A dialog-creating INVITE
    /// opens its dialog here (bounded per node, account and source); the
    /// media of a request in a call is anchored for its sender and
    /// rewritten for each phone it goes to. A request outside a call
    /// carries no SDP (488): no media port opens for it.
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &mut self,
        now: Instant,
        unix_ms: u64,
        id: TxId,
        (peer, transport): (SocketAddr, Transport),
        origin: Party,
        mut request: Request,
        targets: Vec<Target>,
        tried: bool,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        // Over the overlay (reliable, and every message a request) the
        // 100 would stop no retransmission: it is not sent.
        let reliable_hop = matches!(transport, Transport::Overlay(_));
        if request.method == Method::Invite && !tried && !reliable_hop {
            actions.extend(self.respond(now, id, request.reply(100, None)));
        }
        let call_id = request
            .headers
            .get(&HeaderName::CallId)
            .unwrap_or_default()
            .to_owned();
        let creates = request.method == Method::Invite && !in_dialog(&request);
        let in_call = creates || in_dialog(&request);
        let mut dialog = None;
        if creates {
            let caller_tag = from_tag(&request).unwrap_or_default();
            let parties = targets.iter().map(|t| t.party.clone()).collect();
            if let Err(e) = self
                .dialogs
                .open(now, &call_id, &caller_tag, origin.clone(), parties)
            {
                info!(caller = %origin, callee = %request.uri, code = e.code(), error = %e, "SIP call refused");
                actions.extend(self.reply(now, id, &request, e.code(), Some(&e.to_string())));
                return actions;
            }
            info!(caller = %origin, callee = %request.uri, "SIP call");
            dialog = Some((call_id.clone(), caller_tag));
        }
        // The sender's media, anchored for the sender.
        let offer = match sdp_body(&request.headers, &request.body) {
            Ok(None) => None,
            Ok(Some(_)) if !in_call => Some(Err("SDP outside a call".to_owned())),
            Ok(Some(body)) => Some(
                self.media
                    .described(now, &call_id, origin.leg(), Carrier::Other, body)
                    .map_err(|e| e.to_string()),
            ),
            Err(why) => Some(Err(why.to_owned())),
        };
        match offer {
            None | Some(Ok(None)) => {}
            Some(Ok(Some(rewritten))) => request.body = rewritten,
            Some(Err(why)) => {
                debug!(%peer, %why, "media not anchored");
                if let Some((call_id, caller_tag)) = &dialog {
                    self.dialogs.discard(call_id, caller_tag);
                    if !self.dialogs.live(call_id) {
                        self.media.failed(call_id);
                    }
                }
                actions.extend(self.reply(
                    now,
                    id,
                    &request,
                    488,
                    Some(&format!("media not anchored: {why}")),
                ));
                return actions;
            }
        }
        // A phone's new call leaving for the overlay: signed with the
        // caller's key, over the body as the overlay gets it.
        let to_overlay = targets
            .iter()
            .any(|t| matches!(t.transport, Transport::Overlay(_)));
        if let (true, true, Party::Phone { aor, .. }) = (creates, to_overlay, &origin) {
            let signed = self
                .signers
                .get(aor)
                .and_then(|key| identity::sign(&request, key, &self.domain, unix_ms / 1000));
            if let Some(value) = signed {
                request.headers.push(HeaderName::Identity, value);
            }
        }
        let has_sdp = in_call && matches!(sdp_body(&request.headers, &request.body), Ok(Some(_)));
        let mut forward = Forward {
            upstream: (peer, transport),
            request: request.clone(),
            branches: Vec::new(),
            best: None,
            answered: false,
            linger_until: None,
            voicemail: None,
            dialog,
            origin,
            in_call,
        };
        let from_phone = !reliable_hop;
        for target in targets {
            let mut copy = self.forwarded(&request, target.transport, target.uri.clone());
            if from_phone && matches!(target.transport, Transport::Overlay(_)) {
                self.hide_contact(&mut copy.headers, peer);
            }
            if let (true, Party::Phone { source, .. }) = (has_sdp, &target.party) {
                match self.media.to_phone(now, &call_id, *source, &copy.body) {
                    Ok(body) => copy.body = body,
                    Err(e) => {
                        debug!(phone = %source, error = %e, "media not anchored; branch not tried");
                        continue;
                    }
                }
            }
            match self
                .client
                .send(now, target.addr, target.transport, copy.clone())
            {
                Ok((client, transmit)) => {
                    self.by_client.insert(client, id);
                    forward.branches.push(Branch {
                        client,
                        party: target.party,
                        request: copy,
                        final_code: None,
                    });
                    actions.push(Action::Send(transmit));
                }
                Err(_) => continue,
            }
        }
        if forward.branches.is_empty() {
            if let Some((call_id, caller_tag)) = &forward.dialog {
                self.dialogs.discard(call_id, caller_tag);
                if !self.dialogs.live(call_id) {
                    self.media.failed(call_id);
                }
            }
            actions.extend(self.reply(now, id, &request, 503, Some("too busy to forward")));
            return actions;
        }
        self.forwards.insert(id, forward);
        actions
    }

    /// The nodes `aor` was found at less than [`LOCATION_CACHE_TTL`] ago.
    fn cached_location(&self, now: Instant, aor: &str) -> Option<Vec<NodeId>> {
        self.locations
            .get(aor)
            .filter(|(at, _)| now.saturating_duration_since(*at) < LOCATION_CACHE_TTL)
            .map(|(_, nodes)| nodes.clone())
    }

    /// The driver found (or did not find) the AOR of lookup `lookup`.
    pub fn located(&mut self, now: Instant, lookup: u64, found: Located) -> Vec<Action> {
        if let (Some(aor), Located::Nodes(nodes)) = (self.locating.remove(&lookup), &found) {
            if self.locations.len() >= SIP_MAX_TRANSACTIONS {
                self.locations
                    .retain(|_, (at, _)| now.saturating_duration_since(*at) < LOCATION_CACHE_TTL);
                if self.locations.len() >= SIP_MAX_TRANSACTIONS {
                    self.locations.clear();
                }
            }
            self.locations.insert(aor, (now, nodes.clone()));
        }
        let Some(pending) = self.lookups.remove(&lookup) else {
            return Vec::new();
        };
        let Pending {
            server,
            request,
            origin,
            unix_ms,
            upstream: (peer, transport),
            dialled,
            voicemail,
        } = pending;
        let unreachable = match &found {
            Located::Nodes(nodes) => nodes.iter().all(|n| *n == self.me),
            Located::NoLiveEntry | Located::NotFound => true,
        };
        if let (true, Some(plan)) = (unreachable, voicemail.clone()) {
            // No phone of the callee is online: straight to voice mail.
            if let Some(target) = self.voicemail_target(&plan) {
                let mut request = request;
                set_asserted_caller(&mut request, plan.caller.as_deref());
                info!(callee = %plan.account, "SIP call to voice mail: no phone online");
                let actions = self.forward(
                    now,
                    unix_ms,
                    server,
                    (peer, transport),
                    origin,
                    request,
                    vec![target],
                    true,
                );
                self.plan_voicemail(
                    now,
                    server,
                    Some(VoicemailPlan {
                        started: true,
                        ..plan
                    }),
                );
                return actions;
            }
        }
        let nodes: Vec<NodeId> = match found {
            Located::NotFound => {
                let why = dialled.map(|name| format!("no contact named {name}"));
                return self.reply(now, server, &request, 404, why.as_deref());
            }
            Located::NoLiveEntry => {
                return self.reply(
                    now,
                    server,
                    &request,
                    480,
                    Some("the user has no phone online"),
                )
            }
            Located::Nodes(nodes) => nodes
                .into_iter()
                .filter(|n| *n != self.me)
                .take(SIP_MAX_FORK_NODES)
                .collect(),
        };
        if nodes.is_empty() {
            return self.reply(
                now,
                server,
                &request,
                480,
                Some("the user has no phone online"),
            );
        }
        let targets = nodes.into_iter().map(Target::node).collect();
        let actions = self.forward(
            now,
            unix_ms,
            server,
            (peer, transport),
            origin,
            request,
            targets,
            true,
        );
        self.plan_voicemail(now, server, voicemail);
        actions
    }

    /// Gives the forwarding context of `server` its voice-mail plan and,
    /// unless it went to voice mail already, a deadline for its phones.
    fn plan_voicemail(&mut self, now: Instant, server: TxId, plan: Option<VoicemailPlan>) {
        let Some(plan) = plan else {
            return;
        };
        if !self
            .forwards
            .get(&server)
            .is_some_and(|f| !f.answered && f.dialog.is_some())
        {
            return;
        }
        if !plan.started {
            if self.ring_deadlines.len() >= 2 * SIP_MAX_TRANSACTIONS {
                let forwards = &self.forwards;
                self.ring_deadlines
                    .retain(|Reverse((_, id))| forwards.contains_key(id));
            }
            self.ring_deadlines
                .push(Reverse((now + plan.after, server)));
        }
        if let Some(forward) = self.forwards.get_mut(&server) {
            forward.voicemail = Some(plan);
        }
    }

    /// Whether `uri` is `sip:voicemail@<overlay>`: where a user's phone
    /// calls to listen to the user's messages (a reserved name: a contact
    /// named `voicemail` cannot be dialled by it).
    fn is_voicemail_uri(&self, uri: &SipUri) -> bool {
        uri.user
            .as_deref()
            .is_some_and(|u| u.eq_ignore_ascii_case(VOICEMAIL_USER))
            && matches!(&uri.host, Host::Domain(d) if d.eq_ignore_ascii_case(&self.domain))
    }

    /// The branch to this node's voicemail agent in playback mode for
    /// `account`: its Request-URI user is `play.` and the account's user.
    fn playback_target(&self, account: &str) -> Option<Target> {
        let at = self.voicemail?;
        let user = SipUri::parse(account).ok()?.user?;
        let uri = SipUri::parse(&format!("sip:{PLAYBACK_PREFIX}{user}@{at}")).ok()?;
        Some(Target::phone(account, at, Transport::Udp, uri))
    }

    /// The branch to this node's voice mail for `plan`'s callee: to the
    /// voicemail agent as to one of the node's phones, its Request-URI
    /// naming the callee's user.
    fn voicemail_target(&self, plan: &VoicemailPlan) -> Option<Target> {
        let at = self.voicemail?;
        let user = SipUri::parse(&plan.account).ok()?.user?;
        let uri = SipUri::parse(&format!("sip:{user}@{at}")).ok()?;
        Some(Target::phone(&plan.account, at, Transport::Udp, uri))
    }

    /// Sends the call of `server` to the callee's voice mail: a branch
    /// goes to the voicemail agent (its media anchored like a phone's),
    /// then the phones still ringing are cancelled. Nothing happens if the
    /// call was answered or went there already.
    fn divert_to_voicemail(&mut self, now: Instant, server: TxId) -> Vec<Action> {
        let mut actions = Vec::new();
        let Some(forward) = self.forwards.get_mut(&server) else {
            return actions;
        };
        let (Some(plan), Some((call_id, caller_tag)), false) = (
            forward.voicemail.as_mut(),
            forward.dialog.clone(),
            forward.answered,
        ) else {
            return actions;
        };
        if plan.started {
            return actions;
        }
        plan.started = true;
        let plan = plan.clone();
        let mut request = forward.request.clone();
        let Some(target) = self.voicemail_target(&plan) else {
            return actions;
        };
        if !self
            .dialogs
            .invite(&call_id, &caller_tag, target.party.clone())
        {
            return actions;
        }
        set_asserted_caller(&mut request, plan.caller.as_deref());
        let mut copy = self.forwarded(&request, target.transport, target.uri.clone());
        if matches!(sdp_body(&copy.headers, &copy.body), Ok(Some(_))) {
            match self.media.to_phone(now, &call_id, target.addr, &copy.body) {
                Ok(body) => copy.body = body,
                Err(e) => {
                    debug!(error = %e, "media not anchored for voice mail");
                    return actions;
                }
            }
        }
        // The phones still ringing are cancelled only once the agent's
        // branch is on its way: a branch that cannot be made leaves them
        // ringing.
        if let Ok((client, transmit)) =
            self.client
                .send(now, target.addr, target.transport, copy.clone())
        {
            info!(callee = %plan.account, "SIP call to voice mail");
            actions.extend(self.cancel_pending(now, server));
            self.by_client.insert(client, server);
            if let Some(forward) = self.forwards.get_mut(&server) {
                forward.branches.push(Branch {
                    client,
                    party: target.party,
                    request: copy,
                    final_code: None,
                });
            }
            actions.push(Action::Send(transmit));
        }
        actions
    }

    /// A CANCEL: answered at once, and passed on to the pending branches
    /// of the INVITE it cancels (§16.10).
    fn cancel(&mut self, now: Instant, id: TxId, cancel: Request) -> Vec<Action> {
        let Some(invite) = self.server.invite_for_cancel(&cancel) else {
            return self.reply(now, id, &cancel, 481, None);
        };
        let mut actions = self.reply(now, id, &cancel, 200, None);
        // Still waiting for user data: it goes no further.
        if let Some(at) = self.user_data.parked.iter().position(|p| p.id == invite) {
            let parked = self.user_data.parked.swap_remove(at);
            actions.extend(self.reply(now, invite, &parked.request, 487, None));
            return actions;
        }
        if !self.forwards.contains_key(&invite) {
            // Still being located: answer the INVITE 487 now.
            if let Some(lookup) = self
                .lookups
                .iter()
                .find(|(_, p)| p.server == invite)
                .map(|(l, _)| *l)
            {
                if let Some(p) = self.lookups.remove(&lookup) {
                    actions.extend(self.reply(now, invite, &p.request, 487, None));
                }
            }
            return actions;
        }
        actions.extend(self.cancel_pending(now, invite));
        actions
    }

    /// Sends a CANCEL to each branch of the request `server` forwarded
    /// that has no final answer yet.
    fn cancel_pending(&mut self, now: Instant, server: TxId) -> Vec<Action> {
        let Some(forward) = self.forwards.get(&server) else {
            return Vec::new();
        };
        let pending: Vec<(Request, TxId)> = forward
            .branches
            .iter()
            .filter(|b| b.final_code.is_none())
            .map(|b| (cancel_for(&b.request), b.client))
            .collect();
        let mut actions = Vec::new();
        for (cancel, branch) in pending {
            if let Some((addr, t)) = self.client.peer_of(branch) {
                if let Ok((_, transmit)) = self.client.send(now, addr, t, cancel) {
                    actions.push(Action::Send(transmit));
                }
            }
        }
        actions
    }

    /// A response arrived from `peer` over `transport`. It is taken only
    /// if it matches a client transaction this node started and comes
    /// from where that transaction's request went: a forged answer
    /// neither opens media nor drops anyone's leg.
    pub fn handle_response(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        transport: Transport,
        response: Response,
    ) -> Vec<Action> {
        let Some(client) = self.client.matching(&response) else {
            return Vec::new();
        };
        let sent_to = self.client.peer_of(client);
        let from_its_peer = sent_to.is_some_and(|(addr, t)| {
            // A node's address is the driver's; its id is what counts.
            Party::same_peer((addr, t), (peer, transport))
        });
        if !from_its_peer {
            debug!(%peer, code = response.code, "response from another peer than the request went to: dropped");
            return Vec::new();
        }
        match self.client.receive(now, &response) {
            ClientReceived::Deliver(client) => self.on_branch_response(now, client, response),
            ClientReceived::Absorbed(resend) => resend.into_iter().map(Action::Send).collect(),
            ClientReceived::Stray => Vec::new(),
        }
    }

    /// A response's media: anchored for the branch's party when the
    /// request was part of a call (and, for a dialog-creating INVITE, the
    /// party joined its dialog), rewritten for a phone upstream; `Err`
    /// if it cannot be (the response is dropped, never sent on with an
    /// address in it). A body outside a call is removed.
    fn anchor_response(
        &mut self,
        now: Instant,
        party: &Party,
        upstream: (SocketAddr, Transport),
        anchored: bool,
        response: &mut Response,
    ) -> Result<(), String> {
        let body = match sdp_body(&response.headers, &response.body) {
            Ok(Some(body)) => body.to_vec(),
            Ok(None) => return Ok(()),
            Err(why) => return Err(why.to_owned()),
        };
        if !anchored {
            response.body.clear();
            response.headers.remove(&HeaderName::ContentType);
            return Ok(());
        }
        let call_id = response
            .headers
            .get(&HeaderName::CallId)
            .unwrap_or_default()
            .to_owned();
        let invite = response
            .headers
            .get(&HeaderName::CSeq)
            .and_then(|c| super::CSeq::parse(c).ok())
            .is_some_and(|c| c.method == Method::Invite);
        let carrier = if invite && (200..300).contains(&response.code) {
            Carrier::Accepted
        } else {
            Carrier::Other
        };
        let mut body = match self
            .media
            .described(now, &call_id, party.leg(), carrier, &body)
        {
            Ok(Some(rewritten)) => rewritten,
            Ok(None) => body,
            Err(e) => return Err(e.to_string()),
        };
        if let (addr, Transport::Udp | Transport::Tcp) = upstream {
            body = self
                .media
                .to_phone(now, &call_id, addr, &body)
                .map_err(|e| e.to_string())?;
        }
        response.body = body;
        Ok(())
    }

    fn on_branch_response(
        &mut self,
        now: Instant,
        client: TxId,
        mut response: Response,
    ) -> Vec<Action> {
        let mut actions = Vec::new();
        if response.code >= 300 {
            if let Some(ack) = self.client.ack(client) {
                actions.push(Action::Send(ack));
            }
        }
        let Some(&server) = self.by_client.get(&client) else {
            return actions;
        };
        let Some(forward) = self.forwards.get(&server) else {
            return actions;
        };
        let upstream = forward.upstream;
        let Some(party) = forward
            .branches
            .iter()
            .find(|b| b.client == client)
            .map(|b| b.party.clone())
        else {
            return actions;
        };
        // The callee's side of a new dialog: the party this branch went
        // to, under the tag its answer names.
        let mut anchored = forward.in_call;
        if let (Some((call_id, caller_tag)), Some(tag), 101..=299) = (
            forward.dialog.clone(),
            response_to_tag(&response),
            response.code,
        ) {
            let confirmed = (200..300).contains(&response.code);
            anchored = self
                .dialogs
                .answered(now, &call_id, &caller_tag, &tag, &party, confirmed);
        } else if forward.dialog.is_some() {
            // No tag, no dialog: nothing to anchor media for.
            anchored = false;
        }
        // Our Via goes; the rest lead back to the requester. From the
        // overlay, the rest are the request's own, which did not leave
        // this node (`forwarded`).
        response.headers.pop_first_value(&HeaderName::Via);
        if let Some((_, Transport::Overlay(_))) = self.client.peer_of(client) {
            if let Some(forward) = self.forwards.get(&server) {
                response.headers.remove(&HeaderName::Via);
                let vias: Vec<&str> = forward.request.headers.all(&HeaderName::Via).collect();
                for via in vias.into_iter().rev() {
                    response.headers.push_front(HeaderName::Via, via.to_owned());
                }
            }
        }
        // A phone's answer leaving for the overlay: its Contact is hidden.
        if let (Transport::Overlay(_), Some((phone, Transport::Udp | Transport::Tcp))) =
            (upstream.1, self.client.peer_of(client))
        {
            self.hide_contact(&mut response.headers, phone);
        }
        if response.code == 100 {
            return actions;
        }
        if let Err(why) = self.anchor_response(now, &party, upstream, anchored, &mut response) {
            debug!(from = %party, %why, "media not anchored; response dropped");
            return actions;
        }
        let Some(forward) = self.forwards.get_mut(&server) else {
            return actions;
        };
        if response.code < 200 {
            if !forward.answered {
                actions.extend(self.respond(now, server, response));
            }
            return actions;
        }
        if let Some(b) = forward.branches.iter_mut().find(|b| b.client == client) {
            b.final_code.get_or_insert(response.code);
        }
        if (200..300).contains(&response.code) {
            let first = !forward.answered;
            forward.answered = true;
            forward.linger_until = Some(now + CONTEXT_LINGER);
            self.lingering.push(Reverse((now + CONTEXT_LINGER, server)));
            let upstream = forward.upstream;
            if first && forward.dialog.is_some() {
                info!(caller = %forward.origin, callee = %party, code = response.code, "SIP call answered");
            }
            if first {
                actions.extend(self.respond(now, server, response));
            } else {
                // Every 2xx goes upstream, even after the first.
                actions.push(send(upstream.0, upstream.1, Message::Response(response)));
            }
            // The other branches are cancelled (§16.7 step 10).
            actions.extend(self.cancel_pending(now, server));
            return actions;
        }
        self.branch_failed(now, server, response, actions)
    }

    /// A branch ended without success: keep the best answer; when every
    /// branch has ended, send it upstream.
    fn branch_failed(
        &mut self,
        now: Instant,
        server: TxId,
        response: Response,
        mut actions: Vec<Action>,
    ) -> Vec<Action> {
        let Some(forward) = self.forwards.get_mut(&server) else {
            return actions;
        };
        if forward.best.as_ref().is_none_or(|b| better(&response, b)) {
            forward.best = Some(response);
        }
        let mut done = forward.branches.iter().all(|b| b.final_code.is_some());
        // No phone reachable: the callee's voice mail, if it has it.
        let unreachable = forward
            .best
            .as_ref()
            .is_some_and(|b| matches!(b.code, 408 | 480));
        let voicemail = forward.voicemail.as_ref().is_some_and(|p| !p.started);
        if done && !forward.answered && unreachable && voicemail {
            actions.extend(self.divert_to_voicemail(now, server));
            done = self
                .forwards
                .get(&server)
                .is_none_or(|f| f.branches.iter().all(|b| b.final_code.is_some()));
        }
        let Some(forward) = self.forwards.get_mut(&server) else {
            return actions;
        };
        if done && !forward.answered {
            forward.answered = true;
            forward.linger_until = Some(now + CONTEXT_LINGER);
            self.lingering.push(Reverse((now + CONTEXT_LINGER, server)));
            let dialog = forward.dialog.clone();
            let origin = forward.origin.clone();
            let callee = forward.request.uri.to_string();
            if let Some(mut best) = forward.best.clone() {
                if let Some((call_id, caller_tag)) = dialog {
                    // The call failed: its dialog ends, its media closes.
                    info!(caller = %origin, %callee, code = best.code, "SIP call failed");
                    self.dialogs.end(now, &call_id, &caller_tag);
                    if !self.dialogs.live(&call_id) {
                        self.media.failed(&call_id);
                    }
                }
                if !has_to_tag(&best) {
                    let tag = self.branch();
                    add_to_tag(&mut best, &tag);
                }
                actions.extend(self.respond(now, server, best));
            }
        }
        actions
    }

    /// A branch with no answer, or whose node was unreachable: as if it
    /// had answered `code`.
    fn branch_gave_up(&mut self, now: Instant, client: TxId, code: u16, why: &str) -> Vec<Action> {
        let tag = self.branch();
        let Some(&server) = self.by_client.get(&client) else {
            return Vec::new();
        };
        let Some(forward) = self.forwards.get_mut(&server) else {
            return Vec::new();
        };
        let Some(branch) = forward.branches.iter_mut().find(|b| b.client == client) else {
            return Vec::new();
        };
        if branch.final_code.is_some() {
            return Vec::new();
        }
        branch.final_code = Some(code);
        // A final answer this node makes up has a To tag (§8.2.6.2).
        let mut response = forward.request.reply(code, Some(&tag));
        response.headers.push(
            HeaderName::Warning,
            format!("399 {} \"{why}\"", self.domain),
        );
        self.branch_failed(now, server, response, Vec::new())
    }

    /// Sending `transmit` failed (the callee's node could not be reached
    /// over the overlay): its branch fails with 480.
    pub fn send_failed(&mut self, now: Instant, transmit: &Transmit) -> Vec<Action> {
        let Message::Request(request) = transmit.message.as_ref() else {
            return Vec::new();
        };
        let Some(client) = self.client.find(request) else {
            return Vec::new();
        };
        self.branch_gave_up(now, client, 480, "the callee's node is unreachable")
    }

    /// The overlay holds what the registrar asked for (`stored`), or not:
    /// REGISTER transaction `reply` gets its 200, or 503.
    pub fn published(&mut self, now: Instant, reply: TxId, stored: bool) -> Vec<Action> {
        let Some(mut response) = self.waiting.remove(&reply) else {
            return Vec::new();
        };
        if !stored {
            response.code = 503;
            response.reason = super::reason_phrase(503).to_owned();
            response.headers.remove(&HeaderName::Contact);
            response
                .headers
                .push(HeaderName::Other("Retry-After".into()), "30");
        }
        self.respond(now, reply, response)
    }

    /// When [`Proxy::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let linger = self.lingering.peek().map(|Reverse((at, _))| *at);
        [
            self.server.poll_timeout(),
            self.client.poll_timeout(),
            linger,
            self.dialogs.poll_timeout(),
            self.user_data.next_deadline(),
            self.ring_deadlines.peek().map(|Reverse((at, _))| *at),
            self.mwi.next_deadline(),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// Fires the timers due at `now`: retransmissions, branches that
    /// timed out (408), bindings that lapsed (publications), contexts
    /// done.
    pub fn handle_timeout(&mut self, now: Instant, unix_ms: u64) -> Vec<Action> {
        let mut actions = Vec::new();
        for output in self.server.handle_timeout(now) {
            if let TimerOutput::Retransmit(t) = output {
                actions.push(Action::Send(t));
            }
        }
        for output in self.client.handle_timeout(now) {
            match output {
                TimerOutput::Retransmit(t) => actions.push(Action::Send(t)),
                TimerOutput::TimedOut(client) => {
                    actions.extend(self.branch_gave_up(now, client, 408, "no answer"))
                }
            }
        }
        while let Some(Reverse((at, id))) = self.lingering.peek().copied() {
            if at > now {
                break;
            }
            self.lingering.pop();
            let due = self
                .forwards
                .get(&id)
                .is_some_and(|f| f.linger_until.is_some_and(|t| t <= now));
            if due {
                if let Some(f) = self.forwards.remove(&id) {
                    for b in f.branches {
                        self.by_client.remove(&b.client);
                    }
                }
            }
        }
        // Dialogs that lapsed (no 2xx, or no BYE for too long) and ended
        // ones done lingering; the media of those still live closes.
        for call_id in self.dialogs.handle_timeout(now) {
            if !self.dialogs.live(&call_id) {
                self.media.end(&call_id);
            }
        }
        // Bindings lapse on the wall clock: looked at once a second.
        if unix_ms.saturating_sub(self.last_expiry_ms) >= 1000 {
            self.last_expiry_ms = unix_ms;
            for (aor, _) in self.registrar.expire(unix_ms) {
                actions.push(Action::Publish { aor, reply: None });
            }
        }
        self.expire_subscriptions(now);
        // Calls whose phones rang long enough: to voice mail.
        while let Some(Reverse((at, id))) = self.ring_deadlines.peek().copied() {
            if at > now {
                break;
            }
            self.ring_deadlines.pop();
            actions.extend(self.divert_to_voicemail(now, id));
        }
        // Requests that waited long enough for user data go on without.
        actions.extend(self.resume_parked(now));
        // Bounded like the transactions they belong to.
        if self.lookups.len() > SIP_MAX_TRANSACTIONS {
            self.lookups.clear();
            self.locating.clear();
        }
        actions
    }
}

/// Sets the P-Asserted-Identity of a request for this node's phones (or
/// its voice mail) to `caller`, as verified; removes it when none is.
fn set_asserted_caller(request: &mut Request, caller: Option<&str>) {
    request.headers.remove(&HeaderName::PAssertedIdentity);
    if let Some(caller) = caller {
        request
            .headers
            .push(HeaderName::PAssertedIdentity, format!("<{caller}>"));
    }
}

/// Shows `name` as the From display name (the callee's own name for the
/// caller); the From URI and tag stay as they are.
fn set_from_display(request: &mut Request, name: &str) {
    let Some(mut from) = request
        .headers
        .get(&HeaderName::From)
        .and_then(|f| NameAddr::parse("From", f).ok())
    else {
        return;
    };
    // Contact names are letters, digits and ".-_": quoted as they are.
    from.display = Some(format!("\"{name}\""));
    request.headers.set(HeaderName::From, from.to_string());
}

/// The CANCEL of a forwarded request (§9.1): its Request-URI, top Via,
/// Call-ID, From, To, Route and CSeq number.
fn cancel_for(request: &Request) -> Request {
    let mut headers = Headers::new();
    if let Some(via) = request
        .headers
        .values(&HeaderName::Via)
        .ok()
        .and_then(|v| v.first().map(|s| (*s).to_owned()))
    {
        headers.push(HeaderName::Via, via);
    }
    for (name, value) in request.headers.iter() {
        if matches!(
            name,
            HeaderName::CallId | HeaderName::From | HeaderName::To | HeaderName::Route
        ) {
            headers.push(name.clone(), value);
        }
    }
    let seq = request
        .headers
        .get(&HeaderName::CSeq)
        .and_then(|c| super::CSeq::parse(c).ok())
        .map_or(0, |c| c.seq);
    headers.push(HeaderName::CSeq, format!("{seq} CANCEL"));
    headers.push(HeaderName::MaxForwards, "70");
    Request {
        method: Method::Cancel,
        uri: request.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

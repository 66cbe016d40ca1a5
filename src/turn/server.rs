//! The TURN server's state machine (RFC 8656 over UDP), sans-IO.
//!
//! # Use
//!
//! The driver owns the sockets and the clock; [`Server`] owns every
//! decision. Feed it what arrives:
//!
//! - [`Server::handle_client`]: a datagram on the listening socket;
//! - [`Server::handle_peer`]: a datagram on an allocation's relayed
//!   socket;
//! - [`Server::relay_opened`] / [`Server::relay_failed`]: the outcome of
//!   an [`Action::OpenRelay`];
//! - [`Server::handle_timeout`]: the time passing (call it about once a
//!   second; expiry has one-second resolution);
//!
//! then drain [`Server::poll_action`] and do what each [`Action`] says,
//! in order. Time (`now`) is in seconds, from an epoch of the driver's
//! choosing, never going back.
//!
//! # Policy
//!
//! Binding is answered to anyone. Every TURN request must carry the
//! long-term credentials of a known user (401 with REALM and NONCE
//! first, 438 for a stale nonce); error answers to requests without
//! credentials (401, and 400 or 420) are limited per source address
//! ([`crate::limits::TURN_CHALLENGE_BURST`]): beyond, such requests are
//! dropped unanswered, so a spoofed source reflects little at its
//! victim. A user holds at most
//! [`ServerConfig::max_allocations_per_user`] allocations (486), the
//! server at most [`ServerConfig::max_allocations`] (508); a port
//! reserved by EVEN-PORT's R bit counts as one until it is claimed with
//! its RESERVATION-TOKEN or expires ([`RESERVATION_LIFETIME`]). Nothing
//! is relayed to or from a peer without a permission for its IP address;
//! no permission is given, and no datagram relayed, for an address the
//! peer filter refuses ([`super::peers`], [`Server::peer_refusal`]).
//! Every table is bounded.

use super::credentials::{LongTermKey, NonceSecret, Users};
use super::peers::{PeerFilter, Refusal};
use super::stun::{attr, method, peek_header, Class, Message, MessageBuilder, StunError};
use super::{
    CHANNEL_COOLDOWN, CHANNEL_LIFETIME, DEFAULT_LIFETIME, DEFAULT_MAX_ALLOCATIONS,
    DEFAULT_MAX_ALLOCATIONS_PER_USER, MAX_CHANNELS_PER_ALLOCATION, MAX_LIFETIME,
    MAX_PERMISSIONS_PER_ALLOCATION, MAX_TEXT_ATTR_LEN, PERMISSION_LIFETIME, RESERVATION_LIFETIME,
};
use crate::limits::{TURN_CHALLENGE_BURST, TURN_CHALLENGE_REFILL, TURN_MAX_CHALLENGED_SOURCES};
use crate::netaddr::IpPrefix;
use crate::overlay::rate::{KeyedBuckets, RateLimit};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// The id of a relayed socket, chosen by the server.
pub type RelayId = u64;

/// Lowest channel number (RFC 8656 §12).
pub const MIN_CHANNEL: u16 = 0x4000;
/// Highest channel number accepted: 0x7FFF, RFC 5766's range, not RFC
/// 8656's 0x4FFF. The clients in use still draw channel numbers from
/// 0x4000-0x7FFF (libwebrtc's TURN port, coturn's `turnutils_uclient`),
/// so the narrower range would refuse most of their ChannelBinds. RFC
/// 8656 reserved 0x5000-0x7FFF only to keep ChannelData apart from
/// DTLS-SRTP on a multiplexed port (RFC 7983), which the TURN listener
/// never is: it speaks STUN and ChannelData only.
pub const MAX_CHANNEL: u16 = 0x7FFF;
/// The UDP protocol number, the only REQUESTED-TRANSPORT served.
const UDP: u8 = 17;
/// The bit that marks the id of a reserved port's socket: the id of the
/// port an Allocate with EVEN-PORT's R bit reserves is that
/// allocation's id with this bit set (so either id names the other).
pub const RESERVED_RELAY_BIT: RelayId = 1 << 63;
/// Length of a RESERVATION-TOKEN (RFC 8656 §14.9).
pub const RESERVATION_TOKEN_LEN: usize = 8;

/// Attributes the server understands in requests; a request with any
/// other comprehension-required attribute gets 420.
const KNOWN: &[u16] = &[
    attr::USERNAME,
    attr::MESSAGE_INTEGRITY,
    attr::REALM,
    attr::NONCE,
    attr::LIFETIME,
    attr::XOR_PEER_ADDRESS,
    attr::DATA,
    attr::CHANNEL_NUMBER,
    attr::REQUESTED_TRANSPORT,
    attr::REQUESTED_ADDRESS_FAMILY,
    attr::XOR_MAPPED_ADDRESS,
    attr::EVEN_PORT,
    attr::RESERVATION_TOKEN,
];

/// How the server is set up.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// The realm (the overlay's name).
    pub realm: String,
    /// The listening address: relayed sockets are opened on its IP, and
    /// it decides the address family served.
    pub listen: SocketAddr,
    /// The nonce secret (random per process).
    pub nonce_secret: NonceSecret,
    /// Allocations in all at most (beyond: 508).
    pub max_allocations: usize,
    /// Allocations per username at most (beyond: 486).
    pub max_allocations_per_user: usize,
    /// Which peers the relay reaches (the operator's ranges; the host's
    /// own addresses are set with [`Server::set_local_addresses`]).
    pub peers: PeerFilter,
}

impl ServerConfig {
    /// The defaults for `realm` on `listen`.
    pub fn new(realm: &str, listen: SocketAddr, nonce_secret: NonceSecret) -> Self {
        ServerConfig {
            realm: realm.to_owned(),
            listen,
            nonce_secret,
            max_allocations: DEFAULT_MAX_ALLOCATIONS,
            max_allocations_per_user: DEFAULT_MAX_ALLOCATIONS_PER_USER,
            peers: PeerFilter::default(),
        }
    }
}

/// Which socket a datagram leaves from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// The listening socket (to a client).
    Listener,
    /// An allocation's relayed socket (to a peer).
    Relay(RelayId),
}

/// What the driver must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Send `data` to `to` from `via`.
    Transmit {
        /// The socket to send from.
        via: Via,
        /// The destination.
        to: SocketAddr,
        /// The datagram.
        data: Vec<u8>,
    },
    /// Open a UDP socket on `ip` (any port; an even one when
    /// `even_port`) as relay `id`, and with `reserve` also the next port
    /// (odd) as relay `reserve`, both or neither; then call
    /// [`Server::relay_opened`] with the first socket's address, or
    /// [`Server::relay_failed`]. A reserved socket is read like any
    /// relay (what arrives before it is claimed is dropped).
    OpenRelay {
        /// The new relay's id.
        id: RelayId,
        /// The IP to bind.
        ip: IpAddr,
        /// The port must be even (EVEN-PORT; always with `reserve`).
        even_port: bool,
        /// The id of the next port's socket, reserved (EVEN-PORT's R
        /// bit): `id | RESERVED_RELAY_BIT`.
        reserve: Option<RelayId>,
    },
    /// Close relay `id` (its allocation or reservation is gone; an id the
    /// driver does not hold needs nothing).
    CloseRelay {
        /// The relay's id.
        id: RelayId,
    },
}

/// What the server has counted (for logs and tests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Allocations made.
    pub allocations: u64,
    /// Requests refused 401 or 438 (authentication).
    pub auth_refused: u64,
    /// Allocations refused 486 or 508 (quotas).
    pub quota_refused: u64,
    /// Datagrams relayed to peers.
    pub to_peers: u64,
    /// Datagrams relayed to clients.
    pub to_clients: u64,
    /// Datagrams dropped (no allocation, permission or channel; malformed).
    pub dropped: u64,
    /// Requests dropped unanswered: their source drew too many error
    /// answers without credentials (401, 400, 420).
    pub challenges_dropped: u64,
    /// Peers refused by the peer filter (403 to a request, or a datagram
    /// dropped).
    pub peers_refused: u64,
    /// Ports reserved (EVEN-PORT with the R bit).
    pub reservations: u64,
    /// Reservations claimed by an Allocate with their RESERVATION-TOKEN.
    pub reservations_claimed: u64,
}

#[derive(Debug)]
struct Permission {
    ip: IpAddr,
    expires: u64,
}

#[derive(Debug)]
struct Channel {
    number: u16,
    peer: SocketAddr,
    /// Usable until then; kept (not rebindable to another peer or
    /// number) for [`CHANNEL_COOLDOWN`] more seconds.
    expires: u64,
}

#[derive(Debug)]
enum RelayState {
    /// Waiting for the driver's socket; the Allocate's details to answer.
    Opening {
        fingerprint: bool,
        even_port: bool,
        reserve: Option<RelayId>,
    },
    /// Serving at this address.
    Open { addr: SocketAddr },
}

/// A port reserved by EVEN-PORT's R bit: its socket is open, waiting for
/// an Allocate with the token.
#[derive(Debug)]
struct Reservation {
    relay: RelayId,
    addr: SocketAddr,
    /// Only this user may claim it.
    username: String,
    expires: u64,
}

#[derive(Debug)]
struct Allocation {
    relay: RelayId,
    state: RelayState,
    username: String,
    key: LongTermKey,
    expires: u64,
    permissions: Vec<Permission>,
    channels: Vec<Channel>,
    /// The Allocate's transaction and success response, for a
    /// retransmitted Allocate.
    allocate_tid: [u8; 12],
    allocate_response: Vec<u8>,
}

impl Allocation {
    fn permitted(&self, ip: IpAddr, now: u64) -> bool {
        self.permissions
            .iter()
            .any(|p| p.ip == ip && p.expires > now)
    }
}

/// The TURN server (see the module docs for the order of calls).
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    users: Users,
    // BTreeMaps keyed by client addresses: ordered, so no hash flooding
    // and a deterministic expiry order.
    allocations: BTreeMap<SocketAddr, Allocation>,
    by_relay: BTreeMap<RelayId, SocketAddr>,
    /// The relayed addresses of open allocations (reachable as peers:
    /// [`super::peers`], rule 4).
    relayed: BTreeSet<SocketAddr>,
    /// Reserved ports by RESERVATION-TOKEN; counted with the
    /// allocations against both quotas.
    reservations: BTreeMap<[u8; RESERVATION_TOKEN_LEN], Reservation>,
    /// The number of the next reservation (its token's input).
    next_reservation: u64,
    next_relay: RelayId,
    /// Error answers without credentials, per source address.
    challenges: KeyedBuckets<IpPrefix>,
    /// The latest time given (seconds).
    now: u64,
    actions: VecDeque<Action>,
    stats: Stats,
}

/// An authenticated request's user and key.
struct Authenticated {
    username: String,
    key: LongTermKey,
}

impl Server {
    /// A server with no users.
    pub fn new(config: ServerConfig) -> Self {
        let challenge_limit = RateLimit {
            burst: TURN_CHALLENGE_BURST,
            refill_every: TURN_CHALLENGE_REFILL,
            max_refused_in_a_row: u32::MAX,
        };
        Server {
            config,
            users: Users::new(),
            allocations: BTreeMap::new(),
            by_relay: BTreeMap::new(),
            relayed: BTreeSet::new(),
            reservations: BTreeMap::new(),
            next_reservation: 0,
            next_relay: 1,
            challenges: KeyedBuckets::new(challenge_limit, TURN_MAX_CHALLENGED_SOURCES),
            now: 0,
            actions: VecDeque::new(),
            stats: Stats::default(),
        }
    }

    /// Replaces the addresses of the relay's own host (the interface
    /// list the driver reads), which the peer filter refuses.
    pub fn set_local_addresses(&mut self, addrs: impl IntoIterator<Item = IpAddr>) {
        self.config.peers.set_local_addresses(addrs);
    }

    /// The peer filter in force.
    pub fn peer_filter(&self) -> &PeerFilter {
        &self.config.peers
    }

    /// How many ports are reserved (EVEN-PORT's R bit), not yet claimed.
    pub fn reservation_count(&self) -> usize {
        self.reservations.len()
    }

    /// Replaces the users (existing allocations keep their key until
    /// they end; new requests are checked against these).
    pub fn set_users(&mut self, users: Users) {
        self.users = users;
    }

    /// The next thing to do, if any.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// What the server has counted.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// How many allocations exist (opening or open).
    pub fn allocation_count(&self) -> usize {
        self.allocations.len()
    }

    /// The realm.
    pub fn realm(&self) -> &str {
        &self.config.realm
    }

    /// Why the relay must not send to (or receive from) `peer`, if it
    /// must not: the peer filter's decision ([`super::peers`]), with the
    /// relayed addresses of this server's open allocations reachable.
    pub fn peer_refusal(&self, peer: SocketAddr) -> Option<Refusal> {
        let own_relay = self.relayed.contains(&peer);
        self.config
            .peers
            .check(peer, self.config.listen, own_relay)
            .err()
    }

    /// Whether the relay may send to (and receive from) `peer`
    /// ([`Server::peer_refusal`] finds nothing).
    pub fn peer_allowed(&self, peer: SocketAddr) -> bool {
        self.peer_refusal(peer).is_none()
    }

    fn transmit(&mut self, via: Via, to: SocketAddr, data: Vec<u8>) {
        self.actions.push_back(Action::Transmit { via, to, data });
    }

    /// Whether `addr` is of the family served (an IPv4-mapped IPv6
    /// address counts as IPv4).
    fn family_matches(&self, addr: SocketAddr) -> bool {
        addr.ip().to_canonical().is_ipv4() == self.config.listen.is_ipv4()
    }

    /// Whether an error answer without credentials may go to `to` now:
    /// takes a token of its source's bucket; `false` (and counted) when
    /// the bucket is empty, and the request is dropped unanswered.
    fn may_answer_unauthenticated(&mut self, to: SocketAddr) -> bool {
        let now = Duration::from_secs(self.now);
        if self
            .challenges
            .try_take(IpPrefix::host(to.ip()), now)
            .is_ok()
        {
            true
        } else {
            self.stats.challenges_dropped += 1;
            false
        }
    }

    fn tick(&mut self, now: u64) {
        self.now = self.now.max(now);
    }

    /// A datagram from `from` on the listening socket.
    pub fn handle_client(&mut self, now: u64, from: SocketAddr, data: &[u8]) {
        self.tick(now);
        match data.first().map(|b| b >> 6) {
            Some(0b00) => self.handle_stun(now, from, data),
            Some(0b01) => self.handle_channel_data(now, from, data),
            _ => self.stats.dropped += 1,
        }
    }

    fn handle_channel_data(&mut self, now: u64, from: SocketAddr, data: &[u8]) {
        let forward = (|| {
            let number = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
            let len = usize::from(u16::from_be_bytes([*data.get(2)?, *data.get(3)?]));
            // Over UDP the padding may or may not be there.
            let payload = data.get(4..4 + len)?;
            let alloc = self.allocations.get(&from)?;
            let channel = alloc
                .channels
                .iter()
                .find(|c| c.number == number && c.expires > now)?;
            if !alloc.permitted(channel.peer.ip(), now) {
                return None;
            }
            Some((alloc.relay, channel.peer, payload.to_vec()))
        })();
        match forward {
            // The filter again: the host's addresses may have changed
            // since the channel was bound.
            Some((_, peer, _)) if !self.peer_allowed(peer) => {
                self.stats.peers_refused += 1;
                self.stats.dropped += 1;
            }
            Some((relay, peer, payload)) => {
                self.stats.to_peers += 1;
                self.transmit(Via::Relay(relay), peer, payload);
            }
            None => self.stats.dropped += 1,
        }
    }

    fn handle_stun(&mut self, now: u64, from: SocketAddr, data: &[u8]) {
        let msg = match Message::decode(data) {
            Ok(msg) => msg,
            Err(e) => {
                // A malformed request is answered 400, naming the fault;
                // anything else malformed is dropped.
                if let Some((m, Class::Request, tid)) = peek_header(data) {
                    let reason = format!("Bad Request: {e}");
                    self.error(from, m, tid, 400, &reason, None, false);
                } else {
                    self.stats.dropped += 1;
                }
                return;
            }
        };
        match (msg.class, msg.method) {
            (Class::Request, method::BINDING) => self.binding(from, &msg),
            (Class::Request, method::ALLOCATE) => self.allocate(now, from, &msg),
            (Class::Request, method::REFRESH) => self.refresh(now, from, &msg),
            (Class::Request, method::CREATE_PERMISSION) => self.create_permission(now, from, &msg),
            (Class::Request, method::CHANNEL_BIND) => self.channel_bind(now, from, &msg),
            (Class::Request, m) => self.error(
                from,
                m,
                msg.transaction_id,
                400,
                "Bad Request: unknown method",
                None,
                msg.has_fingerprint(),
            ),
            (Class::Indication, method::SEND) => self.send_indication(now, from, &msg),
            _ => self.stats.dropped += 1,
        }
    }

    /// Sends a response built by `build`, with MESSAGE-INTEGRITY when
    /// `key` is given and FINGERPRINT when the request had one.
    fn respond(
        &mut self,
        to: SocketAddr,
        mut b: MessageBuilder,
        key: Option<&LongTermKey>,
        fingerprint: bool,
    ) -> Option<Vec<u8>> {
        if let Some(key) = key {
            b.add_integrity(key.as_bytes());
        }
        if fingerprint {
            b.add_fingerprint();
        }
        match b.into_bytes() {
            Ok(bytes) => {
                self.transmit(Via::Listener, to, bytes.clone());
                Some(bytes)
            }
            Err(_) => {
                self.stats.dropped += 1;
                None
            }
        }
    }

    #[allow(clippy::too_many_arguments)] // one call shape for every error response
    fn error(
        &mut self,
        to: SocketAddr,
        m: u16,
        tid: [u8; 12],
        code: u16,
        reason: &str,
        key: Option<&LongTermKey>,
        fingerprint: bool,
    ) {
        if key.is_none() && !self.may_answer_unauthenticated(to) {
            return;
        }
        let mut b = MessageBuilder::new(m, Class::Error, tid);
        b.add_error(code, reason);
        self.respond(to, b, key, fingerprint);
    }

    /// An authentication challenge (401, 438): REALM and a fresh NONCE.
    /// A 401 counts against its source's limit of answers without
    /// credentials (a 438 needs a good MESSAGE-INTEGRITY: not counted).
    fn challenge(&mut self, now: u64, to: SocketAddr, msg: &Message<'_>, code: u16, reason: &str) {
        self.stats.auth_refused += 1;
        if code == 401 && !self.may_answer_unauthenticated(to) {
            return;
        }
        let nonce = self.config.nonce_secret.nonce(now, to);
        let mut b = MessageBuilder::new(msg.method, Class::Error, msg.transaction_id);
        b.add_error(code, reason)
            .add(attr::REALM, self.config.realm.as_bytes())
            .add(attr::NONCE, nonce.as_bytes());
        self.respond(to, b, None, msg.has_fingerprint());
    }

    fn binding(&mut self, from: SocketAddr, msg: &Message<'_>) {
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            return self.unknown_attributes(from, msg, &unknown, None);
        }
        let mut b = MessageBuilder::new(method::BINDING, Class::Success, msg.transaction_id);
        b.add_xor_address(attr::XOR_MAPPED_ADDRESS, from);
        self.respond(from, b, None, msg.has_fingerprint());
    }

    fn unknown_attributes(
        &mut self,
        to: SocketAddr,
        msg: &Message<'_>,
        unknown: &[u16],
        key: Option<&LongTermKey>,
    ) {
        if key.is_none() && !self.may_answer_unauthenticated(to) {
            return;
        }
        let list: Vec<u8> = unknown.iter().flat_map(|t| t.to_be_bytes()).collect();
        let names: Vec<String> = unknown.iter().map(|t| format!("{t:#06x}")).collect();
        let reason = format!("Unknown Attribute: {}", names.join(", "));
        let mut b = MessageBuilder::new(msg.method, Class::Error, msg.transaction_id);
        b.add_error(420, &reason)
            .add(attr::UNKNOWN_ATTRIBUTES, &list);
        self.respond(to, b, key, msg.has_fingerprint());
    }

    /// The long-term credential check (RFC 8489 §9.2.4): a challenge or
    /// 400 is sent and `None` returned when it fails.
    fn authenticate(
        &mut self,
        now: u64,
        from: SocketAddr,
        msg: &Message<'_>,
    ) -> Option<Authenticated> {
        let fp = msg.has_fingerprint();
        if !msg.has_integrity() {
            self.challenge(now, from, msg, 401, "Unauthorized");
            return None;
        }
        let fields = (
            msg.text(attr::USERNAME, "USERNAME", MAX_TEXT_ATTR_LEN),
            msg.text(attr::REALM, "REALM", MAX_TEXT_ATTR_LEN),
            msg.text(attr::NONCE, "NONCE", MAX_TEXT_ATTR_LEN),
        );
        let (username, nonce) = match fields {
            (Ok(Some(u)), Ok(Some(_)), Ok(Some(n))) => (u, n),
            (Err(e), _, _) | (_, Err(e), _) | (_, _, Err(e)) => {
                let reason = format!("Bad Request: {e}");
                self.error(from, msg.method, msg.transaction_id, 400, &reason, None, fp);
                return None;
            }
            _ => {
                self.error(
                    from,
                    msg.method,
                    msg.transaction_id,
                    400,
                    "Bad Request: MESSAGE-INTEGRITY without USERNAME, REALM and NONCE",
                    None,
                    fp,
                );
                return None;
            }
        };
        // The key is derived with this server's realm: a request for
        // another realm fails its integrity check.
        let Some(key) = self.users.get(username).cloned() else {
            self.challenge(now, from, msg, 401, "Unauthorized");
            return None;
        };
        if msg.verify_integrity(key.as_bytes()).is_err() {
            self.challenge(now, from, msg, 401, "Unauthorized");
            return None;
        }
        if !self.config.nonce_secret.is_fresh(nonce, now, from) {
            self.challenge(now, from, msg, 438, "Stale Nonce");
            return None;
        }
        Some(Authenticated {
            username: username.to_owned(),
            key,
        })
    }

    /// Checks an allocation request's REQUESTED-ADDRESS-FAMILY: `Err`
    /// with the error code and reason when it is wrong.
    fn requested_family(
        &self,
        msg: &Message<'_>,
        mismatch: u16,
    ) -> Result<(), (u16, &'static str)> {
        let Some(v) = msg.get(attr::REQUESTED_ADDRESS_FAMILY) else {
            return Ok(());
        };
        let wants_v4 = match v {
            [0x01, _, _, _] => true,
            [0x02, _, _, _] => false,
            _ => return Err((400, "Bad Request: REQUESTED-ADDRESS-FAMILY")),
        };
        if wants_v4 == self.config.listen.is_ipv4() {
            Ok(())
        } else if mismatch == 440 {
            Err((440, "Address Family not Supported"))
        } else {
            Err((443, "Peer Address Family Mismatch"))
        }
    }

    fn allocate(&mut self, now: u64, from: SocketAddr, msg: &Message<'_>) {
        let Some(auth) = self.authenticate(now, from, msg) else {
            return;
        };
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let key = Some(&auth.key);
        if let Some(existing) = self.allocations.get(&from) {
            if existing.allocate_tid == tid {
                // A retransmission: the same answer (or none yet).
                let cached = existing.allocate_response.clone();
                if !cached.is_empty() {
                    self.transmit(Via::Listener, from, cached);
                }
                return;
            }
            return self.error(from, m, tid, 437, "Allocation Mismatch", key, fp);
        }
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            return self.unknown_attributes(from, msg, &unknown, key);
        }
        match msg.get(attr::REQUESTED_TRANSPORT) {
            None => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: no REQUESTED-TRANSPORT",
                    key,
                    fp,
                )
            }
            Some([UDP, _, _, _]) => {}
            Some([_, _, _, _]) => {
                return self.error(from, m, tid, 442, "Unsupported Transport Protocol", key, fp)
            }
            Some(_) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: REQUESTED-TRANSPORT is not 4 bytes",
                    key,
                    fp,
                )
            }
        }
        if let Err((code, reason)) = self.requested_family(msg, 440) {
            return self.error(from, m, tid, code, reason, key, fp);
        }
        // EVEN-PORT (RFC 8656 §14.6): one byte, its top bit R asks that
        // the next port be reserved too (RESERVATION-TOKEN in the reply).
        let even_port = match msg.get(attr::EVEN_PORT) {
            None => None,
            Some([flags]) => Some(flags & 0x80 != 0),
            Some(_) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: EVEN-PORT is not 1 byte",
                    key,
                    fp,
                )
            }
        };
        let token = match msg.get(attr::RESERVATION_TOKEN) {
            None => None,
            Some(v) => match <[u8; RESERVATION_TOKEN_LEN]>::try_from(v) {
                Ok(t) => Some(t),
                Err(_) => {
                    return self.error(
                        from,
                        m,
                        tid,
                        400,
                        "Bad Request: RESERVATION-TOKEN is not 8 bytes",
                        key,
                        fp,
                    )
                }
            },
        };
        // RFC 8656 §7.2: a token names the port already; it comes alone.
        if token.is_some() && even_port.is_some() {
            return self.error(
                from,
                m,
                tid,
                400,
                "Bad Request: RESERVATION-TOKEN with EVEN-PORT",
                key,
                fp,
            );
        }
        if token.is_some() && msg.get(attr::REQUESTED_ADDRESS_FAMILY).is_some() {
            return self.error(
                from,
                m,
                tid,
                400,
                "Bad Request: RESERVATION-TOKEN with REQUESTED-ADDRESS-FAMILY",
                key,
                fp,
            );
        }
        let lifetime = match msg.u32_attr(attr::LIFETIME, "LIFETIME") {
            Ok(l) => granted_lifetime(l),
            Err(e) => {
                let reason = format!("Bad Request: {e}");
                return self.error(from, m, tid, 400, &reason, key, fp);
            }
        };
        if let Some(token) = token {
            return self.claim_reservation(now, from, msg, auth, token, lifetime);
        }
        let reserve = even_port == Some(true);
        // A reservation is held like an allocation: it takes a slot of
        // both quotas until it is claimed (then it is the allocation) or
        // expires.
        let slots = if reserve { 2 } else { 1 };
        let of_user = self
            .allocations
            .values()
            .filter(|a| a.username == auth.username)
            .count()
            + self
                .reservations
                .values()
                .filter(|r| r.username == auth.username)
                .count();
        if of_user + slots > self.config.max_allocations_per_user {
            self.stats.quota_refused += 1;
            return self.error(from, m, tid, 486, "Allocation Quota Reached", key, fp);
        }
        if self.allocations.len() + self.reservations.len() + slots > self.config.max_allocations {
            self.stats.quota_refused += 1;
            return self.error(from, m, tid, 508, "Insufficient Capacity", key, fp);
        }
        let id = self.next_relay;
        self.next_relay += 1;
        let reserve = reserve.then_some(id | RESERVED_RELAY_BIT);
        self.by_relay.insert(id, from);
        self.allocations.insert(
            from,
            Allocation {
                relay: id,
                state: RelayState::Opening {
                    fingerprint: fp,
                    even_port: even_port.is_some(),
                    reserve,
                },
                username: auth.username,
                key: auth.key,
                expires: now.saturating_add(u64::from(lifetime)),
                permissions: Vec::new(),
                channels: Vec::new(),
                allocate_tid: tid,
                allocate_response: Vec::new(),
            },
        );
        self.actions.push_back(Action::OpenRelay {
            id,
            ip: self.config.listen.ip(),
            even_port: even_port.is_some(),
            reserve,
        });
    }

    /// An Allocate with a RESERVATION-TOKEN: the reserved port's socket
    /// becomes the allocation's, answered at once; 508 when the token is
    /// unknown, expired or another user's (RFC 8656 §7.2).
    fn claim_reservation(
        &mut self,
        now: u64,
        from: SocketAddr,
        msg: &Message<'_>,
        auth: Authenticated,
        token: [u8; RESERVATION_TOKEN_LEN],
        lifetime: u32,
    ) {
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let valid = self
            .reservations
            .get(&token)
            .is_some_and(|r| r.expires > now && r.username == auth.username);
        let reservation = if valid {
            self.reservations.remove(&token)
        } else {
            None
        };
        let Some(r) = reservation else {
            return self.error(
                from,
                m,
                tid,
                508,
                "Insufficient Capacity: no such reservation",
                Some(&auth.key),
                fp,
            );
        };
        self.stats.reservations_claimed += 1;
        self.by_relay.insert(r.relay, from);
        self.allocations.insert(
            from,
            Allocation {
                relay: r.relay,
                state: RelayState::Opening {
                    fingerprint: fp,
                    even_port: false,
                    reserve: None,
                },
                username: auth.username,
                key: auth.key,
                expires: now.saturating_add(u64::from(lifetime)),
                permissions: Vec::new(),
                channels: Vec::new(),
                allocate_tid: tid,
                allocate_response: Vec::new(),
            },
        );
        // The socket is open already: answered as if it had just opened.
        self.relay_opened(now, r.relay, r.addr);
    }

    /// The driver opened relay `id` at `addr` (and, when the Allocate
    /// reserved one, the next port as its `reserve` id): the Allocate is
    /// answered.
    pub fn relay_opened(&mut self, now: u64, id: RelayId, addr: SocketAddr) {
        self.tick(now);
        let Some(client) = self.by_relay.get(&id).copied() else {
            // Its allocation is gone already (and any port it reserved).
            self.close_relay_pair(id);
            return;
        };
        let Some(alloc) = self.allocations.get_mut(&client) else {
            self.by_relay.remove(&id);
            self.close_relay_pair(id);
            return;
        };
        let RelayState::Opening {
            fingerprint,
            even_port,
            reserve,
        } = alloc.state
        else {
            return;
        };
        let reserved_addr = match reserve {
            Some(_) => addr
                .port()
                .checked_add(1)
                .map(|p| SocketAddr::new(addr.ip(), p)),
            None => None,
        };
        if (even_port && addr.port() % 2 != 0) || (reserve.is_some() && reserved_addr.is_none()) {
            // Not what was asked: refused as if it could not be opened.
            self.relay_failed(id);
            self.close_relay_pair(id);
            return;
        }
        alloc.state = RelayState::Open { addr };
        let lifetime = alloc.expires.saturating_sub(now);
        let mut b = MessageBuilder::new(method::ALLOCATE, Class::Success, alloc.allocate_tid);
        b.add_xor_address(attr::XOR_RELAYED_ADDRESS, addr)
            .add_u32(attr::LIFETIME, u32::try_from(lifetime).unwrap_or(u32::MAX))
            .add_xor_address(attr::XOR_MAPPED_ADDRESS, client);
        let key = alloc.key.clone();
        let username = alloc.username.clone();
        if let (Some(relay), Some(reserved)) = (reserve, reserved_addr) {
            let token = self
                .config
                .nonce_secret
                .reservation_token(self.next_reservation);
            self.next_reservation += 1;
            self.reservations.insert(
                token,
                Reservation {
                    relay,
                    addr: reserved,
                    username,
                    expires: now.saturating_add(RESERVATION_LIFETIME),
                },
            );
            self.stats.reservations += 1;
            b.add(attr::RESERVATION_TOKEN, &token);
        }
        self.relayed.insert(addr);
        self.stats.allocations += 1;
        if let Some(bytes) = self.respond(client, b, Some(&key), fingerprint) {
            if let Some(alloc) = self.allocations.get_mut(&client) {
                alloc.allocate_response = bytes;
            }
        }
    }

    /// Closes relay `id` and the port it would have reserved (the driver
    /// ignores an id it does not hold).
    fn close_relay_pair(&mut self, id: RelayId) {
        self.actions.push_back(Action::CloseRelay { id });
        if id & RESERVED_RELAY_BIT == 0 {
            self.actions.push_back(Action::CloseRelay {
                id: id | RESERVED_RELAY_BIT,
            });
        }
    }

    /// The driver could not open relay `id` (nor the port it was to
    /// reserve): the Allocate is refused 508.
    pub fn relay_failed(&mut self, id: RelayId) {
        let Some(client) = self.by_relay.remove(&id) else {
            return;
        };
        if let Some(alloc) = self.allocations.remove(&client) {
            let fp = matches!(
                alloc.state,
                RelayState::Opening {
                    fingerprint: true,
                    ..
                }
            );
            self.error(
                client,
                method::ALLOCATE,
                alloc.allocate_tid,
                508,
                "Insufficient Capacity",
                Some(&alloc.key),
                fp,
            );
        }
    }

    /// The client's open allocation for a request after Allocate: 437
    /// when there is none, 441 when another user made it.
    fn allocation_for(
        &mut self,
        from: SocketAddr,
        msg: &Message<'_>,
        auth: &Authenticated,
    ) -> Option<(RelayId, SocketAddr)> {
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let found = self.allocations.get(&from).map(|a| {
            let relayed = match a.state {
                RelayState::Open { addr } => Some(addr),
                RelayState::Opening { .. } => None,
            };
            (a.relay, relayed, a.username == auth.username)
        });
        match found {
            Some((relay, Some(relayed), true)) => Some((relay, relayed)),
            Some((_, _, false)) => {
                self.error(from, m, tid, 441, "Wrong Credentials", Some(&auth.key), fp);
                None
            }
            _ => {
                self.error(
                    from,
                    m,
                    tid,
                    437,
                    "Allocation Mismatch",
                    Some(&auth.key),
                    fp,
                );
                None
            }
        }
    }

    fn refresh(&mut self, now: u64, from: SocketAddr, msg: &Message<'_>) {
        let Some(auth) = self.authenticate(now, from, msg) else {
            return;
        };
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let key = Some(&auth.key);
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            return self.unknown_attributes(from, msg, &unknown, key);
        }
        let Some((relay, _)) = self.allocation_for(from, msg, &auth) else {
            return;
        };
        if let Err((code, reason)) = self.requested_family(msg, 443) {
            return self.error(from, m, tid, code, reason, key, fp);
        }
        let requested = match msg.u32_attr(attr::LIFETIME, "LIFETIME") {
            Ok(l) => l,
            Err(e) => {
                let reason = format!("Bad Request: {e}");
                return self.error(from, m, tid, 400, &reason, key, fp);
            }
        };
        let lifetime = if requested == Some(0) {
            self.remove_allocation(from);
            0
        } else {
            let lifetime = granted_lifetime(requested);
            if let Some(a) = self.allocations.get_mut(&from) {
                a.expires = now.saturating_add(u64::from(lifetime));
            }
            lifetime
        };
        let _ = relay;
        let mut b = MessageBuilder::new(m, Class::Success, tid);
        b.add_u32(attr::LIFETIME, lifetime);
        self.respond(from, b, key, fp);
    }

    /// The peers of a CreatePermission or ChannelBind, checked: `Err`
    /// with code and reason. The 403's reason does not say which rule
    /// refused the peer: that would tell a client which addresses are
    /// the relay host's own.
    fn peers(&mut self, msg: &Message<'_>) -> Result<Vec<SocketAddr>, (u16, String)> {
        let mut peers = Vec::new();
        for v in msg.all(attr::XOR_PEER_ADDRESS) {
            let peer = super::stun::decode_xor_address(v, &msg.transaction_id)
                .map_err(|e: StunError| (400, format!("Bad Request: XOR-PEER-ADDRESS: {e}")))?;
            if !self.family_matches(peer) {
                return Err((443, "Peer Address Family Mismatch".into()));
            }
            if !self.peer_allowed(peer) {
                self.stats.peers_refused += 1;
                return Err((403, "Forbidden: the relay does not reach that peer".into()));
            }
            peers.push(peer);
        }
        if peers.is_empty() {
            return Err((400, "Bad Request: no XOR-PEER-ADDRESS".into()));
        }
        Ok(peers)
    }

    fn create_permission(&mut self, now: u64, from: SocketAddr, msg: &Message<'_>) {
        let Some(auth) = self.authenticate(now, from, msg) else {
            return;
        };
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let key = Some(&auth.key);
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            return self.unknown_attributes(from, msg, &unknown, key);
        }
        if self.allocation_for(from, msg, &auth).is_none() {
            return;
        }
        let peers = match self.peers(msg) {
            Ok(p) => p,
            Err((code, reason)) => return self.error(from, m, tid, code, &reason, key, fp),
        };
        let Some(alloc) = self.allocations.get_mut(&from) else {
            return;
        };
        alloc.permissions.retain(|p| p.expires > now);
        let mut new_ips: Vec<IpAddr> = Vec::new();
        for peer in &peers {
            let ip = peer.ip();
            if !alloc.permissions.iter().any(|p| p.ip == ip) && !new_ips.contains(&ip) {
                new_ips.push(ip);
            }
        }
        // All or nothing.
        if alloc.permissions.len() + new_ips.len() > MAX_PERMISSIONS_PER_ALLOCATION {
            return self.error(
                from,
                m,
                tid,
                508,
                "Insufficient Capacity: too many permissions",
                key,
                fp,
            );
        }
        let expires = now + PERMISSION_LIFETIME;
        for p in alloc.permissions.iter_mut() {
            if peers.iter().any(|peer| peer.ip() == p.ip) {
                p.expires = expires;
            }
        }
        alloc
            .permissions
            .extend(new_ips.into_iter().map(|ip| Permission { ip, expires }));
        let b = MessageBuilder::new(m, Class::Success, tid);
        self.respond(from, b, key, fp);
    }

    fn channel_bind(&mut self, now: u64, from: SocketAddr, msg: &Message<'_>) {
        let Some(auth) = self.authenticate(now, from, msg) else {
            return;
        };
        let fp = msg.has_fingerprint();
        let (m, tid) = (msg.method, msg.transaction_id);
        let key = Some(&auth.key);
        let unknown = msg.unknown_required(KNOWN);
        if !unknown.is_empty() {
            return self.unknown_attributes(from, msg, &unknown, key);
        }
        if self.allocation_for(from, msg, &auth).is_none() {
            return;
        }
        let number = match msg.get(attr::CHANNEL_NUMBER) {
            Some([a, b, _, _]) => u16::from_be_bytes([*a, *b]),
            Some(_) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: CHANNEL-NUMBER is not 4 bytes",
                    key,
                    fp,
                )
            }
            None => {
                return self.error(from, m, tid, 400, "Bad Request: no CHANNEL-NUMBER", key, fp)
            }
        };
        if !(MIN_CHANNEL..=MAX_CHANNEL).contains(&number) {
            return self.error(
                from,
                m,
                tid,
                400,
                "Bad Request: channel number outside 0x4000-0x7FFF",
                key,
                fp,
            );
        }
        let peer = match self.peers(msg) {
            Ok(p) if p.len() == 1 => p[0],
            Ok(_) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: more than one XOR-PEER-ADDRESS",
                    key,
                    fp,
                )
            }
            Err((code, reason)) => return self.error(from, m, tid, code, &reason, key, fp),
        };
        let Some(alloc) = self.allocations.get_mut(&from) else {
            return;
        };
        alloc
            .channels
            .retain(|c| c.expires + CHANNEL_COOLDOWN > now);
        alloc.permissions.retain(|p| p.expires > now);
        let by_number = alloc.channels.iter().position(|c| c.number == number);
        let by_peer = alloc.channels.iter().position(|c| c.peer == peer);
        let slot = match (by_number, by_peer) {
            (Some(a), Some(b)) if a == b => Some(a),
            (None, None) => None,
            (Some(_), _) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: channel bound to another peer",
                    key,
                    fp,
                )
            }
            (None, Some(_)) => {
                return self.error(
                    from,
                    m,
                    tid,
                    400,
                    "Bad Request: peer bound to another channel",
                    key,
                    fp,
                )
            }
        };
        let needs_permission = !alloc.permissions.iter().any(|p| p.ip == peer.ip());
        if (slot.is_none() && alloc.channels.len() >= MAX_CHANNELS_PER_ALLOCATION)
            || (needs_permission && alloc.permissions.len() >= MAX_PERMISSIONS_PER_ALLOCATION)
        {
            return self.error(
                from,
                m,
                tid,
                508,
                "Insufficient Capacity: too many channels",
                key,
                fp,
            );
        }
        let expires = now + CHANNEL_LIFETIME;
        match slot {
            Some(i) => {
                if let Some(c) = alloc.channels.get_mut(i) {
                    c.expires = expires;
                }
            }
            None => alloc.channels.push(Channel {
                number,
                peer,
                expires,
            }),
        }
        let permission_expires = now + PERMISSION_LIFETIME;
        match alloc.permissions.iter_mut().find(|p| p.ip == peer.ip()) {
            Some(p) => p.expires = permission_expires,
            None => alloc.permissions.push(Permission {
                ip: peer.ip(),
                expires: permission_expires,
            }),
        }
        let b = MessageBuilder::new(m, Class::Success, tid);
        self.respond(from, b, key, fp);
    }

    fn send_indication(&mut self, now: u64, from: SocketAddr, msg: &Message<'_>) {
        let forward = (|| {
            let alloc = self.allocations.get(&from)?;
            let peer = msg.xor_address(attr::XOR_PEER_ADDRESS).ok()??;
            let data = msg.get(attr::DATA)?;
            if !self.family_matches(peer) || !alloc.permitted(peer.ip(), now) {
                return None;
            }
            if !matches!(alloc.state, RelayState::Open { .. }) {
                return None;
            }
            Some((alloc.relay, peer, data.to_vec()))
        })();
        match forward {
            // Checked per datagram: the permission is per IP, the filter
            // per address (another allocation's port of this host may be
            // reached, no other port of it).
            Some((_, peer, _)) if !self.peer_allowed(peer) => {
                self.stats.peers_refused += 1;
                self.stats.dropped += 1;
            }
            Some((relay, peer, data)) => {
                self.stats.to_peers += 1;
                self.transmit(Via::Relay(relay), peer, data);
            }
            None => self.stats.dropped += 1,
        }
    }

    /// A datagram from `from` on relay `relay`: to the client as
    /// ChannelData when a channel is bound to `from`, else as a Data
    /// indication; dropped without a permission for `from`'s IP.
    pub fn handle_peer(&mut self, now: u64, relay: RelayId, from: SocketAddr, data: &[u8]) {
        self.tick(now);
        if !self.peer_allowed(from) {
            self.stats.peers_refused += 1;
            self.stats.dropped += 1;
            return;
        }
        let out = (|| {
            let client = *self.by_relay.get(&relay)?;
            let alloc = self.allocations.get(&client)?;
            if !alloc.permitted(from.ip(), now) || !matches!(alloc.state, RelayState::Open { .. }) {
                return None;
            }
            let len = u16::try_from(data.len()).ok()?;
            if let Some(c) = alloc
                .channels
                .iter()
                .find(|c| c.peer == from && c.expires > now)
            {
                let mut frame = Vec::with_capacity(4 + data.len());
                frame.extend_from_slice(&c.number.to_be_bytes());
                frame.extend_from_slice(&len.to_be_bytes());
                frame.extend_from_slice(data);
                return Some((client, frame));
            }
            let mut b =
                MessageBuilder::new(method::DATA, Class::Indication, data_tid(relay, now, data));
            b.add_xor_address(attr::XOR_PEER_ADDRESS, from)
                .add(attr::DATA, data);
            Some((client, b.into_bytes().ok()?))
        })();
        match out {
            Some((client, bytes)) => {
                self.stats.to_clients += 1;
                self.transmit(Via::Listener, client, bytes);
            }
            None => self.stats.dropped += 1,
        }
    }

    fn remove_allocation(&mut self, client: SocketAddr) {
        if let Some(a) = self.allocations.remove(&client) {
            self.by_relay.remove(&a.relay);
            match a.state {
                RelayState::Open { addr } => {
                    self.relayed.remove(&addr);
                    self.actions.push_back(Action::CloseRelay { id: a.relay });
                }
                // Its port may be being opened with a reserved one.
                RelayState::Opening { .. } => self.close_relay_pair(a.relay),
            }
        }
    }

    /// Ends what has expired at `now`: allocations (their relays
    /// closed), reserved ports, permissions and channels.
    pub fn handle_timeout(&mut self, now: u64) {
        self.tick(now);
        let expired: Vec<[u8; RESERVATION_TOKEN_LEN]> = self
            .reservations
            .iter()
            .filter(|(_, r)| r.expires <= now)
            .map(|(t, _)| *t)
            .collect();
        for token in expired {
            if let Some(r) = self.reservations.remove(&token) {
                self.actions.push_back(Action::CloseRelay { id: r.relay });
            }
        }
        let expired: Vec<SocketAddr> = self
            .allocations
            .iter()
            .filter(|(_, a)| a.expires <= now)
            .map(|(c, _)| *c)
            .collect();
        for client in expired {
            self.remove_allocation(client);
        }
        for a in self.allocations.values_mut() {
            a.permissions.retain(|p| p.expires > now);
            a.channels.retain(|c| c.expires + CHANNEL_COOLDOWN > now);
        }
    }
}

/// The lifetime granted for a requested one: the default when none is
/// asked, else the request clamped to the default..maximum range.
fn granted_lifetime(requested: Option<u32>) -> u32 {
    match requested {
        None => DEFAULT_LIFETIME,
        Some(l) => l.clamp(DEFAULT_LIFETIME, MAX_LIFETIME),
    }
}

/// A transaction id for a Data indication: not secret, only distinct
/// enough (clients do not match indications to anything).
fn data_tid(relay: RelayId, now: u64, data: &[u8]) -> [u8; 12] {
    let mut tid = [0u8; 12];
    tid[..8].copy_from_slice(
        &relay
            .wrapping_mul(0x9E37_79B9_7F4A_7C15)
            .wrapping_add(now)
            .to_be_bytes(),
    );
    tid[8..].copy_from_slice(&crc32fast::hash(data).to_be_bytes());
    tid
}

#[cfg(test)]
mod tests;

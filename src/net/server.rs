//! A node: a quinn endpoint that accepts mutually authenticated
//! connections within [`Limits`] and answers requests.
//!
//! A peer that breaks the protocol (a malformed or oversized frame, bytes
//! that do not decode) gets an `Error` message naming the problem and is
//! then disconnected with [`CLOSE_PROTOCOL_VIOLATION`]; every other
//! connection goes on being served. A well-formed message of an unknown or
//! unexpected type gets an `Error` answer and the connection stays open.
//!
//! Each request is admitted by the node's core
//! ([`crate::overlay::peers::Peers::admit_request`], the decision the
//! simulator runs too): rate limited per authenticated peer and per source
//! address ([`RateLimit`]), a request over the rate is answered
//! `RateLimited` and not processed, and a connection that goes on
//! regardless ([`RateLimit::max_refused_in_a_row`]) is closed with
//! [`CLOSE_RATE_LIMITED`].
//!
//! What peers do feeds the node's core ([`NodeCore`]): a protocol
//! violation, a forged record in a Store, or a run of over-rate requests
//! bans the peer; the core then closes every connection to it with
//! [`CLOSE_BANNED`] and drops it from the routing table, and until the ban
//! ends its new connections are closed right after the handshake and it
//! is never dialed. A peer's request rate scales with its score.
//!
//! Besides the accept loop, a running node has a pinger (liveness checks
//! of full buckets' oldest residents, as the core asks) and a listen
//! checker (dial-backs that confirm an inbound peer listens where it
//! connected from, before it may enter the routing table).

use super::cert_cache::{CertCache, DEFAULT_CERT_CACHE_ENTRIES};
use super::circuits::{is_circuit_datagram, CircuitService};
use super::conns::Connections;
use super::core::NodeCore;
use super::dialer::Dialer;
use super::disk::{DiskError, DiskStore};
use super::limits::{ConnectionLimiter, ConnectionSlot, Refusal};
use super::maintenance::{maintain, Maintenance};
use super::overlay::OverlayService;
use super::stream::{read_message, write_message, FrameReadError};
use super::tls::{server_config, LocalIdentity, PeerVerifier};
use super::transport::transport_config;
use super::{
    peer_node_id, Limits, NetError, CLOSE_BANNED, CLOSE_NORMAL, CLOSE_PROTOCOL_VIOLATION,
    CLOSE_RATE_LIMITED,
};
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::{HANDSHAKE_TIMEOUT, LEAVE_TIMEOUT, REPUTATION_SAVE_INTERVAL, REQUEST_TIMEOUT};
use crate::overlay::config::OverlayParams;
use crate::overlay::peers::Admission;
use crate::overlay::rate::{RateLimit, RateRefusal, RefusalStreak};
use crate::overlay::record::RecordPolicy;
use crate::overlay::routing::Contact;
use crate::reputation::{Evidence, Policy};
use crate::wire::{ErrorCode, Message};
use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::DirBuilderExt;
use std::sync::Arc;
use std::time::Duration;
use tracing::{debug, info, warn};

/// The records database in a node's data directory.
pub const RECORDS_FILE: &str = "records.redb";

/// How long a violating peer's `Error` message gets to reach it before the
/// connection is closed.
const ERROR_FLUSH_TIMEOUT: Duration = Duration::from_millis(500);

/// What a node needs to start.
#[derive(Debug, Clone)]
pub struct NodeConfig {
    /// The certificate and key the node presents.
    pub identity: LocalIdentity,
    /// Whom the node accepts.
    pub policy: VerifyPolicy,
    /// Connection and stream limits.
    pub limits: Limits,
    /// The overlay this node serves, if any (FindNode, FindValue, Store).
    pub overlay: Option<OverlayParams>,
    /// Directory for the node's records on disk; `None` keeps them in
    /// memory only.
    pub data_dir: Option<std::path::PathBuf>,
}

/// A bound node, not yet serving; [`Node::run`] serves it.
#[derive(Debug)]
pub struct Node {
    endpoint: quinn::Endpoint,
    node_id: NodeId,
    limiter: ConnectionLimiter,
    ctx: Arc<Ctx>,
    maintenance: Maintenance,
    anonymous: std::sync::OnceLock<Arc<super::anonymous::AnonymousCalls>>,
}

/// What every connection task shares.
#[derive(Debug)]
struct Ctx {
    core: Arc<NodeCore>,
    overlay: Option<Arc<OverlayService>>,
    dialer: Arc<Dialer>,
    circuits: Arc<CircuitService>,
}

impl Node {
    /// Binds the UDP socket at `listen` and prepares the endpoint.
    pub fn bind(config: NodeConfig, listen: SocketAddr) -> Result<Self, NetError> {
        let endpoint = super::transport::endpoint(listen, Some(Self::quinn_config(&config)?))
            .map_err(|source| NetError::Bind {
                addr: listen,
                source,
            })?;
        let node_id = config.identity.node_id();
        if let Some(dir) = &config.data_dir {
            create_private_dir(dir)?;
        }
        // A node without an overlay still judges its peers (rate limits,
        // protocol violations): its core has an empty routing table.
        let params = config.overlay.clone().unwrap_or_default();
        let core = Arc::new(NodeCore::new(
            node_id,
            &params,
            Policy::default(),
            config.data_dir.as_deref(),
            Arc::new(Connections::default()),
        ));
        let dialer = Arc::new(Dialer::new(
            endpoint.clone(),
            config.identity.clone(),
            config.policy.clone(),
            transport_config(&config.limits, config.limits.max_streams_per_connection),
            core.clone(),
        ));
        let overlay = match config.overlay.clone() {
            None => None,
            Some(params) => {
                let records = match &config.policy.anchors {
                    None => RecordPolicy::self_certifying(params.name.clone()),
                    Some(_) => RecordPolicy::enrolled(params.name.clone(), config.policy.clone()),
                }
                .with_node_difficulty(params.id_difficulty);
                let mut service = OverlayService::with_core(core.clone(), params, records);
                if let Some(dir) = &config.data_dir {
                    let disk = DiskStore::open(&dir.join(RECORDS_FILE))?;
                    let (with_disk, loaded) = service.with_disk(disk)?;
                    info!(loaded, "records loaded from disk");
                    service = with_disk;
                    // The routing table is a cache: a damaged copy must
                    // not keep the node from starting.
                    match service.restore_contacts() {
                        Ok(restored) => info!(restored, "routing table reloaded from disk"),
                        Err(e) => warn!(error = %e, "could not reload the routing table"),
                    }
                }
                Some(Arc::new(service))
            }
        };
        let circuits = Arc::new(CircuitService::new(
            node_id,
            dialer.clone(),
            core.connections().clone(),
        ));
        Ok(Self {
            endpoint,
            node_id,
            limiter: ConnectionLimiter::new(config.limits),
            ctx: Arc::new(Ctx {
                core,
                overlay,
                dialer,
                circuits,
            }),
            maintenance: Maintenance::default(),
            anonymous: std::sync::OnceLock::new(),
        })
    }

    /// Maintains the overlay with `maintenance` instead of the production
    /// defaults (tests shorten the intervals). Takes effect at
    /// [`Node::run`].
    pub fn with_maintenance(mut self, maintenance: Maintenance) -> Self {
        self.maintenance = maintenance;
        self
    }

    /// Limits each peer's requests to `limit` instead of the default
    /// ([`RateLimit::default`]); counts start afresh.
    pub fn with_rate_limit(self, limit: RateLimit) -> Self {
        self.ctx.core.with(|p, _| p.set_rate_limit(limit));
        self
    }

    /// Bans for the lengths of `policy` instead of the defaults (tests
    /// shorten them); the table's evidence is kept.
    pub fn with_reputation_policy(self, policy: Policy) -> Self {
        self.ctx.core.set_policy(policy);
        self
    }

    /// The node's core (routing table, reputation, enforcement).
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.ctx.core
    }

    fn quinn_config(config: &NodeConfig) -> Result<quinn::ServerConfig, NetError> {
        let cache = Arc::new(CertCache::new(DEFAULT_CERT_CACHE_ENTRIES));
        let verifier = Arc::new(PeerVerifier::with_cache(config.policy.clone(), None, cache));
        let tls = server_config(&config.identity, verifier)?;
        let quic = quinn::crypto::rustls::QuicServerConfig::try_from(tls)
            .map_err(|e| NetError::Tls(rustls::Error::General(e.to_string())))?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(quic));
        server
            .transport_config(transport_config(
                &config.limits,
                config.limits.max_streams_per_connection,
            ))
            .max_incoming(config.limits.max_connections.saturating_mul(2).max(1));
        Ok(server)
    }

    /// Replaces the certificate, policy and limits for new connections:
    /// to rotate a self-signed certificate before it expires, or to apply
    /// a reloaded configuration (connections already open keep theirs).
    pub fn reconfigure(&self, config: &NodeConfig) -> Result<(), NetError> {
        self.endpoint
            .set_server_config(Some(Self::quinn_config(config)?));
        self.limiter.set_limits(config.limits);
        Ok(())
    }

    /// The node's id.
    pub fn node_id(&self) -> NodeId {
        self.node_id
    }

    /// The address the node listens on.
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.endpoint.local_addr()
    }

    /// The authenticated peers connected now, with their addresses.
    pub fn peers(&self) -> Vec<(NodeId, SocketAddr)> {
        self.ctx.core.connections().inbound_peers()
    }

    /// The overlay service, if this node serves an overlay.
    pub fn overlay(&self) -> Option<&Arc<OverlayService>> {
        self.ctx.overlay.as_ref()
    }

    /// Dials peers from this node's endpoint.
    pub fn dialer(&self) -> &Arc<Dialer> {
        &self.ctx.dialer
    }

    /// The node's circuits: its relay role (off until
    /// [`CircuitService::enable_relay`]) and the circuits it builds.
    pub fn circuits(&self) -> &Arc<CircuitService> {
        &self.ctx.circuits
    }

    /// The node's anonymous calling (`p2psip media-test`, and SIP with
    /// `--anonymous-calls`), once set.
    pub fn anonymous(&self) -> Option<&Arc<super::anonymous::AnonymousCalls>> {
        self.anonymous.get()
    }

    /// Sets the node's anonymous calling (once; later calls are ignored).
    pub fn set_anonymous(&self, calls: Arc<super::anonymous::AnonymousCalls>) {
        let _ = self.anonymous.set(calls);
    }

    /// Live inbound connections.
    pub fn connections(&self) -> usize {
        self.limiter.total()
    }

    /// Serves until `shutdown` completes, then closes every connection and
    /// waits (briefly) for the peers to be told. A node with an overlay
    /// maintains it meanwhile ([`Maintenance`]: rejoin through the saved
    /// routing table, hand-over, repair, republish, refresh, expiry) and
    /// saves its routing table at shutdown.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) {
        let maintenance = self.ctx.overlay.clone().map(|overlay| {
            tokio::spawn(maintain(overlay, self.ctx.dialer.clone(), self.maintenance))
        });
        let saver = tokio::spawn(save_reputation_periodically(
            self.ctx.core.clone(),
            REPUTATION_SAVE_INTERVAL,
        ));
        let pinger = tokio::spawn(ping_residents(
            self.ctx.core.clone(),
            self.ctx.dialer.clone(),
        ));

        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                incoming = self.endpoint.accept() => {
                    let Some(incoming) = incoming else { break };
                    let remote = incoming.remote_address();
                    match self.limiter.try_acquire(remote.ip()) {
                        Ok(slot) => {
                            tokio::spawn(serve_connection(incoming, slot, self.ctx.clone()));
                        }
                        Err(why) => {
                            let (limit, why) = match why {
                                Refusal::Total => ("total", "node at its connection limit"),
                                Refusal::PerIp => ("per_ip", "address at its per-IP connection limit"),
                                Refusal::PerNet => ("per_net", "/24 (IPv6 /48) at its connection limit"),
                                Refusal::PerWideNet => ("per_wide_net", "/16 (IPv6 /32) at its connection limit"),
                            };
                            self.ctx.core.traffic().refused.inc([limit]);
                            // debug: spoofed packets can trigger this at
                            // line rate; it must not flood the log.
                            debug!(%remote, why, "connection refused");
                            incoming.refuse();
                        }
                    }
                }
            }
        }
        info!("shutting down");
        saver.abort();
        let _ = saver.await;
        pinger.abort();
        if let Some(task) = maintenance {
            task.abort();
            // Wait until it is gone: the save below is then the last
            // write, and the task holds no handle to the database.
            let _ = task.await;
        }
        if let Some(overlay) = &self.ctx.overlay {
            if overlay.records_len() > 0 {
                let acks = overlay.leave(&self.ctx.dialer, LEAVE_TIMEOUT).await;
                info!(acks, "records handed over before leaving");
            }
            match overlay.save_contacts() {
                Ok(0) => {}
                Ok(saved) => info!(saved, "routing table saved"),
                Err(e) => warn!(error = %e, "could not save the routing table"),
            }
        }
        if let Err(e) = self.ctx.core.save() {
            warn!(error = %e, "could not save the reputation table");
        }
        self.endpoint
            .close(CLOSE_NORMAL.into(), super::CLOSE_REASON_LEAVING);
        let _ = tokio::time::timeout(Duration::from_secs(3), self.endpoint.wait_idle()).await;
    }
}

async fn serve_connection(incoming: quinn::Incoming, slot: ConnectionSlot, ctx: Arc<Ctx>) {
    let conns = ctx.core.connections().clone();
    let remote = incoming.remote_address();
    let traffic = ctx.core.traffic();
    let conn = match tokio::time::timeout(HANDSHAKE_TIMEOUT, incoming).await {
        Ok(Ok(conn)) => conn,
        Ok(Err(e)) => {
            traffic.handshake_failures.inc([handshake_failure(&e)]);
            debug!(%remote, error = %e, "handshake failed");
            return;
        }
        Err(_) => {
            // Dropping the handshake future abandons the connection.
            traffic.handshake_failures.inc(["timeout"]);
            debug!(%remote, "handshake timed out");
            return;
        }
    };
    let Some(peer) = peer_node_id(&conn) else {
        // The verifier accepted a certificate, so this cannot happen; close
        // rather than serve an unauthenticated peer.
        traffic.handshake_failures.inc(["no_identity"]);
        warn!(%remote, "connection without a verifiable peer certificate");
        conn.close(CLOSE_PROTOCOL_VIOLATION.into(), b"no peer identity");
        return;
    };
    if ctx.core.is_banned(&peer) {
        traffic.handshake_failures.inc(["banned"]);
        debug!(peer = %peer.fmt_short(), %remote, "banned peer refused");
        conn.close(CLOSE_BANNED.into(), b"banned");
        return;
    }
    info!(peer = %peer.fmt_short(), %remote, "peer connected");
    let _ = ctx.core.observe(&peer, Evidence::Seen);
    conns.add_inbound(peer, remote, conn.clone());
    // Datagrams: circuits' (docs/protocol.md §11) to the circuit
    // service, media (anchored calls' RTP, §10) to the SIP listener's
    // relay if it runs one. The task ends with the connection.
    {
        let media = ctx.overlay.as_ref().and_then(|o| o.media_handler());
        let (conn, circuits) = (conn.clone(), ctx.circuits.clone());
        tokio::spawn(async move {
            while let Ok(datagram) = conn.read_datagram().await {
                if is_circuit_datagram(&datagram) {
                    circuits.on_datagram(peer, &datagram);
                } else if let Some(media) = &media {
                    media(peer, datagram);
                }
            }
        });
    }
    let mut streak = RefusalStreak::default();
    loop {
        match conn.accept_bi().await {
            // The core decides ([`Peers::admit_request`]): banned meanwhile
            // (by another connection, by what this node's own lookups found
            // of it, or by this request's evidence), over its rate, or served.
            Ok((send, recv)) => match ctx.core.admit_request(&peer, remote.ip(), &mut streak) {
                Admission::Serve => {
                    tokio::spawn(serve_stream(conn.clone(), peer, send, recv, ctx.clone()));
                }
                Admission::Refuse(why) => {
                    traffic.rate_limited.inc(["request"]);
                    debug!(peer = %peer.fmt_short(), %why, "request refused");
                    // Bounded like any request: the peer's concurrent
                    // streams are capped by the transport.
                    tokio::spawn(refuse_stream(send, recv, why, ctx.clone()));
                }
                Admission::Close(why) => {
                    traffic.rate_limited.inc(["disconnect"]);
                    warn!(peer = %peer.fmt_short(), %remote, %why, "requests over the rate limit; disconnecting");
                    conn.close(CLOSE_RATE_LIMITED.into(), b"request rate limit exceeded");
                    break;
                }
                Admission::Banned => {
                    // A new ban closed every connection to the peer
                    // already (the core's enforcement); closing again is
                    // harmless.
                    debug!(peer = %peer.fmt_short(), %remote, "banned peer's request refused");
                    conn.close(CLOSE_BANNED.into(), b"banned");
                    break;
                }
            },
            Err(e) => {
                debug!(peer = %peer.fmt_short(), error = %e, "connection ended");
                // A peer that says it is leaving is forgotten at once (it
                // can only speak for itself: the connection authenticated it).
                if super::peer_is_leaving(&e) {
                    ctx.core.with(|p, _| p.peer_left(&peer));
                }
                break;
            }
        }
    }
    conns.remove_inbound(&conn);
    ctx.circuits.link_closed(peer);
    drop(slot);
}

async fn serve_stream(
    conn: quinn::Connection,
    peer: NodeId,
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    ctx: Arc<Ctx>,
) {
    let request = match tokio::time::timeout(REQUEST_TIMEOUT, read_message(&mut recv)).await {
        Ok(r) => r,
        Err(_) => {
            ctx.core.traffic().served.inc(["unread", "timeout"]);
            debug!(peer = %peer.fmt_short(), "request timed out");
            let _ = recv.stop(0u32.into());
            let _ = send.reset(0u32.into());
            return;
        }
    };
    let kind = match &request {
        Ok(message) => message.kind(),
        Err(_) => "unreadable",
    };
    let response = match request {
        // SIP between the nodes' phones has its own budget.
        Ok(Message::Sip { .. }) if !ctx.core.admit_sip(&peer, conn.remote_address().ip()) => {
            ctx.core.traffic().rate_limited.inc(["sip"]);
            Message::error(
                ErrorCode::RateLimited,
                "SIP messages over the rate limit; not delivered",
            )
        }
        Ok(message) => {
            // The connection's remote address is where the peer says it
            // listens (a node dials from its listening endpoint); the
            // overlay admits it there only once a dial-back confirmed it.
            let contact = Contact {
                id: peer,
                addr: conn.remote_address(),
            };
            // A forged record in a Store is provable misbehaviour: the
            // core bans the peer and closes its connections at once.
            match &ctx.overlay {
                Some(overlay) => {
                    let proof = overlay
                        .admit_requester(&ctx.dialer, contact, &message)
                        .await;
                    match overlay.answer(contact, proof, &message).await {
                        Some(reply) => reply,
                        None => answer(&conn, message),
                    }
                }
                None => answer(&conn, message),
            }
        }
        Err(FrameReadError::Stream(e)) => {
            debug!(peer = %peer.fmt_short(), error = %e, "stream failed");
            return;
        }
        Err(FrameReadError::Wire(e)) => {
            let reply = Message::error(e.code(), &e.to_string());
            ctx.core.traffic().served(kind, &reply);
            if e.is_protocol_violation() {
                warn!(peer = %peer.fmt_short(), error = %e, "protocol violation; disconnecting");
                let _ = recv.stop(0u32.into());
                // Bounded: a peer that withholds flow-control credit must
                // not be able to postpone its own disconnection.
                let _ = tokio::time::timeout(ERROR_FLUSH_TIMEOUT, async {
                    if write_message(&mut send, &reply).await.is_ok() {
                        let _ = send.stopped().await;
                    }
                })
                .await;
                conn.close(CLOSE_PROTOCOL_VIOLATION.into(), e.to_string().as_bytes());
                if let Some(evidence) = Evidence::from_wire_error(&e) {
                    let _ = ctx.core.observe(&peer, evidence);
                }
                return;
            }
            debug!(peer = %peer.fmt_short(), error = %e, "refused request");
            return answer_with(send, peer, reply).await;
        }
    };
    ctx.core.traffic().served(kind, &response);
    answer_with(send, peer, response).await;
}

/// Writes `response` on `send`, within the request time limit.
async fn answer_with(mut send: quinn::SendStream, peer: NodeId, response: Message) {
    match tokio::time::timeout(REQUEST_TIMEOUT, write_message(&mut send, &response)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => debug!(peer = %peer.fmt_short(), error = %e, "could not answer"),
        Err(_) => {
            debug!(peer = %peer.fmt_short(), "answer not taken in time");
            let _ = send.reset(0u32.into());
        }
    }
}

/// Saves the reputation table every `every` when it changed (it is also
/// saved at shutdown).
async fn save_reputation_periodically(core: Arc<NodeCore>, every: Duration) {
    let every = every.max(Duration::from_secs(1));
    loop {
        tokio::time::sleep(every).await;
        let c = core.clone();
        match tokio::task::spawn_blocking(move || c.save()).await {
            Ok(Ok(_)) => {}
            Ok(Err(e)) => warn!(error = %e, "could not save the reputation table"),
            Err(_) => {}
        }
    }
}

/// Checks whether the least recently seen resident of a full bucket is
/// still alive, as the core asks ([`crate::overlay::peers::PeerAction::Ping`]);
/// the routing table keeps it if so (S/Kademlia prefers long-lived peers)
/// and admits the newcomer otherwise. One check at a time.
async fn ping_residents(core: Arc<NodeCore>, dialer: Arc<Dialer>) {
    loop {
        while let Some(resident) = core.next_ping() {
            let ping = Message::Ping {
                nonce: rand::random(),
            };
            let result = dialer.request(resident, &ping).await;
            let alive = matches!(result, Ok(Message::Pong { .. }));
            core.with(|p, now| {
                match &result {
                    // Not the resident's fault: no verdict on it.
                    Err(e)
                        if super::dialer::failure_of(e)
                            == crate::overlay::peers::Failure::Local => {}
                    _ => p.ping_result(now, &resident.id, alive),
                }
            });
        }
        core.ping_queued().await;
    }
}

/// Creates `dir` (and its parents) owner-only if it does not exist.
fn create_private_dir(dir: &std::path::Path) -> Result<(), NetError> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| NetError::from(DiskError::io(dir, e)))
}

/// Answers a request refused for its rate with `RateLimited`. The request
/// is read and discarded first, so that the requester (which writes before
/// it reads) sees the answer rather than a stopped stream.
async fn refuse_stream(
    mut send: quinn::SendStream,
    mut recv: quinn::RecvStream,
    why: RateRefusal,
    ctx: Arc<Ctx>,
) {
    let kind = match tokio::time::timeout(REQUEST_TIMEOUT, read_message(&mut recv)).await {
        Ok(Ok(message)) => message.kind(),
        _ => "unreadable",
    };
    let reply = Message::error(ErrorCode::RateLimited, &why.to_string());
    ctx.core.traffic().served(kind, &reply);
    if tokio::time::timeout(REQUEST_TIMEOUT, write_message(&mut send, &reply))
        .await
        .is_err()
    {
        let _ = send.reset(0u32.into());
    }
}

/// Why an inbound handshake failed, for metrics
/// ([`crate::metrics::HANDSHAKE_FAILURES`]): `tls` when the TLS layer
/// refused (a certificate that does not verify, no certificate, another
/// ALPN), else the connection's fate.
fn handshake_failure(e: &quinn::ConnectionError) -> &'static str {
    use quinn::ConnectionError as E;
    // TLS alerts travel as QUIC's crypto error codes, 0x100 to 0x1ff.
    let crypto = |code: quinn::TransportErrorCode| (0x100..0x200).contains(&u64::from(code));
    match e {
        E::TransportError(t) if crypto(t.code) => "tls",
        E::TransportError(_) => "transport",
        E::ConnectionClosed(c) if crypto(c.error_code) => "tls",
        E::ConnectionClosed(_) | E::ApplicationClosed(_) => "closed_by_peer",
        E::Reset => "reset",
        E::TimedOut => "timeout",
        _ => "other",
    }
}

/// The answer to one well-formed request outside the overlay.
fn answer(conn: &quinn::Connection, request: Message) -> Message {
    match request {
        Message::Ping { nonce } => Message::Pong {
            nonce,
            observed: conn.remote_address(),
        },
        other => Message::error(
            ErrorCode::UnexpectedMessage,
            &format!("not a request: {}", other.name()),
        ),
    }
}

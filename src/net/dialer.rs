//! Dialing peers from the node's own endpoint (so that they see its
//! listening address) and sending them requests, politely.
//!
//! - **Single-flight dialing**: concurrent requests to a peer that is not
//!   connected wait for one dial instead of each starting a handshake.
//! - **Pacing**: requests to one peer stay within the rate a peer allows a
//!   neutral requester by default (a token bucket per peer, the server's
//!   own [`RateLimit::default`]), so that a busy node slows down instead of
//!   being refused and, in the end, banned by the peers it needs.
//!   `Sip` requests (calls between the nodes' phones) are paced by the
//!   peer's SIP budget instead ([`sip_limit`]), as the peer admits them.
//! - **Back-off**: a `RateLimited` or `Busy` answer pauses requests to
//!   that peer, doubling per refusal in a row
//!   ([`DIAL_BACKOFF_BASE`]..=[`DIAL_BACKOFF_MAX`]).
//! - **In-flight caps**: at most [`MAX_IN_FLIGHT_PER_PEER`] requests to
//!   one peer and [`MAX_REQUESTS_IN_FLIGHT`] in all; a request that cannot
//!   get a place within its deadline fails as [`Failure::Local`], which is
//!   no fault of the peer.
//!
//! The dialer judges nothing: [`failure_of`] says what an error means for
//! the core ([`crate::overlay::peers::Failure`]), and the caller reports
//! it. Banned peers are never dialed ([`NetError::Banned`]).

use super::cert_cache::{CertCache, DEFAULT_CERT_CACHE_ENTRIES};
use super::client::PeerConnection;
use super::conns::Connections;
use super::core::NodeCore;
use super::tls::LocalIdentity;
use super::transport::quinn_client_config;
use super::NetError;
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::{
    DIAL_BACKOFF_BASE, DIAL_BACKOFF_MAX, MAX_IN_FLIGHT_PER_PEER, MAX_PACED_PEERS,
    MAX_REQUESTS_IN_FLIGHT, OVERLAY_REQUEST_TIMEOUT,
};
use crate::overlay::peers::Failure;
use crate::overlay::rate::{sip_limit, RateLimit, TokenBucket};
use crate::overlay::routing::Contact;
use crate::wire::{ErrorCode, Message};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;

/// What the dialer keeps per peer it talks to.
#[derive(Debug)]
struct PeerState {
    /// Serialises dials: the first request dials, the others wait for it.
    dialing: Arc<tokio::sync::Mutex<()>>,
    in_flight: Arc<Semaphore>,
    bucket: TokenBucket,
    /// The pace of `Sip` requests: the peer's SIP budget, apart from its
    /// overlay requests' ([`crate::overlay::rate::sip_limit`]).
    sip_bucket: TokenBucket,
    /// No request before this (back-off after a refusal).
    paused_until: Option<Instant>,
    /// Refusals in a row.
    refusals: u32,
    last_used: Instant,
}

/// Dials peers and sends them requests (see the module docs).
#[derive(Debug)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
    identity: LocalIdentity,
    policy: VerifyPolicy,
    cache: Arc<CertCache>,
    transport: Arc<quinn::TransportConfig>,
    core: Arc<NodeCore>,
    conns: Arc<Connections>,
    pace: RateLimit,
    peers: Mutex<HashMap<NodeId, PeerState>>,
    in_flight: Arc<Semaphore>,
    epoch: Instant,
}

/// What a failed request means for the core.
pub fn failure_of(e: &NetError) -> Failure {
    match e {
        NetError::Banned => Failure::Banned,
        NetError::Saturated => Failure::Local,
        NetError::Timeout => Failure::Timeout,
        NetError::Wire(w) if w.is_protocol_violation() => Failure::Violation,
        // An answer of an unknown type: no fault (a newer version).
        NetError::Wire(_) => Failure::Unrecognised,
        NetError::Remote { code, .. } => match code {
            ErrorCode::RateLimited | ErrorCode::Busy => Failure::Overloaded,
            // Another overlay, or none: a node without an overlay answers
            // overlay requests "not a request".
            ErrorCode::WrongOverlay | ErrorCode::UnexpectedMessage => Failure::NotInOverlay,
            // A request type the peer does not know: an older version.
            ErrorCode::UnknownMessageType => Failure::Unrecognised,
            // It refused this request (a record, a key it is not
            // responsible for, a failure of its own): it is alive and of
            // this overlay, so an honest peer that declines a hand-over is
            // not evicted for it.
            _ => Failure::Declined,
        },
        NetError::UnexpectedReply(_) => Failure::NotInOverlay,
        _ => Failure::Unreachable,
    }
}

impl Dialer {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        identity: LocalIdentity,
        policy: VerifyPolicy,
        transport: Arc<quinn::TransportConfig>,
        core: Arc<NodeCore>,
    ) -> Self {
        Self {
            endpoint,
            identity,
            policy,
            cache: Arc::new(CertCache::new(DEFAULT_CERT_CACHE_ENTRIES)),
            transport,
            conns: core.connections().clone(),
            core,
            pace: RateLimit::default(),
            peers: Mutex::new(HashMap::new()),
            in_flight: Arc::new(Semaphore::new(MAX_REQUESTS_IN_FLIGHT)),
            epoch: Instant::now(),
        }
    }

    /// The peers this node has an open dialed connection to.
    pub fn connected(&self) -> Vec<NodeId> {
        self.conns.outbound_peers()
    }

    /// Forgets (and closes) the dialed connection to `contact`.
    pub fn forget(&self, contact: &Contact) {
        self.conns.forget_outbound_at(&contact.id, contact.addr);
    }

    fn peer_state<R>(&self, id: &NodeId, f: impl FnOnce(&mut PeerState) -> R) -> R {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        if !peers.contains_key(id) && peers.len() >= MAX_PACED_PEERS {
            // Forget the least recently used peer that has nothing in
            // flight (its state is that of a peer never seen).
            let idle = peers
                .iter()
                .filter(|(_, s)| Arc::strong_count(&s.in_flight) == 1)
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            if let Some(idle) = idle {
                peers.remove(&idle);
            }
        }
        let pace = self.pace;
        let since = self.epoch.elapsed();
        let state = peers.entry(*id).or_insert_with(|| PeerState {
            dialing: Arc::new(tokio::sync::Mutex::new(())),
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT_PER_PEER)),
            bucket: TokenBucket::full(&pace, since),
            sip_bucket: TokenBucket::full(&sip_limit(), since),
            paused_until: None,
            refusals: 0,
            last_used: now,
        });
        state.last_used = now;
        f(state)
    }

    /// An authenticated connection to `contact` (which must prove its id
    /// at its address), reused while open; one dial at a time per peer.
    pub async fn connect(&self, contact: Contact) -> Result<PeerConnection, NetError> {
        if self.core.is_banned(&contact.id) {
            return Err(NetError::Banned);
        }
        if let Some(conn) = self.conns.outbound_at(&contact.id, contact.addr) {
            return Ok(conn);
        }
        let dialing = self.peer_state(&contact.id, |s| s.dialing.clone());
        let _turn = dialing.lock().await;
        // Dialed by another request meanwhile?
        if let Some(conn) = self.conns.outbound_at(&contact.id, contact.addr) {
            return Ok(conn);
        }
        let config = quinn_client_config(
            &self.identity,
            &self.policy,
            Some(contact.id),
            &self.cache,
            &self.transport,
        )?;
        let connecting = self
            .endpoint
            .connect_with(config, contact.addr, "p2psip.invalid")?;
        let conn = tokio::time::timeout(OVERLAY_REQUEST_TIMEOUT, connecting)
            .await
            .map_err(|_| NetError::Timeout)??;
        let peer = PeerConnection::new(conn).ok_or(NetError::NoPeerIdentity)?;
        self.conns.add_outbound(peer.clone());
        // A peer that leaves says so when it closes: forget it at once
        // (it speaks only for itself: the connection authenticated it).
        // One task per dialed connection; it ends with the connection.
        let (conn, id, core) = (peer.connection().clone(), contact.id, self.core.clone());
        tokio::spawn(async move {
            if super::peer_is_leaving(&conn.closed().await) {
                core.with(|p, _| p.peer_left(&id));
            }
        });
        Ok(peer)
    }

    /// Waits until a request to `id` may go out (pacing, back-off), at
    /// most until `deadline`; a `Sip` request (`sip`) is paced by the
    /// peer's SIP budget, every other by its overlay budget.
    async fn paced(&self, id: &NodeId, deadline: Instant, sip: bool) -> Result<(), NetError> {
        loop {
            let now = Instant::now();
            let since = self.epoch.elapsed();
            let pace = if sip { sip_limit() } else { self.pace };
            let wait = self.peer_state(id, |s| {
                if let Some(until) = s.paused_until {
                    if until > now {
                        return Some(until - now);
                    }
                    s.paused_until = None;
                }
                let bucket = if sip {
                    &mut s.sip_bucket
                } else {
                    &mut s.bucket
                };
                bucket.try_take(&pace, since).err()
            });
            let Some(wait) = wait else {
                return Ok(());
            };
            if now + wait > deadline {
                return Err(NetError::Saturated);
            }
            tokio::time::sleep(wait).await;
        }
    }

    fn note_outcome(&self, id: &NodeId, result: &Result<Message, NetError>) {
        let refused = matches!(
            result,
            Err(NetError::Remote {
                code: ErrorCode::RateLimited | ErrorCode::Busy,
                ..
            })
        );
        self.peer_state(id, |s| {
            if refused {
                s.refusals = s.refusals.saturating_add(1);
                let backoff = DIAL_BACKOFF_BASE
                    .saturating_mul(1 << s.refusals.saturating_sub(1).min(16))
                    .min(DIAL_BACKOFF_MAX);
                s.paused_until = Some(Instant::now() + backoff);
            } else if result.is_ok() {
                s.refusals = 0;
            }
        });
    }

    /// One request to `contact`, bounded in time (waiting for a place
    /// included). An `Error` answer is [`NetError::Remote`]; a request that
    /// could not get a place in time is [`NetError::Saturated`]. Counted
    /// in the node's traffic metrics by kind and outcome.
    pub async fn request(&self, contact: Contact, message: &Message) -> Result<Message, NetError> {
        let result = self.exchange(contact, message).await;
        let outcome = match &result {
            Ok(reply) => crate::metrics::outcome_of(reply),
            Err(e) => failure_of(e).as_str(),
        };
        self.core.traffic().sent.inc([message.kind(), outcome]);
        result
    }

    /// [`Dialer::request`], uncounted.
    async fn exchange(&self, contact: Contact, message: &Message) -> Result<Message, NetError> {
        let deadline = Instant::now() + OVERLAY_REQUEST_TIMEOUT;
        let per_peer = self.peer_state(&contact.id, |s| s.in_flight.clone());
        let places = async {
            let peer_permit = per_peer.clone().acquire_owned().await;
            let node_permit = self.in_flight.clone().acquire_owned().await;
            (peer_permit, node_permit)
        };
        let Ok((Ok(peer_permit), Ok(node_permit))) =
            tokio::time::timeout_at(deadline.into(), places).await
        else {
            return Err(NetError::Saturated);
        };
        let sip = matches!(message, Message::Sip { .. });
        self.paced(&contact.id, deadline, sip).await?;
        let exchange = async {
            let conn = self.connect(contact).await?;
            conn.request(message).await
        };
        let result = match tokio::time::timeout_at(deadline.into(), exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            // The peer answered with an Error (RateLimited, Busy, a
            // refusal): the connection is sound and other requests may be
            // in flight on it, so it stays open.
            Ok(Err(e @ NetError::Remote { .. })) => Err(e),
            Ok(Err(e)) => {
                self.forget(&contact);
                Err(e)
            }
            Err(_) => {
                // A connection that carries other requests to the peer is
                // left to them (and to QUIC's idle timeout): closing it
                // would fail every one of them for this one's slowness.
                // Alone on it, this request may have met a dead path.
                if per_peer.available_permits() + 1 >= MAX_IN_FLIGHT_PER_PEER {
                    self.forget(&contact);
                }
                // A timeout while this node has most of its places taken
                // may be its own slowness, not the peer's.
                if self.in_flight() >= MAX_REQUESTS_IN_FLIGHT / 4 * 3 {
                    Err(NetError::Saturated)
                } else {
                    Err(NetError::Timeout)
                }
            }
        };
        drop((peer_permit, node_permit));
        self.note_outcome(&contact.id, &result);
        result
    }

    /// Requests in flight now, node-wide.
    pub fn in_flight(&self) -> usize {
        MAX_REQUESTS_IN_FLIGHT.saturating_sub(self.in_flight.available_permits())
    }

    /// Seconds until requests to `id` resume after a refusal, if paused.
    pub fn paused_for(&self, id: &NodeId) -> Option<Duration> {
        let now = Instant::now();
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .and_then(|s| s.paused_until)
            .and_then(|until| until.checked_duration_since(now))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn remote(code: ErrorCode) -> Failure {
        failure_of(&NetError::Remote {
            code,
            reason: String::new(),
        })
    }

    #[test]
    fn only_another_overlay_answer_evicts_and_a_declined_request_is_no_fault() {
        assert_eq!(remote(ErrorCode::WrongOverlay), Failure::NotInOverlay);
        assert_eq!(remote(ErrorCode::UnexpectedMessage), Failure::NotInOverlay);
        assert_eq!(remote(ErrorCode::RateLimited), Failure::Overloaded);
        assert_eq!(remote(ErrorCode::Busy), Failure::Overloaded);
        assert_eq!(remote(ErrorCode::UnknownMessageType), Failure::Unrecognised);
        // An honest peer declining a hand-over Store keeps its place.
        for code in [
            ErrorCode::RecordRefused,
            ErrorCode::NotResponsible,
            ErrorCode::Internal,
            ErrorCode::Other(99),
        ] {
            assert_eq!(remote(code), Failure::Declined, "{code:?}");
        }
        assert_eq!(failure_of(&NetError::Timeout), Failure::Timeout);
        assert_eq!(failure_of(&NetError::Saturated), Failure::Local);
    }
}

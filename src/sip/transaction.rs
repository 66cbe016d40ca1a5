//! RFC 3261 §17 transactions, sans-IO: the retransmission and matching
//! rules between the transport and the transaction user (the registrar
//! and proxy).
//!
//! In the manner of quinn-proto, nothing here reads a clock or a socket:
//! the driver passes in what arrived and the time ([`Instant`]s it chooses,
//! so tests need no sleeps), and gets back what to send
//! ([`Transmit`]) and what the transaction user must learn. It asks
//! [`ServerTransactions::poll_timeout`] / [`ClientTransactions::poll_timeout`]
//! when to call `handle_timeout` next.
//!
//! - **Server transactions** (§17.2) absorb retransmitted requests (and
//!   resend the last response where the RFC says so), retransmit final
//!   responses to INVITE over UDP until the ACK (Timer G, H), and keep a
//!   finished transaction long enough to absorb late retransmissions
//!   (Timers I, J). A 2xx to INVITE ends in RFC 6026's Accepted state
//!   (Timer L): retransmitted INVITEs are absorbed, the ACK for the 2xx
//!   is the transaction user's (it is a request of its own).
//! - **Client transactions** (§17.1) retransmit requests over UDP (Timers
//!   A, E), give up after Timer B / F (the transaction user answers 408),
//!   acknowledge non-2xx final responses to INVITE themselves (§17.1.1.3)
//!   and absorb their retransmissions (Timer D, K); 2xx responses to
//!   INVITE are passed on (RFC 6026 Accepted state, Timer M).
//! - Both are **bounded** ([`crate::limits::SIP_MAX_TRANSACTIONS`] each):
//!   a request that would open one more is refused with
//!   [`TxError::Full`] (the driver answers 503 statelessly). A client
//!   INVITE that got a provisional response but no final one ends after
//!   [`TIMER_C`] (§16.6's proxy timer), so nothing lives forever.
//! - Only RFC 3261 branches (`z9hG4bK…`) are matched; a request without
//!   one is refused with [`TxError::NoBranch`] (answer 400): the RFC 2543
//!   matching rules are not implemented.

use super::header::HeaderName;
use super::message::{Headers, Message, Method, Request, Response};
use super::typed::{CSeq, Via, BRANCH_MAGIC_COOKIE};
use super::SipError;
use crate::identity::NodeId;
use crate::limits::SIP_MAX_TRANSACTIONS;
use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

/// How long a client INVITE waits for a final response after a
/// provisional one (RFC 3261 §16.6, Timer C: more than 3 minutes).
pub const TIMER_C: Duration = Duration::from_secs(181);

/// The timer base values of RFC 3261 §17.1.1.1 and Table 4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimerConfig {
    /// RTT estimate (500 ms).
    pub t1: Duration,
    /// Longest retransmission interval of non-INVITE requests and INVITE
    /// responses (4 s).
    pub t2: Duration,
    /// Longest time a message stays in the network (5 s).
    pub t4: Duration,
}

impl Default for TimerConfig {
    fn default() -> Self {
        Self {
            t1: Duration::from_millis(500),
            t2: Duration::from_secs(4),
            t4: Duration::from_secs(5),
        }
    }
}

impl TimerConfig {
    /// 64 × T1: Timers B, F, H, J, L, M.
    fn long(&self) -> Duration {
        self.t1.saturating_mul(64)
    }
}

/// The transport a message came or goes over.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    /// UDP: unreliable, the transactions retransmit.
    Udp,
    /// TCP: reliable, nothing is retransmitted.
    Tcp,
    /// The overlay: to or from the node with this id, inside its
    /// authenticated QUIC connection (reliable). The peer address is the
    /// node's overlay address.
    Overlay(NodeId),
}

impl Transport {
    /// Whether the transport delivers reliably (the transactions then
    /// retransmit nothing and linger for no retransmission).
    pub fn reliable(self) -> bool {
        !matches!(self, Transport::Udp)
    }

    /// The transport token of a Via this node writes for it.
    pub fn via_token(self) -> &'static str {
        match self {
            Transport::Udp => "UDP",
            Transport::Tcp => "TCP",
            // Between nodes SIP rides the overlay's QUIC connections; the
            // Via says so (no phone ever sees it: it stays between nodes).
            Transport::Overlay(_) => "QUIC",
        }
    }
}

/// A transaction's handle, unique within its layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TxId(u64);

/// A message for the driver to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// To whom.
    pub peer: SocketAddr,
    /// Over which transport.
    pub transport: Transport,
    /// What (boxed: a message is large, the handles that carry it small).
    pub message: Box<Message>,
}

/// Why a transaction operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// The layer holds its maximum of transactions (answer 503).
    #[error("too many SIP transactions in progress (at most {0})")]
    Full(usize),
    /// The request's top Via has no RFC 3261 branch (answer 400).
    #[error("the top Via has no branch starting with z9hG4bK")]
    NoBranch,
    /// The message lacks what matching needs (a Via, a CSeq).
    #[error(transparent)]
    Malformed(#[from] SipError),
    /// A transaction with this branch and method is in progress already.
    #[error("a transaction with this branch is in progress already")]
    Duplicate,
    /// No such transaction (it ended).
    #[error("no such transaction (it has ended)")]
    Unknown,
    /// The transaction has sent its final response already.
    #[error("the transaction has answered already")]
    Answered,
    /// A status code outside 100–699.
    #[error("status code {0} is not a SIP response code")]
    BadStatus(u16),
    /// ACK opens no transaction (RFC 3261 §17.1: an ACK for a 2xx is the
    /// transaction user's; one for a non-2xx is the transaction's).
    #[error("ACK is not sent in a transaction of its own")]
    AckIsNotATransaction,
}

/// The top Via and its RFC 3261 branch.
fn top_via(headers: &Headers) -> Result<(Via, String), TxError> {
    let first = headers
        .values(&HeaderName::Via)?
        .into_iter()
        .next()
        .ok_or(SipError::MissingHeader("Via"))?;
    let via = Via::parse(first)?;
    let branch = via
        .branch()
        .filter(|b| b.starts_with(BRANCH_MAGIC_COOKIE) && b.len() > BRANCH_MAGIC_COOKIE.len())
        .ok_or(TxError::NoBranch)?
        .to_owned();
    Ok((via, branch))
}

/// The CSeq of a message.
fn cseq(headers: &Headers) -> Result<CSeq, TxError> {
    let value = headers
        .get(&HeaderName::CSeq)
        .ok_or(SipError::MissingHeader("CSeq"))?;
    Ok(CSeq::parse(value)?)
}

/// The retransmission timer of a transaction: when it fires next and the
/// interval after that.
#[derive(Debug, Clone, Copy)]
struct Retransmit {
    at: Instant,
    interval: Duration,
    /// The longest interval (T2), or none (Timer A doubles without cap).
    cap: Option<Duration>,
}

impl Retransmit {
    fn start(now: Instant, interval: Duration, cap: Option<Duration>) -> Self {
        Self {
            at: now + interval,
            interval,
            cap,
        }
    }

    /// Fired at `now`: the next one at twice the interval (capped).
    fn backoff(&mut self, now: Instant) {
        let doubled = self.interval.saturating_mul(2);
        self.interval = self.cap.map_or(doubled, |cap| doubled.min(cap));
        self.at = now + self.interval;
    }
}

/// What happens when a transaction's deadline passes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum OnDeadline {
    /// It failed (Timers B, F, H, C): the transaction user is told.
    TimedOut,
    /// It is over (Timers D, I, J, K, L, M): removed quietly.
    Ends,
}

/// The timers of one transaction.
#[derive(Debug, Clone, Copy, Default)]
struct Timers {
    retransmit: Option<Retransmit>,
    deadline: Option<(Instant, OnDeadline)>,
}

impl Timers {
    fn next(&self) -> Option<Instant> {
        let r = self.retransmit.map(|r| r.at);
        let d = self.deadline.map(|(at, _)| at);
        match (r, d) {
            (Some(r), Some(d)) => Some(r.min(d)),
            (r, d) => r.or(d),
        }
    }

    /// A deadline `after` from `now`; with `after` zero (a reliable
    /// transport's Timers D, I, J, K) the transaction ends at once.
    fn end_after(&mut self, now: Instant, after: Duration) {
        self.retransmit = None;
        self.deadline = Some((now + after, OnDeadline::Ends));
    }
}

/// What a timeout sweep produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TimerOutput {
    /// Send this again.
    Retransmit(Transmit),
    /// The transaction failed for want of an answer (client: answer the
    /// transaction user's request with 408; server: the ACK to a final
    /// response never came).
    TimedOut(TxId),
}

/// Fires the timers of `timers` due at `now`; returns whether to
/// retransmit and whether the transaction ends (and how).
fn fire(timers: &mut Timers, now: Instant) -> (bool, Option<OnDeadline>) {
    if let Some((at, what)) = timers.deadline {
        if at <= now {
            return (false, Some(what));
        }
    }
    match &mut timers.retransmit {
        Some(r) if r.at <= now => {
            r.backoff(now);
            (true, None)
        }
        _ => (false, None),
    }
}

/// What a layer's table needs of a transaction.
trait Tracked {
    /// What the layer matches messages by.
    type Key: Eq + std::hash::Hash + Clone;
    fn key(&self) -> &Self::Key;
    fn timers(&self) -> &Timers;
    fn timers_mut(&mut self) -> &mut Timers;
    /// What to send when the retransmission timer fires.
    fn retransmission(&self) -> Option<Transmit>;
}

/// The transactions of one layer, by id and by key, at most `max`, and
/// when each has a timer due (a heap with stale entries skipped: a
/// transaction's timers are rescheduled after every change, and an entry
/// counts only if the transaction still has a timer due by then).
#[derive(Debug)]
struct Table<T: Tracked> {
    config: TimerConfig,
    max: usize,
    next_id: u64,
    by_key: HashMap<T::Key, TxId>,
    txs: HashMap<TxId, T>,
    schedule: BinaryHeap<Reverse<(Instant, TxId)>>,
}

impl<T: Tracked> Table<T> {
    fn new(config: TimerConfig, max: usize) -> Self {
        Self {
            config,
            max,
            next_id: 0,
            by_key: HashMap::new(),
            txs: HashMap::new(),
            schedule: BinaryHeap::new(),
        }
    }

    fn find(&mut self, key: &T::Key) -> Option<(TxId, &mut T)> {
        let id = *self.by_key.get(key)?;
        self.txs.get_mut(&id).map(|tx| (id, tx))
    }

    fn contains(&self, key: &T::Key) -> bool {
        self.by_key.contains_key(key)
    }

    /// Adds `tx`, unless the table is full.
    fn insert(&mut self, tx: T) -> Result<TxId, TxError> {
        if self.txs.len() >= self.max {
            return Err(TxError::Full(self.max));
        }
        let id = TxId(self.next_id);
        self.next_id += 1;
        self.by_key.insert(tx.key().clone(), id);
        self.txs.insert(id, tx);
        self.reschedule(id);
        Ok(id)
    }

    /// Notes when transaction `id`'s next timer is due (after a change).
    fn reschedule(&mut self, id: TxId) {
        if let Some(at) = self.txs.get(&id).and_then(|tx| tx.timers().next()) {
            self.schedule.push(Reverse((at, id)));
        }
        self.prune_top();
        // Stale entries below the top stay until they come up; if they
        // pile up (many changes between timeouts), the heap is rebuilt.
        if self.schedule.len() > 4 * self.txs.len() + 1024 {
            self.schedule = self
                .txs
                .iter()
                .filter_map(|(id, tx)| tx.timers().next().map(|at| Reverse((at, *id))))
                .collect();
        }
    }

    /// Drops stale entries from the top, so that the top is when the
    /// next timer is really due.
    fn prune_top(&mut self) {
        while let Some(Reverse((at, id))) = self.schedule.peek().copied() {
            if self.txs.get(&id).and_then(|tx| tx.timers().next()) == Some(at) {
                break;
            }
            self.schedule.pop();
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        self.schedule.peek().map(|Reverse((at, _))| *at)
    }

    /// Fires every timer due at `now`; drops the transactions that end.
    fn handle_timeout(&mut self, now: Instant) -> Vec<TimerOutput> {
        let mut out = Vec::new();
        while let Some(Reverse((at, id))) = self.schedule.peek().copied() {
            if at > now {
                break;
            }
            self.schedule.pop();
            let Some(tx) = self.txs.get_mut(&id) else {
                continue; // ended meanwhile
            };
            if tx.timers().next().is_none_or(|next| next > now) {
                continue; // rescheduled later; its own entry will come
            }
            let (retransmit, end) = fire(tx.timers_mut(), now);
            if retransmit {
                out.extend(tx.retransmission().map(TimerOutput::Retransmit));
            }
            match end {
                Some(what) => {
                    if what == OnDeadline::TimedOut {
                        out.push(TimerOutput::TimedOut(id));
                    }
                    if let Some(tx) = self.txs.remove(&id) {
                        self.by_key.remove(tx.key());
                    }
                }
                None => self.reschedule(id),
            }
        }
        self.prune_top();
        out.sort_by_key(|o| match o {
            TimerOutput::TimedOut(id) => Some(*id),
            TimerOutput::Retransmit(_) => None,
        });
        out
    }
}

// ---------------------------------------------------------------------------
// Server transactions (§17.2)

/// What identifies a server transaction (§17.2.3): the branch, the
/// sent-by of the top Via, and the method (an ACK's is INVITE's).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ServerKey {
    branch: String,
    sent_by: String,
    method: Method,
}

impl ServerKey {
    fn of(request: &Request) -> Result<Self, TxError> {
        let (via, branch) = top_via(&request.headers)?;
        let sent_by = match via.port {
            Some(port) => format!("{}:{port}", via.host),
            None => via.host.to_string(),
        }
        .to_ascii_lowercase();
        let method = match request.method {
            Method::Ack => Method::Invite,
            ref m => m.clone(),
        };
        Ok(Self {
            branch,
            sent_by,
            method,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ServerState {
    /// Non-INVITE, nothing sent yet.
    Trying,
    /// A provisional response sent (INVITE: from the start).
    Proceeding,
    /// A final response sent (INVITE: a non-2xx, awaiting the ACK).
    Completed,
    /// INVITE: the ACK came; absorbing its retransmissions.
    Confirmed,
    /// INVITE: a 2xx sent (RFC 6026); absorbing INVITE retransmissions.
    Accepted,
}

#[derive(Debug)]
struct ServerTx {
    key: ServerKey,
    peer: SocketAddr,
    transport: Transport,
    state: ServerState,
    last_response: Option<Response>,
    timers: Timers,
}

impl Tracked for ServerTx {
    type Key = ServerKey;
    fn key(&self) -> &ServerKey {
        &self.key
    }
    fn timers(&self) -> &Timers {
        &self.timers
    }
    fn timers_mut(&mut self) -> &mut Timers {
        &mut self.timers
    }
    fn retransmission(&self) -> Option<Transmit> {
        self.resend()
    }
}

impl ServerTx {
    fn resend(&self) -> Option<Transmit> {
        self.last_response.as_ref().map(|r| Transmit {
            peer: self.peer,
            transport: self.transport,
            message: Box::new(Message::Response(r.clone())),
        })
    }
}

/// What a request that reached the server transactions means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerReceived {
    /// A new transaction: the transaction user handles the request and
    /// answers with [`ServerTransactions::respond`].
    New(TxId),
    /// A retransmission or the ACK of a non-2xx final response, absorbed;
    /// send this (the last response again), if anything.
    Absorbed(Option<Transmit>),
    /// An ACK that matches no transaction in a state that takes one: the
    /// ACK for a 2xx, which is the transaction user's (a proxy forwards
    /// it, a UAS ends its dialog's retransmissions).
    AckFor2xx,
}

/// The server transactions of one node's SIP listener.
#[derive(Debug)]
pub struct ServerTransactions {
    table: Table<ServerTx>,
}

impl ServerTransactions {
    /// An empty layer with the RFC's timers and at most
    /// [`SIP_MAX_TRANSACTIONS`] transactions.
    pub fn new(config: TimerConfig) -> Self {
        Self::with_capacity(config, SIP_MAX_TRANSACTIONS)
    }

    /// An empty layer holding at most `max` transactions.
    pub fn with_capacity(config: TimerConfig, max: usize) -> Self {
        Self {
            table: Table::new(config, max),
        }
    }

    /// How many transactions are in progress.
    pub fn len(&self) -> usize {
        self.table.txs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.table.txs.is_empty()
    }

    /// A request arrived from `peer` over `transport` at `now`.
    pub fn receive(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        transport: Transport,
        request: &Request,
    ) -> Result<ServerReceived, TxError> {
        let key = ServerKey::of(request)?;
        let t4 = self.table.config.t4;
        if let Some((id, tx)) = self.table.find(&key) {
            let absorbed = ServerReceived::Absorbed(match request.method {
                Method::Ack => match tx.state {
                    ServerState::Completed => {
                        tx.state = ServerState::Confirmed;
                        let after = if transport.reliable() {
                            Duration::ZERO
                        } else {
                            t4
                        };
                        tx.timers.end_after(now, after);
                        None
                    }
                    ServerState::Accepted => return Ok(ServerReceived::AckFor2xx),
                    _ => None,
                },
                // A retransmitted request: the last response again, except
                // in Trying (nothing sent yet) and after the ACK.
                _ => match tx.state {
                    ServerState::Proceeding | ServerState::Completed => tx.resend(),
                    ServerState::Trying | ServerState::Confirmed | ServerState::Accepted => None,
                },
            });
            self.table.reschedule(id);
            return Ok(absorbed);
        }
        if request.method == Method::Ack {
            return Ok(ServerReceived::AckFor2xx);
        }
        let invite = request.method == Method::Invite;
        let id = self.table.insert(ServerTx {
            key,
            peer,
            transport,
            state: if invite {
                ServerState::Proceeding
            } else {
                ServerState::Trying
            },
            last_response: None,
            timers: Timers::default(),
        })?;
        Ok(ServerReceived::New(id))
    }

    /// Whether `request` belongs to a transaction in progress (a
    /// retransmission, or the ACK of a non-2xx answer): such a request
    /// is handed to [`ServerTransactions::receive`] before anything
    /// else, since it opens nothing.
    pub fn holds(&self, request: &Request) -> bool {
        ServerKey::of(request).is_ok_and(|key| self.table.by_key.contains_key(&key))
    }

    /// Where transaction `id`'s request came from: its peer and
    /// transport.
    pub fn peer_of(&self, id: TxId) -> Option<(SocketAddr, Transport)> {
        self.table.txs.get(&id).map(|tx| (tx.peer, tx.transport))
    }

    /// The INVITE transaction a CANCEL is for (§9.2: same branch, sent-by
    /// and Request-URI rules reduce to the key with method INVITE).
    pub fn invite_for_cancel(&self, cancel: &Request) -> Option<TxId> {
        let mut key = ServerKey::of(cancel).ok()?;
        key.method = Method::Invite;
        self.table.by_key.get(&key).copied()
    }

    /// Whether transaction `id` has sent a final response.
    pub fn answered(&self, id: TxId) -> Option<bool> {
        self.table
            .txs
            .get(&id)
            .map(|tx| !matches!(tx.state, ServerState::Trying | ServerState::Proceeding))
    }

    /// The transaction user answers transaction `id` with `response`:
    /// returns what to send now.
    pub fn respond(
        &mut self,
        now: Instant,
        id: TxId,
        response: Response,
    ) -> Result<Transmit, TxError> {
        if !(100..=699).contains(&response.code) {
            return Err(TxError::BadStatus(response.code));
        }
        let config = self.table.config;
        let tx = self.table.txs.get_mut(&id).ok_or(TxError::Unknown)?;
        if !matches!(tx.state, ServerState::Trying | ServerState::Proceeding) {
            return Err(TxError::Answered);
        }
        let invite = tx.key.method == Method::Invite;
        let reliable = tx.transport.reliable();
        match (response.code, invite) {
            (100..=199, _) => tx.state = ServerState::Proceeding,
            (200..=299, true) => {
                tx.state = ServerState::Accepted;
                // Timer L. Over the overlay nothing is retransmitted (the
                // hop is reliable and the peer is a proxy, not a UAS), and
                // the ACK for the 2xx goes to the transaction user
                // whether or not the transaction is still there.
                let after = match tx.transport {
                    Transport::Overlay(_) => Duration::ZERO,
                    _ => config.long(),
                };
                tx.timers.end_after(now, after);
            }
            (_, true) => {
                tx.state = ServerState::Completed;
                if !reliable {
                    // Timer G.
                    tx.timers.retransmit = Some(Retransmit::start(now, config.t1, Some(config.t2)));
                }
                // Timer H.
                tx.timers.deadline = Some((now + config.long(), OnDeadline::TimedOut));
            }
            (_, false) => {
                tx.state = ServerState::Completed;
                // Timer J.
                let after = if reliable {
                    Duration::ZERO
                } else {
                    config.long()
                };
                tx.timers.end_after(now, after);
            }
        }
        tx.last_response = Some(response);
        let transmit = tx.resend().ok_or(TxError::Unknown);
        self.table.reschedule(id);
        transmit
    }

    /// When [`ServerTransactions::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// Fires every timer due at `now`: retransmissions to send, and
    /// transactions that timed out; ended transactions are dropped.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TimerOutput> {
        self.table.handle_timeout(now)
    }
}

// ---------------------------------------------------------------------------
// Client transactions (§17.1)

/// What identifies a client transaction (§17.1.3): the branch of the top
/// Via the request was sent with, and the CSeq method.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ClientKey {
    branch: String,
    method: Method,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ClientState {
    /// Sent, nothing heard (INVITE: Calling; non-INVITE: Trying).
    Calling,
    /// A provisional response heard.
    Proceeding,
    /// A final response heard (INVITE: a non-2xx, acknowledged).
    Completed,
    /// INVITE: a 2xx heard (RFC 6026); further 2xx are passed on.
    Accepted,
}

#[derive(Debug)]
struct ClientTx {
    key: ClientKey,
    request: Request,
    peer: SocketAddr,
    transport: Transport,
    state: ClientState,
    /// The ACK sent for a non-2xx final response, to send again.
    ack: Option<Request>,
    timers: Timers,
}

impl Tracked for ClientTx {
    type Key = ClientKey;
    fn key(&self) -> &ClientKey {
        &self.key
    }
    fn timers(&self) -> &Timers {
        &self.timers
    }
    fn timers_mut(&mut self) -> &mut Timers {
        &mut self.timers
    }
    fn retransmission(&self) -> Option<Transmit> {
        Some(self.transmit(&self.request))
    }
}

impl ClientTx {
    fn transmit(&self, request: &Request) -> Transmit {
        Transmit {
            peer: self.peer,
            transport: self.transport,
            message: Box::new(Message::Request(request.clone())),
        }
    }
}

/// What a response that reached the client transactions means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientReceived {
    /// For the transaction user: the response of transaction `TxId`.
    Deliver(TxId),
    /// A retransmission absorbed; send this (the ACK again), if anything.
    Absorbed(Option<Transmit>),
    /// No transaction sent a request this answers: dropped (§18.1.2).
    Stray,
}

/// The client transactions of one node's SIP side.
#[derive(Debug)]
pub struct ClientTransactions {
    table: Table<ClientTx>,
}

/// The ACK of a non-2xx final response to `invite` (§17.1.1.3): the
/// INVITE's Request-URI, top Via, Call-ID, From, Route and CSeq number,
/// the response's To (with the tag it added).
fn ack_for(invite: &Request, response: &Response) -> Request {
    let mut headers = Headers::new();
    if let Ok((via, _)) = top_via(&invite.headers) {
        headers.push(HeaderName::Via, via.to_string());
    }
    for (name, value) in invite.headers.iter() {
        if matches!(
            name,
            HeaderName::CallId | HeaderName::From | HeaderName::Route
        ) {
            headers.push(name.clone(), value);
        }
    }
    if let Some(to) = response.headers.get(&HeaderName::To) {
        headers.push(HeaderName::To, to);
    }
    let seq = cseq(&invite.headers).map_or(0, |c| c.seq);
    headers.push(HeaderName::CSeq, format!("{seq} ACK"));
    headers.push(HeaderName::MaxForwards, "70");
    Request {
        method: Method::Ack,
        uri: invite.uri.clone(),
        headers,
        body: Vec::new(),
    }
}

impl ClientTransactions {
    /// An empty layer with the RFC's timers and at most
    /// [`SIP_MAX_TRANSACTIONS`] transactions.
    pub fn new(config: TimerConfig) -> Self {
        Self::with_capacity(config, SIP_MAX_TRANSACTIONS)
    }

    /// An empty layer holding at most `max` transactions.
    pub fn with_capacity(config: TimerConfig, max: usize) -> Self {
        Self {
            table: Table::new(config, max),
        }
    }

    /// How many transactions are in progress.
    pub fn len(&self) -> usize {
        self.table.txs.len()
    }

    /// Whether none is.
    pub fn is_empty(&self) -> bool {
        self.table.txs.is_empty()
    }

    /// Starts a transaction sending `request` (its top Via carrying a
    /// fresh RFC 3261 branch) to `peer` over `transport` at `now`: returns
    /// its id and what to send.
    pub fn send(
        &mut self,
        now: Instant,
        peer: SocketAddr,
        transport: Transport,
        request: Request,
    ) -> Result<(TxId, Transmit), TxError> {
        if request.method == Method::Ack {
            return Err(TxError::AckIsNotATransaction);
        }
        let (_, branch) = top_via(&request.headers)?;
        let method = cseq(&request.headers)?.method;
        let key = ClientKey { branch, method };
        if self.table.contains(&key) {
            return Err(TxError::Duplicate);
        }
        let config = self.table.config;
        let invite = request.method == Method::Invite;
        let mut timers = Timers::default();
        if !transport.reliable() {
            // Timer A doubles without cap; Timer E is capped at T2.
            let cap = (!invite).then_some(config.t2);
            timers.retransmit = Some(Retransmit::start(now, config.t1, cap));
        }
        // Timer B / F.
        timers.deadline = Some((now + config.long(), OnDeadline::TimedOut));
        let tx = ClientTx {
            key,
            request,
            peer,
            transport,
            state: ClientState::Calling,
            ack: None,
            timers,
        };
        let transmit = tx.transmit(&tx.request);
        let id = self.table.insert(tx)?;
        Ok((id, transmit))
    }

    /// A response arrived at `now`.
    pub fn receive(&mut self, now: Instant, response: &Response) -> ClientReceived {
        let key = match (top_via(&response.headers), cseq(&response.headers)) {
            (Ok((_, branch)), Ok(cseq)) => ClientKey {
                branch,
                method: cseq.method,
            },
            _ => return ClientReceived::Stray,
        };
        let config = self.table.config;
        let Some((id, tx)) = self.table.find(&key) else {
            return ClientReceived::Stray;
        };
        let received = Self::advance(config, now, id, tx, response);
        self.table.reschedule(id);
        received
    }

    /// What `response` does to transaction `id`.
    fn advance(
        config: TimerConfig,
        now: Instant,
        id: TxId,
        tx: &mut ClientTx,
        response: &Response,
    ) -> ClientReceived {
        let invite = tx.key.method == Method::Invite;
        let reliable = tx.transport.reliable();
        match (tx.state, response.code) {
            (ClientState::Calling | ClientState::Proceeding, 100..=199) => {
                if tx.state == ClientState::Calling {
                    tx.state = ClientState::Proceeding;
                    if invite {
                        // Timer A stops; Timer B gives way to Timer C.
                        tx.timers.retransmit = None;
                        tx.timers.deadline = Some((now + TIMER_C, OnDeadline::TimedOut));
                    } else if let Some(r) = &mut tx.timers.retransmit {
                        // Timer E continues at T2.
                        r.interval = config.t2;
                        r.at = now + config.t2;
                    }
                }
                ClientReceived::Deliver(id)
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=299) if invite => {
                tx.state = ClientState::Accepted;
                tx.timers.end_after(now, config.long()); // Timer M
                ClientReceived::Deliver(id)
            }
            (ClientState::Calling | ClientState::Proceeding, 200..=699) => {
                tx.state = ClientState::Completed;
                if invite {
                    let ack = ack_for(&tx.request, response);
                    tx.ack = Some(ack);
                    // Timer D: at least 32 s over UDP.
                    let after = if reliable {
                        Duration::ZERO
                    } else {
                        Duration::from_secs(32).max(config.long())
                    };
                    tx.timers.end_after(now, after);
                } else {
                    // Timer K.
                    let after = if reliable { Duration::ZERO } else { config.t4 };
                    tx.timers.end_after(now, after);
                }
                ClientReceived::Deliver(id)
            }
            // RFC 6026: further 2xx to an INVITE go to the transaction user.
            (ClientState::Accepted, 200..=299) => ClientReceived::Deliver(id),
            // A retransmitted final response: the ACK again (INVITE).
            (ClientState::Completed, 300..=699) if invite => {
                ClientReceived::Absorbed(tx.ack.as_ref().map(|ack| tx.transmit(ack)))
            }
            _ => ClientReceived::Absorbed(None),
        }
    }

    /// The transaction `response` answers, if one is in progress (by its
    /// top Via's branch and its CSeq method); nothing changes.
    pub fn matching(&self, response: &Response) -> Option<TxId> {
        let (_, branch) = top_via(&response.headers).ok()?;
        let method = cseq(&response.headers).ok()?.method;
        self.table
            .by_key
            .get(&ClientKey { branch, method })
            .copied()
    }

    /// Where transaction `id` sends: its peer and transport.
    pub fn peer_of(&self, id: TxId) -> Option<(SocketAddr, Transport)> {
        self.table.txs.get(&id).map(|tx| (tx.peer, tx.transport))
    }

    /// The transaction that sent `request` (by its top Via's branch and
    /// its CSeq method), if it is still in progress.
    pub fn find(&self, request: &Request) -> Option<TxId> {
        let (_, branch) = top_via(&request.headers).ok()?;
        let method = cseq(&request.headers).ok()?.method;
        self.table
            .by_key
            .get(&ClientKey { branch, method })
            .copied()
    }

    /// The ACK transaction `id` sent for its non-2xx final response, to
    /// send with the response delivered (the first time).
    pub fn ack(&self, id: TxId) -> Option<Transmit> {
        let tx = self.table.txs.get(&id)?;
        tx.ack.as_ref().map(|ack| tx.transmit(ack))
    }

    /// When [`ClientTransactions::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.table.poll_timeout()
    }

    /// Fires every timer due at `now`: requests to send again, and
    /// transactions that timed out (answer their requests with 408);
    /// ended transactions are dropped.
    pub fn handle_timeout(&mut self, now: Instant) -> Vec<TimerOutput> {
        self.table.handle_timeout(now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALICE: &str = "127.0.0.1:5070";

    fn peer() -> SocketAddr {
        ALICE.parse().unwrap()
    }

    fn request(method: &str, branch: &str) -> Request {
        let text = format!(
            "{method} sip:bob@p2psip SIP/2.0\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
             Via: SIP/2.0/UDP 127.0.0.9:5099;branch=z9hG4bKolder\r\n\
             Max-Forwards: 70\r\n\
             From: <sip:alice@p2psip>;tag=a1\r\n\
             To: <sip:bob@p2psip>\r\n\
             Call-ID: call-1@127.0.0.1\r\n\
             CSeq: 7 {method}\r\n\
             Route: <sip:127.0.0.2;lr>\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Request(r) => r,
            other => panic!("not a request: {other:?}"),
        }
    }

    fn response(code: u16, method: &str, branch: &str) -> Response {
        let text = format!(
            "SIP/2.0 {code} Whatever\r\n\
             Via: SIP/2.0/UDP 127.0.0.1:5070;branch={branch}\r\n\
             From: <sip:alice@p2psip>;tag=a1\r\n\
             To: <sip:bob@p2psip>;tag=b2\r\n\
             Call-ID: call-1@127.0.0.1\r\n\
             CSeq: 7 {method}\r\n\
             Content-Length: 0\r\n\r\n"
        );
        match Message::parse(text.as_bytes()).unwrap() {
            Message::Response(r) => r,
            other => panic!("not a response: {other:?}"),
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn new_server_tx(
        layer: &mut ServerTransactions,
        now: Instant,
        transport: Transport,
        req: &Request,
    ) -> TxId {
        match layer.receive(now, peer(), transport, req).unwrap() {
            ServerReceived::New(id) => id,
            other => panic!("expected a new transaction, got {other:?}"),
        }
    }

    #[test]
    fn an_accepted_invite_lingers_for_timer_l_except_over_the_overlay() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let node = Transport::Overlay(crate::identity::NodeId::from_bytes([1; 32]));
        let mut ids = Vec::new();
        for (branch, transport) in [("z9hG4bKu", Transport::Udp), ("z9hG4bKo", node)] {
            let invite = request("INVITE", branch);
            let id = new_server_tx(&mut layer, t0, transport, &invite);
            layer.respond(t0, id, invite.reply(200, Some("t"))).unwrap();
            ids.push(id);
        }
        // The overlay's ends now; the phone's after 64 × T1.
        assert!(layer.handle_timeout(t0).is_empty());
        assert_eq!(layer.len(), 1);
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(32_000)));
        assert!(layer.handle_timeout(t0 + ms(32_000)).is_empty());
        assert!(layer.is_empty());
        assert_eq!(layer.poll_timeout(), None);
    }

    /// Many transactions: the timer heap hands out each one's timers in
    /// order, and stale entries (rescheduled transactions) do not fire.
    #[test]
    fn timers_of_many_transactions_fire_in_order_and_once() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::new(TimerConfig::default());
        let n = 2_000u64;
        for i in 0..n {
            let r = request("OPTIONS", &format!("z9hG4bKm{i}"));
            layer.send(t0 + ms(i), peer(), Transport::Udp, r).unwrap();
        }
        // Half get a final answer (Timer K then ends them after T4).
        for i in (0..n).step_by(2) {
            let ok = response(200, "OPTIONS", &format!("z9hG4bKm{i}"));
            assert!(matches!(
                layer.receive(t0 + ms(n), &ok),
                ClientReceived::Deliver(_)
            ));
        }
        // Timer E's first firing: 500 ms after each send, for the half
        // still waiting, and nothing for the others.
        let fired = layer.handle_timeout(t0 + ms(500 + n));
        let retransmits = fired
            .iter()
            .filter(|o| matches!(o, TimerOutput::Retransmit(_)))
            .count();
        assert_eq!(retransmits as u64, n / 2);
        // After Timer F (32 s) everyone is gone: the unanswered half time
        // out, once each.
        let mut timed_out = 0;
        let mut now = t0 + ms(500 + n);
        while let Some(at) = layer.poll_timeout() {
            assert!(at >= now, "the next timer is never in the past");
            now = at;
            timed_out += layer
                .handle_timeout(now)
                .iter()
                .filter(|o| matches!(o, TimerOutput::TimedOut(_)))
                .count();
        }
        assert_eq!(timed_out as u64, n / 2);
        assert!(layer.is_empty());
    }

    /// Either layer, for stepping through its timers.
    trait Layer {
        fn poll(&self) -> Option<Instant>;
        fn fire(&mut self, now: Instant) -> Vec<TimerOutput>;
    }

    impl Layer for ServerTransactions {
        fn poll(&self) -> Option<Instant> {
            self.poll_timeout()
        }
        fn fire(&mut self, now: Instant) -> Vec<TimerOutput> {
            self.handle_timeout(now)
        }
    }

    impl Layer for ClientTransactions {
        fn poll(&self) -> Option<Instant> {
            self.poll_timeout()
        }
        fn fire(&mut self, now: Instant) -> Vec<TimerOutput> {
            self.handle_timeout(now)
        }
    }

    /// The times (ms after `start`) at which retransmissions come out,
    /// stepping to each poll_timeout up to `until`, and the other outputs.
    fn retransmissions_until(
        layer: &mut impl Layer,
        start: Instant,
        until: Instant,
    ) -> (Vec<u64>, Vec<TimerOutput>) {
        let mut at = Vec::new();
        let mut rest = Vec::new();
        while let Some(t) = layer.poll() {
            if t > until {
                break;
            }
            for o in layer.fire(t) {
                match o {
                    TimerOutput::Retransmit(_) => at.push((t - start).as_millis() as u64),
                    other => rest.push(other),
                }
            }
        }
        (at, rest)
    }

    #[test]
    fn a_non_invite_server_transaction_absorbs_retransmissions_and_lingers_for_timer_j() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let reg = request("REGISTER", "z9hG4bKr1");
        let id = new_server_tx(&mut layer, t0, Transport::Udp, &reg);
        // Trying: a retransmission is absorbed, nothing is sent.
        assert_eq!(
            layer.receive(t0 + ms(500), peer(), Transport::Udp, &reg),
            Ok(ServerReceived::Absorbed(None))
        );
        assert_eq!(layer.answered(id), Some(false));
        let ok = response(200, "REGISTER", "z9hG4bKr1");
        let sent = layer.respond(t0 + ms(600), id, ok.clone()).unwrap();
        assert_eq!(*sent.message, Message::Response(ok.clone()));
        assert_eq!(sent.peer, peer());
        // Completed: a retransmission gets the final response again.
        match layer.receive(t0 + ms(900), peer(), Transport::Udp, &reg) {
            Ok(ServerReceived::Absorbed(Some(t))) => {
                assert_eq!(*t.message, Message::Response(ok.clone()))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(layer.respond(t0 + ms(900), id, ok), Err(TxError::Answered));
        // Timer J: 64 × T1 after the final response, the transaction ends
        // (no retransmission of a non-INVITE response in between).
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(600) + ms(32_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(32_599)), vec![]);
        assert_eq!(layer.len(), 1);
        assert_eq!(layer.handle_timeout(t0 + ms(32_600)), vec![]);
        assert!(layer.is_empty());
        // The same request now is a new transaction.
        new_server_tx(&mut layer, t0 + ms(33_000), Transport::Udp, &reg);
    }

    #[test]
    fn an_invite_server_transaction_retransmits_its_failure_until_the_ack() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let invite = request("INVITE", "z9hG4bKi1");
        let id = new_server_tx(&mut layer, t0, Transport::Udp, &invite);
        let ringing = response(180, "INVITE", "z9hG4bKi1");
        layer.respond(t0, id, ringing.clone()).unwrap();
        // Proceeding: a retransmitted INVITE gets the provisional again.
        match layer.receive(t0 + ms(500), peer(), Transport::Udp, &invite) {
            Ok(ServerReceived::Absorbed(Some(t))) => {
                assert_eq!(*t.message, Message::Response(ringing))
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(layer.poll_timeout(), None, "no timer while proceeding");
        let busy = response(486, "INVITE", "z9hG4bKi1");
        layer.respond(t0 + ms(1_000), id, busy).unwrap();
        // Timer G: T1, doubling, capped at T2 (0.5, 1, 2, 4, 4 s apart).
        let until = t0 + ms(1_000 + 11_500);
        let (at, rest) = retransmissions_until(&mut layer, t0 + ms(1_000), until);
        assert_eq!(at, vec![500, 1_500, 3_500, 7_500, 11_500]);
        assert!(rest.is_empty());
        // The ACK confirms it: retransmissions stop, Timer I (T4) ends it.
        let ack = request("ACK", "z9hG4bKi1");
        assert_eq!(
            layer.receive(t0 + ms(13_000), peer(), Transport::Udp, &ack),
            Ok(ServerReceived::Absorbed(None))
        );
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(18_000)));
        // A retransmitted INVITE after the ACK is absorbed silently.
        assert_eq!(
            layer.receive(t0 + ms(14_000), peer(), Transport::Udp, &invite),
            Ok(ServerReceived::Absorbed(None))
        );
        assert_eq!(layer.handle_timeout(t0 + ms(18_000)), vec![]);
        assert!(layer.is_empty());
    }

    #[test]
    fn an_invite_server_transaction_without_an_ack_times_out_at_timer_h() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let invite = request("INVITE", "z9hG4bKi2");
        let id = new_server_tx(&mut layer, t0, Transport::Udp, &invite);
        layer
            .respond(t0, id, response(404, "INVITE", "z9hG4bKi2"))
            .unwrap();
        let (at, rest) = retransmissions_until(&mut layer, t0, t0 + ms(40_000));
        // G at 0.5, 1.5, 3.5, 7.5, then every 4 s up to H at 32 s.
        assert_eq!(
            at,
            vec![500, 1_500, 3_500, 7_500, 11_500, 15_500, 19_500, 23_500, 27_500, 31_500]
        );
        assert_eq!(rest, vec![TimerOutput::TimedOut(id)]);
        assert!(layer.is_empty());
    }

    #[test]
    fn a_2xx_to_invite_leaves_the_ack_to_the_transaction_user() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let invite = request("INVITE", "z9hG4bKi3");
        let id = new_server_tx(&mut layer, t0, Transport::Udp, &invite);
        layer
            .respond(t0, id, response(200, "INVITE", "z9hG4bKi3"))
            .unwrap();
        // Accepted (RFC 6026): retransmitted INVITEs absorbed, not
        // answered (the transaction user retransmits the 2xx), and the
        // ACK is the transaction user's.
        assert_eq!(
            layer.receive(t0 + ms(500), peer(), Transport::Udp, &invite),
            Ok(ServerReceived::Absorbed(None))
        );
        let ack = request("ACK", "z9hG4bKi3");
        assert_eq!(
            layer.receive(t0 + ms(600), peer(), Transport::Udp, &ack),
            Ok(ServerReceived::AckFor2xx)
        );
        // An ACK matching nothing (a 2xx's ACK has a branch of its own).
        let other_ack = request("ACK", "z9hG4bKfresh");
        assert_eq!(
            layer.receive(t0 + ms(600), peer(), Transport::Udp, &other_ack),
            Ok(ServerReceived::AckFor2xx)
        );
        // Timer L: 64 × T1.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(32_000)), vec![]);
        assert!(layer.is_empty());
    }

    #[test]
    fn over_tcp_nothing_is_retransmitted_and_finished_transactions_end_at_once() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::new(TimerConfig::default());
        let opts = request("OPTIONS", "z9hG4bKt1");
        let id = new_server_tx(&mut layer, t0, Transport::Tcp, &opts);
        layer
            .respond(t0, id, response(200, "OPTIONS", "z9hG4bKt1"))
            .unwrap();
        assert_eq!(layer.poll_timeout(), Some(t0));
        assert_eq!(layer.handle_timeout(t0), vec![]);
        assert!(layer.is_empty());
        // INVITE with a failure over TCP: no Timer G, only H; the ACK
        // ends it at once (Timer I is zero).
        let invite = request("INVITE", "z9hG4bKt2");
        let id = new_server_tx(&mut layer, t0, Transport::Tcp, &invite);
        layer
            .respond(t0, id, response(603, "INVITE", "z9hG4bKt2"))
            .unwrap();
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(32_000)));
        let ack = request("ACK", "z9hG4bKt2");
        layer
            .receive(t0 + ms(5), peer(), Transport::Tcp, &ack)
            .unwrap();
        assert_eq!(layer.handle_timeout(t0 + ms(5)), vec![]);
        assert!(layer.is_empty());
    }

    #[test]
    fn the_server_layer_is_bounded_and_refuses_what_it_cannot_match() {
        let t0 = Instant::now();
        let mut layer = ServerTransactions::with_capacity(TimerConfig::default(), 2);
        let a = new_server_tx(
            &mut layer,
            t0,
            Transport::Udp,
            &request("INVITE", "z9hG4bKa"),
        );
        new_server_tx(
            &mut layer,
            t0,
            Transport::Udp,
            &request("OPTIONS", "z9hG4bKb"),
        );
        assert_eq!(
            layer.receive(t0, peer(), Transport::Udp, &request("OPTIONS", "z9hG4bKc")),
            Err(TxError::Full(2))
        );
        // A retransmission of one in progress is still absorbed when full.
        assert!(matches!(
            layer.receive(t0, peer(), Transport::Udp, &request("OPTIONS", "z9hG4bKb")),
            Ok(ServerReceived::Absorbed(_))
        ));
        // Without an RFC 3261 branch: refused, nothing opened.
        let mut old = request("OPTIONS", "z9hG4bKd");
        old.headers
            .set(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5070;branch=1234");
        assert_eq!(
            layer.receive(t0, peer(), Transport::Udp, &old),
            Err(TxError::NoBranch)
        );
        let mut bare = request("OPTIONS", "z9hG4bKd");
        bare.headers
            .set(HeaderName::Via, "SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bK");
        assert_eq!(
            layer.receive(t0, peer(), Transport::Udp, &bare),
            Err(TxError::NoBranch)
        );
        // CANCEL finds its INVITE; the CANCEL itself opens no INVITE match.
        let cancel = request("CANCEL", "z9hG4bKa");
        assert_eq!(layer.invite_for_cancel(&cancel), Some(a));
        assert_eq!(
            layer.invite_for_cancel(&request("CANCEL", "z9hG4bKnone")),
            None
        );
        let mut odd = response(200, "INVITE", "z9hG4bKa");
        odd.code = 99;
        assert_eq!(layer.respond(t0, a, odd), Err(TxError::BadStatus(99)));
        assert_eq!(
            layer.respond(t0, TxId(999), response(200, "INVITE", "z9hG4bKa")),
            Err(TxError::Unknown)
        );
    }

    #[test]
    fn a_non_invite_client_transaction_retransmits_until_answered_then_lingers_for_timer_k() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::new(TimerConfig::default());
        let reg = request("REGISTER", "z9hG4bKc1");
        let (id, sent) = layer.send(t0, peer(), Transport::Udp, reg.clone()).unwrap();
        assert_eq!(*sent.message, Message::Request(reg.clone()));
        // Timer E: 0.5, 1, 2, 4, 4 s apart.
        let (at, rest) = retransmissions_until(&mut layer, t0, t0 + ms(11_500));
        assert_eq!(at, vec![500, 1_500, 3_500, 7_500, 11_500]);
        assert!(rest.is_empty());
        // A provisional response: delivered; E continues at T2.
        let trying = response(100, "REGISTER", "z9hG4bKc1");
        assert_eq!(
            layer.receive(t0 + ms(12_000), &trying),
            ClientReceived::Deliver(id)
        );
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(16_000)));
        let ok = response(200, "REGISTER", "z9hG4bKc1");
        assert_eq!(
            layer.receive(t0 + ms(13_000), &ok),
            ClientReceived::Deliver(id)
        );
        // Its retransmission is absorbed, not delivered twice.
        assert_eq!(
            layer.receive(t0 + ms(13_100), &ok),
            ClientReceived::Absorbed(None)
        );
        // Timer K: T4.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(18_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(18_000)), vec![]);
        assert!(layer.is_empty());
        assert_eq!(layer.receive(t0 + ms(19_000), &ok), ClientReceived::Stray);
    }

    #[test]
    fn a_client_transaction_with_no_answer_times_out_at_timer_f() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::new(TimerConfig::default());
        let (id, _) = layer
            .send(t0, peer(), Transport::Tcp, request("OPTIONS", "z9hG4bKc2"))
            .unwrap();
        // Over TCP: no retransmission, only Timer F.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(31_999)), vec![]);
        assert_eq!(
            layer.handle_timeout(t0 + ms(32_000)),
            vec![TimerOutput::TimedOut(id)]
        );
        assert!(layer.is_empty());
    }

    #[test]
    fn an_invite_client_transaction_acknowledges_a_failure_itself() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::new(TimerConfig::default());
        let invite = request("INVITE", "z9hG4bKc3");
        let (id, _) = layer.send(t0, peer(), Transport::Udp, invite).unwrap();
        // Timer A doubles without cap: 0.5, 1, 2, 4, 8, 16 s apart.
        let (at, _) = retransmissions_until(&mut layer, t0, t0 + ms(31_999));
        assert_eq!(at, vec![500, 1_500, 3_500, 7_500, 15_500, 31_500]);
        let ringing = response(180, "INVITE", "z9hG4bKc3");
        assert_eq!(
            layer.receive(t0 + ms(31_900), &ringing),
            ClientReceived::Deliver(id)
        );
        // Proceeding: no retransmission, Timer B gives way to Timer C.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(31_900) + TIMER_C));
        let busy = response(486, "INVITE", "z9hG4bKc3");
        assert_eq!(
            layer.receive(t0 + ms(40_000), &busy),
            ClientReceived::Deliver(id)
        );
        let ack = layer.ack(id).expect("an ACK for the failure");
        let Message::Request(ack_req) = &*ack.message else {
            panic!("not a request")
        };
        assert_eq!(ack_req.method, Method::Ack);
        assert_eq!(ack_req.uri.to_string(), "sip:bob@p2psip");
        let headers = &ack_req.headers;
        assert_eq!(
            headers.values(&HeaderName::Via).unwrap(),
            vec!["SIP/2.0/UDP 127.0.0.1:5070;branch=z9hG4bKc3"],
            "only the top Via"
        );
        assert_eq!(
            headers.get(&HeaderName::To),
            Some("<sip:bob@p2psip>;tag=b2")
        );
        assert_eq!(headers.get(&HeaderName::CSeq), Some("7 ACK"));
        assert_eq!(headers.get(&HeaderName::CallId), Some("call-1@127.0.0.1"));
        assert_eq!(headers.get(&HeaderName::Route), Some("<sip:127.0.0.2;lr>"));
        // The ACK parses back as a valid message.
        Message::parse(&ack.message.to_bytes()).unwrap();
        // A retransmitted failure: the ACK again, not delivered.
        assert_eq!(
            layer.receive(t0 + ms(40_500), &busy),
            ClientReceived::Absorbed(Some(ack))
        );
        // Timer D: 32 s.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(72_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(72_000)), vec![]);
        assert!(layer.is_empty());
    }

    #[test]
    fn every_2xx_to_an_invite_reaches_the_transaction_user() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::new(TimerConfig::default());
        let (id, _) = layer
            .send(t0, peer(), Transport::Udp, request("INVITE", "z9hG4bKc4"))
            .unwrap();
        let ok = response(200, "INVITE", "z9hG4bKc4");
        assert_eq!(layer.receive(t0, &ok), ClientReceived::Deliver(id));
        assert_eq!(
            layer.ack(id),
            None,
            "the 2xx's ACK is the transaction user's"
        );
        assert_eq!(
            layer.receive(t0 + ms(500), &ok),
            ClientReceived::Deliver(id)
        );
        // No retransmission of the INVITE after the 2xx; Timer M ends it.
        assert_eq!(layer.poll_timeout(), Some(t0 + ms(32_000)));
        assert_eq!(layer.handle_timeout(t0 + ms(32_000)), vec![]);
        assert!(layer.is_empty());
    }

    #[test]
    fn the_client_layer_refuses_what_it_cannot_track() {
        let t0 = Instant::now();
        let mut layer = ClientTransactions::with_capacity(TimerConfig::default(), 1);
        assert_eq!(
            layer.send(t0, peer(), Transport::Udp, request("ACK", "z9hG4bKx")),
            Err(TxError::AckIsNotATransaction)
        );
        layer
            .send(t0, peer(), Transport::Udp, request("OPTIONS", "z9hG4bKx"))
            .unwrap();
        assert_eq!(
            layer.send(t0, peer(), Transport::Udp, request("OPTIONS", "z9hG4bKx")),
            Err(TxError::Duplicate)
        );
        assert_eq!(
            layer.send(t0, peer(), Transport::Udp, request("OPTIONS", "z9hG4bKy")),
            Err(TxError::Full(1))
        );
        // A response for a transaction never sent, or for another method
        // under the same branch: stray.
        assert_eq!(
            layer.receive(t0, &response(200, "OPTIONS", "z9hG4bKnever")),
            ClientReceived::Stray
        );
        assert_eq!(
            layer.receive(t0, &response(200, "INFO", "z9hG4bKx")),
            ClientReceived::Stray
        );
    }
}

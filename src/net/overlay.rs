//! The overlay over real QUIC: a node's routing table and record store
//! behind the wire's FindNode / FindValue / Store requests, and the async
//! drivers of the sans-IO [`Lookup`] (lookups, stores, join).
//!
//! Peers enter the routing table only from authenticated connections: an
//! inbound connection's remote address is the peer's listening address
//! (a node dials from its listening endpoint), and a peer that answered a
//! request of ours proved its id at the address we dialed. Contacts merely
//! mentioned in answers only feed lookups.
//!
//! # Responsibility and churn
//!
//! A node stores a record only for keys it is responsible for (a `Store`
//! is refused with `NotResponsible` when the node knows
//! [`RESPONSIBILITY_SLACK_FACTOR`] × `replication` nodes closer to the
//! key). Every admission to and eviction from the routing table is queued
//! as a [`ChurnEvent`] (bounded, oldest dropped) for the maintenance task
//! ([`super::maintenance`]), which hands records over to newcomers and
//! re-pushes those an evicted holder had; the planning of that work is
//! here, synchronous and bounded ([`MAX_HANDOVER_RECORDS`] per event).

use super::cert_cache::{CertCache, DEFAULT_CERT_CACHE_ENTRIES};
use super::client::{quinn_client_config, PeerConnection};
use super::commit::Committer;
use super::disk::{DiskError, DiskStore};
use super::reputation::PeerReputation;
use super::tls::LocalIdentity;
use super::{NetError, CLOSE_NORMAL};
use crate::identity::{NodeId, VerifyPolicy};
use crate::limits::{
    DENSITY_WIDEN_ROUNDS, LOOKUP_WIDEN_ROUNDS, MAX_BUCKET_REFRESHES_PER_ROUND,
    MAX_HANDOVER_RECORDS, MAX_LEAVE_STORES_IN_FLIGHT, MAX_PENDING_CHURN_EVENTS,
    MAX_REPUBLISH_RECORDS_PER_ROUND, MAX_SAVED_CONTACTS, RESPONSIBILITY_SLACK_FACTOR,
};
use crate::overlay::config::OverlayParams;
use crate::overlay::density::{self, DenseCluster};
use crate::overlay::key::{Distance, Key};
use crate::overlay::lookup::{spread_across_paths, FaultKind, Lookup};
use crate::overlay::record::{Record, RecordKind, RecordPolicy, VerifiedRecord};
use crate::overlay::routing::{Contact, Eviction, InsertOutcome, RoutingTable};
use crate::overlay::store::{PutOutcome, RecordStore, SlotKey, StoreLimits};
use crate::reputation::{Evidence, Misbehaviour, Policy, Standing, Verdict};
use crate::wire::{ErrorCode, Message};
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::{debug, info};

/// Holders that must have answered with a verified record before a value
/// lookup stops early.
const VALUE_ANSWERS_BEFORE_STOPPING: usize = 2;

/// Records a value lookup keeps, at most.
const MAX_FOUND_RECORDS: usize = 64;

/// How long one overlay request may take before the peer counts as
/// unresponsive.
const OVERLAY_REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// Outbound connections kept open for reuse, at most.
const MAX_CACHED_CONNECTIONS: usize = 256;

/// Dials peers from the node's own endpoint (so that they see its
/// listening address) and keeps a bounded set of open connections.
#[derive(Debug)]
pub struct Dialer {
    endpoint: quinn::Endpoint,
    identity: LocalIdentity,
    policy: VerifyPolicy,
    cache: Arc<CertCache>,
    transport: Arc<quinn::TransportConfig>,
    conns: Mutex<HashMap<NodeId, PeerConnection>>,
    /// Told when a peer we dialed closes with "node shutting down".
    overlay: std::sync::OnceLock<std::sync::Weak<OverlayService>>,
    /// Banned peers are not dialed; failed requests are reported here.
    reputation: Arc<PeerReputation>,
}

impl Dialer {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        identity: LocalIdentity,
        policy: VerifyPolicy,
        transport: Arc<quinn::TransportConfig>,
        reputation: Arc<PeerReputation>,
    ) -> Self {
        Self {
            endpoint,
            identity,
            policy,
            cache: Arc::new(CertCache::new(DEFAULT_CERT_CACHE_ENTRIES)),
            transport,
            conns: Mutex::new(HashMap::new()),
            overlay: std::sync::OnceLock::new(),
            reputation,
        }
    }

    /// The peers this node has an open outbound connection to.
    pub fn connected(&self) -> Vec<NodeId> {
        let conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        conns
            .iter()
            .filter(|(_, c)| c.connection().close_reason().is_none())
            .map(|(id, _)| *id)
            .collect()
    }

    /// Tells `overlay` of the peers we dialed that leave (so that it
    /// forgets them at once), as inbound connections tell the server.
    pub(crate) fn watch_leaving(&self, overlay: &Arc<OverlayService>) {
        let _ = self.overlay.set(Arc::downgrade(overlay));
    }

    /// An authenticated connection to `contact` (which must prove its id),
    /// reused while open.
    /// A banned peer is not dialed ([`NetError::Banned`]).
    pub async fn connect(&self, contact: Contact) -> Result<PeerConnection, NetError> {
        if self.reputation.is_banned(&contact.id) {
            return Err(NetError::Banned);
        }
        if let Some(conn) = self.cached(&contact) {
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
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns.len() >= MAX_CACHED_CONNECTIONS {
            // Drop closed connections first, then an arbitrary one.
            conns.retain(|_, c| c.connection().close_reason().is_none());
            if conns.len() >= MAX_CACHED_CONNECTIONS {
                if let Some(victim) = conns.keys().next().copied() {
                    if let Some(c) = conns.remove(&victim) {
                        c.close();
                    }
                }
            }
        }
        conns.insert(contact.id, peer.clone());
        drop(conns);
        if let Some(overlay) = self.overlay.get().cloned() {
            // Ends with the connection; at most one per cached connection.
            let (conn, id) = (peer.connection().clone(), contact.id);
            tokio::spawn(async move {
                if super::peer_is_leaving(&conn.closed().await) {
                    if let Some(overlay) = overlay.upgrade() {
                        overlay.peer_left(&id);
                    }
                }
            });
        }
        Ok(peer)
    }

    /// The open connection to `contact`, only if it goes to the
    /// contact's address: a contact mentioned with a wrong address must
    /// not borrow the connection to the real peer (its answer would then
    /// seem to prove that address).
    fn cached(&self, contact: &Contact) -> Option<PeerConnection> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.get(&contact.id) {
            Some(c) if c.connection().close_reason().is_some() => {
                conns.remove(&contact.id);
                None
            }
            Some(c) if same_addr(c.connection().remote_address(), contact.addr) => Some(c.clone()),
            _ => None,
        }
    }

    /// Forgets the connection to `contact` if it goes to the contact's
    /// address (a failure at another address says nothing about it).
    fn forget_at(&self, contact: &Contact) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if conns
            .get(&contact.id)
            .is_some_and(|c| same_addr(c.connection().remote_address(), contact.addr))
        {
            if let Some(c) = conns.remove(&contact.id) {
                c.connection().close(CLOSE_NORMAL.into(), b"");
            }
        }
    }

    /// Forgets (and closes) the connection to `id`.
    pub fn forget(&self, id: &NodeId) {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(c) = conns.remove(id) {
            c.connection().close(CLOSE_NORMAL.into(), b"");
        }
    }

    /// One request to `contact`, bounded in time.
    ///
    /// Reports to the reputation table what needs no look at the answer's
    /// content: a Pong or a Stored is [`Evidence::Answered`]; a timeout, a
    /// lost connection or a refusal is [`Evidence::Unresponsive`]; broken
    /// framing is [`Evidence::ProtocolViolation`] (a ban). Answers with
    /// content (Nodes, Value) are judged by the caller, which verifies
    /// them.
    pub async fn request(&self, contact: Contact, message: &Message) -> Result<Message, NetError> {
        let exchange = async {
            let conn = self.connect(contact).await?;
            conn.request(message).await
        };
        let result = match tokio::time::timeout(OVERLAY_REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            // The peer answered with an Error (RateLimited, Busy, a
            // refusal): the connection is sound and other requests may be
            // in flight on it, so it stays open.
            Ok(Err(e @ NetError::Remote { .. })) => Err(e),
            Ok(Err(e)) => {
                self.forget_at(&contact);
                Err(e)
            }
            Err(_) => {
                self.forget_at(&contact);
                Err(NetError::Timeout)
            }
        };
        let evidence = match &result {
            Ok(Message::Pong { .. } | Message::Stored { .. }) => Some(Evidence::Answered),
            Ok(_) => None,
            // Not contacted at all.
            Err(NetError::Banned) => None,
            Err(NetError::Wire(e)) => {
                Some(Evidence::from_wire_error(e).unwrap_or(Evidence::Unresponsive))
            }
            Err(NetError::Remote { code, .. }) => match code {
                ErrorCode::RateLimited | ErrorCode::Busy => Some(Evidence::Unresponsive),
                _ => None,
            },
            Err(_) => Some(Evidence::Unresponsive),
        };
        if let Some(evidence) = evidence {
            let verdict = self.reputation.observe(&contact.id, evidence);
            self.enforce(&contact.id, verdict);
        }
        result
    }

    /// Acts on a verdict about `peer`: a ban closes the connection to it
    /// and drops it from the routing table.
    pub(crate) fn enforce(&self, peer: &NodeId, verdict: Verdict) {
        if let Verdict::Disconnect { .. } = verdict {
            self.forget(peer);
            if let Some(overlay) = self.overlay.get().and_then(|o| o.upgrade()) {
                overlay.peer_banned(peer);
            }
        }
    }
}

/// Whether two addresses are the same endpoint, an IPv4 address and its
/// IPv4-mapped IPv6 form (as a dual-stack socket reports it) alike.
fn same_addr(a: std::net::SocketAddr, b: std::net::SocketAddr) -> bool {
    a.port() == b.port() && a.ip().to_canonical() == b.ip().to_canonical()
}

struct State {
    table: RoutingTable,
    store: RecordStore,
    /// Admissions and evictions not yet seen by the maintenance task, at
    /// most [`MAX_PENDING_CHURN_EVENTS`].
    events: VecDeque<ChurnEvent>,
}

/// A change of the routing table that may move records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChurnEvent {
    /// A contact entered the routing table: it may now be among the
    /// closest nodes to keys this node holds (hand-over).
    Admitted(Contact),
    /// A contact left the routing table: records it held need a new
    /// holder (repair).
    Evicted(Contact),
}

/// What to republish of one record: its encoding, the nodes to offer it
/// to (closest first, spares included) and how many acknowledgements
/// make it fully replicated.
#[derive(Debug, Clone)]
pub(crate) struct RepublishPlan {
    pub(crate) encoded: Vec<u8>,
    pub(crate) candidates: Vec<Contact>,
    pub(crate) needed: usize,
}

/// Where a record lives on disk: key, kind and owner, as in the store.
fn slot_of(key: &Key, kind: RecordKind, owner: &[u8; 32]) -> Vec<u8> {
    let mut slot = Vec::with_capacity(32 + 8 + 32);
    slot.extend_from_slice(&key.0);
    slot.extend_from_slice(&kind.to_u64().to_be_bytes());
    slot.extend_from_slice(owner);
    slot
}

/// A node's overlay: its parameters, routing table and record store.
pub struct OverlayService {
    params: OverlayParams,
    local: NodeId,
    records: RecordPolicy,
    state: Mutex<State>,
    epoch: Instant,
    disk: Option<Arc<DiskStore>>,
    /// Group-commits the record writes to `disk`.
    commit: Option<Committer>,
    /// Contacts reloaded from disk, to rejoin through once.
    reloaded: Mutex<Vec<Contact>>,
    /// Wakes the maintenance task when an event is queued.
    wake: tokio::sync::Notify,
    /// What this node observed of its peers.
    reputation: Arc<PeerReputation>,
}

impl std::fmt::Debug for OverlayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayService")
            .field("overlay", &self.params.name)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// What a lookup is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Purpose {
    /// Finding nodes, or reading records (a FindValue stops once two
    /// holders answered, and widens when it found nothing).
    Read,
    /// Placing a record: a FindValue that goes on to the closest nodes
    /// and collects the holders of any version ([`Found::holders`]).
    Place,
}

/// What a lookup found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The closest nodes that answered, closest first (of the first
    /// lookup, when density detection repeated it).
    pub closest: Vec<Contact>,
    /// The closest nodes that answered on each disjoint path (of the first
    /// lookup's last widening round), closest first: see
    /// [`spread_across_paths`].
    pub per_path: Vec<Vec<Contact>>,
    /// Records (encoded, verified) found under the key, for FindValue.
    pub records: Vec<Vec<u8>>,
    /// The implausibly dense cluster of ids found around the key, if any
    /// (a targeted Sybil or content-eclipse attack; see
    /// [`crate::overlay::density`]): the lookup was repeated with it set
    /// aside.
    pub dense: Option<DenseCluster>,
    /// With `dense`: the closest nodes that answered on each path of the
    /// last repeat, the cluster set aside: where extra replicas go.
    pub beyond: Vec<Vec<Contact>>,
    /// The ids the (first) lookup heard of nearest the key, answered or
    /// not: the input of density detection ([`Lookup::known_closest`]).
    known: Vec<NodeId>,
    /// For a placement lookup ([`OverlayService::publish`]): the nodes
    /// that answered with a verified record under the key (over all
    /// rounds), which `publish` also sends the new record to, so that
    /// holders of older versions do not go on serving them.
    pub holders: Vec<Contact>,
}

impl OverlayService {
    /// The overlay service of node `local`.
    pub fn new(local: NodeId, params: OverlayParams, records: RecordPolicy) -> Self {
        Self {
            state: Mutex::new(State {
                table: RoutingTable::new(local, &params),
                store: RecordStore::new(StoreLimits::default()),
                events: VecDeque::new(),
            }),
            params,
            local,
            records,
            epoch: Instant::now(),
            disk: None,
            commit: None,
            reloaded: Mutex::new(Vec::new()),
            wake: tokio::sync::Notify::new(),
            reputation: Arc::new(PeerReputation::in_memory(Policy::default())),
        }
    }

    /// Uses `reputation` (the node's, shared with its server and dialer)
    /// instead of a table of its own.
    pub fn with_reputation(mut self, reputation: Arc<PeerReputation>) -> Self {
        self.reputation = reputation;
        self
    }

    /// The reputation table this overlay reports to and consults.
    pub fn reputation(&self) -> &Arc<PeerReputation> {
        &self.reputation
    }

    /// Drops a peer the reputation table banned from the routing table.
    pub fn peer_banned(&self, id: &NodeId) {
        self.evict(id);
    }

    /// Records `evidence` about `peer` and acts on the verdict (a banned
    /// peer leaves the routing table; its connections are closed by the
    /// caller, which holds them).
    fn report(&self, peer: &NodeId, evidence: Evidence) -> Verdict {
        let verdict = self.reputation.observe(peer, evidence);
        if let Verdict::Disconnect { .. } = verdict {
            self.peer_banned(peer);
        }
        verdict
    }

    /// Keeps records in `disk` too: loads (and verifies again) what it
    /// holds, and acknowledges a Store only once it is written there.
    /// Returns the service and how many records were loaded.
    pub fn with_disk(mut self, disk: DiskStore) -> Result<(Self, usize), DiskError> {
        let now = crate::unix_now().max(0) as u64;
        let mut loaded = 0;
        let mut stale: Vec<Vec<u8>> = Vec::new();
        // Row by row: the rows are not all held in memory at once.
        disk.for_each_record(|slot, encoded| {
            let verified = Record::decode(encoded).and_then(|r| r.verify(&self.records, now));
            match verified {
                Ok(v) if slot == slot_of(v.key(), v.kind(), v.owner()).as_slice() => {
                    if self.state().store.put(v, now).is_ok() {
                        loaded += 1;
                    }
                }
                Ok(_) => debug!("record under the wrong slot on disk; dropped"),
                Err(e) => {
                    debug!(error = %e, "stored record no longer verifies; dropped");
                    stale.push(slot.to_vec());
                }
            }
        })?;
        if !stale.is_empty() {
            let _ = disk.remove_many(&stale);
        }
        let disk = Arc::new(disk);
        self.commit = Some(Committer::start(disk.clone())?);
        self.disk = Some(disk);
        Ok((self, loaded))
    }

    /// The overlay's parameters.
    pub fn params(&self) -> &OverlayParams {
        &self.params
    }

    /// The rules records must meet to be stored here.
    pub fn record_policy(&self) -> &RecordPolicy {
        &self.records
    }

    /// The live records this node holds under `key` of `kind` (encoded).
    pub fn local_records(&self, key: &Key, kind: RecordKind) -> Vec<Vec<u8>> {
        let now = crate::unix_now().max(0) as u64;
        self.state()
            .store
            .get(key, kind, now)
            .into_iter()
            .map(|r| r.encoded().to_vec())
            .collect()
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Learns a peer seen on an authenticated connection. Returns the
    /// resident to ping when its bucket is full.
    /// A banned peer is not admitted. In a full bucket the peer takes the
    /// place of a resident only if the reputation table prefers it
    /// ([`PeerReputation::prefer_resident`]: a banned or suspect resident,
    /// a newcomer in better standing); otherwise it waits for the oldest
    /// resident to fail a ping, as in Kademlia.
    pub fn learn(&self, peer: Contact) -> Option<Contact> {
        if self.reputation.is_banned(&peer.id) {
            return None;
        }
        let now = self.now_ms();
        let mut state = self.state();
        let (outcome, displaced) = state.table.insert_displacing(peer, now, |resident| {
            !self.reputation.prefer_resident(resident, &peer.id)
        });
        if let Some(d) = displaced {
            debug!(peer = %d.id.fmt_short(), newcomer = %peer.id.fmt_short(), "resident in bad standing displaced");
            self.note(&mut state, ChurnEvent::Evicted(d));
        }
        match outcome {
            InsertOutcome::Inserted => {
                self.note(&mut state, ChurnEvent::Admitted(peer));
                None
            }
            InsertOutcome::Full { ping } => Some(ping),
            InsertOutcome::Refused(why) => {
                debug!(peer = %peer.id.fmt_short(), %why, "not admitted to the routing table");
                None
            }
            InsertOutcome::Refreshed => None,
        }
    }

    /// Queues a churn event for the maintenance task (dropping the oldest
    /// when full: the periodic republish covers what it would have done).
    fn note(&self, state: &mut State, event: ChurnEvent) {
        if state.events.len() >= MAX_PENDING_CHURN_EVENTS {
            state.events.pop_front();
        }
        state.events.push_back(event);
        self.wake.notify_one();
    }

    fn note_eviction(&self, state: &mut State, eviction: Option<Eviction>) {
        let Some(e) = eviction else {
            return;
        };
        if let Some(evicted) = e.evicted {
            debug!(peer = %evicted.id.fmt_short(), "evicted from the routing table");
            self.note(state, ChurnEvent::Evicted(evicted));
        }
        if let Some(admitted) = e.admitted {
            self.note(state, ChurnEvent::Admitted(admitted));
        }
    }

    /// The oldest churn event not yet handled.
    pub(crate) fn next_event(&self) -> Option<ChurnEvent> {
        self.state().events.pop_front()
    }

    /// Completes when a churn event may have been queued since the last
    /// call (a queued notification is never lost).
    pub(crate) async fn event_queued(&self) {
        self.wake.notified().await;
    }

    /// Reports a liveness check of a resident.
    pub fn ping_result(&self, id: &NodeId, alive: bool) {
        let now = self.now_ms();
        let mut state = self.state();
        let eviction = state.table.on_ping_result(id, alive, now);
        self.note_eviction(&mut state, Some(eviction));
    }

    /// Counts an unanswered request; the peer is dropped after several in
    /// a row.
    pub fn forget(&self, id: &NodeId) {
        let now = self.now_ms();
        let mut state = self.state();
        let eviction = state.table.on_failure_evicting(id, now);
        self.note_eviction(&mut state, eviction);
    }

    /// Removes a contact from the routing table at once (it answered as no
    /// node of this overlay would).
    fn evict(&self, id: &NodeId) {
        let mut state = self.state();
        if let Some(evicted) = state.table.remove(id) {
            self.note(&mut state, ChurnEvent::Evicted(evicted));
        }
    }

    /// The `n` closest known contacts to `target`.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        self.state().table.closest(target, n)
    }

    /// Contacts in the routing table.
    pub fn table_len(&self) -> usize {
        self.state().table.len()
    }

    /// Records held.
    pub fn records_len(&self) -> usize {
        self.state().store.len()
    }

    /// The routing table: (bucket, contact) pairs.
    pub fn routes(&self) -> Vec<(usize, Contact)> {
        self.state()
            .table
            .entries()
            .map(|(b, c, _, _)| (b, c))
            .collect()
    }

    /// Answers one overlay request from the authenticated `peer`; `None` if
    /// the message is not an overlay request. A request naming this
    /// overlay also teaches the routing table about the peer (a peer of
    /// another overlay is never admitted); the second value is the resident
    /// to ping when the peer's bucket is full. A Store is answered once
    /// the record is durable (with a data directory).
    pub async fn answer(
        &self,
        peer: Contact,
        request: &Message,
    ) -> Option<(Message, Option<Contact>)> {
        let overlay = match request {
            Message::FindNode { overlay, .. }
            | Message::FindValue { overlay, .. }
            | Message::Store { overlay, .. } => overlay,
            _ => return None,
        };
        let to_ping = if *overlay == self.params.name {
            self.learn(peer)
        } else {
            None
        };
        self.reply(&peer.id, request)
            .await
            .map(|reply| (reply, to_ping))
    }

    async fn reply(&self, from: &NodeId, request: &Message) -> Option<Message> {
        let wrong = |overlay: &str| {
            (overlay != self.params.name).then(|| {
                Message::error(
                    ErrorCode::WrongOverlay,
                    &format!("this node serves overlay {:?}", self.params.name),
                )
            })
        };
        let k = self.params.k;
        Some(match request {
            Message::FindNode { overlay, target } => {
                wrong(overlay).unwrap_or_else(|| Message::Nodes {
                    contacts: self.closest(&Key(*target), k),
                })
            }
            Message::FindValue { overlay, key, kind } => wrong(overlay).unwrap_or_else(|| {
                let key = Key(*key);
                let records = match RecordKind::from_u64(*kind) {
                    Some(kind) => self
                        .state()
                        .store
                        .get(&key, kind, crate::unix_now() as u64)
                        .into_iter()
                        .take(crate::limits::MAX_RECORDS_PER_ANSWER)
                        .map(|r| r.encoded().to_vec())
                        .collect(),
                    None => Vec::new(),
                };
                Message::Value {
                    records,
                    contacts: self.closest(&key, k),
                }
            }),
            Message::Store { overlay, record } => match wrong(overlay) {
                Some(refusal) => refusal,
                None => {
                    let (reply, refused) = self.store_checked(record, true).await;
                    // Honest nodes verify what they pass on: a forged
                    // record is the sender's doing.
                    if let Some(evidence) = refused.filter(Evidence::is_misbehaviour) {
                        let _ = self.report(from, evidence);
                    }
                    reply
                }
            },
            _ => return None,
        })
    }

    /// How many nodes this node may know closer to a key than itself and
    /// still store its records.
    ///
    /// Why a slack over `replication`: the `replication` closest nodes a
    /// publisher's lookup finds are not exactly the ones each of them
    /// counts as closer. A table holds contacts that have died and are not
    /// evicted yet, and nodes a lookup missed; a bound of exactly
    /// `replication` would refuse honest Stores at the margin and stall
    /// hand-over and repair during churn. Twice as many keeps a node from
    /// being made to store arbitrary keys far from its id, which is what
    /// the rule is for (loosely for keys in its farthest buckets: see
    /// [`OverlayService::is_responsible`]).
    fn responsibility_bound(&self) -> usize {
        self.params
            .replication
            .max(1)
            .saturating_mul(RESPONSIBILITY_SLACK_FACTOR)
    }

    /// Known contacts strictly closer to `key` than this node.
    fn closer_than_local(&self, key: &Key) -> usize {
        let own = key.distance(&Key::from(self.local));
        self.state().table.count_closer(key, &own)
    }

    /// [`OverlayService::closer_than_local`], not counting the contacts of
    /// an implausibly dense cluster around `key`: a content-eclipse
    /// attacker must not be able to make every honest node beyond its
    /// cluster refuse the replicas a writer places there.
    fn closer_than_local_outside_clusters(&self, key: &Key) -> usize {
        let closer = self.closer_than_local(key);
        let bound = self.responsibility_bound();
        if closer < bound {
            return closer;
        }
        let near: Vec<NodeId> = self
            .closest(key, self.params.k.max(bound))
            .iter()
            .map(|c| c.id)
            .collect();
        match density::dense_cluster(key, &near, self.estimated_size(), self.params.k) {
            Some(cluster) => {
                let own = key.distance(&Key::from(self.local));
                let state = self.state();
                let all = state.table.closest(key, closer);
                all.iter()
                    .filter(|c| key.distance(&Key::from(c.id)) < own)
                    .filter(|c| !cluster.contains(key, &c.id))
                    .count()
            }
            None => closer,
        }
    }

    /// The overlay's size as this node estimates it from its own
    /// neighbourhood ([`density::estimate_network_size`]).
    pub fn estimated_size(&self) -> f64 {
        let own = Key::from(self.local);
        let near: Vec<NodeId> = self
            .closest(&own, self.params.k.saturating_add(1))
            .iter()
            .map(|c| c.id)
            .collect();
        density::estimate_network_size(&own, &near)
    }

    /// Whether this node stores records under `key`: it knows fewer than
    /// [`RESPONSIBILITY_SLACK_FACTOR`] × `replication` nodes closer to it,
    /// not counting an implausibly dense cluster around the key
    /// ([`density::dense_cluster`]). With `replication` at or above `k`
    /// this bounds little for keys in the node's farthest buckets (a
    /// bucket holds at most `k`): per-owner quotas and the store's size
    /// are what bound storage there.
    pub fn is_responsible(&self, key: &Key) -> bool {
        self.closer_than_local_outside_clusters(key) < self.responsibility_bound()
    }

    /// Verifies and stores a record; with `check_responsible`, first
    /// refuses keys this node is not responsible for (checked before the
    /// signature, so that refusing costs little).
    async fn store_local(&self, encoded: &[u8], check_responsible: bool) -> Message {
        self.store_checked(encoded, check_responsible).await.0
    }

    /// [`OverlayService::store_local`], also telling what a refused
    /// record says about its sender ([`Evidence::from_record_error`]).
    async fn store_checked(
        &self,
        encoded: &[u8],
        check_responsible: bool,
    ) -> (Message, Option<Evidence>) {
        let now = crate::unix_now().max(0) as u64;
        let record = match Record::decode(encoded) {
            Ok(r) => r,
            Err(e) => {
                return (
                    Message::error(ErrorCode::RecordRefused, &e.to_string()),
                    Some(Evidence::from_record_error(&e)),
                )
            }
        };
        if check_responsible {
            let closer = self.closer_than_local_outside_clusters(&record.key);
            let bound = self.responsibility_bound();
            if closer >= bound {
                let reply = Message::error(
                    ErrorCode::NotResponsible,
                    &format!(
                        "this node knows {closer} nodes closer to the key (it refuses at {bound})"
                    ),
                );
                return (reply, None);
            }
        }
        let verified = match record.verify(&self.records, now) {
            Ok(v) => v,
            Err(e) => {
                return (
                    Message::error(ErrorCode::RecordRefused, &e.to_string()),
                    Some(Evidence::from_record_error(&e)),
                )
            }
        };
        let seq = verified.seq();
        let slot = slot_of(verified.key(), verified.kind(), verified.owner());
        // With a data directory: room in the commit queue first (waiting
        // while it is full), then the record enters the store and its
        // write the queue under one lock, so that a slot's writes reach
        // the disk in the order the store took them. The commit itself is
        // awaited without the lock (lookups are not held up behind it).
        let room = match &self.commit {
            Some(commit) => match commit.reserve().await {
                Ok(room) => Some(room),
                Err(e) => {
                    tracing::warn!(error = %e, "could not persist a record");
                    let reply = Message::error(ErrorCode::Internal, "record not stored durably");
                    return (reply, None);
                }
            },
            None => None,
        };
        let (outcome, durable) = {
            let mut state = self.state();
            let outcome = state.store.put(verified, now);
            let durable = match (&outcome, room) {
                // Held already: acknowledged once the write that stored it
                // (perhaps still queued) has committed.
                (Ok(PutOutcome::Unchanged), Some(room)) => Some(room.barrier()),
                (Ok(_), Some(room)) => Some(room.put(slot, encoded.to_vec())),
                _ => None,
            };
            (outcome, durable)
        };
        // A refusal by the store (an older sequence, a quota) proves
        // nothing about the sender: it may not have seen the newer record.
        let reply = match outcome {
            Ok(_) => match durable {
                // Acknowledged only once durable.
                Some(pending) => match pending.wait().await {
                    Ok(()) => Message::Stored { seq },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not persist a record");
                        Message::error(ErrorCode::Internal, "record not stored durably")
                    }
                },
                None => Message::Stored { seq },
            },
            Err(e) => Message::error(ErrorCode::RecordRefused, &e.to_string()),
        };
        (reply, None)
    }

    /// Runs a lookup for `target` over `dialer`; with `kind`, a FindValue
    /// lookup that stops once two holders answered with verified records.
    ///
    /// Reputation-weighted: the seeds are the `k` best of the `2k` closest
    /// known contacts, by standing first, then outbound before inbound
    /// ([`RoutingTable::mark_outbound`]), then distance (banned ones
    /// never), suspect peers are asked only after trusted ones
    /// ([`Lookup::demote`]), and every answer is judged: verified contacts
    /// and records are [`Evidence::Verified`], a forged record or a record
    /// under another key is misbehaviour, contacts that fail the puzzle or
    /// exceed `k` are the lookup's faults.
    ///
    /// A FindValue lookup also checks the ids it found around the key for
    /// an implausibly dense cluster ([`density::dense_cluster`]) and, if it
    /// finds one, repeats itself with the cluster set aside (up to
    /// [`DENSITY_WIDEN_ROUNDS`] times), keeping the records of every round:
    /// see [`Found::dense`].
    pub async fn lookup(&self, dialer: &Dialer, target: Key, kind: Option<RecordKind>) -> Found {
        if kind.is_some() {
            self.lookup_key(dialer, target, kind).await
        } else {
            self.lookup_round(dialer, target, kind, None, Purpose::Read)
                .await
        }
    }

    /// A lookup for a key with density detection (see
    /// [`OverlayService::lookup`]): with `kind`, a FindValue; without, the
    /// lookup that places a record's replicas ([`OverlayService::publish`]).
    pub async fn lookup_key(
        &self,
        dialer: &Dialer,
        target: Key,
        kind: Option<RecordKind>,
    ) -> Found {
        self.lookup_key_for(dialer, target, kind, Purpose::Read)
            .await
    }

    /// [`OverlayService::lookup_key`] for `purpose`.
    async fn lookup_key_for(
        &self,
        dialer: &Dialer,
        target: Key,
        kind: Option<RecordKind>,
        purpose: Purpose,
    ) -> Found {
        let mut found = self.lookup_round(dialer, target, kind, None, purpose).await;
        // A table too small to estimate the overlay's size from (a young
        // overlay, a node just started) would make every key look dense.
        if self.table_len() < self.params.k {
            return found;
        }
        let n_est = self.estimated_size();
        let mut ids = std::mem::take(&mut found.known);
        for _ in 0..DENSITY_WIDEN_ROUNDS {
            let Some(cluster) = density::dense_cluster(&target, &ids, n_est, self.params.k) else {
                break;
            };
            let merged = found.dense.map_or(cluster, |old| old.merge(cluster));
            if found.dense == Some(merged) {
                break;
            }
            info!(
                key = %hex::encode(&target.0[..8]),
                shared_bits = merged.shared_bits,
                members = merged.members,
                estimated_nodes = n_est.round(),
                "implausibly dense ids around a key: repeating the lookup without them"
            );
            found.dense = Some(merged);
            let more = self
                .lookup_round(dialer, target, kind, Some(merged), purpose)
                .await;
            for r in more.records {
                if found.records.len() < MAX_FOUND_RECORDS && !found.records.contains(&r) {
                    found.records.push(r);
                }
            }
            for h in more.holders {
                if found.holders.len() < MAX_FOUND_RECORDS
                    && !found.holders.iter().any(|c| c.id == h.id)
                {
                    found.holders.push(h);
                }
            }
            ids = more.known;
            found.beyond = more.per_path;
        }
        found
    }

    /// One lookup (with its [`Lookup::widen`] rounds), the ids of
    /// `exclude` set aside: never seeds, never taken from answers.
    async fn lookup_round(
        &self,
        dialer: &Dialer,
        target: Key,
        kind: Option<RecordKind>,
        exclude: Option<DenseCluster>,
        purpose: Purpose,
    ) -> Found {
        let set_aside = |id: &NodeId| exclude.is_some_and(|c| c.contains(&target, id));
        // With a cluster set aside, the seeds come from beyond it, however
        // much of the table it fills near the key.
        let mut seeds = self.closest(
            &target,
            if exclude.is_some() {
                usize::MAX
            } else {
                self.params.k.saturating_mul(2)
            },
        );
        seeds.retain(|c| !set_aside(&c.id) && !self.reputation.is_banned(&c.id));
        seeds.truncate(self.params.k.saturating_mul(2));
        // Better standing first, then peers this node dialed itself (an
        // attacker can connect in, not make this node dial it), then
        // closer.
        {
            let state = self.state();
            self.reputation.rank(&mut seeds, |c| {
                (
                    c.id,
                    state.table.is_outbound(&c.id),
                    target.distance(&Key::from(c.id)),
                )
            });
        }
        seeds.truncate(self.params.k);
        let suspects: Vec<NodeId> = seeds
            .iter()
            .filter(|c| self.reputation.standing(&c.id) == Standing::Suspect)
            .map(|c| c.id)
            .collect();
        let mut lookup = Lookup::new(target, seeds, self.local, &self.params);
        for id in &suspects {
            lookup.demote(id);
        }
        let take_answer = |lookup: &mut Lookup, from: &NodeId, contacts: &[Contact]| {
            if exclude.is_some() {
                let kept: Vec<Contact> = contacts
                    .iter()
                    .filter(|c| !set_aside(&c.id))
                    .copied()
                    .collect();
                lookup.on_response(from, &kept);
            } else {
                lookup.on_response(from, contacts);
            }
            for c in contacts {
                if self.reputation.standing(&c.id) == Standing::Suspect {
                    lookup.demote(&c.id);
                }
            }
        };
        let request = match kind {
            None => Message::FindNode {
                overlay: self.params.name.clone(),
                target: target.0,
            },
            Some(kind) => Message::FindValue {
                overlay: self.params.name.clone(),
                key: target.0,
                kind: kind.to_u64(),
            },
        };
        let mut found = Found::default();
        let mut widen_left = LOOKUP_WIDEN_ROUNDS;
        // Replicas are spread over paths, so one holder may have an older
        // version: a value lookup stops only once two holders answered (or
        // when it runs out), and the reader takes the highest sequence.
        let mut answered_with_records = 0usize;
        // Requests run concurrently: at most alpha per path are pending.
        let mut pending: Vec<PendingRequest<'_>> = Vec::new();
        loop {
            while let Some(req) = lookup.poll_request() {
                let message = request.clone();
                let to = req.to;
                pending.push(Box::pin(
                    async move { (to, dialer.request(to, &message).await) },
                ));
            }
            if pending.is_empty() {
                break;
            }
            let ((to, result), rest) = futures_select_all(pending).await;
            pending = rest;
            match result {
                // An answer proves the peer's id at the address dialed
                // (the dialer reuses a connection only at that address):
                // it refreshes (or enters) the routing table.
                Ok(Message::Nodes { contacts }) => {
                    take_answer(&mut lookup, &to.id, &contacts);
                    self.seen(to);
                    self.judge_answer(dialer, &mut lookup, &to.id, None);
                }
                Ok(Message::Value { records, contacts }) => {
                    take_answer(&mut lookup, &to.id, &contacts);
                    self.seen(to);
                    let now = crate::unix_now().max(0) as u64;
                    let mut verified_any = false;
                    let mut worst: Option<Evidence> = None;
                    for r in records {
                        let checked = Record::decode(&r)
                            .and_then(|rec| rec.verify(&self.records, now))
                            .map(|v| *v.key() == target);
                        let ok = match checked {
                            Ok(true) => true,
                            // A sound record under another key: no honest
                            // node answers a FindValue with it.
                            Ok(false) => {
                                worst = Some(Evidence::Misbehaved(Misbehaviour::BadRecord));
                                false
                            }
                            Err(e) => {
                                let evidence = Evidence::from_record_error(&e);
                                if evidence.is_misbehaviour() || worst.is_none() {
                                    worst = Some(evidence);
                                }
                                false
                            }
                        };
                        verified_any |= ok;
                        // The same record from several holders is kept once.
                        if ok
                            && found.records.len() < MAX_FOUND_RECORDS
                            && !found.records.contains(&r)
                        {
                            found.records.push(r);
                        }
                    }
                    self.judge_answer(dialer, &mut lookup, &to.id, worst);
                    if verified_any {
                        answered_with_records += 1;
                        if purpose == Purpose::Place
                            && found.holders.len() < MAX_FOUND_RECORDS
                            && !found.holders.iter().any(|c| c.id == to.id)
                        {
                            found.holders.push(to);
                        }
                    }
                    // A placement lookup goes on to the closest nodes.
                    if purpose == Purpose::Read
                        && answered_with_records >= VALUE_ANSWERS_BEFORE_STOPPING
                    {
                        lookup.finish();
                    }
                }
                Err(NetError::Remote {
                    code: ErrorCode::RateLimited | ErrorCode::Busy,
                    ..
                }) => {
                    // Alive but loaded: no answer for this lookup, and no
                    // strike against it either.
                    lookup.on_failure(&to.id);
                }
                Ok(_) | Err(NetError::Remote { .. }) => {
                    // It answered, but not as a node of this overlay does
                    // (WrongOverlay, or a message that is no answer): out.
                    lookup.on_failure(&to.id);
                    self.evict(&to.id);
                }
                Err(NetError::Banned) => {
                    // Not contacted; already out of the routing table.
                    lookup.on_failure(&to.id);
                }
                Err(_) => {
                    lookup.on_failure(&to.id);
                    self.forget(&to.id);
                }
            }
            // Unanswered requests were reported by the dialer already.
            while let Some(fault) = lookup.poll_fault() {
                if fault.kind != FaultKind::Unresponsive {
                    let verdict = self.reputation.on_fault(&fault);
                    dialer.enforce(&fault.peer, verdict);
                }
            }
            if lookup.is_finished() {
                // A value lookup that found nothing valid is widened: the
                // nodes already asked are set aside and the candidates never
                // asked get fresh disjoint paths (see `Lookup::widen`).
                if kind.is_some()
                    && purpose == Purpose::Read
                    && found.records.is_empty()
                    && widen_left > 0
                    && lookup.widen()
                {
                    widen_left -= 1;
                    continue;
                }
                break;
            }
        }
        found.closest = lookup.result().into_iter().map(|(c, _)| c).collect();
        found.per_path = lookup.result_per_path();
        found.known = lookup.known_closest(self.params.k);
        found
    }

    /// Reports one lookup answer of `peer` to the reputation table: its
    /// faults (drained from `lookup`), else `worst` (what its records
    /// proved), else [`Evidence::Verified`].
    fn judge_answer(
        &self,
        dialer: &Dialer,
        lookup: &mut Lookup,
        peer: &NodeId,
        worst: Option<Evidence>,
    ) {
        let mut faulty = false;
        while let Some(fault) = lookup.poll_fault() {
            if fault.kind != FaultKind::Unresponsive {
                faulty |= fault.peer == *peer;
                let verdict = self.reputation.on_fault(&fault);
                dialer.enforce(&fault.peer, verdict);
            }
        }
        if !faulty {
            let verdict = self
                .reputation
                .observe(peer, worst.unwrap_or(Evidence::Verified));
            dialer.enforce(peer, verdict);
        }
    }

    /// Refreshes `peer` in the routing table if it is there (it answered
    /// us). A responder that is not there is not admitted: which nodes a
    /// lookup reaches is steered by the answers of others, adversaries
    /// among them, so the table learns from inbound requests and from the
    /// results of join and refresh lookups taken across paths
    /// ([`OverlayService::learn_found`]) instead. A refreshed contact is
    /// marked outbound ([`RoutingTable::mark_outbound`]).
    fn seen(&self, peer: Contact) {
        let known = self.state().table.contains(&peer.id);
        if known {
            self.learn(peer);
            self.state().table.mark_outbound(&peer.id);
        }
    }

    /// Learns a peer that answered on a connection this node dialed: as
    /// [`OverlayService::learn`], and marked outbound (preferred as a
    /// lookup seed: [`RoutingTable::mark_outbound`]).
    fn learn_outbound(&self, peer: Contact) -> Option<Contact> {
        let to_ping = self.learn(peer);
        self.state().table.mark_outbound(&peer.id);
        to_ping
    }

    /// Learns the result of a join or refresh lookup: the `k` closest
    /// taken round-robin across its disjoint paths, so that a path an
    /// adversary steered brings at most its share into the table.
    pub fn learn_found(&self, found: &Found) -> usize {
        let mut admitted = 0;
        for c in spread_across_paths(&found.per_path, self.params.k) {
            if self.learn_outbound(c).is_none() && self.state().table.contains(&c.id) {
                admitted += 1;
            }
        }
        admitted
    }

    /// Stores `record` on `replication` nodes a lookup finds, taken
    /// round-robin across its disjoint paths (a path an adversary steered
    /// gets at most its share of the replicas), and locally when this node
    /// is closer than one of them. When the lookup found an implausibly
    /// dense cluster of ids around the key ([`Found::dense`]), as many
    /// replicas again go to the closest nodes beyond it, so that the
    /// cluster cannot hide the record. Returns how many nodes acknowledged
    /// it.
    pub async fn publish(&self, dialer: &Dialer, record: &Record) -> usize {
        let encoded = record.encode();
        let found = self
            .lookup_key_for(dialer, record.key, Some(record.kind), Purpose::Place)
            .await;
        let mut acks = 0;
        // Suspect and banned peers hold no replica; the next closest do.
        let eligible = |paths: &[Vec<Contact>]| -> Vec<Vec<Contact>> {
            paths
                .iter()
                .map(|path| {
                    path.iter()
                        .filter(|c| self.reputation.may_hold_replica(&c.id))
                        .copied()
                        .collect()
                })
                .collect()
        };
        // This node is a candidate holder too.
        let mut holders: Vec<Option<Contact>> =
            spread_across_paths(&eligible(&found.per_path), self.params.replication)
                .into_iter()
                .map(Some)
                .collect();
        holders.push(None);
        let local_key = Key::from(self.local);
        holders.sort_by_key(|c| {
            record
                .key
                .distance(&c.map_or(local_key, |c| Key::from(c.id)))
        });
        holders.truncate(self.params.replication);
        let placed = |holders: &[Option<Contact>], c: &Contact| {
            holders.iter().flatten().any(|h| h.id == c.id)
        };
        if found.dense.is_some() {
            let beyond = spread_across_paths(&eligible(&found.beyond), self.params.replication);
            for c in beyond {
                if !placed(&holders, &c) {
                    holders.push(Some(c));
                }
            }
        }
        // Nodes that hold a version of the record get this one too (at
        // most `replication` more): replicas of successive versions land on
        // partly different nodes, and an older copy left in place would be
        // served to readers that stop after two holders.
        let stale: Vec<Contact> = found
            .holders
            .iter()
            .filter(|c| self.reputation.may_hold_replica(&c.id))
            .copied()
            .collect();
        let mut extra = 0;
        for c in stale {
            if extra < self.params.replication && !placed(&holders, &c) {
                holders.push(Some(c));
                extra += 1;
            }
        }
        for holder in holders {
            match holder {
                None => {
                    // The lookup just found this node among the closest:
                    // no responsibility check against its own table.
                    if matches!(
                        self.store_local(&encoded, false).await,
                        Message::Stored { .. }
                    ) {
                        acks += 1;
                    }
                }
                Some(c) => {
                    let message = Message::Store {
                        overlay: self.params.name.clone(),
                        record: encoded.clone(),
                    };
                    if let Ok(Message::Stored { .. }) = dialer.request(c, &message).await {
                        acks += 1;
                    }
                }
            }
        }
        acks
    }

    /// Joins through `bootstrap` contacts: learns them (they must prove
    /// their ids), looks up this node's own id, then refreshes the buckets
    /// beyond its closest neighbour.
    pub async fn join(&self, dialer: &Dialer, bootstrap: &[Contact]) -> usize {
        for b in bootstrap {
            match dialer.connect(*b).await {
                Ok(_) => {
                    self.learn_outbound(*b);
                }
                Err(e) => {
                    // A reloaded contact that is gone takes a strike.
                    self.forget(&b.id);
                    debug!(peer = %b.id.fmt_short(), error = %e, "bootstrap node unreachable")
                }
            }
        }
        let own = Key::from(self.local);
        let found = self.lookup(dialer, own, None).await;
        self.learn_found(&found);
        let nearest = found
            .closest
            .first()
            .and_then(|c| own.distance(&Key::from(c.id)).bucket_index())
            .unwrap_or(255);
        for bucket in (nearest + 1)..256 {
            let mut target = own.0;
            let bit = 255 - bucket;
            target[bit / 8] ^= 0x80 >> (bit % 8);
            let found = self.lookup(dialer, Key(target), None).await;
            self.learn_found(&found);
            if bucket >= nearest + 16 {
                break;
            }
        }
        self.table_len()
    }
}

/// Maintenance: persistence of the routing table, expiry, and the
/// planning of republish, hand-over, repair and bucket refresh (the
/// sending is [`super::maintenance`]'s).
impl OverlayService {
    /// Reloads the contacts saved in the data directory into the routing
    /// table, each through the table's admission rules (puzzle, network
    /// limits, bucket size), and keeps them to rejoin through when the node
    /// runs. Returns how many were admitted (0 without a data directory).
    pub fn restore_contacts(&self) -> Result<usize, DiskError> {
        let Some(disk) = &self.disk else {
            return Ok(0);
        };
        let saved = disk.load_contacts()?;
        let now = self.now_ms();
        let mut admitted = Vec::new();
        {
            let mut state = self.state();
            for c in saved {
                // No churn event: nothing moved, this is the table of
                // before the restart.
                match state.table.insert(c, now) {
                    InsertOutcome::Inserted => admitted.push(c),
                    InsertOutcome::Refused(why) => {
                        debug!(peer = %c.id.fmt_short(), %why, "saved contact not admitted")
                    }
                    _ => {}
                }
            }
        }
        let n = admitted.len();
        *self.reloaded.lock().unwrap_or_else(|p| p.into_inner()) = admitted;
        Ok(n)
    }

    /// The contacts reloaded by [`OverlayService::restore_contacts`], once.
    pub(crate) fn take_reloaded(&self) -> Vec<Contact> {
        std::mem::take(&mut *self.reloaded.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// Saves the routing table (at most [`MAX_SAVED_CONTACTS`] contacts,
    /// the longest known) to the data directory. Returns how many were
    /// saved (0 without a data directory). An empty table is not saved: a
    /// node that lost every contact (its network was down, say) keeps the
    /// last saved ones to rejoin through next time.
    pub fn save_contacts(&self) -> Result<usize, DiskError> {
        let Some(disk) = &self.disk else {
            return Ok(0);
        };
        let contacts = self.contacts_to_save();
        if contacts.is_empty() {
            return Ok(0);
        }
        disk.save_contacts(&contacts)?;
        Ok(contacts.len())
    }

    /// The table's contacts in its own order (bucket by bucket, least
    /// recently seen first, which a reload reproduces); beyond the bound
    /// the longest-known are kept (S/Kademlia's preference).
    fn contacts_to_save(&self) -> Vec<Contact> {
        let mut all: Vec<(usize, Contact, u64)> = self
            .state()
            .table
            .entries()
            .enumerate()
            .map(|(i, (_, c, first_seen, _))| (i, c, first_seen))
            .collect();
        if all.len() > MAX_SAVED_CONTACTS {
            all.sort_by_key(|e| e.2);
            all.truncate(MAX_SAVED_CONTACTS);
            all.sort_by_key(|e| e.0);
        }
        all.into_iter().map(|(_, c, _)| c).collect()
    }

    /// Drops the records expired now, from memory and from disk. Returns
    /// how many were dropped.
    pub fn expire_records(&self) -> usize {
        self.expire_records_at(crate::unix_now().max(0) as u64)
    }

    fn expire_records_at(&self, now: u64) -> usize {
        let mut state = self.state();
        let dropped = state.store.expire_slots(now);
        if let (Some(disk), false) = (&self.disk, dropped.is_empty()) {
            // Queued under the state lock, as a Store's write is: a newer
            // record stored in the slot afterwards is written after this
            // deletion. Not awaited (the committer logs a failure); with
            // the queue full, deleted at once instead.
            let slots: Vec<Vec<u8>> = dropped
                .iter()
                .map(|(key, kind, owner)| slot_of(key, *kind, owner))
                .collect();
            match self.commit.as_ref().and_then(Committer::try_reserve) {
                Some(room) => drop(room.remove(slots)),
                None => {
                    if let Err(e) = disk.remove_many(&slots) {
                        tracing::warn!(error = %e, "could not drop expired records from disk");
                    }
                }
            }
        }
        dropped.len()
    }

    /// The rank of the point `of` among this node and its contacts by
    /// distance to `key` (0 = closest); `of` itself is not counted.
    fn rank(&self, table: &RoutingTable, key: &Key, of: &Key) -> usize {
        let d = key.distance(of);
        let local_closer = key.distance(&Key::from(self.local)) < d;
        table
            .count_closer(key, &d)
            .saturating_add(usize::from(local_closer))
    }

    /// The records to hand over to `newcomer`, just admitted: those held
    /// of which it is now among the `replication` closest known nodes
    /// (this node included). At most [`MAX_HANDOVER_RECORDS`] are
    /// considered, the ones with keys nearest to the newcomer; the
    /// periodic republish covers any beyond.
    pub fn plan_handover(&self, newcomer: &Contact) -> Vec<Vec<u8>> {
        let now = crate::unix_now().max(0) as u64;
        let state = self.state();
        if state.store.is_empty() || !state.table.contains(&newcomer.id) {
            return Vec::new();
        }
        let point = Key::from(newcomer.id);
        nearest_records(&state.store, &point, now, MAX_HANDOVER_RECORDS)
            .into_iter()
            .filter(|r| self.rank(&state.table, r.key(), &point) < self.params.replication)
            .map(|r| r.encoded().to_vec())
            .collect()
    }

    /// The records to re-push after `evicted` left the table: for each
    /// held record it was a holder of (among the `replication` closest of
    /// this node, its contacts and itself), the node that now enters that
    /// set, unless it is this one. At most [`MAX_HANDOVER_RECORDS`]
    /// records are considered, the ones with keys nearest to the evicted
    /// node.
    pub fn plan_repair(&self, evicted: &Contact) -> Vec<(Contact, Vec<u8>)> {
        let now = crate::unix_now().max(0) as u64;
        let state = self.state();
        if state.store.is_empty() || state.table.contains(&evicted.id) {
            return Vec::new();
        }
        let point = Key::from(evicted.id);
        let r = self.params.replication.max(1);
        let mut out = Vec::new();
        for record in nearest_records(&state.store, &point, now, MAX_HANDOVER_RECORDS) {
            let key = record.key();
            if self.rank(&state.table, key, &point) >= r {
                continue;
            }
            // The r closest of (table ∪ this node) now; the last of them
            // is the one that took the evicted node's place.
            let mut members: Vec<Option<Contact>> =
                state.table.closest(key, r).into_iter().map(Some).collect();
            members.push(None);
            members.sort_by_key(|m| {
                key.distance(&m.map_or(Key::from(self.local), |c| Key::from(c.id)))
            });
            if let Some(Some(entrant)) = members.get(r - 1) {
                out.push((*entrant, record.encoded().to_vec()));
            }
        }
        out
    }

    /// The slots of at most `limit` live records after `after`, in slot
    /// order: one republish batch.
    pub(crate) fn republish_batch(&self, after: Option<&SlotKey>, limit: usize) -> Vec<SlotKey> {
        let now = crate::unix_now().max(0) as u64;
        self.state().store.live_slots_after(after, limit, now)
    }

    /// How to republish the record of `slot`, if it is still live: to
    /// the `replication` closest nodes of (table ∪ this node), this node
    /// excluded, with as many spares again for those that fail.
    pub(crate) fn republish_plan(&self, slot: &SlotKey) -> Option<RepublishPlan> {
        let now = crate::unix_now().max(0) as u64;
        let state = self.state();
        let record = state.store.get_slot(slot, now)?;
        let key = record.key();
        let r = self.params.replication.max(1);
        let own = Key::from(self.local);
        let local_is_holder = state.table.count_closer(key, &key.distance(&own)) < r;
        Some(RepublishPlan {
            encoded: record.encoded().to_vec(),
            candidates: state
                .table
                .closest(key, r.saturating_mul(RESPONSIBILITY_SLACK_FACTOR)),
            needed: r - usize::from(local_is_holder),
        })
    }

    /// Keys to look up to refresh the buckets none of whose contacts was
    /// seen for `max_age` (at most [`MAX_BUCKET_REFRESHES_PER_ROUND`]),
    /// each random within its bucket (`random` supplies the bits).
    pub fn refresh_targets(
        &self,
        max_age: Duration,
        mut random: impl FnMut() -> [u8; 32],
    ) -> Vec<Key> {
        let now = self.now_ms();
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        let state = self.state();
        state
            .table
            .stale_buckets(now, max_age)
            .into_iter()
            .take(MAX_BUCKET_REFRESHES_PER_ROUND)
            .filter_map(|b| state.table.key_in_bucket(b, random()))
            .collect()
    }

    /// A graceful leave: hands every live record this node holds to the
    /// `replication` closest nodes of its table (which will hold it once
    /// this node is gone), at most [`MAX_LEAVE_STORES_IN_FLIGHT`] Stores
    /// at a time, until `deadline`. Records not handed over in time are
    /// still on their other replicas and come back with their republish.
    /// Returns how many Stores were acknowledged.
    pub async fn leave(&self, dialer: &Arc<Dialer>, deadline: Duration) -> usize {
        let work = async {
            let mut acks = 0;
            let mut after: Option<SlotKey> = None;
            let mut tasks = tokio::task::JoinSet::new();
            loop {
                let batch = self.republish_batch(after.as_ref(), MAX_REPUBLISH_RECORDS_PER_ROUND);
                let Some(last) = batch.last().cloned() else {
                    break;
                };
                for slot in &batch {
                    let Some(plan) = self.republish_plan(slot) else {
                        continue;
                    };
                    let message = Message::Store {
                        overlay: self.params.name.clone(),
                        record: plan.encoded,
                    };
                    for to in plan.candidates.into_iter().take(self.params.replication) {
                        while tasks.len() >= MAX_LEAVE_STORES_IN_FLIGHT {
                            if let Some(Ok(true)) = tasks.join_next().await {
                                acks += 1;
                            }
                        }
                        let (dialer, message) = (dialer.clone(), message.clone());
                        tasks.spawn(async move {
                            matches!(
                                dialer.request(to, &message).await,
                                Ok(Message::Stored { .. })
                            )
                        });
                    }
                }
                after = Some(last);
            }
            while let Some(done) = tasks.join_next().await {
                if let Ok(true) = done {
                    acks += 1;
                }
            }
            acks
        };
        // Dropping the JoinSet at the deadline aborts what is left.
        tokio::time::timeout(deadline, work).await.unwrap_or(0)
    }

    /// Forgets a peer that said it is leaving (it closed its connection
    /// with "node shutting down"): no need to wait for failed requests.
    pub fn peer_left(&self, id: &NodeId) {
        self.state().table.remove(id);
    }

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }
}

/// The (at most `limit`) live records whose keys are nearest to `point`,
/// nearest first: O(records × log limit) time, O(limit) memory.
fn nearest_records<'a>(
    store: &'a RecordStore,
    point: &Key,
    now: u64,
    limit: usize,
) -> Vec<&'a VerifiedRecord> {
    let mut heap: BinaryHeap<(Distance, SlotKey)> = BinaryHeap::new();
    for r in store.records_for_replication(now) {
        heap.push((r.key().distance(point), (*r.key(), r.kind(), *r.owner())));
        if heap.len() > limit {
            // The farthest goes.
            heap.pop();
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .filter_map(|(_, slot)| store.get_slot(&slot, now))
        .collect()
}

type PendingRequest<'a> =
    Pin<Box<dyn Future<Output = (Contact, Result<Message, NetError>)> + Send + 'a>>;

/// Waits for the first of several futures to finish; returns its output
/// and the others (a tiny `select_all`, so as not to pull in the futures
/// crate for one function).
async fn futures_select_all<T>(
    mut futures: Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>,
) -> (T, Vec<Pin<Box<dyn Future<Output = T> + Send + '_>>>) {
    let (value, index) = std::future::poll_fn(|cx| {
        for (i, f) in futures.iter_mut().enumerate() {
            if let std::task::Poll::Ready(v) = f.as_mut().poll(cx) {
                return std::task::Poll::Ready((v, i));
            }
        }
        std::task::Poll::Pending
    })
    .await;
    drop(futures.swap_remove(index));
    (value, futures)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::overlay::record::OwnerValue;
    use std::net::SocketAddr;

    fn params(replication: usize) -> OverlayParams {
        OverlayParams {
            name: "unit".into(),
            k: 20,
            replication,
            id_difficulty: 0,
            ..OverlayParams::default()
        }
    }

    /// The point at XOR distance `d` (in the first byte) from `key`.
    fn near(key: &Key, d: u8) -> NodeId {
        let mut b = key.0;
        b[0] ^= d;
        NodeId::from_bytes(b)
    }

    /// A contact on its own /24, so that the diversity limits stay out of
    /// the way.
    fn contact(id: NodeId, n: u8) -> Contact {
        Contact {
            id,
            addr: SocketAddr::from(([10, n, 0, 1], 4433)),
        }
    }

    fn record(name: &str) -> Record {
        OwnerValue::new(name, b"v".to_vec()).unwrap().sign(
            &SecretKey::from_seed(&[7; 32]),
            1,
            crate::unix_now() as u64 + 3600,
        )
    }

    fn service(local: NodeId, replication: usize) -> OverlayService {
        let p = params(replication);
        let policy = RecordPolicy::self_certifying(p.name.clone());
        OverlayService::new(local, p, policy)
    }

    fn store(overlay: &OverlayService, from: Contact, r: &Record) -> Message {
        let request = Message::Store {
            overlay: "unit".into(),
            record: r.encode(),
        };
        block_on(overlay.answer(from, &request)).unwrap().0
    }

    /// Runs `f` to completion (the store path is async: it awaits the
    /// commit of a durable Store).
    fn block_on<F: Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
            .block_on(f)
    }

    fn drain(overlay: &OverlayService) -> Vec<ChurnEvent> {
        std::iter::from_fn(|| overlay.next_event()).collect()
    }

    #[test]
    fn a_store_is_refused_once_twice_replication_nodes_are_closer() {
        let r = record("a");
        let key = r.key;
        // Replication 2: refused at 4 closer nodes. This node is at
        // distance 0x40; contacts at 0x01.. are closer.
        let overlay = service(near(&key, 0x40), 2);
        let far = contact(near(&key, 0x80), 200);
        overlay.learn(far);
        for d in 1..=3u8 {
            overlay.learn(contact(near(&key, d), d));
        }
        assert!(overlay.is_responsible(&key));
        assert_eq!(store(&overlay, far, &r), Message::Stored { seq: 1 });
        overlay.learn(contact(near(&key, 4), 4));
        assert!(!overlay.is_responsible(&key));
        let newer = OwnerValue::new("a", b"w".to_vec()).unwrap().sign(
            &SecretKey::from_seed(&[7; 32]),
            2,
            crate::unix_now() as u64 + 3600,
        );
        match store(&overlay, far, &newer) {
            Message::Error { code, reason } => {
                assert_eq!(code, ErrorCode::NotResponsible);
                assert!(reason.contains("knows 4 nodes closer"), "{reason}");
            }
            other => panic!("unexpected {other:?}"),
        }
        assert_eq!(
            overlay.records_len(),
            1,
            "the refused record changed nothing"
        );
        // A key near this node is still accepted.
        let own_key = Key::from(overlay.local_id());
        assert!(overlay.is_responsible(&own_key));
    }

    #[test]
    fn a_newcomer_closer_to_a_held_key_is_handed_the_record() {
        let r = record("b");
        let key = r.key;
        let overlay = service(near(&key, 0x08), 2);
        let a = contact(near(&key, 0x10), 1);
        let b = contact(near(&key, 0x20), 2);
        overlay.learn(a);
        overlay.learn(b);
        assert_eq!(store(&overlay, a, &r), Message::Stored { seq: 1 });
        assert_eq!(
            drain(&overlay),
            vec![ChurnEvent::Admitted(a), ChurnEvent::Admitted(b)]
        );
        // Holders now: this node (0x08) and a (0x10). A newcomer at 0x40
        // is not among the two closest: nothing to hand over.
        let far = contact(near(&key, 0x40), 3);
        overlay.learn(far);
        assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(far)]);
        assert!(overlay.plan_handover(&far).is_empty());
        // One at 0x04 is the closest of all: it gets the record.
        let close = contact(near(&key, 0x04), 4);
        overlay.learn(close);
        assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(close)]);
        assert_eq!(overlay.plan_handover(&close), vec![r.encode()]);
        // A contact not (or no longer) in the table is handed nothing.
        let stranger = contact(near(&key, 0x02), 5);
        assert!(overlay.plan_handover(&stranger).is_empty());
    }

    #[test]
    fn hand_over_is_bounded_per_newcomer() {
        let owner = SecretKey::from_seed(&[9; 32]);
        let local = NodeId::from_bytes([0xff; 32]);
        let overlay = service(local, 3);
        let expires = crate::unix_now() as u64 + 3600;
        let n = MAX_HANDOVER_RECORDS + 10;
        for i in 0..n {
            let r = OwnerValue::new(&format!("r{i}"), vec![])
                .unwrap()
                .sign(&owner, 1, expires);
            assert!(matches!(
                block_on(overlay.store_local(&r.encode(), true)),
                Message::Stored { .. }
            ));
        }
        assert_eq!(overlay.records_len(), n);
        // Alone with this node, a newcomer is among the 3 closest of every
        // key: it qualifies for all, and gets the bounded number.
        let newcomer = contact(NodeId::from_bytes([0; 32]), 1);
        overlay.learn(newcomer);
        assert_eq!(overlay.plan_handover(&newcomer).len(), MAX_HANDOVER_RECORDS);
    }

    #[test]
    fn an_evicted_holder_is_replaced_by_the_next_closest_node() {
        let r = record("c");
        let key = r.key;
        // Replication 2. Holders: h (0x01) and this node (0x02); next in
        // line: n (0x04), then f (0x08).
        let overlay = service(near(&key, 0x02), 2);
        let h = contact(near(&key, 0x01), 1);
        let n = contact(near(&key, 0x04), 2);
        let f = contact(near(&key, 0x08), 3);
        for c in [h, n, f] {
            overlay.learn(c);
        }
        assert_eq!(store(&overlay, h, &r), Message::Stored { seq: 1 });
        drain(&overlay);
        // Not evicted yet: nothing to repair.
        assert!(overlay.plan_repair(&h).is_empty());
        for _ in 0..crate::overlay::routing::MAX_CONSECUTIVE_FAILURES {
            overlay.forget(&h.id);
        }
        assert_eq!(drain(&overlay), vec![ChurnEvent::Evicted(h)]);
        assert_eq!(overlay.plan_repair(&h), vec![(n, r.encode())]);
        // The eviction of a non-holder moves nothing.
        overlay.evict(&f.id);
        assert_eq!(drain(&overlay), vec![ChurnEvent::Evicted(f)]);
        assert!(overlay.plan_repair(&f).is_empty());
        // When this node itself enters the set, there is no one to push to.
        let overlay = service(near(&key, 0x04), 2);
        let a = contact(near(&key, 0x01), 1);
        let b = contact(near(&key, 0x02), 2);
        overlay.learn(a);
        overlay.learn(b);
        assert!(matches!(
            block_on(overlay.store_local(&r.encode(), false)),
            Message::Stored { .. }
        ));
        overlay.evict(&a.id);
        assert!(overlay.plan_repair(&a).is_empty());
    }

    #[test]
    fn republish_targets_the_closest_with_spares() {
        let r = record("d");
        let key = r.key;
        let overlay = service(near(&key, 0x10), 2);
        let contacts: Vec<Contact> = (1..=6u8)
            .map(|i| contact(near(&key, i << 4 ^ 0x01), i))
            .collect();
        for c in &contacts {
            overlay.learn(*c);
        }
        assert!(matches!(
            block_on(overlay.store_local(&r.encode(), false)),
            Message::Stored { .. }
        ));
        let batch = overlay.republish_batch(None, 10);
        assert_eq!(batch.len(), 1);
        let plan = overlay.republish_plan(&batch[0]).unwrap();
        assert_eq!(plan.encoded, r.encode());
        // This node (0x10) is the closest of all, so a holder itself: one
        // more holder is needed, with as many spares again.
        assert_eq!(plan.needed, 1);
        let d: Vec<u8> = plan
            .candidates
            .iter()
            .map(|c| c.id.as_bytes()[0] ^ key.0[0])
            .collect();
        assert_eq!(d, vec![0x11, 0x21, 0x31, 0x41]);
        assert!(overlay.republish_batch(batch.last(), 10).is_empty());
    }

    #[test]
    fn events_are_bounded_and_oldest_dropped() {
        let overlay = service(NodeId::from_bytes([0; 32]), 2);
        let c = contact(NodeId::from_bytes([0x80; 32]), 1);
        // Each round queues two events: 400 in all.
        for _ in 0..200 {
            assert_eq!(overlay.learn(c), None);
            overlay.evict(&c.id);
        }
        let events = drain(&overlay);
        assert_eq!(events.len(), MAX_PENDING_CHURN_EVENTS);
        // 400 - 256 = 144 oldest dropped: the queue starts at an
        // admission and ends with the last eviction.
        assert_eq!(events.first(), Some(&ChurnEvent::Admitted(c)));
        assert_eq!(events.last(), Some(&ChurnEvent::Evicted(c)));
        // A refreshed resident is no event.
        overlay.learn(c);
        overlay.learn(c);
        assert_eq!(drain(&overlay), vec![ChurnEvent::Admitted(c)]);
    }

    #[test]
    fn contacts_survive_a_restart_through_the_admission_rules() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let local = NodeId::from_bytes([0; 32]);
        let a = contact(NodeId::from_bytes([0x80; 32]), 1);
        let b = contact(NodeId::from_bytes([0x40; 32]), 2);
        // Same bucket as b and the same /24: saved, but a table with a
        // limit of 1 per /24 per bucket admits only one of them.
        let b2 = Contact {
            id: NodeId::from_bytes([0x41; 32]),
            addr: SocketAddr::from(([10, 2, 0, 9], 1)),
        };
        {
            let disk = DiskStore::open(&path).unwrap();
            let (overlay, _) = service(local, 2).with_disk(disk).unwrap();
            for c in [a, b, b2] {
                overlay.learn(c);
            }
            assert_eq!(overlay.save_contacts().unwrap(), 3);
        }
        let disk = DiskStore::open(&path).unwrap();
        let strict = OverlayParams {
            max_per_prefix_per_bucket: 1,
            ..params(2)
        };
        let overlay = OverlayService::new(local, strict, RecordPolicy::self_certifying("unit"));
        let (overlay, _) = overlay.with_disk(disk).unwrap();
        assert_eq!(overlay.restore_contacts().unwrap(), 2);
        assert_eq!(overlay.table_len(), 2);
        let reloaded = overlay.take_reloaded();
        assert_eq!(reloaded.len(), 2);
        assert!(reloaded.contains(&a));
        assert!(overlay.take_reloaded().is_empty(), "handed out once");
        assert!(drain(&overlay).is_empty(), "a reload is no churn");
        // An empty table does not overwrite the saved one.
        for c in overlay.routes() {
            overlay.evict(&c.1.id);
        }
        assert_eq!(overlay.save_contacts().unwrap(), 0);
        assert_eq!(overlay.restore_contacts().unwrap(), 2);
        // Without a data directory there is nothing to save or restore.
        let memory = service(local, 2);
        assert_eq!(memory.save_contacts().unwrap(), 0);
        assert_eq!(memory.restore_contacts().unwrap(), 0);
    }

    #[test]
    fn an_address_and_its_mapped_form_are_the_same_endpoint() {
        let v4: SocketAddr = "127.0.0.1:4433".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:127.0.0.1]:4433".parse().unwrap();
        assert!(same_addr(v4, mapped));
        assert!(!same_addr(v4, "127.0.0.1:4434".parse().unwrap()));
        assert!(!same_addr(v4, "127.0.0.2:4433".parse().unwrap()));
    }

    #[test]
    fn expired_records_leave_memory_and_disk() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let owner = SecretKey::from_seed(&[3; 32]);
        let now = crate::unix_now() as u64;
        let short = OwnerValue::new("short", vec![])
            .unwrap()
            .sign(&owner, 1, now + 600);
        let long = OwnerValue::new("long", vec![])
            .unwrap()
            .sign(&owner, 1, now + 3600);
        let disk = DiskStore::open(&path).unwrap();
        let (overlay, _) = service(NodeId::from_bytes([1; 32]), 2)
            .with_disk(disk)
            .unwrap();
        for r in [&short, &long] {
            assert!(matches!(
                block_on(overlay.store_local(&r.encode(), false)),
                Message::Stored { .. }
            ));
        }
        assert_eq!(overlay.expire_records(), 0, "nothing expired yet");
        assert_eq!(overlay.expire_records_at(now + 600), 1);
        assert_eq!(overlay.records_len(), 1);
        assert_eq!(overlay.expire_records_at(now + 600), 0);
        drop(overlay);
        let disk = DiskStore::open(&path).unwrap();
        let rows = disk.load_all().unwrap();
        assert_eq!(rows.len(), 1);
        assert_eq!(rows[0].1, long.encode());
    }
}

//! The overlay over real QUIC: a node's routing table and record store
//! behind the wire's FindNode / FindValue / Store requests, and the async
//! drivers of the sans-IO [`Lookup`] (lookups, stores, join).
//!
//! Peers enter the routing table only from authenticated connections (an
//! inbound connection's remote address is the peer's listening address,
//! since a node dials from its listening endpoint). Contacts mentioned in
//! answers only feed lookups.

use super::cert_cache::{CertCache, DEFAULT_CERT_CACHE_ENTRIES};
use super::client::{quinn_client_config, PeerConnection};
use super::disk::{DiskError, DiskStore};
use super::tls::LocalIdentity;
use super::{NetError, CLOSE_NORMAL};
use crate::identity::{NodeId, VerifyPolicy};
use crate::overlay::config::OverlayParams;
use crate::overlay::key::Key;
use crate::overlay::lookup::Lookup;
use crate::overlay::record::{Record, RecordKind, RecordPolicy};
use crate::overlay::routing::{Contact, InsertOutcome, RoutingTable};
use crate::overlay::store::{PutOutcome, RecordStore, StoreLimits};
use crate::wire::{ErrorCode, Message};
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tracing::debug;

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
}

impl Dialer {
    pub(crate) fn new(
        endpoint: quinn::Endpoint,
        identity: LocalIdentity,
        policy: VerifyPolicy,
        transport: Arc<quinn::TransportConfig>,
    ) -> Self {
        Self {
            endpoint,
            identity,
            policy,
            cache: Arc::new(CertCache::new(DEFAULT_CERT_CACHE_ENTRIES)),
            transport,
            conns: Mutex::new(HashMap::new()),
        }
    }

    /// An authenticated connection to `contact` (which must prove its id),
    /// reused while open.
    pub async fn connect(&self, contact: Contact) -> Result<PeerConnection, NetError> {
        if let Some(conn) = self.cached(&contact.id) {
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
        Ok(peer)
    }

    fn cached(&self, id: &NodeId) -> Option<PeerConnection> {
        let mut conns = self.conns.lock().unwrap_or_else(|p| p.into_inner());
        match conns.get(id) {
            Some(c) if c.connection().close_reason().is_none() => Some(c.clone()),
            Some(_) => {
                conns.remove(id);
                None
            }
            None => None,
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
    pub async fn request(&self, contact: Contact, message: &Message) -> Result<Message, NetError> {
        let exchange = async {
            let conn = self.connect(contact).await?;
            conn.request(message).await
        };
        match tokio::time::timeout(OVERLAY_REQUEST_TIMEOUT, exchange).await {
            Ok(Ok(answer)) => Ok(answer),
            Ok(Err(e)) => {
                self.forget(&contact.id);
                Err(e)
            }
            Err(_) => {
                self.forget(&contact.id);
                Err(NetError::Timeout)
            }
        }
    }
}

struct State {
    table: RoutingTable,
    store: RecordStore,
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
    disk: Option<DiskStore>,
}

impl std::fmt::Debug for OverlayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayService")
            .field("overlay", &self.params.name)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

/// What a lookup found.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The closest nodes that answered, closest first.
    pub closest: Vec<Contact>,
    /// Records (encoded, verified) found under the key, for FindValue.
    pub records: Vec<Vec<u8>>,
}

impl OverlayService {
    /// The overlay service of node `local`.
    pub fn new(local: NodeId, params: OverlayParams, records: RecordPolicy) -> Self {
        Self {
            state: Mutex::new(State {
                table: RoutingTable::new(local, &params),
                store: RecordStore::new(StoreLimits::default()),
            }),
            params,
            local,
            records,
            epoch: Instant::now(),
            disk: None,
        }
    }

    /// Keeps records in `disk` too: loads (and verifies again) what it
    /// holds, and acknowledges a Store only once it is written there.
    /// Returns the service and how many records were loaded.
    pub fn with_disk(mut self, disk: DiskStore) -> Result<(Self, usize), DiskError> {
        let now = crate::unix_now().max(0) as u64;
        let mut loaded = 0;
        for (slot, encoded) in disk.load_all()? {
            let verified = Record::decode(&encoded).and_then(|r| r.verify(&self.records, now));
            match verified {
                Ok(v) if slot == slot_of(v.key(), v.kind(), v.owner()) => {
                    if self.state().store.put(v, now).is_ok() {
                        loaded += 1;
                    }
                }
                Ok(_) => debug!("record under the wrong slot on disk; dropped"),
                Err(e) => {
                    debug!(error = %e, "stored record no longer verifies; dropped");
                    let _ = disk.remove(&slot);
                }
            }
        }
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
    pub fn learn(&self, peer: Contact) -> Option<Contact> {
        let now = self.now_ms();
        match self.state().table.insert(peer, now) {
            InsertOutcome::Full { ping } => Some(ping),
            InsertOutcome::Refused(why) => {
                debug!(peer = %peer.id.fmt_short(), %why, "not admitted to the routing table");
                None
            }
            _ => None,
        }
    }

    /// Reports a liveness check of a resident.
    pub fn ping_result(&self, id: &NodeId, alive: bool) {
        let now = self.now_ms();
        self.state().table.on_ping_result(id, alive, now);
    }

    /// Counts an unanswered request; the peer is dropped after several in
    /// a row.
    pub fn forget(&self, id: &NodeId) {
        let now = self.now_ms();
        self.state().table.on_failure(id, now);
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
    /// to ping when the peer's bucket is full.
    pub fn answer(&self, peer: Contact, request: &Message) -> Option<(Message, Option<Contact>)> {
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
        self.reply(request).map(|reply| (reply, to_ping))
    }

    fn reply(&self, request: &Message) -> Option<Message> {
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
            Message::Store { overlay, record } => {
                wrong(overlay).unwrap_or_else(|| self.store_local(record))
            }
            _ => return None,
        })
    }

    fn store_local(&self, encoded: &[u8]) -> Message {
        let now = crate::unix_now().max(0) as u64;
        let verified = match Record::decode(encoded).and_then(|r| r.verify(&self.records, now)) {
            Ok(v) => v,
            Err(e) => return Message::error(ErrorCode::RecordRefused, &e.to_string()),
        };
        let seq = verified.seq();
        let slot = slot_of(verified.key(), verified.kind(), verified.owner());
        match self.state().store.put(verified, now) {
            Ok(PutOutcome::Unchanged) => Message::Stored { seq },
            Ok(_) => match &self.disk {
                // Acknowledged only once durable.
                Some(disk) => match disk.save(&slot, encoded) {
                    Ok(()) => Message::Stored { seq },
                    Err(e) => {
                        tracing::warn!(error = %e, "could not persist a record");
                        Message::error(ErrorCode::Internal, "record not stored durably")
                    }
                },
                None => Message::Stored { seq },
            },
            Err(e) => Message::error(ErrorCode::RecordRefused, &e.to_string()),
        }
    }

    /// Runs a lookup for `target` over `dialer`; with `kind`, a FindValue
    /// lookup that stops at the first verified record.
    pub async fn lookup(&self, dialer: &Dialer, target: Key, kind: Option<RecordKind>) -> Found {
        let seeds = self.closest(&target, self.params.k);
        let mut lookup = Lookup::new(target, seeds, self.local, &self.params);
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
                Ok(Message::Nodes { contacts }) => lookup.on_response(&to.id, &contacts),
                Ok(Message::Value { records, contacts }) => {
                    lookup.on_response(&to.id, &contacts);
                    let now = crate::unix_now().max(0) as u64;
                    for r in records {
                        let ok = Record::decode(&r)
                            .and_then(|rec| rec.verify(&self.records, now))
                            .is_ok_and(|v| *v.key() == target);
                        if ok {
                            found.records.push(r);
                        }
                    }
                    if !found.records.is_empty() {
                        lookup.finish();
                    }
                }
                Ok(_) | Err(NetError::Remote { .. }) => {
                    // It answered, but not as a node of this overlay does
                    // (WrongOverlay, or a message that is no answer): out.
                    lookup.on_failure(&to.id);
                    self.state().table.remove(&to.id);
                }
                Err(_) => {
                    lookup.on_failure(&to.id);
                    self.forget(&to.id);
                }
            }
            while lookup.poll_fault().is_some() {}
            if lookup.is_finished() {
                break;
            }
        }
        found.closest = lookup.result().into_iter().map(|(c, _)| c).collect();
        found
    }

    /// Stores `record` on the `replication` closest nodes a lookup finds
    /// (and locally when this node is among them). Returns how many nodes
    /// acknowledged it.
    pub async fn publish(&self, dialer: &Dialer, record: &Record) -> usize {
        let encoded = record.encode();
        let found = self.lookup(dialer, record.key, None).await;
        let mut acks = 0;
        // This node is a candidate holder too.
        let mut holders: Vec<Option<Contact>> = found.closest.iter().copied().map(Some).collect();
        holders.push(None);
        let local_key = Key::from(self.local);
        holders.sort_by_key(|c| {
            record
                .key
                .distance(&c.map_or(local_key, |c| Key::from(c.id)))
        });
        for holder in holders.into_iter().take(self.params.replication) {
            match holder {
                None => {
                    if matches!(self.store_local(&encoded), Message::Stored { .. }) {
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
                    self.learn(*b);
                }
                Err(e) => {
                    debug!(peer = %b.id.fmt_short(), error = %e, "bootstrap node unreachable")
                }
            }
        }
        let own = Key::from(self.local);
        let found = self.lookup(dialer, own, None).await;
        for c in &found.closest {
            self.learn(*c);
        }
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
            for c in found.closest {
                self.learn(c);
            }
            if bucket >= nearest + 16 {
                break;
            }
        }
        self.table_len()
    }
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

//! The overlay over real QUIC: the driver of the sans-IO core
//! ([`crate::overlay::peers`], [`crate::overlay::query`],
//! [`crate::overlay::placement`]) and the node's record store behind the
//! wire's FindNode / FindValue / Store requests.
//!
//! Nothing here decides whom to ask, admit, evict or ban, or where a
//! record goes: the core does, and this module carries its decisions out
//! over [`Dialer`] requests, with the core's clock ([`now_ms`]).
//!
//! # Admission
//!
//! Peers enter the routing table only at an address they proved they
//! listen on: a peer that answered a request this node sent to that
//! address, or an inbound peer whose address a dial-back confirmed before
//! its request was answered ([`OverlayService::admit_requester`]). A pure
//! client on an ephemeral port (`p2psip ping`, any peer that does not
//! listen) never enters a table, so it is never handed to others as a
//! contact.
//!
//! # Responsibility and churn
//!
//! A node stores a record only for keys it is responsible for
//! ([`crate::overlay::peers::Peers::is_responsible`]; a `Store` is refused
//! with `NotResponsible` otherwise). Every admission to and eviction from
//! the routing table is queued as a [`ChurnEvent`] for the maintenance
//! task ([`super::maintenance`]), which hands records over to newcomers
//! and re-pushes those an evicted holder had; the planning of that work is
//! here, synchronous and bounded ([`MAX_HANDOVER_RECORDS`] per event).

use super::commit::Committer;
use super::conns::same_addr;
use super::core::{now_ms, NodeCore};
use super::dialer::{failure_of, Dialer};
use super::disk::{DiskError, DiskStore};
use super::NetError;
use crate::identity::NodeId;
use crate::limits::{LISTEN_CHECK_RETRY, MAX_CONCURRENT_LISTEN_CHECKS, MAX_FAILED_LISTEN_CHECKS};
use crate::metrics::{LookupKind, LookupMetrics};
use crate::overlay::config::OverlayParams;
use crate::overlay::key::Key;
use crate::overlay::peers::{Failure, ListenProof};
use crate::overlay::placement::{self, JoinPlan, JoinStep, Replica};
use crate::overlay::query::{self, Goal, Query, RecordsJudged};
use crate::overlay::record::{Record, RecordKind, RecordPolicy, VerifiedRecord};
use crate::overlay::routing::Contact;
use crate::overlay::store::{PutOutcome, RecordStore, StoreLimits};
use crate::reputation::{Evidence, Misbehaviour, Policy};
use crate::wire::{ErrorCode, Message};
use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tracing::debug;

pub use crate::overlay::peers::ChurnEvent;

/// [`LISTEN_CHECK_RETRY`] in ms.
const LISTEN_CHECK_RETRY_MS: u64 = LISTEN_CHECK_RETRY.as_millis() as u64;

/// Records a value lookup keeps, at most.
const MAX_FOUND_RECORDS: usize = 64;

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

/// Unix seconds on the core's clock (records expire in seconds).
fn now_secs() -> u64 {
    now_ms() / 1000
}

/// What a lookup found: the core's outcome and the verified records.
#[derive(Debug, Clone, Default)]
pub struct Found {
    /// The closest nodes that answered, closest first.
    pub closest: Vec<Contact>,
    /// Records (encoded, verified) found under the key, for FindValue, at
    /// most 64, each once.
    pub records: Vec<Vec<u8>>,
    /// The core's account of the lookup (paths, dense cluster, holders).
    pub outcome: query::Found,
}

/// A node's overlay: its parameters, the core and the record store.
pub struct OverlayService {
    params: OverlayParams,
    local: NodeId,
    records: RecordPolicy,
    core: Arc<NodeCore>,
    store: Mutex<RecordStore>,
    disk: Option<Arc<DiskStore>>,
    /// Group-commits the record writes to `disk`.
    commit: Option<Committer>,
    /// Contacts reloaded from disk, to rejoin through once.
    reloaded: Mutex<Vec<Contact>>,
    /// Places for dial-backs ([`MAX_CONCURRENT_LISTEN_CHECKS`]).
    listen_check_places: Arc<tokio::sync::Semaphore>,
    /// Peers being dialed back now.
    listen_checks_running: Mutex<HashSet<NodeId>>,
    /// Addresses a dial-back found no listener at, and when (not tried
    /// again for [`LISTEN_CHECK_RETRY`]), at most
    /// [`MAX_FAILED_LISTEN_CHECKS`].
    listen_checks_refused: Mutex<HashMap<(NodeId, SocketAddr), u64>>,
    /// Dial-backs that confirmed a listener, and that found none.
    listen_checks_passed: AtomicU64,
    listen_checks_failed: AtomicU64,
    /// The contacts the last join went through (bootstrap nodes or the
    /// saved table), at most [`MAX_JOIN_SEEDS`]: a node whose table ran
    /// empty joins through them again ([`OverlayService::join_seeds`]).
    join_seeds: Mutex<Vec<Contact>>,
    /// Where SIP messages from other nodes go: the node's SIP listener,
    /// if it runs one.
    sip_inbox: std::sync::OnceLock<tokio::sync::mpsc::Sender<SipDelivery>>,
    /// Where media datagrams from other nodes go: the SIP listener's
    /// media relay, if it runs one.
    media_handler: std::sync::OnceLock<MediaHandler>,
    /// When this node became part of the overlay ([`ready`]).
    ready: ready::ReadyFlag,
    /// What its lookups did.
    lookups: LookupMetrics,
}

/// Takes a media datagram an authenticated node sent (docs/protocol.md
/// §10); called on the connection's task, so it must not block.
pub type MediaHandler = Arc<dyn Fn(NodeId, bytes::Bytes) + Send + Sync>;

/// A SIP message another node sent this node's proxy ([`Message::Sip`]).
#[derive(Debug, Clone)]
pub struct SipDelivery {
    /// The sending node (authenticated by its connection).
    pub from: Contact,
    /// The SIP message's bytes, not parsed yet.
    pub message: Vec<u8>,
}

/// Contacts a node keeps to join through again, at most.
const MAX_JOIN_SEEDS: usize = 32;

impl std::fmt::Debug for OverlayService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OverlayService")
            .field("overlay", &self.params.name)
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

type PendingRequest<'a> =
    Pin<Box<dyn Future<Output = (Contact, Result<Message, NetError>)> + Send + 'a>>;

/// A lookup's request in flight, with how long it took.
type TimedRequest<'a> = Pin<
    Box<dyn Future<Output = (Contact, Result<Message, NetError>, std::time::Duration)> + Send + 'a>,
>;

impl OverlayService {
    /// The overlay service of node `local` with a core of its own (in
    /// memory, no connections): for tests and tools.
    pub fn new(local: NodeId, params: OverlayParams, records: RecordPolicy) -> Self {
        let core = Arc::new(NodeCore::new(
            local,
            &params,
            Policy::default(),
            None,
            Arc::default(),
        ));
        Self::with_core(core, params, records)
    }

    /// The overlay service driving `core` (the node's, shared with its
    /// server and dialer).
    pub fn with_core(core: Arc<NodeCore>, params: OverlayParams, records: RecordPolicy) -> Self {
        let local = core.read(|p, _| p.local());
        Self {
            store: Mutex::new(RecordStore::new(StoreLimits::default())),
            params,
            local,
            records,
            core,
            disk: None,
            commit: None,
            reloaded: Mutex::new(Vec::new()),
            listen_check_places: Arc::new(tokio::sync::Semaphore::new(
                MAX_CONCURRENT_LISTEN_CHECKS,
            )),
            listen_checks_running: Mutex::new(HashSet::new()),
            listen_checks_refused: Mutex::new(HashMap::new()),
            listen_checks_passed: AtomicU64::new(0),
            listen_checks_failed: AtomicU64::new(0),
            join_seeds: Mutex::new(Vec::new()),
            sip_inbox: std::sync::OnceLock::new(),
            media_handler: std::sync::OnceLock::new(),
            ready: ready::ReadyFlag::default(),
            lookups: LookupMetrics::default(),
        }
    }

    /// Hands SIP messages from other nodes to `inbox` (the SIP listener);
    /// without one they are refused with [`ErrorCode::NoSip`]. Set once.
    pub fn set_sip_inbox(&self, inbox: tokio::sync::mpsc::Sender<SipDelivery>) -> bool {
        self.sip_inbox.set(inbox).is_ok()
    }

    /// Hands media datagrams from other nodes to `handler`; without one
    /// they are dropped unread. Set once.
    pub fn set_media_handler(&self, handler: MediaHandler) -> bool {
        self.media_handler.set(handler).is_ok()
    }

    /// The media datagram handler, if set.
    pub fn media_handler(&self) -> Option<MediaHandler> {
        self.media_handler.get().cloned()
    }

    /// The core this overlay drives.
    pub fn core(&self) -> &Arc<NodeCore> {
        &self.core
    }

    /// Keeps records in `disk` too: loads (and verifies again) what it
    /// holds, and acknowledges a Store only once it is written there.
    /// Returns the service and how many records were loaded.
    pub fn with_disk(mut self, disk: DiskStore) -> Result<(Self, usize), DiskError> {
        let now = now_secs();
        let mut loaded = 0;
        let mut stale: Vec<Vec<u8>> = Vec::new();
        // Row by row: the rows are not all held in memory at once.
        disk.for_each_record(|slot, encoded| {
            let verified = Record::decode(encoded).and_then(|r| r.verify(&self.records, now));
            match verified {
                Ok(v) if slot == slot_of(v.key(), v.kind(), v.owner()).as_slice() => {
                    if self.store().put_loaded(v, now).is_ok() {
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

    fn store(&self) -> std::sync::MutexGuard<'_, RecordStore> {
        self.store.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The live records this node holds under `key` of `kind` (encoded).
    pub fn local_records(&self, key: &Key, kind: RecordKind) -> Vec<Vec<u8>> {
        self.store()
            .get(key, kind, now_secs())
            .into_iter()
            .map(|r| r.encoded().to_vec())
            .collect()
    }

    /// Learns a peer at an address it proved it listens on (see
    /// [`crate::overlay::peers::Peers::learn`]).
    pub fn learn(&self, peer: Contact) {
        self.core
            .with(|p, now| p.learn(now, peer, ListenProof::Verified));
    }

    /// The oldest churn event not yet handled.
    pub(crate) fn next_event(&self) -> Option<ChurnEvent> {
        self.core.next_churn()
    }

    /// Completes when a churn event may have been queued since the last
    /// call (a queued notification is never lost).
    pub(crate) async fn event_queued(&self) {
        self.core.churn_queued().await;
    }

    /// The `n` closest known contacts to `target`.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        self.core.read(|p, _| p.closest(target, n))
    }

    /// Contacts in the routing table.
    pub fn table_len(&self) -> usize {
        self.core.read(|p, _| p.table().len())
    }

    /// Records held.
    pub fn records_len(&self) -> usize {
        self.store().len()
    }

    /// The routing table: (bucket, contact) pairs.
    pub fn routes(&self) -> Vec<(usize, Contact)> {
        self.core
            .read(|p, _| p.table().entries().map(|(b, c, _, _)| (b, c)).collect())
    }

    /// The overlay's size as this node estimates it.
    pub fn estimated_size(&self) -> f64 {
        self.core.read(|p, _| p.estimated_size())
    }

    /// Whether this node stores records under `key` (see
    /// [`crate::overlay::peers::Peers::is_responsible`]).
    pub fn is_responsible(&self, key: &Key) -> bool {
        self.core.read(|p, _| p.is_responsible(key))
    }

    /// Answers one overlay request from the authenticated `peer`; `None` if
    /// the message is not an overlay request. With `proof`
    /// [`ListenProof::Verified`] a request naming this overlay also
    /// teaches the core about the peer (the server proves it first with
    /// [`OverlayService::admit_requester`]); a peer of another overlay is
    /// never admitted.
    pub async fn answer(
        &self,
        peer: Contact,
        proof: ListenProof,
        request: &Message,
    ) -> Option<Message> {
        let overlay = match request {
            Message::FindNode { overlay, .. }
            | Message::FindValue { overlay, .. }
            | Message::Store { overlay, .. }
            | Message::Sip { overlay, .. } => overlay,
            _ => return None,
        };
        if *overlay != self.params.name {
            return Some(Message::error(
                ErrorCode::WrongOverlay,
                &format!("this node serves overlay {:?}", self.params.name),
            ));
        }
        self.heard_from(peer, proof);
        let k = self.params.k;
        Some(match request {
            Message::FindNode { target, .. } => Message::Nodes {
                contacts: self.closest(&Key(*target), k),
            },
            Message::FindValue { key, kind, .. } => {
                let key = Key(*key);
                let records = match RecordKind::from_u64(*kind) {
                    Some(kind) => self
                        .store()
                        .answer(&key, kind, now_secs(), &mut rand::thread_rng())
                        .into_iter()
                        .map(|r| r.encoded().to_vec())
                        .collect(),
                    None => Vec::new(),
                };
                Message::Value {
                    records,
                    contacts: self.closest(&key, k),
                }
            }
            Message::Store { record, .. } => {
                let (reply, refused) = self.store_checked(record, true).await;
                // Honest nodes verify what they pass on: a forged record
                // is the sender's doing.
                if let Some(evidence) = refused.filter(Evidence::is_misbehaviour) {
                    let _ = self.core.observe(&peer.id, evidence);
                }
                reply
            }
            Message::Sip { message, .. } => match self.sip_inbox.get() {
                None => Message::error(ErrorCode::NoSip, "this node serves no SIP"),
                Some(inbox) => match inbox.try_send(SipDelivery {
                    from: peer,
                    message: message.clone(),
                }) {
                    Ok(()) => Message::SipReceived,
                    Err(_) => Message::error(ErrorCode::Busy, "SIP inbox full; try later"),
                },
            },
            _ => return None,
        })
    }

    fn heard_from(&self, peer: Contact, proof: ListenProof) {
        if proof == ListenProof::Verified {
            self.learn(peer);
        }
    }

    /// Before answering a `request` of `peer` that names this overlay:
    /// makes sure the core can learn it at the address it connected from.
    /// A peer resident at that very address is refreshed; otherwise it is
    /// dialed back ([`OverlayService::verify_listener`]) unless a dial-back
    /// to it is running already, found no listener there lately, or
    /// [`MAX_CONCURRENT_LISTEN_CHECKS`] are running (then it is considered
    /// again at its next request). Returns the proof to answer with.
    pub async fn admit_requester(
        &self,
        dialer: &Dialer,
        peer: Contact,
        request: &Message,
    ) -> ListenProof {
        let names_this_overlay = matches!(request,
            Message::FindNode { overlay, .. }
            | Message::FindValue { overlay, .. }
            | Message::Store { overlay, .. } if *overlay == self.params.name);
        if !names_this_overlay {
            return ListenProof::Claimed;
        }
        let resident_there = self.core.read(|p, _| {
            p.table()
                .entries()
                .any(|(_, c, _, _)| c.id == peer.id && same_addr(c.addr, peer.addr))
        });
        if resident_there {
            return ListenProof::Verified;
        }
        let now = now_ms();
        {
            let refused = self
                .listen_checks_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if refused
                .get(&(peer.id, peer.addr))
                .is_some_and(|at| now.saturating_sub(*at) < LISTEN_CHECK_RETRY_MS)
            {
                return ListenProof::Claimed;
            }
        }
        let Ok(place) = self.listen_check_places.clone().try_acquire_owned() else {
            return ListenProof::Claimed;
        };
        if !self
            .listen_checks_running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(peer.id)
        {
            return ListenProof::Claimed;
        }
        let listens = self.verify_listener(dialer, peer).await;
        self.listen_checks_running
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&peer.id);
        drop(place);
        if listens {
            ListenProof::Verified
        } else {
            let mut refused = self
                .listen_checks_refused
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            if refused.len() >= MAX_FAILED_LISTEN_CHECKS {
                refused.retain(|_, at| now.saturating_sub(*at) < LISTEN_CHECK_RETRY_MS);
                if refused.len() >= MAX_FAILED_LISTEN_CHECKS {
                    // Still full of fresh entries: forget the oldest.
                    if let Some(oldest) = refused.iter().min_by_key(|(_, at)| **at).map(|(k, _)| *k)
                    {
                        refused.remove(&oldest);
                    }
                }
            }
            refused.insert((peer.id, peer.addr), now);
            ListenProof::Claimed
        }
    }

    /// Dials `peer` back at the address it connected from: whether it
    /// answers there (the dial pins its id) a FindNode naming this
    /// overlay, i.e. listens there and serves this overlay. A pure client
    /// (no listener on that port) does not; nor does a node that listens
    /// but serves no overlay, or another one: admitted, it would be
    /// evicted again at the first request this node sent it (a Store of a
    /// hand-over answered "not a request", see [`failure_of`]), and
    /// re-admitted at its next request, each time planning a hand-over and
    /// a repair over the whole record store.
    pub async fn verify_listener(&self, dialer: &Dialer, peer: Contact) -> bool {
        let probe = Message::FindNode {
            overlay: self.params.name.clone(),
            target: *peer.id.as_bytes(),
        };
        let listens = matches!(
            dialer.request(peer, &probe).await,
            Ok(Message::Nodes { .. })
        );
        if listens {
            self.listen_checks_passed.fetch_add(1, Ordering::Relaxed);
        } else {
            self.listen_checks_failed.fetch_add(1, Ordering::Relaxed);
            debug!(peer = %peer.id.fmt_short(), addr = %peer.addr, "no node of this overlay at the peer's address; not admitted");
        }
        listens
    }

    /// Dial-backs so far: how many confirmed a listener, how many found
    /// none (the peer was not admitted).
    pub fn listen_checks(&self) -> (u64, u64) {
        (
            self.listen_checks_passed.load(Ordering::Relaxed),
            self.listen_checks_failed.load(Ordering::Relaxed),
        )
    }

    /// One request to `contact` outside a lookup (a Store, a Ping), its
    /// outcome reported to the core.
    pub async fn request(
        &self,
        dialer: &Dialer,
        contact: Contact,
        message: &Message,
    ) -> Result<Message, NetError> {
        let result = dialer.request(contact, message).await;
        self.core.with(|p, now| match &result {
            Ok(Message::Pong { .. } | Message::Stored { .. }) => {
                let _ = p.observe(now, &contact.id, Evidence::Answered);
            }
            Ok(_) => {}
            Err(e) => p.on_request_failed(now, &contact, failure_of(e)),
        });
        result
    }

    /// Verifies and stores a record; with `check_responsible`, first
    /// refuses keys this node is not responsible for (checked before the
    /// signature, so that refusing costs little). Also tells what a
    /// refused record says about its sender
    /// ([`Evidence::from_record_error`]).
    async fn store_checked(
        &self,
        encoded: &[u8],
        check_responsible: bool,
    ) -> (Message, Option<Evidence>) {
        let now = now_secs();
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
            let holds = !self.store().get(&record.key, record.kind, now).is_empty();
            let (accepts, closer, bound) = self.core.read(|p, _| {
                (
                    p.accepts_replica(&record.key, holds),
                    p.closer_than_local(&record.key),
                    p.responsibility_bound(),
                )
            });
            if !accepts {
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
            let mut store = self.store();
            let outcome = store.put(verified, now);
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

    /// Verifies and stores a record (see [`OverlayService::store_checked`]).
    #[cfg(test)]
    async fn store_local(&self, encoded: &[u8], check_responsible: bool) -> Message {
        self.store_checked(encoded, check_responsible).await.0
    }

    /// Checks the records of a FindValue answer for `target`: keeps the
    /// ones that verify in `keep` (each once, at most
    /// [`MAX_FOUND_RECORDS`]) and tells the core the highest sequence and
    /// the worst thing they proved about the sender.
    fn judge_records(
        &self,
        target: &Key,
        records: &[Vec<u8>],
        keep: &mut Vec<Vec<u8>>,
    ) -> RecordsJudged {
        let now = now_secs();
        let mut judged = RecordsJudged::default();
        for r in records {
            let checked = Record::decode(r).and_then(|rec| rec.verify(&self.records, now));
            match checked {
                Ok(v) if v.key() == target => {
                    judged.best_seq = judged.best_seq.max(Some(v.seq()));
                    if keep.len() < MAX_FOUND_RECORDS && !keep.contains(r) {
                        keep.push(r.clone());
                    }
                }
                // A sound record under another key: no honest node answers
                // a FindValue with it.
                Ok(_) => judged.worst = Some(Evidence::Misbehaved(Misbehaviour::BadRecord)),
                Err(e) => {
                    let evidence = Evidence::from_record_error(&e);
                    if evidence.is_misbehaviour() || judged.worst.is_none() {
                        judged.worst = Some(evidence);
                    }
                }
            }
        }
        judged
    }

    /// Runs the core's query for `target` with `goal` over `dialer`
    /// (FindValue of `kind` where the query reads values).
    pub async fn query(
        &self,
        dialer: &Dialer,
        target: Key,
        goal: Goal,
        kind: Option<RecordKind>,
    ) -> Found {
        self.query_traced(dialer, target, goal, kind, None).await
    }

    /// A lookup like [`OverlayService::lookup`] that also tells every
    /// request it made, in the order the answers came ([`trace`]); it
    /// repairs nothing and is not counted in the lookup metrics. With
    /// `kind`, a value lookup; without, one for the closest nodes.
    pub async fn trace(
        &self,
        dialer: &Dialer,
        target: Key,
        kind: Option<RecordKind>,
    ) -> (Found, Vec<TraceHop>) {
        let goal = if kind.is_some() {
            Goal::Value
        } else {
            Goal::Closest
        };
        let mut hops = Vec::new();
        let found = self
            .query_traced(dialer, target, goal, kind, Some(&mut hops))
            .await;
        (found, hops)
    }

    async fn query_traced(
        &self,
        dialer: &Dialer,
        target: Key,
        goal: Goal,
        kind: Option<RecordKind>,
        mut trace: Option<&mut Vec<TraceHop>>,
    ) -> Found {
        let mut referrers: HashMap<NodeId, NodeId> = HashMap::new();
        // Traced: the requests sent and not answered yet.
        let mut in_flight: HashMap<NodeId, (Contact, std::time::Instant)> = HashMap::new();
        let mut query = self.core.with(|p, now| Query::new(p, now, target, goal));
        let request = match kind {
            Some(kind) if query.wants_values() => Message::FindValue {
                overlay: self.params.name.clone(),
                key: target.0,
                kind: kind.to_u64(),
            },
            _ => Message::FindNode {
                overlay: self.params.name.clone(),
                target: target.0,
            },
        };
        let mut records = Vec::new();
        let mut pending: Vec<TimedRequest<'_>> = Vec::new();
        loop {
            let sends: Vec<Contact> = self
                .core
                .with(|p, now| std::iter::from_fn(|| query.poll_request(p, now)).collect());
            for to in sends {
                if trace.is_some() {
                    in_flight.insert(to.id, (to, std::time::Instant::now()));
                }
                let message = request.clone();
                pending.push(Box::pin(async move {
                    let sent = std::time::Instant::now();
                    let answer = dialer.request(to, &message).await;
                    (to, answer, sent.elapsed())
                }));
            }
            if query.is_finished() || pending.is_empty() {
                break;
            }
            let ((to, result, rtt), rest) = futures_select_all(pending).await;
            pending = rest;
            if let Some(hops) = trace.as_deref_mut() {
                in_flight.remove(&to.id);
                hops.push(trace::hop(&query, &referrers, to, &result, rtt));
                trace::learn_referrers(&mut referrers, to, &result);
            }
            match result {
                Ok(Message::Nodes { contacts }) => self.core.with(|p, now| {
                    query.on_answer(p, now, to, &contacts, RecordsJudged::default())
                }),
                Ok(Message::Value {
                    records: answer,
                    contacts,
                }) => {
                    let judged = self.judge_records(&target, &answer, &mut records);
                    self.core
                        .with(|p, now| query.on_answer(p, now, to, &contacts, judged));
                }
                Ok(_) => self
                    .core
                    .with(|p, now| query.on_failure(p, now, to, Failure::NotInOverlay)),
                Err(e) => self
                    .core
                    .with(|p, now| query.on_failure(p, now, to, failure_of(&e))),
            }
        }
        // Requests still out when the lookup ended: asked, never heard.
        if let Some(hops) = trace {
            let mut left: Vec<_> = in_flight.into_values().collect();
            left.sort_by_key(|(_, sent)| *sent);
            for (to, sent) in left {
                hops.push(TraceHop {
                    to,
                    via: referrers.get(&to.id).copied(),
                    path: query.path_of(&to.id),
                    rtt: sent.elapsed(),
                    answer: HopAnswer::Unanswered,
                });
            }
        }
        let outcome = query.found();
        Found {
            closest: outcome.closest.iter().map(|(c, _)| *c).collect(),
            records,
            outcome,
        }
    }

    /// Runs a lookup for `target`; with `kind`, a FindValue lookup that
    /// reads records under the key (see [`Goal::Value`]: it stops once two
    /// holders answered, widens when it found nothing, and repeats itself
    /// beyond an implausibly dense cluster of ids around the key);
    /// without, a FindNode lookup for the closest nodes.
    ///
    /// A value read repairs what it met: holders that answered with an
    /// older version than the newest it found are sent the newest
    /// ([`placement::read_repair_targets`]) before it returns.
    pub async fn lookup(&self, dialer: &Dialer, target: Key, kind: Option<RecordKind>) -> Found {
        let started = std::time::Instant::now();
        let Some(kind) = kind else {
            let found = self.query(dialer, target, Goal::Closest, None).await;
            self.lookups.record(
                LookupKind::Closest,
                found.outcome.requests,
                started.elapsed(),
            );
            return found;
        };
        let found = self.query(dialer, target, Goal::Value, Some(kind)).await;
        self.lookups.record(
            LookupKind::Value {
                found: !found.records.is_empty(),
            },
            found.outcome.requests,
            started.elapsed(),
        );
        self.read_repair(dialer, &found).await;
        found
    }

    /// What this node's lookups did (for `--metrics-listen`).
    pub fn lookup_metrics(&self) -> &LookupMetrics {
        &self.lookups
    }

    /// How long durable record writes took (`None` without a data
    /// directory: records are kept in memory only).
    pub fn write_latency(&self) -> Option<crate::metrics::HistogramSnapshot> {
        self.commit.as_ref().map(Committer::write_latency)
    }

    /// The newest valid record of `kind` under `key` that this node holds
    /// or a lookup finds (verified against the overlay's record policy).
    pub async fn newest(
        &self,
        dialer: &Dialer,
        key: Key,
        kind: RecordKind,
    ) -> Option<VerifiedRecord> {
        let mut candidates = self.local_records(&key, kind);
        candidates.extend(self.lookup(dialer, key, Some(kind)).await.records);
        let now = now_secs();
        candidates
            .iter()
            .filter_map(|bytes| {
                Record::decode(bytes)
                    .and_then(|r| r.verify(&self.records, now))
                    .ok()
            })
            .filter(|r| *r.key() == key && r.kind() == kind)
            .max_by_key(VerifiedRecord::seq)
    }

    /// Every owner's newest valid record of `kind` under `key` that this
    /// node holds or a lookup finds, in owner order (a key many owners
    /// share: a mailbox).
    pub async fn newest_per_owner(
        &self,
        dialer: &Dialer,
        key: Key,
        kind: RecordKind,
    ) -> Vec<VerifiedRecord> {
        let mut candidates = self.local_records(&key, kind);
        candidates.extend(self.lookup(dialer, key, Some(kind)).await.records);
        let now = now_secs();
        let mut newest: std::collections::BTreeMap<[u8; 32], VerifiedRecord> =
            std::collections::BTreeMap::new();
        for record in candidates.iter().filter_map(|bytes| {
            Record::decode(bytes)
                .and_then(|r| r.verify(&self.records, now))
                .ok()
        }) {
            if *record.key() != key || record.kind() != kind {
                continue;
            }
            let owner = *record.owner();
            if newest
                .get(&owner)
                .is_none_or(|held| held.seq() < record.seq())
            {
                newest.insert(owner, record);
            }
        }
        newest.into_values().collect()
    }

    /// Sends the newest record a read found to the holders it met with an
    /// older one; returns how many acknowledged it.
    async fn read_repair(&self, dialer: &Dialer, found: &Found) -> usize {
        let targets = self
            .core
            .read(|p, now| placement::read_repair_targets(p, now, &found.outcome));
        let newest = found
            .records
            .iter()
            .filter_map(|r| Record::decode(r).ok().map(|d| (d.seq, r)))
            .max_by_key(|(seq, _)| *seq)
            .map(|(_, r)| r.clone());
        let (Some(newest), false) = (newest, targets.is_empty()) else {
            return 0;
        };
        debug!(stale_holders = targets.len(), "read repair");
        let message = Message::Store {
            overlay: self.params.name.clone(),
            record: newest,
        };
        let mut pending: Vec<PendingRequest<'_>> = targets
            .into_iter()
            .map(|c| {
                let message = message.clone();
                Box::pin(async move { (c, self.request(dialer, c, &message).await) })
                    as PendingRequest<'_>
            })
            .collect();
        let mut acks = 0;
        while !pending.is_empty() {
            let ((_, result), rest) = futures_select_all(pending).await;
            pending = rest;
            acks += usize::from(matches!(result, Ok(Message::Stored { .. })));
        }
        acks
    }

    /// Stores `record` where the core places it
    /// ([`placement::place_replicas`]: the closest nodes across disjoint
    /// paths, this node if it is among them, as many again beyond a dense
    /// cluster, and the holders of older versions the placement lookup
    /// met). Returns how many nodes acknowledged it.
    pub async fn publish(&self, dialer: &Dialer, record: &Record) -> usize {
        let encoded = record.encode();
        let found = self
            .query(dialer, record.key, Goal::Place, Some(record.kind))
            .await;
        let local_held = self
            .store()
            .get(&record.key, record.kind, now_secs())
            .iter()
            .map(|r| r.seq())
            .max();
        let replicas = self.core.read(|p, now| {
            placement::place_replicas(p, now, &record.key, &found.outcome, record.seq, local_held)
        });
        let message = Message::Store {
            overlay: self.params.name.clone(),
            record: encoded.clone(),
        };
        let mut acks = 0;
        let mut pending: Vec<PendingRequest<'_>> = Vec::new();
        for replica in replicas {
            match replica {
                Replica::Local => {
                    // The lookup just found this node among the closest:
                    // no responsibility check against its own table.
                    if matches!(
                        self.store_checked(&encoded, false).await.0,
                        Message::Stored { .. }
                    ) {
                        acks += 1;
                    }
                }
                Replica::Remote(c) => {
                    let message = message.clone();
                    pending.push(Box::pin(async move {
                        (c, self.request(dialer, c, &message).await)
                    }));
                }
            }
        }
        while !pending.is_empty() {
            let ((_, result), rest) = futures_select_all(pending).await;
            pending = rest;
            if let Ok(Message::Stored { .. }) = result {
                acks += 1;
            }
        }
        acks
    }

    /// Joins through `bootstrap` contacts, as the core's [`JoinPlan`]
    /// says: an attempt ([`OverlayService::join_attempt`]) that found
    /// nobody is made again after a back-off (1 s, 2 s, 4 s, 8 s:
    /// [`crate::limits::JOIN_MAX_ATTEMPTS`] attempts in all), so that a
    /// bootstrap node briefly unreachable or a lost first request does
    /// not leave this node blind until its first bucket refresh. Returns
    /// the routing table's size afterwards.
    pub async fn join(&self, dialer: &Dialer, bootstrap: &[Contact]) -> usize {
        if !bootstrap.is_empty() {
            let mut seeds = self.join_seeds.lock().unwrap_or_else(|p| p.into_inner());
            seeds.clear();
            seeds.extend(bootstrap.iter().take(MAX_JOIN_SEEDS).copied());
        }
        let mut plan = JoinPlan::new();
        loop {
            match self.join_attempt(dialer, bootstrap, &mut plan).await {
                JoinStep::Retry { at_ms } => {
                    let wait = at_ms.saturating_sub(now_ms());
                    debug!(
                        attempts = plan.attempts(),
                        wait_ms = wait,
                        "join found nobody; retrying"
                    );
                    tokio::time::sleep(std::time::Duration::from_millis(wait)).await;
                }
                JoinStep::Refresh(_) => {
                    let contacts = self.table_len();
                    if contacts > 0 {
                        self.ready.set(Readiness {
                            at_unix_ms: now_ms(),
                            how: Joined::Through { contacts },
                        });
                    }
                    return contacts;
                }
                JoinStep::GiveUp => {
                    tracing::warn!(
                        attempts = plan.attempts(),
                        "join found nobody; the bucket refreshes will try again"
                    );
                    return self.table_len();
                }
            }
        }
    }

    /// Whether this node has anybody to join through: bootstrap contacts
    /// are the caller's to know; this says whether a routing table was
    /// reloaded from the data directory (a rejoin through it starts with
    /// the node's upkeep).
    pub fn has_saved_contacts(&self) -> bool {
        !self
            .reloaded
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// Marks this node as having started a new overlay: it has nobody to
    /// join through (no bootstrap node, no saved routing table).
    pub fn start_new_overlay(&self) {
        self.ready.set(Readiness {
            at_unix_ms: now_ms(),
            how: Joined::StartedNew,
        });
    }

    /// When and how this node became part of the overlay, if it did
    /// ([`ready`]).
    pub fn readiness(&self) -> Option<Readiness> {
        self.ready.get()
    }

    /// Waits until this node is part of the overlay.
    pub async fn ready(&self) -> Readiness {
        self.ready.wait().await
    }

    /// The contacts the last join went through: a node whose routing
    /// table ran empty (its bootstrap node was down longer than the join's
    /// retries, or every contact died) joins through them again.
    pub fn join_seeds(&self) -> Vec<Contact> {
        self.join_seeds
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// One attempt of a join through `bootstrap` contacts: learns them
    /// (they must prove their ids), looks up this node's own id, learns
    /// the result across paths, and reports it to `plan`; when the plan
    /// says [`JoinStep::Refresh`], refreshes those buckets
    /// ([`placement::join_refresh_buckets`]) before returning. The caller
    /// waits out a [`JoinStep::Retry`] ([`OverlayService::join`] does).
    pub async fn join_attempt(
        &self,
        dialer: &Dialer,
        bootstrap: &[Contact],
        plan: &mut JoinPlan,
    ) -> JoinStep {
        for b in bootstrap {
            match dialer.connect(*b).await {
                Ok(_) => self.core.with(|p, now| p.learn_outbound(now, *b)),
                Err(e) => {
                    // A reloaded contact that is gone takes a strike.
                    self.core
                        .with(|p, now| p.on_request_failed(now, b, failure_of(&e)));
                    debug!(peer = %b.id.fmt_short(), error = %e, "bootstrap node unreachable")
                }
            }
        }
        let own = Key::from(self.local);
        let found = self.lookup(dialer, own, None).await;
        self.learn_found(&found);
        let step = self
            .core
            .read(|_, now| plan.on_own_lookup(now, &own, &found.outcome));
        if let JoinStep::Refresh(buckets) = &step {
            for bucket in buckets.clone() {
                let Some(target) = self
                    .core
                    .read(|p, _| p.table().key_in_bucket(bucket, rand::random()))
                else {
                    continue;
                };
                let found = self.lookup(dialer, target, None).await;
                self.learn_found(&found);
            }
        }
        step
    }

    /// Joins through a node found on the LAN ([`crate::net::discovery`]),
    /// already dialed (its id proven): one attempt, no retries (discovery
    /// tries again on its own schedule). Makes this node ready if it was
    /// not yet (it waits for the LAN before starting a new overlay).
    /// Returns the routing table's size afterwards.
    pub async fn join_discovered(&self, dialer: &Dialer, contact: Contact) -> usize {
        let mut plan = JoinPlan::new();
        let _ = self.join_attempt(dialer, &[contact], &mut plan).await;
        let contacts = self.table_len();
        if contacts > 0 {
            self.ready.set(Readiness {
                at_unix_ms: now_ms(),
                how: Joined::Through { contacts },
            });
        }
        contacts
    }

    /// Whether `id` is in the routing table.
    pub fn knows(&self, id: &NodeId) -> bool {
        self.core.read(|p, _| p.table().contains(id))
    }

    /// Learns the result of a join or refresh lookup across its paths
    /// ([`crate::overlay::peers::Peers::learn_found`]).
    pub fn learn_found(&self, found: &Found) -> usize {
        self.core
            .with(|p, now| p.learn_found(now, &found.outcome.per_path))
    }
}

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

mod ready;
mod trace;
mod upkeep;

pub use ready::{Joined, Readiness};
pub use trace::{HopAnswer, TraceHop};

#[cfg(test)]
mod tests;

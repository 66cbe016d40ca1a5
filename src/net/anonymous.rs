//! Calls through anonymizing circuits (issue 12, `node run
//! --anonymous-calls`): the I/O around [`crate::relay::session`].
//!
//! - As a callee, the node keeps a circuit to a rendezvous relay chosen
//!   by path choice ([`crate::relay::path`], entered through its saved
//!   guards) and offers its [`RendezvousHandle`] for its users'
//!   registrations ([`AnonymousCalls::handle`]). When that circuit
//!   breaks it builds another to the same relay under the same handle;
//!   when the relay itself is gone it picks a new one (a new handle: the
//!   SIP listener publishes the registrations again).
//! - As a caller, it builds its own circuit to a callee's rendezvous
//!   ([`AnonymousCalls::connect`]), agrees end-to-end keys with the
//!   callee's node (which learns nothing of the caller's node) and opens
//!   a session under a fresh random id.
//!
//! Each session is known to the SIP listener by the other end's
//! pseudonymous node id ([`crate::relay::session::aliases`]); it hands
//! SIP messages and media datagrams in ([`AnonymousCalls::send_sip`],
//! [`AnonymousCalls::send_media`]) and gets the other end's out
//! ([`Inbound`]). One task per session sends a cell every 20 ms each way
//! whatever is waiting ([`Outbox`]), watches what arrives ([`Health`]),
//! and on failure reports the circuit's relays to reputation
//! (unresponsive: a failed circuit does not say which relay failed) and
//! its guard to the guard list, then rebuilds the caller's half within
//! [`REBUILD_ATTEMPTS`] tries; the session continues under its id.

use super::circuits::{BuildError, CircuitService};
use super::dialer::Dialer;
use super::overlay::OverlayService;
use super::relays::find_relays;
use super::rendezvous::{Call, Listener, RendezvousHandle, Resume, SessionEvent};
use crate::admin::MediaTestResult;
use crate::identity::NodeId;
use crate::relay::circuit::PathHop;
use crate::relay::path::{
    choose_path_to, choose_rendezvous_path, Candidate, Endpoints, Guards, PathParams,
};
use crate::relay::session::{
    aliases, Failure, Health, Outbox, Reassembly, SessionFrame, ECHO_DATA_MAX, SESSION_ID_LEN,
};
use crate::reputation::Evidence;
use rand::rngs::OsRng;
use rand::RngCore;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tracing::{debug, info, warn};

/// Sessions a node keeps at once, at most (calls placed and the one
/// received).
pub const MAX_SESSIONS: usize = 32;
/// Tries at rebuilding a broken circuit before the session ends.
pub const REBUILD_ATTEMPTS: u32 = 4;
/// The pause between two tries (doubled each time).
pub const REBUILD_PAUSE: Duration = Duration::from_millis(500);
/// A session that carried neither SIP nor media either way for this
/// long ends (its circuit costs 50 cells a second each way).
pub const SESSION_IDLE: Duration = Duration::from_secs(300);
/// Calls one session carries at once, at most.
pub const MAX_CALLS_PER_SESSION: usize = 16;
/// How long a session outlives its last call (the last messages get
/// through; a new call to the same callee meanwhile reuses it).
pub const SESSION_LINGER: Duration = Duration::from_secs(2);

/// How often an idle rendezvous circuit is probed (an echo of the
/// rendezvous relay); unanswered by the next probe, it is rebuilt.
pub const IDLE_PROBE_EVERY: Duration = Duration::from_secs(2);
/// How long a read of the relay directory serves path choice.
pub const DIRECTORY_TTL: Duration = Duration::from_secs(120);
/// How long a relay that failed to extend a circuit is left out of path
/// choice.
pub const AVOID_FOR: Duration = Duration::from_secs(60);
/// Relays left out at once, at most.
const AVOID_MAX: usize = 32;
/// The file in the node's directory that keeps its guards.
pub const GUARDS_FILE: &str = "guards";

const INBOUND_QUEUE: usize = 512;
const SESSION_QUEUE: usize = 128;
/// The rendezvous circuit is built again after this pause when it could
/// not be (doubled up to [`LISTEN_PAUSE_MAX`]).
const LISTEN_PAUSE: Duration = Duration::from_secs(1);
const LISTEN_PAUSE_MAX: Duration = Duration::from_secs(30);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn now_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// What a session brings to the SIP listener.
#[derive(Debug)]
pub enum Inbound {
    /// A SIP message from the other end.
    Sip {
        /// The other end's pseudonym.
        peer: NodeId,
        /// The message as sent.
        bytes: Vec<u8>,
    },
    /// A media datagram from the other end.
    Media {
        /// The other end's pseudonym.
        peer: NodeId,
        /// The datagram (docs/protocol.md §10).
        datagram: Vec<u8>,
    },
}

enum Out {
    Sip(Vec<u8>),
    Media(Vec<u8>),
}

struct Session {
    tx: mpsc::Sender<Out>,
    /// The calls (Call-IDs) it carries; the session ends soon after its
    /// last call does (bounded by [`MAX_CALLS_PER_SESSION`]).
    calls: std::collections::HashSet<String>,
    /// When it ends, once its calls ended.
    ends_at: Option<Instant>,
    /// This node's pseudonym in the session.
    own_alias: NodeId,
    /// The callee's cookie (a session this node placed), so that a
    /// second call to the same callee reuses the session.
    cookie: Option<[u8; 32]>,
}

/// Counters of the anonymous sessions.
#[derive(Debug, Default)]
pub struct AnonymousStats {
    /// Sessions opened (placed or received).
    pub sessions: AtomicU64,
    /// Circuits that failed under a session.
    pub failures: AtomicU64,
    /// Circuits rebuilt under a session.
    pub rebuilds: AtomicU64,
    /// SIP messages or media that could not be queued.
    pub unsent: AtomicU64,
}

/// The node's anonymous calling (see the module docs).
pub struct AnonymousCalls {
    circuits: Arc<CircuitService>,
    overlay: Arc<OverlayService>,
    dialer: Arc<Dialer>,
    own_addr: SocketAddr,
    hops: usize,
    guards_file: PathBuf,
    guards: Mutex<Guards>,
    handle: watch::Sender<Option<RendezvousHandle>>,
    sessions: Mutex<HashMap<NodeId, Session>>,
    /// Relays that just failed to extend a circuit, left out of path
    /// choice until the instant given (bounded).
    avoid: Mutex<Vec<(NodeId, Instant)>>,
    /// The relay directory as last read, and when: a rebuild should not
    /// wait for lookups (which may be slowed by the very relay that
    /// died).
    directory: Mutex<Option<(Instant, Vec<crate::relay::path::VerifiedRelay>)>>,
    inbound: mpsc::Sender<Inbound>,
    stats: AnonymousStats,
    start: Instant,
}

impl std::fmt::Debug for AnonymousCalls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AnonymousCalls")
            .field("hops", &self.hops)
            .field("sessions", &lock(&self.sessions).len())
            .finish_non_exhaustive()
    }
}

impl AnonymousCalls {
    /// Anonymous calling for the node at `own_addr` with circuits of
    /// `hops` relays (the rendezvous included), its guards kept in
    /// `node_dir`. The receiver gets what sessions bring.
    pub fn new(
        circuits: Arc<CircuitService>,
        overlay: Arc<OverlayService>,
        dialer: Arc<Dialer>,
        own_addr: SocketAddr,
        hops: usize,
        node_dir: PathBuf,
    ) -> (Arc<Self>, mpsc::Receiver<Inbound>) {
        let guards_file = node_dir.join(GUARDS_FILE);
        let guards = match std::fs::read(&guards_file) {
            Ok(bytes) => Guards::decode(&bytes).unwrap_or_else(|e| {
                warn!(file = %guards_file.display(), error = %e, "guard state refused; choosing new guards");
                Guards::new()
            }),
            Err(_) => Guards::new(),
        };
        let (tx, rx) = mpsc::channel(INBOUND_QUEUE);
        let calls = Arc::new(Self {
            circuits,
            overlay,
            dialer,
            own_addr,
            hops,
            guards_file,
            guards: Mutex::new(guards),
            handle: watch::channel(None).0,
            sessions: Mutex::new(HashMap::new()),
            avoid: Mutex::new(Vec::new()),
            directory: Mutex::new(None),
            inbound: tx,
            stats: AnonymousStats::default(),
            start: Instant::now(),
        });
        (calls, rx)
    }

    /// The handle callers reach this node by, once its rendezvous
    /// circuit is up.
    pub fn handle(&self) -> Option<RendezvousHandle> {
        *self.handle.borrow()
    }

    /// Wakes when the handle changes.
    pub fn watch_handle(&self) -> watch::Receiver<Option<RendezvousHandle>> {
        self.handle.subscribe()
    }

    /// The counters.
    pub fn stats(&self) -> &AnonymousStats {
        &self.stats
    }

    /// Whether `peer` is the pseudonym of a session of this node.
    pub fn is_session(&self, peer: &NodeId) -> bool {
        lock(&self.sessions).contains_key(peer)
    }

    /// This node's own pseudonym in the session with `peer`.
    pub fn own_alias(&self, peer: &NodeId) -> Option<NodeId> {
        lock(&self.sessions).get(peer).map(|s| s.own_alias)
    }

    /// A call began in the session with `peer`: a session this node
    /// placed ends [`SESSION_LINGER`] after its last call, freeing the
    /// callee's rendezvous for the next caller.
    pub fn call_started(&self, peer: &NodeId, call_id: &str) {
        if let Some(s) = lock(&self.sessions).get_mut(peer) {
            if s.calls.len() < MAX_CALLS_PER_SESSION {
                s.calls.insert(call_id.to_owned());
            }
            s.ends_at = None;
        }
    }

    /// A call of the session with `peer` ended (BYE answered, or the
    /// INVITE failed).
    pub fn call_ended(&self, peer: &NodeId, call_id: &str) {
        if let Some(s) = lock(&self.sessions).get_mut(peer) {
            s.calls.remove(call_id);
            if s.calls.is_empty() && s.cookie.is_some() {
                s.ends_at = Some(Instant::now() + SESSION_LINGER);
            }
        }
    }

    /// Whether the session with `peer` (placed by this node) is over.
    fn ended(&self, peer: &NodeId) -> bool {
        lock(&self.sessions)
            .get(peer)
            .is_none_or(|s| s.ends_at.is_some_and(|t| Instant::now() >= t))
    }

    /// Queues a SIP message for `peer`; false if it cannot go.
    pub fn send_sip(&self, peer: &NodeId, bytes: Vec<u8>) -> bool {
        self.queue(peer, Out::Sip(bytes))
    }

    /// Queues a media datagram for `peer`; false if it cannot go.
    pub fn send_media(&self, peer: &NodeId, datagram: Vec<u8>) -> bool {
        self.queue(peer, Out::Media(datagram))
    }

    fn queue(&self, peer: &NodeId, out: Out) -> bool {
        let sent = lock(&self.sessions)
            .get(peer)
            .is_some_and(|s| s.tx.try_send(out).is_ok());
        if !sent {
            self.stats.unsent.fetch_add(1, Ordering::Relaxed);
        }
        sent
    }

    fn unix_now(&self) -> u64 {
        crate::unix_now_micros() / 1_000_000
    }

    /// A path by the node's policy ([`crate::relay::path`]): to `point`
    /// when given (a callee's rendezvous), else of fresh relays, the last
    /// of them the rendezvous to be.
    async fn choose(
        &self,
        hops: usize,
        point: Option<&PathHop>,
        peer: Option<NodeId>,
    ) -> Result<Vec<PathHop>, String> {
        let now = self.unix_now();
        let cached = lock(&self.directory)
            .as_ref()
            .filter(|(at, relays)| at.elapsed() < DIRECTORY_TTL && !relays.is_empty())
            .map(|(_, relays)| relays.clone());
        let relays = match cached {
            Some(relays) => relays,
            None => {
                let relays = find_relays(&self.overlay, &self.dialer, now).await;
                *lock(&self.directory) = Some((Instant::now(), relays.clone()));
                relays
            }
        };
        let avoided = self.avoided();
        let candidates: Vec<Candidate> = relays
            .into_iter()
            .filter(|relay| !avoided.contains(relay.node_id()))
            .map(|relay| Candidate { relay, rtt: None })
            .collect();
        let endpoints = Endpoints {
            own_id: self.circuits.local(),
            own_addrs: vec![self.own_addr.ip()],
            peer_id: peer,
            peer_addrs: Vec::new(),
        };
        let params = PathParams {
            hops,
            ..PathParams::default()
        };
        let path = {
            let mut guards = lock(&self.guards);
            let before = guards.clone();
            let chosen = self.overlay.core().with(|peers, _| match point {
                Some(point) => choose_path_to(
                    &candidates,
                    &endpoints,
                    peers.reputation(),
                    &mut guards,
                    &params,
                    point,
                    now,
                    &mut OsRng,
                ),
                None => choose_rendezvous_path(
                    &candidates,
                    &endpoints,
                    peers.reputation(),
                    &mut guards,
                    &params,
                    now,
                    &mut OsRng,
                ),
            });
            if *guards != before {
                self.save_guards(&guards);
            }
            chosen
                .map_err(|e| format!("no path of {hops} relays among {}: {e}", candidates.len()))?
        };
        let hops = path
            .circuit_hops()
            .ok_or_else(|| "a relay without an address".to_owned())?;
        debug!(path = ?hops.iter().map(|h| h.id.fmt_short().to_string()).collect::<Vec<_>>(), "path chosen");
        Ok(hops)
    }

    fn save_guards(&self, guards: &Guards) {
        let tmp = self.guards_file.with_extension("tmp");
        let written = std::fs::write(&tmp, guards.encode())
            .and_then(|()| std::fs::rename(&tmp, &self.guards_file));
        if let Err(e) = written {
            warn!(file = %self.guards_file.display(), error = %e, "guards not saved");
        }
    }

    fn avoided(&self) -> Vec<NodeId> {
        let mut avoid = lock(&self.avoid);
        let now = Instant::now();
        avoid.retain(|(_, until)| *until > now);
        avoid.iter().map(|(id, _)| *id).collect()
    }

    /// A build along `path` failed with `error`: the relay that did not
    /// answer (or could not be reached) is reported unresponsive and left
    /// out of path choice for [`AVOID_FOR`]; a guard is noted as failing.
    fn build_failed(&self, path: &[PathHop], error: &BuildError, fixed_point: bool) {
        let culprit = match error {
            BuildError::Unreachable(_) => path.first(),
            // The relay before could not reach it, or it did not answer.
            BuildError::Timeout { hop, .. } | BuildError::Refused { hop } => {
                path.get(hop.saturating_sub(1))
            }
            _ => None,
        };
        let Some(culprit) = culprit else { return };
        // A rendezvous relay the other end chose is not this node's to
        // avoid; a timeout there is as likely the other end's circuit.
        if fixed_point && path.last().map(|h| h.id) == Some(culprit.id) {
            return;
        }
        let _ = self
            .overlay
            .core()
            .observe(&culprit.id, Evidence::Unresponsive);
        self.avoid(std::iter::once(culprit.id));
        if path.first().map(|h| h.id) == Some(culprit.id) {
            let mut guards = lock(&self.guards);
            guards.note_failure(&culprit.id, self.unix_now());
            self.save_guards(&guards);
        }
    }

    /// A circuit broke: every relay on it is reported unresponsive (which
    /// one failed cannot be told) and its guard noted as failing.
    fn blame(&self, hops: &[PathHop]) {
        self.stats.failures.fetch_add(1, Ordering::Relaxed);
        for hop in hops {
            let _ = self.overlay.core().observe(&hop.id, Evidence::Unresponsive);
        }
        // The relays between the guard and the last hop are left out of
        // the next circuits for a while (cheap if innocent: there are
        // others); the guard gives way to the other guard; the last hop
        // may be a rendezvous point that cannot be changed.
        if let Some(middle) = hops.get(1..hops.len().saturating_sub(1)) {
            self.avoid(middle.iter().map(|h| h.id));
        }
        if let Some(guard) = hops.first() {
            let mut guards = lock(&self.guards);
            guards.note_failure(&guard.id, self.unix_now());
            self.save_guards(&guards);
        }
    }

    fn avoid(&self, relays: impl Iterator<Item = NodeId>) {
        let mut avoid = lock(&self.avoid);
        for id in relays {
            if avoid.len() >= AVOID_MAX {
                avoid.remove(0);
            }
            avoid.push((id, Instant::now() + AVOID_FOR));
        }
    }

    fn credit(&self, hops: &[PathHop]) {
        if let Some(guard) = hops.first() {
            let mut guards = lock(&self.guards);
            guards.note_success(&guard.id, self.unix_now());
        }
    }

    /// The callee's side, until the node stops: keeps a rendezvous
    /// circuit and serves the session that comes through it.
    pub async fn run_rendezvous(self: Arc<Self>) {
        let mut pause = LISTEN_PAUSE;
        let mut resume: Option<Resume> = None;
        loop {
            let point = resume.as_ref().map(|r| r.handle().point);
            let listener = match self.choose(self.hops, point.as_ref(), None).await {
                Ok(path) => {
                    let built = match &resume {
                        Some(r) => self.circuits.resume(path.clone(), r.clone()).await,
                        None => self.circuits.listen(path.clone()).await,
                    };
                    built.map_err(|e| {
                        self.build_failed(&path, &e, resume.is_some());
                        e.to_string()
                    })
                }
                Err(e) => Err(e),
            };
            let listener = match listener {
                Ok(l) => l,
                Err(e) => {
                    debug!(error = %e, resuming = resume.is_some(), "rendezvous circuit not built");
                    if pause >= LISTEN_PAUSE_MAX / 2 {
                        // The relay itself seems gone: a new rendezvous.
                        resume = None;
                        self.handle.send_replace(None);
                    }
                    tokio::time::sleep(pause).await;
                    pause = (pause * 2).min(LISTEN_PAUSE_MAX);
                    continue;
                }
            };
            pause = LISTEN_PAUSE;
            self.credit(listener.hops());
            let handle = listener.handle();
            if self.handle.borrow().as_ref() != Some(&handle) {
                info!(point = %handle.point.id.fmt_short(), hops = listener.hops().len(), "rendezvous ready");
                self.handle.send_replace(Some(handle));
            } else {
                info!("rendezvous circuit rebuilt under the same handle");
                self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
            }
            resume = Some(listener.resumable());
            let hops = listener.hops().to_vec();
            if self.serve_listener(listener).await == Ended::Broken {
                self.blame(&hops);
            }
        }
    }

    /// Serves the sessions that come through `listener` until its
    /// circuit breaks, or a session goes quiet (the caller left, or a
    /// circuit broke somewhere: either way this end takes its rendezvous
    /// back on a fresh circuit, which also frees it of a dead caller's
    /// splice). One session at a time: the rendezvous splices one caller
    /// at a time.
    async fn serve_listener(self: &Arc<Self>, mut listener: Listener) -> Ended {
        let hops = u8::try_from(listener.hops().len()).unwrap_or(u8::MAX);
        let mut end = End::new(self.clone(), hops, now_ms(self.start));
        // The session under way: the caller's pseudonym, what the SIP
        // listener queues for it, and how its circuit does.
        let mut current: Option<(NodeId, mpsc::Receiver<Out>, Health)> = None;
        // While no caller is spliced, the relay echoes a probe now and
        // then: no answer, and the circuit broke somewhere silent.
        let mut probed: Option<Instant> = None;
        let mut idle = tokio::time::interval(IDLE_PROBE_EVERY);
        idle.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let due = end.outbox.next_due_ms();
            let wait = Duration::from_millis(due.saturating_sub(now_ms(self.start)));
            tokio::select! {
                _ = idle.tick(), if current.is_none() => {
                    if probed.is_some_and(|at| at.elapsed() >= IDLE_PROBE_EVERY) {
                        debug!("rendezvous circuit did not answer its probe");
                        return Ended::Broken;
                    }
                    if probed.is_none() && listener.probe().is_ok() {
                        probed = Some(Instant::now());
                    }
                }
                event = listener.recv() => match event {
                    SessionEvent::Joined => {
                        probed = None;
                        if let Some((peer, _, _)) = current.take() {
                            self.end_session(&peer);
                        }
                    }
                    SessionEvent::Data(plain) => {
                        let now = now_ms(self.start);
                        match SessionFrame::decode(&plain) {
                            Ok(SessionFrame::Open { session }) => {
                                let (caller, callee) = aliases(&session);
                                match &mut current {
                                    // The caller rebuilt its circuit: the
                                    // session goes on.
                                    Some((peer, _, health)) if *peer == caller => {
                                        *health = Health::new(now);
                                    }
                                    _ => {
                                        if let Some((peer, _, _)) = current.take() {
                                            self.end_session(&peer);
                                        }
                                        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
                                        if self.add_session(caller, callee, None, tx) {
                                            current = Some((caller, rx, Health::new(now)));
                                            end = End::new(self.clone(), hops, now);
                                        }
                                    }
                                }
                            }
                            Ok(frame) => {
                                if let Some((peer, _, health)) = current.as_mut() {
                                    health.heard(now);
                                    end.on_frame(*peer, frame, Some(health), now);
                                }
                            }
                            Err(e) => debug!(error = %e, "session frame refused"),
                        }
                    }
                    SessionEvent::Echo => probed = None,
                    SessionEvent::Refused(why) => debug!(%why, "rendezvous cell refused"),
                    SessionEvent::Closed => break,
                },
                out = async {
                    match current.as_mut() {
                        Some((_, rx, _)) => rx.recv().await,
                        None => std::future::pending().await,
                    }
                } => {
                    if let Some(out) = out {
                        end.queue(out);
                    }
                }
                _ = tokio::time::sleep(wait), if current.is_some() => {
                    let now = now_ms(self.start);
                    let mut quiet = false;
                    if let Some((_, _, health)) = current.as_mut() {
                        if let Some(seq) = health.probe(now) {
                            end.probe(seq);
                        }
                        // Loss and delay are the caller's to mend (it
                        // rebuilds its half; a broken half here closes
                        // this circuit). Silence ends the session: the
                        // caller left, or comes back with its Open.
                        quiet = matches!(health.check(now), Some(Failure::Silent(_)));
                    }
                    if quiet {
                        // The session stays known: a caller that rebuilt
                        // its circuit opens it again under its id.
                        if let Some((peer, _, _)) = current.take() {
                            debug!(peer = %peer.fmt_short(), "anonymous session quiet");
                            self.end_session(&peer);
                        }
                        return Ended::Quiet;
                    }
                    for plain in end.outbox.poll(now) {
                        if listener.send(&plain).is_err() {
                            self.stats.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
            }
        }
        if let Some((peer, _, _)) = current {
            debug!(peer = %peer.fmt_short(), "rendezvous circuit broke during a session");
            self.end_session(&peer);
        }
        Ended::Broken
    }

    fn add_session(
        &self,
        peer: NodeId,
        own_alias: NodeId,
        cookie: Option<[u8; 32]>,
        tx: mpsc::Sender<Out>,
    ) -> bool {
        let mut sessions = lock(&self.sessions);
        sessions.retain(|_, s| !s.tx.is_closed());
        if sessions.len() >= MAX_SESSIONS {
            warn!("too many anonymous sessions; one refused");
            return false;
        }
        sessions.insert(
            peer,
            Session {
                tx,
                calls: std::collections::HashSet::new(),
                ends_at: None,
                own_alias,
                cookie,
            },
        );
        self.stats.sessions.fetch_add(1, Ordering::Relaxed);
        true
    }

    fn end_session(&self, peer: &NodeId) {
        lock(&self.sessions).remove(peer);
    }

    /// Opens a session to the callee behind `handle` (or finds the one
    /// open): the callee's pseudonym, which the SIP listener sends to.
    pub async fn connect(self: &Arc<Self>, handle: RendezvousHandle) -> Result<NodeId, String> {
        if let Some(peer) = lock(&self.sessions)
            .iter()
            .find(|(_, s)| s.cookie == Some(handle.cookie) && !s.tx.is_closed())
            .map(|(p, _)| *p)
        {
            return Ok(peer);
        }
        let mut session = [0u8; SESSION_ID_LEN];
        OsRng.fill_bytes(&mut session);
        let call = self.call(&handle, &session).await?;
        let (caller, callee) = aliases(&session);
        let (tx, rx) = mpsc::channel(SESSION_QUEUE);
        if !self.add_session(callee, caller, Some(handle.cookie), tx) {
            return Err("too many anonymous sessions".into());
        }
        tokio::spawn(self.clone().serve_call(call, handle, session, rx));
        Ok(callee)
    }

    /// Builds a circuit to `handle`'s rendezvous and opens `session`.
    async fn call(
        &self,
        handle: &RendezvousHandle,
        session: &[u8; SESSION_ID_LEN],
    ) -> Result<Call, String> {
        let path = self
            .choose(self.hops, Some(&handle.point), Some(handle.node))
            .await?;
        let mut call = match self.circuits.call(path.clone(), handle).await {
            Ok(call) => call,
            Err(e) => {
                self.build_failed(&path, &e, true);
                return Err(e.to_string());
            }
        };
        let open = SessionFrame::Open { session: *session }
            .encode()
            .map_err(|e| e.to_string())?;
        call.send(&open).map_err(|e| e.to_string())?;
        self.credit(call.hops());
        Ok(call)
    }

    /// The caller's side of a session: constant-rate cells both ways,
    /// failure detection, rebuilds.
    async fn serve_call(
        self: Arc<Self>,
        mut call: Call,
        handle: RendezvousHandle,
        session: [u8; SESSION_ID_LEN],
        mut rx: mpsc::Receiver<Out>,
    ) {
        let (_, peer) = aliases(&session);
        let hops = u8::try_from(call.hops().len()).unwrap_or(u8::MAX);
        let mut end = End::new(self.clone(), hops, now_ms(self.start));
        let mut health = Health::new(now_ms(self.start));
        let mut used = Instant::now();
        'session: loop {
            if used.elapsed() >= SESSION_IDLE {
                debug!(callee = %peer.fmt_short(), "anonymous session idle; ended");
                break;
            }
            if self.ended(&peer) {
                debug!(callee = %peer.fmt_short(), "anonymous session's calls ended");
                break;
            }
            let due = end.outbox.next_due_ms();
            let wait = Duration::from_millis(due.saturating_sub(now_ms(self.start)));
            let failed = tokio::select! {
                event = call.recv() => match event {
                    SessionEvent::Data(plain) => {
                        let now = now_ms(self.start);
                        health.heard(now);
                        match SessionFrame::decode(&plain) {
                            Ok(frame) => {
                                if matches!(frame, SessionFrame::Sip { .. } | SessionFrame::Media(_)) {
                                    used = Instant::now();
                                }
                                end.on_frame(peer, frame, Some(&mut health), now)
                            }
                            Err(e) => debug!(error = %e, "session frame refused"),
                        }
                        None
                    }
                    SessionEvent::Refused(why) => {
                        debug!(%why, "session cell refused");
                        None
                    }
                    SessionEvent::Joined | SessionEvent::Echo => None,
                    SessionEvent::Closed => Some("the circuit closed".to_owned()),
                },
                out = rx.recv() => match out {
                    Some(out) => {
                        used = Instant::now();
                        end.queue(out);
                        None
                    }
                    // The SIP listener let go of the session.
                    None => break 'session,
                },
                _ = tokio::time::sleep(wait) => {
                    let now = now_ms(self.start);
                    if let Some(seq) = health.probe(now) {
                        end.probe(seq);
                    }
                    for plain in end.outbox.poll(now) {
                        if call.send(&plain).is_err() {
                            self.stats.unsent.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                    health.check(now).map(|f| f.to_string())
                }
            };
            let Some(why) = failed else { continue };
            warn!(callee = %peer.fmt_short(), %why, "anonymous call's circuit failed; rebuilding");
            self.blame(call.hops());
            // Meanwhile what the SIP listener queues goes on into the
            // outbox (media beyond a few packets is dropped there, SIP
            // waits), so that a BYE is not lost to a full queue.
            let rebuild = async {
                let mut pause = REBUILD_PAUSE;
                for attempt in 1..=REBUILD_ATTEMPTS {
                    // A pause first: the callee, which noticed the same
                    // silence, takes its rendezvous back meanwhile.
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    match self.call(&handle, &session).await {
                        Ok(c) => return Some(c),
                        Err(e) => debug!(attempt, error = %e, "circuit not rebuilt"),
                    }
                }
                None
            };
            tokio::pin!(rebuild);
            let rebuilt = loop {
                tokio::select! {
                    done = &mut rebuild => break done,
                    out = rx.recv() => match out {
                        Some(out) => end.queue(out),
                        None => break None,
                    },
                }
            };
            match rebuilt {
                Some(c) => {
                    info!(callee = %peer.fmt_short(), "anonymous call's circuit rebuilt");
                    self.stats.rebuilds.fetch_add(1, Ordering::Relaxed);
                    call = c;
                    health = Health::new(now_ms(self.start));
                }
                None => {
                    warn!(callee = %peer.fmt_short(), "anonymous call's circuit could not be rebuilt; session ended");
                    break;
                }
            }
        }
        self.end_session(&peer);
    }

    /// `p2psip media-test`: opens a session of its own to `handle` with
    /// circuits of `hops` relays, sends 50 echo requests a second with a
    /// 160-byte payload for `seconds`, and measures what comes back.
    pub async fn media_test(
        self: &Arc<Self>,
        handle: RendezvousHandle,
        hops: usize,
        seconds: u64,
    ) -> Result<MediaTestResult, String> {
        let mut session = [0u8; SESSION_ID_LEN];
        OsRng.fill_bytes(&mut session);
        // The callee's rendezvous may be busy with a call, or between two
        // circuits: a few tries.
        let mut pause = REBUILD_PAUSE;
        let mut attempt = 1;
        let mut call = loop {
            let path = self
                .choose(hops, Some(&handle.point), Some(handle.node))
                .await?;
            match self.circuits.call(path.clone(), &handle).await {
                Ok(call) => break call,
                Err(e) if attempt >= REBUILD_ATTEMPTS => return Err(e.to_string()),
                Err(e) => {
                    self.build_failed(&path, &e, true);
                    debug!(attempt, error = %e, "media-test circuit not built");
                    tokio::time::sleep(pause).await;
                    pause *= 2;
                    attempt += 1;
                }
            }
        };
        let open = SessionFrame::Open { session }
            .encode()
            .map_err(|e| e.to_string())?;
        call.send(&open).map_err(|e| e.to_string())?;
        let own_hops = call.hops().len();
        let start = Instant::now();
        let mut outbox = Outbox::new(0);
        let total = seconds.saturating_mul(50);
        let (mut sent, mut rtts) = (0u64, Vec::new());
        let (mut jitter, mut last_transit) = (0.0f64, None::<f64>);
        let mut far_hops = 0usize;
        let payload = vec![0x5a; 160.min(ECHO_DATA_MAX)];
        let deadline = Duration::from_secs(seconds) + Duration::from_secs(2);
        while start.elapsed() < deadline {
            let now = now_ms(start);
            let wait = Duration::from_millis(outbox.next_due_ms().saturating_sub(now));
            tokio::select! {
                event = call.recv() => match event {
                    SessionEvent::Data(plain) => {
                        if let Ok(SessionFrame::EchoReply { sent_us, hops, .. }) = SessionFrame::decode(&plain) {
                            let now_us = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
                            let rtt = now_us.saturating_sub(sent_us) as f64 / 1000.0;
                            // RFC 3550's estimator on the one-way transit
                            // (half the round trip).
                            let transit = rtt / 2.0;
                            if let Some(last) = last_transit {
                                jitter += ((transit - last).abs() - jitter) / 16.0;
                            }
                            last_transit = Some(transit);
                            rtts.push(rtt);
                            far_hops = usize::from(hops);
                        }
                    }
                    SessionEvent::Closed => return Err("the circuit closed during the test".into()),
                    SessionEvent::Refused(_) | SessionEvent::Joined | SessionEvent::Echo => {}
                },
                _ = tokio::time::sleep(wait) => {
                    if sent < total {
                        sent += 1;
                        outbox.push_echo(SessionFrame::EchoRequest {
                            seq: u32::try_from(sent).unwrap_or(u32::MAX),
                            sent_us: u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX),
                            data: payload.clone(),
                        });
                    }
                    for plain in outbox.poll(now_ms(start)) {
                        let _ = call.send(&plain);
                    }
                    if sent >= total && rtts.len() as u64 >= sent {
                        break;
                    }
                }
            }
        }
        rtts.sort_by(f64::total_cmp);
        let pct = |p: f64| -> f64 {
            if rtts.is_empty() {
                return 0.0;
            }
            let i = ((rtts.len() as f64 - 1.0) * p).round() as usize;
            rtts.get(i).copied().unwrap_or(0.0)
        };
        let received = rtts.len() as u64;
        Ok(MediaTestResult {
            sent,
            received,
            loss: if sent == 0 {
                0.0
            } else {
                1.0 - received.min(sent) as f64 / sent as f64
            },
            latency_ms_p50: pct(0.5),
            latency_ms_p99: pct(0.99),
            jitter_ms: jitter,
            // The rendezvous is the last hop of both circuits.
            hops: (own_hops + far_hops).saturating_sub(usize::from(far_hops > 0)),
        })
    }
}

/// Why a rendezvous circuit stopped serving.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ended {
    /// It was torn down.
    Broken,
    /// Its session went quiet.
    Quiet,
}

/// One end of a session: its outbox and SIP reassembly.
struct End {
    calls: Arc<AnonymousCalls>,
    outbox: Outbox,
    reassembly: Reassembly,
    hops: u8,
    probes: HashMap<u32, u64>,
    start: Instant,
}

impl End {
    fn new(calls: Arc<AnonymousCalls>, hops: u8, now: u64) -> Self {
        let start = calls.start;
        Self {
            calls,
            outbox: Outbox::new(now),
            reassembly: Reassembly::default(),
            hops,
            probes: HashMap::new(),
            start,
        }
    }

    fn queue(&mut self, out: Out) {
        let queued = match out {
            Out::Sip(bytes) => self.outbox.push_sip(&bytes),
            Out::Media(datagram) => self.outbox.push_media(datagram),
        };
        if let Err(e) = queued {
            debug!(error = %e, "not queued on the session");
            self.calls.stats.unsent.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn probe(&mut self, seq: u32) {
        let now = now_ms(self.start);
        if self.probes.len() >= 8 {
            self.probes.clear();
        }
        self.probes.insert(seq, now);
        self.outbox.push_echo(SessionFrame::EchoRequest {
            seq,
            sent_us: now.saturating_mul(1000),
            data: Vec::new(),
        });
    }

    fn on_frame(
        &mut self,
        peer: NodeId,
        frame: SessionFrame,
        health: Option<&mut Health>,
        now: u64,
    ) {
        match frame {
            SessionFrame::Cover | SessionFrame::Open { .. } => {}
            SessionFrame::Sip {
                msg,
                index,
                count,
                data,
            } => match self.reassembly.push(msg, index, count, data) {
                Ok(Some(bytes)) => {
                    if self
                        .calls
                        .inbound
                        .try_send(Inbound::Sip { peer, bytes })
                        .is_err()
                    {
                        debug!("SIP from a session dropped: the listener is behind");
                    }
                }
                Ok(None) => {}
                Err(e) => debug!(error = %e, "SIP fragment refused"),
            },
            SessionFrame::Media(datagram) => {
                let _ = self
                    .calls
                    .inbound
                    .try_send(Inbound::Media { peer, datagram });
            }
            SessionFrame::EchoRequest { seq, sent_us, data } => {
                self.outbox.push_echo(SessionFrame::EchoReply {
                    seq,
                    sent_us,
                    hops: self.hops,
                    data,
                });
            }
            SessionFrame::EchoReply { seq, .. } => {
                if let (Some(sent), Some(h)) = (self.probes.remove(&seq), health) {
                    h.echoed(now.saturating_sub(sent));
                }
            }
        }
    }
}

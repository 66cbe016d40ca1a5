//! The node's sans-IO core ([`Peers`]: routing table, reputation and the
//! decisions built on them) behind a lock, driven by the wall clock, with
//! its actions carried out: the one place where a ban closes a peer's
//! connections.
//!
//! Every part of the node reports what it observes through
//! [`NodeCore::observe`] or [`NodeCore::with`] (the server: protocol
//! violations, over-rate requests, forged records in Stores; the overlay
//! driver: answers, failures, lookup faults) and asks before acting
//! (banned peers are refused at accept time and never dialed). After each
//! call the core's [`PeerAction`]s are carried out here: a
//! [`PeerAction::Disconnect`] closes every connection to the peer, inbound
//! and dialed, with [`CLOSE_BANNED`] (after half a second, so that the
//! answer that told it why can leave); a [`PeerAction::Ping`] is queued for
//! the pinger task ([`NodeCore::next_ping`]).
//!
//! The reputation table is saved to [`REPUTATION_FILE`] (0600, atomically)
//! when it changed, periodically and at shutdown; it is loaded at start,
//! so a restart neither forgives a banned peer nor forgets a good one. A
//! file that cannot be read is moved aside (never deleted) and the node
//! starts with an empty table.

use super::conns::Connections;
use super::CLOSE_BANNED;
use crate::identity::NodeId;
use crate::limits::MAX_PENDING_CHURN_EVENTS;
use crate::metrics::TrafficMetrics;
use crate::overlay::config::OverlayParams;
use crate::overlay::peers::{Admission, ChurnEvent, Defences, PeerAction, Peers};
use crate::overlay::rate::RefusalStreak;
use crate::overlay::routing::Contact;
use crate::reputation::{Evidence, PeerReport, Policy, Reputation, Verdict};
use std::collections::VecDeque;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use tracing::{info, warn};

/// The reputation table in a node's data directory.
pub const REPUTATION_FILE: &str = "reputation.cbor";

/// Liveness checks waiting for the pinger, at most (older ones dropped:
/// the bucket's newcomer simply waits for the next chance).
const MAX_QUEUED_PINGS: usize = 64;

/// How long a banned peer's connections stay open for answers already
/// being written before they are closed.
const BAN_CLOSE_GRACE: std::time::Duration = std::time::Duration::from_millis(500);

/// Unix time now, in milliseconds: the core's clock. The only place the
/// node reads the wall clock for the core.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// The node's core (see the module docs).
#[derive(Debug)]
pub struct NodeCore {
    peers: Mutex<Peers>,
    /// Where the reputation table is saved; `None` keeps it in memory.
    path: Option<PathBuf>,
    /// The reputation table changed since the last save.
    dirty: AtomicBool,
    conns: Arc<Connections>,
    pings: Mutex<VecDeque<Contact>>,
    ping_queued: tokio::sync::Notify,
    churn_queued: tokio::sync::Notify,
    traffic: TrafficMetrics,
}

impl NodeCore {
    /// The node's traffic counters (metrics).
    pub fn traffic(&self) -> &TrafficMetrics {
        &self.traffic
    }

    /// The core of node `local` in overlay `params`, its reputation table
    /// loaded from `dir` if given (see the module docs).
    pub fn new(
        local: NodeId,
        params: &OverlayParams,
        policy: Policy,
        dir: Option<&Path>,
        conns: Arc<Connections>,
    ) -> Self {
        let mut peers = Peers::new(local, params, Defences::P2PSIP, policy);
        peers.keep_churn(MAX_PENDING_CHURN_EVENTS);
        let path = dir.map(|d| d.join(REPUTATION_FILE));
        if let Some(dir) = dir {
            if let Some(table) = load_reputation(dir) {
                peers.set_reputation(table);
            }
        }
        Self {
            peers: Mutex::new(peers),
            path,
            dirty: AtomicBool::new(false),
            conns,
            pings: Mutex::new(VecDeque::new()),
            ping_queued: tokio::sync::Notify::new(),
            churn_queued: tokio::sync::Notify::new(),
            traffic: TrafficMetrics::default(),
        }
    }

    /// The node's connections.
    pub fn connections(&self) -> &Arc<Connections> {
        &self.conns
    }

    /// Runs `f` on the core at the current time, then carries out the
    /// actions it queued.
    pub fn with<R>(&self, f: impl FnOnce(&mut Peers, u64) -> R) -> R {
        self.apply(f, |_| true)
    }

    /// As [`NodeCore::with`]; the table is marked for saving and the
    /// churn handler woken only if `changed` says so of the result (or
    /// actions were queued).
    fn apply<R>(
        &self,
        f: impl FnOnce(&mut Peers, u64) -> R,
        changed: impl FnOnce(&R) -> bool,
    ) -> R {
        let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        let now = now_ms();
        let out = f(&mut peers, now);
        let mut actions = Vec::new();
        while let Some(a) = peers.poll_action() {
            actions.push(a);
        }
        drop(peers);
        let changed = changed(&out) || !actions.is_empty();
        if changed {
            self.dirty.store(true, Ordering::Relaxed);
        }
        for action in actions {
            self.carry_out(action, now);
        }
        if changed {
            self.churn_queued.notify_one();
        }
        out
    }

    /// Reads the core at the current time.
    pub fn read<R>(&self, f: impl FnOnce(&Peers, u64) -> R) -> R {
        let peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
        f(&peers, now_ms())
    }

    fn carry_out(&self, action: PeerAction, now: u64) {
        match action {
            PeerAction::Disconnect { peer, until_ms } => {
                warn!(
                    peer = %peer.fmt_short(),
                    ban_secs = until_ms.saturating_sub(now) / 1000,
                    "peer banned; closing its connections"
                );
                // The answer to the request whose evidence banned the peer
                // (a forged Store's refusal) gets a moment to leave, so the
                // peer learns why; its new requests are refused at once
                // meanwhile (the server and the dialer ask `is_banned`).
                let conns = self.conns.clone();
                match tokio::runtime::Handle::try_current() {
                    Ok(rt) => {
                        rt.spawn(async move {
                            tokio::time::sleep(BAN_CLOSE_GRACE).await;
                            conns.close_all(&peer, CLOSE_BANNED, b"banned");
                        });
                    }
                    Err(_) => conns.close_all(&peer, CLOSE_BANNED, b"banned"),
                }
            }
            PeerAction::Ping { resident } => {
                let mut pings = self.pings.lock().unwrap_or_else(|p| p.into_inner());
                if pings.iter().any(|c| c.id == resident.id) {
                    return;
                }
                if pings.len() >= MAX_QUEUED_PINGS {
                    pings.pop_front();
                }
                pings.push_back(resident);
                drop(pings);
                self.ping_queued.notify_one();
            }
        }
    }

    /// Records `evidence` about `peer` (the one enforcement path: a ban
    /// closes every connection to it).
    pub fn observe(&self, peer: &NodeId, evidence: Evidence) -> Verdict {
        self.with(|p, now| p.observe(now, peer, evidence))
    }

    /// Whether to serve one request `peer` sent from `source` now, on a
    /// connection whose refusals in a row are `streak`
    /// ([`Peers::admit_request`]; a ban it causes closes every connection
    /// to the peer). A served request changes no evidence: it marks
    /// nothing for saving.
    pub fn admit_request(
        &self,
        peer: &NodeId,
        source: IpAddr,
        streak: &mut RefusalStreak,
    ) -> Admission {
        self.apply(
            |p, now| p.admit_request(now, peer, source, streak),
            |a| *a != Admission::Serve,
        )
    }

    /// Whether to serve a served request of `peer` from `source` that
    /// turned out to carry SIP ([`Peers::admit_sip`]: it moves to the
    /// peer's SIP budget).
    pub fn admit_sip(&self, peer: &NodeId, source: IpAddr) -> bool {
        self.apply(|p, now| p.admit_sip(now, peer, source), |ok| !*ok)
    }

    /// Whether `peer` is banned now.
    pub fn is_banned(&self, peer: &NodeId) -> bool {
        self.read(|p, now| p.is_banned(now, peer))
    }

    /// The factor of `peer`'s request rate allowance now.
    pub fn rate_factor(&self, peer: &NodeId) -> f64 {
        self.read(|p, now| p.rate_factor(now, peer))
    }

    /// Every tracked peer, in id order.
    pub fn report(&self) -> Vec<PeerReport> {
        self.read(|p, now| p.reputation().report(now))
    }

    /// Replaces the ban lengths and table size; the evidence is kept.
    pub fn set_policy(&self, policy: Policy) {
        self.with(|p, _| p.set_reputation_policy(policy));
    }

    /// The next resident to ping, if any.
    pub fn next_ping(&self) -> Option<Contact> {
        self.pings
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop_front()
    }

    /// Completes when a ping may have been queued since the last call.
    pub async fn ping_queued(&self) {
        self.ping_queued.notified().await;
    }

    /// The oldest churn event not yet handled.
    pub fn next_churn(&self) -> Option<ChurnEvent> {
        self.peers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .poll_churn()
    }

    /// Completes when a churn event may have been queued since the last
    /// call (a queued notification is never lost).
    pub async fn churn_queued(&self) {
        self.churn_queued.notified().await;
    }

    /// Saves the reputation table if it may have changed since the last
    /// save (and the node has a data directory). Returns whether it wrote.
    pub fn save(&self) -> std::io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let encoded = {
            let mut peers = self.peers.lock().unwrap_or_else(|p| p.into_inner());
            // Expired bans and forgotten peers need not be written.
            peers.expire(now_ms());
            peers.reputation().encode()
        };
        crate::fsutil::write_atomically(path, &encoded, 0o600, true).inspect_err(|_| {
            // Try again next time.
            self.dirty.store(true, Ordering::Relaxed);
        })?;
        Ok(true)
    }
}

/// The table saved in `dir`, if there is a readable one. A file that does
/// not decode is renamed to `reputation.cbor.bad` (replacing an older
/// one) and reported; the node starts with an empty table rather than not
/// at all.
fn load_reputation(dir: &Path) -> Option<Reputation> {
    let path = dir.join(REPUTATION_FILE);
    match std::fs::read(&path) {
        Ok(bytes) => match Reputation::decode(&bytes, now_ms()) {
            Ok(loaded) => {
                info!(peers = loaded.len(), "reputation table loaded");
                Some(loaded)
            }
            Err(e) => {
                let aside = dir.join(format!("{REPUTATION_FILE}.bad"));
                warn!(
                    file = %path.display(),
                    error = %e,
                    moved_to = %aside.display(),
                    "reputation table unreadable; starting with an empty one"
                );
                if let Err(e) = std::fs::rename(&path, &aside) {
                    warn!(error = %e, "could not move the unreadable reputation table aside");
                }
                None
            }
        },
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            warn!(file = %path.display(), error = %e, "cannot read the reputation table");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    fn core_in(dir: &Path) -> NodeCore {
        NodeCore::new(
            id(0),
            &OverlayParams::default(),
            Policy::default(),
            Some(dir),
            Arc::default(),
        )
    }

    #[test]
    fn a_ban_survives_a_restart_and_the_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let core = core_in(dir.path());
        assert!(core.report().is_empty());
        assert!(!core.save().unwrap(), "nothing changed, nothing written");
        let verdict = core.observe(&id(1), Evidence::ProtocolViolation);
        assert!(matches!(verdict, Verdict::Disconnect { .. }));
        let _ = core.observe(&id(2), Evidence::Verified);
        assert!(core.save().unwrap());
        let path = dir.path().join(REPUTATION_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let again = core_in(dir.path());
        assert!(again.is_banned(&id(1)));
        assert!(!again.is_banned(&id(2)));
        let report = again.report();
        assert_eq!(report.len(), 2);
        assert_eq!(report.iter().find(|r| r.id == id(2)).unwrap().verified, 1);
        assert_eq!(again.rate_factor(&id(1)), 0.0);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPUTATION_FILE);
        std::fs::write(&path, b"\xffnot cbor").unwrap();
        let core = core_in(dir.path());
        assert!(core.report().is_empty());
        assert!(!path.exists());
        let aside = dir.path().join(format!("{REPUTATION_FILE}.bad"));
        assert_eq!(std::fs::read(aside).unwrap(), b"\xffnot cbor");
    }

    #[test]
    fn a_full_bucket_asks_for_one_ping_per_resident() {
        let params = OverlayParams {
            k: 1,
            id_difficulty: 0,
            ..OverlayParams::default()
        };
        let core = NodeCore::new(id(0), &params, Policy::default(), None, Arc::default());
        let at = |n: u8| Contact {
            id: id(n),
            addr: std::net::SocketAddr::from(([10, n, 0, 1], 4433)),
        };
        let verified = crate::overlay::peers::ListenProof::Verified;
        core.with(|p, now| p.learn(now, at(0x80), verified));
        // Two newcomers for the same full bucket: the resident is pinged
        // once.
        core.with(|p, now| p.learn(now, at(0x81), verified));
        core.with(|p, now| p.learn(now, at(0x82), verified));
        assert_eq!(core.next_ping(), Some(at(0x80)));
        assert_eq!(core.next_ping(), None);
    }
}

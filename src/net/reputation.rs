//! The node's reputation table: the sans-IO [`Reputation`] behind a lock,
//! driven by the wall clock and persisted in the data directory.
//!
//! Every part of the node reports what it observes here (the server:
//! protocol violations, over-rate requests, forged records in Stores; the
//! overlay's lookups: answers, timeouts, provably wrong answers), and asks
//! it before acting (banned peers are refused at accept time and never
//! dialed; lookup seeds are ranked; replicas go only to peers that may
//! hold them; a peer's request rate scales with its score).
//!
//! The table is saved to [`REPUTATION_FILE`] (0600, atomically) by the
//! maintenance task when it changed, and at shutdown; it is loaded at
//! start, so a restart neither forgives a banned peer nor forgets a good
//! one. A file that cannot be read is moved aside (never deleted) and the
//! node starts with an empty table.

use crate::identity::NodeId;
use crate::overlay::key::Distance;
use crate::overlay::lookup::PeerFault;
use crate::reputation::{Evidence, PeerReport, Policy, Reputation, Standing, Verdict};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use tracing::{info, warn};

/// The reputation table in a node's data directory.
pub const REPUTATION_FILE: &str = "reputation.cbor";

/// The node's reputation table (see the module docs).
#[derive(Debug)]
pub struct PeerReputation {
    table: Mutex<Reputation>,
    /// Where the table is saved; `None` keeps it in memory only.
    path: Option<PathBuf>,
    /// Changed since the last save.
    dirty: AtomicBool,
}

/// Unix time now, in milliseconds (the reputation table's clock).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

impl PeerReputation {
    /// A table kept in memory only.
    pub fn in_memory(policy: Policy) -> Self {
        Self {
            table: Mutex::new(Reputation::with_policy(policy)),
            path: None,
            dirty: AtomicBool::new(false),
        }
    }

    /// The table saved in `dir` ([`REPUTATION_FILE`]), or an empty one if
    /// there is none yet. A file that does not decode is renamed to
    /// `reputation.cbor.bad` (replacing an older one) and reported; the
    /// node starts with an empty table rather than not at all.
    pub fn open(dir: &Path, policy: Policy) -> Self {
        let path = dir.join(REPUTATION_FILE);
        let mut table = Reputation::with_policy(policy);
        match std::fs::read(&path) {
            Ok(bytes) => match Reputation::decode(&bytes, now_ms()) {
                Ok(mut loaded) => {
                    loaded.set_policy(policy);
                    info!(peers = loaded.len(), "reputation table loaded");
                    table = loaded;
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
                }
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => warn!(file = %path.display(), error = %e, "cannot read the reputation table"),
        }
        Self {
            table: Mutex::new(table),
            path: Some(path),
            dirty: AtomicBool::new(false),
        }
    }

    /// Replaces the ban lengths and table size; the evidence is kept.
    pub fn set_policy(&self, policy: Policy) {
        self.table().set_policy(policy);
    }

    fn table(&self) -> std::sync::MutexGuard<'_, Reputation> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Records `evidence` about `peer`; see [`Reputation::observe`].
    pub fn observe(&self, peer: &NodeId, evidence: Evidence) -> Verdict {
        let verdict = self.table().observe(*peer, evidence, now_ms());
        self.changed(peer, verdict);
        verdict
    }

    /// Records a lookup fault; see [`Reputation::on_fault`].
    pub fn on_fault(&self, fault: &PeerFault) -> Verdict {
        let verdict = self.table().on_fault(fault, now_ms());
        self.changed(&fault.peer, verdict);
        verdict
    }

    fn changed(&self, peer: &NodeId, verdict: Verdict) {
        self.dirty.store(true, Ordering::Relaxed);
        if let Verdict::Disconnect { banned_until_ms } = verdict {
            let secs = banned_until_ms.saturating_sub(now_ms()) / 1000;
            warn!(peer = %peer.fmt_short(), ban_secs = secs, "peer banned");
        }
    }

    /// Whether `peer` is banned now.
    pub fn is_banned(&self, peer: &NodeId) -> bool {
        self.table().is_banned(peer, now_ms())
    }

    /// Whether a routing-table `resident` keeps its place against
    /// `newcomer` now; see [`Reputation::prefer_resident`].
    pub fn prefer_resident(&self, resident: &NodeId, newcomer: &NodeId) -> bool {
        self.table().prefer_resident(resident, newcomer, now_ms())
    }

    /// `peer`'s standing now; see [`Reputation::standing`].
    pub fn standing(&self, peer: &NodeId) -> Standing {
        self.table().standing(peer, now_ms())
    }

    /// Whether `peer` may be asked to hold a replica now; see
    /// [`Reputation::may_hold_replica`].
    pub fn may_hold_replica(&self, peer: &NodeId) -> bool {
        self.table().may_hold_replica(peer, now_ms())
    }

    /// The factor of `peer`'s request rate allowance now; see
    /// [`Reputation::rate_factor`].
    pub fn rate_factor(&self, peer: &NodeId) -> f64 {
        self.table().rate_factor(peer, now_ms())
    }

    /// Sorts `candidates` best first and drops banned ones; see
    /// [`Reputation::rank_candidates`].
    pub fn rank<T>(&self, candidates: &mut Vec<T>, key: impl Fn(&T) -> (NodeId, bool, Distance)) {
        let now = now_ms();
        let table = self.table();
        candidates.retain(|c| !table.is_banned(&key(c).0, now));
        table.rank_candidates(candidates, now, key);
    }

    /// Every tracked peer, in id order.
    pub fn report(&self) -> Vec<PeerReport> {
        self.table().report(now_ms())
    }

    /// Peers tracked.
    pub fn len(&self) -> usize {
        self.table().len()
    }

    /// Whether no peer is tracked.
    pub fn is_empty(&self) -> bool {
        self.table().is_empty()
    }

    /// Saves the table if it changed since the last save (and the table
    /// has a file). Returns whether it wrote.
    pub fn save(&self) -> std::io::Result<bool> {
        let Some(path) = &self.path else {
            return Ok(false);
        };
        if !self.dirty.swap(false, Ordering::Relaxed) {
            return Ok(false);
        }
        let encoded = {
            let mut table = self.table();
            // Expired bans and forgotten peers need not be written.
            table.expire(now_ms());
            table.encode()
        };
        crate::fsutil::write_atomically(path, &encoded, 0o600, true).inspect_err(|_| {
            // Try again next time.
            self.dirty.store(true, Ordering::Relaxed);
        })?;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn id(n: u8) -> NodeId {
        NodeId::from_bytes([n; 32])
    }

    #[test]
    fn a_ban_survives_a_restart_and_the_file_is_owner_only() {
        let dir = tempfile::tempdir().unwrap();
        let rep = PeerReputation::open(dir.path(), Policy::default());
        assert!(rep.is_empty());
        assert!(!rep.save().unwrap(), "nothing changed, nothing written");
        let verdict = rep.observe(&id(1), Evidence::ProtocolViolation);
        assert!(matches!(verdict, Verdict::Disconnect { .. }));
        let _ = rep.observe(&id(2), Evidence::Verified);
        assert!(rep.save().unwrap());
        let path = dir.path().join(REPUTATION_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);

        let again = PeerReputation::open(dir.path(), Policy::default());
        assert!(again.is_banned(&id(1)));
        assert!(!again.is_banned(&id(2)));
        assert_eq!(again.len(), 2);
        let report = again.report();
        assert_eq!(report.iter().find(|r| r.id == id(2)).unwrap().verified, 1);
    }

    #[test]
    fn a_damaged_file_is_moved_aside_not_lost() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(REPUTATION_FILE);
        std::fs::write(&path, b"\xffnot cbor").unwrap();
        let rep = PeerReputation::open(dir.path(), Policy::default());
        assert!(rep.is_empty());
        assert!(!path.exists());
        let aside = dir.path().join(format!("{REPUTATION_FILE}.bad"));
        assert_eq!(std::fs::read(aside).unwrap(), b"\xffnot cbor");
    }

    #[test]
    fn ranking_drops_banned_and_puts_good_first() {
        let rep = PeerReputation::in_memory(Policy {
            ban_base: Duration::from_secs(60),
            ..Policy::default()
        });
        let _ = rep.observe(&id(1), Evidence::ProtocolViolation);
        for _ in 0..10 {
            let _ = rep.observe(&id(3), Evidence::Verified);
        }
        let target = crate::overlay::key::Key([0; 32]);
        let mut candidates = vec![id(1), id(2), id(3)];
        rep.rank(&mut candidates, |c| {
            (
                *c,
                false,
                target.distance(&crate::overlay::key::Key::from(*c)),
            )
        });
        assert_eq!(candidates, vec![id(3), id(2)]);
        assert_eq!(rep.rate_factor(&id(1)), 0.0);
        assert!(rep.rate_factor(&id(3)) > 1.0);
    }
}

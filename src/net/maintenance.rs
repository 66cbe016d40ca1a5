//! The overlay's upkeep, run by a node while it serves ([`super::Node::run`]
//! spawns it when the node has an overlay and stops it at shutdown):
//!
//! - **rejoin**: at start, a node whose routing table was reloaded from
//!   its data directory joins through those contacts (each must prove its
//!   id again), so a restarted node needs no bootstrap node (a join that
//!   reached nobody is tried again as the core's
//!   [`crate::overlay::placement::JoinPlan`] says, for 15 s at most, before
//!   the loop below starts);
//! - **hand-over**: a contact just admitted to the routing table is sent
//!   the records it is now among the `replication` closest nodes for;
//! - **repair**: when a contact is evicted, the records it held are pushed
//!   to the node that takes its place among the closest;
//! - **republish** every `republish_interval`: every record held goes to
//!   the `replication` closest nodes known (Kademlia's republish), in
//!   batches of [`MAX_REPUBLISH_RECORDS_PER_ROUND`];
//! - **refresh**: a lookup of the node's own id, and one of a random key
//!   in each bucket not heard from for `refresh_interval`;
//! - **expiry** of records (memory and disk), and **saving** the routing
//!   table to the data directory; at each expiry sweep, a node whose
//!   routing table is empty joins again through the contacts of its last
//!   join ([`OverlayService::join_seeds`]).
//!
//! Every interval is drawn with jitter. Store requests are paced by a
//! token bucket (`requests_per_sec` over all peers); hand-over and repair
//! run in at most [`MAX_CONCURRENT_HANDOVERS`] tasks, fed by the bounded
//! churn queue of [`OverlayService`]; at most one republish and one
//! refresh round run at a time.

use super::dialer::Dialer;
use super::overlay::{ChurnEvent, OverlayService};
use super::NetError;
use crate::identity::NodeId;
use crate::limits::{
    DEFAULT_BUCKET_REFRESH_INTERVAL, DEFAULT_CONTACTS_SAVE_INTERVAL, DEFAULT_EXPIRE_INTERVAL,
    DEFAULT_MAINTENANCE_JITTER, DEFAULT_MAINTENANCE_REQUESTS_PER_SEC, DEFAULT_REPUBLISH_INTERVAL,
    MAX_CONCURRENT_HANDOVERS, MAX_REPUBLISH_RECORDS_PER_ROUND,
};
use crate::overlay::key::Key;
use crate::overlay::rate::{RateLimit, TokenBucket};
use crate::overlay::routing::Contact;
use crate::overlay::store::SlotKey;
use crate::wire::Message;
use rand::Rng;
use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::task::JoinSet;
use tracing::{debug, info, warn};

/// Shortest interval the maintenance loop waits, whatever it is given: a
/// zero interval must not make it spin.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// How a node maintains its overlay. The defaults are the production
/// values; tests shorten them with [`super::Node::with_maintenance`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Maintenance {
    /// Interval between republish rounds (default 1 h).
    pub republish_interval: Duration,
    /// Interval between bucket refresh rounds, and the age after which a
    /// bucket not heard from is refreshed (default 1 h).
    pub refresh_interval: Duration,
    /// Interval between expiry sweeps (default 60 s).
    pub expire_interval: Duration,
    /// Interval between saves of the routing table to the data directory
    /// (default 5 min; it is saved at shutdown too).
    pub save_interval: Duration,
    /// Every interval is drawn uniformly within this much of its nominal
    /// length (default 6 min; zero for exact intervals).
    pub jitter: Duration,
    /// Store requests per second sent by maintenance, all peers together
    /// (default 50; 0 for no pacing).
    pub requests_per_sec: u32,
}

impl Default for Maintenance {
    fn default() -> Self {
        Self {
            republish_interval: DEFAULT_REPUBLISH_INTERVAL,
            refresh_interval: DEFAULT_BUCKET_REFRESH_INTERVAL,
            expire_interval: DEFAULT_EXPIRE_INTERVAL,
            save_interval: DEFAULT_CONTACTS_SAVE_INTERVAL,
            jitter: DEFAULT_MAINTENANCE_JITTER,
            requests_per_sec: DEFAULT_MAINTENANCE_REQUESTS_PER_SEC,
        }
    }
}

impl Maintenance {
    /// `interval` with this configuration's jitter, at least
    /// [`MIN_INTERVAL`].
    fn jittered(&self, interval: Duration, rng: &mut impl Rng) -> Duration {
        let jitter = self.jitter.min(interval);
        let spread = u64::try_from(jitter.as_millis().saturating_mul(2)).unwrap_or(u64::MAX);
        let offset = if spread == 0 {
            0
        } else {
            rng.gen_range(0..=spread)
        };
        interval
            .saturating_sub(jitter)
            .saturating_add(Duration::from_millis(offset))
            .max(MIN_INTERVAL)
    }
}

/// Paces maintenance requests: one token bucket for all peers.
#[derive(Debug)]
struct Pacer {
    limit: RateLimit,
    bucket: Mutex<TokenBucket>,
    epoch: tokio::time::Instant,
}

impl Pacer {
    fn new(per_sec: u32) -> Self {
        let limit = RateLimit {
            burst: per_sec.max(1),
            refill_every: match per_sec {
                0 => Duration::ZERO,
                n => Duration::from_secs(1) / n,
            },
            max_refused_in_a_row: 0,
        };
        Self {
            bucket: Mutex::new(TokenBucket::full(&limit, Duration::ZERO)),
            limit,
            epoch: tokio::time::Instant::now(),
        }
    }

    /// Waits for a token. Each wait lasts until a token is due, so the
    /// loop ends as soon as this caller wins one.
    async fn ready(&self) {
        loop {
            let taken = self
                .bucket
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .try_take(&self.limit, self.epoch.elapsed());
            match taken {
                Ok(()) => return,
                Err(wait) => tokio::time::sleep(wait.max(Duration::from_millis(1))).await,
            }
        }
    }
}

/// What became of one Store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// The peer stored it.
    Stored,
    /// The peer answered but did not store it (not responsible, refused,
    /// rate limited).
    Declined,
    /// The peer did not answer.
    Failed,
}

/// What one task of the maintenance shares.
#[derive(Debug, Clone)]
struct Upkeep {
    overlay: Arc<OverlayService>,
    dialer: Arc<Dialer>,
    pacer: Arc<Pacer>,
}

impl Upkeep {
    async fn store(&self, to: Contact, encoded: &[u8]) -> Sent {
        self.pacer.ready().await;
        let request = Message::Store {
            overlay: self.overlay.params().name.clone(),
            record: encoded.to_vec(),
        };
        // The outcome goes to the core (a strike for an unanswered
        // Store, nothing for a refusal).
        match self.overlay.request(&self.dialer, to, &request).await {
            Ok(Message::Stored { .. }) => Sent::Stored,
            Ok(_) | Err(NetError::Remote { .. }) => Sent::Declined,
            Err(e) => {
                debug!(peer = %to.id.fmt_short(), error = %e, "store during maintenance failed");
                Sent::Failed
            }
        }
    }

    /// Sends a newcomer the records it is now a holder of; stops at the
    /// first failure (the newcomer is gone).
    async fn hand_over(self, newcomer: Contact, records: Vec<Vec<u8>>) {
        let total = records.len();
        let mut stored = 0usize;
        for encoded in &records {
            match self.store(newcomer, encoded).await {
                Sent::Stored => stored += 1,
                Sent::Declined => {}
                Sent::Failed => break,
            }
        }
        debug!(peer = %newcomer.id.fmt_short(), stored, total, "hand-over done");
    }

    /// Pushes records to the nodes that replaced an evicted holder.
    async fn repair(self, pushes: Vec<(Contact, Vec<u8>)>) {
        let mut failed: HashSet<NodeId> = HashSet::new();
        for (to, encoded) in &pushes {
            if failed.contains(&to.id) {
                continue;
            }
            if self.store(*to, encoded).await == Sent::Failed {
                failed.insert(to.id);
            }
        }
    }

    /// One republish round over the next batch of records; `cursor` is
    /// where the previous batch stopped.
    async fn republish(self, cursor: Arc<Mutex<Option<SlotKey>>>) {
        let start = cursor.lock().unwrap_or_else(|p| p.into_inner()).take();
        let batch = self
            .overlay
            .republish_batch(start.as_ref(), MAX_REPUBLISH_RECORDS_PER_ROUND);
        // Peers that failed this round are skipped for its rest: one
        // timeout per dead peer, not one per record.
        let mut failed: HashSet<NodeId> = HashSet::new();
        let mut stores = 0usize;
        for slot in &batch {
            let Some(plan) = self.overlay.republish_plan(slot) else {
                continue;
            };
            let mut acks = 0usize;
            for to in plan.candidates {
                if acks >= plan.needed {
                    break;
                }
                if failed.contains(&to.id) {
                    continue;
                }
                match self.store(to, &plan.encoded).await {
                    Sent::Stored => acks += 1,
                    Sent::Declined => {}
                    Sent::Failed => {
                        failed.insert(to.id);
                    }
                }
            }
            stores += acks;
        }
        debug!(records = batch.len(), stores, "republish round done");
        let next = if batch.len() < MAX_REPUBLISH_RECORDS_PER_ROUND {
            None
        } else {
            batch.last().copied()
        };
        *cursor.lock().unwrap_or_else(|p| p.into_inner()) = next;
    }

    /// Looks up this node's own id, then a random key in each stale
    /// bucket; the peers that answer are refreshed in the table, and each
    /// result is learned across paths ([`OverlayService::learn_found`]).
    async fn refresh(self, max_age: Duration) {
        let own = Key::from(self.overlay.local_id());
        let found = self.overlay.lookup(&self.dialer, own, None).await;
        self.overlay.learn_found(&found);
        let targets = self
            .overlay
            .refresh_targets(max_age, || rand::thread_rng().gen());
        let n = targets.len();
        for target in targets {
            let found = self.overlay.lookup(&self.dialer, target, None).await;
            self.overlay.learn_found(&found);
        }
        debug!(buckets = n, "refresh round done");
    }
}

/// Runs the maintenance of `overlay` until the task is aborted.
pub(crate) async fn maintain(overlay: Arc<OverlayService>, dialer: Arc<Dialer>, m: Maintenance) {
    let upkeep = Upkeep {
        overlay: overlay.clone(),
        dialer: dialer.clone(),
        pacer: Arc::new(Pacer::new(m.requests_per_sec)),
    };
    let seeds = overlay.take_reloaded();
    if !seeds.is_empty() {
        let size = overlay.join(&dialer, &seeds).await;
        info!(
            saved = seeds.len(),
            table_size = size,
            "rejoined through the saved routing table"
        );
    }
    let cursor: Arc<Mutex<Option<SlotKey>>> = Arc::default();
    // Dropping a JoinSet aborts its tasks: aborting this task stops them.
    let mut handovers: JoinSet<()> = JoinSet::new();
    let mut republishing: JoinSet<()> = JoinSet::new();
    let mut refreshing: JoinSet<()> = JoinSet::new();
    let next = |interval: Duration| {
        tokio::time::Instant::now() + m.jittered(interval, &mut rand::thread_rng())
    };
    let mut next_republish = next(m.republish_interval);
    let mut next_refresh = next(m.refresh_interval);
    let mut next_expire = next(m.expire_interval);
    let mut next_save = next(m.save_interval);
    loop {
        while handovers.try_join_next().is_some() {}
        while republishing.try_join_next().is_some() {}
        while refreshing.try_join_next().is_some() {}
        while let Some(event) = overlay.next_event() {
            let task: Task = match event {
                ChurnEvent::Admitted(c) => {
                    let records = overlay.plan_handover(&c);
                    if records.is_empty() {
                        continue;
                    }
                    Box::pin(upkeep.clone().hand_over(c, records))
                }
                ChurnEvent::Evicted(c) => {
                    let pushes = overlay.plan_repair(&c);
                    if pushes.is_empty() {
                        continue;
                    }
                    Box::pin(upkeep.clone().repair(pushes))
                }
            };
            if handovers.len() >= MAX_CONCURRENT_HANDOVERS {
                let _ = handovers.join_next().await;
            }
            handovers.spawn(task);
        }
        tokio::select! {
            _ = overlay.event_queued() => {}
            _ = tokio::time::sleep_until(next_republish) => {
                if republishing.is_empty() {
                    republishing.spawn(upkeep.clone().republish(cursor.clone()));
                }
                next_republish = next(m.republish_interval);
            }
            _ = tokio::time::sleep_until(next_refresh) => {
                if refreshing.is_empty() {
                    refreshing.spawn(upkeep.clone().refresh(m.refresh_interval));
                }
                next_refresh = next(m.refresh_interval);
            }
            _ = tokio::time::sleep_until(next_expire) => {
                let dropped = overlay.expire_records();
                if dropped > 0 {
                    info!(dropped, "expired records dropped");
                }
                // A node that knows nobody (its bootstrap node was down for
                // longer than the join's retries, or every contact died)
                // joins again through the contacts of its last join, rather
                // than stay blind until the next refresh.
                let seeds = overlay.join_seeds();
                if overlay.table_len() == 0 && !seeds.is_empty() && refreshing.is_empty() {
                    let (overlay, dialer) = (overlay.clone(), dialer.clone());
                    refreshing.spawn(async move {
                        let size = overlay.join(&dialer, &seeds).await;
                        info!(table_size = size, "routing table was empty; joined again");
                    });
                }
                next_expire = next(m.expire_interval);
            }
            _ = tokio::time::sleep_until(next_save) => {
                if let Err(e) = overlay.save_contacts() {
                    warn!(error = %e, "could not save the routing table");
                }
                next_save = next(m.save_interval);
            }
        }
    }
}

/// A boxed task of the maintenance (hand-over and repair share a set).
type Task = std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>;

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn intervals_stay_within_their_jitter_and_never_reach_zero() {
        let m = Maintenance {
            jitter: Duration::from_secs(60),
            ..Maintenance::default()
        };
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let hour = Duration::from_secs(3600);
        let draws: Vec<Duration> = (0..1000).map(|_| m.jittered(hour, &mut rng)).collect();
        assert!(draws
            .iter()
            .all(|d| *d >= hour - Duration::from_secs(60) && *d <= hour + Duration::from_secs(60)));
        // Spread over the window, not one value.
        let distinct: HashSet<Duration> = draws.into_iter().collect();
        assert!(distinct.len() > 100, "{}", distinct.len());
        // Jitter larger than the interval is capped by it; zero is floored.
        let wild = Maintenance {
            jitter: Duration::from_secs(10),
            ..Maintenance::default()
        };
        for _ in 0..100 {
            let d = wild.jittered(Duration::from_secs(1), &mut rng);
            assert!(d >= MIN_INTERVAL && d <= Duration::from_secs(2));
        }
        let exact = Maintenance {
            jitter: Duration::ZERO,
            ..Maintenance::default()
        };
        assert_eq!(exact.jittered(hour, &mut rng), hour);
        assert_eq!(exact.jittered(Duration::ZERO, &mut rng), MIN_INTERVAL);
    }

    #[test]
    fn defaults_are_the_documented_production_values() {
        let m = Maintenance::default();
        assert_eq!(m.republish_interval, Duration::from_secs(3600));
        assert_eq!(m.refresh_interval, Duration::from_secs(3600));
        assert_eq!(m.expire_interval, Duration::from_secs(60));
        assert_eq!(m.save_interval, Duration::from_secs(300));
        assert_eq!(m.jitter, Duration::from_secs(360));
        assert_eq!(m.requests_per_sec, 50);
    }
}

//! The driver's upkeep side: persistence of the routing table, expiry,
//! and the planning of republish, hand-over, repair and bucket refresh
//! (the decisions are [`crate::overlay::placement`]'s, the sending
//! [`crate::net::maintenance`]'s), and the graceful leave.

use super::{now_secs, slot_of, ChurnEvent, OverlayService, RepublishPlan};
use crate::identity::NodeId;
use crate::limits::{
    MAX_BUCKET_REFRESHES_PER_ROUND, MAX_HANDOVER_RECORDS, MAX_LEAVE_STORES_IN_FLIGHT,
    MAX_REPUBLISH_RECORDS_PER_ROUND, MAX_SAVED_CONTACTS,
};
use crate::net::commit::Committer;
use crate::net::dialer::Dialer;
use crate::net::disk::DiskError;
use crate::overlay::key::Key;
use crate::overlay::placement;
use crate::overlay::routing::{Contact, InsertOutcome};
use crate::overlay::store::SlotKey;
use crate::wire::Message;
use std::sync::Arc;
use std::time::Duration;
use tracing::debug;

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
        let admitted: Vec<Contact> = self.core.with(|p, now| {
            saved
                .into_iter()
                .filter(|c| {
                    // They were verified before the restart; a dead one
                    // fails its rejoin dial and takes a strike.
                    match p.restore(now, *c) {
                        Some(InsertOutcome::Inserted) => true,
                        Some(InsertOutcome::Refused(why)) => {
                            debug!(peer = %c.id.fmt_short(), %why, "saved contact not admitted");
                            false
                        }
                        _ => false,
                    }
                })
                .collect()
        });
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
        let mut all: Vec<(usize, Contact, u64)> = self.core.read(|p, _| {
            p.table()
                .entries()
                .enumerate()
                .map(|(i, (_, c, first_seen, _))| (i, c, first_seen))
                .collect()
        });
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
        self.expire_records_at(now_secs())
    }

    pub(super) fn expire_records_at(&self, now: u64) -> usize {
        let mut store = self.store();
        let dropped = store.expire_slots(now);
        if let (Some(disk), false) = (&self.disk, dropped.is_empty()) {
            // Queued under the store lock, as a Store's write is: a newer
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

    /// The (at most [`MAX_HANDOVER_RECORDS`]) live records whose keys are
    /// nearest to the contact of `event`, as (key, encoding)
    /// ([`placement::nearest_held`]).
    fn churn_candidates(&self, event: &ChurnEvent) -> Vec<(Key, Vec<u8>)> {
        let now = now_secs();
        let point = Key::from(placement::churn_contact(event).id);
        let store = self.store();
        let held = store.records_for_replication(now).map(|r| (*r.key(), r));
        placement::nearest_held(&point, held, MAX_HANDOVER_RECORDS)
            .into_iter()
            .map(|(key, r)| (key, r.encoded().to_vec()))
            .collect()
    }

    /// What `event` moves ([`placement::churn_pushes`]) of the records
    /// nearest to its contact (at most [`MAX_HANDOVER_RECORDS`]; the
    /// periodic republish covers any beyond): each encoding with the
    /// contact to send it to.
    pub fn plan_churn(&self, event: &ChurnEvent) -> Vec<(Contact, Vec<u8>)> {
        let candidates = self.churn_candidates(event);
        let r = self.params.replication;
        self.core
            .read(|p, _| placement::churn_pushes(p.table(), r, event, candidates))
    }

    /// The records to hand over to `newcomer`, just admitted: those held
    /// of which it is now among the `replication` closest known nodes
    /// ([`OverlayService::plan_churn`] of [`ChurnEvent::Admitted`]).
    pub fn plan_handover(&self, newcomer: &Contact) -> Vec<Vec<u8>> {
        self.plan_churn(&ChurnEvent::Admitted(*newcomer))
            .into_iter()
            .map(|(_, encoded)| encoded)
            .collect()
    }

    /// The records to re-push after `evicted` left the table, each to the
    /// node that took its place among the closest
    /// ([`OverlayService::plan_churn`] of [`ChurnEvent::Evicted`]).
    pub fn plan_repair(&self, evicted: &Contact) -> Vec<(Contact, Vec<u8>)> {
        self.plan_churn(&ChurnEvent::Evicted(*evicted))
    }

    /// The slots of at most `limit` live records after `after`, in slot
    /// order: one republish batch.
    pub(crate) fn republish_batch(&self, after: Option<&SlotKey>, limit: usize) -> Vec<SlotKey> {
        self.store().live_slots_after(after, limit, now_secs())
    }

    /// How to republish the record of `slot`, if it is still live
    /// ([`placement::republish_targets`]).
    pub(crate) fn republish_plan(&self, slot: &SlotKey) -> Option<RepublishPlan> {
        let (key, encoded) = {
            let store = self.store();
            let record = store.get_slot(slot, now_secs())?;
            (*record.key(), record.encoded().to_vec())
        };
        let r = self.params.replication;
        let (candidates, needed) = self
            .core
            .read(|p, _| placement::republish_targets(p.table(), r, &key));
        Some(RepublishPlan {
            encoded,
            candidates,
            needed,
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
        let max_age = u64::try_from(max_age.as_millis()).unwrap_or(u64::MAX);
        self.core.read(|p, now| {
            let table = p.table();
            table
                .stale_buckets(now, max_age)
                .into_iter()
                .take(MAX_BUCKET_REFRESHES_PER_ROUND)
                .filter_map(|b| table.key_in_bucket(b, random()))
                .collect()
        })
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
                        // Nobody is left to act on what the answers say.
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

    /// This node's id.
    pub fn local_id(&self) -> NodeId {
        self.local
    }
}

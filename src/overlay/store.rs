//! The storage rules of a node's record store: which verified record a node
//! keeps, replaces or refuses, within which bounds. In memory and sans-IO
//! (`now` is a parameter); persistence and replication drive it from
//! outside.
//!
//! # Slots and sequence numbers
//!
//! A *slot* is `(key, kind, owner)`: each owner has its own slot at a key,
//! so one owner can never displace another's record (the kinds' access
//! rules make a key belong to one owner anyway). In a slot:
//!
//! | offered record | outcome |
//! |---|---|
//! | expired at `now` | refused: [`StoreError::Expired`] |
//! | first in the slot | [`PutOutcome::Stored`] |
//! | higher `seq` than the slot's | replaces it: [`PutOutcome::Replaced`] |
//! | same `seq`, same bytes | [`PutOutcome::Unchanged`] |
//! | same `seq`, other bytes | refused: [`StoreError::Conflict`] (the owner signed two records with one `seq`) |
//! | lower `seq` | refused: [`StoreError::Rollback`] |
//!
//! # No rollback: tombstones
//!
//! A slot remembers the highest `seq` it accepted and its *horizon*, the
//! latest expiry of any record it accepted. When the slot's record expires
//! the slot stays, as a tombstone, until the horizon: so a record that was
//! replaced by a newer one with an earlier expiry cannot be replayed after
//! that newer one expires. A node cannot know of older records it never
//! saw; owners therefore MUST NOT give a record an earlier expiry than any
//! record they published before in the same slot (to withdraw a value
//! early, publish an empty one with a higher `seq`).
//!
//! # Bounds
//!
//! A slot, live or tombstone, counts against its owner's quota
//! ([`StoreLimits::max_slots_per_owner`]) and costs
//! [`STORE_SLOT_OVERHEAD`] bytes plus its record's encoding against
//! [`StoreLimits::max_bytes`]. A store at a bound refuses with a typed
//! error and never evicts: which records a node is responsible for (the
//! keys closest to it) is the replication layer's decision.
//!
//! The accounted bytes are what the store keeps resident: a
//! [`VerifiedRecord`] is one copy of its encoding and a small fixed part
//! (the value is parsed from the encoding when asked for), and
//! [`STORE_SLOT_OVERHEAD`] is the measured resident cost of a slot beyond
//! its encoding (map entry, fixed fields, per-owner count, allocator
//! rounding). A store at [`StoreLimits::max_bytes`] therefore holds about
//! that much memory, whatever the records' sizes (`benches/store.rs`
//! measures it; figures in `docs/benchmarks.md`).

use super::key::Key;
use super::record::{mailbox, MailboxRefusal, RecordKind, VerifiedRecord};
use crate::limits::{
    DEFAULT_STORE_MAX_BYTES, DEFAULT_STORE_MAX_SLOTS_PER_OWNER, MAX_RECORDS_PER_ANSWER,
    STORE_SLOT_OVERHEAD,
};
use rand::seq::SliceRandom;
use std::collections::BTreeMap;

/// A slot: `(key, kind, owner public key)`.
pub type SlotKey = (Key, RecordKind, [u8; 32]);

/// The bounds of a [`RecordStore`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreLimits {
    /// Most slots (live records and tombstones) one owner may hold.
    pub max_slots_per_owner: usize,
    /// Most accounted bytes: the encoded records plus
    /// [`STORE_SLOT_OVERHEAD`] per slot.
    pub max_bytes: usize,
}

impl Default for StoreLimits {
    fn default() -> Self {
        Self {
            max_slots_per_owner: DEFAULT_STORE_MAX_SLOTS_PER_OWNER,
            max_bytes: DEFAULT_STORE_MAX_BYTES,
        }
    }
}

/// What [`RecordStore::put`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// The slot held no record (it was new, or a tombstone).
    Stored,
    /// The record replaced one with a lower sequence number.
    Replaced {
        /// The replaced record's sequence number.
        previous_seq: u64,
    },
    /// The slot already held exactly this record.
    Unchanged,
}

/// Why [`RecordStore::put`] refused a record.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The record has expired.
    #[error("record expired at {expires} (unix time), now is {now}")]
    Expired {
        /// The record's expiry.
        expires: u64,
        /// The time of the put.
        now: u64,
    },
    /// The slot has seen a higher sequence number: storing this record
    /// would roll the slot back.
    #[error("sequence number {offered_seq} is lower than the {stored_seq} already seen")]
    Rollback {
        /// The highest sequence number the slot has seen.
        stored_seq: u64,
        /// The refused record's.
        offered_seq: u64,
    },
    /// The slot has seen another record with the same sequence number: the
    /// owner signed two different records with one `seq`.
    #[error("another record with sequence number {seq} was already seen")]
    Conflict {
        /// The sequence number.
        seq: u64,
    },
    /// The owner holds as many slots as it may.
    #[error("the owner holds the maximum of {max_slots} slots")]
    OwnerQuotaExceeded {
        /// The quota.
        max_slots: usize,
    },
    /// The store holds as many bytes as it may.
    #[error("the record store is full ({max_bytes} bytes)")]
    StoreFull {
        /// The bound.
        max_bytes: usize,
    },
    /// A mailbox deposit beyond the mailbox's bounds
    /// ([`mailbox::admit_deposit`]).
    #[error("mailbox deposit refused: {0}")]
    Mailbox(#[from] MailboxRefusal),
}

/// Whether a store within `limits` admits a new slot: its owner holds
/// `owner_slots` slots, the store `held` accounted bytes, and the slot
/// costs `cost`. Returns the bytes held afterwards. The owner's quota is
/// checked first ([`StoreError::OwnerQuotaExceeded`]), then the store's
/// bound ([`StoreError::StoreFull`]); a store at a bound refuses and never
/// evicts.
///
/// The one admission rule of new slots: [`RecordStore::put`] applies it
/// to the node's records, and the simulator's bounded stores
/// (`sim::StoreModel`), whose records are all of one size, apply it with
/// a cost of one unit per record.
pub fn admit_new_slot(
    limits: &StoreLimits,
    owner_slots: usize,
    held: usize,
    cost: usize,
) -> Result<usize, StoreError> {
    if owner_slots >= limits.max_slots_per_owner {
        return Err(StoreError::OwnerQuotaExceeded {
            max_slots: limits.max_slots_per_owner,
        });
    }
    held.checked_add(cost)
        .filter(|b| *b <= limits.max_bytes)
        .ok_or(StoreError::StoreFull {
            max_bytes: limits.max_bytes,
        })
}

#[derive(Debug, Clone)]
struct Slot {
    /// The live record, if any; its `seq` is the slot's `seq`.
    record: Option<VerifiedRecord>,
    /// The highest sequence number accepted.
    seq: u64,
    /// The latest expiry of any record accepted: the slot (as a tombstone)
    /// lives until then.
    horizon: u64,
}

/// A bounded in-memory store of verified records.
///
/// The maps are keyed by data an attacker chooses (keys and owner keys
/// of records it signs itself). They are `BTreeMap`s: worst-case
/// logarithmic whatever the keys (no hash flooding to defend against),
/// ordered (lookups of every owner at a key are one range), and iterated
/// in a deterministic order, which keeps the simulator reproducible.
/// Their size is bounded by [`StoreLimits::max_bytes`] (every slot costs
/// at least [`STORE_SLOT_OVERHEAD`]).
#[derive(Debug, Clone, Default)]
pub struct RecordStore {
    limits: StoreLimits,
    slots: BTreeMap<SlotKey, Slot>,
    slots_per_owner: BTreeMap<[u8; 32], usize>,
    bytes: usize,
    records: usize,
}

impl RecordStore {
    /// An empty store with `limits`.
    pub fn new(limits: StoreLimits) -> Self {
        Self {
            limits,
            ..Self::default()
        }
    }

    /// The store's bounds.
    pub fn limits(&self) -> &StoreLimits {
        &self.limits
    }

    /// Offers a verified record at `now` (see the module documentation for
    /// the rules). A refused record leaves the store unchanged.
    pub fn put(&mut self, record: VerifiedRecord, now: u64) -> Result<PutOutcome, StoreError> {
        self.put_checked(record, now, true)
    }

    /// [`RecordStore::put`] of a record this store admitted before and
    /// kept on disk: the mailbox bounds, which depend on the order records
    /// arrive in, are not applied again (a deposit admitted after the
    /// owner deleted others must not be refused for being reloaded before
    /// the owner's state). Every other rule applies.
    pub fn put_loaded(
        &mut self,
        record: VerifiedRecord,
        now: u64,
    ) -> Result<PutOutcome, StoreError> {
        self.put_checked(record, now, false)
    }

    fn put_checked(
        &mut self,
        record: VerifiedRecord,
        now: u64,
        mailbox_bounds: bool,
    ) -> Result<PutOutcome, StoreError> {
        if record.is_expired(now) {
            return Err(StoreError::Expired {
                expires: record.expires(),
                now,
            });
        }
        let slot_key: SlotKey = (*record.key(), record.kind(), *record.owner());
        self.settle(&slot_key, now);
        if mailbox_bounds && record.kind() == RecordKind::Mailbox {
            let others: Vec<&VerifiedRecord> = self
                .get(record.key(), RecordKind::Mailbox, now)
                .into_iter()
                .filter(|r| r.owner() != record.owner())
                .collect();
            mailbox::admit_deposit(&others, &record, now)?;
        }
        let size = record.encoded().len();
        let max_bytes = self.limits.max_bytes;
        let Some(slot) = self.slots.get_mut(&slot_key) else {
            let owned = self
                .slots_per_owner
                .get(record.owner())
                .copied()
                .unwrap_or(0);
            let bytes = admit_new_slot(
                &self.limits,
                owned,
                self.bytes,
                STORE_SLOT_OVERHEAD.saturating_add(size),
            )?;
            self.slots_per_owner.insert(*record.owner(), owned + 1);
            self.bytes = bytes;
            self.records += 1;
            self.slots.insert(
                slot_key,
                Slot {
                    seq: record.seq(),
                    horizon: record.expires(),
                    record: Some(record),
                },
            );
            return Ok(PutOutcome::Stored);
        };
        if record.seq() < slot.seq {
            return Err(StoreError::Rollback {
                stored_seq: slot.seq,
                offered_seq: record.seq(),
            });
        }
        if record.seq() == slot.seq {
            // With the slot settled, a tombstone's record has expired; a
            // live record offered with its seq is necessarily another one.
            return match &slot.record {
                Some(held) if held.encoded() == record.encoded() => Ok(PutOutcome::Unchanged),
                _ => Err(StoreError::Conflict { seq: slot.seq }),
            };
        }
        let old_size = slot.record.as_ref().map_or(0, |r| r.encoded().len());
        let bytes = self
            .bytes
            .saturating_sub(old_size)
            .checked_add(size)
            .filter(|b| *b <= max_bytes)
            .ok_or(StoreError::StoreFull { max_bytes })?;
        let outcome = match &slot.record {
            Some(held) => PutOutcome::Replaced {
                previous_seq: held.seq(),
            },
            None => {
                self.records += 1;
                PutOutcome::Stored
            }
        };
        self.bytes = bytes;
        slot.seq = record.seq();
        slot.horizon = slot.horizon.max(record.expires());
        slot.record = Some(record);
        Ok(outcome)
    }

    /// Applies expiry at `now` to one slot: drops an expired record, and
    /// the slot itself once its horizon has passed.
    fn settle(&mut self, slot_key: &SlotKey, now: u64) {
        let Some(slot) = self.slots.get_mut(slot_key) else {
            return;
        };
        if Self::settle_slot(slot, now, &mut self.bytes, &mut self.records) {
            self.slots.remove(slot_key);
            self.release_slot(&slot_key.2);
        }
    }

    /// Drops the slot's record if it has expired; returns whether the
    /// whole slot is dead (no record, horizon passed).
    fn settle_slot(slot: &mut Slot, now: u64, bytes: &mut usize, records: &mut usize) -> bool {
        if slot.record.as_ref().is_some_and(|r| r.is_expired(now)) {
            if let Some(r) = slot.record.take() {
                *bytes = bytes.saturating_sub(r.encoded().len());
                *records = records.saturating_sub(1);
            }
        }
        slot.record.is_none() && slot.horizon <= now
    }

    fn release_slot(&mut self, owner: &[u8; 32]) {
        self.bytes = self.bytes.saturating_sub(STORE_SLOT_OVERHEAD);
        if let Some(n) = self.slots_per_owner.get_mut(owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.slots_per_owner.remove(owner);
            }
        }
    }

    /// Drops every record expired at `now`, and every tombstone whose
    /// horizon has passed. Returns the number of records dropped.
    pub fn expire(&mut self, now: u64) -> usize {
        self.expire_slots(now).len()
    }

    /// As [`RecordStore::expire`], returning the slots whose record was
    /// dropped (so that a copy on disk can be dropped too).
    pub fn expire_slots(&mut self, now: u64) -> Vec<SlotKey> {
        let mut dropped: Vec<SlotKey> = Vec::new();
        let mut dead: Vec<SlotKey> = Vec::new();
        for (slot_key, slot) in self.slots.iter_mut() {
            let had_record = slot.record.is_some();
            if Self::settle_slot(slot, now, &mut self.bytes, &mut self.records) {
                dead.push(*slot_key);
            }
            if had_record && slot.record.is_none() {
                dropped.push(*slot_key);
            }
        }
        for slot_key in dead {
            self.slots.remove(&slot_key);
            self.release_slot(&slot_key.2);
        }
        dropped
    }

    /// The slots of at most `limit` records live at `now`, in slot order,
    /// starting after `after` (from the first with `None`): a republisher
    /// walks the store in bounded batches with it.
    pub fn live_slots_after(
        &self,
        after: Option<&SlotKey>,
        limit: usize,
        now: u64,
    ) -> Vec<SlotKey> {
        use std::ops::Bound;
        let lower = match after {
            Some(k) => Bound::Excluded(*k),
            None => Bound::Unbounded,
        };
        self.slots
            .range((lower, Bound::Unbounded))
            .filter(|(_, slot)| slot.record.as_ref().is_some_and(|r| !r.is_expired(now)))
            .map(|(k, _)| *k)
            .take(limit)
            .collect()
    }

    /// The live record of a slot at `now`.
    pub fn get_slot(&self, slot: &SlotKey, now: u64) -> Option<&VerifiedRecord> {
        self.get_owned(&slot.0, slot.1, &slot.2, now)
    }

    /// The records of `kind` at `key` that are live at `now`, one per
    /// owner, in owner order.
    pub fn get(&self, key: &Key, kind: RecordKind, now: u64) -> Vec<&VerifiedRecord> {
        self.slots
            .range((*key, kind, [0u8; 32])..=(*key, kind, [0xffu8; 32]))
            .filter_map(|(_, slot)| slot.record.as_ref())
            .filter(|r| !r.is_expired(now))
            .collect()
    }

    /// The records a `Value` answer for `kind` at `key` carries at `now`:
    /// all the live ones if they are at most
    /// [`MAX_RECORDS_PER_ANSWER`], else that many drawn uniformly at random
    /// with `rng` (each answer a new draw). Taking the first in owner order
    /// instead would let an owner grind its key to be in every answer and
    /// push the others out: it matters where many owners share a key, the
    /// relay directory keys (`docs/protocol.md` §7.8).
    pub fn answer(
        &self,
        key: &Key,
        kind: RecordKind,
        now: u64,
        rng: &mut impl rand::Rng,
    ) -> Vec<&VerifiedRecord> {
        let mut live = self.get(key, kind, now);
        if kind == RecordKind::Mailbox {
            // A mailbox's answer is decided by its rule, never by chance:
            // the owner's state and every depositor with live messages.
            return mailbox::answer_selection(live, MAX_RECORDS_PER_ANSWER, now);
        }
        if live.len() > MAX_RECORDS_PER_ANSWER {
            let (sample, _) = live.partial_shuffle(rng, MAX_RECORDS_PER_ANSWER);
            return sample.to_vec();
        }
        live
    }

    /// The record of `owner` (public key) of `kind` at `key`, if live at
    /// `now`.
    pub fn get_owned(
        &self,
        key: &Key,
        kind: RecordKind,
        owner: &[u8; 32],
        now: u64,
    ) -> Option<&VerifiedRecord> {
        self.slots
            .get(&(*key, kind, *owner))
            .and_then(|slot| slot.record.as_ref())
            .filter(|r| !r.is_expired(now))
    }

    /// The highest sequence number the slot `(key, kind, owner)` has seen
    /// (its record's, or its tombstone's): an owner's next record there
    /// needs a higher one.
    pub fn highest_seq(&self, key: &Key, kind: RecordKind, owner: &[u8; 32]) -> Option<u64> {
        self.slots.get(&(*key, kind, *owner)).map(|slot| slot.seq)
    }

    /// Every record live at `now`, in slot order, for replication to the
    /// nodes that should also hold it.
    pub fn records_for_replication(&self, now: u64) -> impl Iterator<Item = &VerifiedRecord> + '_ {
        self.slots
            .values()
            .filter_map(|slot| slot.record.as_ref())
            .filter(move |r| !r.is_expired(now))
    }

    /// The number of records held (including expired ones that
    /// [`RecordStore::expire`] has not dropped yet; tombstones excluded).
    pub fn len(&self) -> usize {
        self.records
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records == 0
    }

    /// The number of slots, live records and tombstones.
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// The accounted bytes: the encoded records held plus
    /// [`STORE_SLOT_OVERHEAD`] per slot.
    pub fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::identity::SecretKey;
    use crate::overlay::record::{owner_value_key, OwnerValue, Record, RecordPolicy};

    const NOW: u64 = 1_750_000_000;
    const HOUR: u64 = 3600;

    fn key(seed: u8) -> SecretKey {
        SecretKey::from_seed(&[seed; 32])
    }

    fn record(
        owner: &SecretKey,
        name: &str,
        data: &[u8],
        seq: u64,
        expires: u64,
    ) -> VerifiedRecord {
        OwnerValue::new(name, data.to_vec())
            .unwrap()
            .sign(owner, seq, expires)
            .verify(&RecordPolicy::self_certifying("p2psip"), NOW)
            .unwrap()
    }

    fn store() -> RecordStore {
        RecordStore::new(StoreLimits::default())
    }

    #[test]
    fn an_answer_is_a_fresh_random_sample_when_a_key_holds_many_owners() {
        use crate::overlay::record::{
            relay_directory_indices, relay_directory_key, sign_relay_descriptors, OnionKeyInfo,
            RelayOffer,
        };
        use rand::SeedableRng;
        let policy = RecordPolicy::self_certifying("p2psip");
        let dir = relay_directory_key("p2psip", 0);
        // Ten relays whose directory keys include key 0.
        let relays: Vec<SecretKey> = (1..=u8::MAX)
            .map(key)
            .filter(|k| relay_directory_indices(&k.public().node_id()).contains(&0))
            .take(10)
            .collect();
        assert_eq!(relays.len(), 10);
        let mut s = store();
        for (i, relay) in relays.iter().enumerate() {
            let secret = x25519_dalek::StaticSecret::from([i as u8 + 1; 32]);
            let offer = RelayOffer {
                addresses: vec![format!("10.{i}.0.1:4433").parse().unwrap()],
                onion_key: OnionKeyInfo {
                    key: x25519_dalek::PublicKey::from(&secret).to_bytes(),
                    expires: NOW + 3 * 24 * HOUR,
                },
                previous_onion_key: None,
                capacity: 10,
                relays_circuits: true,
                turn: None,
            };
            let records = sign_relay_descriptors(relay, &policy, None, offer, 1, NOW).unwrap();
            let at_dir = records.into_iter().find(|r| r.key == dir).unwrap();
            s.put(at_dir.verify(&policy, NOW).unwrap(), NOW).unwrap();
        }
        assert_eq!(s.get(&dir, RecordKind::RelayDescriptor, NOW).len(), 10);
        let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(1);
        let mut seen: BTreeMap<[u8; 32], u32> = BTreeMap::new();
        let rounds = 2000;
        for _ in 0..rounds {
            let a = s.answer(&dir, RecordKind::RelayDescriptor, NOW, &mut rng);
            assert_eq!(a.len(), MAX_RECORDS_PER_ANSWER);
            let owners: std::collections::BTreeSet<_> = a.iter().map(|r| *r.owner()).collect();
            assert_eq!(owners.len(), a.len(), "distinct owners");
            for o in owners {
                *seen.entry(o).or_default() += 1;
            }
        }
        // Every owner appears in about 4 answers of 10, whatever its key.
        assert_eq!(seen.len(), 10);
        for n in seen.values() {
            assert!((600..1000).contains(n), "{seen:?}");
        }
        // Few records: all of them.
        let alice = key(1);
        let v = record(&alice, "n", b"x", 1, NOW + HOUR);
        let k = *v.key();
        s.put(v, NOW).unwrap();
        assert_eq!(s.answer(&k, RecordKind::OwnerValue, NOW, &mut rng).len(), 1);
        assert!(s
            .answer(&k, RecordKind::OwnerValue, NOW + HOUR, &mut rng)
            .is_empty());
    }

    #[test]
    fn higher_seq_replaces_and_the_same_record_is_unchanged() {
        let alice = key(1);
        let mut s = store();
        let v1 = record(&alice, "n", b"one", 1, NOW + HOUR);
        let v2 = record(&alice, "n", b"two", 2, NOW + HOUR);
        assert_eq!(s.put(v1.clone(), NOW), Ok(PutOutcome::Stored));
        assert_eq!(s.put(v1.clone(), NOW), Ok(PutOutcome::Unchanged));
        assert_eq!(
            s.put(v2.clone(), NOW),
            Ok(PutOutcome::Replaced { previous_seq: 1 })
        );
        assert_eq!(s.len(), 1);
        assert_eq!(s.bytes(), STORE_SLOT_OVERHEAD + v2.encoded().len());
        let k = owner_value_key(&alice.public().user_id(), "n");
        assert_eq!(s.get(&k, RecordKind::OwnerValue, NOW), vec![&v2]);
        assert_eq!(
            s.get_owned(&k, RecordKind::OwnerValue, alice.public().as_bytes(), NOW),
            Some(&v2)
        );
        assert_eq!(
            s.highest_seq(&k, RecordKind::OwnerValue, alice.public().as_bytes()),
            Some(2)
        );
        // Another kind at the same key is another slot (nothing there).
        assert!(s.get(&k, RecordKind::SipRegistration, NOW).is_empty());
    }

    #[test]
    fn lower_seq_is_a_rollback_and_same_seq_other_bytes_a_conflict() {
        let alice = key(1);
        let mut s = store();
        s.put(record(&alice, "n", b"two", 2, NOW + HOUR), NOW)
            .unwrap();
        assert_eq!(
            s.put(record(&alice, "n", b"one", 1, NOW + HOUR), NOW),
            Err(StoreError::Rollback {
                stored_seq: 2,
                offered_seq: 1
            })
        );
        assert_eq!(
            s.put(record(&alice, "n", b"TWO", 2, NOW + HOUR), NOW),
            Err(StoreError::Conflict { seq: 2 })
        );
        // Same seq and value but another expiry is another record.
        assert_eq!(
            s.put(record(&alice, "n", b"two", 2, NOW + 2 * HOUR), NOW),
            Err(StoreError::Conflict { seq: 2 })
        );
        let k = owner_value_key(&alice.public().user_id(), "n");
        let held = s.get(&k, RecordKind::OwnerValue, NOW);
        assert_eq!(held.len(), 1);
        assert_eq!(held[0].owner_value().unwrap().data(), b"two");
    }

    #[test]
    fn no_rollback_even_after_the_newer_record_expired() {
        let alice = key(1);
        let mut s = store();
        let old = record(&alice, "n", b"old", 1, NOW + 2 * HOUR);
        let new = record(&alice, "n", b"new", 2, NOW + HOUR);
        s.put(old.clone(), NOW).unwrap();
        s.put(new, NOW).unwrap();
        let later = NOW + HOUR + 1;
        assert_eq!(s.expire(later), 1);
        assert_eq!(s.len(), 0);
        assert_eq!(s.slots(), 1, "the tombstone stays");
        assert_eq!(s.bytes(), STORE_SLOT_OVERHEAD);
        // The replaced record is still unexpired, yet refused.
        assert_eq!(
            s.put(old.clone(), later),
            Err(StoreError::Rollback {
                stored_seq: 2,
                offered_seq: 1
            })
        );
        // Same seq as the tombstone, but not the record that expired.
        assert_eq!(
            s.put(record(&alice, "n", b"other", 2, NOW + 3 * HOUR), later),
            Err(StoreError::Conflict { seq: 2 })
        );
        // A higher seq is stored into the tombstone's slot.
        let third = record(&alice, "n", b"third", 3, NOW + 3 * HOUR);
        assert_eq!(s.put(third, later), Ok(PutOutcome::Stored));
        assert_eq!(s.len(), 1);
        // Without expire() being called, put applies expiry itself.
        let mut s = store();
        s.put(old, NOW).unwrap();
        s.put(record(&alice, "n", b"new", 2, NOW + HOUR), NOW)
            .unwrap();
        assert_eq!(
            s.put(record(&alice, "n", b"old", 1, NOW + 2 * HOUR), later),
            Err(StoreError::Rollback {
                stored_seq: 2,
                offered_seq: 1
            })
        );
        // At the horizon the tombstone goes.
        assert_eq!(s.expire(NOW + 2 * HOUR), 0);
        assert_eq!(s.slots(), 0);
        assert_eq!(s.bytes(), 0);
    }

    #[test]
    fn expired_records_are_refused_dropped_and_never_served() {
        let alice = key(1);
        let mut s = store();
        let r = record(&alice, "n", b"d", 1, NOW + HOUR);
        assert_eq!(
            s.put(r.clone(), NOW + HOUR),
            Err(StoreError::Expired {
                expires: NOW + HOUR,
                now: NOW + HOUR
            })
        );
        assert!(s.is_empty());
        s.put(r.clone(), NOW).unwrap();
        s.put(record(&alice, "m", b"d", 1, NOW + 2 * HOUR), NOW)
            .unwrap();
        let k = *r.key();
        // Expired but not yet dropped: not served.
        assert!(s.get(&k, RecordKind::OwnerValue, NOW + HOUR).is_empty());
        assert_eq!(s.records_for_replication(NOW + HOUR).count(), 1);
        assert_eq!(s.records_for_replication(NOW).count(), 2);
        assert_eq!(s.expire(NOW + HOUR), 1);
        assert_eq!((s.len(), s.slots()), (1, 1));
        assert_eq!(s.expire(NOW + 2 * HOUR), 1);
        assert!(s.is_empty());
        assert_eq!((s.slots(), s.bytes()), (0, 0));
    }

    #[test]
    fn owner_quota_is_a_typed_error_and_tombstones_count() {
        let alice = key(1);
        let bob = key(2);
        let mut s = RecordStore::new(StoreLimits {
            max_slots_per_owner: 2,
            ..StoreLimits::default()
        });
        s.put(record(&alice, "a", b"", 1, NOW + 2 * HOUR), NOW)
            .unwrap();
        s.put(record(&alice, "b", b"", 1, NOW + 2 * HOUR), NOW)
            .unwrap();
        assert_eq!(
            s.put(record(&alice, "c", b"", 1, NOW + HOUR), NOW),
            Err(StoreError::OwnerQuotaExceeded { max_slots: 2 })
        );
        // Another owner is not affected; updating a held slot is allowed.
        assert_eq!(
            s.put(record(&bob, "c", b"", 1, NOW + HOUR), NOW),
            Ok(PutOutcome::Stored)
        );
        assert!(matches!(
            s.put(record(&alice, "a", b"x", 2, NOW + 2 * HOUR), NOW),
            Ok(PutOutcome::Replaced { .. })
        ));
        // Slot "b" becomes a tombstone (replaced by a shorter-lived seq 2
        // that expires): it still counts until its horizon.
        s.put(record(&alice, "b", b"", 2, NOW + HOUR), NOW).unwrap();
        s.expire(NOW + HOUR);
        assert_eq!(
            s.put(record(&alice, "c", b"", 1, NOW + 3 * HOUR), NOW + HOUR),
            Err(StoreError::OwnerQuotaExceeded { max_slots: 2 })
        );
        s.expire(NOW + 2 * HOUR);
        assert_eq!(
            s.put(record(&alice, "c", b"", 1, NOW + 3 * HOUR), NOW + 2 * HOUR),
            Ok(PutOutcome::Stored)
        );
    }

    #[test]
    fn total_bytes_bound_is_a_typed_error() {
        let alice = key(1);
        let bob = key(2);
        let one = record(&alice, "a", &[0; 100], 1, NOW + HOUR);
        let cost = STORE_SLOT_OVERHEAD + one.encoded().len();
        let mut s = RecordStore::new(StoreLimits {
            max_bytes: 2 * cost,
            ..StoreLimits::default()
        });
        s.put(one, NOW).unwrap();
        s.put(record(&bob, "a", &[0; 100], 1, NOW + HOUR), NOW)
            .unwrap();
        assert_eq!(s.bytes(), 2 * cost);
        assert_eq!(
            s.put(record(&alice, "b", &[], 1, NOW + HOUR), NOW),
            Err(StoreError::StoreFull {
                max_bytes: 2 * cost
            })
        );
        // A replacement that grows past the bound is refused; one of the
        // same size is accepted.
        assert_eq!(
            s.put(record(&alice, "a", &[0; 101], 2, NOW + HOUR), NOW),
            Err(StoreError::StoreFull {
                max_bytes: 2 * cost
            })
        );
        assert!(s
            .put(record(&alice, "a", &[1; 100], 2, NOW + HOUR), NOW)
            .is_ok());
        assert_eq!(s.bytes(), 2 * cost);
        // A refused put changed nothing.
        assert_eq!(s.len(), 2);
    }

    #[test]
    fn accounted_bytes_are_the_slots_and_the_encodings_held() {
        use rand::{Rng, SeedableRng};
        // Random puts (new slots, replacements, refusals: rollback,
        // conflict, quota, full) and expiries (records dropped, tombstones
        // kept, then dropped): after every step the account is exactly
        // the slots' overhead plus the encodings held.
        let owners: Vec<SecretKey> = (1..=4).map(key).collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut s = RecordStore::new(StoreLimits {
            max_slots_per_owner: 3,
            max_bytes: 8 * 1024,
        });
        let mut now = NOW;
        let (mut stored, mut refused) = (0, 0);
        for step in 0..400u32 {
            let owner = &owners[rng.gen_range(0..owners.len())];
            let name = ["a", "b", "c", "d"][rng.gen_range(0..4)];
            let data = vec![step as u8; rng.gen_range(0..700)];
            let expires = now + rng.gen_range(1..4) * HOUR / 2;
            let r = record(owner, name, &data, rng.gen_range(1..8), expires);
            match s.put(r, now) {
                Ok(_) => stored += 1,
                Err(_) => refused += 1,
            }
            if rng.gen_bool(0.1) {
                now += HOUR / 2;
                s.expire(now);
            }
            // Every record held, expired ones not yet dropped included.
            let held: Vec<&VerifiedRecord> = s.records_for_replication(0).collect();
            assert_eq!(held.len(), s.len(), "step {step}");
            let encodings: usize = held.iter().map(|r| r.encoded().len()).sum();
            assert_eq!(
                s.bytes(),
                s.slots() * STORE_SLOT_OVERHEAD + encodings,
                "step {step}"
            );
            assert!(s.bytes() <= s.limits().max_bytes);
        }
        assert!(
            stored > 50 && refused > 50,
            "{stored} stored, {refused} refused"
        );
        s.expire(now + 10 * HOUR);
        assert_eq!((s.slots(), s.bytes()), (0, 0));
    }

    #[test]
    fn replication_lists_every_live_record_once() {
        let mut s = store();
        for seed in 1..=3u8 {
            let k = key(seed);
            for name in ["x", "y"] {
                s.put(record(&k, name, &[seed], 1, NOW + HOUR), NOW)
                    .unwrap();
            }
        }
        let all: Vec<&VerifiedRecord> = s.records_for_replication(NOW).collect();
        assert_eq!(all.len(), 6);
        // Each re-verifies from its stored bytes.
        for r in all {
            let again = Record::decode(r.encoded())
                .unwrap()
                .verify(&RecordPolicy::self_certifying("p2psip"), NOW)
                .unwrap();
            assert_eq!(&again, r);
        }
    }

    #[test]
    fn expired_slots_are_named_and_batches_walk_the_store() {
        let alice = key(1);
        let mut s = store();
        let short = record(&alice, "a", b"", 1, NOW + HOUR);
        let long = record(&alice, "b", b"", 1, NOW + 2 * HOUR);
        let longer = record(&alice, "c", b"", 1, NOW + 3 * HOUR);
        for r in [&short, &long, &longer] {
            s.put(r.clone(), NOW).unwrap();
        }
        let slot = |r: &VerifiedRecord| (*r.key(), r.kind(), *r.owner());
        // Batches of two, in slot order, covering all three once.
        let first = s.live_slots_after(None, 2, NOW);
        assert_eq!(first.len(), 2);
        let rest = s.live_slots_after(first.last(), 2, NOW);
        assert_eq!(rest.len(), 1);
        let mut all: Vec<SlotKey> = first.into_iter().chain(rest).collect();
        let mut expected = vec![slot(&short), slot(&long), slot(&longer)];
        expected.sort();
        all.sort();
        assert_eq!(all, expected);
        assert!(s.live_slots_after(expected.last(), 2, NOW).is_empty());
        assert_eq!(s.get_slot(&slot(&long), NOW), Some(&long));
        // Expiry names exactly the records it dropped.
        assert_eq!(s.expire_slots(NOW + HOUR), vec![slot(&short)]);
        assert_eq!(s.expire_slots(NOW + HOUR), Vec::<SlotKey>::new());
        assert_eq!(s.live_slots_after(None, 10, NOW + HOUR).len(), 2);
        assert_eq!(s.get_slot(&slot(&short), NOW + HOUR), None);
        assert_eq!(s.expire(NOW + 3 * HOUR), 2);
        assert!(s.is_empty());
    }
}

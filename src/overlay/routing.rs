//! The routing table: 256 k-buckets over the XOR metric, with the
//! S/Kademlia admission rules.
//!
//! - Only puzzle-valid ids are admitted, never the local id.
//! - Network diversity: at most `max_per_wide_prefix_per_bucket` peers of
//!   one IPv4 /16 (IPv6 /32) in a bucket and `max_per_wide_prefix_per_table`
//!   in the table; at most `max_per_prefix_per_bucket` peers of one
//!   IPv4 /24 (IPv6 /48) in a bucket and `max_per_prefix_per_table` in the
//!   whole table, so that one network cannot fill a region of the table.
//! - Long-lived peers are preferred: a full bucket never evicts on its own.
//!   The insert tells the caller which resident (the least recently seen)
//!   to ping, and keeps the newcomer as that bucket's single pending
//!   candidate; only if the resident then fails does the newcomer enter.
//!
//! The table reads no clock: `now` (milliseconds of any monotonic clock)
//! is an argument. Whoever calls [`RoutingTable::insert`] vouches that the
//! contact was seen on an authenticated connection; contacts merely
//! mentioned by third parties belong in a lookup, not here.

use super::config::OverlayParams;
use super::key::{Distance, Key};
use crate::identity::NodeId;
use crate::netaddr::IpPrefix;
use std::collections::HashMap;

pub use crate::wire::message::Contact;

/// Why a contact was not admitted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdmissionError {
    /// The local node's own id.
    #[error("the local id")]
    IsLocal,
    /// The id does not solve the overlay's puzzle.
    #[error("id fails the admission puzzle")]
    PuzzleNotSolved,
    /// The bucket already holds the maximum from this network prefix.
    #[error("bucket already holds the maximum of peers from this network")]
    PrefixFullInBucket,
    /// The table already holds the maximum from this network prefix.
    #[error("table already holds the maximum of peers from this network")]
    PrefixFullInTable,
    /// The bucket already holds the maximum from this wider network (IPv4
    /// /16, IPv6 /32).
    #[error("bucket already holds the maximum of peers from this /16 (IPv6 /32)")]
    WidePrefixFullInBucket,
    /// The table already holds the maximum from this wider network.
    #[error("table already holds the maximum of peers from this /16 (IPv6 /32)")]
    WidePrefixFullInTable,
}

/// What [`RoutingTable::insert`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum InsertOutcome {
    /// The contact is new and was added.
    Inserted,
    /// The contact was known; it is now the most recently seen.
    Refreshed,
    /// The bucket is full. The caller should ping `ping`; report the
    /// result with [`RoutingTable::on_ping_result`]. The newcomer waits as
    /// the bucket's pending candidate.
    Full {
        /// The least recently seen resident of the bucket.
        ping: Contact,
    },
    /// The contact was refused.
    Refused(AdmissionError),
}

/// What a failed liveness check changed: the resident that left the
/// table, and the bucket's pending candidate admitted in its place, if
/// any. The replication layer re-pushes the records the evicted contact
/// held and hands records over to the newcomer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Eviction {
    /// The contact that left (`None` if it was no longer resident).
    pub evicted: Option<Contact>,
    /// The bucket's pending candidate, admitted.
    pub admitted: Option<Contact>,
}

/// Consecutive unanswered requests after which a resident is evicted: one
/// lost packet must not cost a long-lived peer its place.
pub const MAX_CONSECUTIVE_FAILURES: u32 = 3;

#[derive(Debug, Clone)]
struct Entry {
    contact: Contact,
    first_seen: u64,
    last_seen: u64,
    failures: u32,
    /// The contact proved its id at its address on a connection this
    /// node dialed ([`RoutingTable::mark_outbound`]): the node chose it,
    /// which an attacker cannot make happen by connecting in.
    outbound: bool,
}

#[derive(Debug, Clone, Default)]
struct Bucket {
    /// Least recently seen first.
    entries: Vec<Entry>,
    pending: Option<Entry>,
}

/// One node's view of the overlay.
#[derive(Debug, Clone)]
pub struct RoutingTable {
    local: Key,
    k: usize,
    difficulty: u8,
    per_bucket: usize,
    per_table: usize,
    wide_per_bucket: usize,
    wide_per_table: usize,
    buckets: Vec<Bucket>,
    // Counts per network prefix over all resident entries. Keys come from
    // peers' addresses; SipHash with a random key and at most one entry
    // per resident keep it bounded and collision-proof.
    prefix_counts: HashMap<IpPrefix, usize>,
    wide_counts: HashMap<IpPrefix, usize>,
    len: usize,
}

impl RoutingTable {
    /// An empty table for the node `local` of an overlay with `params`.
    pub fn new(local: NodeId, params: &OverlayParams) -> Self {
        Self {
            local: Key::from(local),
            k: params.k.max(1),
            difficulty: params.id_difficulty,
            per_bucket: params.max_per_prefix_per_bucket.max(1),
            per_table: params.max_per_prefix_per_table.max(1),
            wide_per_bucket: params.max_per_wide_prefix_per_bucket.max(1),
            wide_per_table: params.max_per_wide_prefix_per_table.max(1),
            buckets: vec![Bucket::default(); 256],
            prefix_counts: HashMap::new(),
            wide_counts: HashMap::new(),
            len: 0,
        }
    }

    /// The local node's key.
    pub fn local(&self) -> Key {
        self.local
    }

    /// Resident contacts.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    fn bucket_index(&self, id: &NodeId) -> Option<usize> {
        self.local.distance(&Key::from(id)).bucket_index()
    }

    /// Checks the admission rules for a contact not yet resident.
    fn admissible(&self, bucket: &Bucket, contact: &Contact) -> Result<(), AdmissionError> {
        if !contact.id.meets_difficulty(self.difficulty) {
            return Err(AdmissionError::PuzzleNotSolved);
        }
        let prefix = IpPrefix::net(contact.addr.ip());
        let in_bucket = bucket
            .entries
            .iter()
            .filter(|e| IpPrefix::net(e.contact.addr.ip()) == prefix)
            .count();
        if in_bucket >= self.per_bucket {
            return Err(AdmissionError::PrefixFullInBucket);
        }
        if self.prefix_counts.get(&prefix).copied().unwrap_or(0) >= self.per_table {
            return Err(AdmissionError::PrefixFullInTable);
        }
        let wide = IpPrefix::wide(contact.addr.ip());
        let wide_in_bucket = bucket
            .entries
            .iter()
            .filter(|e| IpPrefix::wide(e.contact.addr.ip()) == wide)
            .count();
        if wide_in_bucket >= self.wide_per_bucket {
            return Err(AdmissionError::WidePrefixFullInBucket);
        }
        if self.wide_counts.get(&wide).copied().unwrap_or(0) >= self.wide_per_table {
            return Err(AdmissionError::WidePrefixFullInTable);
        }
        Ok(())
    }

    /// Offers a contact seen on an authenticated connection at `now`.
    pub fn insert(&mut self, contact: Contact, now: u64) -> InsertOutcome {
        let Some(index) = self.bucket_index(&contact.id) else {
            return InsertOutcome::Refused(AdmissionError::IsLocal);
        };
        let k = self.k;
        let bucket = &self.buckets[index];
        if let Some(pos) = bucket
            .entries
            .iter()
            .position(|e| e.contact.id == contact.id)
        {
            let bucket = &mut self.buckets[index];
            let mut entry = bucket.entries.remove(pos);
            entry.last_seen = now;
            entry.failures = 0;
            // The address is not changed here: a resident's address moves
            // only through `remove` + `insert`, so that an address cannot be
            // redirected by a mere mention.
            bucket.entries.push(entry);
            return InsertOutcome::Refreshed;
        }
        if let Err(e) = self.admissible(bucket, &contact) {
            return InsertOutcome::Refused(e);
        }
        let entry = Entry {
            contact,
            first_seen: now,
            last_seen: now,
            failures: 0,
            outbound: false,
        };
        if bucket.entries.len() < k {
            self.add(index, entry);
            return InsertOutcome::Inserted;
        }
        let bucket = &mut self.buckets[index];
        // A newcomer never evicts: it waits for the oldest resident to fail.
        let oldest = bucket.entries[0].contact;
        bucket.pending = Some(entry);
        InsertOutcome::Full { ping: oldest }
    }

    /// [`RoutingTable::insert`], except that when the contact's bucket is
    /// full, the oldest resident for which `displace` says yes (the
    /// caller's judgement, normally the reputation subsystem's: a resident
    /// in worse standing than the newcomer, see
    /// [`crate::reputation::Reputation::prefer_resident`]) leaves and the
    /// newcomer takes its place. Returns the outcome and the displaced
    /// resident, whose records the caller re-pushes as for any eviction.
    /// With `displace` always false this is `insert`: a newcomer never
    /// pushes out a resident the caller does not condemn.
    pub fn insert_displacing(
        &mut self,
        contact: Contact,
        now: u64,
        displace: impl Fn(&NodeId) -> bool,
    ) -> (InsertOutcome, Option<Contact>) {
        let outcome = self.insert(contact, now);
        let InsertOutcome::Full { .. } = outcome else {
            return (outcome, None);
        };
        let victim = self
            .bucket_index(&contact.id)
            .and_then(|i| self.buckets.get(i))
            .and_then(|b| b.entries.iter().find(|e| displace(&e.contact.id)))
            .map(|e| e.contact);
        let Some(victim) = victim else {
            return (outcome, None);
        };
        self.remove(&victim.id);
        if let Some(b) = self
            .bucket_index(&contact.id)
            .and_then(|i| self.buckets.get_mut(i))
        {
            if b.pending
                .as_ref()
                .is_some_and(|p| p.contact.id == contact.id)
            {
                b.pending = None;
            }
        }
        (self.insert(contact, now), Some(victim))
    }

    fn add(&mut self, index: usize, entry: Entry) {
        *self
            .prefix_counts
            .entry(IpPrefix::net(entry.contact.addr.ip()))
            .or_insert(0) += 1;
        *self
            .wide_counts
            .entry(IpPrefix::wide(entry.contact.addr.ip()))
            .or_insert(0) += 1;
        self.buckets[index].entries.push(entry);
        self.len += 1;
    }

    /// Reports whether a resident answered a liveness check. An answer
    /// refreshes it and drops the pending candidate; a failure evicts it
    /// and admits the pending candidate in its place, if still admissible.
    /// Returns what changed.
    pub fn on_ping_result(&mut self, id: &NodeId, alive: bool, now: u64) -> Eviction {
        let Some(index) = self.bucket_index(id) else {
            return Eviction::default();
        };
        if alive {
            self.insert_known(index, id, now);
            if let Some(bucket) = self.buckets.get_mut(index) {
                bucket.pending = None;
            }
            return Eviction::default();
        }
        let evicted = self.remove(id);
        let mut admitted = None;
        if let Some(pending) = self.buckets.get_mut(index).and_then(|b| b.pending.take()) {
            let fits = self.buckets.get(index).is_some_and(|b| {
                b.entries.len() < self.k && self.admissible(b, &pending.contact).is_ok()
            });
            if fits {
                admitted = Some(pending.contact);
                self.add(index, pending);
            }
        }
        Eviction { evicted, admitted }
    }

    fn insert_known(&mut self, index: usize, id: &NodeId, now: u64) {
        let bucket = &mut self.buckets[index];
        if let Some(pos) = bucket.entries.iter().position(|e| e.contact.id == *id) {
            let mut entry = bucket.entries.remove(pos);
            entry.last_seen = now;
            entry.failures = 0;
            bucket.entries.push(entry);
        }
    }

    /// A request to a resident went unanswered. After
    /// [`MAX_CONSECUTIVE_FAILURES`] in a row it is evicted (and the bucket's
    /// pending candidate, if any, takes its place); returns whether it was.
    pub fn on_failure(&mut self, id: &NodeId, now: u64) -> bool {
        self.on_failure_evicting(id, now).is_some()
    }

    /// As [`RoutingTable::on_failure`], returning the eviction if there
    /// was one.
    pub fn on_failure_evicting(&mut self, id: &NodeId, now: u64) -> Option<Eviction> {
        let index = self.bucket_index(id)?;
        let entry = self
            .buckets
            .get_mut(index)?
            .entries
            .iter_mut()
            .find(|e| e.contact.id == *id)?;
        entry.failures += 1;
        if entry.failures < MAX_CONSECUTIVE_FAILURES {
            return None;
        }
        Some(self.on_ping_result(id, false, now))
    }

    /// Records that `id` (a resident, or the pending candidate of its
    /// bucket) answered on a connection this node dialed: an outbound
    /// peer, preferred for routing decisions ([`RoutingTable::is_outbound`]).
    /// Peers that only connected in can be made to come by an attacker;
    /// peers this node found and dialed itself cannot.
    pub fn mark_outbound(&mut self, id: &NodeId) {
        let Some(bucket) = self.bucket_index(id).and_then(|i| self.buckets.get_mut(i)) else {
            return;
        };
        for e in bucket
            .entries
            .iter_mut()
            .chain(bucket.pending.iter_mut())
            .filter(|e| e.contact.id == *id)
        {
            e.outbound = true;
        }
    }

    /// Whether `id` is a resident marked outbound.
    pub fn is_outbound(&self, id: &NodeId) -> bool {
        self.bucket_index(id)
            .and_then(|i| self.buckets.get(i))
            .is_some_and(|b| b.entries.iter().any(|e| e.contact.id == *id && e.outbound))
    }

    /// Removes a contact; returns it if it was resident.
    pub fn remove(&mut self, id: &NodeId) -> Option<Contact> {
        let index = self.bucket_index(id)?;
        let bucket = &mut self.buckets[index];
        let pos = bucket.entries.iter().position(|e| e.contact.id == *id)?;
        let entry = bucket.entries.remove(pos);
        let prefix = IpPrefix::net(entry.contact.addr.ip());
        if let Some(n) = self.prefix_counts.get_mut(&prefix) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.prefix_counts.remove(&prefix);
            }
        }
        let wide = IpPrefix::wide(entry.contact.addr.ip());
        if let Some(n) = self.wide_counts.get_mut(&wide) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.wide_counts.remove(&wide);
            }
        }
        self.len -= 1;
        Some(entry.contact)
    }

    /// Whether `id` is resident.
    pub fn contains(&self, id: &NodeId) -> bool {
        self.bucket_index(id)
            .is_some_and(|i| self.buckets[i].entries.iter().any(|e| e.contact.id == *id))
    }

    /// The `n` resident contacts closest to `target`, closest first.
    pub fn closest(&self, target: &Key, n: usize) -> Vec<Contact> {
        let mut all: Vec<(Distance, Contact)> = self
            .buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .map(|e| (target.distance(&Key::from(e.contact.id)), e.contact))
            .collect();
        all.sort_unstable_by_key(|a| a.0);
        all.into_iter().take(n).map(|(_, c)| c).collect()
    }

    /// Every resident contact with the age of the relationship and the time
    /// it was last seen, bucket by bucket (farthest bucket first).
    pub fn entries(&self) -> impl Iterator<Item = (usize, Contact, u64, u64)> + '_ {
        self.buckets.iter().enumerate().rev().flat_map(|(i, b)| {
            b.entries
                .iter()
                .map(move |e| (i, e.contact, e.first_seen, e.last_seen))
        })
    }

    /// Indices of the non-empty buckets, and the highest such index.
    pub fn occupied_buckets(&self) -> Vec<usize> {
        (0..256)
            .filter(|i| !self.buckets[*i].entries.is_empty())
            .collect()
    }

    /// How many residents are strictly closer to `target` than `than`.
    pub fn count_closer(&self, target: &Key, than: &Distance) -> usize {
        self.buckets
            .iter()
            .flat_map(|b| b.entries.iter())
            .filter(|e| target.distance(&Key::from(e.contact.id)) < *than)
            .count()
    }

    /// The non-empty buckets none of whose residents has been seen for
    /// `max_age` milliseconds at `now`: the ones to refresh with a lookup.
    pub fn stale_buckets(&self, now: u64, max_age: u64) -> Vec<usize> {
        self.buckets
            .iter()
            .enumerate()
            .filter_map(|(i, b)| {
                let newest = b.entries.iter().map(|e| e.last_seen).max()?;
                (now.saturating_sub(newest) >= max_age).then_some(i)
            })
            .collect()
    }

    /// A key in the range of bucket `bucket` (0..=255): the local key with
    /// the bucket's bit flipped, the bits above it kept and the bits below
    /// taken from `random`. `None` for a bucket index out of range.
    pub fn key_in_bucket(&self, bucket: usize, random: [u8; 32]) -> Option<Key> {
        // Bucket i holds distances whose highest set bit is bit i counted
        // from the least significant end: bit `top` counted from the first.
        let top = 255usize.checked_sub(bucket)?;
        let (top_byte, top_bit) = (top / 8, (top % 8) as u32);
        let below = 0xffu8.checked_shr(top_bit + 1).unwrap_or(0);
        let mut distance = [0u8; 32];
        for (i, (d, r)) in distance.iter_mut().zip(random).enumerate() {
            *d = match i.cmp(&top_byte) {
                std::cmp::Ordering::Less => 0,
                std::cmp::Ordering::Equal => (0x80 >> top_bit) | (r & below),
                std::cmp::Ordering::Greater => r,
            };
        }
        let mut key = self.local.0;
        for (k, d) in key.iter_mut().zip(distance) {
            *k ^= d;
        }
        Some(Key(key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};
    use std::net::SocketAddr;

    fn params(k: usize, difficulty: u8) -> OverlayParams {
        OverlayParams {
            k,
            id_difficulty: difficulty,
            max_per_prefix_per_bucket: 2,
            max_per_prefix_per_table: 10,
            // The /16 caps have their own test.
            max_per_wide_prefix_per_bucket: usize::MAX,
            max_per_wide_prefix_per_table: usize::MAX,
            ..OverlayParams::default()
        }
    }

    #[test]
    fn an_attacker_holding_a_slash16_gets_two_entries_per_bucket_and_twenty_in_all() {
        let mut t = RoutingTable::new(
            local(),
            &OverlayParams {
                id_difficulty: 0,
                ..OverlayParams::default()
            },
        );
        // One bucket, one /16, every contact from a different /24.
        let mut inserted = 0;
        for i in 0..10u32 {
            let c = contact(id_with(0x80, 0, i), &format!("203.0.{i}.1"));
            match t.insert(c, 0) {
                InsertOutcome::Inserted => inserted += 1,
                other => assert_eq!(
                    other,
                    InsertOutcome::Refused(AdmissionError::WidePrefixFullInBucket)
                ),
            }
        }
        assert_eq!(inserted, 2, "per bucket cap per /16");
        // Another /16 still gets in.
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 50), "198.18.0.1"), 0),
            InsertOutcome::Inserted
        );
        // Over the whole table: 20 from one /16, whatever the buckets
        // (the per-bucket cap relaxed so that only the table cap binds).
        let mut t = RoutingTable::new(
            local(),
            &OverlayParams {
                id_difficulty: 0,
                max_per_wide_prefix_per_bucket: 5,
                ..OverlayParams::default()
            },
        );
        let mut inserted = 0;
        for b in 0..8u32 {
            for i in 0..5u32 {
                let first = 0x80u8 >> b;
                let id = id_with(first, 0, b * 10 + i + 100);
                let ip = format!("203.0.{}.1", b * 5 + i);
                if t.insert(contact(id, &ip), 0) == InsertOutcome::Inserted {
                    inserted += 1;
                }
            }
        }
        assert_eq!(inserted, 20, "table cap per /16");
        assert_eq!(t.len(), inserted);
    }

    /// A node id whose first byte is `first` (so its bucket relative to
    /// the zero id is known) and whose puzzle bits are at least `bits`.
    fn id_with(first: u8, bits: u32, salt: u32) -> NodeId {
        for n in 0u32.. {
            let mut b: [u8; 32] =
                Sha256::digest([salt.to_be_bytes(), n.to_be_bytes()].concat()).into();
            b[0] = first;
            let id = NodeId::from_bytes(b);
            if id.puzzle_bits() >= bits {
                return id;
            }
        }
        unreachable!()
    }

    fn contact(id: NodeId, ip: &str) -> Contact {
        Contact {
            id,
            addr: SocketAddr::new(ip.parse().unwrap(), 4433),
        }
    }

    fn local() -> NodeId {
        NodeId::from_bytes([0; 32])
    }

    #[test]
    fn puzzle_and_self_are_refused() {
        let mut t = RoutingTable::new(local(), &params(20, 4));
        let weak = (0..)
            .map(|s| id_with(0x80, 0, s))
            .find(|id| id.puzzle_bits() < 4)
            .unwrap();
        assert_eq!(
            t.insert(contact(weak, "10.0.0.1"), 0),
            InsertOutcome::Refused(AdmissionError::PuzzleNotSolved)
        );
        assert_eq!(
            t.insert(contact(local(), "10.0.0.1"), 0),
            InsertOutcome::Refused(AdmissionError::IsLocal)
        );
        let strong = id_with(0x80, 4, 1);
        assert_eq!(
            t.insert(contact(strong, "10.0.0.1"), 0),
            InsertOutcome::Inserted
        );
        assert_eq!(t.len(), 1);
    }

    #[test]
    fn at_most_two_per_slash24_per_bucket_and_ten_per_table() {
        let mut t = RoutingTable::new(local(), &params(20, 0));
        // Same bucket (first bit set), same /24.
        for i in 0..2 {
            let c = contact(id_with(0x80, 0, i), &format!("192.0.2.{}", i + 1));
            assert_eq!(t.insert(c, 0), InsertOutcome::Inserted);
        }
        let third = contact(id_with(0x80, 0, 2), "192.0.2.3");
        assert_eq!(
            t.insert(third, 0),
            InsertOutcome::Refused(AdmissionError::PrefixFullInBucket)
        );
        // Another /24 still gets in.
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 3), "192.0.3.1"), 0),
            InsertOutcome::Inserted
        );
        // Per table: spread one /24 over many buckets.
        let mut t = RoutingTable::new(local(), &params(20, 0));
        let mut inserted = 0;
        for b in 0..16u8 {
            for i in 0..2u32 {
                // Eight distinct buckets, two tries each per pass.
                let first = 0x80u8 >> (b % 8);
                let id = id_with(first, 0, u32::from(b) * 10 + i + 100);
                if t.insert(contact(id, "198.51.100.7"), 0) == InsertOutcome::Inserted {
                    inserted += 1;
                }
            }
        }
        assert_eq!(inserted, 10, "table cap per /24");
        // IPv6: /48 is the unit.
        let mut t = RoutingTable::new(local(), &params(20, 0));
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 1), "2001:db8:1::1"), 0),
            InsertOutcome::Inserted
        );
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 2), "2001:db8:1:ffff::2"), 0),
            InsertOutcome::Inserted
        );
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 3), "2001:db8:1:1::3"), 0),
            InsertOutcome::Refused(AdmissionError::PrefixFullInBucket)
        );
        assert_eq!(
            t.insert(contact(id_with(0x80, 0, 4), "2001:db8:2::1"), 0),
            InsertOutcome::Inserted
        );
    }

    #[test]
    fn full_bucket_asks_to_ping_the_oldest_and_never_evicts_on_its_own() {
        let mut t = RoutingTable::new(local(), &params(2, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        let b = contact(id_with(0x80, 0, 2), "10.0.2.1");
        let c = contact(id_with(0x80, 0, 3), "10.0.3.1");
        assert_eq!(t.insert(a, 1), InsertOutcome::Inserted);
        assert_eq!(t.insert(b, 2), InsertOutcome::Inserted);
        assert_eq!(t.insert(c, 3), InsertOutcome::Full { ping: a });
        assert!(!t.contains(&c.id));
        // The long-lived peer answers: the newcomer stays out.
        t.on_ping_result(&a.id, true, 4);
        assert!(t.contains(&a.id) && !t.contains(&c.id));
        // Now b is the oldest; it fails: the pending newcomer takes its place.
        assert_eq!(t.insert(c, 5), InsertOutcome::Full { ping: b });
        t.on_ping_result(&b.id, false, 6);
        assert!(t.contains(&c.id) && !t.contains(&b.id));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn outbound_marks_stick_to_the_resident() {
        let mut t = RoutingTable::new(local(), &params(2, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        let b = contact(id_with(0x80, 0, 2), "10.0.2.1");
        let c = contact(id_with(0x80, 0, 3), "10.0.3.1");
        t.insert(a, 1);
        t.insert(b, 2);
        assert!(!t.is_outbound(&a.id), "learned from an inbound connection");
        t.mark_outbound(&a.id);
        t.insert(a, 3);
        assert!(t.is_outbound(&a.id), "a refresh keeps the mark");
        assert!(!t.is_outbound(&b.id));
        // The pending candidate keeps its mark when it is admitted.
        assert_eq!(t.insert(c, 4), InsertOutcome::Full { ping: b });
        t.mark_outbound(&c.id);
        t.on_ping_result(&b.id, false, 5);
        assert!(t.is_outbound(&c.id));
        // Unknown ids are ignored.
        t.mark_outbound(&id_with(0x40, 0, 9));
        assert!(!t.is_outbound(&id_with(0x40, 0, 9)));
    }

    #[test]
    fn a_newcomer_displaces_only_a_resident_the_caller_condemns() {
        let mut t = RoutingTable::new(local(), &params(2, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        let b = contact(id_with(0x80, 0, 2), "10.0.2.1");
        let c = contact(id_with(0x80, 0, 3), "10.0.3.1");
        t.insert(a, 1);
        t.insert(b, 2);
        // Nobody condemned: as `insert`, the newcomer waits.
        assert_eq!(
            t.insert_displacing(c, 3, |_| false),
            (InsertOutcome::Full { ping: a }, None)
        );
        assert!(!t.contains(&c.id));
        // b (say, a suspect) is condemned: c takes its place, a stays.
        assert_eq!(
            t.insert_displacing(c, 4, |id| *id == b.id),
            (InsertOutcome::Inserted, Some(b))
        );
        assert!(t.contains(&a.id) && t.contains(&c.id) && !t.contains(&b.id));
        assert_eq!(t.len(), 2);
        // A bucket with room needs no displacement.
        let d = contact(id_with(0x40, 0, 4), "10.0.4.1");
        assert_eq!(
            t.insert_displacing(d, 5, |_| true),
            (InsertOutcome::Inserted, None)
        );
        assert_eq!(t.len(), 3);
    }

    #[test]
    fn a_resident_survives_isolated_losses_and_goes_after_three_in_a_row() {
        let mut t = RoutingTable::new(local(), &params(20, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        t.insert(a, 1);
        assert!(!t.on_failure(&a.id, 2));
        assert!(!t.on_failure(&a.id, 3));
        // An answer resets the count.
        assert_eq!(t.insert(a, 4), InsertOutcome::Refreshed);
        assert!(!t.on_failure(&a.id, 5));
        assert!(!t.on_failure(&a.id, 6));
        assert!(t.contains(&a.id));
        assert!(t.on_failure(&a.id, 7));
        assert!(!t.contains(&a.id));
        assert!(!t.on_failure(&a.id, 8), "no longer resident");
    }

    #[test]
    fn refresh_does_not_move_an_address_and_closest_sorts_by_xor() {
        let mut t = RoutingTable::new(local(), &params(20, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        t.insert(a, 1);
        let moved = Contact {
            addr: "10.9.9.9:1".parse().unwrap(),
            ..a
        };
        assert_eq!(t.insert(moved, 2), InsertOutcome::Refreshed);
        assert_eq!(t.closest(&Key::from(a.id), 1), vec![a]);
        let near = contact(id_with(0x01, 0, 2), "10.0.2.1");
        let mid = contact(id_with(0x10, 0, 3), "10.0.3.1");
        t.insert(near, 3);
        t.insert(mid, 4);
        assert_eq!(t.closest(&Key([0; 32]), 3), vec![near, mid, a]);
        assert_eq!(t.remove(&mid.id), Some(mid));
        assert_eq!(t.len(), 2);
    }

    #[test]
    fn evictions_report_who_left_and_who_took_the_place() {
        let mut t = RoutingTable::new(local(), &params(2, 0));
        let a = contact(id_with(0x80, 0, 1), "10.0.1.1");
        let b = contact(id_with(0x80, 0, 2), "10.0.2.1");
        let c = contact(id_with(0x80, 0, 3), "10.0.3.1");
        t.insert(a, 1);
        t.insert(b, 2);
        assert_eq!(t.insert(c, 3), InsertOutcome::Full { ping: a });
        assert_eq!(t.on_failure_evicting(&a.id, 4), None);
        assert_eq!(t.on_failure_evicting(&a.id, 5), None);
        assert_eq!(
            t.on_failure_evicting(&a.id, 6),
            Some(Eviction {
                evicted: Some(a),
                admitted: Some(c)
            })
        );
        assert!(t.contains(&c.id) && !t.contains(&a.id));
        // No pending candidate: only the eviction.
        assert_eq!(
            t.on_ping_result(&b.id, false, 7),
            Eviction {
                evicted: Some(b),
                admitted: None
            }
        );
        assert_eq!(t.on_ping_result(&b.id, false, 8), Eviction::default());
        assert_eq!(t.on_ping_result(&c.id, true, 9), Eviction::default());
        assert_eq!(t.len(), 1);
        // A failed check of a contact already gone still admits the
        // pending candidate (as before evictions were reported).
        let d = contact(id_with(0x80, 0, 4), "10.0.4.1");
        let e = contact(id_with(0x80, 0, 5), "10.0.5.1");
        assert_eq!(t.insert(d, 10), InsertOutcome::Inserted);
        assert_eq!(t.insert(e, 11), InsertOutcome::Full { ping: c });
        t.remove(&c.id);
        assert_eq!(
            t.on_ping_result(&c.id, false, 13),
            Eviction {
                evicted: None,
                admitted: Some(e)
            }
        );
    }

    #[test]
    fn count_closer_and_stale_buckets() {
        let mut t = RoutingTable::new(local(), &params(20, 0));
        let far = contact(id_with(0x80, 0, 1), "10.0.1.1");
        let mid = contact(id_with(0x10, 0, 2), "10.0.2.1");
        let near = contact(id_with(0x01, 0, 3), "10.0.3.1");
        t.insert(far, 1_000);
        t.insert(mid, 2_000);
        t.insert(near, 60_000);
        let target = Key([0; 32]);
        let d = |c: &Contact| target.distance(&Key::from(c.id));
        assert_eq!(t.count_closer(&target, &d(&far)), 2);
        assert_eq!(t.count_closer(&target, &d(&mid)), 1);
        assert_eq!(t.count_closer(&target, &d(&near)), 0);
        // far's bucket is 255, mid's 252, near's 248; at 61 s with a 30 s
        // age, the two seen at 1 s and 2 s are stale.
        assert_eq!(t.stale_buckets(61_000, 30_000), vec![252, 255]);
        assert_eq!(t.stale_buckets(61_000, 120_000), Vec::<usize>::new());
        // Seeing far again makes its bucket fresh.
        t.insert(far, 61_000);
        assert_eq!(t.stale_buckets(61_000, 30_000), vec![252]);
    }

    #[test]
    fn keys_in_bucket_fall_in_that_bucket() {
        let local = id_with(0x5a, 0, 9);
        let t = RoutingTable::new(local, &params(20, 0));
        for bucket in [0usize, 1, 7, 8, 9, 100, 200, 254, 255] {
            for seed in 0..4u8 {
                let random: [u8; 32] = Sha256::digest([seed, bucket as u8]).into();
                let key = t.key_in_bucket(bucket, random).unwrap();
                assert_eq!(
                    Key::from(local).distance(&key).bucket_index(),
                    Some(bucket),
                    "bucket {bucket}"
                );
            }
        }
        assert_eq!(t.key_in_bucket(256, [0; 32]), None);
    }
}

//! Records on disk: an embedded database (redb) holding each slot's
//! latest record encoding. A Store is acknowledged only after a write
//! transaction holding it committed with immediate durability, so `kill -9`
//! loses nothing that was acknowledged; the node groups the writes of
//! concurrent Stores into one transaction ([`super::commit`], through
//! [`DiskStore::apply`]). At start every record is decoded and verified
//! again ([`DiskStore::for_each_record`], one row at a time); what no
//! longer verifies (expired, damaged) is dropped.
//!
//! **Layout: rows in write order.** Records are keyed by a sequence
//! number that grows with every write, not by their slot: slots are
//! hashes, so a slot-keyed B-tree puts each new record in its own leaf
//! and a commit of *n* records rewrites about *n* 4 KiB pages; keyed by
//! sequence, a commit's records share the last few leaves (about 3–4
//! times less CPU and 3 times the commits per second, measured in
//! docs/benchmarks.md). The slot → sequence map lives in memory (a
//! 16-byte digest of the slot and the number, built when the database
//! opens) so that a new version or a removal deletes the old row in the
//! same transaction: the table never holds two rows of one slot once a
//! transaction committed. redb merges the leaves that deletions thin out.
//! A database of the earlier slot-keyed layout (`records_v1`) is moved
//! into this one, in one transaction, when it opens.
//!
//! redb's page cache is bounded by [`RECORD_DB_CACHE_SIZE`] (redb's
//! default is 1 GiB, which a node holding many records would fill).
//!
//! The same database keeps the node's routing-table contacts (node id and
//! address, at most [`MAX_SAVED_CONTACTS`]), replaced as a whole at every
//! save, so that a restarted node can rejoin its overlay without a
//! bootstrap node. Rows that do not decode are skipped, not fatal: the
//! contacts are a cache, re-checked by the routing table's admission rules
//! and by the TLS handshake that must prove each id.

use crate::identity::NodeId;
use crate::limits::{MAX_SAVED_CONTACTS, RECORD_DB_CACHE_SIZE};
use crate::wire::message::Contact;
use redb::{ReadableDatabase, ReadableTable, TableDefinition, TableHandle};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};

/// Sequence number -> `slot length (u16, big-endian) ‖ slot ‖ record encoding`.
const RECORDS: TableDefinition<u64, &[u8]> = TableDefinition::new("records_v2");

/// The earlier layout: slot -> record encoding. Moved into [`RECORDS`] on open.
const RECORDS_V1: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records_v1");

/// Position in the saved order -> `node id (32) ‖ ip (4 / 16) ‖ port (2, big-endian)`.
const CONTACTS: TableDefinition<u32, &[u8]> = TableDefinition::new("contacts_v1");

/// What the in-memory index keys a slot by: the first 16 bytes of its
/// SHA-256 (a collision needs about 2^64 work, and would at worst drop
/// the colliding writer's own older row).
type SlotDigest = [u8; 16];

fn digest(slot: &[u8]) -> SlotDigest {
    let full = Sha256::digest(slot);
    let mut out = [0u8; 16];
    out.copy_from_slice(&full[..16]);
    out
}

/// A record row: `slot length ‖ slot ‖ encoding`; `None` for a slot longer
/// than the length field holds.
fn encode_row(slot: &[u8], encoded: &[u8]) -> Option<Vec<u8>> {
    let len = u16::try_from(slot.len()).ok()?;
    let mut row = Vec::with_capacity(2 + slot.len() + encoded.len());
    row.extend_from_slice(&len.to_be_bytes());
    row.extend_from_slice(slot);
    row.extend_from_slice(encoded);
    Some(row)
}

/// The (slot, encoding) of a record row; `None` if it is damaged.
fn decode_row(row: &[u8]) -> Option<(&[u8], &[u8])> {
    let (len, rest) = row.split_at_checked(2)?;
    let len = u16::from_be_bytes(<[u8; 2]>::try_from(len).ok()?);
    rest.split_at_checked(usize::from(len))
}

fn encode_contact(c: &Contact) -> Vec<u8> {
    let mut out = Vec::with_capacity(32 + 16 + 2);
    out.extend_from_slice(c.id.as_bytes());
    match c.addr.ip() {
        IpAddr::V4(v4) => out.extend_from_slice(&v4.octets()),
        IpAddr::V6(v6) => out.extend_from_slice(&v6.octets()),
    }
    out.extend_from_slice(&c.addr.port().to_be_bytes());
    out
}

fn decode_contact(bytes: &[u8]) -> Option<Contact> {
    let (id, rest) = bytes.split_at_checked(32)?;
    let id = NodeId::from_bytes(<[u8; 32]>::try_from(id).ok()?);
    let (ip, port) = rest.split_at_checked(rest.len().checked_sub(2)?)?;
    let port = u16::from_be_bytes(<[u8; 2]>::try_from(port).ok()?);
    let ip = if let Ok(o) = <[u8; 4]>::try_from(ip) {
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(ip).ok()?))
    };
    Some(Contact {
        id,
        addr: SocketAddr::new(ip, port),
    })
}

/// A slot and the encoding of the record stored in it.
pub type StoredRow = (Vec<u8>, Vec<u8>);

/// One change to the records on disk, as the committer batches them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordWrite {
    /// Store `encoded` as the record of `slot` (replacing any).
    Put {
        /// The slot (key, kind, owner).
        slot: Vec<u8>,
        /// The record's encoding.
        encoded: Vec<u8>,
    },
    /// Drop the record of `slot`, if any.
    Remove {
        /// The slot.
        slot: Vec<u8>,
    },
}

/// Errors of the on-disk store; each names what failed. Cloneable, so that
/// every waiter of a failed group commit gets it.
#[derive(Debug, Clone, thiserror::Error)]
#[error("record database {path}: {reason}")]
pub struct DiskError {
    path: String,
    reason: String,
}

impl DiskError {
    /// An error of the database at `path`.
    pub(crate) fn new(path: impl Into<String>, reason: impl std::fmt::Display) -> Self {
        Self {
            path: path.into(),
            reason: reason.to_string(),
        }
    }

    pub(crate) fn io(path: &Path, e: std::io::Error) -> Self {
        Self {
            path: path.display().to_string(),
            reason: e.to_string(),
        }
    }
}

/// Where each slot's row is: what a write consults to delete the row it
/// replaces. Changed only under its lock, held for a whole write
/// transaction, so that it always matches the committed table.
#[derive(Debug, Default)]
struct Index {
    rows: HashMap<SlotDigest, u64>,
    /// The sequence number of the next row written.
    next: u64,
}

/// The on-disk record store of a node.
#[derive(Debug)]
pub struct DiskStore {
    db: redb::Database,
    path: String,
    index: Mutex<Index>,
}

/// What to undo in the index if a write transaction does not commit: each
/// slot's entry before the transaction changed it.
type Undo = Vec<(SlotDigest, Option<u64>)>;

/// Writes `encoded` as the record of `slot` in a new row and deletes the
/// row it replaces.
fn put_row(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    index: &mut Index,
    undo: &mut Undo,
    slot: &[u8],
    encoded: &[u8],
) -> Result<(), String> {
    let row = encode_row(slot, encoded)
        .ok_or_else(|| format!("a slot of {} bytes is too long", slot.len()))?;
    let seq = index.next;
    index.next = seq
        .checked_add(1)
        .ok_or("the row sequence number is exhausted")?;
    let d = digest(slot);
    let old = index.rows.insert(d, seq);
    undo.push((d, old));
    table
        .insert(seq, row.as_slice())
        .map_err(|e| e.to_string())?;
    if let Some(old) = old {
        table.remove(old).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Deletes the row of `slot`, if there is one.
fn remove_row(
    table: &mut redb::Table<'_, u64, &'static [u8]>,
    index: &mut Index,
    undo: &mut Undo,
    slot: &[u8],
) -> Result<(), String> {
    let d = digest(slot);
    if let Some(old) = index.rows.remove(&d) {
        undo.push((d, Some(old)));
        table.remove(old).map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// Puts the index back as it was before a transaction that did not commit.
fn roll_back(index: &mut Index, undo: Undo) {
    for (d, old) in undo.into_iter().rev() {
        match old {
            Some(seq) => index.rows.insert(d, seq),
            None => index.rows.remove(&d),
        };
    }
}

impl DiskStore {
    /// Opens (or creates) the database at `path`, its page cache bounded
    /// by [`RECORD_DB_CACHE_SIZE`]; moves records of the earlier layout
    /// into the current one and builds the slot index.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let shown = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| DiskError {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let db = redb::Builder::new()
            .set_cache_size(RECORD_DB_CACHE_SIZE)
            .create(path)
            .map_err(|e| err(&e))?;
        let store = Self {
            db,
            path: shown.clone(),
            index: Mutex::new(Index::default()),
        };
        // Make sure the tables exist so that reads never fail on a new file.
        let tx = store.db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(RECORDS).map_err(|e| err(&e))?;
        tx.open_table(CONTACTS).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        store.build_index()?;
        store.migrate_v1()?;
        Ok(store)
    }

    /// Reads every row's slot into the index; drops damaged rows and any
    /// older row of a slot (neither is written by this module).
    fn build_index(&self) -> Result<(), DiskError> {
        let mut index = self.lock();
        let mut drop_rows = Vec::new();
        {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            for row in table.iter().map_err(|e| self.err(e))? {
                let (seq, row) = row.map_err(|e| self.err(e))?;
                let seq = seq.value();
                index.next = index.next.max(seq.saturating_add(1));
                match decode_row(row.value()) {
                    Some((slot, _)) => {
                        if let Some(older) = index.rows.insert(digest(slot), seq) {
                            drop_rows.push(older);
                        }
                    }
                    None => drop_rows.push(seq),
                }
            }
        }
        if !drop_rows.is_empty() {
            let tx = self.db.begin_write().map_err(|e| self.err(e))?;
            {
                let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                for seq in drop_rows {
                    table.remove(seq).map_err(|e| self.err(e))?;
                }
            }
            tx.commit().map_err(|e| self.err(e))?;
        }
        Ok(())
    }

    /// Moves the rows of the slot-keyed layout, if the file has one, into
    /// the current table, in one transaction.
    fn migrate_v1(&self) -> Result<(), DiskError> {
        let has_v1 = {
            let tx = self.db.begin_read().map_err(|e| self.err(e))?;
            let mut tables = tx.list_tables().map_err(|e| self.err(e))?;
            tables.any(|t| t.name() == RECORDS_V1.name())
        };
        if !has_v1 {
            return Ok(());
        }
        let mut index = self.lock();
        let mut undo = Undo::new();
        let result = (|| {
            let tx = self.db.begin_write().map_err(|e| self.err(e))?;
            {
                let old = tx.open_table(RECORDS_V1).map_err(|e| self.err(e))?;
                let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
                for row in old.iter().map_err(|e| self.err(e))? {
                    let (slot, encoded) = row.map_err(|e| self.err(e))?;
                    put_row(
                        &mut table,
                        &mut index,
                        &mut undo,
                        slot.value(),
                        encoded.value(),
                    )
                    .map_err(|e| self.err(e))?;
                }
            }
            tx.delete_table(RECORDS_V1).map_err(|e| self.err(e))?;
            tx.commit().map_err(|e| self.err(e))
        })();
        if result.is_err() {
            roll_back(&mut index, undo);
        }
        result
    }

    fn lock(&self) -> MutexGuard<'_, Index> {
        // Nothing under the lock panics (no indexing, no unwrap), so a
        // poisoned lock holds an index as consistent as any: take it.
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// One write transaction applying `writes` in order, committed with
    /// immediate durability; the index keeps the changes only if it
    /// commits.
    fn write<'a>(
        &self,
        writes: impl IntoIterator<Item = &'a RecordWrite>,
    ) -> Result<(), DiskError> {
        let mut index = self.lock();
        let mut undo = Undo::new();
        let result = self.write_locked(&mut index, &mut undo, writes);
        if result.is_err() {
            roll_back(&mut index, undo);
        }
        result
    }

    fn write_locked<'a>(
        &self,
        index: &mut Index,
        undo: &mut Undo,
        writes: impl IntoIterator<Item = &'a RecordWrite>,
    ) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            for write in writes {
                match write {
                    RecordWrite::Put { slot, encoded } => {
                        put_row(&mut table, index, undo, slot, encoded)
                    }
                    RecordWrite::Remove { slot } => remove_row(&mut table, index, undo, slot),
                }
                .map_err(|e| self.err(e))?;
            }
        }
        // Dropped uncommitted on any error above: redb aborts it.
        tx.commit().map_err(|e| self.err(e))
    }

    /// The database file, as shown in errors.
    pub fn path(&self) -> &str {
        &self.path
    }

    fn err(&self, e: impl std::fmt::Display) -> DiskError {
        DiskError {
            path: self.path.clone(),
            reason: e.to_string(),
        }
    }

    /// Durably writes `encoded` as the record of `slot`.
    pub fn save(&self, slot: &[u8], encoded: &[u8]) -> Result<(), DiskError> {
        let write = RecordWrite::Put {
            slot: slot.to_vec(),
            encoded: encoded.to_vec(),
        };
        self.apply([&write])
    }

    /// Applies `writes` in their order in one write transaction, committed
    /// with immediate durability: all of them are durable when this
    /// returns `Ok`, and none is when it fails (the transaction is
    /// aborted). A later write to a slot wins over an earlier one.
    pub fn apply<'a>(
        &self,
        writes: impl IntoIterator<Item = &'a RecordWrite>,
    ) -> Result<(), DiskError> {
        self.write(writes)
    }

    /// Removes the record of `slot`.
    pub fn remove(&self, slot: &[u8]) -> Result<(), DiskError> {
        self.remove_many(&[slot.to_vec()])
    }

    /// Removes the records of `slots`, in one transaction.
    pub fn remove_many(&self, slots: &[Vec<u8>]) -> Result<(), DiskError> {
        let writes: Vec<RecordWrite> = slots
            .iter()
            .map(|slot| RecordWrite::Remove { slot: slot.clone() })
            .collect();
        self.apply(&writes)
    }

    /// Calls `f` with every stored (slot, record encoding) pair, one row
    /// at a time, in the order they were written (a restart does not hold
    /// every row in memory at once).
    pub fn for_each_record(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), DiskError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for row in table.iter().map_err(|e| self.err(e))? {
            let (_, row) = row.map_err(|e| self.err(e))?;
            // Damaged rows were dropped when the index was built.
            if let Some((slot, encoded)) = decode_row(row.value()) {
                f(slot, encoded);
            }
        }
        Ok(())
    }

    /// Every stored (slot, record encoding) pair, in the order they were
    /// written.
    pub fn load_all(&self) -> Result<Vec<StoredRow>, DiskError> {
        let mut out = Vec::new();
        self.for_each_record(|slot, encoded| out.push((slot.to_vec(), encoded.to_vec())))?;
        Ok(out)
    }

    /// Durably replaces the saved contacts with `contacts` (at most
    /// [`MAX_SAVED_CONTACTS`], the first ones kept), in their order.
    pub fn save_contacts(&self, contacts: &[Contact]) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(CONTACTS).map_err(|e| self.err(e))?;
            table.retain(|_, _| false).map_err(|e| self.err(e))?;
            for (i, c) in (0u32..).zip(contacts.iter().take(MAX_SAVED_CONTACTS)) {
                table
                    .insert(i, encode_contact(c).as_slice())
                    .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// The saved contacts, in their saved order, at most
    /// [`MAX_SAVED_CONTACTS`]; rows that do not decode are skipped.
    pub fn load_contacts(&self) -> Result<Vec<Contact>, DiskError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(CONTACTS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            if out.len() >= MAX_SAVED_CONTACTS {
                break;
            }
            let (_, v) = row.map_err(|e| self.err(e))?;
            if let Some(c) = decode_contact(v.value()) {
                out.push(c);
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use redb::ReadableTableMetadata;

    #[test]
    fn saved_records_survive_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        {
            let s = DiskStore::open(&path).unwrap();
            s.save(b"slot-a", b"record-1").unwrap();
            s.save(b"slot-a", b"record-2").unwrap();
            s.save(b"slot-b", b"record-3").unwrap();
            s.remove(b"slot-b").unwrap();
            s.save(b"slot-c", b"record-4").unwrap();
            s.save(b"slot-d", b"record-5").unwrap();
            s.remove_many(&[b"slot-c".to_vec(), b"slot-d".to_vec()])
                .unwrap();
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-a".to_vec(), b"record-2".to_vec())]
        );
    }

    #[test]
    fn a_batch_is_applied_in_order_in_one_transaction() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let put = |slot: &[u8], encoded: &[u8]| RecordWrite::Put {
            slot: slot.to_vec(),
            encoded: encoded.to_vec(),
        };
        let remove = |slot: &[u8]| RecordWrite::Remove {
            slot: slot.to_vec(),
        };
        {
            let s = DiskStore::open(&path).unwrap();
            s.save(b"slot-z", b"old").unwrap();
            let batch = [
                put(b"slot-a", b"record-1"),
                put(b"slot-a", b"record-2"),
                put(b"slot-b", b"record-3"),
                remove(b"slot-b"),
                remove(b"slot-z"),
                remove(b"never-there"),
                put(b"slot-c", b"record-4"),
            ];
            s.apply(&batch).unwrap();
            s.apply(&[]).unwrap();
        }
        let s = DiskStore::open(&path).unwrap();
        let mut rows = Vec::new();
        s.for_each_record(|slot, encoded| rows.push((slot.to_vec(), encoded.to_vec())))
            .unwrap();
        assert_eq!(
            rows,
            vec![
                (b"slot-a".to_vec(), b"record-2".to_vec()),
                (b"slot-c".to_vec(), b"record-4".to_vec()),
            ]
        );
        assert_eq!(rows, s.load_all().unwrap());
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        std::fs::write(&path, b"not a database at all, just bytes").unwrap();
        let err = DiskStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("records.redb"), "{err}");
    }

    /// How many rows the record table holds, read raw.
    fn raw_rows(s: &DiskStore) -> u64 {
        let tx = s.db.begin_read().unwrap();
        tx.open_table(RECORDS).unwrap().len().unwrap()
    }

    #[test]
    fn a_new_version_replaces_the_row_of_the_old_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        {
            let s = DiskStore::open(&path).unwrap();
            for v in 0..50u8 {
                s.save(b"slot-a", &[v; 3]).unwrap();
            }
            s.save(b"slot-b", b"b").unwrap();
            assert_eq!(raw_rows(&s), 2);
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(
            s.load_all().unwrap(),
            vec![
                (b"slot-a".to_vec(), vec![49; 3]),
                (b"slot-b".to_vec(), b"b".to_vec())
            ]
        );
        // The index was rebuilt: a write after reopening still replaces.
        s.save(b"slot-b", b"b2").unwrap();
        s.remove(b"slot-a").unwrap();
        assert_eq!(raw_rows(&s), 1);
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-b".to_vec(), b"b2".to_vec())]
        );
    }

    #[test]
    fn a_failed_batch_leaves_disk_and_index_as_they_were() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let s = DiskStore::open(&path).unwrap();
        s.save(b"slot-a", b"v1").unwrap();
        let too_long = vec![7u8; usize::from(u16::MAX) + 1];
        let batch = [
            RecordWrite::Put {
                slot: b"slot-a".to_vec(),
                encoded: b"v2".to_vec(),
            },
            RecordWrite::Put {
                slot: too_long,
                encoded: b"x".to_vec(),
            },
        ];
        let err = s.apply(&batch).unwrap_err().to_string();
        assert!(err.contains("too long"), "{err}");
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-a".to_vec(), b"v1".to_vec())]
        );
        // Had the index kept the aborted row's number, this write would
        // delete nothing and leave the v1 row beside the v3 one.
        s.save(b"slot-a", b"v3").unwrap();
        assert_eq!(raw_rows(&s), 1);
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-a".to_vec(), b"v3".to_vec())]
        );
    }

    #[test]
    fn damaged_and_duplicate_rows_are_dropped_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        {
            let s = DiskStore::open(&path).unwrap();
            let tx = s.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(RECORDS).unwrap();
                t.insert(3u64, &[0xff][..]).unwrap();
                t.insert(4u64, &[0, 9, 1][..]).unwrap();
                t.insert(5u64, encode_row(b"slot-a", b"old").unwrap().as_slice())
                    .unwrap();
                t.insert(9u64, encode_row(b"slot-a", b"new").unwrap().as_slice())
                    .unwrap();
            }
            tx.commit().unwrap();
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(raw_rows(&s), 1);
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-a".to_vec(), b"new".to_vec())]
        );
        // New rows are numbered after the highest one seen.
        s.save(b"slot-b", b"b").unwrap();
        let last = {
            let tx = s.db.begin_read().unwrap();
            let t = tx.open_table(RECORDS).unwrap();
            let (k, _) = t.last().unwrap().unwrap();
            k.value()
        };
        assert_eq!(last, 10);
    }

    #[test]
    fn a_database_of_the_slot_keyed_layout_is_moved_on_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        {
            let db = redb::Database::create(&path).unwrap();
            let tx = db.begin_write().unwrap();
            {
                let mut t = tx.open_table(RECORDS_V1).unwrap();
                t.insert(&b"slot-b"[..], &b"record-b"[..]).unwrap();
                t.insert(&b"slot-a"[..], &b"record-a"[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        for _ in 0..2 {
            let s = DiskStore::open(&path).unwrap();
            assert_eq!(
                s.load_all().unwrap(),
                vec![
                    (b"slot-a".to_vec(), b"record-a".to_vec()),
                    (b"slot-b".to_vec(), b"record-b".to_vec())
                ]
            );
            let tx = s.db.begin_read().unwrap();
            let names: Vec<String> = tx
                .list_tables()
                .unwrap()
                .map(|t| t.name().to_owned())
                .collect();
            assert!(!names.contains(&"records_v1".to_owned()), "{names:?}");
        }
    }

    fn contact(seed: u8, addr: &str) -> Contact {
        Contact {
            id: NodeId::from_bytes([seed; 32]),
            addr: addr.parse().unwrap(),
        }
    }

    #[test]
    fn contacts_are_replaced_as_a_whole_and_reloaded_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let a = contact(1, "127.1.0.1:4433");
        let b = contact(2, "[2001:db8::7]:9");
        let c = contact(3, "10.0.0.3:65535");
        {
            let s = DiskStore::open(&path).unwrap();
            assert_eq!(s.load_contacts().unwrap(), vec![]);
            s.save_contacts(&[a, b, c]).unwrap();
            s.save_contacts(&[c, a]).unwrap();
            s.save(b"slot", b"record").unwrap();
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(s.load_contacts().unwrap(), vec![c, a]);
        assert_eq!(s.load_all().unwrap().len(), 1, "records untouched");
        // At most MAX_SAVED_CONTACTS are kept.
        let many: Vec<Contact> = (0..MAX_SAVED_CONTACTS + 5)
            .map(|i| Contact {
                id: NodeId::from_bytes([(i % 251) as u8; 32]),
                addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::from(i as u32)), 1),
            })
            .collect();
        s.save_contacts(&many).unwrap();
        let loaded = s.load_contacts().unwrap();
        assert_eq!(loaded.len(), MAX_SAVED_CONTACTS);
        assert_eq!(loaded.first(), many.first());
    }

    #[test]
    fn damaged_contact_rows_are_skipped() {
        for bad in [
            &[][..],
            &[0u8; 31],
            &[0u8; 34],
            &[0u8; 32 + 5 + 2],
            &[0u8; 32 + 17 + 2],
        ] {
            assert_eq!(decode_contact(bad), None, "{} bytes", bad.len());
        }
        let c = contact(9, "[::1]:80");
        assert_eq!(decode_contact(&encode_contact(&c)), Some(c));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        let s = DiskStore::open(&path).unwrap();
        s.save_contacts(&[c]).unwrap();
        {
            let tx = s.db.begin_write().unwrap();
            {
                let mut t = tx.open_table(CONTACTS).unwrap();
                t.insert(7u32, &b"garbage"[..]).unwrap();
            }
            tx.commit().unwrap();
        }
        assert_eq!(s.load_contacts().unwrap(), vec![c]);
    }
}

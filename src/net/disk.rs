//! Records on disk: an embedded database (redb) holding each slot's
//! latest record encoding. A Store is acknowledged only after a write
//! transaction holding it committed with immediate durability, so `kill -9`
//! loses nothing that was acknowledged; the node groups the writes of
//! concurrent Stores into one transaction ([`super::commit`], through
//! [`DiskStore::apply`]). At start every record is decoded and verified
//! again ([`DiskStore::for_each_record`], one row at a time); what no
//! longer verifies (expired, damaged) is dropped.
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
use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records_v1");

/// Position in the saved order -> `node id (32) ‖ ip (4 / 16) ‖ port (2, big-endian)`.
const CONTACTS: TableDefinition<u32, &[u8]> = TableDefinition::new("contacts_v1");

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

/// The on-disk record store of a node.
#[derive(Debug)]
pub struct DiskStore {
    db: redb::Database,
    path: String,
}

impl DiskStore {
    /// Opens (or creates) the database at `path`, its page cache bounded
    /// by [`RECORD_DB_CACHE_SIZE`].
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
        // Make sure the table exists so that reads never fail on a new file.
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(RECORDS).map_err(|e| err(&e))?;
        tx.open_table(CONTACTS).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        Ok(Self { db, path: shown })
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
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            table.insert(slot, encoded).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Applies `writes` in their order in one write transaction, committed
    /// with immediate durability: all of them are durable when this
    /// returns `Ok`, and none is when it fails (the transaction is
    /// aborted). A later write to a slot wins over an earlier one.
    pub fn apply<'a>(
        &self,
        writes: impl IntoIterator<Item = &'a RecordWrite>,
    ) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            for write in writes {
                match write {
                    RecordWrite::Put { slot, encoded } => {
                        table.insert(slot.as_slice(), encoded.as_slice()).map(drop)
                    }
                    RecordWrite::Remove { slot } => table.remove(slot.as_slice()).map(drop),
                }
                .map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes the record of `slot`.
    pub fn remove(&self, slot: &[u8]) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            table.remove(slot).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Removes the records of `slots`, in one transaction.
    pub fn remove_many(&self, slots: &[Vec<u8>]) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            for slot in slots {
                table.remove(slot.as_slice()).map_err(|e| self.err(e))?;
            }
        }
        tx.commit().map_err(|e| self.err(e))
    }

    /// Calls `f` with every stored (slot, record encoding) pair, one row
    /// at a time (a restart does not hold every row in memory at once).
    pub fn for_each_record(&self, mut f: impl FnMut(&[u8], &[u8])) -> Result<(), DiskError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            f(k.value(), v.value());
        }
        Ok(())
    }

    /// Every stored (slot, record encoding) pair.
    pub fn load_all(&self) -> Result<Vec<StoredRow>, DiskError> {
        let tx = self.db.begin_read().map_err(|e| self.err(e))?;
        let table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
        let mut out = Vec::new();
        for row in table.iter().map_err(|e| self.err(e))? {
            let (k, v) = row.map_err(|e| self.err(e))?;
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
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

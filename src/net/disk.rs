//! Records on disk: an embedded database (redb) holding each slot's
//! latest record encoding. A Store is acknowledged only after its write
//! transaction committed with immediate durability, so `kill -9` loses
//! nothing that was acknowledged. At start every record is decoded and
//! verified again; what no longer verifies (expired, damaged) is dropped.

use redb::{ReadableDatabase, ReadableTable, TableDefinition};
use std::path::Path;

const RECORDS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("records_v1");

/// A slot and the encoding of the record stored in it.
pub type StoredRow = (Vec<u8>, Vec<u8>);

/// Errors of the on-disk store; each names what failed.
#[derive(Debug, thiserror::Error)]
#[error("record database {path}: {reason}")]
pub struct DiskError {
    path: String,
    reason: String,
}

impl DiskError {
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
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Self, DiskError> {
        let shown = path.display().to_string();
        let err = |e: &dyn std::fmt::Display| DiskError {
            path: shown.clone(),
            reason: e.to_string(),
        };
        let db = redb::Database::create(path).map_err(|e| err(&e))?;
        // Make sure the table exists so that reads never fail on a new file.
        let tx = db.begin_write().map_err(|e| err(&e))?;
        tx.open_table(RECORDS).map_err(|e| err(&e))?;
        tx.commit().map_err(|e| err(&e))?;
        Ok(Self { db, path: shown })
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

    /// Removes the record of `slot`.
    pub fn remove(&self, slot: &[u8]) -> Result<(), DiskError> {
        let tx = self.db.begin_write().map_err(|e| self.err(e))?;
        {
            let mut table = tx.open_table(RECORDS).map_err(|e| self.err(e))?;
            table.remove(slot).map_err(|e| self.err(e))?;
        }
        tx.commit().map_err(|e| self.err(e))
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
        }
        let s = DiskStore::open(&path).unwrap();
        assert_eq!(
            s.load_all().unwrap(),
            vec![(b"slot-a".to_vec(), b"record-2".to_vec())]
        );
    }

    #[test]
    fn a_file_that_is_not_a_database_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records.redb");
        std::fs::write(&path, b"not a database at all, just bytes").unwrap();
        let err = DiskStore::open(&path).unwrap_err().to_string();
        assert!(err.contains("records.redb"), "{err}");
    }
}

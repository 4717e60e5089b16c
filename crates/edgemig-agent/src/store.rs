//! The agent's persistent store (redb, one file in the state directory):
//! VM records and migration job records, each as JSON so the format can
//! grow compatibly. Every write is one committed transaction: a record is
//! on disk when `put` returns.

use std::path::Path;

use redb::{Database, ReadableDatabase, ReadableTable, TableDefinition};

use crate::migration::jobs::JobRecord;
use crate::vm::VmRecord;

const VMS: TableDefinition<&str, &[u8]> = TableDefinition::new("vms");
const JOBS: TableDefinition<&str, &[u8]> = TableDefinition::new("jobs");

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database failed.
    #[error("VM store failed")]
    Db(#[source] Box<redb::Error>),
    /// A record could not be (de)serialized.
    #[error("VM store holds an unreadable record")]
    Record(#[source] serde_json::Error),
}

impl<E: Into<redb::Error>> From<E> for StoreError {
    fn from(e: E) -> Self {
        Self::Db(Box::new(e.into()))
    }
}

/// The VM store.
#[derive(Debug)]
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the store at `path`.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        txn.open_table(VMS)?;
        txn.open_table(JOBS)?;
        txn.commit()?;
        Ok(Self { db })
    }

    /// Inserts or replaces a migration's record.
    pub fn put_job(&self, job: &JobRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(job).map_err(StoreError::Record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(JOBS)?
            .insert(job.id.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes a migration's record; true when it existed.
    pub fn remove_job(&self, id: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(JOBS)?.remove(id)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// One migration's record.
    pub fn job(&self, id: &str) -> Result<Option<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        match table.get(id)? {
            Some(v) => Ok(Some(
                serde_json::from_slice(v.value()).map_err(StoreError::Record)?,
            )),
            None => Ok(None),
        }
    }

    /// Every migration record, ordered by id.
    pub fn jobs(&self) -> Result<Vec<JobRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(JOBS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value()).map_err(StoreError::Record)?);
        }
        Ok(out)
    }

    /// Inserts or replaces a record.
    pub fn put(&self, record: &VmRecord) -> Result<(), StoreError> {
        let bytes = serde_json::to_vec(record).map_err(StoreError::Record)?;
        let txn = self.db.begin_write()?;
        txn.open_table(VMS)?
            .insert(record.name.as_str(), bytes.as_slice())?;
        txn.commit()?;
        Ok(())
    }

    /// Removes a record; true when it existed.
    pub fn remove(&self, name: &str) -> Result<bool, StoreError> {
        let txn = self.db.begin_write()?;
        let existed = txn.open_table(VMS)?.remove(name)?.is_some();
        txn.commit()?;
        Ok(existed)
    }

    /// All records, ordered by name.
    pub fn all(&self) -> Result<Vec<VmRecord>, StoreError> {
        let txn = self.db.begin_read()?;
        let table = txn.open_table(VMS)?;
        let mut out = Vec::new();
        for entry in table.iter()? {
            let (_, value) = entry?;
            out.push(serde_json::from_slice(value.value()).map_err(StoreError::Record)?);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use edgemig_api::VmState;

    use super::*;

    fn record(name: &str) -> VmRecord {
        VmRecord {
            name: name.into(),
            id: 1,
            mac_seed: 1,
            memory_mib: 128,
            vcpus: 1,
            disk_mib: Some(64),
            base_digest: None,
            boot: crate::vm::Boot::Builtin,
            mptcp_apps: Default::default(),
            address: Ipv4Addr::new(10, 0, 0, 2),
            prefix_len: 24,
            gateway: None,
            active_nic: 0,
            next_address: None,
            follow: None,
            state: VmState::Running,
            pid: Some(42),
        }
    }

    #[test]
    fn survives_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("store.redb");
        {
            let s = Store::open(&path).unwrap();
            s.put(&record("b")).unwrap();
            s.put(&record("a")).unwrap();
            assert!(s.remove("b").unwrap());
            assert!(!s.remove("b").unwrap());
        }
        let s = Store::open(&path).unwrap();
        assert_eq!(s.all().unwrap(), vec![record("a")]);
    }
}

//! Backups: a consistent copy of the database written to a new file while core runs, and the
//! check a restored file must pass before a core is started on it.
//!
//! The copy reads one MVCC snapshot (a read transaction), so it holds exactly the writes
//! committed when it began — every write acknowledged before then, none half done — and never
//! waits for or holds up the writer. It is written table by table into a fresh file, which is
//! therefore also compact.

use std::path::Path;

use redb::{
    Database, Key, ReadTransaction, ReadableDatabase, ReadableTable, ReadableTableMetadata,
    TableDefinition, Value,
};

use crate::tables::*;
use crate::{Store, StoreError};

/// redb's page cache for a copy or a check: pages are read or written once, so a large cache
/// (redb's default is 1 GiB) would only take memory from a running core.
const COPY_CACHE_BYTES: usize = 16 * 1024 * 1024;

/// What a copy or a check found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Summary {
    /// Node records (deleted ones included).
    pub nodes: u64,
    /// Rows in all tables.
    pub rows: u64,
    /// Size of the file, bytes.
    pub bytes: u64,
}

fn copy_table<K: Key + 'static, V: Value + 'static>(
    from: &ReadTransaction,
    to: &Database,
    table: TableDefinition<'_, K, V>,
) -> Result<u64, StoreError> {
    let source = from.open_table(table)?;
    let txn = to.begin_write()?;
    let mut rows = 0;
    {
        let mut target = txn.open_table(table)?;
        for entry in source.iter()? {
            let (key, value) = entry?;
            target.insert(key.value(), value.value())?;
            rows += 1;
        }
    }
    txn.commit()?;
    Ok(rows)
}

fn count<K: Key + 'static, V: Value + 'static>(
    txn: &ReadTransaction,
    table: TableDefinition<'_, K, V>,
) -> Result<u64, StoreError> {
    Ok(txn.open_table(table)?.len()?)
}

impl Store {
    /// Writes a consistent copy of the database to `dest`, a new file (an existing one is
    /// refused). Blocking: it reads the whole database; run it off the async runtime.
    pub fn snapshot(&self, dest: &Path) -> Result<Summary, StoreError> {
        if dest.exists() {
            return Err(StoreError::Database(format!(
                "{} already exists",
                dest.display()
            )));
        }
        let snapshot = self.read()?;
        let copy = Database::builder()
            .set_cache_size(COPY_CACHE_BYTES)
            .create(dest)
            .map_err(|e| crate::open_error(dest, e))?;
        let mut rows = 0;
        macro_rules! copy {
            ($table:ident) => {
                rows += copy_table(&snapshot, &copy, $table)?;
            };
        }
        every_table!(copy);
        let nodes = count(&snapshot, NODES)?;
        drop(copy);
        let bytes = std::fs::metadata(dest)
            .map_err(|e| StoreError::Database(format!("{}: {e}", dest.display())))?
            .len();
        Ok(Summary { nodes, rows, bytes })
    }

    /// Checks a database file that is not open (a restored one): redb's own integrity check
    /// (every page's checksum), then every table is there and every record decodes.
    pub fn verify(path: &Path) -> Result<Summary, StoreError> {
        crate::unpanicked(path, || Self::verify_inner(path))
    }

    fn verify_inner(path: &Path) -> Result<Summary, StoreError> {
        let mut db = Database::builder()
            .set_cache_size(COPY_CACHE_BYTES)
            .open(path)
            .map_err(|e| crate::open_error(path, e))?;
        if !db
            .check_integrity()
            .map_err(|e| crate::open_error(path, e))?
        {
            return Err(StoreError::Corrupt(format!(
                "{} failed its integrity check",
                path.display()
            )));
        }
        let txn = db.begin_read()?;
        let mut rows = 0;
        macro_rules! tally {
            ($table:ident) => {
                rows += count(&txn, $table)?;
            };
        }
        every_table!(tally);
        let nodes = count(&txn, NODES)?;
        drop(txn);
        drop(db);
        // Every record of the main kinds decodes with this release's shapes.
        let store = Store::open(path)?;
        store.nodes()?;
        store.applications(None)?;
        store.executions(None, usize::MAX)?;
        store.tty_sessions(None, false, usize::MAX)?;
        let Store { db, writer, .. } = store;
        drop(db);
        writer.close_blocking();
        let bytes = std::fs::metadata(path)
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?
            .len();
        Ok(Summary { nodes, rows, bytes })
    }
}

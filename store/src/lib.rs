//! # tether-store
//!
//! All of core's persistence: nodes, enrollment applications, used nonces, agent secrets, static
//! facts, last-seen times, the status log, users with their certificates and login sessions, and
//! the audit log. This is the only crate that knows redb.
//!
//! Writes go through one writer thread (as in iroh-dns-server): each write is a closure queued on a
//! channel; the writer applies every queued closure in one transaction, commits it with
//! `Durability::Immediate`, and only then answers each caller through its oneshot channel. So an
//! answer means "on disk", many small writes cost one fsync, and writes never interleave. Reads are
//! redb MVCC snapshots taken from any thread; they never wait for the writer.
//!
//! This crate must never open a socket, read the clock (callers pass times in), or decide policy
//! beyond data integrity: whether an enrollment is allowed is core's business, but "one
//! application per node id" and "a nonce is used once" are enforced here, atomically.

mod alerts;
mod audit;
mod codec;
mod deploys;
mod enroll;
mod exec;
mod groups;
mod history;
mod legacy;
mod nodes;
mod records;
mod releases;
mod retention;
mod snapshot;
mod tables;
mod tasks;
mod tty;
mod users;
mod writer;

use std::path::Path;
use std::sync::Arc;

use redb::Database;

pub use alerts::{AlertOutcome, AlertRefusal};
pub use audit::{AuditFilter, AuditRecord, AuditTamper, audit_hash};
pub use deploys::DeployRefusal;
pub use enroll::{Decision, DecisionOutcome, NewApplication, Submission};
pub use groups::{GroupOutcome, GroupRefusal, GroupTree, NewGroup};
pub use history::{
    FLEET_MEDIAN, FLEET_P95, History, HistoryPages, HistoryRead, HistorySample, HistorySpans,
    HistoryWrite, fleet_quantiles,
};
pub use nodes::{ConnectivityChange, NodeDetail, Resolved};
pub use records::{
    ApplicationRecord, ExecutionRecord, IdentityConflict, NodeExecRecord, NodeRecord, StatusEvent,
    TtySessionRecord,
};
pub use releases::ReleaseRefusal;
pub use retention::Pruned;
pub use snapshot::Summary;
pub use tasks::{TaskOutcome, TaskRefusal};
pub use tty::AccessChange;
pub use users::{AddUser, CertRecord, SessionRecord, UserChange, UserOutcome, UserRecord};
pub use writer::CommitObserver;

/// What went wrong in the store. Logical outcomes (not found, conflicts) are not errors: they are
/// values in each operation's result.
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// Another process (probably another core) has the database open.
    #[error("the database {0} is in use by another process (is another tether-core running?)")]
    InUse(String),
    /// redb failed.
    #[error("database: {0}")]
    Database(String),
    /// A stored value does not decode.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The writer stopped (the store is closing).
    #[error("the store is closed")]
    Closed,
    /// The disk is too full to write safely: nothing was written, and the database is intact.
    #[error(
        "the disk holding the database has {free} bytes free and core keeps at least {keep} free \
         (min_free_space) so that the database stays intact; nothing was written: free some space"
    )]
    DiskFull {
        /// Bytes free on the filesystem.
        free: u64,
        /// Bytes core keeps free.
        keep: u64,
    },
}

/// Bytes free for unprivileged writers on the filesystem holding `path`, if it can be asked.
/// The measure behind `min_free_space`, for the database's writes and for whatever else shares
/// its disk (recordings, backup copies).
pub fn free_space(path: &Path) -> Option<u64> {
    let stat = rustix::fs::statvfs(path).ok()?;
    Some(stat.f_bavail.saturating_mul(stat.f_frsize))
}

/// What opening a database file can fail with, in the store's terms: damage is
/// [`StoreError::Corrupt`].
pub(crate) fn open_error(path: &Path, error: redb::DatabaseError) -> StoreError {
    match error {
        redb::DatabaseError::DatabaseAlreadyOpen => StoreError::InUse(path.display().to_string()),
        redb::DatabaseError::Storage(redb::StorageError::Corrupted(why)) => {
            StoreError::Corrupt(format!("{}: {why}", path.display()))
        }
        // "Not a redb database": a damaged header.
        redb::DatabaseError::Storage(redb::StorageError::Io(e))
            if e.kind() == std::io::ErrorKind::InvalidData =>
        {
            StoreError::Corrupt(format!("{}: {e}", path.display()))
        }
        other => StoreError::Database(format!("{}: {other}", path.display())),
    }
}

/// Runs `work` on the database at `path`, turning a panic into [`StoreError::Corrupt`]: redb
/// panics on some kinds of damage rather than returning an error, and a damaged database must
/// be refused with a message that says what to do, not end the process.
pub(crate) fn unpanicked<T>(
    path: &Path,
    work: impl FnOnce() -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|panic| {
        Err(StoreError::Corrupt(format!(
            "{}: reading it failed ({})",
            path.display(),
            panic_message(&panic)
        )))
    })
}

/// The message of a caught panic.
pub(crate) fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic".into())
}

macro_rules! from_redb {
    ($($ty:ty),*) => {$(
        impl From<$ty> for StoreError {
            fn from(e: $ty) -> Self {
                StoreError::Database(e.to_string())
            }
        }
    )*};
}
from_redb!(
    redb::Error,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError,
    redb::SetDurabilityError
);

/// redb's own page cache. Its default (1 GiB) would let a core with 100,000 nodes keep the whole
/// file (322 MB) in its heap, over 3 KiB of every node's share of resident memory: each
/// connection updates its node's record, and a restart's mark-all-offline pass reads them all.
/// The file is still cached, by the kernel, which can give the memory back under pressure; reads
/// that miss this cache cost a `pread`, not a disk access.
const CACHE_BYTES: usize = 64 * 1024 * 1024;

/// Handle to the store; cheap to clone.
#[derive(Clone, Debug)]
pub struct Store {
    db: Arc<Database>,
    writer: writer::WriterHandle,
    /// Bumped by the writer after every batch that wrote a node record.
    nodes_generation: Arc<std::sync::atomic::AtomicU64>,
    /// Every node record as of a generation (see [`Store::node_records_shared`]).
    nodes_cache: Arc<std::sync::Mutex<Option<NodesAt>>>,
    /// Told of every batch's commit (see [`Store::observe_commits`]).
    commit_observer: writer::ObserverSlot,
    /// Metrics history's open raw windows, in memory until they end.
    raw_windows: Arc<history::RawWindows>,
}

/// Every node record, as of a generation of `Store::nodes_generation`.
type NodesAt = (u64, Arc<Vec<NodeRecord>>);

impl Store {
    /// Opens (or creates) the database at `path` and starts its writer thread.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        Self::open_keeping_free(path, 0)
    }

    /// Like [`Store::open`], and every write is refused ([`StoreError::DiskFull`]) while the
    /// filesystem holding `path` has less than `keep_free` bytes free. redb, like most
    /// databases, refuses all further writes after one fails for lack of space, until it is
    /// reopened; a write never tried cannot fail that way, and writes resume by themselves once
    /// space is freed.
    pub fn open_keeping_free(path: &Path, keep_free: u64) -> Result<Self, StoreError> {
        let db = unpanicked(path, || {
            let db = Database::builder()
                .set_cache_size(CACHE_BYTES)
                .create(path)
                .map_err(|e| open_error(path, e))?;
            tables::create_all(&db)?;
            Ok(db)
        })?;
        let raw_windows = Arc::new(history::RawWindows::load(&db)?);
        // The file holds agent secrets: owner only, whatever the umask.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .map_err(|e| StoreError::Database(format!("{}: {e}", path.display())))?;
        let db = Arc::new(db);
        let guard = (keep_free > 0).then(|| writer::SpaceGuard {
            dir: path.parent().map_or_else(|| ".".into(), Path::to_path_buf),
            keep: keep_free,
        });
        let nodes_generation = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let commit_observer = writer::ObserverSlot::default();
        let writer = writer::start(
            db.clone(),
            guard,
            nodes_generation.clone(),
            commit_observer.clone(),
        );
        Ok(Self {
            db,
            writer,
            nodes_generation,
            nodes_cache: Default::default(),
            commit_observer,
            raw_windows,
        })
    }

    /// Writes what only memory holds (metrics history's open windows), waits until every
    /// queued write is committed and stops the writer.
    pub async fn close(self) {
        if let Err(e) = self.keep_open_history().await {
            tracing::warn!(error = %e, "could not keep the open metrics history windows");
        }
        self.writer.close().await;
    }
}

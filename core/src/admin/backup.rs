//! `Backup`: a consistent copy of the database, the keys a new core needs, and the recordings,
//! streamed to the admin as the archive is made (never whole in memory, never whole on core's
//! disk beyond the database copy, which is removed afterwards).

use std::io::Write;
use std::path::PathBuf;

use sha2::{Digest as _, Sha256};
use tether_wire::ErrorCode;
use tether_wire::admin::{AdminResponse, BackupInfo};
use tether_wire::bytes::ByteBuf;
use tether_wire::stream::FramedSend;
use tokio::sync::mpsc;
use tracing::{info, warn};

use super::{Refusal, internal};
use crate::backup::{self, Manifest};
use crate::server::Shared;
use crate::tty::Caller;

/// Bytes of archive per frame.
const CHUNK: usize = 256 * 1024;

/// Marks a backup as running (in `Shared::backups`) until dropped.
struct Running<'a>(&'a std::sync::atomic::AtomicBool);

impl<'a> Running<'a> {
    fn start(flag: &'a std::sync::atomic::AtomicBool) -> Option<Self> {
        use std::sync::atomic::Ordering;
        flag.compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| Running(flag))
    }
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0.store(false, std::sync::atomic::Ordering::Release);
    }
}

/// Names of database copies under the data directory (removed at start-up if a crash left one).
pub(crate) const COPY_PREFIX: &str = ".backup-";

/// The database copy, removed whatever becomes of the backup.
struct Copy(PathBuf);

impl Drop for Copy {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// A `Write` that hands the archive, in chunks, to the task sending it.
struct Chunks {
    tx: mpsc::Sender<Vec<u8>>,
    buf: Vec<u8>,
}

impl Chunks {
    fn send(&mut self) -> std::io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK));
        self.tx
            .blocking_send(chunk)
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::BrokenPipe, "the admin went away"))
    }
}

impl Write for Chunks {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(data);
        if self.buf.len() >= CHUNK {
            self.send()?;
        }
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.send()
    }
}

fn failed(what: &str, e: impl std::fmt::Display) -> Refusal {
    warn!(error = %e, "backup failed: {what}");
    (
        ErrorCode::INTERNAL,
        format!("the backup failed: {what}: {e}"),
    )
}

/// Serves one `Backup` request on `send`.
pub(crate) async fn serve(
    shared: &Shared,
    caller: &Caller,
    recordings: bool,
    send: &mut FramedSend,
) -> Result<(), Refusal> {
    // One at a time: each holds a copy of the database on core's disk while it runs.
    let Some(_one) = Running::start(&shared.backups) else {
        return Err((
            ErrorCode::LIMIT_REACHED,
            "a backup is already being taken; try again when it is done".into(),
        ));
    };
    let data = shared.data_dir.clone();
    // The copy needs about the database's size, and must leave the database its margin.
    let database_bytes = std::fs::metadata(data.database_path()).map_or(0, |m| m.len());
    let keep = shared.config.min_free_space;
    if let Some(free) = tether_store::free_space(data.root())
        && free < database_bytes.saturating_add(keep)
    {
        return Err((
            ErrorCode::INTERNAL,
            format!(
                "the backup needs room for a copy of the database ({}) besides the {} core keeps \
                 free (min_free_space), and the disk has {} free",
                bytesize::ByteSize(database_bytes),
                bytesize::ByteSize(keep),
                bytesize::ByteSize(free)
            ),
        ));
    }
    let ca = data.load_ca().map_err(|e| failed("reading the CA", e))?;
    let copy = Copy(
        data.root()
            .join(format!(".backup-{}.redb", uuid::Uuid::new_v4().simple())),
    );
    let store = shared.store.clone();
    let path = copy.0.clone();
    let summary = tokio::task::spawn_blocking(move || store.snapshot(&path))
        .await
        .map_err(|e| failed("copying the database", e))?
        .map_err(internal)?;
    let recordings = if recordings {
        backup::list_recordings(&data)
    } else {
        Vec::new()
    };
    let manifest = Manifest {
        format: backup::FORMAT,
        created_at: humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string(),
        core_version: env!("CARGO_PKG_VERSION").to_string(),
        core_addr: data
            .advertised_addr()
            .map_err(|e| failed("reading the address", e))?,
        ca_fingerprint: ca.fingerprint().to_string(),
        nodes: summary.nodes,
        recordings: u32::try_from(recordings.len()).unwrap_or(u32::MAX),
    };
    let started = BackupInfo {
        core_version: manifest.core_version.clone(),
        core_addr: manifest.core_addr.clone(),
        nodes: summary.nodes,
        database_bytes: summary.bytes,
        recordings: manifest.recordings,
        recordings_bytes: recordings.iter().map(|r| r.bytes).sum(),
    };
    let gone = |e: tether_wire::stream::SendError| {
        (ErrorCode::INTERNAL, format!("the admin went away: {e}"))
    };
    send.send(&AdminResponse::BackupStarted(started))
        .await
        .map_err(gone)?;

    let (tx, mut rx) = mpsc::channel::<Vec<u8>>(4);
    let database = copy.0.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let mut out = Chunks {
            tx,
            buf: Vec::with_capacity(CHUNK),
        };
        backup::write_archive(&mut out, &manifest, &data, &database, &recordings)
    });
    let (mut hash, mut bytes) = (Sha256::new(), 0u64);
    while let Some(chunk) = rx.recv().await {
        hash.update(&chunk);
        bytes += chunk.len() as u64;
        if let Err(e) = send.send(&AdminResponse::BackupChunk(ByteBuf(chunk))).await {
            // Dropping the receiver stops the writer at its next chunk.
            drop(rx);
            let _ = writer.await;
            return Err(gone(e));
        }
    }
    writer
        .await
        .map_err(|e| failed("writing the archive", e))?
        .map_err(|e| failed("writing the archive", e))?;
    drop(copy);
    info!(user = %caller.user, nodes = summary.nodes, bytes, "backup taken");
    send.send(&AdminResponse::BackupDone {
        bytes,
        sha256: tether_wire::control::Digest::from(<[u8; 32]>::from(hash.finalize())),
    })
    .await
    .map_err(gone)
}

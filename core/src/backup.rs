//! Backups and restores: everything a new core needs to take over from this one, in one file.
//!
//! The archive is a tar stream compressed with zstd (with zstd's content checksum, so damage is
//! found when it is read):
//!
//! ```text
//! tether-backup.toml    first: format, when, core's version, address and CA fingerprint, counts
//! tether.redb           a consistent copy of the database (`Store::snapshot`)
//! ca.crt ca.key server.crt server.key enrollment.secret quic-reset.key core.addr
//! recordings/ID.cast.zst ...   (unless left out)
//! ```
//!
//! Core writes it ([`write_archive`]) on an admin's stream; the CLI writes it to a file;
//! `tether-core restore` lays it out as a new data directory ([`restore`]) after checking every
//! name, and the database with [`tether_store::Store::verify`]. Writing is here; reading is
//! `tether_client::archive` (the one reader: the CLI checks a backup with it, a restore reads
//! through it), whose format constants and manifest are re-exported here.

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use tether_certs::files::{self, AtomicFile};
use tether_client::archive::{ArchiveError, read_archive};

use crate::data_dir::DataDir;

pub use tether_client::archive::{DATABASE, FORMAT, MANIFEST, Manifest};

/// A file of the data directory that a backup carries, and the mode it is restored with.
struct Kept {
    name: &'static str,
    mode: u32,
    required: bool,
}

/// The data directory's files (besides the database and recordings), in archive order.
const KEPT: &[Kept] = &[
    Kept {
        name: "ca.crt",
        mode: 0o644,
        required: true,
    },
    Kept {
        name: "ca.key",
        mode: 0o600,
        required: true,
    },
    Kept {
        name: "server.crt",
        mode: 0o644,
        required: false,
    },
    Kept {
        name: "server.key",
        mode: 0o600,
        required: false,
    },
    Kept {
        name: "enrollment.secret",
        mode: 0o600,
        required: true,
    },
    Kept {
        name: "quic-reset.key",
        mode: 0o600,
        required: true,
    },
    Kept {
        name: "core.addr",
        mode: 0o644,
        required: true,
    },
];

/// Problems with a backup or a restore.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// The archive is not a backup this release can restore.
    #[error("{0}")]
    Invalid(String),
    /// The restore's target directory is in use.
    #[error(
        "refusing to restore into {0}: it is not empty. Restore into a new directory (core \
         creates it), or empty this one yourself"
    )]
    NotEmpty(String),
    /// The restored files do not make a working core.
    #[error("the restored data directory does not work: {0}")]
    Unusable(String),
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> BackupError + '_ {
    move |error| BackupError::Io {
        path: path.to_path_buf(),
        error,
    }
}

impl From<ArchiveError> for BackupError {
    fn from(error: ArchiveError) -> Self {
        match error {
            ArchiveError::Io { path, error } => BackupError::Io { path, error },
            ArchiveError::Invalid(why) => BackupError::Invalid(why),
            other => BackupError::Invalid(other.to_string()),
        }
    }
}

/// A recording file of the recordings directory: name and size when listed.
#[derive(Debug, Clone)]
pub struct RecordingFile {
    /// File name.
    pub name: String,
    /// Size, bytes: exactly this much is archived (a live session's file may still grow).
    pub bytes: u64,
}

/// The recordings a backup of `data` would carry.
pub fn list_recordings(data: &DataDir) -> Vec<RecordingFile> {
    let Ok(entries) = std::fs::read_dir(data.root().join("recordings")) else {
        return Vec::new();
    };
    let mut files: Vec<RecordingFile> = entries
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().to_string_lossy().into_owned();
            crate::recording::session_of(&name)?;
            let meta = entry.metadata().ok().filter(std::fs::Metadata::is_file)?;
            Some(RecordingFile {
                name,
                bytes: meta.len(),
            })
        })
        .collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    files
}

fn header(path: &str, size: u64, mode: u32) -> tar::Header {
    let mut header = tar::Header::new_gnu();
    header.set_size(size);
    header.set_mode(mode);
    header.set_mtime(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
    );
    header.set_entry_type(tar::EntryType::Regular);
    // The path is set by `append_data`, which handles long names.
    let _ = path;
    header
}

/// Writes the archive to `out`: the manifest, the database copy at `database`, the data
/// directory's keys, and `recordings`. Blocking.
pub fn write_archive(
    out: impl Write,
    manifest: &Manifest,
    data: &DataDir,
    database: &Path,
    recordings: &[RecordingFile],
) -> Result<(), BackupError> {
    let mut encoder = zstd::stream::write::Encoder::new(out, 3).map_err(io(database))?;
    encoder.include_checksum(true).map_err(io(database))?;
    let mut archive = tar::Builder::new(encoder);
    let text = toml::to_string(manifest).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let bytes = text.as_bytes();
    archive
        .append_data(
            &mut header(MANIFEST, bytes.len() as u64, 0o600),
            MANIFEST,
            bytes,
        )
        .map_err(io(Path::new(MANIFEST)))?;
    let mut add = |name: &str, path: &Path, size: u64, mode: u32| -> Result<(), BackupError> {
        let file = File::open(path).map_err(io(path))?;
        archive
            .append_data(&mut header(name, size, mode), name, file.take(size))
            .map_err(io(path))
    };
    let size = |path: &Path| std::fs::metadata(path).map(|m| m.len()).map_err(io(path));
    add(DATABASE, database, size(database)?, 0o600)?;
    for kept in KEPT {
        let path = data.root().join(kept.name);
        if !kept.required && !path.exists() {
            continue;
        }
        add(kept.name, &path, size(&path)?, kept.mode)?;
    }
    let dir = data.root().join("recordings");
    for recording in recordings {
        let path = dir.join(&recording.name);
        // Deleted since it was listed (retention): left out.
        if !path.exists() {
            continue;
        }
        add(
            &format!("recordings/{}", recording.name),
            &path,
            recording.bytes,
            0o600,
        )?;
    }
    let encoder = archive.into_inner().map_err(io(database))?;
    let mut out = encoder.finish().map_err(io(database))?;
    out.flush().map_err(io(database))
}

/// What [`restore`] laid out.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Restored {
    /// The backup's manifest.
    pub manifest: Manifest,
    /// What the database check found.
    pub database: tether_store::Summary,
    /// Recordings restored.
    pub recordings: u32,
}

/// Where an archive entry goes, with its mode: `None` for a name no backup holds.
fn destination(name: &str) -> Option<(PathBuf, u32)> {
    if name == DATABASE {
        return Some((PathBuf::from(DATABASE), 0o600));
    }
    if let Some(kept) = KEPT.iter().find(|k| k.name == name) {
        return Some((PathBuf::from(kept.name), kept.mode));
    }
    let file = name.strip_prefix("recordings/")?;
    // A plain file name of a session's recording: no directories, no `..`.
    crate::recording::session_of(file)?;
    (!file.contains('/')).then(|| (Path::new("recordings").join(file), 0o600))
}

/// Reads the archive at `from` and lays it out as the data directory `data`, which must be
/// absent or empty; checks the result (names, keys, the database) and removes everything it
/// wrote if anything is wrong. Blocking.
pub fn restore(from: &Path, data: &Path) -> Result<Restored, BackupError> {
    match std::fs::read_dir(data) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::NotEmpty(data.display().to_string()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(data)(e)),
    }
    let created = !data.exists();
    let result = unpack(from, data);
    if result.is_err() {
        // Leave nothing half-restored behind.
        if created {
            let _ = std::fs::remove_dir_all(data);
        } else if let Ok(entries) = std::fs::read_dir(data) {
            for entry in entries.flatten() {
                let path = entry.path();
                let _ = if path.is_dir() {
                    std::fs::remove_dir_all(path)
                } else {
                    std::fs::remove_file(path)
                };
            }
        }
    }
    result
}

fn unpack(from: &Path, data: &Path) -> Result<Restored, BackupError> {
    files::create_private_dir(data).map_err(|e| BackupError::Invalid(e.to_string()))?;
    let mut seen = std::collections::HashSet::new();
    let mut recordings = 0u32;
    let manifest = read_archive(from, |name, entry| {
        let Some((relative, mode)) = destination(name) else {
            return Err(BackupError::Invalid(format!(
                "the backup holds {name:?}, which no Tether backup holds; nothing was restored"
            )));
        };
        if !seen.insert(name.to_string()) {
            return Err(BackupError::Invalid(format!(
                "the backup holds {name:?} twice"
            )));
        }
        let path = data.join(&relative);
        if let Some(parent) = relative.parent().filter(|p| !p.as_os_str().is_empty()) {
            files::create_private_dir(&data.join(parent))
                .map_err(|e| BackupError::Invalid(e.to_string()))?;
            recordings += 1;
        }
        let mut out =
            AtomicFile::create(&path, mode).map_err(|e| BackupError::Invalid(e.to_string()))?;
        std::io::copy(entry, &mut out).map_err(|e| ArchiveError::damaged(from, e))?;
        out.commit()
            .map_err(|e| BackupError::Invalid(e.to_string()))
    })?;
    for required in KEPT
        .iter()
        .filter(|k| k.required)
        .map(|k| k.name)
        .chain([DATABASE])
    {
        if !seen.contains(required) {
            return Err(BackupError::Invalid(format!(
                "the backup has no {required}; nothing was restored"
            )));
        }
    }
    // The pieces make a core: the CA and its key, the secrets, the database.
    let dir = DataDir::new(data);
    let ca = dir
        .load_ca()
        .map_err(|e| BackupError::Unusable(e.to_string()))?;
    if ca.fingerprint().to_string() != manifest.ca_fingerprint {
        return Err(BackupError::Unusable(format!(
            "the CA is {} but the manifest says {}",
            ca.fingerprint(),
            manifest.ca_fingerprint
        )));
    }
    dir.reset_key()
        .map_err(|e| BackupError::Unusable(e.to_string()))?;
    dir.enrollment_secret()
        .map_err(|e| BackupError::Unusable(e.to_string()))?;
    let database = tether_store::Store::verify(&dir.database_path())
        .map_err(|e| BackupError::Unusable(e.to_string()))?;
    Ok(Restored {
        manifest,
        database,
        recordings,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_names_a_backup_holds_are_restored() {
        assert_eq!(
            destination("ca.key"),
            Some((PathBuf::from("ca.key"), 0o600))
        );
        assert_eq!(
            destination("ca.crt"),
            Some((PathBuf::from("ca.crt"), 0o644))
        );
        assert!(destination("tether.redb").is_some());
        let recording = "recordings/67e55044-10b1-426f-9247-bb680e5fe0c8.cast.zst";
        assert_eq!(
            destination(recording),
            Some((
                PathBuf::from("recordings/67e55044-10b1-426f-9247-bb680e5fe0c8.cast.zst"),
                0o600
            ))
        );
        for bad in [
            "../etc/passwd",
            "/etc/passwd",
            "admin.identity",
            "recordings/../ca.key",
            "recordings/x.cast",
            "recordings/a/67e55044-10b1-426f-9247-bb680e5fe0c8.cast",
            "",
        ] {
            assert_eq!(destination(bad), None, "{bad}");
        }
    }
}

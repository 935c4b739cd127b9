//! Reading backup archives: everything a new core needs to take over from an old one, in one
//! file.
//!
//! The archive is a tar stream compressed with zstd (with zstd's content checksum, so damage is
//! found when it is read):
//!
//! ```text
//! tether-backup.toml    first: format, when, core's version, address and CA fingerprint, counts
//! tether.redb           a consistent copy of the database
//! ca.crt ca.key server.crt server.key enrollment.secret quic-reset.key core.addr
//! recordings/ID.cast.zst ...   (unless left out)
//! ```
//!
//! Core writes it (`tether_core::backup::write_archive`) on an admin's stream; the CLI writes it
//! to a file and reads it back with [`check`] before the file replaces anything; `tether-core
//! restore` lays it out as a new data directory through [`read_archive`]. This module is the one
//! reader of the format: it knows nothing of what a data directory must hold, only how an archive
//! reads.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// The first entry of every backup.
pub const MANIFEST: &str = "tether-backup.toml";
/// The database's name in the archive (and in the data directory).
pub const DATABASE: &str = "tether.redb";
/// The format this release writes and reads.
pub const FORMAT: u32 = 1;

/// What a backup says about itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// [`FORMAT`].
    pub format: u32,
    /// When it was taken, RFC 3339.
    pub created_at: String,
    /// Version of the core that took it.
    pub core_version: String,
    /// The address that core advertised (nodes dial it).
    pub core_addr: String,
    /// Fingerprint of its CA (nodes pin it).
    pub ca_fingerprint: String,
    /// Nodes in the database.
    pub nodes: u64,
    /// Recordings in the archive.
    pub recordings: u32,
}

/// Why an archive does not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ArchiveError {
    /// The file cannot be opened.
    #[error("{path}: {error}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        error: std::io::Error,
    },
    /// It is not a backup this release reads, or it is damaged or incomplete.
    #[error("{0}")]
    Invalid(String),
}

impl ArchiveError {
    /// The backup at `path` does not read to its end, or fails zstd's checksum.
    pub fn damaged(path: &Path, error: std::io::Error) -> Self {
        Self::Invalid(format!(
            "{} is damaged or incomplete: {error}",
            path.display()
        ))
    }
}

/// Reads a backup archive from its first byte to the end of its zstd frame (where zstd checks
/// the content checksum: the tar ends before the frame does): the manifest first, of a format
/// this release reads, then every other entry handed to `each` with its name. The manifest.
///
/// `each` may fail with its own error type (a restore's), into which this function's own
/// failures convert.
pub fn read_archive<E: From<ArchiveError>>(
    path: &Path,
    mut each: impl FnMut(&str, &mut dyn Read) -> Result<(), E>,
) -> Result<Manifest, E> {
    let file = File::open(path).map_err(|error| ArchiveError::Io {
        path: path.to_path_buf(),
        error,
    })?;
    let decoder = zstd::stream::read::Decoder::new(file).map_err(|e| {
        ArchiveError::Invalid(format!("{} is not a Tether backup: {e}", path.display()))
    })?;
    let mut archive = tar::Archive::new(decoder);
    let broken = |e| ArchiveError::damaged(path, e);
    let mut manifest: Option<Manifest> = None;
    for entry in archive.entries().map_err(broken)? {
        let mut entry = entry.map_err(broken)?;
        let name = entry
            .path()
            .map_err(broken)?
            .to_str()
            .ok_or_else(|| ArchiveError::Invalid("a file name that is not UTF-8".into()))?
            .to_string();
        if manifest.is_some() {
            each(&name, &mut entry)?;
            continue;
        }
        if name != MANIFEST {
            return Err(ArchiveError::Invalid(format!(
                "{} is not a Tether backup (it does not begin with {MANIFEST})",
                path.display()
            ))
            .into());
        }
        let mut text = String::new();
        entry.read_to_string(&mut text).map_err(broken)?;
        let read: Manifest =
            toml::from_str(&text).map_err(|e| ArchiveError::Invalid(format!("{MANIFEST}: {e}")))?;
        if read.format != FORMAT {
            return Err(ArchiveError::Invalid(format!(
                "the backup is format {}; this release ({}) reads format {FORMAT}",
                read.format,
                env!("CARGO_PKG_VERSION")
            ))
            .into());
        }
        manifest = Some(read);
    }
    std::io::copy(&mut archive.into_inner(), &mut std::io::sink()).map_err(broken)?;
    Ok(manifest.ok_or_else(|| ArchiveError::Invalid(format!("{} is empty", path.display())))?)
}

/// Checks a backup file without restoring it: it begins with a manifest of a format this
/// release restores, and every byte reads (zstd checks its content). Its manifest.
pub fn check(path: &Path) -> Result<Manifest, ArchiveError> {
    read_archive(path, |_, entry| {
        std::io::copy(entry, &mut std::io::sink())
            .map(drop)
            .map_err(|e| ArchiveError::damaged(path, e))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn manifest(format: u32) -> Manifest {
        Manifest {
            format,
            created_at: "2026-01-01T00:00:00.000Z".into(),
            core_version: "0.1.0".into(),
            core_addr: "core.example:4433".into(),
            ca_fingerprint: "00".repeat(32),
            nodes: 3,
            recordings: 0,
        }
    }

    /// An archive of `entries` (name, content), zstd with its checksum, as core writes one.
    fn archive(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut encoder = zstd::stream::write::Encoder::new(Vec::new(), 3).unwrap();
        encoder.include_checksum(true).unwrap();
        let mut tar = tar::Builder::new(encoder);
        for (name, bytes) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(bytes.len() as u64);
            header.set_mode(0o600);
            header.set_entry_type(tar::EntryType::Regular);
            tar.append_data(&mut header, name, *bytes).unwrap();
        }
        let mut out = tar.into_inner().unwrap().finish().unwrap();
        out.flush().unwrap();
        out
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    #[test]
    fn a_backup_reads_manifest_first_then_every_entry() {
        let dir = tempfile::tempdir().unwrap();
        let text = toml::to_string(&manifest(FORMAT)).unwrap();
        let database = vec![7u8; 100_000];
        let bytes = archive(&[
            (MANIFEST, text.as_bytes()),
            (DATABASE, &database),
            ("ca.crt", b"cert"),
        ]);
        let path = write(dir.path(), "good.backup", &bytes);
        assert_eq!(check(&path).unwrap(), manifest(FORMAT));
        let mut seen = Vec::new();
        read_archive::<ArchiveError>(&path, |name, entry| {
            let mut content = Vec::new();
            entry.read_to_end(&mut content).unwrap();
            seen.push((name.to_string(), content.len()));
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            [(DATABASE.to_string(), 100_000), ("ca.crt".to_string(), 4)]
        );

        // Cut short: refused as damaged or incomplete.
        let short = write(dir.path(), "short.backup", &bytes[..bytes.len() / 2]);
        let error = check(&short).unwrap_err().to_string();
        assert!(
            error.contains("damaged") || error.contains("incomplete") || error.contains("empty"),
            "{error}"
        );
    }

    #[test]
    fn what_is_not_a_backup_of_this_format_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let no_manifest = write(
            dir.path(),
            "a.backup",
            &archive(&[(DATABASE, b"db"), (MANIFEST, b"")]),
        );
        assert!(
            check(&no_manifest)
                .unwrap_err()
                .to_string()
                .contains("does not begin with")
        );
        let text = toml::to_string(&manifest(FORMAT + 1)).unwrap();
        let newer = write(
            dir.path(),
            "b.backup",
            &archive(&[(MANIFEST, text.as_bytes())]),
        );
        assert!(
            check(&newer)
                .unwrap_err()
                .to_string()
                .contains(&format!("format {}", FORMAT + 1))
        );
        let plain = write(dir.path(), "c.backup", b"not zstd at all");
        assert!(check(&plain).is_err());
        assert!(matches!(
            check(&dir.path().join("missing")),
            Err(ArchiveError::Io { .. })
        ));
        let empty = write(dir.path(), "d.backup", &archive(&[]));
        assert!(check(&empty).unwrap_err().to_string().contains("is empty"));
    }
}

//! Private directories (0700) and secret files (0600).
//!
//! Secret files are written to a temporary file in the same directory, synced, and renamed over
//! the target, so a crash leaves either the old file or the new one, never half of one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

use crate::CertError;

/// Creates `dir` (and its parents) with mode 0700, or tightens an existing one to 0700.
pub fn create_private_dir(dir: &Path) -> Result<(), CertError> {
    if !dir.exists() {
        DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|e| CertError::io(dir, e))?;
    }
    let meta = fs::metadata(dir).map_err(|e| CertError::io(dir, e))?;
    if !meta.is_dir() {
        return Err(CertError::Invalid {
            path: dir.to_path_buf(),
            reason: "exists and is not a directory".into(),
        });
    }
    if meta.permissions().mode() & 0o077 != 0 {
        fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
            .map_err(|e| CertError::io(dir, e))?;
    }
    Ok(())
}

/// Writes `contents` to `path` with mode 0600, atomically.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_atomic(path, contents, 0o600)
}

/// Writes a non-secret file (mode 0644), atomically.
pub fn write_public_file(path: &Path, contents: &[u8]) -> Result<(), CertError> {
    write_atomic(path, contents, 0o644)
}

fn write_atomic(path: &Path, contents: &[u8], mode: u32) -> Result<(), CertError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path.file_name().ok_or_else(|| CertError::Invalid {
        path: path.to_path_buf(),
        reason: "not a file path".into(),
    })?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    ));
    let result = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(mode)
            .open(&tmp)?;
        // `mode` is filtered by the umask on creation; set it exactly.
        file.set_permissions(fs::Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable.
        File::open(dir)?.sync_all()
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result.map_err(|e| CertError::io(path, e))
}

/// Reads a secret file, refusing it if anyone but its owner may read or write it.
pub fn read_private_file(path: &Path) -> Result<Vec<u8>, CertError> {
    let meta = fs::metadata(path).map_err(|e| CertError::io(path, e))?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(CertError::InsecurePermissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    fs::read(path).map_err(|e| CertError::io(path, e))
}

/// Reads a secret file as UTF-8 text.
pub fn read_private_text(path: &Path) -> Result<String, CertError> {
    let bytes = read_private_file(path)?;
    String::from_utf8(bytes).map_err(|_| CertError::Invalid {
        path: path.to_path_buf(),
        reason: "not UTF-8 text".into(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn private_dir_and_file_modes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("a/b");
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        let file = dir.join("secret");
        write_private_file(&file, b"one").unwrap();
        assert_eq!(mode(&file), 0o600);
        write_private_file(&file, b"two").unwrap();
        assert_eq!(read_private_file(&file).unwrap(), b"two");
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1, "no temp file left");
    }

    #[test]
    fn loose_dir_is_tightened_and_loose_secret_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("state");
        fs::create_dir(&dir).unwrap();
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);

        let file = dir.join("key");
        fs::write(&file, b"x").unwrap();
        fs::set_permissions(&file, fs::Permissions::from_mode(0o644)).unwrap();
        let err = read_private_file(&file).unwrap_err();
        assert!(matches!(
            err,
            CertError::InsecurePermissions { mode: 0o644, .. }
        ));
        assert!(err.to_string().contains("chmod 600"));
    }
}

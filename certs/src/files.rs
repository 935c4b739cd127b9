//! Private directories (0700) and secret files (0600).
//!
//! Secret files are written to a temporary file in the same directory, synced, and renamed over
//! the target, so a crash leaves either the old file or the new one, never half of one.

use std::fs::{self, DirBuilder, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

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
    let mut file = AtomicFile::create(path, mode)?;
    file.write_all(contents)
        .map_err(|e| CertError::io(path, e))?;
    file.commit()
}

/// The directory a file path lives in: `.` for a bare file name, whose [`Path::parent`] is the
/// empty path (which no system call accepts).
pub fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    }
}

/// A file written beside its final name and renamed into place by [`AtomicFile::commit`], so a
/// reader sees the old file or the whole new one, never part of one; dropped without a commit,
/// the partial file is removed and the target is untouched. For files streamed in pieces
/// (backups, exported recordings) as well as small secrets.
#[derive(Debug)]
pub struct AtomicFile {
    file: Option<File>,
    tmp: PathBuf,
    path: PathBuf,
}

impl AtomicFile {
    /// Creates the temporary file, with exactly `mode` (whatever the umask), in `path`'s
    /// directory. `path` may be a bare name, relative or absolute.
    pub fn create(path: &Path, mode: u32) -> Result<Self, CertError> {
        let name = path.file_name().ok_or_else(|| CertError::Invalid {
            path: path.to_path_buf(),
            reason: "not a file path".into(),
        })?;
        // A name no one can guess, created only if absent (`O_EXCL`, which also refuses a
        // symbolic link planted there): in a directory others may write to, nobody can make us
        // write through their link, and two writers never share a temporary file.
        let (tmp, file) = {
            let mut attempt = 0;
            loop {
                let mut random = [0u8; 8];
                rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut random);
                let tmp = parent_dir(path).join(format!(
                    ".{}.tmp-{}",
                    name.to_string_lossy(),
                    hex::encode(random)
                ));
                match OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(mode)
                    .open(&tmp)
                {
                    Ok(file) => break (tmp, file),
                    Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && attempt < 8 => {
                        attempt += 1;
                    }
                    Err(e) => return Err(CertError::io(path, e)),
                }
            }
        };
        // `mode` is filtered by the umask on creation; set it exactly.
        let file = AtomicFile {
            file: Some(file),
            tmp,
            path: path.to_path_buf(),
        };
        file.handle()
            .set_permissions(fs::Permissions::from_mode(mode))
            .map_err(|e| CertError::io(path, e))?;
        Ok(file)
    }

    /// Where the contents are until [`AtomicFile::commit`] (to read them back first).
    pub fn temp_path(&self) -> &Path {
        &self.tmp
    }

    fn handle(&self) -> &File {
        self.file.as_ref().expect("open until committed")
    }

    /// Syncs the file, renames it over the target, and makes the rename durable.
    pub fn commit(mut self) -> Result<(), CertError> {
        let file = self.file.take().expect("committed once");
        let result = file
            .sync_all()
            .and_then(|()| fs::rename(&self.tmp, &self.path))
            .and_then(|()| File::open(parent_dir(&self.path))?.sync_all());
        if result.is_err() {
            let _ = fs::remove_file(&self.tmp);
        }
        result.map_err(|e| CertError::io(&self.path, e))
    }
}

impl Write for AtomicFile {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.file.as_mut().expect("open until committed").write(buf)
    }

    fn flush(&mut self) -> std::io::Result<()> {
        self.file.as_mut().expect("open until committed").flush()
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = fs::remove_file(&self.tmp);
        }
    }
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
    fn parents_of_bare_relative_and_absolute_names() {
        assert_eq!(parent_dir(Path::new("x.id")), Path::new("."));
        assert_eq!(parent_dir(Path::new("./x.id")), Path::new("."));
        assert_eq!(parent_dir(Path::new("a/x.id")), Path::new("a"));
        assert_eq!(parent_dir(Path::new("/tmp/x.id")), Path::new("/tmp"));
        assert_eq!(parent_dir(Path::new("/")), Path::new("."));
    }

    #[test]
    fn a_link_planted_where_a_temporary_file_would_go_is_not_followed() {
        let tmp = tempfile::tempdir().unwrap();
        let victim = tmp.path().join("victim");
        fs::write(&victim, b"precious").unwrap();
        // The name a guessable scheme (name and process id) would have used is a link.
        let guessed = tmp.path().join(format!(".out.tmp-{}", std::process::id()));
        std::os::unix::fs::symlink(&victim, guessed).unwrap();
        write_private_file(&tmp.path().join("out"), b"new").unwrap();
        assert_eq!(fs::read(&victim).unwrap(), b"precious");
        assert_eq!(fs::read(tmp.path().join("out")).unwrap(), b"new");
    }

    #[test]
    fn an_uncommitted_file_leaves_nothing_and_the_old_file_stands() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("backup");
        write_private_file(&path, b"old").unwrap();
        {
            let mut file = AtomicFile::create(&path, 0o600).unwrap();
            file.write_all(b"half of the new").unwrap();
        }
        assert_eq!(fs::read(&path).unwrap(), b"old");
        assert_eq!(
            fs::read_dir(tmp.path()).unwrap().count(),
            1,
            "no temp file left"
        );
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

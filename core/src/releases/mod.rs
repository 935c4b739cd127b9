//! Agent releases on core's side: the files, kept on disk by SHA-256 under
//! `DATA/releases/` (0700), and what an upload must pass before one is kept. The admin
//! requests are `admin::releases`.
//!
//! Core never holds a private release key: it checks an upload's signature against the public
//! keys it is configured with (`release_keys`), as a first gate with a clear answer; each node
//! checks again against its own keys before it runs anything.

use std::path::{Path, PathBuf};

use sha2::{Digest as _, Sha256};
use tether_certs::release::{ReleaseError, check_digest};
use tether_wire::releases::Manifest;
use tokio::io::AsyncWriteExt as _;

/// The directory of release files.
#[derive(Debug, Clone)]
pub(crate) struct ReleaseFiles {
    dir: PathBuf,
}

impl ReleaseFiles {
    /// `DATA/releases`, created (0700) when first needed.
    pub(crate) fn new(data_dir: &Path) -> Self {
        Self {
            dir: data_dir.join("releases"),
        }
    }

    /// Where the file with this SHA-256 is kept.
    pub(crate) fn path(&self, sha256: &[u8; 32]) -> PathBuf {
        self.dir.join(hex::encode(sha256))
    }

    fn ensure_dir(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&self.dir, std::fs::Permissions::from_mode(0o700))
    }

    /// Starts receiving a file that `manifest` describes.
    pub(crate) async fn receive(&self, manifest: &Manifest) -> std::io::Result<Incoming> {
        self.ensure_dir()?;
        let tmp = self
            .dir
            .join(format!(".upload-{:016x}", rand::random::<u64>()));
        let file = tokio::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)
            .await?;
        Ok(Incoming {
            file: Some(file),
            tmp,
            hasher: Sha256::new(),
            size: 0,
            expected: manifest.size,
        })
    }

    /// Deletes the file with this SHA-256 unless `still_used` (another release has it).
    pub(crate) fn remove_unless(&self, sha256: &[u8; 32], still_used: bool) {
        if !still_used {
            let _ = std::fs::remove_file(self.path(sha256));
        }
    }

    /// Deletes uploads that never finished (a crash mid-upload); at start-up.
    pub(crate) fn clear_leftovers(&self) {
        let Ok(entries) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for entry in entries.flatten() {
            if entry.file_name().to_string_lossy().starts_with(".upload-") {
                let _ = std::fs::remove_file(entry.path());
            }
        }
    }
}

/// A file being received: written to a temporary file and hashed as it comes.
#[derive(Debug)]
pub(crate) struct Incoming {
    file: Option<tokio::fs::File>,
    tmp: PathBuf,
    hasher: Sha256,
    size: u64,
    expected: u64,
}

impl Incoming {
    /// Appends bytes; refused once there are more than the manifest says.
    pub(crate) async fn write(&mut self, bytes: &[u8]) -> Result<(), String> {
        self.size += bytes.len() as u64;
        if self.size > self.expected {
            return Err(format!(
                "the file is larger than its manifest says ({} bytes)",
                self.expected
            ));
        }
        self.hasher.update(bytes);
        let file = self.file.as_mut().expect("open until finished");
        file.write_all(bytes)
            .await
            .map_err(|e| format!("core could not write the release file: {e}"))
    }

    /// Checks size and SHA-256 against `manifest`, then moves the file to its place in `files`.
    pub(crate) async fn finish(
        mut self,
        manifest: &Manifest,
        files: &ReleaseFiles,
    ) -> Result<PathBuf, String> {
        let digest: [u8; 32] = std::mem::take(&mut self.hasher).finalize().into();
        check_digest(manifest, self.size, &digest).map_err(|e: ReleaseError| e.to_string())?;
        let mut file = self.file.take().expect("open until finished");
        file.flush()
            .await
            .and(file.sync_all().await)
            .map_err(|e| format!("core could not write the release file: {e}"))?;
        drop(file);
        let path = files.path(&digest);
        if let Err(e) = std::fs::rename(&self.tmp, &path) {
            let _ = std::fs::remove_file(&self.tmp);
            return Err(format!("core could not keep the release file: {e}"));
        }
        Ok(path)
    }
}

impl Drop for Incoming {
    fn drop(&mut self) {
        if self.file.is_some() {
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

pub(crate) mod deploy;

/// Serves a release file on a stream node `node` opened: the file its update is for, from the
/// offset it asks, once one of the `max_downloads` places is free, paced to the deploy's rate
/// limit. Nothing of the file is held in memory beyond one chunk.
pub(crate) async fn serve_download(
    shared: std::sync::Arc<crate::server::Shared>,
    node: tether_wire::NodeId,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
) {
    use tether_wire::deploys::{
        DOWNLOAD_CHUNK, DownloadFrame, DownloadRequest, MAX_DOWNLOAD_FRAME_LEN,
    };
    use tether_wire::stream::{FramedRecv, FramedSend};
    use tokio::io::{AsyncReadExt as _, AsyncSeekExt as _};

    let mut recv = FramedRecv::new(recv, MAX_DOWNLOAD_FRAME_LEN);
    let mut send = FramedSend::new(send, MAX_DOWNLOAD_FRAME_LEN);
    let Ok(Some(request)) = recv.next::<DownloadRequest>().await else {
        return;
    };
    let refuse = |message: String| DownloadFrame::Refused { message };
    // Only the file of the update this node is in, for its deploy.
    let found = shared
        .store
        .node_update(node)
        .ok()
        .flatten()
        .and_then(|(id, _)| {
            let view = shared.store.deploy(id).ok().flatten()?;
            Some((id, view.deploy.spec.rate_limit))
        });
    let rate_limit = match found {
        Some((id, rate)) if id == request.deploy => rate,
        _ => {
            let _ = send
                .send(&refuse(format!(
                    "this node has no update under way in deploy {}",
                    request.deploy
                )))
                .await;
            send.finish();
            return;
        }
    };
    let path = shared.release_files.path(request.sha256.as_bytes());
    let Ok(_place) = shared.deploys.downloads.clone().acquire_owned().await else {
        return;
    };
    let mut file = match tokio::fs::File::open(&path).await {
        Ok(file) => file,
        Err(e) => {
            let _ = send
                .send(&refuse(format!("core cannot read the release file: {e}")))
                .await;
            send.finish();
            return;
        }
    };
    let size = file.metadata().await.map(|m| m.len()).unwrap_or(0);
    if request.offset > size
        || file
            .seek(std::io::SeekFrom::Start(request.offset))
            .await
            .is_err()
    {
        let _ = send
            .send(&refuse(format!(
                "offset {} is past the file's end ({size} bytes)",
                request.offset
            )))
            .await;
        send.finish();
        return;
    }
    if send.send(&DownloadFrame::Start { size }).await.is_err() {
        return;
    }
    let started = tokio::time::Instant::now();
    let mut sent = 0u64;
    let mut buf = vec![0u8; DOWNLOAD_CHUNK];
    loop {
        let n = match file.read(&mut buf).await {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) => {
                tracing::warn!(error = %e, "reading a release file failed");
                return;
            }
        };
        let frame = DownloadFrame::Data(tether_wire::bytes::ByteBuf(buf[..n].to_vec()));
        if send.send(&frame).await.is_err() {
            return;
        }
        sent += n as u64;
        if let Some(rate) = rate_limit {
            // Paced from the start: never ahead of `rate` bytes per second on average.
            let due = started + std::time::Duration::from_secs_f64(sent as f64 / rate as f64);
            tokio::time::sleep_until(due).await;
        }
    }
    send.finish();
    let _ = send.stream_mut().stopped().await;
}

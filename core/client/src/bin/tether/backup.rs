//! `tether backup`: a consistent backup of the running core, streamed to a file on this machine.

use std::io::{IsTerminal, Write};
use std::path::PathBuf;

use anyhow::{Context as _, bail};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest as _, Sha256};
use tether_certs::files::AtomicFile;
use tether_client::AdminClient;
use tether_wire::admin::{AdminRequest, AdminResponse, BackupInfo};

use crate::output::print_json;

/// Back up the running core to a file (admins only): database, keys, recordings.
///
/// The database is a consistent snapshot: every change acknowledged before the backup began is
/// in it. With it come the CA and its key, the server key, the enrollment secret, the QUIC reset
/// key and the advertised address — all a new core needs to take over — and the terminal
/// recordings.
///
/// Admins only. The file (a zstd-compressed tar, mode 0600) is written beside FILE and renamed
/// into place only once complete and checked, so a failed backup never replaces a good one.
/// Keep it as you keep the CA key: it can mint admin identities. Restore it with `tether-core
/// restore --from FILE --data NEWDIR`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    /// Where to write the backup, `-` for standard output (to pipe it elsewhere; it is then
    /// checked against core's checksum but not read back). An existing file is replaced only
    /// once the new backup is complete and checked.
    #[arg(long, value_name = "FILE")]
    out: PathBuf,
    /// Leave the terminal recordings out.
    #[arg(long)]
    no_recordings: bool,
    /// Print what was written as JSON (not with `--out -`).
    #[arg(long)]
    json: bool,
}

pub async fn run(client: &AdminClient, args: BackupArgs) -> anyhow::Result<u8> {
    if args.json && args.out == std::path::Path::new("-") {
        bail!("--json prints to standard output, where --out - sends the backup: choose one");
    }
    let mut answers = client
        .stream(&AdminRequest::Backup {
            recordings: !args.no_recordings,
        })
        .await?;
    let info: BackupInfo = match answers.next().await? {
        Some(AdminResponse::BackupStarted(info)) => info,
        other => bail!("core answered {other:?} instead of starting the backup"),
    };
    let to_stdout = args.out == std::path::Path::new("-");
    let mut file = if to_stdout {
        None
    } else {
        Some(AtomicFile::create(&args.out, 0o600)?)
    };
    let mut stdout = std::io::stdout().lock();
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = ProgressBar::new_spinner();
        bar.set_style(
            ProgressStyle::with_template("{spinner} backing up: {bytes} received [{elapsed}]")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        bar.enable_steady_tick(std::time::Duration::from_millis(120));
        bar
    });
    let (mut hash, mut received) = (Sha256::new(), 0u64);
    let done = loop {
        match answers.next().await? {
            Some(AdminResponse::BackupChunk(chunk)) => {
                hash.update(&chunk.0);
                received += chunk.0.len() as u64;
                match file.as_mut() {
                    Some(file) => file.write_all(&chunk.0),
                    None => stdout.write_all(&chunk.0),
                }
                .with_context(|| format!("writing {}", args.out.display()))?;
                if let Some(bar) = &bar {
                    bar.set_position(received);
                }
            }
            Some(AdminResponse::BackupDone { bytes, sha256 }) => break (bytes, sha256),
            Some(other) => bail!("core sent {other:?} in the middle of the backup"),
            None => bail!("the backup ended before it was complete; nothing was written"),
        }
    };
    if let Some(bar) = &bar {
        bar.finish_and_clear();
    }
    let (bytes, sha256) = done;
    let ours: [u8; 32] = hash.finalize().into();
    if bytes != received || ours != *sha256.as_bytes() {
        bail!(
            "the backup arrived damaged ({received} of {bytes} bytes, or a different checksum); \
             nothing was written"
        );
    }
    let digest = hex::encode(ours);
    let Some(mut file) = file else {
        stdout.flush()?;
        eprintln!(
            "backup of core at {} ({} nodes, {} recordings) written to standard output: {}, \
             sha256 {digest}",
            info.core_addr,
            info.nodes,
            info.recordings,
            bytesize::ByteSize(bytes)
        );
        return Ok(0);
    };
    drop(stdout);
    file.flush()?;
    // Read it back before it replaces anything: every entry decompresses and checks.
    let manifest = tether_client::archive::check(file.temp_path())
        .context("the backup does not read back; nothing was written")?;
    file.commit()?;
    if args.json {
        print_json(&serde_json::json!({
            "file": args.out,
            "bytes": bytes,
            "sha256": digest,
            "created_at": manifest.created_at,
            "core_version": info.core_version,
            "core_addr": info.core_addr,
            "nodes": info.nodes,
            "database_bytes": info.database_bytes,
            "recordings": info.recordings,
            "recordings_bytes": info.recordings_bytes,
        }))?;
    }
    eprintln!(
        "backup of core at {} ({} nodes, {} recordings) written to {}: {}, sha256 {digest}\n\
         Restore it with: tether-core restore --from {} --data NEWDIR",
        info.core_addr,
        info.nodes,
        info.recordings,
        args.out.display(),
        bytesize::ByteSize(bytes),
        args.out.display()
    );
    Ok(0)
}

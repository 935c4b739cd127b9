//! Keeping what core stores within its bounds: every `prune_interval`, each kind of record is
//! cut back to its age and count or size limits (`docs/operations.md` lists them), a batch at a
//! time so the store's writer is never held for long; and the recordings directory is cut back
//! to `tty_recordings_max_total` and `tty_recordings_max_age`, oldest first, never touching a
//! live session's file. Each deleted recording is noted on its session's record.

use std::future::Future;
use std::time::{Duration, SystemTime};

use bytesize::ByteSize;
use tether_store::{Pruned, StoreError};
use tether_wire::TtySessionId;
use tracing::{debug, info, warn};

use crate::recording;
use crate::server::Shared;

/// Batches one kind may take per pass; the rest waits for the next pass.
const MAX_ROUNDS: usize = 20;

use crate::clock::millis;

/// Calls `prune` until it has nothing more to do (or [`MAX_ROUNDS`] times); the sum.
async fn repeat<F, Fut>(what: &str, mut prune: F) -> Pruned
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<Pruned, StoreError>>,
{
    let mut total = Pruned::default();
    for _ in 0..MAX_ROUNDS {
        match prune().await {
            Ok(pruned) => {
                let more = pruned.more();
                total.records += pruned.records;
                total.rows += pruned.rows;
                total.bytes += pruned.bytes;
                total.recordings.extend(pruned.recordings);
                if !more {
                    break;
                }
            }
            Err(e) => {
                warn!(error = %e, "pruning the {what} failed");
                break;
            }
        }
    }
    total
}

/// One pass over everything.
pub(crate) async fn prune(shared: &Shared) {
    let config = &shared.config;
    let now_ms = shared.now_ms();
    let before = |age: Duration| now_ms.saturating_sub(millis(age));
    let store = &shared.store;

    let log = repeat("status log", || {
        store.prune_status_log(
            before(config.status_log_retention),
            config.status_log_max_entries,
        )
    })
    .await;
    if log.records > 0 {
        debug!(entries = log.records, "status log entries pruned");
    }
    let apps = repeat("rejected applications", || {
        store.prune_rejected_applications(before(config.application_retention))
    })
    .await;
    if apps.records > 0 {
        info!(applications = apps.records, retention = %humantime::format_duration(config.application_retention),
              "rejected applications forgotten");
    }
    let runs = repeat("executions", || {
        store.prune_executions(before(config.exec_retention), config.exec_max_results)
    })
    .await;
    if runs.records > 0 {
        info!(executions = runs.records, rows = runs.rows, output = %ByteSize(runs.bytes),
              "old executions deleted (exec_retention, exec_max_results)");
    }
    let output = repeat("execution output", || {
        store.prune_exec_output(config.exec_output_max_total, now_ms)
    })
    .await;
    if output.records > 0 {
        info!(executions = output.records, output = %ByteSize(output.bytes),
              "the output of the oldest executions was deleted (exec_output_max_total)");
    }
    let sessions = repeat("terminal sessions", || {
        store.prune_tty_sessions(before(config.tty_session_retention))
    })
    .await;
    if sessions.records > 0 {
        info!(
            sessions = sessions.records,
            "old terminal session records deleted (tty_session_retention)"
        );
        let root = shared.data_dir.root().to_path_buf();
        let files = sessions.recordings;
        let _ = tokio::task::spawn_blocking(move || {
            for file in files {
                // Only a file name under recordings/, never a path taken from a record.
                let name = std::path::Path::new(&file)
                    .file_name()
                    .map(|n| root.join("recordings").join(n));
                if let Some(path) = name {
                    let _ = std::fs::remove_file(path);
                }
            }
        })
        .await;
    }
    let mut alerts = 0;
    loop {
        match store
            .prune_alerts(before(config.alert_retention), config.alert_max_records)
            .await
        {
            Ok(0) => break,
            Ok(n) => alerts += n,
            Err(e) => {
                warn!(error = %e, "pruning alerts failed");
                break;
            }
        }
    }
    if alerts > 0 {
        info!(
            alerts,
            "resolved alerts pruned (alert_retention, alert_max_records)"
        );
    }
    shared.alerts.sweep(
        now_ms,
        u64::try_from(millis(config.alert_flap_window)).unwrap_or(0),
    );
    let conflicts_kept = millis(crate::server::CONFLICTS_KEPT);
    if let Err(e) = store
        .prune_identity_conflicts(now_ms.saturating_sub(conflicts_kept))
        .await
    {
        warn!(error = %e, "identity conflict pruning failed");
    }
    let audit = repeat("audit log", || {
        store.prune_audit(before(config.audit_retention), config.audit_max_records)
    })
    .await;
    if audit.records > 0 {
        info!(
            records = audit.records,
            "the oldest audit records pruned (audit_retention, audit_max_records); the chain stays verifiable from its new start"
        );
    }
    match store
        .prune_sessions(now_ms, millis(config.session_idle_timeout))
        .await
    {
        Ok(0) => {}
        Ok(ended) => debug!(sessions = ended, "ended login sessions removed"),
        Err(e) => warn!(error = %e, "login session pruning failed"),
    }
    shared
        .login_throttle
        .lock()
        .expect("not poisoned")
        .sweep(tokio::time::Instant::now());
    prune_recordings(shared).await;
}

/// A recording file, as the directory lists it.
#[derive(Debug, Clone)]
struct File {
    session: TtySessionId,
    name: String,
    bytes: u64,
    modified: SystemTime,
}

/// Which recordings to delete, and why: those older than `max_age`, then the oldest until the
/// rest fit in `max_total`. Files of `live` sessions are never chosen (they still count).
fn choose(
    mut files: Vec<File>,
    live: &std::collections::HashSet<TtySessionId>,
    now: SystemTime,
    max_total: u64,
    max_age: Duration,
) -> Vec<(File, String)> {
    files.sort_by_key(|f| f.modified);
    let mut total: u64 = files.iter().map(|f| f.bytes).sum();
    let mut chosen = Vec::new();
    for file in files {
        if live.contains(&file.session) {
            continue;
        }
        let age = now.duration_since(file.modified).unwrap_or_default();
        let why = if age > max_age {
            format!(
                "older than {} (tty_recordings_max_age)",
                humantime::format_duration(max_age)
            )
        } else if total > max_total {
            format!(
                "the oldest while recordings took more than {} (tty_recordings_max_total)",
                ByteSize(max_total)
            )
        } else {
            continue;
        };
        total = total.saturating_sub(file.bytes);
        chosen.push((file, why));
    }
    chosen
}

fn list(dir: &std::path::Path) -> std::io::Result<Vec<File>> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(session) = recording::session_of(&name) else {
            continue;
        };
        let meta = entry.metadata()?;
        if meta.is_file() {
            files.push(File {
                session,
                name,
                bytes: meta.len(),
                modified: meta.modified()?,
            });
        }
    }
    Ok(files)
}

/// Cuts the recordings directory back to its bounds, noting each deletion on its session.
async fn prune_recordings(shared: &Shared) {
    let dir = shared.data_dir.root().join("recordings");
    let (max_total, max_age) = (
        shared.config.tty_recordings_max_total,
        shared.config.tty_recordings_max_age,
    );
    let listing = {
        let dir = dir.clone();
        tokio::task::spawn_blocking(move || list(&dir))
            .await
            .unwrap_or_else(|e| Err(std::io::Error::other(e)))
    };
    let files = match listing {
        Ok(files) => files,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return,
        Err(e) => {
            warn!(error = %e, dir = %dir.display(), "cannot list the recordings");
            return;
        }
    };
    // Taken after the listing: a session that began before it is known to be live.
    let live = shared.terminals.live_sessions();
    let chosen = choose(files, &live, SystemTime::now(), max_total, max_age);
    if chosen.is_empty() {
        return;
    }
    let deleted = tokio::task::spawn_blocking(move || {
        let mut deleted = Vec::new();
        for (file, why) in chosen {
            match std::fs::remove_file(dir.join(&file.name)) {
                Ok(()) => deleted.push((file, why)),
                Err(e) => warn!(error = %e, file = %file.name, "cannot delete a recording"),
            }
        }
        deleted
    })
    .await
    .unwrap_or_default();
    if deleted.is_empty() {
        return;
    }
    let bytes: u64 = deleted.iter().map(|(f, _)| f.bytes).sum();
    info!(recordings = deleted.len(), freed = %ByteSize(bytes), "old terminal recordings deleted");
    let today = humantime::format_rfc3339_seconds(SystemTime::now()).to_string();
    for (file, why) in deleted {
        let note = format!("deleted {today}: {why}");
        if let Err(e) = shared.store.note_tty_recording(file.session, note).await {
            warn!(error = %e, "noting a deleted recording failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(age_secs: u64, bytes: u64, now: SystemTime) -> File {
        File {
            session: TtySessionId::random(),
            name: String::new(),
            bytes,
            modified: now - Duration::from_secs(age_secs),
        }
    }

    #[test]
    fn old_recordings_go_then_the_oldest_until_the_rest_fit() {
        let now = SystemTime::now();
        let files = vec![
            file(500, 10, now),
            file(400, 10, now),
            file(300, 10, now),
            file(200, 10, now),
            file(100, 10, now),
        ];
        let live = std::collections::HashSet::from([files[1].session]);
        let chosen = choose(files.clone(), &live, now, 25, Duration::from_secs(450));
        let ids: Vec<TtySessionId> = chosen.iter().map(|(f, _)| f.session).collect();
        // 500 s old: too old. The live one stays. Then 300 s and 200 s go to get under 25.
        assert_eq!(
            ids,
            vec![files[0].session, files[2].session, files[3].session]
        );
        assert!(chosen[0].1.contains("tty_recordings_max_age"));
        assert!(chosen[1].1.contains("tty_recordings_max_total"));
        assert!(choose(files, &live, now, 1000, Duration::from_secs(1000)).is_empty());
    }
}

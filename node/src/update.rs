//! Self-update: install an agent release core orders, or put back the agent kept from the last
//! one, under a watchdog.
//!
//! ```text
//! STATE/update/            0700
//!   SHA256.part            a download (kept across reconnects: fetching resumes from its end)
//!   pending.toml           an update whose new agent has not authenticated yet
//!   result.toml            how an update ended while no connection could say so (reported
//!                          after the next authentication, then removed)
//!   previous.toml          which version the kept agent (BINARY.prev) is
//! ```
//!
//! The order of things: the manifest is checked against the keys this node trusts before
//! anything is fetched; the file is fetched on a stream of its own and checked (size, SHA-256,
//! signature) before anything is touched; it is written beside the agent's binary, the
//! binary is kept as `BINARY.prev` (a hard link) and the new file renamed over it
//! (atomically); `pending.toml` is written; a watchdog is started from the kept binary (the
//! code that is known to work); and the agent executes the new binary in its own process
//! (same pid, so systemd sees no change). The new agent marks `pending.toml` confirmed once
//! core accepted it, and the watchdog exits. If that does not happen by the deadline, the
//! watchdog stops the new agent if it still runs, renames the kept binary back, records
//! `result.toml`, and starts the old agent (or, under systemd, leaves that to `Restart=`).

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tether_wire::deploys::{
    DownloadFrame, DownloadRequest, MAX_DOWNLOAD_FRAME_LEN, RollbackOrder, UpdateOrder,
    UpdateState, UpdateStatus,
};
use tether_wire::releases::Manifest;
use tether_wire::stream::{FramedRecv, FramedSend};
use tokio::io::AsyncWriteExt as _;
use tokio::sync::mpsc;
use tracing::{info, warn};

use crate::config::{NodeConfig, Relaunch};

/// How often download progress is reported at most.
const PROGRESS_EVERY: Duration = Duration::from_secs(1);
/// How often the watchdog looks.
const WATCHDOG_POLL: Duration = Duration::from_millis(200);

/// What the update task tells the session.
#[derive(Debug)]
pub(crate) enum Event {
    /// Report this to core.
    Status(UpdateStatus),
    /// The new binary is ready beside the agent's: switch to it.
    Ready(Switch),
}

/// An update whose file is ready: what [`Switch::run`] does.
#[derive(Debug)]
pub(crate) struct Switch {
    deploy: u64,
    from_version: String,
    to_version: String,
    /// The file to put in the binary's place (a new one beside it, or the kept one).
    incoming: PathBuf,
    /// Whether `incoming` is the kept binary (a rollback).
    rollback: bool,
    relaunch: Relaunch,
    state_dir: PathBuf,
    watchdog_ms: u64,
}

/// An update not yet confirmed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Pending {
    deploy: u64,
    from_version: String,
    to_version: String,
    binary: PathBuf,
    previous: PathBuf,
    deadline_ms: i64,
    /// The process the new agent runs in.
    pid: i32,
    /// How to start the old agent again (without a supervisor).
    args: Vec<String>,
    /// Whether systemd runs the agent (it restarts it; the watchdog must not).
    supervised: bool,
    confirmed: bool,
}

/// How an update ended, for core.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Outcome {
    deploy: u64,
    state: String,
    error: Option<String>,
}

/// Which version the kept binary is.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Previous {
    version: String,
}

fn dir(state_dir: &Path) -> PathBuf {
    state_dir.join("update")
}

fn previous_path(binary: &Path) -> PathBuf {
    let mut name = binary.file_name().unwrap_or_default().to_os_string();
    name.push(".prev");
    binary.with_file_name(name)
}

fn now_ms() -> i64 {
    tether_wire::units::unix_ms(std::time::SystemTime::now())
}

fn read_toml<T: for<'de> Deserialize<'de>>(path: &Path) -> Option<T> {
    let text = std::fs::read_to_string(path).ok()?;
    toml::from_str(&text).ok()
}

fn write_toml<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let text = toml::to_string(value).map_err(std::io::Error::other)?;
    tether_certs::files::write_private_file(path, text.as_bytes()).map_err(std::io::Error::other)
}

/// A report on deploy `deploy`.
pub(crate) fn status(
    deploy: u64,
    state: UpdateState,
    bytes: u64,
    error: Option<String>,
) -> UpdateStatus {
    UpdateStatus {
        deploy,
        state,
        bytes,
        error,
    }
}

/// Checks an order before anything is fetched: this agent can update itself, the build is
/// for this platform and another version, and it is signed by a key this node trusts.
pub(crate) fn check_order(
    config: &NodeConfig,
    manifest: &Manifest,
) -> Result<(), (UpdateState, String)> {
    let failed = |m: String| (UpdateState::Failed, m);
    if config.relaunch.is_none() {
        return Err(failed(
            "this agent cannot replace itself (it runs inside another program)".into(),
        ));
    }
    if manifest.version == config.agent_version {
        return Err((
            UpdateState::Skipped,
            format!("it runs {} already", manifest.version),
        ));
    }
    let arch = sysinfo::System::cpu_arch();
    if manifest.os != std::env::consts::OS || manifest.arch != arch {
        return Err(failed(format!(
            "the build is for {}/{}, this node is {}/{arch}",
            manifest.os,
            manifest.arch,
            std::env::consts::OS
        )));
    }
    if config.release_keys.is_empty() {
        return Err(failed(
            "this node trusts no release key (release_keys in node.toml, or --release-key)".into(),
        ));
    }
    tether_certs::release::verify(manifest, &config.release_keys).map_err(|e| failed(e.to_string()))
}

/// Fetches, checks and stages the release of `order`; reports as it goes on `events`, and
/// ends with `Ready` or a failure.
pub(crate) async fn fetch(
    connection: quinn::Connection,
    config: NodeConfig,
    order: UpdateOrder,
    events: mpsc::Sender<Event>,
) {
    let deploy = order.deploy;
    match fetch_inner(&connection, &config, &order, &events).await {
        Ok(switch) => {
            let _ = events.send(Event::Ready(switch)).await;
        }
        // The connection went: core sends the order again on the next one, and the
        // download resumes where it stopped.
        Err((UpdateState::Downloading, error)) => {
            info!(deploy, %error, "download interrupted");
        }
        Err((state, error)) => {
            warn!(deploy, %error, "update not installed");
            let _ = events
                .send(Event::Status(status(deploy, state, 0, Some(error))))
                .await;
        }
    }
}

async fn fetch_inner(
    connection: &quinn::Connection,
    config: &NodeConfig,
    order: &UpdateOrder,
    events: &mpsc::Sender<Event>,
) -> Result<Switch, (UpdateState, String)> {
    let failed = |m: String| (UpdateState::Failed, m);
    let manifest = &order.manifest;
    check_order(config, manifest)?;
    let relaunch = config.relaunch.clone().expect("checked");
    let update_dir = dir(&config.state_dir);
    tether_certs::files::create_private_dir(&update_dir)
        .map_err(|e| failed(format!("cannot use {}: {e}", update_dir.display())))?;
    let part = update_dir.join(format!("{}.part", hex::encode(manifest.sha256.as_bytes())));
    let mut offset = std::fs::metadata(&part).map_or(0, |m| m.len());
    if offset > manifest.size {
        let _ = std::fs::remove_file(&part);
        offset = 0;
    }
    if offset < manifest.size {
        download(connection, order, &part, offset, events).await?;
    }
    let _ = events
        .send(Event::Status(status(
            order.deploy,
            UpdateState::Verifying,
            manifest.size,
            None,
        )))
        .await;
    let checked = tether_certs::release::check_file(manifest, &part)
        .and_then(|()| tether_certs::release::verify(manifest, &config.release_keys));
    if let Err(e) = checked {
        let _ = std::fs::remove_file(&part);
        return Err(failed(format!("the downloaded file was refused: {e}")));
    }
    // Beside the binary, so that the rename into its place is atomic.
    let incoming = relaunch
        .binary
        .with_file_name(format!(".tether-node.{}.new", manifest.version));
    stage(&part, &incoming).map_err(|e| {
        failed(format!(
            "cannot write the new agent beside {}: {e}",
            relaunch.binary.display()
        ))
    })?;
    let _ = std::fs::remove_file(&part);
    Ok(Switch {
        deploy: order.deploy,
        from_version: config.agent_version.clone(),
        to_version: manifest.version.clone(),
        incoming,
        rollback: false,
        relaunch,
        state_dir: config.state_dir.clone(),
        watchdog_ms: order.watchdog_ms,
    })
}

/// Copies the checked download to `to` (mode 0755), on disk before it is used.
fn stage(from: &Path, to: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt as _;
    let _ = std::fs::remove_file(to);
    std::fs::copy(from, to)?;
    std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))?;
    std::fs::File::open(to)?.sync_all()
}

async fn download(
    connection: &quinn::Connection,
    order: &UpdateOrder,
    part: &Path,
    offset: u64,
    events: &mpsc::Sender<Event>,
) -> Result<(), (UpdateState, String)> {
    let lost = |m: String| (UpdateState::Downloading, m);
    let failed = |m: String| (UpdateState::Failed, m);
    let manifest = &order.manifest;
    let (send, recv) = connection
        .open_bi()
        .await
        .map_err(|e| lost(format!("cannot open a download stream: {e}")))?;
    let mut send = FramedSend::new(send, MAX_DOWNLOAD_FRAME_LEN);
    let mut recv = FramedRecv::new(recv, MAX_DOWNLOAD_FRAME_LEN);
    send.send(&DownloadRequest {
        deploy: order.deploy,
        sha256: manifest.sha256,
        offset,
    })
    .await
    .map_err(|e| lost(format!("download request not sent: {e}")))?;
    send.finish();
    match recv.next::<DownloadFrame>().await {
        Ok(Some(DownloadFrame::Start { size })) if size == manifest.size => {}
        Ok(Some(DownloadFrame::Start { size })) => {
            return Err(failed(format!(
                "core offers {size} bytes; the manifest says {}",
                manifest.size
            )));
        }
        Ok(Some(DownloadFrame::Refused { message })) => return Err(failed(message)),
        Ok(_) => return Err(lost("core ended the download before it began".into())),
        Err(e) => return Err(lost(format!("download: {e}"))),
    }
    let mut file = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(part)
        .await
        .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
    let mut have = offset;
    let mut reported = tokio::time::Instant::now() - PROGRESS_EVERY;
    info!(deploy = order.deploy, version = %manifest.version, from = offset, size = manifest.size, "downloading an agent release");
    loop {
        if reported.elapsed() >= PROGRESS_EVERY {
            reported = tokio::time::Instant::now();
            let _ = events.try_send(Event::Status(status(
                order.deploy,
                UpdateState::Downloading,
                have,
                None,
            )));
        }
        match recv.next::<DownloadFrame>().await {
            Ok(Some(DownloadFrame::Data(bytes))) => {
                have += bytes.0.len() as u64;
                if have > manifest.size {
                    let _ = std::fs::remove_file(part);
                    return Err(failed("core sent more than the manifest says".into()));
                }
                file.write_all(&bytes.0)
                    .await
                    .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
            }
            Ok(None) => break,
            Ok(Some(_)) => return Err(failed("unexpected frame in a download".into())),
            Err(e) => {
                let _ = file.flush().await;
                return Err(lost(format!("download broken off at {have} bytes: {e}")));
            }
        }
    }
    file.sync_all()
        .await
        .map_err(|e| failed(format!("cannot write {}: {e}", part.display())))?;
    if have != manifest.size {
        return Err(lost(format!(
            "download ended at {have} of {} bytes",
            manifest.size
        )));
    }
    let _ = events
        .send(Event::Status(status(
            order.deploy,
            UpdateState::Downloading,
            have,
            None,
        )))
        .await;
    Ok(())
}

/// Checks a rollback order against the kept binary; the switch back to it.
pub(crate) fn rollback(
    config: &NodeConfig,
    order: &RollbackOrder,
) -> Result<Switch, (UpdateState, String)> {
    let failed = |m: String| (UpdateState::Failed, m);
    let Some(relaunch) = config.relaunch.clone() else {
        return Err(failed(
            "this agent cannot replace itself (it runs inside another program)".into(),
        ));
    };
    if order.to_version == config.agent_version {
        return Err((
            UpdateState::Skipped,
            format!("it runs {} already", order.to_version),
        ));
    }
    let kept = previous_path(&relaunch.binary);
    let previous: Option<Previous> = read_toml(&dir(&config.state_dir).join("previous.toml"));
    match previous {
        Some(p) if p.version == order.to_version && kept.exists() => {}
        Some(p) if kept.exists() => {
            return Err(failed(format!(
                "the agent kept here is {}, not {}",
                p.version, order.to_version
            )));
        }
        _ => {
            return Err(failed(format!(
                "no earlier agent is kept here ({} is missing)",
                kept.display()
            )));
        }
    }
    Ok(Switch {
        deploy: order.deploy,
        from_version: config.agent_version.clone(),
        to_version: order.to_version.clone(),
        incoming: kept,
        rollback: true,
        relaunch,
        state_dir: config.state_dir.clone(),
        watchdog_ms: order.watchdog_ms,
    })
}

impl Switch {
    /// The deploy it is for.
    pub(crate) fn deploy(&self) -> u64 {
        self.deploy
    }

    /// Puts the new binary in place, keeps the old one, starts the watchdog and executes the
    /// new agent in this process. Returns only if that failed (everything put back), with why.
    pub(crate) fn run(self) -> String {
        match self.switch() {
            Ok(never) => match never {},
            Err(e) => {
                warn!(deploy = self.deploy, error = %e, "the update failed; the old agent goes on");
                e
            }
        }
    }

    fn switch(&self) -> Result<std::convert::Infallible, String> {
        let binary = &self.relaunch.binary;
        let kept = previous_path(binary);
        let update_dir = dir(&self.state_dir);
        let hold = binary.with_file_name(".tether-node.hold");
        // The current binary, kept: a hard link, so that nothing is copied and the running
        // file stays as it is.
        let _ = std::fs::remove_file(&hold);
        std::fs::hard_link(binary, &hold)
            .map_err(|e| format!("cannot keep {}: {e}", binary.display()))?;
        std::fs::rename(&self.incoming, binary).map_err(|e| {
            let _ = std::fs::remove_file(&hold);
            format!(
                "cannot put the new agent in {}'s place: {e}",
                binary.display()
            )
        })?;
        std::fs::rename(&hold, &kept).map_err(|e| format!("cannot keep the old agent: {e}"))?;
        let _ = write_toml(
            &update_dir.join("previous.toml"),
            &Previous {
                version: self.from_version.clone(),
            },
        );
        let watchdog_ms = i64::try_from(self.watchdog_ms).unwrap_or(i64::MAX);
        let pending = Pending {
            deploy: self.deploy,
            from_version: self.from_version.clone(),
            to_version: self.to_version.clone(),
            binary: binary.clone(),
            previous: kept.clone(),
            deadline_ms: now_ms() + watchdog_ms,
            pid: i32::try_from(std::process::id()).unwrap_or(0),
            args: self
                .relaunch
                .args
                .iter()
                .map(|a| a.to_string_lossy().into_owned())
                .collect(),
            supervised: std::env::var_os("INVOCATION_ID").is_some(),
            confirmed: false,
        };
        let put_back = |why: String| {
            let _ = std::fs::rename(&kept, binary);
            let _ = std::fs::remove_file(update_dir.join("pending.toml"));
            why
        };
        write_toml(&update_dir.join("pending.toml"), &pending)
            .map_err(|e| put_back(format!("cannot record the update: {e}")))?;
        // The watchdog runs the code that is known to work: the kept binary.
        use std::os::unix::process::CommandExt as _;
        std::process::Command::new(&kept)
            .arg("watchdog")
            .arg("--state-dir")
            .arg(&self.state_dir)
            .stdin(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .map_err(|e| put_back(format!("cannot start the watchdog: {e}")))?;
        info!(deploy = self.deploy, from = %self.from_version, to = %self.to_version, rollback = self.rollback, "starting the new agent");
        let error = std::process::Command::new(binary)
            .args(&self.relaunch.args)
            .exec();
        // Still here: the watchdog puts the old binary back at its deadline; do it now.
        Err(put_back(format!(
            "cannot start {}: {error}",
            binary.display()
        )))
    }
}

/// After core accepted this agent: confirms an update that brought it here (the watchdog
/// stands down), and answers how an earlier one ended if no connection could say so then.
pub(crate) fn after_authentication(state_dir: &Path, version: &str) -> Option<UpdateStatus> {
    let update_dir = dir(state_dir);
    let pending_path = update_dir.join("pending.toml");
    if let Some(mut pending) = read_toml::<Pending>(&pending_path)
        && pending.to_version == version
        && !pending.confirmed
    {
        pending.confirmed = true;
        if let Err(e) = write_toml(&pending_path, &pending) {
            warn!(error = %e, "cannot confirm the update to the watchdog");
        }
        info!(deploy = pending.deploy, %version, "update confirmed");
    }
    let result_path = update_dir.join("result.toml");
    let outcome = read_toml::<Outcome>(&result_path)?;
    let _ = std::fs::remove_file(&result_path);
    Some(status(
        outcome.deploy,
        outcome.state.parse().unwrap_or(UpdateState::Failed),
        0,
        outcome.error,
    ))
}

/// Records an update that failed while switching, for the next authentication to report.
pub(crate) fn record_failure(state_dir: &Path, deploy: u64, error: String) {
    record(state_dir, deploy, UpdateState::Failed, error);
}

/// Records how an update ended, for the next authentication to report.
fn record(state_dir: &Path, deploy: u64, state: UpdateState, error: String) {
    let _ = write_toml(
        &dir(state_dir).join("result.toml"),
        &Outcome {
            deploy,
            state: state.to_string(),
            error: Some(error),
        },
    );
}

/// `tether-node watchdog`: waits for the new agent's confirmation until the deadline, and
/// puts the old agent back if it does not come. Returns when it is done, unless it starts the
/// old agent in its own place (without a supervisor), which does not return.
pub fn watchdog(state_dir: &Path) -> Result<(), String> {
    let update_dir = dir(state_dir);
    let pending_path = update_dir.join("pending.toml");
    loop {
        let Some(pending) = read_toml::<Pending>(&pending_path) else {
            return Ok(());
        };
        if pending.confirmed {
            let _ = std::fs::remove_file(&pending_path);
            return Ok(());
        }
        if now_ms() >= pending.deadline_ms {
            return put_back(state_dir, &pending);
        }
        std::thread::sleep(WATCHDOG_POLL);
    }
}

fn put_back(state_dir: &Path, pending: &Pending) -> Result<(), String> {
    let update_dir = dir(state_dir);
    // The new agent, if it still runs in the agent's process: stopped.
    let running = Path::new(&format!("/proc/{}/exe", pending.pid))
        .read_link()
        .ok()
        .is_some_and(|exe| {
            exe == pending.binary
                || exe.to_string_lossy() == format!("{} (deleted)", pending.binary.display())
        });
    if running && let Some(pid) = rustix::process::Pid::from_raw(pending.pid) {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    let what = if running {
        "it was still running and was stopped"
    } else {
        "it had exited"
    };
    std::fs::rename(&pending.previous, &pending.binary)
        .map_err(|e| format!("cannot put the old agent back: {e}"))?;
    let _ = std::fs::remove_file(update_dir.join("previous.toml"));
    let _ = std::fs::remove_file(update_dir.join("pending.toml"));
    record(
        state_dir,
        pending.deploy,
        UpdateState::Rollback,
        format!(
            "the new agent ({}) did not authenticate to core in time ({what}); the watchdog put {} back",
            pending.to_version, pending.from_version
        ),
    );
    if pending.supervised {
        // systemd starts the old agent (Restart=).
        return Ok(());
    }
    use std::os::unix::process::CommandExt as _;
    let args: Vec<OsString> = pending.args.iter().map(OsString::from).collect();
    let error = std::process::Command::new(&pending.binary)
        .args(args)
        .exec();
    Err(format!("cannot start the old agent again: {error}"))
}

//! Running commands for core: each in its own process group, stdin closed, output streamed on a
//! unidirectional QUIC stream of its own as the process writes it.
//!
//! Three tasks per run: two pipe readers and the stream writer, joined by a small bounded channel.
//! When core reads slowly, the writer waits for QUIC flow control, the channel fills, the readers
//! stop reading, the pipes fill and the process blocks in `write` — memory stays bounded whatever
//! the process prints. Timeouts and cancels are handled by the supervising loop, which never waits
//! on the network: SIGTERM to the whole group, then SIGKILL after the grace period.

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quinn::Connection;
use rustix::process::{Pid, Signal, kill_process_group};
use tether_wire::ExecutionId;
use tether_wire::bytes::ByteBuf;
use tether_wire::exec::{EXIT_CANNOT_EXECUTE, EXIT_NOT_FOUND, ExecFrame, ExecOutcome, ExecRequest};
use tether_wire::limits::{EXEC_CHUNK, MAX_EXEC_FRAME_LEN, MAX_EXECS_PER_NODE};
use tether_wire::stream::FramedSend;
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, info_span, warn};

/// After the process exits, how long to keep reading pipes that a background child holds open.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);

/// Runs in progress, so core can cancel them.
#[derive(Debug, Default)]
pub(crate) struct Executions {
    running: Mutex<HashMap<ExecutionId, CancellationToken>>,
}

impl Executions {
    /// Asks a run to stop (SIGTERM, then SIGKILL after its grace period).
    pub(crate) fn cancel(&self, exec_id: ExecutionId) {
        match self.running.lock().expect("not poisoned").get(&exec_id) {
            Some(token) => token.cancel(),
            None => debug!(%exec_id, "cancel for an execution that is not running here"),
        }
    }

    /// Stops every run (the connection they report on is gone).
    pub(crate) fn cancel_all(&self) {
        for token in self.running.lock().expect("not poisoned").values() {
            token.cancel();
        }
    }

    /// Starts a run in the background; `policy_refusal`: the node's policy refuses it, and why.
    /// With `script`, the script is written to a private file and that file is run.
    pub(crate) fn start(
        self: &Arc<Self>,
        connection: Connection,
        request: ExecRequest,
        script: Option<Script>,
        policy_refusal: Option<String>,
    ) {
        let cancel = CancellationToken::new();
        if let Some(reason) = policy_refusal {
            tokio::spawn(refuse(connection, request.exec_id, reason));
            return;
        }
        let refused = {
            let mut running = self.running.lock().expect("not poisoned");
            if running.len() >= MAX_EXECS_PER_NODE {
                Some(format!(
                    "this node already runs {MAX_EXECS_PER_NODE} commands; try again later"
                ))
            } else if running.insert(request.exec_id, cancel.clone()).is_some() {
                Some("this execution is already running here".to_string())
            } else {
                None
            }
        };
        let registry = self.clone();
        let span = info_span!("exec", exec_id = %request.exec_id);
        tokio::spawn(
            async move {
                let exec_id = request.exec_id;
                run(connection, request, script, cancel, refused).await;
                registry
                    .running
                    .lock()
                    .expect("not poisoned")
                    .remove(&exec_id);
            }
            .instrument(span),
        );
    }
}

/// Tells core the node's policy refuses a run: its stream carries `Open`, then `Refused`.
async fn refuse(connection: Connection, exec_id: ExecutionId, reason: String) {
    let Ok(stream) = connection.open_uni().await else {
        return;
    };
    let mut out = FramedSend::new(stream, MAX_EXEC_FRAME_LEN);
    if out.send(&ExecFrame::Open { exec_id }).await.is_ok() {
        let _ = out.send(&ExecFrame::Refused { reason }).await;
        out.finish();
    }
}

/// A script to run (a scheduled task's), and the directory its file goes in.
#[derive(Debug)]
pub(crate) struct Script {
    /// Its bytes, starting with an interpreter line.
    pub body: Vec<u8>,
    /// A directory only this agent can read (`<state_dir>/scripts`, 0700).
    pub dir: std::path::PathBuf,
}

impl Script {
    /// Writes the script to `<dir>/<execution id>`, 0700, readable by this agent only.
    fn write(&self, exec_id: ExecutionId) -> Result<std::path::PathBuf, String> {
        use std::io::Write;
        use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
        let failed = |e: std::io::Error| format!("cannot write the script: {e}");
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.dir)
            .map_err(failed)?;
        let path = self.dir.join(exec_id.to_string());
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o700)
            .open(&path)
            .map_err(failed)?;
        if let Err(e) = file.write_all(&self.body).and_then(|()| file.sync_all()) {
            drop(file);
            let _ = std::fs::remove_file(&path);
            return Err(failed(e));
        }
        Ok(path)
    }
}

/// Removes the script files in `dir` (at start: none can be running yet).
pub(crate) fn clear_scripts(dir: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if let Err(e) = std::fs::remove_file(entry.path()) {
            warn!(error = %e, path = %entry.path().display(), "cannot remove a script left behind");
        }
    }
}

/// One run, from opening its stream to `Finished`.
async fn run(
    connection: Connection,
    request: ExecRequest,
    script: Option<Script>,
    cancel: CancellationToken,
    refused: Option<String>,
) {
    let stream = match connection.open_uni().await {
        Ok(stream) => stream,
        Err(e) => {
            warn!(error = %e, "cannot open the output stream");
            return;
        }
    };
    let mut out = FramedSend::new(stream, MAX_EXEC_FRAME_LEN);
    if out
        .send(&ExecFrame::Open {
            exec_id: request.exec_id,
        })
        .await
        .is_err()
    {
        return;
    }
    if let Some(error) = refused {
        let now = now_ms();
        let outcome = ExecOutcome {
            error: Some(error),
            started_at_ms: now,
            finished_at_ms: now,
            ..Default::default()
        };
        let _ = out.send(&ExecFrame::Finished(outcome)).await;
        out.finish();
        return;
    }
    let (frames, mut outgoing) = mpsc::channel::<ExecFrame>(4);
    let abandon = CancellationToken::new();
    let abandon_run = abandon.clone();
    let execution = tokio::spawn(async move {
        let abandon = abandon_run;
        let Some(script) = script else {
            return execute(request, None, frames, cancel, abandon).await;
        };
        let path = match script.write(request.exec_id) {
            Ok(path) => path,
            Err(error) => {
                let now = now_ms();
                return ExecOutcome {
                    error: Some(error),
                    exit_code: Some(EXIT_CANNOT_EXECUTE),
                    started_at_ms: now,
                    finished_at_ms: now,
                    ..Default::default()
                };
            }
        };
        let outcome = execute(request, Some(&path), frames, cancel, abandon).await;
        if let Err(e) = std::fs::remove_file(&path) {
            warn!(error = %e, path = %path.display(), "cannot remove the script's file");
        }
        outcome
    });
    while let Some(frame) = outgoing.recv().await {
        if abandon.is_cancelled() {
            continue; // drain so the readers never block
        }
        if let Err(e) = out.send(&frame).await {
            // Core stopped reading (its admin went away) or the connection is gone: kill at once.
            debug!(error = %e, "output stream closed by core; killing the process group");
            abandon.cancel();
        }
    }
    let outcome = match execution.await {
        Ok(outcome) => outcome,
        Err(e) => ExecOutcome {
            error: Some(format!("the run failed: {e}")),
            ..Default::default()
        },
    };
    info!(exit_code = ?outcome.exit_code, signal = ?outcome.signal, timed_out = outcome.timed_out,
          cancelled = outcome.cancelled, error = ?outcome.error, "command finished");
    if !abandon.is_cancelled() && out.send(&ExecFrame::Finished(outcome)).await.is_ok() {
        out.finish();
        // Wait for core to have it all before the stream is dropped.
        let _ = out.stream_mut().stopped().await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

fn signal_group(pgid: Option<Pid>, signal: Signal) {
    if let Some(pgid) = pgid
        && let Err(e) = kill_process_group(pgid, signal)
    {
        debug!(error = %e, "signalling the process group");
    }
}

/// Spawns the command and supervises it; output goes to `frames`.
async fn execute(
    request: ExecRequest,
    script: Option<&std::path::Path>,
    frames: mpsc::Sender<ExecFrame>,
    cancel: CancellationToken,
    abandon: CancellationToken,
) -> ExecOutcome {
    let started_at_ms = now_ms();
    let failed = |error: String| ExecOutcome {
        error: Some(error),
        started_at_ms,
        finished_at_ms: now_ms(),
        ..Default::default()
    };
    if let Err(e) = request.check() {
        return failed(e);
    }
    let not_started = |(exit_code, error): (i32, String)| ExecOutcome {
        exit_code: Some(exit_code),
        ..failed(error)
    };
    if let Some(cwd) = &request.cwd
        && let Err(e) = usable_dir(cwd)
    {
        return not_started((EXIT_CANNOT_EXECUTE, e));
    }
    // A script's file is the program (the kernel reads its interpreter line); the command is
    // then its name only, for the logs.
    let (program, args) = match script {
        Some(path) => (path.as_os_str().to_owned(), &[][..]),
        None => (request.command[0].clone().into(), &request.command[1..]),
    };
    let mut command = tokio::process::Command::new(&program);
    command
        .args(args)
        .envs(request.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    if let Some(cwd) = &request.cwd {
        command.current_dir(cwd);
    }
    // A script's file was open for writing a moment ago: a fork elsewhere in this process may
    // still hold that descriptor until its exec (ETXTBSY). It passes; try again briefly.
    let mut busy = 0;
    let spawned = loop {
        match command.spawn() {
            Err(e)
                if script.is_some()
                    && busy < 20
                    && e.raw_os_error() == Some(rustix::io::Errno::TXTBSY.raw_os_error()) =>
            {
                busy += 1;
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            other => break other,
        }
    };
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            // The directory may have gone since it was checked: then it is the reason.
            if let Some(cwd) = &request.cwd
                && let Err(why) = usable_dir(cwd)
            {
                return not_started((EXIT_CANNOT_EXECUTE, why));
            }
            return match start_failure(&request.command[0], &e) {
                Some(code) => not_started(code),
                None => failed(format!("cannot start {:?}: {e}", request.command[0])),
            };
        }
    };
    let pgid = child
        .id()
        .and_then(|id| Pid::from_raw(i32::try_from(id).ok()?));
    debug!(pid = ?pgid, command = ?request.command, "started");

    let mut readers = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        readers.push(tokio::spawn(pump(
            stdout,
            frames.clone(),
            ExecFrame::Stdout,
        )));
    }
    if let Some(stderr) = child.stderr.take() {
        readers.push(tokio::spawn(pump(
            stderr,
            frames.clone(),
            ExecFrame::Stderr,
        )));
    }
    drop(frames);

    let timeout_at = request
        .timeout_ms
        .map(|ms| Instant::now() + Duration::from_millis(ms));
    let grace = Duration::from_millis(request.kill_grace_ms);
    let mut kill_at: Option<Instant> = None;
    let (mut timed_out, mut cancelled) = (false, false);
    let far = Instant::now() + Duration::from_secs(100 * 365 * 24 * 3600);
    let status = loop {
        tokio::select! {
            status = child.wait() => break status,
            _ = tokio::time::sleep_until(timeout_at.unwrap_or(far)), if timeout_at.is_some() && kill_at.is_none() => {
                timed_out = true;
                signal_group(pgid, Signal::TERM);
                kill_at = Some(Instant::now() + grace);
            }
            _ = cancel.cancelled(), if kill_at.is_none() => {
                cancelled = true;
                signal_group(pgid, Signal::TERM);
                kill_at = Some(Instant::now() + grace);
            }
            _ = abandon.cancelled(), if !cancelled => {
                cancelled = true;
                signal_group(pgid, Signal::KILL);
                kill_at = Some(Instant::now());
            }
            _ = tokio::time::sleep_until(kill_at.unwrap_or(far)), if kill_at.is_some() => {
                signal_group(pgid, Signal::KILL);
                kill_at = Some(far);
            }
        }
    };
    // The group's other members die with it when it was killed; after a normal exit, give pipes a
    // moment to drain, then stop waiting for background children that keep them open.
    if timed_out || cancelled {
        signal_group(pgid, Signal::KILL);
    }
    let drain = async {
        for reader in &mut readers {
            let _ = reader.await;
        }
    };
    if tokio::time::timeout(DRAIN_AFTER_EXIT, drain).await.is_err() {
        debug!("background processes keep the output open; not waiting for them");
        for reader in &readers {
            reader.abort();
        }
    }
    let mut outcome = ExecOutcome {
        timed_out,
        cancelled,
        started_at_ms,
        finished_at_ms: now_ms(),
        ..Default::default()
    };
    match status {
        Ok(status) => {
            use std::os::unix::process::ExitStatusExt;
            outcome.exit_code = status.code();
            outcome.signal = status.signal();
        }
        Err(e) => outcome.error = Some(format!("waiting for the process failed: {e}")),
    }
    outcome
}

/// Checks that a working directory can be entered by this agent, with the reason if not.
fn usable_dir(dir: &str) -> Result<(), String> {
    match std::fs::metadata(dir) {
        Ok(meta) if meta.is_dir() => {
            rustix::fs::access(dir, rustix::fs::Access::EXEC_OK).map_err(|e| {
                format!(
                    "cannot change to directory {dir}: {}",
                    std::io::Error::from(e)
                )
            })
        }
        Ok(_) => Err(format!("cannot change to directory {dir}: not a directory")),
        Err(e) => Err(format!("cannot change to directory {dir}: {e}")),
    }
}

/// The shell's answer for a command that could not be started: 127 when the program (or the
/// interpreter its `#!` line names) does not exist, 126 when it exists but cannot be executed,
/// with a reason; `None` when the failure is the agent's own (no memory, no processes left),
/// which is not the command's fault.
fn start_failure(program: &str, error: &std::io::Error) -> Option<(i32, String)> {
    use std::io::ErrorKind;
    match error.kind() {
        ErrorKind::NotFound => Some((EXIT_NOT_FOUND, format!("command not found: {program}"))),
        ErrorKind::PermissionDenied
        | ErrorKind::IsADirectory
        | ErrorKind::NotADirectory
        | ErrorKind::ExecutableFileBusy
        | ErrorKind::InvalidInput => Some((
            EXIT_CANNOT_EXECUTE,
            format!("cannot execute {program}: {error}"),
        )),
        // ENOEXEC (not a binary this system runs, no `#!` line), ELOOP, ENAMETOOLONG: the file
        // is the problem, so the command's status; EAGAIN, ENOMEM, EMFILE: the agent's.
        _ if rustix::io::Errno::from_io_error(error).is_some_and(|errno| {
            [
                rustix::io::Errno::NOEXEC,
                rustix::io::Errno::LOOP,
                rustix::io::Errno::NAMETOOLONG,
                rustix::io::Errno::TOOBIG,
            ]
            .contains(&errno)
        }) =>
        {
            Some((
                EXIT_CANNOT_EXECUTE,
                format!("cannot execute {program}: {error}"),
            ))
        }
        _ => None,
    }
}

/// Copies a pipe into output frames until end of file.
async fn pump(
    mut pipe: impl tokio::io::AsyncRead + Unpin,
    frames: mpsc::Sender<ExecFrame>,
    wrap: fn(ByteBuf) -> ExecFrame,
) {
    let mut buf = vec![0u8; EXEC_CHUNK];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) => return,
            Ok(n) => {
                if frames.send(wrap(ByteBuf(buf[..n].to_vec()))).await.is_err() {
                    return;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                debug!(error = %e, "reading a pipe");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// Spawns `program` the way runs do and classifies the failure.
    fn classify(program: &str) -> Option<(i32, String)> {
        let error = std::process::Command::new(program)
            .spawn()
            .expect_err("must not start");
        start_failure(program, &error)
    }

    #[test]
    fn commands_that_cannot_start_get_the_shells_statuses() {
        let (code, why) = classify("no-such-command-tether").unwrap();
        assert_eq!(code, 127);
        assert!(why.contains("command not found"), "{why}");

        let dir = tempfile::tempdir().unwrap();
        let plain = dir.path().join("plain.txt");
        std::fs::write(&plain, "not a program\n").unwrap();
        let (code, why) = classify(plain.to_str().unwrap()).unwrap();
        assert_eq!(code, 126, "{why}");

        let garbage = dir.path().join("garbage");
        std::fs::write(&garbage, [0x7f, b'E', b'L', b'F', 0, 0, 0]).unwrap();
        std::fs::set_permissions(&garbage, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (code, why) = classify(garbage.to_str().unwrap()).unwrap();
        assert_eq!(code, 126, "{why}");

        let (code, _) = classify(dir.path().to_str().unwrap()).unwrap();
        assert_eq!(code, 126, "a directory cannot be executed");

        let script = dir.path().join("script");
        std::fs::write(&script, "#!/no/such/interpreter\n").unwrap();
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (code, _) = classify(script.to_str().unwrap()).unwrap();
        assert_eq!(
            code, 127,
            "a missing interpreter is not found, as in a shell"
        );
    }

    #[test]
    fn working_directories_are_checked_first() {
        assert!(usable_dir("/").is_ok());
        assert!(
            usable_dir("/no/such/dir")
                .unwrap_err()
                .contains("/no/such/dir")
        );
        assert!(
            usable_dir("/etc/hostname")
                .unwrap_err()
                .contains("not a directory")
        );
    }
}

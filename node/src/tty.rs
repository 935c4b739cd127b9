//! Terminal sessions for core: each on a bidirectional stream core opens, each a shell on a PTY of
//! its own (portable-pty).
//!
//! Per session: the PTY master, non-blocking, is polled by the runtime. One future reads it and
//! sends what the shell wrote as `Data` frames as fast as QUIC flow control lets it, another
//! writes keystrokes to it, each waiting only on its own side; one blocking task waits for the
//! shell. When core (or the admin behind it) reads slowly, the master is not read, the PTY's
//! buffer fills and the shell blocks in `write`: memory stays bounded whatever the shell prints.
//! When the stream ends from core's side, the shell's process group gets SIGHUP, then SIGKILL if
//! it is still there after a grace period.

use std::os::fd::{BorrowedFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use portable_pty::{CommandBuilder, MasterPty, PtySize, native_pty_system};
use quinn::{RecvStream, SendStream};
use rustix::process::{Pid, Signal, kill_process_group};
use tether_wire::ErrorCode;
use tether_wire::bytes::ByteBuf;
use tether_wire::limits::{MAX_TTY_FRAME_LEN, MAX_TTYS_PER_NODE, TTY_CHUNK};
use tether_wire::stream::{FramedRecv, FramedSend};
use tether_wire::tty::{TtyExit, TtyInput, TtyOpen, TtyOutput, WindowSize};
use tokio::io::Interest;
use tokio::io::unix::{AsyncFd, AsyncFdReadyGuard};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{Instrument, debug, info, info_span, warn};

/// After the shell exits, how long to keep reading output that a leftover process still writes.
const DRAIN_AFTER_EXIT: Duration = Duration::from_secs(2);
/// Between SIGHUP and SIGKILL when a session is ended from core's side.
const KILL_GRACE: Duration = Duration::from_secs(2);
/// How long core has to send the session's first frame.
const OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// The terminal's end-of-file character (Ctrl-D), sent for [`TtyInput::Eof`].
const VEOF: u8 = 0x04;

/// Sessions running on this node.
#[derive(Debug, Default)]
pub(crate) struct Terminals {
    running: AtomicUsize,
}

impl Terminals {
    /// Serves one stream core opened, in the background.
    pub(crate) fn start(
        self: &Arc<Self>,
        send: SendStream,
        recv: RecvStream,
        shell: Option<String>,
        policy_refusal: Option<String>,
    ) {
        let registry = self.clone();
        tokio::spawn(async move {
            let mut send = FramedSend::new(send, MAX_TTY_FRAME_LEN);
            let mut recv = FramedRecv::new(recv, MAX_TTY_FRAME_LEN);
            let open = match tokio::time::timeout(OPEN_TIMEOUT, recv.next::<TtyOpen>()).await {
                Ok(Ok(Some(open))) => open,
                Ok(Ok(None)) => return,
                Ok(Err(e)) => {
                    warn!(error = %e, "a terminal stream from core broke the protocol");
                    let code = e.protocol_code().unwrap_or(ErrorCode::MALFORMED);
                    let _ = recv
                        .stream_mut()
                        .stop(quinn::VarInt::from_u32(code.close_code()));
                    return;
                }
                Err(_) => {
                    let code = ErrorCode::HELLO_TIMEOUT.close_code();
                    let _ = recv.stream_mut().stop(quinn::VarInt::from_u32(code));
                    return;
                }
            };
            let span = info_span!("tty", session_id = %open.session_id);
            async move {
                if let Some(message) = policy_refusal {
                    warn!("terminal refused by this node's policy: {message}");
                    let error = TtyOutput::Error {
                        code: ErrorCode::POLICY_REFUSED,
                        message,
                    };
                    let _ = send.send(&error).await;
                    send.finish();
                    return;
                }
                if registry.running.fetch_add(1, Ordering::SeqCst) >= MAX_TTYS_PER_NODE {
                    registry.running.fetch_sub(1, Ordering::SeqCst);
                    let message =
                        format!("this node already runs {MAX_TTYS_PER_NODE} terminal sessions");
                    warn!("{message}");
                    let error = TtyOutput::Error {
                        code: ErrorCode::LIMIT_REACHED,
                        message,
                    };
                    let _ = send.send(&error).await;
                    send.finish();
                    return;
                }
                run(open, send, recv, shell.as_deref()).await;
                registry.running.fetch_sub(1, Ordering::SeqCst);
            }
            .instrument(span)
            .await;
        });
    }

    /// Sessions running now.
    pub(crate) fn running(&self) -> usize {
        self.running.load(Ordering::SeqCst)
    }
}

/// The program and arguments for a session: the configured shell, else `/bin/bash --login`, else
/// `/bin/sh`; with a command, that shell's program runs it with `-c`.
pub(crate) fn shell_command(configured: Option<&str>, command: Option<&str>) -> Vec<String> {
    let login: Vec<String> = match configured {
        Some(shell) => shell.split_whitespace().map(str::to_string).collect(),
        None if std::path::Path::new("/bin/bash").exists() => {
            vec!["/bin/bash".into(), "--login".into()]
        }
        None => vec!["/bin/sh".into()],
    };
    match command {
        None => login,
        Some(command) => vec![login[0].clone(), "-c".into(), command.into()],
    }
}

fn pty_size(size: WindowSize) -> PtySize {
    PtySize {
        rows: size.rows,
        cols: size.cols,
        pixel_width: 0,
        pixel_height: 0,
    }
}

struct Pty {
    /// Kept for resizes; the session's I/O goes through `io`, a duplicate of its descriptor.
    master: Box<dyn MasterPty + Send>,
    io: AsyncFd<OwnedFd>,
    pid: u32,
    argv: Vec<String>,
    exited: oneshot::Receiver<TtyExit>,
}

fn spawn(open: &TtyOpen, shell: Option<&str>) -> Result<Pty, String> {
    open.size.check()?;
    let argv = shell_command(shell, open.command.as_deref());
    let pair = native_pty_system()
        .openpty(pty_size(open.size))
        .map_err(|e| format!("cannot open a PTY: {e}"))?;
    let mut command = CommandBuilder::new(&argv[0]);
    command.args(&argv[1..]);
    command.env("TERM", &open.term);
    if let Some(home) = std::env::var_os("HOME") {
        command.cwd(home);
    }
    let mut child = pair
        .slave
        .spawn_command(command)
        .map_err(|e| format!("cannot start {}: {e}", argv[0]))?;
    // The master sees end of file (EIO) only once every slave descriptor is closed, ours included.
    drop(pair.slave);
    let pid = child.process_id().unwrap_or(0);

    let io = match master_io(pair.master.as_ref()) {
        Ok(io) => io,
        Err(message) => {
            let _ = child.kill();
            return Err(message);
        }
    };

    let (exited_tx, exited) = oneshot::channel();
    tokio::task::spawn_blocking(move || {
        let exit = match child.wait() {
            Ok(status) => exit_of(&status),
            Err(e) => {
                warn!(error = %e, "waiting for the shell failed");
                TtyExit::default()
            }
        };
        let _ = exited_tx.send(exit);
    });

    Ok(Pty {
        master: pair.master,
        io,
        pid,
        argv,
        exited,
    })
}

/// The master's descriptor, duplicated, non-blocking, in the runtime's poller: output and input
/// move on the session's task with no thread in between (one hand-off less per keystroke each
/// way), and output that piled up while a frame was in flight leaves in one read, as one frame.
///
/// One of two `unsafe` blocks in the workspace (the other registers the CLI's terminal):
/// portable-pty exposes the master only as a raw descriptor, and tokio's registration wants the
/// caller's word that the descriptor stays valid.
#[allow(unsafe_code)]
fn master_io(master: &(dyn MasterPty + Send)) -> Result<AsyncFd<OwnedFd>, String> {
    let raw = master
        .as_raw_fd()
        .ok_or_else(|| "the PTY has no descriptor".to_string())?;
    // SAFETY: `raw` belongs to `master`, which outlives this call; it is only borrowed to
    // duplicate it into a descriptor of our own.
    let borrowed = unsafe { BorrowedFd::borrow_raw(raw) };
    let owned = rustix::io::fcntl_dupfd_cloexec(borrowed, 0)
        .map_err(|e| format!("cannot duplicate the PTY descriptor: {e}"))?;
    rustix::io::ioctl_fionbio(&owned, true)
        .map_err(|e| format!("cannot make the PTY non-blocking: {e}"))?;
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it until dropped: it stays
    // open, and `as_raw_fd` always returns the same descriptor.
    unsafe { AsyncFd::register_with_interest(owned, Interest::READABLE | Interest::WRITABLE) }
        .map_err(|e| format!("cannot poll the PTY: {e}"))
}

/// portable-pty reports a signal by its description (glibc's `strsignal`); turn it back into a
/// number so the client can exit with 128 + signal as shells do.
fn exit_of(status: &portable_pty::ExitStatus) -> TtyExit {
    const NAMES: [&str; 31] = [
        "Hangup",
        "Interrupt",
        "Quit",
        "Illegal instruction",
        "Trace/breakpoint trap",
        "Aborted",
        "Bus error",
        "Floating point exception",
        "Killed",
        "User defined signal 1",
        "Segmentation fault",
        "User defined signal 2",
        "Broken pipe",
        "Alarm clock",
        "Terminated",
        "Stack fault",
        "Child exited",
        "Continued",
        "Stopped (signal)",
        "Stopped",
        "Stopped (tty input)",
        "Stopped (tty output)",
        "Urgent I/O condition",
        "CPU time limit exceeded",
        "File size limit exceeded",
        "Virtual timer expired",
        "Profiling timer expired",
        "Window changed",
        "I/O possible",
        "Power failure",
        "Bad system call",
    ];
    match status.signal() {
        Some(name) => {
            let number = NAMES
                .iter()
                .position(|n| *n == name)
                .map(|i| i as i32 + 1)
                .or_else(|| name.strip_prefix("Signal ").and_then(|n| n.parse().ok()));
            match number {
                Some(signal) => TtyExit {
                    exit_code: None,
                    signal: Some(signal),
                },
                None => TtyExit {
                    exit_code: Some(i32::try_from(status.exit_code()).unwrap_or(1)),
                    signal: None,
                },
            }
        }
        None => TtyExit {
            exit_code: Some(i32::try_from(status.exit_code()).unwrap_or(255)),
            signal: None,
        },
    }
}

fn signal_group(pid: u32, signal: Signal) {
    if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
        let _ = kill_process_group(pid, signal);
    }
}

/// How the output side ended.
enum OutputEnd {
    /// Every holder of the PTY's slave side is gone.
    Closed,
    /// The stream to core failed.
    Failed(String),
}

/// A frame at least this large means output is streaming, not echoing (see [`gather_more`]).
const STREAMING_FRAME: usize = 2 * 1024;
/// ...if the next read comes within this of it.
const STREAMING_GAP: Duration = Duration::from_millis(2);
/// While streaming, how long a frame waits for more output before it leaves (tokio's timer
/// rounds up to its 1 ms tick).
const GATHER_WAIT: Duration = Duration::from_micros(500);
/// While streaming, a frame leaves once less than this room is left: a PTY read returns at
/// most 4 KiB (the line discipline's buffer).
const GATHER_ROOM: usize = 4 * 1024;

/// Whether the frame being read should wait for more output: only while output streams, that
/// is when the previous frame was large and left a moment ago. A keystroke's echo, or the
/// first burst of a command's output, leaves at once.
///
/// Why: the PTY hands over at most 4 KiB per read, and a program writing line by line (most
/// do, to a terminal) is read a line or two at a time by a reader that keeps up. Sent as is,
/// every read is a frame and a packet through node, core and client. Gathered, a fast stream
/// crosses in frames of tens of KiB: far fewer packets, wake-ups and system calls on all
/// three, and the end of a stream waits at most [`GATHER_WAIT`] (rounded up to a millisecond).
fn gather_more(last_large_frame_at: Option<Instant>, now: Instant) -> bool {
    last_large_frame_at.is_some_and(|at| now.saturating_duration_since(at) <= STREAMING_GAP)
}

/// How a round of reads ended.
enum Drained {
    /// Nothing more to read for now (readiness cleared), or the buffer is full.
    ForNow,
    /// Every holder of the PTY's slave side is gone.
    Closed,
}

/// Reads into `buf[*filled..]` until the PTY has nothing more for now or `buf` is full.
///
/// A read that returns less than asked has emptied the PTY: readiness is cleared then, without
/// the read that would only say "would block" (one system call fewer per echo, and per read while
/// output streams). Nothing is lost by it: output that arrives later marks the PTY ready again,
/// even if it came between the read and the clearing.
fn read_available(
    guard: &mut AsyncFdReadyGuard<'_, OwnedFd>,
    buf: &mut [u8],
    filled: &mut usize,
) -> Drained {
    while *filled < buf.len() {
        let read = guard.try_io(|fd| {
            rustix::io::read(fd.get_ref(), &mut buf[*filled..]).map_err(std::io::Error::from)
        });
        match read {
            Ok(Ok(0)) => return Drained::Closed,
            Ok(Ok(n)) => {
                *filled += n;
                if *filled < buf.len() {
                    guard.clear_ready();
                    return Drained::ForNow;
                }
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // EIO once the shell and its children are gone: the end, like end of file.
            Ok(Err(_)) => return Drained::Closed,
            // Nothing more for now (readiness cleared).
            Err(_would_block) => return Drained::ForNow,
        }
    }
    Drained::ForNow
}

/// PTY → core: whatever the shell wrote since the last read (up to [`TTY_CHUNK`]) as one `Data`
/// frame, read only once the previous frame is in QUIC's hands; while output streams, a frame
/// waits a moment for more ([`gather_more`]). When core reads slowly, the PTY's buffer fills
/// and the shell blocks in `write`: memory stays bounded.
async fn pump_output(io: &AsyncFd<OwnedFd>, send: &mut FramedSend) -> OutputEnd {
    let mut buf = Vec::with_capacity(TTY_CHUNK);
    let mut last_large_frame_at = None;
    loop {
        let mut guard = match io.readable().await {
            Ok(guard) => guard,
            Err(e) => return OutputEnd::Failed(format!("cannot poll the PTY: {e}")),
        };
        buf.resize(TTY_CHUNK, 0);
        let mut filled = 0;
        let gather = gather_more(last_large_frame_at, Instant::now());
        let closed = loop {
            if let Drained::Closed = read_available(&mut guard, &mut buf, &mut filled) {
                break true;
            }
            if !gather || buf.len() - filled < GATHER_ROOM {
                break false;
            }
            match tokio::time::timeout(GATHER_WAIT, io.readable()).await {
                Ok(Ok(next)) => guard = next,
                // Nothing more in time (or polling failed: the next round reports it).
                _ => break false,
            }
        };
        if filled > 0 {
            buf.truncate(filled);
            let frame = TtyOutput::Data(ByteBuf(std::mem::take(&mut buf)));
            let sent = send.send(&frame).await;
            if let TtyOutput::Data(ByteBuf(back)) = frame {
                buf = back;
            }
            if let Err(e) = sent {
                return OutputEnd::Failed(format!("output stream failed: {e}"));
            }
            last_large_frame_at = (filled >= STREAMING_FRAME).then(Instant::now);
        }
        if closed {
            return OutputEnd::Closed;
        }
    }
}

/// Core → PTY: keystrokes, resizes, end of input. Returns why input ended.
async fn pump_input(
    io: &AsyncFd<OwnedFd>,
    master: Box<dyn MasterPty + Send>,
    recv: &mut FramedRecv,
) -> String {
    loop {
        match recv.next::<TtyInput>().await {
            Ok(Some(TtyInput::Data(bytes))) => {
                if let Err(e) = write_all(io, &bytes.0).await {
                    debug!(error = %e, "the PTY no longer takes input");
                }
            }
            Ok(Some(TtyInput::Resize(size))) => {
                if size.check().is_ok()
                    && let Err(e) = master.resize(pty_size(size))
                {
                    warn!(error = %e, "resize failed");
                }
            }
            Ok(Some(TtyInput::Eof)) => {
                let _ = write_all(io, &[VEOF]).await;
            }
            Ok(Some(_)) => debug!("ignoring a terminal frame this agent does not know"),
            // Core finished its side: the session is over from the client's end.
            Ok(None) => return "core ended the session".into(),
            Err(e) => return format!("input stream failed: {e}"),
        }
    }
}

/// Writes all of `bytes` to the PTY, waiting while its input buffer is full (a shell that does
/// not read stalls only this direction).
async fn write_all(io: &AsyncFd<OwnedFd>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        let mut guard = io.writable().await?;
        match guard.try_io(|fd| rustix::io::write(fd.get_ref(), bytes).map_err(Into::into)) {
            Ok(Ok(n)) => bytes = &bytes[n..],
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Ok(Err(e)) => return Err(e),
            Err(_would_block) => {}
        }
    }
    Ok(())
}

/// One session, from the PTY's start to `Exited`.
async fn run(open: TtyOpen, mut send: FramedSend, mut recv: FramedRecv, shell: Option<&str>) {
    let pty = match spawn(&open, shell) {
        Ok(pty) => pty,
        Err(message) => {
            warn!(%message, "terminal not started");
            let error = TtyOutput::Error {
                code: ErrorCode::INTERNAL,
                message,
            };
            let _ = send.send(&error).await;
            send.finish();
            return;
        }
    };
    let Pty {
        master,
        io,
        pid,
        argv,
        mut exited,
    } = pty;
    info!(pid, command = ?open.command, size = ?open.size, "terminal started");
    if send
        .send(&TtyOutput::Started { pid, command: argv })
        .await
        .is_err()
    {
        signal_group(pid, Signal::KILL);
        return;
    }

    let mut exit: Option<TtyExit> = None;
    // Output and input each wait only on their own side; the loop waits on both and the shell.
    let ended_by_core: Option<String> = {
        let output = pump_output(&io, &mut send);
        let input = pump_input(&io, master, &mut recv);
        tokio::pin!(output, input);
        let mut input_open = true;
        let drain = tokio::time::sleep(Duration::MAX / 4);
        tokio::pin!(drain);
        loop {
            tokio::select! {
                end = &mut output => match end {
                    OutputEnd::Failed(reason) => break Some(reason),
                    OutputEnd::Closed if exit.is_some() => break None,
                    OutputEnd::Closed => {
                        // The shell closed its terminal but may still run: wait for its status.
                        exit = Some((&mut exited).await.unwrap_or_default());
                        break None;
                    }
                },
                status = &mut exited, if exit.is_none() => {
                    exit = Some(status.unwrap_or_default());
                    drain.as_mut().reset(tokio::time::Instant::now() + DRAIN_AFTER_EXIT);
                }
                _ = &mut drain => {
                    debug!("a leftover process keeps the terminal open; ending the session");
                    break None;
                }
                reason = &mut input, if input_open => {
                    input_open = false;
                    if exit.is_none() {
                        break Some(reason);
                    }
                }
            }
        }
    };

    match ended_by_core {
        Some(reason) => {
            info!(%reason, "terminal ended from core's side; hanging up the shell");
            signal_group(pid, Signal::HUP);
            if exit.is_none() {
                tokio::spawn(
                    async move {
                        if tokio::time::timeout(KILL_GRACE, exited).await.is_err() {
                            debug!("the shell ignored SIGHUP; killing its process group");
                            signal_group(pid, Signal::KILL);
                        }
                    }
                    .in_current_span(),
                );
            }
            let _ = send.stream_mut().reset(quinn::VarInt::from_u32(
                ErrorCode::SESSION_KILLED.close_code(),
            ));
        }
        None => {
            let exit = exit.unwrap_or_default();
            info!(?exit, "terminal exited");
            // Leftover members of the shell's process group go with it, as on a hang-up.
            signal_group(pid, Signal::HUP);
            if send.send(&TtyOutput::Exited(exit)).await.is_ok() {
                send.finish();
                let _ = tokio::time::timeout(Duration::from_secs(10), send.stream_mut().stopped())
                    .await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_is_gathered_only_right_after_a_large_frame() {
        let now = Instant::now();
        assert!(
            !gather_more(None, now),
            "no large frame yet: an echo leaves at once"
        );
        assert!(
            gather_more(Some(now), now),
            "a large frame just left: output streams"
        );
        assert!(gather_more(Some(now - STREAMING_GAP), now));
        assert!(
            !gather_more(Some(now - STREAMING_GAP - Duration::from_micros(1)), now),
            "the stream paused: the next output leaves at once"
        );
    }

    #[test]
    fn the_shell_is_chosen_as_documented() {
        assert_eq!(
            shell_command(Some("/bin/zsh --login"), None),
            ["/bin/zsh", "--login"]
        );
        assert_eq!(
            shell_command(Some("/bin/zsh --login"), Some("uname -a")),
            ["/bin/zsh", "-c", "uname -a"]
        );
        let default = shell_command(None, None);
        assert!(default == ["/bin/bash", "--login"] || default == ["/bin/sh"]);
    }

    #[test]
    fn signals_come_back_as_numbers() {
        let killed = portable_pty::ExitStatus::with_signal("Killed");
        assert_eq!(exit_of(&killed).signal, Some(9));
        assert_eq!(exit_of(&killed).status(), 137);
        let code = portable_pty::ExitStatus::with_exit_code(3);
        assert_eq!(exit_of(&code).status(), 3);
    }
}

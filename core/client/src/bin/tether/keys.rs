//! Keystrokes: stdin, read in chunks, for the session to send.
//!
//! A terminal is read on the runtime's own thread. A key then wakes the event loop directly; a
//! reader thread would wake itself and then the loop, one more wake-up on every keystroke's way
//! to its echo. The terminal is shared with the shell that started `tether`, so it is not made
//! non-blocking (a crash would leave it so): `FIONREAD` says how much is waiting, and only that
//! much is read, so a read never blocks. Pipes and files (epoll can not watch a file) keep a
//! thread of their own, where a blocking read is harmless.

use std::io::IsTerminal as _;
use std::os::fd::{AsFd as _, OwnedFd};

use rustix::io::Errno;
use tokio::io::Interest;
use tokio::io::unix::AsyncFd;
use tokio::sync::mpsc;

/// At most this much per chunk.
const CHUNK: usize = 16 * 1024;

/// Where keystrokes come from.
#[derive(Debug)]
pub enum Keys {
    /// stdin is a terminal, watched by the runtime.
    Terminal(AsyncFd<OwnedFd>),
    /// stdin is a pipe or a file, read on a thread.
    Thread(mpsc::Receiver<Vec<u8>>),
}

impl Keys {
    /// Starts reading stdin.
    pub fn start() -> Self {
        if std::io::stdin().is_terminal()
            && let Ok(fd) = rustix::io::fcntl_dupfd_cloexec(std::io::stdin().as_fd(), 0)
            && let Some(fd) = watch(fd)
        {
            return Self::Terminal(fd);
        }
        Self::Thread(thread_reader())
    }

    /// The next chunk of input; `None` once stdin has ended or failed. Cancel safe: a chunk is
    /// only taken from stdin when it is returned.
    pub async fn next(&mut self) -> Option<Vec<u8>> {
        match self {
            Self::Thread(chunks) => chunks.recv().await,
            Self::Terminal(fd) => loop {
                let mut guard = fd.readable().await.ok()?;
                let waiting = match rustix::io::ioctl_fionread(fd.get_ref()) {
                    Ok(waiting) => usize::try_from(waiting).unwrap_or(CHUNK),
                    // A hung-up terminal: nothing more will come.
                    Err(_) => return None,
                };
                if waiting == 0 {
                    if guard.ready().is_read_closed() {
                        return None;
                    }
                    guard.clear_ready();
                    continue;
                }
                let mut chunk = vec![0u8; waiting.min(CHUNK)];
                match rustix::io::read(fd.get_ref(), &mut chunk) {
                    Ok(0) => return None,
                    Ok(read) => {
                        if read == waiting {
                            // All of it: wait for the next key. (A key that came meanwhile
                            // marks the terminal ready again; clearing does not lose it.)
                            guard.clear_ready();
                        }
                        chunk.truncate(read);
                        return Some(chunk);
                    }
                    Err(Errno::INTR) => continue,
                    Err(_) => return None,
                }
            },
        }
    }
}

/// Registers a terminal descriptor of our own with the runtime.
#[allow(unsafe_code)]
fn watch(fd: OwnedFd) -> Option<AsyncFd<OwnedFd>> {
    // SAFETY: the `OwnedFd` is moved into the `AsyncFd`, which owns it until dropped: it stays
    // open, and `as_raw_fd` always returns the same descriptor.
    unsafe { AsyncFd::register_with_interest(fd, Interest::READABLE) }.ok()
}

/// Reads stdin on a thread of its own (a blocking read can not be cancelled; the process exit
/// ends it), in chunks, with backpressure: a full channel stops the reading.
fn thread_reader() -> mpsc::Receiver<Vec<u8>> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        use std::io::Read;
        let mut stdin = std::io::stdin().lock();
        let mut buf = vec![0u8; CHUNK];
        loop {
            match stdin.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    if tx.blocking_send(buf[..n].to_vec()).is_err() {
                        break;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(_) => break,
            }
        }
    });
    rx
}

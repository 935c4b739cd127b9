//! A terminal session's output to stdout, on a thread of its own.
//!
//! A write to a terminal or pipe that stops reading blocks; it must not block the session's
//! loop (signals, input, the exit). The thread writes straight to the descriptor, one `write` per
//! batch: everything that arrived while the previous write ran leaves in the next one, so a fast
//! shell costs few system calls.
//!
//! A keystroke's echo skips the thread: when nothing is queued, the chunk is small and stdout
//! has room (`poll`), the session writes it itself. A pipe with room takes up to `PIPE_BUF`
//! bytes at once and a terminal with room takes a few hundred, so that write does not block;
//! and it saves a thread wake-up on the path every keystroke takes.

use std::io::Write as _;
use std::os::fd::AsFd as _;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::time::Duration;

use tokio::sync::mpsc;

/// Chunks waiting for the thread; when full, the session stops reading its stream and QUIC flow
/// control holds the shell back.
const QUEUE: usize = 16;
/// At most this much is gathered into one write.
const BATCH: usize = 256 * 1024;
/// Chunks up to this size may be written without the thread (see the module's docs).
const INLINE_MAX: usize = 256;

/// The sending side; the thread ends when this is finished or stdout fails.
pub struct StdoutWriter {
    queue: mpsc::Sender<Vec<u8>>,
    /// Chunks queued or being written by the thread; only at zero may the session write itself.
    in_flight: Arc<AtomicUsize>,
    done: std_mpsc::Receiver<()>,
}

/// Stdout no longer takes output (closed pipe, terminal gone).
#[derive(Debug)]
pub struct StdoutGone;

impl StdoutWriter {
    pub fn start() -> Self {
        let (queue, mut chunks) = mpsc::channel::<Vec<u8>>(QUEUE);
        let (done_tx, done) = std_mpsc::channel();
        let in_flight = Arc::new(AtomicUsize::new(0));
        let written = in_flight.clone();
        std::thread::Builder::new()
            .name("tty-stdout".into())
            .spawn(move || {
                let stdout = std::io::stdout();
                // Nothing else writes to stdout during a session; flush what std may hold.
                let _ = stdout.lock().flush();
                // The first chunk becomes the batch; whatever else is queued joins it.
                while let Some(mut batch) = chunks.blocking_recv() {
                    let mut taken = 1;
                    while batch.len() < BATCH {
                        match chunks.try_recv() {
                            Ok(more) => {
                                batch.extend_from_slice(&more);
                                taken += 1;
                            }
                            Err(_) => break,
                        }
                    }
                    if write_all(stdout.as_fd(), &batch).is_err() {
                        break;
                    }
                    written.fetch_sub(taken, Ordering::AcqRel);
                }
                let _ = done_tx.send(());
            })
            .expect("a thread can be started");
        Self {
            queue,
            in_flight,
            done,
        }
    }

    /// Queues output, waiting while the queue is full.
    pub async fn write(&self, bytes: Vec<u8>) -> Result<(), StdoutGone> {
        if bytes.len() <= INLINE_MAX && self.in_flight.load(Ordering::Acquire) == 0 && has_room() {
            return write_all(std::io::stdout().as_fd(), &bytes).map_err(|_| StdoutGone);
        }
        self.in_flight.fetch_add(1, Ordering::AcqRel);
        self.queue.send(bytes).await.map_err(|_| StdoutGone)
    }

    /// Lets everything queued be written, waiting at most `limit` (forever with `None`).
    pub fn finish(self, limit: Option<Duration>) {
        drop(self.queue);
        let _ = match limit {
            Some(limit) => self.done.recv_timeout(limit).map_err(drop),
            None => self.done.recv().map_err(drop),
        };
    }
}

/// Whether stdout can take a write now.
fn has_room() -> bool {
    let stdout = std::io::stdout();
    let mut fds = [rustix::event::PollFd::new(
        &stdout,
        rustix::event::PollFlags::OUT,
    )];
    let zero = rustix::event::Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    matches!(rustix::event::poll(&mut fds, Some(&zero)), Ok(1))
        && fds[0].revents().contains(rustix::event::PollFlags::OUT)
}

/// `write` until everything is out; a descriptor someone made non-blocking is waited on.
fn write_all(fd: std::os::fd::BorrowedFd<'_>, mut bytes: &[u8]) -> std::io::Result<()> {
    while !bytes.is_empty() {
        match rustix::io::write(fd, bytes) {
            Ok(0) => return Err(std::io::ErrorKind::WriteZero.into()),
            Ok(n) => bytes = &bytes[n..],
            Err(rustix::io::Errno::INTR) => {}
            Err(rustix::io::Errno::AGAIN) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

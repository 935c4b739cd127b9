//! The single writer: batches queued writes into one transaction, commits, then replies.

use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use redb::{Database, Durability, ReadableDatabase, WriteTransaction};
use tokio::sync::{mpsc, oneshot};

use crate::{Store, StoreError};

/// Most writes folded into one transaction.
const MAX_BATCH: usize = 1024;
/// Queue depth before writers wait (backpressure instead of unbounded memory).
const QUEUE_DEPTH: usize = 8192;

/// One queued write.
trait Job: Send {
    /// Applies the write. An `Err` is a storage failure and aborts the whole batch; logical
    /// outcomes belong in the job's own result value. A job validates before it writes.
    fn apply(&mut self, txn: &WriteTransaction) -> Result<(), StoreError>;
    /// Delivers the result once the batch committed (or failed).
    fn finish(self: Box<Self>, committed: Result<(), StoreError>);
}

struct Op<T, F> {
    write: Option<F>,
    output: Option<T>,
    reply: oneshot::Sender<Result<T, StoreError>>,
}

impl<T, F> Job for Op<T, F>
where
    T: Send,
    F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send,
{
    fn apply(&mut self, txn: &WriteTransaction) -> Result<(), StoreError> {
        let write = self.write.take().expect("applied once");
        self.output = Some(write(txn)?);
        Ok(())
    }

    fn finish(self: Box<Self>, committed: Result<(), StoreError>) {
        let Op { output, reply, .. } = *self;
        let result = committed.and_then(|()| {
            output.ok_or_else(|| StoreError::Database("write was not applied".into()))
        });
        // The caller may have gone away; the write stands either way.
        let _ = reply.send(result);
    }
}

#[derive(Clone, Debug)]
pub(crate) struct WriterHandle {
    jobs: mpsc::Sender<Box<dyn Job>>,
    /// The writer's own space check, for asking before a write is queued.
    guard: Option<SpaceGuard>,
    thread: Arc<Mutex<Option<JoinHandle<()>>>>,
}

impl std::fmt::Debug for dyn Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

/// Writes are refused while the filesystem holding `dir` has less than `keep` bytes free.
#[derive(Debug, Clone)]
pub(crate) struct SpaceGuard {
    pub dir: std::path::PathBuf,
    pub keep: u64,
}

impl SpaceGuard {
    /// Refuses when too little is free. A filesystem that cannot be asked is let be.
    fn check(&self) -> Result<(), StoreError> {
        let Some(free) = crate::free_space(&self.dir) else {
            return Ok(());
        };
        if free < self.keep {
            Err(StoreError::DiskFull {
                free,
                keep: self.keep,
            })
        } else {
            Ok(())
        }
    }
}

thread_local! {
    /// Set on the writer thread when a batch writes a node record.
    static NODES_TOUCHED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Notes, from inside a write, that a node record changed (see `Store::node_records_shared`).
pub(crate) fn nodes_touched() {
    NODES_TOUCHED.with(|t| t.set(true));
}

/// Told how long each batch's transaction took and how many writes it held (see
/// [`Store::observe_commits`]).
pub type CommitObserver = Box<dyn Fn(std::time::Duration, usize) + Send + Sync>;

/// Where the writer finds its observer, once someone sets one.
#[derive(Clone, Default)]
pub(crate) struct ObserverSlot(Arc<std::sync::OnceLock<CommitObserver>>);

impl std::fmt::Debug for ObserverSlot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverSlot")
            .field("set", &self.0.get().is_some())
            .finish()
    }
}

pub(crate) fn start(
    db: Arc<Database>,
    guard: Option<SpaceGuard>,
    nodes_generation: Arc<std::sync::atomic::AtomicU64>,
    observer: ObserverSlot,
) -> WriterHandle {
    let (jobs, queue) = mpsc::channel(QUEUE_DEPTH);
    let thread = std::thread::Builder::new()
        .name("tether-store-writer".into())
        .spawn({
            let guard = guard.clone();
            move || run(db, guard, queue, &nodes_generation, &observer)
        })
        .expect("spawning the store writer thread");
    WriterHandle {
        jobs,
        guard,
        thread: Arc::new(Mutex::new(Some(thread))),
    }
}

fn run(
    db: Arc<Database>,
    guard: Option<SpaceGuard>,
    mut queue: mpsc::Receiver<Box<dyn Job>>,
    nodes_generation: &std::sync::atomic::AtomicU64,
    observer: &ObserverSlot,
) {
    let mut batch: Vec<Box<dyn Job>> = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = queue.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match queue.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let began = std::time::Instant::now();
        let committed = match guard.as_ref().map_or(Ok(()), SpaceGuard::check) {
            // redb panics on some damage: the batch fails, the writer goes on answering.
            Ok(()) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                apply_batch(&db, &mut batch)
            }))
            .unwrap_or_else(|panic| {
                Err(StoreError::Corrupt(format!(
                    "writing failed ({})",
                    crate::panic_message(&panic)
                )))
            }),
            Err(full) => Err(full),
        };
        if let Some(observe) = observer.0.get() {
            observe(began.elapsed(), batch.len());
        }
        if let Err(e) = &committed {
            tracing::error!(error = %e, jobs = batch.len(), "store batch failed; nothing in it was written");
        }
        // After the commit and before anyone hears of it: a reader that then sees the old
        // generation cannot have read the old records after this batch's answer.
        if NODES_TOUCHED.with(|t| t.replace(false)) {
            nodes_generation.fetch_add(1, std::sync::atomic::Ordering::Release);
        }
        for job in batch.drain(..) {
            job.finish(committed.clone());
        }
    }
}

fn apply_batch(db: &Database, batch: &mut [Box<dyn Job>]) -> Result<(), StoreError> {
    let mut txn = db.begin_write()?;
    txn.set_durability(Durability::Immediate)?;
    for job in batch.iter_mut() {
        job.apply(&txn)?;
    }
    txn.commit()?;
    Ok(())
}

impl WriterHandle {
    /// Stops the writer and waits for its thread, from blocking code.
    pub(crate) fn close_blocking(self) {
        let WriterHandle { jobs, thread, .. } = self;
        drop(jobs);
        let handle = thread.lock().expect("not poisoned").take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    pub(crate) async fn close(self) {
        let WriterHandle { jobs, thread, .. } = self;
        drop(jobs);
        let handle = thread.lock().expect("not poisoned").take();
        if let Some(handle) = handle {
            // Other clones of the store may still hold senders; the thread ends when all are gone.
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
    }
}

impl Store {
    /// Whether a write would be let through now: [`StoreError::DiskFull`] while the disk holds
    /// less than the free space the store keeps (the same check every batch passes), so that
    /// callers can refuse work whose record could not be written.
    pub fn check_room(&self) -> Result<(), StoreError> {
        self.writer.guard.as_ref().map_or(Ok(()), SpaceGuard::check)
    }

    /// Whether the store takes writes now: an empty transaction through the writer, committed
    /// durably like any other (a health check's "store writable"). Errors as any write's.
    pub async fn probe(&self) -> Result<(), StoreError> {
        self.write(|_txn| Ok(())).await
    }

    /// Has `observe` told the duration of every batch's transaction (space check, writes and
    /// durable commit) and its number of writes, from the writer's thread: it must be quick.
    /// Only the first observer set counts; false if one was set already.
    pub fn observe_commits(&self, observe: CommitObserver) -> bool {
        self.commit_observer.0.set(observe).is_ok()
    }

    /// Queues a write and waits until it is committed.
    pub(crate) async fn write<T, F>(&self, write: F) -> Result<T, StoreError>
    where
        T: Send + 'static,
        F: FnOnce(&WriteTransaction) -> Result<T, StoreError> + Send + 'static,
    {
        let (reply, answer) = oneshot::channel();
        let op: Box<dyn Job> = Box::new(Op {
            write: Some(write),
            output: None,
            reply,
        });
        self.writer
            .jobs
            .send(op)
            .await
            .map_err(|_| StoreError::Closed)?;
        answer.await.map_err(|_| StoreError::Closed)?
    }

    /// A read snapshot.
    pub(crate) fn read(&self) -> Result<redb::ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }
}

//! `Writer`: persistence off the request path. Owns one background thread that runs snapshot
//! writes and removals from a bounded queue, in submission order, and reports each outcome back.
//! Does not decide what to persist (the caller does, from `AgentMemory`) and never blocks the
//! submitting thread.

use std::fmt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::{AgentKey, DiskStore, SnapshotHeader};

/// A unit of work for the writer thread.
pub enum WriteJob {
    /// Write (or overwrite) the agent named in `header` with `payload`.
    Write {
        /// Snapshot header; `payload_len` and `header_crc` are computed by the write.
        header: SnapshotHeader,
        /// The engine state bytes; shared with the warm tier, so no copy is made.
        payload: Arc<Vec<u8>>,
        /// The caller's content generation (`AgentMemory::generation`), echoed in the outcome
        /// so outcomes of stale writes can be told apart.
        generation: u64,
    },
    /// Delete the agent's file (a missing file is fine).
    Remove {
        /// The agent.
        key: AgentKey,
    },
    /// Reply once every job queued before this one is done.
    Flush {
        /// Receives `()` when the flush point is reached.
        reply: Sender<()>,
    },
}

impl fmt::Debug for WriteJob {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteJob::Write { header, payload, generation } => f
                .debug_struct("Write")
                .field("key", &header.key())
                .field("tokens", &header.tokens.len())
                .field("payload_bytes", &payload.len())
                .field("generation", generation)
                .finish(),
            WriteJob::Remove { key } => f.debug_struct("Remove").field("key", key).finish(),
            WriteJob::Flush { .. } => f.write_str("Flush"),
        }
    }
}

/// Which kind of job an outcome reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JobKind {
    /// A [`WriteJob::Write`].
    Write,
    /// A [`WriteJob::Remove`].
    Remove,
}

/// The result of one write or removal, polled by the owner through [`Writer::results`].
#[derive(Debug)]
pub struct WriteOutcome {
    /// The agent.
    pub key: AgentKey,
    /// Write or removal.
    pub kind: JobKind,
    /// Bytes written (0 for a removal), or why not.
    pub result: Result<u64, WriteFailure>,
    /// How long the operation took on the writer thread.
    pub elapsed: Duration,
    /// The generation given with the write (0 for a removal).
    pub generation: u64,
}

/// Why a write or removal failed: a closed set, for a bounded metric label.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureReason {
    /// The file system is full (or the quota is reached); freeing space lets writes resume.
    NoSpace,
    /// Any other I/O error (EIO, EACCES, a missing directory, ...).
    Io,
}

impl FailureReason {
    /// The metric label value.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureReason::NoSpace => "no_space",
            FailureReason::Io => "io",
        }
    }
}

/// A failed job: its reason and the error's message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct WriteFailure {
    /// What kind of failure.
    pub reason: FailureReason,
    /// The error, as text (it crosses threads and ends in a log line).
    pub message: String,
}

impl From<crate::MemoryError> for WriteFailure {
    fn from(e: crate::MemoryError) -> Self {
        let reason = if e.is_no_space() { FailureReason::NoSpace } else { FailureReason::Io };
        WriteFailure { reason, message: e.to_string() }
    }
}

/// The queue is full (or the writer thread is gone, when `closed`). The job is handed back so the
/// caller can keep the agent dirty and retry later.
#[derive(Debug, thiserror::Error)]
#[error("snapshot writer {}", if *closed { "has stopped" } else { "queue is full" })]
pub struct WriterBusy {
    /// The job that was not queued.
    pub job: WriteJob,
    /// True when the writer thread has stopped (it will never accept jobs again).
    pub closed: bool,
}

/// What travels on the queue: jobs, plus a test-only stall to make "queue full" deterministic.
enum Msg {
    Job(WriteJob),
    #[cfg(test)]
    Stall {
        started: Sender<()>,
        release: Receiver<()>,
    },
}

/// Handle to the background writer thread. Dropping it runs the jobs still queued, then joins.
pub struct Writer {
    tx: Option<SyncSender<Msg>>,
    results: Receiver<WriteOutcome>,
    handle: Option<JoinHandle<()>>,
    queued: Arc<AtomicUsize>,
}

impl Writer {
    /// Starts the writer thread with a queue of `capacity` jobs (at least 1).
    ///
    /// Panics only if the OS cannot create a thread, like `std::thread::spawn` (start-up only).
    pub fn start(store: Arc<DiskStore>, capacity: usize) -> Writer {
        let (tx, rx) = mpsc::sync_channel(capacity.max(1));
        // Unbounded on purpose: each queued job yields at most one outcome, so this holds no more
        // than the jobs submitted since the owner last polled, and the writer must never block
        // on a slow owner (the owner may be waiting in `flush_blocking`).
        let (out_tx, results) = mpsc::channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&queued);
        let handle = std::thread::Builder::new()
            .name("semantic-writer".into())
            .spawn(move || run(&store, &rx, &out_tx, &counter))
            .expect("invariant: the OS can start one thread at start-up (as std::thread::spawn assumes)");
        Writer { tx: Some(tx), results, handle: Some(handle), queued }
    }

    /// Queues a job without blocking. On a full queue (or a stopped writer) the job comes back.
    // The job is returned by value so the caller can retry it; boxing would cost an allocation
    // on every busy submit for no gain.
    #[allow(clippy::result_large_err)]
    pub fn submit(&self, job: WriteJob) -> Result<(), WriterBusy> {
        self.try_send(Msg::Job(job)).map_err(|(msg, closed)| match msg {
            Msg::Job(job) => WriterBusy { job, closed },
            #[cfg(test)]
            Msg::Stall { .. } => unreachable!("submit only sends jobs"),
        })
    }

    #[allow(clippy::result_large_err)] // as for `submit`
    fn try_send(&self, msg: Msg) -> Result<(), (Msg, bool)> {
        let Some(tx) = &self.tx else { return Err((msg, true)) };
        // Count before sending so the thread's decrement can never run first.
        self.queued.fetch_add(1, Ordering::SeqCst);
        tx.try_send(msg).map_err(|e| {
            self.queued.fetch_sub(1, Ordering::SeqCst);
            match e {
                TrySendError::Full(m) => (m, false),
                TrySendError::Disconnected(m) => (m, true),
            }
        })
    }

    /// Blocks until every job queued before this call is done, or `timeout` passes. Returns
    /// whether the flush point was reached. For shutdown and tests, not for the step loop.
    pub fn flush_blocking(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let (reply, done) = mpsc::channel();
        let mut msg = Msg::Job(WriteJob::Flush { reply });
        loop {
            match self.try_send(msg) {
                Ok(()) => break,
                Err((_, true)) => return false,
                Err((m, false)) => {
                    if Instant::now() >= deadline {
                        return false;
                    }
                    msg = m;
                    std::thread::sleep(Duration::from_millis(1));
                }
            }
        }
        done.recv_timeout(deadline.saturating_duration_since(Instant::now())).is_ok()
    }

    /// Outcomes of finished writes and removals, in completion (= submission) order. Poll with
    /// `results().try_iter()`.
    pub fn results(&self) -> &Receiver<WriteOutcome> {
        &self.results
    }

    /// Jobs queued or running now.
    pub fn pending(&self) -> usize {
        self.queued.load(Ordering::SeqCst)
    }
}

impl Drop for Writer {
    fn drop(&mut self) {
        drop(self.tx.take()); // the thread drains what is queued, then sees the channel closed
        if let Some(handle) = self.handle.take() {
            if handle.join().is_err() {
                tracing::error!("snapshot writer thread panicked");
            }
        }
    }
}

/// The nice value of the writer thread. Its work (checksum, copy into the page cache, fsync) is
/// never urgent, while the engine's compute threads occupy every core during a step and a
/// stalled one stalls the whole step: at the default priority a snapshot written during the next
/// request's prefill slowed that prefill measurably. At 19 it runs when the cores are free.
const WRITER_NICE: libc::c_int = 19;

/// Lowers the calling thread's CPU priority to [`WRITER_NICE`] (Linux: the nice value is per
/// thread). Failure only costs speed, so it is logged and ignored.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: two syscalls about the calling thread; no memory is shared with the kernel.
        let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, WRITER_NICE) };
        if rc != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "cannot lower the writer's priority");
        }
    }
}

/// The writer thread: one job at a time, in order, until the handle is dropped.
fn run(store: &DiskStore, rx: &Receiver<Msg>, out: &Sender<WriteOutcome>, queued: &AtomicUsize) {
    lower_priority();
    while let Ok(msg) = rx.recv() {
        let (outcome, flush_reply) = match msg {
            Msg::Job(WriteJob::Write { header, payload, generation }) => {
                let started = Instant::now();
                let result = store.write(&header, &payload).map_err(WriteFailure::from);
                if let Err(error) = &result {
                    tracing::warn!(agent = %header.key(), %error, reason = error.reason.as_str(), "snapshot write failed");
                }
                let elapsed = started.elapsed();
                (Some(WriteOutcome { key: header.key(), kind: JobKind::Write, result, elapsed, generation }), None)
            }
            Msg::Job(WriteJob::Remove { key }) => {
                let started = Instant::now();
                let result = store.remove(&key).map(|()| 0).map_err(WriteFailure::from);
                let elapsed = started.elapsed();
                (Some(WriteOutcome { key, kind: JobKind::Remove, result, elapsed, generation: 0 }), None)
            }
            Msg::Job(WriteJob::Flush { reply }) => (None, Some(reply)),
            #[cfg(test)]
            Msg::Stall { started, release } => {
                let _ = started.send(());
                let _ = release.recv();
                (None, None)
            }
        };
        // Count the job done before anyone is told, so `pending()` is exact after a flush.
        queued.fetch_sub(1, Ordering::SeqCst);
        if let Some(o) = outcome {
            let _ = out.send(o); // the owner may be gone during shutdown
        }
        if let Some(reply) = flush_reply {
            let _ = reply.send(()); // the flusher may have timed out and gone
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::tests::{header, COMPAT};
    use crate::testutil::TestDir;

    const SECOND: Duration = Duration::from_secs(5);

    fn write_job(agent: &str, tokens: Vec<i32>, generation: u64) -> WriteJob {
        WriteJob::Write { header: header("ns", agent, tokens), payload: Arc::new(vec![1, 2, 3]), generation }
    }

    #[test]
    fn writes_report_outcomes_in_order() {
        let dir = TestDir::new("writer-order");
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let writer = Writer::start(Arc::clone(&store), 8);
        writer.submit(write_job("a", vec![1], 1)).unwrap();
        writer.submit(write_job("a", vec![1, 2], 2)).unwrap();
        writer.submit(write_job("b", vec![3], 3)).unwrap();
        writer.submit(WriteJob::Remove { key: header("ns", "b", vec![]).key() }).unwrap();
        assert!(writer.flush_blocking(SECOND));
        assert_eq!(writer.pending(), 0);
        let outcomes: Vec<_> = writer.results().try_iter().collect();
        let summary: Vec<_> =
            outcomes.iter().map(|o| (o.key.agent.as_str(), o.kind, o.generation, o.result.is_ok())).collect();
        assert_eq!(
            summary,
            vec![
                ("a", JobKind::Write, 1, true),
                ("a", JobKind::Write, 2, true),
                ("b", JobKind::Write, 3, true),
                ("b", JobKind::Remove, 0, true)
            ]
        );
        let (h, _) = store.read(&outcomes[0].key, &COMPAT).unwrap();
        assert_eq!(h.tokens, vec![1, 2], "the later write wins");
        assert!(store.read(&outcomes[2].key, &COMPAT).unwrap_err().is_not_found());
    }

    #[test]
    fn a_full_queue_hands_the_job_back() {
        let dir = TestDir::new("writer-busy");
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let writer = Writer::start(store, 1);
        let (started_tx, started) = mpsc::channel();
        let (release, release_rx) = mpsc::channel();
        assert!(writer.try_send(Msg::Stall { started: started_tx, release: release_rx }).is_ok());
        started.recv_timeout(SECOND).unwrap(); // the thread is now stalled; the queue is empty
        writer.submit(write_job("a", vec![1], 1)).unwrap();
        let busy = writer.submit(write_job("b", vec![2], 2)).unwrap_err();
        assert!(!busy.closed);
        assert!(matches!(busy.job, WriteJob::Write { generation: 2, .. }));
        assert_eq!(busy.to_string(), "snapshot writer queue is full");
        release.send(()).unwrap();
        assert!(writer.flush_blocking(SECOND));
        let keys: Vec<_> = writer.results().try_iter().map(|o| o.key.agent.as_str().to_owned()).collect();
        assert_eq!(keys, vec!["a"]);
    }

    #[test]
    fn a_failed_write_is_reported_not_fatal() {
        let dir = TestDir::new("writer-fail");
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        std::fs::write(dir.path().join("agents/ns"), b"a file where the namespace directory goes").unwrap();
        let writer = Writer::start(store, 4);
        writer.submit(write_job("a", vec![1], 7)).unwrap();
        assert!(writer.flush_blocking(SECOND));
        let o = writer.results().try_recv().unwrap();
        assert_eq!(o.generation, 7);
        assert_eq!(o.result.unwrap_err().reason, FailureReason::Io);
        writer.submit(WriteJob::Remove { key: o.key }).unwrap();
        assert!(writer.flush_blocking(SECOND), "the thread survives a failed job");
    }

    /// Issue 19: a full disk is reported as `NoSpace` (its own metric label), and the writer keeps
    /// working once space is back.
    #[test]
    fn a_full_disk_is_reported_as_no_space() {
        let dir = TestDir::new("writer-full");
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let writer = Writer::start(Arc::clone(&store), 4);
        store.inject(Some(crate::disk::tests::Fault { after: 8, errno: libc::ENOSPC }));
        writer.submit(write_job("a", vec![1], 1)).unwrap();
        assert!(writer.flush_blocking(SECOND));
        let failure = writer.results().try_recv().unwrap().result.unwrap_err();
        assert_eq!(failure.reason, FailureReason::NoSpace, "{failure}");
        store.inject(None);
        writer.submit(write_job("a", vec![1], 2)).unwrap();
        assert!(writer.flush_blocking(SECOND));
        assert!(writer.results().try_recv().unwrap().result.is_ok());
    }

    /// Regression: at the default priority a snapshot written during the next request's prefill
    /// slowed it (hot TTFT at 4K context 407 ms instead of 183 ms).
    #[cfg(target_os = "linux")]
    #[test]
    fn the_writer_thread_runs_at_the_lowest_priority() {
        let nice = std::thread::spawn(|| {
            lower_priority();
            let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap();
            // Fields after the parenthesised name start at field 3; the nice value is field 19.
            let after_name = &stat[stat.rfind(')').unwrap() + 1..];
            after_name.split_whitespace().nth(19 - 3).unwrap().parse::<i32>().unwrap()
        })
        .join()
        .unwrap();
        assert_eq!(nice, WRITER_NICE);
    }

    #[test]
    fn drop_finishes_queued_jobs() {
        let dir = TestDir::new("writer-drop");
        let store = Arc::new(DiskStore::open(dir.path()).unwrap());
        let writer = Writer::start(Arc::clone(&store), 64);
        for i in 0..20 {
            writer.submit(write_job(&format!("a{i}"), vec![i], i as u64)).unwrap();
        }
        drop(writer);
        assert_eq!(store.scan().entries.len(), 20);
    }
}

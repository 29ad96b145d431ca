//! `Scheduler`: the cloneable async handle; `RequestStream`: one request's events.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use semantic_engine::{ContextInfo, Engine, ModelFacts, Tokenizer};
use tokio::sync::{mpsc, oneshot};

use crate::sequence::Sequence;
use crate::step::{Command, State};
use semantic_memory::{AgentInfo, AgentKey, Namespace, Tier};

use crate::admin::{AgentCommand, AgentOpError, FlushReport};
use crate::histogram::Histogram;
use crate::{CacheSource, Event, GenerateRequest, SchedulerConfig, SubmitError};

/// Counters shared between the handle and the step thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_reserved: AtomicUsize,
    pub steps: AtomicU64,
    pub draining: AtomicBool,
    pub memory: Arc<MemoryCounters>,
    pub requests: Arc<RequestCounters>,
}

/// Per-request figures the step thread records as requests finish (for metrics).
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Submission to first token.
    pub time_to_first_token: Histogram,
    /// Gap between consecutive tokens of one stream.
    pub inter_token: Histogram,
    /// Prompt tokens of finished requests.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens computed (not reused).
    pub prefilled_tokens: AtomicU64,
    /// Generated tokens.
    pub generated_tokens: AtomicU64,
    /// Finished requests by reason: [stop, length, stop_string, cancelled, error].
    pub finished: [AtomicU64; 5],
    /// Refused at submission: [queue_full, draining, context_overflow, invalid].
    pub rejected: [AtomicU64; 4],
}

impl RequestCounters {
    /// Labels of `finished`.
    pub const FINISH_REASONS: [&'static str; 5] = ["stop", "length", "stop_string", "cancelled", "error"];
    /// Labels of `rejected`.
    pub const REJECT_REASONS: [&'static str; 4] = ["queue_full", "draining", "context_overflow", "invalid"];
}

/// Agent-memory counters and gauges, written by the step thread and the writer, read for metrics.
#[derive(Debug, Default)]
pub(crate) struct MemoryCounters {
    pub hot: AtomicUsize,
    pub warm: AtomicUsize,
    pub cold: AtomicUsize,
    pub warm_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    /// Lookups: [miss, hot, warm, cold].
    lookups: [AtomicU64; 4],
    /// Reused prompt tokens: [hot, warm, disk, shared_prefix].
    reused_tokens: [AtomicU64; 4],
    /// Evictions out of: [hot, warm, disk].
    evictions: [AtomicU64; 3],
    /// Rejected files: [corrupt, version, foreign, import, io].
    rejected: [AtomicU64; 5],
    persists: AtomicU64,
    persist_micros: AtomicU64,
    persist_failures: AtomicU64,
}

const REJECT_REASONS: [&str; 5] = ["corrupt", "version", "foreign", "import", "io"];
const SOURCES: [CacheSource; 4] = [CacheSource::Hot, CacheSource::Warm, CacheSource::Disk, CacheSource::SharedPrefix];

impl MemoryCounters {
    pub fn looked_up(&self, tier: Option<Tier>) {
        let i = match tier {
            None => 0,
            Some(Tier::Hot) => 1,
            Some(Tier::Warm) => 2,
            Some(Tier::Cold) => 3,
        };
        self.lookups[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reused(&self, source: CacheSource, tokens: usize) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        self.reused_tokens[i].fetch_add(tokens as u64, Ordering::Relaxed);
    }

    pub fn evicted(&self, from: &str) {
        let i = match from {
            "hot" => 0,
            "warm" => 1,
            _ => 2,
        };
        self.evictions[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: &str) {
        let i = REJECT_REASONS.iter().position(|r| *r == reason).unwrap_or(4);
        self.rejected[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn persisted(&self, elapsed: Duration) {
        self.persists.fetch_add(1, Ordering::Relaxed);
        self.persist_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn persist_failed(&self) {
        self.persist_failures.fetch_add(1, Ordering::Relaxed);
    }

    fn snapshot(&self) -> MemoryStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemoryStats {
            hot: self.hot.load(Ordering::Relaxed),
            warm: self.warm.load(Ordering::Relaxed),
            cold: self.cold.load(Ordering::Relaxed),
            warm_bytes: load(&self.warm_bytes),
            disk_bytes: load(&self.disk_bytes),
            lookups: [("miss", 0), ("hot", 1), ("warm", 2), ("cold", 3)].map(|(n, i)| (n, load(&self.lookups[i]))),
            reused_tokens: [0, 1, 2, 3].map(|i| (SOURCES[i].as_str(), load(&self.reused_tokens[i]))),
            evictions: [("hot", 0), ("warm", 1), ("disk", 2)].map(|(n, i)| (n, load(&self.evictions[i]))),
            rejected_files: [0, 1, 2, 3, 4].map(|i| (REJECT_REASONS[i], load(&self.rejected[i]))),
            persists: load(&self.persists),
            persist_seconds: load(&self.persist_micros) as f64 / 1e6,
            persist_failures: load(&self.persist_failures),
        }
    }
}

/// Agent memory figures for health and metrics (labels are fixed, bounded sets).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStats {
    /// Agents per tier.
    pub hot: usize,
    /// Agents held as bytes in RAM.
    pub warm: usize,
    /// Agents on disk only.
    pub cold: usize,
    /// RAM used by warm agents.
    pub warm_bytes: u64,
    /// Disk used by agent files.
    pub disk_bytes: u64,
    /// Memory lookups by the tier that answered (`miss` = nothing stored for the named agent).
    pub lookups: [(&'static str, u64); 4],
    /// Prompt tokens reused, by source.
    pub reused_tokens: [(&'static str, u64); 4],
    /// Evictions by the tier left.
    pub evictions: [(&'static str, u64); 3],
    /// Agent files refused, by reason.
    pub rejected_files: [(&'static str, u64); 5],
    /// Completed persists.
    pub persists: u64,
    /// Total seconds spent writing agent files.
    pub persist_seconds: f64,
    /// Failed persists.
    pub persist_failures: u64,
}

/// A point-in-time view of the scheduler, for health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerStats {
    /// Requests accepted but not yet running.
    pub queued: usize,
    /// Requests decoding.
    pub running: usize,
    /// KV cells reserved by running requests.
    pub kv_reserved: usize,
    /// KV cells in the context.
    pub kv_capacity: usize,
    /// Engine steps so far.
    pub steps: u64,
    /// True once a drain started.
    pub draining: bool,
    /// Admission queue bound.
    pub queue_capacity: usize,
}

/// Why the step thread could not start.
#[derive(Debug)]
pub enum SpawnError<E> {
    /// The thread could not be created.
    Io(std::io::Error),
    /// The engine factory failed.
    Engine(E),
}

impl<E: std::fmt::Display> std::fmt::Display for SpawnError<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SpawnError::Io(e) => write!(f, "cannot start the step thread: {e}"),
            SpawnError::Engine(e) => write!(f, "{e}"),
        }
    }
}

impl<E: std::fmt::Debug + std::fmt::Display> std::error::Error for SpawnError<E> {}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests that finished during the drain.
    pub completed: usize,
    /// Requests cut at the deadline (they got a `Cancelled` finish).
    pub cut: usize,
}

struct Inner {
    tx: mpsc::Sender<Command>,
    shared: Arc<Shared>,
    facts: ModelFacts,
    context: ContextInfo,
    tokenizer: Arc<dyn Tokenizer>,
    config: SchedulerConfig,
    thread: Mutex<Option<JoinHandle<()>>>,
}

/// Handle on the step thread. Cheap to clone; the thread ends when every handle is dropped and
/// its work is done.
#[derive(Clone)]
pub struct Scheduler {
    inner: Arc<Inner>,
}

/// The events of one request. Dropping it cancels the request at the next step.
pub struct RequestStream {
    rx: mpsc::UnboundedReceiver<Event>,
}

impl RequestStream {
    /// Next event; `None` after `Done`.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }

    /// Next event, blocking the current (non-async) thread.
    pub fn blocking_recv(&mut self) -> Option<Event> {
        self.rx.blocking_recv()
    }
}

impl Scheduler {
    /// Moves `engine` onto a new step thread and returns the handle.
    pub fn start<E: Engine + 'static>(engine: E, config: SchedulerConfig) -> std::io::Result<Self> {
        Self::spawn(move || Ok::<E, std::convert::Infallible>(engine), config).map_err(|e| match e {
            SpawnError::Io(e) => e,
            SpawnError::Engine(never) => match never {},
        })
    }

    /// Creates the engine on a new step thread (so the thread that decodes is the one that loaded
    /// the model and warmed up its thread pool) and returns the handle once it is ready.
    pub fn spawn<E, F, Err>(make_engine: F, config: SchedulerConfig) -> Result<Self, SpawnError<Err>>
    where
        E: Engine + 'static,
        F: FnOnce() -> Result<E, Err> + Send + 'static,
        Err: Send + 'static,
    {
        let shared = Arc::new(Shared::default());
        // The command channel bounds memory; admission itself is bounded by `queue_capacity`.
        let (tx, rx) = mpsc::channel(config.queue_capacity + 16);
        let (ready_tx, ready_rx) = std::sync::mpsc::sync_channel(1);
        let thread_shared = Arc::clone(&shared);
        let thread_config = config.clone();
        let thread = std::thread::Builder::new()
            .name("semantic-step".into())
            .spawn(move || {
                let engine = match make_engine() {
                    Ok(engine) => engine,
                    Err(err) => {
                        let _ = ready_tx.send(Err(err));
                        return;
                    }
                };
                let ready = (engine.facts().clone(), engine.context(), engine.tokenizer());
                let state = State::new(engine, thread_config, thread_shared);
                if ready_tx.send(Ok(ready)).is_ok() {
                    state.run(rx);
                }
            })
            .map_err(SpawnError::Io)?;
        let (facts, context, tokenizer) = match ready_rx.recv() {
            Ok(Ok(ready)) => ready,
            Ok(Err(err)) => {
                let _ = thread.join();
                return Err(SpawnError::Engine(err));
            }
            Err(_) => {
                let _ = thread.join();
                return Err(SpawnError::Io(std::io::Error::other("the step thread died while loading the engine")));
            }
        };
        Ok(Self {
            inner: Arc::new(Inner { tx, shared, facts, context, tokenizer, config, thread: Mutex::new(Some(thread)) }),
        })
    }

    /// Model facts.
    pub fn facts(&self) -> &ModelFacts {
        &self.inner.facts
    }

    /// Context parameters.
    pub fn context(&self) -> ContextInfo {
        self.inner.context
    }

    /// The tokenizer, usable from any thread.
    pub fn tokenizer(&self) -> &Arc<dyn Tokenizer> {
        &self.inner.tokenizer
    }

    /// Most tokens (prompt + completion) one request may use: its sequence's own KV stream,
    /// and never more than the model was trained for.
    pub fn max_sequence_tokens(&self) -> usize {
        self.inner.context.n_ctx_seq.min(self.inner.facts.n_ctx_train) as usize
    }

    /// Queues a request. Fails at once, queuing nothing, when it cannot be served.
    pub fn submit(&self, request: GenerateRequest) -> Result<RequestStream, SubmitError> {
        let result = self.try_submit(request);
        if let Err(err) = &result {
            let i = match err {
                SubmitError::QueueFull { .. } => 0,
                SubmitError::Draining => 1,
                SubmitError::ContextOverflow { .. } => 2,
                SubmitError::Invalid { .. } => 3,
            };
            self.inner.shared.requests.rejected[i].fetch_add(1, Ordering::Relaxed);
        }
        result
    }

    fn try_submit(&self, request: GenerateRequest) -> Result<RequestStream, SubmitError> {
        if request.prompt.is_empty() {
            return Err(SubmitError::Invalid { reason: "the prompt is empty".into() });
        }
        if request.max_tokens == 0 {
            return Err(SubmitError::Invalid { reason: "max_tokens must be at least 1".into() });
        }
        let limit = self.max_sequence_tokens();
        if request.prompt.len() + request.max_tokens > limit {
            return Err(SubmitError::ContextOverflow {
                prompt: request.prompt.len(),
                max_tokens: request.max_tokens,
                limit,
            });
        }
        let shared = &self.inner.shared;
        if shared.draining.load(Ordering::Acquire) {
            return Err(SubmitError::Draining);
        }
        let queued = shared.queued.fetch_add(1, Ordering::AcqRel);
        if queued >= self.inner.config.queue_capacity {
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            return Err(SubmitError::QueueFull { queued });
        }
        // Unbounded on purpose: the step thread must never block on a slow client; a stream holds
        // at most max_tokens + 1 events.
        let (events, rx) = mpsc::unbounded_channel();
        let seq = Sequence::new(request, events, Arc::clone(&shared.requests));
        match self.inner.tx.try_send(Command::Submit(Box::new(seq))) {
            Ok(()) => Ok(RequestStream { rx }),
            Err(mpsc::error::TrySendError::Full(_)) => {
                shared.queued.fetch_sub(1, Ordering::AcqRel);
                Err(SubmitError::QueueFull { queued })
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                shared.queued.fetch_sub(1, Ordering::AcqRel);
                Err(SubmitError::Draining)
            }
        }
    }

    /// Stops admission, lets running and queued requests finish until `timeout`, then cuts the rest.
    pub async fn drain(&self, timeout: Duration) -> DrainReport {
        self.inner.shared.draining.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        let deadline = Instant::now() + timeout;
        if self.inner.tx.send(Command::Drain { deadline, reply }).await.is_err() {
            return DrainReport::default();
        }
        done.await.unwrap_or_default()
    }

    /// True once a drain started.
    pub fn is_draining(&self) -> bool {
        self.inner.shared.draining.load(Ordering::Acquire)
    }

    /// Current counters.
    pub fn stats(&self) -> SchedulerStats {
        let s = &self.inner.shared;
        SchedulerStats {
            queued: s.queued.load(Ordering::Relaxed),
            running: s.running.load(Ordering::Relaxed),
            kv_reserved: s.kv_reserved.load(Ordering::Relaxed),
            kv_capacity: self.inner.context.n_ctx as usize,
            steps: s.steps.load(Ordering::Relaxed),
            draining: s.draining.load(Ordering::Relaxed),
            queue_capacity: self.inner.config.queue_capacity,
        }
    }

    /// Request figures (latency histograms, token counters).
    pub fn request_counters(&self) -> &RequestCounters {
        &self.inner.shared.requests
    }

    /// Agent memory figures.
    pub fn memory_stats(&self) -> MemoryStats {
        self.inner.shared.memory.snapshot()
    }

    async fn agent_call<T>(&self, make: impl FnOnce(oneshot::Sender<T>) -> AgentCommand) -> Option<T> {
        let (reply, rx) = oneshot::channel();
        self.inner.tx.send(Command::Agents(make(reply))).await.ok()?;
        rx.await.ok()
    }

    /// Agents of a namespace.
    pub async fn list_agents(&self, namespace: Namespace) -> Vec<AgentInfo> {
        self.agent_call(|reply| AgentCommand::List { namespace, reply }).await.unwrap_or_default()
    }

    /// One agent.
    pub async fn agent(&self, key: AgentKey) -> Option<AgentInfo> {
        self.agent_call(|reply| AgentCommand::Get { key, reply }).await.flatten()
    }

    /// Deletes an agent everywhere.
    pub async fn delete_agent(&self, key: AgentKey) -> Result<(), AgentOpError> {
        self.agent_call(|reply| AgentCommand::Delete { key, reply }).await.unwrap_or(Err(AgentOpError::NotFound))
    }

    /// Moves an agent to disk now.
    pub async fn evict_agent(&self, key: AgentKey) -> Result<AgentInfo, AgentOpError> {
        self.agent_call(|reply| AgentCommand::Evict { key, reply }).await.unwrap_or(Err(AgentOpError::NotFound))
    }

    /// Pins or unpins an agent.
    pub async fn pin_agent(&self, key: AgentKey, pinned: bool) -> Result<AgentInfo, AgentOpError> {
        self.agent_call(|reply| AgentCommand::Pin { key, pinned, reply }).await.unwrap_or(Err(AgentOpError::NotFound))
    }

    /// Persists every dirty agent.
    pub async fn flush_agents(&self) -> FlushReport {
        self.agent_call(|reply| AgentCommand::Flush { reply }).await.unwrap_or_default()
    }

    /// Deletes all agents of a namespace (or all).
    pub async fn clear_agents(&self, namespace: Option<Namespace>) -> usize {
        self.agent_call(|reply| AgentCommand::Clear { namespace, reply }).await.unwrap_or(0)
    }

    /// Waits for the step thread to end (after every other handle is dropped). Idempotent.
    pub fn join(self) {
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        drop(self);
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }
}

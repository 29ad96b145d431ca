//! `Scheduler`: the cloneable async handle; `RequestStream`: one request's events.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use semantic_engine::{ContextInfo, Engine, ModelFacts, Tokenizer};
use tokio::sync::{mpsc, oneshot};

use crate::sequence::Sequence;
use crate::step::{Command, State};
use semantic_memory::{AgentInfo, AgentKey, Namespace};

use crate::admin::{AgentCommand, AgentOpError, AgentSnapshot, FlushReport};
use crate::counters::{DrainReport, MemoryStats, RequestCounters, SchedulerStats, Shared};
use crate::{Event, GenerateRequest, SchedulerConfig, SubmitError};

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

    /// The agent memory budgets this scheduler keeps: warm RAM and disk bytes.
    pub fn memory_budgets(&self) -> (u64, u64) {
        (self.inner.config.memory.warm_bytes, self.inner.config.memory.disk_bytes)
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

    /// An agent's current content as its file would hold it (from the engine, RAM or disk).
    pub async fn export_agent(&self, key: AgentKey) -> Result<AgentSnapshot, AgentOpError> {
        self.agent_call(|reply| AgentCommand::Export { key, reply }).await.unwrap_or(Err(AgentOpError::NotFound))
    }

    /// Takes an exported agent (same model and KV layout) as a warm agent, written to disk by the
    /// usual persistence; `replace` overwrites an agent of that name.
    pub async fn import_agent(&self, snapshot: AgentSnapshot, replace: bool) -> Result<AgentInfo, AgentOpError> {
        let call = self.agent_call(|reply| AgentCommand::Import { snapshot, replace, reply });
        call.await.unwrap_or(Err(AgentOpError::NotFound))
    }

    /// Persists every dirty agent.
    pub async fn flush_agents(&self) -> FlushReport {
        self.agent_call(|reply| AgentCommand::Flush { reply }).await.unwrap_or_default()
    }

    /// Deletes all agents of a namespace (or all).
    pub async fn clear_agents(&self, namespace: Option<Namespace>) -> usize {
        self.agent_call(|reply| AgentCommand::Clear { namespace, reply }).await.unwrap_or(0)
    }

    /// Ends the step thread even while other handles remain (a model swap): waits until no
    /// request runs or waits (drain first, or this waits for them), persists every dirty agent,
    /// then joins the thread, which frees the engine and its model. Later submissions fail with
    /// `Draining`. Idempotent.
    pub async fn stop(&self) {
        self.inner.shared.draining.store(true, Ordering::Release);
        let (reply, done) = oneshot::channel();
        if self.inner.tx.send(Command::Stop { reply }).await.is_ok() {
            let _ = done.await;
        }
        let handle = self.inner.thread.lock().ok().and_then(|mut t| t.take());
        if let Some(handle) = handle {
            let _ = tokio::task::spawn_blocking(move || handle.join()).await;
        }
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

//! `Agents`: agent memory as the step thread sees it. Finds reusable KV for a prompt, moves agents
//! between tiers with engine operations (export, import, truncate, copy), and persists them off the
//! request path through the background writer. Decisions and accounting live in `semantic-memory`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use semantic_engine::{Engine, SeqId, TokenId};
use semantic_memory::{
    AgentKey, AgentMemory, Budgets, Compat, DiskStore, Eviction, Lookup, MasterKey, SnapshotHeader, Tier, WriteJob,
    Writer,
};

use crate::admin::{AgentOpError, AgentSnapshot};
use crate::backoff::WriteBackoff;
use crate::counters::{Evicted, MemoryCounters, PersistFailure, Rejection};
use crate::CacheSource;

/// How often an idle step thread looks for the outcome of a write in flight, milliseconds.
const WRITE_POLL_MS: u64 = 20;

/// What [`Agents::persist_idle`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Persist {
    /// Exported (if hot) and handed one agent to the writer.
    Wrote,
    /// Dirty agents exist but none has been idle long enough: ask again after this long.
    Wait(Duration),
    /// Nothing to persist.
    Nothing,
}

/// Where and how much agent memory to keep.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemoryConfig {
    /// Directory for cold files (None = no disk tier: memory is lost on restart).
    pub dir: Option<PathBuf>,
    /// Budget for exported states kept in RAM.
    pub warm_bytes: u64,
    /// Budget for files on disk.
    pub disk_bytes: u64,
    /// A dirty agent is persisted once it has been idle this long (and no request runs): an agent
    /// whose next turn comes quickly is not exported and written while that turn prefills, which
    /// on a few cores slows it severely. Shutdown flushes every dirty agent regardless.
    pub persist_after_idle: Duration,
    /// The longest a finished turn waits for disk while the server never goes idle: past it, a
    /// dirty agent no request is using is exported between two steps (a stall of one export) and
    /// written in the background. Bounds what a crash under steady load loses.
    pub persist_within: Duration,
    /// Encryption at rest: agent files are written sealed under this master key, and encrypted
    /// files are opened with it (None = plaintext files; encrypted ones are rejected as `key`).
    pub encryption_key: Option<MasterKey>,
}

impl Default for MemoryConfig {
    fn default() -> Self {
        Self {
            dir: None,
            warm_bytes: 1024 << 20,
            disk_bytes: 20 << 30,
            persist_after_idle: Duration::ZERO,
            persist_within: Duration::from_secs(5),
            encryption_key: None,
        }
    }
}

/// Milliseconds since the Unix epoch: the clock of agent timestamps (`created_ms`, `updated_ms`,
/// `last_used_ms`). The binary's offline tools use it too, so every timestamp comes from one place.
pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

/// How a request was placed in the engine.
pub(crate) struct Placement {
    pub seq: SeqId,
    pub cached: usize,
    pub source: Option<CacheSource>,
}

/// Agent memory on the step thread. Owns which agents have a request running (`in_use`): those
/// are never evicted, exported or offered as a prefix, and only these methods change the set.
pub(crate) struct Agents {
    memory: AgentMemory,
    disk: Option<Arc<DiskStore>>,
    writer: Option<Writer>,
    compat: Compat,
    n_ctx: u32,
    /// Agents with a request running (their sequence belongs to that request).
    in_use: HashSet<AgentKey>,
    /// When each dirty agent's oldest change not yet on disk was made (unix millis): what
    /// [`Agents::persist_overdue`] bounds.
    dirty_since: HashMap<AgentKey, u64>,
    /// When agents whose writes failed may be tried again.
    backoff: WriteBackoff,
    counters: Arc<MemoryCounters>,
}

impl Agents {
    pub fn open(
        config: &MemoryConfig,
        compat: Compat,
        n_ctx: u32,
        hot_sequences: usize,
        counters: Arc<MemoryCounters>,
    ) -> Self {
        let budgets = Budgets { warm_bytes: config.warm_bytes, disk_bytes: config.disk_bytes, hot_sequences };
        let mut memory = AgentMemory::new(budgets);
        let mut disk = None;
        let mut writer = None;
        if let Some(dir) = &config.dir {
            let root = semantic_memory::model_root(dir, &compat.fingerprint);
            match DiskStore::open(&root).map(|s| s.with_key(config.encryption_key.clone())) {
                Ok(store) => {
                    semantic_memory::adopt_legacy(dir, &store, &compat);
                    let started = Instant::now();
                    let report = store.scan();
                    if report.plaintext > 0 {
                        tracing::warn!(
                            files = report.plaintext,
                            "plaintext agent files under an encryption key: served, and written encrypted on their next save (or run `semantic cache rekey --from-plaintext`)"
                        );
                    }
                    for (path, err) in &report.rejected {
                        counters.rejected(Rejection::of(err));
                        tracing::warn!(path = %path.display(), %err, "agent file rejected; it will not be served");
                    }
                    let entries: Vec<_> = report
                        .entries
                        .into_iter()
                        .filter(|(h, _)| match compat.mismatch(h) {
                            None => true,
                            Some(reason) => {
                                counters.rejected(Rejection::Foreign);
                                tracing::warn!(
                                    agent = h.agent.as_str(),
                                    reason,
                                    "agent file made by another model or KV type; not served"
                                );
                                false
                            }
                        })
                        .collect();
                    tracing::info!(
                        agents = entries.len(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "agent index loaded"
                    );
                    memory.load_index(entries);
                    let store = Arc::new(store);
                    writer = Some(Writer::start(Arc::clone(&store), 256));
                    disk = Some(store);
                }
                Err(err) => {
                    tracing::error!(%err, dir = %dir.display(), "cannot open the agent store; memory will not persist")
                }
            }
        }
        let (in_use, dirty_since, backoff) = (HashSet::new(), HashMap::new(), WriteBackoff::default());
        Self { memory, disk, writer, compat, n_ctx, in_use, dirty_since, backoff, counters }
    }

    /// The tiers, budgets and index (read-only; changes go through the methods below).
    pub fn memory(&self) -> &AgentMemory {
        &self.memory
    }

    /// True while a request runs on `key`.
    pub fn in_use(&self, key: &AgentKey) -> bool {
        self.in_use.contains(key)
    }

    /// Marks `key` as having a request running; false if it already had.
    pub fn claim(&mut self, key: &AgentKey) -> bool {
        self.in_use.insert(key.clone())
    }

    /// Ends [`Agents::claim`].
    pub fn unclaim(&mut self, key: &AgentKey) {
        self.in_use.remove(key);
    }

    /// Records that `key`'s KV (exactly `tokens`) lives in engine sequence `seq`.
    pub fn set_hot(&mut self, key: AgentKey, seq: SeqId, tokens: Vec<TokenId>, now_ms: u64) {
        self.memory.set_hot(key.clone(), seq, tokens, now_ms);
        if self.memory.get(&key).is_some_and(|i| i.dirty) {
            self.dirty_since.entry(key).or_insert(now_ms);
        }
    }

    /// Pins or unpins an agent; false if unknown.
    pub fn pin(&mut self, key: &AgentKey, pinned: bool) -> bool {
        self.memory.pin(key, pinned)
    }

    /// Decides where reusable KV for `prompt` is.
    pub fn lookup(&self, key: &AgentRefKey, prompt: &[TokenId]) -> Lookup {
        self.memory.lookup(&key.0, key.1.as_ref(), prompt)
    }

    /// Loads an agent's state into `seq` from RAM or disk. Returns false (and forgets a bad file) when it cannot.
    pub fn restore<E: Engine>(&mut self, engine: &mut E, key: &AgentKey, tier: Tier, seq: SeqId) -> bool {
        // A file's payload is imported straight from its read buffer; warm bytes stay shared.
        let cold;
        let warm;
        let bytes: &[u8] = match tier {
            Tier::Warm => match self.memory.warm_bytes(key) {
                Some(bytes) => {
                    warm = bytes;
                    &warm
                }
                None => return false,
            },
            Tier::Cold => {
                let Some(disk) = &self.disk else { return false };
                match disk.read(key, &self.compat) {
                    Ok((header, payload)) if Some(header.tokens.as_slice()) == self.memory.tokens(key) => {
                        cold = payload;
                        &cold
                    }
                    Ok(_) => {
                        tracing::warn!(
                            agent = key.agent.as_str(),
                            "agent file does not hold the indexed tokens; running cold"
                        );
                        self.memory.remove(key);
                        return false;
                    }
                    Err(err) => {
                        self.counters.rejected(Rejection::of(&err));
                        tracing::warn!(agent = key.agent.as_str(), %err, "agent file rejected; running cold");
                        if let Some(path) = err.reject_reason().and(Some(disk.path_for(key))) {
                            let _ = disk.quarantine(&path);
                        }
                        self.memory.remove(key);
                        return false;
                    }
                }
            }
            Tier::Hot => return false,
        };
        let started = Instant::now();
        let imported = engine.import_state(seq, bytes);
        tracing::debug!(bytes = bytes.len(), ms = started.elapsed().as_secs_f64() * 1e3, "state imported");
        match imported {
            Ok(()) => true,
            Err(err) => {
                self.counters.rejected(Rejection::Import);
                tracing::warn!(agent = key.agent.as_str(), %err, "stored state did not import; running cold");
                let _ = engine.kv_truncate(seq, 0);
                false
            }
        }
    }

    /// Exports a hot agent to RAM and frees its sequence. Returns the sequence and the tokens it held.
    pub fn demote_hot<E: Engine>(&mut self, engine: &mut E, key: &AgentKey) -> Option<(SeqId, usize)> {
        let info = self.memory.get(key)?.clone();
        let seq = info.seq?;
        let started = Instant::now();
        match engine.export_state(seq) {
            Ok(bytes) => {
                self.memory.set_warm(key, Arc::new(bytes), now_ms());
                self.counters.evicted(Evicted::Hot);
            }
            Err(err) => {
                tracing::warn!(agent = key.agent.as_str(), %err, "cannot export an agent; dropping its hot copy");
                self.forget_hot(key);
            }
        }
        let _ = engine.kv_truncate(seq, 0);
        tracing::debug!(agent = key.agent.as_str(), ms = started.elapsed().as_millis() as u64, "agent demoted to warm");
        Some((seq, info.tokens))
    }

    /// The least recently used hot agent no request is using (never a pinned one).
    pub fn lru_idle_hot(&self) -> Option<AgentKey> {
        self.memory.lru_hot(&self.in_use)
    }

    /// Forgets an agent's in-memory copies after a failed turn; its file, if any, stays indexed.
    pub fn forget(&mut self, key: &AgentKey) {
        self.forget_hot(key);
    }

    /// Deletes an agent in every tier, its file included (its hot sequence must already be freed).
    pub fn delete(&mut self, key: &AgentKey) {
        self.memory.remove(key);
        self.dirty_since.remove(key);
        self.backoff.cleared(key);
        if let Some(writer) = &self.writer {
            let _ = writer.submit(WriteJob::Remove { key: key.clone() });
        }
    }

    /// The agent's current content as its file would hold it: the state from the engine (hot),
    /// RAM (warm) or its verified file (cold, read here). Changes nothing.
    pub fn snapshot<E: Engine>(&self, engine: &E, key: &AgentKey) -> Result<AgentSnapshot, AgentOpError> {
        let info = self.memory.get(key).ok_or(AgentOpError::NotFound)?;
        let unreadable = |reason: String| AgentOpError::Unreadable { reason };
        let payload = match (info.tier, info.seq) {
            (Tier::Hot, Some(seq)) => engine.export_state(seq).map_err(|e| unreadable(e.to_string()))?,
            (Tier::Warm, _) => self.memory.warm_bytes(key).map(|b| b.to_vec()).ok_or(AgentOpError::NotFound)?,
            _ => {
                let disk = self.disk.as_ref().ok_or(AgentOpError::NotFound)?;
                let (header, payload) = disk.read(key, &self.compat).map_err(|e| unreadable(e.to_string()))?;
                return Ok(AgentSnapshot { header, payload: payload.to_vec() });
            }
        };
        let header = self.memory.snapshot_header(key, &self.compat, self.n_ctx).ok_or(AgentOpError::NotFound)?;
        Ok(AgentSnapshot { header, payload })
    }

    /// Whether a file with `header` can be served here (same model and state layout).
    pub fn compatible(&self, header: &SnapshotHeader) -> Result<(), AgentOpError> {
        match self.compat.mismatch(header) {
            None => Ok(()),
            Some(reason) => Err(AgentOpError::Incompatible { reason: reason.to_owned() }),
        }
    }

    /// Takes an exported agent of this model and layout as a warm, dirty agent; the usual
    /// persistence writes it. The caller has freed any sequence of an agent it replaces.
    pub fn adopt(&mut self, snapshot: AgentSnapshot) -> Result<semantic_memory::AgentInfo, AgentOpError> {
        self.compatible(&snapshot.header)?;
        let key = snapshot.header.key();
        self.dirty_since.insert(key.clone(), now_ms());
        self.backoff.cleared(&key);
        Ok(self.memory.adopt(&snapshot.header, Arc::new(snapshot.payload)))
    }

    /// Writes a warm agent to disk now and waits for it (admin "evict").
    pub fn demote_to_disk(&mut self, key: &AgentKey) -> Result<(), String> {
        if self.writer.is_none() {
            return Err("no cache directory is configured".into());
        }
        if self.memory.get(key).is_some_and(|i| i.tier == Tier::Warm) {
            self.demote_warm(key);
        }
        let flushed = self.writer.as_ref().is_some_and(|w| w.flush_blocking(Duration::from_secs(30)));
        self.poll_writes();
        // Written and confirmed: now the RAM copy can go.
        if self.memory.get(key).is_some_and(|i| i.tier == Tier::Warm && !i.dirty) && self.memory.set_cold(key) {
            self.counters.evicted(Evicted::Warm);
        }
        match self.memory.get(key) {
            Some(info) if info.tier == Tier::Cold && flushed => Ok(()),
            Some(_) => Err("the write did not complete".into()),
            None => Err("the write failed".into()),
        }
    }

    /// Drops the hot copy; a disk copy, if any, stays indexed.
    fn forget_hot(&mut self, key: &AgentKey) {
        self.memory.remove(key);
        if let Some(disk) = &self.disk {
            if let Ok((header, len)) = semantic_memory::read_header(&disk.path_for(key), disk.key()) {
                if self.compat.mismatch(&header).is_none() {
                    self.memory.load_index(vec![(header, len)]);
                }
            }
        }
    }

    /// Applies the warm/cold budget moves and returns the keys whose hot sequences must be
    /// demoted (to warm) or dropped (forgotten), which need the engine.
    pub fn plan_budgets(&mut self, free_seqs_needed: usize) -> Vec<Eviction> {
        let mut hot_work = Vec::new();
        for eviction in self.memory.plan_evictions(&self.in_use, free_seqs_needed) {
            let tier = self.memory.get(eviction_key(&eviction)).map(|i| i.tier);
            match (eviction, tier) {
                (e @ Eviction::Demote { to: Tier::Warm, .. }, _) => hot_work.push(e),
                (e @ Eviction::DeleteFile { .. }, Some(Tier::Hot)) => hot_work.push(e),
                (Eviction::Demote { key, to: Tier::Cold }, _) => self.demote_warm(&key),
                (Eviction::DeleteFile { key }, _) => {
                    self.delete(&key);
                    self.counters.evicted(Evicted::Disk);
                }
                (Eviction::Demote { .. }, _) => {}
            }
        }
        hot_work
    }

    /// Warm to cold: a clean agent just drops its RAM copy; a dirty one is written first and stays
    /// warm until the writer confirms (so a request never reads an older file than memory says).
    fn demote_warm(&mut self, key: &AgentKey) {
        let Some(info) = self.memory.get(key).cloned() else { return };
        if self.writer.is_none() {
            self.memory.remove(key);
            self.counters.evicted(Evicted::Warm);
            return;
        }
        if !info.dirty {
            if self.memory.set_cold(key) {
                self.counters.evicted(Evicted::Warm);
            }
            return;
        }
        if info.writing || self.backoff.wait_ms(key, now_ms()) > 0 {
            return;
        }
        let Some(bytes) = self.memory.warm_bytes(key) else { return };
        let Some(header) = self.memory.snapshot_header(key, &self.compat, self.n_ctx) else { return };
        let generation = self.memory.generation(key);
        if self.submit_write(header, bytes, generation) {
            self.memory.mark_writing(key, generation);
        }
    }

    fn submit_write(&mut self, header: SnapshotHeader, payload: Arc<Vec<u8>>, generation: u64) -> bool {
        let Some(writer) = &self.writer else { return false };
        writer.submit(WriteJob::Write { header, payload, generation }).is_ok()
    }

    /// Persists one dirty agent that no request is using and whose oldest unwritten change is at
    /// least `within` old, even though requests run (called between steps). Returns how long the
    /// export stalled the step thread, if it persisted one.
    pub fn persist_overdue<E: Engine>(&mut self, engine: &E, within: Duration) -> Option<Duration> {
        self.writer.as_ref()?;
        let now = now_ms();
        let within_ms = within.as_millis() as u64;
        let due = |k: &AgentKey| !self.in_use.contains(k) && self.backoff.wait_ms(k, now) == 0;
        let key = self.memory.dirty().into_iter().filter(|k| due(k)).find(|k| {
            let since = self.dirty_since.get(k).copied().or_else(|| self.memory.get(k).map(|i| i.updated_ms));
            since.is_some_and(|since| now.saturating_sub(since) >= within_ms)
        })?;
        let started = Instant::now();
        if !self.persist_key(engine, key.clone()) {
            return None;
        }
        let stall = started.elapsed();
        self.counters.persisted_busy(stall);
        tracing::debug!(
            agent = key.agent.as_str(),
            stall_ms = stall.as_secs_f64() * 1e3,
            "persisted an agent under load"
        );
        Some(stall)
    }

    /// Persists one dirty agent that no request is using, whatever its idle time. Returns true if
    /// it did something.
    pub fn persist_one<E: Engine>(&mut self, engine: &E) -> bool {
        self.persist_idle(engine, Duration::ZERO) == Persist::Wrote
    }

    /// Persists one dirty agent that no request is using and that has been idle for at least
    /// `min_idle`; otherwise says how long until one will have been.
    pub fn persist_idle<E: Engine>(&mut self, engine: &E, min_idle: Duration) -> Persist {
        if self.writer.is_none() {
            return Persist::Nothing;
        }
        let now = now_ms();
        let min_idle_ms = min_idle.as_millis() as u64;
        let mut soonest: Option<u64> = None;
        let mut chosen = None;
        for key in self.memory.dirty().into_iter().filter(|k| !self.in_use.contains(k)) {
            let idle = self.memory.get(&key).map_or(u64::MAX, |i| now.saturating_sub(i.last_used_ms));
            let backoff = self.backoff.wait_ms(&key, now);
            if idle >= min_idle_ms && backoff == 0 {
                chosen = Some(key);
                break;
            }
            let left = min_idle_ms.saturating_sub(idle).max(backoff);
            soonest = Some(soonest.map_or(left, |s| s.min(left)));
        }
        if chosen.is_none() && self.memory.totals().writing > 0 {
            // A write is in flight: come back for its outcome. Without this an idle server took
            // it only at the next request, so a failed write was neither counted nor retried.
            soonest = Some(soonest.map_or(WRITE_POLL_MS, |s| s.min(WRITE_POLL_MS)));
        }
        let Some(key) = chosen else {
            return soonest.map_or(Persist::Nothing, |ms| Persist::Wait(Duration::from_millis(ms.max(1))));
        };
        if self.persist_key(engine, key) {
            Persist::Wrote
        } else {
            Persist::Nothing
        }
    }

    fn persist_key<E: Engine>(&mut self, engine: &E, key: AgentKey) -> bool {
        let Some(info) = self.memory.get(&key).cloned() else { return false };
        let generation = self.memory.generation(&key);
        let payload = match (info.tier, info.seq) {
            (Tier::Hot, Some(seq)) => match engine.export_state(seq) {
                Ok(bytes) => Arc::new(bytes),
                Err(err) => {
                    // Without an export there is nothing to write; keep it hot but stop retrying.
                    tracing::warn!(agent = key.agent.as_str(), %err, "cannot export an agent for persistence");
                    self.counters.persist_failed(PersistFailure::Export);
                    self.memory.mark_writing(&key, generation);
                    return true;
                }
            },
            (Tier::Warm, _) => match self.memory.warm_bytes(&key) {
                Some(bytes) => bytes,
                None => return false,
            },
            _ => return false,
        };
        let Some(header) = self.memory.snapshot_header(&key, &self.compat, self.n_ctx) else { return false };
        tracing::debug!(agent = key.agent.as_str(), bytes = payload.len(), "persisting agent");
        if self.submit_write(header, payload, generation) {
            // Not clean until the writer confirms; mark as in flight so it is not exported twice.
            self.memory.mark_writing(&key, generation);
        }
        true
    }

    /// Takes the writer's completion reports.
    pub fn poll_writes(&mut self) {
        let Some(writer) = &self.writer else { return };
        for outcome in writer.results().try_iter() {
            match outcome.result {
                Ok(bytes) => {
                    self.counters.persisted(outcome.elapsed);
                    self.memory.mark_persisted(&outcome.key, outcome.generation, bytes);
                    if self.memory.get(&outcome.key).is_none_or(|i| !i.dirty) {
                        self.dirty_since.remove(&outcome.key);
                    }
                    self.backoff.cleared(&outcome.key);
                }
                Err(err) => {
                    let reason = PersistFailure::from(err.reason);
                    self.counters.persist_failed(reason);
                    // The agent stays dirty and in memory; requests keep being answered.
                    tracing::error!(
                        agent = outcome.key.agent.as_str(),
                        %err,
                        reason = reason.as_str(),
                        "persisting an agent failed; kept in memory, retried later"
                    );
                    self.memory.mark_write_failed(&outcome.key, outcome.generation);
                    self.backoff.failed(&outcome.key, now_ms());
                }
            }
        }
    }

    /// Persists every dirty agent and waits for the disk (shutdown).
    pub fn flush<E: Engine>(&mut self, engine: &E, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        self.backoff.reset(); // one last attempt for agents whose writes failed
        while self.persist_one(engine) {
            self.poll_writes();
            if Instant::now() >= deadline {
                break;
            }
        }
        let ok =
            self.writer.as_ref().is_none_or(|w| w.flush_blocking(deadline.saturating_duration_since(Instant::now())));
        self.poll_writes();
        ok && self.memory.dirty().is_empty()
    }

    pub fn publish(&self) {
        let totals = self.memory.totals();
        let c = &self.counters;
        c.hot.store(totals.hot, Ordering::Relaxed);
        c.warm.store(totals.warm, Ordering::Relaxed);
        c.cold.store(totals.cold, Ordering::Relaxed);
        c.warm_bytes.store(totals.warm_bytes, Ordering::Relaxed);
        c.disk_bytes.store(totals.disk_bytes, Ordering::Relaxed);
    }
}

fn eviction_key(e: &Eviction) -> &AgentKey {
    match e {
        Eviction::Demote { key, .. } | Eviction::DeleteFile { key } => key,
    }
}

/// (namespace, optional agent) of a request.
pub(crate) struct AgentRefKey(pub semantic_memory::Namespace, pub Option<semantic_memory::AgentId>);

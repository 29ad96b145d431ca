//! The step loop: `State` owns the engine on its thread and turns queued requests into batches.
//!
//! Each step: drop abandoned requests, admit waiting ones while sequences and KV cells allow
//! (placing each on reusable agent KV when there is some), build one batch (one decode token per
//! running sequence, then prefill chunks, shortest prompt first, under the token budget), decode
//! it, sample, stream. A failed or panicking step fails only the requests in its batch. Between
//! requests, dirty agents are persisted through the background writer.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use semantic_engine::{Batch, Engine, EngineError, SeqId, TokenId, Tokenizer};
use semantic_memory::{AgentKey, Compat, Tier};
use tokio::sync::{mpsc, oneshot};

use crate::agents::{now_ms, AgentRefKey, Agents, Persist, Placement};
use crate::handle::{DrainReport, Shared};
use crate::sequence::Sequence;
use crate::{AgentCommand, CacheSource, FinishReason, SchedulerConfig};

/// Messages from the async side to the step thread.
pub(crate) enum Command {
    Submit(Box<Sequence>),
    Drain { deadline: Instant, reply: oneshot::Sender<DrainReport> },
    Agents(AgentCommand),
}

struct Drain {
    deadline: Instant,
    reply: oneshot::Sender<DrainReport>,
    completed: usize,
}

/// One row group of the current batch: which running sequence, how many tokens, which row has logits.
struct Planned {
    index: usize,
    tokens: usize,
    logits_row: Option<usize>,
    fed: Option<TokenId>,
}

/// The step thread's state. Synchronous: tests drive it step by step without a runtime.
pub(crate) struct State<E: Engine> {
    engine: E,
    tokenizer: Arc<dyn Tokenizer>,
    config: SchedulerConfig,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    free_seqs: Vec<SeqId>,
    /// KV cells promised: running requests' prompt + max_tokens, plus idle hot agents' tokens.
    reserved: usize,
    n_ctx: usize,
    batch: Batch,
    pub(crate) agents: Agents,
    shared: Arc<Shared>,
    drain: Option<Drain>,
}

impl<E: Engine> State<E> {
    pub fn new(engine: E, mut config: SchedulerConfig, shared: Arc<Shared>) -> Self {
        let info = engine.context();
        config.step_token_budget = config.step_token_budget.clamp(1, info.n_batch as usize);
        config.max_running = config.max_running.clamp(1, info.n_seq_max as usize);
        let free_seqs = (0..info.n_seq_max as SeqId).rev().collect();
        let compat = Compat { fingerprint: engine.facts().fingerprint.0, kv_type: info.state_layout() };
        // Idle hot agents may hold every sequence the running requests do not need.
        let hot_sequences = (info.n_seq_max as usize).saturating_sub(config.max_running);
        let agents = Agents::open(&config.memory, compat, info.n_ctx, hot_sequences, Arc::clone(&shared.memory));
        Self {
            tokenizer: engine.tokenizer(),
            engine,
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_seqs,
            reserved: 0,
            n_ctx: info.n_ctx as usize,
            batch: Batch::new(),
            agents,
            shared,
            drain: None,
        }
    }

    /// Runs until every handle is gone and no work is left; then persists dirty agents.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        // Waits for a command with a time limit while a dirty agent is not yet idle long enough.
        let timer = tokio::runtime::Builder::new_current_thread().enable_time().build();
        loop {
            self.agents.poll_writes();
            if self.is_idle() {
                self.reply_drain_if_done();
                // Persist between requests, checking for new work after each agent.
                match self.agents.persist_idle(&self.engine, self.config.memory.persist_after_idle) {
                    Persist::Wrote => {
                        if let Ok(cmd) = rx.try_recv() {
                            self.command(cmd);
                        }
                        continue;
                    }
                    Persist::Wait(wait) => {
                        if let Ok(timer) = &timer {
                            self.agents.publish();
                            match timer.block_on(async { tokio::time::timeout(wait, rx.recv()).await }) {
                                Ok(Some(cmd)) => self.command(cmd),
                                Ok(None) => break,
                                Err(_elapsed) => {}
                            }
                            continue;
                        }
                        // No timer (cannot happen short of resource exhaustion): persist now.
                        self.agents.persist_one(&self.engine);
                        continue;
                    }
                    Persist::Nothing => {}
                }
                self.agents.publish();
                match rx.blocking_recv() {
                    Some(cmd) => self.command(cmd),
                    None => break,
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                self.command(cmd);
            }
            self.step();
            self.check_drain();
        }
        if !self.agents.flush(&self.engine, Duration::from_secs(30)) {
            tracing::error!("some agents could not be persisted at shutdown");
        }
    }

    pub fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(seq) => self.waiting.push_back(*seq),
            Command::Drain { deadline, reply } => {
                self.drain = Some(Drain { deadline, reply, completed: 0 });
                self.check_drain();
            }
            Command::Agents(cmd) => self.agent_command(cmd),
        }
    }

    pub fn is_idle(&self) -> bool {
        self.running.is_empty() && self.waiting.is_empty()
    }

    /// One scheduling step. Returns the number of tokens decoded.
    pub fn step(&mut self) -> usize {
        self.reap_abandoned();
        self.admit();
        let plan = self.plan();
        if plan.is_empty() {
            return 0;
        }
        let n = self.batch.len();
        let outcome = catch_unwind(AssertUnwindSafe(|| self.execute(&plan)));
        let finished = match outcome {
            Ok(Ok(finished)) => finished,
            Ok(Err(err)) => {
                tracing::warn!(%err, tokens = n, "engine step failed; failing its requests");
                plan.iter().map(|p| (p.index, FinishReason::Error(err.to_string()))).collect()
            }
            Err(_) => {
                tracing::error!(tokens = n, "engine step panicked; failing its requests");
                plan.iter()
                    .map(|p| (p.index, FinishReason::Error("internal error in the engine step".into())))
                    .collect()
            }
        };
        self.finish_many(finished);
        self.shared.steps.fetch_add(1, Ordering::Relaxed);
        n
    }

    fn reap_abandoned(&mut self) {
        let gone: Vec<usize> = (0..self.running.len()).filter(|&i| self.running[i].is_abandoned()).collect();
        self.finish_many(gone.into_iter().map(|i| (i, FinishReason::Cancelled)).collect());
        let before = self.waiting.len();
        self.waiting.retain(|s| !s.is_abandoned());
        self.shared.queued.fetch_sub(before - self.waiting.len(), Ordering::Relaxed);
    }

    fn admit(&mut self) {
        // FIFO, except that a request whose agent is busy with another turn lets later ones pass.
        let mut i = 0;
        while self.running.len() < self.config.max_running && i < self.waiting.len() {
            let busy = self.waiting[i].agent.agent.as_ref().is_some_and(|a| {
                self.agents
                    .in_use
                    .contains(&AgentKey { namespace: self.waiting[i].agent.namespace.clone(), agent: a.clone() })
            });
            if busy {
                i += 1;
                continue;
            }
            let Some(mut seq) = self.waiting.remove(i) else { break };
            match self.place(&seq) {
                Some(placement) => {
                    seq.admit(placement.seq, placement.cached, placement.source);
                    if let Some(source) = placement.source {
                        self.shared.memory.reused(source, placement.cached);
                    }
                    self.running.push(seq);
                    self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                }
                None => {
                    // Wait for KV cells or a sequence to free up; FIFO keeps it fair.
                    self.waiting.insert(i, seq);
                    break;
                }
            }
        }
        self.enforce_budgets();
        self.publish();
    }

    /// Keeps agent memory within its budgets (hot sequences, warm RAM, disk).
    fn enforce_budgets(&mut self) {
        for eviction in self.agents.plan_budgets(0) {
            match eviction {
                semantic_memory::Eviction::Demote { key, .. } => {
                    if let Some((seq, tokens)) = self.agents.demote_hot(&mut self.engine, &key) {
                        self.free_seqs.push(seq);
                        self.reserved -= tokens;
                    }
                }
                semantic_memory::Eviction::DeleteFile { key } => {
                    self.drop_hot(&key);
                    self.agents.delete(&key);
                }
            }
        }
    }

    /// Frees idle hot agents (least recently used first) until `seqs` sequences and `cells` KV
    /// cells are available and idle agents hold at most `hot_idle_tokens` cells; false when the
    /// sequences or cells cannot be had (the idle budget alone never refuses a request).
    fn make_room(&mut self, seqs: usize, cells: usize) -> bool {
        loop {
            let fits = self.free_seqs.len() >= seqs && self.reserved + cells <= self.n_ctx;
            if fits && self.agents.idle_hot_tokens() <= self.config.memory.hot_idle_tokens {
                return true;
            }
            let Some(victim) = self.agents.lru_idle_hot() else { return fits };
            match self.agents.demote_hot(&mut self.engine, &victim) {
                Some((seq, tokens)) => {
                    self.free_seqs.push(seq);
                    self.reserved -= tokens;
                }
                None => return fits,
            }
        }
    }

    /// Puts a request on an engine sequence, reusing agent KV where the token ids match.
    fn place(&mut self, seq: &Sequence) -> Option<Placement> {
        let need = seq.reservation();
        let key = seq.agent.agent.clone().map(|agent| AgentKey { namespace: seq.agent.namespace.clone(), agent });
        let lookup =
            self.agents.lookup(&AgentRefKey(seq.agent.namespace.clone(), seq.agent.agent.clone()), &seq.prompt);
        self.shared.memory.looked_up(lookup.own.as_ref().map(|(_, tier, _)| *tier));
        // At least one prompt token is always computed, for the logits of the first new token.
        let max_reuse = seq.prompt.len().saturating_sub(1);
        if let (Some(key), Some((_, tier, matched))) = (&key, lookup.own.clone()) {
            let matched = matched.min(max_reuse);
            if tier == Tier::Hot {
                let info = self.agents.memory.get(key)?.clone();
                let id = info.seq?;
                // The agent's idle cells become this request's reservation; in use first, so that
                // making room never picks the agent itself.
                self.reserved -= info.tokens;
                self.agents.in_use.insert(key.clone());
                if !self.make_room(0, need) {
                    self.agents.in_use.remove(key);
                    self.reserved += info.tokens;
                    return None;
                }
                self.reserved += need;
                let _ = self.engine.kv_truncate(id, matched as u32);
                return Some(Placement { seq: id, cached: matched, source: Some(CacheSource::Hot) });
            }
            if !self.make_room(1, need) {
                return None;
            }
            let id = self.free_seqs.pop()?;
            self.reserved += need;
            self.agents.in_use.insert(key.clone());
            let started = Instant::now();
            let restored = self.agents.restore(&mut self.engine, key, tier, id);
            tracing::debug!(
                agent = key.agent.as_str(),
                tier = tier.as_str(),
                ms = started.elapsed().as_secs_f64() * 1e3,
                restored,
                "agent restored"
            );
            if restored {
                let _ = self.engine.kv_truncate(id, matched as u32);
                let source = if tier == Tier::Warm { CacheSource::Warm } else { CacheSource::Disk };
                return Some(Placement { seq: id, cached: matched, source: Some(source) });
            }
            return Some(Placement { seq: id, cached: 0, source: None });
        }
        // A shared prefix's owner is kept live while room is made when the prefix is most of what
        // it holds: copied cells are shared, not duplicated, so keeping it costs little. A large
        // idle agent is not kept for a short prefix: attending over all its cells would slow this
        // whole request more than the copy saves.
        let keep = lookup
            .shared
            .as_ref()
            .filter(|(owner, _, matched)| {
                self.agents.memory.get(owner).is_some_and(|info| matched.saturating_mul(2) >= info.tokens)
            })
            .map(|(owner, _, _)| owner.clone())
            .filter(|owner| self.agents.in_use.insert(owner.clone()));
        let room = self.make_room(1, need);
        if let Some(owner) = &keep {
            self.agents.in_use.remove(owner);
        }
        if !room {
            return None;
        }
        let id = self.free_seqs.pop()?;
        self.reserved += need;
        if let Some(key) = &key {
            self.agents.in_use.insert(key.clone());
        }
        // Making room may have sent the prefix's owner warm: then its cells are gone (llama.cpp
        // would copy the empty range without complaint) and the prompt is computed instead.
        let still_live = |s: &Self, owner: &AgentKey, src: SeqId| {
            s.agents.memory.get(owner).is_some_and(|info| info.tier == Tier::Hot && info.seq == Some(src))
        };
        if let Some((_, src, matched)) = lookup.shared.filter(|(owner, src, _)| still_live(self, owner, *src)) {
            let matched = matched.min(max_reuse);
            if matched > 0 && self.engine.kv_copy_prefix(src, id, matched as u32).is_ok() {
                return Some(Placement { seq: id, cached: matched, source: Some(CacheSource::SharedPrefix) });
            }
        }
        Some(Placement { seq: id, cached: 0, source: None })
    }

    fn plan(&mut self) -> Vec<Planned> {
        self.batch.clear();
        let mut plan = Vec::new();
        for (index, seq) in self.running.iter().enumerate() {
            if let (Some(token), Some(id)) = (seq.pending, seq.seq) {
                let row = self.batch.push(id, token, seq.n_past as u32, true);
                plan.push(Planned { index, tokens: 1, logits_row: Some(row), fed: Some(token) });
            }
        }
        let mut budget = self.config.step_token_budget.saturating_sub(self.batch.len());
        let mut prefilling: Vec<usize> = (0..self.running.len())
            .filter(|&i| self.running[i].pending.is_none() && self.running[i].prefill_left() > 0)
            .collect();
        // Shortest remaining prompt first: a short request never waits behind a long prefill.
        prefilling.sort_by_key(|&i| self.running[i].prefill_left());
        for index in prefilling {
            if budget == 0 {
                break;
            }
            let seq = &self.running[index];
            let Some(id) = seq.seq else { continue };
            let take = seq.prefill_left().min(budget);
            let completes = take == seq.prefill_left();
            let span = &seq.prompt[seq.n_past..seq.n_past + take];
            let row = self.batch.push_span(id, span, seq.n_past as u32, completes);
            plan.push(Planned { index, tokens: take, logits_row: if completes { row } else { None }, fed: None });
            budget -= take;
        }
        plan
    }

    fn execute(&mut self, plan: &[Planned]) -> Result<Vec<(usize, FinishReason)>, EngineError> {
        self.engine.decode(&self.batch)?;
        let mut finished = Vec::new();
        for p in plan {
            let seq = &mut self.running[p.index];
            seq.n_past += p.tokens;
            if let Some(token) = p.fed {
                seq.fed(token);
            }
            let Some(row) = p.logits_row else { continue };
            seq.mark_prefilled();
            let token = seq.sample(self.engine.logits(row)?);
            seq.pending = None;
            if let Some(reason) = seq.on_token(token, &self.tokenizer) {
                finished.push((p.index, reason));
            }
        }
        Ok(finished)
    }

    fn finish_many(&mut self, mut finished: Vec<(usize, FinishReason)>) {
        finished.sort_by_key(|(i, _)| std::cmp::Reverse(*i));
        finished.dedup_by_key(|(i, _)| *i);
        let mut done = Vec::with_capacity(finished.len());
        for (index, reason) in finished {
            let seq = self.running.swap_remove(index);
            self.release(&seq, &reason);
            if let Some(drain) = &mut self.drain {
                drain.completed += 1;
            }
            done.push((seq, reason));
        }
        // Resources are released and published before any client hears that its request ended.
        self.publish();
        for (seq, reason) in done {
            seq.finish(reason);
        }
    }

    /// Gives a finished request's sequence to its agent (the KV is exactly `kv_tokens`), or frees it.
    fn release(&mut self, seq: &Sequence, reason: &FinishReason) {
        self.reserved -= seq.reservation();
        let Some(id) = seq.seq else { return };
        let key = seq.agent.agent.clone().map(|agent| AgentKey { namespace: seq.agent.namespace.clone(), agent });
        if let Some(key) = key {
            self.agents.in_use.remove(&key);
            if !matches!(reason, FinishReason::Error(_)) && seq.n_past > 0 {
                let tokens = seq.kv_tokens().to_vec();
                // A previous hot copy of this agent on another sequence is superseded.
                if let Some(old) = self.agents.memory.get(&key).and_then(|i| i.seq.map(|s| (s, i.tokens))) {
                    if old.0 != id {
                        let _ = self.engine.kv_truncate(old.0, 0);
                        self.free_seqs.push(old.0);
                        self.reserved -= old.1;
                    }
                }
                self.reserved += tokens.len();
                self.agents.memory.set_hot(key, id, tokens, now_ms());
                return;
            }
            self.agents.forget(&key);
        }
        if let Err(err) = self.engine.kv_truncate(id, 0) {
            tracing::error!(%err, seq = id, "cannot free a sequence's KV; retiring its id");
            return;
        }
        self.free_seqs.push(id);
    }

    fn publish(&self) {
        self.shared.running.store(self.running.len(), Ordering::Relaxed);
        self.shared.kv_reserved.store(self.reserved, Ordering::Relaxed);
        self.agents.publish();
    }

    fn check_drain(&mut self) {
        let Some(drain) = &self.drain else { return };
        if Instant::now() >= drain.deadline && !self.is_idle() {
            let Some(drain) = self.drain.take() else { return };
            let cut = self.running.len() + self.waiting.len();
            let all: Vec<usize> = (0..self.running.len()).collect();
            self.finish_many(all.into_iter().map(|i| (i, FinishReason::Cancelled)).collect());
            for seq in self.waiting.drain(..) {
                seq.finish(FinishReason::Cancelled);
            }
            self.shared.queued.store(0, Ordering::Relaxed);
            let _ = drain.reply.send(DrainReport { completed: drain.completed, cut });
            return;
        }
        self.reply_drain_if_done();
    }

    fn reply_drain_if_done(&mut self) {
        if self.is_idle() {
            if let Some(drain) = self.drain.take() {
                let _ = drain.reply.send(DrainReport { completed: drain.completed, cut: 0 });
            }
        }
    }

    /// Frees an agent's hot sequence, if it has one.
    fn drop_hot(&mut self, key: &AgentKey) {
        if let Some((seq, tokens)) = self.agents.memory.get(key).and_then(|i| i.seq.map(|s| (s, i.tokens))) {
            let _ = self.engine.kv_truncate(seq, 0);
            self.free_seqs.push(seq);
            self.reserved -= tokens;
        }
    }

    fn agent_command(&mut self, cmd: AgentCommand) {
        use crate::AgentOpError as E;
        match cmd {
            AgentCommand::List { namespace, reply } => {
                let _ = reply.send(self.agents.memory.list(&namespace));
            }
            AgentCommand::Get { key, reply } => {
                let _ = reply.send(self.agents.memory.get(&key).cloned());
            }
            AgentCommand::Delete { key, reply } => {
                let result = if self.agents.in_use.contains(&key) {
                    Err(E::Busy)
                } else if self.agents.memory.get(&key).is_none() {
                    Err(E::NotFound)
                } else {
                    self.drop_hot(&key);
                    self.agents.delete(&key);
                    Ok(())
                };
                let _ = reply.send(result);
            }
            AgentCommand::Evict { key, reply } => {
                let result = self.evict_to_disk(&key);
                let _ = reply.send(result);
            }
            AgentCommand::Pin { key, pinned, reply } => {
                let result = if self.agents.memory.pin(&key, pinned) {
                    self.agents.memory.get(&key).cloned().ok_or(E::NotFound)
                } else {
                    Err(E::NotFound)
                };
                let _ = reply.send(result);
            }
            AgentCommand::Flush { reply } => {
                self.agents.flush(&self.engine, Duration::from_secs(30));
                let _ = reply.send(crate::FlushReport { still_dirty: self.agents.memory.dirty().len() });
            }
            AgentCommand::Clear { namespace, reply } => {
                let keys: Vec<AgentKey> = self
                    .agents
                    .memory
                    .keys()
                    .into_iter()
                    .filter(|k| {
                        namespace.as_ref().is_none_or(|ns| &k.namespace == ns) && !self.agents.in_use.contains(k)
                    })
                    .collect();
                for key in &keys {
                    self.drop_hot(key);
                    self.agents.delete(key);
                }
                let _ = reply.send(keys.len());
            }
        }
        self.publish();
    }

    fn evict_to_disk(&mut self, key: &AgentKey) -> Result<semantic_memory::AgentInfo, crate::AgentOpError> {
        use crate::AgentOpError as E;
        if self.agents.in_use.contains(key) {
            return Err(E::Busy);
        }
        let info = self.agents.memory.get(key).cloned().ok_or(E::NotFound)?;
        if info.tier == Tier::Hot {
            if let Some((seq, tokens)) = self.agents.demote_hot(&mut self.engine, key) {
                self.free_seqs.push(seq);
                self.reserved -= tokens;
            }
        }
        self.agents.demote_to_disk(key).map_err(|reason| E::Persist { reason })?;
        self.agents.memory.get(key).cloned().ok_or(E::NotFound)
    }

    /// The engine, for tests.
    #[cfg(test)]
    pub fn engine(&self) -> &E {
        &self.engine
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Event, GenerateRequest};
    use semantic_engine::{FakeEngine, SamplingParams, TokenId};
    use tokio::sync::mpsc::UnboundedReceiver;

    fn state(n_ctx: u32, budget: usize, max_running: usize) -> State<FakeEngine> {
        let config =
            SchedulerConfig { max_running, step_token_budget: budget, queue_capacity: 64, ..Default::default() };
        State::new(FakeEngine::new(n_ctx, 512, 8), config, Arc::default())
    }

    fn submit(state: &mut State<FakeEngine>, prompt_len: usize, max_tokens: usize) -> UnboundedReceiver<Event> {
        let prompt: Vec<TokenId> = (0..prompt_len).map(|i| 97 + (i % 26) as TokenId).collect();
        let request = GenerateRequest {
            prompt,
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            agent: Default::default(),
        };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        state.shared.queued.fetch_add(1, Ordering::Relaxed);
        state.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
        rx
    }

    /// Per step: tokens per sequence id, in row order.
    fn batches(state: &State<FakeEngine>) -> Vec<Vec<(SeqId, usize)>> {
        state.engine().control().lock().unwrap().batches.clone()
    }

    fn drain_events(rx: &mut UnboundedReceiver<Event>) -> (String, Option<FinishReason>) {
        let (text, reason, _) = drain_all(rx);
        (text, reason)
    }

    fn drain_all(rx: &mut UnboundedReceiver<Event>) -> (String, Option<FinishReason>, Option<crate::Usage>) {
        let mut text = String::new();
        let mut reason = None;
        let mut usage = None;
        let mut admitted = None;
        while let Ok(event) = rx.try_recv() {
            match event {
                Event::Delta { text: t, .. } => {
                    assert!(admitted.is_some(), "a delta before the Admitted event");
                    text.push_str(&t);
                }
                Event::Done { reason: r, usage: u, .. } => {
                    // Every placed request announced exactly the reuse its usage reports.
                    if let Some((cached, source)) = admitted {
                        assert_eq!((cached, source), (u.cached_tokens, u.cache_source), "Admitted vs usage");
                    }
                    reason = Some(r);
                    usage = Some(u);
                }
                Event::Admitted { cached_tokens, source } => {
                    assert!(admitted.is_none(), "two Admitted events");
                    admitted = Some((cached_tokens, source));
                }
            }
        }
        (text, reason, usage)
    }

    fn ask(
        state: &mut State<FakeEngine>,
        namespace: &str,
        agent: Option<&str>,
        prompt: &[TokenId],
        max_tokens: usize,
    ) -> (String, crate::Usage) {
        let agent = crate::AgentRef {
            namespace: crate::Namespace::parse(namespace).unwrap(),
            agent: agent.map(|a| crate::AgentId::parse(a).unwrap()),
        };
        let request = GenerateRequest {
            prompt: prompt.to_vec(),
            max_tokens,
            sampling: SamplingParams::greedy(),
            stop: vec![],
            agent,
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        state.shared.queued.fetch_add(1, Ordering::Relaxed);
        state.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
        run_to_idle(state);
        let (text, reason, usage) = drain_all(&mut rx);
        assert!(matches!(reason, Some(FinishReason::Length | FinishReason::Stop)), "{reason:?}");
        (text, usage.unwrap())
    }

    fn bytes(text: &str) -> Vec<TokenId> {
        text.bytes().map(TokenId::from).collect()
    }

    fn memory_state(n_seq_max: u32, max_running: usize, dir: Option<std::path::PathBuf>) -> State<FakeEngine> {
        let config = SchedulerConfig {
            max_running,
            step_token_budget: 64,
            queue_capacity: 64,
            memory: crate::MemoryConfig { dir, warm_bytes: 1 << 20, disk_bytes: 1 << 30, ..Default::default() },
        };
        State::new(FakeEngine::new(4096, 512, n_seq_max), config, Arc::default())
    }

    fn run_to_idle(state: &mut State<FakeEngine>) {
        for _ in 0..10_000 {
            if state.is_idle() {
                return;
            }
            state.step();
        }
        panic!("scheduler did not go idle");
    }

    #[test]
    fn long_prompt_is_chunked_between_decode_steps() {
        let mut s = state(4096, 64, 8);
        let mut short = submit(&mut s, 8, 40);
        s.step(); // prefill of the short one; it now decodes.
        let _long = submit(&mut s, 300, 4);
        for _ in 0..6 {
            s.step();
        }
        let steps = batches(&s);
        // Every step after the first carries the decoder's one token first, then at most 63 prefill tokens.
        let chunks: Vec<usize> = steps[1..6].iter().map(|step| step[1].1).collect();
        assert_eq!(chunks, vec![63, 63, 63, 63, 48], "{steps:?}");
        for step in &steps[1..6] {
            assert_eq!(step[0], (0, 1), "{steps:?}");
        }
        assert!(drain_events(&mut short).0.len() >= 5);
    }

    #[test]
    fn short_request_gets_its_first_token_during_a_long_prefill() {
        let mut s = state(8192, 32, 8);
        let _long = submit(&mut s, 2000, 2);
        s.step();
        let mut short = submit(&mut s, 5, 1);
        s.step();
        let (text, reason) = drain_events(&mut short);
        assert_eq!(reason, Some(FinishReason::Length));
        assert_eq!(text.len(), 1);
        // The long prompt is far from done: it got at most 2 steps of 32 tokens.
        assert!(batches(&s).iter().flatten().any(|(seq, _)| *seq == 0));
        assert!(batches(&s).iter().flatten().filter(|(seq, _)| *seq == 0).map(|(_, n)| n).sum::<usize>() < 64);
    }

    #[test]
    fn concurrent_requests_produce_what_each_produces_alone() {
        let mut alone = Vec::new();
        for len in [5, 17, 40] {
            let mut s = state(4096, 512, 8);
            let mut rx = submit(&mut s, len, 12);
            run_to_idle(&mut s);
            alone.push(drain_events(&mut rx).0);
        }
        let mut s = state(4096, 16, 8);
        let mut rxs: Vec<_> = [5, 17, 40].into_iter().map(|len| submit(&mut s, len, 12)).collect();
        run_to_idle(&mut s);
        let together: Vec<String> = rxs.iter_mut().map(|rx| drain_events(rx).0).collect();
        assert_eq!(together, alone);
    }

    #[test]
    fn abandoned_request_frees_its_sequence_at_the_next_step() {
        let mut s = state(4096, 64, 8);
        let rx = submit(&mut s, 10, 1000);
        s.step();
        s.step();
        assert_eq!(s.engine().kv_len(0), 11);
        drop(rx);
        s.step();
        assert!(s.is_idle());
        assert_eq!(s.engine().kv_len(0), 0);
        assert_eq!(s.reserved, 0);
        assert_eq!(s.free_seqs.len(), 8);
    }

    #[test]
    fn requests_wait_for_kv_cells_instead_of_failing() {
        let mut s = state(100, 64, 8);
        let mut a = submit(&mut s, 40, 30);
        let mut b = submit(&mut s, 40, 30);
        s.step();
        assert_eq!(s.running.len(), 1, "the second request does not fit yet");
        run_to_idle(&mut s);
        assert_eq!(drain_events(&mut a).1, Some(FinishReason::Length));
        assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
    }

    #[test]
    fn failed_decode_fails_only_its_batch_and_the_loop_goes_on() {
        let mut s = state(4096, 64, 8);
        let mut a = submit(&mut s, 10, 5);
        s.engine().control().lock().unwrap().fail_decodes = 1;
        s.step();
        assert!(matches!(drain_events(&mut a).1, Some(FinishReason::Error(_))));
        let mut b = submit(&mut s, 10, 5);
        run_to_idle(&mut s);
        assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
        assert_eq!(s.free_seqs.len(), 8);
    }

    #[test]
    fn panicking_step_fails_its_requests_with_an_internal_error() {
        let mut s = state(4096, 64, 8);
        let mut a = submit(&mut s, 10, 5);
        s.engine().control().lock().unwrap().panic_next_decode = true;
        s.step();
        assert_eq!(drain_events(&mut a).1, Some(FinishReason::Error("internal error in the engine step".into())));
        let mut b = submit(&mut s, 10, 5);
        run_to_idle(&mut s);
        assert_eq!(drain_events(&mut b).1, Some(FinishReason::Length));
    }

    #[test]
    fn stop_string_is_withheld_and_ends_the_stream() {
        let mut s = state(4096, 64, 8);
        // Learn what the fake says for this prompt, then stop on a piece of it.
        let mut probe = submit(&mut s, 10, 30);
        run_to_idle(&mut s);
        let full = drain_events(&mut probe).0;
        let stop = full[8..11].to_string();
        let cut = full.find(&stop).unwrap();
        let prompt: Vec<TokenId> = (0..10).map(|i| 97 + i).collect();
        let request = GenerateRequest {
            prompt,
            max_tokens: 30,
            sampling: SamplingParams::greedy(),
            stop: vec![stop],
            agent: Default::default(),
        };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.command(Command::Submit(Box::new(Sequence::new(request, tx, Arc::default()))));
        run_to_idle(&mut s);
        let (text, reason) = drain_events(&mut rx);
        assert_eq!(text, full[..cut]);
        assert_eq!(reason, Some(FinishReason::StopString(0)));
    }

    #[test]
    fn named_agent_reuses_prompt_and_reply_on_its_next_turn() {
        let mut s = memory_state(8, 2, None);
        let turn1 = bytes("system: be brief. user: hello");
        let (reply, usage) = ask(&mut s, "default", Some("alice"), &turn1, 6);
        assert_eq!((usage.cached_tokens, usage.cache_source), (0, None));
        // Turn 2 = turn 1 + the reply + new text; everything but the last reply token (never decoded) is reused.
        let mut turn2 = turn1.clone();
        turn2.extend(bytes(&reply));
        turn2.extend(bytes(" user: more"));
        let (warm_reply, usage) = ask(&mut s, "default", Some("alice"), &turn2, 6);
        assert_eq!(usage.cached_tokens, turn1.len() + 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
        // Reuse never changes the answer: a fresh server gives the same reply cold.
        let mut cold = memory_state(8, 2, None);
        assert_eq!(ask(&mut cold, "default", None, &turn2, 6).0, warm_reply);
        // An identical re-send computes exactly one token.
        let (_, usage) = ask(&mut s, "default", Some("alice"), &turn2, 3);
        assert_eq!(usage.cached_tokens, turn2.len() - 1);
    }

    #[test]
    fn anonymous_requests_share_prefixes_but_never_store_and_namespaces_never_leak() {
        let mut s = memory_state(8, 2, None);
        let system = bytes("a long shared system prompt, then: ");
        let mut p1 = system.clone();
        p1.extend(bytes("question one"));
        ask(&mut s, "team", Some("bob"), &p1, 4);
        let mut p2 = system.clone();
        p2.extend(bytes("question two"));
        let (_, usage) = ask(&mut s, "team", None, &p2, 4);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::SharedPrefix));
        assert_eq!(usage.cached_tokens, system.len() + "question ".len());
        assert_eq!(s.agents.memory.list(&crate::Namespace::parse("team").unwrap()).len(), 1);
        // Same agent id, other namespace: nothing is reused.
        let (_, usage) = ask(&mut s, "other", Some("bob"), &p1, 4);
        assert_eq!((usage.cached_tokens, usage.cache_source), (0, None));
        assert_eq!(s.agents.memory.list(&crate::Namespace::parse("other").unwrap()).len(), 1);
    }

    #[test]
    fn a_shared_prefix_is_copied_only_from_an_owner_still_live_after_making_room() {
        // Making room may demote the agent whose prefix was about to be copied; llama.cpp would
        // copy the now empty range without complaint, so the owner is checked first. An owner
        // whose cells are mostly the shared prefix is kept instead.
        for (question, shared) in [("question one, which is long enough to be most of the agent", false), ("q1", true)]
        {
            let mut s = memory_state(8, 2, None);
            s.config.memory.hot_idle_tokens = 0;
            let system = bytes("a long shared system prompt, then: ");
            let mut p1 = system.clone();
            p1.extend(bytes(question));
            ask(&mut s, "team", Some("bob"), &p1, 4);
            let mut p2 = system.clone();
            p2.extend(bytes("question two"));
            let (answer, usage) = ask(&mut s, "team", None, &p2, 4);
            let expected = if shared { Some(crate::CacheSource::SharedPrefix) } else { None };
            assert_eq!(usage.cache_source, expected, "{question}");
            let mut cold = memory_state(8, 2, None);
            assert_eq!(ask(&mut cold, "team", None, &p2, 4).0, answer);
        }
    }

    #[test]
    fn agents_evicted_to_ram_come_back_with_the_same_answers() {
        // 3 sequences, 1 running: at most 2 idle hot agents, so the third pushes the first to warm.
        let mut s = memory_state(3, 1, None);
        let prompts: Vec<Vec<TokenId>> = (0..4).map(|i| bytes(&format!("agent {i} says hello there"))).collect();
        let mut replies = Vec::new();
        for (i, p) in prompts.iter().enumerate() {
            replies.push(ask(&mut s, "default", Some(&format!("a{i}")), p, 5).0);
        }
        let key = |i: usize| AgentKey {
            namespace: crate::Namespace::default_ns(),
            agent: crate::AgentId::parse(&format!("a{i}")).unwrap(),
        };
        assert_eq!(s.agents.memory.get(&key(0)).unwrap().tier, Tier::Warm);
        let mut next = prompts[0].clone();
        next.extend(bytes(&replies[0]));
        next.extend(bytes(" and again"));
        let (warm_answer, usage) = ask(&mut s, "default", Some("a0"), &next, 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Warm));
        assert_eq!(usage.cached_tokens, prompts[0].len() + 4);
        let mut cold = memory_state(3, 1, None);
        assert_eq!(ask(&mut cold, "default", None, &next, 5).0, warm_answer);
    }

    #[test]
    fn idle_hot_agents_beyond_their_token_budget_go_warm_least_recently_used_first() {
        let mut s = memory_state(8, 1, None);
        s.config.memory.hot_idle_tokens = 50;
        let key = |name: &str| AgentKey {
            namespace: crate::Namespace::default_ns(),
            agent: crate::AgentId::parse(name).unwrap(),
        };
        let tiers = |s: &State<FakeEngine>| ["a", "b", "c"].map(|n| s.agents.memory.get(&key(n)).map(|info| info.tier));
        // Each agent ends its turn with 25 prompt + 5 reply = 30 idle cells.
        let prompt = |name: &str| bytes(&format!("{name:<25}"));
        ask(&mut s, "default", Some("a"), &prompt("a"), 5);
        ask(&mut s, "default", Some("b"), &prompt("b"), 5);
        assert_eq!(tiers(&s), [Some(Tier::Hot), Some(Tier::Hot), None], "30 idle cells fit the budget");
        ask(&mut s, "default", Some("c"), &prompt("c"), 5);
        assert_eq!(tiers(&s), [Some(Tier::Warm), Some(Tier::Hot), Some(Tier::Hot)], "60 did not");
        let (_, usage) = ask(&mut s, "default", Some("b"), &prompt("b"), 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
        // "a" comes back from warm; of the idle "b" and "c", "c" was used least recently.
        let (reply, usage) = ask(&mut s, "default", Some("a"), &prompt("a"), 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Warm));
        assert_eq!(tiers(&s), [Some(Tier::Hot), Some(Tier::Hot), Some(Tier::Warm)]);
        let mut cold = memory_state(8, 1, None);
        assert_eq!(ask(&mut cold, "default", None, &prompt("a"), 5).0, reply);
    }

    #[test]
    fn hot_hit_on_the_least_recently_used_agent_when_cells_are_short_keeps_its_kv() {
        // Regression: making room for a hot hit could demote the very agent being placed, whose
        // freed sequence was then decoded as if its KV were still there.
        let mut s = State::new(
            FakeEngine::new(100, 512, 4),
            SchedulerConfig {
                max_running: 1,
                step_token_budget: 64,
                queue_capacity: 64,
                memory: crate::MemoryConfig { warm_bytes: 1 << 20, hot_idle_tokens: usize::MAX, ..Default::default() },
            },
            Arc::default(),
        );
        let first = bytes("the first agent asks this");
        let (reply, _) = ask(&mut s, "default", Some("old"), &first, 5);
        ask(&mut s, "default", Some("new"), &bytes("another agent talks here"), 5);
        let mut next = first.clone();
        next.extend(bytes(&reply));
        next.extend(bytes(" and then a longer follow-up question that needs many more cells"));
        let (answer, usage) = ask(&mut s, "default", Some("old"), &next, 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Hot));
        let mut cold = memory_state(4, 1, None);
        assert_eq!(ask(&mut cold, "default", None, &next, 5).0, answer);
    }

    #[test]
    fn agents_survive_a_restart_through_disk() {
        let dir = std::env::temp_dir().join(format!(
            "semantic-step-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let turn1 = bytes("remember the number forty two");
        let reply = {
            let mut s = memory_state(4, 1, Some(dir.clone()));
            let (reply, _) = ask(&mut s, "default", Some("carol"), &turn1, 5);
            assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
            reply
        };
        let mut s = memory_state(4, 1, Some(dir.clone()));
        let key =
            AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse("carol").unwrap() };
        assert_eq!(s.agents.memory.get(&key).unwrap().tier, Tier::Cold);
        let mut turn2 = turn1.clone();
        turn2.extend(bytes(&reply));
        turn2.extend(bytes("?"));
        let (answer, usage) = ask(&mut s, "default", Some("carol"), &turn2, 5);
        assert_eq!(usage.cache_source, Some(crate::CacheSource::Disk));
        assert_eq!(usage.cached_tokens, turn1.len() + 4);
        let mut cold = memory_state(4, 1, None);
        assert_eq!(ask(&mut cold, "default", None, &turn2, 5).0, answer);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_dirty_agent_waits_until_idle_long_enough_before_it_is_written() {
        let dir = std::env::temp_dir().join(format!(
            "semantic-step-idle-{}-{:?}",
            std::process::id(),
            std::thread::current().id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let mut s = memory_state(4, 1, Some(dir.clone()));
        ask(&mut s, "default", Some("dave"), &bytes("a quick turn"), 3);
        let key = AgentKey { namespace: crate::Namespace::default_ns(), agent: crate::AgentId::parse("dave").unwrap() };
        // Just used: not written yet, and the loop is told how long to wait (at most the limit).
        match s.agents.persist_idle(&s.engine, Duration::from_secs(60)) {
            Persist::Wait(wait) => {
                assert!(wait > Duration::from_secs(50) && wait <= Duration::from_secs(60), "{wait:?}")
            }
            other => panic!("expected a wait, got {other:?}"),
        }
        assert!(s.agents.memory.get(&key).unwrap().dirty);
        // Idle long enough (a zero limit): written, and nothing is left to do.
        assert_eq!(s.agents.persist_idle(&s.engine, Duration::ZERO), Persist::Wrote);
        assert_eq!(s.agents.persist_idle(&s.engine, Duration::from_secs(60)), Persist::Nothing);
        assert!(s.agents.flush(&s.engine, Duration::from_secs(10)));
        assert!(!s.agents.memory.get(&key).unwrap().dirty);
        let _ = std::fs::remove_dir_all(&dir);
    }
}

//! The step loop: `State` owns the engine on its thread and turns queued requests into batches.
//!
//! Each step: drop abandoned requests, admit waiting ones while sequences allow (placing each on
//! reusable agent KV when there is some, or on a prefix that a running request of its namespace
//! is computing), build one batch (one decode token per running sequence, then prefill chunks,
//! shortest prompt first, under the token budget; rows in sequence-id order), decode it, sample,
//! stream. A failed or panicking step fails only the requests in its batch. Between requests,
//! dirty agents are persisted through the background writer.
//!
//! Every engine sequence is a KV stream of its own (`ContextInfo::n_ctx_seq` cells): an agent's
//! attention never covers another agent's cells, so idle resident agents cost memory, not time,
//! and stay resident until a sequence is needed.

use std::cell::OnceCell;
use std::collections::{HashSet, VecDeque};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use semantic_engine::{Batch, Engine, EngineError, SeqId, TokenId, TokenTrie, Tokenizer};
use semantic_memory::{AgentKey, Compat, Tier};
use tokio::sync::{mpsc, oneshot};

use crate::agents::{now_ms, AgentRefKey, Agents, Persist, Placement};
use crate::counters::{DrainReport, Shared};
use crate::sequence::Sequence;
use crate::{AgentCommand, CacheSource, FinishReason, SchedulerConfig};

/// Messages from the async side to the step thread.
pub(crate) enum Command {
    Submit(Box<Sequence>),
    Drain {
        deadline: Instant,
        reply: oneshot::Sender<DrainReport>,
    },
    Agents(AgentCommand),
    /// End the step thread once idle (after a drain): persist every dirty agent, reply, return
    /// (dropping the engine and its model) even while handles remain.
    Stop {
        reply: oneshot::Sender<()>,
    },
}

struct Drain {
    deadline: Instant,
    reply: oneshot::Sender<DrainReport>,
    completed: usize,
}

/// Shortest prefix worth sharing between requests that arrive together: below it, computing the
/// tokens costs about what copying a state costs, and waiting for another request is not worth it.
const MIN_SHARED_PREFIX: usize = 64;

/// One row group of the current batch: which running sequence, how many tokens, which row has logits.
struct Planned {
    index: usize,
    tokens: usize,
    logits_row: Option<usize>,
    fed: Option<TokenId>,
}

/// Tokens two sequences have in common from the start.
fn common_prefix(a: &[TokenId], b: &[TokenId]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// The step thread's state. Synchronous: tests drive it step by step without a runtime.
pub(crate) struct State<E: Engine> {
    engine: E,
    tokenizer: Arc<dyn Tokenizer>,
    /// The vocabulary as a byte trie, built at the first constrained (structured output) request.
    trie: OnceCell<TokenTrie>,
    config: SchedulerConfig,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    free_seqs: Vec<SeqId>,
    /// KV cells promised: running requests' prompt + max_tokens, plus idle hot agents' tokens
    /// (reported; each request fits its own stream, checked at submission).
    reserved: usize,
    batch: Batch,
    pub(crate) agents: Agents,
    shared: Arc<Shared>,
    drain: Option<Drain>,
    /// Set by `Command::Stop`: the loop ends at the next idle moment and this is answered.
    stop: Option<oneshot::Sender<()>>,
}

impl<E: Engine> State<E> {
    pub fn new(engine: E, mut config: SchedulerConfig, shared: Arc<Shared>) -> Self {
        let info = engine.context();
        config.step_token_budget = config.step_token_budget.clamp(1, info.n_batch as usize);
        config.max_running = config.max_running.clamp(1, info.n_seq_max as usize);
        let free_seqs = (0..info.n_seq_max as SeqId).rev().collect();
        let compat = Compat { fingerprint: engine.facts().fingerprint.0, state_layout: info.state_layout() };
        // Idle hot agents may hold every sequence the running requests do not need.
        let hot_sequences = (info.n_seq_max as usize).saturating_sub(config.max_running);
        let agents = Agents::open(&config.memory, compat, info.n_ctx_seq, hot_sequences, Arc::clone(&shared.memory));
        Self {
            tokenizer: engine.tokenizer(),
            trie: OnceCell::new(),
            engine,
            config,
            waiting: VecDeque::new(),
            running: Vec::new(),
            free_seqs,
            reserved: 0,
            batch: Batch::new(),
            agents,
            shared,
            drain: None,
            stop: None,
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
                if self.stop.is_some() {
                    break;
                }
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
            // Never idle for long enough? A finished turn still reaches disk within the bound.
            self.agents.persist_overdue(&self.engine, self.config.memory.persist_within);
        }
        if !self.agents.flush(&self.engine, Duration::from_secs(30)) {
            tracing::error!("some agents could not be persisted at shutdown");
        }
        if let Some(reply) = self.stop.take() {
            let _ = reply.send(());
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
            Command::Stop { reply } => self.stop = Some(reply),
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
        for seq in &mut self.running {
            seq.share_boundary = None;
        }
        // FIFO, except that a request whose agent is busy with another turn, or that waits for a
        // running request to compute the prefix they share, lets later ones pass.
        let mut i = 0;
        while self.running.len() < self.config.max_running && i < self.waiting.len() {
            let busy = self.waiting[i].agent.agent.as_ref().is_some_and(|a| {
                self.agents.in_use(&AgentKey { namespace: self.waiting[i].agent.namespace.clone(), agent: a.clone() })
            });
            if busy {
                i += 1;
                continue;
            }
            let from_running = match self.running_prefix(&self.waiting[i]) {
                Some((leader, common)) if self.running[leader].n_past < common => {
                    let boundary = &mut self.running[leader].share_boundary;
                    *boundary = Some(boundary.map_or(common, |b| b.min(common)));
                    i += 1;
                    continue;
                }
                Some((leader, common)) => self.running[leader].seq.map(|src| (src, common)),
                None => None,
            };
            let Some(mut seq) = self.waiting.remove(i) else { break };
            match self.place(&seq, from_running) {
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

    /// Frees idle hot agents, least recently used first, until `seqs` sequences are free; false
    /// when they cannot be had.
    fn make_room(&mut self, seqs: usize) -> bool {
        while self.free_seqs.len() < seqs {
            let Some(victim) = self.agents.lru_idle_hot() else { return false };
            match self.agents.demote_hot(&mut self.engine, &victim) {
                Some((seq, tokens)) => {
                    self.free_seqs.push(seq);
                    self.reserved -= tokens;
                }
                None => return false,
            }
        }
        true
    }

    /// Takes a free sequence next to a running one when there is one, else the lowest: llama.cpp
    /// puts only consecutive sequence ids into one forward pass, so each gap between running ids
    /// costs every decode step one more pass over the weights.
    fn take_free_seq(&mut self) -> Option<SeqId> {
        let running: HashSet<SeqId> = self.running.iter().filter_map(|s| s.seq).collect();
        let best = (0..self.free_seqs.len()).min_by_key(|&i| {
            let id = self.free_seqs[i];
            (!(running.contains(&(id - 1)) || running.contains(&(id + 1))), id)
        })?;
        Some(self.free_seqs.swap_remove(best))
    }

    /// Agent memory's offer for a request: its own KV, or a prefix held by an idle hot agent of
    /// the namespace. A hot agent with a request running is not offered as a prefix: its indexed
    /// tokens are those of its last turn, not what its sequence holds now.
    fn memory_lookup(&self, seq: &Sequence) -> semantic_memory::Lookup {
        let mut lookup =
            self.agents.lookup(&AgentRefKey(seq.agent.namespace.clone(), seq.agent.agent.clone()), &seq.prompt);
        lookup.shared = lookup.shared.filter(|(owner, _, _)| !self.agents.in_use(owner));
        lookup
    }

    /// The running request of `waiting`'s namespace whose prompt shares the longest prefix with
    /// `waiting`'s (at least [`MIN_SHARED_PREFIX`] tokens, more than agent memory offers, at most
    /// the prompt minus one): its index and that length. Its KV holds the prefix once its
    /// `n_past` reaches the length; until then `waiting` waits, so that a prefix common to
    /// requests arriving together is computed once and copied.
    fn running_prefix(&self, waiting: &Sequence) -> Option<(usize, usize)> {
        let lookup = self.memory_lookup(waiting);
        let memory = lookup.own.as_ref().map_or(0, |o| o.2).max(lookup.shared.as_ref().map_or(0, |s| s.2));
        let cap = waiting.prompt.len().saturating_sub(1);
        (0..self.running.len())
            .filter(|&i| self.running[i].seq.is_some() && self.running[i].agent.namespace == waiting.agent.namespace)
            .map(|i| (i, common_prefix(&self.running[i].prompt, &waiting.prompt).min(cap)))
            .filter(|&(_, n)| n >= MIN_SHARED_PREFIX && n > memory)
            .max_by_key(|&(i, n)| (n, self.running[i].n_past.min(n)))
    }

    /// Puts a request on an engine sequence, reusing agent KV where the token ids match, or
    /// copying `from_running` (a running sequence and how many of its prompt tokens to take)
    /// when that is longer.
    fn place(&mut self, seq: &Sequence, from_running: Option<(SeqId, usize)>) -> Option<Placement> {
        let need = seq.reservation();
        let key = seq.agent.agent.clone().map(|agent| AgentKey { namespace: seq.agent.namespace.clone(), agent });
        let lookup = self.memory_lookup(seq);
        self.shared.memory.looked_up(lookup.own.as_ref().map(|(_, tier, _)| *tier));
        // At least one prompt token is always computed, for the logits of the first new token.
        let max_reuse = seq.prompt.len().saturating_sub(1);
        let running_len = from_running.map_or(0, |(_, n)| n.min(max_reuse));
        if let (Some(key), Some((_, tier, matched))) = (&key, lookup.own.clone()) {
            let matched = matched.min(max_reuse);
            if matched >= running_len {
                return self.place_own(key, tier, matched, need);
            }
        }
        // A prefix resident for an idle agent of the namespace is kept while room is made, unless
        // it is the only agent that can make room.
        let keep = lookup.shared.as_ref().map(|(owner, _, _)| owner.clone());
        let keep = keep.filter(|owner| self.agents.claim(owner));
        let mut room = self.make_room(1);
        if let Some(owner) = &keep {
            self.agents.unclaim(owner);
            room = room || self.make_room(1);
        }
        if !room {
            return None;
        }
        let id = self.take_free_seq()?;
        self.reserved += need;
        if let Some(key) = &key {
            self.agents.claim(key);
        }
        // Making room may have sent the prefix's owner warm: then its cells are gone and it is no source.
        let still_live = |s: &Self, owner: &AgentKey, src: SeqId| {
            s.agents.memory().get(owner).is_some_and(|info| info.tier == Tier::Hot && info.seq == Some(src))
        };
        let idle_owner = lookup
            .shared
            .filter(|(owner, src, _)| still_live(self, owner, *src))
            .map(|(_, src, matched)| (src, matched.min(max_reuse)));
        let source = [idle_owner, from_running.map(|(src, _)| (src, running_len))]
            .into_iter()
            .flatten()
            .filter(|&(_, n)| n > 0)
            .max_by_key(|&(_, n)| n);
        if let Some((src, matched)) = source {
            let started = Instant::now();
            let copied = self.engine.kv_copy_prefix(src, id, matched as u32);
            tracing::debug!(
                tokens = matched,
                ms = started.elapsed().as_secs_f64() * 1e3,
                ok = copied.is_ok(),
                "prefix copied"
            );
            match copied {
                Ok(()) => return Some(Placement { seq: id, cached: matched, source: Some(CacheSource::SharedPrefix) }),
                Err(EngineError::WindowTrim { .. }) => self.shared.memory.window_recomputed(),
                Err(_) => {}
            }
            let _ = self.engine.kv_truncate(id, 0);
        }
        Some(Placement { seq: id, cached: 0, source: None })
    }

    /// Places a request on its agent's own KV (`matched` tokens of it, in `tier`).
    fn place_own(&mut self, key: &AgentKey, tier: Tier, matched: usize, need: usize) -> Option<Placement> {
        if tier == Tier::Hot {
            let info = self.agents.memory().get(key)?.clone();
            let id = info.seq?;
            // The agent's idle cells become this request's reservation.
            self.reserved = self.reserved + need - info.tokens;
            self.agents.claim(key);
            let cached = self.trim(id, matched);
            return Some(Placement { seq: id, cached, source: Some(CacheSource::Hot) });
        }
        if !self.make_room(1) {
            return None;
        }
        let id = self.take_free_seq()?;
        self.reserved += need;
        self.agents.claim(key);
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
            let cached = self.trim(id, matched);
            let source = if tier == Tier::Warm { CacheSource::Warm } else { CacheSource::Disk };
            return Some(Placement { seq: id, cached, source: Some(source) });
        }
        Some(Placement { seq: id, cached: 0, source: None })
    }

    /// Cuts sequence `id` back to its first `keep` tokens and returns how many it keeps. When the
    /// engine cannot cut there, the sequence is emptied and the request computes its whole prompt:
    /// a sequence never holds tokens beyond what its request knows (they would be attended to).
    fn trim(&mut self, id: SeqId, keep: usize) -> usize {
        match self.engine.kv_truncate(id, keep as u32) {
            Ok(()) => keep,
            Err(err) => {
                if matches!(err, EngineError::WindowTrim { .. }) {
                    self.shared.memory.window_recomputed();
                }
                tracing::warn!(%err, seq = id, keep, "cannot trim a sequence; computing the prompt instead");
                if let Err(err) = self.engine.kv_truncate(id, 0) {
                    // The first decode then fails on positions and fails only this request.
                    tracing::error!(%err, seq = id, "cannot empty a sequence");
                }
                0
            }
        }
    }

    fn plan(&mut self) -> Vec<Planned> {
        self.batch.clear();
        let mut plan = Vec::new();
        for (index, seq) in self.running.iter().enumerate() {
            if let (Some(token), Some(_)) = (seq.pending, seq.seq) {
                plan.push(Planned { index, tokens: 1, logits_row: None, fed: Some(token) });
            }
        }
        let mut budget = self.config.step_token_budget.saturating_sub(plan.len());
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
            if seq.seq.is_none() {
                continue;
            }
            let mut take = seq.prefill_left().min(budget);
            // Stop where a waiting request will copy the prefix, so that it starts a step sooner.
            if let Some(boundary) = seq.share_boundary.filter(|&b| b > seq.n_past) {
                take = take.min(boundary - seq.n_past);
            }
            plan.push(Planned { index, tokens: take, logits_row: None, fed: None });
            budget -= take;
        }
        // Rows in sequence-id order: llama.cpp splits a batch into forward passes of consecutive
        // sequence ids (`split_equal`), so neighbours' decode tokens and chunks share passes.
        plan.sort_by_key(|p| self.running[p.index].seq);
        for p in &mut plan {
            let seq = &self.running[p.index];
            let Some(id) = seq.seq else { continue };
            p.logits_row = match p.fed {
                Some(token) => Some(self.batch.push(id, token, seq.n_past as u32, true)),
                None => {
                    let completes = p.tokens == seq.prefill_left();
                    let span = &seq.prompt[seq.n_past..seq.n_past + p.tokens];
                    self.batch.push_span(id, span, seq.n_past as u32, completes).filter(|_| completes)
                }
            };
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
            let trie = seq.is_constrained().then(|| self.trie.get_or_init(|| TokenTrie::new(self.tokenizer.as_ref())));
            let token = seq.sample(self.engine.logits(row)?, trie);
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
            self.agents.unclaim(&key);
            if !matches!(reason, FinishReason::Error(_)) && seq.n_past > 0 {
                let tokens = seq.kv_tokens().to_vec();
                // A previous hot copy of this agent on another sequence is superseded.
                if let Some(old) = self.agents.memory().get(&key).and_then(|i| i.seq.map(|s| (s, i.tokens))) {
                    if old.0 != id {
                        let _ = self.engine.kv_truncate(old.0, 0);
                        self.free_seqs.push(old.0);
                        self.reserved -= old.1;
                    }
                }
                self.reserved += tokens.len();
                self.agents.set_hot(key, id, tokens, now_ms());
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
        if let Some((seq, tokens)) = self.agents.memory().get(key).and_then(|i| i.seq.map(|s| (s, i.tokens))) {
            let _ = self.engine.kv_truncate(seq, 0);
            self.free_seqs.push(seq);
            self.reserved -= tokens;
        }
    }

    fn agent_command(&mut self, cmd: AgentCommand) {
        use crate::AgentOpError as E;
        match cmd {
            AgentCommand::List { namespace, reply } => {
                let _ = reply.send(self.agents.memory().list(&namespace));
            }
            AgentCommand::Get { key, reply } => {
                let _ = reply.send(self.agents.memory().get(&key).cloned());
            }
            AgentCommand::Delete { key, reply } => {
                let result = if self.agents.in_use(&key) {
                    Err(E::Busy)
                } else if self.agents.memory().get(&key).is_none() {
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
                let result = if self.agents.pin(&key, pinned) {
                    self.agents.memory().get(&key).cloned().ok_or(E::NotFound)
                } else {
                    Err(E::NotFound)
                };
                let _ = reply.send(result);
            }
            AgentCommand::Flush { reply } => {
                self.agents.flush(&self.engine, Duration::from_secs(30));
                let _ = reply.send(crate::FlushReport { still_dirty: self.agents.memory().dirty().len() });
            }
            AgentCommand::Export { key, reply } => {
                let result =
                    if self.agents.in_use(&key) { Err(E::Busy) } else { self.agents.snapshot(&self.engine, &key) };
                let _ = reply.send(result);
            }
            AgentCommand::Import { snapshot, replace, reply } => {
                let _ = reply.send(self.import_agent(snapshot, replace));
            }
            AgentCommand::Clear { namespace, reply } => {
                let keys: Vec<AgentKey> = self
                    .agents
                    .memory()
                    .keys()
                    .into_iter()
                    .filter(|k| namespace.as_ref().is_none_or(|ns| &k.namespace == ns) && !self.agents.in_use(k))
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

    fn import_agent(
        &mut self,
        snapshot: crate::AgentSnapshot,
        replace: bool,
    ) -> Result<semantic_memory::AgentInfo, crate::AgentOpError> {
        use crate::AgentOpError as E;
        let key = snapshot.header.key();
        self.agents.compatible(&snapshot.header)?;
        if self.agents.in_use(&key) {
            return Err(E::Busy);
        }
        if self.agents.memory().get(&key).is_some() {
            if !replace {
                return Err(E::Exists);
            }
            self.drop_hot(&key);
        }
        self.agents.adopt(snapshot)
    }

    fn evict_to_disk(&mut self, key: &AgentKey) -> Result<semantic_memory::AgentInfo, crate::AgentOpError> {
        use crate::AgentOpError as E;
        if self.agents.in_use(key) {
            return Err(E::Busy);
        }
        let info = self.agents.memory().get(key).cloned().ok_or(E::NotFound)?;
        if info.tier == Tier::Hot {
            if let Some((seq, tokens)) = self.agents.demote_hot(&mut self.engine, key) {
                self.free_seqs.push(seq);
                self.reserved -= tokens;
            }
        }
        self.agents.demote_to_disk(key).map_err(|reason| E::Persist { reason })?;
        self.agents.memory().get(key).cloned().ok_or(E::NotFound)
    }

    /// The engine, for tests.
    #[cfg(test)]
    pub fn engine(&self) -> &E {
        &self.engine
    }
}

#[cfg(test)]
mod tests;

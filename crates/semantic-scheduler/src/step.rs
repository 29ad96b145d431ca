//! The step loop: `State` owns the engine on its thread and turns queued requests into batches.
//!
//! Each step: drop abandoned requests, admit waiting ones while sequences and KV cells allow,
//! build one batch (one decode token per running sequence, then prefill chunks, shortest prompt
//! first, under the token budget), decode it, sample, stream. A failed or panicking step fails only
//! the requests in its batch.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use semantic_engine::{Batch, Engine, EngineError, SeqId, Tokenizer};
use tokio::sync::{mpsc, oneshot};

use crate::handle::{DrainReport, Shared};
use crate::sequence::Sequence;
use crate::{FinishReason, SchedulerConfig};

/// Messages from the async side to the step thread.
pub(crate) enum Command {
    Submit(Box<Sequence>),
    Drain { deadline: Instant, reply: oneshot::Sender<DrainReport> },
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
}

/// The step thread's state. Synchronous: tests drive it step by step without a runtime.
pub(crate) struct State<E: Engine> {
    engine: E,
    tokenizer: Arc<dyn Tokenizer>,
    config: SchedulerConfig,
    waiting: VecDeque<Sequence>,
    running: Vec<Sequence>,
    free_seqs: Vec<SeqId>,
    reserved: usize,
    n_ctx: usize,
    batch: Batch,
    shared: Arc<Shared>,
    drain: Option<Drain>,
}

impl<E: Engine> State<E> {
    pub fn new(engine: E, mut config: SchedulerConfig, shared: Arc<Shared>) -> Self {
        let info = engine.context();
        config.step_token_budget = config.step_token_budget.clamp(1, info.n_batch as usize);
        config.max_running = config.max_running.clamp(1, info.n_seq_max as usize);
        let free_seqs = (0..info.n_seq_max as SeqId).rev().collect();
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
            shared,
            drain: None,
        }
    }

    /// Runs until every handle is gone and no work is left.
    pub fn run(mut self, mut rx: mpsc::Receiver<Command>) {
        loop {
            if self.is_idle() {
                self.reply_drain_if_done();
                match rx.blocking_recv() {
                    Some(cmd) => self.command(cmd),
                    None => return,
                }
            }
            while let Ok(cmd) = rx.try_recv() {
                self.command(cmd);
            }
            self.step();
            self.check_drain();
        }
    }

    pub fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(seq) => self.waiting.push_back(*seq),
            Command::Drain { deadline, reply } => {
                self.drain = Some(Drain { deadline, reply, completed: 0 });
                self.check_drain();
            }
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
        while self.running.len() < self.config.max_running {
            let Some(front) = self.waiting.front() else { break };
            if self.reserved + front.reservation() > self.n_ctx || self.free_seqs.is_empty() {
                break; // Wait for KV cells or a sequence to free up; FIFO keeps it fair.
            }
            let (Some(mut seq), Some(id)) = (self.waiting.pop_front(), self.free_seqs.pop()) else { break };
            self.reserved += seq.reservation();
            seq.admit(id);
            self.running.push(seq);
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
        }
        self.publish();
    }

    fn plan(&mut self) -> Vec<Planned> {
        self.batch.clear();
        let mut plan = Vec::new();
        for (index, seq) in self.running.iter().enumerate() {
            if let (Some(token), Some(id)) = (seq.pending, seq.seq) {
                let row = self.batch.push(id, token, seq.n_past as u32, true);
                plan.push(Planned { index, tokens: 1, logits_row: Some(row) });
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
            plan.push(Planned { index, tokens: take, logits_row: if completes { row } else { None } });
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
            self.release(&seq);
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

    fn release(&mut self, seq: &Sequence) {
        if let Some(id) = seq.seq {
            if let Err(err) = self.engine.kv_truncate(id, 0) {
                tracing::error!(%err, seq = id, "cannot free a sequence's KV; retiring its id");
                return;
            }
            self.free_seqs.push(id);
        }
        self.reserved -= seq.reservation();
    }

    fn publish(&self) {
        self.shared.running.store(self.running.len(), Ordering::Relaxed);
        self.shared.kv_reserved.store(self.reserved, Ordering::Relaxed);
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
        let config = SchedulerConfig { max_running, step_token_budget: budget, queue_capacity: 64 };
        State::new(FakeEngine::new(n_ctx, 512, 8), config, Arc::default())
    }

    fn submit(state: &mut State<FakeEngine>, prompt_len: usize, max_tokens: usize) -> UnboundedReceiver<Event> {
        let prompt: Vec<TokenId> = (0..prompt_len).map(|i| 97 + (i % 26) as TokenId).collect();
        let request = GenerateRequest { prompt, max_tokens, sampling: SamplingParams::greedy(), stop: vec![] };
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        state.shared.queued.fetch_add(1, Ordering::Relaxed);
        state.command(Command::Submit(Box::new(Sequence::new(request, tx))));
        rx
    }

    /// Per step: tokens per sequence id, in row order.
    fn batches(state: &State<FakeEngine>) -> Vec<Vec<(SeqId, usize)>> {
        state.engine().control().lock().unwrap().batches.clone()
    }

    fn drain_events(rx: &mut UnboundedReceiver<Event>) -> (String, Option<FinishReason>) {
        let mut text = String::new();
        let mut reason = None;
        while let Ok(event) = rx.try_recv() {
            match event {
                Event::Delta { text: t, .. } => text.push_str(&t),
                Event::Done { reason: r, .. } => reason = Some(r),
            }
        }
        (text, reason)
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
        let request = GenerateRequest { prompt, max_tokens: 30, sampling: SamplingParams::greedy(), stop: vec![stop] };
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        s.command(Command::Submit(Box::new(Sequence::new(request, tx))));
        run_to_idle(&mut s);
        let (text, reason) = drain_events(&mut rx);
        assert_eq!(text, full[..cut]);
        assert_eq!(reason, Some(FinishReason::StopString(0)));
    }
}

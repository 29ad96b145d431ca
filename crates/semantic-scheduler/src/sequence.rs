//! `Sequence`: one request's state on the step thread, from admission to its last event.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use semantic_chat::{StopMatcher, Utf8Stream};
use semantic_engine::{token_logprob, JsonState, Sampler, SeqId, TokenId, TokenLogprob, TokenTrie, Tokenizer};
use tokio::sync::mpsc::UnboundedSender;

use crate::counters::RequestCounters;
use crate::{AgentRef, CacheSource, Event, FinishReason, GenerateRequest, Timings, Usage};

/// A request being served.
pub(crate) struct Sequence {
    /// Engine sequence id, once running.
    pub seq: Option<SeqId>,
    pub prompt: Vec<TokenId>,
    /// Tokens of this sequence already in the KV cache.
    pub n_past: usize,
    pub max_tokens: usize,
    pub generated: usize,
    /// Sampled but not yet decoded (fed at the next step).
    pub pending: Option<TokenId>,
    /// A waiting request will copy this sequence's first `share_boundary` prompt tokens once they
    /// are computed: prefill chunks stop there so that it can start as early as possible.
    pub share_boundary: Option<usize>,
    pub cached_tokens: usize,
    pub cache_source: Option<CacheSource>,
    /// Whose memory this request uses.
    pub agent: AgentRef,
    /// Every token whose KV this sequence holds or will hold: the prompt, then each generated token
    /// once it has been decoded (`history[..n_past]` is exactly the KV content).
    pub history: Vec<TokenId>,
    sampler: Sampler,
    /// Structured output: where the reply stands in its grammar (None when unconstrained).
    constraint: Option<JsonState>,
    /// Scratch for constrained sampling: the token mask and the masked logits.
    mask: Vec<bool>,
    masked: Vec<f32>,
    /// Alternatives per token to report, when log probabilities were asked for.
    logprobs: Option<usize>,
    /// The last sampled token's log probability, until `on_token` keeps or drops it.
    last_logprob: Option<TokenLogprob>,
    unsent_logprobs: Vec<TokenLogprob>,
    utf8: Utf8Stream,
    stop: StopMatcher,
    unsent: Vec<TokenId>,
    events: UnboundedSender<Event>,
    counters: Arc<RequestCounters>,
    last_token: Option<Instant>,
    submitted: Instant,
    admitted: Option<Instant>,
    prefilled: Option<Instant>,
    first_token: Option<Instant>,
}

impl Sequence {
    pub fn new(request: GenerateRequest, events: UnboundedSender<Event>, counters: Arc<RequestCounters>) -> Self {
        Self {
            counters,
            last_token: None,
            seq: None,
            history: request.prompt.clone(),
            prompt: request.prompt,
            agent: request.agent,
            cache_source: None,
            n_past: 0,
            max_tokens: request.max_tokens,
            generated: 0,
            pending: None,
            share_boundary: None,
            cached_tokens: 0,
            constraint: request.sampling.constraint.clone().map(JsonState::new),
            mask: Vec::new(),
            masked: Vec::new(),
            logprobs: request.sampling.logprobs,
            last_logprob: None,
            unsent_logprobs: Vec::new(),
            sampler: Sampler::new(request.sampling),
            utf8: Utf8Stream::new(),
            stop: StopMatcher::new(request.stop),
            unsent: Vec::new(),
            events,
            submitted: Instant::now(),
            admitted: None,
            prefilled: None,
            first_token: None,
        }
    }

    /// KV cells this request may need at most.
    pub fn reservation(&self) -> usize {
        self.prompt.len() + self.max_tokens
    }

    /// True when the client stopped listening.
    pub fn is_abandoned(&self) -> bool {
        self.events.is_closed()
    }

    /// Prompt tokens still to prefill.
    pub fn prefill_left(&self) -> usize {
        self.prompt.len().saturating_sub(self.n_past)
    }

    /// Starts running on engine sequence `seq`, whose KV already holds `cached` prompt tokens.
    pub fn admit(&mut self, seq: SeqId, cached: usize, source: Option<CacheSource>) {
        self.seq = Some(seq);
        self.n_past = cached;
        self.cached_tokens = cached;
        self.cache_source = source.filter(|_| cached > 0);
        self.admitted = Some(Instant::now());
        self.sampler.accept_prompt(&self.prompt);
        let _ = self.events.send(Event::Admitted { cached_tokens: cached, source: self.cache_source });
    }

    /// The pending token was decoded into the KV cache.
    pub fn fed(&mut self, token: TokenId) {
        self.history.push(token);
    }

    /// The tokens whose KV the sequence holds now.
    pub fn kv_tokens(&self) -> &[TokenId] {
        &self.history[..self.n_past.min(self.history.len())]
    }

    pub fn mark_prefilled(&mut self) {
        if self.prefilled.is_none() {
            self.prefilled = Some(Instant::now());
        }
    }

    /// Whether the reply is constrained to a grammar (then [`Self::sample`] needs the vocabulary's trie).
    pub fn is_constrained(&self) -> bool {
        self.constraint.is_some()
    }

    /// The next token. Constrained: the sampler's choice if the grammar allows it, else a draw from the logits
    /// with every refused token masked out (greedy gives the allowed argmax either way, and a draw keeps the
    /// distribution restricted to the allowed tokens); then the grammar state advances past it.
    pub fn sample(&mut self, logits: &[f32], trie: Option<&TokenTrie>) -> TokenId {
        let token = self.choose(logits, trie);
        self.last_logprob = self.logprobs.map(|top| token_logprob(logits, token, top));
        token
    }

    fn choose(&mut self, logits: &[f32], trie: Option<&TokenTrie>) -> TokenId {
        let first = self.sampler.sample(logits);
        let (Some(state), Some(trie)) = (self.constraint.as_mut(), trie) else { return first };
        let token = if trie.allows(state, first) {
            first
        } else {
            trie.mask(state, &mut self.mask);
            self.masked.clear();
            let allowed = self.mask.iter().chain(std::iter::repeat(&false));
            self.masked.extend(logits.iter().zip(allowed).map(|(&l, &ok)| if ok { l } else { f32::NEG_INFINITY }));
            match self.mask.iter().position(|&ok| ok) {
                // Cannot happen while the grammar is alive (a complete value allows end of generation);
                // if it does, the sampler's own choice ends up in the reply rather than a panic.
                None => first,
                Some(_) => self.sampler.sample(&self.masked),
            }
        };
        state.advance(trie.bytes(token));
        token
    }

    /// Handles a freshly sampled token; returns why the sequence ends, if it does.
    pub fn on_token(&mut self, token: TokenId, tokenizer: &Arc<dyn Tokenizer>) -> Option<FinishReason> {
        let now = Instant::now();
        match self.last_token {
            None => self.counters.time_to_first_token.observe(now - self.submitted),
            Some(last) => self.counters.inter_token.observe(now - last),
        }
        self.last_token = Some(now);
        self.first_token.get_or_insert(now);
        if tokenizer.is_eog(token) {
            return Some(FinishReason::Stop);
        }
        self.generated += 1;
        self.sampler.accept(token);
        self.unsent.push(token);
        self.unsent_logprobs.extend(self.last_logprob.take());
        let text = self.utf8.push(&tokenizer.token_bytes(token));
        let step = self.stop.push(&text);
        if !step.emit.is_empty() {
            let tokens = std::mem::take(&mut self.unsent);
            let logprobs = std::mem::take(&mut self.unsent_logprobs);
            let _ = self.events.send(Event::Delta { text: step.emit, tokens, logprobs });
        }
        if let Some(i) = step.stopped {
            return Some(FinishReason::StopString(i));
        }
        if self.generated >= self.max_tokens {
            return Some(FinishReason::Length);
        }
        self.pending = Some(token);
        None
    }

    /// Sends the last event. Held-back text is flushed unless a stop string ended the stream.
    pub fn finish(mut self, reason: FinishReason) {
        if matches!(reason, FinishReason::Stop | FinishReason::Length) {
            let mut text = self.utf8.finish();
            text = {
                let mut step = self.stop.push(&text);
                step.emit.push_str(&self.stop.finish());
                step.emit
            };
            if !text.is_empty() || !self.unsent.is_empty() {
                let tokens = std::mem::take(&mut self.unsent);
                let logprobs = std::mem::take(&mut self.unsent_logprobs);
                let _ = self.events.send(Event::Delta { text, tokens, logprobs });
            }
        }
        let now = Instant::now();
        let decode_secs = self.first_token.map(|t| now.duration_since(t).as_secs_f64()).unwrap_or(0.0);
        let computed = self.prompt.len().saturating_sub(self.cached_tokens);
        let prefill = match (self.admitted, self.prefilled) {
            (Some(a), Some(p)) => p.duration_since(a),
            _ => Default::default(),
        };
        let timings = Timings {
            queue: self.admitted.map(|a| a.duration_since(self.submitted)).unwrap_or_default(),
            prefill,
            time_to_first_token: self.first_token.map(|t| t.duration_since(self.submitted)).unwrap_or_default(),
            decode_tokens_per_second: if decode_secs > 0.0 && self.generated > 1 {
                (self.generated - 1) as f64 / decode_secs
            } else {
                0.0
            },
            prefill_tokens_per_second: if prefill.as_secs_f64() > 0.0 {
                computed as f64 / prefill.as_secs_f64()
            } else {
                0.0
            },
        };
        let usage = Usage {
            prompt_tokens: self.prompt.len(),
            cached_tokens: self.cached_tokens,
            completion_tokens: self.generated,
            cache_source: self.cache_source,
        };
        let c = &self.counters;
        c.prompt_tokens.fetch_add(usage.prompt_tokens as u64, Ordering::Relaxed);
        c.prefilled_tokens.fetch_add(computed as u64, Ordering::Relaxed);
        c.generated_tokens.fetch_add(usage.completion_tokens as u64, Ordering::Relaxed);
        let i = match reason {
            FinishReason::Stop => 0,
            FinishReason::Length => 1,
            FinishReason::StopString(_) => 2,
            FinishReason::Cancelled => 3,
            FinishReason::Error(_) => 4,
        };
        c.finished[i].fetch_add(1, Ordering::Relaxed);
        let _ = self.events.send(Event::Done { reason, usage, timings });
    }
}

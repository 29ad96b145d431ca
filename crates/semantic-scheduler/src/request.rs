//! Requests in and events out: `GenerateRequest`, `Event`, `FinishReason`, `Usage`, `Timings`.

use std::time::Duration;

use semantic_engine::{SamplingParams, TokenId, TokenLogprob};
use semantic_memory::{AgentId, AgentKey, Namespace};

/// One generation job: token ids in, a stream of events out.
#[derive(Debug, Clone)]
pub struct GenerateRequest {
    /// Prompt token ids (already templated and tokenized).
    pub prompt: Vec<TokenId>,
    /// Most tokens to generate.
    pub max_tokens: usize,
    /// Sampling settings.
    pub sampling: SamplingParams,
    /// Stop strings, matched on decoded text, never emitted.
    pub stop: Vec<String>,
    /// Whose memory to reuse and update.
    pub agent: AgentRef,
}

/// Which agent memory a request may use. Reuse never crosses namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentRef {
    /// The caller's namespace (one per API key).
    pub namespace: Namespace,
    /// The named agent, whose memory is reused and then replaced by this turn. Without one, the
    /// request may still reuse a prefix resident for another agent of the namespace, but stores nothing.
    pub agent: Option<AgentId>,
}

impl AgentRef {
    /// The named agent's full key, if the request names one.
    pub fn key(&self) -> Option<AgentKey> {
        self.agent.as_ref().map(|id| AgentKey::new(self.namespace.clone(), id.clone()))
    }
}

impl Default for AgentRef {
    fn default() -> Self {
        Self { namespace: Namespace::default_ns(), agent: None }
    }
}

/// Where reused prompt KV came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheSource {
    /// The agent's live sequence in the engine.
    Hot,
    /// The agent's state bytes in RAM.
    Warm,
    /// The agent's file on disk.
    Disk,
    /// A prefix copied from another agent's live sequence (e.g. a shared system prompt).
    SharedPrefix,
}

impl CacheSource {
    /// Label value for metrics and logs.
    pub fn as_str(self) -> &'static str {
        match self {
            CacheSource::Hot => "hot",
            CacheSource::Warm => "warm",
            CacheSource::Disk => "disk",
            CacheSource::SharedPrefix => "shared_prefix",
        }
    }
}

/// Why a generation ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FinishReason {
    /// The model produced an end-of-generation token.
    Stop,
    /// A stop string matched (index into the request's `stop`).
    StopString(usize),
    /// `max_tokens` reached.
    Length,
    /// The client went away or the server cut the request while draining.
    Cancelled,
    /// The engine failed for this request; the server goes on.
    Error(String),
}

/// Token accounting for one request.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Usage {
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Prompt tokens whose KV was reused instead of computed.
    pub cached_tokens: usize,
    /// Tokens generated.
    pub completion_tokens: usize,
    /// Where the cached tokens came from (None when nothing was reused).
    pub cache_source: Option<CacheSource>,
}

/// Where the time went.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Timings {
    /// Submission to first scheduled step.
    pub queue: Duration,
    /// First scheduled step to the end of prefill.
    pub prefill: Duration,
    /// Submission to the first generated token.
    pub time_to_first_token: Duration,
    /// Generated tokens per second after the first.
    pub decode_tokens_per_second: f64,
    /// Prompt tokens computed per second during prefill.
    pub prefill_tokens_per_second: f64,
}

/// What a request's stream yields.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The request got an engine sequence: `cached_tokens` of its prompt were reused from agent
    /// memory (the rest is prefilled next). The first event of every request that runs; a request
    /// that fails before it is placed gets only `Done`.
    Admitted {
        /// Prompt tokens reused.
        cached_tokens: usize,
        /// Where they came from (None when nothing was reused).
        source: Option<CacheSource>,
    },
    /// New text (complete UTF-8, stop strings withheld) and the token ids that produced it.
    Delta {
        /// Text to show.
        text: String,
        /// Token ids sampled since the last delta.
        tokens: Vec<TokenId>,
        /// Their log probabilities, one per token, when the request asked (`SamplingParams::logprobs`).
        logprobs: Vec<TokenLogprob>,
    },
    /// The last event of every stream.
    Done {
        /// Why it ended.
        reason: FinishReason,
        /// Token accounting.
        usage: Usage,
        /// Timings.
        timings: Timings,
    },
}

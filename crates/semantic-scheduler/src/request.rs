//! Requests in and events out: `GenerateRequest`, `Event`, `FinishReason`, `Usage`, `Timings`.

use std::time::Duration;

use semantic_engine::{SamplingParams, TokenId};

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
    /// New text (complete UTF-8, stop strings withheld) and the token ids that produced it.
    Delta {
        /// Text to show.
        text: String,
        /// Token ids sampled since the last delta.
        tokens: Vec<TokenId>,
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

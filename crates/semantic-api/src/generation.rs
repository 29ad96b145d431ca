//! One generation as the routes see it: submits a job to the scheduler, reads its events, splits
//! the reply into text and tool calls, and maps finish reasons and failures into API terms. Wire
//! shapes live in the route modules; dropping a [`Generation`] cancels the request, which is also
//! how the two timeouts cut one: the whole of a non-streaming reply ([`Generation::collect`]),
//! the gap between two events of a stream ([`Generation::next`]).

use std::collections::VecDeque;
use std::time::Duration;

use semantic_chat::{ParsedToolCall, ToolCallParser, ToolEvent};
use semantic_engine::TokenLogprob;
use semantic_scheduler::{Event, FinishReason, GenerateRequest, RequestStream, Timings, Usage};

use crate::error::{ApiError, ErrorKind, Flavor};
use crate::AppState;

/// A validated request, ready to submit.
pub(crate) struct Job {
    /// What the scheduler runs.
    pub request: GenerateRequest,
    /// Names of the tools offered this turn, whose calls are parsed out of the reply (None: no
    /// tools offered, the reply is plain text).
    pub tools: Option<Vec<String>>,
}

/// Part of a reply.
#[derive(Debug)]
pub(crate) enum Piece {
    /// Text.
    Text(String),
    /// A complete tool call.
    Call(ParsedToolCall),
}

/// Why a reply ended, in terms every API can spell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Finish {
    /// End of turn.
    Stop,
    /// The stop string at this index of the request's list.
    StopSequence(usize),
    /// `max_tokens` reached.
    Length,
    /// The reply holds tool calls.
    ToolCalls,
}

/// What [`Generation::next`] yields.
#[derive(Debug)]
pub(crate) enum Step {
    /// More of the reply (never empty).
    Pieces(Vec<Piece>),
    /// The end, after every piece.
    Done { finish: Finish, usage: Usage, timings: Timings },
    /// The request failed; nothing follows.
    Failed(ApiError),
}

/// A whole reply.
pub(crate) struct Collected {
    pub text: String,
    pub calls: Vec<ParsedToolCall>,
    pub finish: Finish,
    pub usage: Usage,
    pub timings: Timings,
    /// Each generated token's log probability, when the request asked.
    pub logprobs: Vec<TokenLogprob>,
}

/// A running request.
pub(crate) struct Generation {
    events: RequestStream,
    parser: Option<ToolCallParser>,
    calls: usize,
    pending: VecDeque<Step>,
    finished: bool,
    flavor: Flavor,
    /// Longest wait for the next event (streams); None for no limit.
    idle_timeout: Option<Duration>,
    /// Longest a whole reply may take ([`Generation::collect`]).
    request_timeout: Duration,
    /// Prompt tokens reused, once the scheduler has placed the request.
    cached: Option<usize>,
    /// An event [`Generation::admitted`] read ahead of placement (an early end), for `next`.
    early: Option<Event>,
    /// Log probabilities of tokens read but not yet taken ([`Generation::take_logprobs`]).
    logprobs: Vec<TokenLogprob>,
}

impl Generation {
    /// Queues the job; errors (queue full, context overflow, draining) come back in `flavor`.
    pub fn start(state: &AppState, job: Job, flavor: Flavor) -> Result<Self, ApiError> {
        let events = state.scheduler.submit(job.request).map_err(|e| ApiError::from(e).in_flavor(flavor))?;
        Ok(Generation {
            events,
            parser: job.tools.map(ToolCallParser::new),
            calls: 0,
            pending: VecDeque::new(),
            finished: false,
            flavor,
            idle_timeout: Some(state.options.stream_idle_timeout),
            request_timeout: state.options.request_timeout,
            cached: None,
            early: None,
            logprobs: Vec::new(),
        })
    }

    /// Waits until the scheduler has placed the request and returns how many prompt tokens it
    /// reused (exact, before any is prefilled). None when the request ended or timed out first;
    /// [`Generation::next`] then reports that.
    pub async fn admitted(&mut self) -> Option<usize> {
        if self.cached.is_some() || self.finished || !self.pending.is_empty() {
            return self.cached;
        }
        match self.recv().await {
            Ok(Some(Event::Admitted { cached_tokens, .. })) => {
                self.cached = Some(cached_tokens);
                self.cached
            }
            Ok(other) => {
                self.early = other;
                if self.early.is_none() {
                    self.pending.push_back(self.ended_without_result());
                    self.finished = true;
                }
                None
            }
            Err(failed) => {
                self.pending.push_back(failed);
                None
            }
        }
    }

    fn ended_without_result(&self) -> Step {
        let error = ApiError::new(ErrorKind::Internal, "the generation ended without a result");
        Step::Failed(error.in_flavor(self.flavor))
    }

    /// The next scheduler event within the stream idle timeout; past it the generation is
    /// finished and the error step comes back.
    async fn recv(&mut self) -> Result<Option<Event>, Step> {
        if let Some(event) = self.early.take() {
            return Ok(Some(event));
        }
        match self.idle_timeout {
            None => Ok(self.events.recv().await),
            Some(limit) => match tokio::time::timeout(limit, self.events.recv()).await {
                Ok(event) => Ok(event),
                Err(_) => {
                    self.finished = true;
                    let error = ApiError::new(
                        ErrorKind::Timeout,
                        format!(
                            "no token for {} s (the stream idle timeout); the generation was cancelled",
                            limit.as_secs_f64()
                        ),
                    )
                    .with_code("stream_idle_timeout");
                    Err(Step::Failed(error.in_flavor(self.flavor)))
                }
            },
        }
    }

    /// The next part of the reply, then `Done` or `Failed`, then None. Waiting longer than the
    /// stream idle timeout for an event (a token, or the end) fails the generation; the caller
    /// then drops it, which cancels the request.
    pub async fn next(&mut self) -> Option<Step> {
        loop {
            if let Some(step) = self.pending.pop_front() {
                return Some(step);
            }
            if self.finished {
                return None;
            }
            let event = match self.recv().await {
                Ok(event) => event,
                Err(failed) => return Some(failed),
            };
            match event {
                Some(Event::Admitted { cached_tokens, .. }) => self.cached = Some(cached_tokens),
                Some(Event::Delta { text, logprobs, .. }) => {
                    self.logprobs.extend(logprobs);
                    let pieces = match &mut self.parser {
                        Some(parser) => parser.push(&text),
                        None => vec![ToolEvent::Text(text)],
                    };
                    let pieces = self.pieces(pieces);
                    if !pieces.is_empty() {
                        return Some(Step::Pieces(pieces));
                    }
                }
                Some(Event::Done { reason, usage, timings }) => {
                    self.finished = true;
                    let finish = match reason {
                        FinishReason::Stop => Finish::Stop,
                        FinishReason::StopString(i) => Finish::StopSequence(i),
                        FinishReason::Length => Finish::Length,
                        FinishReason::Cancelled => {
                            let error = ApiError {
                                retry_after: Some(5),
                                ..ApiError::new(ErrorKind::Unavailable, "the request was cut by a server shutdown")
                                    .with_code("draining")
                            };
                            return Some(Step::Failed(error.in_flavor(self.flavor)));
                        }
                        FinishReason::Error(message) => {
                            let error = ApiError::new(ErrorKind::Internal, format!("generation failed: {message}"))
                                .with_code("generation_failed");
                            return Some(Step::Failed(error.in_flavor(self.flavor)));
                        }
                    };
                    let tail = match &mut self.parser {
                        Some(parser) => parser.finish(),
                        None => Vec::new(),
                    };
                    let tail = self.pieces(tail);
                    if !tail.is_empty() {
                        self.pending.push_back(Step::Pieces(tail));
                    }
                    let finish = if self.calls > 0 { Finish::ToolCalls } else { finish };
                    self.pending.push_back(Step::Done { finish, usage, timings });
                }
                None => {
                    self.finished = true;
                    return Some(self.ended_without_result());
                }
            }
        }
    }

    /// The whole reply, within the request timeout (no idle limit between tokens: only the total
    /// counts). Past it the generation is dropped, which cancels the request, and the error is a
    /// 504.
    pub async fn collect(mut self) -> Result<Collected, ApiError> {
        let limit = self.request_timeout;
        let flavor = self.flavor;
        self.idle_timeout = None;
        let whole = async move {
            let mut text = String::new();
            let mut calls = Vec::new();
            let mut logprobs = Vec::new();
            while let Some(step) = self.next().await {
                logprobs.append(&mut self.logprobs);
                match step {
                    Step::Pieces(pieces) => {
                        for piece in pieces {
                            match piece {
                                Piece::Text(t) => text.push_str(&t),
                                Piece::Call(c) => calls.push(c),
                            }
                        }
                    }
                    Step::Done { finish, usage, timings } => {
                        return Ok(Collected { text, calls, finish, usage, timings, logprobs })
                    }
                    Step::Failed(error) => return Err(error),
                }
            }
            Err(ApiError::new(ErrorKind::Internal, "the generation ended without a result").in_flavor(self.flavor))
        };
        tokio::time::timeout(limit, whole).await.unwrap_or_else(|_| {
            let message = format!(
                "the generation took longer than the request timeout ({} s) and was cancelled; stream long replies",
                limit.as_secs_f64()
            );
            Err(ApiError::new(ErrorKind::Timeout, message).with_code("request_timeout").in_flavor(flavor))
        })
    }

    /// The log probabilities of the tokens read so far and not yet taken (streams attach them to their chunks).
    pub fn take_logprobs(&mut self) -> Vec<TokenLogprob> {
        std::mem::take(&mut self.logprobs)
    }

    fn pieces(&mut self, events: Vec<ToolEvent>) -> Vec<Piece> {
        events
            .into_iter()
            .filter_map(|event| match event {
                ToolEvent::Text(t) if t.is_empty() => None,
                ToolEvent::Text(t) => Some(Piece::Text(t)),
                ToolEvent::Call(c) => {
                    self.calls += 1;
                    Some(Piece::Call(c))
                }
            })
            .collect()
    }
}

/// A random id: `prefix` then 24 hex digits.
pub(crate) fn random_id(prefix: &str) -> String {
    format!("{prefix}{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>())
}

/// Seconds since the Unix epoch.
pub(crate) fn now_secs() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

//! OpenAI legacy text completion: `POST /v1/completions`, a raw prompt (no chat template), JSON
//! or SSE `text_completion` chunks.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use semantic_engine::{TokenLogprob, Tokenizer};
use semantic_scheduler::GenerateRequest;
use serde_json::Value;

use crate::auth::Caller;
use crate::error::{ApiError, ErrorKind, Flavor};
use crate::extract::ApiJson;
use crate::generation::{now_secs, random_id, Generation, Job, Piece, Step};
use crate::identity::{target, BodyIds, Target};
use crate::logprobs;
use crate::openai::{finish_reason, usage};
use crate::openai_wire::{
    stream_flags, CompletionChoice, CompletionPrompt, CompletionRequest, StopField, TextCompletion,
};
use crate::params::{self, openai_sampling_fields};
use crate::AppState;

/// `max_tokens` when a legacy request names none (OpenAI's default).
const DEFAULT_MAX_TOKENS: usize = 16;

/// `POST /v1/completions`.
#[utoipa::path(post, path = "/v1/completions", tag = "openai",
    request_body = CompletionRequest,
    responses(
        (status = 200, description = "JSON completion, or with `stream` SSE `data:` chunks of the same shape then `data: [DONE]`",
            content((TextCompletion = "application/json"), (TextCompletion = "text/event-stream"))),
        (status = 400, description = "invalid request", body = crate::error::OpenAiErrorBody),
        (status = 404, description = "`model_not_found`", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn completions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<CompletionRequest>,
) -> Result<Response, ApiError> {
    let ids = BodyIds { agent_id: req.agent_id.as_deref(), session_id: req.session_id.as_deref() };
    let Target { model, agent } = target(&state, &caller.namespace, req.model.as_deref(), ids, &headers)?;
    let (streaming, include_usage) = stream_flags(req.stream, req.stream_options.as_ref());
    if req.echo == Some(true) {
        return Err(ApiError::invalid("echo", "echo is not supported"));
    }
    if req.suffix.is_some() {
        return Err(ApiError::invalid("suffix", "suffix (fill-in-the-middle) is not supported"));
    }
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    if req.best_of.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("best_of", "only best_of = 1 is supported"));
    }
    let fields = openai_sampling_fields!(req);
    let mut sampling = params::sampling(&fields, params::OPENAI, state.scheduler.facts().n_vocab)?;
    sampling.constraint = params::response_format(req.response_format.as_ref())?;
    sampling.logprobs = logprobs::completion_request(req.logprobs)?;
    let tokenizer = sampling.logprobs.map(|_| Arc::clone(state.scheduler.tokenizer()));
    let stop = params::stop_strings("stop", req.stop.map(StopField::into_vec).unwrap_or_default())?;
    let max_tokens = params::max_tokens("max_tokens", req.max_tokens)?.unwrap_or(DEFAULT_MAX_TOKENS);
    let text = match req.prompt {
        CompletionPrompt::Text(text) => text,
        CompletionPrompt::Batch(items) => match <[Value; 1]>::try_from(items) {
            Ok([Value::String(text)]) => text,
            Ok(_) => return Err(ApiError::invalid("prompt", "token-id prompts are not supported; send text")),
            Err(items) => {
                return Err(ApiError::invalid(
                    "prompt",
                    format!("one prompt per request is supported, got {}", items.len()),
                ))
            }
        },
    };
    if text.is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    let prompt = state.prompter.raw(&text).map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    let job = Job { request: GenerateRequest { prompt, max_tokens, sampling, stop, agent }, tools: None };
    let generation = Generation::start(&state, job, Flavor::OpenAi).map_err(|e| {
        if e.code.as_deref() == Some("context_length_exceeded") {
            e.with_param("prompt")
        } else {
            e
        }
    })?;
    let maker = Maker::new("cmpl-", model, tokenizer);
    if streaming {
        return Ok(stream_completion(generation, maker, include_usage).into_response());
    }
    let collected = generation.collect().await?;
    let mut body = maker.completion(collected.text, Some(finish_reason(collected.finish)));
    body.choices[0].logprobs = maker.logprobs(&collected.logprobs, &mut 0);
    body.usage = Some(usage(&collected.usage));
    Ok(Json(body).into_response())
}

/// Builds the `text_completion` objects of one reply (also `POST /v1/agents/{id}/generate`'s stream).
pub(crate) struct Maker {
    id: String,
    created: u64,
    model: String,
    /// Set when the request asked for log probabilities.
    tokenizer: Option<Arc<dyn Tokenizer>>,
}

impl Maker {
    /// A reply whose id starts with `id_prefix`, naming `model`; `tokenizer` when logprobs were asked for.
    pub(crate) fn new(id_prefix: &str, model: String, tokenizer: Option<Arc<dyn Tokenizer>>) -> Self {
        Self { id: random_id(id_prefix), created: now_secs(), model, tokenizer }
    }

    fn logprobs(&self, lps: &[TokenLogprob], offset: &mut usize) -> Option<Value> {
        self.tokenizer.as_ref().map(|t| logprobs::completion(t.as_ref(), lps, offset))
    }

    fn completion(&self, text: String, finish: Option<&'static str>) -> TextCompletion {
        TextCompletion {
            id: self.id.clone(),
            object: "text_completion",
            created: self.created,
            model: self.model.clone(),
            choices: vec![CompletionChoice { text, index: 0, logprobs: None, finish_reason: finish }],
            usage: None,
        }
    }
}

fn data(value: &TextCompletion) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
}

/// The SSE stream of a raw-prompt reply: `text_completion` chunks, one with the `finish_reason`, with
/// `include_usage` one more with `usage` and no choices, then `data: [DONE]`.
pub(crate) fn stream_completion(
    generation: Generation,
    maker: Maker,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let body = stream::unfold(Some((generation, maker, 0usize)), move |state| async move {
        let (mut generation, maker, mut offset) = state?;
        let events: Vec<SseEvent> = match generation.next().await? {
            Step::Pieces(pieces) => {
                let lps = generation.take_logprobs();
                let mut out: Vec<TextCompletion> = pieces
                    .into_iter()
                    .filter_map(|p| match p {
                        Piece::Text(t) => Some(maker.completion(t, None)),
                        Piece::Call(_) => None,
                    })
                    .collect();
                if let Some(first) = out.first_mut() {
                    first.choices[0].logprobs = maker.logprobs(&lps, &mut offset);
                }
                out.iter().map(data).collect()
            }
            Step::Done { finish, usage: u, .. } => {
                let mut out = vec![data(&maker.completion(String::new(), Some(finish_reason(finish))))];
                if include_usage {
                    let mut last = maker.completion(String::new(), None);
                    last.choices.clear();
                    last.usage = Some(usage(&u));
                    out.push(data(&last));
                }
                out.push(SseEvent::default().data("[DONE]"));
                return Some((stream::iter(out), None));
            }
            Step::Failed(error) => {
                let out = vec![SseEvent::default().data(error.body().to_string()), SseEvent::default().data("[DONE]")];
                return Some((stream::iter(out), None));
            }
        };
        Some((stream::iter(events), Some((generation, maker, offset))))
    })
    .flatten();
    Sse::new(body.map(Ok)).keep_alive(KeepAlive::default())
}

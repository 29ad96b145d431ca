//! OpenAI-compatible routes: `POST /v1/chat/completions` (streaming and not) and `GET /v1/models`.

use std::collections::HashMap;
use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use semantic_chat::Message;
use semantic_engine::SamplingParams;
use semantic_scheduler::{AgentId, AgentRef, Event, FinishReason, GenerateRequest, RequestStream, Usage};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::prompt::PromptError;
use crate::AppState;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// Parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize)]
pub struct ContentPart {
    /// Part type (`text`).
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` part.
    pub text: Option<String>,
}

/// A chat message on the wire.
#[derive(Debug, Deserialize)]
pub struct WireMessage {
    /// system, developer, user, assistant or tool.
    pub role: String,
    /// Content (may be null for assistant messages with tool calls).
    pub content: Option<Content>,
    /// Optional author name.
    pub name: Option<String>,
    /// For tool results.
    pub tool_call_id: Option<String>,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize)]
pub struct StreamOptions {
    /// Send a final chunk with usage.
    #[serde(default)]
    pub include_usage: bool,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize)]
pub struct ChatCompletionRequest {
    /// Model name (any name is accepted for the one loaded model; see README).
    pub model: Option<String>,
    /// The conversation.
    pub messages: Vec<WireMessage>,
    /// Stream with SSE.
    #[serde(default)]
    pub stream: bool,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Completion length (legacy name).
    pub max_tokens: Option<u64>,
    /// Completion length.
    pub max_completion_tokens: Option<u64>,
    /// Sampling temperature (default 1).
    pub temperature: Option<f32>,
    /// Nucleus sampling.
    pub top_p: Option<f32>,
    /// Top-k (extension).
    pub top_k: Option<u32>,
    /// Min-p (extension).
    pub min_p: Option<f32>,
    /// Seed for reproducible sampling.
    pub seed: Option<u64>,
    /// OpenAI presence penalty.
    pub presence_penalty: Option<f32>,
    /// OpenAI frequency penalty.
    pub frequency_penalty: Option<f32>,
    /// llama.cpp-style repetition penalty (extension).
    pub repetition_penalty: Option<f32>,
    /// Token id (as a string) to bias.
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Number of choices (only 1).
    pub n: Option<u32>,
    /// Agent whose memory to reuse and update (also `session_id`, `X-Agent-ID`, `X-Session-ID`).
    pub agent_id: Option<String>,
    /// Alias of `agent_id`.
    pub session_id: Option<String>,
}

#[derive(Serialize)]
struct ChoiceMessage {
    role: &'static str,
    content: String,
}

fn now_secs() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn completion_id() -> String {
    format!("chatcmpl-{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>())
}

pub(crate) fn finish_reason_str(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::Length => "length",
        _ => "stop",
    }
}

fn usage_json(usage: &Usage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

fn to_messages(wire: Vec<WireMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    wire.into_iter()
        .enumerate()
        .map(|(i, m)| {
            let role = match m.role.as_str() {
                "developer" => "system".to_string(),
                "system" | "user" | "assistant" | "tool" => m.role,
                other => {
                    return Err(ApiError::invalid(
                        format!("messages[{i}].role"),
                        format!("unknown role {other:?} (expected system, developer, user, assistant or tool)"),
                    ))
                }
            };
            let content = match m.content {
                None => String::new(),
                Some(Content::Text(t)) => t,
                Some(Content::Parts(parts)) => {
                    let mut text = String::new();
                    for (j, part) in parts.into_iter().enumerate() {
                        match (part.kind.as_str(), part.text) {
                            ("text", Some(t)) => text.push_str(&t),
                            (kind, _) => {
                                return Err(ApiError::invalid(
                                    format!("messages[{i}].content[{j}]"),
                                    format!("unsupported content part {kind:?}: only text parts are supported"),
                                ))
                            }
                        }
                    }
                    text
                }
            };
            Ok(Message { role, content, name: m.name, tool_call_id: m.tool_call_id, tool_calls: Vec::new() })
        })
        .collect()
}

fn sampling(req: &ChatCompletionRequest) -> Result<SamplingParams, ApiError> {
    let mut params = SamplingParams::default();
    if let Some(t) = req.temperature {
        params.temperature = t;
    }
    if let Some(p) = req.top_p {
        params.top_p = p;
    }
    if let Some(k) = req.top_k {
        params.top_k = k;
    }
    if let Some(p) = req.min_p {
        params.min_p = p;
    }
    if let Some(p) = req.presence_penalty {
        params.presence_penalty = p;
    }
    if let Some(p) = req.frequency_penalty {
        params.frequency_penalty = p;
    }
    if let Some(p) = req.repetition_penalty {
        params.repetition_penalty = p;
    }
    params.seed = req.seed;
    if let Some(bias) = &req.logit_bias {
        for (token, value) in bias {
            let id: i32 = token
                .parse()
                .map_err(|_| ApiError::invalid("logit_bias", format!("logit_bias key {token:?} is not a token id")))?;
            if !(-100.0..=100.0).contains(value) {
                return Err(ApiError::invalid(
                    "logit_bias",
                    format!("bias {value} for token {id} is outside [-100, 100]"),
                ));
            }
            params.logit_bias.push((id, *value));
        }
    }
    params.validate().map_err(|e| match e {
        semantic_engine::SamplingError::Invalid { field, .. } => ApiError::invalid(field, e.to_string()),
    })?;
    Ok(params)
}

fn prompt_error(err: PromptError) -> ApiError {
    match err {
        PromptError::Template(e) => {
            ApiError::invalid("messages", format!("the model's chat template rejected the messages: {e}"))
        }
        PromptError::Tokenize(e) => ApiError::new(ErrorKind::InvalidRequest, e.to_string()),
    }
}

/// The agent a request names: body `agent_id`/`session_id`, else header `X-Agent-ID`/`X-Session-ID`;
/// validated before any work.
pub(crate) fn agent_ref(
    caller: &Caller,
    headers: &HeaderMap,
    body_agent: Option<&str>,
    body_session: Option<&str>,
) -> Result<AgentRef, ApiError> {
    let header =
        |name: &str| headers.get(name).map(|v| v.to_str().map_err(|_| ApiError::invalid(name, "header is not ASCII")));
    let (raw, param) = match (body_agent, body_session) {
        (Some(a), _) => (Some(a.to_string()), "agent_id"),
        (None, Some(s)) => (Some(s.to_string()), "session_id"),
        (None, None) => match (header("x-agent-id").transpose()?, header("x-session-id").transpose()?) {
            (Some(a), _) => (Some(a.to_string()), "X-Agent-ID"),
            (None, Some(s)) => (Some(s.to_string()), "X-Session-ID"),
            (None, None) => (None, ""),
        },
    };
    let agent = raw
        .map(|id| {
            AgentId::parse(&id)
                .map_err(|e| ApiError::invalid(param, format!("invalid agent id: {e}")).with_code("invalid_agent_id"))
        })
        .transpose()?;
    Ok(AgentRef { namespace: caller.namespace.clone(), agent })
}

/// Validates a request and turns it into a scheduler job.
fn prepare(
    state: &AppState,
    req: ChatCompletionRequest,
    agent: AgentRef,
) -> Result<(GenerateRequest, bool, bool), ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let sampling = sampling(&req)?;
    let stop = match req.stop {
        None => Vec::new(),
        Some(StopField::One(s)) => vec![s],
        Some(StopField::Many(v)) if v.len() <= 16 => v,
        Some(StopField::Many(_)) => return Err(ApiError::invalid("stop", "at most 16 stop strings")),
    };
    let include_usage = req.stream_options.as_ref().is_some_and(|o| o.include_usage);
    let messages = to_messages(req.messages)?;
    let prompt = state.prompter.chat(&messages, None).map_err(prompt_error)?;
    let limit = state.scheduler.max_sequence_tokens();
    let max_tokens = match req.max_completion_tokens.or(req.max_tokens) {
        Some(0) => return Err(ApiError::invalid("max_tokens", "max_tokens must be at least 1")),
        Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
        None => state.options.default_max_tokens.min(limit.saturating_sub(prompt.len()).max(1)),
    };
    Ok((GenerateRequest { prompt, max_tokens, sampling, stop, agent }, req.stream, include_usage))
}

/// `POST /v1/chat/completions`.
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let model = req.model.clone().unwrap_or_else(|| state.options.model_name.clone());
    let agent = agent_ref(&caller, &headers, req.agent_id.as_deref(), req.session_id.as_deref())?;
    let (job, streaming, include_usage) = prepare(&state, req, agent)?;
    let events = state.scheduler.submit(job)?;
    if streaming {
        Ok(stream_response(events, model, include_usage).into_response())
    } else {
        collect_response(events, model).await
    }
}

async fn collect_response(mut events: RequestStream, model: String) -> Result<Response, ApiError> {
    let mut content = String::new();
    while let Some(event) = events.recv().await {
        match event {
            Event::Delta { text, .. } => content.push_str(&text),
            Event::Done { reason, usage, .. } => {
                return match reason {
                    FinishReason::Error(message) => Err(ApiError::new(ErrorKind::Internal, message)),
                    FinishReason::Cancelled => Err(ApiError {
                        retry_after: Some(5),
                        ..ApiError::new(ErrorKind::Unavailable, "the request was cut by a server shutdown")
                    }),
                    reason => Ok(Json(json!({
                        "id": completion_id(),
                        "object": "chat.completion",
                        "created": now_secs(),
                        "model": model,
                        "choices": [{
                            "index": 0,
                            "message": ChoiceMessage { role: "assistant", content },
                            "logprobs": null,
                            "finish_reason": finish_reason_str(&reason),
                        }],
                        "usage": usage_json(&usage),
                    }))
                    .into_response()),
                };
            }
        }
    }
    Err(ApiError::new(ErrorKind::Internal, "the generation ended without a result"))
}

fn stream_response(
    events: RequestStream,
    model: String,
    include_usage: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let id = completion_id();
    let created = now_secs();
    let chunk = move |delta: Value, finish: Option<&str>| {
        json!({
            "id": id, "object": "chat.completion.chunk", "created": created, "model": model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}],
        })
    };
    let first = chunk(json!({"role": "assistant", "content": ""}), None);
    let body = stream::unfold((events, Some(chunk), false), move |(mut events, chunk, done)| async move {
        if done {
            return None;
        }
        let chunk = chunk?;
        let out: Vec<Value> = match events.recv().await {
            Some(Event::Delta { text, .. }) => vec![chunk(json!({"content": text}), None)],
            Some(Event::Done { reason, usage, .. }) => {
                let mut out = Vec::new();
                match reason {
                    FinishReason::Error(message) => {
                        out.push(json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}}))
                    }
                    FinishReason::Cancelled => out.push(json!({"error": {
                        "message": "the request was cut by a server shutdown", "type": "service_unavailable", "param": null, "code": "draining"}})),
                    reason => out.push(chunk(json!({}), Some(finish_reason_str(&reason)))),
                }
                if include_usage {
                    let mut last = chunk(json!({}), None);
                    last["choices"] = json!([]);
                    last["usage"] = usage_json(&usage);
                    out.push(last);
                }
                let sse: Vec<SseEvent> = out
                    .into_iter()
                    .map(|v| SseEvent::default().data(v.to_string()))
                    .chain([SseEvent::default().data("[DONE]")])
                    .collect();
                return Some((stream::iter(sse), (events, None, true)));
            }
            None => return None,
        };
        let events_out: Vec<SseEvent> = out.into_iter().map(|v| SseEvent::default().data(v.to_string())).collect();
        Some((stream::iter(events_out), (events, Some(chunk), false)))
    })
    .flatten();
    let head = stream::iter([SseEvent::default().data(first.to_string())]);
    Sse::new(head.chain(body).map(Ok)).keep_alive(KeepAlive::default())
}

/// `GET /v1/models`.
pub async fn models(State(state): State<AppState>, _caller: Caller) -> Json<Value> {
    let created = state.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    Json(json!({
        "object": "list",
        "data": [{"id": state.options.model_name, "object": "model", "created": created, "owned_by": "semantic"}],
    }))
}

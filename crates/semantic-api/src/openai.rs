//! OpenAI chat: `POST /v1/chat/completions` (JSON and SSE, tools) and `GET /v1/models`.
//! Validation happens here, in full, before anything is queued.

use std::convert::Infallible;
use std::sync::Arc;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use semantic_chat::{FunctionCall, Message, ParsedToolCall, ToolCall};
use semantic_engine::Tokenizer;
use semantic_scheduler::{AgentRef, GenerateRequest, Timings, Usage};
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::extract::ApiJson;
use crate::generation::{now_secs, random_id, Collected, Finish, Generation, Job, Piece, Step};
use crate::identity::{target, BodyIds, Target};
use crate::logprobs;
use crate::openai_wire::*;
use crate::params::{self, openai_sampling_fields};
use crate::prompt::PromptError;
use crate::tool_offer::{self, Choice, Offer, ToolDef};
use crate::AppState;

/// `POST /v1/chat/completions`.
#[utoipa::path(post, path = "/v1/chat/completions", tag = "openai",
    request_body = ChatCompletionRequest,
    params(("X-Agent-ID" = Option<String>, Header, description = "agent whose memory to reuse (also X-Session-ID)")),
    responses(
        (status = 200, description = "JSON completion, or with `stream` SSE `data:` chunks then `data: [DONE]`", content((ChatCompletion = "application/json"), (ChatCompletionChunk = "text/event-stream"))),
        (status = 400, description = "invalid request, including `context_length_exceeded`", body = crate::error::OpenAiErrorBody),
        (status = 404, description = "`model_not_found`", body = crate::error::OpenAiErrorBody),
        (status = 413, description = "body over max_body_bytes", body = crate::error::OpenAiErrorBody),
        (status = 429, description = "queue full or rate limited (Retry-After)", body = crate::error::OpenAiErrorBody),
        (status = 503, description = "loading or draining (Retry-After)", body = crate::error::OpenAiErrorBody),
        (status = 504, description = "`request_timeout`", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn chat_completions(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    ApiJson(req): ApiJson<ChatCompletionRequest>,
) -> Result<Response, ApiError> {
    let ids = BodyIds { agent_id: req.agent_id.as_deref(), session_id: req.session_id.as_deref() };
    let Target { model, agent } = target(&state, &caller.namespace, req.model.as_deref(), ids, &headers)?;
    let (streaming, include_usage) = stream_flags(req.stream, req.stream_options.as_ref());
    let job = prepare(&state, req, agent)?;
    let tokenizer = Arc::clone(state.scheduler.tokenizer());
    let with_logprobs = job.request.sampling.logprobs.is_some();
    let tokenizer = with_logprobs.then_some(tokenizer);
    let generation = Generation::start(&state, job, Flavor::OpenAi)?;
    if streaming {
        Ok(stream_chat(generation, model, include_usage, tokenizer).into_response())
    } else {
        let collected = generation.collect().await?;
        Ok(Json(chat_completion(collected, model, tokenizer.as_deref())).into_response())
    }
}

/// Checks everything about a chat request and builds its job.
pub(crate) fn prepare(state: &AppState, req: ChatCompletionRequest, agent: AgentRef) -> Result<Job, ApiError> {
    if req.n.is_some_and(|n| n != 1) {
        return Err(ApiError::invalid("n", "only n = 1 is supported"));
    }
    let fields = openai_sampling_fields!(req);
    let mut sampling = params::sampling(&fields, params::OPENAI, state.scheduler.facts().n_vocab)?;
    sampling.constraint = params::response_format(req.response_format.as_ref())?;
    sampling.logprobs = logprobs::chat_request(req.logprobs, req.top_logprobs)?;
    let stop = params::stop_strings("stop", req.stop.map(StopField::into_vec).unwrap_or_default())?;
    let max_tokens = match req.max_completion_tokens {
        Some(n) => params::max_tokens("max_completion_tokens", Some(n))?,
        None => params::max_tokens("max_tokens", req.max_tokens)?,
    };
    let offer = offered_tools(req.tools, req.tool_choice)?;
    if let Some(call) = offer.call_constraint(state.prompter.tool_syntax())? {
        // The reply is a call, so a response_format (which shapes text replies) has nothing to apply to.
        sampling.constraint = Some(call);
    }
    let messages = to_messages(req.messages)?;
    let prompt =
        state.prompter.chat_with_tools(messages, offer.tools.as_deref(), agent.key().as_ref()).map_err(prompt_error)?;
    let max_tokens = max_tokens.unwrap_or_else(|| state.default_max_tokens(prompt.len()));
    Ok(Job { request: GenerateRequest { prompt, max_tokens, sampling, stop, agent }, tools: offer.names })
}

/// OpenAI `tools` and `tool_choice` as the shared [`tool_offer::offer`] sees them.
fn offered_tools(tools: Option<Vec<ChatTool>>, choice: Option<ToolChoice>) -> Result<Offer, ApiError> {
    let mut defs = Vec::new();
    for (i, tool) in tools.unwrap_or_default().into_iter().enumerate() {
        if tool.kind != "function" {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                format!("unsupported tool type {:?}: only \"function\"", tool.kind),
            ));
        }
        let f = tool.function;
        if f.parameters.as_ref().is_some_and(|p| !p.is_object()) {
            return Err(ApiError::invalid(
                format!("tools[{i}].function.parameters"),
                "parameters must be a JSON Schema object",
            ));
        }
        let name_param = format!("tools[{i}].function.name");
        let parameters_param = format!("tools[{i}].function.parameters");
        let (name, description, parameters) = (f.name, f.description, f.parameters);
        defs.push(ToolDef { name, description, parameters, name_param, parameters_param });
    }
    let choice = match choice {
        None => Choice::Unset,
        Some(ToolChoice::Mode(mode)) => match mode.as_str() {
            "none" => Choice::None,
            "auto" => Choice::Auto,
            "required" => Choice::Required,
            other => {
                return Err(ApiError::invalid(
                    "tool_choice",
                    format!("unknown tool_choice {other:?} (expected none, auto, required or a named function)"),
                ))
            }
        },
        Some(ToolChoice::Named(named)) if named.kind != "function" => {
            return Err(ApiError::invalid("tool_choice", "a named tool_choice must have type \"function\""))
        }
        Some(ToolChoice::Named(named)) => Choice::Named { name: named.function.name, param: "tool_choice" },
    };
    tool_offer::offer(defs, choice)
}

/// Wire messages to template messages.
fn to_messages(wire: Vec<ChatMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    wire.into_iter().enumerate().map(|(i, m)| to_message(i, m)).collect()
}

fn to_message(i: usize, m: ChatMessage) -> Result<Message, ApiError> {
    let role = match m.role.as_str() {
        "developer" => "system",
        "system" | "user" | "assistant" | "tool" => m.role.as_str(),
        other => {
            return Err(ApiError::invalid(
                format!("messages[{i}].role"),
                format!("unknown role {other:?} (expected system, developer, user, assistant or tool)"),
            ))
        }
    }
    .to_owned();
    let content = match m.content {
        None if role == "assistant" => String::new(),
        None => {
            return Err(ApiError::invalid(format!("messages[{i}].content"), format!("a {role} message needs content")))
        }
        Some(MessageContent::Text(t)) => t,
        Some(MessageContent::Parts(parts)) => {
            let mut text = String::new();
            for (j, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => text.push_str(&t),
                    ("text", None) => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}].text"),
                            "a text part needs text",
                        ))
                    }
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("messages[{i}].content[{j}].type"),
                            format!("unsupported content part {kind:?}: only text parts are supported"),
                        ))
                    }
                }
            }
            text
        }
    };
    let mut tool_calls = Vec::new();
    if let Some(calls) = m.tool_calls {
        if role != "assistant" {
            return Err(ApiError::invalid(
                format!("messages[{i}].tool_calls"),
                "only assistant messages carry tool_calls",
            ));
        }
        for (j, call) in calls.into_iter().enumerate() {
            let param = format!("messages[{i}].tool_calls[{j}]");
            if call.kind != "function" {
                return Err(ApiError::invalid(format!("{param}.type"), "tool calls must have type \"function\""));
            }
            let arguments = if call.function.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str::<Value>(&call.function.arguments).ok().filter(Value::is_object).ok_or_else(
                    || {
                        ApiError::invalid(
                            format!("{param}.function.arguments"),
                            "arguments must be a JSON object encoded as a string",
                        )
                    },
                )?
            };
            tool_calls.push(ToolCall {
                id: call.id,
                kind: call.kind,
                function: FunctionCall { name: call.function.name, arguments },
            });
        }
    }
    if role == "tool" && m.tool_call_id.is_none() {
        return Err(ApiError::invalid(format!("messages[{i}].tool_call_id"), "a tool message needs tool_call_id"));
    }
    Ok(Message { role, content, name: m.name, tool_call_id: m.tool_call_id, tool_calls })
}

pub(crate) fn prompt_error(err: PromptError) -> ApiError {
    match err {
        PromptError::Template(e) => {
            ApiError::invalid("messages", format!("the model's chat template rejected the messages: {e}"))
        }
        PromptError::Tokenize(e) => ApiError::new(crate::ErrorKind::InvalidRequest, e.to_string()),
    }
}

pub(crate) fn finish_reason(finish: Finish) -> &'static str {
    match finish {
        Finish::Stop | Finish::StopSequence(_) => "stop",
        Finish::Length => "length",
        Finish::ToolCalls => "tool_calls",
    }
}

pub(crate) fn usage(usage: &Usage) -> CompletionUsage {
    CompletionUsage {
        prompt_tokens: usage.prompt_tokens,
        completion_tokens: usage.completion_tokens,
        total_tokens: usage.prompt_tokens + usage.completion_tokens,
        prompt_tokens_details: PromptTokensDetails {
            cached_tokens: usage.cached_tokens,
            cache_source: usage.cache_source.map(|s| s.as_str()),
        },
    }
}

fn wire_call(call: ParsedToolCall) -> MessageToolCall {
    MessageToolCall {
        id: random_id("call_"),
        kind: "function".to_owned(),
        function: FunctionCallWire { name: call.name, arguments: call.arguments.to_string() },
    }
}

fn chat_completion(collected: Collected, model: String, tokenizer: Option<&dyn Tokenizer>) -> ChatCompletion {
    let Collected { text, calls, finish, usage: u, timings, logprobs: lps } = collected;
    let content = if !calls.is_empty() && text.trim().is_empty() { None } else { Some(text) };
    ChatCompletion {
        id: random_id("chatcmpl-"),
        object: "chat.completion",
        created: now_secs(),
        model,
        choices: vec![ChatChoice {
            index: 0,
            message: AssistantMessage {
                role: "assistant",
                content,
                tool_calls: calls.into_iter().map(wire_call).collect(),
            },
            logprobs: tokenizer.map(|t| logprobs::chat(t, &lps)),
            finish_reason: finish_reason(finish),
        }],
        usage: usage(&u),
        timings: Some(server_timings(&timings)),
    }
}

/// The server's own view of where the time went (llama-server puts the same kind of object on
/// its responses), so a client can tell its network and our HTTP path from the engine's work.
pub(crate) fn server_timings(t: &Timings) -> ServerTimings {
    let ms = |d: std::time::Duration| d.as_secs_f64() * 1e3;
    ServerTimings {
        queue_ms: ms(t.queue),
        prompt_ms: ms(t.prefill),
        ttft_ms: ms(t.time_to_first_token),
        prompt_per_second: t.prefill_tokens_per_second,
        predicted_per_second: t.decode_tokens_per_second,
    }
}

/// Builds the chunks of one streamed response.
struct Chunks {
    id: String,
    created: u64,
    model: String,
    calls: usize,
    /// Set when the request asked for log probabilities.
    tokenizer: Option<Arc<dyn Tokenizer>>,
}

impl Chunks {
    fn chunk(&self, delta: ChunkDelta, finish_reason: Option<&'static str>) -> ChatCompletionChunk {
        ChatCompletionChunk {
            id: self.id.clone(),
            object: "chat.completion.chunk",
            created: self.created,
            model: self.model.clone(),
            choices: vec![ChunkChoice { index: 0, delta, logprobs: None, finish_reason }],
            usage: None,
            timings: None,
        }
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<ChatCompletionChunk> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => {
                    out.push(self.chunk(ChunkDelta { content: Some(text), ..Default::default() }, None))
                }
                Piece::Call(call) => {
                    let index = self.calls;
                    self.calls += 1;
                    let head = ToolCallDelta {
                        index,
                        id: Some(random_id("call_")),
                        kind: Some("function"),
                        function: FunctionDelta { name: Some(call.name), arguments: String::new() },
                    };
                    let args = ToolCallDelta {
                        index,
                        id: None,
                        kind: None,
                        function: FunctionDelta { name: None, arguments: call.arguments.to_string() },
                    };
                    for delta in [head, args] {
                        out.push(self.chunk(ChunkDelta { tool_calls: Some(vec![delta]), ..Default::default() }, None));
                    }
                }
            }
        }
        out
    }
}

fn data(value: &impl serde::Serialize) -> SseEvent {
    SseEvent::default().data(serde_json::to_string(value).unwrap_or_default())
}

/// The SSE body: a role chunk, content / tool-call chunks, a finish chunk, an optional usage
/// chunk, `[DONE]`. A failure sends the error object instead of the finish chunk, then `[DONE]`.
/// Dropping the body (client gone) drops the generation, which cancels the request.
fn stream_chat(
    generation: Generation,
    model: String,
    include_usage: bool,
    tokenizer: Option<Arc<dyn Tokenizer>>,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let chunks = Chunks { id: random_id("chatcmpl-"), created: now_secs(), model, calls: 0, tokenizer };
    let first = data(
        &chunks.chunk(ChunkDelta { role: Some("assistant"), content: Some(String::new()), ..Default::default() }, None),
    );
    let body = stream::unfold(Some((generation, chunks)), move |state| async move {
        let (mut generation, mut chunks) = state?;
        let events: Vec<SseEvent> = match generation.next().await? {
            Step::Pieces(pieces) => {
                let mut out = chunks.pieces(pieces);
                // A step's tokens ride on its first chunk (tool-call chunks of a step share them).
                if let (Some(t), Some(first)) = (&chunks.tokenizer, out.first_mut()) {
                    first.choices[0].logprobs = Some(logprobs::chat(t.as_ref(), &generation.take_logprobs()));
                }
                out.iter().map(data).collect()
            }
            Step::Done { finish, usage: u, timings } => {
                let mut out = vec![data(&chunks.chunk(ChunkDelta::default(), Some(finish_reason(finish))))];
                if include_usage {
                    let mut last = chunks.chunk(ChunkDelta::default(), None);
                    last.choices.clear();
                    last.usage = Some(usage(&u));
                    last.timings = Some(server_timings(&timings));
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
        Some((stream::iter(events), Some((generation, chunks))))
    })
    .flatten();
    Sse::new(stream::iter([first]).chain(body).map(Ok)).keep_alive(KeepAlive::default())
}

/// `GET /v1/models`.
#[utoipa::path(get, path = "/v1/models", tag = "openai", responses((status = 200, body = ModelList)))]
pub async fn models(State(state): State<AppState>, _caller: Caller) -> Json<ModelList> {
    let created = state.started.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
    let served = state.options.model_name.clone();
    let slot = state.slot.clone();
    let registry = tokio::task::spawn_blocking(move || crate::models::registry_of(&slot)).await.ok().flatten();
    let card = |id: String, loaded: bool, details: Option<serde_json::Value>| ModelCard {
        id,
        object: "model",
        created,
        owned_by: "semantic",
        loaded,
        details,
    };
    let entries = registry.map(|r| r.entries).unwrap_or_default();
    let details = |e: &semantic_engine::ModelEntry, loaded| Some(crate::models::entry_json(e, loaded));
    let mut data =
        vec![card(served.clone(), true, entries.iter().find(|e| e.answers_to(&served)).and_then(|e| details(e, true)))];
    for alias in &state.options.model_aliases {
        data.push(card(alias.clone(), true, Some(serde_json::json!({"alias_of": served}))));
    }
    for entry in entries.iter().filter(|e| !e.answers_to(&served) && e.info.is_ok()) {
        data.push(card(entry.id.clone(), false, details(entry, false)));
    }
    Json(ModelList { object: "list", data })
}

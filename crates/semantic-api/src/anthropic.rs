//! Anthropic Messages: `POST /v1/messages` (JSON and SSE, tools) and
//! `POST /v1/messages/count_tokens`. Every failure on these routes uses the Anthropic error shape.
//! `anthropic-version`, `anthropic-beta` and `x-api-key` are accepted and not required.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use semantic_chat::{FunctionCall, Message, ToolCall};
use semantic_scheduler::{GenerateRequest, Usage};
use serde_json::{json, Value};

use crate::anthropic_wire::*;
use crate::auth::Caller;
use crate::error::{ApiError, Flavor};
use crate::extract::AnthropicJson;
use crate::generation::{random_id, Collected, Finish, Generation, Job, Piece, Step};
use crate::identity::{check_model, target, BodyIds, Target};
use crate::openai::prompt_error;
use crate::params::{self, SamplingFields};
use crate::tool_offer::{self, Choice, Offer, ToolDef};
use crate::AppState;

/// `POST /v1/messages`.
#[utoipa::path(post, path = "/v1/messages", tag = "anthropic",
    request_body = MessagesRequest,
    params(("X-Agent-ID" = Option<String>, Header, description = "agent whose memory to reuse (also X-Session-ID)")),
    responses(
        (status = 200, description = "JSON message, or with `stream` SSE events (`event:` + `data:`)", content((MessageResponse = "application/json"), (StreamEvent = "text/event-stream"))),
        (status = 400, description = "invalid request", body = crate::error::AnthropicErrorBody),
        (status = 404, description = "unknown model (`not_found_error`)", body = crate::error::AnthropicErrorBody),
        (status = 413, description = "body over max_body_bytes (`request_too_large`)", body = crate::error::AnthropicErrorBody),
        (status = 429, description = "queue full or rate limited (Retry-After)", body = crate::error::AnthropicErrorBody),
        (status = 503, description = "loading or draining (Retry-After)", body = crate::error::AnthropicErrorBody),
        (status = 504, description = "request timeout (`timeout_error`)", body = crate::error::AnthropicErrorBody),
    ))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    headers: HeaderMap,
    AnthropicJson(req): AnthropicJson<MessagesRequest>,
) -> Result<Response, ApiError> {
    let flavored = |e: ApiError| e.in_flavor(Flavor::Anthropic);
    let ids = BodyIds { agent_id: req.agent_id.as_deref(), session_id: req.session_id.as_deref() };
    let Target { model, agent } =
        target(&state, &caller.namespace, req.model.as_deref(), ids, &headers).map_err(flavored)?;
    let named_agent = agent.agent.is_some();
    let streaming = req.stream.unwrap_or(false);
    let (job, stops) = prepare(&state, req, agent).map_err(flavored)?;
    let prompt_tokens = job.request.prompt.len();
    let tools_offered = job.tools.is_some();
    let generation = Generation::start(&state, job, Flavor::Anthropic)?;
    let reply = Reply { id: random_id("msg_"), model, stops, named_agent };
    if streaming {
        return Ok(stream_message(generation, reply, prompt_tokens, tools_offered).into_response());
    }
    let collected = generation.collect().await?;
    Ok(Json(reply.message(collected)).into_response())
}

/// `POST /v1/messages/count_tokens`: tokens of the prompt `/v1/messages` would build.
#[utoipa::path(post, path = "/v1/messages/count_tokens", tag = "anthropic",
    request_body = CountTokensRequest,
    responses(
        (status = 200, body = TokenCount),
        (status = 400, description = "invalid request", body = crate::error::AnthropicErrorBody),
    ))]
pub async fn count_tokens(
    State(state): State<AppState>,
    _caller: Caller,
    AnthropicJson(req): AnthropicJson<CountTokensRequest>,
) -> Result<Json<TokenCount>, ApiError> {
    let flavored = |e: ApiError| e.in_flavor(Flavor::Anthropic);
    check_model(&state, req.model.as_deref()).map_err(flavored)?;
    check_thinking(req.thinking.as_ref()).map_err(flavored)?;
    let offer = offered_tools(req.tools, req.tool_choice).map_err(flavored)?;
    let messages = to_messages(req.system, req.messages).map_err(flavored)?;
    let prompt = state
        .prompter
        .chat_with_tools(messages, offer.tools.as_deref(), None)
        .map_err(|e| flavored(prompt_error(e)))?;
    Ok(Json(TokenCount { input_tokens: prompt.len() }))
}

fn check_thinking(thinking: Option<&Thinking>) -> Result<(), ApiError> {
    match thinking {
        Some(t) if t.kind != "disabled" => Err(ApiError::invalid(
            "thinking",
            "extended thinking is not supported; omit thinking or set type \"disabled\"",
        )),
        _ => Ok(()),
    }
}

/// Checks everything about a request and builds its job; also returns the stop strings.
fn prepare(
    state: &AppState,
    req: MessagesRequest,
    agent: semantic_scheduler::AgentRef,
) -> Result<(Job, Vec<String>), ApiError> {
    let max_tokens = params::max_tokens("max_tokens", req.max_tokens)?
        .ok_or_else(|| ApiError::invalid("max_tokens", "max_tokens: field required"))?;
    check_thinking(req.thinking.as_ref())?;
    let fields = SamplingFields {
        temperature: req.temperature,
        top_p: req.top_p,
        top_k: req.top_k,
        ..SamplingFields::default()
    };
    let mut sampling = params::sampling(&fields, params::ANTHROPIC, state.scheduler.facts().n_vocab)?;
    let stop = params::stop_strings("stop_sequences", req.stop_sequences.unwrap_or_default())?;
    let offer = offered_tools(req.tools, req.tool_choice)?;
    sampling.constraint = offer.call_constraint(state.prompter.tool_syntax())?;
    let messages = to_messages(req.system, req.messages)?;
    let prompt =
        state.prompter.chat_with_tools(messages, offer.tools.as_deref(), agent.key().as_ref()).map_err(prompt_error)?;
    let request = GenerateRequest { prompt, max_tokens, sampling, stop: stop.clone(), agent };
    Ok((Job { request, tools: offer.names }, stop))
}

/// Client tools as OpenAI-style function tools for the template, filtered by `tool_choice`
/// through the shared [`tool_offer::offer`] (`any` is OpenAI's `required`, `tool` a named choice).
fn offered_tools(tools: Option<Vec<Tool>>, choice: Option<ToolChoice>) -> Result<Offer, ApiError> {
    let mut defs = Vec::new();
    for (i, tool) in tools.unwrap_or_default().into_iter().enumerate() {
        if let Some(kind) = tool.kind.as_deref().filter(|k| *k != "custom") {
            return Err(ApiError::invalid(
                format!("tools[{i}].type"),
                format!("server tool {kind:?} is not supported; only client tools with input_schema"),
            ));
        }
        let schema = match tool.input_schema {
            Some(schema @ Value::Object(_)) => schema,
            Some(_) => {
                return Err(ApiError::invalid(format!("tools[{i}].input_schema"), "input_schema must be an object"))
            }
            None => return Err(ApiError::invalid(format!("tools[{i}].input_schema"), "input_schema: field required")),
        };
        let (name_param, parameters_param) = (format!("tools[{i}].name"), format!("tools[{i}].input_schema"));
        let (name, description, parameters) = (tool.name, tool.description, Some(schema));
        defs.push(ToolDef { name, description, parameters, name_param, parameters_param });
    }
    let choice = match choice {
        None => Choice::Unset,
        Some(c) => match c.kind.as_str() {
            "auto" => Choice::Auto,
            "any" => Choice::Required,
            "none" => Choice::None,
            "tool" => {
                let name = c
                    .name
                    .ok_or_else(|| ApiError::invalid("tool_choice.name", "tool_choice of type tool needs a name"))?;
                Choice::Named { name, param: "tool_choice.name" }
            }
            other => {
                return Err(ApiError::invalid(
                    "tool_choice.type",
                    format!("unknown tool_choice type {other:?} (expected auto, any, tool or none)"),
                ))
            }
        },
    };
    tool_offer::offer(defs, choice)
}

/// Anthropic messages to template messages: the system prompt first; a user turn's
/// `tool_result` blocks become `tool` messages (before its text); an assistant turn's `tool_use`
/// blocks become its `tool_calls`.
fn to_messages(system: Option<SystemPrompt>, wire: Vec<InputMessage>) -> Result<Vec<Message>, ApiError> {
    if wire.is_empty() {
        return Err(ApiError::invalid("messages", "messages must not be empty"));
    }
    let mut out = Vec::with_capacity(wire.len() + 1);
    out.extend(system_message(system)?);
    for (i, message) in wire.into_iter().enumerate() {
        let assistant = match message.role.as_str() {
            "user" => false,
            "assistant" => true,
            other => {
                return Err(ApiError::invalid(
                    format!("messages[{i}].role"),
                    format!("unknown role {other:?} (expected user or assistant; the system prompt is the top-level system field)"),
                ))
            }
        };
        let blocks = match message.content {
            MessageContent::Text(text) => {
                out.push(Message::new(message.role, text));
                continue;
            }
            MessageContent::Blocks(blocks) => blocks,
        };
        let mut text = String::new();
        let mut calls = Vec::new();
        for (j, block) in blocks.into_iter().enumerate() {
            let param = format!("messages[{i}].content[{j}]");
            match (block.kind.as_str(), assistant) {
                ("text", _) => text.push_str(
                    block
                        .text
                        .as_deref()
                        .ok_or_else(|| ApiError::invalid(format!("{param}.text"), "a text block needs text"))?,
                ),
                ("tool_use", true) => calls.push(tool_use_call(&param, block)?),
                ("tool_result", false) => out.push(tool_result_message(&param, block)?),
                ("thinking" | "redacted_thinking", true) => {}
                (kind @ ("tool_use" | "thinking" | "redacted_thinking"), false) | (kind @ "tool_result", true) => {
                    return Err(ApiError::invalid(
                        format!("{param}.type"),
                        format!("a {} message cannot hold a {kind} block", message.role),
                    ))
                }
                (kind, _) => {
                    return Err(ApiError::invalid(
                        format!("{param}.type"),
                        format!("unsupported content block {kind:?}: text, tool_use and tool_result are supported"),
                    ))
                }
            }
        }
        if assistant || !text.is_empty() || out.last().is_none_or(|m| m.role != "tool") {
            let mut m = Message::new(message.role, text);
            m.tool_calls = calls;
            out.push(m);
        }
    }
    Ok(out)
}

/// The top-level `system` field as one system message (none when empty).
fn system_message(system: Option<SystemPrompt>) -> Result<Option<Message>, ApiError> {
    let text = match system {
        None => return Ok(None),
        Some(SystemPrompt::Text(text)) => text,
        Some(SystemPrompt::Blocks(blocks)) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (j, block) in blocks.into_iter().enumerate() {
                match (block.kind.as_str(), block.text) {
                    ("text", Some(text)) => texts.push(text),
                    _ => return Err(ApiError::invalid(format!("system[{j}]"), "system blocks must be text blocks")),
                }
            }
            texts.join("\n")
        }
    };
    Ok((!text.is_empty()).then(|| Message::new("system", text)))
}

/// An assistant's `tool_use` block as a tool call.
fn tool_use_call(param: &str, block: ContentBlock) -> Result<ToolCall, ApiError> {
    let (Some(id), Some(name)) = (block.id, block.name) else {
        return Err(ApiError::invalid(param, "a tool_use block needs id and name"));
    };
    let input = match block.input {
        None => json!({}),
        Some(v @ Value::Object(_)) => v,
        Some(_) => return Err(ApiError::invalid(format!("{param}.input"), "input must be an object")),
    };
    Ok(ToolCall { id, kind: "function".into(), function: FunctionCall { name, arguments: input } })
}

/// A user's `tool_result` block as a `tool` message (an error result's text starts `Error: `).
fn tool_result_message(param: &str, block: ContentBlock) -> Result<Message, ApiError> {
    let id = block
        .tool_use_id
        .ok_or_else(|| ApiError::invalid(format!("{param}.tool_use_id"), "a tool_result block needs tool_use_id"))?;
    let mut content = match block.content {
        None => String::new(),
        Some(ToolResultContent::Text(t)) => t,
        Some(ToolResultContent::Blocks(parts)) => {
            let mut texts = Vec::with_capacity(parts.len());
            for (k, part) in parts.into_iter().enumerate() {
                match (part.kind.as_str(), part.text) {
                    ("text", Some(t)) => texts.push(t),
                    (kind, _) => {
                        return Err(ApiError::invalid(
                            format!("{param}.content[{k}]"),
                            format!("unsupported tool_result block {kind:?}: only text"),
                        ))
                    }
                }
            }
            texts.join("\n")
        }
    };
    if block.is_error == Some(true) {
        content = format!("Error: {content}");
    }
    let mut result = Message::new("tool", content);
    result.tool_call_id = Some(id);
    Ok(result)
}

/// What every shape of the reply shares.
struct Reply {
    id: String,
    model: String,
    stops: Vec<String>,
    named_agent: bool,
}

impl Reply {
    fn stop(&self, finish: Finish) -> (&'static str, Option<String>) {
        match finish {
            Finish::Stop => ("end_turn", None),
            Finish::StopSequence(i) => ("stop_sequence", self.stops.get(i).cloned()),
            Finish::Length => ("max_tokens", None),
            Finish::ToolCalls => ("tool_use", None),
        }
    }

    /// Reused tokens were read from memory; with a named agent the rest of the prompt is written
    /// to its memory; `input_tokens` is what is neither, so the three add up to the prompt.
    fn usage(&self, usage: &Usage) -> MessageUsage {
        let fresh = usage.prompt_tokens.saturating_sub(usage.cached_tokens);
        let created = if self.named_agent { fresh } else { 0 };
        MessageUsage {
            input_tokens: fresh - created,
            output_tokens: usage.completion_tokens,
            cache_creation_input_tokens: created,
            cache_read_input_tokens: usage.cached_tokens,
        }
    }

    fn message(&self, collected: Collected) -> MessageResponse {
        let Collected { text, calls, finish, usage, .. } = collected;
        let mut content = Vec::with_capacity(calls.len() + 1);
        if !text.is_empty() || calls.is_empty() {
            content.push(ResponseBlock::Text { text });
        }
        content.extend(calls.into_iter().map(|c| ResponseBlock::ToolUse {
            id: random_id("toolu_"),
            name: c.name,
            input: c.arguments,
        }));
        let (stop_reason, stop_sequence) = self.stop(finish);
        MessageResponse {
            id: self.id.clone(),
            kind: "message",
            role: "assistant",
            model: self.model.clone(),
            content,
            stop_reason: Some(stop_reason),
            stop_sequence,
            usage: self.usage(&usage),
        }
    }
}

/// Tracks the open content blocks of a streamed reply.
struct Blocks {
    next: usize,
    open_text: Option<usize>,
    pinged: bool,
}

impl Blocks {
    fn open(&mut self, block: ResponseBlock, out: &mut Vec<StreamEvent>) -> usize {
        let index = self.next;
        self.next += 1;
        out.push(StreamEvent::ContentBlockStart { index, content_block: block });
        if !self.pinged {
            self.pinged = true;
            out.push(StreamEvent::Ping);
        }
        index
    }

    fn close_text(&mut self, out: &mut Vec<StreamEvent>) {
        if let Some(index) = self.open_text.take() {
            out.push(StreamEvent::ContentBlockStop { index });
        }
    }

    fn pieces(&mut self, pieces: Vec<Piece>) -> Vec<StreamEvent> {
        let mut out = Vec::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => {
                    let index = match self.open_text {
                        Some(index) => index,
                        None => {
                            let index = self.open(ResponseBlock::Text { text: String::new() }, &mut out);
                            self.open_text = Some(index);
                            index
                        }
                    };
                    out.push(StreamEvent::ContentBlockDelta { index, delta: BlockDelta::TextDelta { text } });
                }
                Piece::Call(call) => {
                    self.close_text(&mut out);
                    let block = ResponseBlock::ToolUse { id: random_id("toolu_"), name: call.name, input: json!({}) };
                    let index = self.open(block, &mut out);
                    let delta = BlockDelta::InputJsonDelta { partial_json: call.arguments.to_string() };
                    out.push(StreamEvent::ContentBlockDelta { index, delta });
                    out.push(StreamEvent::ContentBlockStop { index });
                }
            }
        }
        out
    }
}

fn sse(event: &StreamEvent) -> SseEvent {
    SseEvent::default().event(event.name()).data(serde_json::to_string(event).unwrap_or_default())
}

/// The SSE body in the official order: `message_start`, then blocks (`content_block_start`,
/// `ping` after the first, `content_block_delta`s, `content_block_stop`), `message_delta`,
/// `message_stop`. `message_start` waits until the scheduler has placed the request, so its
/// usage already splits the prompt exactly into `cache_read_input_tokens` (reused),
/// `cache_creation_input_tokens` (written to the agent's memory) and `input_tokens`. Without tools
/// the text block opens at once; with tools it opens at the first text, since the reply may be
/// only calls. A failure ends the stream with `event: error`.
fn stream_message(
    mut generation: Generation,
    reply: Reply,
    prompt_tokens: usize,
    tools_offered: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let head = stream::once(async move {
        let cached_tokens = generation.admitted().await.unwrap_or(0);
        let placed = Usage { prompt_tokens, cached_tokens, completion_tokens: 0, cache_source: None };
        let start = MessageResponse {
            id: reply.id.clone(),
            kind: "message",
            role: "assistant",
            model: reply.model.clone(),
            content: Vec::new(),
            stop_reason: None,
            stop_sequence: None,
            usage: reply.usage(&placed),
        };
        let mut blocks = Blocks { next: 0, open_text: None, pinged: false };
        let mut head = vec![StreamEvent::MessageStart { message: start }];
        if !tools_offered {
            let index = blocks.open(ResponseBlock::Text { text: String::new() }, &mut head);
            blocks.open_text = Some(index);
        }
        let head: Vec<SseEvent> = head.iter().map(sse).collect();
        (head, Some((generation, blocks, reply)))
    });
    let body = head.flat_map(|(head, state)| {
        let rest = stream::unfold(state, |state| async move {
            let (mut generation, mut blocks, reply) = state?;
            let events = match generation.next().await? {
                Step::Pieces(pieces) => blocks.pieces(pieces),
                Step::Done { finish, usage, .. } => {
                    let mut out = Vec::new();
                    blocks.close_text(&mut out);
                    let (stop_reason, stop_sequence) = reply.stop(finish);
                    out.push(StreamEvent::MessageDelta {
                        delta: MessageDelta { stop_reason, stop_sequence },
                        usage: reply.usage(&usage),
                    });
                    out.push(StreamEvent::MessageStop);
                    return Some((stream::iter(out.iter().map(sse).collect::<Vec<_>>()), None));
                }
                Step::Failed(error) => {
                    let event = SseEvent::default().event("error").data(error.body().to_string());
                    return Some((stream::iter(vec![event]), None));
                }
            };
            Some((stream::iter(events.iter().map(sse).collect::<Vec<_>>()), Some((generation, blocks, reply))))
        })
        .flatten();
        stream::iter(head).chain(rest)
    });
    Sse::new(body.map(Ok)).keep_alive(KeepAlive::default())
}

//! OpenAI Responses API: `POST /v1/responses` (JSON and SSE), `GET`/`DELETE /v1/responses/{id}`,
//! `GET /v1/responses/{id}/input_items`. A request becomes a chat-completions request (input
//! items → messages, flat tools → nested, `text.format` → `response_format`) and goes through
//! `openai::prepare`, so validation, tools and structured output are the chat route's.
//!
//! **A response chain is an agent**: the first response of a chain (`previous_response_id`
//! absent) is its root and its agent is `resp-<root id>` in the caller's namespace; every later
//! response names the same agent and renders the whole conversation again, which extends the
//! previous turn's prompt and reply, so agent memory reuses their KV (branching from an older
//! response shares the common prefix). `store: false` without a previous response runs without
//! an agent. Stored responses live in `ResponseStore` (`responses_store.rs`).

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_chat::ParsedToolCall;
use semantic_scheduler::{AgentId, AgentRef, Usage};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::Caller;
use crate::error::{ApiError, ErrorKind, Flavor};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::generation::{now_secs, random_id, Collected, Finish, Generation};
use crate::identity::check_model;
use crate::openai_wire::ChatCompletionRequest;
use crate::responses_store::{valid_id, StoredResponse};
use crate::responses_wire::{chat_tool_choice, chat_tools, parse_input, response_format, CreateResponseRequest};
use crate::AppState;

/// What a turn's Response object repeats from its request, and where it is stored.
pub(crate) struct Turn {
    pub id: String,
    pub model: String,
    pub created_at: u64,
    pub created_ms: u64,
    pub namespace: String,
    pub root: Option<String>,
    pub store: bool,
    /// Request fields echoed in the Response object.
    pub echo: Value,
    pub input_items: Vec<Value>,
    /// The conversation before this turn's reply (instructions excluded).
    pub history: Vec<Value>,
}

impl Turn {
    /// The Response object with this status, output and usage.
    pub fn response(&self, status: &str, output: Vec<Value>, usage: Option<Value>, finish: Option<Finish>) -> Value {
        let mut response = json!({
            "id": self.id, "object": "response", "created_at": self.created_at, "status": status,
            "model": self.model, "output": output, "usage": usage, "error": null,
            "incomplete_details": if finish == Some(Finish::Length) { json!({"reason": "max_output_tokens"}) } else { Value::Null },
        });
        if let (Some(map), Some(echo)) = (response.as_object_mut(), self.echo.as_object()) {
            for (k, v) in echo {
                map.insert(k.clone(), v.clone());
            }
        }
        response
    }

    /// The finished Response; stored when the request asked for it.
    pub fn conclude(
        &self,
        state: &AppState,
        output: Vec<Value>,
        finish: Finish,
        usage: &Usage,
    ) -> Result<Value, ApiError> {
        let status = if finish == Finish::Length { "incomplete" } else { "completed" };
        let response = self.response(status, output.clone(), Some(usage_json(usage)), Some(finish));
        if self.store {
            let mut messages = self.history.clone();
            messages.push(assistant_message(&output));
            let record = StoredResponse {
                id: self.id.clone(),
                namespace: self.namespace.clone(),
                root: self.root.clone().unwrap_or_else(|| self.id.clone()),
                created_ms: self.created_ms,
                response: response.clone(),
                input_items: self.input_items.clone(),
                messages,
            };
            state.responses.put(record).map_err(|e| {
                tracing::error!(err = %e, "could not store a response");
                ApiError::new(ErrorKind::Internal, format!("the response could not be stored: {e}"))
            })?;
        }
        Ok(response)
    }
}

/// Responses usage.
pub(crate) fn usage_json(u: &Usage) -> Value {
    json!({
        "input_tokens": u.prompt_tokens,
        "input_tokens_details": {"cached_tokens": u.cached_tokens},
        "output_tokens": u.completion_tokens,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": u.prompt_tokens + u.completion_tokens,
    })
}

/// A finished `message` output item.
pub(crate) fn message_item(id: &str, text: &str, status: &str) -> Value {
    json!({"id": id, "type": "message", "role": "assistant", "status": status,
           "content": [{"type": "output_text", "text": text, "annotations": []}]})
}

/// A `function_call` output item.
pub(crate) fn call_item(call: &ParsedToolCall, status: &str) -> Value {
    json!({"id": random_id("fc_"), "type": "function_call", "call_id": random_id("call_"), "name": call.name,
           "arguments": call.arguments.to_string(), "status": status})
}

/// The chat message that reproduces a turn's output in the next turn's prompt.
fn assistant_message(output: &[Value]) -> Value {
    let text: String = output
        .iter()
        .filter(|item| item["type"] == "message")
        .filter_map(|item| item["content"][0]["text"].as_str())
        .collect();
    let calls: Vec<Value> = output
        .iter()
        .filter(|item| item["type"] == "function_call")
        .map(|item| {
            json!({"id": item["call_id"], "type": "function",
                           "function": {"name": item["name"], "arguments": item["arguments"]}})
        })
        .collect();
    if calls.is_empty() {
        json!({"role": "assistant", "content": text})
    } else {
        let content = if text.trim().is_empty() { Value::Null } else { Value::String(text) };
        json!({"role": "assistant", "content": content, "tool_calls": calls})
    }
}

fn not_found(id: &str) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("No response found with id '{id}'."))
        .with_param("previous_response_id")
        .with_code("response_not_found")
}

fn lookup(state: &AppState, caller: &Caller, id: &str) -> Result<std::sync::Arc<StoredResponse>, ApiError> {
    if !valid_id(id) {
        return Err(not_found(id));
    }
    state.responses.get(caller.namespace.as_str(), id).ok_or_else(|| not_found(id))
}

/// `POST /v1/responses`.
#[utoipa::path(post, path = "/v1/responses", tag = "openai",
    request_body = CreateResponseRequest,
    responses(
        (status = 200, description = "the Response object, or with `stream` SSE events (`response.created` … `response.completed`)"),
        (status = 400, description = "invalid request", body = crate::error::OpenAiErrorBody),
        (status = 404, description = "`model_not_found`, or an unknown `previous_response_id`", body = crate::error::OpenAiErrorBody),
        (status = 429, description = "queue full or rate limited (Retry-After)", body = crate::error::OpenAiErrorBody),
        (status = 503, description = "loading or draining (Retry-After)", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateResponseRequest>,
) -> Result<Response, ApiError> {
    let model = check_model(&state, req.model.as_deref())?;
    let previous = match req.previous_response_id.as_deref() {
        Some(id) => Some(lookup(&state, &caller, id)?),
        None => None,
    };
    let input = parse_input(&req.input)?;
    let id = random_id("resp_");
    let store = req.store.unwrap_or(true);
    let root = previous.as_ref().map(|p| p.root.clone()).or_else(|| store.then(|| id.clone()));
    let agent =
        match &root {
            Some(root) => Some(AgentId::parse(&format!("resp-{root}")).map_err(|e| {
                ApiError::new(ErrorKind::Internal, format!("a response chain's agent id is invalid: {e}"))
            })?),
            None => None,
        };
    let agent = AgentRef { namespace: caller.namespace.clone(), agent };
    let mut history = previous.as_ref().map(|p| p.messages.clone()).unwrap_or_default();
    history.extend(input.messages);
    let chat = chat_request(&req, &history, model.clone())?;
    let job = crate::openai::prepare(&state, chat, agent).map_err(flat_tool_param)?;
    let generation = Generation::start(&state, job, Flavor::OpenAi)?;
    let now_ms =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let turn = Turn {
        id,
        model,
        created_at: now_secs(),
        created_ms: now_ms,
        namespace: caller.namespace.as_str().to_owned(),
        root,
        store,
        echo: echo(&req, store),
        input_items: input.items,
        history,
    };
    if req.stream.unwrap_or(false) {
        return Ok(crate::responses_stream::stream(state, generation, turn).into_response());
    }
    let Collected { text, calls, finish, usage, .. } = generation.collect().await?;
    let mut output = Vec::new();
    if calls.is_empty() || !text.trim().is_empty() {
        output.push(message_item(&random_id("msg_"), &text, "completed"));
    }
    output.extend(calls.iter().map(|c| call_item(c, "completed")));
    Ok(Json(turn.conclude(&state, output, finish, &usage)?).into_response())
}

/// The request fields a Response object repeats.
fn echo(req: &CreateResponseRequest, store: bool) -> Value {
    json!({
        "instructions": req.instructions,
        "previous_response_id": req.previous_response_id,
        "max_output_tokens": req.max_output_tokens,
        "temperature": req.temperature.unwrap_or(1.0),
        "top_p": req.top_p.unwrap_or(1.0),
        "tools": req.tools.clone().unwrap_or_default(),
        "tool_choice": req.tool_choice.clone().unwrap_or_else(|| json!("auto")),
        "parallel_tool_calls": req.parallel_tool_calls.unwrap_or(true),
        "text": req.text.clone().unwrap_or_else(|| json!({"format": {"type": "text"}})),
        "metadata": req.metadata.clone().unwrap_or_default(),
        "store": store,
        "truncation": "disabled",
        "background": false,
        "user": req.user,
    })
}

/// The chat-completions request this turn is: instructions, the conversation, the new input.
fn chat_request(
    req: &CreateResponseRequest,
    history: &[Value],
    model: String,
) -> Result<ChatCompletionRequest, ApiError> {
    if req.metadata.as_ref().is_some_and(|m| m.len() > 16) {
        return Err(ApiError::invalid("metadata", "at most 16 metadata pairs"));
    }
    crate::params::max_tokens("max_output_tokens", req.max_output_tokens)?;
    let mut messages = Vec::with_capacity(history.len() + 1);
    if let Some(instructions) = &req.instructions {
        messages.push(json!({"role": "system", "content": instructions}));
    }
    messages.extend(history.iter().cloned());
    let mut chat = json!({"model": model, "messages": messages});
    let map =
        chat.as_object_mut().ok_or_else(|| ApiError::new(ErrorKind::Internal, "chat request is not an object"))?;
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(v) = value.filter(|v| !v.is_null()) {
            map.insert(key.to_owned(), v);
        }
    };
    set("max_completion_tokens", req.max_output_tokens.map(Value::from));
    set("temperature", req.temperature.map(Value::from));
    set("top_p", req.top_p.map(Value::from));
    set("seed", req.seed.map(Value::from));
    set("parallel_tool_calls", req.parallel_tool_calls.map(Value::from));
    set("tools", req.tools.as_deref().map(chat_tools).transpose()?.map(Value::from));
    set("tool_choice", req.tool_choice.as_ref().map(chat_tool_choice));
    set("response_format", req.text.as_ref().and_then(response_format));
    serde_json::from_value(chat).map_err(|e| {
        let param = if e.to_string().contains("tool") { "tools" } else { "input" };
        ApiError::invalid(param, format!("invalid request: {e}"))
    })
}

/// A chat-route error about `tools[i].function.parameters` names the Responses field, `tools[i].parameters`
/// (Responses tools are flat).
fn flat_tool_param(mut e: ApiError) -> ApiError {
    if let Some(param) = e.param.as_deref().filter(|p| p.starts_with("tools[")) {
        let flat = param.replace(".function.", ".");
        e.message = e.message.replace(param, &flat);
        e.param = Some(flat);
    }
    e
}

/// `GET /v1/responses/{id}`.
#[utoipa::path(get, path = "/v1/responses/{id}", tag = "openai",
    params(("id" = String, Path, description = "`resp_…`")),
    responses((status = 200, description = "the stored Response object"),
              (status = 404, description = "unknown, deleted, `store: false` or another key's", body = crate::error::OpenAiErrorBody)))]
pub async fn retrieve(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    Ok(Json(lookup(&state, &caller, &id).map_err(|e| e.with_param("id"))?.response.clone()))
}

/// `DELETE /v1/responses/{id}` (the chain's agent memory stays: other responses may use it).
#[utoipa::path(delete, path = "/v1/responses/{id}", tag = "openai",
    params(("id" = String, Path, description = "`resp_…`")),
    responses((status = 200, description = "`{\"id\", \"object\": \"response\", \"deleted\": true}`"),
              (status = 404, description = "unknown or another key's", body = crate::error::OpenAiErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    if !valid_id(&id) || !state.responses.delete(caller.namespace.as_str(), &id) {
        return Err(not_found(&id).with_param("id"));
    }
    Ok(Json(json!({"id": id, "object": "response", "deleted": true})))
}

/// `input_items` query.
#[derive(Debug, Deserialize)]
pub struct InputItemsQuery {
    /// `asc` or `desc` (default).
    order: Option<String>,
    /// 1-100, default 20.
    limit: Option<usize>,
    /// List after this item id.
    after: Option<String>,
}

/// `GET /v1/responses/{id}/input_items`.
#[utoipa::path(get, path = "/v1/responses/{id}/input_items", tag = "openai",
    params(("id" = String, Path, description = "`resp_…`"),
           ("order" = Option<String>, Query, description = "`asc` or `desc` (default)"),
           ("limit" = Option<usize>, Query, description = "1-100, default 20"),
           ("after" = Option<String>, Query, description = "an item id: list what follows it")),
    responses((status = 200, description = "`{\"object\": \"list\", \"data\", \"first_id\", \"last_id\", \"has_more\"}`"),
              (status = 404, description = "unknown or another key's", body = crate::error::OpenAiErrorBody)))]
pub async fn input_items(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<InputItemsQuery>,
) -> Result<Json<Value>, ApiError> {
    let stored = lookup(&state, &caller, &id).map_err(|e| e.with_param("id"))?;
    let mut items = stored.input_items.clone();
    match q.order.as_deref() {
        None | Some("desc") => items.reverse(),
        Some("asc") => {}
        Some(other) => return Err(ApiError::invalid("order", format!("order must be asc or desc, got {other:?}"))),
    }
    if let Some(after) = &q.after {
        if let Some(i) = items.iter().position(|item| item["id"] == after.as_str()) {
            items.drain(..=i);
        }
    }
    let limit = q.limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::invalid("limit", "limit must be in 1..=100"));
    }
    let has_more = items.len() > limit;
    items.truncate(limit);
    Ok(Json(json!({
        "object": "list",
        "first_id": items.first().map(|i| i["id"].clone()),
        "last_id": items.last().map(|i| i["id"].clone()),
        "has_more": has_more,
        "data": items,
    })))
}

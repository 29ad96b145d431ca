//! The direct agent API: `POST /v1/agents/{id}/generate`, a raw prompt (no chat template) that
//! continues the agent's KV **through the scheduler** (the original ran the engine beside it),
//! so it batches, queues, times out and persists like every other request. The agent is the
//! caller's (namespace per API key); agent memory reuses the longest common token prefix of its
//! previous prompt and reply, and the reply reports how much it reused. With `stream: true` the
//! reply is legacy `/v1/completions` SSE (the same code builds it), usage always included.

use axum::extract::State;
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_memory::AgentId;
use semantic_scheduler::{AgentRef, GenerateRequest};
use serde::Deserialize;
use serde_json::json;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::completions::{stream_completion, Maker};
use crate::error::{ApiError, ErrorKind, Flavor};
use crate::extract::{ApiJson, ApiPath};
use crate::generation::{random_id, Generation, Job};
use crate::openai::{finish_reason, usage};
use crate::openai_wire::StopField;
use crate::params;
use crate::AppState;

/// `max_tokens` when a generate request names none (the original's default).
const DEFAULT_MAX_TOKENS: usize = 256;

/// `POST /v1/agents/{id}/generate` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct GenerateBody {
    /// Raw prompt text (no chat template; special-token text is parsed).
    pub prompt: String,
    /// Most tokens to generate (default 256).
    pub max_tokens: Option<u64>,
    /// 0-2, default 1; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0-1.
    pub top_p: Option<f32>,
    /// Seed for reproducible sampling.
    pub seed: Option<i64>,
    /// Stop strings (at most 16), never included in the text.
    pub stop: Option<StopField>,
    /// Server-sent events in the shape of `POST /v1/completions` streaming: `text_completion` chunks, one with
    /// `finish_reason`, one with `usage` (including `prompt_tokens_details.cached_tokens`), then `data: [DONE]`.
    pub stream: Option<bool>,
}

/// `POST /v1/agents/{id}/generate`.
#[utoipa::path(post, path = "/v1/agents/{id}/generate", tag = "agents",
    request_body = GenerateBody,
    params(("id" = String, Path, description = "agent id (created on first use)")),
    responses(
        (status = 200, description = "`{id, object: \"agent.generation\", agent_id, text, finish_reason, tokens_generated, usage}`; `usage.prompt_tokens_details.cached_tokens` is the reused KV. With `stream`: SSE `text_completion` chunks (`choices[0].text`), a chunk with `finish_reason`, a chunk with `usage` and no choices, then `data: [DONE]`",
            content((crate::openai_wire::TextCompletion = "text/event-stream"))),
        (status = 400, description = "invalid request or agent id", body = crate::error::OpenAiErrorBody),
        (status = 429, description = "queue full (Retry-After)", body = crate::error::OpenAiErrorBody),
    ))]
pub async fn generate(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(body): ApiJson<GenerateBody>,
) -> Result<Response, ApiError> {
    let agent = AgentId::parse(&id)
        .map_err(|e| ApiError::invalid("id", format!("invalid agent id: {e}")).with_code("invalid_agent_id"))?;
    if body.prompt.is_empty() {
        return Err(ApiError::invalid("prompt", "prompt must not be empty"));
    }
    let fields = params::SamplingFields {
        temperature: body.temperature,
        top_p: body.top_p,
        seed: body.seed,
        ..Default::default()
    };
    let sampling = params::sampling(&fields, params::OPENAI, state.scheduler.facts().n_vocab)?;
    let stop = params::stop_strings("stop", body.stop.map(StopField::into_vec).unwrap_or_default())?;
    let max_tokens = params::max_tokens("max_tokens", body.max_tokens)?.unwrap_or(DEFAULT_MAX_TOKENS);
    let prompt =
        state.prompter.raw(&body.prompt).map_err(|e| ApiError::new(ErrorKind::InvalidRequest, e.to_string()))?;
    let agent = AgentRef { namespace: caller.namespace.clone(), agent: Some(agent) };
    let job = Job { request: GenerateRequest { prompt, max_tokens, sampling, stop, agent }, tools: None };
    let generation = Generation::start(&state, job, Flavor::OpenAi)?;
    if body.stream == Some(true) {
        let maker = Maker::new("gen-", state.options.model_name.clone(), None);
        return Ok(stream_completion(generation, maker, true).into_response());
    }
    let collected = generation.collect().await?;
    Ok(Json(json!({
        "id": random_id("gen-"),
        "object": "agent.generation",
        "agent_id": id,
        "text": collected.text,
        "finish_reason": finish_reason(collected.finish),
        "tokens_generated": collected.usage.completion_tokens,
        "usage": usage(&collected.usage),
    }))
    .into_response())
}

//! `GET /openapi.json`: the OpenAPI 3.1 document, generated from the wire types (utoipa derives)
//! and the route annotations. `lib.rs`'s route table is checked against it by a test.

use axum::Json;
use utoipa::OpenApi;

use crate::{
    agent_io, anthropic, anthropic_wire, completions, coord_routes, coord_wire, error, health, models, openai,
    openai_wire, responses, responses_wire, scenario_routes, scenario_runs,
};

/// The whole API description.
#[derive(OpenApi)]
#[openapi(
    info(title = "semantic", description = "OpenAI- and Anthropic-compatible LLM server with per-agent KV memory"),
    paths(
        health::health,
        health::live,
        health::startup,
        health::ready,
        health::metrics,
        agents_doc::list,
        agents_doc::get,
        agents_doc::delete,
        agents_doc::evict,
        agents_doc::pin,
        agents_doc::unpin,
        agents_doc::export,
        agents_doc::import,
        agents_doc::import_post,
        agent_io::generate,
        agents_doc::status,
        agents_doc::clear,
        agents_doc::flush,
        openai::models,
        openai::chat_completions,
        completions::completions,
        responses::create,
        responses::retrieve,
        responses::delete,
        responses::input_items,
        anthropic::messages,
        anthropic::count_tokens,
        coord_routes::create,
        coord_routes::list,
        coord_routes::get,
        coord_routes::delete,
        coord_routes::turn,
        coord_routes::round,
        coord_routes::turn_stream,
        coord_routes::round_stream,
        coord_routes::whisper,
        coord_routes::messages,
        coord_routes::prompt,
        coord_routes::vote,
        coord_routes::decide,
        coord_routes::decision,
        coord_routes::delete_caches,
        scenario_routes::validate,
        scenario_routes::start,
        scenario_routes::status,
        scenario_routes::cancel,
        scenario_routes::next,
        scenario_routes::events,
        scenario_routes::transcript,
        models::current,
        models::available,
        models::swap,
        models::offload,
        openapi_json,
    ),
    components(schemas(
        error::OpenAiErrorBody,
        error::AnthropicErrorBody,
        openai_wire::ChatCompletionChunk,
        responses_wire::CreateResponseRequest,
        agent_io::GenerateBody,
        anthropic_wire::StreamEvent,
        health::Health,
        coord_wire::CreateSessionRequest,
        coord_wire::SessionStatusDoc,
        coord_wire::TurnDoc,
        scenario_runs::StartRunRequest,
        scenario_routes::ValidateRequest,
        models::SwapRequest,
    )),
    tags(
        (name = "openai", description = "OpenAI-compatible routes"),
        (name = "anthropic", description = "Anthropic-compatible routes"),
        (name = "server", description = "Health, metrics and the API description"),
        (name = "agents", description = "Agent memory of the caller's namespace"),
        (name = "admin", description = "Operator routes (admin key)"),
        (name = "scenarios", description = "YAML scenarios run on the server, phase by phase"),
        (name = "coordination", description = "Multi-agent sessions: topologies, turns, whispers, votes, decisions"),
    )
)]
pub struct ApiDoc;

/// `GET /openapi.json`.
#[utoipa::path(get, path = "/openapi.json", tag = "server", responses((status = 200, description = "this document")))]
pub async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

/// Descriptions of the agent and admin routes (`agents.rs`), whose handlers carry no annotations
/// of their own yet. Doc-only: these functions are never routed.
#[allow(dead_code)]
mod agents_doc {
    use crate::error::OpenAiErrorBody;

    #[utoipa::path(get, path = "/v1/agents", tag = "agents", responses((status = 200, description = "the caller's agents: tier, tokens, bytes, last used, pinned")))]
    pub fn list() {}
    #[utoipa::path(get, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "one agent"), (status = 404, description = "no such agent", body = OpenAiErrorBody)))]
    pub fn get() {}
    #[utoipa::path(delete, path = "/v1/agents/{id}", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "deleted from every tier"), (status = 404, description = "no such agent", body = OpenAiErrorBody)))]
    pub fn delete() {}
    #[utoipa::path(post, path = "/v1/agents/{id}/evict", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "moved to disk"), (status = 404, description = "no such agent", body = OpenAiErrorBody)))]
    pub fn evict() {}
    #[utoipa::path(post, path = "/v1/agents/{id}/pin", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "pinned: never evicted"), (status = 404, description = "no such agent", body = OpenAiErrorBody)))]
    pub fn pin() {}
    #[utoipa::path(post, path = "/v1/agents/{id}/unpin", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "unpinned"), (status = 404, description = "no such agent", body = OpenAiErrorBody)))]
    pub fn unpin() {}
    #[utoipa::path(get, path = "/v1/agents/{id}/export", tag = "agents", params(("id" = String, Path, description = "agent id")),
        responses((status = 200, description = "the agent's file (application/octet-stream), as `semantic agents export` writes it"),
            (status = 404, description = "no such agent", body = OpenAiErrorBody), (status = 409, description = "the agent is generating (`agent_busy`)", body = OpenAiErrorBody)))]
    pub fn export() {}
    #[utoipa::path(put, path = "/v1/agents/{id}/import", tag = "agents", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "an exported agent file (at most 1 GiB)"),
        params(("id" = String, Path, description = "agent id the file becomes"), ("replace" = Option<bool>, Query, description = "overwrite an agent of that name")),
        responses((status = 200, description = "the agent, warm; written to disk like any turn"),
            (status = 400, description = "not a valid agent file (`invalid_agent_file`), or another model's (`incompatible_agent_file`)", body = OpenAiErrorBody),
            (status = 409, description = "the agent exists (`agent_exists`) or is generating (`agent_busy`)", body = OpenAiErrorBody)))]
    pub fn import() {}
    #[utoipa::path(post, path = "/v1/agents/{id}/import", tag = "agents", request_body(content = Vec<u8>, content_type = "application/octet-stream", description = "an exported agent file (at most 1 GiB); the same as PUT"),
        params(("id" = String, Path, description = "agent id the file becomes"), ("replace" = Option<bool>, Query, description = "overwrite an agent of that name")),
        responses((status = 200, description = "the agent, warm; written to disk like any turn"),
            (status = 400, description = "not a valid agent file (`invalid_agent_file`), or another model's (`incompatible_agent_file`)", body = OpenAiErrorBody),
            (status = 409, description = "the agent exists (`agent_exists`) or is generating (`agent_busy`)", body = OpenAiErrorBody)))]
    pub fn import_post() {}
    #[utoipa::path(get, path = "/admin/status", tag = "admin", responses((status = 200, description = "scheduler and memory figures"), (status = 401, description = "admin key needed", body = OpenAiErrorBody)))]
    pub fn status() {}
    #[utoipa::path(delete, path = "/admin/caches", tag = "admin", responses((status = 200, description = "every agent deleted (busy ones kept)"), (status = 401, description = "admin key needed", body = OpenAiErrorBody)))]
    pub fn clear() {}
    #[utoipa::path(post, path = "/admin/flush", tag = "admin", responses((status = 200, description = "dirty agents persisted"), (status = 401, description = "admin key needed", body = OpenAiErrorBody)))]
    pub fn flush() {}
}

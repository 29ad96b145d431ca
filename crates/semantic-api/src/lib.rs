//! The HTTP API: routes, OpenAI and Anthropic wire types, SSE streaming, tool calls on the wire,
//! agent identity, `/openapi.json`, the operations layer (rate limits, CORS, timeouts, the loading
//! app), and the one place errors become HTTP responses.
//!
//! Owns: everything that knows HTTP or JSON wire formats. Does not own: scheduling (it submits
//! token ids to the scheduler), templates and tool-call syntax (it asks `semantic-chat`),
//! configuration parsing.
#![warn(missing_docs)]

mod agent_io;
mod agents;
mod anthropic;
pub mod anthropic_wire;
mod auth;
mod body_deadline;
mod completions;
mod coord_routes;
pub mod coord_wire;
mod coordination;
mod cors;
mod error;
mod extract;
mod generation;
mod health;
mod identity;
mod logprobs;
pub mod metrics;
mod models;
mod on_demand;
mod openai;
pub mod openai_wire;
mod openapi;
mod ops;
mod params;
pub mod prompt;
mod rate_limit;
mod responses;
mod responses_store;
mod responses_stream;
pub mod responses_wire;
mod scenario_routes;
mod scenario_runs;
mod startup;
mod state;
mod token_cache;
mod tool_offer;
mod ui;

use axum::http::Method;
use axum::routing::{delete, get, post, put, MethodRouter};
use axum::Router;

pub use auth::{namespace_for_key, AuthConfig, Caller};
pub use error::{AnthropicErrorBody, ApiError, ErrorKind, Flavor, OpenAiErrorBody};
pub use identity::MODEL_ALIASES;
pub use models::{ModelHost, StoredAgent, SwapRequest, SwapResult};
pub use openapi::ApiDoc;
pub use rate_limit::RateLimitConfig;
pub use responses_store::Retention;
pub use startup::Startup;
pub use state::{AppState, ServeOptions};
pub use ui::PAGES as UI_PAGES;

/// Every route: method, path (axum and OpenAPI share the `{param}` syntax) and handler. The
/// router is built from this table and a test checks each entry against `/openapi.json`, so a
/// route added here without a `#[utoipa::path]` (listed in `openapi.rs`) fails the tests.
pub fn routes() -> Vec<(Method, &'static str, MethodRouter<AppState>)> {
    vec![
        (Method::GET, "/health", get(health::health)),
        (Method::GET, "/health/live", get(health::live)),
        (Method::GET, "/health/startup", get(health::startup)),
        (Method::GET, "/health/ready", get(health::ready)),
        (Method::GET, "/metrics", get(health::metrics)),
        (Method::GET, "/v1/agents", get(agents::list)),
        (Method::GET, "/v1/agents/{id}", get(agents::get)),
        (Method::DELETE, "/v1/agents/{id}", delete(agents::delete)),
        (Method::POST, "/v1/agents/{id}/evict", post(agents::evict)),
        (Method::POST, "/v1/agents/{id}/pin", post(agents::pin)),
        (Method::POST, "/v1/agents/{id}/unpin", post(agents::unpin)),
        (Method::GET, "/v1/agents/{id}/export", get(agents::export)),
        (
            Method::PUT,
            "/v1/agents/{id}/import",
            put(agents::import).layer(axum::extract::DefaultBodyLimit::max(agents::IMPORT_MAX_BYTES)),
        ),
        (
            Method::POST,
            "/v1/agents/{id}/import",
            post(agents::import).layer(axum::extract::DefaultBodyLimit::max(agents::IMPORT_MAX_BYTES)),
        ),
        (Method::POST, "/v1/agents/{id}/generate", post(agent_io::generate)),
        (Method::GET, "/admin/status", get(agents::status)),
        (Method::DELETE, "/admin/caches", delete(agents::clear)),
        (Method::POST, "/admin/flush", post(agents::flush)),
        (Method::GET, "/v1/models", get(openai::models)),
        (Method::POST, "/v1/chat/completions", post(openai::chat_completions)),
        (Method::POST, "/v1/completions", post(completions::completions)),
        (Method::POST, "/v1/responses", post(responses::create)),
        (Method::GET, "/v1/responses/{id}", get(responses::retrieve)),
        (Method::DELETE, "/v1/responses/{id}", delete(responses::delete)),
        (Method::GET, "/v1/responses/{id}/input_items", get(responses::input_items)),
        (Method::POST, "/v1/messages", post(anthropic::messages)),
        (Method::POST, "/v1/messages/count_tokens", post(anthropic::count_tokens)),
        (Method::POST, "/v1/coordination/sessions", post(coord_routes::create)),
        (Method::GET, "/v1/coordination/sessions", get(coord_routes::list)),
        (Method::GET, "/v1/coordination/sessions/{id}", get(coord_routes::get)),
        (Method::DELETE, "/v1/coordination/sessions/{id}", delete(coord_routes::delete)),
        (Method::POST, "/v1/coordination/sessions/{id}/turn", post(coord_routes::turn)),
        (Method::POST, "/v1/coordination/sessions/{id}/round", post(coord_routes::round)),
        (Method::POST, "/v1/coordination/sessions/{id}/turn/stream", post(coord_routes::turn_stream)),
        (Method::POST, "/v1/coordination/sessions/{id}/round/stream", post(coord_routes::round_stream)),
        (Method::POST, "/v1/coordination/sessions/{id}/whisper", post(coord_routes::whisper)),
        (Method::GET, "/v1/coordination/sessions/{id}/messages", get(coord_routes::messages)),
        (Method::GET, "/v1/coordination/sessions/{id}/prompt/{agent_id}", get(coord_routes::prompt)),
        (Method::POST, "/v1/coordination/sessions/{id}/vote", post(coord_routes::vote)),
        (Method::POST, "/v1/coordination/sessions/{id}/decide", post(coord_routes::decide)),
        (Method::GET, "/v1/coordination/sessions/{id}/decision", get(coord_routes::decision)),
        (Method::DELETE, "/v1/coordination/caches/{prefix}", delete(coord_routes::delete_caches)),
        (Method::POST, "/v1/scenarios/validate", post(scenario_routes::validate)),
        (Method::POST, "/v1/scenarios/runs", post(scenario_routes::start)),
        (Method::GET, "/v1/scenarios/runs/{id}", get(scenario_routes::status)),
        (Method::DELETE, "/v1/scenarios/runs/{id}", delete(scenario_routes::cancel)),
        (Method::GET, "/v1/scenarios/runs/{id}/events", get(scenario_routes::events)),
        (Method::POST, "/v1/scenarios/runs/{id}/next", post(scenario_routes::next)),
        (Method::GET, "/v1/scenarios/runs/{id}/transcript", get(scenario_routes::transcript)),
        (Method::GET, "/openapi.json", get(openapi::openapi_json)),
    ]
}

/// Builds the whole router for one server, wrapped in the middleware stack (`ops.rs`): the API
/// (`routes()`) and the web page (`ui.rs`, not part of the API description).
pub fn router(state: AppState) -> Router {
    let routes = routes()
        .into_iter()
        .fold(Router::new(), |router, (_, path, handler)| router.route(path, handler))
        .merge(ui::router())
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .with_state(state.clone());
    ops::stack(routes, &state.ops)
}

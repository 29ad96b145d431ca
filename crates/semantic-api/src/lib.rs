//! The HTTP API: routes, OpenAI (and later Anthropic) wire types, SSE streaming, and the one place
//! errors become HTTP responses.
//!
//! Owns: everything that knows HTTP or JSON wire formats. Does not own: scheduling (it submits
//! token ids to the scheduler), templates (it asks `semantic-chat`), configuration parsing.
#![warn(missing_docs)]

mod agents;
mod auth;
mod error;
mod extract;
mod health;
pub mod metrics;
mod openai;
mod ops;
pub mod prompt;
mod state;

use axum::routing::{delete, get, post};
use axum::Router;

pub use auth::{AuthConfig, Caller};
pub use error::{ApiError, ErrorKind};
pub use state::{AppState, ServeOptions};

/// Builds the whole router for one server.
pub fn router(state: AppState) -> Router {
    let routes = Router::new()
        .route("/health", get(health::health))
        .route("/health/live", get(health::live))
        .route("/health/startup", get(health::startup))
        .route("/health/ready", get(health::ready))
        .route("/metrics", get(health::metrics))
        .route("/v1/agents", get(agents::list))
        .route("/v1/agents/{id}", get(agents::get).delete(agents::delete))
        .route("/v1/agents/{id}/evict", post(agents::evict))
        .route("/v1/agents/{id}/pin", post(agents::pin))
        .route("/v1/agents/{id}/unpin", post(agents::unpin))
        .route("/admin/status", get(agents::status))
        .route("/admin/caches", delete(agents::clear))
        .route("/admin/flush", post(agents::flush))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .fallback(error::not_found);
    ops::stack(routes, state)
}

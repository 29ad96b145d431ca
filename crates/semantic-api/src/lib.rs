//! The HTTP API: routes, OpenAI (and later Anthropic) wire types, SSE streaming, and the one place
//! errors become HTTP responses.
//!
//! Owns: everything that knows HTTP or JSON wire formats. Does not own: scheduling (it submits
//! token ids to the scheduler), templates (it asks `semantic-chat`), configuration parsing.
#![warn(missing_docs)]

mod error;
mod extract;
mod health;
mod openai;
pub mod prompt;
mod state;

use axum::routing::{get, post};
use axum::Router;

pub use error::{ApiError, ErrorKind};
pub use state::{AppState, ServeOptions};

/// Builds the whole router for one server.
pub fn router(state: AppState) -> Router {
    Router::new()
        .route("/health", get(health::health))
        .route("/v1/models", get(openai::models))
        .route("/v1/chat/completions", post(openai::chat_completions))
        .fallback(error::not_found)
        .with_state(state)
}

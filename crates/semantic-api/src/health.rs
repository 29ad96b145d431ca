//! Health probes (never behind auth or rate limits) and `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::presented_key;
use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// `GET /health` body.
#[derive(Debug, Serialize, ToSchema)]
pub struct Health {
    /// `ok`, or `draining` during shutdown.
    pub status: &'static str,
    /// The loaded model's name.
    pub model: String,
    /// Requests decoding.
    pub running: usize,
    /// Requests waiting.
    pub queued: usize,
    /// KV cells reserved by running requests.
    pub kv_reserved: usize,
    /// KV cells in the context.
    pub kv_capacity: usize,
}

/// `GET /health`: 200 while the process serves, with queue and KV figures.
#[utoipa::path(get, path = "/health", tag = "server", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<AppState>) -> Json<Health> {
    let stats = state.scheduler.stats();
    Json(Health {
        status: if stats.draining { "draining" } else { "ok" },
        model: state.options.model_name.clone(),
        running: stats.running,
        queued: stats.queued,
        kv_reserved: stats.kv_reserved,
        kv_capacity: stats.kv_capacity,
    })
}

/// `GET /health/live`: 200 while the process runs.
#[utoipa::path(get, path = "/health/live", tag = "server", responses((status = 200, description = "`{\"status\":\"ok\"}`")))]
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/startup`: 200 once the model is loaded; until then the loading app
/// (`startup.rs`) answers 503 `loading`.
#[utoipa::path(get, path = "/health/startup", tag = "server", responses(
    (status = 200, description = "`{\"status\":\"ok\",\"model\"}`"),
    (status = 503, description = "`{\"status\":\"loading\",\"reason\":\"loading\"}` with Retry-After while the model loads")))]
pub async fn startup(State(state): State<AppState>) -> Json<Value> {
    Json(json!({"status": "ok", "model": state.options.model_name}))
}

/// Why the server should not get new traffic now, if it should not.
fn not_ready_reason(state: &AppState) -> Option<String> {
    let s = state.scheduler.stats();
    if s.draining {
        return Some("draining".into());
    }
    let kv = s.kv_reserved as f64 / s.kv_capacity.max(1) as f64;
    if kv >= state.options.ready_kv_ratio {
        return Some(format!("kv_pressure: {:.0}% of KV cells reserved", kv * 100.0));
    }
    let queue = s.queued as f64 / s.queue_capacity.max(1) as f64;
    if queue >= state.options.ready_queue_ratio {
        return Some(format!("queue_pressure: {} of {} queue slots used", s.queued, s.queue_capacity));
    }
    None
}

/// `GET /health/ready`: 503 with the reason while loading, draining or under KV/queue pressure.
#[utoipa::path(get, path = "/health/ready", tag = "server", responses(
    (status = 200, description = "`{\"status\":\"ready\"}`"),
    (status = 503, description = "`{\"status\":\"not_ready\",\"reason\"}` with Retry-After (`{\"status\":\"loading\",\"reason\":\"loading\"}` while the model loads)")))]
pub async fn ready(State(state): State<AppState>) -> Response {
    match not_ready_reason(&state) {
        None => Json(json!({"status": "ready"})).into_response(),
        Some(reason) => (
            StatusCode::SERVICE_UNAVAILABLE,
            [(header::RETRY_AFTER, "5")],
            Json(json!({"status": "not_ready", "reason": reason})),
        )
            .into_response(),
    }
}

/// `GET /metrics`: Prometheus text; needs an API key unless metrics are public.
#[utoipa::path(get, path = "/metrics", tag = "server", responses(
    (status = 200, description = "Prometheus text format 0.0.4", content_type = "text/plain"),
    (status = 401, description = "missing or invalid API key", body = crate::error::OpenAiErrorBody)))]
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if !state.auth.metrics_public && state.auth.enabled() {
        let ok = crate::auth::check_key(&state.auth, presented_key(&headers));
        if !ok {
            return ApiError::new(ErrorKind::Authentication, "missing or invalid API key").into_response();
        }
    }
    let body = crate::metrics::render(&state.ops.metrics, &state.scheduler);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

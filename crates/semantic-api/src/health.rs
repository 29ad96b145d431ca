//! Health probes (never behind auth or rate limits) and `/metrics`.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde_json::{json, Value};

use crate::auth::presented_key;
use crate::error::{ApiError, ErrorKind};
use crate::AppState;

/// `GET /health`: 200 while the process serves, with queue and KV figures.
pub async fn health(State(state): State<AppState>) -> Json<Value> {
    let stats = state.scheduler.stats();
    Json(json!({
        "status": if stats.draining { "draining" } else { "ok" },
        "model": state.options.model_name,
        "running": stats.running,
        "queued": stats.queued,
        "kv_reserved": stats.kv_reserved,
        "kv_capacity": stats.kv_capacity,
    }))
}

/// `GET /health/live`: 200 while the process runs.
pub async fn live() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `GET /health/startup`: the listener opens only after the model is loaded, so this answers 200.
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

/// `GET /health/ready`: 503 with the reason while draining or under KV/queue pressure.
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
pub async fn metrics(State(state): State<AppState>, headers: axum::http::HeaderMap) -> Response {
    if !state.auth.metrics_public && state.auth.enabled() {
        let ok = crate::auth::check_key(&state.auth, presented_key(&headers));
        if !ok {
            return ApiError::new(ErrorKind::Authentication, "missing or invalid API key").into_response();
        }
    }
    let body = crate::metrics::render(&state.metrics, &state.scheduler);
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], body).into_response()
}

//! `/health`: liveness with a summary of the scheduler.

use axum::extract::State;
use axum::Json;
use serde_json::{json, Value};

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

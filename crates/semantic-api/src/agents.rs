//! Agents API (`/v1/agents…`, scoped to the caller's namespace) and admin API (`/admin/…`).

use std::time::{Duration, UNIX_EPOCH};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_memory::{AgentId, AgentInfo, AgentKey};
use semantic_scheduler::AgentOpError;
use serde_json::{json, Value};

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiPath;
use crate::AppState;

/// One agent; `kv_type` is the server's (agent files of another KV type are never loaded).
fn agent_json(info: &AgentInfo, kv_type: &str) -> Value {
    json!({
        "id": info.key.agent.as_str(),
        "object": "agent",
        "tier": info.tier.as_str(),
        "tokens": info.tokens,
        "bytes": info.bytes,
        "file_bytes": info.file_bytes,
        "last_used": info.last_used_ms / 1000,
        "updated": info.updated_ms / 1000,
        "pinned": info.pinned,
        "dirty": info.dirty,
        "kv_type": kv_type,
    })
}

fn kv_type(state: &AppState) -> String {
    state.scheduler.context().kv_type.to_string()
}

fn key(caller: &Caller, id: &str) -> Result<AgentKey, ApiError> {
    let agent = AgentId::parse(id).map_err(|e| ApiError::invalid("id", format!("invalid agent id: {e}")))?;
    Ok(AgentKey { namespace: caller.namespace.clone(), agent })
}

fn op_error(err: AgentOpError) -> ApiError {
    match err {
        AgentOpError::NotFound => ApiError::new(ErrorKind::NotFound, "no such agent").with_code("agent_not_found"),
        AgentOpError::Busy => ApiError::new(ErrorKind::Conflict, err.to_string()).with_code("agent_busy"),
        AgentOpError::Persist { .. } => ApiError::new(ErrorKind::Internal, err.to_string()),
    }
}

/// `GET /v1/agents`: the caller's agents, newest first, and the server's memory budgets (the same for
/// every caller: they size the tiers the agents share).
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let mut agents = state.scheduler.list_agents(caller.namespace).await;
    agents.sort_by_key(|a| std::cmp::Reverse(a.last_used_ms));
    let kv = kv_type(&state);
    let (warm_bytes, disk_bytes) = state.scheduler.memory_budgets();
    let budgets = json!({
        "hot_agents": state.scheduler.context().n_seq_max,
        "warm_bytes": warm_bytes,
        "disk_bytes": disk_bytes,
    });
    let data: Vec<Value> = agents.iter().map(|a| agent_json(a, &kv)).collect();
    Json(json!({"object": "list", "data": data, "budgets": budgets}))
}

/// `GET /v1/agents/{id}`
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.scheduler.agent(key(&caller, &id)?).await.ok_or_else(|| op_error(AgentOpError::NotFound))?;
    Ok(Json(agent_json(&info, &kv_type(&state))))
}

/// `DELETE /v1/agents/{id}`
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let key = key(&caller, &id)?;
    state.prompter.forget(&key);
    state.scheduler.delete_agent(key).await.map_err(op_error)?;
    Ok(Json(json!({"id": id, "object": "agent", "deleted": true})))
}

/// `POST /v1/agents/{id}/evict`: to disk, now.
pub async fn evict(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.scheduler.evict_agent(key(&caller, &id)?).await.map_err(op_error)?;
    Ok(Json(agent_json(&info, &kv_type(&state))))
}

/// `POST /v1/agents/{id}/pin`
pub async fn pin(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.scheduler.pin_agent(key(&caller, &id)?, true).await.map_err(op_error)?;
    Ok(Json(agent_json(&info, &kv_type(&state))))
}

/// `POST /v1/agents/{id}/unpin`
pub async fn unpin(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let info = state.scheduler.pin_agent(key(&caller, &id)?, false).await.map_err(op_error)?;
    Ok(Json(agent_json(&info, &kv_type(&state))))
}

/// `GET /admin/status`
pub async fn status(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    let s = state.scheduler.stats();
    let m = state.scheduler.memory_stats();
    let uptime = state.started.elapsed().unwrap_or(Duration::ZERO).as_secs();
    Json(json!({
        "model": state.options.model_name,
        "fingerprint": state.scheduler.facts().fingerprint.to_hex(),
        "started": state.started.duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
        "uptime_seconds": uptime,
        "draining": s.draining,
        "scheduler": {"running": s.running, "queued": s.queued, "queue_capacity": s.queue_capacity,
                      "kv_reserved": s.kv_reserved, "kv_capacity": s.kv_capacity, "steps": s.steps},
        "agents": {"hot": m.hot, "warm": m.warm, "cold": m.cold, "warm_bytes": m.warm_bytes, "disk_bytes": m.disk_bytes},
    }))
}

/// `DELETE /admin/caches`: every agent of every namespace (agents with a running request are kept).
pub async fn clear(State(state): State<AppState>, _admin: Admin) -> Json<Value> {
    let deleted = state.scheduler.clear_agents(None).await;
    Json(json!({"deleted": deleted}))
}

/// `POST /admin/flush`: persist every dirty agent now.
pub async fn flush(State(state): State<AppState>, _admin: Admin) -> Response {
    let report = state.scheduler.flush_agents().await;
    let status = if report.still_dirty == 0 { StatusCode::OK } else { StatusCode::INTERNAL_SERVER_ERROR };
    (status, Json(json!({"flushed": report.still_dirty == 0, "still_dirty": report.still_dirty}))).into_response()
}

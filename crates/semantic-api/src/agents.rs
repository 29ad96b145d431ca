//! Agents API (`/v1/agents…`, scoped to the caller's namespace) and admin API (`/admin/…`).

use std::time::{Duration, UNIX_EPOCH};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_memory::{AgentId, AgentInfo, AgentKey};
use semantic_scheduler::{AgentOpError, AgentSnapshot};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{Admin, Caller};
use crate::error::{ApiError, ErrorKind};
use crate::extract::{bytes_rejection, ApiPath, ApiQuery};
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
        AgentOpError::Exists => ApiError::new(ErrorKind::Conflict, err.to_string()).with_code("agent_exists"),
        AgentOpError::Incompatible { .. } => {
            ApiError::new(ErrorKind::InvalidRequest, err.to_string()).with_code("incompatible_agent_file")
        }
        AgentOpError::Persist { .. } | AgentOpError::Unreadable { .. } => {
            ApiError::new(ErrorKind::Internal, err.to_string())
        }
    }
}

/// `GET /v1/agents`: the caller's agents, newest first, and the server's memory budgets (the same for
/// every caller: they size the tiers the agents share).
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let mut agents = state.scheduler.list_agents(caller.namespace.clone()).await;
    agents.sort_by_key(|a| std::cmp::Reverse(a.last_used_ms));
    let kv = kv_type(&state);
    let (warm_bytes, disk_bytes) = state.scheduler.memory_budgets();
    let budgets = json!({
        "hot_agents": state.scheduler.context().n_seq_max,
        "warm_bytes": warm_bytes,
        "disk_bytes": disk_bytes,
    });
    let model = &state.options.model_name;
    let mut data: Vec<Value> = agents
        .iter()
        .map(|a| {
            let mut agent = agent_json(a, &kv);
            agent["model"] = json!(model);
            agent["model_loaded"] = json!(true);
            agent
        })
        .collect();
    data.extend(other_models_agents(&state, caller.namespace).await);
    Json(json!({"object": "list", "data": data, "budgets": budgets, "model": model}))
}

/// The caller's agents that other models made (stored on disk; listed, not served), newest first.
async fn other_models_agents(state: &AppState, namespace: semantic_memory::Namespace) -> Vec<Value> {
    let Some(host) = state.slot.upgrade().and_then(|slot| slot.host()) else { return Vec::new() };
    let serving = state.scheduler.facts().fingerprint.0;
    let mut stored =
        tokio::task::spawn_blocking(move || host.stored_agents(&namespace, &serving)).await.unwrap_or_default();
    stored.sort_by_key(|a| std::cmp::Reverse(a.header.updated_ms));
    stored
        .iter()
        .map(|a| {
            json!({
                "id": a.header.agent.as_str(),
                "object": "agent",
                "tier": "cold",
                "tokens": a.header.tokens.len(),
                "bytes": a.file_bytes,
                "file_bytes": a.file_bytes,
                "last_used": a.header.updated_ms / 1000,
                "updated": a.header.updated_ms / 1000,
                "pinned": a.header.pinned,
                "dirty": false,
                "kv_type": null,
                "model": a.model,
                "model_loaded": false,
            })
        })
        .collect()
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

/// Largest agent file `PUT /v1/agents/{id}/import` takes (above `--max-body-bytes`, which sizes
/// JSON bodies): a full 8K-token agent of a small model is a few hundred MB.
pub(crate) const IMPORT_MAX_BYTES: usize = 1 << 30;

/// `GET /v1/agents/{id}/export`: the agent's file, as `semantic agents export` writes it
/// (plaintext, verified on import), from whichever tier holds it; the tier does not change.
pub async fn export(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let snapshot = state.scheduler.export_agent(key(&caller, &id)?).await.map_err(op_error)?;
    let encoded = tokio::task::spawn_blocking(move || semantic_memory::encode(&snapshot.header, &snapshot.payload))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encoding the agent failed: {e}")))?
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("encoding the agent failed: {e}")))?;
    // The id was validated by `key`: visible ASCII without quotes or separators.
    let disposition = format!("attachment; filename=\"{id}.skv\"");
    let headers =
        [(header::CONTENT_TYPE, "application/octet-stream".to_owned()), (header::CONTENT_DISPOSITION, disposition)];
    Ok((headers, encoded).into_response())
}

/// `PUT /v1/agents/{id}/import` query.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImportQuery {
    /// Overwrite an agent of that name (else 409 `agent_exists`).
    #[serde(default)]
    replace: bool,
}

/// `PUT` (or `POST`) `/v1/agents/{id}/import`: an exported agent file as the body; it becomes agent `id` of
/// the caller (whatever names the file holds), warm, and is written to disk like any turn. The
/// file must come from the serving model with the same KV layout.
pub async fn import(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ImportQuery>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<Value>, ApiError> {
    let key = key(&caller, &id)?;
    let body = body.map_err(bytes_rejection)?;
    let decoded = tokio::task::spawn_blocking(move || semantic_memory::decode(&body, std::path::Path::new("upload")))
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("decoding the upload failed: {e}")))?;
    let (mut header, payload) = decoded.map_err(|e| {
        ApiError::new(ErrorKind::InvalidRequest, format!("not a valid agent file: {e}")).with_code("invalid_agent_file")
    })?;
    (header.namespace, header.agent) = (key.namespace, key.agent);
    let info =
        state.scheduler.import_agent(AgentSnapshot { header, payload }, query.replace).await.map_err(op_error)?;
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

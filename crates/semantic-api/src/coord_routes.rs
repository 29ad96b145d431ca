//! The `/v1/coordination/…` handlers: create, list, get and delete sessions; turns and rounds
//! (JSON and SSE); whispers; transcripts and the next prompt of an agent; votes, decisions; and
//! deleting permanent memory by prefix. Sessions belong to the caller's namespace (API key):
//! another key's session is a 404.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{Stream, StreamExt};
use semantic_coord::{check_id, Lifecycle, Session};
use semantic_scheduler::{AgentId, AgentKey, AgentOpError, Namespace};
use serde_json::{json, Value};
use tokio::sync::mpsc;

use crate::auth::Caller;
use crate::coord_wire::*;
use crate::coordination::{coord_error, run, Event, Run, Slot};
use crate::error::{ApiError, OpenAiErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery, OptionalJson};
use crate::generation::{now_secs, random_id};
use crate::AppState;

/// `POST /v1/coordination/sessions`.
#[utoipa::path(post, path = "/v1/coordination/sessions", tag = "coordination", request_body = CreateSessionRequest,
    responses(
        (status = 201, description = "the new session", body = SessionStatusDoc),
        (status = 400, description = "an invalid field (named in `param`)", body = OpenAiErrorBody),
    ))]
pub async fn create(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<CreateSessionRequest>,
) -> Result<Response, ApiError> {
    let spec = req.into_spec().map_err(coord_error)?;
    let ns = caller.namespace.as_str().to_owned();
    let id = random_id("sess_");
    let coord = &state.coord;
    let lookup = |memory_id: &str| coord.history(&ns, memory_id);
    let session = Session::new(id, ns.clone(), spec, now_secs(), &lookup).map_err(coord_error)?;
    let body = session_json(&session);
    state.coord.insert(session)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/coordination/sessions`.
#[utoipa::path(get, path = "/v1/coordination/sessions", tag = "coordination",
    responses((status = 200, description = "`{\"sessions\": [...]}`, the caller's sessions, oldest first", body = Vec<SessionStatusDoc>)))]
pub async fn list(State(state): State<AppState>, caller: Caller) -> Json<Value> {
    let sessions: Vec<Value> = state.coord.list(&caller.namespace).iter().map(|s| session_json(&s.lock())).collect();
    Json(json!({"object": "list", "sessions": sessions}))
}

/// `GET /v1/coordination/sessions/{id}`.
#[utoipa::path(get, path = "/v1/coordination/sessions/{id}", tag = "coordination",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, description = "the session", body = SessionStatusDoc),
        (status = 404, description = "no such session (or another key's)", body = OpenAiErrorBody)))]
pub async fn get(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let body = session_json(&slot.lock());
    Ok(Json(body))
}

/// `DELETE /v1/coordination/sessions/{id}`: the session and its ephemeral agents' memory;
/// permanent agents' memory is kept.
#[utoipa::path(delete, path = "/v1/coordination/sessions/{id}", tag = "coordination",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, description = "deleted; lists the memory ids deleted and kept"),
        (status = 404, description = "no such session", body = OpenAiErrorBody),
        (status = 409, description = "a turn is running", body = OpenAiErrorBody)))]
pub async fn delete(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let _busy = slot.acquire()?;
    let (ephemeral, kept): (Vec<_>, Vec<_>) = {
        let s = slot.lock();
        s.spec
            .agents
            .iter()
            .zip(&s.views)
            .map(|(a, v)| (a.lifecycle, v.memory_id.clone()))
            .partition(|(l, _)| *l == Lifecycle::Ephemeral)
    };
    state.coord.remove(&caller.namespace, &id)?;
    let mut deleted = Vec::new();
    for (_, memory_id) in ephemeral {
        if delete_memory(&state, &caller.namespace, &memory_id).await? {
            deleted.push(memory_id);
        }
    }
    let kept: Vec<String> = kept.into_iter().map(|(_, m)| m).collect();
    Ok(Json(json!({"session_id": id, "object": "coordination.session", "deleted": true,
        "deleted_memory": deleted, "kept_memory": kept})))
}

/// Deletes one agent's memory; false when it had none.
pub(crate) async fn delete_memory(state: &AppState, ns: &Namespace, memory_id: &str) -> Result<bool, ApiError> {
    let Ok(agent) = AgentId::parse(memory_id) else { return Ok(false) };
    let key = AgentKey::new(ns.clone(), agent);
    state.prompter.forget(&key);
    match state.scheduler.delete_agent(key).await {
        Ok(()) => Ok(true),
        Err(AgentOpError::NotFound) => Ok(false),
        Err(err) => Err(ApiError::new(crate::error::ErrorKind::Conflict, err.to_string())),
    }
}

/// `DELETE /v1/coordination/caches/{prefix}`: every permanent agent named under the prefix
/// (`persist_{prefix}_…`): its memory and its stored history.
#[utoipa::path(delete, path = "/v1/coordination/caches/{prefix}", tag = "coordination",
    params(("prefix" = String, Path, description = "a session's persistent_cache_prefix")),
    responses((status = 200, description = "the memory ids deleted"),
        (status = 400, description = "invalid prefix", body = OpenAiErrorBody)))]
pub async fn delete_caches(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(prefix): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    check_id("prefix", &prefix, semantic_coord::MAX_PREFIX_CHARS).map_err(coord_error)?;
    let start = format!("persist_{prefix}_");
    let mut deleted = state.coord.forget_histories(&caller.namespace, &start)?;
    let agents = state.scheduler.list_agents(caller.namespace.clone()).await;
    for info in agents.iter().filter(|a| a.key.agent.as_str().starts_with(&start)) {
        if delete_memory(&state, &caller.namespace, info.key.agent.as_str()).await? {
            deleted.push(info.key.agent.as_str().to_owned());
        }
    }
    deleted.sort();
    deleted.dedup();
    Ok(Json(json!({"prefix": prefix, "deleted": deleted})))
}

/// `POST /v1/coordination/sessions/{id}/turn`.
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/turn", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body(content = TurnRequest, description = "optional"),
    responses((status = 200, description = "the turn, with the speaker's usage", body = TurnDoc),
        (status = 400, description = "invalid speaker, or the prompt is over the agent's context", body = OpenAiErrorBody),
        (status = 404, description = "no such session", body = OpenAiErrorBody),
        (status = 409, description = "the session is finished, or a turn is running", body = OpenAiErrorBody),
        (status = 503, description = "cut by a shutdown: not recorded", body = OpenAiErrorBody)))]
pub async fn turn(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<TurnRequest>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let mut done = run(&state, &slot, &caller.namespace, Run::Turn(req.agent_id), None).await?;
    Ok(Json(done.pop().unwrap_or(Value::Null)))
}

/// `POST /v1/coordination/sessions/{id}/round`: one turn per speaking agent (broadcast: all at
/// once).
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/round", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body(content = RoundRequest, description = "optional"),
    responses((status = 200, description = "`{turns: [...]}`, each turn with its usage"),
        (status = 404, description = "no such session", body = OpenAiErrorBody),
        (status = 409, description = "the session is finished, or a turn is running", body = OpenAiErrorBody)))]
pub async fn round(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<RoundRequest>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let turns = run(&state, &slot, &caller.namespace, Run::Round(req.turns), None).await?;
    Ok(Json(round_json(&slot, turns)))
}

fn round_json(slot: &Slot, turns: Vec<Value>) -> Value {
    let s = slot.lock();
    json!({"object": "coordination.round", "session_id": s.id, "turns": turns, "session_status": s.status()})
}

/// `POST /v1/coordination/sessions/{id}/turn/stream`: SSE `turn_start`, `token`, `turn_complete`
/// (or `error`).
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/turn/stream", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body(content = TurnRequest, description = "optional"),
    responses((status = 200, description = "SSE events turn_start, token, turn_complete, error", content_type = "text/event-stream"),
        (status = 404, description = "no such session", body = OpenAiErrorBody)))]
pub async fn turn_stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<TurnRequest>,
) -> Result<Response, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    Ok(stream(state, slot, caller, Run::Turn(req.agent_id)).into_response())
}

/// `POST /v1/coordination/sessions/{id}/round/stream`: SSE per turn as above, then
/// `round_complete`.
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/round/stream", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body(content = RoundRequest, description = "optional"),
    responses((status = 200, description = "SSE events turn_start, token, turn_complete per turn, then round_complete; error", content_type = "text/event-stream"),
        (status = 404, description = "no such session", body = OpenAiErrorBody)))]
pub async fn round_stream(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<RoundRequest>,
) -> Result<Response, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    Ok(stream(state, slot, caller, Run::Round(req.turns)).into_response())
}

/// Runs turns on a task that feeds the SSE body; a client that goes away cancels the turn in
/// progress (not recorded).
fn stream(
    state: AppState,
    slot: std::sync::Arc<Slot>,
    caller: Caller,
    what: Run,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let (tx, rx) = mpsc::channel::<Event>(64);
    tokio::spawn(async move {
        let round = matches!(what, Run::Round(_));
        match run(&state, &slot, &caller.namespace, what, Some(&tx)).await {
            Ok(turns) if round => {
                let _ = tx.send(("round_complete", round_json(&slot, turns))).await;
            }
            Ok(_) => {}
            Err(error) => {
                let _ = tx.send(("error", error.body())).await;
            }
        }
    });
    let events = tokio_stream(rx).map(|(name, data)| Ok(SseEvent::default().event(name).data(data.to_string())));
    Sse::new(events).keep_alive(KeepAlive::default())
}

fn tokio_stream(rx: mpsc::Receiver<Event>) -> impl Stream<Item = Event> {
    futures_util::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
}

/// `POST /v1/coordination/sessions/{id}/whisper`.
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/whisper", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body = WhisperRequest,
    responses((status = 200, description = "the whisper; it enters the two agents' next prompts only"),
        (status = 400, description = "unknown agent or empty content", body = OpenAiErrorBody),
        (status = 404, description = "no such session", body = OpenAiErrorBody)))]
pub async fn whisper(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<WhisperRequest>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let mut s = slot.lock();
    let message = s.whisper(&req.from_agent_id, &req.to_agent_id, &req.content, now_secs()).map_err(coord_error)?;
    let body = message_json(message);
    state.coord.save(&slot, s)?;
    Ok(Json(body))
}

/// `GET /v1/coordination/sessions/{id}/messages[?agent_id=A]`.
#[utoipa::path(get, path = "/v1/coordination/sessions/{id}/messages", tag = "coordination",
    params(("id" = String, Path, description = "session id"),
        ("agent_id" = Option<String>, Query, description = "only what this agent can see, whispers included")),
    responses((status = 200, description = "`{messages: [...]}`: public messages, or one agent's view"),
        (status = 404, description = "no such session or agent", body = OpenAiErrorBody)))]
pub async fn messages(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<MessagesQuery>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let s = slot.lock();
    let list: Vec<Value> =
        s.transcript(q.agent_id.as_deref()).map_err(coord_error)?.into_iter().map(message_json).collect();
    Ok(Json(json!({"object": "list", "session_id": id, "agent_id": q.agent_id, "messages": list})))
}

/// `GET /v1/coordination/sessions/{id}/prompt/{agent_id}`: the exact chat messages the agent
/// would be given on its next turn.
#[utoipa::path(get, path = "/v1/coordination/sessions/{id}/prompt/{agent_id}", tag = "coordination",
    params(("id" = String, Path, description = "session id"), ("agent_id" = String, Path, description = "agent id")),
    responses((status = 200, description = "`{messages: [{role, content}]}`, the agent's memory id and \
        `reply_prefix`: the text its reply is prefilled with, after the template's generation prompt"),
        (status = 404, description = "no such session or agent", body = OpenAiErrorBody)))]
pub async fn prompt(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath((id, agent_id)): ApiPath<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let mut plan = slot.lock().next_plan(&agent_id).map_err(coord_error)?;
    crate::coordination::fit_reply_prefix(&state, &mut plan);
    Ok(Json(json!({"session_id": id, "agent_id": agent_id, "memory_id": plan.memory_id, "messages": plan.messages,
        "reply_prefix": plan.reply_prefix})))
}

/// `POST /v1/coordination/sessions/{id}/vote`: stored as the agent's latest vote, checked
/// against the session's agents and options.
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/vote", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body = VoteRequest,
    responses((status = 200, description = "the vote as stored (choice spelled as the option is)"),
        (status = 400, description = "no choice or ranking, or not among the options", body = OpenAiErrorBody),
        (status = 404, description = "no such session or agent", body = OpenAiErrorBody)))]
pub async fn vote(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiJson(req): ApiJson<VoteRequest>,
) -> Result<Json<Value>, ApiError> {
    use semantic_coord::decision::{Vote, VoteSource};
    let slot = state.coord.get(&caller.namespace, &id)?;
    let mut s = slot.lock();
    let vote = Vote {
        agent_id: req.agent_id,
        choice: req.choice,
        ranking: req.ranking.unwrap_or_default(),
        source: VoteSource::Api,
    };
    let stored = s.vote(&vote).map_err(coord_error)?;
    let body = json!({"object": "coordination.vote", "session_id": id, "vote": stored, "votes_cast": s.votes.len()});
    state.coord.save(&slot, s)?;
    Ok(Json(body))
}

/// `POST /v1/coordination/sessions/{id}/decide`: every voting agent is asked to choose among the
/// options; answers are parsed into votes and the decision is computed.
#[utoipa::path(post, path = "/v1/coordination/sessions/{id}/decide", tag = "coordination",
    params(("id" = String, Path, description = "session id")), request_body(content = DecideRequest, description = "optional"),
    responses((status = 200, description = "each agent's answer and parsed vote, and the decision"),
        (status = 400, description = "fewer than two options", body = OpenAiErrorBody),
        (status = 404, description = "no such session", body = OpenAiErrorBody),
        (status = 409, description = "a turn is running", body = OpenAiErrorBody)))]
pub async fn decide(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    OptionalJson(req): OptionalJson<DecideRequest>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    Ok(Json(crate::coordination::decide(&state, &slot, &caller.namespace, req.options, req.question).await?))
}

/// `GET /v1/coordination/sessions/{id}/decision`: the result under the session's decision mode.
#[utoipa::path(get, path = "/v1/coordination/sessions/{id}/decision", tag = "coordination",
    params(("id" = String, Path, description = "session id")),
    responses((status = 200, description = "mode, status (decided, tie, no_decision, no_votes, not_applicable), outcome, tied, tally, runoff rounds, explanation"),
        (status = 404, description = "no such session", body = OpenAiErrorBody)))]
pub async fn decision(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let slot = state.coord.get(&caller.namespace, &id)?;
    let s = slot.lock();
    Ok(Json(json!({"object": "coordination.decision", "session_id": id, "options": s.ballot,
        "votes": s.votes, "decision": s.decision()})))
}

//! The `/v1/scenarios/…` handlers: validate a scenario, start a run, list runs, a run's status,
//! its SSE events (the log so far, then live), its transcript (JSON or Markdown) and cancelling
//! it. Runs belong to the caller's namespace.

use std::convert::Infallible;

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::Json;
use futures_util::stream::{self, Stream, StreamExt};
use semantic_coord::scenario;
use serde::Deserialize;
use serde_json::{json, Value};
use tokio::sync::broadcast;
use utoipa::ToSchema;

use crate::auth::Caller;
use crate::error::{ApiError, OpenAiErrorBody};
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::scenario_runs::{self as runs, RunEvent, StartRunRequest};
use crate::AppState;

/// `POST /v1/scenarios/validate`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ValidateRequest {
    /// The scenario file's text (YAML).
    pub yaml: String,
}

/// `?format=markdown` for the transcript.
#[derive(Debug, Default, Deserialize)]
pub struct TranscriptQuery {
    /// `json` (default) or `markdown`.
    pub format: Option<String>,
}

/// `POST /v1/scenarios/validate`: every issue with its line, column and field path.
#[utoipa::path(post, path = "/v1/scenarios/validate", tag = "scenarios", request_body = ValidateRequest,
    responses((status = 200, description = "`{valid, issues: [{line, column, path, message}], scenario}`")))]
pub async fn validate(ApiJson(req): ApiJson<ValidateRequest>) -> Json<Value> {
    match scenario::parse(&req.yaml) {
        Ok(s) => Json(json!({"valid": true, "issues": [], "scenario": s})),
        Err(issues) => Json(json!({"valid": false, "issues": issues.iter().map(|i| json!({
            "line": i.line, "column": i.column, "path": i.path, "message": i.message,
        })).collect::<Vec<_>>(), "scenario": null})),
    }
}

/// `POST /v1/scenarios/runs`: starts running every phase in order (or, with `step`, the first).
#[utoipa::path(post, path = "/v1/scenarios/runs", tag = "scenarios", request_body = StartRunRequest,
    responses((status = 201, description = "the run, running"),
        (status = 400, description = "the scenario is invalid (every issue with its line)", body = OpenAiErrorBody),
        (status = 429, description = "too many runs running (Retry-After)", body = OpenAiErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    caller: Caller,
    ApiJson(req): ApiJson<StartRunRequest>,
) -> Result<Response, ApiError> {
    let body = runs::start(&state, &caller.namespace, req)?;
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /v1/scenarios/runs/{id}`.
#[utoipa::path(get, path = "/v1/scenarios/runs/{id}", tag = "scenarios", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "status: running, paused, completed, failed, cancelled or interrupted \
        (the server stopped during the run); phases and turns so far"),
        (status = 404, description = "no such run", body = OpenAiErrorBody)))]
pub async fn status(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.runs.get(&state.coord, &caller.namespace, &id)?;
    Ok(Json(runs::with(&record, runs::status_json)))
}

/// `DELETE /v1/scenarios/runs/{id}`: cancels a running or paused run.
#[utoipa::path(delete, path = "/v1/scenarios/runs/{id}", tag = "scenarios", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "the run, cancelled (or as it ended)"),
        (status = 404, description = "no such run", body = OpenAiErrorBody)))]
pub async fn cancel(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.runs.get(&state.coord, &caller.namespace, &id)?;
    Ok(Json(runs::cancel(&record)))
}

/// `POST /v1/scenarios/runs/{id}/next`: runs the next phase of a paused step run, or resumes an
/// interrupted run (its cut phase goes on in the same session).
#[utoipa::path(post, path = "/v1/scenarios/runs/{id}/next", tag = "scenarios", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "the run, running its next phase"),
        (status = 404, description = "no such run", body = OpenAiErrorBody),
        (status = 409, description = "the run is neither paused nor interrupted (`run_not_paused`)",
            body = OpenAiErrorBody),
        (status = 429, description = "too many runs running (Retry-After)", body = OpenAiErrorBody)))]
pub async fn next(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Value>, ApiError> {
    let record = state.runs.get(&state.coord, &caller.namespace, &id)?;
    Ok(Json(runs::next(&state, &caller.namespace, &record)?))
}

/// `GET /v1/scenarios/runs/{id}/transcript[?format=markdown]`.
#[utoipa::path(get, path = "/v1/scenarios/runs/{id}/transcript", tag = "scenarios",
    params(("id" = String, Path, description = "run id"), ("format" = Option<String>, Query, description = "json (default) or markdown")),
    responses((status = 200, description = "phases with messages and turns (usage), decisions, outcome per agent, payoff, memory totals"),
        (status = 404, description = "no such run", body = OpenAiErrorBody)))]
pub async fn transcript(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
    ApiQuery(q): ApiQuery<TranscriptQuery>,
) -> Result<Response, ApiError> {
    let record = state.runs.get(&state.coord, &caller.namespace, &id)?;
    let t = runs::with(&record, runs::transcript_json);
    match q.format.as_deref() {
        None | Some("json") => Ok(Json(t).into_response()),
        Some("markdown" | "md") => {
            Ok(([(header::CONTENT_TYPE, "text/markdown; charset=utf-8")], runs::transcript_markdown(&t))
                .into_response())
        }
        Some(other) => Err(ApiError::invalid("format", format!("unknown format {other:?} (json or markdown)"))),
    }
}

/// `GET /v1/scenarios/runs/{id}/events`: SSE `phase_start`, `turn_start`, `turn_complete`,
/// `decision`, `phase_complete`, then `run_complete`, `run_paused` (a step run between phases;
/// `run_resumed` follows `…/next`) or `error`; a late subscriber gets the log so far first, and
/// the stream ends with the run or its pause.
#[utoipa::path(get, path = "/v1/scenarios/runs/{id}/events", tag = "scenarios", params(("id" = String, Path, description = "run id")),
    responses((status = 200, description = "SSE events", content_type = "text/event-stream"),
        (status = 404, description = "no such run", body = OpenAiErrorBody)))]
pub async fn events(
    State(state): State<AppState>,
    caller: Caller,
    ApiPath(id): ApiPath<String>,
) -> Result<Response, ApiError> {
    let record = state.runs.get(&state.coord, &caller.namespace, &id)?;
    let (past, live, ended) = runs::subscribe(&record);
    Ok(sse(past, live, ended).into_response())
}

fn sse(
    past: Vec<RunEvent>,
    live: broadcast::Receiver<RunEvent>,
    ended: bool,
) -> Sse<impl Stream<Item = Result<SseEvent, Infallible>>> {
    let is_end = |name: &str| matches!(name, "run_complete" | "run_paused" | "error");
    let finished = ended || past.last().is_some_and(|(n, _)| is_end(n));
    let live = stream::unfold((live, finished), move |(mut rx, done)| async move {
        if done {
            return None;
        }
        loop {
            match rx.recv().await {
                Ok((name, data)) => {
                    let end = is_end(&name);
                    return Some(((name, data), (rx, end)));
                }
                Err(broadcast::error::RecvError::Lagged(_)) => continue,
                Err(broadcast::error::RecvError::Closed) => return None,
            }
        }
    });
    let events =
        stream::iter(past).chain(live).map(|(name, data)| Ok(SseEvent::default().event(name).data(data.to_string())));
    Sse::new(events).keep_alive(KeepAlive::default())
}

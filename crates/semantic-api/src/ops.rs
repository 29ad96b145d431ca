//! The middleware stack (one function builds it): request ids on every response, one log line and
//! HTTP metrics per request. Auth is enforced by the `Caller`/`Admin` extractors, so 401s pass
//! through here too and get ids and metrics.

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::Next;
use axum::response::Response;
use axum::Router;
use tracing::Instrument;

use crate::AppState;

/// Wraps the router with the whole middleware stack.
pub fn stack(router: Router<AppState>, state: AppState) -> Router {
    router.layer(axum::middleware::from_fn_with_state(state.clone(), track)).with_state(state)
}

fn new_request_id() -> String {
    format!("req_{:016x}{:08x}", rand::random::<u64>(), rand::random::<u32>())
}

async fn track(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(new_request_id);
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", |p| p.as_str()).to_string();
    let method = request.method().clone();
    let agent = request
        .headers()
        .get("x-agent-id")
        .or_else(|| request.headers().get("x-session-id"))
        .and_then(|v| v.to_str().ok())
        .map(|s| s.chars().take(128).collect::<String>());
    let span = tracing::info_span!("request", request_id = %id, route = %route);
    let mut response = next.run(request).instrument(span).await;
    let status = response.status().as_u16();
    let elapsed = started.elapsed();
    state.metrics.record(&route, status, elapsed);
    if let Ok(value) = HeaderValue::from_str(&id) {
        response.headers_mut().insert("x-request-id", value);
    }
    tracing::info!(
        request_id = %id,
        method = %method,
        route = %route,
        status,
        agent = agent.as_deref().unwrap_or("-"),
        ms = elapsed.as_secs_f64() * 1e3,
        "request"
    );
    response
}

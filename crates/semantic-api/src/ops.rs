//! The middleware stack (one function builds it, for the loading app and the real one alike):
//! request ids on every response, one log line and HTTP metrics per request, CORS, rate limits and
//! the body size limit and deadline. Auth is enforced by the `Caller`/`Admin` extractors, so 401s pass through
//! here too and get ids and metrics.
//!
//! Request ids and the request span stay in `track` rather than tower-http's
//! `SetRequestIdLayer`/`PropagateRequestIdLayer`/`TraceLayer`: `SetRequestIdLayer` keeps any
//! client-sent `x-request-id` as it is (we accept only 1-128 visible ASCII characters, else make
//! our own), and the one log line, the span and the HTTP metrics all need the id, the matched route
//! template and the agent together, which the three layers would each re-derive.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::{DefaultBodyLimit, MatchedPath, Request, State};
use axum::http::HeaderValue;
use axum::middleware::{from_fn_with_state, Next};
use axum::response::{IntoResponse, Response};
use axum::Router;
use tracing::Instrument;

use crate::auth::{flavor_of, presented_key, AuthConfig};
use crate::cors::{self, Cors};
use crate::error::{ApiError, ErrorKind};
use crate::metrics::HttpMetrics;
use crate::rate_limit::{RateLimiter, Scope, ANONYMOUS};
use crate::ServeOptions;

/// What the middleware shares: built once per server from its options, before the model loads,
/// so the loading app and the real router count into the same metrics and buckets.
#[derive(Clone)]
pub(crate) struct Ops {
    pub metrics: Arc<HttpMetrics>,
    auth: Arc<AuthConfig>,
    limiter: Arc<RateLimiter>,
    cors: Option<Cors>,
    max_body_bytes: usize,
    body_timeout: std::time::Duration,
}

impl Ops {
    pub fn new(options: &ServeOptions) -> Self {
        Self {
            metrics: Arc::default(),
            auth: Arc::new(options.auth.clone()),
            limiter: Arc::new(RateLimiter::new(options.rate_limit)),
            cors: Cors::new(&options.cors_origins),
            max_body_bytes: options.max_body_bytes,
            body_timeout: options.body_timeout,
        }
    }
}

/// Wraps a router (state already applied) with the whole middleware stack. Outermost first:
/// request id, log and metrics; CORS (a preflight is answered here, before any key is needed);
/// rate limits; the body size limit (enforced where the body is read, as a 413 in the route's
/// error shape by the JSON extractors).
pub(crate) fn stack(router: Router, ops: &Ops) -> Router {
    let limit = ops.body_timeout;
    let mut router = router.layer(DefaultBodyLimit::max(ops.max_body_bytes)).layer(axum::middleware::map_request(
        move |request: Request| async move { request.map(|body| crate::body_deadline::with_deadline(body, limit)) },
    ));
    if ops.limiter.is_enabled() {
        router = router.layer(from_fn_with_state(ops.clone(), rate_limit));
    }
    if let Some(policy) = &ops.cors {
        router = router.layer(from_fn_with_state(policy.clone(), cors::middleware));
    }
    router.layer(from_fn_with_state(ops.clone(), track))
}

async fn track(State(ops): State<Ops>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let id = request
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| crate::generation::random_id("req_"));
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
    ops.metrics.record(&route, status, elapsed);
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

/// Probes and metrics are never limited: an orchestrator must see a busy server as alive. Nor is
/// the web page's static files (no data, a dozen files per load); its API calls are.
fn exempt(path: &str) -> bool {
    path == "/health" || path.starts_with("/health/") || path == "/metrics" || crate::ui::is_ui_path(path)
}

/// The bucket a request draws from: its API key's namespace when keys are configured and it
/// presents a valid one; otherwise the one bucket all unauthenticated callers share, so random
/// keys make no new buckets.
fn bucket_key(auth: &AuthConfig, request: &Request) -> String {
    if !auth.enabled() {
        return ANONYMOUS.to_owned();
    }
    match auth.namespace_for(presented_key(request.headers())) {
        Some(namespace) => namespace.as_str().to_owned(),
        None => ANONYMOUS.to_owned(),
    }
}

async fn rate_limit(State(ops): State<Ops>, request: Request, next: Next) -> Response {
    let path = request.uri().path();
    if exempt(path) {
        return next.run(request).await;
    }
    let key = bucket_key(&ops.auth, &request);
    match ops.limiter.check(&key, Instant::now()) {
        Ok(()) => next.run(request).await,
        Err(limited) => {
            ops.metrics.rate_limited();
            let message = match limited.scope {
                Scope::Caller => "rate limit exceeded for this API key; retry after the Retry-After delay",
                Scope::Global => "the server's request rate limit is exceeded; retry after the Retry-After delay",
            };
            tracing::debug!(bucket = %key, scope = ?limited.scope, "rate limited");
            let error = ApiError {
                retry_after: Some(limited.retry_after_secs()),
                ..ApiError::new(ErrorKind::RateLimited, message).with_code("rate_limit_exceeded")
            };
            error.in_flavor(flavor_of(path)).into_response()
        }
    }
}

//! Serving while the model loads: [`Startup`] answers from a small loading app until
//! [`Startup::ready`] installs the real router. While loading: `/health/live` 200;
//! `/health/startup`, `/health/ready` and `/health` 503 `{"status":"loading","reason":"loading"}`;
//! the web page (`ui.rs`) as when ready; every other route 503 + `Retry-After` in its API's
//! error shape. Both apps get the same middleware stack (`ops::stack`) and share its metrics and
//! rate-limit buckets. Does not own loading the model (the binary does, on its own thread).

use std::sync::{Arc, OnceLock};

use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use semantic_chat::ChatTemplate;
use semantic_scheduler::Scheduler;
use serde_json::json;
use tower::ServiceExt;

use crate::auth::flavor_of;
use crate::error::{ApiError, ErrorKind};
use crate::ops::{self, Ops};
use crate::{AppState, ServeOptions};

/// Seconds a client is told to wait while the model loads.
const LOADING_RETRY_AFTER: u64 = 5;

/// The app of one server from before its model is loaded on.
pub struct Startup {
    options: ServeOptions,
    ops: Ops,
    loading: Router,
    ready: Arc<OnceLock<Router>>,
}

impl Startup {
    /// A server that is loading its model, with the middleware `options` configure.
    pub fn new(options: ServeOptions) -> Self {
        let ops = Ops::new(&options);
        let loading = Router::new()
            .route("/health/live", get(crate::health::live))
            .route("/health/startup", get(loading_probe))
            .route("/health/ready", get(loading_probe))
            .route("/health", get(loading_probe))
            .merge(crate::ui::router())
            .fallback(loading_error);
        let loading = ops::stack(loading, &ops);
        Self { options, ops, loading, ready: Arc::default() }
    }

    /// What to serve: the loading app until [`Startup::ready`], then the real router.
    pub fn router(&self) -> Router {
        let loading = self.loading.clone();
        let ready = Arc::clone(&self.ready);
        Router::new().fallback(move |request: Request| {
            let app = ready.get().unwrap_or(&loading).clone();
            async move { app.oneshot(request).await }
        })
    }

    /// The model is loaded: from now on requests go to the real router over `scheduler`. An
    /// empty `model_name` in the options becomes the model's own name. Only the first call counts.
    pub fn ready(&self, scheduler: Scheduler, template: ChatTemplate) {
        let state = AppState::with_ops(scheduler, template, self.options.clone(), self.ops.clone());
        if self.ready.set(crate::router(state)).is_err() {
            tracing::warn!("the model was reported loaded twice; keeping the first");
        }
    }

    /// True once [`Startup::ready`] ran.
    pub fn is_ready(&self) -> bool {
        self.ready.get().is_some()
    }
}

async fn loading_probe() -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, LOADING_RETRY_AFTER.to_string())],
        Json(json!({"status": "loading", "reason": "loading"})),
    )
        .into_response()
}

async fn loading_error(uri: Uri) -> ApiError {
    let error = ApiError::new(ErrorKind::Unavailable, "the model is still loading; retry after the Retry-After delay")
        .with_code("loading");
    ApiError { retry_after: Some(LOADING_RETRY_AFTER), ..error }.in_flavor(flavor_of(uri.path()))
}

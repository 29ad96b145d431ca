//! Serving around the model's life: [`Startup`] answers from a small app while no model serves
//! (loading the first one, swapping, offloaded) and from the real router once one does. While no
//! model serves: `/health/live` 200; `/health/ready` and `/health` 503 with the phase as status
//! and reason (`loading`, `swapping`, `offloaded`); `/health/startup` 503 `loading` until the
//! first model loaded, 200 after; the web page (`ui.rs`) as when ready; every other route 503 + `Retry-After` in its API's error shape.
//! `/admin/models/*` (`models.rs`) answers in every phase. All apps get the same middleware stack
//! (`ops::stack`) and share its metrics and rate-limit buckets. Does not own loading a model (the
//! binary does, through [`ModelHost`]).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::Request;
use axum::http::{header, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use semantic_chat::ChatTemplate;
use semantic_scheduler::{DrainReport, Scheduler};
use serde_json::json;
use tower::ServiceExt;

use crate::auth::flavor_of;
use crate::error::{ApiError, ErrorKind};
use crate::models::{ModelHost, ModelSlot, Phase};
use crate::ops::{self, Ops};
use crate::ServeOptions;

/// Seconds a client is told to wait while no model serves.
const RETRY_AFTER: u64 = 5;

/// The app of one server, from before its first model is loaded on.
pub struct Startup {
    slot: Arc<ModelSlot>,
    loading: Router,
    swapping: Router,
    offloaded: Router,
    admin: Router,
}

impl Startup {
    /// A server that is loading its model, with the middleware `options` configure. Without a
    /// `host` the model cannot be swapped or listed from a registry.
    pub fn new(options: ServeOptions, host: Option<Arc<dyn ModelHost>>) -> Self {
        let ops = Ops::new(&options);
        let slot = ModelSlot::new(options, ops.clone(), host);
        Self {
            loading: unavailable_app(&ops, Unavailable::LOADING),
            swapping: unavailable_app(&ops, Unavailable::SWAPPING),
            offloaded: unavailable_app(&ops, Unavailable::OFFLOADED),
            admin: crate::models::admin_router(&slot),
            slot,
        }
    }

    /// What to serve: the app of the current phase; `/admin/models/*` always.
    pub fn router(&self) -> Router {
        let (loading, swapping, offloaded, admin) =
            (self.loading.clone(), self.swapping.clone(), self.offloaded.clone(), self.admin.clone());
        let slot = Arc::clone(&self.slot);
        Router::new().fallback(move |request: Request| {
            let (loading, swapping, offloaded, admin) =
                (loading.clone(), swapping.clone(), offloaded.clone(), admin.clone());
            let slot = Arc::clone(&slot);
            async move {
                if request.uri().path().starts_with("/admin/models/") {
                    return admin.oneshot(request).await;
                }
                let request = match crate::on_demand::prepare(&slot, request).await {
                    Ok(request) => request,
                    Err(refused) => return Ok(refused),
                };
                let app = match slot.phase() {
                    Phase::Ready(router) => router,
                    Phase::Loading => loading,
                    Phase::Swapping => swapping,
                    Phase::Offloaded => offloaded,
                };
                app.oneshot(request).await
            }
        })
    }

    /// The first model is loaded: from now on requests go to the real router over `scheduler`,
    /// under the model id `model_id` (empty: the model's own name).
    pub fn ready(&self, model_id: String, scheduler: Scheduler, template: ChatTemplate) {
        self.slot.install(model_id, scheduler, template);
    }

    /// True while a model serves.
    pub fn is_ready(&self) -> bool {
        matches!(self.slot.phase(), Phase::Ready(_))
    }

    /// Shutdown: waits for a swap under way, drains the serving model for at most `grace`,
    /// persists its agents and ends its step thread. Returns the drain report and how many
    /// agents stayed dirty, or None when no model was loaded.
    pub async fn shutdown(&self, grace: Duration) -> Option<(DrainReport, usize)> {
        self.slot.shutdown(grace).await
    }
}

/// Why no model serves, as the probes and errors say it.
#[derive(Clone, Copy)]
struct Unavailable {
    status: &'static str,
    startup_ok: bool,
    message: &'static str,
}

impl Unavailable {
    const LOADING: Self = Self {
        status: "loading",
        startup_ok: false,
        message: "the model is still loading; retry after the Retry-After delay",
    };
    const SWAPPING: Self = Self {
        status: "swapping",
        startup_ok: true,
        message: "the server is switching models; retry after the Retry-After delay",
    };
    const OFFLOADED: Self = Self {
        status: "offloaded",
        startup_ok: true,
        message: "no model is loaded; an admin can load one with POST /admin/models/swap",
    };
}

fn unavailable_app(ops: &Ops, why: Unavailable) -> Router {
    let probe = move || async move { not_serving(why) };
    let startup = move || async move {
        if why.startup_ok {
            Json(json!({"status": "ok"})).into_response()
        } else {
            not_serving(why)
        }
    };
    let app = Router::new()
        .route("/health/live", get(crate::health::live))
        .route("/health/startup", get(startup))
        .route("/health/ready", get(probe))
        .route("/health", get(probe))
        .merge(crate::ui::router())
        .fallback(move |uri: Uri| async move { unavailable_error(uri, why) });
    ops::stack(app, ops)
}

fn not_serving(why: Unavailable) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::RETRY_AFTER, RETRY_AFTER.to_string())],
        Json(json!({"status": why.status, "reason": why.status})),
    )
        .into_response()
}

fn unavailable_error(uri: Uri, why: Unavailable) -> ApiError {
    let error = ApiError::new(ErrorKind::Unavailable, why.message).with_code(why.status);
    ApiError { retry_after: Some(RETRY_AFTER), ..error }.in_flavor(flavor_of(uri.path()))
}

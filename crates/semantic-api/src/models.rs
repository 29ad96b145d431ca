//! Which model serves, and changing it while the server runs: the phase the server is in
//! (loading, ready, swapping, offloaded), hot swap with rollback, offload, and the registry
//! listing (`/admin/models/*`). Owns the orchestration — drain, persist every dirty agent, unload,
//! load, serve, and on any failure reload the previous model — and the one-swap-at-a-time rule.
//! Does not own how a model is found or loaded (the binary's [`ModelHost`]).

use std::sync::{Arc, Mutex, OnceLock, RwLock, Weak};
use std::time::{Duration, Instant};

use axum::extract::{FromRef, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use semantic_chat::ChatTemplate;
use semantic_engine::{ModelEntry, ModelRegistry};
use semantic_memory::{Namespace, SnapshotHeader};
use semantic_scheduler::{DrainReport, Scheduler};
use serde::Deserialize;
use serde_json::{json, Value};
use utoipa::ToSchema;

use crate::auth::{Admin, AuthConfig};
use crate::coordination::Coordinator;
use crate::error::{ApiError, ErrorKind};
use crate::extract::ApiJson;
use crate::ops::{self, Ops};
use crate::responses_store::ResponseStore;
use crate::scenario_runs::ScenarioRuns;
use crate::{AppState, ServeOptions};

/// What the binary provides so the server can list and load models.
pub trait ModelHost: Send + Sync + 'static {
    /// The models that can be served, scanned now.
    fn registry(&self) -> ModelRegistry;
    /// Loads the model with registry id `id`, warms it up and starts its step thread. Blocking.
    fn load(&self, id: &str) -> Result<(Scheduler, ChatTemplate), String>;
    /// The agents of `namespace` that models other than the one with fingerprint `except` made
    /// and stored (they come back when their model serves again). Blocking; none by default.
    fn stored_agents(&self, namespace: &Namespace, except: &[u8; 32]) -> Vec<StoredAgent> {
        let _ = (namespace, except);
        Vec::new()
    }
}

/// An agent another model made, listed beside the serving model's own agents.
#[derive(Debug, Clone)]
pub struct StoredAgent {
    /// The registry id of the model that made it (the first 16 hex digits of its fingerprint when
    /// no file of the registry has it).
    pub model: String,
    /// Its file's header.
    pub header: SnapshotHeader,
    /// Its file's size.
    pub file_bytes: u64,
}

/// Seconds a swap waits for in-flight requests before cutting them, unless the request says.
const DEFAULT_SWAP_DRAIN_SECS: f64 = 30.0;
/// Longest drain a swap request may ask for.
const MAX_SWAP_DRAIN_SECS: f64 = 3600.0;

/// What the server is doing with its model.
#[derive(Clone)]
pub(crate) enum Phase {
    /// The first model is loading.
    Loading,
    /// A model serves through this router.
    Ready(Router),
    /// A swap is under way; requests get 503 + Retry-After.
    Swapping,
    /// No model is loaded (offloaded, or a swap and its rollback both failed).
    Offloaded,
}

impl Phase {
    fn name(&self) -> &'static str {
        match self {
            Phase::Loading => "loading",
            Phase::Ready(_) => "ready",
            Phase::Swapping => "swapping",
            Phase::Offloaded => "offloaded",
        }
    }
}

/// The loaded model and everything that outlives it (sessions, runs, middleware state).
pub(crate) struct ModelSlot {
    phase: RwLock<Phase>,
    current: Mutex<Option<(String, Scheduler)>>,
    swap_lock: tokio::sync::Mutex<()>,
    host: Option<Arc<dyn ModelHost>>,
    options: ServeOptions,
    ops: Ops,
    coord: OnceLock<Arc<Coordinator>>,
    responses: OnceLock<Arc<ResponseStore>>,
    runs: Arc<ScenarioRuns>,
}

impl ModelSlot {
    pub fn new(options: ServeOptions, ops: Ops, host: Option<Arc<dyn ModelHost>>) -> Arc<Self> {
        Arc::new(Self {
            phase: RwLock::new(Phase::Loading),
            current: Mutex::new(None),
            swap_lock: tokio::sync::Mutex::new(()),
            host,
            options,
            ops,
            coord: OnceLock::new(),
            responses: OnceLock::new(),
            runs: Arc::default(),
        })
    }

    pub fn phase(&self) -> Phase {
        self.phase.read().map(|p| p.clone()).unwrap_or(Phase::Offloaded)
    }

    fn set_phase(&self, phase: Phase) {
        if let Ok(mut p) = self.phase.write() {
            *p = phase;
        }
    }

    fn take_current(&self) -> Option<(String, Scheduler)> {
        self.current.lock().ok().and_then(|mut c| c.take())
    }

    /// The options the server was started with.
    pub fn options(&self) -> &ServeOptions {
        &self.options
    }

    /// The id of the model serving now.
    pub fn current_id(&self) -> Option<String> {
        self.current.lock().ok().and_then(|c| c.as_ref().map(|(id, _)| id.clone()))
    }

    /// Serves `scheduler` under the model id `id` (empty: the configured name) from now on. Sessions, scenario runs and the
    /// middleware's metrics and buckets carry over from the previous model.
    pub fn install(self: &Arc<Self>, id: String, scheduler: Scheduler, template: ChatTemplate) {
        let coord = self.coord.get_or_init(|| Arc::new(Coordinator::load(self.options.coordination_dir.clone())));
        // An empty id keeps the configured name (itself empty: the model's own name).
        let model_name = if id.is_empty() { self.options.model_name.clone() } else { id };
        // A file given a registry id still answers to its stem.
        let mut model_aliases = self.options.model_aliases.clone();
        let stems = self.options.model_ids.iter().filter(|(i, _)| *i == model_name).map(|(_, stem)| stem.clone());
        model_aliases.extend(stems);
        let options = ServeOptions { model_name, model_aliases, ..self.options.clone() };
        let responses = self.responses.get_or_init(|| {
            Arc::new(ResponseStore::load(self.options.responses_dir.clone(), self.options.responses_max))
        });
        let parts = crate::state::Parts {
            ops: self.ops.clone(),
            coord: Arc::clone(coord),
            runs: Arc::clone(&self.runs),
            responses: Arc::clone(responses),
            slot: Arc::downgrade(self),
        };
        let state = AppState::assemble(scheduler.clone(), template, options, parts);
        let id = state.options.model_name.clone();
        if let Ok(mut c) = self.current.lock() {
            *c = Some((id, scheduler));
        }
        self.set_phase(Phase::Ready(crate::router(state)));
    }

    /// Stops serving for good (shutdown): waits for a swap under way, then drains the current
    /// model for at most `grace`, persists its agents and ends its step thread.
    pub async fn shutdown(&self, grace: Duration) -> Option<(DrainReport, usize)> {
        let _swap = self.swap_lock.lock().await;
        let (_, scheduler) = self.take_current()?;
        Some(retire(scheduler, grace).await)
    }

    /// What lists and loads models, when the server has one.
    pub fn host(&self) -> Option<Arc<dyn ModelHost>> {
        self.host.clone()
    }

    fn registry(&self) -> Option<ModelRegistry> {
        self.host.as_ref().map(|h| h.registry())
    }
}

/// The state of the `/admin/models/*` routes: they answer in every phase, also with no model.
#[derive(Clone)]
pub(crate) struct ModelsState {
    slot: Arc<ModelSlot>,
    auth: Arc<AuthConfig>,
}

impl FromRef<ModelsState> for Arc<AuthConfig> {
    fn from_ref(state: &ModelsState) -> Self {
        Arc::clone(&state.auth)
    }
}

/// The `/admin/models/*` routes with the middleware stack, for every phase.
pub(crate) fn admin_router(slot: &Arc<ModelSlot>) -> Router {
    let state = ModelsState { slot: Arc::clone(slot), auth: Arc::new(slot.options.auth.clone()) };
    let router = Router::new()
        .route("/admin/models/current", get(current))
        .route("/admin/models/available", get(available))
        .route("/admin/models/swap", post(swap))
        .route("/admin/models/offload", post(offload))
        .fallback(crate::error::not_found)
        .method_not_allowed_fallback(crate::error::method_not_allowed)
        .with_state(state);
    ops::stack(router, &slot.ops)
}

/// `POST /admin/models/swap` body.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SwapRequest {
    /// Registry id (the file stem unless aliased) of the model to serve.
    pub model_id: String,
    /// Longest wait for in-flight requests before they are cut (default 30, at most 3600).
    #[serde(default)]
    pub timeout_seconds: Option<f64>,
}

/// A registry entry on the wire.
pub(crate) fn entry_json(entry: &ModelEntry, loaded: bool) -> Value {
    let mut out = json!({
        "id": entry.id,
        "aliases": entry.aliases,
        "path": entry.path.display().to_string(),
        "size_bytes": entry.size_bytes,
        "loaded": loaded,
        "fingerprint": entry.fingerprint.map(|f| f.to_hex()),
    });
    match &entry.info {
        Ok(info) => {
            out["architecture"] = json!(info.architecture);
            out["name"] = json!(info.name);
            out["context_length"] = json!(info.context_length);
            out["parameters"] = json!(info.n_params);
            out["quantization"] = json!(info.quantization);
            out["sliding_window"] = json!(info.sliding_window);
            out["chat_template"] = json!(info.has_chat_template);
            out["servable"] = json!(true);
        }
        Err(reason) => {
            out["servable"] = json!(false);
            out["error"] = json!(reason);
        }
    }
    out
}

/// `GET /admin/models/current`: the model serving now and the phase.
#[utoipa::path(get, path = "/admin/models/current", tag = "admin",
    responses((status = 200, description = "`{model_id, phase, model}`; `phase` is loading, ready, swapping or offloaded")))]
pub(crate) async fn current(State(s): State<ModelsState>, _admin: Admin) -> Json<Value> {
    let id = s.slot.current_id();
    let registry = match s.slot.host.clone() {
        Some(host) => tokio::task::spawn_blocking(move || host.registry()).await.ok(),
        None => None,
    };
    let model = id.as_deref().and_then(|id| registry.as_ref()?.find(id).map(|e| entry_json(e, true)));
    Json(json!({"model_id": id, "phase": s.slot.phase().name(), "model": model}))
}

/// `GET /admin/models/available`: every model of the models directory.
#[utoipa::path(get, path = "/admin/models/available", tag = "admin",
    responses((status = 200, description = "`{models: [{id, aliases, path, size_bytes, loaded, architecture, context_length, parameters, quantization, sliding_window, chat_template, fingerprint, servable, error}]}`")))]
pub(crate) async fn available(State(s): State<ModelsState>, _admin: Admin) -> Json<Value> {
    let current = s.slot.current_id();
    let slot = Arc::clone(&s.slot);
    let registry = tokio::task::spawn_blocking(move || slot.registry()).await.ok().flatten().unwrap_or_default();
    let models: Vec<Value> =
        registry.entries.iter().map(|e| entry_json(e, current.as_deref().is_some_and(|c| e.answers_to(c)))).collect();
    Json(json!({"models": models}))
}

/// Runs a blocking host call off the async threads.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| ApiError::new(ErrorKind::Internal, format!("the model loading task failed: {e}")))
}

/// `POST /admin/models/swap`: serve another model of the registry. Drains in-flight requests
/// (bounded), persists every dirty agent, unloads, loads the new model; on failure reloads the
/// previous one and answers 500 `swap_failed`. One swap at a time (409 `swap_in_progress`).
#[utoipa::path(post, path = "/admin/models/swap", tag = "admin", request_body = SwapRequest,
    responses(
        (status = 200, description = "`{status: swapped|unchanged, from, model_id, drained: {completed, cut}, seconds}`"),
        (status = 404, description = "no such model in the registry", body = crate::error::OpenAiErrorBody),
        (status = 409, description = "another swap is under way, or the first model is still loading", body = crate::error::OpenAiErrorBody),
        (status = 400, description = "the file is not a servable GGUF (`invalid_model`; nothing was unloaded)", body = crate::error::OpenAiErrorBody),
        (status = 500, description = "loading failed; the previous model was reloaded (`swap_failed`) or none could be (`no_model_loaded`)", body = crate::error::OpenAiErrorBody)))]
pub(crate) async fn swap(
    State(s): State<ModelsState>,
    _admin: Admin,
    ApiJson(body): ApiJson<SwapRequest>,
) -> Result<Json<Value>, ApiError> {
    let drain = body.timeout_seconds.unwrap_or(DEFAULT_SWAP_DRAIN_SECS);
    if !(0.0..=MAX_SWAP_DRAIN_SECS).contains(&drain) {
        return Err(ApiError::invalid(
            "timeout_seconds",
            format!("timeout_seconds must be within 0..={MAX_SWAP_DRAIN_SECS}"),
        ));
    }
    let slot = Arc::clone(&s.slot);
    let Some(host) = slot.host.clone() else {
        return Err(
            ApiError::new(ErrorKind::InvalidRequest, "this server cannot swap models").with_code("swap_unavailable")
        );
    };
    let Ok(_swap) = slot.swap_lock.try_lock() else {
        return Err(ApiError::new(ErrorKind::Conflict, "another model swap is under way").with_code("swap_in_progress"));
    };
    if matches!(slot.phase(), Phase::Loading) {
        return Err(ApiError::new(ErrorKind::Conflict, "the first model is still loading").with_code("loading"));
    }
    let entry = servable_entry(&slot, &host, &body.model_id).await?;
    swap_locked(&slot, host, entry, drain).await.map(Json)
}

/// The swap itself, under the swap lock: unload the serving model (drain bounded by `drain`
/// seconds, persist its agents), load `entry`, and on failure reload the previous model.
async fn swap_locked(
    slot: &Arc<ModelSlot>,
    host: Arc<dyn ModelHost>,
    entry: ModelEntry,
    drain: f64,
) -> Result<Value, ApiError> {
    let from = slot.current_id();
    if from.as_deref() == Some(entry.id.as_str()) {
        return Ok(json!({"status": "unchanged", "model_id": entry.id}));
    }
    let started = Instant::now();
    tracing::info!(from = ?from, to = %entry.id, "model swap: draining");
    slot.set_phase(Phase::Swapping);
    let drained = unload_current(slot, drain).await;
    let drained = json!({"completed": drained.completed, "cut": drained.cut});
    let to = entry.id.clone();
    let loaded = blocking({
        let host = Arc::clone(&host);
        move || host.load(&to)
    })
    .await?;
    match loaded {
        Ok((scheduler, template)) => {
            slot.install(entry.id.clone(), scheduler, template);
            slot.ops.metrics.swapped(SwapResult::Ok);
            let seconds = started.elapsed().as_secs_f64();
            tracing::info!(from = ?from, to = %entry.id, seconds, "model swap: serving");
            Ok(json!({"status": "swapped", "from": from, "model_id": entry.id, "drained": drained, "seconds": seconds}))
        }
        Err(reason) => {
            tracing::error!(model = %entry.id, %reason, "model swap failed: loading the new model");
            rollback(slot, host, from, &entry.id, &reason).await.map(|j| j.0)
        }
    }
}

/// `--swap-on-demand`: makes the model a request names serve, swapping to it when it is another
/// servable model of the registry (waiting for a swap under way rather than refusing). Names the
/// registry does not know, and the serving model's own names, change nothing: the route then
/// answers as usual (404 `model_not_found` for an unknown one).
pub(crate) async fn swap_on_demand(slot: &Arc<ModelSlot>, name: &str) -> Result<(), ApiError> {
    let Some(host) = slot.host.clone() else { return Ok(()) };
    let current = slot.current_id();
    let trivial = current.as_deref() == Some(name)
        || crate::identity::MODEL_ALIASES.contains(&name)
        || slot.options.model_aliases.iter().any(|a| a == name);
    if trivial {
        return Ok(());
    }
    let registry = blocking({
        let host = Arc::clone(&host);
        move || host.registry()
    })
    .await?;
    let Some(entry) = registry.find(name).cloned() else { return Ok(()) };
    if current.as_deref() == Some(entry.id.as_str()) || entry.info.is_err() {
        return Ok(());
    }
    let _swap = slot.swap_lock.lock().await;
    if matches!(slot.phase(), Phase::Loading) {
        return Ok(()); // the loading app answers 503 + Retry-After
    }
    tracing::info!(model = %entry.id, "swap on demand: a request names another model");
    swap_locked(slot, host, entry, DEFAULT_SWAP_DRAIN_SECS).await.map(|_| ())
}

/// The registry entry `model_id` names, if its file is servable: 404 `model_not_found` for an unknown
/// id, 400 `invalid_model` (counted as a rejected swap) for a file that is not a servable GGUF.
async fn servable_entry(slot: &ModelSlot, host: &Arc<dyn ModelHost>, model_id: &str) -> Result<ModelEntry, ApiError> {
    let registry = blocking({
        let host = Arc::clone(host);
        move || host.registry()
    })
    .await?;
    let Some(entry) = registry.find(model_id).cloned() else {
        let ids: Vec<&str> = registry.entries.iter().map(|e| e.id.as_str()).collect();
        return Err(ApiError::new(
            ErrorKind::NotFound,
            format!("no model `{}` in {} (available: {})", model_id, registry.dir.display(), ids.join(", ")),
        )
        .with_param("model_id")
        .with_code("model_not_found"));
    };
    if let Err(reason) = &entry.info {
        slot.ops.metrics.swapped(SwapResult::Rejected);
        tracing::warn!(model = %entry.id, %reason, "swap refused: the file is not a servable GGUF");
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("model `{}` cannot be served: {reason}", entry.id),
        )
        .with_param("model_id")
        .with_code("invalid_model"));
    }
    Ok(entry)
}

/// Drains `scheduler` for at most `grace` (in-flight requests finish or are cut), persists its
/// dirty agents and ends its step thread, freeing the engine. Returns the drain report and how many
/// agents could not be persisted.
async fn retire(scheduler: Scheduler, grace: Duration) -> (DrainReport, usize) {
    let report = scheduler.drain(grace).await;
    let flushed = scheduler.flush_agents().await;
    scheduler.stop().await;
    (report, flushed.still_dirty)
}

/// Retires the serving model, if any, for a swap (drain bounded by `drain` seconds).
async fn unload_current(slot: &ModelSlot, drain: f64) -> DrainReport {
    let Some((_, old)) = slot.take_current() else { return DrainReport::default() };
    let (report, still_dirty) = retire(old, Duration::from_secs_f64(drain)).await;
    tracing::info!(completed = report.completed, cut = report.cut, still_dirty, "model swap: unloaded");
    report
}

/// After a failed load: reloads `from` (if there was a model) and reports the failure.
async fn rollback(
    slot: &Arc<ModelSlot>,
    host: Arc<dyn ModelHost>,
    from: Option<String>,
    to: &str,
    reason: &str,
) -> Result<Json<Value>, ApiError> {
    let failed = format!("swapping to `{to}` failed: {reason}");
    let Some(from) = from else {
        slot.set_phase(Phase::Offloaded);
        slot.ops.metrics.swapped(SwapResult::Failed);
        return Err(
            ApiError::new(ErrorKind::Internal, format!("{failed}; no model is loaded")).with_code("no_model_loaded")
        );
    };
    let id = from.clone();
    match blocking(move || host.load(&id)).await? {
        Ok((scheduler, template)) => {
            slot.install(from.clone(), scheduler, template);
            slot.ops.metrics.swapped(SwapResult::RolledBack);
            tracing::warn!(model = %from, "model swap rolled back: the previous model serves again");
            Err(ApiError::new(ErrorKind::Internal, format!("{failed}; rolled back to `{from}`, which serves again"))
                .with_code("swap_failed"))
        }
        Err(again) => {
            slot.set_phase(Phase::Offloaded);
            slot.ops.metrics.swapped(SwapResult::Failed);
            tracing::error!(model = %from, reason = %again, "model swap rollback failed: no model is loaded");
            Err(ApiError::new(
                ErrorKind::Internal,
                format!("{failed}; reloading `{from}` failed too ({again}); no model is loaded"),
            )
            .with_code("no_model_loaded"))
        }
    }
}

/// `POST /admin/models/offload`: drain, persist and unload the model; requests get 503 until a
/// swap loads one.
#[utoipa::path(post, path = "/admin/models/offload", tag = "admin",
    responses(
        (status = 200, description = "`{status: offloaded, model_id, drained: {completed, cut}}`"),
        (status = 409, description = "no model is loaded, or a swap is under way", body = crate::error::OpenAiErrorBody)))]
pub(crate) async fn offload(State(s): State<ModelsState>, _admin: Admin) -> Result<Json<Value>, ApiError> {
    let slot = &s.slot;
    let Ok(_swap) = slot.swap_lock.try_lock() else {
        return Err(ApiError::new(ErrorKind::Conflict, "a model swap is under way").with_code("swap_in_progress"));
    };
    let Some((id, scheduler)) = slot.take_current() else {
        return Err(ApiError::new(ErrorKind::Conflict, "no model is loaded").with_code("no_model_loaded"));
    };
    slot.set_phase(Phase::Offloaded);
    let (report, still_dirty) = retire(scheduler, Duration::from_secs_f64(DEFAULT_SWAP_DRAIN_SECS)).await;
    tracing::info!(model = %id, still_dirty, "model offloaded");
    Ok(Json(
        json!({"status": "offloaded", "model_id": id, "drained": {"completed": report.completed, "cut": report.cut}}),
    ))
}

/// How a swap ended (the `result` label of `semantic_model_swaps_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwapResult {
    /// The new model serves.
    Ok = 0,
    /// Loading failed; the previous model serves again.
    RolledBack = 1,
    /// Loading failed and no model is loaded.
    Failed = 2,
    /// Refused before unloading anything (not a servable GGUF).
    Rejected = 3,
}

impl SwapResult {
    /// Every result, in label order.
    pub const ALL: [SwapResult; 4] = [SwapResult::Ok, SwapResult::RolledBack, SwapResult::Failed, SwapResult::Rejected];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            SwapResult::Ok => "ok",
            SwapResult::RolledBack => "rolled_back",
            SwapResult::Failed => "failed",
            SwapResult::Rejected => "rejected",
        }
    }
}

/// The registry (when the server has one) for `GET /v1/models`.
pub(crate) fn registry_of(slot: &Weak<ModelSlot>) -> Option<ModelRegistry> {
    slot.upgrade()?.registry()
}

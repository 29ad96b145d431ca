//! `AppState`: what every handler shares.

use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use semantic_chat::ChatTemplate;
use semantic_scheduler::Scheduler;

use crate::auth::AuthConfig;
use crate::coordination::Coordinator;
use crate::models::ModelSlot;
use crate::ops::Ops;
use crate::prompt::Prompter;
use crate::rate_limit::RateLimitConfig;
use crate::responses_store::{ResponseStore, Retention};
use crate::scenario_runs::ScenarioRuns;

/// Options the binary resolves from configuration.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Model name reported in responses and `/v1/models`; empty: the GGUF's `general.name`.
    pub model_name: String,
    /// More names accepted as `model` for the loaded model (`--model-alias`); listed by
    /// `/v1/models` after it.
    pub model_aliases: Vec<String>,
    /// Registry ids given to model files (`--model-id`): `(id, file stem)`; the stem of the
    /// serving model's file keeps answering as a name of it.
    pub model_ids: Vec<(String, String)>,
    /// A generation request naming another servable model of the registry swaps to it first
    /// (`--swap-on-demand`); off: such a request gets 404 `model_not_found`.
    pub swap_on_demand: bool,
    /// Completion length when a request names none.
    pub default_max_tokens: usize,
    /// API keys, admin key, metrics access.
    pub auth: AuthConfig,
    /// `/health/ready` turns 503 when reserved KV cells over capacity reach this.
    pub ready_kv_ratio: f64,
    /// `/health/ready` turns 503 when the admission queue is this full (0..=1).
    pub ready_queue_ratio: f64,
    /// Per-caller and global request rates (429 beyond them).
    pub rate_limit: RateLimitConfig,
    /// Largest request body (413 beyond it).
    pub max_body_bytes: usize,
    /// Longest a non-streaming generation may take (504 after it, and it is cancelled).
    pub request_timeout: Duration,
    /// Longest a client may take to send a request body (then 408).
    pub body_timeout: Duration,
    /// Longest a stream may go without a token (an error event after it, and it is cancelled).
    pub stream_idle_timeout: Duration,
    /// Origins allowed to call from a browser; `*` for any; empty: no CORS headers at all.
    pub cors_origins: Vec<String>,
    /// Where coordination sessions are stored (None: in memory only, lost at exit).
    pub coordination_dir: Option<std::path::PathBuf>,
    /// Where stored Responses (`/v1/responses`) are kept (None: in memory only, lost at exit).
    pub responses_dir: Option<std::path::PathBuf>,
    /// How many stored Responses are kept (the oldest go first) and for how long.
    pub responses_max: Retention,
}

impl Default for ServeOptions {
    fn default() -> Self {
        Self {
            model_name: "semantic".into(),
            model_aliases: Vec::new(),
            model_ids: Vec::new(),
            swap_on_demand: false,
            default_max_tokens: 512,
            auth: AuthConfig::default(),
            ready_kv_ratio: 0.95,
            ready_queue_ratio: 0.9,
            rate_limit: RateLimitConfig::default(),
            max_body_bytes: 8 << 20,
            request_timeout: Duration::from_secs(600),
            body_timeout: Duration::from_secs(60),
            stream_idle_timeout: Duration::from_secs(120),
            cors_origins: Vec::new(),
            coordination_dir: None,
            responses_dir: None,
            responses_max: Retention { count: 10_000, max_age: None },
        }
    }
}

/// What an `AppState` shares with the model before it and after it (see `models.rs`).
pub(crate) struct Parts {
    pub ops: Ops,
    pub coord: Arc<Coordinator>,
    pub runs: Arc<ScenarioRuns>,
    pub responses: Arc<ResponseStore>,
    pub slot: Weak<ModelSlot>,
}

/// Shared by all handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub(crate) scheduler: Scheduler,
    pub(crate) prompter: Arc<Prompter>,
    pub(crate) options: Arc<ServeOptions>,
    pub(crate) started: SystemTime,
    pub(crate) auth: Arc<AuthConfig>,
    pub(crate) ops: Ops,
    pub(crate) coord: Arc<Coordinator>,
    pub(crate) runs: Arc<ScenarioRuns>,
    /// Stored Responses (`/v1/responses`), shared across model swaps.
    pub(crate) responses: Arc<ResponseStore>,
    /// The server's model slot (registry, swaps); dangling in tests built without one.
    pub(crate) slot: Weak<ModelSlot>,
}

impl AppState {
    /// State for a scheduler and the model's chat template.
    pub fn new(scheduler: Scheduler, template: ChatTemplate, options: ServeOptions) -> Self {
        let ops = Ops::new(&options);
        Self::with_ops(scheduler, template, options, ops)
    }

    /// State sharing middleware state (metrics, rate-limit buckets) made before the model loaded.
    pub(crate) fn with_ops(scheduler: Scheduler, template: ChatTemplate, options: ServeOptions, ops: Ops) -> Self {
        let coord = Arc::new(Coordinator::load(options.coordination_dir.clone()));
        let responses = Arc::new(ResponseStore::load(options.responses_dir.clone(), options.responses_max));
        let parts = Parts { ops, coord, runs: Arc::default(), responses, slot: Weak::new() };
        Self::assemble(scheduler, template, options, parts)
    }

    /// State for a scheduler, sharing `parts` with the states of earlier models.
    pub(crate) fn assemble(
        scheduler: Scheduler,
        template: ChatTemplate,
        mut options: ServeOptions,
        parts: Parts,
    ) -> Self {
        if options.model_name.is_empty() {
            options.model_name = scheduler.facts().name.clone();
        }
        let prompter = Prompter::new(template, scheduler.tokenizer().clone(), scheduler.facts());
        let Parts { ops, coord, runs, responses, slot } = parts;
        Self {
            coord,
            runs,
            responses,
            slot,
            scheduler,
            prompter: Arc::new(prompter),
            auth: Arc::new(options.auth.clone()),
            options: Arc::new(options),
            started: SystemTime::now(),
            ops,
        }
    }

    /// `max_tokens` for a request that names none: the configured default, capped by what is left
    /// of the context after the prompt (at least 1, so an overlong prompt is reported as such).
    pub(crate) fn default_max_tokens(&self, prompt_tokens: usize) -> usize {
        let left = self.scheduler.max_sequence_tokens().saturating_sub(prompt_tokens);
        self.options.default_max_tokens.min(left).max(1)
    }
}

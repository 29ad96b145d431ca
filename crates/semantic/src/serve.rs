//! `semantic serve`: bind, serve a loading app while the model loads on its own thread (so the
//! startup probe can say so), then the real router until Ctrl-C or SIGTERM: drain, flush agent
//! memory, exit 0. A second signal during the drain exits at once (130).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use semantic_api::{AuthConfig, ModelHost, RateLimitConfig, Retention, ServeOptions, Startup, StoredAgent};
use semantic_chat::ChatTemplate;
use semantic_config::Config;
use semantic_engine::{ModelFacts, ModelRegistry};
use semantic_memory::{CacheLock, MemoryError, Namespace};
use semantic_scheduler::{MemoryConfig, Scheduler, SchedulerConfig};
use tokio::sync::{oneshot, watch};

use crate::http_server::{self, ClientLimits};

/// How long an agent stays idle before its new turn is written to disk: an agent loop's next
/// request usually comes sooner, and exporting + writing while it prefills slows it severely on a
/// few cores. A crash within this window loses only the last turn (the agent restores the turn
/// before it); a graceful shutdown writes everything.
const PERSIST_AFTER_IDLE: Duration = Duration::from_secs(1);

/// Gemma's turn format (Gemma 2 and 3: `<start_of_turn>user` / `model`, the system prompt folded
/// into the first user turn), used for a Gemma GGUF that carries no template, as base models'
/// files often do: their tokenizers have the turn tokens.
const GEMMA_TEMPLATE: &str = "{{ bos_token }}{%- if messages[0]['role'] == 'system' -%}{%- set first_user_prefix = messages[0]['content'] + '\n\n' -%}{%- set loop_messages = messages[1:] -%}{%- else -%}{%- set first_user_prefix = '' -%}{%- set loop_messages = messages -%}{%- endif -%}{%- for message in loop_messages -%}{%- set role = 'model' if message['role'] == 'assistant' else 'user' -%}{{ '<start_of_turn>' + role + '\n' + (first_user_prefix if loop.first else '') + message['content'] | trim + '<end_of_turn>\n' }}{%- endfor -%}{%- if add_generation_prompt -%}{{ '<start_of_turn>model\n' }}{%- endif -%}";

/// Used when a GGUF carries no chat template and its architecture has no built-in one.
const FALLBACK_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The model's own chat template, compiled with Hugging Face semantics.
pub fn chat_template(facts: &ModelFacts) -> Result<ChatTemplate> {
    let source = facts.chat_template.as_deref().unwrap_or_else(|| {
        if facts.architecture.starts_with("gemma") {
            tracing::info!("the model has no chat template; using Gemma's turn format");
            return GEMMA_TEMPLATE;
        }
        tracing::warn!("the model has no chat template; using ChatML");
        FALLBACK_TEMPLATE
    });
    ChatTemplate::new(source, &facts.bos_text, &facts.eos_text).context("compiling the model's chat template")
}

pub fn run(resolved: crate::cli::Resolved) -> Result<()> {
    crate::preflight::announce(&resolved);
    let config = resolved.config;
    // Held until the process exits: one server per cache directory.
    let _lock = lock_cache_dir(&config.cache_dir)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scheduler_config = SchedulerConfig {
        max_running: config.max_running,
        step_token_budget: config.step_tokens,
        queue_capacity: config.queue_capacity,
        memory: MemoryConfig {
            dir: Some(config.cache_dir.clone()),
            warm_bytes: config.memory_warm_bytes,
            disk_bytes: config.memory_disk_bytes,
            persist_after_idle: PERSIST_AFTER_IDLE,
            persist_within: Duration::from_secs(config.persist_within_secs),
            encryption_key: crate::encryption::config_key(&config)?,
        },
    };
    let options = serve_options(&config);
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    let host = Arc::new(Host { config: config.clone(), scheduler: scheduler_config.clone() });
    runtime.block_on(async move {
        // Before anything else, so that no signal finds the default action (die) in place.
        let stop = spawn_signal_handler();
        let addr = (config.server.host, config.server.port);
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {}:{}", addr.0, addr.1))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "listening; loading the model");
        eprintln!("semantic listening on http://{local}");
        let startup = Startup::new(options, Some(host));
        let (stop_serving, serving_stopped) = oneshot::channel::<()>();
        let limits = ClientLimits {
            header_timeout: Duration::from_secs(config.header_timeout_secs),
            max_connections: config.max_connections as usize,
        };
        let server = tokio::spawn(http_server::serve(listener, startup.router(), limits, async move {
            let _ = serving_stopped.await;
        }));
        let model_id = options_model_id(&config);
        let loading = load_in_background(config, scheduler_config);
        let outcome = lifecycle(&startup, model_id, loading, stop, grace).await;
        // Stop accepting and let open connections finish (after the drain, as before: during it,
        // new requests get a 503 `draining` and /health/ready says so).
        let _ = stop_serving.send(());
        server.await.context("the HTTP server task")?;
        outcome
    })?;
    // The step thread already ended (`Startup::shutdown`); connection tasks may still hold
    // router state, which no longer reaches a model.
    runtime.shutdown_timeout(Duration::from_secs(1));
    Ok(())
}

/// Takes the cache directory's lock, or says who holds it.
pub fn lock_cache_dir(dir: &std::path::Path) -> Result<CacheLock> {
    CacheLock::acquire(dir).map_err(|err| match err {
        MemoryError::Locked { pid, .. } => anyhow::anyhow!(
            "another semantic process{} is using the cache directory {}: one process per cache directory. \
             Stop it, or give this one its own --cache-dir.",
            pid.map_or(String::new(), |p| format!(" (pid {p})")),
            dir.display()
        ),
        other => anyhow::Error::new(other).context(format!("locking the cache directory {}", dir.display())),
    })
}

/// How the server finds and loads models: the registry of `--models-dir` (plus the `--model`
/// file wherever it is), each loaded with the server's own settings.
struct Host {
    config: Config,
    scheduler: SchedulerConfig,
}

impl ModelHost for Host {
    fn registry(&self) -> ModelRegistry {
        let fingerprints = self.config.cache_dir.join("fingerprints");
        let dir = &self.config.models_dir;
        let mut registry =
            ModelRegistry::scan(dir, &self.config.model_ids, Some(&fingerprints)).unwrap_or_else(|err| {
                tracing::warn!(%err, dir = %dir.display(), "cannot scan the models directory");
                ModelRegistry { dir: dir.clone(), entries: Vec::new() }
            });
        registry.include(ModelRegistry::entry(&self.config.model, Some(&fingerprints)));
        registry
    }

    fn load(&self, id: &str) -> Result<(Scheduler, ChatTemplate), String> {
        let registry = self.registry();
        let entry = registry.find(id).ok_or_else(|| format!("no model `{id}` in {}", registry.dir.display()))?;
        let config = Config { model: entry.path.clone(), ..self.config.clone() };
        load_model(&config, self.scheduler.clone()).map_err(|e| format!("{e:#}"))
    }

    fn stored_agents(&self, namespace: &Namespace, except: &[u8; 32]) -> Vec<StoredAgent> {
        let cache_dir = &self.config.cache_dir;
        let key = self.scheduler.memory.encryption_key.clone();
        let Ok(stores) = crate::stores::for_reading_with(cache_dir, key) else { return Vec::new() };
        let serving = semantic_memory::model_root(cache_dir, except);
        let registry = self.registry();
        let model_of = |fingerprint: &[u8; 32]| {
            let known = registry.entries.iter().find(|e| e.fingerprint.is_some_and(|f| &f.0 == fingerprint));
            known.map_or_else(|| fingerprint[..8].iter().map(|b| format!("{b:02x}")).collect(), |e| e.id.clone())
        };
        // The legacy layout (agents/ right under the cache directory) is adopted by the serving model.
        let others = stores.iter().filter(|s| s.root() != serving.as_path() && s.root() != cache_dir.as_path());
        others
            .flat_map(|store| store.scan_one(namespace).entries)
            .filter(|(header, _)| &header.fingerprint != except)
            .map(|(header, file_bytes)| StoredAgent { model: model_of(&header.fingerprint), header, file_bytes })
            .collect()
    }
}

/// Loads the model `config` names, starts its step thread and compiles its chat template.
fn load_model(config: &Config, scheduler: SchedulerConfig) -> Result<Loaded> {
    let scheduler = crate::cli::start_scheduler(config, scheduler)?;
    let template = chat_template(scheduler.facts())?;
    Ok((scheduler, template))
}

/// The id the first model serves under: its file stem (its registry id), known before loading;
/// empty (no stem) lets the API use the model's own name once loaded.
fn options_model_id(config: &Config) -> String {
    let stem = config.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    config.model_ids.iter().find(|(_, s)| *s == stem).map_or(stem, |(id, _)| id.clone())
}

/// What the API needs from the configuration.
fn serve_options(config: &Config) -> ServeOptions {
    ServeOptions {
        model_name: options_model_id(config),
        model_aliases: config.model_aliases.clone(),
        model_ids: config.model_ids.clone(),
        swap_on_demand: config.swap_on_demand,
        default_max_tokens: config.default_max_tokens,
        auth: AuthConfig::new(&config.api_keys, config.admin_key.as_deref(), config.metrics_public),
        rate_limit: RateLimitConfig {
            per_key_rps: config.rate_limit_rps,
            per_key_burst: config.rate_limit_burst,
            global_rps: config.global_rate_limit_rps,
            global_burst: config.global_rate_limit_burst,
        },
        // Validated to at most 1 GiB, which fits any usize we run on.
        max_body_bytes: usize::try_from(config.max_body_bytes).unwrap_or(usize::MAX),
        request_timeout: Duration::from_secs(config.request_timeout_secs),
        body_timeout: Duration::from_secs(config.body_timeout_secs),
        stream_idle_timeout: Duration::from_secs(config.stream_idle_timeout_secs),
        cors_origins: config.cors_origins.clone(),
        coordination_dir: Some(config.cache_dir.join("coordination")),
        responses_dir: Some(config.cache_dir.join("responses")),
        responses_max: Retention {
            count: config.responses_max,
            max_age: (config.responses_max_age_days > 0)
                .then(|| Duration::from_secs(config.responses_max_age_days.saturating_mul(86_400))),
        },
        ..ServeOptions::default()
    }
}

/// A loaded model: the step thread's handle and the model's chat template.
type Loaded = (Scheduler, ChatTemplate);

/// Loads the model and starts the step thread on a plain thread (not the runtime's blocking
/// pool, which a shutdown during loading would wait for); the result arrives on the channel.
fn load_in_background(config: Config, scheduler_config: SchedulerConfig) -> oneshot::Receiver<Result<Loaded>> {
    let (done, loaded) = oneshot::channel();
    let spawned = std::thread::Builder::new().name("semantic-load".into()).spawn(move || {
        let _ = done.send(load_model(&config, scheduler_config));
    });
    if let Err(err) = spawned {
        // The closure, and with it the sender, is gone: the receiver reports the failure.
        tracing::error!(%err, "cannot start the model loading thread");
    }
    loaded
}

/// Waits for the model (or a signal), serves until a signal, then drains whichever model
/// serves by then (after any swap under way), flushes its agents and ends its step thread.
async fn lifecycle(
    startup: &Startup,
    model_id: String,
    loading: oneshot::Receiver<Result<Loaded>>,
    mut stop: watch::Receiver<bool>,
    grace: Duration,
) -> Result<()> {
    let (scheduler, template) = tokio::select! {
        loaded = loading => loaded.context("the model loading thread died")??,
        _ = stop.wait_for(|stopping| *stopping) => {
            tracing::info!("shutdown requested while the model was loading: exiting");
            return Ok(());
        }
    };
    startup.ready(model_id, scheduler, template);
    tracing::info!("model loaded: ready");
    // An error means the signal handler is gone (it never ends by itself): stop as if signalled.
    let _ = stop.wait_for(|stopping| *stopping).await;
    tracing::info!("shutdown requested: draining (a second Ctrl-C or SIGTERM exits at once)");
    if let Some((report, still_dirty)) = startup.shutdown(grace).await {
        tracing::info!(completed = report.completed, cut = report.cut, still_dirty, "drained; agent memory flushed");
    }
    Ok(())
}

/// Listens for Ctrl-C and SIGTERM: the first sets the returned flag (drain and exit), the second
/// exits the process at once with status 130.
fn spawn_signal_handler() -> watch::Receiver<bool> {
    let (stopping, stop) = watch::channel(false);
    let mut signals = Signals::new();
    tokio::spawn(async move {
        signals.recv().await;
        let _ = stopping.send(true);
        signals.recv().await;
        tracing::warn!("second shutdown signal: exiting now without finishing the drain or the flush");
        // Safe to skip the rest: every file we write (agent files, the fingerprint cache) is a
        // temp file renamed into place, so each is either its old or its new version; agents not
        // yet flushed lose only their latest turns.
        exit_now(130);
    });
    stop
}

/// Ctrl-C and SIGTERM, registered when made, so none is missed between startup and the wait.
struct Signals {
    #[cfg(unix)]
    interrupt: Option<tokio::signal::unix::Signal>,
    #[cfg(unix)]
    terminate: Option<tokio::signal::unix::Signal>,
}

impl Signals {
    fn new() -> Self {
        #[cfg(unix)]
        {
            use tokio::signal::unix::{signal, SignalKind};
            let listen = |kind: SignalKind, name: &str| match signal(kind) {
                Ok(s) => Some(s),
                Err(err) => {
                    tracing::warn!(%err, signal = name, "cannot listen for the signal");
                    None
                }
            };
            Self {
                interrupt: listen(SignalKind::interrupt(), "SIGINT"),
                terminate: listen(SignalKind::terminate(), "SIGTERM"),
            }
        }
        #[cfg(not(unix))]
        Self {}
    }

    /// The next signal of either kind.
    async fn recv(&mut self) {
        #[cfg(unix)]
        {
            // A stream that cannot deliver (not registered, or the runtime is shutting down) never
            // fires, so it cannot pass for a second signal.
            async fn next(signal: &mut Option<tokio::signal::unix::Signal>) {
                let delivered = match signal {
                    Some(s) => s.recv().await.is_some(),
                    None => false,
                };
                if !delivered {
                    std::future::pending::<()>().await;
                }
            }
            tokio::select! {
                _ = next(&mut self.interrupt) => {}
                _ = next(&mut self.terminate) => {}
            }
        }
        #[cfg(not(unix))]
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// Ends the process at once, without running exit handlers or C++ static destructors: the step
/// thread may be inside llama.cpp right now, and tearing its globals down under it crashed the
/// process (SIGSEGV instead of 130) in CI.
fn exit_now(code: i32) -> ! {
    // SAFETY: `_exit` only ends the process; nothing runs after it. stderr is unbuffered, so the
    // log line above is already written.
    unsafe { libc::_exit(code) }
}

//! `semantic serve`: load the model, start the step thread, serve HTTP until Ctrl-C or SIGTERM.

use std::time::Duration;

use anyhow::{Context, Result};
use semantic_api::{AppState, AuthConfig, RateLimitConfig, ServeOptions};
use semantic_chat::ChatTemplate;
use semantic_config::Config;
use semantic_engine::ModelFacts;
use semantic_scheduler::{MemoryConfig, SchedulerConfig};

/// Used when a GGUF carries no chat template.
const FALLBACK_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

/// The model's own chat template, compiled with Hugging Face semantics.
pub fn chat_template(facts: &ModelFacts) -> Result<ChatTemplate> {
    let source = facts.chat_template.as_deref().unwrap_or_else(|| {
        tracing::warn!("the model has no chat template; using ChatML");
        FALLBACK_TEMPLATE
    });
    ChatTemplate::new(source, &facts.bos_text, &facts.eos_text).context("compiling the model's chat template")
}

pub fn run(config: Config) -> Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let scheduler_config = SchedulerConfig {
        max_running: config.max_running,
        step_token_budget: config.step_tokens,
        queue_capacity: config.queue_capacity,
        memory: MemoryConfig {
            dir: Some(config.cache_dir.clone()),
            warm_bytes: config.memory_warm_bytes,
            disk_bytes: config.memory_disk_bytes,
        },
    };
    let scheduler = crate::cli::start_scheduler(&config, scheduler_config)?;
    let facts = scheduler.facts().clone();
    let template = chat_template(&facts)?;
    let options = ServeOptions {
        model_name: model_name(&config, &facts),
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
        stream_idle_timeout: Duration::from_secs(config.stream_idle_timeout_secs),
        cors_origins: config.cors_origins.clone(),
        ..ServeOptions::default()
    };
    let state = AppState::new(scheduler.clone(), template, options);
    let drain_scheduler = scheduler.clone();
    let grace = Duration::from_secs(config.shutdown_grace_secs);
    runtime.block_on(async move {
        let addr = (config.server.host, config.server.port);
        let listener =
            tokio::net::TcpListener::bind(addr).await.with_context(|| format!("binding {}:{}", addr.0, addr.1))?;
        let local = listener.local_addr()?;
        tracing::info!(%local, "listening");
        eprintln!("semantic listening on http://{local}");
        let app = semantic_api::router(state);
        axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                shutdown_signal().await;
                tracing::info!("shutdown requested: draining");
                let report = drain_scheduler.drain(grace).await;
                tracing::info!(completed = report.completed, cut = report.cut, "drained");
                let flushed = drain_scheduler.flush_agents().await;
                tracing::info!(still_dirty = flushed.still_dirty, "agent memory flushed");
            })
            .await?;
        anyhow::Ok(())
    })?;
    // Connection tasks may still hold router state: stop them so this is the last scheduler handle.
    runtime.shutdown_timeout(Duration::from_secs(1));
    scheduler.join();
    Ok(())
}

fn model_name(config: &Config, facts: &ModelFacts) -> String {
    config.model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_else(|| facts.name.clone())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(s) => s,
            Err(err) => {
                tracing::warn!(%err, "cannot listen for SIGTERM");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

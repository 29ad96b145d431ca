//! Command-line interface: subcommands, flags (each also a `SEMANTIC_*` env var) and config layering.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand};
use semantic_config::{Config, RawConfig};
use semantic_engine::{Engine, EngineConfig, KvType, LlamaEngine};
use semantic_scheduler::{Scheduler, SchedulerConfig, SpawnError};

/// semantic: a local LLM server with per-agent KV memory that survives restarts.
#[derive(Debug, Parser)]
#[command(name = "semantic", version, about)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Generate text once from a prompt (prints only the generated text to stdout).
    Generate(crate::generate::GenerateArgs),
    /// Print model facts and fingerprint.
    Info(CommonArgs),
    /// Run the HTTP server.
    Serve(CommonArgs),
    /// Print the resolved configuration (secrets masked).
    Config(CommonArgs),
    /// Perplexity and KV bytes per token for each KV type (chooses the default KV type).
    Perplexity(crate::perplexity::PerplexityArgs),
    /// Inspect and edit stored agents offline (server stopped): ls, show, rm, pin, unpin, export, import.
    Agents(crate::agents_cli::AgentsArgs),
    /// Check the agent files of a cache directory (server stopped).
    Cache(crate::agents_cli::CacheArgs),
    /// Benchmarks over HTTP against semantic and its peers: JSON, markdown and PNG plots.
    Bench(crate::bench_cli::BenchArgs),
    /// The models directory's registry: `ls` lists each GGUF with its facts.
    Models(crate::models_cli::ModelsArgs),
    /// Multi-agent YAML scenarios: `validate FILE` offline, `run FILE --url URL` on a server.
    Scenario(crate::scenario_cli::ScenarioArgs),
}

/// Flags every subcommand shares. Flags beat `SEMANTIC_*` env vars, which beat the TOML file.
#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    // Every field is optional so that unset flags fall through to env, file and defaults.
    /// TOML config file (lowest layer above defaults).
    #[arg(long, env = "SEMANTIC_CONFIG")]
    config: Option<PathBuf>,
    /// GGUF model file [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long, env = "SEMANTIC_MODEL")]
    model: Option<PathBuf>,
    /// Another name clients may send as `model` for the loaded model, e.g. gpt-4o-mini (repeatable; env: comma-separated).
    #[arg(long = "model-alias", env = "SEMANTIC_MODEL_ALIAS", value_delimiter = ',')]
    model_alias: Vec<String>,
    /// Directory for agent memory and caches [default: .semantic].
    #[arg(long, env = "SEMANTIC_CACHE_DIR")]
    cache_dir: Option<PathBuf>,
    /// Directory of GGUF files the registry lists and an admin may swap to [default: the model's directory].
    #[arg(long, env = "SEMANTIC_MODELS_DIR")]
    models_dir: Option<PathBuf>,
    /// Address to bind [default: 127.0.0.1].
    #[arg(long, env = "SEMANTIC_HOST")]
    host: Option<String>,
    /// Port to bind [default: 8000].
    #[arg(long, env = "SEMANTIC_PORT")]
    port: Option<u16>,
    /// Allow binding to a non-loopback address (env: 1/0, true/false, yes/no, on/off).
    #[arg(long, env = "SEMANTIC_ALLOW_REMOTE", value_parser = BoolishValueParser::new())]
    allow_remote: bool,
    /// Most tokens one agent may hold, prompt + reply (its own KV stream) [default: 8192].
    #[arg(long, env = "SEMANTIC_AGENT_CTX")]
    agent_ctx: Option<u32>,
    /// Decode threads, 0 = all CPUs [default: 0].
    #[arg(long, env = "SEMANTIC_THREADS")]
    threads: Option<u32>,
    /// KV cache type: f16, q8_0, q5_1, q5_0, q4_1, q4_0 or iq4_nl for both K and V, or K/V such as q5_1/q4_0 [default: f16].
    #[arg(long, env = "SEMANTIC_KV_TYPE")]
    kv_type: Option<String>,
    /// Flash attention: auto (off for f16, on for quantized KV), on or off [default: auto].
    #[arg(long, env = "SEMANTIC_FLASH_ATTN")]
    flash_attn: Option<String>,
    /// Agents resident in the engine at once, running or idle, one KV stream each [default: 8].
    #[arg(long, env = "SEMANTIC_RESIDENT_AGENTS")]
    resident_agents: Option<u32>,
    /// Model layers offloaded to the GPU [default: all with a GPU backend compiled in, else 0].
    #[arg(long, env = "SEMANTIC_GPU_LAYERS")]
    gpu_layers: Option<u32>,
    /// Most sequences decoding at once [default: 8].
    #[arg(long, env = "SEMANTIC_MAX_RUNNING")]
    max_running: Option<usize>,
    /// Tokens per engine step (decode + prefill chunks) [default: 512].
    #[arg(long, env = "SEMANTIC_STEP_TOKENS")]
    step_tokens: Option<usize>,
    /// Admission queue bound [default: 64].
    #[arg(long, env = "SEMANTIC_QUEUE_CAPACITY")]
    queue_capacity: Option<usize>,
    /// Completion length when a request names none [default: 512].
    #[arg(long, env = "SEMANTIC_DEFAULT_MAX_TOKENS")]
    default_max_tokens: Option<usize>,
    /// RAM budget for warm agents (exported KV states), MiB [default: 1024].
    #[arg(long, env = "SEMANTIC_MEMORY_WARM_MB")]
    memory_warm_mb: Option<u64>,
    /// Disk budget for cold agent files, GiB [default: 20].
    #[arg(long, env = "SEMANTIC_MEMORY_DISK_GB")]
    memory_disk_gb: Option<f64>,
    /// API key, at least 8 characters (repeatable; env: comma-separated). Each key is its own agent namespace.
    #[arg(long = "api-key", env = "SEMANTIC_API_KEYS", value_delimiter = ',')]
    api_keys: Vec<String>,
    /// File with one API key per line (`#` comments and blank lines skipped).
    #[arg(long, env = "SEMANTIC_API_KEY_FILE")]
    api_key_file: Option<PathBuf>,
    /// Admin key for /admin/*, at least 8 characters (disabled without one).
    #[arg(long, env = "SEMANTIC_ADMIN_KEY")]
    admin_key: Option<String>,
    /// File holding the admin key (its first line that is not blank or a `#` comment).
    #[arg(long, env = "SEMANTIC_ADMIN_KEY_FILE")]
    admin_key_file: Option<PathBuf>,
    /// Encrypt agent files at rest with the 256-bit master key in this file (32 raw bytes or 64
    /// hex digits; keep it mode 0600). Without one, agent files are plaintext.
    #[arg(long, env = "SEMANTIC_ENCRYPTION_KEY_FILE")]
    encryption_key_file: Option<PathBuf>,
    /// Require an API key for /metrics [default: public] (env: 1/0, true/false, yes/no, on/off).
    #[arg(long, env = "SEMANTIC_METRICS_PRIVATE", value_parser = BoolishValueParser::new())]
    metrics_private: bool,
    /// Seconds in-flight requests get to finish at shutdown [default: 30].
    #[arg(long, env = "SEMANTIC_SHUTDOWN_GRACE_SECS")]
    shutdown_grace_secs: Option<u64>,
    /// Requests per second per API key (unauthenticated callers share one bucket), 0 = unlimited [default: 0].
    #[arg(long, env = "SEMANTIC_RATE_LIMIT_RPS")]
    rate_limit_rps: Option<f64>,
    /// Requests a key may make at once above its rate [default: the rate rounded up].
    #[arg(long, env = "SEMANTIC_RATE_LIMIT_BURST")]
    rate_limit_burst: Option<u32>,
    /// Requests per second for the whole server, 0 = unlimited [default: 0].
    #[arg(long, env = "SEMANTIC_GLOBAL_RATE_LIMIT_RPS")]
    global_rate_limit_rps: Option<f64>,
    /// Server-wide burst [default: the global rate rounded up].
    #[arg(long, env = "SEMANTIC_GLOBAL_RATE_LIMIT_BURST")]
    global_rate_limit_burst: Option<u32>,
    /// Largest request body in bytes (larger: 413) [default: 8388608].
    #[arg(long, env = "SEMANTIC_MAX_BODY_BYTES")]
    max_body_bytes: Option<u64>,
    /// Seconds a non-streaming generation may take (then 504, and it is cancelled) [default: 600].
    #[arg(long, env = "SEMANTIC_REQUEST_TIMEOUT_SECS")]
    request_timeout_secs: Option<u64>,
    /// Seconds a stream may go without a token (then an error event, and it is cancelled) [default: 120].
    #[arg(long, env = "SEMANTIC_STREAM_IDLE_TIMEOUT_SECS")]
    stream_idle_timeout_secs: Option<u64>,
    /// Seconds a client may take to send a request's headers; an idle keep-alive connection is
    /// closed after it too [default: 20].
    #[arg(long, env = "SEMANTIC_HEADER_TIMEOUT_SECS")]
    header_timeout_secs: Option<u64>,
    /// Seconds a client may take to send a request's body (then 408) [default: 60].
    #[arg(long, env = "SEMANTIC_BODY_TIMEOUT_SECS")]
    body_timeout_secs: Option<u64>,
    /// Most open client connections; past it a new connection gets a 503 with Retry-After and is
    /// closed [default: 1024].
    #[arg(long, env = "SEMANTIC_MAX_CONNECTIONS")]
    max_connections: Option<u32>,
    /// Seconds a finished turn may wait for disk while requests keep the server busy (1-3600);
    /// an idle server writes after 1 s [default: 5].
    #[arg(long, env = "SEMANTIC_PERSIST_WITHIN_SECS")]
    persist_within_secs: Option<u64>,
    /// Most stored Responses (`/v1/responses`, `store: true`) kept; the oldest go first [default: 10000].
    #[arg(long, env = "SEMANTIC_RESPONSES_MAX")]
    responses_max: Option<usize>,
    /// Origin allowed to call from a browser (repeatable; env: comma-separated; `*` = any) [default: none, no CORS].
    #[arg(long = "cors-origin", env = "SEMANTIC_CORS_ORIGINS", value_delimiter = ',')]
    cors_origins: Vec<String>,
}

/// A resolved configuration (paths absolute) and where its cache directory came from.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The configuration, every path absolute.
    pub config: Config,
    /// The working directory, when the cache directory was given relative to it (the default is).
    pub cache_dir_relative_to: Option<PathBuf>,
}

impl CommonArgs {
    /// Flags + env over the TOML file over defaults, paths made absolute.
    pub fn resolve(&self) -> Result<Config> {
        Ok(self.resolve_located()?.config)
    }

    /// [`CommonArgs::resolve`], also saying whether the cache directory was relative.
    pub fn resolve_located(&self) -> Result<Resolved> {
        let flags = RawConfig {
            model: self.model.clone(),
            model_alias: Some(self.model_alias.clone()),
            cache_dir: self.cache_dir.clone(),
            models_dir: self.models_dir.clone(),
            host: self.host.clone(),
            port: self.port,
            allow_remote: self.allow_remote.then_some(true),
            agent_ctx: self.agent_ctx,
            threads: self.threads,
            kv_type: self.kv_type.clone(),
            flash_attn: self.flash_attn.clone(),
            resident_agents: self.resident_agents,
            gpu_layers: self.gpu_layers,
            max_running: self.max_running,
            step_tokens: self.step_tokens,
            queue_capacity: self.queue_capacity,
            default_max_tokens: self.default_max_tokens,
            memory_warm_mb: self.memory_warm_mb,
            memory_disk_gb: self.memory_disk_gb,
            api_key: Some(self.api_keys.clone()),
            api_key_file: self.api_key_file.clone(),
            admin_key: self.admin_key.clone(),
            admin_key_file: self.admin_key_file.clone(),
            encryption_key_file: self.encryption_key_file.clone(),
            metrics_private: self.metrics_private.then_some(true),
            shutdown_grace_secs: self.shutdown_grace_secs,
            rate_limit_rps: self.rate_limit_rps,
            rate_limit_burst: self.rate_limit_burst,
            global_rate_limit_rps: self.global_rate_limit_rps,
            global_rate_limit_burst: self.global_rate_limit_burst,
            max_body_bytes: self.max_body_bytes,
            request_timeout_secs: self.request_timeout_secs,
            stream_idle_timeout_secs: self.stream_idle_timeout_secs,
            header_timeout_secs: self.header_timeout_secs,
            body_timeout_secs: self.body_timeout_secs,
            max_connections: self.max_connections,
            persist_within_secs: self.persist_within_secs,
            responses_max: self.responses_max,
            cors_origin: Some(self.cors_origins.clone()),
        };
        let file = match &self.config {
            Some(path) => {
                let layer = RawConfig::from_toml_file(path)?;
                for note in &layer.deprecations {
                    tracing::warn!(file = %path.display(), "{note}");
                }
                layer.raw
            }
            None => RawConfig::default(),
        };
        let config = Config::resolve(flags.merge(file))?;
        let cwd = std::env::current_dir().context("the working directory")?;
        let cache_dir_relative_to = config.cache_dir.is_relative().then(|| cwd.clone());
        Ok(Resolved { config: config.anchored(&cwd), cache_dir_relative_to })
    }

    /// The model named by `--model` or `SEMANTIC_MODEL`, if any (not the TOML file or the default).
    pub fn model_flag(&self) -> Option<&Path> {
        self.model.as_deref()
    }
}

/// Starts the step thread, loading the model on it.
pub fn start_scheduler(config: &Config, scheduler: SchedulerConfig) -> Result<Scheduler> {
    let engine_config = config.clone();
    Scheduler::spawn(move || load_engine(&engine_config), scheduler).map_err(|e| match e {
        SpawnError::Engine(err) => err,
        SpawnError::Io(err) => anyhow::Error::new(err),
    })
}

/// Loads the model the configuration names.
pub fn load_engine(config: &Config) -> Result<LlamaEngine> {
    let kv_type: KvType = config.kv_type.parse().map_err(anyhow::Error::msg)?;
    let engine_config = EngineConfig {
        model_path: config.model.clone(),
        n_ctx: config.agent_ctx,
        n_batch: config.step_tokens as u32,
        n_seq_max: config.resident_agents,
        threads: config.threads,
        kv_type,
        flash_attention: config.flash_attn.parse().map_err(anyhow::Error::msg)?,
        fingerprint_cache: Some(config.cache_dir.join("fingerprints")),
        gpu_layers: config.gpu_layers,
    };
    LlamaEngine::load(&engine_config)
        .with_context(|| format!("loading {} (run scripts/setup to fetch the default model)", config.model.display()))
}

pub fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Generate(args) => crate::generate::run(args),
        Command::Info(args) => info(&args.resolve()?),
        Command::Serve(args) => crate::serve::run(args.resolve_located()?),
        Command::Perplexity(args) => crate::perplexity::run(args),
        Command::Agents(args) => crate::agents_cli::run_agents(args),
        Command::Cache(args) => crate::agents_cli::run_cache(args),
        Command::Bench(args) => crate::bench_cli::run(args),
        Command::Scenario(args) => crate::scenario_cli::run(args),
        Command::Models(args) => crate::models_cli::run(args),
        Command::Config(args) => {
            print!("{}", args.resolve()?.to_toml());
            Ok(())
        }
    }
}

fn info(config: &Config) -> Result<()> {
    // What the binary is, before the model loads: readable even when loading fails.
    println!("built for:     {}", semantic_engine::build::summary());
    println!("ggml:          {}", LlamaEngine::system_info());
    for device in LlamaEngine::devices() {
        println!("device:        {device}");
    }
    let engine = load_engine(config)?;
    let f = engine.facts();
    let c = engine.context();
    let token = |t: Option<i32>| t.map_or("none".to_string(), |t| t.to_string());
    println!("name:          {}", f.name);
    println!("architecture:  {}", f.architecture);
    println!("file:          {}", config.model.display());
    println!("fingerprint:   sha256:{}", f.fingerprint);
    println!("parameters:    {}", f.n_params);
    println!("size:          {} bytes", f.size_bytes);
    println!("layers:        {}", f.n_layer);
    println!("embedding:     {}", f.n_embd);
    println!("train context: {}", f.n_ctx_train);
    println!("vocab:         {}", f.n_vocab);
    println!("bos/eos/eot:   {} / {} / {}", token(f.bos), token(f.eos), token(f.eot));
    println!("add bos:       {}", f.add_bos);
    println!(
        "context:       {} resident agents x {} tokens each ({} KV cells, one stream per agent), batch {}, kv {}, flash attention {}, {} threads",
        c.n_seq_max,
        c.n_ctx_seq,
        c.n_ctx,
        c.n_batch,
        c.kv_type,
        if c.flash_attention { "on" } else { "off" },
        c.threads
    );
    match &f.chat_template {
        Some(t) => println!("chat template:\n{t}"),
        None => println!("chat template: none"),
    }
    Ok(())
}

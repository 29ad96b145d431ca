//! Command-line interface: subcommands, flags (each also a `SEMANTIC_*` env var) and config layering.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};
use semantic_config::{Config, RawConfig};
use semantic_engine::{Engine, EngineConfig, LlamaEngine};
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
    /// TOML config file (lowest layer above defaults).
    #[arg(long, env = "SEMANTIC_CONFIG")]
    config: Option<PathBuf>,
    /// Every setting, each optional so that an unset flag falls through to env, file and defaults
    /// (declared once, in `semantic_config::RawConfig`).
    #[command(flatten)]
    flags: RawConfig,
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
        let config = Config::resolve(self.flags.clone().merge(file))?;
        let cwd = std::env::current_dir().context("the working directory")?;
        let cache_dir_relative_to = config.cache_dir.is_relative().then(|| cwd.clone());
        Ok(Resolved { config: config.anchored(&cwd), cache_dir_relative_to })
    }

    /// The model named by `--model` or `SEMANTIC_MODEL`, if any (not the TOML file or the default).
    pub fn model_flag(&self) -> Option<&Path> {
        self.flags.model.as_deref()
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
    let engine_config = EngineConfig {
        model_path: config.model.clone(),
        n_ctx: config.agent_ctx,
        n_batch: config.step_tokens as u32,
        n_seq_max: config.resident_agents,
        threads: config.threads,
        kv_type: config.kv_type,
        flash_attention: config.flash_attn,
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

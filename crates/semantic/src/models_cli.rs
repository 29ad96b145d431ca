//! `semantic models ls`: the registry of the models directory, offline (what `GET /v1/models` and
//! `GET /admin/models/available` list on a server with the same flags).

use anyhow::Result;
use clap::{Args, Subcommand};
use semantic_engine::{ModelEntry, ModelRegistry};

use crate::cli::CommonArgs;

/// `semantic models`.
#[derive(Debug, Args)]
pub struct ModelsArgs {
    #[command(subcommand)]
    command: ModelsCommand,
}

#[derive(Debug, Subcommand)]
enum ModelsCommand {
    /// List the GGUF files of the models directory with their facts (`*` marks `--model`).
    Ls(CommonArgs),
}

/// Runs a `semantic models` subcommand.
pub fn run(args: ModelsArgs) -> Result<()> {
    match args.command {
        ModelsCommand::Ls(common) => ls(&common),
    }
}

fn ls(common: &CommonArgs) -> Result<()> {
    let config = common.resolve()?;
    let fingerprints = config.cache_dir.join("fingerprints");
    let mut registry = ModelRegistry::scan(&config.models_dir, &config.model_ids, Some(&fingerprints))?;
    if config.model.is_file() {
        registry.include(ModelRegistry::entry(&config.model, Some(&fingerprints)));
    }
    if registry.entries.is_empty() {
        eprintln!("no GGUF files in {} (run scripts/setup, or pass --models-dir)", config.models_dir.display());
        return Ok(());
    }
    let served = registry.find_path(&config.model).map(|e| e.id.clone());
    let mut out = format!(
        "  {:<32} {:<10} {:>8} {:<8} {:>7} {:>6} {:<8} {:>10}  {}\n",
        "ID", "ARCH", "PARAMS", "QUANT", "CONTEXT", "WINDOW", "TEMPLATE", "BYTES", "SHA256"
    );
    for entry in &registry.entries {
        let mark = if served.as_deref() == Some(entry.id.as_str()) { "*" } else { " " };
        out.push_str(&format!("{mark} {}\n", row(entry)));
    }
    print!("{out}");
    Ok(())
}

fn row(e: &ModelEntry) -> String {
    let sha = e.fingerprint.map_or_else(|| "-".to_string(), |f| f.to_hex()[..12].to_string());
    match &e.info {
        Ok(i) => format!(
            "{:<32} {:<10} {:>8} {:<8} {:>7} {:>6} {:<8} {:>10}  {sha}",
            e.id,
            i.architecture,
            format!("{:.0}M", i.n_params as f64 / 1e6),
            i.quantization.as_deref().unwrap_or("-"),
            i.context_length.map_or("-".into(), |c| c.to_string()),
            i.sliding_window.map_or("-".into(), |w| w.to_string()),
            if i.has_chat_template { "yes" } else { "no" },
            e.size_bytes,
        ),
        Err(reason) => format!("{:<32} not servable: {reason}", e.id),
    }
}

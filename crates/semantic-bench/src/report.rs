//! All results of one bench run, written as JSON and as a markdown report with tables and ratios
//! (plots come from `plot.rs`).

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::Serialize;

use crate::kv::{KvRow, LlamaBench};
use crate::scenario::{MultiResult, StaggeredResult, ThroughputRow, TtftExtras, TtftRow};
use crate::stats::Summary;
use crate::target::Kind;

/// The machine the run happened on.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Machine {
    /// CPU model name.
    pub cpu: String,
    /// Logical CPUs.
    pub cpus: usize,
    /// RAM, GiB.
    pub ram_gib: f64,
    /// `uname -sr`-like string.
    pub os: String,
}

impl Machine {
    /// Reads /proc (Linux); fields stay empty elsewhere.
    pub fn probe() -> Self {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find_map(|l| {
                l.strip_prefix("model name").and_then(|r| r.split_once(':')).map(|(_, v)| v.trim().to_string())
            })
            .unwrap_or_default();
        let ram_gib = std::fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:").map(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>()))
            .and_then(Result::ok)
            .map_or(0.0, |kb| kb / 1024.0 / 1024.0);
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease")
            .map(|r| format!("Linux {}", r.trim()))
            .unwrap_or_default();
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { cpu, cpus, ram_gib, os }
    }
}

/// Everything one run measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Results {
    /// Where.
    pub machine: Machine,
    /// The command that produced this.
    pub command: String,
    /// Model file and its size.
    pub model: String,
    /// Compute threads of every server.
    pub threads: u32,
    /// Targets measured.
    pub targets: Vec<Kind>,
    /// TTFT rows.
    pub ttft: Vec<TtftRow>,
    /// Restart times and disk bytes seen during the TTFT scenario, per target.
    pub ttft_extras: Vec<(Kind, TtftExtras)>,
    /// Multi-agent workload per target.
    pub multi_agent: Vec<MultiResult>,
    /// The shared-prefix workload, per target.
    #[serde(default)]
    pub shared_prefix: Vec<MultiResult>,
    /// Throughput rows.
    pub throughput: Vec<ThroughputRow>,
    /// Staggered arrivals per target.
    pub staggered: Vec<StaggeredResult>,
    /// KV types (semantic).
    pub kv_types: Vec<KvRow>,
    /// Start-up with many stored agents (semantic only).
    pub startup: Option<crate::startup::StartupResult>,
    /// Coordination scenario (semantic only).
    #[serde(default)]
    pub coordination: Option<crate::coordination::CoordinationResult>,
    /// Soak scenario (semantic only).
    #[serde(default)]
    pub soak: Option<crate::soak::SoakResult>,
    /// llama-bench reference.
    pub llama_bench: Option<LlamaBench>,
    /// Scenarios that failed, with the reason.
    pub errors: Vec<String>,
    /// 1-minute load average after each scenario (a value well above the threads used means
    /// something else competed for the CPUs and the figures are suspect).
    pub load_average: Vec<(String, f64)>,
}

/// The 1-minute load average (Linux), 0 elsewhere.
pub fn load_average() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0.0)
}

/// A markdown table's header and rule; the first column is right-aligned (a number), the next
/// `label_columns - 1` left-aligned, the rest right-aligned.
fn table_head(md: &mut String, columns: &[String], label_columns: usize) {
    let _ = writeln!(md, "| {} |", columns.join(" | "));
    let rule: Vec<&str> =
        (0..columns.len()).map(|i| if i == 0 || i >= label_columns { "---:" } else { "---" }).collect();
    let _ = writeln!(md, "|{}|", rule.join("|"));
}

fn cell(summary: Option<Summary>, unit_scale: f64, decimals: usize) -> String {
    match summary {
        Some(s) if s.n > 1 => format!(
            "{:.d$} ({:.d$}–{:.d$})",
            s.median * unit_scale,
            s.min * unit_scale,
            s.max * unit_scale,
            d = decimals
        ),
        Some(s) => format!("{:.d$}", s.median * unit_scale, d = decimals),
        None => "–".into(),
    }
}

fn ratio(peer: Option<f64>, ours: Option<f64>) -> String {
    match (peer, ours) {
        (Some(p), Some(o)) if o > 0.0 => format!("{:.1}×", p / o),
        _ => "–".into(),
    }
}

impl Results {
    fn ttft_row(&self, target: Kind, context: usize, mode: &str) -> Option<&TtftRow> {
        self.ttft.iter().find(|r| r.target == target && r.context == context && r.mode == mode)
    }

    fn contexts(&self) -> Vec<usize> {
        let mut contexts: Vec<usize> = self.ttft.iter().map(|r| r.context).collect();
        contexts.sort_unstable();
        contexts.dedup();
        contexts
    }

    /// Semantic's prefill rate over HTTP: prompt tokens / cold TTFT, median over the cold
    /// samples at the largest context up to `at_most` tokens.
    pub fn semantic_prefill_tok_s(&self, at_most: usize) -> Option<f64> {
        let context = self.contexts().into_iter().filter(|c| *c <= at_most).max()?;
        let row = self.ttft_row(Kind::Semantic, context, "cold")?;
        let rates: Vec<f64> =
            row.samples.iter().filter_map(|s| s.prompt_tokens.map(|p| p as f64 / (s.ttft_ms / 1e3))).collect();
        Summary::of(&rates).map(|s| s.median)
    }

    /// Semantic's single-agent decode rate (throughput scenario at concurrency 1).
    pub fn semantic_decode_tok_s(&self) -> Option<f64> {
        self.throughput.iter().find(|r| r.target == Kind::Semantic && r.concurrency == 1).and_then(|r| r.decode_tok_s)
    }

    /// Writes `results.json` and `BENCHMARKS-run.md` into `dir`.
    pub fn write(&self, dir: &Path, plots: &[String]) -> Result<()> {
        std::fs::write(dir.join("results.json"), serde_json::to_string_pretty(self)?)?;
        std::fs::write(dir.join("report.md"), self.markdown(plots))?;
        Ok(())
    }

    /// The markdown report.
    pub fn markdown(&self, plots: &[String]) -> String {
        let mut md = String::new();
        let m = &self.machine;
        let _ = writeln!(md, "# semantic bench\n");
        let _ = writeln!(
            md,
            "Machine: {} ({} CPUs, {:.0} GiB RAM, {}). Model: {}. Threads: {}.\n",
            m.cpu, m.cpus, m.ram_gib, m.os, self.model, self.threads
        );
        let _ = writeln!(md, "Reproduce: `{}`\n", self.command);
        let peers: Vec<Kind> = self.targets.iter().copied().filter(|k| *k != Kind::Semantic).collect();
        self.ttft_markdown(&mut md, &peers);
        if let Some(first) = self.multi_agent.first() {
            let agents = first.turns.first().map_or(0, |t| t.ttft_ms.len());
            let title =
                format!("Multi-agent workload ({agents} agents × {} turns, restart in the middle)", first.turns.len());
            multi_markdown(&mut md, &title, &self.multi_agent);
        }
        if let Some(first) = self.shared_prefix.first() {
            let agents = first.turns.first().map_or(0, |t| t.ttft_ms.len());
            let title = format!(
                "Shared prefix ({agents} agents whose first prompts share instructions and a document, sent at once; {} turns)",
                first.turns.len()
            );
            multi_markdown(&mut md, &title, &self.shared_prefix);
        }
        self.throughput_markdown(&mut md, &peers);
        self.staggered_markdown(&mut md);
        self.kv_markdown(&mut md);
        self.startup_markdown(&mut md);
        self.coordination_markdown(&mut md);
        self.soak_markdown(&mut md);
        self.engine_markdown(&mut md);
        if !plots.is_empty() {
            let _ = writeln!(md, "## Plots\n");
            for plot in plots {
                let _ = writeln!(md, "![{plot}]({plot})\n");
            }
        }
        if !self.load_average.is_empty() {
            let loads: Vec<String> = self.load_average.iter().map(|(k, v)| format!("{k} {v:.2}")).collect();
            let _ = writeln!(md, "1-minute load average after each scenario: {}.\n", loads.join(", "));
        }
        if !self.errors.is_empty() {
            let _ = writeln!(md, "## Errors\n");
            for e in &self.errors {
                let _ = writeln!(md, "- {e}");
            }
        }
        md
    }

    fn ttft_markdown(&self, md: &mut String, peers: &[Kind]) {
        if self.ttft.is_empty() {
            return;
        }
        let _ = writeln!(md, "## TTFT (ms, median (min–max))\n");
        let _ = writeln!(
            md,
            "cold = a new agent's first turn; hot = its second turn right after; warm-after-restart = the same second turn after the server process was restarted (llama-server: slot saved before and restored after by the client, restore time included).\n"
        );
        let mut columns = vec!["context".to_string(), "mode".to_string()];
        columns.extend(self.targets.iter().map(|t| t.name().to_string()));
        columns.extend(peers.iter().map(|p| format!("{} ÷ semantic", p.name())));
        table_head(md, &columns, 2);
        for context in self.contexts() {
            for mode in ["cold", "warm-after-restart", "hot"] {
                let _ = write!(md, "| {context} | {mode} |");
                for t in &self.targets {
                    let _ = write!(md, " {} |", cell(self.ttft_row(*t, context, mode).and_then(|r| r.summary), 1.0, 0));
                }
                let ours = self.ttft_row(Kind::Semantic, context, mode).and_then(|r| r.summary).map(|s| s.median);
                for p in peers {
                    let peer = self.ttft_row(*p, context, mode).and_then(|r| r.summary).map(|s| s.median);
                    let _ = write!(md, " {} |", ratio(peer, ours));
                }
                let _ = writeln!(md);
            }
        }
        let _ = writeln!(md, "\nSpeed-up over each server's own cold TTFT (cold ÷ mode):\n");
        let mut columns = vec!["context".to_string()];
        for t in &self.targets {
            columns.extend([format!("{} warm-after-restart", t.name()), format!("{} hot", t.name())]);
        }
        table_head(md, &columns, 1);
        for context in self.contexts() {
            let _ = write!(md, "| {context} |");
            for t in &self.targets {
                let median = |mode| self.ttft_row(*t, context, mode).and_then(|r| r.summary).map(|s| s.median);
                let _ = write!(
                    md,
                    " {} | {} |",
                    ratio(median("cold"), median("warm-after-restart")),
                    ratio(median("cold"), median("hot"))
                );
            }
            let _ = writeln!(md);
        }
        self.overhead_markdown(md);
        let mut lines = Vec::new();
        for (kind, extras) in &self.ttft_extras {
            let stops = Summary::of(&extras.restarts.iter().map(|r| r.0).collect::<Vec<_>>());
            let starts = Summary::of(&extras.restarts.iter().map(|r| r.1).collect::<Vec<_>>());
            lines.push(format!(
                "- {}: restart stop {} s, start until answering {} s",
                kind.name(),
                cell(stops, 1.0, 2),
                cell(starts, 1.0, 2)
            ));
            if let Some(bytes) = Summary::of(&extras.disk_bytes_per_token) {
                lines.push(format!(
                    "- {}: agent file bytes per token on disk {}",
                    kind.name(),
                    cell(Some(bytes), 1.0, 0)
                ));
            }
        }
        if !lines.is_empty() {
            let _ = writeln!(md, "\n{}", lines.join("\n"));
        }
        let _ = writeln!(md);
    }

    /// Hot hits: client TTFT minus the server's own `prompt_ms`, i.e. everything but the engine.
    fn overhead_markdown(&self, md: &mut String) {
        let overhead = |t: Kind, context: usize| {
            let row = self.ttft_row(t, context, "hot")?;
            let values: Vec<f64> =
                row.samples.iter().filter_map(|s| s.server_prompt_ms.map(|p| s.ttft_ms - p)).collect();
            Summary::of(&values)
        };
        let targets: Vec<Kind> = self
            .targets
            .iter()
            .copied()
            .filter(|t| self.contexts().iter().any(|c| overhead(*t, *c).is_some()))
            .collect();
        if targets.is_empty() {
            return;
        }
        let _ = writeln!(
            md,
            "\nTime outside the engine on a hot hit: client TTFT minus the server's own `timings.prompt_ms` (HTTP, template, tokenizer, queue, first token's sampling and streaming), ms:\n"
        );
        let mut columns = vec!["context".to_string()];
        columns.extend(targets.iter().map(|t| t.name().to_string()));
        table_head(md, &columns, 1);
        for context in self.contexts() {
            let _ = write!(md, "| {context} |");
            for t in &targets {
                let _ = write!(md, " {} |", cell(overhead(*t, context), 1.0, 1));
            }
            let _ = writeln!(md);
        }
    }
}

/// A multi-agent table: wall times, then per-turn TTFT and reuse.
fn multi_markdown(md: &mut String, title: &str, runs: &[MultiResult]) {
    {
        let Some(first) = runs.first() else { return };
        let _ = writeln!(md, "## {title}\n");
        let _ = writeln!(md, "| target | total wall s | of which restart s | wall ÷ semantic |\n|---|---:|---:|---:|");
        let ours = runs.iter().find(|r| r.target == Kind::Semantic).map(|r| r.wall_s);
        for r in runs {
            let _ = writeln!(
                md,
                "| {} | {:.1} | {:.1} | {} |",
                r.target.name(),
                r.wall_s,
                r.restart_s,
                ratio(Some(r.wall_s), ours)
            );
        }
        let _ = writeln!(
            md,
            "\nPer-turn TTFT, ms, median over agents (min–max); reused/prompt tokens as the server reported them:\n"
        );
        let mut columns = vec!["turn".to_string()];
        for r in runs {
            columns.extend([format!("{} TTFT", r.target.name()), format!("{} reused/prompt", r.target.name())]);
        }
        table_head(md, &columns, 1);
        for (i, turn) in first.turns.iter().enumerate() {
            let _ = write!(md, "| {} |", turn.turn);
            for r in runs {
                match r.turns.get(i) {
                    Some(t) => {
                        let _ = write!(md, " {} | {}/{} |", cell(t.summary, 1.0, 0), t.cached_tokens, t.prompt_tokens);
                    }
                    None => md.push_str(" – | – |"),
                }
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }
}

impl Results {
    fn throughput_markdown(&self, md: &mut String, peers: &[Kind]) {
        if self.throughput.is_empty() {
            return;
        }
        let _ = writeln!(md, "## Aggregate decode throughput (tokens/s; end-of-sequence banned)\n");
        let _ = writeln!(md, "aggregate = all generated tokens ÷ wall time (prefill included); decode = sum over agents of each stream's token rate after its first token.\n");
        let mut levels: Vec<usize> = self.throughput.iter().map(|r| r.concurrency).collect();
        levels.sort_unstable();
        levels.dedup();
        let mut columns = vec!["agents".to_string()];
        for t in &self.targets {
            columns.extend([format!("{} aggregate", t.name()), format!("{} decode", t.name())]);
        }
        columns.extend(peers.iter().map(|p| format!("semantic ÷ {} (aggregate)", p.name())));
        table_head(md, &columns, 1);
        let find = |t: Kind, c: usize| self.throughput.iter().find(|r| r.target == t && r.concurrency == c);
        for c in levels {
            let _ = write!(md, "| {c} |");
            for t in &self.targets {
                match find(*t, c) {
                    Some(r) => {
                        let decode = r.decode_tok_s.map_or("n/a (buffered)".into(), |d| format!("{d:.1}"));
                        let _ = write!(md, " {:.1} | {decode} |", r.aggregate_tok_s);
                    }
                    None => md.push_str(" – | – |"),
                }
            }
            for p in peers {
                let ours = find(Kind::Semantic, c).map(|r| r.aggregate_tok_s);
                let theirs = find(*p, c).map(|r| r.aggregate_tok_s);
                let _ = write!(md, " {} |", ratio(ours, theirs));
            }
            let _ = writeln!(md);
        }
        let _ = writeln!(md);
    }

    fn staggered_markdown(&self, md: &mut String) {
        let Some(first) = self.staggered.first() else { return };
        let _ = writeln!(
            md,
            "## Staggered arrivals (two cold {}-token prompts, B {:.1} s after A)\n",
            first.context, first.delay_s
        );
        let _ = writeln!(md, "| target | A TTFT ms | B TTFT ms | wall s |\n|---|---:|---:|---:|");
        for r in &self.staggered {
            let _ = writeln!(md, "| {} | {:.0} | {:.0} | {:.1} |", r.target.name(), r.a_ttft_ms, r.b_ttft_ms, r.wall_s);
        }
        let _ = writeln!(md);
    }

    fn kv_markdown(&self, md: &mut String) {
        if self.kv_types.is_empty() {
            return;
        }
        let _ = writeln!(md, "## KV types (semantic)\n");
        let _ = writeln!(
            md,
            "| KV type | perplexity | change | state bytes/token | agent file bytes/token |\n|---|---:|---:|---:|---:|"
        );
        for r in &self.kv_types {
            let _ = writeln!(
                md,
                "| {} | {:.3} | {:+.2}% | {:.0} | {:.0} |",
                r.kv_type, r.perplexity, r.perplexity_change_pct, r.state_bytes_per_token, r.disk_bytes_per_token
            );
        }
        let _ = writeln!(md);
    }

    fn startup_markdown(&self, md: &mut String) {
        let Some(s) = &self.startup else { return };
        let _ = writeln!(md, "## Start-up with {} stored agents (semantic)\n", s.agents);
        let _ =
            writeln!(md, "| cache directory | agents | stored MB | start until answering, s |\n|---|---:|---:|---:|");
        let _ = writeln!(md, "| empty | 0 | 0 | {} |", cell(Summary::of(&s.empty_start_s), 1.0, 2));
        let _ = writeln!(
            md,
            "| stored | {} | {:.1} | {} |",
            s.listed,
            s.stored_bytes as f64 / 1e6,
            cell(Summary::of(&s.stored_start_s), 1.0, 2)
        );
        let _ = writeln!(
            md,
            "\nThe SIGTERM after making them ({} agents not yet on disk, written before the exit) took {:.2} s. \
             After the restarts the first agent's next turn reused {} of {} prompt tokens from disk, first token \
             after {:.0} ms.\n",
            s.dirty_at_stop, s.flush_stop_s, s.next_turn_cached, s.next_turn_prompt, s.next_turn_ttft_ms
        );
    }

    fn coordination_markdown(&self, md: &mut String) {
        let Some(c) = &self.coordination else { return };
        let _ = writeln!(md, "## Coordination: {} agents × {} rounds, broadcast (semantic)\n", c.agents, c.rounds);
        let _ = writeln!(md, "| way | requests | wall time, s |\n|---|---:|---:|");
        let _ = writeln!(
            md,
            "| rounds concurrent (`POST …/round`) | {} | {} |",
            c.rounds,
            cell(Summary::of(&c.concurrent_s), 1.0, 2)
        );
        let _ = writeln!(
            md,
            "| the same turns one at a time (`POST …/turn`) | {} | {} |",
            c.rounds * c.agents,
            cell(Summary::of(&c.sequential_s), 1.0, 2)
        );
        let ratio = match (Summary::of(&c.concurrent_s), Summary::of(&c.sequential_s)) {
            (Some(a), Some(b)) if a.median > 0.0 => format!("{:.2}×", b.median / a.median),
            _ => "–".into(),
        };
        let _ = writeln!(
            md,
            "\nConcurrent rounds are {ratio} faster (medians). Tokens generated per run: {:?}. Over the first \
             concurrent run, {} of {} prompt tokens were reused from each agent's own memory.\n",
            c.completion_tokens, c.cached_tokens, c.prompt_tokens
        );
    }

    fn soak_markdown(&self, md: &mut String) {
        let Some(s) = &self.soak else { return };
        let _ = writeln!(md, "## Soak: {:.0} s of mixed load (semantic)\n", s.duration_s);
        let _ = writeln!(
            md,
            "{} returning-agent turns, {} short-lived agents (one turn, then deleted), {} clients that hung up \
             mid-stream, {} failed requests; {} evictions. Warm-up: the first {:.0} s.\n",
            s.turns, s.ephemeral, s.hangups, s.failures, s.evictions, s.warmup_s
        );
        let _ =
            writeln!(md, "| resource | first sample | after warm-up (min–max) | last sample |\n|---|---:|---:|---:|");
        let after: Vec<&crate::soak::SoakSample> = s.samples.iter().filter(|x| x.t_s >= s.warmup_s).collect();
        let rows: [(&str, crate::soak::SampleField, f64); 4] = [
            ("RSS, MiB", |x| x.rss_bytes, 1.0 / 1048576.0),
            ("open file descriptors", |x| x.open_fds, 1.0),
            ("KV cells reserved", |x| x.kv_cells, 1.0),
            ("agent files on disk, MiB", |x| x.disk_bytes, 1.0 / 1048576.0),
        ];
        for (name, f, scale) in rows {
            let (lo, hi) =
                after.iter().map(|x| f(x) * scale).fold((f64::MAX, f64::MIN), |(a, b), v| (a.min(v), b.max(v)));
            let first = s.samples.first().map_or(0.0, |x| f(x) * scale);
            let last = s.samples.last().map_or(0.0, |x| f(x) * scale);
            let _ = writeln!(md, "| {name} | {first:.1} | {lo:.1}–{hi:.1} | {last:.1} |");
        }
        let growth = s.rss_growth_pct.map_or("–".into(), |g| format!("{g:+.1} %"));
        let leaks = if s.leaks.is_empty() { "none".to_string() } else { s.leaks.join(", ") };
        let _ = writeln!(
            md,
            "\nRSS growth after warm-up (median of the last fifth over the first): {growth} (goal < 5 %). \
             Resources that kept growing after warm-up: {leaks}.\n"
        );
        for e in &s.errors {
            let _ = writeln!(md, "- failed request: {e}");
        }
    }

    fn engine_markdown(&self, md: &mut String) {
        let Some(lb) = &self.llama_bench else { return };
        let _ = writeln!(md, "## semantic over HTTP vs llama-bench (same GGUF, same threads)\n");
        let _ = writeln!(md, "| figure | semantic | llama-bench | ratio |\n|---|---:|---:|---:|");
        let prefill = self.semantic_prefill_tok_s(1024);
        let decode = self.semantic_decode_tok_s();
        let fmt = |v: Option<f64>| v.map_or("–".into(), |v| format!("{v:.1}"));
        let share = |v: Option<f64>, r: f64| v.map_or("–".into(), |v| format!("{:.2}", v / r));
        let _ = writeln!(
            md,
            "| prefill tok/s (cold TTFT at ≤1K context vs pp{}) | {} | {:.1} | {} |",
            lb.prompt,
            fmt(prefill),
            lb.prompt_tok_s,
            share(prefill, lb.prompt_tok_s)
        );
        let _ = writeln!(
            md,
            "| decode tok/s (1 agent vs tg{}) | {} | {:.1} | {} |",
            lb.gen,
            fmt(decode),
            lb.gen_tok_s,
            share(decode, lb.gen_tok_s)
        );
        let _ = writeln!(md);
    }
}

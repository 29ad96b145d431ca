//! The soak scenario (semantic only): for a set duration, client threads drive a pool of
//! returning agents (conversations that grow a few turns, then start over, as a restarted client
//! does), short-lived agents (one turn, then deleted) and clients that hang up mid-stream, against
//! a server with two resident agents and 8 MiB of warm RAM, so agents are evicted to RAM and disk
//! all the time. Every few seconds it samples the server's RSS, open file descriptors, reserved
//! KV cells and agent bytes on disk from `/metrics`, then judges the curves after warm-up: RSS
//! growth (median of the first fifth vs the last fifth) and, for every counted resource, whether
//! it kept growing (the last fifth's floor above the first fifth's ceiling).

use std::io::Read;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::corpus::Corpus;
use crate::http;
use crate::progress::Progress;
use crate::target::{Agent, Server, TargetSpec};

/// Knobs of the soak scenario.
#[derive(Debug, Clone)]
pub struct SoakOptions {
    /// How long the load runs.
    pub duration: Duration,
    /// Client threads.
    pub clients: usize,
    /// Returning agents in the pool (well over the two resident ones, so they are evicted).
    pub agents: usize,
    /// Tokens each returning agent's system prompt takes from the corpus.
    pub document_tokens: usize,
    /// Tokens per reply.
    pub reply_tokens: usize,
}

/// Reads one counted resource out of a sample.
pub type SampleField = fn(&SoakSample) -> f64;

/// One sample of the server's resources.
#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct SoakSample {
    /// Seconds since the load started.
    pub t_s: f64,
    /// Resident set size, bytes.
    pub rss_bytes: f64,
    /// Open file descriptors.
    pub open_fds: f64,
    /// KV cells reserved by requests and hot agents.
    pub kv_cells: f64,
    /// Bytes of agent files on disk.
    pub disk_bytes: f64,
    /// Requests finished so far (all kinds).
    pub requests: u64,
}

/// What the soak scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct SoakResult {
    /// Seconds of load.
    pub duration_s: f64,
    /// Seconds counted as warm-up (not judged).
    pub warmup_s: f64,
    /// The samples, in order.
    pub samples: Vec<SoakSample>,
    /// Requests finished, by kind: returning-agent turns, short-lived agents, hang-ups.
    pub turns: u64,
    /// Short-lived agents (made, used once, deleted).
    pub ephemeral: u64,
    /// Streams cut by the client after the first event.
    pub hangups: u64,
    /// Requests that failed (the first few are in `errors`).
    pub failures: u64,
    /// The first failures.
    pub errors: Vec<String>,
    /// Agent evictions the server counted (all tiers).
    pub evictions: u64,
    /// RSS growth after warm-up, percent (median of the last fifth over the first fifth).
    pub rss_growth_pct: Option<f64>,
    /// Resources that kept growing after warm-up (empty: no leak seen).
    pub leaks: Vec<String>,
}

/// A series value from `/metrics` text (the first line that starts with `series` and a space).
pub(crate) fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.trim().parse().ok())
}

fn sample(server: &Server, t_s: f64, requests: u64) -> Result<SoakSample> {
    let response = http::request(server.addr, "GET", "/metrics", None)?;
    let text = String::from_utf8_lossy(&response.body);
    let get = |series: &str| metric(&text, series).ok_or_else(|| anyhow::anyhow!("/metrics lacks {series}"));
    Ok(SoakSample {
        t_s,
        rss_bytes: get("semantic_process_resident_bytes")?,
        open_fds: get("semantic_process_open_fds")?,
        kv_cells: get("semantic_kv_cells_reserved")?,
        disk_bytes: get("semantic_agent_memory_bytes{store=\"disk\"}")?,
        requests,
    })
}

/// The median of `values` (0 for none).
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    match values.len() {
        0 => 0.0,
        n if n % 2 == 1 => values[n / 2],
        n => (values[n / 2 - 1] + values[n / 2]) / 2.0,
    }
}

/// Judges the samples after `warmup_s`: RSS growth and the resources that kept growing.
pub(crate) fn judge(samples: &[SoakSample], warmup_s: f64) -> (Option<f64>, Vec<String>) {
    let after: Vec<&SoakSample> = samples.iter().filter(|s| s.t_s >= warmup_s).collect();
    let fifth = after.len() / 5;
    if fifth == 0 {
        return (None, Vec::new());
    }
    let (first, last) = (&after[..fifth], &after[after.len() - fifth..]);
    let series = |part: &[&SoakSample], f: fn(&SoakSample) -> f64| part.iter().map(|s| f(s)).collect::<Vec<_>>();
    let rss = |s: &SoakSample| s.rss_bytes;
    let (rss_first, rss_last) = (median(series(first, rss)), median(series(last, rss)));
    let growth = (rss_first > 0.0).then(|| (rss_last - rss_first) / rss_first * 100.0);
    let counted: [(&str, SampleField); 4] = [
        ("rss_bytes", |s| s.rss_bytes),
        ("open_fds", |s| s.open_fds),
        ("kv_cells", |s| s.kv_cells),
        ("disk_bytes", |s| s.disk_bytes),
    ];
    let leaks = counted
        .iter()
        .filter(|(_, f)| {
            let ceiling = series(first, *f).into_iter().fold(f64::MIN, f64::max);
            let floor = series(last, *f).into_iter().fold(f64::MAX, f64::min);
            floor > ceiling
        })
        .map(|(name, _)| name.to_string())
        .collect();
    (growth, leaks)
}

/// Shared state of the client threads.
struct Load<'a> {
    server: &'a Server,
    options: &'a SoakOptions,
    prompts: Vec<String>,
    end: Instant,
    stop: AtomicBool,
    counts: [AtomicU64; 4],
    errors: Mutex<Vec<String>>,
}

const QUESTIONS: [&str; 4] = [
    "Summarise the text in one sentence.",
    "What is the main point?",
    "Name one detail you noticed.",
    "Say more about that.",
];

impl Load<'_> {
    /// One client's loop until the end: a fixed rotation of actions over a per-client seed.
    fn client(&self, index: usize) {
        let mut history: Vec<Vec<Value>> = vec![Vec::new(); self.options.agents];
        for step in (0..).take(1_000_000) {
            if Instant::now() >= self.end || self.stop.load(Ordering::Relaxed) {
                return;
            }
            let pick = (index * 7919 + step * 104_729) % self.options.agents;
            let outcome = match step % 8 {
                6 => self.ephemeral(index, step).map(|()| 1),
                7 => self.hangup(pick).map(|()| 2),
                _ => self.turn(pick, &mut history[pick]).map(|()| 0),
            };
            match outcome {
                Ok(kind) => _ = self.counts[kind].fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    self.counts[3].fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut errors) = self.errors.lock() {
                        if errors.len() < 10 {
                            errors.push(format!("{e:#}"));
                        }
                    }
                }
            }
        }
    }

    fn agent(id: String) -> Agent {
        Agent { id, slot: 0 }
    }

    /// A returning agent's next turn; after four turns its client starts the conversation over.
    fn turn(&self, pick: usize, history: &mut Vec<Value>) -> Result<()> {
        if history.len() >= 8 {
            history.clear();
        }
        if history.is_empty() {
            history.push(json!({"role": "system", "content": self.prompts[pick]}));
        }
        history.push(json!({"role": "user", "content": QUESTIONS[(history.len() / 2) % QUESTIONS.len()]}));
        let agent = Self::agent(format!("soak-{pick}"));
        let stream = self.server.chat(&agent, history, self.options.reply_tokens, &json!({}))?;
        history.push(json!({"role": "assistant", "content": stream.text}));
        Ok(())
    }

    /// A short-lived agent: one turn, then deleted.
    fn ephemeral(&self, index: usize, step: usize) -> Result<()> {
        let id = format!("soak-tmp-{index}-{step}");
        let messages = [json!({"role": "user", "content": QUESTIONS[step % QUESTIONS.len()]})];
        self.server.chat(&Self::agent(id.clone()), &messages, self.options.reply_tokens, &json!({}))?;
        let response = http::request(self.server.addr, "DELETE", &format!("/v1/agents/{id}"), None)?;
        if response.status != 200 && response.status != 204 {
            bail!("DELETE /v1/agents/{id}: HTTP {}", response.status);
        }
        Ok(())
    }

    /// A client that hangs up after the first event of a long reply.
    fn hangup(&self, pick: usize) -> Result<()> {
        let body = json!({"messages": [{"role": "system", "content": self.prompts[pick]},
                                       {"role": "user", "content": "Write a long story."}],
                          "stream": true, "max_tokens": 256, "agent_id": format!("soak-cut-{pick}")});
        let mut reader = http::open_stream(self.server.addr, "/v1/chat/completions", &body)?;
        // Past the role event into the generated tokens, then drop the connection.
        let (mut seen, mut buf) = (Vec::new(), [0u8; 512]);
        for _ in 0..64 {
            let n = reader.read(&mut buf)?;
            seen.extend_from_slice(&buf[..n]);
            if n == 0 || seen.windows(5).filter(|w| *w == b"data:").count() >= 3 {
                break;
            }
        }
        Ok(())
    }
}

/// Runs the soak: starts a server, drives the load, samples, judges.
pub fn soak(
    spec: &TargetSpec,
    options: &SoakOptions,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<SoakResult> {
    let mut spec = spec.clone();
    // Two resident agents of 1,024 cells each and 8 MiB of warm RAM: evictions to RAM and disk.
    spec.ctx = 2048;
    spec.extra_args.extend(["--memory-warm-mb", "8", "--persist-within-secs", "1"].map(String::from));
    let mut server = Server::start(&spec, 2, work, "soak")?;
    let prompts = (0..options.agents).map(|_| corpus.take(options.document_tokens)).collect();
    let started = Instant::now();
    let load = Load {
        server: &server,
        options,
        prompts,
        end: started + options.duration,
        stop: AtomicBool::new(false),
        counts: Default::default(),
        errors: Mutex::new(Vec::new()),
    };
    let every = (options.duration / 60).clamp(Duration::from_secs(1), Duration::from_secs(10));
    let samples = std::thread::scope(|scope| -> Result<Vec<SoakSample>> {
        let clients: Vec<_> = (0..options.clients)
            .map(|i| {
                scope.spawn({
                    let load = &load;
                    move || load.client(i)
                })
            })
            .collect();
        let mut samples = Vec::new();
        let sampled = (|| {
            while Instant::now() < load.end {
                let done = load.counts.iter().map(|c| c.load(Ordering::Relaxed)).sum();
                samples.push(sample(load.server, started.elapsed().as_secs_f64(), done)?);
                // The sampling interval, not synchronisation.
                std::thread::sleep(every.min(load.end.saturating_duration_since(Instant::now())));
            }
            Ok::<_, anyhow::Error>(())
        })();
        load.stop.store(true, Ordering::Relaxed);
        clients.into_iter().for_each(|c| _ = c.join());
        sampled.map(|()| samples)
    })?;
    let metrics = http::request(server.addr, "GET", "/metrics", None)?;
    let text = String::from_utf8_lossy(&metrics.body);
    let evictions = ["hot", "warm", "cold"]
        .iter()
        .filter_map(|t| metric(&text, &format!("semantic_evictions_total{{tier=\"{t}\"}}")))
        .sum::<f64>() as u64;
    let counts = load.counts.each_ref().map(|c| c.load(Ordering::Relaxed));
    let errors = load.errors.into_inner().unwrap_or_default();
    server.stop()?;
    let warmup_s = options.duration.as_secs_f64() * 0.2;
    let (rss_growth_pct, leaks) = judge(&samples, warmup_s);
    let count = |i: usize| counts[i];
    progress.step("semantic soak");
    Ok(SoakResult {
        duration_s: options.duration.as_secs_f64(),
        warmup_s,
        turns: count(0),
        ephemeral: count(1),
        hangups: count(2),
        failures: count(3),
        errors,
        samples,
        evictions,
        rss_growth_pct,
        leaks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples(values: &[f64]) -> Vec<SoakSample> {
        let at =
            |(i, v): (usize, &f64)| SoakSample { t_s: i as f64, rss_bytes: *v, open_fds: 10.0, ..Default::default() };
        values.iter().enumerate().map(at).collect()
    }

    fn check(values: &[f64], warmup_s: f64, growth: Option<f64>, leaks: &[&str]) {
        let (g, l) = judge(&samples(values), warmup_s);
        assert_eq!(g.map(|g| (g * 10.0).round() / 10.0), growth, "{values:?}");
        assert_eq!(l, leaks, "{values:?}");
    }

    #[test]
    fn judges_growth_after_warm_up_and_flags_only_what_keeps_growing() {
        // Too few samples to judge.
        check(&[1.0, 2.0, 3.0], 0.0, None, &[]);
        // Flat after a warm-up climb: no growth, no leak.
        check(&[10.0, 50.0, 100.0, 100.0, 101.0, 100.0, 99.0, 100.0, 101.0, 100.0, 100.0, 100.0], 2.0, Some(0.0), &[]);
        // Steady growth: 100 -> 109, the last fifth's floor above the first fifth's ceiling.
        let growing: Vec<f64> = (0..10).map(|i| 100.0 + i as f64).collect();
        check(&growing, 0.0, Some(8.0), &["rss_bytes"]);
        // Noisy but level: the ranges overlap.
        check(&[100.0, 104.0, 98.0, 103.0, 101.0, 99.0, 104.0, 100.0, 102.0, 101.0], 0.0, Some(-0.5), &[]);
    }

    #[test]
    fn metric_reads_a_series_by_its_full_name() {
        let text = "# TYPE a gauge\na 3\na_b 4\nb{store=\"disk\"} 5.5\n";
        assert_eq!(metric(text, "a"), Some(3.0));
        assert_eq!(metric(text, "b{store=\"disk\"}"), Some(5.5));
        assert_eq!(metric(text, "c"), None);
    }
}

//! Prometheus metrics: every series name and label is defined here. HTTP series are recorded by the
//! middleware in `ops.rs`; scheduler and agent-memory series are read from their live counters.
//! Labels are bounded: route templates (never raw paths), status codes, fixed reason/tier sets.
//!
//! The text is written by a small typed writer rather than `prometheus-client`: that crate writes
//! OpenMetrics (a trailing `# EOF`, counter families named without `_total` in HELP/TYPE), which
//! would change every TYPE line the dashboards, alerts and tests read, and its registry wants
//! metrics registered up front while ours are read from the scheduler's counters at scrape time.
//! What it would guarantee is kept here: a sample can only be written through its [`Family`] (a
//! constant, so a misspelt name does not compile), which writes HELP and TYPE first and once, and
//! label values are escaped (`\`, `"`, newline) as the text format requires.

use std::collections::BTreeMap;
use std::fmt::{Display, Write as _};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use semantic_scheduler::{Histogram, HistogramSnapshot, RequestCounters, Scheduler};

/// HTTP request counters, keyed by route template.
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, u16), u64>>,
    durations: Mutex<BTreeMap<String, std::sync::Arc<Histogram>>>,
    /// Requests refused by a rate limit (the `rate_limited` reason of `semantic_rejections_total`).
    rate_limited: AtomicU64,
    /// Model swaps by result (`SwapResult` order).
    swaps: [AtomicU64; 4],
}

impl HttpMetrics {
    /// Records one finished request.
    pub fn record(&self, route: &str, status: u16, elapsed: Duration) {
        if let Ok(mut map) = self.requests.lock() {
            *map.entry((route.to_string(), status)).or_default() += 1;
        }
        let hist = self.durations.lock().ok().map(|mut map| map.entry(route.to_string()).or_default().clone());
        if let Some(hist) = hist {
            hist.observe(elapsed);
        }
    }

    /// Counts one model swap.
    pub fn swapped(&self, result: crate::models::SwapResult) {
        self.swaps[result as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// Counts one request refused by a rate limit.
    pub fn rate_limited(&self) {
        self.rate_limited.fetch_add(1, Ordering::Relaxed);
    }
}

/// A metric family's type, as the TYPE line names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up.
    Counter,
    /// Goes up and down.
    Gauge,
    /// Buckets, sum and count.
    Histogram,
}

impl Kind {
    /// The name in a `# TYPE` line.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        }
    }
}

/// One exported metric family: the only place its name, type and help text are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Family {
    /// The series name (`semantic_*`).
    pub name: &'static str,
    /// Counter, gauge or histogram.
    pub kind: Kind,
    /// The `# HELP` text.
    pub help: &'static str,
}

const fn family(name: &'static str, kind: Kind, help: &'static str) -> Family {
    Family { name, kind, help }
}

use Kind::{Counter, Gauge, Histogram as Hist};

const HTTP_REQUESTS: Family =
    family("semantic_http_requests_total", Counter, "HTTP requests by route template and status");
const HTTP_DURATION: Family =
    family("semantic_http_request_duration_seconds", Hist, "HTTP request duration by route template");
const TTFT: Family = family("semantic_time_to_first_token_seconds", Hist, "Submission to first generated token");
const INTER_TOKEN: Family =
    family("semantic_inter_token_latency_seconds", Hist, "Gap between consecutive tokens of a stream");
const PROMPT_TOKENS: Family = family("semantic_prompt_tokens_total", Counter, "Prompt tokens of finished requests");
const PREFILL_TOKENS: Family = family("semantic_prefill_tokens_total", Counter, "Prompt tokens computed (not reused)");
const GENERATED_TOKENS: Family = family("semantic_generated_tokens_total", Counter, "Generated tokens");
const FINISHED: Family = family("semantic_requests_finished_total", Counter, "Finished generations by finish reason");
const REJECTIONS: Family = family(
    "semantic_rejections_total",
    Counter,
    "Requests refused at admission (rate limits, queue, checks) by reason",
);
const REUSED_TOKENS: Family =
    family("semantic_reused_prompt_tokens_total", Counter, "Prompt tokens reused from agent memory by source");
const LOOKUPS: Family =
    family("semantic_memory_lookups_total", Counter, "Agent memory lookups by the tier that answered (miss = none)");
const EVICTIONS: Family = family("semantic_evictions_total", Counter, "Agent evictions by the tier left");
const PERSISTS: Family = family("semantic_persist_total", Counter, "Agent files written");
const PERSIST_SECONDS: Family = family("semantic_persist_seconds_total", Counter, "Seconds spent writing agent files");
const PERSIST_FAILURES: Family =
    family("semantic_persist_failures_total", Counter, "Failed agent file writes, by reason (no_space, io, export)");
const PERSIST_BUSY: Family = family(
    "semantic_persist_busy_total",
    Counter,
    "Agents exported for persistence between steps while requests ran (--persist-within-secs reached)",
);
const PERSIST_BUSY_STALL: Family =
    family("semantic_persist_busy_stall_seconds_max", Gauge, "Longest a step waited for such an export, seconds");
const WINDOW_RECOMPUTES: Family = family(
    "semantic_window_recomputes_total",
    Counter,
    "Prompts recomputed because a sliding-window model could not cut its KV where they diverged",
);
const REJECTED_FILES: Family = family(
    "semantic_rejected_cache_files_total",
    Counter,
    "Agent files refused (corrupt, version, foreign, import, io, key)",
);
const MODEL_SWAPS: Family =
    family("semantic_model_swaps_total", Counter, "Model swaps by result (ok, rolled_back, failed, rejected)");
const AGENTS: Family = family("semantic_agents", Gauge, "Agents per tier");
const AGENT_MEMORY: Family =
    family("semantic_agent_memory_bytes", Gauge, "Bytes held by warm agents (ram) and agent files (disk)");
const KV_USAGE: Family =
    family("semantic_kv_usage_ratio", Gauge, "KV cells reserved by requests and hot agents over capacity");
const KV_CELLS: Family = family("semantic_kv_cells_reserved", Gauge, "KV cells reserved by requests and hot agents");
const QUEUE_DEPTH: Family = family("semantic_queue_depth", Gauge, "Requests admitted but not yet running");
const RUNNING: Family = family("semantic_running_sequences", Gauge, "Sequences decoding");
const DRAINING: Family = family("semantic_draining", Gauge, "1 while the server drains for shutdown");
const RESIDENT: Family =
    family("semantic_process_resident_bytes", Gauge, "Resident set size of the server process (Linux only)");
const OPEN_FDS: Family =
    family("semantic_process_open_fds", Gauge, "Open file descriptors of the server process (Linux only)");

/// Every metric family we export, in exposition order. README and the alert/dashboard files use these.
pub const FAMILIES: &[Family] = &[
    HTTP_REQUESTS,
    HTTP_DURATION,
    TTFT,
    INTER_TOKEN,
    PROMPT_TOKENS,
    PREFILL_TOKENS,
    GENERATED_TOKENS,
    FINISHED,
    REJECTIONS,
    REUSED_TOKENS,
    LOOKUPS,
    EVICTIONS,
    PERSISTS,
    PERSIST_SECONDS,
    PERSIST_FAILURES,
    PERSIST_BUSY,
    PERSIST_BUSY_STALL,
    WINDOW_RECOMPUTES,
    REJECTED_FILES,
    MODEL_SWAPS,
    AGENTS,
    AGENT_MEMORY,
    KV_USAGE,
    KV_CELLS,
    QUEUE_DEPTH,
    RUNNING,
    DRAINING,
    RESIDENT,
    OPEN_FDS,
];

/// The exposition text being written. Samples are written only through [`Exposition::family`].
#[derive(Default)]
struct Exposition(String);

impl Exposition {
    /// Starts a family: its HELP and TYPE lines, then its samples through the returned writer.
    fn family(&mut self, family: Family) -> Samples<'_> {
        let Family { name, kind, help } = family;
        let help = help.replace('\\', "\\\\").replace('\n', "\\n");
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {}", kind.as_str());
        Samples { out: &mut self.0, name }
    }
}

/// Writes one family's samples.
struct Samples<'a> {
    out: &'a mut String,
    name: &'static str,
}

impl Samples<'_> {
    /// One sample: `name{labels} value`.
    fn sample(&mut self, labels: &[(&str, &str)], value: impl Display) -> &mut Self {
        self.line("", labels, None, value)
    }

    /// A histogram's bucket, sum and count series.
    fn histogram(&mut self, labels: &[(&str, &str)], h: &HistogramSnapshot) -> &mut Self {
        for (le, count) in &h.buckets {
            let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
            self.line("_bucket", labels, Some(("le", &le)), count);
        }
        self.line("_sum", labels, None, h.sum).line("_count", labels, None, h.count)
    }

    fn line(
        &mut self,
        suffix: &str,
        labels: &[(&str, &str)],
        extra: Option<(&str, &str)>,
        value: impl Display,
    ) -> &mut Self {
        let _ = write!(self.out, "{}{suffix}", self.name);
        let mut sep = '{';
        for (label, value) in labels.iter().copied().chain(extra) {
            let _ = write!(self.out, "{sep}{label}=\"{}\"", escape_label(value));
            sep = ',';
        }
        if sep == ',' {
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
        self
    }
}

/// A label value as the text format requires: backslash, double quote and newline escaped.
fn escape_label(value: &str) -> std::borrow::Cow<'_, str> {
    if !value.contains(['\\', '"', '\n']) {
        return value.into();
    }
    let mut out = String::with_capacity(value.len() + 2);
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.into()
}

/// The whole exposition text.
pub fn render(http: &HttpMetrics, scheduler: &Scheduler) -> String {
    let mut out = Exposition::default();
    render_http(&mut out, http);
    render_requests(&mut out, scheduler.request_counters(), http);
    render_memory(&mut out, scheduler, http);
    let s = scheduler.stats();
    out.family(KV_USAGE).sample(&[], s.kv_reserved as f64 / s.kv_capacity.max(1) as f64);
    out.family(KV_CELLS).sample(&[], s.kv_reserved);
    out.family(QUEUE_DEPTH).sample(&[], s.queued);
    out.family(RUNNING).sample(&[], s.running);
    out.family(DRAINING).sample(&[], u8::from(s.draining));
    // Absent where /proc is not (macOS): no series rather than a made-up 0.
    if let Some(bytes) = resident_bytes() {
        out.family(RESIDENT).sample(&[], bytes);
    }
    if let Some(fds) = open_fds() {
        out.family(OPEN_FDS).sample(&[], fds);
    }
    out.0
}

/// `VmRSS` of `/proc/self/status` in bytes (read by hand: one line of one file, no crate needed).
fn resident_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let kb = status.lines().find_map(|l| l.strip_prefix("VmRSS:"))?.trim().strip_suffix("kB")?.trim();
    kb.parse::<u64>().ok().map(|kb| kb * 1024)
}

/// Entries of `/proc/self/fd` (less the one `read_dir` itself holds open).
fn open_fds() -> Option<u64> {
    let entries = std::fs::read_dir("/proc/self/fd").ok()?.count() as u64;
    Some(entries.saturating_sub(1))
}

fn render_http(out: &mut Exposition, http: &HttpMetrics) {
    let mut family = out.family(HTTP_REQUESTS);
    if let Ok(map) = http.requests.lock() {
        for ((route, status), n) in map.iter() {
            family.sample(&[("route", route.as_str()), ("status", &status.to_string())], n);
        }
    }
    let mut family = out.family(HTTP_DURATION);
    if let Ok(map) = http.durations.lock() {
        for (route, h) in map.iter() {
            family.histogram(&[("route", route.as_str())], &h.snapshot());
        }
    }
}

fn load(a: &AtomicU64) -> u64 {
    a.load(Ordering::Relaxed)
}

fn render_requests(out: &mut Exposition, r: &RequestCounters, http: &HttpMetrics) {
    out.family(TTFT).histogram(&[], &r.time_to_first_token.snapshot());
    out.family(INTER_TOKEN).histogram(&[], &r.inter_token.snapshot());
    out.family(PROMPT_TOKENS).sample(&[], load(&r.prompt_tokens));
    out.family(PREFILL_TOKENS).sample(&[], load(&r.prefilled_tokens));
    out.family(GENERATED_TOKENS).sample(&[], load(&r.generated_tokens));
    let mut family = out.family(FINISHED);
    for (label, n) in RequestCounters::FINISH_REASONS.iter().zip(&r.finished) {
        family.sample(&[("reason", *label)], load(n));
    }
    let mut family = out.family(REJECTIONS);
    for (label, n) in RequestCounters::REJECT_REASONS.iter().zip(&r.rejected) {
        family.sample(&[("reason", *label)], load(n));
    }
    family.sample(&[("reason", "rate_limited")], load(&http.rate_limited));
}

/// A family with one label over a fixed set of values.
fn labelled(out: &mut Exposition, family: Family, label: &str, values: &[(&str, u64)]) {
    let mut samples = out.family(family);
    for (value, n) in values {
        samples.sample(&[(label, *value)], n);
    }
}

fn render_memory(out: &mut Exposition, scheduler: &Scheduler, http: &HttpMetrics) {
    let m = scheduler.memory_stats();
    labelled(out, REUSED_TOKENS, "source", &m.reused_tokens);
    labelled(out, LOOKUPS, "tier", &m.lookups);
    labelled(out, EVICTIONS, "tier", &m.evictions);
    labelled(out, REJECTED_FILES, "reason", &m.rejected_files);
    out.family(PERSISTS).sample(&[], m.persists);
    out.family(PERSIST_SECONDS).sample(&[], m.persist_seconds);
    labelled(out, PERSIST_FAILURES, "reason", &m.persist_failures);
    out.family(PERSIST_BUSY).sample(&[], m.busy_persists);
    out.family(PERSIST_BUSY_STALL).sample(&[], m.busy_persist_stall_max_seconds);
    out.family(WINDOW_RECOMPUTES).sample(&[], m.window_recomputes);
    let swaps = crate::models::SwapResult::ALL.map(|r| (r.as_str(), load(&http.swaps[r as usize])));
    labelled(out, MODEL_SWAPS, "result", &swaps);
    labelled(out, AGENTS, "tier", &[("hot", m.hot as u64), ("warm", m.warm as u64), ("cold", m.cold as u64)]);
    labelled(out, AGENT_MEMORY, "store", &[("ram", m.warm_bytes), ("disk", m.disk_bytes)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped_and_samples_follow_their_header() {
        let mut out = Exposition::default();
        out.family(HTTP_REQUESTS).sample(&[("route", "a\"b\\c\nd"), ("status", "200")], 3).sample(&[], 1);
        assert_eq!(
            out.0,
            "# HELP semantic_http_requests_total HTTP requests by route template and status\n\
             # TYPE semantic_http_requests_total counter\n\
             semantic_http_requests_total{route=\"a\\\"b\\\\c\\nd\",status=\"200\"} 3\n\
             semantic_http_requests_total 1\n"
        );
    }

    #[test]
    fn histograms_add_le_after_their_labels() {
        let h = HistogramSnapshot { buckets: vec![(0.5, 1), (f64::INFINITY, 2)], sum: 1.25, count: 2 };
        let mut out = Exposition::default();
        out.family(HTTP_DURATION).histogram(&[("route", "/x")], &h);
        out.family(TTFT).histogram(&[], &h);
        let samples: Vec<&str> = out.0.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            samples,
            [
                "semantic_http_request_duration_seconds_bucket{route=\"/x\",le=\"0.5\"} 1",
                "semantic_http_request_duration_seconds_bucket{route=\"/x\",le=\"+Inf\"} 2",
                "semantic_http_request_duration_seconds_sum{route=\"/x\"} 1.25",
                "semantic_http_request_duration_seconds_count{route=\"/x\"} 2",
                "semantic_time_to_first_token_seconds_bucket{le=\"0.5\"} 1",
                "semantic_time_to_first_token_seconds_bucket{le=\"+Inf\"} 2",
                "semantic_time_to_first_token_seconds_sum 1.25",
                "semantic_time_to_first_token_seconds_count 2",
            ]
        );
    }

    #[test]
    fn family_names_are_unique_and_prefixed() {
        let mut names: Vec<&str> = FAMILIES.iter().map(|f| f.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FAMILIES.len());
        assert!(names.iter().all(|n| n.starts_with("semantic_")));
    }
}

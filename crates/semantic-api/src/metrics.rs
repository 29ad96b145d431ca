//! Prometheus metrics: every series name and label is defined here. HTTP series are recorded by the
//! middleware in `ops.rs`; scheduler and agent-memory series are read from their live counters.
//! Labels are bounded: route templates (never raw paths), status codes, fixed reason/tier sets.

use std::collections::BTreeMap;
use std::fmt::Write as _;
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

/// Every metric family we export: (name, type, help). README and the alert/dashboard files use these.
pub const FAMILIES: &[(&str, &str, &str)] = &[
    ("semantic_http_requests_total", "counter", "HTTP requests by route template and status"),
    ("semantic_http_request_duration_seconds", "histogram", "HTTP request duration by route template"),
    ("semantic_time_to_first_token_seconds", "histogram", "Submission to first generated token"),
    ("semantic_inter_token_latency_seconds", "histogram", "Gap between consecutive tokens of a stream"),
    ("semantic_prompt_tokens_total", "counter", "Prompt tokens of finished requests"),
    ("semantic_prefill_tokens_total", "counter", "Prompt tokens computed (not reused)"),
    ("semantic_generated_tokens_total", "counter", "Generated tokens"),
    ("semantic_requests_finished_total", "counter", "Finished generations by finish reason"),
    ("semantic_rejections_total", "counter", "Requests refused at admission (rate limits, queue, checks) by reason"),
    ("semantic_reused_prompt_tokens_total", "counter", "Prompt tokens reused from agent memory by source"),
    ("semantic_memory_lookups_total", "counter", "Agent memory lookups by the tier that answered (miss = none)"),
    ("semantic_evictions_total", "counter", "Agent evictions by the tier left"),
    ("semantic_persist_total", "counter", "Agent files written"),
    ("semantic_persist_seconds_total", "counter", "Seconds spent writing agent files"),
    ("semantic_persist_failures_total", "counter", "Failed agent file writes, by reason (no_space, io, export)"),
    (
        "semantic_persist_busy_total",
        "counter",
        "Agents exported for persistence between steps while requests ran (--persist-within-secs reached)",
    ),
    ("semantic_persist_busy_stall_seconds_max", "gauge", "Longest a step waited for such an export, seconds"),
    (
        "semantic_window_recomputes_total",
        "counter",
        "Prompts recomputed because a sliding-window model could not cut its KV where they diverged",
    ),
    (
        "semantic_rejected_cache_files_total",
        "counter",
        "Agent files refused (corrupt, version, foreign, import, io, key)",
    ),
    ("semantic_model_swaps_total", "counter", "Model swaps by result (ok, rolled_back, failed, rejected)"),
    ("semantic_agents", "gauge", "Agents per tier"),
    ("semantic_agent_memory_bytes", "gauge", "Bytes held by warm agents (ram) and agent files (disk)"),
    ("semantic_kv_usage_ratio", "gauge", "KV cells reserved by requests and hot agents over capacity"),
    ("semantic_kv_cells_reserved", "gauge", "KV cells reserved by requests and hot agents"),
    ("semantic_queue_depth", "gauge", "Requests admitted but not yet running"),
    ("semantic_running_sequences", "gauge", "Sequences decoding"),
    ("semantic_draining", "gauge", "1 while the server drains for shutdown"),
    ("semantic_process_resident_bytes", "gauge", "Resident set size of the server process (Linux only)"),
    ("semantic_process_open_fds", "gauge", "Open file descriptors of the server process (Linux only)"),
];

fn header(out: &mut String, name: &str) {
    if let Some((_, kind, help)) = FAMILIES.iter().find(|(n, _, _)| *n == name) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }
}

fn histogram(out: &mut String, name: &str, labels: &str, h: &HistogramSnapshot) {
    let sep = if labels.is_empty() { "" } else { "," };
    for (le, count) in &h.buckets {
        let le = if le.is_infinite() { "+Inf".to_string() } else { le.to_string() };
        let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{le}\"}} {count}");
    }
    let braces = if labels.is_empty() { String::new() } else { format!("{{{labels}}}") };
    let _ = writeln!(out, "{name}_sum{braces} {}", h.sum);
    let _ = writeln!(out, "{name}_count{braces} {}", h.count);
}

/// The whole exposition text.
pub fn render(http: &HttpMetrics, scheduler: &Scheduler) -> String {
    let mut out = String::new();
    header(&mut out, "semantic_http_requests_total");
    if let Ok(map) = http.requests.lock() {
        for ((route, status), n) in map.iter() {
            let _ = writeln!(out, "semantic_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}");
        }
    }
    header(&mut out, "semantic_http_request_duration_seconds");
    if let Ok(map) = http.durations.lock() {
        for (route, h) in map.iter() {
            histogram(&mut out, "semantic_http_request_duration_seconds", &format!("route=\"{route}\""), &h.snapshot());
        }
    }
    let r: &RequestCounters = scheduler.request_counters();
    header(&mut out, "semantic_time_to_first_token_seconds");
    histogram(&mut out, "semantic_time_to_first_token_seconds", "", &r.time_to_first_token.snapshot());
    header(&mut out, "semantic_inter_token_latency_seconds");
    histogram(&mut out, "semantic_inter_token_latency_seconds", "", &r.inter_token.snapshot());
    let load = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    for (name, value) in [
        ("semantic_prompt_tokens_total", load(&r.prompt_tokens)),
        ("semantic_prefill_tokens_total", load(&r.prefilled_tokens)),
        ("semantic_generated_tokens_total", load(&r.generated_tokens)),
    ] {
        header(&mut out, name);
        let _ = writeln!(out, "{name} {value}");
    }
    header(&mut out, "semantic_requests_finished_total");
    for (label, n) in RequestCounters::FINISH_REASONS.iter().zip(&r.finished) {
        let _ = writeln!(out, "semantic_requests_finished_total{{reason=\"{label}\"}} {}", load(n));
    }
    header(&mut out, "semantic_rejections_total");
    for (label, n) in RequestCounters::REJECT_REASONS.iter().zip(&r.rejected) {
        let _ = writeln!(out, "semantic_rejections_total{{reason=\"{label}\"}} {}", load(n));
    }
    let _ = writeln!(out, "semantic_rejections_total{{reason=\"rate_limited\"}} {}", load(&http.rate_limited));
    let m = scheduler.memory_stats();
    let labelled = |out: &mut String, name: &str, label: &str, values: &[(&str, u64)]| {
        header(out, name);
        for (l, v) in values {
            let _ = writeln!(out, "{name}{{{label}=\"{l}\"}} {v}");
        }
    };
    labelled(&mut out, "semantic_reused_prompt_tokens_total", "source", &m.reused_tokens);
    labelled(&mut out, "semantic_memory_lookups_total", "tier", &m.lookups);
    labelled(&mut out, "semantic_evictions_total", "tier", &m.evictions);
    labelled(&mut out, "semantic_rejected_cache_files_total", "reason", &m.rejected_files);
    header(&mut out, "semantic_persist_total");
    let _ = writeln!(out, "semantic_persist_total {}", m.persists);
    header(&mut out, "semantic_persist_seconds_total");
    let _ = writeln!(out, "semantic_persist_seconds_total {}", m.persist_seconds);
    header(&mut out, "semantic_persist_failures_total");
    for (reason, n) in m.persist_failures {
        let _ = writeln!(out, "semantic_persist_failures_total{{reason=\"{reason}\"}} {n}");
    }
    header(&mut out, "semantic_persist_busy_total");
    let _ = writeln!(out, "semantic_persist_busy_total {}", m.busy_persists);
    header(&mut out, "semantic_persist_busy_stall_seconds_max");
    let _ = writeln!(out, "semantic_persist_busy_stall_seconds_max {}", m.busy_persist_stall_max_seconds);
    header(&mut out, "semantic_window_recomputes_total");
    let _ = writeln!(out, "semantic_window_recomputes_total {}", m.window_recomputes);
    let swaps = crate::models::SwapResult::ALL.map(|r| (r.as_str(), load(&http.swaps[r as usize])));
    labelled(&mut out, "semantic_model_swaps_total", "result", &swaps);
    labelled(
        &mut out,
        "semantic_agents",
        "tier",
        &[("hot", m.hot as u64), ("warm", m.warm as u64), ("cold", m.cold as u64)],
    );
    labelled(&mut out, "semantic_agent_memory_bytes", "store", &[("ram", m.warm_bytes), ("disk", m.disk_bytes)]);
    let s = scheduler.stats();
    for (name, value) in [
        ("semantic_kv_usage_ratio", s.kv_reserved as f64 / s.kv_capacity.max(1) as f64),
        ("semantic_kv_cells_reserved", s.kv_reserved as f64),
        ("semantic_queue_depth", s.queued as f64),
        ("semantic_running_sequences", s.running as f64),
        ("semantic_draining", if s.draining { 1.0 } else { 0.0 }),
    ] {
        header(&mut out, name);
        let _ = writeln!(out, "{name} {value}");
    }
    let process = [("semantic_process_resident_bytes", resident_bytes()), ("semantic_process_open_fds", open_fds())];
    for (name, value) in process {
        // Absent where /proc is not (macOS): no series rather than a made-up 0.
        if let Some(value) = value {
            header(&mut out, name);
            let _ = writeln!(out, "{name} {value}");
        }
    }
    out
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

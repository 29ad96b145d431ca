//! The step thread's counters, gauges and reports, which the handle reads: queue and running
//! gauges (`Shared`), per-request figures (`RequestCounters`), agent-memory figures
//! (`MemoryCounters`) and the public snapshots made of them. Written by the step thread and the
//! writer, read for health and metrics; labels are closed sets (`Rejection`, `Evicted`).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use semantic_memory::Tier;

use crate::histogram::Histogram;
use crate::CacheSource;

/// Counters shared between the handle and the step thread.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    pub queued: AtomicUsize,
    pub running: AtomicUsize,
    pub kv_reserved: AtomicUsize,
    pub steps: AtomicU64,
    pub draining: AtomicBool,
    pub memory: Arc<MemoryCounters>,
    pub requests: Arc<RequestCounters>,
}

/// Per-request figures the step thread records as requests finish (for metrics).
#[derive(Debug, Default)]
pub struct RequestCounters {
    /// Submission to first token.
    pub time_to_first_token: Histogram,
    /// Gap between consecutive tokens of one stream.
    pub inter_token: Histogram,
    /// Prompt tokens of finished requests.
    pub prompt_tokens: AtomicU64,
    /// Prompt tokens computed (not reused).
    pub prefilled_tokens: AtomicU64,
    /// Generated tokens.
    pub generated_tokens: AtomicU64,
    /// Finished requests by reason: [stop, length, stop_string, cancelled, error].
    pub finished: [AtomicU64; 5],
    /// Refused at submission: [queue_full, draining, context_overflow, invalid].
    pub rejected: [AtomicU64; 4],
}

impl RequestCounters {
    /// Labels of `finished`.
    pub const FINISH_REASONS: [&'static str; 5] = ["stop", "length", "stop_string", "cancelled", "error"];
    /// Labels of `rejected`.
    pub const REJECT_REASONS: [&'static str; 4] = ["queue_full", "draining", "context_overflow", "invalid"];
}

/// Agent-memory counters and gauges, written by the step thread and the writer, read for metrics.
#[derive(Debug, Default)]
pub(crate) struct MemoryCounters {
    pub hot: AtomicUsize,
    pub warm: AtomicUsize,
    pub cold: AtomicUsize,
    pub warm_bytes: AtomicU64,
    pub disk_bytes: AtomicU64,
    /// Lookups: [miss, hot, warm, cold].
    lookups: [AtomicU64; 4],
    /// Reused prompt tokens: [hot, warm, disk, shared_prefix].
    reused_tokens: [AtomicU64; 4],
    /// Evictions out of: [hot, warm, disk].
    evictions: [AtomicU64; 3],
    /// Rejected files: [corrupt, version, foreign, import, io, key].
    rejected: [AtomicU64; 6],
    persists: AtomicU64,
    persist_micros: AtomicU64,
    /// Failed persists, by [`PersistFailure`].
    persist_failures: [AtomicU64; 3],
    /// Agents exported for persistence while requests ran, and the longest such export (micros).
    busy_persists: AtomicU64,
    busy_persist_stall_max_micros: AtomicU64,
    /// Cuts a sliding-window model could not make (the prompt was recomputed instead).
    window_recomputes: AtomicU64,
}

/// Why persisting an agent failed (the `reason` label of `semantic_persist_failures_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PersistFailure {
    /// The file system is full (or over quota).
    NoSpace = 0,
    /// Any other I/O error.
    Io = 1,
    /// The engine could not export the agent's state.
    Export = 2,
}

impl PersistFailure {
    /// Every reason, in index order.
    pub const ALL: [PersistFailure; 3] = [PersistFailure::NoSpace, PersistFailure::Io, PersistFailure::Export];

    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PersistFailure::NoSpace => "no_space",
            PersistFailure::Io => "io",
            PersistFailure::Export => "export",
        }
    }
}

impl From<semantic_memory::FailureReason> for PersistFailure {
    fn from(reason: semantic_memory::FailureReason) -> Self {
        match reason {
            semantic_memory::FailureReason::NoSpace => PersistFailure::NoSpace,
            semantic_memory::FailureReason::Io => PersistFailure::Io,
        }
    }
}

/// Why an agent file or state was not served (the `reason` label of rejected files).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rejection {
    /// Checksums, lengths or fields do not verify.
    Corrupt = 0,
    /// Another format version.
    Version = 1,
    /// Made by another model or state layout.
    Foreign = 2,
    /// Read fine but the engine refused the state.
    Import = 3,
    /// The file could not be read.
    Io = 4,
    /// Encrypted, and not openable with the configured key (none, another, or altered).
    Key = 5,
}

impl Rejection {
    const ALL: [Rejection; 6] = [Self::Corrupt, Self::Version, Self::Foreign, Self::Import, Self::Io, Self::Key];

    fn as_str(self) -> &'static str {
        match self {
            Self::Corrupt => "corrupt",
            Self::Version => "version",
            Self::Foreign => "foreign",
            Self::Import => "import",
            Self::Io => "io",
            Self::Key => "key",
        }
    }

    /// The reason for a failed read of an agent file.
    pub fn of(err: &semantic_memory::MemoryError) -> Self {
        use semantic_memory::MemoryError as E;
        match err {
            E::Corrupt { .. } => Self::Corrupt,
            E::UnsupportedVersion { .. } => Self::Version,
            E::Foreign { .. } => Self::Foreign,
            E::Sealed { .. } => Self::Key,
            _ => Self::Io,
        }
    }
}

/// The tier an agent was evicted out of (the `tier` label of evictions).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evicted {
    /// Exported from the engine to RAM.
    Hot = 0,
    /// Dropped from RAM (its file remains).
    Warm = 1,
    /// File deleted over the disk budget.
    Disk = 2,
}

const SOURCES: [CacheSource; 4] = [CacheSource::Hot, CacheSource::Warm, CacheSource::Disk, CacheSource::SharedPrefix];

impl MemoryCounters {
    pub fn looked_up(&self, tier: Option<Tier>) {
        let i = match tier {
            None => 0,
            Some(Tier::Hot) => 1,
            Some(Tier::Warm) => 2,
            Some(Tier::Cold) => 3,
        };
        self.lookups[i].fetch_add(1, Ordering::Relaxed);
    }

    pub fn reused(&self, source: CacheSource, tokens: usize) {
        let i = SOURCES.iter().position(|s| *s == source).unwrap_or(0);
        self.reused_tokens[i].fetch_add(tokens as u64, Ordering::Relaxed);
    }

    pub fn evicted(&self, from: Evicted) {
        self.evictions[from as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn rejected(&self, reason: Rejection) {
        self.rejected[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn persisted(&self, elapsed: Duration) {
        self.persists.fetch_add(1, Ordering::Relaxed);
        self.persist_micros.fetch_add(elapsed.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn persist_failed(&self, reason: PersistFailure) {
        self.persist_failures[reason as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub fn persisted_busy(&self, stall: Duration) {
        self.busy_persists.fetch_add(1, Ordering::Relaxed);
        self.busy_persist_stall_max_micros.fetch_max(stall.as_micros() as u64, Ordering::Relaxed);
    }

    pub fn window_recomputed(&self) {
        self.window_recomputes.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> MemoryStats {
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MemoryStats {
            hot: self.hot.load(Ordering::Relaxed),
            warm: self.warm.load(Ordering::Relaxed),
            cold: self.cold.load(Ordering::Relaxed),
            warm_bytes: load(&self.warm_bytes),
            disk_bytes: load(&self.disk_bytes),
            lookups: [("miss", 0), ("hot", 1), ("warm", 2), ("cold", 3)].map(|(n, i)| (n, load(&self.lookups[i]))),
            reused_tokens: [0, 1, 2, 3].map(|i| (SOURCES[i].as_str(), load(&self.reused_tokens[i]))),
            evictions: [("hot", 0), ("warm", 1), ("disk", 2)].map(|(n, i)| (n, load(&self.evictions[i]))),
            rejected_files: Rejection::ALL.map(|r| (r.as_str(), load(&self.rejected[r as usize]))),
            persists: load(&self.persists),
            persist_seconds: load(&self.persist_micros) as f64 / 1e6,
            persist_failures: PersistFailure::ALL.map(|r| (r.as_str(), load(&self.persist_failures[r as usize]))),
            window_recomputes: load(&self.window_recomputes),
            busy_persists: load(&self.busy_persists),
            busy_persist_stall_max_seconds: load(&self.busy_persist_stall_max_micros) as f64 / 1e6,
        }
    }
}

/// Agent memory figures for health and metrics (labels are fixed, bounded sets).
#[derive(Debug, Clone, PartialEq)]
pub struct MemoryStats {
    /// Agents per tier.
    pub hot: usize,
    /// Agents held as bytes in RAM.
    pub warm: usize,
    /// Agents on disk only.
    pub cold: usize,
    /// RAM used by warm agents.
    pub warm_bytes: u64,
    /// Disk used by agent files.
    pub disk_bytes: u64,
    /// Memory lookups by the tier that answered (`miss` = nothing stored for the named agent).
    pub lookups: [(&'static str, u64); 4],
    /// Prompt tokens reused, by source.
    pub reused_tokens: [(&'static str, u64); 4],
    /// Evictions by the tier left.
    pub evictions: [(&'static str, u64); 3],
    /// Agent files refused, by reason.
    pub rejected_files: [(&'static str, u64); 6],
    /// Completed persists.
    pub persists: u64,
    /// Total seconds spent writing agent files.
    pub persist_seconds: f64,
    /// Failed persists, by reason (`no_space`, `io`, `export`).
    pub persist_failures: [(&'static str, u64); 3],
    /// Reuses a sliding-window model could not make: the sequence could not be cut where the
    /// prompt diverged (its window no longer held the positions before), so it was recomputed.
    pub window_recomputes: u64,
    /// Agents persisted while requests ran (`persist_within` reached without an idle moment).
    pub busy_persists: u64,
    /// The longest a step waited for such an export, seconds.
    pub busy_persist_stall_max_seconds: f64,
}

/// A point-in-time view of the scheduler, for health checks and metrics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SchedulerStats {
    /// Requests accepted but not yet running.
    pub queued: usize,
    /// Requests decoding.
    pub running: usize,
    /// KV cells reserved by running requests.
    pub kv_reserved: usize,
    /// KV cells in the context.
    pub kv_capacity: usize,
    /// Engine steps so far.
    pub steps: u64,
    /// True once a drain started.
    pub draining: bool,
    /// Admission queue bound.
    pub queue_capacity: usize,
}

/// What a drain did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DrainReport {
    /// Requests that finished during the drain.
    pub completed: usize,
    /// Requests cut at the deadline (they got a `Cancelled` finish).
    pub cut: usize,
}

//! The scheduler: admission queue and a continuous-batching step loop on one dedicated engine thread.
//!
//! Owns: request admission (queue bound, context validation), building one engine batch per step
//! from one decode token of every running sequence plus prefill chunks under a token budget,
//! sampling, UTF-8-safe streaming with stop strings, cancellation, fault isolation and drain.
//! Does not own: HTTP, chat templates (prompts arrive as token ids), agent memory persistence.
#![warn(missing_docs)]

mod admin;
mod agents;
mod backoff;
mod config;
mod counters;
mod error;
mod handle;
mod histogram;
mod request;
mod sequence;
mod step;

pub(crate) use admin::AgentCommand;
pub use admin::{AgentOpError, AgentSnapshot, FlushReport};
pub use agents::{now_ms, MemoryConfig};
pub use config::SchedulerConfig;
pub use counters::{DrainReport, MemoryStats, RequestCounters, SchedulerStats};
pub use error::SubmitError;
pub use handle::{RequestStream, Scheduler, SpawnError};
pub use histogram::{Histogram, HistogramSnapshot, BUCKETS};
pub use request::{AgentRef, CacheSource, Event, FinishReason, GenerateRequest, Timings, Usage};
pub use semantic_memory::{AgentId, AgentInfo, AgentKey, Namespace, Tier};

//! `SchedulerConfig`: the knobs of admission and batching.

/// How the step loop batches and admits work.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchedulerConfig {
    /// Most sequences decoding at once.
    pub max_running: usize,
    /// Most tokens per engine step (decode tokens + prefill chunks); capped by the engine's batch size.
    pub step_token_budget: usize,
    /// Most requests admitted but not yet running; more get [`crate::SubmitError::QueueFull`].
    pub queue_capacity: usize,
    /// Agent memory tiers and budgets.
    pub memory: crate::MemoryConfig,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self { max_running: 8, step_token_budget: 512, queue_capacity: 64, memory: crate::MemoryConfig::default() }
    }
}

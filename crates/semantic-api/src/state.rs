//! `AppState`: what every handler shares.

use std::sync::Arc;
use std::time::SystemTime;

use semantic_chat::ChatTemplate;
use semantic_scheduler::Scheduler;

use crate::prompt::Prompter;

/// Options the binary resolves from configuration.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Model name reported in responses and `/v1/models`.
    pub model_name: String,
    /// Completion length when a request names none.
    pub default_max_tokens: usize,
}

/// Shared by all handlers (cheap to clone).
#[derive(Clone)]
pub struct AppState {
    pub(crate) scheduler: Scheduler,
    pub(crate) prompter: Arc<Prompter>,
    pub(crate) options: Arc<ServeOptions>,
    pub(crate) started: SystemTime,
}

impl AppState {
    /// State for a scheduler and the model's chat template.
    pub fn new(scheduler: Scheduler, template: ChatTemplate, options: ServeOptions) -> Self {
        let prompter = Prompter::new(template, scheduler.tokenizer().clone(), scheduler.facts());
        Self { scheduler, prompter: Arc::new(prompter), options: Arc::new(options), started: SystemTime::now() }
    }
}

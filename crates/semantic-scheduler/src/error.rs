//! `SubmitError`: why a request was not accepted.

/// A request refused at submission; nothing was queued.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubmitError {
    /// The admission queue is full; retry later.
    #[error("the server is busy: {queued} requests are already waiting")]
    QueueFull {
        /// Requests waiting.
        queued: usize,
    },
    /// The scheduler is draining or stopped.
    #[error("the server is shutting down")]
    Draining,
    /// Prompt and completion would not fit in one sequence's context.
    #[error("prompt ({prompt} tokens) + max_tokens ({max_tokens}) exceeds the context limit of {limit} tokens")]
    ContextOverflow {
        /// Prompt tokens.
        prompt: usize,
        /// Requested completion tokens.
        max_tokens: usize,
        /// Tokens one sequence may hold.
        limit: usize,
    },
    /// The request itself is malformed.
    #[error("invalid request: {reason}")]
    Invalid {
        /// Why.
        reason: String,
    },
}

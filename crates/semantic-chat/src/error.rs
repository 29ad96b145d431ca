//! The crate's one error type. Detokenization and stop matching cannot fail; only templates can.

/// Errors from compiling or rendering a chat template.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChatError {
    /// The template failed to compile, failed while rendering, or called `raise_exception`.
    ///
    /// For `raise_exception(msg)` the message is exactly `msg` (for example Gemma 2's
    /// "System role not supported"); otherwise it is the engine's description with the line.
    #[error("chat template: {message}")]
    Template {
        /// What went wrong, as described above.
        message: String,
    },
}

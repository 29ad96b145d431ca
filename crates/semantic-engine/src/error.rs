//! `EngineError`: everything that can go wrong below the `Engine` boundary.

use std::path::PathBuf;

use crate::SeqId;

/// Errors of the engine crate. Variants carry context as fields.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file does not exist or cannot be read.
    #[error("cannot read model file {path}: {source}")]
    ModelIo {
        /// Path given.
        path: PathBuf,
        /// Underlying error.
        source: std::io::Error,
    },
    /// llama.cpp refused to load the model.
    #[error("cannot load model {path}: {reason}")]
    ModelLoad {
        /// Path given.
        path: PathBuf,
        /// What llama.cpp said.
        reason: String,
    },
    /// llama.cpp refused to create a context with these parameters.
    #[error("cannot create an inference context: {reason}")]
    Context {
        /// What llama.cpp said.
        reason: String,
    },
    /// The batch is larger than the context's batch size, empty, or names a bad sequence.
    #[error("invalid batch: {reason}")]
    InvalidBatch {
        /// Why.
        reason: String,
    },
    /// No room left in the KV cache for this batch.
    #[error("the KV cache has no free slot for {tokens} tokens")]
    KvFull {
        /// Tokens in the rejected batch.
        tokens: usize,
    },
    /// Decoding failed for another reason; the batch had no effect that can be relied on.
    #[error("decode failed: {reason}")]
    Decode {
        /// What llama.cpp said.
        reason: String,
    },
    /// Logits were asked for a row that did not request them in the last batch.
    #[error("no logits for batch row {row}")]
    NoLogits {
        /// Row index.
        row: usize,
    },
    /// A KV operation on a sequence failed.
    #[error("KV operation {op} on sequence {seq} failed")]
    Kv {
        /// Operation name.
        op: &'static str,
        /// Sequence.
        seq: SeqId,
    },
    /// A sequence cannot be cut at `keep`: its sliding-window layers no longer hold the window
    /// before that position (llama.cpp keeps only the last window plus one batch of it).
    #[error("sequence {seq} cannot be cut at {keep}: its sliding-window layers hold positions from {oldest} only (window {window})")]
    WindowTrim {
        /// Sequence.
        seq: SeqId,
        /// The position the cut was asked at.
        keep: u32,
        /// Oldest position the sliding-window layers still hold.
        oldest: u32,
        /// The model's sliding window.
        window: u32,
    },
    /// A sequence state blob could not be imported (wrong model, KV type or corrupt).
    #[error("cannot import sequence state into sequence {seq}: {reason}")]
    StateImport {
        /// Target sequence.
        seq: SeqId,
        /// Why.
        reason: String,
    },
    /// Text could not be tokenized.
    #[error("cannot tokenize: {reason}")]
    Tokenize {
        /// Why.
        reason: String,
    },
}

//! `ModelFacts` and `ContextInfo`: what the loaded model and its context are.

use crate::{engine::KvType, Fingerprint, TokenId};

/// Facts about the loaded model, read once at load time.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelFacts {
    /// `general.name` from the GGUF, or the file stem.
    pub name: String,
    /// `general.architecture` (e.g. `llama`).
    pub architecture: String,
    /// Context length the model was trained with.
    pub n_ctx_train: u32,
    /// Vocabulary size (length of a logits row).
    pub n_vocab: usize,
    /// Number of transformer layers.
    pub n_layer: u32,
    /// Embedding width.
    pub n_embd: u32,
    /// Parameter count.
    pub n_params: u64,
    /// Size of the weights in bytes.
    pub size_bytes: u64,
    /// Beginning-of-sequence token.
    pub bos: Option<TokenId>,
    /// End-of-sequence token.
    pub eos: Option<TokenId>,
    /// End-of-turn token.
    pub eot: Option<TokenId>,
    /// Text of the BOS token (for templates), empty if none.
    pub bos_text: String,
    /// Text of the EOS token (for templates), empty if none.
    pub eos_text: String,
    /// Whether the tokenizer adds BOS to a prompt by default (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// `tokenizer.chat_template`, if the GGUF has one.
    pub chat_template: Option<String>,
    /// SHA-256 of the GGUF file.
    pub fingerprint: Fingerprint,
}

/// How the inference context was created.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextInfo {
    /// KV cells shared by all sequences.
    pub n_ctx: u32,
    /// Most tokens one decode call accepts.
    pub n_batch: u32,
    /// Most sequences that can be live at once (sequence ids are `0..n_seq_max`).
    pub n_seq_max: u32,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Threads used for decoding.
    pub threads: u32,
}

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
    /// Sliding window of the model's sliding-window attention layers (0: none). Such layers keep
    /// only the last window (plus one batch) of a sequence, so a sequence can be cut only where
    /// the window before the cut is still held (`EngineError::WindowTrim` otherwise).
    pub n_swa: u32,
    /// `tokenizer.chat_template`, if the GGUF has one.
    pub chat_template: Option<String>,
    /// SHA-256 of the GGUF file.
    pub fingerprint: Fingerprint,
}

/// How the inference context was created. Every sequence has a KV stream of its own
/// (`n_ctx_seq` cells), so a sequence's attention never covers another sequence's tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ContextInfo {
    /// KV cells of all streams together (`n_ctx_seq * n_seq_max`).
    pub n_ctx: u32,
    /// KV cells of one sequence's stream: the most tokens one sequence (one agent) may hold.
    pub n_ctx_seq: u32,
    /// Most tokens one decode call accepts.
    pub n_batch: u32,
    /// Most sequences that can be live at once (sequence ids are `0..n_seq_max`).
    pub n_seq_max: u32,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Whether attention runs llama.cpp's flash-attention kernels; without them the V cache is
    /// stored transposed, so exported states of the two kinds do not mix.
    pub flash_attention: bool,
    /// Threads used for decoding.
    pub threads: u32,
}

/// What an exported state's bytes depend on besides the model (see [`ContextInfo::state_layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StateLayout {
    /// KV element types.
    pub kv_type: KvType,
    /// V stored transposed (no flash attention).
    pub v_transposed: bool,
    /// Made by a context with one KV stream per sequence (llama.cpp refuses a state made in the
    /// other mode: "n_stream mismatch").
    pub per_sequence_streams: bool,
}

impl ContextInfo {
    /// Bit set in [`Self::state_layout`] when the V cache is stored transposed.
    pub const V_TRANSPOSED: u16 = 0x80;
    /// Bit set in [`Self::state_layout`] when each sequence has its own KV stream. States of
    /// the unified cache that earlier versions used lack it, so they are never imported here.
    pub const PER_SEQUENCE_STREAMS: u16 = 0x100;

    /// What an exported state's bytes depend on besides the model: the KV type's code, plus
    /// [`Self::V_TRANSPOSED`] without flash attention, plus [`Self::PER_SEQUENCE_STREAMS`]. States
    /// only import where this matches. The bytes do not depend on the backend (CPU, CUDA, Vulkan,
    /// Metal): llama.cpp copies each tensor to host memory in the same layout.
    pub fn state_layout(&self) -> u16 {
        u16::from(self.kv_type.code())
            | if self.flash_attention { 0 } else { Self::V_TRANSPOSED }
            | Self::PER_SEQUENCE_STREAMS
    }

    /// Inverse of [`Self::state_layout`]. None for unknown codes and for a transposed quantized
    /// cache, which llama.cpp cannot make.
    pub fn parse_state_layout(code: u16) -> Option<StateLayout> {
        if code & !(0xff | Self::PER_SEQUENCE_STREAMS) != 0 {
            return None;
        }
        let kv_type = KvType::from_code((code & 0x7f) as u8)?;
        let v_transposed = code & Self::V_TRANSPOSED != 0;
        let per_sequence_streams = code & Self::PER_SEQUENCE_STREAMS != 0;
        (!v_transposed || !kv_type.is_quantized()).then_some(StateLayout {
            kv_type,
            v_transposed,
            per_sequence_streams,
        })
    }
}

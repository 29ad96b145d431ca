//! The `Engine` trait (our boundary to the compute library) and the settings an engine is built from.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{Batch, ContextInfo, EngineError, ModelFacts, SeqId, TokenId};

// The KV types and the flash-attention mode are defined once, in the config crate (a leaf), and
// parsed there from flags, env and TOML; `llama.rs` maps them to llama.cpp's types.
pub use semantic_config::{FlashAttention, KvElem, KvType};

/// Everything needed to load a model and create its inference context.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// GGUF file.
    pub model_path: PathBuf,
    /// KV cells of each sequence's own stream: the most tokens one agent may hold (0 = the
    /// model's training context). Rounded up to a multiple of 256.
    pub n_ctx: u32,
    /// Most tokens per decode call.
    pub n_batch: u32,
    /// Sequences (streams) in the context: the most agents resident in the engine at once.
    pub n_seq_max: u32,
    /// Decode threads (0 = number of CPUs).
    pub threads: u32,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Flash-attention policy.
    pub flash_attention: FlashAttention,
    /// Where to remember the model's SHA-256 between runs (None = hash every time).
    pub fingerprint_cache: Option<PathBuf>,
    /// Layers offloaded to a GPU (None = all of them when a GPU backend is compiled in, else 0).
    pub gpu_layers: Option<u32>,
}

impl EngineConfig {
    /// Defaults for a model file: 8 sequences of 8,192 cells, 512-token batches, f16 KV.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_ctx: 8_192,
            n_batch: 512,
            n_seq_max: 8,
            threads: 0,
            kv_type: KvType::F16,
            flash_attention: FlashAttention::Auto,
            fingerprint_cache: None,
            gpu_layers: None,
        }
    }
}

/// How text becomes tokens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenizeOptions {
    /// Prepend BOS if the model wants one (`tokenizer.ggml.add_bos_token`).
    pub add_bos: bool,
    /// Turn special-token text such as `<|im_start|>` into the special token (else it is plain text).
    pub parse_special: bool,
}

impl TokenizeOptions {
    /// A raw prompt as llama.cpp's own tools tokenize it: BOS if the model wants one, specials parsed.
    pub const PROMPT: Self = Self { add_bos: true, parse_special: true };
    /// Text that must never produce special tokens (user content when counting).
    pub const PLAIN: Self = Self { add_bos: false, parse_special: false };
}

/// The model's tokenizer. Shared by every thread (llama.cpp tokenizes concurrently with decoding).
pub trait Tokenizer: Send + Sync {
    /// Text to token ids with the model's own tokenizer.
    fn tokenize(&self, text: &str, options: TokenizeOptions) -> Result<Vec<TokenId>, EngineError>;
    /// The bytes one token contributes to the output (special tokens render as nothing).
    fn token_bytes(&self, token: TokenId) -> Vec<u8>;
    /// Token ids to text (lossy UTF-8; special tokens dropped).
    fn detokenize(&self, tokens: &[TokenId]) -> String {
        let bytes: Vec<u8> = tokens.iter().flat_map(|&t| self.token_bytes(t)).collect();
        String::from_utf8_lossy(&bytes).into_owned()
    }
    /// True for end-of-generation tokens (EOS, EOT and the like).
    fn is_eog(&self, token: TokenId) -> bool;
    /// Number of token ids (`0..n_vocab`).
    fn n_vocab(&self) -> usize;
    /// The text a token stands for inside a prompt: [`Self::token_bytes`], except that special
    /// tokens give their text.
    fn token_text(&self, token: TokenId) -> Vec<u8>;
    /// True for tokens matched as whole text before ordinary tokenization when special tokens
    /// are parsed (llama.cpp's control, user-defined and unknown tokens): the text between two of
    /// them is tokenized on its own.
    fn is_special(&self, token: TokenId) -> bool;
}

/// A loaded model with one inference context holding many sequences.
///
/// Invariants every implementation keeps: one thread uses an engine at a time (it is `Send`, not
/// `Sync`); a failed [`Engine::decode`] must be followed by the caller truncating the batch's
/// sequences back to where they were; [`Engine::logits`] is only valid until the next `decode`.
pub trait Engine: Send {
    /// Model facts.
    fn facts(&self) -> &ModelFacts;
    /// Context parameters.
    fn context(&self) -> ContextInfo;
    /// A handle on the tokenizer that other threads may use while this engine decodes.
    fn tokenizer(&self) -> Arc<dyn Tokenizer>;
    /// Decodes one batch.
    fn decode(&mut self, batch: &Batch) -> Result<(), EngineError>;
    /// Logits of row `row` of the last decoded batch (a row that asked for logits).
    fn logits(&self, row: usize) -> Result<&[f32], EngineError>;
    /// Removes positions `from..` of `seq` from the KV cache (`from = 0` empties the sequence).
    fn kv_truncate(&mut self, seq: SeqId, from: u32) -> Result<(), EngineError>;
    /// Gives the empty sequence `dst` a copy of positions `0..len` of `src`.
    fn kv_copy_prefix(&mut self, src: SeqId, dst: SeqId, len: u32) -> Result<(), EngineError>;
    /// Number of positions `seq` holds (0 when empty).
    fn kv_len(&self, seq: SeqId) -> u32;
    /// Serializes the KV state of `seq`.
    fn export_state(&self, seq: SeqId) -> Result<Vec<u8>, EngineError>;
    /// Loads a state made by [`Engine::export_state`] into the empty sequence `seq`.
    fn import_state(&mut self, seq: SeqId, state: &[u8]) -> Result<(), EngineError>;
}

impl<E: Engine + ?Sized> Engine for Box<E> {
    fn facts(&self) -> &ModelFacts {
        (**self).facts()
    }
    fn context(&self) -> ContextInfo {
        (**self).context()
    }
    fn tokenizer(&self) -> Arc<dyn Tokenizer> {
        (**self).tokenizer()
    }
    fn decode(&mut self, batch: &Batch) -> Result<(), EngineError> {
        (**self).decode(batch)
    }
    fn logits(&self, row: usize) -> Result<&[f32], EngineError> {
        (**self).logits(row)
    }
    fn kv_truncate(&mut self, seq: SeqId, from: u32) -> Result<(), EngineError> {
        (**self).kv_truncate(seq, from)
    }
    fn kv_copy_prefix(&mut self, src: SeqId, dst: SeqId, len: u32) -> Result<(), EngineError> {
        (**self).kv_copy_prefix(src, dst, len)
    }
    fn kv_len(&self, seq: SeqId) -> u32 {
        (**self).kv_len(seq)
    }
    fn export_state(&self, seq: SeqId) -> Result<Vec<u8>, EngineError> {
        (**self).export_state(seq)
    }
    fn import_state(&mut self, seq: SeqId, state: &[u8]) -> Result<(), EngineError> {
        (**self).import_state(seq, state)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The codes of every KV type (defined in semantic-config) stay clear of this crate's
    /// state-layout flags.
    #[test]
    fn kv_type_codes_leave_the_layout_flags_free() {
        for k in KvElem::ALL {
            for v in KvElem::ALL {
                let code = u16::from(KvType { k, v }.code());
                assert_eq!(code & (ContextInfo::V_TRANSPOSED | ContextInfo::PER_SEQUENCE_STREAMS), 0, "{k:?}/{v:?}");
            }
        }
    }
}

//! The `Engine` trait (our boundary to the compute library) and the settings an engine is built from.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Batch, ContextInfo, EngineError, ModelFacts, SeqId, TokenId};

/// Element type of the KV cache. Quantized types shrink hot memory and disk snapshots.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvType {
    /// 16-bit floats (llama.cpp's default).
    F16,
    /// 8-bit blocks of 32 with an f16 scale.
    Q8_0,
    /// 4-bit blocks of 32 with an f16 scale.
    Q4_0,
}

impl KvType {
    /// The name used in flags, config and file headers.
    pub fn as_str(self) -> &'static str {
        match self {
            KvType::F16 => "f16",
            KvType::Q8_0 => "q8_0",
            KvType::Q4_0 => "q4_0",
        }
    }

    /// Stable numeric code for file headers.
    pub fn code(self) -> u8 {
        match self {
            KvType::F16 => 1,
            KvType::Q8_0 => 8,
            KvType::Q4_0 => 4,
        }
    }

    /// Inverse of [`KvType::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        [KvType::F16, KvType::Q8_0, KvType::Q4_0].into_iter().find(|t| t.code() == code)
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "f16" => Ok(KvType::F16),
            "q8_0" | "q8" => Ok(KvType::Q8_0),
            "q4_0" | "q4" => Ok(KvType::Q4_0),
            other => Err(format!("unknown KV type {other:?} (expected f16, q8_0 or q4_0)")),
        }
    }
}

/// Flash-attention policy. llama.cpp needs it for a quantized V cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashAttention {
    /// Let llama.cpp decide.
    Auto,
    /// Always on.
    On,
    /// Always off (rejected with a quantized KV type).
    Off,
}

/// Everything needed to load a model and create its inference context.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineConfig {
    /// GGUF file.
    pub model_path: PathBuf,
    /// KV cells shared by all sequences (0 = the model's training context).
    pub n_ctx: u32,
    /// Most tokens per decode call.
    pub n_batch: u32,
    /// Most live sequences.
    pub n_seq_max: u32,
    /// Decode threads (0 = number of CPUs).
    pub threads: u32,
    /// KV cache element type.
    pub kv_type: KvType,
    /// Flash-attention policy.
    pub flash_attention: FlashAttention,
    /// Where to remember the model's SHA-256 between runs (None = hash every time).
    pub fingerprint_cache: Option<PathBuf>,
}

impl EngineConfig {
    /// Defaults for a model file: 16K shared cells, 512-token batches, 32 sequences, f16 KV.
    pub fn new(model_path: impl Into<PathBuf>) -> Self {
        Self {
            model_path: model_path.into(),
            n_ctx: 16_384,
            n_batch: 512,
            n_seq_max: 32,
            threads: 0,
            kv_type: KvType::F16,
            flash_attention: FlashAttention::Auto,
            fingerprint_cache: None,
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
    /// Makes `dst` share positions `0..len` of `src` (dst must be empty).
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

    #[test]
    fn kv_type_names_and_codes_round_trip() {
        for t in [KvType::F16, KvType::Q8_0, KvType::Q4_0] {
            assert_eq!(t.as_str().parse::<KvType>(), Ok(t));
            assert_eq!(KvType::from_code(t.code()), Some(t));
        }
        assert!("bf16".parse::<KvType>().is_err());
        assert_eq!(KvType::from_code(0), None);
    }
}

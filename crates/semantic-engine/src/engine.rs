//! The `Engine` trait (our boundary to the compute library) and the settings an engine is built from.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;

use crate::{Batch, ContextInfo, EngineError, ModelFacts, SeqId, TokenId};

/// Element type of one half (K or V) of the KV cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KvElem {
    /// 16-bit floats (llama.cpp's default).
    F16,
    /// 8-bit blocks of 32 with an f16 scale (1.06 bytes per value).
    Q8_0,
    /// 5-bit blocks of 32 with an f16 scale and minimum (0.75 bytes per value).
    Q5_1,
    /// 5-bit blocks of 32 with an f16 scale (0.69 bytes per value).
    Q5_0,
    /// 4-bit blocks of 32 with an f16 scale and minimum (0.63 bytes per value).
    Q4_1,
    /// 4-bit blocks of 32 with an f16 scale (0.56 bytes per value).
    Q4_0,
    /// 4-bit non-linear blocks of 32 (0.56 bytes per value).
    Iq4Nl,
}

impl KvElem {
    const ALL: [KvElem; 7] =
        [KvElem::F16, KvElem::Q8_0, KvElem::Q5_1, KvElem::Q5_0, KvElem::Q4_1, KvElem::Q4_0, KvElem::Iq4Nl];

    /// The name used in flags, config and tables.
    pub fn as_str(self) -> &'static str {
        match self {
            KvElem::F16 => "f16",
            KvElem::Q8_0 => "q8_0",
            KvElem::Q5_1 => "q5_1",
            KvElem::Q5_0 => "q5_0",
            KvElem::Q4_1 => "q4_1",
            KvElem::Q4_0 => "q4_0",
            KvElem::Iq4Nl => "iq4_nl",
        }
    }

    fn index(self) -> u8 {
        Self::ALL.iter().position(|&e| e == self).unwrap_or(0) as u8
    }
}

impl FromStr for KvElem {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim().to_ascii_lowercase();
        let s = match s.as_str() {
            "q8" => "q8_0",
            "q4" => "q4_0",
            other => other,
        };
        Self::ALL.into_iter().find(|e| e.as_str() == s).ok_or_else(|| {
            let names: Vec<&str> = Self::ALL.iter().map(|e| e.as_str()).collect();
            format!("unknown KV element type {s:?} (expected one of {})", names.join(", "))
        })
    }
}

/// Element types of the KV cache: one for K and one for V (written `k/v`, or one name for both).
/// Quantized types shrink hot memory and disk snapshots; K is the more sensitive half.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct KvType {
    /// Type of the K cache.
    pub k: KvElem,
    /// Type of the V cache.
    pub v: KvElem,
}

impl KvType {
    /// f16 for both halves (llama.cpp's default).
    pub const F16: KvType = KvType::same(KvElem::F16);
    /// q8_0 for both halves.
    pub const Q8_0: KvType = KvType::same(KvElem::Q8_0);
    /// q4_0 for both halves.
    pub const Q4_0: KvType = KvType::same(KvElem::Q4_0);

    /// One type for K and V.
    pub const fn same(elem: KvElem) -> Self {
        Self { k: elem, v: elem }
    }

    /// True unless both halves are f16 (llama.cpp then needs flash attention).
    pub fn is_quantized(self) -> bool {
        self != Self::F16
    }

    /// Stable numeric code for file headers, below `ContextInfo::V_TRANSPOSED`: 1, 8 and 4 for
    /// f16, q8_0 and q4_0 in both halves (the codes of format version 1), else
    /// `0x40 | k << 3 | v` with each half's index in [`KvElem`].
    pub fn code(self) -> u8 {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => 8,
            Self::Q4_0 => 4,
            Self { k, v } => 0x40 | k.index() << 3 | v.index(),
        }
    }

    /// Inverse of [`KvType::code`].
    pub fn from_code(code: u8) -> Option<Self> {
        match code {
            1 => Some(Self::F16),
            8 => Some(Self::Q8_0),
            4 => Some(Self::Q4_0),
            0x40..=0x7f => {
                let k = *KvElem::ALL.get(usize::from(code >> 3 & 7))?;
                let v = *KvElem::ALL.get(usize::from(code & 7))?;
                let t = Self { k, v };
                (t.code() == code).then_some(t)
            }
            _ => None,
        }
    }
}

impl fmt::Display for KvType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.k == self.v {
            f.write_str(self.k.as_str())
        } else {
            write!(f, "{}/{}", self.k.as_str(), self.v.as_str())
        }
    }
}

impl FromStr for KvType {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.split_once('/') {
            Some((k, v)) => Ok(Self { k: k.parse()?, v: v.parse()? }),
            None => Ok(Self::same(s.parse()?)),
        }
    }
}

/// Flash-attention policy. llama.cpp needs it for a quantized V cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlashAttention {
    /// Off for an f16 cache, on for a quantized one (which needs it). Measured with llama-bench on
    /// the CPU backend (2 threads, SmolLM2): without flash attention a 24-token prefill after 2,048
    /// cached tokens runs 1.7x faster, decode there 1.15x, a 512-token prefill 1.2x; llama.cpp's
    /// own "auto" would turn it on.
    Auto,
    /// Always on.
    On,
    /// Always off (rejected with a quantized KV type).
    Off,
}

impl FromStr for FlashAttention {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(FlashAttention::Auto),
            "on" | "true" | "1" => Ok(FlashAttention::On),
            "off" | "false" | "0" => Ok(FlashAttention::Off),
            other => Err(format!("unknown flash-attention setting {other:?} (expected auto, on or off)")),
        }
    }
}

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

    #[test]
    fn kv_type_names_and_codes_round_trip() {
        let mut codes = std::collections::HashSet::new();
        for k in KvElem::ALL {
            for v in KvElem::ALL {
                let t = KvType { k, v };
                assert_eq!(t.to_string().parse::<KvType>(), Ok(t));
                assert_eq!(KvType::from_code(t.code()), Some(t));
                assert!(u16::from(t.code()) & ContextInfo::V_TRANSPOSED == 0 && codes.insert(t.code()));
            }
        }
        assert_eq!((KvType::F16.code(), KvType::Q8_0.code(), KvType::Q4_0.code()), (1, 8, 4), "version-1 codes");
        assert_eq!("q5_1/q4_0".parse::<KvType>(), Ok(KvType { k: KvElem::Q5_1, v: KvElem::Q4_0 }));
        assert_eq!("Q8".parse::<KvType>(), Ok(KvType::Q8_0));
        for bad in ["bf16", "q5_1/", "/q4_0", "q4_0/q4_0/q4_0", ""] {
            assert!(bad.parse::<KvType>().is_err(), "{bad:?}");
        }
        assert_eq!(KvType::from_code(0), None);
        assert_eq!(KvType::from_code(0x40 | 7 << 3), None);
    }
}

//! The `Engine` boundary: the one trait through which the rest of semantic runs a model.
//!
//! Owns: the trait, its value types (batches, model facts, KV types), the llama.cpp implementation
//! ([`LlamaEngine`], the only code in the workspace that knows llama.cpp), a scripted pure-Rust
//! [`FakeEngine`] for fast tests, GGUF headers, fingerprints, the models directory's registry and
//! token sampling and its JSON constraint (structured outputs).
//! Does not own: scheduling, agent memory, chat templates or HTTP.
#![warn(missing_docs)]

mod batch;
pub mod build;
pub mod constraint;
mod engine;
mod error;
mod facts;
mod fake;
mod fingerprint;
mod gguf;
mod llama;
pub mod logprobs;
mod registry;
pub mod sampler;

pub use batch::{Batch, BatchRow};
pub use constraint::{CallShape, CallableTool, JsonGrammar, JsonState, SchemaError, TokenTrie, ToolSchemaError};
pub use engine::{Engine, EngineConfig, FlashAttention, KvElem, KvType, TokenizeOptions, Tokenizer};
pub use error::EngineError;
pub use facts::{ContextInfo, ModelFacts, StateLayout};
pub use fake::{FakeControl, FakeEngine, FakeScript, FakeTokenizer};
pub use fingerprint::Fingerprint;
pub use gguf::GgufInfo;
pub use llama::{LlamaEngine, LlamaTokenizer};
pub use logprobs::{token_logprob, TokenLogprob, MAX_TOP_LOGPROBS};
pub use registry::{ModelEntry, ModelRegistry};
pub use sampler::{Sampler, SamplingError, SamplingParams};

/// A token id in the model's vocabulary (llama.cpp's `llama_token`).
pub type TokenId = i32;

/// A sequence id in the engine context (llama.cpp's `llama_seq_id`). Each sequence owns a KV stream.
pub type SeqId = i32;

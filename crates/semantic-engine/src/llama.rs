//! `LlamaEngine`: the `Engine` on llama.cpp through `llama-cpp-2`. The only llama.cpp code in the workspace.

use std::num::NonZeroU32;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use llama_cpp_2::context::params::{KvCacheType, LlamaContextParams};
use llama_cpp_2::context::session::LlamaStateSeqFlags;
use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token_type::LlamaTokenAttr;
use llama_cpp_2::{DecodeError, LogOptions};

use crate::{
    Batch, ContextInfo, Engine, EngineConfig, EngineError, Fingerprint, FlashAttention, KvElem, ModelFacts, SeqId,
    TokenId, TokenizeOptions, Tokenizer,
};

/// llama.cpp's backend is process-global state (`llama_backend_init` may run once per process), so
/// its handle is one too; it is initialised on first use and never freed.
static BACKEND: OnceLock<Option<LlamaBackend>> = OnceLock::new();

fn backend() -> Result<&'static LlamaBackend, EngineError> {
    BACKEND
        .get_or_init(|| {
            llama_cpp_2::send_logs_to_tracing(LogOptions::default().with_logs_enabled(true));
            LlamaBackend::init().ok()
        })
        .as_ref()
        .ok_or_else(|| EngineError::Context { reason: "llama.cpp backend initialisation failed".into() })
}

/// A GGUF model and one llama.cpp context in which every sequence has its own KV stream
/// (`kv_unified = false`): a sequence attends over its own cells only, never over other agents'.
pub struct LlamaEngine {
    // Field order is load-bearing: `ctx` borrows `*model` and fields drop in declaration order,
    // so the context is freed before the model it points into.
    ctx: LlamaContext<'static>,
    batch: LlamaBatch<'static>,
    /// For each row of the last decoded batch: did it ask for logits.
    logit_rows: Vec<bool>,
    facts: ModelFacts,
    info: ContextInfo,
    /// Shares the model (kept alive past `ctx`, see above) with other threads for tokenizing.
    tokenizer: Arc<LlamaTokenizer>,
}

/// The tokenizer half of a loaded model; llama.cpp's tokenizer is safe to call from many threads.
pub struct LlamaTokenizer {
    model: Arc<LlamaModel>,
    n_vocab: usize,
}

impl LlamaEngine {
    /// Loads the model and creates its context.
    pub fn load(config: &EngineConfig) -> Result<Self, EngineError> {
        let path = config.model_path.as_path();
        std::fs::metadata(path).map_err(|source| EngineError::ModelIo { path: path.to_path_buf(), source })?;
        let fingerprint = Fingerprint::of_file_cached(path, config.fingerprint_cache.as_deref())?;
        let backend = backend()?;
        let gpu_layers = config.gpu_layers.unwrap_or(if crate::build::GPU_BACKEND.is_some() { u32::MAX } else { 0 });
        let model_params = LlamaModelParams::default().with_n_gpu_layers(gpu_layers);
        let model = LlamaModel::load_from_file(backend, path, &model_params)
            .map_err(|e| EngineError::ModelLoad { path: path.to_path_buf(), reason: e.to_string() })?;
        let model = Arc::new(model);
        // SAFETY: the model is behind an Arc (stable address) held by the same struct as the context,
        // which is dropped first (field order above); nothing else sees the 'static reference.
        let model_ref: &'static LlamaModel = unsafe { &*Arc::as_ptr(&model) };

        let threads = match config.threads {
            0 => std::thread::available_parallelism().map(|n| n.get() as u32).unwrap_or(1),
            n => n,
        };
        // Per sequence; llama.cpp pads a stream to a multiple of 256 cells.
        let n_ctx_seq = if config.n_ctx == 0 { model_ref.n_ctx_train() } else { config.n_ctx };
        let n_ctx_seq = n_ctx_seq.div_ceil(256) * 256;
        let n_ctx = n_ctx_seq.checked_mul(config.n_seq_max).ok_or_else(|| EngineError::Context {
            reason: format!("{} sequences of {n_ctx_seq} cells overflow", config.n_seq_max),
        })?;
        let quantized = config.kv_type.is_quantized();
        let flash = match config.flash_attention {
            FlashAttention::Off if quantized => {
                return Err(EngineError::Context { reason: "a quantized KV cache needs flash attention".into() })
            }
            FlashAttention::On => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Auto if quantized => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            FlashAttention::Auto | FlashAttention::Off => llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_DISABLED,
        };
        let params = LlamaContextParams::default()
            .with_n_ctx(NonZeroU32::new(n_ctx))
            .with_n_batch(config.n_batch)
            .with_n_ubatch(config.n_batch)
            .with_n_seq_max(config.n_seq_max)
            .with_n_threads(threads as i32)
            .with_n_threads_batch(threads as i32)
            .with_type_k(cache_type(config.kv_type.k))
            .with_type_v(cache_type(config.kv_type.v))
            .with_flash_attention_policy(flash)
            .with_kv_unified(false)
            // Sliding-window layers keep only their window (plus a batch), not every position:
            // llama.cpp's default (full) would store the whole sequence there too. Cuts the
            // window cannot serve are refused (`kv_truncate`) and the scheduler recomputes.
            .with_swa_full(false);
        let ctx = model_ref.new_context(backend, params).map_err(|e| EngineError::Context { reason: e.to_string() })?;
        let info = ContextInfo {
            n_ctx: ctx.n_ctx(),
            n_ctx_seq: ctx.n_ctx() / config.n_seq_max.max(1),
            n_batch: ctx.n_batch(),
            n_seq_max: config.n_seq_max,
            kv_type: config.kv_type,
            flash_attention: flash == llama_cpp_sys_2::LLAMA_FLASH_ATTN_TYPE_ENABLED,
            threads,
        };
        let facts = read_facts(model_ref, path, fingerprint);
        let batch = LlamaBatch::new(info.n_batch as usize, 1);
        tracing::info!(
            model = %facts.name,
            n_ctx = info.n_ctx,
            n_ctx_seq = info.n_ctx_seq,
            gpu_layers,
            kv = %info.kv_type,
            flash_attention = info.flash_attention,
            threads,
            "model loaded"
        );
        let tokenizer = Arc::new(LlamaTokenizer { n_vocab: facts.n_vocab, model });
        let mut engine = Self { ctx, batch, logit_rows: Vec::new(), facts, info, tokenizer };
        engine.warm_up();
        Ok(engine)
    }

    /// Decodes one token and forgets it, as llama.cpp's own tools do, so that graph allocation and
    /// first touches of the weights are not billed to the first request.
    fn warm_up(&mut self) {
        let token = self.facts.bos.or(self.facts.eos).unwrap_or(0);
        let mut batch = Batch::new();
        batch.push(0, token, 0, true);
        if let Err(err) = self.decode(&batch) {
            tracing::warn!(%err, "warm-up decode failed");
        }
        let _ = self.ctx.clear_kv_cache_seq(None, None, None);
        self.logit_rows.clear();
    }

    fn check_seq(&self, seq: SeqId) -> Result<(), EngineError> {
        if seq < 0 || seq as u32 >= self.info.n_seq_max {
            return Err(EngineError::InvalidBatch { reason: format!("sequence {seq} out of range") });
        }
        Ok(())
    }
}

fn cache_type(elem: KvElem) -> KvCacheType {
    match elem {
        KvElem::F16 => KvCacheType::F16,
        KvElem::Q8_0 => KvCacheType::Q8_0,
        KvElem::Q5_1 => KvCacheType::Q5_1,
        KvElem::Q5_0 => KvCacheType::Q5_0,
        KvElem::Q4_1 => KvCacheType::Q4_1,
        KvElem::Q4_0 => KvCacheType::Q4_0,
        KvElem::Iq4Nl => KvCacheType::IQ4_NL,
    }
}

fn read_facts(model: &LlamaModel, path: &Path, fingerprint: Fingerprint) -> ModelFacts {
    let vocab = model.vocab();
    let special = |t: LlamaToken| (t.0 >= 0).then_some(t.0);
    let text = |t: Option<TokenId>| {
        t.map(|t| String::from_utf8_lossy(&vocab.token_to_piece(LlamaToken(t), true, None)).into_owned())
            .unwrap_or_default()
    };
    let bos = special(vocab.bos());
    let eos = special(vocab.eos());
    let stem = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let architecture = model.meta_val_str("general.architecture").unwrap_or_default();
    let n_swa = model
        .meta_val_str(&format!("{architecture}.attention.sliding_window"))
        .ok()
        .and_then(|w| w.trim().parse::<u32>().ok())
        .unwrap_or(0);
    ModelFacts {
        name: model.meta_val_str("general.name").unwrap_or(stem),
        architecture,
        n_ctx_train: model.n_ctx_train(),
        n_vocab: model.n_vocab().max(0) as usize,
        n_layer: model.n_layer(),
        n_embd: model.n_embd().max(0) as u32,
        n_params: model.n_params(),
        size_bytes: model.size(),
        bos,
        eos,
        eot: special(vocab.eot()),
        bos_text: text(bos),
        eos_text: text(eos),
        add_bos: vocab.should_add_bos(),
        n_swa,
        chat_template: model.chat_template(None).ok().and_then(|t| t.to_string().ok()),
        fingerprint,
    }
}

impl Tokenizer for LlamaTokenizer {
    fn tokenize(&self, text: &str, options: TokenizeOptions) -> Result<Vec<TokenId>, EngineError> {
        if text.len() > i32::MAX as usize / 2 {
            return Err(EngineError::Tokenize { reason: "text too long".into() });
        }
        let vocab = self.model.vocab();
        Ok(vocab.tokenize(text.as_bytes(), options.add_bos, options.parse_special).into_iter().map(|t| t.0).collect())
    }

    fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        if token < 0 || token as usize >= self.n_vocab {
            return Vec::new();
        }
        self.model.vocab().token_to_piece(LlamaToken(token), false, None)
    }

    fn is_eog(&self, token: TokenId) -> bool {
        token >= 0 && (token as usize) < self.n_vocab && self.model.vocab().is_eog(LlamaToken(token))
    }

    fn n_vocab(&self) -> usize {
        self.n_vocab
    }

    fn token_text(&self, token: TokenId) -> Vec<u8> {
        if token < 0 || token as usize >= self.n_vocab {
            return Vec::new();
        }
        self.model.vocab().token_to_piece(LlamaToken(token), true, None)
    }

    fn is_special(&self, token: TokenId) -> bool {
        if token < 0 || token as usize >= self.n_vocab {
            return false;
        }
        let attrs = self.model.vocab().attr(LlamaToken(token));
        attrs.intersects(LlamaTokenAttr::Control | LlamaTokenAttr::UserDefined | LlamaTokenAttr::Unknown)
    }
}

impl LlamaEngine {
    /// llama.cpp's system line: each backend's compiled CPU features (`AVX2 = 1 | ...`).
    pub fn system_info() -> String {
        // SAFETY: returns a pointer to a static, NUL-terminated buffer owned by llama.cpp.
        let ptr = unsafe { llama_cpp_sys_2::llama_print_system_info() };
        if ptr.is_null() {
            return String::new();
        }
        // SAFETY: non-null and NUL-terminated (above).
        unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy().trim().to_owned()
    }

    /// The compute devices ggml found, as `backend: description` (the CPU is always one).
    pub fn devices() -> Vec<String> {
        if backend().is_err() {
            return Vec::new();
        }
        llama_cpp_2::list_llama_ggml_backend_devices()
            .into_iter()
            .map(|d| {
                let memory = if d.memory_total > 0 { format!(", {} MiB", d.memory_total >> 20) } else { String::new() };
                format!("{}: {} ({}{memory})", d.backend, d.description, d.name)
            })
            .collect()
    }
}

impl Engine for LlamaEngine {
    fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    fn context(&self) -> ContextInfo {
        self.info
    }

    fn tokenizer(&self) -> Arc<dyn Tokenizer> {
        self.tokenizer.clone()
    }

    fn decode(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.logit_rows.clear();
        if batch.is_empty() || batch.len() > self.info.n_batch as usize {
            return Err(EngineError::InvalidBatch {
                reason: format!("{} tokens (allowed 1..={})", batch.len(), self.info.n_batch),
            });
        }
        self.batch.clear();
        for row in batch.rows() {
            self.check_seq(row.seq)?;
            if row.token < 0 || row.token as usize >= self.facts.n_vocab {
                return Err(EngineError::InvalidBatch {
                    reason: format!("token {} outside the vocabulary", row.token),
                });
            }
            if row.pos >= self.info.n_ctx {
                return Err(EngineError::InvalidBatch { reason: format!("position {} beyond the context", row.pos) });
            }
            self.batch
                .add(LlamaToken(row.token), row.pos as i32, &[row.seq], row.logits)
                .map_err(|e| EngineError::InvalidBatch { reason: e.to_string() })?;
        }
        match self.ctx.decode(&mut self.batch) {
            Ok(()) => {
                self.logit_rows.extend(batch.rows().iter().map(|r| r.logits));
                Ok(())
            }
            Err(DecodeError::NoKvCacheSlot) => Err(EngineError::KvFull { tokens: batch.len() }),
            Err(e) => Err(EngineError::Decode { reason: e.to_string() }),
        }
    }

    fn logits(&self, row: usize) -> Result<&[f32], EngineError> {
        if !self.logit_rows.get(row).copied().unwrap_or(false) {
            return Err(EngineError::NoLogits { row });
        }
        // `row` asked for logits in the last successful decode, so llama.cpp has them (no panic).
        Ok(self.ctx.get_logits_ith(row as i32))
    }

    fn kv_truncate(&mut self, seq: SeqId, from: u32) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        let window = self.facts.n_swa;
        if window > 0 && from > 0 && from < self.kv_len(seq) {
            // Computing position `from` attends over (from - window, from) in the sliding-window
            // layers (llama.cpp masks a cell once `from - pos >= window`); those cells must still
            // be held. An exported state holds only that window, so after a restore only the last
            // token can be cut; the live cache keeps a batch more.
            let oldest = self.ctx.kv_cache_seq_pos_min(seq).max(0) as u32;
            if oldest > (from + 1).saturating_sub(window) {
                return Err(EngineError::WindowTrim { seq, keep: from, oldest, window });
            }
        }
        match self.ctx.clear_kv_cache_seq(Some(seq as u32), Some(from), None) {
            Ok(true) => Ok(()),
            _ => Err(EngineError::Kv { op: "truncate", seq }),
        }
    }

    /// Sequences live in separate streams, where llama.cpp copies only whole streams (a partial
    /// `seq_cp` aborts the process) and defers the data copy to the next decode, after which a
    /// freed source stream may already hold another agent's import. So the prefix travels as a
    /// state: export `src`, import into `dst`, trim `dst` to `len`. Measured in BENCHMARKS.md.
    fn kv_copy_prefix(&mut self, src: SeqId, dst: SeqId, len: u32) -> Result<(), EngineError> {
        self.check_seq(src)?;
        self.check_seq(dst)?;
        if src == dst || len > self.kv_len(src) || self.kv_len(dst) != 0 {
            return Err(EngineError::Kv { op: "copy_prefix", seq: src });
        }
        let state = self.export_state(src)?;
        self.import_state(dst, &state)?;
        let trimmed = self.kv_truncate(dst, len);
        if trimmed.is_err() {
            // A sliding-window model may not cut there: leave `dst` empty, as it came.
            let _ = self.ctx.clear_kv_cache_seq(Some(dst as u32), None, None);
        }
        trimmed
    }

    fn kv_len(&self, seq: SeqId) -> u32 {
        if self.check_seq(seq).is_err() {
            return 0;
        }
        (self.ctx.kv_cache_seq_pos_max(seq) + 1).max(0) as u32
    }

    fn export_state(&self, seq: SeqId) -> Result<Vec<u8>, EngineError> {
        self.check_seq(seq)?;
        let flags = LlamaStateSeqFlags::empty();
        let size = self.ctx.state_seq_get_size_ext(seq, flags);
        let mut bytes = vec![0u8; size];
        // SAFETY: `bytes` has exactly the size llama.cpp asked for this sequence and flags.
        let written = unsafe { self.ctx.state_seq_get_data_ext(bytes.as_mut_ptr(), seq, flags) };
        if written != size {
            return Err(EngineError::Kv { op: "export_state", seq });
        }
        Ok(bytes)
    }

    fn import_state(&mut self, seq: SeqId, state: &[u8]) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        if state.is_empty() {
            return Err(EngineError::StateImport { seq, reason: "empty state".into() });
        }
        // SAFETY: llama.cpp reads at most `state.len()` bytes and validates the layout itself.
        let ok = unsafe { self.ctx.state_seq_set_data_ext(state, seq, LlamaStateSeqFlags::empty()) };
        if ok {
            Ok(())
        } else {
            let _ = self.ctx.clear_kv_cache_seq(Some(seq as u32), None, None);
            Err(EngineError::StateImport { seq, reason: "llama.cpp rejected the state".into() })
        }
    }
}

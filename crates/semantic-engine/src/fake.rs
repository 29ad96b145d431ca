//! `FakeEngine`: a deterministic, scripted `Engine` in pure Rust, so scheduler, memory and API logic
//! can be tested in milliseconds. It is strict where llama.cpp is lenient (positions must extend a
//! sequence exactly), so position bugs fail loudly in tests.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use crate::{
    Batch, ContextInfo, Engine, EngineError, Fingerprint, KvType, ModelFacts, SeqId, TokenId, TokenizeOptions,
    Tokenizer,
};

/// Tokens 0..=255 are bytes; these follow.
const BOS: TokenId = 256;
const EOS: TokenId = 257;
const IM_START: TokenId = 258;
const IM_END: TokenId = 259;
const N_VOCAB: usize = 260;
const SPECIALS: [(&str, TokenId); 4] =
    [("<s>", BOS), ("</s>", EOS), ("<|im_start|>", IM_START), ("<|im_end|>", IM_END)];
const STATE_MAGIC: &[u8; 8] = b"FAKEKV01";

/// Picks the next token from everything in the sequence so far (prompt and generated tokens).
#[derive(Clone)]
pub struct FakeScript(Arc<ScriptFn>);

type ScriptFn = dyn Fn(&[TokenId]) -> TokenId + Send + Sync;

impl FakeScript {
    /// The default: a lowercase letter or space chosen by a hash of the whole history, so any KV
    /// mix-up (wrong sequence, wrong position, lost prefix) changes the output. Never ends by itself.
    pub fn hash() -> Self {
        Self(Arc::new(|history| {
            let mut h: u64 = 0xcbf2_9ce4_8422_2325;
            for &t in history {
                h = (h ^ t as u64).wrapping_mul(0x0100_0000_01b3);
            }
            const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz     ";
            ALPHABET[(h % ALPHABET.len() as u64) as usize] as TokenId
        }))
    }

    /// Answers `reply` byte by byte, then EOS (then keeps answering EOS).
    pub fn reply(reply: &str) -> Self {
        let bytes: Vec<TokenId> = reply.bytes().map(TokenId::from).collect();
        Self(Arc::new(move |history| {
            // How much of the reply is already at the end of the history.
            let done = (0..=bytes.len()).rev().find(|&n| history.ends_with(&bytes[..n])).unwrap_or(0);
            bytes.get(done).copied().unwrap_or(EOS)
        }))
    }

    /// Any function of the history.
    pub fn from_fn(f: impl Fn(&[TokenId]) -> TokenId + Send + Sync + 'static) -> Self {
        Self(Arc::new(f))
    }
}

/// What tests can see and steer while the engine runs on another thread.
#[derive(Debug, Default)]
pub struct FakeControl {
    /// Sizes of every decoded batch, per sequence: `[(seq, tokens)]` in row order.
    pub batches: Vec<Vec<(SeqId, usize)>>,
    /// Fail this many upcoming decodes with a decode error.
    pub fail_decodes: usize,
    /// Panic inside the next decode.
    pub panic_next_decode: bool,
    /// Fail this many upcoming truncations that keep some tokens (`from > 0`), as llama.cpp does
    /// where it cannot remove part of a sequence.
    pub fail_partial_truncates: usize,
}

/// The fake engine. Cloning shares nothing but the control block.
pub struct FakeEngine {
    facts: ModelFacts,
    info: ContextInfo,
    script: FakeScript,
    kv: HashMap<SeqId, Vec<TokenId>>,
    logits: Vec<Option<Vec<f32>>>,
    control: Arc<Mutex<FakeControl>>,
}

impl FakeEngine {
    /// The fake vocabulary's end-of-sequence token (what scripts answer to end a reply).
    pub const EOS: TokenId = EOS;

    /// A fake with `n_seq_max` sequences of `n_ctx` KV cells each and `n_batch` tokens per decode.
    pub fn new(n_ctx: u32, n_batch: u32, n_seq_max: u32) -> Self {
        Self {
            facts: ModelFacts {
                name: "fake".into(),
                architecture: "fake".into(),
                n_ctx_train: n_ctx,
                n_vocab: N_VOCAB,
                n_layer: 1,
                n_embd: 1,
                n_params: 0,
                size_bytes: 0,
                bos: Some(BOS),
                eos: Some(EOS),
                eot: Some(IM_END),
                bos_text: "<s>".into(),
                eos_text: "</s>".into(),
                add_bos: false,
                n_swa: 0,
                chat_template: Some(CHATML.into()),
                fingerprint: Fingerprint([7; 32]),
            },
            info: ContextInfo {
                n_ctx: n_ctx * n_seq_max,
                n_ctx_seq: n_ctx,
                n_batch,
                n_seq_max,
                kv_type: KvType::F16,
                flash_attention: true,
                threads: 1,
            },
            script: FakeScript::hash(),
            kv: HashMap::new(),
            logits: Vec::new(),
            control: Arc::default(),
        }
    }

    /// Replaces the script.
    pub fn with_script(mut self, script: FakeScript) -> Self {
        self.script = script;
        self
    }

    /// The shared control block.
    pub fn control(&self) -> Arc<Mutex<FakeControl>> {
        Arc::clone(&self.control)
    }

    fn lock(&self) -> MutexGuard<'_, FakeControl> {
        // A test that panicked while holding the lock already failed; keep going with its data.
        self.control.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn check_seq(&self, seq: SeqId) -> Result<(), EngineError> {
        if seq < 0 || seq as u32 >= self.info.n_seq_max {
            return Err(EngineError::InvalidBatch { reason: format!("sequence {seq} out of range") });
        }
        Ok(())
    }
}

/// The fake's tokenizer: bytes plus four special tokens.
pub struct FakeTokenizer {
    add_bos: bool,
}

impl Tokenizer for FakeTokenizer {
    fn tokenize(&self, text: &str, options: TokenizeOptions) -> Result<Vec<TokenId>, EngineError> {
        let mut out = Vec::with_capacity(text.len() + 1);
        if options.add_bos && self.add_bos {
            out.push(BOS);
        }
        let mut rest = text;
        'outer: while !rest.is_empty() {
            if options.parse_special {
                for (s, id) in SPECIALS {
                    if let Some(tail) = rest.strip_prefix(s) {
                        out.push(id);
                        rest = tail;
                        continue 'outer;
                    }
                }
            }
            let ch = rest.chars().next().map_or(1, char::len_utf8);
            out.extend(rest.as_bytes()[..ch].iter().map(|&b| TokenId::from(b)));
            rest = &rest[ch..];
        }
        Ok(out)
    }

    fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        match u8::try_from(token) {
            Ok(b) => vec![b],
            Err(_) => Vec::new(),
        }
    }

    fn is_eog(&self, token: TokenId) -> bool {
        token == EOS || token == IM_END
    }

    fn n_vocab(&self) -> usize {
        N_VOCAB
    }

    fn token_text(&self, token: TokenId) -> Vec<u8> {
        match SPECIALS.iter().find(|(_, id)| *id == token) {
            Some((text, _)) => text.as_bytes().to_vec(),
            None => self.token_bytes(token),
        }
    }

    fn is_special(&self, token: TokenId) -> bool {
        SPECIALS.iter().any(|(_, id)| *id == token)
    }
}

/// A ChatML template like SmolLM2's, without the default system prompt.
const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

impl Engine for FakeEngine {
    fn facts(&self) -> &ModelFacts {
        &self.facts
    }

    fn context(&self) -> ContextInfo {
        self.info
    }

    fn tokenizer(&self) -> Arc<dyn Tokenizer> {
        Arc::new(FakeTokenizer { add_bos: self.facts.add_bos })
    }

    fn decode(&mut self, batch: &Batch) -> Result<(), EngineError> {
        self.logits.clear();
        {
            let mut control = self.lock();
            control.batches.push(summarize(batch));
            if control.panic_next_decode {
                control.panic_next_decode = false;
                drop(control);
                panic!("FakeEngine: injected panic");
            }
            if control.fail_decodes > 0 {
                control.fail_decodes -= 1;
                return Err(EngineError::Decode { reason: "injected failure".into() });
            }
        }
        if batch.is_empty() || batch.len() > self.info.n_batch as usize {
            return Err(EngineError::InvalidBatch { reason: format!("{} tokens", batch.len()) });
        }
        // Each sequence has a stream of its own, as in llama.cpp without a unified cache.
        let mut per_seq: HashMap<SeqId, usize> = HashMap::new();
        for row in batch.rows() {
            *per_seq.entry(row.seq).or_default() += 1;
        }
        if per_seq.iter().any(|(s, n)| self.kv.get(s).map_or(0, Vec::len) + n > self.info.n_ctx_seq as usize) {
            return Err(EngineError::KvFull { tokens: batch.len() });
        }
        // Validate everything first so a bad batch changes nothing.
        let mut next_pos: HashMap<SeqId, u32> = HashMap::new();
        for row in batch.rows() {
            self.check_seq(row.seq)?;
            if row.token < 0 || row.token as usize >= N_VOCAB {
                return Err(EngineError::InvalidBatch { reason: format!("token {}", row.token) });
            }
            let expected =
                next_pos.entry(row.seq).or_insert_with(|| self.kv.get(&row.seq).map_or(0, |v| v.len() as u32));
            if row.pos != *expected {
                return Err(EngineError::InvalidBatch {
                    reason: format!("sequence {} position {} but expected {}", row.seq, row.pos, expected),
                });
            }
            *expected += 1;
        }
        for row in batch.rows() {
            let seq = self.kv.entry(row.seq).or_default();
            seq.push(row.token);
            let logits = row.logits.then(|| {
                let mut l = vec![0.0f32; N_VOCAB];
                l[(self.script.0)(seq) as usize] = 10.0;
                l
            });
            self.logits.push(logits);
        }
        Ok(())
    }

    fn logits(&self, row: usize) -> Result<&[f32], EngineError> {
        self.logits.get(row).and_then(|l| l.as_deref()).ok_or(EngineError::NoLogits { row })
    }

    fn kv_truncate(&mut self, seq: SeqId, from: u32) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        {
            let mut control = self.lock();
            if from > 0 && control.fail_partial_truncates > 0 {
                control.fail_partial_truncates -= 1;
                return Err(EngineError::Kv { op: "truncate", seq });
            }
        }
        if let Some(v) = self.kv.get_mut(&seq) {
            v.truncate(from as usize);
            if v.is_empty() {
                self.kv.remove(&seq);
            }
        }
        Ok(())
    }

    fn kv_copy_prefix(&mut self, src: SeqId, dst: SeqId, len: u32) -> Result<(), EngineError> {
        self.check_seq(src)?;
        self.check_seq(dst)?;
        if src == dst {
            return Err(EngineError::Kv { op: "copy_prefix", seq: src });
        }
        let prefix = match self.kv.get(&src) {
            Some(v) if v.len() >= len as usize => v[..len as usize].to_vec(),
            _ => return Err(EngineError::Kv { op: "copy_prefix", seq: src }),
        };
        if self.kv.get(&dst).is_some_and(|v| !v.is_empty()) {
            return Err(EngineError::Kv { op: "copy_prefix", seq: dst });
        }
        if len > 0 {
            self.kv.insert(dst, prefix);
        }
        Ok(())
    }

    fn kv_len(&self, seq: SeqId) -> u32 {
        self.kv.get(&seq).map_or(0, |v| v.len() as u32)
    }

    fn export_state(&self, seq: SeqId) -> Result<Vec<u8>, EngineError> {
        self.check_seq(seq)?;
        let tokens = self.kv.get(&seq).map(Vec::as_slice).unwrap_or_default();
        let mut out = STATE_MAGIC.to_vec();
        out.extend((tokens.len() as u32).to_le_bytes());
        out.extend(tokens.iter().flat_map(|t| t.to_le_bytes()));
        Ok(out)
    }

    fn import_state(&mut self, seq: SeqId, state: &[u8]) -> Result<(), EngineError> {
        self.check_seq(seq)?;
        let bad = |reason: &str| EngineError::StateImport { seq, reason: reason.into() };
        let body = state.strip_prefix(STATE_MAGIC.as_slice()).ok_or_else(|| bad("bad magic"))?;
        let (count, rest) = body.split_at_checked(4).ok_or_else(|| bad("truncated"))?;
        let count = u32::from_le_bytes(count.try_into().map_err(|_| bad("truncated"))?) as usize;
        if rest.len() != count * 4 {
            return Err(bad("length mismatch"));
        }
        let tokens: Vec<TokenId> =
            rest.chunks_exact(4).map(|c| TokenId::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        if tokens.len() > self.info.n_ctx_seq as usize {
            return Err(bad("no room in the sequence's KV stream"));
        }
        self.kv.insert(seq, tokens);
        Ok(())
    }
}

fn summarize(batch: &Batch) -> Vec<(SeqId, usize)> {
    let mut out: Vec<(SeqId, usize)> = Vec::new();
    for row in batch.rows() {
        match out.last_mut() {
            Some((seq, n)) if *seq == row.seq => *n += 1,
            _ => out.push((row.seq, 1)),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn greedy_continue(engine: &mut FakeEngine, seq: SeqId, prompt: &[TokenId], n: usize) -> Vec<TokenId> {
        let mut batch = Batch::new();
        let start = engine.kv_len(seq);
        let row = batch.push_span(seq, prompt, start, true).unwrap();
        engine.decode(&batch).unwrap();
        let mut out = Vec::new();
        let mut next = crate::sampler::argmax(engine.logits(row).unwrap());
        for _ in 0..n {
            out.push(next);
            batch.clear();
            let pos = engine.kv_len(seq);
            batch.push(seq, next, pos, true);
            engine.decode(&batch).unwrap();
            next = crate::sampler::argmax(engine.logits(0).unwrap());
        }
        out
    }

    #[test]
    fn tokenize_parses_specials_only_when_asked() {
        let e = FakeEngine::new(64, 16, 4).tokenizer();
        assert_eq!(e.tokenize("<|im_start|>a", TokenizeOptions::PROMPT).unwrap(), vec![IM_START, 97]);
        assert_eq!(e.tokenize("<s>", TokenizeOptions::PLAIN).unwrap().len(), 3);
        assert_eq!(e.detokenize(&e.tokenize("héllo", TokenizeOptions::PLAIN).unwrap()), "héllo");
    }

    #[test]
    fn decode_rejects_position_gaps_and_changes_nothing() {
        let mut e = FakeEngine::new(64, 16, 4);
        let mut b = Batch::new();
        b.push(0, 1, 0, false);
        b.push(0, 2, 2, true);
        assert!(matches!(e.decode(&b), Err(EngineError::InvalidBatch { .. })));
        assert_eq!(e.kv_len(0), 0);
    }

    #[test]
    fn same_history_same_tokens_across_sequences_and_state_round_trip() {
        let mut e = FakeEngine::new(256, 32, 4);
        let a = greedy_continue(&mut e, 0, &[1, 2, 3], 8);
        let b = greedy_continue(&mut e, 1, &[1, 2, 3], 8);
        assert_eq!(a, b);
        let state = e.export_state(0).unwrap();
        e.kv_truncate(2, 0).unwrap();
        e.import_state(2, &state).unwrap();
        assert_eq!(greedy_continue(&mut e, 2, &[5], 4), greedy_continue(&mut e, 0, &[5], 4));
        assert!(e.import_state(3, b"junk").is_err());
    }

    #[test]
    fn kv_capacity_is_enforced_per_sequence() {
        let mut e = FakeEngine::new(4, 8, 2);
        let mut b = Batch::new();
        b.push_span(0, &[1, 2, 3, 4, 5], 0, true);
        assert!(matches!(e.decode(&b), Err(EngineError::KvFull { .. })));
        // Two sequences of 4 fit side by side: each has a stream of its own.
        let mut b = Batch::new();
        b.push_span(0, &[1, 2, 3, 4], 0, true);
        b.push_span(1, &[1, 2, 3, 4], 0, true);
        assert!(e.decode(&b).is_ok());
    }

    #[test]
    fn reply_script_answers_then_ends() {
        let mut e = FakeEngine::new(256, 32, 2).with_script(FakeScript::reply("hi"));
        let out = greedy_continue(&mut e, 0, &[IM_START, 97], 3);
        assert_eq!(out, vec![104, 105, EOS]);
    }
}

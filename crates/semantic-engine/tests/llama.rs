//! Real-model tests of `LlamaEngine` on the default SmolLM2 GGUF (fetched by `scripts/setup`).

use std::path::PathBuf;

use semantic_engine::sampler::{argmax, top2_gap};
use semantic_engine::{Batch, Engine, EngineConfig, KvType, LlamaEngine, SeqId, TokenId, TokenizeOptions};

fn model_path() -> PathBuf {
    std::env::var_os("SEMANTIC_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

fn engine(kv_type: KvType) -> LlamaEngine {
    let mut config = EngineConfig::new(model_path());
    config.n_ctx = 2048;
    config.n_seq_max = 4;
    config.kv_type = kv_type;
    LlamaEngine::load(&config).expect("the default model is installed by scripts/setup")
}

/// Prefill `prompt` into `seq` (one batch), then greedy-decode `n` tokens one at a time.
fn greedy(engine: &mut LlamaEngine, seq: SeqId, prompt: &[TokenId], n: usize) -> Vec<TokenId> {
    let mut batch = Batch::new();
    let start = engine.kv_len(seq);
    let row = batch.push_span(seq, prompt, start, true).expect("non-empty prompt");
    engine.decode(&batch).unwrap();
    let mut next = argmax(engine.logits(row).unwrap());
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(next);
        batch.clear();
        batch.push(seq, next, engine.kv_len(seq), true);
        engine.decode(&batch).unwrap();
        next = argmax(engine.logits(0).unwrap());
    }
    out
}

fn prompt(engine: &LlamaEngine, text: &str) -> Vec<TokenId> {
    engine.tokenizer().tokenize(text, TokenizeOptions::PROMPT).unwrap()
}

#[test]
fn facts_describe_smollm2() {
    let e = engine(KvType::F16);
    let f = e.facts();
    assert_eq!(f.architecture, "llama");
    assert_eq!(f.n_vocab, 49_152);
    assert_eq!(f.n_ctx_train, 8192);
    assert!(f.chat_template.as_deref().is_some_and(|t| t.contains("<|im_start|>")));
    assert_eq!(f.fingerprint.to_hex(), "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53");
    assert!(e.tokenizer().is_eog(f.eos.unwrap()));
    assert_eq!(e.tokenizer().detokenize(&prompt(&e, "Hello world")), "Hello world");
}

#[test]
fn greedy_is_deterministic_and_sensible() {
    let mut e = engine(KvType::F16);
    let p = prompt(&e, "The capital of France is");
    let a = greedy(&mut e, 0, &p, 12);
    e.kv_truncate(0, 0).unwrap();
    let b = greedy(&mut e, 0, &p, 12);
    assert_eq!(a, b);
    assert!(e.tokenizer().detokenize(&a).contains("Paris"), "{:?}", e.tokenizer().detokenize(&a));
}

#[test]
fn two_sequences_in_one_batch_match_each_alone() {
    let mut e = engine(KvType::F16);
    let pa = prompt(&e, "Once upon a time, in a small village,");
    let pb = prompt(&e, "The three primary colors are");
    let alone_a = greedy(&mut e, 0, &pa, 16);
    let alone_b = greedy(&mut e, 1, &pb, 16);
    e.kv_truncate(0, 0).unwrap();
    e.kv_truncate(1, 0).unwrap();

    let mut batch = Batch::new();
    let ra = batch.push_span(2, &pa, 0, true).unwrap();
    let rb = batch.push_span(3, &pb, 0, true).unwrap();
    e.decode(&batch).unwrap();
    let (mut na, mut nb) = (argmax(e.logits(ra).unwrap()), argmax(e.logits(rb).unwrap()));
    let (mut out_a, mut out_b) = (Vec::new(), Vec::new());
    for _ in 0..16 {
        out_a.push(na);
        out_b.push(nb);
        batch.clear();
        batch.push(2, na, e.kv_len(2), true);
        batch.push(3, nb, e.kv_len(3), true);
        e.decode(&batch).unwrap();
        na = argmax(e.logits(0).unwrap());
        nb = argmax(e.logits(1).unwrap());
    }
    assert_eq!(out_a, alone_a);
    assert_eq!(out_b, alone_b);
}

#[test]
fn exported_state_continues_identically_in_a_fresh_sequence() {
    for kv in [KvType::F16, KvType::Q8_0, KvType::Q4_0] {
        let mut e = engine(kv);
        let p = prompt(&e, "List three fruits: apple,");
        let head = greedy(&mut e, 0, &p, 4);
        // Bring seq 0 to "prompt + head" exactly, then snapshot it.
        e.kv_truncate(0, (p.len() + head.len() - 1) as u32).unwrap();
        let state = e.export_state(0).unwrap();
        assert!(!state.is_empty());
        let last = *head.last().unwrap();
        let original = greedy(&mut e, 0, &[last], 12);
        e.import_state(1, &state).unwrap();
        assert_eq!(e.kv_len(1), (p.len() + head.len() - 1) as u32);
        let restored = greedy(&mut e, 1, &[last], 12);
        assert_eq!(restored, original, "kv type {kv}");
    }
}

#[test]
fn bad_batches_are_errors_not_crashes() {
    let mut e = engine(KvType::F16);
    let mut batch = Batch::new();
    assert!(e.decode(&batch).is_err());
    batch.push(99, 1, 0, true);
    assert!(e.decode(&batch).is_err());
    batch.clear();
    batch.push(0, 1_000_000, 0, true);
    assert!(e.decode(&batch).is_err());
    batch.clear();
    batch.push(0, 1, 0, false);
    e.decode(&batch).unwrap();
    assert!(e.logits(0).is_err());
    assert!(e.import_state(1, b"not a state").is_err());
    assert_eq!(e.kv_len(1), 0);
    let _ = top2_gap(&[0.0, 1.0]);
}

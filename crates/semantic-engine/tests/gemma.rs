//! Real-model tests of `LlamaEngine` on Gemma 3 270M (fetched by `scripts/setup-gemma`, which
//! `scripts/test` runs): a model with sliding-window attention layers (window 512), whose KV cache
//! keeps only the last window plus one batch of each sequence. Every memory path must stay exact:
//! continuing after a disk round trip, cutting inside the kept window, and refusing (never
//! serving) a cut the window no longer covers.

use std::path::PathBuf;

use semantic_engine::sampler::argmax;
use semantic_engine::{Batch, Engine, EngineConfig, EngineError, KvType, LlamaEngine, SeqId, TokenId, TokenizeOptions};

fn model_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf")
}

fn engine() -> LlamaEngine {
    let mut config = EngineConfig::new(model_path());
    config.n_ctx = 4096;
    config.n_seq_max = 4;
    config.n_batch = 256;
    config.kv_type = KvType::F16;
    LlamaEngine::load(&config).expect("Gemma 3 270M is installed by scripts/setup-gemma")
}

fn prompt(engine: &LlamaEngine, text: &str) -> Vec<TokenId> {
    engine.tokenizer().tokenize(text, TokenizeOptions::PROMPT).unwrap()
}

/// Prefills `tokens` into `seq` from its current end in `chunk`-token batches; the greedy next token.
fn prefill(engine: &mut LlamaEngine, seq: SeqId, tokens: &[TokenId], chunk: usize) -> TokenId {
    let mut batch = Batch::new();
    let mut row = 0;
    for part in tokens.chunks(chunk) {
        batch.clear();
        row = batch.push_span(seq, part, engine.kv_len(seq), true).expect("non-empty chunk");
        engine.decode(&batch).unwrap();
    }
    argmax(engine.logits(row).unwrap())
}

/// Greedy-decodes `n` tokens from `first` (sampled, not yet fed), one per step.
fn decode(engine: &mut LlamaEngine, seq: SeqId, first: TokenId, n: usize) -> Vec<TokenId> {
    let mut out = vec![first];
    let mut batch = Batch::new();
    while out.len() < n {
        batch.clear();
        batch.push(seq, *out.last().unwrap(), engine.kv_len(seq), true);
        engine.decode(&batch).unwrap();
        out.push(argmax(engine.logits(0).unwrap()));
    }
    out
}

/// A Gemma chat turn about a long document (well past the window plus a batch).
fn long_turn(engine: &LlamaEngine) -> Vec<TokenId> {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("Debian ships the GPL-3 text");
    let document: String = text.chars().take(7000).collect();
    prompt(
        engine,
        &format!("<start_of_turn>user\n{document}\nWhat is this text about?<end_of_turn>\n<start_of_turn>model\n"),
    )
}

#[test]
fn gemma_facts_name_its_sliding_window() {
    let e = engine();
    let facts = e.facts();
    assert_eq!((facts.architecture.as_str(), facts.n_swa), ("gemma3", 512));
    assert!(facts.chat_template.is_none(), "the base model's GGUF carries no chat template");
    assert_eq!(
        e.tokenizer()
            .tokenize("<start_of_turn>", TokenizeOptions { add_bos: false, parse_special: true })
            .unwrap()
            .len(),
        1
    );
}

/// The warm path (turn 1 in chunks, reply token by token, state to disk and into a fresh engine,
/// cut at the reused prefix inside the kept window, then the new tail) gives the same greedy
/// tokens as a cold engine replaying the same steps.
#[test]
fn gemma_warm_turn_after_a_disk_round_trip_equals_a_cold_replay() {
    const CHUNK: usize = 64;
    const REPLY: usize = 16;
    let mut a = engine();
    let p1 = long_turn(&a);
    assert!(p1.len() > 1400, "the prompt ({}) must outgrow the window plus a batch", p1.len());
    let first = prefill(&mut a, 0, &p1, CHUNK);
    let reply = decode(&mut a, 0, first, REPLY);
    prefill(&mut a, 0, &reply[REPLY - 1..], 1);
    let state = a.export_state(0).unwrap();
    let per_token = state.len() as f64 / a.kv_len(0) as f64;
    eprintln!("gemma state: {} bytes for {} tokens ({per_token:.0} bytes/token)", state.len(), a.kv_len(0));
    drop(a);

    let mut p2 = p1.clone();
    p2.extend_from_slice(&reply[..REPLY - 1]);
    let reused = p2.len();
    let mut b = engine();
    p2.extend(prompt(
        &b,
        "<end_of_turn>\n<start_of_turn>user\nSay more about the second point.<end_of_turn>\n<start_of_turn>model\n",
    ));
    b.import_state(0, &state).unwrap();
    assert_eq!(b.kv_len(0) as usize, p1.len() + REPLY);
    b.kv_truncate(0, reused as u32).expect("a cut inside the kept window works");
    let first_warm = prefill(&mut b, 0, &p2[reused..], CHUNK);
    let warm = decode(&mut b, 0, first_warm, 24);
    drop(b);

    let mut c = engine();
    assert_eq!(prefill(&mut c, 0, &p1, CHUNK), reply[0]);
    for &t in &reply[..REPLY - 1] {
        prefill(&mut c, 0, &[t], 1);
    }
    let first_cold = prefill(&mut c, 0, &p2[reused..], CHUNK);
    let cold = decode(&mut c, 0, first_cold, 24);
    assert_eq!(warm, cold, "the warm answer differs from the cold replay");
}

/// A cut further back than the kept window is refused (the scheduler then recomputes), for a
/// sequence's own KV and for a prefix copied into another sequence; the refused copy leaves its
/// destination empty. Recomputing gives the cold answer.
#[test]
fn gemma_refuses_a_cut_its_window_no_longer_covers() {
    let mut e = engine();
    let p = long_turn(&e);
    prefill(&mut e, 0, &p, 256);
    let len = e.kv_len(0);
    match e.kv_truncate(0, 600) {
        Err(EngineError::WindowTrim { keep: 600, window: 512, oldest, .. }) => assert!(oldest > 88, "oldest {oldest}"),
        other => panic!("expected a refused cut, got {other:?}"),
    }
    assert_eq!(e.kv_len(0), len, "a refused cut changes nothing");
    match e.kv_copy_prefix(0, 1, 600) {
        Err(EngineError::WindowTrim { .. }) => {}
        other => panic!("expected a refused prefix copy, got {other:?}"),
    }
    assert_eq!(e.kv_len(1), 0, "the refused copy leaves its destination empty");
    // Recomputing the first 600 tokens and continuing equals a plain cold run of them.
    let short = &p[..600];
    let recomputed = prefill(&mut e, 1, short, 256);
    let again = decode(&mut e, 1, recomputed, 8);
    let mut cold = engine();
    let cold_first = prefill(&mut cold, 0, short, 256);
    assert_eq!(again, decode(&mut cold, 0, cold_first, 8));
    // A cut near the end (inside the window) still works.
    e.kv_truncate(0, len - 40).expect("a cut inside the kept window works");
    assert_eq!(e.kv_len(0), len - 40);
}

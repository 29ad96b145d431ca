//! Real-model tests of `LlamaEngine` on the default SmolLM2 GGUF (fetched by `scripts/setup`).

use std::path::PathBuf;

use semantic_engine::sampler::{argmax, top2_gap};
use semantic_engine::{Batch, Engine, EngineConfig, KvElem, KvType, LlamaEngine, SeqId, TokenId, TokenizeOptions};

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
    let mixed = KvType { k: KvElem::Q5_1, v: KvElem::Q4_0 };
    for kv in [KvType::F16, KvType::Q8_0, KvType::Q4_0, mixed] {
        let mut e = engine(kv);
        assert_eq!(e.context().flash_attention, kv.is_quantized(), "auto: flash attention only for quantized KV");
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
fn a_partial_prefix_copy_between_streams_never_aborts_and_continues_like_a_cold_run() {
    // Regression: each sequence has its own KV stream, where llama.cpp's seq_cp of a partial
    // range aborts the process (`seq_cp() is only supported for full KV buffers`).
    let mut e = engine(KvType::F16);
    let context = e.context();
    assert_eq!((context.n_ctx_seq, context.n_ctx), (2048, 2048 * 4), "one stream of 2048 cells per sequence");
    let shared = prompt(&e, "You are a helpful assistant. The document says: the sky is blue and grass is green.");
    let _ = greedy(&mut e, 0, &shared, 6);
    let len = shared.len() as u32 - 3;
    e.kv_copy_prefix(0, 2, len).unwrap();
    assert_eq!(e.kv_len(2), len);
    assert!(e.kv_copy_prefix(0, 2, len).is_err(), "the destination must be empty");
    let rest = &shared[len as usize..];
    let copied = greedy(&mut e, 2, rest, 8);
    let cold = greedy(&mut e, 3, &shared, 8);
    // Chunking differs (one batch vs prefix + rest), so compare with llama.cpp's batch-size noise in
    // mind: the first tokens agree on this prompt.
    assert_eq!(copied[..4], cold[..4]);
}

#[test]
fn one_sequence_never_sees_another_sequences_cells() {
    // A long idle neighbour does not change a short sequence's answer: per-sequence streams.
    let mut e = engine(KvType::F16);
    let p = prompt(&e, "Name three colors:");
    let alone = greedy(&mut e, 1, &p, 8);
    e.kv_truncate(1, 0).unwrap();
    let filler: Vec<TokenId> = prompt(&e, &licence_text(0..4000)).into_iter().take(1500).collect();
    let mut batch = Batch::new();
    for chunk in filler.chunks(512) {
        batch.clear();
        batch.push_span(0, chunk, e.kv_len(0), false);
        e.decode(&batch).unwrap();
    }
    assert_eq!(greedy(&mut e, 1, &p, 8), alone);
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

/// Prefills `tokens` into `seq` from its current end in chunks of `chunk` (as the scheduler's step
/// budget cuts a prompt); returns the last row's logits' argmax and top-2 gap.
fn prefill_chunked(engine: &mut LlamaEngine, seq: SeqId, tokens: &[TokenId], chunk: usize) -> (TokenId, f32) {
    let mut batch = Batch::new();
    let mut row = 0;
    for part in tokens.chunks(chunk) {
        batch.clear();
        row = batch.push_span(seq, part, engine.kv_len(seq), true).expect("non-empty chunk");
        engine.decode(&batch).unwrap();
    }
    let logits = engine.logits(row).unwrap();
    (argmax(logits), top2_gap(logits))
}

/// Feeds `tokens` one per decode step (as generated reply tokens are); returns the greedy token
/// after the last one.
fn feed_one_by_one(engine: &mut LlamaEngine, seq: SeqId, tokens: &[TokenId]) -> TokenId {
    let mut batch = Batch::new();
    let mut next = -1;
    for &t in tokens {
        batch.clear();
        batch.push(seq, t, engine.kv_len(seq), true);
        engine.decode(&batch).unwrap();
        next = argmax(engine.logits(0).unwrap());
    }
    next
}

/// Greedy-decodes `n` tokens starting from `first` (already sampled, not yet fed); returns them
/// and each step's top-2 logit gap.
fn decode_greedy(engine: &mut LlamaEngine, seq: SeqId, first: TokenId, n: usize) -> (Vec<TokenId>, Vec<f32>) {
    let (mut out, mut gaps) = (vec![first], Vec::new());
    let mut batch = Batch::new();
    while out.len() < n {
        batch.clear();
        batch.push(seq, *out.last().unwrap(), engine.kv_len(seq), true);
        engine.decode(&batch).unwrap();
        let logits = engine.logits(0).unwrap();
        gaps.push(top2_gap(logits));
        out.push(argmax(logits));
    }
    (out, gaps)
}

fn licence_text(chars: std::ops::Range<usize>) -> String {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("Debian ships the GPL-3 text");
    text.chars().skip(chars.start).take(chars.len()).collect()
}

/// A two-turn conversation in SmolLM2's chat format: turn 1's prompt, and the pieces of turn 2.
fn chat_turn(engine: &LlamaEngine, document: &str) -> Vec<TokenId> {
    prompt(
        engine,
        &format!("<|im_start|>user\n{document}\nWhat is this text about?<|im_end|>\n<|im_start|>assistant\n"),
    )
}

/// Issue 4 item 10a: the warm path (turn 1 prefilled in chunks and its reply decoded token by
/// token, state exported to a file, read back and imported into a fresh engine, trimmed to the
/// reused prefix, then the new tail) gives the same greedy tokens as a cold engine replaying exactly
/// those prefill chunks and decode steps. Exactness is defined here because every KV entry is
/// computed by a batch of the same shape at the same position.
#[test]
fn warm_turn_after_a_disk_round_trip_equals_a_cold_replay_of_the_same_steps() {
    const CHUNK: usize = 48;
    const REPLY: usize = 20;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().to_path_buf();
    for kv in [KvType::F16, KvType::Q8_0] {
        // Turn 1 on engine A: chunked prefill, the reply fed token by token (all of it, as the
        // scheduler leaves prompt + reply in the agent's KV), then the state goes to disk.
        let mut a = engine(kv);
        let p1 = chat_turn(&a, &licence_text(0..900));
        let (first, _) = prefill_chunked(&mut a, 0, &p1, CHUNK);
        let (reply, _) = decode_greedy(&mut a, 0, first, REPLY);
        feed_one_by_one(&mut a, 0, &reply[REPLY - 1..]);
        let file = dir.join(format!("agent-{kv}.kv"));
        std::fs::write(&file, a.export_state(0).unwrap()).unwrap();
        drop(a);

        // Turn 2 re-renders the reply without its last token, then a new user turn: the reusable
        // prefix is p1 + reply[..REPLY-1], so the imported KV must be trimmed.
        let scratch = engine(kv);
        let mut p2 = p1.clone();
        p2.extend_from_slice(&reply[..REPLY - 1]);
        let reused = p2.len();
        p2.extend(prompt(
            &scratch,
            "<|im_end|>\n<|im_start|>user\nSay more about the second point.<|im_end|>\n<|im_start|>assistant\n",
        ));
        drop(scratch);

        let mut b = engine(kv);
        b.import_state(0, &std::fs::read(&file).unwrap()).unwrap();
        assert_eq!(b.kv_len(0) as usize, p1.len() + REPLY);
        b.kv_truncate(0, reused as u32).unwrap();
        let (first_warm, _) = prefill_chunked(&mut b, 0, &p2[reused..], CHUNK);
        let (warm, _) = decode_greedy(&mut b, 0, first_warm, 32);
        drop(b);

        // Cold replay on engine C: the same chunks and single-token steps, no state transfer.
        let mut c = engine(kv);
        let (first_cold, _) = prefill_chunked(&mut c, 0, &p1, CHUNK);
        assert_eq!(first_cold, reply[0]);
        assert_eq!(feed_one_by_one(&mut c, 0, &reply[..REPLY - 1]), reply[REPLY - 1]);
        let (first_tail, _) = prefill_chunked(&mut c, 0, &p2[reused..], CHUNK);
        let (cold, _) = decode_greedy(&mut c, 0, first_tail, 32);
        assert_eq!(warm, cold, "kv type {kv}: the warm answer differs from the cold replay");
    }
}

/// Row of the last token of a prefill in 512-token chunks.
fn last_row(tokens: &[TokenId]) -> usize {
    (tokens.len() - 1) % 512
}

/// Issue 4 item 10b: across 10 ordinary conversations, a warm turn 2 (turn 1's KV reused, only the
/// tail prefilled) against a plain cold turn 2 (the whole prompt prefilled in 512-token batches, as
/// a fresh server would). Batch shapes differ, so llama.cpp's kernels may differ in the last bits;
/// the test reports how many answers are identical and requires every divergence to start where
/// the cold run's top two logits were closer than twice the largest logit drift measured between
/// the two paths on the same conversation (measured here: drift 0.48-0.87 with Q4_1 weights, flips
/// at gaps 0.02-0.22 in 6 of 10 conversations). A reuse bug (a wrong token or position in the KV)
/// shows up as a divergence at a clear winner, which this rejects.
#[test]
fn warm_answers_equal_cold_ones_except_at_near_ties() {
    let mut identical = 0;
    let (mut report, mut drifts) = (Vec::new(), Vec::new());
    for i in 0..10 {
        let mut e = engine(KvType::F16);
        let p1 = chat_turn(&e, &licence_text(i * 2500..i * 2500 + 700));
        let (first, _) = prefill_chunked(&mut e, 0, &p1, 512);
        let (reply, _) = decode_greedy(&mut e, 0, first, 24);
        let mut p2 = p1.clone();
        p2.extend_from_slice(&reply);
        let reused = p2.len();
        p2.extend(prompt(&e, "<|im_end|>\n<|im_start|>user\nGive one example.<|im_end|>\n<|im_start|>assistant\n"));
        // Warm: turn 1's KV (prompt + reply) stays, only the tail is prefilled.
        feed_one_by_one(&mut e, 0, &reply[reply.len() - 1..]);
        assert_eq!(e.kv_len(0) as usize, reused);
        let (first_warm, _) = prefill_chunked(&mut e, 0, &p2[reused..], 512);
        let warm_logits = e.logits(last_row(&p2[reused..])).unwrap().to_vec();
        let (warm, _) = decode_greedy(&mut e, 0, first_warm, 32);
        // Cold: a fresh sequence prefills all of turn 2.
        let (first_cold, gap0) = prefill_chunked(&mut e, 1, &p2, 512);
        let cold_logits = e.logits(last_row(&p2)).unwrap();
        let drift = warm_logits.iter().zip(cold_logits).map(|(w, c)| (w - c).abs()).fold(0.0f32, f32::max);
        drifts.push(drift);
        let (cold, gaps) = decode_greedy(&mut e, 1, first_cold, 32);
        match warm.iter().zip(&cold).position(|(w, c)| w != c) {
            None => identical += 1,
            Some(at) => {
                let gap = if at == 0 { gap0 } else { gaps[at - 1] };
                report.push(format!("conversation {i}: diverges at token {at}, cold top-2 gap {gap:.4}"));
                let drift = drifts[drifts.len() - 1];
                assert!(
                    gap < 2.0 * drift,
                    "conversation {i}: diverged at token {at} where the top-2 gap {gap} exceeds twice the drift {drift}"
                );
            }
        }
    }
    eprintln!(
        "warm == cold in {identical}/10 conversations; {}; max |logit drift| at the first answer token: {drifts:.3?}",
        report.join("; ")
    );
}

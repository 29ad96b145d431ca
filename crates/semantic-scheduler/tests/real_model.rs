//! Real-model scheduler tests on SmolLM2: batching must not change what a request produces.

use std::path::PathBuf;

use semantic_engine::sampler::{argmax, top2_gap};
use semantic_engine::{Batch, Engine, EngineConfig, LlamaEngine, SamplingParams, TokenId, TokenizeOptions};
use semantic_scheduler::{Event, FinishReason, GenerateRequest, RequestStream, Scheduler, SchedulerConfig};

fn model_path() -> PathBuf {
    std::env::var_os("SEMANTIC_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

fn engine_config() -> EngineConfig {
    let mut config = EngineConfig::new(model_path());
    config.n_ctx = 4096;
    config.n_seq_max = 8;
    config
}

fn scheduler(max_running: usize) -> Scheduler {
    let config = SchedulerConfig { max_running, step_token_budget: 512, queue_capacity: 16, ..Default::default() };
    Scheduler::spawn(|| LlamaEngine::load(&engine_config()), config).expect("model installed by scripts/setup")
}

const PROMPTS: [&str; 4] = [
    "The history of the Roman Empire begins with",
    "A recipe for pancakes: first,",
    "In computer science, a hash table is",
    "The water cycle describes how water",
];

fn request(s: &Scheduler, prompt: &str, max_tokens: usize) -> GenerateRequest {
    let prompt = s.tokenizer().tokenize(prompt, TokenizeOptions::PROMPT).unwrap();
    GenerateRequest { prompt, max_tokens, sampling: SamplingParams::greedy(), stop: vec![], agent: Default::default() }
}

/// Collects (text from deltas, token ids, finish reason).
fn collect(mut stream: RequestStream) -> (String, Vec<TokenId>, FinishReason) {
    let (mut text, mut tokens) = (String::new(), Vec::new());
    while let Some(event) = stream.blocking_recv() {
        match event {
            Event::Delta { text: t, tokens: ids, .. } => {
                text.push_str(&t);
                tokens.extend(ids);
            }
            Event::Done { reason, .. } => return (text, tokens, reason),
            Event::Admitted { .. } => {}
        }
    }
    panic!("stream ended without Done");
}

/// Where two greedy runs part, shows the two top logits were within llama.cpp's batch-size noise:
/// replays the common prefix alone and measures the top-2 gap at the first differing position.
fn assert_divergence_is_noise(prompt: &[TokenId], a: &[TokenId], b: &[TokenId]) {
    let common = a.iter().zip(b).take_while(|(x, y)| x == y).count();
    let mut engine = LlamaEngine::load(&engine_config()).unwrap();
    let mut context = prompt.to_vec();
    context.extend_from_slice(&a[..common]);
    let mut batch = Batch::new();
    let row = batch.push_span(0, &context, 0, true).unwrap();
    engine.decode(&batch).unwrap();
    let logits = engine.logits(row).unwrap();
    let gap = top2_gap(logits);
    assert!(
        gap < 0.05,
        "outputs part at token {common} where the top-2 logits differ by {gap} (argmax {}): a real divergence",
        argmax(logits)
    );
}

#[test]
fn concurrent_greedy_requests_match_each_alone_and_deltas_match_tokens() {
    let s = scheduler(8);
    let alone: Vec<_> = PROMPTS.iter().map(|p| collect(s.submit(request(&s, p, 32)).unwrap())).collect();
    let streams: Vec<_> = PROMPTS.iter().map(|p| s.submit(request(&s, p, 32)).unwrap()).collect();
    let together: Vec<_> = streams.into_iter().map(collect).collect();
    for (i, ((text_a, tokens_a, reason_a), (text_b, tokens_b, _))) in alone.iter().zip(&together).enumerate() {
        // The concatenated deltas are exactly the detokenized tokens (no stop strings here).
        assert_eq!(*text_a, s.tokenizer().detokenize(tokens_a));
        assert_eq!(*text_b, s.tokenizer().detokenize(tokens_b));
        assert!(matches!(reason_a, FinishReason::Length | FinishReason::Stop));
        if tokens_a != tokens_b {
            let prompt = s.tokenizer().tokenize(PROMPTS[i], TokenizeOptions::PROMPT).unwrap();
            assert_divergence_is_noise(&prompt, tokens_a, tokens_b);
        }
    }
}

#[test]
fn cancelled_request_frees_its_sequence() {
    let s = scheduler(2);
    let mut long = s.submit(request(&s, PROMPTS[0], 2000)).unwrap();
    // Wait for the first token so the request is surely running (placed first: nothing reused).
    assert_eq!(long.blocking_recv(), Some(Event::Admitted { cached_tokens: 0, source: None }));
    assert!(matches!(long.blocking_recv(), Some(Event::Delta { .. })));
    assert_eq!(s.stats().running, 1);
    drop(long);
    // Any later request is served after the step that reaps the dropped one.
    let (_, _, reason) = collect(s.submit(request(&s, PROMPTS[1], 4)).unwrap());
    assert_eq!(reason, FinishReason::Length);
    let stats = s.stats();
    assert_eq!((stats.running, stats.kv_reserved, stats.queued), (0, 0, 0));
}

#[test]
fn overlong_request_is_refused_up_front() {
    let s = scheduler(1);
    let mut r = request(&s, PROMPTS[0], 10);
    r.max_tokens = 9000;
    assert!(matches!(s.submit(r), Err(semantic_scheduler::SubmitError::ContextOverflow { .. })));
}

/// Log probabilities come from the same logits the sampler saw: the first token's entry equals a log-softmax of the
/// engine's own logits after a plain prefill of the prompt, and every later token is its row's argmax (greedy).
#[test]
fn logprobs_agree_with_the_engines_logits() {
    let s = scheduler(2);
    let mut req = request(&s, PROMPTS[1], 6);
    req.sampling.logprobs = Some(5);
    let mut stream = s.submit(req.clone()).unwrap();
    let mut lps = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        if let Event::Delta { logprobs, .. } = event {
            lps.extend(logprobs);
        }
    }
    assert!(!lps.is_empty());
    let mut engine = LlamaEngine::load(&engine_config()).unwrap();
    let mut batch = Batch::new();
    let row = batch.push_span(0, &req.prompt, 0, true).unwrap();
    engine.decode(&batch).unwrap();
    let want = semantic_engine::token_logprob(engine.logits(row).unwrap(), lps[0].token, 5);
    assert_eq!(want.top.iter().map(|t| t.0).collect::<Vec<_>>(), lps[0].top.iter().map(|t| t.0).collect::<Vec<_>>());
    assert!((want.logprob - lps[0].logprob).abs() < 1e-3, "{want:?} vs {:?}", lps[0]);
    for lp in &lps {
        assert_eq!(lp.top.len(), 5);
        assert_eq!(lp.top[0].0, lp.token, "greedy takes the most likely token");
        assert!(lp.top.windows(2).all(|w| w[0].1 >= w[1].1));
    }
}

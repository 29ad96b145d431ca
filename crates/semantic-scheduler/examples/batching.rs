//! Batching figures on the real model: aggregate decode tok/s at 1/2/4/8 concurrent sequences for a
//! short and a 2K context, and the inter-token latency of a running stream while an 8K prompt is
//! prefilled. Usage: `cargo run --release -p semantic-scheduler --example batching [MODEL]`.

use std::time::{Duration, Instant};

use semantic_engine::{EngineConfig, LlamaEngine, SamplingParams, TokenId, TokenizeOptions};
use semantic_scheduler::{Event, GenerateRequest, RequestStream, Scheduler, SchedulerConfig};

fn corpus_tokens(s: &Scheduler, n: usize, offset: usize) -> Vec<TokenId> {
    let mut text = String::new();
    for entry in std::fs::read_dir("/usr/share/common-licenses").unwrap().flatten() {
        text.push_str(&std::fs::read_to_string(entry.path()).unwrap_or_default());
    }
    let tokens = s.tokenizer().tokenize(&text, TokenizeOptions::PLAIN).unwrap();
    tokens.iter().cycle().skip(offset).take(n).copied().collect()
}

fn request(s: &Scheduler, prompt: Vec<TokenId>, max_tokens: usize) -> GenerateRequest {
    let mut sampling = SamplingParams::greedy();
    for t in [s.facts().eos, s.facts().eot].into_iter().flatten() {
        sampling.logit_bias.push((t, f32::NEG_INFINITY));
    }
    GenerateRequest { prompt, max_tokens, sampling, stop: vec![], agent: Default::default() }
}

/// Returns (token arrival times, decode tok/s reported by the scheduler).
fn drain(mut stream: RequestStream) -> (Vec<Instant>, f64) {
    let mut times = Vec::new();
    while let Some(event) = stream.blocking_recv() {
        match event {
            Event::Delta { tokens, .. } => times.extend(std::iter::repeat_n(Instant::now(), tokens.len())),
            Event::Done { timings, .. } => return (times, timings.decode_tokens_per_second),
            Event::Admitted { .. } => {}
        }
    }
    (times, 0.0)
}

fn main() {
    let skip_itl = std::env::var_os("SKIP_ITL").is_some();
    let model = std::env::args().nth(1).unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let mut engine_config = EngineConfig::new(model);
    engine_config.n_ctx = 20_480;
    engine_config.n_seq_max = 8;
    let config = SchedulerConfig { max_running: 8, step_token_budget: 512, queue_capacity: 16, ..Default::default() };
    let s = Scheduler::spawn(move || LlamaEngine::load(&engine_config), config).unwrap();
    println!("| context | sequences | aggregate decode tok/s |");
    println!("|---|---:|---:|");
    for ctx in [16usize, 2048] {
        for n in [1usize, 2, 4, 8] {
            let streams: Vec<_> =
                (0..n).map(|i| s.submit(request(&s, corpus_tokens(&s, ctx, 997 * (i + 1)), 64)).unwrap()).collect();
            // Drain every stream on its own thread so arrival times are real.
            let handles: Vec<_> = streams.into_iter().map(|st| std::thread::spawn(move || drain(st))).collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            // Aggregate over the window where every sequence was decoding.
            let start = results.iter().map(|(t, _)| t[0]).max().unwrap();
            let end = results.iter().map(|(t, _)| *t.last().unwrap()).min().unwrap();
            let tokens: usize = results.iter().map(|(t, _)| t.iter().filter(|&&x| x > start && x <= end).count()).sum();
            let secs = end.duration_since(start).as_secs_f64();
            println!("| {ctx} | {n} | {:.1} |", tokens as f64 / secs);
        }
    }
    if skip_itl {
        return;
    }
    // Inter-token latency of a stream while an 8K prompt is prefilled.
    let mut stream = s.submit(request(&s, corpus_tokens(&s, 32, 5), 4000)).unwrap();
    let mut last = Instant::now();
    let _admitted = stream.blocking_recv();
    for _ in 0..5 {
        if let Some(Event::Delta { .. }) = stream.blocking_recv() {
            last = Instant::now();
        }
    }
    let long = s.submit(request(&s, corpus_tokens(&s, 8000, 12_345), 8)).unwrap();
    let submitted = Instant::now();
    let long_thread = std::thread::spawn(move || drain(long));
    let mut gaps: Vec<Duration> = Vec::new();
    while !long_thread.is_finished() {
        match stream.blocking_recv() {
            Some(Event::Delta { .. }) => {
                let now = Instant::now();
                gaps.push(now - last);
                last = now;
            }
            _ => break,
        }
    }
    let (long_times, _) = long_thread.join().unwrap();
    drop(stream);
    gaps.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "\nwhile an 8000-token prompt prefilled ({:.1} s to its first token): {} tokens of the running stream, inter-token latency median {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        long_times.first().map_or(0.0, |t| t.duration_since(submitted).as_secs_f64()),
        gaps.len(),
        ms(gaps[gaps.len() / 2]),
        ms(gaps[gaps.len() * 9 / 10]),
        ms(*gaps.last().unwrap())
    );
}

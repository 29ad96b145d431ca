//! Measures raw engine prefill/decode speed (no scheduler), to compare with llama-bench.
use std::time::Instant;

use semantic_engine::sampler::argmax;
use semantic_engine::{Batch, Engine, EngineConfig, LlamaEngine};

fn main() {
    let path = std::env::args().nth(1).unwrap_or_else(|| "models/SmolLM2-135M-Instruct.Q4_1.gguf".into());
    let on_thread = std::env::args().nth(2).is_some();
    let run = move || {
        let mut config = EngineConfig::new(path);
        config.n_ctx = 4096;
        let mut e = LlamaEngine::load(&config).unwrap();
        for round in 0..3 {
            let mut batch = Batch::new();
            let prompt: Vec<i32> = (0..512).map(|i| 100 + i).collect();
            let t = Instant::now();
            batch.push_span(0, &prompt, 0, true);
            e.decode(&batch).unwrap();
            let pp = 512.0 / t.elapsed().as_secs_f64();
            e.kv_truncate(0, 0).unwrap();
            batch.clear();
            batch.push(0, 1, 0, true);
            e.decode(&batch).unwrap();
            let mut next = argmax(e.logits(0).unwrap());
            let t = Instant::now();
            for pos in 1..=128u32 {
                batch.clear();
                batch.push(0, next, pos, true);
                e.decode(&batch).unwrap();
                next = argmax(e.logits(0).unwrap());
            }
            let tg = 128.0 / t.elapsed().as_secs_f64();
            e.kv_truncate(0, 0).unwrap();
            println!("round {round}: pp512 {pp:.1} tok/s, tg128 {tg:.1} tok/s");
        }
    };
    if on_thread {
        std::thread::spawn(run).join().unwrap()
    } else {
        run()
    }
}

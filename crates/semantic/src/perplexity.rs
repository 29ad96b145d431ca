//! `semantic perplexity`: perplexity of a fixed English text and KV bytes per token, per KV type —
//! the measurement behind the default KV type.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::Args;
use semantic_engine::{Batch, Engine, KvType, LlamaEngine, TokenizeOptions};

use crate::cli::CommonArgs;

/// Arguments of `semantic perplexity`.
#[derive(Debug, Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Text to score [default: /usr/share/common-licenses/GPL-3].
    #[arg(long)]
    file: Option<PathBuf>,
    /// KV types to compare (`k/v` for different K and V types).
    #[arg(long, value_delimiter = ',', default_value = "f16,q8_0,q4_0,q5_1/q4_0")]
    kv_types: Vec<KvType>,
    /// Window length; the second half of each window is scored (as llama-perplexity does).
    #[arg(long, default_value_t = 512)]
    window: usize,
    /// Most tokens of the text to use.
    #[arg(long, default_value_t = 8192)]
    max_text_tokens: usize,
    /// Tokens in the sequence exported to measure state bytes per token.
    #[arg(long, default_value_t = 2048)]
    state_tokens: usize,
    /// Also write the results as JSON here.
    #[arg(long)]
    json: Option<PathBuf>,
}

struct Row {
    kv: KvType,
    perplexity: f64,
    bytes_per_token: f64,
    seconds: f64,
}

pub fn run(args: PerplexityArgs) -> Result<()> {
    let mut config = args.common.resolve()?;
    let path = args.file.clone().unwrap_or_else(|| PathBuf::from("/usr/share/common-licenses/GPL-3"));
    let text = std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    if args.window < 16 || !args.window.is_multiple_of(2) {
        bail!("--window must be an even number >= 16");
    }
    config.agent_ctx = config.agent_ctx.max((args.window.max(args.state_tokens) + 64) as u32);
    config.step_tokens = config.step_tokens.max(args.window);
    let mut rows = Vec::new();
    for &kv in &args.kv_types {
        config.kv_type = kv;
        let mut engine = crate::cli::load_engine(&config)?;
        let started = Instant::now();
        let mut tokens = engine.tokenizer().tokenize(&text, TokenizeOptions::PROMPT)?;
        tokens.truncate(args.max_text_tokens);
        let perplexity = score(&mut engine, &tokens, args.window)?;
        let bytes_per_token = state_bytes_per_token(&mut engine, &tokens, args.state_tokens)?;
        rows.push(Row { kv, perplexity, bytes_per_token, seconds: started.elapsed().as_secs_f64() });
    }
    let base = rows.first().map(|r| r.perplexity).unwrap_or(1.0);
    println!(
        "| KV type | perplexity | change vs {} | state bytes/token | seconds |",
        rows.first().map_or("-".to_string(), |r| r.kv.to_string())
    );
    println!("|---|---:|---:|---:|---:|");
    for r in &rows {
        println!(
            "| {} | {:.4} | {:+.2}% | {:.0} | {:.1} |",
            r.kv,
            r.perplexity,
            (r.perplexity / base - 1.0) * 100.0,
            r.bytes_per_token,
            r.seconds
        );
    }
    if let Some(json_path) = &args.json {
        let json: Vec<_> = rows
            .iter()
            .map(|r| serde_json::json!({"kv_type": r.kv.to_string(), "perplexity": r.perplexity, "bytes_per_token": r.bytes_per_token}))
            .collect();
        std::fs::write(json_path, serde_json::to_string_pretty(&json)?)?;
    }
    Ok(())
}

/// Mean perplexity over windows of `window` tokens with stride window/2, scoring each window's second half.
fn score(engine: &mut LlamaEngine, tokens: &[i32], window: usize) -> Result<f64> {
    let half = window / 2;
    let mut nll = 0.0f64;
    let mut count = 0usize;
    let mut start = 0;
    let mut batch = Batch::new();
    while start + window <= tokens.len() {
        let chunk = &tokens[start..start + window];
        batch.clear();
        for (i, &t) in chunk.iter().enumerate() {
            batch.push(0, t, i as u32, i + 1 >= half && i + 1 < window);
        }
        engine.decode(&batch)?;
        for i in half - 1..window - 1 {
            let logits = engine.logits(i)?;
            nll += negative_log_likelihood(logits, chunk[i + 1] as usize);
            count += 1;
        }
        engine.kv_truncate(0, 0)?;
        start += half;
    }
    if count == 0 {
        bail!("the text is shorter than one window");
    }
    Ok((nll / count as f64).exp())
}

fn negative_log_likelihood(logits: &[f32], target: usize) -> f64 {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
    -(logits[target] as f64 - max - sum.ln())
}

fn state_bytes_per_token(engine: &mut LlamaEngine, tokens: &[i32], n: usize) -> Result<f64> {
    let n = n.min(tokens.len());
    let step = engine.context().n_batch as usize;
    let mut batch = Batch::new();
    for (i, chunk) in tokens[..n].chunks(step).enumerate() {
        batch.clear();
        batch.push_span(0, chunk, (i * step) as u32, false);
        engine.decode(&batch)?;
    }
    let bytes = engine.export_state(0)?.len();
    engine.kv_truncate(0, 0)?;
    Ok(bytes as f64 / n as f64)
}

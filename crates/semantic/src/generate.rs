//! `semantic generate`: one prompt through the scheduler, text to stdout as it is produced.

use std::io::Write;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use clap::Args;
use semantic_api::prompt::Prompter;
use semantic_chat::Message;
use semantic_engine::{ModelFacts, SamplingParams, TokenId, TokenizeOptions, Tokenizer};
use semantic_scheduler::{Event, FinishReason, GenerateRequest, RequestStream, SchedulerConfig};

use crate::cli::{start_scheduler, CommonArgs};

/// Arguments of `semantic generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Raw prompt text, no chat template.
    #[arg(long, conflicts_with_all = ["chat", "prompt_file"])]
    prompt: Option<String>,
    /// Raw prompt read from a file, no chat template.
    #[arg(long, conflicts_with = "chat")]
    prompt_file: Option<PathBuf>,
    /// A user message, rendered with the model's chat template.
    #[arg(long)]
    chat: Option<String>,
    /// System message for --chat.
    #[arg(long, requires = "chat")]
    system: Option<String>,
    /// Most tokens to generate.
    #[arg(long, default_value_t = 128, env = "SEMANTIC_MAX_TOKENS")]
    max_tokens: usize,
    /// Sampling temperature (0 = greedy).
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Seed for sampling.
    #[arg(long)]
    seed: Option<u64>,
    /// Nucleus sampling threshold.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Top-k (0 = off).
    #[arg(long, default_value_t = 40)]
    top_k: u32,
    /// Keep generating past end-of-generation tokens (for benchmarks).
    #[arg(long)]
    ignore_eos: bool,
    /// Print prompt and generation speed to stderr.
    #[arg(long)]
    stats: bool,
}

pub fn run(args: GenerateArgs) -> Result<()> {
    let mut config = args.common.resolve()?;
    // One generation: one KV stream, not the server's resident agents.
    config.resident_agents = 1;
    config.max_running = 1;
    let scheduler_config = SchedulerConfig {
        max_running: 1,
        step_token_budget: config.step_tokens,
        queue_capacity: 1,
        ..Default::default()
    };
    let scheduler = start_scheduler(&config, scheduler_config)?;
    let facts = scheduler.facts().clone();
    let tokenizer = scheduler.tokenizer().clone();
    let prompt = prompt_tokens(&args, &facts, &tokenizer)?;
    let mut sampling = SamplingParams {
        temperature: args.temperature,
        top_p: args.top_p,
        top_k: args.top_k,
        seed: args.seed,
        ..SamplingParams::default()
    };
    if args.ignore_eos {
        for token in [facts.eos, facts.eot].into_iter().flatten() {
            sampling.logit_bias.push((token, f32::NEG_INFINITY));
        }
    }
    sampling.validate()?;
    let mut events = scheduler.submit(GenerateRequest {
        prompt,
        max_tokens: args.max_tokens,
        sampling,
        stop: Vec::new(),
        agent: Default::default(),
    })?;
    print_events(&mut events, args.stats)?;
    drop(events);
    scheduler.join();
    Ok(())
}

/// The prompt's token ids: raw text (`--prompt`, `--prompt-file`) or one chat turn through the
/// model's template (`--chat`, with `--system`).
fn prompt_tokens(args: &GenerateArgs, facts: &ModelFacts, tokenizer: &Arc<dyn Tokenizer>) -> Result<Vec<TokenId>> {
    let tokens = match (&args.prompt, &args.prompt_file, &args.chat) {
        (Some(text), _, _) => tokenizer.tokenize(text, TokenizeOptions::PROMPT)?,
        (_, Some(path), _) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
            tokenizer.tokenize(&text, TokenizeOptions::PROMPT)?
        }
        (_, _, Some(user)) => {
            let template = crate::serve::chat_template(facts)?;
            let prompter = Prompter::new(template, Arc::clone(tokenizer), facts);
            let mut messages = Vec::new();
            if let Some(system) = &args.system {
                messages.push(Message::new("system", system.as_str()));
            }
            messages.push(Message::new("user", user.as_str()));
            prompter.chat(&messages, None)?
        }
        _ => bail!("give --prompt TEXT, --prompt-file PATH or --chat TEXT"),
    };
    Ok(tokens)
}

/// Writes the generated text to stdout as it arrives; with `stats`, the speeds to stderr.
fn print_events(events: &mut RequestStream, stats: bool) -> Result<()> {
    let mut stdout = std::io::stdout().lock();
    while let Some(event) = events.blocking_recv() {
        match event {
            Event::Admitted { .. } => {}
            Event::Delta { text, .. } => {
                stdout.write_all(text.as_bytes())?;
                stdout.flush()?;
            }
            Event::Done { reason, usage, timings } => {
                writeln!(stdout)?;
                if let FinishReason::Error(message) = &reason {
                    bail!("generation failed: {message}");
                }
                if stats {
                    eprintln!(
                        "prompt: {} tokens in {:.1} ms = {:.1} tok/s; generation: {} tokens, {:.1} tok/s; first token after {:.1} ms; finish: {:?}",
                        usage.prompt_tokens,
                        timings.prefill.as_secs_f64() * 1e3,
                        timings.prefill_tokens_per_second,
                        usage.completion_tokens,
                        timings.decode_tokens_per_second,
                        timings.time_to_first_token.as_secs_f64() * 1e3,
                        reason,
                    );
                }
                break;
            }
        }
    }
    Ok(())
}

//! The measured scenarios, each run against one target: TTFT (cold / warm-after-restart / hot),
//! the multi-agent workload with a restart in the middle, aggregate decode throughput, and
//! staggered arrivals. Each returns plain serializable rows; `report.rs` turns them into tables.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::corpus::{document_prompt, Corpus, FOLLOW_UP};
use crate::http::Stream;
use crate::progress::Progress;
use crate::stats::Summary;
use crate::target::{Agent, Kind, Server, TargetSpec};

/// Tokens each measured reply may have (TTFT only needs the first).
const MEASURED_REPLY: usize = 16;
/// Tokens of the priming reply that the follow-up turn carries as assistant history.
const PRIMING_REPLY: usize = 64;

/// Questions of the multi-agent workload after the first turn.
const QUESTIONS: [&str; 8] = [
    "Which obligations does the text place on someone who redistributes the work?",
    "Summarise the warranty and liability terms in two sentences.",
    "What happens if someone violates the terms?",
    "Name one term that is specific to this licence.",
    "How would you explain the text to a new programmer?",
    "Which parts of the text deal with patents?",
    "Is there anything about trademarks?",
    "What is the shortest accurate summary you can give?",
];

/// Agent ids never repeat within a bench run.
pub struct Names {
    next: u64,
    tag: String,
}

impl Names {
    /// Ids are `bench-{tag}-{n}`.
    pub fn new(tag: &str) -> Self {
        Self { next: 0, tag: tag.to_string() }
    }

    fn agent(&mut self, slot: usize) -> Agent {
        self.next += 1;
        Agent { id: format!("bench-{}-{}", self.tag, self.next), slot }
    }
}

fn user(text: &str) -> Value {
    json!({"role": "user", "content": text})
}

fn assistant(text: &str) -> Value {
    json!({"role": "assistant", "content": text})
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// An agent thread's result; a panic in it becomes an error.
fn joined<T>(handle: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    handle.join().unwrap_or_else(|_| Err(anyhow::anyhow!("agent thread panicked")))
}

fn ttft_ms(stream: &Stream) -> Result<f64> {
    stream.ttft.map(ms).context("the server streamed no content (empty reply)")
}

/// A short unrelated request after every (re)start, so that one-time lazy work in any server is
/// not billed to the first measured agent. The same for every target.
fn warm_up(server: &Server, names: &mut Names) -> Result<()> {
    let agent = names.agent(0);
    server.chat(&agent, &[user("Say hello.")], 4, &Value::Null)?;
    Ok(())
}

/// One TTFT measurement.
#[derive(Debug, Clone, Serialize)]
pub struct TtftSample {
    /// Client-side time to the first content token, including any restore the client had to ask
    /// for (llama-server's slot restore).
    pub ttft_ms: f64,
    /// Of which: the explicit restore request.
    pub restore_ms: f64,
    /// Prompt tokens the server reported.
    pub prompt_tokens: Option<u64>,
    /// Prompt tokens the server reported as reused.
    pub cached_tokens: Option<u64>,
    /// The server's own prompt-processing time, when it reports one: TTFT minus this is the time
    /// spent outside the engine (HTTP, templating, tokenizing, queueing, streaming).
    pub server_prompt_ms: Option<f64>,
}

/// TTFT at one context size in one mode.
#[derive(Debug, Clone, Serialize)]
pub struct TtftRow {
    /// Server.
    pub target: Kind,
    /// Nominal context (document tokens).
    pub context: usize,
    /// `cold`, `warm-after-restart` or `hot`.
    pub mode: &'static str,
    /// Each run.
    pub samples: Vec<TtftSample>,
    /// Summary of `ttft_ms`.
    pub summary: Option<Summary>,
}

/// Knobs of the TTFT scenario.
#[derive(Debug, Clone)]
pub struct TtftOptions {
    /// Document sizes in tokens.
    pub contexts: Vec<usize>,
    /// Runs per size and mode.
    pub runs: usize,
}

/// Extra facts the TTFT scenario saw.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TtftExtras {
    /// Seconds each restart took to stop (SIGTERM to exit) and to answer again.
    pub restarts: Vec<(f64, f64)>,
    /// semantic only: agent file bytes per stored token, from `GET /v1/agents/{id}` after a restart.
    pub disk_bytes_per_token: Vec<f64>,
}

/// Cold, warm-after-restart and hot TTFT for each context size.
///
/// - cold: a new agent, a document nobody has seen (the priming turn of the other two modes);
/// - hot: the agent's second turn (history + follow-up question) right after its first;
/// - warm-after-restart: the same second turn, but the server process was stopped (SIGTERM) and
///   started again between the two turns; llama-server gets its slot saved before and restored
///   after (its documented manual workflow), and that restore counts into the TTFT.
pub fn ttft(
    spec: &TargetSpec,
    options: &TtftOptions,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<(Vec<TtftRow>, TtftExtras)> {
    let mut names = Names::new(&format!("ttft-{}", spec.kind.name()));
    let mut server = Server::start(spec, 1, work, "ttft")?;
    warm_up(&server, &mut names)?;
    let mut rows = Vec::new();
    let mut extras = TtftExtras::default();
    for &context in &options.contexts {
        let (mut cold, mut hot, mut warm) = (Vec::new(), Vec::new(), Vec::new());
        for run in 0..options.runs {
            for restart in [false, true] {
                let mode = if restart { "warm" } else { "hot" };
                progress.step(&format!("{} ttft {context} run {} {mode}", spec.kind.name(), run + 1));
                let agent = names.agent(0);
                let first = vec![user(&document_prompt(&corpus.take(context)))];
                let reply = server.chat(&agent, &first, PRIMING_REPLY, &Value::Null)?;
                cold.push(sample(&reply, Duration::ZERO)?);
                let mut second = first;
                second.push(assistant(&reply.text));
                second.push(user(FOLLOW_UP));
                let mut restore = Duration::ZERO;
                if restart {
                    let stop = server.restart(std::slice::from_ref(&agent))?;
                    extras.restarts.push((stop.as_secs_f64(), server.last_start.as_secs_f64()));
                    if server.kind() == Kind::Semantic {
                        let info = server.get_json(&format!("/v1/agents/{}", agent.id))?;
                        if let (Some(bytes), Some(tokens)) = (info["file_bytes"].as_f64(), info["tokens"].as_f64()) {
                            if tokens > 0.0 {
                                extras.disk_bytes_per_token.push(bytes / tokens);
                            }
                        }
                    }
                    warm_up(&server, &mut names)?;
                    restore = server.restore(&agent)?;
                }
                let stream = server.chat(&agent, &second, MEASURED_REPLY, &Value::Null)?;
                let measured = sample(&stream, restore)?;
                if restart {
                    warm.push(measured);
                } else {
                    hot.push(measured);
                }
            }
        }
        for (mode, samples) in [("cold", cold), ("warm-after-restart", warm), ("hot", hot)] {
            let summary = Summary::of(&samples.iter().map(|s| s.ttft_ms).collect::<Vec<_>>());
            rows.push(TtftRow { target: spec.kind, context, mode, samples, summary });
        }
    }
    server.stop()?;
    Ok((rows, extras))
}

fn sample(stream: &Stream, restore: Duration) -> Result<TtftSample> {
    Ok(TtftSample {
        ttft_ms: ttft_ms(stream)? + ms(restore),
        restore_ms: ms(restore),
        prompt_tokens: stream.prompt_tokens,
        cached_tokens: stream.cached_tokens,
        server_prompt_ms: stream.server_prompt_ms,
    })
}

/// Knobs of the multi-agent workload.
#[derive(Debug, Clone)]
pub struct MultiOptions {
    /// Agents talking at once.
    pub agents: usize,
    /// Turns per agent.
    pub turns: usize,
    /// The server restarts after this turn.
    pub restart_after: usize,
    /// Tokens of each agent's document (its first turn).
    pub document_tokens: usize,
    /// Tokens of instructions and a document that every agent's first prompt starts with, before
    /// its own document (0 = none). The agents send their first turns at the same moment.
    pub shared_tokens: usize,
    /// Reply length per turn.
    pub reply_tokens: usize,
}

/// One turn of the multi-agent workload.
#[derive(Debug, Clone, Serialize)]
pub struct TurnRow {
    /// 1-based.
    pub turn: usize,
    /// TTFT of each agent this turn (restore included for llama-server after the restart).
    pub ttft_ms: Vec<f64>,
    /// Summary of `ttft_ms`.
    pub summary: Option<Summary>,
    /// Prompt tokens the server reported reusing, summed over agents.
    pub cached_tokens: u64,
    /// Prompt tokens, summed over agents.
    pub prompt_tokens: u64,
    /// Wall time of the turn (all agents done).
    pub wall_s: f64,
}

/// The multi-agent workload on one target.
#[derive(Debug, Clone, Serialize)]
pub struct MultiResult {
    /// Server.
    pub target: Kind,
    /// Whole workload, restart included.
    pub wall_s: f64,
    /// Of which: stopping and starting the server.
    pub restart_s: f64,
    /// Per turn.
    pub turns: Vec<TurnRow>,
}

/// N agents each hold a conversation over their own document; every turn all agents send at
/// once; the server is restarted (SIGTERM, start) after `restart_after` turns.
pub fn multi_agent(
    spec: &TargetSpec,
    options: &MultiOptions,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<MultiResult> {
    let tag = if options.shared_tokens > 0 { "shared" } else { "multi" };
    let mut names = Names::new(&format!("{tag}-{}", spec.kind.name()));
    let mut server = Server::start(spec, options.agents, work, tag)?;
    warm_up(&server, &mut names)?;
    let agents: Vec<Agent> = (0..options.agents).map(|i| names.agent(i)).collect();
    let shared = (options.shared_tokens > 0).then(|| corpus.take(options.shared_tokens));
    let mut histories: Vec<Vec<Value>> = agents
        .iter()
        .map(|_| {
            let own = corpus.take(options.document_tokens);
            let first = match &shared {
                Some(shared) => format!(
                    "You are one of several reviewers. Read the shared document, then your own notes, and answer.\n\n\
                     Shared document:\n{shared}\n\nYour own notes:\n{own}\n\nWhat are the main topics and themes?"
                ),
                None => document_prompt(&own),
            };
            vec![user(&first)]
        })
        .collect();
    let started = Instant::now();
    let mut restart_s = 0.0;
    let mut turns = Vec::new();
    for turn in 1..=options.turns {
        progress.step(&format!("{} {tag} turn {turn}", spec.kind.name()));
        let restored = options.restart_after.checked_add(1) == Some(turn);
        if restored {
            let restart = Instant::now();
            server.restart(&agents)?;
            restart_s = restart.elapsed().as_secs_f64();
            warm_up(&server, &mut names)?;
        }
        let turn_started = Instant::now();
        let server_ref = &server;
        let streams: Vec<Result<(Stream, Duration)>> = std::thread::scope(|scope| {
            let handles: Vec<_> = agents
                .iter()
                .zip(&histories)
                .map(|(agent, history)| {
                    scope.spawn(move || {
                        let restore = if restored { server_ref.restore(agent)? } else { Duration::ZERO };
                        let stream = server_ref.chat(agent, history, options.reply_tokens, &Value::Null)?;
                        Ok((stream, restore))
                    })
                })
                .collect();
            handles.into_iter().map(joined).collect()
        });
        let wall_s = turn_started.elapsed().as_secs_f64();
        let mut row = TurnRow { turn, ttft_ms: Vec::new(), summary: None, cached_tokens: 0, prompt_tokens: 0, wall_s };
        for (history, result) in histories.iter_mut().zip(streams) {
            let (stream, restore) = result?;
            row.ttft_ms.push(ttft_ms(&stream)? + ms(restore));
            row.cached_tokens += stream.cached_tokens.unwrap_or(0);
            row.prompt_tokens += stream.prompt_tokens.unwrap_or(0);
            history.push(assistant(&stream.text));
            history.push(user(QUESTIONS[(turn - 1) % QUESTIONS.len()]));
        }
        row.summary = Summary::of(&row.ttft_ms);
        turns.push(row);
    }
    let wall_s = started.elapsed().as_secs_f64();
    server.stop()?;
    Ok(MultiResult { target: spec.kind, wall_s, restart_s, turns })
}

/// Aggregate decode throughput at one concurrency.
#[derive(Debug, Clone, Serialize)]
pub struct ThroughputRow {
    /// Server.
    pub target: Kind,
    /// Agents generating at once.
    pub concurrency: usize,
    /// Generated tokens, all agents.
    pub tokens: u64,
    /// From the common start to the last agent's end.
    pub wall_s: f64,
    /// `tokens / wall_s`.
    pub aggregate_tok_s: f64,
    /// Sum over agents of (deltas - 1) / (last delta - first delta): the decode phase alone.
    /// None when a server delivered a stream in one piece (hearth relays in 8 KiB reads), so
    /// arrival times say nothing about decoding.
    pub decode_tok_s: Option<f64>,
}

/// Knobs of the throughput scenario.
#[derive(Debug, Clone)]
pub struct ThroughputOptions {
    /// Concurrency levels.
    pub concurrency: Vec<usize>,
    /// Tokens each agent generates (end-of-sequence tokens are banned with `logit_bias`).
    pub tokens: usize,
    /// Prompt tokens per agent.
    pub prompt_tokens: usize,
    /// End-of-generation token ids to ban.
    pub eog: Vec<i32>,
}

/// N agents with short, distinct prompts each generate a fixed number of tokens at once.
pub fn throughput(
    spec: &TargetSpec,
    options: &ThroughputOptions,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<Vec<ThroughputRow>> {
    let mut names = Names::new(&format!("tput-{}", spec.kind.name()));
    let most = options.concurrency.iter().copied().max().unwrap_or(1);
    let server = Server::start(spec, most, work, "throughput")?;
    warm_up(&server, &mut names)?;
    let bias: serde_json::Map<String, Value> = options.eog.iter().map(|t| (t.to_string(), json!(-100))).collect();
    let extra = json!({"logit_bias": bias});
    let mut rows = Vec::new();
    for &concurrency in &options.concurrency {
        progress.step(&format!("{} throughput x{concurrency}", spec.kind.name()));
        let agents: Vec<Agent> = (0..concurrency).map(|i| names.agent(i)).collect();
        let prompts: Vec<Vec<Value>> =
            agents.iter().map(|_| vec![user(&document_prompt(&corpus.take(options.prompt_tokens)))]).collect();
        let started = Instant::now();
        let (server_ref, extra_ref) = (&server, &extra);
        let results: Vec<Result<Stream>> = std::thread::scope(|scope| {
            let handles: Vec<_> = agents
                .iter()
                .zip(&prompts)
                .map(|(agent, prompt)| scope.spawn(move || server_ref.chat(agent, prompt, options.tokens, extra_ref)))
                .collect();
            handles.into_iter().map(joined).collect()
        });
        let wall_s = started.elapsed().as_secs_f64();
        let (mut tokens, mut decode_tok_s) = (0u64, Some(0.0));
        for result in results {
            let stream = result?;
            tokens += stream.completion_tokens.unwrap_or(stream.deltas.len() as u64);
            decode_tok_s = decode_tok_s.zip(decode_rate(&stream.deltas)).map(|(sum, rate)| sum + rate);
        }
        rows.push(ThroughputRow {
            target: spec.kind,
            concurrency,
            tokens,
            wall_s,
            aggregate_tok_s: tokens as f64 / wall_s,
            decode_tok_s,
        });
    }
    Ok(rows)
}

/// Tokens per second after the first token, from arrival times; None for a stream relayed in
/// bursts (hearth forwards 8 KiB reads): fewer than one separate arrival (more than 1 ms after the
/// previous delta) per 4 deltas means the times say nothing about decoding.
fn decode_rate(deltas: &[Duration]) -> Option<f64> {
    let (first, last) = (deltas.first()?, deltas.last()?);
    let span = (*last - *first).as_secs_f64();
    let arrivals = 1 + deltas.windows(2).filter(|w| w[1] - w[0] > Duration::from_millis(1)).count();
    if deltas.len() < 2 || span <= 0.0 || (deltas.len() >= 4 && arrivals * 4 < deltas.len()) {
        return None;
    }
    Some((deltas.len() - 1) as f64 / span)
}

/// Staggered arrivals: agent A sends a long cold prompt, agent B another one a little later.
#[derive(Debug, Clone, Serialize)]
pub struct StaggeredResult {
    /// Server.
    pub target: Kind,
    /// Document tokens of each prompt.
    pub context: usize,
    /// B's delay after A.
    pub delay_s: f64,
    /// A's TTFT.
    pub a_ttft_ms: f64,
    /// B's TTFT, from B's own send.
    pub b_ttft_ms: f64,
    /// A's send to both done.
    pub wall_s: f64,
}

/// Runs the staggered-arrival scenario once.
pub fn staggered(
    spec: &TargetSpec,
    context: usize,
    delay: Duration,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<StaggeredResult> {
    let mut names = Names::new(&format!("stagger-{}", spec.kind.name()));
    let server = Server::start(spec, 2, work, "staggered")?;
    warm_up(&server, &mut names)?;
    progress.step(&format!("{} staggered", spec.kind.name()));
    let (a, b) = (names.agent(0), names.agent(1));
    let prompt_a = vec![user(&document_prompt(&corpus.take(context)))];
    let prompt_b = vec![user(&document_prompt(&corpus.take(context)))];
    let started = Instant::now();
    let server_ref = &server;
    let (ra, rb) = std::thread::scope(|scope| {
        let ha = scope.spawn(|| server_ref.chat(&a, &prompt_a, MEASURED_REPLY, &Value::Null));
        // The delay is the scenario itself (B arrives later), not synchronisation.
        std::thread::sleep(delay);
        let hb = scope.spawn(|| server_ref.chat(&b, &prompt_b, MEASURED_REPLY, &Value::Null));
        (joined(ha), joined(hb))
    });
    let wall_s = started.elapsed().as_secs_f64();
    Ok(StaggeredResult {
        target: spec.kind,
        context,
        delay_s: delay.as_secs_f64(),
        a_ttft_ms: ttft_ms(&ra?)?,
        b_ttft_ms: ttft_ms(&rb?)?,
        wall_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(deltas_ms: &[f64], expected: Option<f64>) {
        let deltas: Vec<Duration> = deltas_ms.iter().map(|ms| Duration::from_secs_f64(ms / 1e3)).collect();
        let got = decode_rate(&deltas).map(|r| (r * 1e3).round() / 1e3);
        assert_eq!(got, expected, "{deltas_ms:?}");
    }

    #[test]
    fn decode_rates() {
        check(&[], None);
        check(&[10.0], None);
        check(&[10.0, 20.0, 30.0], Some(100.0));
        check(&[100.0, 100.1, 100.2, 100.3, 100.4], None);
        check(&[100.0, 110.0, 110.0, 110.0, 130.0], Some(133.333));
        // Two bursts of 8 deltas (a proxy relaying big reads): no decode rate.
        let bursts: Vec<f64> =
            (0..16).map(|i| if i < 8 { 100.0 + i as f64 * 0.01 } else { 300.0 + i as f64 * 0.01 }).collect();
        check(&bursts, None);
    }
}

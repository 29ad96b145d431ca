//! The coordination scenario (semantic only): a broadcast session of `agents` agents over
//! `rounds` rounds, once with each round's turns run concurrently (`POST …/round`, one request
//! per round) and once the same turns one at a time (`POST …/turn`), on one server, greedy, the
//! same seed. Both answer the same states, so the difference is the concurrency alone.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::http;
use crate::progress::Progress;
use crate::target::{Server, TargetSpec};

/// Knobs of the coordination scenario.
#[derive(Debug, Clone)]
pub struct CoordinationOptions {
    /// Agents in the session.
    pub agents: usize,
    /// Rounds.
    pub rounds: usize,
    /// Tokens per turn (the replies end earlier only at end of turn).
    pub max_tokens: usize,
    /// Repetitions of each way.
    pub runs: usize,
}

/// What the coordination scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct CoordinationResult {
    /// Agents.
    pub agents: usize,
    /// Rounds.
    pub rounds: usize,
    /// Seconds for all turns, rounds concurrent (one per run).
    pub concurrent_s: Vec<f64>,
    /// Seconds for all turns, one at a time.
    pub sequential_s: Vec<f64>,
    /// Tokens generated over all turns, concurrent runs then sequential runs.
    pub completion_tokens: Vec<u64>,
    /// Prompt tokens over all turns (the first concurrent run).
    pub prompt_tokens: u64,
    /// Of which reused from each agent's memory.
    pub cached_tokens: u64,
}

fn post(server: &Server, path: &str, body: &Value) -> Result<Value> {
    let response = http::request(server.addr, "POST", path, Some(body))?;
    if response.status != 200 && response.status != 201 {
        bail!("POST {path}: HTTP {}: {}", response.status, String::from_utf8_lossy(&response.body));
    }
    Ok(response.json())
}

fn session(server: &Server, options: &CoordinationOptions, run: usize) -> Result<String> {
    let agents: Vec<Value> = (0..options.agents)
        .map(|i| json!({"display_name": format!("Agent {}", i + 1), "system_prompt": "Give your view in a few sentences."}))
        .collect();
    let body = json!({
        "topology": "broadcast",
        "initial_prompt": "Should a small town build a library or a swimming pool? Discuss.",
        "agents": agents,
        "max_tokens": options.max_tokens,
        "temperature": 0,
        "seed": run,
    });
    let made = post(server, "/v1/coordination/sessions", &body)?;
    made["session_id"].as_str().map(str::to_owned).ok_or_else(|| anyhow::anyhow!("no session id: {made}"))
}

fn tokens(turns: &[Value], path: &str) -> u64 {
    turns.iter().filter_map(|t| t.pointer(path).and_then(Value::as_u64)).sum()
}

/// Runs both ways `options.runs` times.
pub fn coordination(
    spec: &TargetSpec,
    options: &CoordinationOptions,
    work: &Path,
    progress: &mut Progress,
) -> Result<CoordinationResult> {
    let mut result = CoordinationResult { agents: options.agents, rounds: options.rounds, ..Default::default() };
    let mut server = Server::start(spec, options.agents, work, "coordination")?;
    let mut sequential_tokens = Vec::new();
    for run in 0..options.runs {
        let id = session(&server, options, run)?;
        let started = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..options.rounds {
            let round = post(&server, &format!("/v1/coordination/sessions/{id}/round"), &json!({}))?;
            turns.extend(round["turns"].as_array().cloned().unwrap_or_default());
        }
        result.concurrent_s.push(started.elapsed().as_secs_f64());
        result.completion_tokens.push(tokens(&turns, "/usage/completion_tokens"));
        if run == 0 {
            result.prompt_tokens = tokens(&turns, "/usage/prompt_tokens");
            result.cached_tokens = tokens(&turns, "/usage/prompt_tokens_details/cached_tokens");
        }
        let id = session(&server, options, run)?;
        let started = Instant::now();
        let mut turns = Vec::new();
        for _ in 0..options.rounds * options.agents {
            turns.push(post(&server, &format!("/v1/coordination/sessions/{id}/turn"), &json!({}))?);
        }
        result.sequential_s.push(started.elapsed().as_secs_f64());
        sequential_tokens.push(tokens(&turns, "/usage/completion_tokens"));
    }
    result.completion_tokens.extend(sequential_tokens);
    server.stop()?;
    progress.step("semantic coordination");
    Ok(result)
}

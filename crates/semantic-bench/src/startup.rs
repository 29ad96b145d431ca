//! The start-up scenario (semantic only): how long a server takes until it answers with many
//! stored agents in its cache directory, next to the same server on an empty one, and that a
//! stored agent is then served from disk. Agents are made through the API (one short turn each),
//! written by the server itself at SIGTERM, so the files are the real thing.

use std::path::Path;

use anyhow::{bail, Result};
use serde::Serialize;
use serde_json::{json, Value};

use crate::progress::Progress;
use crate::target::{Agent, Server, TargetSpec};

/// Knobs of the start-up scenario.
#[derive(Debug, Clone)]
pub struct StartupOptions {
    /// Agents stored before the timed starts.
    pub agents: usize,
    /// Timed starts of each server (empty and stored cache).
    pub runs: usize,
}

/// What the start-up scenario measured.
#[derive(Debug, Clone, Default, Serialize)]
pub struct StartupResult {
    /// Agents stored.
    pub agents: usize,
    /// Their files' bytes, as `GET /v1/agents` reports them after a restart.
    pub stored_bytes: u64,
    /// Agents `GET /v1/agents` listed after the restart (must equal `agents`).
    pub listed: usize,
    /// Seconds from spawning the process until it answered `GET /v1/models`, empty cache.
    pub empty_start_s: Vec<f64>,
    /// The same with the stored agents.
    pub stored_start_s: Vec<f64>,
    /// Agents not yet on disk when the server was stopped (it writes them before it exits).
    pub dirty_at_stop: usize,
    /// Seconds that SIGTERM took until the process was gone.
    pub flush_stop_s: f64,
    /// The first stored agent's next turn after the restarts: TTFT, and the prompt tokens it
    /// reused out of all.
    pub next_turn_ttft_ms: f64,
    /// Reused prompt tokens of that turn.
    pub next_turn_cached: u64,
    /// Its prompt tokens.
    pub next_turn_prompt: u64,
}

fn first_turn(i: usize) -> Vec<Value> {
    vec![json!({"role": "user", "content": format!("You are agent number {i}. Say hello.")})]
}

/// Makes `options.agents` agents, restarts the server (which writes them all), then times
/// `options.runs` starts on that cache and on an empty one.
pub fn startup(
    spec: &TargetSpec,
    options: &StartupOptions,
    work: &Path,
    progress: &mut Progress,
) -> Result<StartupResult> {
    let mut result = StartupResult { agents: options.agents, ..StartupResult::default() };
    let mut empty = Server::start(spec, 1, work, "startup-empty")?;
    for _ in 0..options.runs {
        empty.restart(&[])?;
        result.empty_start_s.push(empty.last_start.as_secs_f64());
    }
    empty.stop()?;
    progress.step("semantic startup: empty cache");

    let mut server = Server::start(spec, 1, work, "startup")?;
    let agents: Vec<Agent> = (0..options.agents).map(|i| Agent { id: format!("bench-startup-{i}"), slot: 0 }).collect();
    let mut first_reply = None;
    for (i, agent) in agents.iter().enumerate() {
        let reply = server.chat(agent, &first_turn(i), 4, &Value::Null)?;
        first_reply.get_or_insert(reply.text);
    }
    progress.step(&format!("semantic startup: {} agents made", options.agents));
    let before = server.get_json("/v1/agents")?;
    result.dirty_at_stop =
        before["data"].as_array().map_or(0, |a| a.iter().filter(|a| a["dirty"] == json!(true)).count());
    result.flush_stop_s = server.restart(&[])?.as_secs_f64();
    for _ in 0..options.runs {
        server.restart(&[])?;
        result.stored_start_s.push(server.last_start.as_secs_f64());
    }
    let listed = server.get_json("/v1/agents")?;
    let data = listed["data"].as_array().map(Vec::as_slice).unwrap_or_default();
    result.listed = data.len();
    result.stored_bytes = data.iter().filter_map(|a| a["file_bytes"].as_u64()).sum();
    if result.listed != options.agents {
        bail!("{} agents stored but {} listed after the restart", options.agents, result.listed);
    }
    if let (Some(agent), Some(reply)) = (agents.first(), first_reply) {
        let mut next = first_turn(0);
        next.push(json!({"role": "assistant", "content": reply}));
        next.push(json!({"role": "user", "content": "And now say goodbye."}));
        let stream = server.chat(agent, &next, 4, &Value::Null)?;
        result.next_turn_ttft_ms = stream.ttft.map_or(0.0, |d| d.as_secs_f64() * 1e3);
        result.next_turn_cached = stream.cached_tokens.unwrap_or(0);
        result.next_turn_prompt = stream.prompt_tokens.unwrap_or(0);
    }
    server.stop()?;
    progress.step("semantic startup: stored cache");
    Ok(result)
}

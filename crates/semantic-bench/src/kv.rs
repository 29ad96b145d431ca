//! The KV-type table (bytes per token on disk, perplexity change) and the llama-bench reference
//! figures that semantic's HTTP prefill and decode rates are compared with.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{bail, Context, Result};
use serde::Serialize;
use serde_json::Value;

use crate::corpus::{document_prompt, Corpus};
use crate::progress::Progress;
use crate::target::{Agent, Server, TargetSpec};

/// One KV type.
#[derive(Debug, Clone, Serialize)]
pub struct KvRow {
    /// `f16`, `q8_0`, `q4_0`.
    pub kv_type: String,
    /// Perplexity of the licence texts (`semantic perplexity`).
    pub perplexity: f64,
    /// Change against the first type, percent.
    pub perplexity_change_pct: f64,
    /// Exported state bytes per token (`semantic perplexity`).
    pub state_bytes_per_token: f64,
    /// An agent's file on disk after a restart, bytes per stored token (server measurement).
    pub disk_bytes_per_token: f64,
}

/// Knobs of the KV-type table.
#[derive(Debug, Clone)]
pub struct KvOptions {
    /// Types to compare, first = baseline.
    pub types: Vec<String>,
    /// Tokens of text scored for perplexity.
    pub perplexity_tokens: usize,
    /// Perplexity window.
    pub window: usize,
    /// Document tokens of the agent whose file is measured.
    pub agent_tokens: usize,
}

/// Perplexity by running `semantic perplexity` (the same binary), disk bytes by running a server
/// with `--kv-type`, storing one agent, restarting and reading its file size from the agents API.
pub fn kv_table(
    semantic: &TargetSpec,
    options: &KvOptions,
    corpus: &mut Corpus,
    work: &Path,
    progress: &mut Progress,
) -> Result<Vec<KvRow>> {
    let mut rows: Vec<KvRow> = Vec::new();
    for kv in &options.types {
        progress.step(&format!("kv {kv}"));
        // `k/v` names (q5_1/q4_0) are not file names or agent ids.
        let tag = kv.replace('/', "-");
        let json_path = work.join(format!("perplexity-{tag}.json"));
        let status = Command::new(&semantic.exe)
            .arg("perplexity")
            .arg("--model")
            .arg(&semantic.model)
            .args(["--threads", &semantic.threads.to_string(), "--kv-types", kv])
            .args(["--max-text-tokens", &options.perplexity_tokens.to_string()])
            .args(["--window", &options.window.to_string()])
            .args(["--state-tokens", &options.agent_tokens.to_string()])
            .arg("--cache-dir")
            .arg(work.join("perplexity-cache"))
            .arg("--json")
            .arg(&json_path)
            .env("SEMANTIC_LOG", "warn")
            .stdout(std::process::Stdio::null())
            .status()
            .context("running semantic perplexity")?;
        if !status.success() {
            bail!("semantic perplexity --kv-types {kv} failed ({status})");
        }
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&json_path)?)?;
        let perplexity = json[0]["perplexity"].as_f64().context("perplexity missing")?;
        let state_bytes_per_token = json[0]["bytes_per_token"].as_f64().context("bytes_per_token missing")?;

        let mut spec = semantic.clone();
        spec.extra_args = vec!["--kv-type".into(), kv.clone()];
        let mut server = Server::start(&spec, 1, work, &format!("kv-{tag}"))?;
        let agent = Agent { id: format!("bench-kv-{tag}"), slot: 0 };
        let prompt =
            vec![serde_json::json!({"role": "user", "content": document_prompt(&corpus.take(options.agent_tokens))})];
        server.chat(&agent, &prompt, 8, &Value::Null)?;
        server.restart(std::slice::from_ref(&agent))?;
        let info = server.get_json(&format!("/v1/agents/{}", agent.id))?;
        server.stop()?;
        let (bytes, tokens) = (info["file_bytes"].as_f64().unwrap_or(0.0), info["tokens"].as_f64().unwrap_or(0.0));
        if tokens <= 0.0 || bytes <= 0.0 {
            bail!("agent {} has no file after a restart: {info}", agent.id);
        }
        let base = rows.first().map_or(perplexity, |r| r.perplexity);
        rows.push(KvRow {
            kv_type: kv.clone(),
            perplexity,
            perplexity_change_pct: (perplexity / base - 1.0) * 100.0,
            state_bytes_per_token,
            disk_bytes_per_token: bytes / tokens,
        });
    }
    Ok(rows)
}

/// llama-bench's prompt-processing and generation rates on the same model and threads.
#[derive(Debug, Clone, Serialize)]
pub struct LlamaBench {
    /// `pp{prompt}` tokens per second.
    pub prompt_tok_s: f64,
    /// `tg{gen}` tokens per second.
    pub gen_tok_s: f64,
    /// Prompt length of the pp test.
    pub prompt: usize,
    /// Generated tokens of the tg test.
    pub gen: usize,
}

/// Runs `llama-bench -p prompt -n gen -o json`.
pub fn llama_bench(exe: &PathBuf, model: &Path, threads: u32, prompt: usize, gen: usize) -> Result<LlamaBench> {
    let output = Command::new(exe)
        .arg("-m")
        .arg(model)
        .args(["-t", &threads.to_string(), "-p", &prompt.to_string(), "-n", &gen.to_string(), "-r", "3", "-o", "json"])
        .output()
        .with_context(|| format!("running {}", exe.display()))?;
    if !output.status.success() {
        bail!("llama-bench failed: {}", String::from_utf8_lossy(&output.stderr));
    }
    let rows: Value = serde_json::from_slice(&output.stdout).context("llama-bench JSON")?;
    let rate = |key: &str| -> Result<f64> {
        rows.as_array()
            .and_then(|rows| rows.iter().find(|r| r[key].as_u64().unwrap_or(0) > 0))
            .and_then(|r| r["avg_ts"].as_f64())
            .with_context(|| format!("llama-bench printed no {key} row"))
    };
    Ok(LlamaBench { prompt_tok_s: rate("n_prompt")?, gen_tok_s: rate("n_gen")?, prompt, gen })
}

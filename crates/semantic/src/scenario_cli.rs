//! `semantic scenario validate|run`: checks a YAML scenario offline (every issue with its line
//! and field path), or runs it on a server through `/v1/scenarios/runs`, printing progress as
//! the phases and turns complete, and writes `transcript.json` and `transcript.md`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use semantic_bench::http::{follow_events, request_with};
use semantic_coord::scenario::{validate_file, ValidateError};
use serde_json::{json, Value};

/// `semantic scenario`.
#[derive(Debug, Args)]
pub struct ScenarioArgs {
    #[command(subcommand)]
    command: ScenarioCommand,
}

#[derive(Debug, Subcommand)]
enum ScenarioCommand {
    /// Check a scenario file: prints every problem with its line and field path; exit 1 if any.
    Validate {
        /// The YAML file.
        file: PathBuf,
    },
    /// Run a scenario on a running server, phase by phase, and write its transcript.
    Run(RunArgs),
}

#[derive(Debug, Args)]
struct RunArgs {
    /// The YAML file.
    file: PathBuf,
    /// The server.
    #[arg(long, default_value = "http://127.0.0.1:8000", env = "SEMANTIC_URL")]
    url: String,
    /// API key, when the server wants one (sent as `Authorization: Bearer`).
    #[arg(long, env = "SEMANTIC_CLIENT_API_KEY", hide_env_values = true)]
    api_key: Option<String>,
    /// Rounds per phase [default: each phase's auto_rounds].
    #[arg(long)]
    rounds: Option<u32>,
    /// Most tokens per turn [default: 200].
    #[arg(long)]
    max_tokens: Option<usize>,
    /// Sampling temperature [default: 0.3].
    #[arg(long)]
    temperature: Option<f32>,
    /// Seed, for a run that replays exactly.
    #[arg(long)]
    seed: Option<u64>,
    /// Where to write transcript.json and transcript.md [default: scenario-runs/{scenario id}].
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Runs the subcommand.
pub fn run(args: ScenarioArgs) -> Result<()> {
    match args.command {
        ScenarioCommand::Validate { file } => validate(&file),
        ScenarioCommand::Run(args) => run_scenario(args),
    }
}

fn validate(file: &Path) -> Result<()> {
    match validate_file(file) {
        Ok(s) => {
            let turns: u32 = s.phases.iter().map(|p| p.auto_rounds * p.agents.len() as u32).sum();
            println!(
                "{}: valid: scenario {:?}, {} agents, {} phases, about {turns} turns at auto_rounds",
                file.display(),
                s.id,
                s.agents.len(),
                s.phases.len()
            );
            Ok(())
        }
        Err(ValidateError::Invalid { issues, .. }) => {
            for issue in &issues {
                eprintln!("{}: {issue}", file.display());
            }
            bail!("{}: {} problem(s)", file.display(), issues.len())
        }
        Err(err) => Err(err.into()),
    }
}

/// `http://host:port` to an address.
fn address(url: &str) -> Result<SocketAddr> {
    let rest = url.strip_prefix("http://").with_context(|| format!("{url}: only http:// URLs are supported"))?;
    let host = rest.trim_end_matches('/');
    let host = if host.contains(':') { host.to_owned() } else { format!("{host}:80") };
    host.to_socket_addrs()?.next().with_context(|| format!("{url}: no address"))
}

fn run_scenario(args: RunArgs) -> Result<()> {
    let yaml = std::fs::read_to_string(&args.file).with_context(|| format!("reading {}", args.file.display()))?;
    let scenario = validate_file(&args.file).map_err(|e| match e {
        ValidateError::Invalid { issues, .. } => {
            anyhow::anyhow!("{}", issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("\n"))
        }
        other => other.into(),
    })?;
    let addr = address(&args.url)?;
    let headers: Vec<(String, String)> =
        args.api_key.iter().map(|k| ("Authorization".to_owned(), format!("Bearer {k}"))).collect();
    let body = json!({"yaml": yaml, "rounds": args.rounds, "max_tokens": args.max_tokens,
        "temperature": args.temperature, "seed": args.seed});
    let started = request_with(addr, &headers, "POST", "/v1/scenarios/runs", Some(&body))?;
    if started.status != 201 {
        bail!("starting the run: HTTP {}: {}", started.status, String::from_utf8_lossy(&started.body));
    }
    let run_id = started.json()["run_id"].as_str().context("no run_id in the reply")?.to_owned();
    eprintln!("run {run_id}: {} ({} phases) on {}", scenario.title, scenario.phases.len(), args.url);
    let mut failure: Option<String> = None;
    follow_events(addr, &headers, &format!("/v1/scenarios/runs/{run_id}/events"), |name, data| {
        let v: Value = serde_json::from_str(data).unwrap_or(Value::Null);
        match name {
            "phase_start" => {
                eprintln!("== phase {}: {}", v["phase"].as_str().unwrap_or(""), v["label"].as_str().unwrap_or(""))
            }
            "turn_complete" => {
                let cached = &v["usage"]["prompt_tokens_details"]["cached_tokens"];
                eprintln!(
                    "  turn {:>3} {:<16} {:>5} prompt tokens, {:>5} reused: {}",
                    v["turn"],
                    v["agent_name"].as_str().unwrap_or(""),
                    v["usage"]["prompt_tokens"],
                    cached,
                    one_line(v["content"].as_str().unwrap_or(""), 70)
                );
            }
            "decision" => eprintln!("  decision: {}", v["decision"]["explanation"].as_str().unwrap_or("")),
            "run_complete" => return Ok(false),
            "error" => {
                failure = Some(v["error"]["message"].as_str().unwrap_or(data).to_owned());
                return Ok(false);
            }
            _ => {}
        }
        Ok(true)
    })?;
    let out = args.out.unwrap_or_else(|| PathBuf::from("scenario-runs").join(&scenario.id));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let path = format!("/v1/scenarios/runs/{run_id}/transcript");
    let transcript = request_with(addr, &headers, "GET", &path, None)?;
    std::fs::write(out.join("transcript.json"), &transcript.body)?;
    let markdown = request_with(addr, &headers, "GET", &format!("{path}?format=markdown"), None)?;
    std::fs::write(out.join("transcript.md"), &markdown.body)?;
    let t = transcript.json();
    if let Some(choices) = t["outcome"]["choices"].as_object() {
        let shown: Vec<String> =
            choices.iter().map(|(k, c)| format!("{k}: {}", c.as_str().unwrap_or("(none)"))).collect();
        eprintln!("outcome: {}", shown.join(", "));
    }
    if let Some(cell) = t["outcome"]["payoff"]["cell"].as_str() {
        eprintln!("payoff: {cell}");
    }
    eprintln!(
        "memory: prefilled {} tokens; re-prefilling every prompt would have cost {}",
        t["memory"]["prefilled_tokens"], t["memory"]["naive_prefill_tokens"]
    );
    eprintln!("wrote {}/transcript.json and transcript.md", out.display());
    match failure {
        Some(message) => bail!("the run failed: {message}"),
        None => Ok(()),
    }
}

fn one_line(text: &str, max: usize) -> String {
    let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if flat.chars().count() > max {
        format!("{}…", flat.chars().take(max).collect::<String>())
    } else {
        flat
    }
}

//! The servers under test as child processes: semantic itself, llama.cpp's `llama-server` (prompt
//! cache on, slots saved to and restored from disk around a restart by the client, as its docs
//! describe) and `hearth-llm` (a proxy in front of llama-server that saves and restores its one
//! slot automatically). Each knows how a request names an agent and what a restart involves.

use std::fs::File;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use serde_json::{json, Value};

use crate::http::{self, Stream};

/// Which server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    /// This project.
    Semantic,
    /// llama.cpp's own server.
    LlamaServer,
    /// hearth-llm in front of llama-server.
    Hearth,
}

impl Kind {
    /// Name used in tables and file names.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Semantic => "semantic",
            Kind::LlamaServer => "llama-server",
            Kind::Hearth => "hearth",
        }
    }
}

/// How to run one kind of server.
#[derive(Debug, Clone)]
pub struct TargetSpec {
    /// Which server.
    pub kind: Kind,
    /// The executable: `semantic`, `llama-server` or `hearth`.
    pub exe: PathBuf,
    /// For hearth: the `llama-server` it spawns (its directory is put first on PATH).
    pub llama_server: Option<PathBuf>,
    /// GGUF file (the same for every target).
    pub model: PathBuf,
    /// Compute threads (the same for every target).
    pub threads: u32,
    /// KV cells.
    pub ctx: u32,
    /// More arguments for the server (e.g. semantic's `--kv-type`).
    pub extra_args: Vec<String>,
}

/// One agent of a scenario: its id, and the llama-server slot it is pinned to.
#[derive(Debug, Clone)]
pub struct Agent {
    /// Agent id (semantic's `agent_id`; the slot file name for llama-server).
    pub id: String,
    /// llama-server slot.
    pub slot: usize,
}

/// A running server, restartable with its on-disk state kept.
pub struct Server {
    spec: TargetSpec,
    /// Parallel sequences (llama-server slots; semantic's most running sequences).
    parallel: usize,
    /// Cache / slot directory, kept across restarts.
    dir: PathBuf,
    log_dir: PathBuf,
    child: Option<Child>,
    /// Where requests go.
    pub addr: SocketAddr,
    /// How long the last start took until the server answered.
    pub last_start: Duration,
    starts: u32,
}

impl Server {
    /// Starts a server with a fresh, empty state directory under `work`.
    pub fn start(spec: &TargetSpec, parallel: usize, work: &Path, tag: &str) -> Result<Self> {
        let dir = work.join(format!("{}-{tag}", spec.kind.name()));
        if dir.exists() {
            std::fs::remove_dir_all(&dir).with_context(|| format!("clearing {}", dir.display()))?;
        }
        let log_dir = dir.join("logs");
        std::fs::create_dir_all(&log_dir)?;
        let mut server = Self {
            spec: spec.clone(),
            parallel: parallel.max(1),
            dir,
            log_dir,
            child: None,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            last_start: Duration::ZERO,
            starts: 0,
        };
        server.launch()?;
        Ok(server)
    }

    fn launch(&mut self) -> Result<()> {
        let port = free_port()?;
        self.addr = SocketAddr::from(([127, 0, 0, 1], port));
        self.starts += 1;
        let log = File::create(self.log_dir.join(format!("server-{}.log", self.starts)))?;
        let spec = &self.spec;
        let (threads, ctx) = (spec.threads.to_string(), spec.ctx.to_string());
        let parallel = self.parallel.to_string();
        let mut command = Command::new(&spec.exe);
        match spec.kind {
            Kind::Semantic => {
                let cache = self.dir.join("cache");
                // llama-server's -c is shared by its -np slots; semantic gets the same cells, split
                // the same way: one stream of ctx/np cells per resident agent.
                let agent_ctx = (spec.ctx / self.parallel.max(1) as u32).to_string();
                command
                    .args(["serve", "--port", &port.to_string(), "--threads", &threads, "--agent-ctx", &agent_ctx])
                    .args(["--resident-agents", &parallel, "--max-running", &parallel])
                    .arg("--model")
                    .arg(&spec.model)
                    .arg("--cache-dir")
                    .arg(cache)
                    .env("SEMANTIC_LOG", "warn")
                    .env_remove("SEMANTIC_CONFIG");
            }
            Kind::LlamaServer => {
                let slots = self.dir.join("slots");
                std::fs::create_dir_all(&slots)?;
                command
                    .args(["--host", "127.0.0.1", "--port", &port.to_string(), "-t", &threads, "-tb", &threads])
                    .args(["-c", &ctx, "-np", &parallel, "--cache-prompt"])
                    .arg("-m")
                    .arg(&spec.model)
                    .arg("--slot-save-path")
                    .arg(slots);
            }
            Kind::Hearth => {
                let upstream = free_port()?;
                let server = spec.llama_server.as_ref().context("hearth needs the path of llama-server")?;
                let dir = server.parent().unwrap_or(Path::new("."));
                let path = std::env::var_os("PATH").unwrap_or_default();
                let mut paths = vec![dir.to_path_buf()];
                paths.extend(std::env::split_paths(&path));
                command
                    .args(["serve", "--port", &port.to_string(), "--upstream-port", &upstream.to_string()])
                    .args(["--ctx", &ctx])
                    .arg("--model")
                    .arg(&spec.model)
                    .arg("--cache-dir")
                    .arg(self.dir.join("cache"))
                    .args(["--", "-t", &threads, "-tb", &threads])
                    .env("PATH", std::env::join_paths(paths)?);
            }
        }
        // Last, so that for hearth they land after `--` and go on to its llama-server.
        command.args(&spec.extra_args);
        let started = Instant::now();
        let child = command
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", spec.exe.display()))?;
        self.child = Some(child);
        self.wait_ready(Duration::from_secs(300))?;
        self.last_start = started.elapsed();
        Ok(())
    }

    /// Polls `GET /v1/models` (every server answers it once the model is loaded).
    fn wait_ready(&mut self, limit: Duration) -> Result<()> {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait()? {
                    bail!(
                        "{} exited during start-up ({status}); see {}",
                        self.spec.kind.name(),
                        self.log_dir.display()
                    );
                }
            }
            if let Ok(response) = http::request(self.addr, "GET", "/v1/models", None) {
                if response.status == 200 {
                    return Ok(());
                }
            }
            // Short, so that start-up times are measured to about 10 ms.
            std::thread::sleep(Duration::from_millis(10));
        }
        bail!("{} did not answer within {limit:?}; see {}", self.spec.kind.name(), self.log_dir.display())
    }

    /// Which server this is.
    pub fn kind(&self) -> Kind {
        self.spec.kind
    }

    /// One streamed chat completion for `agent` at temperature 0; `extra` fields are merged into
    /// the body.
    pub fn chat(&self, agent: &Agent, messages: &[Value], max_tokens: usize, extra: &Value) -> Result<Stream> {
        let mut body = json!({
            "messages": messages,
            "stream": true,
            "stream_options": {"include_usage": true},
            "max_tokens": max_tokens,
            "temperature": 0.0,
        });
        match self.spec.kind {
            Kind::Semantic => body["agent_id"] = json!(agent.id),
            Kind::LlamaServer => {
                body["id_slot"] = json!(agent.slot);
                body["cache_prompt"] = json!(true);
            }
            // hearth picks the slot and the snapshot itself.
            Kind::Hearth => {}
        }
        if let Some(fields) = extra.as_object() {
            for (key, value) in fields {
                body[key] = value.clone();
            }
        }
        http::stream_chat(self.addr, "/v1/chat/completions", &body)
    }

    /// Stops the server gracefully (SIGTERM: semantic flushes its agents), saving llama-server's
    /// slots for `agents` first, and starts it again on the same state directory. Returns how long
    /// the stop took.
    pub fn restart(&mut self, agents: &[Agent]) -> Result<Duration> {
        if self.spec.kind == Kind::LlamaServer {
            for agent in agents {
                self.slot_action(agent, "save")?;
            }
        }
        let stopped = Instant::now();
        self.stop()?;
        let stop = stopped.elapsed();
        self.launch()?;
        Ok(stop)
    }

    /// What an agent must do after a restart before its next request: llama-server loads the
    /// slot file back (the client's job there); the others restore on their own. Returns the time
    /// it took (counted into that agent's next TTFT).
    pub fn restore(&self, agent: &Agent) -> Result<Duration> {
        if self.spec.kind != Kind::LlamaServer {
            return Ok(Duration::ZERO);
        }
        let started = Instant::now();
        self.slot_action(agent, "restore")?;
        Ok(started.elapsed())
    }

    fn slot_action(&self, agent: &Agent, action: &str) -> Result<()> {
        let path = format!("/slots/{}?action={action}", agent.slot);
        let body = json!({"filename": format!("{}.bin", agent.id)});
        let response = http::request(self.addr, "POST", &path, Some(&body))?;
        if response.status != 200 {
            bail!("llama-server {action} of slot {}: HTTP {}: {}", agent.slot, response.status, response.json());
        }
        Ok(())
    }

    /// GET a JSON document (e.g. `/v1/agents/{id}` on semantic).
    pub fn get_json(&self, path: &str) -> Result<Value> {
        let response = http::request(self.addr, "GET", path, None)?;
        if response.status != 200 {
            bail!("GET {path}: HTTP {}", response.status);
        }
        Ok(response.json())
    }

    /// SIGTERM, then wait (bounded) for the process and, for hearth, its llama-server to go.
    pub fn stop(&mut self) -> Result<()> {
        let Some(mut child) = self.child.take() else { return Ok(()) };
        let _ = Command::new("kill").args(["-TERM", &child.id().to_string()]).status();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if child.try_wait()?.is_some() {
                break;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        // hearth's upstream llama-server is its child; make sure it is gone before the next start.
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline && TcpStream::connect(self.addr).is_ok() {
            std::thread::sleep(Duration::from_millis(20));
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.stop();
    }
}

/// A port nobody listens on right now (the OS picks it).
fn free_port() -> Result<u16> {
    Ok(TcpListener::bind(("127.0.0.1", 0))?.local_addr()?.port())
}

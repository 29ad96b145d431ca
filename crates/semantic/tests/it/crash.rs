//! Crash campaign (issue 19, item 3): `kill -9` the real server at random moments — mid-request,
//! right after a turn (while its file is written), during an eviction, during a model swap,
//! during a graceful shutdown — and restart it on the same cache directory each time. Checks:
//! every start-up succeeds; every agent is its last confirmed version or the one before, never a
//! damaged one, and a restored agent's next turn is served from disk; `semantic cache verify` is
//! clean after each start, and before it lists exactly the files that start-up then quarantined.
//!
//! A confirmed version is a turn the server answered; each conversation waits until its agent is
//! on disk (`dirty: false`) before its next turn, so "the one before" is the last version the
//! server reported written. (How long a finished turn may stay unwritten is
//! `--persist-within-secs`, tested in `durability.rs`.) `SEMANTIC_CRASH_KILLS` sets the kills
//! (default 8, for CI), `SEMANTIC_CRASH_SEED` the seed (default: from the clock; printed);
//! `scripts/reliability` runs 100+ and reads the `crash campaign:` summary line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::harness::{model_path, tempdir::TempDir, try_http, Server};

const ADMIN: &str = "crash-admin-key";
const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1";
const GEMMA: &str = "gemma-3-270m-q4_k_m";
/// Conversations running at once (more than `--resident-agents`, so agents are evicted).
const AGENTS: usize = 4;
/// Messages after which a conversation starts over under a new agent id (keeps prompts short).
const MAX_MESSAGES: usize = 21;
const PROMPTS: [&str; 4] = ["Name a colour.", "Name an animal.", "Say a fruit.", "Count to three."];

/// Where in the server's life the kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    MidRequest,
    AfterTurn,
    Eviction,
    Swap,
    Shutdown,
}

const MOMENTS: [Moment; 5] = [Moment::MidRequest, Moment::AfterTurn, Moment::Eviction, Moment::Swap, Moment::Shutdown];

/// One conversation and what the server confirmed of it.
struct Agent {
    id: String,
    generation: u32,
    messages: Vec<Value>,
    /// Tokens of the last answered turn.
    answered: Option<u64>,
    /// Tokens of the last version the server reported on disk (`dirty: false`), or restored.
    written: Option<u64>,
    /// The next answered turn must reuse the agent's file (`cache_source: disk`).
    expect_disk: bool,
}

impl Agent {
    fn new(slot: usize, generation: u32) -> Self {
        let messages = vec![json!({"role": "user", "content": PROMPTS[slot % PROMPTS.len()]})];
        let id = format!("crash-{slot}-{generation}");
        Agent { id, generation, messages, answered: None, written: None, expect_disk: false }
    }
}

/// What the conversations saw during one server life.
#[derive(Default)]
struct Talk {
    turns: u64,
    /// First turns after a restart that were not served from the agent's file.
    not_from_disk: Vec<String>,
}

/// The campaign's counters, printed at the end.
#[derive(Default, Debug)]
struct Figures {
    kills: u64,
    restarts: u64,
    agents_checked: u64,
    restored_latest: u64,
    restored_previous: u64,
    /// Restored with one token less than the answered turn reported (see `check_restored`).
    restored_short_by_one: u64,
    quarantined: u64,
    turns: u64,
    by_moment: [u64; 5],
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn gemma_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf")
}

/// A models directory with both models (for the swap), outside the cache directory.
fn models_dir(dir: &Path) -> PathBuf {
    std::os::unix::fs::symlink(model_path(), dir.join(format!("{SMOL}.gguf"))).unwrap();
    std::os::unix::fs::symlink(gemma_path(), dir.join(format!("{GEMMA}.gguf"))).unwrap();
    dir.to_path_buf()
}

fn get(addr: SocketAddr, path: &str) -> Option<(u16, Value)> {
    let r = try_http(addr, "GET", path, &[], None).ok()?;
    Some((r.status, serde_json::from_str(&r.body).unwrap_or(Value::Null)))
}

/// One turn; `None` once the server is gone, refuses, or now serves another model.
fn turn(addr: SocketAddr, agent: &Agent) -> Option<Value> {
    let body = json!({"messages": agent.messages, "max_tokens": 10, "temperature": 0, "agent_id": agent.id});
    let headers = [("content-type", "application/json")];
    let r = try_http(addr, "POST", "/v1/chat/completions", &headers, Some(&body.to_string())).ok()?;
    let reply: Value = serde_json::from_str(&r.body).ok()?;
    (r.status == 200 && reply["model"] == SMOL).then_some(reply)
}

/// Polls the agent until the server reports its `tokens` on disk (25 ms apart, up to 30 s).
fn wait_written(addr: SocketAddr, id: &str, tokens: u64) -> bool {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        match get(addr, &format!("/v1/agents/{id}")) {
            Some((200, a)) if a["dirty"] == false && a["tokens"] == tokens => return true,
            Some((200, _)) => std::thread::sleep(Duration::from_millis(25)),
            _ => return false,
        }
    }
    false
}

/// Runs one conversation until `stop` or the server goes away; each answered turn is announced
/// on `turns` and waited for on disk before the next.
fn converse(
    addr: SocketAddr,
    slot: usize,
    mut agent: Agent,
    stop: &AtomicBool,
    turns: &mpsc::Sender<()>,
) -> (Agent, Talk) {
    let mut talk = Talk::default();
    for _ in 0..100 {
        if stop.load(Ordering::SeqCst) {
            break;
        }
        let Some(reply) = turn(addr, &agent) else { break };
        talk.turns += 1;
        let details = &reply["usage"]["prompt_tokens_details"];
        if std::mem::take(&mut agent.expect_disk) && details["cache_source"] != "disk" {
            talk.not_from_disk.push(format!("{}: {details}", agent.id));
        }
        let text = reply["choices"][0]["message"]["content"].as_str().unwrap_or("").to_string();
        agent.messages.push(json!({"role": "assistant", "content": text}));
        let usage = &reply["usage"];
        // An agent keeps the KV of every token but the last sampled one (it was never decoded), so
        // when the agent cannot be asked (a swap answering 503), usage less one is its size.
        let by_usage =
            (usage["prompt_tokens"].as_u64().unwrap_or(0) + usage["completion_tokens"].as_u64().unwrap_or(0)).max(1)
                - 1;
        let tokens = match get(addr, &format!("/v1/agents/{}", agent.id)) {
            Some((200, a)) => a["tokens"].as_u64().unwrap_or(by_usage),
            _ => by_usage,
        };
        agent.answered = Some(tokens);
        let _ = turns.send(());
        if !wait_written(addr, &agent.id, tokens) {
            break;
        }
        agent.written = Some(tokens);
        if agent.messages.len() >= MAX_MESSAGES {
            agent = Agent::new(slot, agent.generation + 1);
        } else {
            let n = agent.messages.len();
            agent.messages.push(json!({"role": "user", "content": PROMPTS[(slot + n) % PROMPTS.len()]}));
        }
    }
    (agent, talk)
}

/// `semantic cache verify` on `dir`: (exit success, the files it calls bad).
fn verify(dir: &Path) -> (bool, Vec<String>) {
    let out = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["cache", "verify", "--cache-dir"])
        .arg(dir)
        .env_remove("SEMANTIC_CONFIG")
        .output()
        .expect("run semantic cache verify");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    let bad = text.lines().filter_map(|l| l.strip_prefix("BAD ")).map(|l| l.split(": ").next().unwrap().to_string());
    (out.status.success(), bad.collect())
}

/// Every `*.rejected` file (a quarantined agent file) under `dir`, sorted.
fn quarantined(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    for _ in 0..10_000 {
        let Some(d) = stack.pop() else { break };
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let path = entry.path();
            if path.is_dir() {
                stack.push(path);
            } else if let Some(p) = path.to_str().and_then(|p| p.strip_suffix(".rejected")) {
                found.push(p.to_string());
            }
        }
    }
    found.sort();
    found
}

struct Campaign {
    rng: StdRng,
    agents: Vec<Agent>,
    figures: Figures,
    args: Vec<String>,
    /// Files `cache verify` called bad after the last kill (start-up must quarantine them).
    bad_before_start: Vec<String>,
}

impl Campaign {
    fn new(seed: u64, models: &Path) -> Self {
        let mut args: Vec<String> = ["--persist-within-secs", "1", "--resident-agents", "2", "--memory-warm-mb", "4"]
            .map(String::from)
            .to_vec();
        let smol = models.join(format!("{SMOL}.gguf"));
        args.extend(["--model".into(), smol.to_str().unwrap().into(), "--models-dir".into()]);
        args.extend([models.to_str().unwrap().into(), "--admin-key".into(), ADMIN.into()]);
        let agents = (0..AGENTS).map(|slot| Agent::new(slot, 0)).collect();
        let rng = StdRng::seed_from_u64(seed);
        Campaign { rng, agents, figures: Figures::default(), args, bad_before_start: Vec::new() }
    }

    /// Starts the server, checks what it restored, lets the conversations run, kills it at the
    /// chosen moment, checks the files. Returns the cache directory for the next life.
    fn life(&mut self, dir: TempDir) -> TempDir {
        let quarantined_before = quarantined(dir.path());
        let args: Vec<&str> = self.args.iter().map(String::as_str).collect();
        let server = Server::start_in(dir, &args);
        self.figures.restarts += 1;
        let mut now_quarantined = quarantined(server.cache_dir.path());
        now_quarantined.retain(|p| !quarantined_before.contains(p));
        assert_eq!(now_quarantined, self.bad_before_start, "start-up quarantined exactly what verify called bad");
        self.figures.quarantined += now_quarantined.len() as u64;
        let (ok, bad) = verify(server.cache_dir.path());
        assert!(ok && bad.is_empty(), "cache verify after start-up: {bad:?}");
        self.check_restored(&server);

        let moment = MOMENTS[self.rng.gen_range(0..MOMENTS.len())];
        self.figures.by_moment[moment as usize] += 1;
        let stop = Arc::new(AtomicBool::new(false));
        let (turns_tx, turns) = mpsc::channel();
        let threads: Vec<JoinHandle<(Agent, Talk)>> = std::mem::take(&mut self.agents)
            .into_iter()
            .enumerate()
            .map(|(slot, agent)| {
                let (addr, stop, tx) = (server.addr, Arc::clone(&stop), turns_tx.clone());
                std::thread::spawn(move || converse(addr, slot, agent, &stop, &tx))
            })
            .collect();
        drop(turns_tx);
        let side = self.provoke(&server, moment, &turns);
        let dir = server.kill_keeping_dir();
        self.figures.kills += 1;
        stop.store(true, Ordering::SeqCst);
        for handle in threads {
            let (agent, talk) = handle.join().expect("a conversation thread panicked");
            assert!(talk.not_from_disk.is_empty(), "restored agents not served from disk: {:?}", talk.not_from_disk);
            self.figures.turns += talk.turns;
            self.agents.push(agent);
        }
        if let Some(side) = side {
            let _ = side.join();
        }
        let (ok, bad) = verify(dir.path());
        assert_eq!(ok, bad.is_empty(), "verify's exit status agrees with its list");
        if !bad.is_empty() {
            eprintln!("after kill {} ({moment:?}) cache verify lists {bad:?}", self.figures.kills);
        }
        self.bad_before_start = bad;
        dir
    }

    /// Waits for the chosen moment (the random delays are the injected timing, not
    /// synchronisation) and returns a side thread to join after the kill.
    fn provoke(&mut self, server: &Server, moment: Moment, turns: &mpsc::Receiver<()>) -> Option<JoinHandle<()>> {
        let addr = server.addr;
        let pause = |ms: u64| std::thread::sleep(Duration::from_millis(ms));
        // Let the conversations get somewhere first: 1 to 6 answered turns.
        for _ in 0..self.rng.gen_range(1..=AGENTS + 2) {
            if turns.recv_timeout(Duration::from_secs(120)).is_err() {
                break;
            }
        }
        match moment {
            Moment::MidRequest => pause(self.rng.gen_range(0..1_000)),
            Moment::AfterTurn => {
                // An idle agent is written about 1 s after its turn (`persist_after_idle`, and
                // `--persist-within-secs 1` under load): aim around then.
                let _ = turns.recv_timeout(Duration::from_secs(60));
                pause(self.rng.gen_range(0..1_500));
            }
            Moment::Eviction => {
                let pick = self.rng.gen_range(0..AGENTS);
                let evict = std::thread::spawn(move || {
                    let Some((200, list)) = get(addr, "/v1/agents") else { return };
                    let ids: Vec<&str> =
                        list["data"].as_array().into_iter().flatten().filter_map(|a| a["id"].as_str()).collect();
                    if let Some(id) = ids.get(pick % ids.len().max(1)) {
                        let _ = try_http(addr, "POST", &format!("/v1/agents/{id}/evict"), &[], None);
                    }
                });
                pause(self.rng.gen_range(0..300));
                return Some(evict);
            }
            Moment::Swap => {
                pause(self.rng.gen_range(0..1_000));
                let swap = std::thread::spawn(move || {
                    let body = json!({"model_id": GEMMA, "timeout_seconds": 30}).to_string();
                    let headers = [("content-type", "application/json"), ("x-admin-key", ADMIN)];
                    let _ = try_http(addr, "POST", "/admin/models/swap", &headers, Some(&body));
                });
                pause(self.rng.gen_range(0..3_000));
                return Some(swap);
            }
            Moment::Shutdown => {
                pause(self.rng.gen_range(0..1_500));
                server.signal_term();
                pause(self.rng.gen_range(0..1_500));
            }
        }
        None
    }

    /// Every conversation's agent is its last answered version or the last one written.
    fn check_restored(&mut self, server: &Server) {
        for agent in &mut self.agents {
            let Some(answered) = agent.answered else { continue };
            let restored = match get(server.addr, &format!("/v1/agents/{}", agent.id)) {
                Some((200, a)) => Some(a["tokens"].as_u64().expect("an agent has tokens")),
                Some((404, _)) => None,
                other => panic!("GET agent {}: {other:?}", agent.id),
            };
            self.figures.agents_checked += 1;
            if restored == Some(answered) {
                self.figures.restored_latest += 1;
            } else if restored == Some(answered.saturating_sub(1)) && agent.written != restored {
                // Found by the long run (seed 1796315216): the agent could not be asked after its
                // turn (a swap was starting) and `answered` came from usage, which counts the last
                // sampled token that has no KV. Fixed above; still counted apart should another
                // path (a stop string) count one token more than the agent keeps.
                self.figures.restored_short_by_one += 1;
            } else {
                assert_eq!(
                    restored, agent.written,
                    "{}: restored {restored:?}, answered {answered}, last written {:?} (seed in the log)",
                    agent.id, agent.written
                );
                self.figures.restored_previous += 1;
            }
            agent.written = restored;
            agent.answered = restored;
            agent.expect_disk = restored.is_some();
        }
    }
}

#[test]
fn kill_9_at_random_moments_never_serves_a_damaged_or_older_agent() {
    let kills = env_or("SEMANTIC_CRASH_KILLS", 8);
    let clock = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64;
    let seed = env_or("SEMANTIC_CRASH_SEED", clock);
    eprintln!("crash campaign: seed {seed} (SEMANTIC_CRASH_SEED={seed} replays the moments), {kills} kills");
    let models = TempDir::new("crash-models");
    let mut campaign = Campaign::new(seed, &models_dir(models.path()));
    let started = Instant::now();
    let mut dir = TempDir::new("crash");
    for _ in 0..kills {
        dir = campaign.life(dir);
    }
    // A last start: everything the last kill left must load too.
    let args: Vec<&str> = campaign.args.iter().map(String::as_str).collect();
    let server = Server::start_in(dir, &args);
    campaign.figures.restarts += 1;
    campaign.check_restored(&server);
    let f = &campaign.figures;
    // Every start (each `Server::start_in`) succeeded, or the test failed there with its log.
    let moments: Vec<String> = MOMENTS.iter().map(|m| format!("{m:?}={}", f.by_moment[*m as usize])).collect();
    eprintln!(
        "crash campaign: seed={seed} kills={} restarts={} startup_failures=0 agents_checked={} restored_latest={} \
         restored_previous={} restored_short_by_one={} quarantined={} turns={} seconds={:.0} moments={}",
        f.kills,
        f.restarts,
        f.agents_checked,
        f.restored_latest,
        f.restored_previous,
        f.restored_short_by_one,
        f.quarantined,
        f.turns,
        started.elapsed().as_secs_f64(),
        moments.join(",")
    );
    assert_eq!(f.kills, kills);
    assert!(f.agents_checked > 0, "the campaign checked no agent: {f:?}");
}

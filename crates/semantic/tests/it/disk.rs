//! A full disk (issue 19, item 3): the cache directory is a small tmpfs, filled to the last byte
//! while agents keep talking. Requests still answer; writes fail with a log line and
//! `semantic_persist_failures_total{reason="no_space"}`; a `kill -9` and restart on the full disk
//! starts and serves the last version that was written whole (never a half-written one, and
//! `semantic cache verify` stays clean); once space is freed the next writes succeed.
//! `SEMANTIC_DISK_CYCLES` sets the fill/free cycles (default 2; `scripts/reliability` runs more).
//! Needs root (CAP_SYS_ADMIN) to mount the tmpfs, and says so instead of passing without it.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::{tempdir::TempDir, Server};

/// The tmpfs size: a few agent files of SmolLM2 (about 25 KB per token).
const SIZE_MB: u64 = 24;

/// A tmpfs mounted on a directory; unmounted (and the directory removed) on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path) -> Self {
        let status =
            Command::new("mount").args(["-t", "tmpfs", "-o", &format!("size={SIZE_MB}m"), "tmpfs"]).arg(dir).status();
        assert!(
            status.as_ref().is_ok_and(|s| s.success()),
            "the full-disk test mounts a {SIZE_MB} MB tmpfs as the cache directory, which needs root \
             (CAP_SYS_ADMIN): `mount -t tmpfs` failed ({status:?})"
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
        let _ = std::fs::remove_dir(&self.0);
    }
}

/// Fills the file system holding `dir` with `fill` until a write fails; returns the bytes written.
fn fill_up(dir: &Path) -> u64 {
    let mut file = std::fs::File::create(dir.join("fill")).unwrap();
    let chunk = vec![0u8; 64 << 10];
    let mut written = 0;
    // Bounded: the tmpfs holds SIZE_MB; a few chunks over that means the size limit did not hold.
    for _ in 0..(SIZE_MB * 16 + 64) {
        match file.write(&chunk) {
            Ok(0) | Err(_) => return written,
            Ok(n) => written += n as u64,
        }
    }
    panic!("{} MB written to a {SIZE_MB} MB tmpfs without an error", written >> 20);
}

fn metric(server: &Server, series: &str) -> f64 {
    let text = server.request("GET", "/metrics", None).body;
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok()).unwrap_or(0.0)
}

fn no_space_failures(server: &Server) -> f64 {
    metric(server, "semantic_persist_failures_total{reason=\"no_space\"}")
}

fn chat(server: &Server, agent: &str, messages: &[Value]) -> Value {
    let body = json!({"messages": messages, "max_tokens": 8, "temperature": 0, "agent_id": agent});
    let r = server.post_json("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "the server keeps answering on a full disk: {}", r.body);
    r.json()
}

fn agent(server: &Server, id: &str) -> Value {
    let r = server.request("GET", &format!("/v1/agents/{id}"), None);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

/// Polls (50 ms apart, up to `limit`) until `done` holds.
fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "not within {limit:?}: {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn verify_clean(dir: &Path) {
    let out = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["cache", "verify", "--cache-dir"])
        .arg(dir)
        .env_remove("SEMANTIC_CONFIG")
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && !text.contains("BAD"),
        "cache verify: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn temp_files(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    for _ in 0..10_000 {
        let Some(d) = stack.pop() else { break };
        for path in std::fs::read_dir(&d).into_iter().flatten().flatten().map(|e| e.path()) {
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "tmp") {
                found.push(path);
            }
        }
    }
    found
}

const ARGS: [&str; 2] = ["--persist-within-secs", "1"];

/// One cycle on agent `id`: a turn written with space, the disk filled, a turn whose write fails,
/// a kill -9 and restart on the full disk, the last whole version served, space freed, written.
/// Returns the server and the `no_space` failures it counted before the restart.
fn cycle(server: Server, id: &str) -> (Server, f64) {
    let mut messages = vec![json!({"role": "user", "content": "Name a colour."})];
    let reply = chat(&server, id, &messages);
    let written = agent(&server, id)["tokens"].as_u64().unwrap();
    wait_until(Duration::from_secs(30), "the first turn written", || agent(&server, id)["dirty"] == false);

    let filled = fill_up(server.cache_dir.path());
    let failures = no_space_failures(&server);
    messages.push(reply["choices"][0]["message"].clone());
    messages.push(json!({"role": "user", "content": "And an animal?"}));
    let reply = chat(&server, id, &messages);
    wait_until(Duration::from_secs(30), "a no_space failure counted", || no_space_failures(&server) > failures);
    assert!(server.stderr().contains("persisting an agent failed"), "a log line says so:\n{}", server.stderr());
    assert_eq!(agent(&server, id)["dirty"], true, "the unwritten turn stays in memory");
    assert!(temp_files(server.cache_dir.path()).is_empty(), "a failed write leaves no temp file");
    assert_eq!(server.request("GET", "/health/ready", None).status, 200);

    // A crash on the full disk: the restart serves the last whole file.
    let no_space = no_space_failures(&server);
    let dir = server.kill_keeping_dir();
    verify_clean(dir.path());
    let server = Server::start_in(dir, &ARGS);
    assert_eq!(agent(&server, id)["tokens"].as_u64(), Some(written), "the last version written whole");
    messages.push(reply["choices"][0]["message"].clone());
    messages.push(json!({"role": "user", "content": "And a fruit?"}));
    let reply = chat(&server, id, &messages);
    let details = &reply["usage"]["prompt_tokens_details"];
    assert_eq!(details["cache_source"], "disk", "{reply}");

    // Space freed: the failed write is retried and succeeds.
    std::fs::remove_file(server.cache_dir.path().join("fill")).unwrap();
    let persisted = metric(&server, "semantic_persist_total");
    wait_until(Duration::from_secs(45), "a write after space was freed", || {
        agent(&server, id)["dirty"] == false && metric(&server, "semantic_persist_total") > persisted
    });
    // Leave the space to the next cycle.
    assert_eq!(server.request("DELETE", &format!("/v1/agents/{id}"), None).status, 200);
    eprintln!("disk cycle {id}: filled {} MB, write failed, restart served {written} tokens, resumed", filled >> 20);
    (server, no_space)
}

#[test]
fn a_full_disk_fails_writes_visibly_keeps_answering_and_resumes_when_freed() {
    let cycles = std::env::var("SEMANTIC_DISK_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(2u32);
    let dir = TempDir::new("disk-full");
    let mount = Tmpfs::mount(dir.path());
    let mut server = Server::start_in(dir, &ARGS);
    let started = Instant::now();
    let mut no_space = 0.0;
    for n in 0..cycles {
        let (next, failures) = cycle(server, &format!("disk-{n}"));
        (server, no_space) = (next, no_space + failures);
    }
    // Failures counted before each cycle's restart, plus those since.
    no_space += no_space_failures(&server);
    eprintln!(
        "disk campaign: cycles={cycles} no_space_failures={no_space} seconds={:.0}",
        started.elapsed().as_secs_f64()
    );
    drop(server);
    drop(mount);
}

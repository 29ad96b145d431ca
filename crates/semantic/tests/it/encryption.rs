//! Encryption at rest end to end with the real model: an agent survives a restart under its key,
//! its file does not hold its token ids in the clear, a wrong key serves cold (counted, no crash),
//! and `semantic cache rekey` moves the cache to a new key that then serves warm.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

use crate::harness::tempdir::TempDir;
use crate::harness::Server;

fn chat(server: &Server, messages: &Value) -> Value {
    let body = json!({"messages": messages, "max_tokens": 8, "temperature": 0, "agent_id": "alice"});
    let r = server.post_json("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    r.json()
}

fn cached(response: &Value) -> u64 {
    response["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap()
}

/// `semantic ARGS --cache-dir DIR` (no inherited `SEMANTIC_*`); returns (success, stdout + stderr).
fn semantic(dir: &Path, args: &[&str]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_semantic"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SEMANTIC_") {
            cmd.env_remove(key);
        }
    }
    let out = cmd.args(args).arg("--cache-dir").arg(dir).env("SEMANTIC_LOG", "warn").output().unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    eprintln!("$ semantic {}\n{text}", args.join(" "));
    (out.status.success(), text)
}

/// A hex key file, mode 0600.
fn key_file(dir: &Path, name: &str, byte: u8) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{}\n", format!("{byte:02x}").repeat(32))).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    path
}

/// The one agent file under a cache directory.
fn agent_file(cache: &Path) -> PathBuf {
    let mut found = Vec::new();
    let mut dirs = vec![cache.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().map(Result::unwrap) {
            let path = entry.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "skv") {
                found.push(path);
            }
        }
    }
    assert_eq!(found.len(), 1, "{found:?}");
    found.remove(0)
}

fn rejected_for_key(server: &Server) -> u64 {
    let metrics = server.request("GET", "/metrics", None).body;
    let line = metrics
        .lines()
        .find(|l| l.starts_with("semantic_rejected_cache_files_total{reason=\"key\"}"))
        .unwrap_or_else(|| panic!("no key rejection metric:\n{metrics}"));
    line.rsplit(' ').next().unwrap().parse().unwrap()
}

#[test]
fn encrypted_agents_survive_restarts_miss_under_a_wrong_key_and_follow_a_rekey() {
    let keys = TempDir::new("keys");
    let (a, b, c) =
        (key_file(keys.path(), "a", 0xa1), key_file(keys.path(), "b", 0xb2), key_file(keys.path(), "c", 0xc3));
    let flag = |k: &Path| vec!["--encryption-key-file".to_string(), k.display().to_string()];
    let args = flag;

    let first_args = args(&a);
    let server = Server::start(&first_args.iter().map(String::as_str).collect::<Vec<_>>());
    let mut messages = json!([
        {"role": "system", "content": "You are a terse assistant for the Zanzibar ferry timetable office."},
        {"role": "user", "content": "When does the first ferry leave Stone Town on weekdays?"}
    ]);
    let first = chat(&server, &messages);
    assert_eq!(cached(&first), 0);
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    let (exit, dir) = server.terminate_keeping_dir();
    assert!(exit.success());

    // On disk: version 3, and the prompt's token ids (read back with the key) are not in the clear.
    let file = agent_file(dir.path());
    let bytes = std::fs::read(&file).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3, "encrypted format version");
    let (_, header) = semantic(
        dir.path(),
        &[&["agents", "show", "alice"][..], &flag(&a).iter().map(String::as_str).collect::<Vec<_>>()].concat(),
    );
    let first_tokens: Vec<i32> = header
        .lines()
        .find_map(|l| l.strip_prefix("first tokens:"))
        .map(|l| l.trim().trim_matches(['[', ']']).split(", ").map(|t| t.parse().unwrap()).collect())
        .unwrap_or_else(|| panic!("agents show printed no tokens:\n{header}"));
    assert!(first_tokens.len() >= 8, "{header}");
    let needle: Vec<u8> = first_tokens[..8].iter().flat_map(|t| t.to_le_bytes()).collect();
    assert!(!bytes.windows(needle.len()).any(|w| w == needle), "token ids in the clear in {}", file.display());
    let (ok, report) = semantic(dir.path(), &["cache", "verify"]);
    assert!(!ok && report.contains("no encryption key"), "verify without the key reports the file:\n{report}");

    // Same key: warm.
    let reply = first["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    messages.as_array_mut().unwrap().push(json!({"role": "assistant", "content": reply}));
    messages.as_array_mut().unwrap().push(json!({"role": "user", "content": "And on Sundays?"}));
    let server = Server::start_in(dir, &first_args.iter().map(String::as_str).collect::<Vec<_>>());
    let second = chat(&server, &messages);
    assert!(cached(&second) >= first_prompt - 4, "warm under the same key: {second}");
    assert_eq!(rejected_for_key(&server), 0);
    let (_, dir) = server.terminate_keeping_dir();

    // Wrong key: served cold, counted, no crash. Its save then rewrites the file under key b.
    let wrong = args(&b);
    let server = Server::start_in(dir, &wrong.iter().map(String::as_str).collect::<Vec<_>>());
    let cold = chat(&server, &messages);
    assert_eq!(cached(&cold), 0, "a wrong key never serves the cache: {cold}");
    assert_eq!(rejected_for_key(&server), 1);
    assert!(server.stderr().contains("rejected"), "logged:\n{}", server.stderr());
    let (exit, dir) = server.terminate_keeping_dir();
    assert!(exit.success());

    // Rekey b -> c offline; c then serves warm.
    let (b_s, c_s) = (b.display().to_string(), c.display().to_string());
    let (ok, out) = semantic(dir.path(), &["cache", "rekey", "--old-key-file", &b_s, "--new-key-file", &c_s]);
    assert!(ok && out.contains("rekeyed 1 file(s)"), "{out}");
    let (ok, out) = semantic(dir.path(), &["cache", "verify", "--encryption-key-file", &c_s]);
    assert!(ok && out.contains("1 ok, 0 bad"), "{out}");
    let server = Server::start_in(dir, &args(&c).iter().map(String::as_str).collect::<Vec<_>>());
    let third = chat(&server, &messages);
    assert!(cached(&third) >= first_prompt, "warm after the rekey: {third}");
    assert_eq!(rejected_for_key(&server), 0);
    assert!(server.terminate().success());
}

#[test]
fn an_unusable_key_file_is_refused_at_start() {
    let keys = TempDir::new("bad-key");
    let bad = keys.path().join("short");
    std::fs::write(&bad, "abc123\n").unwrap();
    let cache = TempDir::new("bad-key-cache");
    let (ok, out) =
        semantic(cache.path(), &["serve", "--port", "0", "--encryption-key-file", &bad.display().to_string()]);
    assert!(!ok, "{out}");
    assert!(out.contains("encryption key file") && out.contains("64 hex digits"), "{out}");
    assert!(!out.contains("abc123"), "the key file's contents are never echoed: {out}");
}

//! The Responses API with the official OpenAI Python SDK against the real server:
//! `tests/sdk/test_responses.py` runs turns 1-2 of a conversation (plain and streamed), a streamed
//! three-turn chain and a tool-call round trip, the server restarts on the same cache directory,
//! and turn 3 continues the stored turn 2, reporting turn 2's prompt as cached (agent memory from
//! disk, stored response from `<cache-dir>/responses`).

use std::path::PathBuf;
use std::process::Command;

use crate::harness::Server;

fn run(python: &PathBuf, server: &Server, phase: &str, state: &std::path::Path) -> String {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let out = Command::new(python)
        .arg(root.join("tests/sdk/test_responses.py"))
        .arg(format!("http://{}", server.addr))
        .arg(phase)
        .arg(state)
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run tests/sdk/test_responses.py");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "test_responses.py {phase} failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

#[test]
fn responses_sdk_chain_survives_a_restart() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        let status =
            Command::new(root.join("scripts/setup-python-tests")).status().expect("run scripts/setup-python-tests");
        assert!(status.success(), "scripts/setup-python-tests failed");
    }
    let server = Server::start(&[]);
    let state = std::env::temp_dir().join(format!("semantic-responses-sdk-{}.json", std::process::id()));
    let before = run(&python, &server, "before", &state);
    let (status, dir) = server.terminate_keeping_dir();
    assert!(status.success(), "{status}");
    let server = Server::start_in(dir, &[]);
    let after = run(&python, &server, "after", &state);
    let _ = std::fs::remove_file(&state);
    eprintln!("{before}{after}");
}

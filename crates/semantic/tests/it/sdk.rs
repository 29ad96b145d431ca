//! The official OpenAI and Anthropic Python SDKs against the real server: runs
//! `tests/sdk/test_sdk.py` with the `.venv-test` made by `scripts/setup-python-tests`.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn the_official_python_sdks_work_end_to_end() {
    let root = repo();
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        // scripts/setup runs this; a bare `cargo test` on a fresh clone makes the venv here.
        let status =
            Command::new(root.join("scripts/setup-python-tests")).status().expect("run scripts/setup-python-tests");
        assert!(status.success(), "scripts/setup-python-tests failed");
    }
    let server = Server::start(&[]);
    let out = Command::new(&python)
        .arg(root.join("tests/sdk/test_sdk.py"))
        .arg(format!("http://{}", server.addr))
        // Agent memory is in: a second turn must report the first turn's prompt as cached.
        .env("SEMANTIC_EXPECT_CACHE", "1")
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .expect("run tests/sdk/test_sdk.py");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "test_sdk.py failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
}

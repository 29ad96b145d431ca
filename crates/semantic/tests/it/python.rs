//! The Python SDK test scripts under `tests/sdk/`: the `.venv-test` they run in (made by
//! `scripts/setup-python-tests`, which `scripts/setup-tests` runs; a bare `cargo test` on a fresh
//! clone makes it here) and one run of a script, which must print its ` passed, 0 failed` line.

use std::path::PathBuf;
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Runs `tests/sdk/<script>` with `args` and `envs` in the test venv; returns its stdout after
/// checking that it exited 0 and reported no failure.
pub fn run_sdk_script(script: &str, args: &[&str], envs: &[(&str, &str)]) -> String {
    let root = repo();
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        let status =
            Command::new(root.join("scripts/setup-python-tests")).status().expect("run scripts/setup-python-tests");
        assert!(status.success(), "scripts/setup-python-tests failed");
    }
    let out = Command::new(&python)
        .arg(root.join("tests/sdk").join(script))
        .args(args)
        .envs(envs.iter().copied())
        .env("PYTHONDONTWRITEBYTECODE", "1")
        .output()
        .unwrap_or_else(|e| panic!("run tests/sdk/{script}: {e}"));
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{script} {args:?} failed ({}):\n{stdout}\n{stderr}", out.status);
    assert!(stdout.contains(" passed, 0 failed"), "{stdout}");
    stdout
}

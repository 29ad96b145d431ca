//! The traps a new user falls into in the first hour, each pinned by a test: boolean env vars,
//! TOML keys named as their flags, `semantic config` output fed back, paths and warnings at
//! start, one server per cache directory.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::harness::model_path;
use crate::harness::tempdir::TempDir;

/// `semantic ARGS` in `cwd`, with no `SEMANTIC_*` setting inherited, plus `env`.
fn semantic(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_semantic"));
    for (key, _) in std::env::vars_os() {
        if key.to_string_lossy().starts_with("SEMANTIC_") {
            cmd.env_remove(key);
        }
    }
    cmd.current_dir(cwd).args(args).envs(env.iter().copied()).env("SEMANTIC_LOG", "warn");
    cmd
}

fn run(cwd: &Path, args: &[&str], env: &[(&str, &str)]) -> (bool, String, String) {
    let Output { status, stdout, stderr } = semantic(cwd, args, env).output().expect("run semantic");
    (status.success(), String::from_utf8_lossy(&stdout).into_owned(), String::from_utf8_lossy(&stderr).into_owned())
}

/// Regression: `SEMANTIC_ALLOW_REMOTE=1` was refused (clap's bool parser takes only true/false)
/// although the server's own hint suggested it.
#[test]
fn boolean_env_vars_accept_1_0_yes_no_on_off() {
    let dir = TempDir::new("bool-env");
    let remote = ["config", "--host", "0.0.0.0"];
    for yes in ["1", "true", "TRUE", "yes", "Yes", "on", "ON"] {
        let (ok, out, err) = run(dir.path(), &remote, &[("SEMANTIC_ALLOW_REMOTE", yes)]);
        assert!(ok && out.contains("host = \"0.0.0.0\""), "SEMANTIC_ALLOW_REMOTE={yes}: {err}");
        let (ok, out, err) = run(dir.path(), &["config"], &[("SEMANTIC_METRICS_PRIVATE", yes)]);
        assert!(ok && out.contains("metrics_private = true"), "SEMANTIC_METRICS_PRIVATE={yes}: {err}");
    }
    for no in ["0", "false", "no", "OFF"] {
        let (ok, _, err) = run(dir.path(), &remote, &[("SEMANTIC_ALLOW_REMOTE", no)]);
        assert!(!ok && err.contains("SEMANTIC_ALLOW_REMOTE=1"), "SEMANTIC_ALLOW_REMOTE={no}: {err}");
        let (ok, out, _) = run(dir.path(), &["config"], &[("SEMANTIC_METRICS_PRIVATE", no)]);
        assert!(ok && out.contains("metrics_private = false"), "SEMANTIC_METRICS_PRIVATE={no}");
    }
    let (ok, _, err) = run(dir.path(), &remote, &[("SEMANTIC_ALLOW_REMOTE", "maybe")]);
    assert!(!ok && err.contains("maybe"), "{err}");
}

/// Regression: three TOML keys differed from their flags, and the old names must keep working.
#[test]
fn toml_keys_match_flags_old_names_warn_unknown_keys_say_the_nearest() {
    let dir = TempDir::new("toml-keys");
    let file = dir.path().join("semantic.toml");
    let file_arg = file.to_str().unwrap();
    std::fs::write(&file, "api_key = [\"key-aaaaaaaa\"]\nmetrics_private = true\ncors_origin = [\"*\"]\n").unwrap();
    let (ok, out, err) = run(dir.path(), &["config", "--config", file_arg], &[]);
    assert!(ok && out.contains("metrics_private = true") && out.contains("cors_origin = [\"*\"]"), "{err}");
    assert!(!err.contains("deprecated"), "{err}");
    std::fs::write(&file, "api_keys = [\"key-aaaaaaaa\"]\nmetrics_public = false\ncors_origins = [\"*\"]\n").unwrap();
    let (ok, out, err) = run(dir.path(), &["config", "--config", file_arg], &[]);
    assert!(ok && out.contains("metrics_private = true") && out.contains("cors_origin = [\"*\"]"), "{err}");
    for old in ["api_keys", "metrics_public", "cors_origins"] {
        assert!(err.contains(&format!("`{old}")) && err.contains("deprecated"), "{old}: {err}");
    }
    std::fs::write(&file, "prot = 8080\n").unwrap();
    let (ok, _, err) = run(dir.path(), &["config", "--config", file_arg], &[]);
    assert!(!ok && err.contains("unknown key `prot` (did you mean `port`?)") && err.contains("valid keys:"), "{err}");
}

/// Regression: `semantic config` printed `api_keys = ["********"]`, a valid 8-character key if the
/// output was saved as the config file.
#[test]
fn config_output_fed_back_does_not_make_the_mask_a_key() {
    let dir = TempDir::new("config-feedback");
    let (ok, printed, err) =
        run(dir.path(), &["config", "--api-key", "real-secret-1", "--admin-key", "admin-secret-1"], &[]);
    assert!(ok, "{err}");
    assert!(!printed.contains("real-secret-1") && printed.contains("********"), "{printed}");
    let file = dir.path().join("printed.toml");
    std::fs::write(&file, &printed).unwrap();
    let (ok, again, err) = run(dir.path(), &["config", "--config", file.to_str().unwrap()], &[]);
    assert!(ok, "the printed config is a valid config file: {err}");
    assert!(!again.contains("********"), "no key came from the mask:\n{again}");
    let (ok, _, err) = run(dir.path(), &["config", "--api-key", "********"], &[]);
    assert!(!ok && err.contains("the mask `semantic config` prints"), "{err}");
    let (ok, _, err) = run(dir.path(), &["config", "--api-key", "short"], &[]);
    assert!(!ok && err.contains("at least 8"), "{err}");
}

/// Relative paths were taken from the working directory silently; they print absolute now.
#[test]
fn config_prints_absolute_paths() {
    let dir = TempDir::new("abs-paths");
    let (ok, out, err) = run(dir.path(), &["config", "--cache-dir", "mem", "--model", "m/x.gguf"], &[]);
    assert!(ok, "{err}");
    let cwd = dir.path().canonicalize().unwrap();
    let cwd = if out.contains(&cwd.display().to_string()) { cwd } else { dir.path().to_path_buf() };
    assert!(out.contains(&format!("cache_dir = \"{}\"", cwd.join("mem").display())), "{out}");
    assert!(out.contains(&format!("model = \"{}\"", cwd.join("m/x.gguf").display())), "{out}");
}

/// A `semantic serve` child whose stderr lines arrive on a channel.
struct Serve {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Serve {
    fn start(cwd: &Path, args: &[&str]) -> Self {
        let mut cmd = semantic(cwd, &["serve", "--port", "0", "--agent-ctx", "1024"], &[("SEMANTIC_LOG", "info")]);
        let mut child = cmd.args(args).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().expect("start serve");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        Self { child, lines, seen: Vec::new() }
    }

    /// Reads stderr until a line contains `needle` (or 60 s pass); everything seen so far.
    fn wait_for(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.seen.iter().any(|l| l.contains(needle)) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(_) => panic!("no {needle:?} on stderr:\n{}", self.seen.join("\n")),
            }
        }
        self.seen.join("\n")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start-up says where the model and memory are, warns about an empty relative cache directory
/// outside the project and about an open remote bind, and a second server on the same cache
/// directory (or an offline write to it) is refused with the first one's pid.
#[test]
fn serve_prints_paths_warns_and_holds_the_cache_dir_alone() {
    let dir = TempDir::new("serve-start");
    let model = model_path();
    let model = model.to_str().unwrap();
    let mut first =
        Serve::start(dir.path(), &["--model", model, "--cache-dir", "mem", "--host", "0.0.0.0", "--allow-remote"]);
    let text = first.wait_for("semantic listening on");
    let cache = dir.path().join("mem");
    assert!(text.contains(&format!("semantic agent memory: {} (new directory)", cache.display())), "{text}");
    assert!(text.contains("WARNING: agent memory starts empty"), "{text}");
    assert!(text.contains("WARNING: listening on 0.0.0.0 without API keys"), "{text}");
    assert!(text.contains("semantic model: /"), "{text}");

    let pid = first.child.id().to_string();
    let (ok, _, err) = run(dir.path(), &["serve", "--port", "0", "--model", model, "--cache-dir", "mem"], &[]);
    assert!(!ok, "a second server on the same cache directory must not start");
    assert!(err.contains(&format!("another semantic process (pid {pid}) is using the cache directory")), "{err}");
    let (ok, _, err) = run(dir.path(), &["agents", "rm", "someone", "--cache-dir", "mem"], &[]);
    assert!(!ok && err.contains(&format!("pid {pid}")), "offline writes respect the lock too: {err}");
    let (ok, _, err) = run(dir.path(), &["agents", "ls", "--cache-dir", "mem"], &[]);
    assert!(ok, "read-only commands work next to a running server: {err}");
    drop(first);

    let mut second = Serve::start(dir.path(), &["--model", model, "--cache-dir", "mem", "--api-key", "key-aaaaaaaa"]);
    let text = second.wait_for("semantic listening on");
    assert!(!text.contains("WARNING: listening"), "loopback with a key: no exposure warning\n{text}");
}

//! The server process: health, CLI parity, graceful shutdown.

use std::process::Command;

use crate::harness::{model_path, Server};

#[test]
fn health_reports_ok_and_shutdown_on_sigterm_exits_zero() {
    let server = Server::start(&[]);
    let health = server.request("GET", "/health", None);
    assert_eq!(health.status, 200);
    assert_eq!(health.json()["status"], "ok");
    let status = server.terminate();
    assert!(status.success(), "exit status {status:?}");
}

#[test]
fn generate_prints_the_greedy_text_of_the_chat_endpoint() {
    let out = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args([
            "generate",
            "--chat",
            "Name a color.",
            "--max-tokens",
            "24",
            "--temperature",
            "0",
            "--agent-ctx",
            "4096",
        ])
        .arg("--model")
        .arg(model_path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli_text = String::from_utf8(out.stdout).unwrap();
    let server = Server::start(&[]);
    let body = serde_json::json!({"messages": [{"role": "user", "content": "Name a color."}], "max_tokens": 24, "temperature": 0});
    let response = server.post_json("/v1/chat/completions", &body);
    assert_eq!(response.status, 200, "{}", response.body);
    let api_text = response.json()["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert!(!api_text.is_empty());
    assert_eq!(cli_text.trim_end_matches('\n'), api_text);
}

#[test]
fn info_prints_the_fingerprint() {
    let out =
        Command::new(env!("CARGO_BIN_EXE_semantic")).arg("info").arg("--model").arg(model_path()).output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("sha256:b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"), "{text}");
    assert!(text.contains("architecture:  llama"));
}

#[test]
fn config_layers_flags_over_env_over_file() {
    let dir = crate::harness::tempdir::TempDir::new("cfg");
    let file = dir.path().join("semantic.toml");
    std::fs::write(&file, "port = 1111\nkv_type = \"q8_0\"\nmax_running = 3\n").unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["config", "--port", "3333"])
        .arg("--config")
        .arg(&file)
        .env("SEMANTIC_PORT", "2222")
        .env("SEMANTIC_MAX_RUNNING", "4")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("port = 3333"), "{text}");
    assert!(text.contains("max_running = 4"), "{text}");
    assert!(text.contains("kv_type = \"q8_0\""), "{text}");
    let bad = Command::new(env!("CARGO_BIN_EXE_semantic")).args(["config", "--host", "0.0.0.0"]).output().unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("--allow-remote"));
}

#[test]
fn ops_limits_layer_like_every_other_setting() {
    let dir = crate::harness::tempdir::TempDir::new("cfg-ops");
    let file = dir.path().join("semantic.toml");
    std::fs::write(
        &file,
        "max_body_bytes = 4096\nrequest_timeout_secs = 30\ncors_origin = [\"https://file.example\"]\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args([
            "config",
            "--rate-limit-rps",
            "2.5",
            "--global-rate-limit-burst",
            "50",
            "--cors-origin",
            "https://a.example",
        ])
        .args(["--cors-origin", "http://localhost:3000"])
        .arg("--config")
        .arg(&file)
        .env("SEMANTIC_STREAM_IDLE_TIMEOUT_SECS", "7")
        .env("SEMANTIC_GLOBAL_RATE_LIMIT_RPS", "40")
        .env("SEMANTIC_REQUEST_TIMEOUT_SECS", "90")
        .env("SEMANTIC_RESPONSES_MAX", "77")
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    for line in [
        "rate_limit_rps = 2.5",
        "rate_limit_burst = 3",
        "global_rate_limit_rps = 40.0",
        "global_rate_limit_burst = 50",
        "max_body_bytes = 4096",
        "request_timeout_secs = 90",
        "stream_idle_timeout_secs = 7",
        "responses_max = 77",
        "cors_origin = [\"https://a.example\", \"http://localhost:3000\"]",
    ] {
        assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
    }
    let bad = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["config", "--cors-origin", "https://a.example/path"])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("cors_origin"));
}

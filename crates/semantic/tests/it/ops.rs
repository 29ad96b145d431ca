//! Operating the server: probes, metrics, request ids, graceful shutdown with streams in flight,
//! the loading state, timeouts, and the second shutdown signal.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::tempdir::TempDir;
use crate::harness::{model_path, Server};

/// A chat request that runs for a long time: 3000 tokens, SmolLM2's end tokens (0, 1, 2) banned.
fn endless_chat(stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "Write a very long story."}], "max_tokens": 3000,
           "temperature": 0, "stream": stream, "logit_bias": {"0": -100, "1": -100, "2": -100}})
}

/// `/health`'s figures, once `done` holds for them (polled 10 ms apart, for up to 60 s).
fn health_until(server: &Server, what: &str, done: impl Fn(&Value) -> bool) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let health = server.request("GET", "/health", None).json();
        if done(&health) {
            return health;
        }
        assert!(std::time::Instant::now() < deadline, "{what}: still {health}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A metric from `/metrics` by its full series name, once it reads `want` (polled 10 ms apart,
/// for up to 60 s), else its last value.
fn metric_becomes(server: &Server, series: &str, want: u64) -> Option<u64> {
    let mut last = None;
    for _ in 0..6000 {
        let text = server.request("GET", "/metrics", None).body;
        last = text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok());
        if last == Some(want) {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    last
}

/// Sends a request on its own thread and reads whatever comes back until the server closes the
/// connection (it may exit mid-response).
fn send_raw(addr: SocketAddr, body: &Value) -> std::thread::JoinHandle<Vec<u8>> {
    let body = body.to_string();
    std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let head = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        stream.write_all(head.as_bytes()).unwrap();
        stream.write_all(body.as_bytes()).unwrap();
        let mut out = Vec::new();
        let _ = stream.read_to_end(&mut out);
        out
    })
}

#[test]
fn probes_metrics_and_request_ids() {
    let server = Server::start(&[]);
    for path in ["/health", "/health/live", "/health/startup", "/health/ready"] {
        assert_eq!(server.request("GET", path, None).status, 200, "{path}");
    }
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4});
    let r = server.request_with(
        "POST",
        "/v1/chat/completions",
        &[("content-type", "application/json"), ("x-request-id", "my-request-42")],
        Some(&body.to_string()),
    );
    assert_eq!(r.header("x-request-id"), Some("my-request-42"));
    assert!(server.request("GET", "/nope", None).header("x-request-id").unwrap().starts_with("req_"));
    let metrics = server.request("GET", "/metrics", None);
    assert_eq!(metrics.status, 200);
    let families: Vec<&str> = metrics.body.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
    assert!(families.len() >= 15, "{families:?}");
    for name in semantic_api::metrics::FAMILIES.iter().map(|f| f.name) {
        assert!(metrics.body.contains(&format!("# TYPE {name} ")), "{name} missing");
    }
    assert!(metrics.body.contains("semantic_http_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 1"));
    assert!(metrics.body.contains("route=\"unmatched\""), "raw paths never become labels");
    assert!(!metrics.body.contains("/nope"));
}

#[test]
fn sigterm_lets_streams_in_flight_finish_and_exits_zero() {
    let server = Server::start(&[]);
    let addr = server.addr;
    let body = json!({"messages": [{"role": "user", "content": "Tell me a long story."}], "max_tokens": 48,
                      "temperature": 0, "stream": true})
    .to_string();
    let (tx, rx) = std::sync::mpsc::channel();
    let streams: Vec<_> = (0..8)
        .map(|_| {
            let body = body.clone();
            let tx = tx.clone();
            std::thread::spawn(move || {
                let _ = tx.send(());
                crate::harness::http(
                    addr,
                    "POST",
                    "/v1/chat/completions",
                    &[("content-type", "application/json")],
                    Some(&body),
                )
            })
        })
        .collect();
    for _ in 0..8 {
        rx.recv().unwrap();
    }
    // Wait until all eight are admitted before signalling (bounded polling of the server's own state).
    let mut in_flight = 0;
    for _ in 0..5000 {
        let health = server.request("GET", "/health", None).json();
        in_flight = health["running"].as_u64().unwrap() + health["queued"].as_u64().unwrap();
        if in_flight >= 8 {
            break;
        }
    }
    assert_eq!(in_flight, 8);
    let signalled = std::time::Instant::now();
    server.signal_term();
    for stream in streams {
        let r = stream.join().unwrap();
        assert_eq!(r.status, 200);
        let data = r.sse_data();
        assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{}", r.body);
        assert!(data.len() > 3, "the stream carried tokens: {}", r.body);
    }
    assert!(server.wait().success());
    eprintln!("shutdown with 8 streams in flight took {:.2} s", signalled.elapsed().as_secs_f64());
}

/// Every `semantic_*` metric named in the alert rules and the dashboard is one /metrics exports.
#[test]
fn alert_rules_and_dashboard_use_only_exported_metrics() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../ops");
    let exported: Vec<&str> = semantic_api::metrics::FAMILIES.iter().map(|f| f.name).collect();
    for file in ["alerts.yml", "grafana-dashboard.json"] {
        let text = std::fs::read_to_string(root.join(file)).unwrap();
        let mut used = 0;
        for (i, _) in text.match_indices("semantic_") {
            let name: String = text[i..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name.as_str(), |n, s| n.strip_suffix(s).unwrap_or(n));
            if base == "semantic_" || base.starts_with("semantic_overview") {
                continue;
            }
            assert!(exported.contains(&base), "{file} uses {name}, which /metrics does not export");
            used += 1;
        }
        assert!(used >= 7, "{file} uses only {used} metrics");
    }
    serde_json::from_str::<serde_json::Value>(&std::fs::read_to_string(root.join("grafana-dashboard.json")).unwrap())
        .expect("the dashboard is valid JSON");
}

#[test]
fn while_the_model_loads_only_liveness_is_ok_and_a_signal_stops_the_server() {
    // A FIFO as the model: loading blocks opening it (no writer ever comes), so the server stays
    // in its loading state for as long as the test needs.
    let dir = TempDir::new("loading");
    let fifo = dir.path().join("model.gguf");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("run mkfifo");
    assert!(made.success());
    let fifo = fifo.to_str().unwrap().to_owned();
    let mut server = Server::launch(TempDir::new("loading-cache"), &["--model", &fifo]);
    assert_eq!(server.request("GET", "/health/live", None).status, 200);
    for path in ["/health/startup", "/health/ready"] {
        let probe = server.request("GET", path, None);
        assert_eq!(probe.status, 503, "{path}");
        assert_eq!(probe.json()["reason"], "loading", "{path}");
    }
    let chat = server.post_json("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!(chat.status, 503);
    assert_eq!(chat.json()["error"]["code"], "loading");
    assert!(chat.header("retry-after").is_some());
    let messages =
        server.post_json("/v1/messages", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}));
    assert_eq!(messages.status, 503);
    assert_eq!(messages.json()["error"]["type"], "overloaded_error");
    server.signal_term();
    let status = server.wait_for_exit(Duration::from_secs(30));
    assert!(status.success(), "{status:?}: {}", server.stderr());
    assert!(server.stderr().contains("while the model was loading"), "{}", server.stderr());
}

#[test]
fn a_model_that_fails_to_load_stops_the_server_with_the_error() {
    let dir = TempDir::new("no-model");
    let missing = dir.path().join("missing.gguf");
    let mut server = Server::launch(TempDir::new("no-model-cache"), &["--model", missing.to_str().unwrap()]);
    let status = server.wait_for_exit(Duration::from_secs(60));
    assert!(!status.success());
    assert!(server.stderr().contains("missing.gguf"), "{}", server.stderr());
}

#[test]
fn timeouts_cut_a_queued_stream_and_a_long_request_and_cancel_them() {
    // One sequence at a time: a long request holds it, so a stream behind it gets no token.
    let server =
        Server::start(&["--max-running", "1", "--request-timeout-secs", "3", "--stream-idle-timeout-secs", "1"]);
    let addr = server.addr;
    let long = std::thread::spawn(move || {
        let body = endless_chat(false).to_string();
        crate::harness::http(addr, "POST", "/v1/chat/completions", &[("content-type", "application/json")], Some(&body))
    });
    health_until(&server, "the long request runs", |h| h["running"] == 1);

    let queued = server.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": true}),
    );
    assert_eq!(queued.status, 200);
    let data = queued.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{}", queued.body);
    let error: Value = serde_json::from_str(&data[data.len() - 2]).unwrap_or_default();
    assert_eq!(error["error"]["code"], "stream_idle_timeout", "{}", queued.body);
    assert!(!queued.body.contains("finish_reason\":\""), "no token came: {}", queued.body);

    let long = long.join().unwrap();
    assert_eq!(long.status, 504, "{}", long.body);
    assert_eq!(long.json()["error"]["code"], "request_timeout", "{}", long.body);
    assert_eq!(
        metric_becomes(&server, "semantic_requests_finished_total{reason=\"cancelled\"}", 1),
        Some(1),
        "the timed-out request was cancelled, not run to its 3000 tokens"
    );
    let idle = health_until(&server, "everything is freed", |h| h["running"] == 0 && h["queued"] == 0);
    assert_eq!(idle["running"], 0);
}

#[test]
fn a_second_sigterm_exits_at_once_and_leaves_a_verifiable_cache() {
    let mut server = Server::start(&["--shutdown-grace-secs", "300"]);
    let first = server.post_json(
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4, "agent_id": "keeper"}),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    let evicted = server.request("POST", "/v1/agents/keeper/evict", None);
    assert_eq!(evicted.status, 200, "{}", evicted.body);

    let in_flight = send_raw(server.addr, &endless_chat(true));
    health_until(&server, "the long request runs", |h| h["running"] == 1);
    server.signal_term();
    // Wait for the first signal to take effect, so the second is not merged into it.
    health_until(&server, "draining", |h| h["status"] == "draining");
    server.signal_term();
    let status = server.wait_for_exit(Duration::from_secs(30));
    assert_eq!(status.code(), Some(130), "{status:?}: {}", server.stderr());
    assert!(server.stderr().contains("second shutdown signal"), "{}", server.stderr());
    let cut = String::from_utf8_lossy(&in_flight.join().unwrap()).into_owned();
    assert!(!cut.contains("[DONE]"), "the stream was cut, not finished: {cut}");

    let verify = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["cache", "verify", "--cache-dir"])
        .arg(server.cache_dir.path())
        .arg("--model")
        .arg(model_path())
        .env("SEMANTIC_LOG", "warn")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&verify.stdout);
    assert!(verify.status.success(), "{stdout}{}", String::from_utf8_lossy(&verify.stderr));
    assert!(stdout.contains("1 file(s) checked") && stdout.contains("1 ok, 0 bad"), "{stdout}");
}

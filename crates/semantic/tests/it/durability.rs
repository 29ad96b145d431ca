//! Durability under load (issue 19): a finished turn reaches disk within `--persist-within-secs`
//! even while another request keeps the server from ever going idle, so a `kill -9` then loses
//! nothing of it. Before, dirty agents were written only after a second of idleness: 12 kills
//! during a burst of 6 agents left no agent file at all.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Server;

fn metric(server: &Server, series: &str) -> Option<f64> {
    let text = server.request("GET", "/metrics", None).body;
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn a_turn_finished_under_load_survives_a_kill_9() {
    let server = Server::start(&["--persist-within-secs", "1"]);
    // B: one long streamed generation that keeps a request running throughout. SmolLM2's end
    // tokens (0 `<|endoftext|>`, 2 `<|im_end|>`) are banned so it cannot end early (it did once in CI).
    let long = json!({
        "messages": [{"role": "user", "content": "Count from 1 to 2000, separated by commas."}],
        "max_tokens": 3000, "temperature": 0, "stream": true, "agent_id": "busy-bee",
        "logit_bias": {"0": -100, "2": -100}
    })
    .to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        long.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(long.as_bytes()).unwrap();
    // Its first bytes: B is admitted and running.
    let mut first = [0u8; 64];
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    assert!(stream.read(&mut first).unwrap() > 0);

    // A: a short turn while B runs.
    let messages = json!([{"role": "user", "content": "Name three colours."}]);
    let body = json!({"messages": messages, "max_tokens": 8, "temperature": 0, "agent_id": "alice"});
    let turn1 = server.post_json("/v1/chat/completions", &body);
    assert_eq!(turn1.status, 200, "{}", turn1.body);
    let turn1: Value = turn1.json();
    let prompt1 = turn1["usage"]["prompt_tokens"].as_u64().unwrap();

    // Within the bound (1 s, plus a step), A is written although the server never went idle.
    let deadline = Instant::now() + Duration::from_secs(60);
    while metric(&server, "semantic_persist_total").unwrap_or(0.0) < 1.0 {
        assert!(Instant::now() < deadline, "alice's turn was not written while busy");
        std::thread::sleep(Duration::from_millis(20));
    }
    let health = server.request("GET", "/health", None).json();
    assert!(health["running"].as_u64().unwrap() >= 1, "B still runs: {health}");
    assert!(metric(&server, "semantic_persist_busy_total").unwrap() >= 1.0, "written by the busy path");
    let stall = metric(&server, "semantic_persist_busy_stall_seconds_max").unwrap();
    eprintln!("worst step stall from a busy persist: {:.1} ms", stall * 1e3);

    // A crash: nothing is flushed.
    let dir = server.kill_keeping_dir();
    drop(stream);
    let server = Server::start_in(dir, &[]);
    let reply = turn1["choices"][0]["message"]["content"].as_str().unwrap();
    let messages = json!([
        {"role": "user", "content": "Name three colours."},
        {"role": "assistant", "content": reply},
        {"role": "user", "content": "And three animals?"}
    ]);
    let body = json!({"messages": messages, "max_tokens": 8, "temperature": 0, "agent_id": "alice"});
    let turn2: Value = server.post_json("/v1/chat/completions", &body).json();
    let details = &turn2["usage"]["prompt_tokens_details"];
    assert_eq!(details["cache_source"], "disk", "{turn2}");
    assert!(details["cached_tokens"].as_u64().unwrap() >= prompt1, "{turn2}");
}

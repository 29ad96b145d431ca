//! The client APIs against the real model: cancellation on disconnect, Anthropic streaming and
//! usage, legacy completions, `/openapi.json`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::harness::Server;

/// `running` from `/health` once it reads `want` (polled for up to 10 s), else its last value.
fn running_becomes(server: &Server, want: u64) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let running = server.request("GET", "/health", None).json()["running"].as_u64().unwrap_or(u64::MAX);
        if running == want || Instant::now() > deadline {
            return running;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_client_that_disconnects_mid_stream_frees_its_sequence() {
    let server = Server::start(&[]);
    let body = json!({"messages": [{"role": "user", "content": "Count from one to a thousand."}],
                      "max_tokens": 3000, "stream": true, "temperature": 1, "stop": []})
    .to_string();
    let mut stream = TcpStream::connect(server.addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
    let head = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body.as_bytes()).unwrap();
    let mut seen = String::new();
    let mut buf = [0u8; 4096];
    while seen.matches("\"content\":\"").count() < 4 {
        let n = stream.read(&mut buf).unwrap();
        assert!(n > 0, "the stream ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buf[..n]));
    }
    assert_eq!(running_becomes(&server, 1), 1, "the request is generating");
    drop(stream);

    let follow_up = server
        .post_json("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4}));
    assert_eq!(follow_up.status, 200, "{}", follow_up.body);
    assert_eq!(running_becomes(&server, 0), 0, "the abandoned request was cancelled and freed");
}

#[test]
fn anthropic_messages_stream_in_order_and_match_the_json_reply() {
    let server = Server::start(&[]);
    let request = |stream: bool| {
        json!({"model": "default", "max_tokens": 24, "temperature": 0, "stream": stream, "system": "Be brief.",
               "messages": [{"role": "user", "content": "What is the sun?"}]})
    };
    let plain = server.request_with(
        "POST",
        "/v1/messages",
        &[("content-type", "application/json"), ("anthropic-version", "2023-06-01"), ("x-api-key", "x")],
        Some(&request(false).to_string()),
    );
    assert_eq!(plain.status, 200, "{}", plain.body);
    let plain = plain.json();
    let text = plain["content"][0]["text"].as_str().unwrap_or_default().to_owned();
    assert!(!text.is_empty());
    let count = server.post_json("/v1/messages/count_tokens", &request(false)).json()["input_tokens"].as_u64();
    let usage = &plain["usage"];
    let sum = ["input_tokens", "cache_read_input_tokens", "cache_creation_input_tokens"]
        .iter()
        .map(|k| usage[*k].as_u64().unwrap_or(0))
        .sum::<u64>();
    assert_eq!(Some(sum), count, "{usage}");

    let streamed = server.post_json("/v1/messages", &request(true));
    let names: Vec<&str> = streamed.body.lines().filter_map(|l| l.strip_prefix("event: ")).collect();
    assert_eq!(&names[..3], ["message_start", "content_block_start", "ping"]);
    assert_eq!(&names[names.len() - 3..], ["content_block_stop", "message_delta", "message_stop"]);
    let deltas: String = streamed
        .sse_data()
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
        .collect();
    assert_eq!(deltas, text);
}

#[test]
fn legacy_completions_and_the_openapi_document() {
    let server = Server::start(&[]);
    let reply = server.post_json(
        "/v1/completions",
        &json!({"prompt": "The capital of France is", "max_tokens": 6, "temperature": 0}),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = reply.json();
    assert_eq!(reply["object"], "text_completion");
    assert!(reply["usage"]["completion_tokens"].as_u64().is_some_and(|n| (1..=6).contains(&n)));
    let doc = server.request("GET", "/openapi.json", None);
    assert_eq!(doc.status, 200);
    let doc = doc.json();
    for path in ["/v1/chat/completions", "/v1/completions", "/v1/messages", "/v1/messages/count_tokens", "/v1/models"] {
        assert!(doc["paths"][path].is_object(), "{path}");
    }
}

#[test]
fn a_request_over_one_agents_context_is_a_clear_400_and_agents_do_not_share_cells() {
    // Each resident agent has a stream of 512 cells: a longer request is refused in the route's
    // own shape, never an abort, and two agents near the limit run side by side.
    let server = Server::start(&["--agent-ctx", "512", "--resident-agents", "2"]);
    let long = "word ".repeat(700);
    let body = json!({"messages": [{"role": "user", "content": long}], "max_tokens": 8});
    let reply = server.post_json("/v1/chat/completions", &body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["error"]["code"], "context_length_exceeded");
    let body = json!({"model": "default", "max_tokens": 8, "messages": [{"role": "user", "content": long}]});
    let reply = server.post_json("/v1/messages", &body);
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(reply.json()["type"], "error");
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    let near = "word ".repeat(400);
    let answers: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = ["a", "b"]
            .map(|agent| {
                let server = &server;
                let near = &near;
                scope.spawn(move || {
                    let body = json!({"messages": [{"role": "user", "content": near}], "max_tokens": 16,
                        "temperature": 0, "agent_id": agent});
                    server.post_json("/v1/chat/completions", &body).status
                })
            })
            .into_iter()
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(answers, vec![200, 200]);
    assert_eq!(server.request("GET", "/health", None).status, 200);
}

//! Agent memory end to end: reuse across turns, across a restart, and never across API keys.

use serde_json::{json, Value};

use crate::harness::Server;

/// About 2,000 tokens of English prose.
fn long_text() -> String {
    let text = std::fs::read_to_string("/usr/share/common-licenses/GPL-3").expect("Debian ships the GPL text");
    text.chars().take(8000).collect()
}

fn chat(server: &Server, messages: &Value, agent: Option<&str>, key: Option<&str>) -> (u16, Value) {
    let mut body = json!({"messages": messages, "max_tokens": 24, "temperature": 0});
    if let Some(a) = agent {
        body["agent_id"] = json!(a);
    }
    let auth = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![("content-type", "application/json")];
    if let Some(a) = &auth {
        headers.push(("authorization", a.as_str()));
    }
    let r = server.request_with("POST", "/v1/chat/completions", &headers, Some(&body.to_string()));
    let json = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, json)
}

fn cached(response: &Value) -> u64 {
    response["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap()
}

#[test]
fn an_agent_comes_back_after_a_restart_paying_only_for_new_tokens() {
    let server = Server::start(&[]);
    let mut messages = json!([
        {"role": "system", "content": format!("You summarise documents.\n\n{}", long_text())},
        {"role": "user", "content": "What is this document about?"}
    ]);
    let (status, first) = chat(&server, &messages, Some("alice"), None);
    assert_eq!(status, 200, "{first}");
    let first_prompt = first["usage"]["prompt_tokens"].as_u64().unwrap();
    assert!(first_prompt > 1500, "prompt has {first_prompt} tokens");
    assert_eq!(cached(&first), 0);
    let reply = first["choices"][0]["message"]["content"].as_str().unwrap().to_string();

    let (exit, dir) = server.terminate_keeping_dir();
    assert!(exit.success());
    let server = Server::start_in(dir, &[]);
    let agents = server.request("GET", "/v1/agents", None).json();
    assert_eq!(agents["data"][0]["id"], "alice");
    assert_eq!(agents["data"][0]["tier"], "cold");

    messages.as_array_mut().unwrap().push(json!({"role": "assistant", "content": reply}));
    messages.as_array_mut().unwrap().push(json!({"role": "user", "content": "Give one more detail."}));
    let (status, second) = chat(&server, &messages, Some("alice"), None);
    assert_eq!(status, 200, "{second}");
    let prompt = second["usage"]["prompt_tokens"].as_u64().unwrap();
    let reused = cached(&second);
    // Everything up to the stored turn is reused: the first prompt at least, and at most all but the
    // new tail (re-tokenizing the reply may differ at its end, which falls back to the common prefix).
    assert!(reused >= first_prompt, "reused {reused} of {prompt}, first prompt {first_prompt}");
    assert!(reused < prompt, "at least one token is always computed");
    assert!(prompt - reused < 40, "only the new turn is computed: {} tokens", prompt - reused);
    let metrics = server.request("GET", "/metrics", None).body;
    assert!(metrics.contains(&format!("semantic_reused_prompt_tokens_total{{source=\"disk\"}} {reused}")), "{metrics}");
}

#[test]
fn agents_are_private_to_their_api_key() {
    let server = Server::start(&["--api-key", "key-alpha-123", "--api-key", "key-beta-456"]);
    let messages = json!([{"role": "user", "content": "Remember: the password is swordfish."}]);
    let (status, _) = chat(&server, &messages, Some("shared-name"), Some("key-alpha-123"));
    assert_eq!(status, 200);
    let list = |key: &str| {
        let auth = format!("Bearer {key}");
        server.request_with("GET", "/v1/agents", &[("authorization", &auth)], None).json()["data"]
            .as_array()
            .unwrap()
            .len()
    };
    assert_eq!(list("key-alpha-123"), 1);
    assert_eq!(list("key-beta-456"), 0);
    let r = server.request_with("GET", "/v1/agents/shared-name", &[("x-api-key", "key-beta-456")], None);
    assert_eq!(r.status, 404);
    // Same agent id, other key: nothing is reused, and alpha's agent is untouched.
    let (status, other) = chat(&server, &messages, Some("shared-name"), Some("key-beta-456"));
    assert_eq!(status, 200);
    assert_eq!(cached(&other), 0);
    let (_, again) = chat(&server, &messages, Some("shared-name"), Some("key-alpha-123"));
    assert!(cached(&again) > 0);
    // No key or a wrong key: 401 in the OpenAI shape, with a request id.
    let (status, body) = chat(&server, &messages, None, None);
    assert_eq!(status, 401);
    assert_eq!(body["error"]["type"], "authentication_error");
    let r = server.request_with("GET", "/v1/agents", &[("authorization", "Bearer wrong-key-000")], None);
    assert_eq!(r.status, 401);
    assert!(r.header("x-request-id").is_some());
    // Health stays open.
    assert_eq!(server.request("GET", "/health/live", None).status, 200);
}

#[test]
fn agents_api_evicts_pins_and_deletes() {
    let server = Server::start(&["--admin-key", "admin-key-789"]);
    let messages = json!([{"role": "user", "content": "Hello there."}]);
    assert_eq!(chat(&server, &messages, Some("bob"), None).0, 200);
    let agent = server.request("GET", "/v1/agents/bob", None).json();
    assert_eq!(agent["tier"], "hot");
    let evicted = server.request("POST", "/v1/agents/bob/evict", None);
    assert_eq!(evicted.status, 200, "{}", evicted.body);
    assert_eq!(evicted.json()["tier"], "cold");
    // Identical re-send after eviction: served from disk, one token computed.
    let (_, again) = chat(&server, &messages, Some("bob"), None);
    assert_eq!(cached(&again), again["usage"]["prompt_tokens"].as_u64().unwrap() - 1);
    assert_eq!(server.request("POST", "/v1/agents/bob/pin", None).json()["pinned"], true);
    assert_eq!(server.request("POST", "/v1/agents/bob/unpin", None).json()["pinned"], false);
    assert_eq!(server.request("GET", "/v1/agents/bad%20id", None).status, 400);
    assert_eq!(server.request("DELETE", "/v1/agents/bob", None).status, 200);
    assert_eq!(server.request("GET", "/v1/agents/bob", None).status, 404);
    // Admin API needs the admin key.
    assert_eq!(server.request("GET", "/admin/status", None).status, 401);
    let status = server.request_with("GET", "/admin/status", &[("x-admin-key", "admin-key-789")], None);
    assert_eq!(status.status, 200);
    assert!(status.json()["scheduler"]["kv_capacity"].as_u64().unwrap() > 0);
    let flushed = server.request_with("POST", "/admin/flush", &[("x-admin-key", "admin-key-789")], None);
    assert_eq!(flushed.json()["flushed"], true);
}

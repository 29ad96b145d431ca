//! OpenAI-compatible chat completions against the real model.

use serde_json::json;

use crate::harness::Server;

#[test]
fn streamed_deltas_equal_the_non_streamed_answer() {
    let server = Server::start(&[]);
    let request = |stream: bool| {
        json!({"model": "default", "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is the sun?"}],
               "max_tokens": 32, "temperature": 0, "stream": stream, "stream_options": {"include_usage": true}})
    };
    let plain = server.post_json("/v1/chat/completions", &request(false));
    assert_eq!(plain.status, 200, "{}", plain.body);
    let plain = plain.json();
    let text = plain["choices"][0]["message"]["content"].as_str().unwrap().to_string();
    assert_eq!(plain["object"], "chat.completion");
    assert!(plain["usage"]["prompt_tokens"].as_u64().unwrap() > 10);

    let streamed = server.post_json("/v1/chat/completions", &request(true));
    assert_eq!(streamed.status, 200);
    assert!(streamed.header("content-type").unwrap().starts_with("text/event-stream"));
    let data = streamed.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<serde_json::Value> =
        data[..data.len() - 1].iter().map(|d| serde_json::from_str(d).unwrap()).collect();
    let joined: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(str::to_string)).collect();
    assert_eq!(joined, text);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["completion_tokens"], plain["usage"]["completion_tokens"]);
}

#[test]
fn bad_requests_get_openai_errors_and_the_server_stays_up() {
    let server = Server::start(&[]);
    let cases = [
        (json!({"messages": []}), "messages"),
        (json!({"messages": [{"role": "wizard", "content": "hi"}]}), "messages[0].role"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "n": 2}), "n"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "temperature": -1}), "temperature"),
        (json!({"messages": [{"role": "user", "content": "hi"}], "max_tokens": 100000}), "messages"),
    ];
    for (body, param) in cases {
        let r = server.post_json("/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.body);
        let err = r.json();
        assert_eq!(err["error"]["type"], "invalid_request_error", "{body}");
        assert_eq!(err["error"]["param"], param, "{body}");
    }
    let malformed =
        server.request_with("POST", "/v1/chat/completions", &[("content-type", "application/json")], Some("{not json"));
    assert_eq!(malformed.status, 400);
    assert!(malformed.json()["error"]["message"].is_string());
    assert_eq!(server.request("GET", "/health", None).status, 200);
}

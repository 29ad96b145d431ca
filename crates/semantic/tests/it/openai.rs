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

#[test]
fn json_schema_replies_validate_and_logprobs_match_the_choice() {
    let server = Server::start(&[]);
    let schema = json!({"type": "object", "additionalProperties": false, "required": ["name", "age", "pets"],
        "properties": {"name": {"type": "string", "maxLength": 12}, "age": {"type": "integer", "minimum": 0, "maximum": 120},
                       "pets": {"type": "array", "items": {"enum": ["cat", "dog"]}, "maxItems": 3}}});
    let body = json!({"messages": [{"role": "user", "content": "Describe a person as JSON."}], "max_tokens": 120,
        "temperature": 0, "logprobs": true, "top_logprobs": 3,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "schema": schema, "strict": true}}});
    let r = server.post_json("/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = r.json();
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "stop", "{reply}");
    let content = choice["message"]["content"].as_str().unwrap();
    let value: serde_json::Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}"));
    assert!(value["name"].as_str().is_some_and(|n| n.chars().count() <= 12), "{content}");
    assert!(value["age"].as_u64().is_some_and(|a| a <= 120), "{content}");
    assert!(value["pets"].as_array().is_some_and(|p| p.len() <= 3), "{content}");
    // One entry per token, whose bytes spell the content; greedy picks the most likely allowed token, so each
    // logprob is at most its best alternative's.
    let entries = choice["logprobs"]["content"].as_array().unwrap();
    let bytes: Vec<u8> =
        entries.iter().flat_map(|e| e["bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8)).collect();
    assert_eq!(String::from_utf8_lossy(&bytes), content);
    for e in entries {
        let top = e["top_logprobs"].as_array().unwrap();
        assert_eq!(top.len(), 3);
        assert!(e["logprob"].as_f64().unwrap() <= top[0]["logprob"].as_f64().unwrap() + 1e-6);
    }

    let any = json!({"messages": [{"role": "user", "content": "Give me JSON about the sea."}], "max_tokens": 200,
        "temperature": 0.8, "seed": 3, "response_format": {"type": "json_object"}});
    let r = server.post_json("/v1/chat/completions", &any);
    assert_eq!(r.status, 200, "{}", r.body);
    let reply = r.json();
    if reply["choices"][0]["finish_reason"] == "stop" {
        let content = reply["choices"][0]["message"]["content"].as_str().unwrap();
        let v: serde_json::Value = serde_json::from_str(content).unwrap_or_else(|e| panic!("{content}: {e}"));
        assert!(v.is_object());
    }

    let text = json!({"prompt": "The capital of France is", "max_tokens": 5, "temperature": 0, "logprobs": 2});
    let r = server.post_json("/v1/completions", &text);
    assert_eq!(r.status, 200, "{}", r.body);
    let lp = &r.json()["choices"][0]["logprobs"];
    assert_eq!(lp["tokens"].as_array().unwrap().len(), lp["token_logprobs"].as_array().unwrap().len());
    assert_eq!(lp["text_offset"][0], 0);
    assert!(lp["top_logprobs"][0].as_object().unwrap().len() <= 2);

    let bad = json!({"messages": [{"role": "user", "content": "hi"}], "response_format": {"type": "json_schema",
        "json_schema": {"name": "s", "schema": {"type": "string", "format": "email"}}}});
    let r = server.post_json("/v1/chat/completions", &bad);
    assert_eq!(r.status, 400, "{}", r.body);
    let err = r.json();
    assert_eq!(err["error"]["param"], "response_format");
    assert!(err["error"]["message"].as_str().unwrap().contains("format"), "{err}");
}

#[test]
fn a_forced_tool_choice_yields_a_call_with_schema_valid_arguments() {
    let server = Server::start(&[]);
    let params = json!({"type": "object", "additionalProperties": false, "required": ["city", "unit", "days"],
        "properties": {"city": {"type": "string", "maxLength": 20}, "unit": {"enum": ["celsius", "fahrenheit"]},
                       "days": {"type": "integer", "minimum": 1, "maximum": 7}}});
    let tools = json!([{"type": "function", "function": {"name": "get_forecast", "description": "Weather forecast",
                        "parameters": params}},
                       {"type": "function", "function": {"name": "tell_joke", "parameters": {"type": "object"}}}]);
    let valid = |arguments: &str| {
        let v: serde_json::Value = serde_json::from_str(arguments).unwrap_or_else(|e| panic!("{arguments}: {e}"));
        let mut keys: Vec<&String> = v.as_object().map(|o| o.keys().collect()).unwrap_or_default();
        keys.sort();
        assert_eq!(keys, ["city", "days", "unit"], "{arguments}");
        assert!(v["city"].as_str().is_some_and(|c| c.chars().count() <= 20), "{arguments}");
        assert!(v["unit"] == "celsius" || v["unit"] == "fahrenheit", "{arguments}");
        assert!(v["days"].as_u64().is_some_and(|d| (1..=7).contains(&d)), "{arguments}");
    };
    for (temperature, stream) in [(0.0, false), (0.9, true)] {
        let body = json!({"messages": [{"role": "user", "content": "Tell me something nice."}], "tools": tools,
            "tool_choice": {"type": "function", "function": {"name": "get_forecast"}}, "max_tokens": 120,
            "temperature": temperature, "seed": 5, "stream": stream});
        let r = server.post_json("/v1/chat/completions", &body);
        assert_eq!(r.status, 200, "{}", r.body);
        let (name, arguments) = if stream {
            let data = r.sse_data();
            let chunks: Vec<serde_json::Value> =
                data.iter().filter(|d| *d != "[DONE]").map(|d| serde_json::from_str(d).unwrap()).collect();
            let calls: Vec<&serde_json::Value> =
                chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls")).collect();
            let name = calls.first().and_then(|c| c[0]["function"]["name"].as_str()).unwrap_or_default().to_owned();
            (name, calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect::<String>())
        } else {
            let reply = r.json();
            assert_eq!(reply["choices"][0]["finish_reason"], "tool_calls", "{reply}");
            let f = &reply["choices"][0]["message"]["tool_calls"][0]["function"];
            (f["name"].as_str().unwrap_or_default().to_owned(), f["arguments"].as_str().unwrap_or_default().to_owned())
        };
        assert_eq!(name, "get_forecast", "{}", r.body);
        valid(&arguments);
    }
}

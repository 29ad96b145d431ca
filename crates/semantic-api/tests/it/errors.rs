//! Every bad input gets a 4xx in its API's own error shape, naming the field at fault.

use axum::body::Body;
use serde_json::{json, Value};

use crate::harness::App;

const CHAT: &str = "/v1/chat/completions";
const TEXT: &str = "/v1/completions";
const MESSAGES: &str = "/v1/messages";
const COUNT: &str = "/v1/messages/count_tokens";

/// One bad request and what must come back.
struct Case {
    method: &'static str,
    path: &'static str,
    headers: Vec<(&'static str, String)>,
    body: Vec<u8>,
    status: u16,
    /// OpenAI `error.type` or Anthropic `error.type`.
    kind: &'static str,
    /// OpenAI `error.param` (Anthropic errors have none).
    param: Option<&'static str>,
}

fn json_case(path: &'static str, body: Value, status: u16, kind: &'static str, param: Option<&'static str>) -> Case {
    raw_case(path, body.to_string().into_bytes(), status, kind, param)
}

fn raw_case(path: &'static str, body: Vec<u8>, status: u16, kind: &'static str, param: Option<&'static str>) -> Case {
    Case { method: "POST", path, headers: vec![("content-type", "application/json".into())], body, status, kind, param }
}

fn with_header(mut case: Case, name: &'static str, value: &str) -> Case {
    case.headers.retain(|(k, _)| *k != name);
    case.headers.push((name, value.to_owned()));
    case
}

fn method(mut case: Case, method: &'static str) -> Case {
    case.method = method;
    case
}

/// A valid chat body with `extra` merged in.
fn chat(extra: Value) -> Value {
    merge(json!({"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}), extra)
}

fn text(extra: Value) -> Value {
    merge(json!({"model": "default", "prompt": "Once upon", "max_tokens": 4}), extra)
}

fn anthropic(extra: Value) -> Value {
    merge(json!({"model": "default", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4}), extra)
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(base), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                base.remove(&k);
            } else {
                base.insert(k, v);
            }
        }
    }
    base
}

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}})
}

fn cases() -> Vec<Case> {
    let bad = "invalid_request_error";
    let user = |content: Value| json!([{"role": "user", "content": content}]);
    let many_stops: Vec<String> = (0..17).map(|i| format!("s{i}")).collect();
    vec![
        // OpenAI chat: the body itself.
        raw_case(CHAT, b"{".to_vec(), 400, bad, None),
        raw_case(CHAT, b"".to_vec(), 400, bad, None),
        raw_case(CHAT, b"[]".to_vec(), 400, bad, None),
        raw_case(CHAT, b"{\"messages\": [{\"role\": \"user\", \"content\": \"\xff\xfe\"}]}".to_vec(), 400, bad, None),
        raw_case(CHAT, b"{\"messages\": []} {}".to_vec(), 400, bad, None),
        with_header(
            raw_case(CHAT, chat(json!({})).to_string().into_bytes(), 415, bad, None),
            "content-type",
            "text/plain",
        ),
        // Messages.
        json_case(CHAT, json!({"model": "default"}), 400, bad, Some("messages")),
        json_case(CHAT, chat(json!({"messages": "hi"})), 400, bad, Some("messages")),
        json_case(CHAT, chat(json!({"messages": []})), 400, bad, Some("messages")),
        json_case(
            CHAT,
            chat(json!({"messages": [{"role": "wizard", "content": "hi"}]})),
            400,
            bad,
            Some("messages[0].role"),
        ),
        json_case(
            CHAT,
            chat(json!({"messages": [{"role": "function", "content": "hi"}]})),
            400,
            bad,
            Some("messages[0].role"),
        ),
        json_case(CHAT, chat(json!({"messages": [{"role": 5, "content": "hi"}]})), 400, bad, Some("messages[0].role")),
        json_case(CHAT, chat(json!({"messages": [{"content": "hi"}]})), 400, bad, Some("messages[0].role")),
        json_case(CHAT, chat(json!({"messages": user(json!(5))})), 400, bad, Some("messages[0].content")),
        json_case(CHAT, chat(json!({"messages": [{"role": "user"}]})), 400, bad, Some("messages[0].content")),
        json_case(
            CHAT,
            chat(json!({"messages": user(json!([{"type": "image_url", "image_url": {"url": "x"}}]))})),
            400,
            bad,
            Some("messages[0].content[0].type"),
        ),
        json_case(
            CHAT,
            chat(json!({"messages": [{"role": "user", "content": "hi"}, {"role": "tool", "content": "42"}]})),
            400,
            bad,
            Some("messages[1].tool_call_id"),
        ),
        json_case(
            CHAT,
            chat(json!({"messages": [{"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{not json"}}]}]})),
            400,
            bad,
            Some("messages[0].tool_calls[0].function.arguments"),
        ),
        // Numbers out of range or of the wrong type.
        json_case(CHAT, chat(json!({"temperature": -1})), 400, bad, Some("temperature")),
        json_case(CHAT, chat(json!({"temperature": 2.5})), 400, bad, Some("temperature")),
        json_case(CHAT, chat(json!({"temperature": "hot"})), 400, bad, Some("temperature")),
        json_case(CHAT, chat(json!({"top_p": 1.5})), 400, bad, Some("top_p")),
        json_case(CHAT, chat(json!({"min_p": 2})), 400, bad, Some("min_p")),
        json_case(CHAT, chat(json!({"max_tokens": 0})), 400, bad, Some("max_tokens")),
        json_case(CHAT, chat(json!({"max_tokens": -1})), 400, bad, Some("max_tokens")),
        json_case(CHAT, chat(json!({"max_completion_tokens": 0})), 400, bad, Some("max_completion_tokens")),
        json_case(CHAT, chat(json!({"presence_penalty": 3})), 400, bad, Some("presence_penalty")),
        json_case(CHAT, chat(json!({"frequency_penalty": -2.5})), 400, bad, Some("frequency_penalty")),
        json_case(CHAT, chat(json!({"repetition_penalty": 0})), 400, bad, Some("repetition_penalty")),
        json_case(CHAT, chat(json!({"logit_bias": {"abc": 1}})), 400, bad, Some("logit_bias")),
        json_case(CHAT, chat(json!({"logit_bias": {"65": 101}})), 400, bad, Some("logit_bias")),
        json_case(CHAT, chat(json!({"logit_bias": {"999999": 1}})), 400, bad, Some("logit_bias")),
        json_case(CHAT, chat(json!({"n": 2})), 400, bad, Some("n")),
        json_case(CHAT, chat(json!({"stream": "yes"})), 400, bad, Some("stream")),
        json_case(CHAT, chat(json!({"stop": many_stops})), 400, bad, Some("stop")),
        json_case(CHAT, chat(json!({"stop": ["ok", ""]})), 400, bad, Some("stop[1]")),
        json_case(CHAT, chat(json!({"logprobs": true, "top_logprobs": 21})), 400, bad, Some("top_logprobs")),
        json_case(CHAT, chat(json!({"top_logprobs": 2})), 400, bad, Some("top_logprobs")),
        json_case(TEXT, json!({"prompt": "hi", "logprobs": 21}), 400, bad, Some("logprobs")),
        // Structured outputs: an unsupported JSON Schema keyword or format is a 400, never ignored.
        json_case(CHAT, chat(json!({"response_format": {"type": "xml"}})), 400, bad, Some("response_format")),
        json_case(CHAT, chat(json!({"response_format": {"type": "json_schema"}})), 400, bad, Some("response_format")),
        json_case(
            CHAT,
            chat(json!({"response_format": {"type": "json_schema",
                "json_schema": {"name": "s", "schema": {"type": "string", "pattern": "^a+$"}}}})),
            400,
            bad,
            Some("response_format"),
        ),
        json_case(
            CHAT,
            chat(json!({"response_format": {"type": "json_schema", "json_schema": {"name": "s",
                "schema": {"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}}}}})),
            400,
            bad,
            Some("response_format"),
        ),
        json_case(
            TEXT,
            json!({"prompt": "hi", "response_format": {"type": "json_schema",
                "json_schema": {"name": "s", "schema": {"oneOf": [{"type": "string"}]}}}}),
            400,
            bad,
            Some("response_format"),
        ),
        // Model, agent identity, context.
        json_case(CHAT, chat(json!({"model": "gpt-4o"})), 404, bad, Some("model")),
        json_case(CHAT, chat(json!({"agent_id": "has space"})), 400, bad, Some("agent_id")),
        json_case(CHAT, chat(json!({"agent_id": ".."})), 400, bad, Some("agent_id")),
        json_case(CHAT, chat(json!({"session_id": "x".repeat(129)})), 400, bad, Some("session_id")),
        json_case(CHAT, chat(json!({"agent_id": 7})), 400, bad, Some("agent_id")),
        with_header(json_case(CHAT, chat(json!({})), 400, bad, Some("X-Agent-ID")), "x-agent-id", "a/b"),
        with_header(json_case(CHAT, chat(json!({})), 400, bad, Some("X-Session-ID")), "x-session-id", ""),
        json_case(CHAT, chat(json!({"max_tokens": 100_000})), 400, bad, Some("messages")),
        json_case(
            CHAT,
            chat(json!({"messages": user(json!("x".repeat(5000))), "max_tokens": null})),
            400,
            bad,
            Some("messages"),
        ),
        // Tools.
        json_case(CHAT, chat(json!({"tools": [{"type": "retrieval"}]})), 400, bad, Some("tools[0].function")),
        json_case(
            CHAT,
            chat(json!({"tools": [{"type": "code", "function": {"name": "f"}}]})),
            400,
            bad,
            Some("tools[0].type"),
        ),
        json_case(
            CHAT,
            chat(json!({"tools": [{"type": "function", "function": {"name": "bad name"}}]})),
            400,
            bad,
            Some("tools[0].function.name"),
        ),
        json_case(
            CHAT,
            chat(json!({"tools": [weather_tool(), weather_tool()]})),
            400,
            bad,
            Some("tools[1].function.name"),
        ),
        json_case(
            CHAT,
            chat(json!({"tools": [weather_tool()], "tool_choice": {"type": "function", "function": {"name": "nope"}}})),
            400,
            bad,
            Some("tool_choice"),
        ),
        json_case(
            CHAT,
            chat(json!({"tools": [weather_tool()], "tool_choice": "sometimes"})),
            400,
            bad,
            Some("tool_choice"),
        ),
        json_case(CHAT, chat(json!({"tool_choice": "required"})), 400, bad, Some("tool_choice")),
        // Routing.
        method(json_case(CHAT, json!({}), 405, bad, None), "GET"),
        json_case("/v1/nope", json!({}), 404, bad, None),
        // Legacy completions.
        json_case(TEXT, json!({"model": "default"}), 400, bad, Some("prompt")),
        json_case(TEXT, text(json!({"prompt": ["a", "b"]})), 400, bad, Some("prompt")),
        json_case(TEXT, text(json!({"prompt": [[1, 2]]})), 400, bad, Some("prompt")),
        json_case(TEXT, text(json!({"prompt": ""})), 400, bad, Some("prompt")),
        json_case(TEXT, text(json!({"echo": true})), 400, bad, Some("echo")),
        json_case(TEXT, text(json!({"suffix": "end"})), 400, bad, Some("suffix")),
        json_case(TEXT, text(json!({"max_tokens": 0})), 400, bad, Some("max_tokens")),
        json_case(TEXT, text(json!({"max_tokens": 5000})), 400, bad, Some("prompt")),
        json_case(TEXT, text(json!({"temperature": 3})), 400, bad, Some("temperature")),
        json_case(TEXT, text(json!({"model": "davinci"})), 404, bad, Some("model")),
        raw_case(TEXT, b"{\"prompt\": ".to_vec(), 400, bad, None),
        // Anthropic messages: the same failures, Anthropic's shape.
        raw_case(MESSAGES, b"{".to_vec(), 400, bad, None),
        raw_case(MESSAGES, b"{\"messages\": \"\xc3\x28\"}".to_vec(), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"max_tokens": null})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"max_tokens": 0})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"max_tokens": "many"})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"messages": []})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"temperature": 1.5})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"top_p": -0.1})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"messages": [{"role": "system", "content": "hi"}]})), 400, bad, None),
        json_case(
            MESSAGES,
            anthropic(json!({"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]})),
            400,
            bad,
            None,
        ),
        json_case(
            MESSAGES,
            anthropic(
                json!({"messages": [{"role": "user", "content": [{"type": "tool_use", "id": "t", "name": "f", "input": {}}]}]}),
            ),
            400,
            bad,
            None,
        ),
        json_case(MESSAGES, anthropic(json!({"stop_sequences": [""]})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"system": [{"type": "image"}]})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"tools": [{"name": "f"}]})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"tools": [{"type": "bash_20250124", "name": "bash"}]})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"tool_choice": {"type": "any"}})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"thinking": {"type": "enabled", "budget_tokens": 1024}})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"agent_id": "no/slashes"})), 400, bad, None),
        with_header(json_case(MESSAGES, anthropic(json!({})), 400, bad, None), "x-session-id", "white space"),
        json_case(MESSAGES, anthropic(json!({"max_tokens": 100_000})), 400, bad, None),
        json_case(MESSAGES, anthropic(json!({"model": "claude-sonnet-4-5"})), 404, "not_found_error", None),
        method(json_case(MESSAGES, json!({}), 405, bad, None), "GET"),
        json_case("/v1/messages/batches", json!({}), 404, "not_found_error", None),
        json_case(COUNT, json!({"model": "default"}), 400, bad, None),
        json_case(
            COUNT,
            json!({"model": "nope", "messages": [{"role": "user", "content": "hi"}]}),
            404,
            "not_found_error",
            None,
        ),
    ]
}

/// Sends one case and checks status and shape.
async fn check(app: &App, case: Case) {
    let headers: Vec<(&str, &str)> = case.headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let reply = app.call(case.method, case.path, &headers, Body::from(case.body.clone())).await;
    let what = format!("{} {} {}", case.method, case.path, String::from_utf8_lossy(&case.body));
    assert_eq!(reply.status.as_u16(), case.status, "{what}: {}", reply.text());
    let body = reply.json();
    if case.path.starts_with("/v1/messages") {
        assert_eq!(body["type"], "error", "{what}: {body}");
        assert_eq!(body["error"]["type"], case.kind, "{what}: {body}");
        assert!(body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
        assert_eq!(body.as_object().map(|o| o.len()), Some(2), "{what}: {body}");
    } else {
        let error = &body["error"];
        assert_eq!(error["type"], case.kind, "{what}: {body}");
        assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{what}: {body}");
        assert_eq!(error["param"].as_str(), case.param, "{what}: {body}");
        assert!(error.get("code").is_some(), "{what}: {body}");
    }
}

#[tokio::test]
async fn every_bad_input_gets_a_4xx_in_its_apis_shape() {
    let app = App::new();
    let cases = cases();
    assert!(cases.len() >= 40, "{} cases", cases.len());
    for case in cases {
        check(&app, case).await;
    }
    let ok = app.post(CHAT, &chat(json!({}))).await;
    assert_eq!(ok.status, 200, "the server still serves: {}", ok.text());
}

#[tokio::test]
async fn model_names_that_are_accepted() {
    let app = App::replying("ok");
    for name in [crate::harness::MODEL, "fake", "default", "semantic"] {
        let reply = app.post(CHAT, &chat(json!({"model": name}))).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.json()["model"], name);
    }
    let reply = app.post(CHAT, &chat(json!({"model": null}))).await;
    assert_eq!(reply.json()["model"], crate::harness::MODEL);
    let wrong = app.post(CHAT, &chat(json!({"model": "gpt-4o"}))).await;
    assert_eq!(wrong.json()["error"]["code"], "model_not_found");
}

/// `--model-alias`: a client with a hard-coded model name gets the loaded model, on both APIs,
/// and `/v1/models` lists the alias after the model's own name.
#[tokio::test]
async fn configured_model_aliases_are_accepted_and_listed() {
    let options = semantic_api::ServeOptions {
        model_aliases: vec!["gpt-4o-mini".into(), "claude-haiku".into()],
        ..crate::harness::options()
    };
    let app = App::with_options(semantic_engine::FakeScript::reply("ok"), options);
    for name in ["gpt-4o-mini", "claude-haiku"] {
        let reply = app.post(CHAT, &chat(json!({"model": name}))).await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        assert_eq!(reply.json()["model"], name);
        let reply = app
            .post(MESSAGES, &json!({"model": name, "max_tokens": 4, "messages": [{"role": "user", "content": "hi"}]}))
            .await;
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
    }
    let wrong = app.post(CHAT, &chat(json!({"model": "gpt-4o"}))).await;
    assert_eq!(wrong.json()["error"]["code"], "model_not_found", "other names are still refused");
    let models = app.call("GET", "/v1/models", &[], axum::body::Body::empty()).await.json();
    let ids: Vec<&str> = models["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [crate::harness::MODEL, "gpt-4o-mini", "claude-haiku"]);
}

#[tokio::test]
async fn context_overflow_has_its_code() {
    let app = App::new();
    let reply = app.post(CHAT, &chat(json!({"max_tokens": 100_000}))).await;
    assert_eq!(reply.json()["error"]["code"], "context_length_exceeded");
    let reply = app.post(TEXT, &text(json!({"max_tokens": 100_000}))).await;
    assert_eq!(reply.json()["error"]["code"], "context_length_exceeded");
}

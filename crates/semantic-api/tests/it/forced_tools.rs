//! `tool_choice` that forces a call (OpenAI `required` or a named function, Anthropic `any` or
//! `tool`, Responses the same as chat): the fake engine would answer in plain text, and the
//! tool-call constraint turns its reply into one parseable call whose arguments fit the schema.
//! At temperature 0 a refused scripted byte gives way to the lowest allowed one, which makes the
//! constrained output predictable: `"Paris"` before `"Rome"`, `get_weather` before `search`.

use serde_json::{json, Value};

use crate::harness::App;

const REFUSAL: &str = "I would rather not.";

fn city() -> Value {
    json!({"type": "object", "properties": {"city": {"enum": ["Rome", "Paris"]}}, "required": ["city"]})
}

fn query() -> Value {
    json!({"type": "object", "properties": {"q": {"type": "string", "maxLength": 8}}, "required": ["q"]})
}

fn openai_tools() -> Value {
    json!([{"type": "function", "function": {"name": "search", "parameters": query()}},
           {"type": "function", "function": {"name": "get_weather", "parameters": city()}}])
}

fn chat(tool_choice: Value, stream: bool) -> Value {
    json!({"messages": [{"role": "user", "content": "Weather?"}], "tools": openai_tools(), "tool_choice": tool_choice,
           "temperature": 0, "max_tokens": 200, "stream": stream})
}

fn args(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|e| panic!("{text}: {e}"))
}

#[tokio::test]
async fn required_forces_a_call_to_one_of_the_tools_with_valid_arguments() {
    let app = App::replying(REFUSAL);
    let reply = app.post("/v1/chat/completions", &chat(json!("required"), false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let choice = &reply.json()["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls", "{choice}");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0]["function"];
    assert_eq!(call["name"], "get_weather");
    assert_eq!(args(call["arguments"].as_str().unwrap_or("")), json!({"city": "Paris"}));
}

#[tokio::test]
async fn a_named_choice_forces_that_tool_streamed_too() {
    let app = App::replying(REFUSAL);
    let named = json!({"type": "function", "function": {"name": "search"}});
    let chunks = app.post("/v1/chat/completions", &chat(named, true)).await.sse_json();
    let calls: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls")).collect();
    assert_eq!(calls.first().map(|c| &c[0]["function"]["name"]), Some(&json!("search")), "{chunks:?}");
    let arguments: String = calls.iter().filter_map(|c| c[0]["function"]["arguments"].as_str()).collect();
    // The scripted refusal, cut at maxLength 8.
    assert_eq!(args(&arguments), json!({"q": "I would "}));
    let content: String =
        chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(str::to_owned)).collect();
    assert_eq!(content, "");
    let finish = chunks.iter().find_map(|c| c["choices"].get(0)?["finish_reason"].as_str().map(str::to_owned));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn an_unsupported_schema_is_a_400_when_forced_and_unconstrained_under_auto() {
    let app = App::replying(REFUSAL);
    let mut body = chat(json!("required"), false);
    body["tools"][1]["function"]["parameters"]["properties"]["city"] = json!({"type": "string", "pattern": "^[A-Z]"});
    let reply = app.post("/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["param"], "tools[1].function.parameters", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.contains("pattern") && m.contains("get_weather")), "{error}");
    body["tool_choice"] = json!({"type": "function", "function": {"name": "search"}});
    assert_eq!(app.post("/v1/chat/completions", &body).await.status, 200, "only the named tool's schema counts");
    body["tool_choice"] = json!("auto");
    let reply = app.post("/v1/chat/completions", &body).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], REFUSAL, "auto is not constrained");
}

fn anthropic(tool_choice: Value, stream: bool) -> Value {
    json!({"model": "semantic", "max_tokens": 200, "temperature": 0, "stream": stream,
           "messages": [{"role": "user", "content": "Weather?"}], "tool_choice": tool_choice,
           "tools": [{"name": "search", "input_schema": query()}, {"name": "get_weather", "input_schema": city()}]})
}

#[tokio::test]
async fn anthropic_any_and_named_tool_force_a_tool_use() {
    let app = App::replying(REFUSAL);
    let reply = app.post("/v1/messages", &anthropic(json!({"type": "any"}), false)).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let message = reply.json();
    assert_eq!(message["stop_reason"], "tool_use", "{message}");
    let uses: Vec<&Value> =
        message["content"].as_array().into_iter().flatten().filter(|b| b["type"] == "tool_use").collect();
    assert_eq!(uses.len(), 1, "{message}");
    assert_eq!((&uses[0]["name"], &uses[0]["input"]), (&json!("get_weather"), &json!({"city": "Paris"})));

    let events = app.post("/v1/messages", &anthropic(json!({"type": "tool", "name": "search"}), true)).await.sse();
    let data: Vec<Value> = events.iter().filter_map(|(_, d)| serde_json::from_str(d).ok()).collect();
    let start = data.iter().find(|v| v["content_block"]["type"] == "tool_use").expect("a tool_use block");
    assert_eq!(start["content_block"]["name"], "search");
    let partial: String = data.iter().filter_map(|v| v["delta"]["partial_json"].as_str()).collect();
    assert_eq!(args(&partial), json!({"q": "I would "}));
    assert!(data.iter().all(|v| v["delta"]["type"] != "text_delta"), "no text: {data:?}");
}

#[tokio::test]
async fn anthropic_unsupported_input_schema_is_a_400_when_forced() {
    let app = App::replying(REFUSAL);
    let mut body = anthropic(json!({"type": "any"}), false);
    body["tools"][0]["input_schema"]["properties"]["q"]["format"] = json!("uri");
    let reply = app.post("/v1/messages", &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "invalid_request_error");
    assert!(reply.text().contains("tools[0].input_schema"), "{}", reply.text());
}

#[tokio::test]
async fn responses_required_forces_a_function_call() {
    let app = App::replying(REFUSAL);
    let tools = json!([{"type": "function", "name": "get_weather", "parameters": city()}]);
    let body = json!({"input": "Weather?", "tools": tools, "tool_choice": "required", "temperature": 0,
                      "max_output_tokens": 200});
    let reply = app.post("/v1/responses", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let r = reply.json();
    let calls: Vec<&Value> =
        r["output"].as_array().into_iter().flatten().filter(|i| i["type"] == "function_call").collect();
    assert_eq!(calls.len(), 1, "{r}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(args(calls[0]["arguments"].as_str().unwrap_or("")), json!({"city": "Paris"}));
}

#[tokio::test]
async fn responses_name_the_flat_tool_field_of_an_unsupported_forced_schema() {
    let app = App::replying(REFUSAL);
    let tools = json!([{"type": "function", "name": "get_weather",
                        "parameters": {"type": "object", "properties": {"city": {"type": "string", "format": "x"}}}}]);
    let body = json!({"input": "Weather?", "tools": tools, "tool_choice": "required"});
    let reply = app.post("/v1/responses", &body).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let error = &reply.json()["error"];
    assert_eq!(error["param"], "tools[0].parameters", "{error}");
    assert!(error["message"].as_str().is_some_and(|m| m.starts_with("tools[0].parameters:")), "{error}");
}

//! OpenAI routes: chat completions (JSON, SSE, tools, stop), legacy completions, models.

use serde_json::{json, Value};

use crate::harness::{recording, App, MODEL};

const CALL: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}})
}

fn search_tool() -> Value {
    json!({"type": "function", "function": {"name": "search", "parameters": {"type": "object"}}})
}

fn user(text: &str) -> Value {
    json!([{"role": "user", "content": text}])
}

/// Joins the `content` deltas of chat chunks.
fn streamed_text(chunks: &[Value]) -> String {
    chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"]["content"].as_str().map(str::to_owned)).collect()
}

#[tokio::test]
async fn a_plain_reply_and_its_usage() {
    let app = App::replying("Hello there");
    let reply = app.post("/v1/chat/completions", &json!({"messages": user("Hi"), "max_tokens": 20})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("chatcmpl-") && id.len() == 33), "{body}");
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], MODEL);
    let choice = &body["choices"][0];
    assert_eq!(choice["message"], json!({"role": "assistant", "content": "Hello there"}));
    assert_eq!(choice["finish_reason"], "stop");
    let usage = &body["usage"];
    // "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n": 3 specials and 18 bytes.
    assert_eq!(usage["prompt_tokens"], 21, "{usage}");
    assert_eq!(usage["completion_tokens"], 11, "11 bytes (the end-of-turn token is not counted): {usage}");
    assert_eq!(usage["total_tokens"], 32);
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0);
}

#[tokio::test]
async fn streamed_chunks_add_up_to_the_json_reply() {
    let app = App::replying("Streaming is fun");
    let body = |stream: bool| json!({"messages": user("Hi"), "max_tokens": 40, "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }});
    let plain = app.post("/v1/chat/completions", &merge(body(false), json!({"stream_options": null}))).await.json();
    let reply = app.post("/v1/chat/completions", &body(true)).await;
    assert_eq!(reply.status, 200);
    assert!(reply.headers["content-type"].to_str().unwrap_or("").starts_with("text/event-stream"));
    let events = reply.sse();
    assert_eq!(events.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    let chunks = reply.sse_json();
    assert_eq!(chunks[0]["choices"][0]["delta"], json!({"role": "assistant", "content": ""}));
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk" && c["id"] == chunks[0]["id"]));
    assert_eq!(streamed_text(&chunks), plain["choices"][0]["message"]["content"].as_str().unwrap_or("?"));
    let finish = &chunks[chunks.len() - 2];
    assert_eq!(finish["choices"][0]["finish_reason"], "stop");
    let last = chunks.last().expect("usage chunk");
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"], plain["usage"]);
    // The server's own timings ride on the JSON reply and on the usage chunk only.
    for timings in [&plain["timings"], &last["timings"]] {
        for field in ["queue_ms", "prompt_ms", "ttft_ms", "prompt_per_second", "predicted_per_second"] {
            assert!(timings[field].as_f64().is_some_and(|v| v >= 0.0), "{field} in {timings}");
        }
        assert!(timings["ttft_ms"].as_f64() >= timings["prompt_ms"].as_f64(), "{timings}");
    }
    assert!(chunks[..chunks.len() - 1].iter().all(|c| c.get("timings").is_none()));
}

fn merge(mut base: Value, extra: Value) -> Value {
    if let (Some(map), Value::Object(extra)) = (base.as_object_mut(), extra) {
        for (k, v) in extra {
            if v.is_null() {
                map.remove(&k);
            } else {
                map.insert(k, v);
            }
        }
    }
    base
}

#[tokio::test]
async fn stop_strings_end_the_reply_and_are_not_returned() {
    let app = App::replying("Hello STOP world");
    let body = json!({"messages": user("Hi"), "stop": ["STOP", "never"], "max_tokens": 30});
    let reply = app.post("/v1/chat/completions", &body).await.json();
    assert_eq!(reply["choices"][0]["message"]["content"], "Hello ");
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    let streamed = app.post("/v1/chat/completions", &merge(body, json!({"stream": true}))).await;
    assert_eq!(streamed_text(&streamed.sse_json()), "Hello ");
}

#[tokio::test]
async fn length_is_the_finish_reason_at_max_tokens() {
    let app = App::new();
    let reply = app.post("/v1/chat/completions", &json!({"messages": user("Hi"), "max_tokens": 5})).await.json();
    assert_eq!(reply["choices"][0]["finish_reason"], "length");
    assert_eq!(reply["usage"]["completion_tokens"], 5);
}

#[tokio::test]
async fn a_tool_call_is_parsed_into_tool_calls() {
    let (script, prompt) = recording(CALL);
    let app = App::with_script(script);
    let body = json!({"messages": user("Weather in Paris?"), "tools": [weather_tool()], "max_tokens": 100});
    let reply = app.post("/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = reply.json();
    let choice = &reply["choices"][0];
    assert_eq!(choice["finish_reason"], "tool_calls");
    assert_eq!(choice["message"]["content"], Value::Null);
    let call = &choice["message"]["tool_calls"][0];
    assert!(call["id"].as_str().is_some_and(|id| id.starts_with("call_") && id.len() == 29), "{call}");
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value = serde_json::from_str(call["function"]["arguments"].as_str().unwrap_or("")).unwrap_or_default();
    assert_eq!(args, json!({"city": "Paris"}));
    // The ChatML template knows no tools, so they are described in a system block.
    let prompt = prompt.lock().unwrap().clone().unwrap_or_default();
    assert!(prompt.starts_with("<|im_start|>system\n# Tools\n"), "{prompt}");
    assert!(prompt.contains("\"name\":\"get_weather\""), "{prompt}");
}

#[tokio::test]
async fn streamed_tool_calls_have_distinct_indices_id_and_name_first() {
    let two = format!("{CALL}\n<tool_call>{{\"name\": \"search\", \"arguments\": {{\"q\": \"rain\"}}}}</tool_call>");
    let app = App::replying(&two);
    let body = json!({"messages": user("Weather?"), "tools": [weather_tool(), search_tool()], "tool_choice": "auto",
                      "stream": true, "max_tokens": 200});
    let reply = app.post("/v1/chat/completions", &body).await;
    let chunks = reply.sse_json();
    assert_eq!(streamed_text(&chunks), "", "calls are not streamed as content");
    let deltas: Vec<&Value> = chunks.iter().filter_map(|c| c["choices"].get(0)?["delta"].get("tool_calls")).collect();
    assert_eq!(deltas.len(), 4, "{chunks:?}");
    let mut ids = Vec::new();
    for (i, (head, args)) in [(deltas[0], deltas[1]), (deltas[2], deltas[3])].into_iter().enumerate() {
        assert_eq!(head[0]["index"], i);
        assert_eq!(args[0]["index"], i);
        assert!(head[0]["id"].as_str().is_some_and(|id| id.starts_with("call_")));
        ids.push(head[0]["id"].clone());
        assert_eq!(head[0]["type"], "function");
        assert_eq!(head[0]["function"]["arguments"], "");
        assert!(args[0].get("id").is_none());
        assert!(args[0]["function"].get("name").is_none());
    }
    assert_ne!(ids[0], ids[1]);
    assert_eq!(deltas[0][0]["function"]["name"], "get_weather");
    assert_eq!(deltas[3][0]["function"]["arguments"], "{\"q\":\"rain\"}");
    let finish = chunks.iter().find_map(|c| c["choices"].get(0)?["finish_reason"].as_str().map(str::to_owned));
    assert_eq!(finish.as_deref(), Some("tool_calls"));
}

#[tokio::test]
async fn text_before_a_call_streams_as_content() {
    let app = App::replying(&format!("Let me check.\n{CALL}"));
    let body = json!({"messages": user("Weather?"), "tools": [weather_tool()], "stream": true, "max_tokens": 200});
    let chunks = app.post("/v1/chat/completions", &body).await.sse_json();
    assert_eq!(streamed_text(&chunks), "Let me check.\n");
    let plain = app.post("/v1/chat/completions", &merge(body, json!({"stream": false}))).await.json();
    assert_eq!(plain["choices"][0]["message"]["content"], "Let me check.\n");
    assert_eq!(plain["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "get_weather");
}

#[tokio::test]
async fn tool_choice_none_offers_no_tools_and_parses_nothing() {
    let (script, prompt) = recording(CALL);
    let app = App::with_script(script);
    let body =
        json!({"messages": user("Weather?"), "tools": [weather_tool()], "tool_choice": "none", "max_tokens": 200});
    let reply = app.post("/v1/chat/completions", &body).await.json();
    assert_eq!(reply["choices"][0]["finish_reason"], "stop");
    assert_eq!(reply["choices"][0]["message"]["content"], CALL);
    assert!(!prompt.lock().unwrap().clone().unwrap_or_default().contains("# Tools"));
}

#[tokio::test]
async fn a_named_tool_choice_offers_only_that_tool() {
    let (script, prompt) = recording("{\"name\":\"search\",\"arguments\":{\"q\":\"x\"}}");
    let app = App::with_script(script);
    let body = json!({"messages": user("Weather?"), "tools": [weather_tool(), search_tool()], "temperature": 0,
                      "tool_choice": {"type": "function", "function": {"name": "search"}}, "max_tokens": 200});
    let reply = app.post("/v1/chat/completions", &body).await.json();
    assert_eq!(reply["choices"][0]["message"]["tool_calls"][0]["function"]["name"], "search", "{reply}");
    let prompt = prompt.lock().unwrap().clone().unwrap_or_default();
    assert!(prompt.contains("\"name\":\"search\"") && !prompt.contains("get_weather"), "{prompt}");
}

#[tokio::test]
async fn tool_history_renders_for_a_template_without_tools() {
    let (script, prompt) = recording("It is sunny.");
    let app = App::with_script(script);
    let body = json!({"messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Weather "}, {"type": "text", "text": "in Paris?"}]},
        {"role": "assistant", "content": null, "tool_calls": [{"id": "call_abc", "type": "function",
            "function": {"name": "get_weather", "arguments": "{\"city\":\"Paris\"}"}}]},
        {"role": "tool", "tool_call_id": "call_abc", "content": "{\"sky\":\"clear\"}"}
    ], "tools": [weather_tool()], "max_tokens": 50});
    let reply = app.post("/v1/chat/completions", &body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["choices"][0]["message"]["content"], "It is sunny.");
    let prompt = prompt.lock().unwrap().clone().unwrap_or_default();
    assert!(prompt.starts_with("<|im_start|>system\nBe brief.\n\n# Tools"), "{prompt}");
    assert!(prompt.contains("<|im_start|>user\nWeather in Paris?<|im_end|>"), "{prompt}");
    assert!(
        prompt.contains("<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call><|im_end|>"),
        "{prompt}"
    );
    assert!(
        prompt.contains("<|im_start|>user\n<tool_response>\n{\"sky\":\"clear\"}\n</tool_response><|im_end|>"),
        "{prompt}"
    );
}

#[tokio::test]
async fn legacy_completions_json_and_stream() {
    let (script, prompt) = recording(" there was a cat.");
    let app = App::with_script(script);
    let reply = app.post("/v1/completions", &json!({"prompt": "Once upon a time", "max_tokens": 50})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let body = reply.json();
    assert!(body["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["choices"][0]["text"], " there was a cat.");
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 16);
    assert_eq!(prompt.lock().unwrap().as_deref(), Some("Once upon a time"), "raw prompt, no template");

    let streamed = app
        .post(
            "/v1/completions",
            &json!({"prompt": ["Once upon a time"], "max_tokens": 50, "stream": true,
                                        "stream_options": {"include_usage": true}, "stop": ["cat"]}),
        )
        .await;
    let chunks = streamed.sse_json();
    assert_eq!(streamed.sse().last().map(|(_, d)| d.clone()).as_deref(), Some("[DONE]"));
    let text: String = chunks.iter().filter_map(|c| c["choices"].get(0)?["text"].as_str().map(str::to_owned)).collect();
    assert_eq!(text, " there was a ");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion"));
    assert_eq!(chunks[chunks.len() - 2]["choices"][0]["finish_reason"], "stop");
    assert_eq!(chunks.last().map(|c| c["usage"]["prompt_tokens"].clone()), Some(json!(16)));
}

#[tokio::test]
async fn legacy_completions_default_to_16_tokens() {
    let app = App::new();
    let body = app.post("/v1/completions", &json!({"prompt": "abc"})).await.json();
    assert_eq!(body["usage"]["completion_tokens"], 16);
    assert_eq!(body["choices"][0]["finish_reason"], "length");
}

#[tokio::test]
async fn valid_agent_ids_are_accepted_everywhere() {
    let app = App::replying("ok");
    let reply = app
        .call(
            "POST",
            "/v1/chat/completions",
            &[("content-type", "application/json"), ("x-agent-id", "agent-1"), ("x-session-id", "s.1")],
            json!({"messages": user("Hi"), "agent_id": "A_b.c-1", "session_id": "z"}).to_string(),
        )
        .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let reply = app.post("/v1/completions", &json!({"prompt": "x", "agent_id": "a", "max_tokens": 2})).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

#[tokio::test]
async fn models_lists_the_loaded_model() {
    let app = App::new();
    let body = app.call("GET", "/v1/models", &[], axum::body::Body::empty()).await.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    assert_eq!(body["data"][0]["object"], "model");
}

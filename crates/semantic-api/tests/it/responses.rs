//! The Responses API over the fake engine: create, retrieve, delete, input items, chains through
//! `previous_response_id` (agent memory reuse, branching, other keys), `store: false`, streaming
//! events, tool calls, `text.format`, persistence and retention.

use axum::body::Body;
use semantic_api::{AuthConfig, Retention, ServeOptions};
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{options, App, Reply, MODEL};

const CALL: &str = "<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>";
const JSON: [(&str, &str); 1] = [("content-type", "application/json")];

fn weather_tool() -> Value {
    json!({"type": "function", "name": "get_weather", "description": "Weather in a city",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}})
}

async fn create(app: &App, body: Value) -> Reply {
    let mut body = body;
    if let Some(map) = body.as_object_mut() {
        map.entry("temperature").or_insert(json!(0));
    }
    app.call("POST", "/v1/responses", &JSON, body.to_string()).await
}

async fn ok(app: &App, body: Value) -> Value {
    let reply = create(app, body).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()
}

fn text_of(response: &Value) -> String {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|item| item["type"] == "message")
        .filter_map(|item| item["content"][0]["text"].as_str())
        .collect()
}

#[tokio::test]
async fn create_retrieve_list_input_items_and_delete() {
    let app = App::replying("Hello there");
    let r =
        ok(&app, json!({"input": "Hi", "instructions": "Be kind.", "metadata": {"k": "v"}, "max_output_tokens": 20}))
            .await;
    let id = r["id"].as_str().expect("id").to_owned();
    assert!(id.starts_with("resp_"), "{r}");
    assert_eq!(r["object"], "response");
    assert_eq!(r["status"], "completed");
    assert_eq!(r["model"], MODEL);
    assert_eq!(r["metadata"], json!({"k": "v"}));
    assert_eq!(r["instructions"], "Be kind.");
    assert_eq!(text_of(&r), "Hello there");
    assert_eq!(r["output"][0]["role"], "assistant");
    assert!(r["output"][0]["id"].as_str().is_some_and(|id| id.starts_with("msg_")));
    let usage = &r["usage"];
    assert_eq!(usage["output_tokens"], 11, "{usage}");
    assert_eq!(usage["total_tokens"].as_u64(), Some(usage["input_tokens"].as_u64().unwrap_or(0) + 11));
    assert_eq!(usage["input_tokens_details"]["cached_tokens"], 0);
    assert_eq!(usage["output_tokens_details"]["reasoning_tokens"], 0);

    let got = app.call("GET", &format!("/v1/responses/{id}"), &[], Body::empty()).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.json(), r);
    let items = app.call("GET", &format!("/v1/responses/{id}/input_items"), &[], Body::empty()).await.json();
    assert_eq!(items["object"], "list");
    assert_eq!(items["data"][0]["content"][0], json!({"type": "input_text", "text": "Hi"}));
    assert_eq!(items["has_more"], false);

    let deleted = app.call("DELETE", &format!("/v1/responses/{id}"), &[], Body::empty()).await;
    assert_eq!(deleted.json(), json!({"id": id, "object": "response", "deleted": true}));
    let gone = app.call("GET", &format!("/v1/responses/{id}"), &[], Body::empty()).await;
    assert_eq!(gone.status, 404);
    assert_eq!(gone.json()["error"]["code"], "response_not_found", "{}", gone.text());
    assert_eq!(app.call("DELETE", &format!("/v1/responses/{id}"), &[], Body::empty()).await.status, 404);
}

#[tokio::test]
async fn a_chain_reuses_its_agent_memory_and_may_branch() {
    let app = App::replying("Sure.");
    let one = ok(&app, json!({"input": "First question?", "instructions": "Be brief."})).await;
    let two =
        ok(&app, json!({"input": "Second?", "instructions": "Be brief.", "previous_response_id": one["id"]})).await;
    let input_one = one["usage"]["input_tokens"].as_u64().expect("tokens");
    let cached_two = two["usage"]["input_tokens_details"]["cached_tokens"].as_u64().expect("cached");
    assert!(cached_two >= input_one, "turn 2 reuses turn 1's prompt: {cached_two} < {input_one}");
    assert_eq!(two["previous_response_id"], one["id"]);
    let three =
        ok(&app, json!({"input": "Third?", "instructions": "Be brief.", "previous_response_id": two["id"]})).await;
    let cached_three = three["usage"]["input_tokens_details"]["cached_tokens"].as_u64().expect("cached");
    assert!(cached_three >= two["usage"]["input_tokens"].as_u64().expect("tokens"), "{three}");
    // A branch from turn 1 shares turn 1's prompt, not turn 2's.
    let branch =
        ok(&app, json!({"input": "Other?", "instructions": "Be brief.", "previous_response_id": one["id"]})).await;
    let cached_branch = branch["usage"]["input_tokens_details"]["cached_tokens"].as_u64().expect("cached");
    assert!(cached_branch >= input_one, "{branch}");
    assert_eq!(text_of(&branch), "Sure.");
    // The chain is one agent of the caller's namespace.
    let agents = app.call("GET", "/v1/agents", &[], Body::empty()).await.json();
    let resp_agents: Vec<&Value> = agents["data"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|a| a["id"].as_str().is_some_and(|id| id.starts_with("resp-")))
        .collect();
    assert_eq!(resp_agents.len(), 1, "{agents}");
}

#[tokio::test]
async fn unknown_and_foreign_previous_responses_are_404() {
    let auth = AuthConfig::new(&["key-alpha-0001".into(), "key-beta-00002".into()], None, true);
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { auth, ..options() });
    let alpha = [("content-type", "application/json"), ("authorization", "Bearer key-alpha-0001")];
    let beta = [("content-type", "application/json"), ("authorization", "Bearer key-beta-00002")];
    let made = app.call("POST", "/v1/responses", &alpha, json!({"input": "Hi"}).to_string()).await;
    assert_eq!(made.status, 200, "{}", made.text());
    let id = made.json()["id"].as_str().expect("id").to_owned();
    for (headers, previous) in [(&alpha, "resp_0123456789abcdef01234567"), (&beta, id.as_str()), (&alpha, "../etc")] {
        let reply = app
            .call(
                "POST",
                "/v1/responses",
                headers,
                json!({"input": "Hi", "previous_response_id": previous}).to_string(),
            )
            .await;
        assert_eq!(reply.status, 404, "{}", reply.text());
        let error = &reply.json()["error"];
        assert_eq!(error["code"], "response_not_found", "{error}");
        assert_eq!(error["param"], "previous_response_id");
    }
    for method in ["GET", "DELETE"] {
        assert_eq!(app.call(method, &format!("/v1/responses/{id}"), &beta[1..], Body::empty()).await.status, 404);
    }
    let items = app.call("GET", &format!("/v1/responses/{id}/input_items"), &beta[1..], Body::empty()).await;
    assert_eq!(items.status, 404);
    assert_eq!(app.call("GET", &format!("/v1/responses/{id}"), &alpha[1..], Body::empty()).await.status, 200);
}

#[tokio::test]
async fn store_false_is_not_retrievable() {
    let app = App::replying("ok");
    let r = ok(&app, json!({"input": "Hi", "store": false})).await;
    assert_eq!(r["store"], false);
    let id = r["id"].as_str().expect("id");
    assert_eq!(app.call("GET", &format!("/v1/responses/{id}"), &[], Body::empty()).await.status, 404);
    let next = create(&app, json!({"input": "Again", "previous_response_id": id})).await;
    assert_eq!(next.status, 404);
}

#[tokio::test]
async fn streamed_events_come_in_order_and_match_the_stored_response() {
    let app = App::replying("Streaming is fun");
    let reply = create(&app, json!({"input": "Hi", "stream": true})).await;
    assert_eq!(reply.status, 200);
    let events = reply.sse();
    let kinds: Vec<&str> = events.iter().map(|(e, _)| e.as_deref().unwrap_or("?")).collect();
    let data: Vec<Value> = reply.sse_json();
    assert_eq!(
        kinds[..4],
        ["response.created", "response.in_progress", "response.output_item.added", "response.content_part.added"]
    );
    assert_eq!(
        kinds[kinds.len() - 4..],
        ["response.output_text.done", "response.content_part.done", "response.output_item.done", "response.completed"]
    );
    assert!(kinds[4..kinds.len() - 4].iter().all(|k| *k == "response.output_text.delta"), "{kinds:?}");
    for (i, (d, kind)) in data.iter().zip(&kinds).enumerate() {
        assert_eq!(d["sequence_number"], i as u64);
        assert_eq!(d["type"], *kind);
    }
    let deltas: String = data.iter().filter_map(|d| d["delta"].as_str()).collect();
    assert_eq!(deltas, "Streaming is fun");
    let done = &data[data.len() - 1]["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(text_of(done), "Streaming is fun");
    let id = done["id"].as_str().expect("id");
    assert_eq!(data[0]["response"]["id"], id);
    assert_eq!(data[0]["response"]["status"], "in_progress");
    let stored = app.call("GET", &format!("/v1/responses/{id}"), &[], Body::empty()).await.json();
    assert_eq!(&stored, done);
}

#[tokio::test]
async fn a_tool_call_round_trip() {
    let app = App::replying(CALL);
    let r = ok(&app, json!({"input": "Weather in Paris?", "tools": [weather_tool()], "tool_choice": "auto", "max_output_tokens": 200})).await;
    let calls: Vec<&Value> =
        r["output"].as_array().into_iter().flatten().filter(|i| i["type"] == "function_call").collect();
    assert_eq!(calls.len(), 1, "{r}");
    assert_eq!(calls[0]["name"], "get_weather");
    assert_eq!(
        serde_json::from_str::<Value>(calls[0]["arguments"].as_str().unwrap_or("")).ok(),
        Some(json!({"city": "Paris"}))
    );
    assert!(calls[0]["call_id"].as_str().is_some_and(|c| c.starts_with("call_")));
    assert!(!r["output"].as_array().into_iter().flatten().any(|i| i["type"] == "message"), "only the call: {r}");
    let streamed = create(
        &app,
        json!({"input": "Weather in Paris?", "tools": [weather_tool()], "stream": true, "max_output_tokens": 200}),
    )
    .await;
    let kinds: Vec<String> = streamed.sse().into_iter().filter_map(|(e, _)| e).collect();
    assert_eq!(
        kinds,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.function_call_arguments.delta",
            "response.function_call_arguments.done",
            "response.output_item.done",
            "response.completed"
        ]
    );
    let output = json!([{"type": "function_call_output", "call_id": calls[0]["call_id"], "output": "{\"temp\": 21}"}]);
    let next = ok(
        &app,
        json!({"input": output, "previous_response_id": r["id"], "tools": [weather_tool()], "max_output_tokens": 200}),
    )
    .await;
    assert_eq!(next["status"], "completed");
    assert!(
        next["usage"]["input_tokens_details"]["cached_tokens"].as_u64() >= r["usage"]["input_tokens"].as_u64(),
        "{next}"
    );
    let items = app
        .call("GET", &format!("/v1/responses/{}/input_items", next["id"].as_str().unwrap_or("")), &[], Body::empty())
        .await;
    assert_eq!(items.json()["data"][0]["type"], "function_call_output");
    let bad = create(&app, json!({"input": "x", "tools": [{"type": "web_search"}]})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["param"], "tools[0].type");
}

#[tokio::test]
async fn text_format_goes_the_way_of_chat_response_format() {
    let app = App::replying("{}");
    let plain = ok(&app, json!({"input": "Hi", "text": {"format": {"type": "text"}}})).await;
    assert_eq!(plain["text"]["format"]["type"], "text");
    for (format, response_format) in [
        (json!({"type": "json_object"}), json!({"type": "json_object"})),
        (
            json!({"type": "json_schema", "name": "x", "schema": {"type": "object"}}),
            json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}),
        ),
    ] {
        let r = create(&app, json!({"input": "Hi", "text": {"format": format}, "max_output_tokens": 8})).await;
        let chat = app
            .post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "Hi"}], "response_format": response_format, "max_tokens": 8}))
            .await;
        assert_eq!(r.status, chat.status, "{} vs {}", r.text(), chat.text());
    }
}

#[tokio::test]
async fn stored_responses_survive_a_restart_within_the_retention_limit() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("restart");
    let responses_max = Retention { count: 2, max_age: None };
    let opts = || ServeOptions { responses_dir: Some(dir.clone()), responses_max, ..options() };
    let app = App::with_options(FakeScript::reply("ok"), opts());
    let mut ids = Vec::new();
    for input in ["one", "two", "three"] {
        ids.push(ok(&app, json!({"input": input})).await["id"].as_str().expect("id").to_owned());
    }
    let again = App::with_options(FakeScript::reply("ok"), opts());
    let status = |id: &str| {
        let again = again.clone();
        let id = id.to_owned();
        async move { again.call("GET", &format!("/v1/responses/{id}"), &[], Body::empty()).await.status }
    };
    assert_eq!(status(&ids[0]).await, 404, "past the retention limit");
    assert_eq!(status(&ids[1]).await, 200);
    assert_eq!(status(&ids[2]).await, 200);
    let next = ok(&again, json!({"input": "four", "previous_response_id": ids[2]})).await;
    assert_eq!(next["status"], "completed");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The stored file of response `id`, wherever its namespace put it.
fn stored_file(dir: &std::path::Path, id: &str) -> std::path::PathBuf {
    let found = std::fs::read_dir(dir).into_iter().flatten().flatten().map(|ns| ns.path().join(format!("{id}.json")));
    found.into_iter().find(|p| p.exists()).unwrap_or_else(|| panic!("no file for {id}"))
}

#[tokio::test]
async fn a_response_older_than_the_age_limit_is_gone_like_an_unknown_one() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("age");
    let month = Retention { count: 100, max_age: Some(std::time::Duration::from_secs(30 * 86_400)) };
    let opts = || ServeOptions { responses_dir: Some(dir.clone()), responses_max: month, ..options() };
    let app = App::with_options(FakeScript::reply("ok"), opts());
    let old = ok(&app, json!({"input": "one"})).await["id"].as_str().expect("id").to_owned();
    let fresh = ok(&app, json!({"input": "two"})).await["id"].as_str().expect("id").to_owned();
    // Age the first one by 31 days on disk, in the store's own verified format.
    let path = stored_file(&dir, &old);
    let mut record: Value = semantic_coord::read_verified(&path).expect("verified");
    let created = record["created_ms"].as_u64().expect("created_ms");
    record["created_ms"] = json!(created - 31 * 86_400_000);
    semantic_coord::write_atomic(&path, &record).expect("rewrite");

    let again = App::with_options(FakeScript::reply("ok"), opts());
    let get = |id: &str| {
        let (again, path) = (again.clone(), format!("/v1/responses/{id}"));
        async move { again.call("GET", &path, &[], Body::empty()).await }
    };
    let expired = get(&old).await;
    let unknown = get("resp_0123456789abcdef").await;
    assert_eq!(expired.status, 404, "{}", expired.text());
    assert_eq!(unknown.status, 404);
    assert_eq!(expired.json()["error"]["code"], unknown.json()["error"]["code"]);
    assert!(!path.exists(), "deleted at start");
    let chained = create(&again, json!({"input": "three", "previous_response_id": old})).await;
    assert_eq!(chained.status, 404, "{}", chained.text());
    assert_eq!(chained.json()["error"]["param"], "previous_response_id");
    assert_eq!(get(&fresh).await.status, 200, "a young response stays");
    let _ = std::fs::remove_dir_all(&dir);
}

#[tokio::test]
async fn bad_requests_name_the_field() {
    let app = App::replying("ok");
    for (body, param) in [
        (json!({"input": []}), "input"),
        (json!({"input": [{"role": "robot", "content": "x"}]}), "input[0].role"),
        (json!({"input": "x", "max_output_tokens": 0}), "max_output_tokens"),
        (json!({"input": "x", "temperature": 3}), "temperature"),
    ] {
        let reply = create(&app, body.clone()).await;
        assert_eq!(reply.status, 400, "{body}: {}", reply.text());
        assert_eq!(reply.json()["error"]["param"], param, "{body}");
    }
}

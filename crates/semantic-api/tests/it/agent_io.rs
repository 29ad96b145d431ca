//! The direct agent API: `POST /v1/agents/{id}/generate` continues the agent's KV through the
//! scheduler; another key's agent is separate.

use axum::body::Body;
use semantic_api::{AuthConfig, ServeOptions};
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{options, App, Reply};

#[tokio::test]
async fn generate_continues_the_agents_kv() {
    let app = App::replying(" world");
    let headers = [("content-type", "application/json")];
    let first = app
        .call(
            "POST",
            "/v1/agents/raw-1/generate",
            &headers,
            json!({"prompt": "Hello", "temperature": 0, "max_tokens": 10}).to_string(),
        )
        .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let first = first.json();
    assert_eq!(first["text"], " world");
    assert_eq!(first["agent_id"], "raw-1");
    assert_eq!(first["finish_reason"], "stop");
    assert_eq!(first["tokens_generated"], 6);
    let prompt = "Hello world. More";
    let second = app
        .call(
            "POST",
            "/v1/agents/raw-1/generate",
            &headers,
            json!({"prompt": prompt, "temperature": 0, "max_tokens": 10}).to_string(),
        )
        .await
        .json();
    let cached = second["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    assert!(cached >= 5, "the second prompt extends the first: {second}");
    let agent = app.call("GET", "/v1/agents/raw-1", &[], Body::empty()).await;
    assert_eq!(agent.status, 200, "{}", agent.text());
    for (body, param) in [(json!({"prompt": ""}), "prompt"), (json!({"prompt": "x", "max_tokens": 0}), "max_tokens")] {
        let reply = app.call("POST", "/v1/agents/raw-1/generate", &headers, body.to_string()).await;
        assert_eq!(reply.status, 400, "{body}");
        assert_eq!(reply.json()["error"]["param"], param);
    }
    let bad = app.call("POST", "/v1/agents/a%20b/generate", &headers, json!({"prompt": "x"}).to_string()).await;
    assert_eq!(bad.status, 400);
}

#[tokio::test]
async fn a_streamed_generate_is_completions_sse_with_usage_and_continues_the_kv() {
    let app = App::replying(" world");
    let headers = [("content-type", "application/json")];
    let body = |prompt: &str, stream: bool| {
        json!({"prompt": prompt, "temperature": 0, "max_tokens": 10, "stream": stream}).to_string()
    };
    let first = app.call("POST", "/v1/agents/raw-2/generate", &headers, body("Hello", true)).await;
    assert_eq!(first.status, 200, "{}", first.text());
    let data: Vec<String> = first.sse().into_iter().map(|(_, d)| d).collect();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data.iter().filter_map(|d| serde_json::from_str(d).ok()).collect();
    assert_eq!(chunks.len(), data.len() - 1, "every chunk but [DONE] is JSON: {data:?}");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion" && c["id"] == chunks[0]["id"]), "{chunks:?}");
    let text: String = chunks.iter().filter_map(|c| c["choices"].get(0)?["text"].as_str()).collect();
    assert_eq!(text, " world");
    let finish: Vec<&Value> =
        chunks.iter().filter_map(|c| c["choices"].get(0)).filter(|c| !c["finish_reason"].is_null()).collect();
    assert_eq!(finish.len(), 1);
    assert_eq!(finish[0]["finish_reason"], "stop");
    let usage = &chunks.last().map(|c| c["usage"].clone()).unwrap_or_default();
    assert_eq!(usage["completion_tokens"], 6, "{usage}");
    assert_eq!(usage["prompt_tokens_details"]["cached_tokens"], 0, "{usage}");
    // The streamed reply went into the agent's memory like a plain one.
    let second = app.call("POST", "/v1/agents/raw-2/generate", &headers, body("Hello world. More", true)).await;
    let chunks: Vec<Value> = second.sse().into_iter().filter_map(|(_, d)| serde_json::from_str(&d).ok()).collect();
    let cached = chunks.last().and_then(|c| c["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64());
    assert!(cached >= Some(5), "the second prompt extends the first: {chunks:?}");
}

#[tokio::test]
async fn another_keys_agent_is_not_yours() {
    let auth = AuthConfig::new(&["key-alpha-0001".into(), "key-beta-00002".into()], None, true);
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { auth, ..options() });
    let alpha = [("content-type", "application/json"), ("authorization", "Bearer key-alpha-0001")];
    let beta = [("content-type", "application/json"), ("authorization", "Bearer key-beta-00002")];
    let made = app.call("POST", "/v1/agents/shared/generate", &alpha, json!({"prompt": "Hi there"}).to_string()).await;
    assert_eq!(made.status, 200, "{}", made.text());
    assert_eq!(app.call("GET", "/v1/agents/shared", &beta[1..], Body::empty()).await.status, 404);
    let theirs =
        app.call("POST", "/v1/agents/shared/generate", &beta, json!({"prompt": "Hi there"}).to_string()).await.json();
    assert_eq!(theirs["usage"]["prompt_tokens_details"]["cached_tokens"], 0, "beta's agent is its own: {theirs}");
}

#[tokio::test]
async fn an_exported_agent_imports_under_another_name_and_keeps_its_kv() {
    let app = App::replying(" world");
    assert_eq!(generate(&app, "source", "Hello").await.status, 200);
    let exported = app.call("GET", "/v1/agents/source/export", &[], Body::empty()).await;
    assert_eq!(exported.status, 200, "{}", exported.text());
    assert_eq!(exported.headers["content-type"], "application/octet-stream");
    assert!(exported.headers["content-disposition"].to_str().unwrap().contains("source.skv"));
    let file = exported.body.to_vec();
    let (header, _) = semantic_memory::decode(&file, std::path::Path::new("x")).expect("a verified agent file");
    let source = app.call("GET", "/v1/agents/source", &[], Body::empty()).await.json();
    assert_eq!(header.tokens.len() as u64, source["tokens"].as_u64().unwrap());

    let octets = [("content-type", "application/octet-stream")];
    let imported = app.call("POST", "/v1/agents/copy/import", &octets, file.clone()).await;
    assert_eq!(imported.status, 200, "{}", imported.text());
    let imported = imported.json();
    assert_eq!((imported["id"].as_str(), imported["tier"].as_str()), (Some("copy"), Some("warm")));
    assert_eq!(imported["tokens"], source["tokens"]);
    let next = generate(&app, "copy", "Hello world. More").await.json();
    let cached = next["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0);
    assert!(cached >= 5, "the imported agent continues from its KV: {next}");

    let again = app.call("POST", "/v1/agents/copy/import", &octets, file.clone()).await;
    assert_eq!((again.status.as_u16(), again.json()["error"]["code"].clone()), (409, json!("agent_exists")));
    let replaced = app.call("PUT", "/v1/agents/copy/import?replace=true", &octets, file.clone()).await;
    assert_eq!(replaced.status, 200, "{}", replaced.text());
    let mut tampered = file.clone();
    tampered[file.len() / 2] ^= 0x40;
    let refused = app.call("POST", "/v1/agents/other/import", &octets, tampered).await;
    assert_eq!((refused.status.as_u16(), refused.json()["error"]["code"].clone()), (400, json!("invalid_agent_file")));
    let (mut foreign, payload) = semantic_memory::decode(&file, std::path::Path::new("x")).unwrap();
    foreign.fingerprint[0] ^= 1;
    let foreign = semantic_memory::encode(&foreign, &payload).unwrap();
    let refused = app.call("POST", "/v1/agents/other/import", &octets, foreign).await;
    assert_eq!(refused.status, 400);
    assert_eq!(refused.json()["error"]["code"], "incompatible_agent_file");
    assert_eq!(app.call("GET", "/v1/agents/other", &[], Body::empty()).await.status, 404, "nothing was made");
    assert_eq!(app.call("GET", "/v1/agents/nobody/export", &[], Body::empty()).await.status, 404);
}

async fn generate(app: &App, id: &str, prompt: &str) -> Reply {
    let body = json!({"prompt": prompt, "temperature": 0, "max_tokens": 10}).to_string();
    app.call("POST", &format!("/v1/agents/{id}/generate"), &[("content-type", "application/json")], body).await
}

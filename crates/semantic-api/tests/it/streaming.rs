//! Streams under stress: a client that goes away cancels its generation; a failing engine ends
//! the stream with an error event, never a silent empty completion.

use std::time::Duration;

use axum::body::Body;
use http_body_util::BodyExt;
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{request, sse_events, App};

/// Letters forever, 2 ms per token, so a long request is still running when the test acts.
fn slow() -> FakeScript {
    FakeScript::from_fn(|history| {
        std::thread::sleep(Duration::from_millis(2));
        b'a' as i32 + (history.len() % 26) as i32
    })
}

fn chat(stream: bool, max_tokens: u32) -> String {
    json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": max_tokens, "stream": stream}).to_string()
}

#[tokio::test]
async fn a_client_that_disconnects_mid_stream_cancels_its_generation() {
    let app = App::with_script(slow());
    let response = app
        .send(request("POST", "/v1/chat/completions", &[("content-type", "application/json")], chat(true, 3000)))
        .await;
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut seen = String::new();
    while !seen.contains("\"content\":\"") || seen.matches("data:").count() < 3 {
        let frame = body.frame().await.expect("a frame").expect("no body error");
        if let Ok(data) = frame.into_data() {
            seen.push_str(&String::from_utf8_lossy(&data));
        }
    }
    assert_eq!(app.running_becomes(1).await, 1, "the stream is generating");
    drop(body); // the client goes away

    let follow_up =
        app.call("POST", "/v1/chat/completions", &[("content-type", "application/json")], chat(false, 3)).await;
    assert_eq!(follow_up.status, 200, "{}", follow_up.text());
    assert_eq!(app.running_becomes(0).await, 0, "the abandoned request was freed");
    let decoded: usize =
        app.control.lock().unwrap().batches.iter().map(|b| b.iter().map(|(_, n)| n).sum::<usize>()).sum();
    assert!(decoded < 1000, "generation stopped long before max_tokens: {decoded} tokens decoded");
}

#[tokio::test]
async fn an_engine_failure_mid_stream_ends_an_openai_stream_with_an_error() {
    let app = App::with_script(slow());
    let response = app
        .send(request("POST", "/v1/chat/completions", &[("content-type", "application/json")], chat(true, 500)))
        .await;
    let mut body = response.into_body();
    let mut text = String::new();
    while !text.contains("\"content\":\"") || text.matches("data:").count() < 3 {
        let frame = body.frame().await.expect("a frame").expect("no body error");
        text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap_or_default()));
    }
    app.control.lock().unwrap().fail_decodes = 1;
    let rest = body.collect().await.expect("body").to_bytes();
    text.push_str(&String::from_utf8_lossy(&rest));
    let events = sse_events(&text);
    let datas: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{text}");
    let error: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap_or_default();
    assert_eq!(error["error"]["type"], "server_error", "{text}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("generation failed")), "{error}");
    assert!(!text.contains("finish_reason\":\"stop"), "no normal finish after an error: {text}");
    assert!(!text.contains("finish_reason\":\"length"), "no normal finish after an error: {text}");
}

#[tokio::test]
async fn an_engine_failure_is_an_error_in_every_shape() {
    let app = App::new();
    let json_headers = [("content-type", "application/json")];
    app.control.lock().unwrap().fail_decodes = 1;
    let reply = app.call("POST", "/v1/chat/completions", &json_headers, chat(false, 5)).await;
    assert_eq!(reply.status, 500, "{}", reply.text());
    assert_eq!(reply.json()["error"]["type"], "server_error");

    app.control.lock().unwrap().fail_decodes = 1;
    let reply = app.call("POST", "/v1/chat/completions", &json_headers, chat(true, 5)).await;
    let data = reply.sse();
    assert_eq!(data.last().map(|(_, d)| d.as_str()), Some("[DONE]"));
    assert!(data.iter().any(|(_, d)| d.contains("\"error\"")), "{}", reply.text());

    let anthropic = json!({"max_tokens": 5, "messages": [{"role": "user", "content": "Hi"}]});
    app.control.lock().unwrap().fail_decodes = 1;
    let reply = app.post("/v1/messages", &anthropic).await;
    assert_eq!(reply.status, 500);
    assert_eq!(
        reply.json(),
        json!({"type": "error", "error": {"type": "api_error", "message": reply.json()["error"]["message"]}})
    );

    let mut streaming = anthropic.clone();
    streaming["stream"] = json!(true);
    app.control.lock().unwrap().fail_decodes = 1;
    let reply = app.post("/v1/messages", &streaming).await;
    let events = reply.sse();
    let (name, data) = events.last().cloned().unwrap_or_default();
    assert_eq!(name.as_deref(), Some("error"), "{}", reply.text());
    let error: Value = serde_json::from_str(&data).unwrap_or_default();
    assert_eq!(error["type"], "error");
    assert_eq!(error["error"]["type"], "api_error");
    assert!(!events.iter().any(|(n, _)| n.as_deref() == Some("message_stop")), "{}", reply.text());

    app.control.lock().unwrap().fail_decodes = 1;
    let reply = app.post("/v1/completions", &json!({"prompt": "x", "stream": true})).await;
    assert!(reply.sse().iter().any(|(_, d)| d.contains("\"error\"")), "{}", reply.text());

    let ok = app.call("POST", "/v1/chat/completions", &json_headers, chat(false, 5)).await;
    assert_eq!(ok.status, 200, "the server goes on: {}", ok.text());
    let _ = Body::empty();
}

/// Prints the API layer's own cost per request (parse, validate, template, tokenize, submit, first
/// SSE chunk out) over a fake engine whose steps take microseconds: an upper bound on the server
/// overhead added to the engine's time to first token. `cargo test --release -p semantic-api --test it
/// overhead -- --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "measurement, not a check"]
async fn overhead() {
    let app = App::new();
    let history: Vec<Value> = (0..10)
        .map(|i| json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": "word ".repeat(60)}))
        .collect();
    let body = json!({"messages": history, "max_tokens": 1, "stream": true, "agent_id": "bench"}).to_string();
    let mut samples = Vec::new();
    for _ in 0..200 {
        let started = std::time::Instant::now();
        let response = app
            .send(request("POST", "/v1/chat/completions", &[("content-type", "application/json")], body.clone()))
            .await;
        let mut body = response.into_body();
        let mut text = String::new();
        while !text.contains("\"content\":\"") || text.matches("data:").count() < 2 {
            let Some(Ok(frame)) = body.frame().await else { break };
            text.push_str(&String::from_utf8_lossy(&frame.into_data().unwrap_or_default()));
        }
        samples.push(started.elapsed().as_secs_f64() * 1e3);
        assert!(text.matches("chat.completion.chunk").count() >= 2 && !text.contains("error"), "{text}");
        let _ = body.collect().await;
    }
    samples.sort_by(f64::total_cmp);
    println!(
        "prompt {} bytes: first token chunk after p50 {:.2} ms, p90 {:.2} ms (fake engine)",
        body.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10]
    );
}

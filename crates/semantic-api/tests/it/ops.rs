//! The operations layer in-process: rate limits, the body size limit, CORS, the two timeouts and
//! the loading app. Timeouts use real (tiny) durations, not tokio's paused clock: the engine runs
//! on its own OS thread, and a paused clock jumps ahead whenever the runtime waits on that thread,
//! so a stalled stream and a slow but steady one would look the same.

use std::time::{Duration, Instant};

use axum::body::Body;
use http_body_util::BodyExt;
use semantic_api::{AuthConfig, RateLimitConfig, ServeOptions, Startup};
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{fake_model, options, request, sse_events, App, Gate, Reply};

const CHAT: &str = "/v1/chat/completions";
const MESSAGES: &str = "/v1/messages";
const JSON: (&str, &str) = ("content-type", "application/json");
const ALPHA: &str = "key-alpha-0001";
const BETA: &str = "key-beta-00002";

fn chat_body(stream: bool) -> String {
    json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": stream, "temperature": 0})
        .to_string()
}

fn messages_body(stream: bool) -> String {
    json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "stream": stream, "temperature": 0})
        .to_string()
}

fn with_auth(options: ServeOptions) -> ServeOptions {
    ServeOptions { auth: AuthConfig::new(&[ALPHA.into(), BETA.into()], None, true), ..options }
}

fn bearer(key: &str) -> String {
    format!("Bearer {key}")
}

fn retry_after(reply: &Reply) -> u64 {
    let value = reply.headers.get("retry-after").unwrap_or_else(|| panic!("no Retry-After: {}", reply.text()));
    value.to_str().ok().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("Retry-After {value:?}"))
}

fn header<'a>(reply: &'a Reply, name: &str) -> Option<&'a str> {
    reply.headers.get(name).and_then(|v| v.to_str().ok())
}

/// A counter or gauge from `/metrics`, by its full series name (with labels).
async fn metric(app: &App, series: &str) -> Option<u64> {
    let text = app.call("GET", "/metrics", &[], Body::empty()).await.text();
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// `semantic_requests_finished_total{reason="cancelled"}`, once it reads `want` (polled for up
/// to 5 s), else its last value.
async fn cancelled_becomes(app: &App, want: u64) -> Option<u64> {
    let mut last = None;
    for _ in 0..500 {
        last = metric(app, "semantic_requests_finished_total{reason=\"cancelled\"}").await;
        if last == Some(want) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    last
}

/// Per-caller limit: 2 requests, then one per 1000 s (so nothing refills during a test).
fn two_per_caller() -> RateLimitConfig {
    RateLimitConfig { per_key_rps: 0.001, per_key_burst: 2, ..RateLimitConfig::default() }
}

#[tokio::test]
async fn rate_limited_requests_get_429_with_retry_after_in_each_api_shape() {
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { rate_limit: two_per_caller(), ..options() });
    for _ in 0..2 {
        assert_eq!(app.call("GET", "/v1/models", &[], Body::empty()).await.status, 200);
    }
    let openai = app.call("POST", CHAT, &[JSON], chat_body(false)).await;
    assert_eq!(openai.status, 429, "{}", openai.text());
    let error = openai.json();
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert_eq!(error["error"]["code"], "rate_limit_exceeded", "{error}");
    assert!((1..=1000).contains(&retry_after(&openai)), "whole seconds until the next token");
    assert!(header(&openai, "x-request-id").is_some(), "a 429 still gets a request id");

    let anthropic = app.call("POST", MESSAGES, &[JSON], messages_body(false)).await;
    assert_eq!(anthropic.status, 429, "{}", anthropic.text());
    let error = anthropic.json();
    assert_eq!(error["type"], "error", "{error}");
    assert_eq!(error["error"]["type"], "rate_limit_error", "{error}");
    assert!((1..=1000).contains(&retry_after(&anthropic)));

    let rejected = metric(&app, "semantic_rejections_total{reason=\"rate_limited\"}").await;
    assert_eq!(rejected, Some(2), "rate-limit refusals are counted by reason");
}

#[tokio::test]
async fn health_probes_and_metrics_are_never_rate_limited() {
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { rate_limit: two_per_caller(), ..options() });
    for _ in 0..3 {
        app.call("GET", "/v1/models", &[], Body::empty()).await;
    }
    assert_eq!(app.call("GET", "/v1/models", &[], Body::empty()).await.status, 429, "the bucket is empty");
    for _ in 0..5 {
        for path in ["/health", "/health/live", "/health/startup", "/health/ready", "/metrics"] {
            assert_eq!(app.call("GET", path, &[], Body::empty()).await.status, 200, "{path}");
        }
    }
}

/// Every exported family has one HELP and one TYPE line, and every sample follows its own family's.
#[tokio::test]
async fn every_metric_family_is_declared_once_before_its_samples() {
    let app = App::with_script(FakeScript::reply("ok"));
    app.call("POST", CHAT, &[JSON], chat_body(false)).await;
    let text = app.call("GET", "/metrics", &[], Body::empty()).await.text();
    for family in semantic_api::metrics::FAMILIES {
        for kind in ["HELP", "TYPE"] {
            let prefix = format!("# {kind} {} ", family.name);
            assert_eq!(text.lines().filter(|l| l.starts_with(&prefix)).count(), 1, "{prefix}");
        }
    }
    let mut current = "";
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# TYPE ") {
            current = rest.split(' ').next().unwrap_or_default();
        } else if !line.starts_with('#') {
            let name = line.split(['{', ' ']).next().unwrap_or_default();
            let base = ["_bucket", "_sum", "_count"].iter().fold(name, |n, s| n.strip_suffix(s).unwrap_or(n));
            assert!(name == current || base == current, "{line} after # TYPE {current}");
        }
    }
}

#[tokio::test]
async fn each_api_key_has_its_own_bucket_and_unauthenticated_callers_share_one() {
    let limit = RateLimitConfig { per_key_rps: 0.001, per_key_burst: 1, ..RateLimitConfig::default() };
    let app = App::with_options(FakeScript::reply("ok"), with_auth(ServeOptions { rate_limit: limit, ..options() }));
    let models = |key: Option<&'static str>| {
        let app = app.clone();
        async move {
            let auth = key.map(bearer);
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("authorization", a.as_str())).collect();
            app.call("GET", "/v1/models", &headers, Body::empty()).await.status
        }
    };
    assert_eq!(models(Some(ALPHA)).await, 200);
    assert_eq!(models(Some(ALPHA)).await, 429, "alpha's bucket is empty");
    assert_eq!(models(Some(BETA)).await, 200, "beta has a bucket of its own");
    assert_eq!(models(None).await, 401, "no key: the anonymous bucket pays, auth refuses");
    assert_eq!(models(Some("not-a-key-123")).await, 429, "a wrong key draws from the same anonymous bucket");
    assert_eq!(models(Some("another-wrong-key")).await, 429, "random keys get no bucket of their own");
}

#[tokio::test]
async fn the_global_limit_caps_every_caller_together() {
    let limit = RateLimitConfig { global_rps: 0.001, global_burst: 2, ..RateLimitConfig::default() };
    let app = App::with_options(FakeScript::reply("ok"), with_auth(ServeOptions { rate_limit: limit, ..options() }));
    for (key, want) in [(ALPHA, 200), (BETA, 200), (ALPHA, 429), (BETA, 429)] {
        let auth = bearer(key);
        let reply = app.call("GET", "/v1/models", &[("authorization", &auth)], Body::empty()).await;
        assert_eq!(reply.status, want, "{key}: {}", reply.text());
        if want == 429 {
            assert!(
                reply.json()["error"]["message"].as_str().is_some_and(|m| m.contains("server")),
                "{}",
                reply.text()
            );
        }
    }
}

#[tokio::test]
async fn bodies_over_max_body_bytes_get_413_in_each_api_shape() {
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { max_body_bytes: 1024, ..options() });
    let big = "x".repeat(2000);
    let openai = app
        .call(
            "POST",
            CHAT,
            &[JSON],
            json!({"messages": [{"role": "user", "content": big}], "max_tokens": 4}).to_string(),
        )
        .await;
    assert_eq!(openai.status, 413, "{}", openai.text());
    assert_eq!(openai.json()["error"]["type"], "invalid_request_error");
    let anthropic = app
        .call(
            "POST",
            MESSAGES,
            &[JSON],
            json!({"messages": [{"role": "user", "content": big}], "max_tokens": 4}).to_string(),
        )
        .await;
    assert_eq!(anthropic.status, 413, "{}", anthropic.text());
    assert_eq!(anthropic.json()["error"]["type"], "request_too_large");
    assert_eq!(anthropic.json()["type"], "error");
    let small = app.call("POST", CHAT, &[JSON], chat_body(false)).await;
    assert_eq!(small.status, 200, "a body under the limit is served: {}", small.text());
}

fn preflight(origin: &str, path: &str) -> axum::http::Request<Body> {
    request(
        "OPTIONS",
        path,
        &[
            ("origin", origin),
            ("access-control-request-method", "POST"),
            ("access-control-request-headers", "authorization, content-type, x-stainless-os"),
        ],
        Body::empty(),
    )
}

async fn reply(app: &App, request: axum::http::Request<Body>) -> Reply {
    let response = app.send(request).await;
    let status = response.status();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.expect("body").to_bytes();
    Reply { status, headers, body }
}

#[tokio::test]
async fn cors_preflight_succeeds_without_an_api_key_when_auth_is_on() {
    let origin = "https://app.example";
    let app = App::with_options(
        FakeScript::reply("ok"),
        with_auth(ServeOptions { cors_origins: vec![origin.into()], ..options() }),
    );
    for path in [CHAT, MESSAGES, "/v1/models"] {
        let pre = reply(&app, preflight(origin, path)).await;
        assert_eq!(pre.status, 204, "{path}: {}", pre.text());
        assert_eq!(header(&pre, "access-control-allow-origin"), Some(origin));
        let methods = header(&pre, "access-control-allow-methods").unwrap_or_default();
        assert!(methods.contains("POST") && methods.contains("GET"), "{methods}");
        let allowed: Vec<String> = header(&pre, "access-control-allow-headers")
            .unwrap_or_default()
            .split(',')
            .map(|h| h.trim().to_ascii_lowercase())
            .collect();
        for name in [
            "authorization",
            "x-api-key",
            "content-type",
            "x-agent-id",
            "x-request-id",
            "anthropic-version",
            "x-stainless-os",
        ] {
            assert!(allowed.iter().any(|h| h == name), "{name} not in {allowed:?}");
        }
    }
    let auth = bearer(ALPHA);
    let ok = app.call("POST", CHAT, &[JSON, ("origin", origin), ("authorization", &auth)], chat_body(false)).await;
    assert_eq!(ok.status, 200, "{}", ok.text());
    assert_eq!(header(&ok, "access-control-allow-origin"), Some(origin));
    assert!(header(&ok, "access-control-expose-headers").is_some_and(|h| h.contains("x-request-id")));
    assert!(header(&ok, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")));
    let denied = app.call("POST", CHAT, &[JSON, ("origin", origin)], chat_body(false)).await;
    assert_eq!(denied.status, 401, "only the preflight skips auth");
    assert_eq!(header(&denied, "access-control-allow-origin"), Some(origin), "so the page can read its 401");
}

#[tokio::test]
async fn cors_answers_only_the_configured_origins() {
    let app = App::with_options(
        FakeScript::reply("ok"),
        ServeOptions { cors_origins: vec!["https://app.example".into()], ..options() },
    );
    let pre = reply(&app, preflight("https://evil.example", CHAT)).await;
    assert_eq!(pre.status, 403, "{}", pre.text());
    assert_eq!(pre.json()["error"]["code"], "cors_origin_not_allowed");
    assert!(header(&pre, "access-control-allow-origin").is_none());
    let actual = app.call("GET", "/v1/models", &[("origin", "https://evil.example")], Body::empty()).await;
    assert_eq!(actual.status, 200);
    assert!(header(&actual, "access-control-allow-origin").is_none(), "the browser will not hand it to the page");

    let any = App::with_options(FakeScript::reply("ok"), ServeOptions { cors_origins: vec!["*".into()], ..options() });
    let pre = reply(&any, preflight("https://anywhere.example", MESSAGES)).await;
    assert_eq!(pre.status, 204);
    assert_eq!(header(&pre, "access-control-allow-origin"), Some("*"));
    let actual = any.call("GET", "/v1/models", &[("origin", "https://anywhere.example")], Body::empty()).await;
    assert_eq!(header(&actual, "access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn no_cors_headers_at_all_when_no_origin_is_configured() {
    let app = App::with_script(FakeScript::reply("ok"));
    let pre = reply(&app, preflight("https://app.example", CHAT)).await;
    assert_eq!(pre.status, 405, "no CORS: OPTIONS is just a method the route does not have");
    let actual = app.call("GET", "/v1/models", &[("origin", "https://app.example")], Body::empty()).await;
    assert_eq!(actual.status, 200);
    for reply in [&pre, &actual] {
        let cors: Vec<_> = reply.headers.keys().filter(|k| k.as_str().starts_with("access-control-")).collect();
        assert!(cors.is_empty(), "{cors:?}");
    }
}

/// A stream whose engine produces nothing: after the idle timeout the stream ends with an error
/// event in its API's streaming format, and the sequence is cancelled.
async fn stalled_stream(path: &str, body: String) -> (Vec<(Option<String>, String)>, Duration) {
    let gate = Gate::closed();
    let idle = Duration::from_millis(200);
    let app = App::with_options(gate.script(), ServeOptions { stream_idle_timeout: idle, ..options() });
    let response = app.send(request("POST", path, &[JSON], body)).await;
    assert_eq!(response.status(), 200);
    assert_eq!(app.running_becomes(1).await, 1, "the request is on the engine, which is stuck");
    let started = Instant::now();
    let body = tokio::time::timeout(Duration::from_secs(30), response.into_body().collect())
        .await
        .expect("the idle timeout ends the stream")
        .expect("body")
        .to_bytes();
    let waited = started.elapsed();
    assert!(waited >= idle, "ended after {waited:?}, before the idle timeout");
    gate.open();
    assert_eq!(cancelled_becomes(&app, 1).await, Some(1), "the stalled sequence was cancelled");
    (sse_events(&String::from_utf8_lossy(&body)), waited)
}

#[tokio::test]
async fn a_stalled_openai_stream_ends_with_an_idle_timeout_error_and_is_cancelled() {
    let (events, _) = stalled_stream(CHAT, chat_body(true)).await;
    let datas: Vec<&str> = events.iter().map(|(_, d)| d.as_str()).collect();
    assert_eq!(datas.last(), Some(&"[DONE]"), "{datas:?}");
    let error: Value = serde_json::from_str(datas[datas.len() - 2]).unwrap_or_default();
    assert_eq!(error["error"]["type"], "server_error", "{datas:?}");
    assert_eq!(error["error"]["code"], "stream_idle_timeout", "{datas:?}");
    assert!(!datas.iter().any(|d| d.contains("finish_reason\":\"")), "no normal finish: {datas:?}");
}

#[tokio::test]
async fn a_stalled_anthropic_stream_ends_with_an_idle_timeout_error_event_and_is_cancelled() {
    let (events, _) = stalled_stream(MESSAGES, messages_body(true)).await;
    let (name, data) = events.last().expect("events");
    assert_eq!(name.as_deref(), Some("error"), "{events:?}");
    let error: Value = serde_json::from_str(data).unwrap_or_default();
    assert_eq!(error["type"], "error", "{data}");
    assert_eq!(error["error"]["type"], "timeout_error", "{data}");
    assert!(!events.iter().any(|(name, _)| name.as_deref() == Some("message_stop")), "{events:?}");
}

#[tokio::test]
async fn a_stream_that_keeps_producing_is_not_cut_by_the_idle_timeout() {
    // 10 ms per token, 80 tokens: the stream lasts longer than the idle timeout, no gap comes near it.
    let steady = FakeScript::from_fn(|history| {
        std::thread::sleep(Duration::from_millis(10));
        b'a' as i32 + (history.len() % 26) as i32
    });
    let idle = Duration::from_millis(500);
    let app = App::with_options(steady, ServeOptions { stream_idle_timeout: idle, ..options() });
    let started = Instant::now();
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 80, "stream": true});
    let reply = app.call("POST", CHAT, &[JSON], body.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert!(started.elapsed() > idle, "the test needs a stream longer than the idle timeout: {}", reply.text());
    let chunks = reply.sse_json();
    assert_eq!(chunks.last().map(|c| c["choices"][0]["finish_reason"].clone()), Some(json!("length")), "{chunks:?}");
    assert!(!reply.text().contains("\"error\""), "{}", reply.text());
}

/// A non-streaming request whose engine produces nothing gets a 504 after the request timeout,
/// in its API's shape, and its sequence is cancelled.
async fn stalled_request(path: &str, body: String) -> Value {
    let gate = Gate::closed();
    let limit = Duration::from_millis(200);
    let app = App::with_options(gate.script(), ServeOptions { request_timeout: limit, ..options() });
    let call = tokio::spawn({
        let app = app.clone();
        let path = path.to_owned();
        async move { app.call("POST", &path, &[JSON], body).await }
    });
    assert_eq!(app.running_becomes(1).await, 1, "the request is on the engine, which is stuck");
    let reply = tokio::time::timeout(Duration::from_secs(30), call)
        .await
        .expect("the request timeout ends the request")
        .expect("the call task");
    assert_eq!(reply.status, 504, "{}", reply.text());
    gate.open();
    assert_eq!(cancelled_becomes(&app, 1).await, Some(1), "the timed-out sequence was cancelled");
    reply.json()
}

#[tokio::test]
async fn a_non_streaming_request_past_the_request_timeout_gets_504_and_is_cancelled() {
    let openai = stalled_request(CHAT, chat_body(false)).await;
    assert_eq!(openai["error"]["type"], "server_error", "{openai}");
    assert_eq!(openai["error"]["code"], "request_timeout", "{openai}");
    let anthropic = stalled_request(MESSAGES, messages_body(false)).await;
    assert_eq!(anthropic["type"], "error", "{anthropic}");
    assert_eq!(anthropic["error"]["type"], "timeout_error", "{anthropic}");
}

#[tokio::test]
async fn while_loading_only_liveness_is_ok_then_the_real_router_takes_over() {
    let startup = Startup::new(options(), None);
    let (scheduler, template, control) = fake_model(FakeScript::reply("hello"));
    let app = App::from_router(startup.router(), control);
    assert_eq!(app.call("GET", "/health/live", &[], Body::empty()).await.status, 200);
    for path in ["/health/startup", "/health/ready", "/health"] {
        let probe = app.call("GET", path, &[], Body::empty()).await;
        assert_eq!(probe.status, 503, "{path}");
        assert_eq!(probe.json(), json!({"status": "loading", "reason": "loading"}), "{path}");
        assert!(retry_after(&probe) >= 1);
    }
    let openai = app.call("POST", CHAT, &[JSON], chat_body(false)).await;
    assert_eq!(openai.status, 503);
    assert_eq!(openai.json()["error"]["type"], "service_unavailable");
    assert_eq!(openai.json()["error"]["code"], "loading");
    assert!(retry_after(&openai) >= 1);
    assert!(header(&openai, "x-request-id").is_some(), "the loading app has the same middleware stack");
    let anthropic = app.call("POST", MESSAGES, &[JSON], messages_body(false)).await;
    assert_eq!(anthropic.status, 503);
    assert_eq!(anthropic.json()["error"]["type"], "overloaded_error");
    assert!(retry_after(&anthropic) >= 1);
    assert_eq!(app.call("GET", "/metrics", &[], Body::empty()).await.status, 503);
    assert!(!startup.is_ready());

    startup.ready(String::new(), scheduler, template);
    assert!(startup.is_ready());
    let probe = app.call("GET", "/health/startup", &[], Body::empty()).await;
    assert_eq!(probe.status, 200);
    assert_eq!(probe.json()["model"], crate::harness::MODEL);
    assert_eq!(app.call("GET", "/health/ready", &[], Body::empty()).await.status, 200);
    let chat = app.call("POST", CHAT, &[JSON], chat_body(false)).await;
    assert_eq!(chat.status, 200, "{}", chat.text());
    assert_eq!(chat.json()["choices"][0]["message"]["content"], "hello");
    let loading_probes = metric(&app, "semantic_http_requests_total{route=\"/health/startup\",status=\"503\"}").await;
    assert_eq!(loading_probes, Some(1), "requests served while loading count in the same metrics");
}

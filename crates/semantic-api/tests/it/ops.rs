//! The operations layer in-process: rate limits.

use axum::body::Body;
use semantic_api::{AuthConfig, RateLimitConfig, ServeOptions};
use semantic_engine::FakeScript;
use serde_json::json;

use crate::harness::{options, App, Reply};

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

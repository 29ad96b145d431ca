//! The built-in web page (`ui.rs`): `/` redirects, the shell and its deep links, typed assets,
//! no key needed for any of it (the API calls it makes still need one), 404 for the unknown.

use axum::body::Body;
use semantic_api::{AuthConfig, RateLimitConfig, ServeOptions, Startup, UI_PAGES};
use semantic_engine::FakeScript;
use serde_json::json;

use crate::harness::{fake_model, options, App, Reply};

const KEY: &str = "key-ui-test-0001";

/// A server with API keys, an admin key and a one-request rate limit: the page must load anyway.
fn locked() -> App {
    let options = ServeOptions {
        auth: AuthConfig::new(&[KEY.into()], Some("admin-ui-0001"), false),
        rate_limit: RateLimitConfig { per_key_rps: 0.001, per_key_burst: 1, ..RateLimitConfig::default() },
        ..options()
    };
    App::with_options(FakeScript::reply("hi"), options)
}

fn header<'a>(reply: &'a Reply, name: &str) -> &'a str {
    reply.headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

async fn get(app: &App, path: &str) -> Reply {
    app.call("GET", path, &[], Body::empty()).await
}

#[tokio::test]
async fn root_redirects_to_the_page() {
    let app = App::new();
    for path in ["/", "/ui"] {
        let reply = get(&app, path).await;
        assert_eq!(reply.status, 307, "{path}");
        assert_eq!(header(&reply, "location"), "/ui/", "{path}");
    }
}

#[tokio::test]
async fn the_shell_and_every_deep_link_serve_the_same_html_without_a_key() {
    let app = locked();
    let shell = get(&app, "/ui/").await;
    assert_eq!(shell.status, 200);
    assert_eq!(header(&shell, "content-type"), "text/html; charset=utf-8");
    assert!(header(&shell, "content-security-policy").contains("default-src 'self'"));
    let html = shell.text();
    assert!(html.contains(r#"<script type="module" src="/ui/assets/js/main.js">"#), "{html}");
    for page in UI_PAGES {
        let reply = get(&app, &format!("/ui/{page}")).await;
        assert_eq!(reply.status, 200, "{page}");
        assert_eq!(reply.text(), html, "/ui/{page} serves the shell");
    }
    // The API itself still wants the key.
    assert_eq!(get(&app, "/v1/agents").await.status, 401);
}

#[tokio::test]
async fn assets_come_with_their_types() {
    let app = locked();
    for (path, content_type) in [
        ("/ui/assets/app.css", "text/css; charset=utf-8"),
        ("/ui/assets/js/main.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/js/chat.js", "text/javascript; charset=utf-8"),
        ("/ui/assets/scenarios/tiny.yaml", "application/yaml; charset=utf-8"),
        ("/ui/assets/scenarios.json", "application/json"),
    ] {
        let reply = get(&app, path).await;
        assert_eq!(reply.status, 200, "{path}");
        assert_eq!(header(&reply, "content-type"), content_type, "{path}");
        assert_eq!(header(&reply, "x-content-type-options"), if path.ends_with(".json") { "" } else { "nosniff" });
        assert!(!reply.body.is_empty(), "{path}");
    }
    let names = get(&app, "/ui/assets/scenarios.json").await.json();
    assert!(names.as_array().is_some_and(|n| n.contains(&json!("tiny"))), "{names}");
}

#[tokio::test]
async fn unknown_pages_and_assets_are_404() {
    let app = App::new();
    for path in ["/ui/nope", "/ui/assets/js/nope.js", "/ui/assets/../Cargo.toml", "/ui/chat/extra"] {
        assert_eq!(get(&app, path).await.status, 404, "{path}");
    }
}

#[tokio::test]
async fn the_page_opens_while_the_model_loads() {
    let startup = Startup::new(options(), None);
    let (_scheduler, _template, control) = fake_model(FakeScript::reply("hi"));
    let app = App::from_router(startup.router(), control);
    assert_eq!(get(&app, "/ui/chat").await.status, 200);
    assert_eq!(get(&app, "/ui/assets/js/main.js").await.status, 200);
    assert_eq!(get(&app, "/v1/models").await.status, 503);
}

#[tokio::test]
async fn streamed_usage_says_where_reused_kv_came_from() {
    let app = App::replying("hello there");
    let body = |turns: &[&str]| {
        let mut messages =
            vec![json!({"role": "system", "content": "You are a test agent with a long system prompt."})];
        for (i, t) in turns.iter().enumerate() {
            messages.push(json!({"role": if i % 2 == 0 { "user" } else { "assistant" }, "content": t}));
        }
        json!({"messages": messages, "agent_id": "ui-agent", "stream": true, "stream_options": {"include_usage": true}})
    };
    let usage = |reply: Reply| {
        let text = reply.text();
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter_map(|d| serde_json::from_str::<serde_json::Value>(d).ok())
            .find(|v| v["usage"].is_object())
            .unwrap_or_else(|| panic!("no usage chunk: {text}"));
        last["usage"]["prompt_tokens_details"].clone()
    };
    let first = usage(app.post("/v1/chat/completions", &body(&["hi"])).await);
    assert_eq!(first["cache_source"], serde_json::Value::Null, "{first}");
    let second = usage(app.post("/v1/chat/completions", &body(&["hi", "hello there", "again"])).await);
    assert!(second["cached_tokens"].as_u64().unwrap_or(0) > 0, "{second}");
    assert_eq!(second["cache_source"], "hot", "{second}");
}

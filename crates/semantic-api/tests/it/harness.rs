//! An app over a `FakeEngine`, and helpers to call it and read JSON and SSE bodies.

use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::http::{HeaderMap, Request, StatusCode};
use axum::Router;
use http_body_util::BodyExt;
use semantic_api::{AppState, ServeOptions};
use semantic_chat::ChatTemplate;
use semantic_engine::{FakeControl, FakeEngine, FakeScript};
use semantic_scheduler::{Scheduler, SchedulerConfig};
use serde_json::Value;
use tower::ServiceExt;

/// The model name the app reports.
pub const MODEL: &str = "fake-model";

#[derive(Clone)]
pub struct App {
    pub router: Router,
    pub control: Arc<Mutex<FakeControl>>,
}

impl App {
    /// Replies with pseudo-random letters forever (until `max_tokens`).
    pub fn new() -> Self {
        Self::with_script(FakeScript::hash())
    }

    /// Replies `text`, then ends the turn.
    pub fn replying(text: &str) -> Self {
        Self::with_script(FakeScript::reply(text))
    }

    pub fn with_script(script: FakeScript) -> Self {
        Self::with_options(script, options())
    }

    /// An app with its own options (start from [`options`]).
    pub fn with_options(script: FakeScript, options: ServeOptions) -> Self {
        let (scheduler, template, control) = fake_model(script);
        let router = semantic_api::router(AppState::new(scheduler, template, options));
        App { router, control }
    }

    /// An app whose model "loaded" when `startup` was made ready; the router is the one `serve`
    /// serves.
    pub fn from_router(router: Router, control: Arc<Mutex<FakeControl>>) -> Self {
        App { router, control }
    }

    pub async fn send(&self, request: Request<Body>) -> axum::response::Response {
        self.router.clone().oneshot(request).await.expect("infallible")
    }

    /// One request; the whole body.
    pub async fn call(&self, method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Reply {
        let response = self.send(request(method, path, headers, body)).await;
        let status = response.status();
        let headers = response.headers().clone();
        let body = response.into_body().collect().await.expect("body").to_bytes();
        Reply { status, headers, body }
    }

    /// POSTs JSON. Greedy unless the body sets `temperature`: the fake engine's logits favour the
    /// scripted token but leave others a small chance.
    pub async fn post(&self, path: &str, body: &Value) -> Reply {
        let mut body = body.clone();
        if let Some(map) = body.as_object_mut().filter(|m| m.contains_key("messages") || m.contains_key("prompt")) {
            map.entry("temperature").or_insert(Value::from(0));
        }
        self.call("POST", path, &[("content-type", "application/json")], body.to_string()).await
    }

    /// `/health`'s `running`, once it reads `want` (polled for up to 2 s), else its last value.
    pub async fn running_becomes(&self, want: u64) -> u64 {
        let mut running = u64::MAX;
        for _ in 0..200 {
            running =
                self.call("GET", "/health", &[], Body::empty()).await.json()["running"].as_u64().unwrap_or(u64::MAX);
            if running == want {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        running
    }
}

/// A gate in front of the fake engine: while it is closed every decode blocks, so no token comes
/// out. Opens when dropped, so a failing test does not leave the step thread stuck.
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn closed() -> Self {
        Gate(Arc::default())
    }

    /// Letters, each only once the gate is open.
    pub fn script(&self) -> FakeScript {
        let gate = Arc::clone(&self.0);
        FakeScript::from_fn(move |history| {
            let (open, changed) = &*gate;
            let mut open = open.lock().unwrap_or_else(|p| p.into_inner());
            while !*open {
                open = changed.wait(open).unwrap_or_else(|p| p.into_inner());
            }
            b'a' as i32 + (history.len() % 26) as i32
        })
    }

    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap_or_else(|p| p.into_inner()) = true;
        changed.notify_all();
    }
}

impl Drop for Gate {
    fn drop(&mut self) {
        self.open();
    }
}

/// The options every test app starts from.
pub fn options() -> ServeOptions {
    ServeOptions { model_name: MODEL.into(), default_max_tokens: 32, ..ServeOptions::default() }
}

/// A scheduler over a `FakeEngine` running `script`, the fake's chat template, and the engine's
/// control block.
pub fn fake_model(script: FakeScript) -> (Scheduler, ChatTemplate, Arc<Mutex<FakeControl>>) {
    let engine = FakeEngine::new(4096, 512, 8).with_script(script);
    let control = engine.control();
    let scheduler = Scheduler::start(engine, SchedulerConfig::default()).expect("start the step thread");
    let facts = scheduler.facts().clone();
    let template =
        ChatTemplate::new(facts.chat_template.as_deref().expect("fake template"), &facts.bos_text, &facts.eos_text)
            .expect("compile the fake template");
    (scheduler, template, control)
}

/// A script that replies `reply` then ends the turn, and records the prompt of the first request
/// it serves (as text, special tokens spelled out).
pub fn recording(reply: &str) -> (FakeScript, Arc<Mutex<Option<String>>>) {
    const EOS: i32 = 257;
    let prompt: Arc<Mutex<Option<String>>> = Arc::default();
    let seen = Arc::clone(&prompt);
    let bytes: Vec<i32> = reply.bytes().map(i32::from).collect();
    let script = FakeScript::from_fn(move |history| {
        let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
        let done = (0..=bytes.len()).rev().find(|&n| history.ends_with(&bytes[..n])).unwrap_or(0);
        if seen.is_none() {
            *seen = Some(decode(history));
        }
        bytes.get(done).copied().unwrap_or(EOS)
    });
    (script, prompt)
}

/// The fake tokenizer's ids back to text.
pub fn decode(tokens: &[i32]) -> String {
    let mut bytes = Vec::new();
    for &t in tokens {
        match t {
            0..=255 => bytes.push(t as u8),
            256 => bytes.extend_from_slice(b"<s>"),
            257 => bytes.extend_from_slice(b"</s>"),
            258 => bytes.extend_from_slice(b"<|im_start|>"),
            259 => bytes.extend_from_slice(b"<|im_end|>"),
            _ => {}
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

pub fn request(method: &str, path: &str, headers: &[(&str, &str)], body: impl Into<Body>) -> Request<Body> {
    let mut builder = Request::builder().method(method).uri(path);
    for (k, v) in headers {
        builder = builder.header(*k, *v);
    }
    builder.body(body.into()).expect("valid request")
}

pub struct Reply {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// `(event name, data)` of each SSE event; comments and keep-alives skipped.
    pub fn sse(&self) -> Vec<(Option<String>, String)> {
        sse_events(&self.text())
    }

    /// The JSON `data:` of each SSE event (`[DONE]` left out).
    pub fn sse_json(&self) -> Vec<Value> {
        self.sse()
            .into_iter()
            .filter(|(_, d)| d != "[DONE]")
            .map(|(_, d)| serde_json::from_str(&d).unwrap_or_else(|e| panic!("bad SSE data ({e}): {d}")))
            .collect()
    }
}

pub fn sse_events(text: &str) -> Vec<(Option<String>, String)> {
    text.split("\n\n")
        .filter_map(|block| {
            let mut event = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(v) = line.strip_prefix("event: ").or_else(|| line.strip_prefix("event:")) {
                    event = Some(v.to_owned());
                } else if let Some(v) = line.strip_prefix("data: ").or_else(|| line.strip_prefix("data:")) {
                    data.push(v.to_owned());
                }
            }
            (!data.is_empty()).then(|| (event, data.join("\n")))
        })
        .collect()
}

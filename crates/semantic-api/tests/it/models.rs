//! Model management over fake models: the registry in `/v1/models`, hot swap (drain, unload,
//! load), rollback when the new model fails to load, refusals (unknown id, broken file, a second
//! swap, no admin key), requests during a swap (503 + Retry-After), offload and loading again.

use std::path::PathBuf;
use std::sync::{mpsc, Arc, Condvar, Mutex};

use axum::body::Body;
use semantic_api::{AuthConfig, ModelHost, ServeOptions, Startup, StoredAgent};
use semantic_chat::ChatTemplate;
use semantic_engine::{FakeScript, GgufInfo, ModelEntry, ModelRegistry};
use semantic_memory::{AgentId, Namespace, SnapshotHeader};
use semantic_scheduler::Scheduler;
use serde_json::{json, Value};

use crate::harness::{fake_model, options, App, Reply};

const ADMIN: (&str, &str) = ("x-admin-key", "root-key-123");
const JSON: (&str, &str) = ("content-type", "application/json");

/// Models `alpha` and `beta` (each answers "I am <id>"), `crash` (a valid header whose load
/// fails) and `broken` (not a GGUF). A load can be held until the test releases it.
#[derive(Default)]
struct FakeHost {
    loads: Mutex<Vec<String>>,
    hold: Mutex<Option<mpsc::Receiver<()>>>,
    /// While true, a "go on" request's decode steps wait (the request stays running).
    blocked: Arc<(Mutex<bool>, Condvar)>,
}

impl FakeHost {
    fn loads(&self) -> Vec<String> {
        self.loads.lock().unwrap().clone()
    }

    fn block_long_requests(&self, blocked: bool) {
        let (flag, changed) = &*self.blocked;
        *flag.lock().unwrap() = blocked;
        changed.notify_all();
    }

    /// The next load waits until the returned sender sends (or is dropped).
    fn hold_next_load(&self) -> mpsc::Sender<()> {
        let (release, held) = mpsc::channel();
        *self.hold.lock().unwrap() = Some(held);
        release
    }
}

fn entry(id: &str, info: Result<GgufInfo, String>) -> ModelEntry {
    ModelEntry {
        id: id.into(),
        aliases: Vec::new(),
        path: PathBuf::from(format!("/models/{id}.gguf")),
        size_bytes: 1000,
        info,
        fingerprint: None,
    }
}

impl ModelHost for FakeHost {
    fn registry(&self) -> ModelRegistry {
        let ok = |arch: &str| Ok(GgufInfo { architecture: arch.into(), version: 3, ..GgufInfo::default() });
        ModelRegistry {
            dir: PathBuf::from("/models"),
            entries: vec![
                entry("alpha", ok("llama")),
                entry("beta", ok("gemma3")),
                entry("broken", Err("not a GGUF file (bad magic)".into())),
                entry("crash", ok("llama")),
            ],
        }
    }

    fn stored_agents(&self, namespace: &Namespace, except: &[u8; 32]) -> Vec<StoredAgent> {
        let header = SnapshotHeader {
            namespace: namespace.clone(),
            agent: AgentId::parse("made-by-beta").unwrap(),
            fingerprint: [9; 32],
            state_layout: 0,
            n_ctx: 512,
            tokens: vec![1, 2, 3],
            created_ms: 1_000,
            updated_ms: 2_000,
            pinned: true,
            payload_len: 0,
            header_crc: 0,
            encrypted: false,
        };
        assert_ne!(&header.fingerprint, except, "the serving model's agents come from the scheduler");
        vec![StoredAgent { model: "beta".into(), header, file_bytes: 4321 }]
    }

    fn load(&self, id: &str) -> Result<(Scheduler, ChatTemplate), String> {
        self.loads.lock().unwrap().push(id.to_owned());
        if id == "crash" {
            return Err("tensor 'blk.0.attn_q.weight' data is not within the file bounds".into());
        }
        let held = self.hold.lock().unwrap().take();
        if let Some(held) = held {
            let _ = held.recv();
        }
        let (scheduler, template, _) = fake_model(script(id, Arc::clone(&self.blocked)));
        Ok((scheduler, template))
    }
}

/// Answers "I am <id>", except to a prompt holding "go on", which it continues forever (each
/// step waiting while `blocked` is set).
fn script(id: &str, blocked: Arc<(Mutex<bool>, Condvar)>) -> FakeScript {
    let reply: Vec<i32> = format!("I am {id}").bytes().map(i32::from).collect();
    let go_on: Vec<i32> = b"go on".iter().map(|&b| i32::from(b)).collect();
    FakeScript::from_fn(move |history| {
        if history.windows(go_on.len()).any(|w| w == go_on.as_slice()) {
            let (flag, changed) = &*blocked;
            let mut flag = flag.lock().unwrap_or_else(|p| p.into_inner());
            while *flag {
                flag = changed.wait(flag).unwrap_or_else(|p| p.into_inner());
            }
            return i32::from(b'x');
        }
        let done = (0..=reply.len()).rev().find(|&n| history.ends_with(&reply[..n])).unwrap_or(0);
        reply.get(done).copied().unwrap_or(semantic_engine::FakeEngine::EOS)
    })
}

/// A server with the admin key set, serving `alpha`.
fn server() -> (App, Arc<FakeHost>, Startup) {
    server_with(ServeOptions { auth: AuthConfig::new(&[], Some(ADMIN.1), true), ..options() })
}

/// A server with `options`, serving `alpha`.
fn server_with(options: ServeOptions) -> (App, Arc<FakeHost>, Startup) {
    let host = Arc::new(FakeHost::default());
    let startup = Startup::new(options, Some(host.clone() as Arc<dyn ModelHost>));
    let (scheduler, template) = host.load("alpha").expect("alpha loads");
    startup.ready("alpha".into(), scheduler, template);
    let (_, _, control) = fake_model(FakeScript::hash());
    (App::from_router(startup.router(), control), host, startup)
}

async fn answer(app: &App) -> Reply {
    app.post("/v1/chat/completions", &json!({"messages": [{"role": "user", "content": "who are you?"}]})).await
}

async fn content(app: &App) -> String {
    let reply = answer(app).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned()
}

async fn swap(app: &App, body: Value) -> Reply {
    app.call("POST", "/admin/models/swap", &[ADMIN, JSON], body.to_string()).await
}

async fn current(app: &App) -> Value {
    app.call("GET", "/admin/models/current", &[ADMIN], Body::empty()).await.json()
}

async fn swaps(app: &App, result: &str) -> Option<u64> {
    let text = app.call("GET", "/metrics", &[], Body::empty()).await.text();
    let series = format!("semantic_model_swaps_total{{result=\"{result}\"}}");
    text.lines().find_map(|l| l.strip_prefix(series.as_str())?.trim().parse().ok())
}

#[tokio::test]
async fn a_swap_serves_the_new_model_and_the_registry_lists_both() {
    let (app, host, _startup) = server();
    assert_eq!(content(&app).await, "I am alpha");
    let models = app.call("GET", "/v1/models", &[], Body::empty()).await.json();
    let listed: Vec<(String, bool)> = models["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| (m["id"].as_str().unwrap().to_owned(), m["loaded"].as_bool().unwrap()))
        .collect();
    let expected = [("alpha", true), ("beta", false), ("crash", false)].map(|(id, l)| (id.to_owned(), l));
    assert_eq!(listed, expected, "the loaded model first, unservable files left out: {models}");
    assert_eq!(models["data"][1]["details"]["architecture"], "gemma3");

    let no_key = app.call("POST", "/admin/models/swap", &[JSON], json!({"model_id": "beta"}).to_string()).await;
    assert_eq!(no_key.status, 401, "{}", no_key.text());
    let swapped = swap(&app, json!({"model_id": "beta"})).await;
    assert_eq!(swapped.status, 200, "{}", swapped.text());
    assert_eq!((swapped.json()["status"].clone(), swapped.json()["from"].clone()), (json!("swapped"), json!("alpha")));
    assert_eq!(content(&app).await, "I am beta");
    let now = current(&app).await;
    assert_eq!((now["model_id"].clone(), now["phase"].clone()), (json!("beta"), json!("ready")), "{now}");
    assert_eq!(now["model"]["architecture"], "gemma3");
    let same = swap(&app, json!({"model_id": "beta"})).await;
    assert_eq!(same.json()["status"], "unchanged");
    assert_eq!(swaps(&app, "ok").await, Some(1));
    assert_eq!(host.loads(), ["alpha", "beta"]);
    let available = app.call("GET", "/admin/models/available", &[ADMIN], Body::empty()).await.json();
    assert_eq!(available["models"].as_array().map(Vec::len), Some(4), "{available}");
    assert_eq!(available["models"][2]["servable"], false);
}

#[tokio::test]
async fn a_swap_whose_load_fails_rolls_back_and_says_so() {
    let (app, host, _startup) = server();
    let failed = swap(&app, json!({"model_id": "crash"})).await;
    assert_eq!(failed.status, 500, "{}", failed.text());
    let error = &failed.json()["error"];
    assert_eq!(error["code"], "swap_failed", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("not within the file bounds") && message.contains("rolled back to `alpha`"), "{message}");
    assert_eq!(content(&app).await, "I am alpha", "the previous model answers again");
    assert_eq!(swaps(&app, "rolled_back").await, Some(1));
    assert_eq!(host.loads(), ["alpha", "crash", "alpha"]);

    let broken = swap(&app, json!({"model_id": "broken"})).await;
    assert_eq!((broken.status.as_u16(), broken.json()["error"]["code"].clone()), (400, json!("invalid_model")));
    let unknown = swap(&app, json!({"model_id": "gamma"})).await;
    assert_eq!((unknown.status.as_u16(), unknown.json()["error"]["code"].clone()), (404, json!("model_not_found")));
    let bad = swap(&app, json!({"model_id": "beta", "timeout_seconds": -1})).await;
    assert_eq!((bad.status.as_u16(), bad.json()["error"]["param"].clone()), (400, json!("timeout_seconds")));
    assert_eq!(host.loads(), ["alpha", "crash", "alpha"], "refused swaps unload nothing");
    assert_eq!(swaps(&app, "rejected").await, Some(1));
    assert_eq!(content(&app).await, "I am alpha");
}

#[tokio::test]
async fn during_a_swap_requests_get_503_and_a_second_swap_409_then_the_new_model_serves() {
    let (app, host, _startup) = server();
    // A long request in flight when the swap starts, held inside a decode step until the swap's
    // refusals are checked; then the drain (50 ms) cuts it.
    host.block_long_requests(true);
    let long = {
        let app = app.clone();
        tokio::spawn(async move {
            let body = json!({"messages": [{"role": "user", "content": "go on"}], "max_tokens": 3000});
            app.post("/v1/chat/completions", &body).await
        })
    };
    assert_eq!(app.running_becomes(1).await, 1, "the long request runs");
    let release = host.hold_next_load();
    let swapping = {
        let app = app.clone();
        tokio::spawn(async move { swap(&app, json!({"model_id": "beta", "timeout_seconds": 0.05})).await })
    };
    let mut phase = Value::Null;
    for _ in 0..500 {
        phase = current(&app).await["phase"].clone();
        if phase == "swapping" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    assert_eq!(phase, "swapping");
    let refused = answer(&app).await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.json()["error"]["code"], "swapping");
    assert!(refused.headers.contains_key("retry-after"));
    let ready = app.call("GET", "/health/ready", &[], Body::empty()).await;
    assert_eq!((ready.status.as_u16(), ready.json()["status"].clone()), (503, json!("swapping")));
    assert_eq!(app.call("GET", "/health/live", &[], Body::empty()).await.status, 200);
    let second = swap(&app, json!({"model_id": "alpha"})).await;
    assert_eq!((second.status.as_u16(), second.json()["error"]["code"].clone()), (409, json!("swap_in_progress")));
    let offload = app.call("POST", "/admin/models/offload", &[ADMIN], Body::empty()).await;
    assert_eq!(offload.status, 409);

    host.block_long_requests(false);
    release.send(()).unwrap();
    let swapped = swapping.await.unwrap();
    assert_eq!(swapped.status, 200, "{}", swapped.text());
    let ended = long.await.unwrap();
    assert!(ended.status == 200 || ended.status == 503, "done or a clean error: {} {}", ended.status, ended.text());
    ended.json();
    assert_eq!(content(&app).await, "I am beta");
}

#[tokio::test]
async fn an_offloaded_server_answers_503_until_a_swap_loads_a_model() {
    let (app, _host, _startup) = server();
    let offload = app.call("POST", "/admin/models/offload", &[ADMIN], Body::empty()).await;
    assert_eq!(offload.status, 200, "{}", offload.text());
    assert_eq!(offload.json()["model_id"], "alpha");
    let refused = answer(&app).await;
    assert_eq!((refused.status.as_u16(), refused.json()["error"]["code"].clone()), (503, json!("offloaded")));
    let ready = app.call("GET", "/health/ready", &[], Body::empty()).await.json();
    assert_eq!(ready["status"], "offloaded");
    assert_eq!(current(&app).await, json!({"model_id": null, "phase": "offloaded", "model": null}));
    let again = app.call("POST", "/admin/models/offload", &[ADMIN], Body::empty()).await;
    assert_eq!((again.status.as_u16(), again.json()["error"]["code"].clone()), (409, json!("no_model_loaded")));
    let loaded = swap(&app, json!({"model_id": "alpha"})).await;
    assert_eq!(loaded.status, 200, "{}", loaded.text());
    assert_eq!(loaded.json()["from"], Value::Null);
    assert_eq!(content(&app).await, "I am alpha");
}

async fn ask(app: &App, model: &str, key: Option<&str>) -> Reply {
    let bearer = key.map(|k| format!("Bearer {k}"));
    let mut headers = vec![JSON];
    headers.extend(bearer.as_deref().map(|b| ("authorization", b)));
    let body = json!({"model": model, "temperature": 0, "messages": [{"role": "user", "content": "who are you?"}]});
    app.call("POST", "/v1/chat/completions", &headers, body.to_string()).await
}

fn said(reply: &Reply) -> String {
    assert_eq!(reply.status, 200, "{}", reply.text());
    reply.json()["choices"][0]["message"]["content"].as_str().unwrap_or_default().to_owned()
}

#[tokio::test]
async fn without_swap_on_demand_another_model_is_a_404_and_a_registry_id_keeps_its_file_stem() {
    let model_ids = vec![("alpha".to_owned(), "alpha-q4".to_owned()), ("beta".to_owned(), "beta-q4".to_owned())];
    let (app, host, _startup) = server_with(ServeOptions { model_ids, ..options() });
    let other = ask(&app, "beta", None).await;
    assert_eq!((other.status.as_u16(), other.json()["error"]["code"].clone()), (404, json!("model_not_found")));
    assert_eq!(said(&ask(&app, "alpha-q4", None).await), "I am alpha", "the file stem of the serving id answers");
    assert_eq!(ask(&app, "beta-q4", None).await.status, 404, "another file's stem does not");
    assert_eq!(host.loads(), ["alpha"]);
}

#[tokio::test]
async fn swap_on_demand_serves_the_model_a_request_names() {
    let auth = AuthConfig::new(&["user-key-0001".into()], Some(ADMIN.1), true);
    let (app, host, _startup) = server_with(ServeOptions { auth, swap_on_demand: true, ..options() });
    let key = Some("user-key-0001");
    assert_eq!(ask(&app, "beta", None).await.status, 401, "a caller without a key swaps nothing");
    assert_eq!(host.loads(), ["alpha"]);
    assert_eq!(said(&ask(&app, "beta", key).await), "I am beta");
    assert_eq!(current(&app).await["model_id"], "beta");
    assert_eq!(said(&ask(&app, "beta", key).await), "I am beta");
    assert_eq!(said(&ask(&app, "default", key).await), "I am beta", "names of the serving model swap nothing");
    for unservable in ["gamma", "broken"] {
        let reply = ask(&app, unservable, key).await;
        assert_eq!((reply.status.as_u16(), reply.json()["error"]["code"].clone()), (404, json!("model_not_found")));
    }
    assert_eq!(said(&ask(&app, "alpha", key).await), "I am alpha");
    let anthropic = json!({"model": "beta", "max_tokens": 16, "temperature": 0, "messages": [{"role": "user", "content": "who are you?"}]});
    let headers = [JSON, ("x-api-key", "user-key-0001")];
    let reply = app.call("POST", "/v1/messages", &headers, anthropic.to_string()).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.json()["content"][0]["text"], "I am beta");
    let failed = ask(&app, "crash", key).await;
    assert_eq!((failed.status.as_u16(), failed.json()["error"]["code"].clone()), (500, json!("swap_failed")));
    assert_eq!(said(&ask(&app, "beta", key).await), "I am beta", "the rollback serves the previous model");
    assert_eq!(host.loads(), ["alpha", "beta", "alpha", "beta", "crash", "beta"]);
    assert_eq!(swaps(&app, "ok").await, Some(3));
}

#[tokio::test]
async fn the_agents_list_names_each_agents_model_and_lists_other_models_agents() {
    let (app, _host, _startup) = server();
    let body = json!({"messages": [{"role": "user", "content": "hi"}], "agent_id": "mine"});
    assert_eq!(app.post("/v1/chat/completions", &body).await.status, 200);
    let list = app.call("GET", "/v1/agents", &[], Body::empty()).await.json();
    assert_eq!(list["model"], "alpha");
    let rows: Vec<(&str, &str, bool)> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["model"].as_str().unwrap(), a["model_loaded"].as_bool().unwrap()))
        .collect();
    assert_eq!(rows, [("mine", "alpha", true), ("made-by-beta", "beta", false)], "{list}");
    let stored = &list["data"][1];
    assert_eq!(
        (stored["tier"].clone(), stored["tokens"].clone(), stored["pinned"].clone()),
        (json!("cold"), json!(3), json!(true))
    );
    assert_eq!(stored["file_bytes"], 4321);
}

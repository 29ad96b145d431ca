//! Models end to end on the real binary: a registry of SmolLM2 and Gemma 3 270M, hot swaps under
//! load (SmolLM2 → Gemma → SmolLM2) where each model keeps its own agents, and a swap to a
//! corrupt GGUF that rolls back.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use crate::harness::{model_path, tempdir::TempDir, Response, Server};

const ADMIN: &str = "root-key-123";
const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1";
const GEMMA: &str = "gemma-3-270m-q4_k_m";

fn gemma_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/gemma-3-270m-q4_k_m.gguf")
}

/// A models directory holding links to both models, plus `extra` files.
fn models_dir(dir: &Path, extra: &[(&str, Vec<u8>)]) -> PathBuf {
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    std::os::unix::fs::symlink(model_path(), models.join(format!("{SMOL}.gguf"))).unwrap();
    std::os::unix::fs::symlink(gemma_path(), models.join(format!("{GEMMA}.gguf"))).unwrap();
    for (name, bytes) in extra {
        std::fs::write(models.join(name), bytes).unwrap();
    }
    models
}

fn start(models: &Path) -> Server {
    let model = models.join(format!("{SMOL}.gguf"));
    let (model, models) = (model.to_str().unwrap(), models.to_str().unwrap());
    Server::start(&["--model", model, "--models-dir", models, "--admin-key", ADMIN])
}

fn swap(server: &Server, id: &str) -> Response {
    let body = json!({"model_id": id, "timeout_seconds": 30}).to_string();
    let headers = [("content-type", "application/json"), ("x-admin-key", ADMIN)];
    server.request_with("POST", "/admin/models/swap", &headers, Some(&body))
}

fn chat(server: &Server, agent: &str, messages: &Value, max_tokens: u32) -> (u16, Value) {
    let body = json!({"messages": messages, "max_tokens": max_tokens, "temperature": 0, "agent_id": agent});
    let r = server.post_json("/v1/chat/completions", &body);
    let json = if r.body.is_empty() { Value::Null } else { r.json() };
    (r.status, json)
}

fn usage(reply: &Value) -> (u64, u64) {
    let u = &reply["usage"];
    (u["prompt_tokens"].as_u64().unwrap(), u["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap())
}

#[test]
fn swapping_smollm2_gemma_smollm2_under_load_keeps_each_models_agents() {
    let dir = TempDir::new("swap");
    let server = start(&models_dir(dir.path(), &[]));
    let listed = server.request("GET", "/v1/models", None).json();
    let ids: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [SMOL, GEMMA], "{listed}");
    assert_eq!(listed["data"][1]["details"]["sliding_window"], 512);

    let mut alice = json!([
        {"role": "system", "content": "You are a patient teacher. Answer in one sentence."},
        {"role": "user", "content": "What is a lighthouse for?"}
    ]);
    let (status, first) = chat(&server, "alice", &alice, 24);
    assert_eq!(status, 200, "{first}");
    let (turn1_prompt, _) = usage(&first);

    // A long answer in flight while the swap drains: it ends done or with a clean error.
    let in_flight = std::thread::scope(|scope| {
        let long =
            scope.spawn(|| chat(&server, "bob", &json!([{"role": "user", "content": "Tell a long story."}]), 300));
        let started = std::time::Instant::now();
        while server.request("GET", "/health", None).json()["running"] != 1 && started.elapsed().as_secs() < 30 {
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        let swapped = swap(&server, GEMMA);
        assert_eq!(swapped.status, 200, "{}", swapped.body);
        long.join().unwrap()
    });
    assert!(in_flight.0 == 200 || in_flight.0 == 503, "done or a clean error: {in_flight:?}");

    let current = server.request_with("GET", "/admin/models/current", &[("x-admin-key", ADMIN)], None).json();
    assert_eq!(
        (current["model_id"].clone(), current["model"]["architecture"].clone()),
        (json!(GEMMA), json!("gemma3"))
    );
    let (status, gemma) = chat(&server, "gina", &json!([{"role": "user", "content": "Name a colour."}]), 8);
    assert_eq!(status, 200, "{gemma}");
    assert_eq!(gemma["model"], GEMMA);
    // The same agent id under Gemma does not get SmolLM2's KV (at most the few turn-opening
    // tokens it shares with gina's Gemma prompt).
    let (status, other) = chat(&server, "alice", &alice, 8);
    assert_eq!(status, 200, "{other}");
    assert!(usage(&other).1 <= 4, "alice's SmolLM2 memory is not Gemma's: {other}");
    // Every agent is listed with its model: SmolLM2's are kept on disk while Gemma serves.
    let agents = server.request("GET", "/v1/agents", None).json();
    let rows: Vec<(&str, &str, bool)> = agents["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["id"].as_str().unwrap(), a["model"].as_str().unwrap(), a["model_loaded"].as_bool().unwrap()))
        .collect();
    for row in [("alice", GEMMA, true), ("gina", GEMMA, true), ("alice", SMOL, false)] {
        assert!(rows.contains(&row), "{row:?} in {rows:?}");
    }
    let smol_by_name = server.post_json("/v1/chat/completions", &json!({"model": SMOL, "messages": alice}));
    assert_eq!((smol_by_name.status, smol_by_name.json()["error"]["code"].clone()), (404, json!("model_not_found")));

    let back = swap(&server, SMOL);
    assert_eq!(back.status, 200, "{}", back.body);
    let answer = first["choices"][0]["message"]["content"].as_str().unwrap().to_owned();
    alice.as_array_mut().unwrap().push(json!({"role": "assistant", "content": answer}));
    alice.as_array_mut().unwrap().push(json!({"role": "user", "content": "And who keeps it?"}));
    let (status, second) = chat(&server, "alice", &alice, 16);
    assert_eq!(status, 200, "{second}");
    let (_, cached) = usage(&second);
    assert!(
        cached >= turn1_prompt,
        "alice's SmolLM2 KV survived two swaps: cached {cached} of turn 1's {turn1_prompt}"
    );
    let metrics = server.request("GET", "/metrics", None).body;
    assert!(metrics.contains("semantic_model_swaps_total{result=\"ok\"} 2"), "{metrics}");
}

#[test]
fn a_swap_to_a_corrupt_gguf_fails_and_the_previous_model_keeps_answering() {
    let dir = TempDir::new("swap-corrupt");
    // A real header whose tensor data is cut off: it lists as servable, and loading fails.
    let mut cut = std::fs::read(model_path()).unwrap();
    cut.truncate(8 << 20);
    let server = start(&models_dir(dir.path(), &[("cut.gguf", cut), ("junk.gguf", b"not a model".to_vec())]));
    let failed = swap(&server, "cut");
    assert_eq!(failed.status, 500, "{}", failed.body);
    let error = failed.json()["error"].clone();
    assert_eq!(error["code"], "swap_failed", "{error}");
    assert!(error["message"].as_str().unwrap().contains(&format!("rolled back to `{SMOL}`")), "{error}");
    let (status, reply) = chat(&server, "carol", &json!([{"role": "user", "content": "Hello!"}]), 8);
    assert_eq!((status, reply["model"].clone()), (200, json!(SMOL)), "{reply}");
    let junk = swap(&server, "junk");
    assert_eq!((junk.status, junk.json()["error"]["code"].clone()), (400, json!("invalid_model")));
    let metrics = server.request("GET", "/metrics", None).body;
    assert!(metrics.contains("semantic_model_swaps_total{result=\"rolled_back\"} 1"), "{metrics}");
    assert!(metrics.contains("semantic_model_swaps_total{result=\"rejected\"} 1"), "{metrics}");
    assert!(server.stderr().contains("model swap failed"), "the failure is logged");
}

#[test]
fn swap_on_demand_follows_the_model_a_request_names_under_its_registry_id() {
    let dir = TempDir::new("on-demand");
    let models = models_dir(dir.path(), &[]);
    let model = models.join(format!("{SMOL}.gguf"));
    let (model, models) = (model.to_str().unwrap(), models.to_str().unwrap());
    let ids = format!("smol={SMOL},gemma={GEMMA}");
    let server = Server::start(&["--model", model, "--models-dir", models, "--model-id", &ids, "--swap-on-demand"]);
    let listed = server.request("GET", "/v1/models", None).json();
    let names: Vec<&str> = listed["data"].as_array().unwrap().iter().map(|m| m["id"].as_str().unwrap()).collect();
    assert_eq!(names, ["smol", SMOL, "gemma"], "registry ids replace the file stems, which stay aliases: {listed}");
    assert_eq!(listed["data"][1]["details"]["alias_of"], "smol");
    let ask = |model: &str| {
        let body =
            json!({"model": model, "max_tokens": 4, "temperature": 0, "messages": [{"role": "user", "content": "Hi"}]});
        let reply = server.post_json("/v1/chat/completions", &body);
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.json()["model"].as_str().unwrap().to_owned()
    };
    assert_eq!(ask(SMOL), SMOL, "the stem still names the serving model");
    assert_eq!(ask("gemma"), "gemma", "a request naming Gemma swapped to it");
    let current = server.request("GET", "/health", None).json();
    assert_eq!(current["model"], "gemma", "{current}");
    assert_eq!(ask("smol"), "smol");
    let unknown = server
        .post_json("/v1/chat/completions", &json!({"model": "nope", "messages": [{"role": "user", "content": "Hi"}]}));
    assert_eq!((unknown.status, unknown.json()["error"]["code"].clone()), (404, json!("model_not_found")));
    let metrics = server.request("GET", "/metrics", None).body;
    assert!(metrics.contains("semantic_model_swaps_total{result=\"ok\"} 2"), "{metrics}");
}

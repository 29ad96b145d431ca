//! Coordination sessions over the real router and a `FakeEngine`: creation and its errors, turn
//! order and usage (the KV reuse of an agent's previous prompt), broadcast rounds, whispers,
//! SSE events, votes and decisions, namespaces, deletion and a restart from the session store.

use axum::body::Body;
use semantic_api::{AuthConfig, ServeOptions};
use semantic_engine::FakeScript;
use serde_json::{json, Value};

use crate::harness::{options, App, Reply};

const SESSIONS: &str = "/v1/coordination/sessions";

fn body(topology: &str, names: &[&str]) -> Value {
    json!({
        "topology": topology,
        "initial_prompt": "Topic: tea or coffee?",
        "agents": names.iter().map(|n| json!({"display_name": n, "system_prompt": "Be brief."})).collect::<Vec<_>>(),
        "max_tokens": 12,
        "temperature": 0,
    })
}

async fn create(app: &App, body: &Value) -> String {
    let reply = app.post(SESSIONS, body).await;
    assert_eq!(reply.status, 201, "{}", reply.text());
    reply.json()["session_id"].as_str().expect("session id").to_owned()
}

async fn post(app: &App, path: &str, body: Value) -> Reply {
    app.post(path, &body).await
}

async fn get(app: &App, path: &str) -> Reply {
    app.call("GET", path, &[], Body::empty()).await
}

#[tokio::test]
async fn creation_validates_every_field() {
    let app = App::replying("ok");
    let reply = app.post(SESSIONS, &body("round_robin", &["Ann", "Bob"])).await;
    assert_eq!(reply.status, 201);
    let session = reply.json();
    assert_eq!(session["status"], "active");
    assert_eq!(session["agents"][1]["agent_id"], "bob");
    assert_eq!(session["next_speaker"], "ann");
    assert!(session["agents"][0]["memory_id"].as_str().unwrap().starts_with("coord_sess_"));
    for (bad, param) in [
        (json!({"agents": []}), "agents"),
        (json!({"agents": [{"display_name": "A"}], "topology": "star"}), "topology"),
        (json!({"agents": [{"display_name": "A"}, {"display_name": "a"}]}), "agents[1].display_name"),
        (json!({"agents": [{"display_name": "A", "agent_id": "x y"}]}), "agents[0].agent_id"),
        (json!({"agents": [{"display_name": "A", "lifecycle": "forever"}]}), "agents[0].lifecycle"),
        (json!({"agents": [{"display_name": "A"}], "max_turns": 5000}), "max_turns"),
        (json!({"agents": [{"display_name": "A"}], "per_agent_prompts": {"Zed": "hi"}}), "per_agent_prompts.Zed"),
        (json!({"agents": [{"display_name": "A"}], "decision_mode": "coordinator_decides"}), "decision_mode"),
    ] {
        let reply = app.post(SESSIONS, &bad).await;
        assert_eq!(reply.status, 400, "{bad}: {}", reply.text());
        assert_eq!(reply.json()["error"]["param"], param, "{bad}: {}", reply.text());
    }
    assert_eq!(get(&app, "/v1/coordination/sessions/sess_nope").await.status, 404);
    assert_eq!(get(&app, SESSIONS).await.json()["sessions"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn turns_follow_the_order_and_reuse_the_speakers_previous_prompt() {
    let app = App::replying("I like tea.");
    let id = create(&app, &body("round_robin", &["Ann", "Bob"])).await;
    let turn = |n: u64| format!("{SESSIONS}/{id}/turn").replace("{n}", &n.to_string());
    let first = post(&app, &turn(1), json!({})).await.json();
    assert_eq!((first["turn"].as_u64(), first["agent_id"].as_str()), (Some(1), Some("ann")));
    assert_eq!(first["content"], "I like tea.");
    let round = post(&app, &format!("{SESSIONS}/{id}/round"), json!({})).await.json();
    let turns = round["turns"].as_array().unwrap();
    assert_eq!(turns.iter().map(|t| t["agent_id"].as_str().unwrap()).collect::<Vec<_>>(), ["bob", "ann"]);
    assert_eq!(turns.iter().map(|t| t["turn"].as_u64().unwrap()).collect::<Vec<_>>(), [2, 3]);
    let ann = &turns[1];
    let previous = ann["previous_prompt_tokens"].as_u64().unwrap();
    let cached = ann["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached >= previous, "cached {cached} < previous prompt {previous}: {ann}");
    assert!(ann["usage"]["prompt_tokens"].as_u64().unwrap() > previous);
    let session = get(&app, &format!("{SESSIONS}/{id}")).await.json();
    assert_eq!(session["current_turn"], 3);
    assert!(session["usage"]["cached_tokens"].as_u64().unwrap() >= previous);
    // The next prompt of Bob: his history, then Ann's last line and his cue.
    let prompt = get(&app, &format!("{SESSIONS}/{id}/prompt/bob")).await.json();
    let messages = prompt["messages"].as_array().unwrap();
    assert_eq!(messages[0]["role"], "system");
    assert_eq!(messages.last().unwrap()["content"], "Ann: I like tea.\n\n[Bob, respond now.]");
}

#[tokio::test]
async fn max_turns_finishes_the_session_with_409() {
    let app = App::replying("ok");
    let mut b = body("turn_by_turn", &["Ann", "Bob"]);
    b["max_turns"] = json!(3);
    let id = create(&app, &b).await;
    let round = post(&app, &format!("{SESSIONS}/{id}/round"), json!({"turns": 5})).await.json();
    assert_eq!(round["turns"].as_array().unwrap().len(), 3, "a round stops at max_turns");
    assert_eq!(round["session_status"], "finished");
    let reply = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({})).await;
    assert_eq!(reply.status, 409, "{}", reply.text());
    assert_eq!(reply.json()["error"]["code"], "session_finished");
}

#[tokio::test]
async fn broadcast_rounds_answer_the_same_state() {
    let app = App::replying("Tea!");
    let id = create(&app, &body("broadcast", &["Ann", "Bob", "Cy"])).await;
    let round = post(&app, &format!("{SESSIONS}/{id}/round"), json!({})).await.json();
    let turns = round["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 3);
    assert!(turns.iter().all(|t| t["round"] == 1));
    // Nobody saw another's answer of round 1 before answering; all of them now see all three.
    let prompt = get(&app, &format!("{SESSIONS}/{id}/prompt/ann")).await.json();
    let user = prompt["messages"].as_array().unwrap().last().unwrap()["content"].as_str().unwrap().to_owned();
    assert_eq!(user, "Bob: Tea!\n\nCy: Tea!\n\n[Ann, respond now.]");
}

#[tokio::test]
async fn whispers_reach_only_the_two_agents() {
    let app = App::replying("ok");
    let id = create(&app, &body("round_robin", &["Ann", "Bob", "Cy"])).await;
    let w = post(
        &app,
        &format!("{SESSIONS}/{id}/whisper"),
        json!({"from_agent_id": "ann", "to_agent_id": "cy", "content": "vote tea"}),
    )
    .await;
    assert_eq!(w.status, 200, "{}", w.text());
    assert_eq!(w.json()["visible_to"], json!(["ann", "cy"]));
    let prompt = |agent: &'static str| {
        let app = app.clone();
        let id = id.clone();
        async move {
            get(&app, &format!("{SESSIONS}/{id}/prompt/{agent}")).await.json()["messages"]
                .as_array()
                .unwrap()
                .last()
                .unwrap()["content"]
                .as_str()
                .unwrap()
                .to_owned()
        }
    };
    assert!(prompt("cy").await.contains("Ann (whispering to you only): vote tea"));
    assert!(prompt("ann").await.contains("(you whispered to Cy): vote tea"));
    assert!(!prompt("bob").await.contains("vote tea"));
    let public = get(&app, &format!("{SESSIONS}/{id}/messages")).await.json();
    assert_eq!(public["messages"].as_array().unwrap().len(), 1, "only the opening prompt is public");
    let cy = get(&app, &format!("{SESSIONS}/{id}/messages?agent_id=cy")).await.json();
    assert_eq!(cy["messages"].as_array().unwrap().len(), 2);
    let bad = post(
        &app,
        &format!("{SESSIONS}/{id}/whisper"),
        json!({"from_agent_id": "ann", "to_agent_id": "zed", "content": "x"}),
    )
    .await;
    assert_eq!((bad.status.as_u16(), bad.json()["error"]["param"].clone()), (400, json!("to_agent_id")));
    assert_eq!(get(&app, &format!("{SESSIONS}/{id}/messages?agent_id=zed")).await.status, 404);
}

#[tokio::test]
async fn turn_and_round_streams_number_turns_consistently() {
    let app = App::replying("Tea.");
    let id = create(&app, &body("round_robin", &["Ann", "Bob"])).await;
    let reply = post(&app, &format!("{SESSIONS}/{id}/turn/stream"), json!({})).await;
    let events = reply.sse();
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_deref().unwrap_or("")).collect();
    assert_eq!(names.first(), Some(&"turn_start"));
    assert_eq!(names.last(), Some(&"turn_complete"));
    assert!(names.contains(&"token"));
    let data = |i: usize| serde_json::from_str::<Value>(&events[i].1).unwrap();
    assert_eq!(data(0)["turn"], 1);
    let complete = data(events.len() - 1);
    assert_eq!((complete["turn"].as_u64(), complete["content"].as_str()), (Some(1), Some("Tea.")));
    assert!(complete["usage"]["prompt_tokens"].as_u64().unwrap() > 0);
    let text: String = (1..events.len() - 1).map(|i| data(i)["text"].as_str().unwrap().to_owned()).collect();
    assert_eq!(text, "Tea.");
    let round = post(&app, &format!("{SESSIONS}/{id}/round/stream"), json!({})).await.sse();
    let last = round.last().unwrap();
    assert_eq!(last.0.as_deref(), Some("round_complete"));
    let turns: Vec<u64> = round
        .iter()
        .filter(|(n, _)| n.as_deref() == Some("turn_complete"))
        .map(|(_, d)| serde_json::from_str::<Value>(d).unwrap()["turn"].as_u64().unwrap())
        .collect();
    assert_eq!(turns, [2, 3]);
    let finished = post(&app, &format!("{SESSIONS}/{id}/turn/stream"), json!({"agent_id": "ann"})).await.sse();
    assert_eq!(finished.last().unwrap().0.as_deref(), Some("error"), "bob is due and this is not interrupt");
}

#[tokio::test]
async fn interrupt_turns_may_name_the_speaker() {
    let app = App::replying("ok");
    let id = create(&app, &body("interrupt", &["Ann", "Bob", "Cy"])).await;
    let t = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({"agent_id": "cy"})).await.json();
    assert_eq!(t["agent_id"], "cy");
    let t = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({})).await.json();
    assert_eq!(t["agent_id"], "ann");
}

#[tokio::test]
async fn votes_and_decisions() {
    let app = App::replying("After thinking: Choice: Coffee");
    let mut b = body("round_robin", &["Ann", "Bob", "Mo"]);
    b["agents"][2]["role"] = json!("moderator");
    b["decision_mode"] = json!("majority_vote");
    b["options"] = json!(["Tea", "Coffee"]);
    b["max_tokens"] = json!(64);
    let id = create(&app, &b).await;
    let v = post(&app, &format!("{SESSIONS}/{id}/vote"), json!({"agent_id": "ann", "choice": "tea"})).await;
    assert_eq!(v.json()["vote"]["choice"], "Tea", "{}", v.text());
    let bad = post(&app, &format!("{SESSIONS}/{id}/vote"), json!({"agent_id": "ann", "choice": "water"})).await;
    assert_eq!(bad.status, 400);
    assert_eq!(
        post(&app, &format!("{SESSIONS}/{id}/vote"), json!({"agent_id": "zed", "choice": "Tea"})).await.status,
        404
    );
    let decision = get(&app, &format!("{SESSIONS}/{id}/decision")).await.json();
    assert_eq!(decision["decision"]["outcome"], "Tea");
    // Every agent is asked; each answers "Choice: Coffee".
    let decided = post(&app, &format!("{SESSIONS}/{id}/decide"), json!({"question": "Tea or coffee?"})).await;
    assert_eq!(decided.status, 200, "{}", decided.text());
    let decided = decided.json();
    assert_eq!(decided["answers"].as_array().unwrap().len(), 3);
    assert!(decided["answers"].as_array().unwrap().iter().all(|a| a["choice"] == "Coffee"));
    assert_eq!(decided["decision"]["outcome"], "Coffee");
    assert_eq!(decided["decision"]["status"], "decided");
    // The answers stay private, and the next turn still extends each agent's memory.
    let t = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({})).await.json();
    let cached = t["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap();
    assert!(cached >= t["previous_prompt_tokens"].as_u64().unwrap(), "{t}");
}

#[tokio::test]
async fn sessions_belong_to_the_key_that_made_them() {
    let auth = AuthConfig::new(&["key-alpha-0001".into(), "key-beta-00002".into()], None, true);
    let app = App::with_options(FakeScript::reply("ok"), ServeOptions { auth, ..options() });
    let alpha = [("content-type", "application/json"), ("authorization", "Bearer key-alpha-0001")];
    let beta = [("authorization", "Bearer key-beta-00002")];
    let made = app.call("POST", SESSIONS, &alpha, body("round_robin", &["Ann"]).to_string()).await;
    assert_eq!(made.status, 201, "{}", made.text());
    let id = made.json()["session_id"].as_str().unwrap().to_owned();
    assert_eq!(app.call("GET", &format!("{SESSIONS}/{id}"), &alpha[1..], Body::empty()).await.status, 200);
    assert_eq!(app.call("GET", &format!("{SESSIONS}/{id}"), &beta, Body::empty()).await.status, 404);
    let list = app.call("GET", SESSIONS, &beta, Body::empty()).await.json();
    assert!(list["sessions"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_session_deletes_ephemeral_memory_and_keeps_permanent() {
    let app = App::replying("ok");
    let mut b = body("round_robin", &["Ann", "Bob"]);
    b["agents"][0]["lifecycle"] = json!("permanent");
    b["persistent_cache_prefix"] = json!("game");
    let id = create(&app, &b).await;
    post(&app, &format!("{SESSIONS}/{id}/round"), json!({})).await;
    let agents = get(&app, "/v1/agents").await.json();
    assert_eq!(agents["data"].as_array().unwrap().len(), 2, "{agents}");
    let deleted = app.call("DELETE", &format!("{SESSIONS}/{id}"), &[], Body::empty()).await.json();
    assert_eq!(deleted["kept_memory"], json!(["persist_game_ann"]));
    assert_eq!(deleted["deleted_memory"].as_array().unwrap().len(), 1);
    let agents = get(&app, "/v1/agents").await.json();
    let ids: Vec<&str> = agents["data"].as_array().unwrap().iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["persist_game_ann"]);
    assert_eq!(get(&app, &format!("{SESSIONS}/{id}")).await.status, 404);
    let caches = app.call("DELETE", "/v1/coordination/caches/game", &[], Body::empty()).await.json();
    assert_eq!(caches["deleted"], json!(["persist_game_ann"]));
    assert!(get(&app, "/v1/agents").await.json()["data"].as_array().unwrap().is_empty());
}

#[tokio::test]
async fn sessions_and_permanent_agents_survive_a_restart() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("restart");
    let opts = || ServeOptions { coordination_dir: Some(dir.clone()), ..options() };
    let mut b = body("round_robin", &["Ann", "Bob"]);
    b["agents"][0]["lifecycle"] = json!("permanent");
    b["persistent_cache_prefix"] = json!("saga");
    let (id, history) = {
        let app = App::with_options(FakeScript::reply("Tea."), opts());
        let id = create(&app, &b).await;
        post(&app, &format!("{SESSIONS}/{id}/round"), json!({})).await;
        let prompt = get(&app, &format!("{SESSIONS}/{id}/prompt/ann")).await.json()["messages"].clone();
        (id, prompt)
    };
    // A new server over the same directory.
    let app = App::with_options(FakeScript::reply("Tea."), opts());
    let session = get(&app, &format!("{SESSIONS}/{id}")).await;
    assert_eq!(session.status, 200, "{}", session.text());
    assert_eq!(session.json()["current_turn"], 2);
    assert_eq!(get(&app, &format!("{SESSIONS}/{id}/prompt/ann")).await.json()["messages"], history);
    let t = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({})).await.json();
    assert_eq!((t["turn"].as_u64(), t["agent_id"].as_str()), (Some(3), Some("ann")));
    // Phase two: a new session continues Ann's history.
    let phase2 = create(&app, &b).await;
    let prompt = get(&app, &format!("{SESSIONS}/{phase2}/prompt/ann")).await.json()["messages"].clone();
    let old = get(&app, &format!("{SESSIONS}/{id}/prompt/ann")).await.json()["messages"].clone();
    let old = old.as_array().unwrap();
    // Ann's history in phase one (all but the pending user message) starts phase two's prompt.
    assert_eq!(prompt.as_array().unwrap()[..old.len() - 1], old[..old.len() - 1]);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Holds decodes while set (a turn stays in flight inside the fake engine); released when
/// dropped, so a failing test does not leave a step thread stuck.
pub struct Hold(std::sync::Arc<(std::sync::Mutex<bool>, std::sync::Condvar)>);

impl Hold {
    pub fn new() -> Self {
        Hold(std::sync::Arc::default())
    }

    /// A script that answers `next(history)`, each token only while not held or when
    /// `applies(history)` is false.
    pub fn script(
        &self,
        applies: impl Fn(&[i32]) -> bool + Send + Sync + 'static,
        next: impl Fn(&[i32]) -> i32 + Send + Sync + 'static,
    ) -> FakeScript {
        let held = std::sync::Arc::clone(&self.0);
        FakeScript::from_fn(move |history| {
            if applies(history) {
                let (flag, changed) = &*held;
                let mut flag = flag.lock().unwrap_or_else(|p| p.into_inner());
                while *flag {
                    flag = changed.wait(flag).unwrap_or_else(|p| p.into_inner());
                }
            }
            next(history)
        })
    }

    pub fn set(&self, value: bool) {
        *self.0 .0.lock().unwrap_or_else(|p| p.into_inner()) = value;
        self.0 .1.notify_all();
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.set(false);
    }
}

/// The stored file of a session (`{dir}/{namespace}/sessions/{id}.json`), its JSON body.
fn stored_session(dir: &std::path::Path, id: &str) -> Value {
    let ns = std::fs::read_dir(dir).unwrap().flatten().find(|e| e.path().join("sessions").is_dir()).unwrap();
    let bytes = std::fs::read(ns.path().join("sessions").join(format!("{id}.json"))).unwrap();
    let newline = bytes.iter().position(|&b| b == b'\n').unwrap();
    serde_json::from_slice(&bytes[newline + 1..]).unwrap()
}

#[tokio::test]
async fn a_turn_cut_by_shutdown_is_a_503_and_leaves_only_whole_turns_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let hold = Hold::new();
    let letters = |history: &[i32]| b'a' as i32 + (history.len() % 26) as i32;
    let (scheduler, template, control) = crate::harness::fake_model(hold.script(|_| true, letters));
    let opts = ServeOptions { coordination_dir: Some(tmp.path().to_owned()), ..options() };
    let state = semantic_api::AppState::new(scheduler.clone(), template, opts);
    let app = App::from_router(semantic_api::router(state), control);
    let id = create(&app, &body("round_robin", &["Ann", "Bob"])).await;
    let whole = post(&app, &format!("{SESSIONS}/{id}/turn"), json!({})).await;
    assert_eq!(whole.status, 200, "{}", whole.text());

    // Bob's turn is held inside a decode; the server drains with no grace period meanwhile.
    hold.set(true);
    let cut = {
        let app = app.clone();
        let path = format!("{SESSIONS}/{id}/turn");
        tokio::spawn(async move { post(&app, &path, json!({})).await })
    };
    assert_eq!(app.running_becomes(1).await, 1, "Bob's turn is in flight");
    let drain = {
        let scheduler = scheduler.clone();
        tokio::spawn(async move { scheduler.drain(std::time::Duration::ZERO).await })
    };
    for _ in 0..1000 {
        if scheduler.is_draining() {
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(scheduler.is_draining());
    hold.set(false);
    let cut = cut.await.unwrap();
    assert_eq!(cut.status, 503, "{}", cut.text());
    assert_eq!(cut.json()["error"]["code"], "draining");
    drain.await.unwrap();

    // Not committed: still turn 2 next, Bob's; the file holds Ann's whole turn and nothing of Bob's.
    let session = get(&app, &format!("{SESSIONS}/{id}")).await.json();
    assert_eq!((session["current_turn"].as_u64(), session["next_speaker"].as_str()), (Some(1), Some("bob")));
    let file = stored_session(tmp.path(), &id);
    assert_eq!(file["turns_done"], 1, "{file}");
    assert_eq!(file["turn_log"].as_array().unwrap().len(), 1);
    assert_eq!(file["views"][0]["history"].as_array().unwrap().last().unwrap()["role"], "assistant");
    assert!(file["views"][1]["history"].as_array().unwrap().is_empty(), "Bob's cut turn left nothing: {file}");
    let said: Vec<&Value> = file["messages"].as_array().unwrap().iter().filter(|m| m["kind"] == "turn").collect();
    assert_eq!(said.len(), 1);
}

//! Scenario runs over the real router and a `FakeEngine`: a shipped scenario runs phase by
//! phase, its events arrive in order, its transcript carries the outcome, payoff and memory
//! totals, invalid YAML is a 400 listing every issue with its line, and a run cut by a restart
//! reads `interrupted` on the next server and resumes with `next`.

use axum::body::Body;
use serde_json::{json, Value};

use crate::harness::App;

fn shipped(name: &str) -> String {
    let path = format!("{}/../../scenarios/{name}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

async fn run_to_end(app: &App, yaml: &str) -> (String, Vec<(String, Value)>) {
    let started = app.post("/v1/scenarios/runs", &json!({"yaml": yaml, "max_tokens": 64, "temperature": 0})).await;
    assert_eq!(started.status, 201, "{}", started.text());
    let id = started.json()["run_id"].as_str().unwrap().to_owned();
    // The events stream ends with the run.
    let events = app.call("GET", &format!("/v1/scenarios/runs/{id}/events"), &[], Body::empty()).await;
    let events =
        events.sse().into_iter().map(|(n, d)| (n.unwrap_or_default(), serde_json::from_str(&d).unwrap())).collect();
    (id, events)
}

#[tokio::test]
async fn a_game_runs_every_phase_and_scores_the_payoff() {
    let app = App::replying("I will share. Choice: share");
    let (id, events) = run_to_end(&app, &shipped("lighthouse_keepers.yaml")).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(names.last(), Some(&"run_complete"), "{names:?}");
    assert_eq!(names.iter().filter(|n| **n == "phase_start").count(), 3);
    assert!(names.contains(&"turn_complete"));
    let t = app.call("GET", &format!("/v1/scenarios/runs/{id}/transcript"), &[], Body::empty()).await.json();
    assert_eq!(t["status"], "completed");
    assert_eq!(t["phases"].as_array().unwrap().len(), 3);
    assert_eq!(t["outcome"]["choices"]["ida"], "share", "{}", t["outcome"]);
    assert!(t["outcome"]["payoff"]["cell"].is_string(), "{}", t["outcome"]);
    // Permanent agents reuse their previous prompt on every turn after their first, across phases.
    for agent in t["memory"]["agents"].as_array().unwrap() {
        assert_eq!(agent["turns_reusing_previous_prompt"], agent["turns_after_first"], "{agent}");
    }
    assert!(t["memory"]["prefilled_tokens"].as_u64() < t["memory"]["naive_prefill_tokens"].as_u64());
    let md = app.call("GET", &format!("/v1/scenarios/runs/{id}/transcript?format=markdown"), &[], Body::empty()).await;
    assert!(md.text().starts_with("# The Lighthouse Keepers"), "{}", md.text());
    assert!(md.text().contains("## Agent memory"));
}

#[tokio::test]
async fn templates_carry_the_earlier_phase_into_the_next() {
    let app = App::replying("I like plums.");
    let (id, _) = run_to_end(&app, &shipped("tiny.yaml")).await;
    let t = app.call("GET", &format!("/v1/scenarios/runs/{id}/transcript"), &[], Body::empty()).await.json();
    let recall = &t["phases"][1]["messages"][0]["content"];
    assert!(recall.as_str().unwrap().contains("Ann: I like plums.\nBen: I like plums."), "{recall}");
}

#[tokio::test]
async fn every_shipped_scenario_runs() {
    for name in ["village_council.yaml", "four_day_week.yaml"] {
        let app = App::replying("Choice: yes");
        let (_, events) = run_to_end(&app, &shipped(name)).await;
        assert_eq!(events.last().map(|e| e.0.as_str()), Some("run_complete"), "{name}: {events:?}");
    }
}

#[tokio::test]
async fn invalid_yaml_lists_every_issue_with_its_line() {
    let app = App::replying("ok");
    let yaml = "id: Bad Id\ntitle: t\nagents:\n  a:\n    display_name: A\nphases:\n  - name: p\n    label: P\n    agents: [a, zed]\n";
    let reply = app.post("/v1/scenarios/runs", &json!({"yaml": yaml})).await;
    assert_eq!(reply.status, 400);
    let message = reply.json()["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("line 1") && message.contains("line 9"), "{message}");
    let checked = app.post("/v1/scenarios/validate", &json!({"yaml": yaml})).await.json();
    assert_eq!(checked["valid"], false);
    assert_eq!(checked["issues"].as_array().unwrap().len(), 2, "{checked}");
    assert_eq!(app.call("GET", "/v1/scenarios/runs/run_nope", &[], Body::empty()).await.status, 404);
}

#[tokio::test]
async fn a_step_run_pauses_after_each_phase_until_next() {
    let app = App::replying("I like plums.");
    let body = json!({"yaml": shipped("tiny.yaml"), "max_tokens": 16, "temperature": 0, "step": true});
    let started = app.post("/v1/scenarios/runs", &body).await;
    assert_eq!(started.status, 201, "{}", started.text());
    let id = started.json()["run_id"].as_str().unwrap().to_owned();
    let events_of = |app: &App, id: String| {
        let app = app.clone();
        async move {
            let reply = app.call("GET", &format!("/v1/scenarios/runs/{id}/events"), &[], Body::empty()).await;
            reply.sse().into_iter().map(|(n, _)| n.unwrap_or_default()).collect::<Vec<_>>()
        }
    };
    // The stream ends at the pause, after the first phase only.
    let first = events_of(&app, id.clone()).await;
    assert_eq!(first.last().map(String::as_str), Some("run_paused"), "{first:?}");
    assert_eq!(first.iter().filter(|n| *n == "phase_start").count(), 1, "{first:?}");
    let status = app.call("GET", &format!("/v1/scenarios/runs/{id}"), &[], Body::empty()).await.json();
    assert_eq!(status["status"], "paused", "{status}");
    assert_eq!(status["phases"].as_array().unwrap().len(), 1, "{status}");
    // `next` runs the second (last) phase; the run then completes and cannot be continued.
    let next = app.post(&format!("/v1/scenarios/runs/{id}/next"), &json!({})).await;
    assert_eq!(next.status, 200, "{}", next.text());
    assert_eq!(next.json()["status"], "running");
    let all = events_of(&app, id.clone()).await;
    assert_eq!(all.last().map(String::as_str), Some("run_complete"), "{all:?}");
    assert_eq!(all.iter().filter(|n| *n == "phase_start").count(), 2, "{all:?}");
    assert!(all.contains(&"run_resumed".to_owned()), "{all:?}");
    let t = app.call("GET", &format!("/v1/scenarios/runs/{id}/transcript"), &[], Body::empty()).await.json();
    assert_eq!(t["status"], "completed");
    let recall = &t["phases"][1]["messages"][0]["content"];
    assert!(recall.as_str().unwrap().contains("Ann: I like plums."), "the second phase saw the first: {recall}");
    let again = app.post(&format!("/v1/scenarios/runs/{id}/next"), &json!({})).await;
    assert_eq!(again.status, 409, "{}", again.text());
    assert_eq!(again.json()["error"]["code"], "run_not_paused");
}

/// The run's status, polled (up to 5 s) until `done` says it is what the test waits for.
async fn status_until(app: &App, id: &str, done: impl Fn(&Value) -> bool) -> Value {
    let mut status = Value::Null;
    for _ in 0..500 {
        status = app.call("GET", &format!("/v1/scenarios/runs/{id}"), &[], Body::empty()).await.json();
        if done(&status) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    status
}

#[tokio::test]
async fn a_run_cut_by_a_restart_reads_interrupted_and_next_resumes_it() {
    use semantic_api::ServeOptions;
    let tmp = tempfile::tempdir().unwrap();
    let opts = || ServeOptions { coordination_dir: Some(tmp.path().to_owned()), ..crate::harness::options() };
    // The first server answers phase one, then holds phase two's first turn (its prompt quotes
    // phase one: "Earlier you said") until the test ends.
    let hold = crate::coordination::Hold::new();
    hold.set(true);
    const EOS: i32 = 257;
    let reply: Vec<i32> = b"I like plums.".iter().map(|&b| i32::from(b)).collect();
    let next = move |history: &[i32]| {
        let done = (0..=reply.len()).rev().find(|&n| history.ends_with(&reply[..n])).unwrap_or(0);
        reply.get(done).copied().unwrap_or(EOS)
    };
    let phase_two = |history: &[i32]| crate::harness::decode(history).contains("Earlier you said");
    let first = App::with_options(hold.script(phase_two, next), opts());
    let body = json!({"yaml": shipped("tiny.yaml"), "max_tokens": 16, "temperature": 0});
    let started = first.post("/v1/scenarios/runs", &body).await;
    assert_eq!(started.status, 201, "{}", started.text());
    let id = started.json()["run_id"].as_str().unwrap().to_owned();
    let status = status_until(&first, &id, |s| s["phases"].as_array().is_some_and(|p| p.len() == 2)).await;
    assert_eq!(status["status"], "running", "{status}");
    assert_eq!(first.running_becomes(1).await, 1, "phase two's first turn is in flight");
    let cut_session = status["phases"][1]["session_id"].clone();

    // A new server over the same directory: the run is there, interrupted, its transcript whole.
    let second = App::with_options(semantic_engine::FakeScript::reply("I like plums."), opts());
    let status = second.call("GET", &format!("/v1/scenarios/runs/{id}"), &[], Body::empty()).await;
    assert_eq!(status.status, 200, "{}", status.text());
    let status = status.json();
    assert_eq!(status["status"], "interrupted", "{status}");
    assert_eq!(status["phases"][0]["complete"], true, "{status}");
    assert_eq!(status["phases"][1]["complete"], false, "{status}");
    let t = second.call("GET", &format!("/v1/scenarios/runs/{id}/transcript"), &[], Body::empty()).await.json();
    assert_eq!(t["status"], "interrupted");
    let said: Vec<&str> =
        t["phases"][0]["turns"].as_array().unwrap().iter().map(|t| t["content"].as_str().unwrap()).collect();
    assert_eq!(said, ["I like plums.", "I like plums."]);
    assert!(t["phases"][1]["turns"].as_array().unwrap().is_empty(), "the cut turn was not recorded");

    // `next` resumes it: phase two goes on in its own session and the run completes.
    let resumed = second.post(&format!("/v1/scenarios/runs/{id}/next"), &json!({})).await;
    assert_eq!(resumed.status, 200, "{}", resumed.text());
    let events = second.call("GET", &format!("/v1/scenarios/runs/{id}/events"), &[], Body::empty()).await;
    let names: Vec<String> = events.sse().into_iter().map(|(n, _)| n.unwrap_or_default()).collect();
    assert_eq!(names.last().map(String::as_str), Some("run_complete"), "{names:?}");
    for name in ["run_interrupted", "run_resumed"] {
        assert!(names.iter().any(|n| n == name), "{name} missing from {names:?}");
    }
    let t = second.call("GET", &format!("/v1/scenarios/runs/{id}/transcript"), &[], Body::empty()).await.json();
    assert_eq!(t["status"], "completed");
    assert_eq!(t["phases"][1]["session_id"], cut_session);
    assert_eq!(t["phases"][1]["turns"].as_array().unwrap().len(), 2, "{}", t["phases"][1]);
    let again = second.post(&format!("/v1/scenarios/runs/{id}/next"), &json!({})).await;
    assert_eq!(again.json()["error"]["code"], "run_not_paused");
    drop(hold);
}

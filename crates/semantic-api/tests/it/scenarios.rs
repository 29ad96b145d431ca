//! Scenario runs over the real router and a `FakeEngine`: a shipped scenario runs phase by
//! phase, its events arrive in order, its transcript carries the outcome, payoff and memory
//! totals, and invalid YAML is a 400 listing every issue with its line.

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

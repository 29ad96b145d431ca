//! Multi-agent sessions on the real model: a shipped scenario run through `semantic scenario
//! run` against a real server (transcript files, KV reuse of permanent agents across phases),
//! and a permanent agent whose next phase, after a server restart, still reuses its memory.

use std::process::Command;

use serde_json::{json, Value};

use crate::harness::{tempdir::TempDir, Server};

fn cached(turn: &Value) -> u64 {
    turn["usage"]["prompt_tokens_details"]["cached_tokens"].as_u64().unwrap_or(0)
}

#[test]
fn a_shipped_scenario_runs_through_the_cli_and_permanent_agents_reuse_their_memory() {
    let server = Server::start(&[]);
    let out = TempDir::new("scenario-out");
    let scenario = concat!(env!("CARGO_MANIFEST_DIR"), "/../../scenarios/tiny.yaml");
    let run = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["scenario", "run", scenario, "--url", &format!("http://{}", server.addr)])
        .args(["--max-tokens", "48", "--seed", "3", "--out"])
        .arg(out.path())
        .output()
        .expect("run the CLI");
    let log = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{log}\n{}", server.stderr());
    assert!(log.contains("== phase hello") && log.contains("== phase recall"), "{log}");
    let transcript: Value =
        serde_json::from_slice(&std::fs::read(out.path().join("transcript.json")).unwrap()).unwrap();
    let markdown = std::fs::read_to_string(out.path().join("transcript.md")).unwrap();
    assert!(markdown.starts_with("# Tiny two-phase chat"), "{markdown}");
    assert_eq!(transcript["status"], "completed");
    let phases = transcript["phases"].as_array().unwrap();
    assert_eq!(phases.len(), 2);
    // Phase two's opening quotes phase one (the template), and every turn has its usage.
    let hello: Vec<&Value> = phases[0]["turns"].as_array().unwrap().iter().collect();
    let opening = phases[1]["messages"][0]["content"].as_str().unwrap();
    for turn in &hello {
        let said = turn["content"].as_str().unwrap();
        if !said.is_empty() {
            assert!(opening.contains(said.trim()), "{said:?} missing from {opening:?}");
        }
    }
    // Each permanent agent's phase-two turn reuses at least its whole phase-one prompt.
    for turn in phases[1]["turns"].as_array().unwrap() {
        let previous = turn["previous_prompt_tokens"].as_u64().expect("a previous prompt");
        assert!(cached(turn) >= previous, "{turn}");
    }
    let memory = &transcript["memory"];
    for agent in memory["agents"].as_array().unwrap() {
        assert_eq!(agent["turns_reusing_previous_prompt"], agent["turns_after_first"], "{agent}");
    }
    assert!(memory["prefilled_tokens"].as_u64() < memory["naive_prefill_tokens"].as_u64(), "{memory}");
}

#[test]
fn a_permanent_agent_continues_its_memory_after_a_restart_between_phases() {
    let server = Server::start(&[]);
    let session = |server: &Server, prompt: &str| -> String {
        let body = json!({
            "topology": "round_robin",
            "persistent_cache_prefix": "saga",
            "initial_prompt": prompt,
            "agents": [
                {"display_name": "Ann", "lifecycle": "permanent", "system_prompt": "Answer in one sentence."},
                {"display_name": "Ben", "lifecycle": "permanent", "system_prompt": "Answer in one sentence."}
            ],
            "max_tokens": 32, "seed": 5,
        });
        let made = server.post_json("/v1/coordination/sessions", &body);
        assert_eq!(made.status, 201, "{}", made.body);
        made.json()["session_id"].as_str().unwrap().to_owned()
    };
    let phase1 = session(&server, "Name a colour you like.");
    let round = server.post_json(&format!("/v1/coordination/sessions/{phase1}/round"), &json!({}));
    assert_eq!(round.status, 200, "{}", round.body);
    let before: Vec<Value> = round.json()["turns"].as_array().unwrap().clone();

    let (exit, dir) = server.terminate_keeping_dir();
    assert!(exit.success());
    let server = Server::start_in(dir, &[]);
    // The phase-one session is still there, its turns recorded.
    let restored = server.request("GET", &format!("/v1/coordination/sessions/{phase1}"), None).json();
    assert_eq!(restored["current_turn"], 2, "{restored}");
    let phase2 = session(&server, "Now name a fruit.");
    let round = server.post_json(&format!("/v1/coordination/sessions/{phase2}/round"), &json!({}));
    assert_eq!(round.status, 200, "{}", round.body);
    for (turn, old) in round.json()["turns"].as_array().unwrap().iter().zip(&before) {
        let previous = old["usage"]["prompt_tokens"].as_u64().unwrap();
        assert_eq!(turn["previous_prompt_tokens"].as_u64(), Some(previous), "{turn}");
        assert!(cached(turn) >= previous, "after the restart {turn} reused less than its phase-one prompt {previous}");
    }
}

//! `semantic bench --smoke`: every scenario runs end to end against a real server at tiny sizes,
//! so the bench never rots; the checks are on what it measured, not on speed.

use std::process::Command;

use serde_json::Value;

use crate::harness::{model_path, tempdir::TempDir};

#[test]
fn bench_smoke_runs_every_scenario_and_writes_json_markdown_and_plots() {
    let out = TempDir::new("bench");
    let status = Command::new(env!("CARGO_BIN_EXE_semantic"))
        .args(["bench", "--smoke", "--out"])
        .arg(out.path())
        .arg("--model")
        .arg(model_path())
        .env_remove("SEMANTIC_CONFIG")
        .env_remove("SEMANTIC_BENCH_VENV")
        .status()
        .expect("run semantic bench");
    assert!(status.success(), "semantic bench --smoke failed: {status}");
    let results: Value =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("results.json")).unwrap()).unwrap();
    assert_eq!(results["errors"].as_array().map(Vec::len), Some(0), "{}", results["errors"]);

    // TTFT: both sizes in all three modes, each with a positive median.
    let ttft = results["ttft"].as_array().unwrap();
    for context in [64, 128] {
        for mode in ["cold", "warm-after-restart", "hot"] {
            let row = ttft.iter().find(|r| r["context"] == context && r["mode"] == mode).expect("a TTFT row");
            assert!(row["summary"]["median"].as_f64().unwrap() > 0.0, "{row}");
        }
    }
    // The follow-up turns reuse the agent's KV: after a restart (from disk) and hot (from RAM).
    for mode in ["warm-after-restart", "hot"] {
        for row in ttft.iter().filter(|r| r["mode"] == mode) {
            let sample = &row["samples"][0];
            let (cached, prompt) =
                (sample["cached_tokens"].as_u64().unwrap(), sample["prompt_tokens"].as_u64().unwrap());
            assert!(cached > prompt / 2, "{mode}: only {cached} of {prompt} prompt tokens reused");
            let engine_ms = sample["server_prompt_ms"].as_f64().expect("semantic reports timings.prompt_ms");
            assert!(engine_ms <= sample["ttft_ms"].as_f64().unwrap(), "{sample}");
        }
    }
    // Multi-agent: the turn after the restart reuses most of every agent's history.
    let turns = results["multi_agent"][0]["turns"].as_array().unwrap();
    assert_eq!(turns.len(), 2);
    let after = &turns[1];
    assert!(after["cached_tokens"].as_u64().unwrap() * 2 > after["prompt_tokens"].as_u64().unwrap(), "{after}");
    // Throughput: EOS is banned, so every agent generates exactly its 8 tokens.
    for row in results["throughput"].as_array().unwrap() {
        assert_eq!(row["tokens"].as_u64().unwrap(), 8 * row["concurrency"].as_u64().unwrap(), "{row}");
    }
    assert!(results["staggered"][0]["b_ttft_ms"].as_f64().unwrap() > 0.0);
    // Coordination: both ways ran every turn of the broadcast session.
    let coordination = &results["coordination"];
    assert_eq!(coordination["concurrent_s"].as_array().map(Vec::len), Some(1), "{coordination}");
    assert_eq!(coordination["sequential_s"].as_array().map(Vec::len), Some(1), "{coordination}");
    assert!(coordination["prompt_tokens"].as_u64().unwrap() > 0, "{coordination}");
    // KV types: q5_1 K with q4_0 V files take about a third of f16's bytes per token.
    let kv = results["kv_types"].as_array().unwrap();
    assert_eq!(kv.len(), 2);
    assert_eq!((kv[0]["kv_type"].as_str(), kv[1]["kv_type"].as_str()), (Some("f16"), Some("q5_1/q4_0")));
    let ratio = kv[1]["disk_bytes_per_token"].as_f64().unwrap() / kv[0]["disk_bytes_per_token"].as_f64().unwrap();
    assert!((0.25..0.4).contains(&ratio), "q5_1/q4_0 over f16 bytes per token: {ratio}");

    // Start-up: every stored agent is listed after the restarts and the first one's next turn
    // comes from disk.
    let startup = &results["startup"];
    assert_eq!(startup["listed"], 3, "{startup}");
    assert!(startup["stored_bytes"].as_u64().unwrap() > 0, "{startup}");
    assert_eq!(startup["stored_start_s"].as_array().map(Vec::len), Some(1), "{startup}");
    let (cached, prompt) =
        (startup["next_turn_cached"].as_u64().unwrap(), startup["next_turn_prompt"].as_u64().unwrap());
    assert!(cached > prompt / 2, "startup: only {cached} of {prompt} prompt tokens reused");

    let report = std::fs::read_to_string(out.path().join("report.md")).unwrap();
    for heading in
        ["## TTFT", "## Multi-agent", "## Aggregate decode", "## Staggered", "## KV types", "## Start-up", "## Plots"]
    {
        assert!(report.contains(heading), "report.md lacks {heading}");
    }
    for plot in ["ttft.png", "multi_agent.png", "throughput.png"] {
        let bytes = std::fs::read(out.path().join(plot)).unwrap();
        assert!(bytes.starts_with(b"\x89PNG\r\n\x1a\n"), "{plot} is not a PNG");
    }
}

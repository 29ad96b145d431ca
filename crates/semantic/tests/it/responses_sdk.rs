//! The Responses API with the official OpenAI Python SDK against the real server:
//! `tests/sdk/test_responses.py` runs turns 1-2 of a conversation (plain and streamed), a streamed
//! three-turn chain and a tool-call round trip, the server restarts on the same cache directory,
//! and turn 3 continues the stored turn 2, reporting turn 2's prompt as cached (agent memory from
//! disk, stored response from `<cache-dir>/responses`).

use crate::harness::Server;
use crate::python::run_sdk_script;

fn run(server: &Server, phase: &str, state: &std::path::Path) -> String {
    let url = format!("http://{}", server.addr);
    run_sdk_script("test_responses.py", &[&url, phase, &state.display().to_string()], &[])
}

#[test]
fn responses_sdk_chain_survives_a_restart() {
    let server = Server::start(&[]);
    let state = std::env::temp_dir().join(format!("semantic-responses-sdk-{}.json", std::process::id()));
    let before = run(&server, "before", &state);
    let (status, dir) = server.terminate_keeping_dir();
    assert!(status.success(), "{status}");
    let server = Server::start_in(dir, &[]);
    let after = run(&server, "after", &state);
    let _ = std::fs::remove_file(&state);
    eprintln!("{before}{after}");
}

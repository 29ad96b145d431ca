//! The official OpenAI and Anthropic Python SDKs against the real server: runs
//! `tests/sdk/test_sdk.py` with the `.venv-test` made by `scripts/setup-python-tests`.

use crate::harness::Server;
use crate::python::run_sdk_script;

#[test]
fn the_official_python_sdks_work_end_to_end() {
    let server = Server::start(&[]);
    let url = format!("http://{}", server.addr);
    // Agent memory is in: a second turn must report the first turn's prompt as cached.
    run_sdk_script("test_sdk.py", &[&url], &[("SEMANTIC_EXPECT_CACHE", "1")]);
}

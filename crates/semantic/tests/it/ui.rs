//! The web page in a real browser: starts a server on the real model and runs the Playwright
//! driver `tests/ui/ui.test.mjs` against it (chromium and playwright-core come from
//! `scripts/setup-ui-tests`, which `scripts/test` runs). Screenshots land in
//! `target/ui-artifacts/`. A second server with API and admin keys checks that the page asks for
//! the key and then works, admin actions included.

use std::path::PathBuf;
use std::process::Command;

use crate::harness::Server;

const KEY: &str = "ui-test-key-0001";
const ADMIN: &str = "ui-test-admin-0001";

#[test]
fn the_web_page_works_in_a_real_browser() {
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
    let driver = repo.join("tests/ui/ui.test.mjs");
    assert!(
        repo.join("tests/ui/node_modules/playwright-core").is_dir(),
        "playwright-core is not installed: run scripts/setup-ui-tests (scripts/test does)"
    );
    let server = Server::start(&[]);
    let locked = Server::start(&["--api-key", KEY, "--admin-key", ADMIN]);
    let artifacts = repo.join("target/ui-artifacts");
    let output = Command::new("node")
        .arg(&driver)
        .args(["--url", &format!("http://{}", server.addr)])
        .args(["--locked-url", &format!("http://{}", locked.addr), "--key", KEY, "--admin-key", ADMIN])
        .arg("--artifacts")
        .arg(&artifacts)
        .output()
        .expect("run node (scripts/setup-ui-tests installs it)");
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "the browser test failed:\n{log}\n--- server ---\n{}", server.stderr());
    eprintln!("{log}");
}

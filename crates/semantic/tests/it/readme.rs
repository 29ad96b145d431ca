//! The README's quick start, run as written against a real server: every fenced block whose info
//! string is `sh readme-test` (bash) or `python readme-test` (the `.venv-test` Python with the
//! official SDKs) runs in order, with `127.0.0.1:8000` / `localhost:8000` pointed at the test
//! server. A following `text readme-output` block is the documented output: each of its lines
//! must appear, numbers standing for any number, and every `turn 2 ...: N` line must have N > 0
//! (the second turn of an agent reuses the first).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::harness::Server;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A runnable block and the output the README documents for it.
#[derive(Debug)]
struct Example {
    lang: String,
    code: String,
    /// README line of the opening fence, for messages.
    line: usize,
    expected: Option<String>,
}

/// The marked blocks of a Markdown text, in order.
fn examples(markdown: &str) -> Vec<Example> {
    let mut out: Vec<Example> = Vec::new();
    let mut lines = markdown.lines().enumerate();
    while let Some((n, line)) = lines.next() {
        let Some(info) = line.strip_prefix("```") else { continue };
        let body: Vec<&str> = lines.by_ref().map(|(_, l)| l).take_while(|l| !l.starts_with("```")).collect();
        let text = body.join("\n") + "\n";
        let words: Vec<&str> = info.split_whitespace().collect();
        match words.as_slice() {
            [lang, "readme-test"] => {
                out.push(Example { lang: lang.to_string(), code: text, line: n + 1, expected: None })
            }
            ["text", "readme-output"] => {
                let last = out.last_mut().unwrap_or_else(|| panic!("README line {}: output without an example", n + 1));
                last.expected = Some(text);
            }
            _ => {}
        }
    }
    out
}

/// Each documented line appears in `actual`, digits matching any number; `turn 2` counts are > 0.
fn check_output(expected: &str, actual: &str, line: usize) {
    // Every run of digits reads as one `#`.
    let shape = |l: &str| -> String {
        let mut out = String::new();
        for c in l.trim().chars().map(|c| if c.is_ascii_digit() { '#' } else { c }) {
            if !(c == '#' && out.ends_with('#')) {
                out.push(c);
            }
        }
        out
    };
    for want in expected.lines().filter(|l| !l.trim().is_empty()) {
        assert!(
            actual.lines().any(|got| shape(got) == shape(want)),
            "README line {line}: documented output {want:?} not in:\n{actual}"
        );
    }
    for got in actual.lines().filter(|l| l.starts_with("turn 2 ")) {
        let n: u64 = got.rsplit(' ').next().and_then(|v| v.parse().ok()).unwrap_or(0);
        assert!(n > 0, "README line {line}: the second turn reused nothing: {got:?}\n{actual}");
    }
}

fn python(root: &Path) -> PathBuf {
    let python = root.join(".venv-test/bin/python");
    if !python.exists() {
        let status =
            Command::new(root.join("scripts/setup-python-tests")).status().expect("run scripts/setup-python-tests");
        assert!(status.success(), "scripts/setup-python-tests failed");
    }
    python
}

#[test]
fn readme_quick_start_runs_as_written() {
    let root = repo();
    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let examples = examples(&readme);
    let langs: Vec<&str> = examples.iter().map(|e| e.lang.as_str()).collect();
    assert_eq!(langs, ["sh", "python", "python", "sh"], "the quick start's runnable blocks");
    assert!(examples.iter().all(|e| e.expected.is_some()), "every example documents its output");
    let server = Server::start(&[]);
    let addr = server.addr.to_string();
    for example in &examples {
        let code = example.code.replace("127.0.0.1:8000", &addr).replace("localhost:8000", &addr);
        let mut command = match example.lang.as_str() {
            "sh" => {
                let mut c = Command::new("bash");
                c.args(["-euo", "pipefail", "-c", &code]);
                c
            }
            "python" => {
                let mut c = Command::new(python(&root));
                c.args(["-c", &code]).env("PYTHONDONTWRITEBYTECODE", "1");
                c
            }
            other => panic!("README line {}: no runner for {other}", example.line),
        };
        let out = command.current_dir(&root).output().expect("run a README example");
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "README line {} failed ({}):\n{code}\n{stdout}\n{}",
            example.line,
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        eprintln!("README line {}:\n{stdout}", example.line);
        check_output(example.expected.as_deref().unwrap_or_default(), &stdout, example.line);
    }
}

#[test]
fn output_shapes_compare_numbers_as_numbers() {
    check_output(
        "turn 1 cached_tokens: 0\nturn 2 cached_tokens: 61\n",
        "turn 1 cached_tokens: 0\nturn 2 cached_tokens: 7\n",
        1,
    );
    let missing = std::panic::catch_unwind(|| check_output("demo-curl hot 101 tokens", "demo-curl warm 9 tokens", 1));
    assert!(missing.is_err(), "a different word is a different line");
    let zero = std::panic::catch_unwind(|| check_output("", "turn 2 cached_tokens: 0", 1));
    assert!(zero.is_err(), "a second turn that reused nothing fails");
    let blocks = examples("```sh readme-test\necho hi\n```\n\n```text readme-output\nhi\n```\n```sh\nnot run\n```\n");
    assert_eq!(blocks.len(), 1);
    assert_eq!((blocks[0].code.as_str(), blocks[0].expected.as_deref()), ("echo hi\n", Some("hi\n")));
}

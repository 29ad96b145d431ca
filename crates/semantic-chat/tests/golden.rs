//! Golden tests: every real-world template in `fixtures/templates/` rendered over every case in
//! `fixtures/cases.json` must equal, byte for byte, what jinja2 with Hugging Face's settings
//! produced (`fixtures/golden/`, written by `fixtures/gen_golden.py`); where the template rejects
//! a case through `raise_exception`, the error message must match instead.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use semantic_chat::{ChatError, ChatTemplate, Message};
use serde::Deserialize;

#[derive(Deserialize)]
struct Cases {
    now_unix: u64,
    templates: BTreeMap<String, Tokens>,
    cases: BTreeMap<String, Case>,
}

#[derive(Deserialize)]
struct Tokens {
    bos_token: String,
    eos_token: String,
}

#[derive(Deserialize)]
struct Case {
    add_generation_prompt: bool,
    messages: Vec<Message>,
    tools: Option<serde_json::Value>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Where two texts first differ, with a little context, for a readable failure.
fn first_difference(want: &str, got: &str) -> String {
    let at = want
        .char_indices()
        .zip(got.chars())
        .find(|((_, w), g)| w != g)
        .map_or(want.len().min(got.len()), |((i, _), _)| i);
    let mut from = at.saturating_sub(40);
    while !want.is_char_boundary(from) {
        from -= 1;
    }
    format!("first difference at byte {at}\n  want: {:?}\n  got:  {:?}", &want[from..], got.get(from..).unwrap_or(got))
}

#[test]
fn templates_render_like_jinja2() {
    let dir = fixtures();
    let cases: Cases =
        serde_json::from_str(&read(&dir.join("cases.json")).expect("cases.json")).expect("cases.json parses");
    let now = UNIX_EPOCH + Duration::from_secs(cases.now_unix);
    let mut failures = Vec::new();
    let mut checked = 0;

    for (name, tokens) in &cases.templates {
        let source = read(&dir.join(format!("templates/{name}.jinja"))).expect("template file");
        let template = ChatTemplate::new(&source, &tokens.bos_token, &tokens.eos_token)
            .unwrap_or_else(|e| panic!("{name} compiles: {e}"))
            .with_now(now);
        assert_eq!(template.source(), source);

        for (case_name, case) in &cases.cases {
            let pair = format!("{name}__{case_name}");
            let golden = read(&dir.join(format!("golden/{pair}.txt")));
            let golden_error = read(&dir.join(format!("golden/{pair}.error.txt")));
            let got = template.render(&case.messages, case.tools.as_ref(), case.add_generation_prompt);
            checked += 1;
            match (golden, golden_error, got) {
                (Some(want), None, Ok(got)) if want == got => {}
                (Some(want), None, Ok(got)) => {
                    failures.push(format!("{pair}: {}", first_difference(&want, &got)));
                }
                (None, Some(want), Err(ChatError::Template { message })) if want == message => {}
                (None, Some(want), got) => {
                    failures.push(format!("{pair}: want error {want:?}, got {got:?}"));
                }
                (Some(_), None, Err(err)) => failures.push(format!("{pair}: unexpected {err}")),
                (golden, error, _) => failures.push(format!(
                    "{pair}: need exactly one golden file (.txt: {}, .error.txt: {}); run gen_golden.py",
                    golden.is_some(),
                    error.is_some()
                )),
            }
        }
    }

    let on_disk = std::fs::read_dir(dir.join("golden")).expect("golden dir").count();
    assert_eq!(on_disk, checked, "golden/ has files for pairs that no longer exist; run gen_golden.py");
    assert!(failures.is_empty(), "{} of {checked} pairs differ:\n{}", failures.len(), failures.join("\n"));
}

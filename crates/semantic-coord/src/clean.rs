//! Cleaning a model's reply to a coordination turn into the message the session records: the
//! GPT-OSS final channel, no template tokens, no echoed `Name:` or `[Name, respond now.]`, and
//! nothing from a turn the model went on to invent for someone else.
//!
//! Owns: `clean_response`. Does not own: generation, what an empty result means for the turn
//! (the session skips recording it but still advances).
//!
//! Re-implements the original's `_clean_agent_response` (seed §1.7), deliberately differing in:
//! an end-of-turn token (`<|im_end|>`, `<end_of_turn>`, `</s>`, ...) anywhere ends the reply, not
//! only one that starts a line, since what follows it is always an invented turn; a reply that opens
//! as another speaker (`Bob: ...` when Alice speaks) is empty, not recorded as Alice's words;
//! Harmony text with only an analysis channel is empty, so private reasoning never reaches the
//! channel; names are matched literally (regex-escaped) and case-insensitively.

use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Builds a regex from a literal pattern of this file.
fn literal(pattern: &str) -> Regex {
    // The patterns are literals in this file, each exercised by the tests: they compile.
    Regex::new(pattern).expect("literal pattern")
}

/// The start of the GPT-OSS Harmony final channel's message (the last one wins).
static HARMONY_FINAL: LazyLock<Regex> =
    LazyLock::new(|| literal(r"<\|channel\|>\s*final\b[^<]*(?:<\|constrain\|>[^<]*)?<\|message\|>"));

/// Role headers a template may leave at the start of a reply: `<|im_start|>assistant`,
/// `<start_of_turn>model`, `<|start_header_id|>assistant<|end_header_id|>`, `<s>`.
static LEADING_HEADER: LazyLock<Regex> = LazyLock::new(|| {
    literal(
        r"^\s*(?:<\|(?:im_start|start|start_header_id|begin_of_text|assistant)\|>|<start_of_turn>|<s>)[ \t]*(?:(?:assistant|model)\b)?[ \t]*(?:<\|end_header_id\|>)?",
    )
});

/// Tokens that end the model's turn or start another; whatever follows them is not this reply.
static TURN_BOUNDARY: LazyLock<Regex> = LazyLock::new(|| {
    literal(
        r"<\|(?:im_end|im_start|eot_id|end|return|start|endoftext|end_of_text|start_header_id|user|system|assistant)\|>|<end_of_turn>|<start_of_turn>|</s>",
    )
});

/// Any other special token left in the text.
static SPECIAL_TOKEN: LazyLock<Regex> = LazyLock::new(|| literal(r"<\|[^|<>\n]{0,64}\|>|<s>"));

/// An echoed or invented `[Name, respond now.]` cue at the start of the text.
static LEADING_CUE: LazyLock<Regex> =
    LazyLock::new(|| literal(r"(?i)^\s*\[[^\[\]\n]{1,120}?,[ \t]*respond now\.?[ \t]*\][ \t]*"));

/// Three or more line breaks (blank lines may hold spaces).
static BLANK_LINES: LazyLock<Regex> = LazyLock::new(|| literal(r"\n[ \t]*\n(?:[ \t]*\n)+"));

/// Where GPT-OSS output puts the answer when its Harmony tokens were not rendered as text.
const BARE_HARMONY_FINAL: &str = "assistantfinal";

/// A speaker label: `Name:`, `**Name:**`, `Name (role):`, for the alternation `names`.
fn label(names: &str) -> String {
    format!(r"(?:\*\*)?(?:{names})(?:[ \t]*\([^()\n]{{0,80}}\))?(?:\*\*)?[ \t]*:(?:\*\*)?")
}

/// `a|b|c`, each regex-escaped, skipping blank names.
fn alternation<'a>(names: impl IntoIterator<Item = &'a str>) -> String {
    let names: Vec<String> = names.into_iter().map(str::trim).filter(|n| !n.is_empty()).map(regex::escape).collect();
    names.join("|")
}

/// Builds a case-insensitive regex over escaped names; `None` if it is too large to compile.
fn names_regex(pattern: &str) -> Option<Regex> {
    RegexBuilder::new(pattern).case_insensitive(true).multi_line(true).build().ok()
}

/// The GPT-OSS final channel's text, if the reply is Harmony-shaped: `Some("")` when it has
/// channels but no final one.
fn harmony_final(text: &str) -> Option<&str> {
    if let Some(m) = HARMONY_FINAL.find_iter(text).last() {
        return Some(&text[m.end()..]);
    }
    if text.contains("<|channel|>") {
        return Some("");
    }
    if text.trim_start().starts_with("analysis") {
        if let Some(i) = text.rfind(BARE_HARMONY_FINAL) {
            return Some(&text[i + BARE_HARMONY_FINAL.len()..]);
        }
    }
    None
}

/// Cleans a model's reply to a coordination turn. `speaker` is the speaking agent's display name;
/// `others` the other agents' display names. Returns "" when nothing of the reply is left.
pub fn clean_response(raw: &str, speaker: &str, others: &[&str]) -> String {
    let normalised = raw.replace("\r\n", "\n");
    let mut text: &str = harmony_final(&normalised).unwrap_or(&normalised);
    while let Some(m) = LEADING_HEADER.find(text) {
        if m.end() == 0 {
            break;
        }
        text = &text[m.end()..];
    }
    if let Some(m) = TURN_BOUNDARY.find(text) {
        text = &text[..m.start()];
    }
    let stripped = SPECIAL_TOKEN.replace_all(text, "");

    // Echoes at the start: the speaker's own label, `Assistant:`, the cue; in any order, repeatedly.
    let echo = names_regex(&format!(r"\A\s*{}[ \t]*", label(&alternation([speaker, "Assistant"]))));
    let mut text: &str = &stripped;
    loop {
        let before = text.len();
        if let Some(m) = echo.as_ref().and_then(|re| re.find(text)) {
            text = &text[m.end()..];
        }
        if let Some(m) = LEADING_CUE.find(text) {
            text = &text[m.end()..];
        }
        if text.len() == before {
            break;
        }
    }

    // The earliest line, the first included, that starts a new speaker or an invented cue.
    let roles = ["User", "You", "System", "Assistant"];
    let known = alternation(roles.into_iter().chain([speaker]).chain(others.iter().copied()));
    let cue = r"\[[^\[\]\n]{1,120}?,[ \t]*respond now\.?[ \t]*\]";
    let new_speaker = names_regex(&format!(r"^[ \t]*(?:{}|{cue})", label(&known)))
        .or_else(|| names_regex(&format!(r"^[ \t]*(?:{}|{cue})", label(&alternation(roles)))));
    if let Some(m) = new_speaker.as_ref().and_then(|re| re.find(text)) {
        text = &text[..m.start()];
    }
    let text = BLANK_LINES.replace_all(text, "\n\n");
    unquote(text.trim()).to_string()
}

/// A reply wrapped whole in one pair of double quotes, without, as SmolLM2 often writes it after
/// its `Name:` prefill (`Ida: "We share."`); quotes inside the reply are kept.
fn unquote(text: &str) -> &str {
    match text.strip_prefix('"').and_then(|t| t.strip_suffix('"')) {
        Some(inner) if !inner.contains('"') && !inner.trim().is_empty() => inner.trim(),
        _ => text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cleans `raw` as `speaker`'s reply in a session with `others` and compares.
    fn check(case: &str, raw: &str, speaker: &str, others: &[&str], want: &str) {
        let got = clean_response(raw, speaker, others);
        assert_eq!(got, want, "case: {case}\nraw: {raw:?}");
    }

    #[test]
    fn cleans_replies_as_models_write_them() {
        let cases: &[(&str, &str, &str)] = &[
            ("plain", "I think we should share.", "I think we should share."),
            ("trimmed", "  \n I think we should share.\n\n", "I think we should share."),
            // Shaped like a small model (SmolLM2-135M) continuing the chat script: it names itself,
            // then writes the others' turns.
            ("echoed name, invented turn", "Alice: I think we should share.\nBob: No way.", "I think we should share."),
            ("invented turns go on", "I agree with the plan.\nBob: Me too.\nAlice: Great.\nUser: Thanks!", "I agree with the plan."),
            ("assistant echo", "Assistant: Sure!", "Sure!"),
            ("lowercase assistant", "assistant: Sure!", "Sure!"),
            ("role in parentheses", "Alice (mediator): Let us vote.", "Let us vote."),
            ("bold label", "**Alice:** Let us vote.", "Let us vote."),
            ("echoed cue", "[Alice, respond now.]\nAlice: Hello Bob.", "Hello Bob."),
            ("echoes repeated", "Assistant: Alice: [Alice, respond now.] Alice: Hi.", "Hi."),
            ("invented cue", "Fine by me.\n[Bob, respond now.]\nBob: ok", "Fine by me."),
            ("own name later", "First point.\nAlice: second point as a new turn", "First point."),
            ("new speaker with role", "Done.\nBob (critic): Not done.", "Done."),
            ("You and System", "Yes.\nYou: what?\nSystem: stop", "Yes."),
            ("indented label", "Yes.\n  Bob: no", "Yes."),
            ("metacharacter name", "Agreed.\nDr. (Who)?: Disagree.", "Agreed."),
            ("metacharacter name only as text", "Agreed.\nDr X: not a speaker.", "Agreed.\nDr X: not a speaker."),
            ("name mid-line", "I agree with Bob: sharing is good.", "I agree with Bob: sharing is good."),
            ("name at line start without colon", "Yes.\nBob is right about that.", "Yes.\nBob is right about that."),
            ("longer word", "Yes.\nBobby: hi", "Yes.\nBobby: hi"),
            ("opens as another speaker", "Bob: No way.", ""),
            ("only an echo", "Alice:", ""),
            ("only a cue", "[Alice, respond now.]", ""),
            ("empty", "", ""),
            ("collapse blank lines", "One.\n\n\n\nTwo.\n \n\t\nThree.", "One.\n\nTwo.\n\nThree."),
            ("windows newlines", "One.\r\nBob: two", "One."),
            ("chatml end", "Hello there.<|im_end|>\n<|im_start|>user\nBob: hi", "Hello there."),
            ("chatml header", "<|im_start|>assistant\nAlice: Hello.", "Hello."),
            ("eos token", "Bye.</s>Bob: x", "Bye."),
            ("gemma turn", "<start_of_turn>model\nSure thing.<end_of_turn>\n<start_of_turn>user\nmore", "Sure thing."),
            ("llama3 header", "<|start_header_id|>assistant<|end_header_id|>\n\nHi all.<|eot_id|>", "Hi all."),
            ("stray special token", "Hi<|reserved_0|> all.", "Hi all."),
            ("leading end token", "<|im_end|>Bob: hi", ""),
            (
                "harmony final",
                "<|channel|>analysis<|message|>We should agree.<|end|><|start|>assistant<|channel|>final<|message|>Alice: I agree.<|return|>",
                "I agree.",
            ),
            ("harmony constrained", "<|channel|>final <|constrain|>text<|message|>Yes.<|end|>", "Yes."),
            ("harmony without final", "<|channel|>analysis<|message|>Thinking about Bob...", ""),
            ("harmony bare", "analysisNeed to answer briefly.assistantfinalWe share.", "We share."),
            ("angle text kept", "Use a < b and b > c.", "Use a < b and b > c."),
            ("wrapped in quotes", " \"We share.\" ", "We share."),
            ("inner quotes kept", "\"Share\" or \"hoard\"", "\"Share\" or \"hoard\""),
            ("only quotes", "\"\"", "\"\""),
        ];
        for (case, raw, want) in cases {
            check(case, raw, "Alice", &["Bob", "Dr. (Who)?"], want);
        }
    }

    /// Replies SmolLM2-135M-Instruct (Q4_1) wrote in `scenarios/lighthouse_keepers.yaml` runs
    /// (`--seed 1` and `2`, `--max-tokens 64`), raw as generated, before and after the reply was
    /// prefilled with the speaker's `Name:` (long ones abridged). Speakers: Harbour Master, Ida, Tor.
    #[test]
    fn cleans_real_smollm2_replies() {
        let storm = "The storm has arrived, and with it, a new challenge to the crew's ability to provide for \
                     their loved ones.";
        let cases: &[(&str, &str, String, &str)] = &[
            // Without the prefill, Tor opened as Ida: nothing of it is Tor's.
            (
                "opens as another keeper",
                "Tor",
                format!("Ida: {storm} It is clear that the crew needs extra support in order to ensure the safety"),
                "",
            ),
            // It echoed its own cue after the text.
            (
                "echoed cue at the end",
                "Ida",
                format!("{storm} Ida, the captain, is addressing the issue\n\n[Ida, respond now.]"),
                "Ida, the captain, is addressing the issue",
            ),
            // After the prefill: a leading space, the reply in quotes.
            (
                "quoted after the prefill",
                "Harbour Master",
                " \"The storm is getting worse and we need to ration our supplies until tomorrow.\"".into(),
                "The storm is getting worse and we need to ration our supplies until tomorrow.",
            ),
            // An invented speaker nobody in the session is called stays: only known names cut a reply.
            (
                "invented speaker kept",
                "Ida",
                " \"The storm is getting worse.\"\nKeeper: \"Not a day longer.\"".into(),
                "\"The storm is getting worse.\"\nKeeper: \"Not a day longer.\"",
            ),
        ];
        for (case, speaker, raw, want) in cases {
            let others: Vec<&str> = ["Harbour Master", "Ida", "Tor"].into_iter().filter(|n| n != speaker).collect();
            let got = clean_response(raw, speaker, &others);
            let want = if case.starts_with("echoed") { format!("{storm} {want}") } else { (*want).to_owned() };
            assert_eq!(got, want, "case: {case}\nraw: {raw:?}");
        }
    }

    #[test]
    fn names_are_taken_from_the_session() {
        let cases: &[(&str, &str, &[&str], &str)] = &[
            ("other speaker's own name stripped", "Bob: Fine.\nAlice: hm", &["Alice"], "Fine."),
            ("blank names ignored", "Fine.\n: x", &["", "  "], "Fine.\n: x"),
            ("no others", "Fine.\nAssistant: again", &[], "Fine."),
            ("plus in a name", "Fine.\nC++ Fan: no", &["C++ Fan"], "Fine."),
        ];
        for (case, raw, others, want) in cases {
            check(case, raw, "Bob", others, want);
        }
    }
}

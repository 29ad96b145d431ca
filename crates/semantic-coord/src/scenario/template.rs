//! Cross-phase templates: finding `${phase.messages[agent]}` references and expanding each into
//! that phase's transcript as `Name: content` lines, as seen by the referenced agent. Does not own
//! where transcripts come from (the caller's `phase_lines`).

use std::sync::LazyLock;

use regex::{Captures, Regex};

// Invariant: a literal pattern, exercised by the tests.
static PHASE_REF: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\$\{(\w+)\.messages\[(\w+)\]\}").expect("valid regex"));

/// What an expansion gives for a phase without messages.
pub const NO_MESSAGES: &str = "(no messages yet)";

/// One message of a phase transcript.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranscriptLine {
    /// The speaking agent's key; `None` for a system message (skipped in expansions).
    pub agent_key: Option<String>,
    /// The speaker's display name.
    pub display_name: String,
    /// What was said.
    pub content: String,
}

/// The `(phase, agent key)` pairs referenced by `template`, in order, repeats kept.
pub fn phase_refs(template: &str) -> Vec<(String, String)> {
    located_phase_refs(template).into_iter().map(|(_, phase, agent)| (phase, agent)).collect()
}

/// `phase_refs` with each reference's byte offset in `template`.
pub(super) fn located_phase_refs(template: &str) -> Vec<(usize, String, String)> {
    PHASE_REF
        .captures_iter(template)
        .map(|c| (c.get(0).map_or(0, |m| m.start()), c[1].to_string(), c[2].to_string()))
        .collect()
}

/// Replaces every `${phase.messages[agent]}` in `template` with the transcript
/// `phase_lines(phase, agent)` returns (the phase as that agent saw it), one `Name: content` line
/// per message; the `perspective` agent's own lines are labelled `You`, system lines are skipped,
/// and an unknown or empty phase gives `(no messages yet)`.
pub fn resolve_template(
    template: &str,
    perspective: Option<&str>,
    phase_lines: &dyn Fn(&str, &str) -> Option<Vec<TranscriptLine>>,
) -> String {
    PHASE_REF
        .replace_all(template, |c: &Captures<'_>| {
            let lines = phase_lines(&c[1], &c[2]).unwrap_or_default();
            let text: Vec<String> = lines
                .iter()
                .filter_map(|line| {
                    let key = line.agent_key.as_deref()?;
                    let name = if Some(key) == perspective { "You" } else { line.display_name.as_str() };
                    Some(format!("{name}: {}", line.content))
                })
                .collect();
            if text.is_empty() {
                NO_MESSAGES.to_string()
            } else {
                text.join("\n")
            }
        })
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(agent: Option<&str>, name: &str, content: &str) -> TranscriptLine {
        TranscriptLine {
            agent_key: agent.map(str::to_string),
            display_name: name.to_string(),
            content: content.to_string(),
        }
    }

    /// Transcripts: phase `dock` as alice and bob saw it (bob missed a whisper); `empty` has only
    /// a system line; anything else is unknown.
    fn lines(phase: &str, agent: &str) -> Option<Vec<TranscriptLine>> {
        match (phase, agent) {
            ("dock", "alice") => Some(vec![
                line(None, "System", "The dock opens."),
                line(Some("alice"), "Alice", "Hello."),
                line(Some("bob"), "Bob", "Hi."),
                line(Some("alice"), "Alice", "(whisper) Psst."),
            ]),
            ("dock", "bob") => Some(vec![line(Some("alice"), "Alice", "Hello."), line(Some("bob"), "Bob", "Hi.")]),
            ("empty", _) => Some(vec![line(None, "System", "Nothing yet.")]),
            _ => None,
        }
    }

    fn check(template: &str, perspective: Option<&str>, expected: &str) {
        assert_eq!(resolve_template(template, perspective, &lines), expected, "template {template:?}");
    }

    #[test]
    fn templates_expand_to_the_referenced_agents_view() {
        check("no refs", None, "no refs");
        check("${dock.messages[alice]}", None, "Alice: Hello.\nBob: Hi.\nAlice: (whisper) Psst.");
        check("${dock.messages[alice]}", Some("alice"), "You: Hello.\nBob: Hi.\nYou: (whisper) Psst.");
        check("Bob saw:\n${dock.messages[bob]}\nGo.", Some("bob"), "Bob saw:\nAlice: Hello.\nYou: Hi.\nGo.");
        check("[${empty.messages[bob]}]", None, "[(no messages yet)]");
        check("[${later.messages[bob]}]", None, "[(no messages yet)]");
        check("${dock.messages[bob]} / ${empty.messages[bob]}", None, "Alice: Hello.\nBob: Hi. / (no messages yet)");
        check("${dock.messages[a-b]}", None, "${dock.messages[a-b]}");
    }

    #[test]
    fn phase_refs_lists_pairs_in_order() {
        let refs = phase_refs("${a.messages[x]} and ${b_2.messages[y]} ${a.messages[x]} ${bad.msgs[x]}");
        let pairs: Vec<(&str, &str)> = refs.iter().map(|(p, a)| (p.as_str(), a.as_str())).collect();
        assert_eq!(pairs, [("a", "x"), ("b_2", "y"), ("a", "x")]);
    }
}

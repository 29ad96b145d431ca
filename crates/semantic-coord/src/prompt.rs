//! The words agents are given: the system message that opens an agent's memory, the style hint of
//! each debate format, how messages from others are shown (`Name: text`, whispers and private
//! notes marked), the speaking cue, the reply prefix the agent's answer is prefilled with (its own
//! `Name:`, so a small model continues as itself instead of opening as someone else), and the stop
//! strings that end a reply where the model starts to write someone else's line. Does not decide
//! who sees what (`session.rs`).

use crate::{AgentSpec, Channel, DebateFormat};

/// The cue that ends every turn's user message.
pub fn cue(name: &str) -> String {
    format!("[{name}, respond now.]")
}

/// The system message of an agent's first turn.
pub fn system_message(agent: &AgentSpec, others: &[&str], format: DebateFormat) -> String {
    let mut text = format!("Your name is {}.", agent.display_name);
    if agent.system_prompt.trim().is_empty() {
        text.push_str(&format!(" You are a {}.", agent.role));
    } else {
        text.push(' ');
        text.push_str(agent.system_prompt.trim());
    }
    text.push_str("\n\n");
    if others.is_empty() {
        text.push_str("You are in a conversation.");
    } else {
        text.push_str(&format!("You are in a conversation with {}.", join_names(others)));
    }
    text.push_str(&format!(
        " Everyone's words are shown as \"Name: text\". Speak only as {}, in your own words, without \
         speaking for anyone else. Keep each reply short.",
        agent.display_name
    ));
    if let Some(hint) = format_hint(format, &agent.role) {
        text.push(' ');
        text.push_str(hint);
    }
    text
}

/// `a`, `a and b`, `a, b and c`.
pub fn join_names(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The style hint of a debate format for an agent of `role` (None: no hint).
pub fn format_hint(format: DebateFormat, role: &str) -> Option<&'static str> {
    match format {
        DebateFormat::FreeForm => None,
        DebateFormat::Structured => Some("Structure each reply as a claim followed by your reasons."),
        DebateFormat::Socratic => Some("Mostly ask probing questions that test the others' claims."),
        DebateFormat::DevilsAdvocate => {
            let critic = ["critic", "devils_advocate", "devil's advocate", "skeptic"]
                .iter()
                .any(|r| role.eq_ignore_ascii_case(r));
            critic.then_some("Argue against whatever view the others are converging on.")
        }
        DebateFormat::Parliamentary => Some(
            "Speak as in a parliamentary debate: address the chair and say whether you are for or against the motion.",
        ),
    }
}

/// One line of what an agent is shown since its last turn (fields: the other agent's name, the
/// channel it came over, the text).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq)]
pub enum Line<'a> {
    /// The session's own text (opening prompt, narration).
    System(&'a str),
    /// Another agent's turn, over a channel (public unless the whisper topology routed it).
    Said { name: &'a str, channel: Channel, content: &'a str },
    /// A whisper to this agent.
    WhisperFrom { name: &'a str, content: &'a str },
    /// A whisper this agent sent.
    WhisperTo { name: &'a str, content: &'a str },
    /// Text only this agent was given.
    Private(&'a str),
    /// A message from an earlier phase.
    Prior { name: &'a str, content: &'a str },
}

/// Renders lines as they appear in a user message.
pub fn render_line(line: &Line<'_>) -> String {
    match line {
        Line::System(text) => text.trim().to_owned(),
        Line::Said { name, channel: Channel::Public, content } => format!("{name}: {}", content.trim()),
        Line::Said { name, channel: Channel::Whisper, content } => {
            format!("{name} (privately, to you): {}", content.trim())
        }
        Line::Said { name, channel: Channel::Observe, content } => format!("(overheard) {name}: {}", content.trim()),
        Line::WhisperFrom { name, content } => format!("{name} (whispering to you only): {}", content.trim()),
        Line::WhisperTo { name, content } => format!("(you whispered to {name}): {}", content.trim()),
        Line::Private(text) => format!("(only you know this) {}", text.trim()),
        Line::Prior { name, content } => format!("(earlier) {name}: {}", content.trim()),
    }
}

/// The user message of a turn: the new lines, then the cue.
pub fn turn_message(lines: &[Line<'_>], speaker: &str) -> String {
    let mut parts: Vec<String> = lines.iter().map(render_line).filter(|l| !l.is_empty()).collect();
    parts.push(cue(speaker));
    parts.join("\n\n")
}

/// What an agent's reply is prefilled with: its own speaker label. The model continues after it,
/// so it speaks as itself; the label is not part of the cleaned reply.
pub fn reply_prefix(name: &str) -> String {
    format!("{name}:")
}

/// The assistant message an agent's history keeps for a reply: the prefill it was generated
/// after, then the cleaned reply, so that the prompt that ended with the prefill is a prefix of
/// the next prompt's text (the agent's KV is reused).
pub fn spoken(prefix: &str, content: &str) -> String {
    match (prefix.is_empty(), content.is_empty()) {
        (true, _) => content.to_owned(),
        (false, true) => prefix.to_owned(),
        (false, false) => format!("{prefix} {content}"),
    }
}

/// Stop strings for a turn: a new line that starts another speaker's (or the speaker's own)
/// labelled line, or a chat role label. The reply is cut there, never emitted past it.
pub fn stop_strings(names: &[&str]) -> Vec<String> {
    let mut stops: Vec<String> = names.iter().map(|n| format!("\n{n}:")).collect();
    stops.extend(["\nUser:", "\nAssistant:", "\nSystem:"].map(String::from));
    stops
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Lifecycle;

    fn agent(system_prompt: &str, role: &str) -> AgentSpec {
        AgentSpec {
            agent_id: "ann".into(),
            display_name: "Ann".into(),
            role: role.into(),
            system_prompt: system_prompt.into(),
            lifecycle: Lifecycle::Ephemeral,
        }
    }

    #[test]
    fn system_message_names_the_agent_and_the_others() {
        let text = system_message(&agent("You like tea.", "participant"), &["Bob", "Cy"], DebateFormat::FreeForm);
        assert!(text.starts_with("Your name is Ann. You like tea.\n\nYou are in a conversation with Bob and Cy."));
        let text = system_message(&agent("", "judge"), &["Bob"], DebateFormat::Structured);
        assert!(text.contains("You are a judge."), "{text}");
        assert!(text.ends_with("claim followed by your reasons."), "{text}");
        let critic = system_message(&agent("", "critic"), &[], DebateFormat::DevilsAdvocate);
        assert!(critic.contains("Argue against"));
        let other = system_message(&agent("", "participant"), &[], DebateFormat::DevilsAdvocate);
        assert!(!other.contains("Argue against"));
    }

    #[test]
    fn turn_messages_label_every_channel() {
        let lines = [
            Line::System("Topic: tea or coffee?"),
            Line::Said { name: "Bob", channel: Channel::Public, content: "Tea. " },
            Line::Said { name: "Cy", channel: Channel::Observe, content: "Coffee." },
            Line::WhisperFrom { name: "Bob", content: "vote tea" },
            Line::WhisperTo { name: "Cy", content: "ok" },
            Line::Private("You secretly prefer water."),
            Line::Prior { name: "Dee", content: "hi" },
        ];
        assert_eq!(
            turn_message(&lines, "Ann"),
            "Topic: tea or coffee?\n\nBob: Tea.\n\n(overheard) Cy: Coffee.\n\nBob (whispering to you only): vote tea\n\n\
             (you whispered to Cy): ok\n\n(only you know this) You secretly prefer water.\n\n(earlier) Dee: hi\n\n\
             [Ann, respond now.]"
        );
        assert_eq!(turn_message(&[], "Ann"), "[Ann, respond now.]");
        assert_eq!(join_names(&["a", "b", "c"]), "a, b and c");
        assert_eq!(stop_strings(&["Ann"])[0], "\nAnn:");
    }

    #[test]
    fn a_history_keeps_the_reply_after_its_prefill() {
        assert_eq!(reply_prefix("Ann"), "Ann:");
        assert_eq!(spoken("Ann:", "Hello."), "Ann: Hello.");
        assert_eq!(spoken("Ann:", ""), "Ann:");
        assert_eq!(spoken("", "Hello."), "Hello.");
    }
}

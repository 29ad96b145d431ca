//! Reading a vote out of an agent's free-text answer to a `/decide` prompt: its choice among the
//! ballot's options, or its ranking of them.
//!
//! Owns: `parse_answer`, `parse_ranking`. Does not own: checking the result (`check_vote` does),
//! prompting the agents.

use std::cmp::Reverse;
use std::collections::BTreeSet;
use std::sync::LazyLock;

use regex::{Regex, RegexBuilder};

/// Phrases after which an answer names its choice: `Choice:`, `Vote:`, `my choice is`, `I vote for`,
/// `we should go with`, `I prefer`.
static CHOICE_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern, exercised by the tests: it compiles.
    Regex::new(
        r"(?i)\b(?:final\s+)?(?:choice|vote|decision|answer|pick)\s*\**\s*[:=]|\bmy\s+(?:final\s+)?(?:choice|vote|decision|answer|pick)\s+(?:is|would\s+be|will\s+be)\b|\b(?:i|we)(?:\s+(?:would|will|should|must)|'ll|’ll|'d|’d)?\s+(?:vote\s+for|choose|pick|select|go\s+with|prefer|support|recommend)\b|\blet'?s\s+go\s+with\b",
    )
    .expect("literal pattern")
});

/// Phrases after which an answer lists its ranking: `Ranking:`, `My preferences:`.
static RANKING_MARKER: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern, exercised by the tests: it compiles.
    Regex::new(
        r"(?i)\b(?:my\s+)?(?:final\s+)?(?:ranking|ranked\s+choices?|rank\s+order|preference\s+order|order\s+of\s+preference|preferences)\s*\**\s*[:=]",
    )
    .expect("literal pattern")
});

/// Separators of a free-text ranking (no ballot options to look for).
static RANK_SEPARATOR: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern, exercised by the tests: it compiles.
    Regex::new(r"(?i)[,;>\n]|\s+then\s+").expect("literal pattern")
});

/// Leading list numbering or bullets: `1.`, `2)`, `-`, `*`.
static LIST_BULLET: LazyLock<Regex> = LazyLock::new(|| {
    // A literal pattern, exercised by the tests: it compiles.
    Regex::new(r"^\s*(?:\d+[.)]|[-*•])\s+").expect("literal pattern")
});

/// One mention of a ballot option in a text.
#[derive(Debug, Clone, Copy)]
struct Mention {
    start: usize,
    end: usize,
    option: usize,
}

fn is_word_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Every whole-word, case-insensitive mention of an option, in text order; a mention inside a
/// longer one (`Pizza` inside `Pizza Hut`) is dropped.
fn mentions(text: &str, options: &[String]) -> Vec<Mention> {
    let mut found = Vec::new();
    for (option, name) in options.iter().enumerate() {
        let name = name.trim();
        if name.is_empty() {
            continue;
        }
        // An escaped option too large for the regex engine cannot be found; skip it.
        let Ok(re) = RegexBuilder::new(&regex::escape(name)).case_insensitive(true).build() else {
            continue;
        };
        let mut at = 0;
        while let Some(m) = re.find_at(text, at) {
            let before = text[..m.start()].chars().next_back();
            let after = text[m.end()..].chars().next();
            if !before.is_some_and(is_word_char) && !after.is_some_and(is_word_char) {
                found.push(Mention { start: m.start(), end: m.end(), option });
            }
            at = m.start() + text[m.start()..].chars().next().map_or(1, char::len_utf8);
            if at >= text.len() {
                break;
            }
        }
    }
    found.sort_by_key(|m| (m.start, Reverse(m.end), m.option));
    let mut kept: Vec<Mention> = Vec::with_capacity(found.len());
    for m in found {
        if !kept.iter().any(|k| k.start <= m.start && m.end <= k.end) {
            kept.push(m);
        }
    }
    kept.sort_by_key(|m| m.start);
    kept
}

/// The line after a marker, without markdown emphasis, quotes and closing punctuation.
fn rest_of_line(text: &str) -> &str {
    let line = text.lines().next().unwrap_or("");
    line.trim_matches(|c: char| c.is_whitespace() || "*_\"'`“”‘’".contains(c))
        .trim_end_matches(|c: char| c.is_whitespace() || ".!,;:*_\"'`“”‘’".contains(c))
}

/// Reads an agent's choice out of its free-text answer. One option mentioned: that one. Several:
/// the first one after the last marker (`Choice: X`, `Vote: X`, `I vote for X`, `my choice is X`)
/// that is followed by any, else the one mentioned last. Options match case-insensitively as
/// whole words and come back in their own spelling. With no options, the rest of the line after
/// the last marker. `None` when nothing is found.
pub fn parse_answer(text: &str, options: &[String]) -> Option<String> {
    let markers: Vec<usize> = CHOICE_MARKER.find_iter(text).map(|m| m.end()).collect();
    if options.iter().all(|o| o.trim().is_empty()) {
        return markers.iter().rev().map(|&end| rest_of_line(&text[end..])).find(|s| !s.is_empty()).map(String::from);
    }
    let found = mentions(text, options);
    let distinct: BTreeSet<usize> = found.iter().map(|m| m.option).collect();
    let pick = if distinct.len() <= 1 {
        found.first()
    } else {
        let after_marker = markers.iter().rev().find_map(|&end| found.iter().find(|m| m.start >= end));
        after_marker.or(found.last())
    };
    pick.map(|m| options[m.option].trim().to_string())
}

/// Reads an agent's ranking out of its free-text answer: the options in the order they are first
/// mentioned after the last `Ranking:`-like marker that is followed by any, else in the whole text.
/// With no options, the items listed after the marker (split at commas, `>`, `then`, lines) up to
/// a blank line. Empty when nothing is found.
pub fn parse_ranking(text: &str, options: &[String]) -> Vec<String> {
    let markers: Vec<usize> = RANKING_MARKER.find_iter(text).map(|m| m.end()).collect();
    if options.iter().all(|o| o.trim().is_empty()) {
        let Some(&end) = markers.last() else { return Vec::new() };
        let tail = text[end..].trim_start();
        let block = tail.split("\n\n").next().unwrap_or("");
        let mut items: Vec<String> = Vec::new();
        for piece in RANK_SEPARATOR.split(block) {
            let item = rest_of_line(LIST_BULLET.replace(piece, "").as_ref()).to_string();
            if !item.is_empty() && !items.iter().any(|i| i.to_lowercase() == item.to_lowercase()) {
                items.push(item);
            }
        }
        return items;
    }
    let found = mentions(text, options);
    let start = markers.iter().rev().copied().find(|&end| found.iter().any(|m| m.start >= end)).unwrap_or(0);
    let mut ranking: Vec<String> = Vec::new();
    for m in found.iter().filter(|m| m.start >= start) {
        let name = options[m.option].trim().to_string();
        if !ranking.contains(&name) {
            ranking.push(name);
        }
    }
    ranking
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decision::tests::{check, strings};

    #[test]
    fn parse_answer_finds_the_choice() {
        let food = strings(&["Pizza", "Sushi", "Pizza Hut", "C++"]);
        let none: &[String] = &[];
        let cases: Vec<(&str, &str, &[String], Option<&str>)> = vec![
            ("one option", "I think sushi is the healthiest.", &food, Some("Sushi")),
            ("explicit marker", "Pizza is cheap, but Choice: Sushi", &food, Some("Sushi")),
            ("marker then comparison", "I vote for pizza over sushi.", &food, Some("Pizza")),
            (
                "my choice is",
                "Sushi was tempting. My choice is PIZZA, definitely. Sushi next time.",
                &food,
                Some("Pizza"),
            ),
            ("bold marker", "**Vote:** Sushi\n\nPizza would also be fine.", &food, Some("Sushi")),
            ("last marker wins", "Vote: Pizza. On reflection... Final answer: Sushi", &food, Some("Sushi")),
            ("empty last marker", "Vote: Pizza (Sushi was close). Final decision:", &food, Some("Pizza")),
            ("no marker: last mentioned", "Pizza or sushi? I lean to sushi.", &food, Some("Sushi")),
            ("whole words only", "Pizzazz and sushimi aside, nothing.", &food, None),
            ("longest mention", "Let's go to Pizza Hut.", &food, Some("Pizza Hut")),
            ("metacharacters", "I'd pick c++ here, not Pizza.", &food, Some("C++")),
            ("nothing", "I have no opinion.", &food, None),
            (
                "SmolLM-ish",
                "Alice: I think we should go with Sushi because it is healthy. Pizza is too greasy.",
                &food,
                Some("Sushi"),
            ),
            ("SmolLM-ish, no marker", "Sushi is healthy. But everyone likes Pizza.", &food, Some("Pizza")),
            ("I prefer", "I prefer pizza to sushi.", &food, Some("Pizza")),
            ("free: marker line", "We talked a lot.\nChoice: \"Go home early\".\nThanks", none, Some("Go home early")),
            ("free: no marker", "Go home early.", none, None),
        ];
        for (case, text, options, want) in cases {
            check(case, parse_answer(text, options).as_deref(), want);
        }
    }

    #[test]
    fn parse_ranking_orders_by_first_mention() {
        let abc = strings(&["Alpha", "Beta", "Gamma"]);
        let none: &[String] = &[];
        let cases: Vec<(&str, &str, &[String], &[&str])> = vec![
            ("after marker", "Alpha is risky. Ranking: 1. Gamma 2. alpha 3. Beta", &abc, &["Gamma", "Alpha", "Beta"]),
            ("whole text", "Beta first, then Alpha; Beta again.", &abc, &["Beta", "Alpha"]),
            ("marker with nothing after", "Gamma beats Beta. My preferences:", &abc, &["Gamma", "Beta"]),
            ("nothing", "No idea.", &abc, &[]),
            ("free list", "Ranking:\n1. Go home\n2. Stay\n- go HOME\n\nThat is all.", none, &["Go home", "Stay"]),
            ("free inline", "My ranking: stay > leave > wait.", none, &["stay", "leave", "wait"]),
            ("free: no marker", "stay, leave", none, &[]),
        ];
        for (case, text, options, want) in cases {
            check(case, parse_ranking(text, options), strings(want));
        }
    }
}

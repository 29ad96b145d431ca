//! Reading a game's result: an agent's choice parsed from its message by the scenario's outcome
//! pattern, and the payoff cell for two choices. Does not own tallying votes (sessions do).

use super::{Outcome, Payoff};

/// The agent's choice in `text`: the last match of the outcome's pattern (agents often restate,
/// and the last statement stands). With a capture group the first group that matched is the
/// choice, else the whole match. With `choices`, the match is mapped case-insensitively to the
/// choice it equals, else to one it contains or is contained by, and matches that map to no
/// choice are passed over; without `choices` it is returned lowercased. Without a pattern, the
/// last occurrence of any of the `choices` is taken.
pub fn parse_choice(outcome: &Outcome, text: &str) -> Option<String> {
    let Some(pattern) = &outcome.pattern else {
        let lower = text.to_lowercase();
        return outcome
            .choices
            .iter()
            .filter_map(|c| lower.rfind(&c.to_lowercase()).map(|at| (at + c.len(), c)))
            .max_by_key(|(end, _)| *end)
            .map(|(_, c)| c.clone());
    };
    let matches: Vec<String> = pattern
        .captures_iter(text)
        .filter_map(|c| c.iter().skip(1).flatten().next().or_else(|| c.get(0)).map(|m| m.as_str().to_string()))
        .collect();
    matches.iter().rev().find_map(|m| normalise(&outcome.choices, m))
}

/// `found` mapped onto `choices` (see `parse_choice`).
fn normalise(choices: &[String], found: &str) -> Option<String> {
    let found = found.trim().to_lowercase();
    if found.is_empty() {
        return None;
    }
    if choices.is_empty() {
        return Some(found);
    }
    let lowered = || choices.iter().map(|c| (c, c.to_lowercase()));
    lowered()
        .find(|(_, c)| *c == found)
        .or_else(|| lowered().find(|(_, c)| c.contains(&found) || found.contains(c.as_str())))
        .map(|(c, _)| c.clone())
}

/// The payoff for the row player choosing `row_choice` and the column player `col_choice`; a label
/// matches a choice case-insensitively if one contains the other (an exact match wins).
pub fn payoff_cell<'a>(payoff: &'a Payoff, row_choice: &str, col_choice: &str) -> Option<&'a str> {
    let index = |choice: &str| {
        let choice = choice.trim().to_lowercase();
        let labels = || payoff.labels.iter().map(|l| l.to_lowercase()).enumerate();
        labels()
            .find(|(_, l)| *l == choice)
            .or_else(|| {
                labels().find(|(_, l)| !choice.is_empty() && (l.contains(&choice) || choice.contains(l.as_str())))
            })
            .map(|(i, _)| i)
    };
    let (row, col) = (index(row_choice)?, index(col_choice)?);
    payoff.matrix.get(row)?.get(col).map(String::as_str)
}

#[cfg(test)]
mod tests {
    use regex::Regex;

    use super::*;
    use crate::scenario::{OutcomeDisplay, OutcomeKind};

    fn outcome(pattern: &str, choices: &[&str]) -> Outcome {
        Outcome {
            kind: OutcomeKind::ParseChoice,
            pattern: (!pattern.is_empty()).then(|| Regex::new(pattern).expect("test pattern")),
            choices: choices.iter().map(|c| c.to_string()).collect(),
            display: OutcomeDisplay::Matrix,
        }
    }

    fn check(pattern: &str, choices: &[&str], text: &str, expected: Option<&str>) {
        let got = parse_choice(&outcome(pattern, choices), text);
        assert_eq!(got.as_deref(), expected, "pattern {pattern:?}, choices {choices:?}, text {text:?}");
    }

    #[test]
    fn the_last_match_is_the_choice() {
        let keep = "(?i)(keep silent|silent|quiet|confess|talk)";
        check(keep, &[], "I will confess. No wait, I stay SILENT.", Some("silent"));
        check(keep, &["keep silent", "confess"], "I confess... no, I stay silent.", Some("keep silent"));
        check(keep, &["keep silent", "confess"], "Keep Silent or confess? Confess.", Some("confess"));
        // A last match that maps to no choice is passed over.
        check(keep, &["keep silent", "confess"], "I confess. Let's talk.", Some("confess"));
        check(keep, &["keep silent", "confess"], "Nothing here.", None);
        // A capture group picks the choice out of a longer match.
        let stated = r"(?i)choice:\s*(share|hoard)";
        check(stated, &["share", "hoard"], "Choice: HOARD. Actually... Choice: share", Some("share"));
        check(stated, &[], "choice: Hoard", Some("hoard"));
        check(stated, &["Share", "Hoard"], "I share. Choice: hoard", Some("Hoard"));
        // The whole match is used without a group; a choice contained in it maps.
        check(r"(?i)choice:\s*\w+", &["share", "hoard"], "Choice: share", Some("share"));
        // No pattern: the last mentioned choice.
        check("", &["share", "hoard"], "Hoard? I'd rather share.", Some("share"));
        check("", &[], "share", None);
    }

    #[test]
    fn payoff_cells_are_found_by_label() {
        let payoff = Payoff {
            labels: vec!["Share".into(), "Hoard".into()],
            matrix: vec![vec!["3 / 3".into(), "0 / 5".into()], vec!["5 / 0".into(), "1 / 1".into()]],
        };
        let cases = [
            ("share", "share", Some("3 / 3")),
            ("SHARE", "hoard", Some("0 / 5")),
            ("hoard", "Share", Some("5 / 0")),
            ("hoarding", "hoard", Some("1 / 1")),
            ("shar", "hoard", Some("0 / 5")),
            ("steal", "hoard", None),
            ("", "hoard", None),
        ];
        for (row, col, expected) in cases {
            assert_eq!(payoff_cell(&payoff, row, col), expected, "{row} x {col}");
        }
    }
}

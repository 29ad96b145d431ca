//! YAML scenarios: the typed `Scenario` (agents, phases, UI hints, outcome rule, payoff matrix)
//! read from the original system's scenario format unchanged, validated completely with every
//! issue reported by line and field path. Submodules: `spec` (the typed scenario), `walk`
//! (marked-YAML field access), `build` (the schema), `template` (cross-phase
//! `${phase.messages[agent]}` references), `outcome` (choice parsing, payoff lookup). Does not own
//! running a scenario (sessions do that).
//!
//! `ValidateError` lives here rather than in `CoordError`: its `Invalid` case carries a list of
//! issues with positions, which only a scenario file has.

mod build;
mod outcome;
mod spec;
mod template;
mod walk;

use std::fmt;
use std::path::{Path, PathBuf};

use serde::Serialize;

pub use outcome::{parse_choice, payoff_cell};
pub use spec::{
    Layout, Outcome, OutcomeDisplay, OutcomeKind, Payoff, Phase, PhaseControls, Role, Scenario, ScenarioAgent,
    ScenarioInteraction, UiHints,
};
pub use template::{phase_refs, resolve_template, TranscriptLine, NO_MESSAGES};

/// One problem in a scenario file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioIssue {
    /// 1-based line of the offending node (for a missing field: of the mapping that lacks it).
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// Field path: `phases[1].agents[0]`, `agents.alice.role`; empty for the whole document.
    pub path: String,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for ScenarioIssue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            write!(f, "line {}: {}", self.line, self.message)
        } else {
            write!(f, "line {}, {}: {}", self.line, self.path, self.message)
        }
    }
}

/// Why a scenario file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ValidateError {
    /// The file could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The file is not a valid scenario.
    #[error("{path}: {} issue(s): {}", issues.len(), join_issues(issues))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every issue found, in file order.
        issues: Vec<ScenarioIssue>,
    },
}

fn join_issues(issues: &[ScenarioIssue]) -> String {
    issues.iter().map(ToString::to_string).collect::<Vec<_>>().join("; ")
}

/// Parses and validates a scenario; on failure, every issue found, in file order.
pub fn parse(text: &str) -> Result<Scenario, Vec<ScenarioIssue>> {
    build::scenario(text)
}

/// Reads and validates a scenario file.
pub fn validate_file(path: &Path) -> Result<Scenario, ValidateError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ValidateError::Io { path: path.to_path_buf(), source })?;
    parse(&text).map_err(|issues| ValidateError::Invalid { path: path.to_path_buf(), issues })
}

/// The `*.yaml` / `*.yml` files of `dir` by file stem, sorted by stem.
pub fn discover(dir: &Path) -> Result<Vec<(String, PathBuf)>, ValidateError> {
    let io = |source| ValidateError::Io { path: dir.to_path_buf(), source };
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_yaml = matches!(path.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"));
        if let (true, Some(stem)) = (is_yaml, path.file_stem().and_then(|s| s.to_str())) {
            found.push((stem.to_string(), path.clone()));
        }
    }
    found.sort();
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Channel, DebateFormat, DecisionMode, Lifecycle, Topology};

    /// A valid scenario; the invalid cases edit one line of it (line numbers below refer to it).
    const BASE: &str = "\
id: demo
title: Demo
agents:
  alice:
    display_name: Alice
    lifecycle: permanent
  bob:
    display_name: Bob
phases:
  - name: first
    label: First
    agents: [alice, bob]
  - name: second
    label: Second
    agents: [alice, bob]
    initial_prompt_template: \"${first.messages[alice]}\"
";

    /// BASE with `from` (which must occur exactly once) replaced by `to`.
    fn edit(from: &str, to: &str) -> String {
        assert_eq!(BASE.matches(from).count(), 1, "{from:?} must occur once in BASE");
        BASE.replace(from, to)
    }

    /// `text` is invalid and one of its issues is at `line`, for `path`, with `fragment` in it.
    fn check(text: &str, line: usize, path: &str, fragment: &str) {
        let issues = parse(text).expect_err(&format!("should be invalid:\n{text}"));
        let found = issues.iter().any(|i| i.line == line && i.path == path && i.message.contains(fragment));
        assert!(found, "expected line {line}, {path}: ..{fragment}.. in {issues:#?}\nfor:\n{text}");
    }

    #[test]
    fn base_is_valid_and_defaults_apply() {
        let s = parse(BASE).unwrap_or_else(|i| panic!("{i:#?}"));
        let bob = s.agent("bob").expect("bob");
        assert_eq!(
            (bob.role, bob.lifecycle, bob.system_prompt.as_str()),
            (Role::Participant, Lifecycle::Ephemeral, "")
        );
        let p = &s.phases[1];
        assert_eq!(
            (p.topology, p.debate_format, p.decision_mode),
            (Topology::RoundRobin, DebateFormat::FreeForm, DecisionMode::None)
        );
        assert_eq!((p.max_turns, p.auto_rounds, p.interactions.is_none()), (0, 3, true));
        assert_eq!(p.dependencies(), ["first"]);
        assert_eq!(s.ui, UiHints::default());
        assert!(s.outcome.is_none() && s.payoff.is_none());
    }

    #[test]
    fn each_invalid_field_is_reported_at_its_line_and_path() {
        let long = "x".repeat(501);
        let cases: Vec<(String, usize, &str, &str)> = vec![
            (edit("id: demo", "id: Demo"), 1, "id", "does not match"),
            (edit("id: demo", "id: 12"), 1, "id", "expected a string, found an integer"),
            (edit("title: Demo", "title: \"\""), 2, "title", "must not be empty"),
            (edit("title: Demo", "title:"), 2, "title", "expected a string, found null"),
            (
                edit("title: Demo", "title: Demo\ndescription: ".to_string().as_str())
                    .replace("description: ", &format!("description: {long}")),
                3,
                "description",
                "at most 500",
            ),
            (edit("title: Demo\n", ""), 1, "title", "required field is missing"),
            (edit("title: Demo", "title: Demo\nmood: calm"), 3, "mood", "unknown field"),
            (
                edit("    lifecycle: permanent", "    lifecycle: forever"),
                6,
                "agents.alice.lifecycle",
                "unknown Lifecycle \"forever\"",
            ),
            (
                edit("    lifecycle: permanent", "    role: boss"),
                6,
                "agents.alice.role",
                "participant, observer, narrator, judge or moderator",
            ),
            (
                edit("    display_name: Bob", "    color: red"),
                7,
                "agents.bob.display_name",
                "required field is missing",
            ),
            (
                edit("    display_name: Bob", "    display_name: Bob\n    mood: sly"),
                9,
                "agents.bob.mood",
                "unknown field",
            ),
            (
                edit("    display_name: Alice", &format!("    display_name: {}", "A".repeat(51))),
                5,
                "agents.alice.display_name",
                "at most 50",
            ),
            (
                edit("  bob:\n    display_name: Bob", "  bob: Bob"),
                7,
                "agents.bob",
                "expected a mapping, found a string",
            ),
            (
                edit("    agents: [alice, bob]\n  - name: second", "    agents: [alice, carol]\n  - name: second"),
                12,
                "phases[0].agents[1]",
                "unknown agent \"carol\"",
            ),
            (
                edit("    agents: [alice, bob]\n  - name: second", "    agents: [alice, alice]\n  - name: second"),
                12,
                "phases[0].agents[1]",
                "listed twice",
            ),
            (
                edit("    agents: [alice, bob]\n  - name: second", "    agents: []\n  - name: second"),
                12,
                "phases[0].agents",
                "0 agents, expected 1-30",
            ),
            (edit("  - name: second\n", "  - note: x\n"), 13, "phases[1].name", "required field is missing"),
            (edit("name: second", "name: Second"), 13, "phases[1].name", "does not match"),
            (
                edit("name: second", "name: first"),
                13,
                "phases[1].name",
                "duplicate phase name \"first\" (first on line 10)",
            ),
            (edit("label: First", "label: \"\""), 11, "phases[0].label", "must not be empty"),
            (
                edit("${first.messages[alice]}", "${second.messages[alice]}"),
                16,
                "phases[1].initial_prompt_template",
                "\"second\" is not an earlier phase",
            ),
            (
                edit("${first.messages[alice]}", "${nowhere.messages[alice]}"),
                16,
                "phases[1].initial_prompt_template",
                "\"nowhere\" is not an earlier phase",
            ),
            (
                edit("${first.messages[alice]}", "${first.messages[zed]}"),
                16,
                "phases[1].initial_prompt_template",
                "unknown agent \"zed\"",
            ),
            (format!("{BASE}    max_turns: 1001\n"), 17, "phases[1].max_turns", "1001 is out of range 0-1000"),
            (format!("{BASE}    auto_rounds: 0\n"), 17, "phases[1].auto_rounds", "out of range 1-50"),
            (
                format!("{BASE}    auto_rounds: three\n"),
                17,
                "phases[1].auto_rounds",
                "expected an integer, found a string",
            ),
            (format!("{BASE}    topology: star\n"), 17, "phases[1].topology", "unknown Topology \"star\""),
            (format!("{BASE}    debate_format: shouting\n"), 17, "phases[1].debate_format", "unknown DebateFormat"),
            (format!("{BASE}    decision_mode: dice\n"), 17, "phases[1].decision_mode", "unknown DecisionMode"),
            (format!("{BASE}    speed: fast\n"), 17, "phases[1].speed", "unknown field"),
            (
                format!("{BASE}    per_agent_prompt_templates:\n      carol: hi\n"),
                18,
                "phases[1].per_agent_prompt_templates.carol",
                "unknown agent \"carol\"",
            ),
            (
                format!("{BASE}    per_agent_prompt_templates:\n      bob: \"${{second.messages[bob]}}\"\n"),
                18,
                "phases[1].per_agent_prompt_templates.bob",
                "not an earlier phase",
            ),
            (
                edit("    agents: [alice, bob]\n  - name: second", "    agents: [alice]\n  - name: second")
                    .replace("[alice]}", "[bob]}"),
                16,
                "phases[1].initial_prompt_template",
                "agent \"bob\" is not in phase \"first\"",
            ),
            (
                format!("{BASE}    interactions:\n      - from_agent: alice\n        to_agent: carol\n"),
                19,
                "phases[1].interactions[0].to_agent",
                "unknown agent \"carol\"",
            ),
            (
                format!("{BASE}    interactions:\n      - {{from_agent: alice, to_agent: bob, channel: radio}}\n"),
                18,
                "phases[1].interactions[0].channel",
                "unknown Channel \"radio\"",
            ),
            (
                format!("{BASE}    interactions:\n      - {{from_agent: alice}}\n"),
                18,
                "phases[1].interactions[0].to_agent",
                "required field is missing",
            ),
            (format!("{BASE}    interactions: alice\n"), 17, "phases[1].interactions", "expected a list"),
            (format!("{BASE}ui:\n  column_count: 5\n"), 18, "ui.column_count", "out of range 1-4"),
            (format!("{BASE}ui:\n  layout: grid\n"), 18, "ui.layout", "unknown Layout \"grid\""),
            (format!("{BASE}ui:\n  show_memory_panel: maybe\n"), 18, "ui.show_memory_panel", "expected true or false"),
            (
                format!("{BASE}ui:\n  show_run_all: 2\n"),
                18,
                "ui.show_run_all",
                "expected true or false, found an integer",
            ),
            (format!("{BASE}ui:\n  max_visible_messages: 0\n"), 18, "ui.max_visible_messages", "out of range 1-500"),
            (format!("{BASE}ui:\n  phase_controls: none\n"), 18, "ui.phase_controls", "per_phase or global"),
            (format!("{BASE}ui:\n  theme: dark\n"), 18, "ui.theme", "unknown field"),
            (format!("{BASE}outcome:\n  pattern: x\n"), 17, "outcome.type", "required field is missing"),
            (format!("{BASE}outcome:\n  type: guess\n"), 18, "outcome.type", "unknown OutcomeKind"),
            (
                format!("{BASE}outcome:\n  type: summary\n  display: chart\n"),
                19,
                "outcome.display",
                "unknown OutcomeDisplay",
            ),
            (
                format!("{BASE}outcome:\n  type: parse_choice\n  pattern: \"(unclosed\"\n"),
                19,
                "outcome.pattern",
                "invalid regex",
            ),
            (
                format!("{BASE}outcome:\n  type: parse_choice\n  choices: share\n"),
                19,
                "outcome.choices",
                "expected a list",
            ),
            (
                format!("{BASE}payoff:\n  labels: [a]\n  matrix: [[x, y], [z, w]]\n"),
                18,
                "payoff.labels",
                "1 labels, at least 2",
            ),
            (
                format!("{BASE}payoff:\n  labels: [a, b]\n  matrix: [[x, y]]\n"),
                19,
                "payoff.matrix",
                "1 rows, at least 2",
            ),
            (
                format!("{BASE}payoff:\n  labels: [a, b]\n  matrix:\n    - [x, y]\n    - [z]\n"),
                21,
                "payoff.matrix[1]",
                "1 cells, expected 2",
            ),
            (
                format!("{BASE}payoff:\n  labels: [a, b, c]\n  matrix: [[x, y], [z, w]]\n"),
                19,
                "payoff.matrix",
                "2 rows but 3 labels",
            ),
            (
                format!("{BASE}payoff:\n  labels: a\n  matrix: []\n"),
                18,
                "payoff.labels",
                "expected a list, found a string",
            ),
            (format!("{BASE}payoff:\n  labels: [a, b]\n"), 17, "payoff.matrix", "required field is missing"),
            (edit("title: Demo", "title: [Demo"), 3, "", "YAML syntax error"),
            (edit("title: Demo", "title: Demo\ntitle: Again"), 3, "", "YAML syntax error"),
            ("- a\n- b\n".to_string(), 1, "", "expected a mapping, found a list"),
            (String::new(), 1, "", "empty document"),
            ("id: x\ntitle: X\nagents: {}\nphases: []\n".to_string(), 3, "agents", "at least one agent"),
            ("id: x\ntitle: X\nagents: {}\nphases: []\n".to_string(), 4, "phases", "0 phases, expected 1-20"),
        ];
        for (text, line, path, fragment) in &cases {
            check(text, *line, path, fragment);
        }
        let many: String = (0..21).map(|i| format!("  - {{name: p{i}, label: P, agents: [bob]}}\n")).collect();
        check(&BASE.replace(&BASE[BASE.find("  - name: first").expect("phases")..], &many), 10, "phases", "21 phases");
    }

    #[test]
    fn all_issues_are_reported_in_file_order() {
        let text = "\
id: Bad Id
title: T
agents:
  a:
    display_name: A
    role: king
phases:
  - name: one
    label: One
    agents: [a, b]
    auto_rounds: 99
    initial_prompt_template: |
      Before:
        ${zero.messages[a]}
ui:
  column_count: 9
";
        let issues = parse(text).expect_err("invalid");
        let got: Vec<(usize, &str)> = issues.iter().map(|i| (i.line, i.path.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "id"),
                (6, "agents.a.role"),
                (10, "phases[0].agents[1]"),
                (11, "phases[0].auto_rounds"),
                (14, "phases[0].initial_prompt_template"),
                (16, "ui.column_count")
            ]
        );
        assert_eq!(issues[2].to_string(), "line 10, phases[0].agents[1]: unknown agent \"b\"");
        assert_eq!(issues[2].column, 17);
        // A reference inside a literal block is reported on its own line and column.
        assert_eq!(issues[4].column, 9);
    }

    #[test]
    fn a_scenario_in_the_original_format_parses_with_everything() {
        let text = r##"
id: harbour-gossip
title: Harbour gossip
description: Three sailors trade rumours, then meet at the tavern.
agents:
  ada:
    display_name: Ada
    role: participant
    system_prompt: You are Ada, a sailor.
    lifecycle: permanent
    color: "#FF6B6B"
  cy:
    display_name: Cy
    lifecycle: permanent
    color: "#4ECDC4"
  owl:
    display_name: Owl
    role: narrator
phases:
  - name: ada_cy
    label: On the pier
    agents: [ada, cy]
    topology: whisper
    debate_format: socratic
    decision_mode: consensus
    initial_prompt: Share a rumour.
    max_turns: 10
    auto_rounds: 2
    interactions:
      - from_agent: ada
        to_agent: cy
        channel: whisper
      - from_agent: cy
        to_agent: ada
  - name: tavern
    label: At the tavern
    agents: [ada, cy, owl]
    initial_prompt_template: |
      Ada remembers:
      ${ada_cy.messages[ada]}
    per_agent_prompt_templates:
      cy: "Cy remembers: ${ada_cy.messages[cy]}"
    interactions: null
ui:
  layout: columns
  column_count: 3
  show_memory_panel: true
  show_interaction_graph: true
  show_run_all: yes  # a YAML 1.1 boolean, as the original's loader read it
  max_visible_messages: 200
  phase_controls: global
outcome:
  type: parse_choice
  pattern: "(?i)(trust|doubt)"
  choices: [trust, doubt]
  display: matrix
payoff:
  labels: ["Trust", "Doubt"]
  matrix:
    - ["2, 2", "0, 3"]
    - ["3, 0", "1, 1"]
"##;
        let s = parse(text).unwrap_or_else(|i| panic!("{i:#?}"));
        assert_eq!(s.agents.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["ada", "cy", "owl"]);
        assert_eq!(s.agent("owl").map(|a| (a.role, a.lifecycle)), Some((Role::Narrator, Lifecycle::Ephemeral)));
        assert_eq!(s.agent("ada").map(|a| a.color.as_str()), Some("#FF6B6B"));
        let pier = &s.phases[0];
        assert_eq!(
            (pier.topology, pier.debate_format, pier.decision_mode),
            (Topology::Whisper, DebateFormat::Socratic, DecisionMode::Consensus)
        );
        let edges = pier.interactions.as_deref().expect("interactions");
        assert_eq!(
            (edges[0].channel, edges[1].channel, edges[1].to_agent.as_str()),
            (Channel::Whisper, Channel::Public, "ada")
        );
        let tavern = s.phase("tavern").expect("tavern");
        assert_eq!(
            (tavern.topology, tavern.auto_rounds, tavern.interactions.is_none()),
            (Topology::RoundRobin, 3, true)
        );
        assert_eq!(
            tavern.per_agent_prompt_templates,
            [("cy".to_string(), "Cy remembers: ${ada_cy.messages[cy]}".to_string())]
        );
        assert_eq!(tavern.dependencies(), ["ada_cy"]);
        assert_eq!(s.ui.layout, Layout::Columns);
        assert_eq!(
            (s.ui.column_count, s.ui.max_visible_messages, s.ui.phase_controls),
            (3, 200, PhaseControls::Global)
        );
        assert!(s.ui.show_memory_panel && s.ui.show_interaction_graph && s.ui.show_run_all);
        let outcome = s.outcome.as_ref().expect("outcome");
        assert_eq!(
            (outcome.kind, outcome.display, outcome.choices.len()),
            (OutcomeKind::ParseChoice, OutcomeDisplay::Matrix, 2)
        );
        let payoff = s.payoff.as_ref().expect("payoff");
        assert_eq!(payoff_cell(payoff, "doubt", "trust"), Some("3, 0"));
        let json = serde_json::to_value(&s).expect("serializable");
        assert_eq!(json["outcome"]["pattern"], "(?i)(trust|doubt)");
        assert_eq!(json["outcome"]["type"], "parse_choice");
        assert_eq!(json["phases"][1]["topology"], "round_robin");
        assert_eq!(json["agents"][2][1]["role"], "narrator");
    }

    fn shipped_dir() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scenarios")
    }

    #[test]
    fn every_shipped_scenario_is_valid() {
        let files = discover(&shipped_dir()).expect("scenarios/ readable");
        assert!(files.len() >= 4, "{files:?}");
        for (stem, path) in &files {
            let s = validate_file(path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(&s.id, stem, "a scenario's id is its file stem");
        }
    }

    #[test]
    fn shipped_scenarios_have_what_their_tests_need() {
        let load =
            |stem: &str| validate_file(&shipped_dir().join(format!("{stem}.yaml"))).unwrap_or_else(|e| panic!("{e}"));
        let tiny = load("tiny");
        assert_eq!(tiny.agents.len(), 2);
        assert!(tiny.agents.iter().all(|(_, a)| a.lifecycle == Lifecycle::Permanent));
        assert_eq!(tiny.phases.len(), 2);
        assert!(tiny.phases.iter().all(|p| p.auto_rounds == 1 && p.max_turns == 2));
        assert_eq!(tiny.phases[1].dependencies(), ["hello"]);

        let game = load("lighthouse_keepers");
        let (outcome, payoff) = (game.outcome.as_ref().expect("outcome"), game.payoff.as_ref().expect("payoff"));
        let ida = parse_choice(outcome, "I want to be fair. Choice: Share").expect("a choice");
        let tor = parse_choice(outcome, "Choice: share... no. Choice: hoard.").expect("a choice");
        assert_eq!((ida.as_str(), tor.as_str()), ("share", "hoard"));
        assert_eq!(payoff_cell(payoff, &ida, &tor), Some("Ida dark, Tor bright (0, 5)"));
        assert_eq!(game.phases.len(), 3);
        assert_eq!(game.phases[2].dependencies(), ["signal"]);

        let council = load("village_council");
        let lane = &council.phases[0];
        assert_eq!(lane.topology, Topology::Whisper);
        assert!(lane.interactions.iter().flatten().all(|e| e.channel == Channel::Whisper));
        assert_eq!(council.phases[1].decision_mode, DecisionMode::MajorityVote);

        let debate = load("four_day_week");
        assert_eq!(debate.phases[0].decision_mode, DecisionMode::CoordinatorDecides);
        assert_eq!(debate.agent("chair").map(|a| a.role), Some(Role::Moderator));
    }

    #[test]
    fn validate_file_reports_io_and_issues() {
        let missing = validate_file(Path::new("/nonexistent/scenario.yaml"));
        assert!(matches!(missing, Err(ValidateError::Io { .. })));
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let path = dir.join("bad.yaml");
        std::fs::write(&path, edit("id: demo", "id: Demo")).expect("write");
        let err = validate_file(&path).expect_err("invalid");
        assert!(
            err.to_string().ends_with("1 issue(s): line 1, id: \"Demo\" does not match ^[a-z][a-z0-9_-]{0,49}$"),
            "{err}"
        );
    }
}

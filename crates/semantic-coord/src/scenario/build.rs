//! The scenario schema: which fields each mapping has, their limits and defaults, and the
//! cross-references (phase agents, interactions, per-agent templates and `${phase.messages[agent]}`
//! references must name existing agents and earlier phases). Does not own YAML access (`walk`).

use std::collections::HashMap;
use std::sync::LazyLock;

use regex::Regex;
use saphyr::{LoadableYamlNode, MarkedYaml, Marker};

use super::template::located_phase_refs;
use super::walk::{is_list, is_null, list, start, string, string_list, Issues, Map};
use super::{Outcome, Payoff, Phase, Scenario, ScenarioAgent, ScenarioInteraction, ScenarioIssue, UiHints};
use crate::{Channel, Topology};

// Invariant: literal patterns, checked by the tests.
static ID: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_-]{0,49}$").expect("valid"));
static PHASE_NAME: LazyLock<Regex> = LazyLock::new(|| Regex::new(r"^[a-z][a-z0-9_]{0,29}$").expect("valid"));

const TOP: [&str; 8] = ["id", "title", "description", "agents", "phases", "ui", "outcome", "payoff"];
const AGENT: [&str; 5] = ["display_name", "role", "system_prompt", "lifecycle", "color"];
const PHASE: [&str; 12] = [
    "name",
    "label",
    "agents",
    "topology",
    "debate_format",
    "decision_mode",
    "initial_prompt",
    "initial_prompt_template",
    "per_agent_prompt_templates",
    "max_turns",
    "auto_rounds",
    "interactions",
];
const INTERACTION: [&str; 3] = ["from_agent", "to_agent", "channel"];
const UI: [&str; 7] = [
    "layout",
    "column_count",
    "show_memory_panel",
    "show_interaction_graph",
    "show_run_all",
    "max_visible_messages",
    "phase_controls",
];
const OUTCOME: [&str; 4] = ["type", "pattern", "choices", "display"];
const PAYOFF: [&str; 2] = ["labels", "matrix"];
const PROMPT_MAX: usize = 50_000;

/// Parses `text` and builds the scenario, or returns every issue sorted by position.
pub(super) fn scenario(text: &str) -> Result<Scenario, Vec<ScenarioIssue>> {
    let mut issues = Issues::default();
    let docs = match MarkedYaml::load_from_str(text) {
        Ok(docs) => docs,
        Err(e) => {
            issues.push(*e.marker(), "", format!("YAML syntax error: {}", e.info()));
            return Err(issues.0);
        }
    };
    let Some(root) = docs.first().filter(|d| !is_null(d)) else {
        issues.push(Marker::new(0, 1, 0), "", "empty document: expected a scenario mapping");
        return Err(issues.0);
    };
    if let Some(extra) = docs.get(1) {
        issues.push(start(extra), "", "expected one YAML document, found several");
    }
    let source: Vec<&str> = text.lines().collect();
    let scenario = top(root, &source, &mut issues);
    match scenario {
        Some(s) if issues.0.is_empty() => Ok(s),
        _ => {
            let mut all = issues.0;
            all.sort_by_key(|i| (i.line, i.column));
            Err(all)
        }
    }
}

fn top(root: &MarkedYaml<'_>, source: &[&str], issues: &mut Issues) -> Option<Scenario> {
    let map = Map::strict(root, start(root), "", &TOP, &["id", "title", "agents", "phases"], issues)?;
    let id = map.string("id", (1, 50), "", issues);
    if let Some(node) = map.get("id").filter(|_| !id.is_empty() && !ID.is_match(&id)) {
        issues.push(start(node), "id", format!("{id:?} does not match ^[a-z][a-z0-9_-]{{0,49}}$"));
    }
    let agents = match map.get("agents") {
        Some(node) => agents(node, issues),
        None => Vec::new(),
    };
    let phases = match map.get("phases") {
        Some(node) => phases(node, &agents, source, issues),
        None => Vec::new(),
    };
    let owner = |key: &str| map.key_start(key).unwrap_or(start(root));
    Some(Scenario {
        id,
        title: map.string("title", (1, 100), "", issues),
        description: map.string("description", (0, 500), "", issues),
        agents,
        phases,
        ui: map.get_some("ui").map_or_else(UiHints::default, |n| ui(n, owner("ui"), issues)),
        outcome: map.get_some("outcome").and_then(|n| outcome(n, owner("outcome"), issues)),
        payoff: map.get_some("payoff").and_then(|n| payoff(n, owner("payoff"), issues)),
    })
}

fn agents(node: &MarkedYaml<'_>, issues: &mut Issues) -> Vec<(String, ScenarioAgent)> {
    let Some(map) = Map::any(node, "agents", issues) else { return Vec::new() };
    if map.entries().is_empty() {
        issues.push(start(node), "agents", "at least one agent is required");
    }
    let mut out = Vec::new();
    for (key, key_node, value) in map.entries() {
        let path = map.path_of(key);
        if key.is_empty() {
            issues.push(start(key_node), &path, "agent key must not be empty");
        }
        let Some(agent) = Map::strict(value, start(key_node), &path, &AGENT, &["display_name"], issues) else {
            continue;
        };
        out.push((
            key.to_string(),
            ScenarioAgent {
                display_name: agent.string("display_name", (1, 50), "", issues),
                role: agent.choice("role", Default::default(), issues),
                system_prompt: agent.string("system_prompt", (0, 4000), "", issues),
                lifecycle: agent.choice("lifecycle", Default::default(), issues),
                color: agent.string("color", (0, usize::MAX), "", issues),
            },
        ));
    }
    out
}

fn phases(
    node: &MarkedYaml<'_>,
    agents: &[(String, ScenarioAgent)],
    source: &[&str],
    issues: &mut Issues,
) -> Vec<Phase> {
    let Some(items) = list(node, "phases", issues) else { return Vec::new() };
    if items.is_empty() || items.len() > 20 {
        issues.push(start(node), "phases", format!("{} phases, expected 1-20", items.len()));
    }
    let mut out: Vec<Phase> = Vec::new();
    let mut first_line: HashMap<String, usize> = HashMap::new();
    for (i, item) in items.iter().enumerate() {
        let path = format!("phases[{i}]");
        let Some(p) = phase(item, &path, Refs { agents, members: &[], earlier: &out, source }, issues) else {
            continue;
        };
        if let Some(line) = first_line.get(&p.name) {
            let at = Map::any(item, &path, issues).and_then(|m| m.get("name")).map_or(start(item), start);
            issues.push(
                at,
                &format!("{path}.name"),
                format!("duplicate phase name {:?} (first on line {line})", p.name),
            );
        } else if !p.name.is_empty() {
            first_line.insert(p.name.clone(), start(item).line());
        }
        out.push(p);
    }
    out
}

fn phase(node: &MarkedYaml<'_>, path: &str, scope: Refs<'_>, issues: &mut Issues) -> Option<Phase> {
    let map = Map::strict(node, start(node), path, &PHASE, &["name", "label", "agents"], issues)?;
    let name = map.string("name", (1, 30), "", issues);
    if let Some(n) = map.get("name").filter(|_| !name.is_empty() && !PHASE_NAME.is_match(&name)) {
        issues.push(start(n), &map.path_of("name"), format!("{name:?} does not match ^[a-z][a-z0-9_]{{0,29}}$"));
    }
    let known = |key: &str| scope.known(key);
    let mut members: Vec<String> = Vec::new();
    if let Some(list_node) = map.get("agents") {
        let listed = string_list(list_node, &map.path_of("agents"), issues);
        if listed.is_empty() || listed.len() > 30 {
            issues.push(start(list_node), &map.path_of("agents"), format!("{} agents, expected 1-30", listed.len()));
        }
        for (i, (key, item)) in listed.into_iter().enumerate() {
            let item_path = format!("{path}.agents[{i}]");
            if !known(&key) {
                issues.push(start(item), &item_path, format!("unknown agent {key:?}"));
            } else if members.contains(&key) {
                issues.push(start(item), &item_path, format!("agent {key:?} is listed twice"));
            } else {
                members.push(key);
            }
        }
    }
    let refs = Refs { members: &members, ..scope };
    let initial_prompt_template = map.string("initial_prompt_template", (0, PROMPT_MAX), "", issues);
    if let Some(n) = map.get("initial_prompt_template") {
        refs.check(&initial_prompt_template, start(n), &map.path_of("initial_prompt_template"), issues);
    }
    let mut per_agent_prompt_templates = Vec::new();
    let per_agent_path = map.path_of("per_agent_prompt_templates");
    if let Some(per) = map.get_some("per_agent_prompt_templates").and_then(|n| Map::any(n, &per_agent_path, issues)) {
        for (key, key_node, value) in per.entries() {
            let key_path = per.path_of(key);
            refs.member(key, start(key_node), &key_path, issues);
            if let Some(template) = string(value, &key_path, (0, PROMPT_MAX), issues) {
                refs.check(&template, start(value), &key_path, issues);
                per_agent_prompt_templates.push((key.to_string(), template));
            }
        }
    }
    let interactions = map.get_some("interactions").map(|n| {
        let Some(items) = list(n, &map.path_of("interactions"), issues) else { return Vec::new() };
        let edges = items.iter().enumerate();
        edges.filter_map(|(i, e)| interaction(e, &format!("{path}.interactions[{i}]"), &refs, issues)).collect()
    });
    Some(Phase {
        name,
        label: map.string("label", (1, 80), "", issues),
        agents: members,
        topology: map.choice("topology", Topology::RoundRobin, issues),
        debate_format: map.choice("debate_format", Default::default(), issues),
        decision_mode: map.choice("decision_mode", Default::default(), issues),
        initial_prompt: map.string("initial_prompt", (0, PROMPT_MAX), "", issues),
        initial_prompt_template,
        per_agent_prompt_templates,
        max_turns: map.int("max_turns", (0, 1000), 0, issues),
        auto_rounds: map.int("auto_rounds", (1, 50), 3, issues),
        interactions,
    })
}

fn interaction(node: &MarkedYaml<'_>, path: &str, refs: &Refs<'_>, issues: &mut Issues) -> Option<ScenarioInteraction> {
    let map = Map::strict(node, start(node), path, &INTERACTION, &["from_agent", "to_agent"], issues)?;
    let mut agent = |key: &str| {
        let value = map.string(key, (1, usize::MAX), "", issues);
        if let Some(n) = map.get(key).filter(|_| !value.is_empty()) {
            refs.member(&value, start(n), &map.path_of(key), issues);
        }
        value
    };
    let (from_agent, to_agent) = (agent("from_agent"), agent("to_agent"));
    let channel = map.choice("channel", Channel::Public, issues);
    Some(ScenarioInteraction { from_agent, to_agent, channel })
}

/// What a phase's agent references and templates may name.
struct Refs<'a> {
    agents: &'a [(String, ScenarioAgent)],
    members: &'a [String],
    earlier: &'a [Phase],
    /// The file's lines, to point at a reference inside a multi-line template.
    source: &'a [&'a str],
}

impl Refs<'_> {
    fn known(&self, key: &str) -> bool {
        self.agents.iter().any(|(k, _)| k == key)
    }

    /// `key` must be an agent of the scenario and of this phase.
    fn member(&self, key: &str, at: Marker, path: &str, issues: &mut Issues) {
        if !self.known(key) {
            issues.push(at, path, format!("unknown agent {key:?}"));
        } else if !self.members.iter().any(|m| m == key) {
            issues.push(at, path, format!("agent {key:?} is not in this phase's agents"));
        }
    }

    /// Every `${phase.messages[agent]}` must name an earlier phase and an agent that was in it.
    fn check(&self, template: &str, at: Marker, path: &str, issues: &mut Issues) {
        for (offset, phase, agent) in located_phase_refs(template) {
            let reference = format!("${{{phase}.messages[{agent}]}}");
            // In a literal block (`|`) the template's k-th line is the source's; elsewhere (folded,
            // quoted) the reference is reported at the template's start.
            let line = at.line() + template[..offset].matches('\n').count();
            let found = self.source.get(line.wrapping_sub(1)).and_then(|l| Some((l, l.find(&reference)?)));
            let at = found.map_or(at, |(l, byte)| Marker::new(0, line, l[..byte].chars().count()));
            match self.earlier.iter().find(|p| p.name == phase) {
                None => issues.push(at, path, format!("{reference}: {phase:?} is not an earlier phase")),
                Some(_) if !self.known(&agent) => {
                    issues.push(at, path, format!("{reference}: unknown agent {agent:?}"))
                }
                Some(p) if !p.agents.contains(&agent) => {
                    issues.push(at, path, format!("{reference}: agent {agent:?} is not in phase {phase:?}"))
                }
                Some(_) => {}
            }
        }
    }
}

fn ui(node: &MarkedYaml<'_>, owner: Marker, issues: &mut Issues) -> UiHints {
    let Some(map) = Map::strict(node, owner, "ui", &UI, &[], issues) else { return UiHints::default() };
    let d = UiHints::default();
    UiHints {
        layout: map.choice("layout", d.layout, issues),
        column_count: map.int("column_count", (1, 4), d.column_count, issues),
        show_memory_panel: map.boolean("show_memory_panel", issues),
        show_interaction_graph: map.boolean("show_interaction_graph", issues),
        show_run_all: map.boolean("show_run_all", issues),
        max_visible_messages: map.int("max_visible_messages", (1, 500), d.max_visible_messages, issues),
        phase_controls: map.choice("phase_controls", d.phase_controls, issues),
    }
}

fn outcome(node: &MarkedYaml<'_>, owner: Marker, issues: &mut Issues) -> Option<Outcome> {
    let map = Map::strict(node, owner, "outcome", &OUTCOME, &["type"], issues)?;
    let pattern_text = map.string("pattern", (0, usize::MAX), "", issues);
    let pattern = match Regex::new(&pattern_text) {
        _ if pattern_text.is_empty() => None,
        Ok(re) => Some(re),
        Err(e) => {
            let at = map.get("pattern").map_or(start(node), start);
            let first_line = e.to_string().lines().last().unwrap_or_default().trim().to_string();
            issues.push(at, "outcome.pattern", format!("invalid regex: {first_line}"));
            None
        }
    };
    let choices = map.get_some("choices").map(|n| string_list(n, "outcome.choices", issues));
    Some(Outcome {
        kind: map.choice("type", Default::default(), issues),
        pattern,
        choices: choices.unwrap_or_default().into_iter().map(|(c, _)| c).collect(),
        display: map.choice("display", Default::default(), issues),
    })
}

fn payoff(node: &MarkedYaml<'_>, owner: Marker, issues: &mut Issues) -> Option<Payoff> {
    let map = Map::strict(node, owner, "payoff", &PAYOFF, &["labels", "matrix"], issues)?;
    let (labels_node, matrix_node) = (map.get("labels")?, map.get("matrix")?);
    let labels: Vec<String> = string_list(labels_node, "payoff.labels", issues).into_iter().map(|(l, _)| l).collect();
    if labels.len() < 2 && is_list(labels_node) {
        issues.push(start(labels_node), "payoff.labels", format!("{} labels, at least 2 required", labels.len()));
    }
    let rows = list(matrix_node, "payoff.matrix", issues)?;
    if rows.len() < 2 {
        issues.push(start(matrix_node), "payoff.matrix", format!("{} rows, at least 2 required", rows.len()));
    } else if rows.len() != labels.len() {
        let message = format!("{} rows but {} labels (one row per label)", rows.len(), labels.len());
        issues.push(start(matrix_node), "payoff.matrix", message);
    }
    let mut matrix = Vec::new();
    for (i, row) in rows.iter().enumerate() {
        let path = format!("payoff.matrix[{i}]");
        let Some(items) = list(row, &path, issues) else { continue };
        let cells: Vec<String> = string_list(row, &path, issues).into_iter().map(|(c, _)| c).collect();
        if items.len() != rows.len() {
            let message =
                format!("{} cells, expected {} (a square matrix, one column per row)", items.len(), rows.len());
            issues.push(start(row), &path, message);
        }
        matrix.push(cells);
    }
    Some(Payoff { labels, matrix })
}

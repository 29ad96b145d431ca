//! The scenario's typed shape: agents with roles and lifecycles, phases with topology, decision
//! mode and templates, UI hints, the outcome rule and the payoff matrix; all serializable so a
//! parsed scenario can be returned as JSON. Does not own reading or validating YAML (`build`).

use regex::Regex;
use serde::{Serialize, Serializer};

use super::phase_refs;
use crate::types::wire_enum;
use crate::{Channel, DebateFormat, DecisionMode, Lifecycle, Topology};

wire_enum! {
    /// What an agent does in a scenario.
    Role {
        /// Takes turns and answers.
        #[default]
        Participant = "participant",
        /// Receives messages, never speaks.
        Observer = "observer",
        /// Sets the scene, not in character.
        Narrator = "narrator",
        /// Evaluates the outcome, renders verdicts.
        Judge = "judge",
        /// Guides the discussion, enforces rules.
        Moderator = "moderator",
    }
}

wire_enum! {
    /// How a client lays out the agents.
    Layout {
        /// The client decides.
        #[default]
        Auto = "auto",
        /// Side-by-side columns (`column_count`).
        Columns = "columns",
        /// One tab per agent.
        Tabs = "tabs",
        /// One shared timeline.
        Single = "single",
    }
}

wire_enum! {
    /// Whether phases are run by their own controls or one global control.
    PhaseControls {
        /// Controls on each phase.
        #[default]
        PerPhase = "per_phase",
        /// One set of controls for the whole scenario.
        Global = "global",
    }
}

wire_enum! {
    /// How a scenario's outcome is computed.
    OutcomeKind {
        /// Each agent's choice is parsed from its messages with `pattern`.
        #[default]
        ParseChoice = "parse_choice",
        /// The votes are tallied.
        VoteTally = "vote_tally",
        /// A free-text summary.
        Summary = "summary",
    }
}

wire_enum! {
    /// How a scenario's outcome is displayed.
    OutcomeDisplay {
        /// A table of agents and choices.
        #[default]
        Table = "table",
        /// The payoff matrix with the chosen cell marked.
        Matrix = "matrix",
        /// Plain text.
        Text = "text",
    }
}

/// A validated scenario.
#[derive(Debug, Clone, Serialize)]
pub struct Scenario {
    /// `^[a-z][a-z0-9_-]{0,49}$`; agents' ids derive from it.
    pub id: String,
    /// 1-100 characters.
    pub title: String,
    /// At most 500 characters.
    pub description: String,
    /// Agents by key, in file order.
    pub agents: Vec<(String, ScenarioAgent)>,
    /// 1-20 phases, run in order.
    pub phases: Vec<Phase>,
    /// Rendering hints.
    pub ui: UiHints,
    /// How the outcome is parsed and shown.
    pub outcome: Option<Outcome>,
    /// A game's payoff matrix.
    pub payoff: Option<Payoff>,
}

impl Scenario {
    /// The agent with key `key`.
    pub fn agent(&self, key: &str) -> Option<&ScenarioAgent> {
        self.agents.iter().find(|(k, _)| k == key).map(|(_, a)| a)
    }

    /// The phase named `name`.
    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// One agent of a scenario.
#[derive(Debug, Clone, Serialize)]
pub struct ScenarioAgent {
    /// 1-50 characters.
    pub display_name: String,
    /// What it does.
    pub role: Role,
    /// Its instructions, at most 4000 characters.
    pub system_prompt: String,
    /// `permanent` agents keep their memory across phases.
    pub lifecycle: Lifecycle,
    /// A display colour (`#FF6B6B`), possibly empty.
    pub color: String,
}

/// One phase: a coordination session over some of the agents.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `^[a-z][a-z0-9_]{0,29}$`, unique; templates refer to it.
    pub name: String,
    /// 1-80 characters.
    pub label: String,
    /// 1-30 agent keys, each defined in the scenario.
    pub agents: Vec<String>,
    /// Turn-taking (default `round_robin`).
    pub topology: Topology,
    /// Conversation style.
    pub debate_format: DebateFormat,
    /// How votes become a decision.
    pub decision_mode: DecisionMode,
    /// Static opening prompt.
    pub initial_prompt: String,
    /// Opening prompt with references to earlier phases.
    pub initial_prompt_template: String,
    /// Per-agent prompt templates by agent key, in file order.
    pub per_agent_prompt_templates: Vec<(String, String)>,
    /// Turn limit, 0 = unlimited.
    pub max_turns: u32,
    /// Rounds per "run", 1-50 (default 3).
    pub auto_rounds: u32,
    /// Who reaches whom and how; `None` = the topology's default.
    pub interactions: Option<Vec<ScenarioInteraction>>,
}

impl Phase {
    /// The earlier phases this phase's templates read, without repeats.
    pub fn dependencies(&self) -> Vec<String> {
        let templates = std::iter::once(&self.initial_prompt_template)
            .chain(self.per_agent_prompt_templates.iter().map(|(_, t)| t));
        let mut names: Vec<String> = Vec::new();
        for (phase, _) in templates.flat_map(|t| phase_refs(t)) {
            if !names.contains(&phase) {
                names.push(phase);
            }
        }
        names
    }
}

/// A directed edge between two agents of a phase.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ScenarioInteraction {
    /// Sender's agent key.
    pub from_agent: String,
    /// Receiver's agent key.
    pub to_agent: String,
    /// How the message reaches the receiver.
    pub channel: Channel,
}

/// Rendering hints for a client.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct UiHints {
    /// Layout of the agents.
    pub layout: Layout,
    /// Columns for `layout: columns`, 1-4.
    pub column_count: u32,
    /// Show per-agent memory statistics.
    pub show_memory_panel: bool,
    /// Show the interaction graph.
    pub show_interaction_graph: bool,
    /// Show a "run all phases" control.
    pub show_run_all: bool,
    /// Timeline message limit, 1-500.
    pub max_visible_messages: u32,
    /// Per-phase or global controls.
    pub phase_controls: PhaseControls,
}

impl Default for UiHints {
    fn default() -> Self {
        UiHints {
            layout: Layout::Auto,
            column_count: 2,
            show_memory_panel: false,
            show_interaction_graph: false,
            show_run_all: false,
            max_visible_messages: 50,
            phase_controls: PhaseControls::PerPhase,
        }
    }
}

/// How the outcome is read from the agents' messages.
#[derive(Debug, Clone, Serialize)]
pub struct Outcome {
    /// The rule.
    #[serde(rename = "type")]
    pub kind: OutcomeKind,
    /// Extracts a choice from a message (compiled when the scenario is parsed).
    #[serde(serialize_with = "serialize_regex")]
    pub pattern: Option<Regex>,
    /// The valid choices; matches are normalised to them.
    pub choices: Vec<String>,
    /// How it is shown.
    pub display: OutcomeDisplay,
}

fn serialize_regex<S: Serializer>(pattern: &Option<Regex>, s: S) -> Result<S::Ok, S::Error> {
    match pattern {
        Some(re) => s.serialize_str(re.as_str()),
        None => s.serialize_none(),
    }
}

/// A two-player game's payoffs: `matrix[row][col]` for row player's and column player's choices.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Payoff {
    /// One label per choice, at least 2; rows and columns share them.
    pub labels: Vec<String>,
    /// Square, one row and one column per label.
    pub matrix: Vec<Vec<String>>,
}

//! `SessionSpec`: what a coordination session is asked to be (agents, topology, prompts, limits,
//! sampling), validated in full before a session exists, and the rule that names each agent's
//! memory (`memory_id`). Does not own the running state (`session.rs`).

use serde::{Deserialize, Serialize};

use crate::{CoordError, DebateFormat, DecisionMode, Interaction, Lifecycle, Topology, SILENT_ROLES};

/// Most agents in one session.
pub const MAX_AGENTS: usize = 30;
/// Longest display name, in characters.
pub const MAX_NAME_CHARS: usize = 50;
/// Longest agent system prompt, in characters (the scenario format allows 4000).
pub const MAX_SYSTEM_PROMPT_CHARS: usize = 4000;
/// Longest initial prompt, in characters.
pub const MAX_INITIAL_PROMPT_CHARS: usize = 50_000;
/// Most turns a session may be limited to (0 = unlimited).
pub const MAX_TURNS: u32 = 1000;
/// Longest agent id a client may give; the memory id adds a prefix and must stay within 128.
pub const MAX_AGENT_ID_CHARS: usize = 64;
/// Longest `persistent_cache_prefix`.
pub const MAX_PREFIX_CHARS: usize = 40;
/// Longest whisper, in characters.
pub const MAX_WHISPER_CHARS: usize = 5000;

/// One agent of a session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AgentSpec {
    /// Stable id within the session (given, or derived from the display name).
    pub agent_id: String,
    /// The name others see.
    pub display_name: String,
    /// Free text (`participant` by default); `observer` never speaks; `moderator`, `coordinator`
    /// or `judge` decide under `coordinator_decides`.
    pub role: String,
    /// The agent's own instructions.
    pub system_prompt: String,
    /// Whether its memory outlives the session.
    pub lifecycle: Lifecycle,
}

/// A message from an earlier phase that an agent should know about.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorMessage {
    /// Who said it (an agent id; None for a narrator or system line).
    pub sender_id: Option<String>,
    /// The name it is shown under.
    pub sender_name: String,
    /// What was said.
    pub content: String,
}

/// How each turn is sampled (the original hard-coded T=0.3, top_p=0.95, top_k=64, 200 tokens;
/// those stay the defaults, plus a repetition penalty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TurnSettings {
    /// Softmax temperature (0 = greedy).
    pub temperature: f32,
    /// Nucleus sampling.
    pub top_p: f32,
    /// Top-k truncation (0 = off).
    pub top_k: u32,
    /// Most tokens per turn.
    pub max_tokens: usize,
    /// llama.cpp repetition penalty over the last 64 tokens (1 = off). Small models loop
    /// without one; 1.1 is llama.cpp's own default.
    #[serde(default = "default_repetition_penalty")]
    pub repetition_penalty: f32,
    /// RNG seed; each turn uses `seed + turn number` so a session replays exactly.
    pub seed: Option<u64>,
}

impl Default for TurnSettings {
    fn default() -> Self {
        TurnSettings {
            temperature: 0.3,
            top_p: 0.95,
            top_k: 64,
            max_tokens: 200,
            repetition_penalty: default_repetition_penalty(),
            seed: None,
        }
    }
}

fn default_repetition_penalty() -> f32 {
    1.1
}

/// A validated session request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SessionSpec {
    /// Who speaks when, who sees what.
    pub topology: Topology,
    /// Style hint.
    pub debate_format: DebateFormat,
    /// How votes become a decision.
    pub decision_mode: DecisionMode,
    /// The agents, in speaking order.
    pub agents: Vec<AgentSpec>,
    /// Opening message everyone sees.
    pub initial_prompt: String,
    /// Private opening text per agent id.
    pub per_agent_prompts: Vec<(String, String)>,
    /// Turn limit (0 = unlimited); the session is finished once this many turns are done.
    pub max_turns: u32,
    /// Permanent agents' memory is named under this prefix (deleted together by
    /// `DELETE /v1/coordination/caches/{prefix}`).
    pub persistent_cache_prefix: Option<String>,
    /// Earlier phases' messages per agent id.
    pub prior_agent_messages: Vec<(String, Vec<PriorMessage>)>,
    /// Who hears whom under the `whisper` topology (empty: a ring, each agent to the next).
    pub interactions: Vec<Interaction>,
    /// The options votes choose among (empty: any choice).
    pub options: Vec<String>,
    /// Sampling per turn.
    pub settings: TurnSettings,
}

impl SessionSpec {
    /// The agent with this id.
    pub fn agent(&self, agent_id: &str) -> Option<&AgentSpec> {
        self.agents.iter().find(|a| a.agent_id == agent_id)
    }

    /// Ids of the agents that take turns, in order (observers never speak).
    pub fn speakers(&self) -> Vec<&AgentSpec> {
        self.agents.iter().filter(|a| !SILENT_ROLES.contains(&a.role.as_str())).collect()
    }

    /// The agent whose vote decides under `coordinator_decides`.
    pub fn coordinator(&self) -> Option<&AgentSpec> {
        crate::COORDINATOR_ROLES.iter().find_map(|role| self.agents.iter().find(|a| a.role == *role))
    }

    /// The agents that vote (everyone but observers).
    pub fn voters(&self) -> Vec<String> {
        self.speakers().into_iter().map(|a| a.agent_id.clone()).collect()
    }

    /// The memory id of an agent of session `session_id`: permanent agents are named by their
    /// own id under the prefix (`persist_{prefix}_{id}`, or `persist_{id}` without one), so every
    /// session that names them continues the same memory; ephemeral ones are the session's own
    /// (`coord_{session}_{id}`).
    pub fn memory_id(&self, session_id: &str, agent: &AgentSpec) -> String {
        match (agent.lifecycle, &self.persistent_cache_prefix) {
            (Lifecycle::Permanent, Some(prefix)) => format!("persist_{prefix}_{}", agent.agent_id),
            (Lifecycle::Permanent, None) => format!("persist_{}", agent.agent_id),
            (Lifecycle::Ephemeral, _) => format!("coord_{session_id}_{}", agent.agent_id),
        }
    }

    /// Checks every field; errors name the field path.
    pub fn validate(&self) -> Result<(), CoordError> {
        self.validate_agents()?;
        self.validate_prompts_and_edges()?;
        self.validate_decision()?;
        self.validate_settings()
    }

    /// The agent list: ids, names, prompts, roles, no duplicates, at least one speaker.
    fn validate_agents(&self) -> Result<(), CoordError> {
        if self.agents.is_empty() || self.agents.len() > MAX_AGENTS {
            return Err(CoordError::invalid("agents", format!("1 to {MAX_AGENTS} agents, got {}", self.agents.len())));
        }
        for (i, agent) in self.agents.iter().enumerate() {
            check_id(&format!("agents[{i}].agent_id"), &agent.agent_id, MAX_AGENT_ID_CHARS)?;
            let name = agent.display_name.trim();
            if name.is_empty() || agent.display_name.chars().count() > MAX_NAME_CHARS {
                return Err(CoordError::invalid(
                    format!("agents[{i}].display_name"),
                    format!("1 to {MAX_NAME_CHARS} characters, not blank"),
                ));
            }
            if agent.display_name.contains(['\n', '\r', ':', '[', ']']) {
                return Err(CoordError::invalid(
                    format!("agents[{i}].display_name"),
                    "a display name may not contain newlines, ':' or brackets (they mark speakers in prompts)",
                ));
            }
            if agent.system_prompt.chars().count() > MAX_SYSTEM_PROMPT_CHARS {
                return Err(CoordError::invalid(
                    format!("agents[{i}].system_prompt"),
                    format!("at most {MAX_SYSTEM_PROMPT_CHARS} characters"),
                ));
            }
            if agent.role.trim().is_empty() || agent.role.chars().count() > MAX_NAME_CHARS {
                return Err(CoordError::invalid(format!("agents[{i}].role"), "1 to 50 characters"));
            }
            if let Some(j) = self.agents[..i].iter().position(|a| a.agent_id == agent.agent_id) {
                return Err(CoordError::invalid(
                    format!("agents[{i}].agent_id"),
                    format!("duplicate agent id {:?} (also agents[{j}])", agent.agent_id),
                ));
            }
            if let Some(j) = self.agents[..i].iter().position(|a| a.display_name.eq_ignore_ascii_case(name)) {
                return Err(CoordError::invalid(
                    format!("agents[{i}].display_name"),
                    format!("duplicate display name {:?} (also agents[{j}])", agent.display_name),
                ));
            }
        }
        if self.speakers().is_empty() {
            return Err(CoordError::invalid("agents", "every agent is an observer: nobody can take a turn"));
        }
        Ok(())
    }

    /// The opening prompt, turn bound, cache prefix, and every field that names an agent.
    fn validate_prompts_and_edges(&self) -> Result<(), CoordError> {
        if self.initial_prompt.chars().count() > MAX_INITIAL_PROMPT_CHARS {
            return Err(CoordError::invalid(
                "initial_prompt",
                format!("at most {MAX_INITIAL_PROMPT_CHARS} characters"),
            ));
        }
        if self.max_turns > MAX_TURNS {
            return Err(CoordError::invalid("max_turns", format!("0 (unlimited) to {MAX_TURNS}")));
        }
        if let Some(prefix) = &self.persistent_cache_prefix {
            check_id("persistent_cache_prefix", prefix, MAX_PREFIX_CHARS)?;
        }
        for (id, _) in &self.per_agent_prompts {
            if self.agent(id).is_none() {
                return Err(CoordError::invalid(format!("per_agent_prompts.{id}"), "no agent with this id or name"));
            }
        }
        for (id, _) in &self.prior_agent_messages {
            if self.agent(id).is_none() {
                return Err(CoordError::invalid(format!("prior_agent_messages.{id}"), "no agent with this id"));
            }
        }
        for (i, edge) in self.interactions.iter().enumerate() {
            for (field, id) in [("from_agent", &edge.from), ("to_agent", &edge.to)] {
                if self.agent(id).is_none() {
                    return Err(CoordError::invalid(
                        format!("interactions[{i}].{field}"),
                        format!("no agent {id:?} in this session"),
                    ));
                }
            }
            if edge.from == edge.to {
                return Err(CoordError::invalid(format!("interactions[{i}]"), "an agent cannot interact with itself"));
            }
        }
        Ok(())
    }

    /// The decision mode's coordinator and the options voted on.
    fn validate_decision(&self) -> Result<(), CoordError> {
        if self.decision_mode == DecisionMode::CoordinatorDecides && self.coordinator().is_none() {
            return Err(CoordError::invalid(
                "decision_mode",
                "coordinator_decides needs an agent whose role is coordinator, moderator or judge",
            ));
        }
        for (i, option) in self.options.iter().enumerate() {
            if option.trim().is_empty() || option.chars().count() > 200 {
                return Err(CoordError::invalid(format!("options[{i}]"), "1 to 200 characters"));
            }
            if self.options[..i].iter().any(|o| o.eq_ignore_ascii_case(option)) {
                return Err(CoordError::invalid(format!("options[{i}]"), format!("duplicate option {option:?}")));
            }
        }
        Ok(())
    }

    /// The generation settings every turn uses.
    fn validate_settings(&self) -> Result<(), CoordError> {
        let s = &self.settings;
        if !(0.0..=2.0).contains(&s.temperature) {
            return Err(CoordError::invalid("temperature", "0 to 2"));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(CoordError::invalid("top_p", "greater than 0, at most 1"));
        }
        if !(s.repetition_penalty > 0.0 && s.repetition_penalty <= 2.0) {
            return Err(CoordError::invalid("repetition_penalty", "greater than 0, at most 2 (1 = off)"));
        }
        if s.max_tokens == 0 || s.max_tokens > 4096 {
            return Err(CoordError::invalid("max_tokens", "1 to 4096"));
        }
        Ok(())
    }
}

/// An id that becomes part of a memory id and a file name: 1-`max` chars of `[A-Za-z0-9_-]`.
pub fn check_id(param: &str, id: &str, max: usize) -> Result<(), CoordError> {
    let ok =
        !id.is_empty() && id.len() <= max && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(CoordError::invalid(param, format!("invalid id {id:?}: 1 to {max} characters of A-Z a-z 0-9 _ -")))
    }
}

/// An agent id from a display name: lowercase ASCII letters and digits, other runs become `_`
/// (`"Dr. Ada Lovelace"` → `dr_ada_lovelace`); `agent` when nothing is left.
pub fn slug(name: &str) -> String {
    let mut out = String::new();
    for c in name.chars() {
        if c.is_ascii_alphanumeric() {
            out.push(c.to_ascii_lowercase());
        } else if !out.is_empty() && !out.ends_with('_') {
            out.push('_');
        }
    }
    let out = out.trim_end_matches('_');
    let mut out: String = out.chars().take(MAX_AGENT_ID_CHARS).collect();
    if out.is_empty() {
        out.push_str("agent");
    }
    out
}

#[cfg(test)]
impl SessionSpec {
    /// Tests: a round-robin, free-form session of `agents` with nothing else set.
    pub(crate) fn with_agents(agents: Vec<AgentSpec>) -> Self {
        SessionSpec {
            topology: Topology::RoundRobin,
            debate_format: DebateFormat::FreeForm,
            decision_mode: DecisionMode::None,
            agents,
            initial_prompt: String::new(),
            per_agent_prompts: vec![],
            max_turns: 0,
            persistent_cache_prefix: None,
            prior_agent_messages: vec![],
            interactions: vec![],
            options: vec![],
            settings: TurnSettings::default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn agent(id: &str, name: &str, role: &str) -> AgentSpec {
        AgentSpec {
            agent_id: id.into(),
            display_name: name.into(),
            role: role.into(),
            system_prompt: String::new(),
            lifecycle: Lifecycle::Ephemeral,
        }
    }

    fn spec(agents: Vec<AgentSpec>) -> SessionSpec {
        SessionSpec::with_agents(agents)
    }

    fn check(mutate: impl FnOnce(&mut SessionSpec), param: Option<&str>) {
        let mut s = spec(vec![agent("a", "Ann", "participant"), agent("b", "Bob", "moderator")]);
        mutate(&mut s);
        match (s.validate(), param) {
            (Ok(()), None) => {}
            (Err(CoordError::Invalid { param: got, .. }), Some(want)) => assert_eq!(got, want),
            (other, want) => panic!("expected {want:?}, got {other:?}"),
        }
    }

    #[test]
    fn validation_names_the_field() {
        check(|_| {}, None);
        check(|s| s.agents.clear(), Some("agents"));
        check(|s| s.agents[1].agent_id = "a".into(), Some("agents[1].agent_id"));
        check(|s| s.agents[1].display_name = "ann".into(), Some("agents[1].display_name"));
        check(|s| s.agents[0].display_name = "A: b".into(), Some("agents[0].display_name"));
        check(|s| s.agents[0].agent_id = "a/b".into(), Some("agents[0].agent_id"));
        check(|s| s.agents[0].system_prompt = "x".repeat(4001), Some("agents[0].system_prompt"));
        check(
            |s| {
                s.agents[0].role = "observer".into();
                s.agents[1].role = "observer".into();
            },
            Some("agents"),
        );
        check(|s| s.max_turns = 1001, Some("max_turns"));
        check(|s| s.persistent_cache_prefix = Some("bad prefix".into()), Some("persistent_cache_prefix"));
        check(|s| s.per_agent_prompts = vec![("zed".into(), "x".into())], Some("per_agent_prompts.zed"));
        check(
            |s| s.interactions = vec![Interaction { from: "a".into(), to: "zed".into(), channel: Default::default() }],
            Some("interactions[0].to_agent"),
        );
        check(|s| s.options = vec!["yes".into(), "YES".into()], Some("options[1]"));
        check(|s| s.settings.temperature = 3.0, Some("temperature"));
        check(|s| s.decision_mode = DecisionMode::CoordinatorDecides, None);
        check(
            |s| {
                s.decision_mode = DecisionMode::CoordinatorDecides;
                s.agents[1].role = "participant".into();
            },
            Some("decision_mode"),
        );
    }

    #[test]
    fn memory_ids_keep_permanent_agents_across_sessions() {
        let mut s = spec(vec![agent("a", "Ann", "participant")]);
        assert_eq!(s.memory_id("sess1", &s.agents[0]), "coord_sess1_a");
        s.agents[0].lifecycle = Lifecycle::Permanent;
        assert_eq!(s.memory_id("sess1", &s.agents[0]), "persist_a");
        s.persistent_cache_prefix = Some("game".into());
        assert_eq!(s.memory_id("sess2", &s.agents[0]), "persist_game_a");
    }

    #[test]
    fn slugs() {
        for (name, want) in [("Dr. Ada Lovelace", "dr_ada_lovelace"), ("  ", "agent"), ("Zoë 2", "zo_2"), ("X", "x")] {
            assert_eq!(slug(name), want, "{name}");
        }
    }
}

//! Coordination wire types: `/v1/coordination/…` requests and responses (paths and request
//! bodies compatible with the original system's). Meaning is checked in `semantic-coord`
//! (`SessionSpec::validate`); this file only converts shapes. Unknown request fields are ignored.

use std::collections::BTreeMap;

use semantic_coord::{
    slug, AgentSpec, ChannelMessage, CoordError, DebateFormat, DecisionMode, Interaction, Lifecycle, PriorMessage,
    Session, SessionSpec, Topology, TurnRecord, TurnSettings,
};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use utoipa::ToSchema;

/// One agent of a new session.
#[derive(Debug, Deserialize, ToSchema)]
pub struct AgentConfig {
    /// Stable id (1-64 of `[A-Za-z0-9_-]`); default: from the display name (`Dr. Ada` → `dr_ada`).
    pub agent_id: Option<String>,
    /// The name others see (1-50 characters, no `:`, brackets or newlines).
    pub display_name: String,
    /// Free text, default `participant`; `observer` never speaks; `moderator`, `coordinator` or
    /// `judge` decides under `coordinator_decides`.
    pub role: Option<String>,
    /// The agent's instructions (at most 4000 characters).
    pub system_prompt: Option<String>,
    /// `ephemeral` (default: memory deleted with the session) or `permanent` (kept; a later
    /// session with the same agent id continues it).
    #[schema(value_type = Option<String>)]
    pub lifecycle: Option<Lifecycle>,
}

/// A message from an earlier phase.
#[derive(Debug, Deserialize, ToSchema)]
pub struct PriorMessageWire {
    /// The sender's agent id, if an agent.
    pub sender_id: Option<String>,
    /// The name shown.
    pub sender_name: String,
    /// The text.
    pub content: String,
}

/// A directed edge: `from_agent`'s turns reach `to_agent` (whisper topology).
#[derive(Debug, Deserialize, ToSchema)]
pub struct InteractionWire {
    /// Sender agent id.
    pub from_agent: String,
    /// Receiver agent id.
    pub to_agent: String,
    /// `public` (default), `whisper` or `observe`.
    #[schema(value_type = Option<String>)]
    pub channel: Option<semantic_coord::Channel>,
}

/// `POST /v1/coordination/sessions`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateSessionRequest {
    /// `turn_by_turn` (default), `round_robin`, `broadcast`, `whisper` or `interrupt`.
    #[schema(value_type = Option<String>)]
    pub topology: Option<Topology>,
    /// `free_form` (default), `structured`, `socratic`, `devils_advocate` or `parliamentary`.
    #[schema(value_type = Option<String>)]
    pub debate_format: Option<DebateFormat>,
    /// `none` (default), `majority_vote`, `ranked_choice`, `coordinator_decides` or `consensus`.
    #[schema(value_type = Option<String>)]
    pub decision_mode: Option<DecisionMode>,
    /// 1-30 agents, in speaking order.
    pub agents: Vec<AgentConfig>,
    /// Opening message everyone sees (at most 50,000 characters).
    pub initial_prompt: Option<String>,
    /// Private opening text per agent (keyed by display name or agent id).
    pub per_agent_prompts: Option<BTreeMap<String, String>>,
    /// Turn limit, 0-1000 (0: unlimited).
    pub max_turns: Option<u32>,
    /// Names permanent agents' memory `persist_{prefix}_{agent_id}`.
    pub persistent_cache_prefix: Option<String>,
    /// Messages from earlier phases, per agent id.
    pub prior_agent_messages: Option<BTreeMap<String, Vec<PriorMessageWire>>>,
    /// Who hears whom under the whisper topology (default: a ring).
    pub interactions: Option<Vec<InteractionWire>>,
    /// The options votes choose among (default: any).
    pub options: Option<Vec<String>>,
    /// Sampling temperature per turn (default 0.3).
    pub temperature: Option<f32>,
    /// Nucleus sampling (default 0.95).
    pub top_p: Option<f32>,
    /// Top-k (default 64).
    pub top_k: Option<u32>,
    /// Most tokens per turn (default 200).
    pub max_tokens: Option<usize>,
    /// Repetition penalty over the last 64 tokens (default 1.1; 1 = off).
    pub repetition_penalty: Option<f32>,
    /// Seed: turn `n` samples with `seed + n`, so a session replays exactly.
    pub seed: Option<u64>,
}

impl CreateSessionRequest {
    /// The session spec (not yet validated: `SessionSpec::validate` does that).
    pub(crate) fn into_spec(self) -> Result<SessionSpec, CoordError> {
        let mut agents = Vec::with_capacity(self.agents.len());
        for a in self.agents {
            let base = a.agent_id.clone().unwrap_or_else(|| slug(&a.display_name));
            let mut id = base.clone();
            let mut n = 2;
            while a.agent_id.is_none() && agents.iter().any(|x: &AgentSpec| x.agent_id == id) {
                id = format!("{base}_{n}");
                n += 1;
            }
            agents.push(AgentSpec {
                agent_id: id,
                display_name: a.display_name,
                role: a.role.unwrap_or_else(|| "participant".into()),
                system_prompt: a.system_prompt.unwrap_or_default(),
                lifecycle: a.lifecycle.unwrap_or_default(),
            });
        }
        let by_name_or_id = |key: &str| -> Result<String, CoordError> {
            agents
                .iter()
                .find(|a| a.agent_id == key)
                .or_else(|| agents.iter().find(|a| a.display_name == key))
                .map(|a| a.agent_id.clone())
                .ok_or_else(|| CoordError::invalid(format!("per_agent_prompts.{key}"), "no agent with this name or id"))
        };
        let mut per_agent_prompts = Vec::new();
        for (key, text) in self.per_agent_prompts.unwrap_or_default() {
            per_agent_prompts.push((by_name_or_id(&key)?, text));
        }
        let prior_agent_messages = self
            .prior_agent_messages
            .unwrap_or_default()
            .into_iter()
            .map(|(id, list)| {
                let list = list
                    .into_iter()
                    .map(|m| PriorMessage { sender_id: m.sender_id, sender_name: m.sender_name, content: m.content })
                    .collect();
                (id, list)
            })
            .collect();
        let defaults = TurnSettings::default();
        Ok(SessionSpec {
            topology: self.topology.unwrap_or_default(),
            debate_format: self.debate_format.unwrap_or_default(),
            decision_mode: self.decision_mode.unwrap_or_default(),
            agents,
            initial_prompt: self.initial_prompt.unwrap_or_default(),
            per_agent_prompts,
            max_turns: self.max_turns.unwrap_or(0),
            persistent_cache_prefix: self.persistent_cache_prefix,
            prior_agent_messages,
            interactions: self
                .interactions
                .unwrap_or_default()
                .into_iter()
                .map(|e| Interaction { from: e.from_agent, to: e.to_agent, channel: e.channel.unwrap_or_default() })
                .collect(),
            options: self.options.unwrap_or_default(),
            settings: TurnSettings {
                temperature: self.temperature.unwrap_or(defaults.temperature),
                top_p: self.top_p.unwrap_or(defaults.top_p),
                top_k: self.top_k.unwrap_or(defaults.top_k),
                max_tokens: self.max_tokens.unwrap_or(defaults.max_tokens),
                repetition_penalty: self.repetition_penalty.unwrap_or(defaults.repetition_penalty),
                seed: self.seed,
            },
        })
    }
}

/// `POST …/turn` and `…/turn/stream` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct TurnRequest {
    /// Who speaks (interrupt topology only; otherwise it must be the agent due, or absent).
    pub agent_id: Option<String>,
}

/// `POST …/round` and `…/round/stream` (the body is optional).
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct RoundRequest {
    /// Turns to run (default: one per speaking agent).
    pub turns: Option<usize>,
}

/// `POST …/whisper`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct WhisperRequest {
    /// Sender agent id.
    pub from_agent_id: String,
    /// Receiver agent id.
    pub to_agent_id: String,
    /// 1-5000 characters.
    pub content: String,
}

/// `POST …/vote`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct VoteRequest {
    /// The voting agent.
    pub agent_id: String,
    /// Its choice (one of the session's options, when it has any).
    pub choice: Option<String>,
    /// Its ranking, best first (ranked_choice).
    pub ranking: Option<Vec<String>>,
}

/// `POST …/decide`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct DecideRequest {
    /// The options (default: the session's; one of the two is needed).
    pub options: Option<Vec<String>>,
    /// The question put to every voting agent (default: "Which option do you choose?").
    pub question: Option<String>,
}

/// `GET …/messages` query.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct MessagesQuery {
    /// Only what this agent can see (whispers to and from it included).
    pub agent_id: Option<String>,
}

/// Token counts of a turn, in OpenAI's shape.
pub(crate) fn usage_json(usage: &semantic_coord::TurnUsage) -> Value {
    json!({
        "prompt_tokens": usage.prompt_tokens,
        "completion_tokens": usage.completion_tokens,
        "total_tokens": usage.prompt_tokens + usage.completion_tokens,
        "prompt_tokens_details": {"cached_tokens": usage.cached_tokens},
    })
}

/// A done turn.
pub(crate) fn turn_json(session: &Session, t: &TurnRecord) -> Value {
    json!({
        "object": "coordination.turn",
        "session_id": session.id,
        "turn": t.turn,
        "round": t.round,
        "agent_id": t.agent_id,
        "agent_name": t.agent_name,
        "content": t.content,
        "finish_reason": t.finish_reason,
        "usage": usage_json(&t.usage),
        "previous_prompt_tokens": t.previous_prompt_tokens,
        "session_status": session.status(),
    })
}

/// One channel message.
pub(crate) fn message_json(m: &ChannelMessage) -> Value {
    json!({
        "index": m.index,
        "kind": m.kind,
        "sender_id": m.sender_id,
        "sender_name": m.sender_name,
        "content": m.content,
        "visible_to": m.recipients.as_ref().map(|r| {
            let mut ids: Vec<&str> = r.iter().map(|r| r.agent_id.as_str()).collect();
            if let Some(sender) = &m.sender_id { ids.insert(0, sender); }
            ids
        }),
        "turn": m.turn,
        "round": m.round,
        "created_at": m.created_at,
    })
}

/// A session's status (the create response is the same shape).
pub(crate) fn session_json(s: &Session) -> Value {
    let speakers = s.speakers();
    let next = (s.status() == semantic_coord::SessionStatus::Active)
        .then(|| s.spec.agents[speakers[s.next_speaker % speakers.len()]].agent_id.clone());
    let totals = totals(s);
    json!({
        "object": "coordination.session",
        "session_id": s.id,
        "status": s.status(),
        "topology": s.spec.topology,
        "debate_format": s.spec.debate_format,
        "decision_mode": s.spec.decision_mode,
        "agents": s.spec.agents.iter().zip(&s.views).map(|(a, v)| json!({
            "agent_id": a.agent_id,
            "display_name": a.display_name,
            "role": a.role,
            "lifecycle": a.lifecycle,
            "memory_id": v.memory_id,
            "turns": v.turns,
            "continued": v.continued,
        })).collect::<Vec<_>>(),
        "current_turn": s.turns_done,
        "max_turns": s.spec.max_turns,
        "next_speaker": next,
        "message_count": s.messages.len(),
        "options": s.spec.options,
        "persistent_cache_prefix": s.spec.persistent_cache_prefix,
        "created_at": s.created_at,
        "usage": totals,
    })
}

/// Totals over the session's turns: tokens prefilled against what re-prefilling every prompt
/// from scratch would have cost.
fn totals(s: &Session) -> Value {
    let prompt: usize = s.turn_log.iter().map(|t| t.usage.prompt_tokens).sum();
    let cached: usize = s.turn_log.iter().map(|t| t.usage.cached_tokens).sum();
    let completion: usize = s.turn_log.iter().map(|t| t.usage.completion_tokens).sum();
    json!({
        "prompt_tokens": prompt,
        "cached_tokens": cached,
        "prefilled_tokens": prompt - cached.min(prompt),
        "completion_tokens": completion,
    })
}

/// Status of a session as JSON (used by the list route's schema).
#[derive(Debug, Serialize, ToSchema)]
pub struct SessionStatusDoc {
    /// `sess_…`.
    pub session_id: String,
    /// `active` or `finished`.
    pub status: String,
    /// Topology.
    pub topology: String,
    /// Agents with their memory ids and turn counts.
    pub agents: Vec<Value>,
    /// Turns done.
    pub current_turn: u64,
    /// Who speaks next (null once finished).
    pub next_speaker: Option<String>,
    /// Tokens over all turns: prompt, cached, prefilled, completion.
    pub usage: Value,
}

/// A done turn (JSON body and the `turn_complete` event).
#[derive(Debug, Serialize, ToSchema)]
pub struct TurnDoc {
    /// 1-based turn number (the same in `turn_start`, `turn_complete` and the round).
    pub turn: u64,
    /// 1-based round number.
    pub round: u64,
    /// Speaker id.
    pub agent_id: String,
    /// Speaker name.
    pub agent_name: String,
    /// The cleaned reply.
    pub content: String,
    /// `stop` or `length`.
    pub finish_reason: String,
    /// `prompt_tokens`, `completion_tokens`, `total_tokens`, `prompt_tokens_details.cached_tokens`.
    pub usage: Value,
    /// The speaker's previous prompt length (cached tokens are at least this when memory pays).
    pub previous_prompt_tokens: Option<usize>,
}

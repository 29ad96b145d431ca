//! Placeholder until the decision module lands (same `Vote` shape).
use serde::{Deserialize, Serialize};

/// Where a vote came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VoteSource {
    /// `POST …/vote`.
    Api,
    /// Parsed from a `/decide` answer.
    Parsed,
}

/// A vote.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Vote {
    /// Voter.
    pub agent_id: String,
    /// Choice.
    pub choice: Option<String>,
    /// Ranking.
    pub ranking: Vec<String>,
    /// Source.
    pub source: VoteSource,
}

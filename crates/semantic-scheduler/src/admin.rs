//! `AgentCommand`: operations on agent memory requested by the API (list, inspect, delete, evict,
//! pin, flush, clear, export, import), executed on the step thread between steps.

use semantic_memory::{AgentInfo, AgentKey, Namespace, SnapshotHeader};
use tokio::sync::oneshot;

/// Why an agent operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AgentOpError {
    /// No such agent in this namespace.
    #[error("no such agent")]
    NotFound,
    /// A request for this agent is running.
    #[error("the agent is generating; retry when its request ends")]
    Busy,
    /// There is no disk tier (no cache directory) or the write failed.
    #[error("cannot persist the agent: {reason}")]
    Persist {
        /// Why.
        reason: String,
    },
    /// An import names an agent that exists and was not told to replace it.
    #[error("an agent of this name exists; import with replace to overwrite it")]
    Exists,
    /// An imported file was made by another model or KV layout than the one serving.
    #[error("the file cannot be served by this model: {reason}")]
    Incompatible {
        /// Which part differs.
        reason: String,
    },
    /// The agent's state could not be read (export).
    #[error("cannot read the agent's state: {reason}")]
    Unreadable {
        /// Why.
        reason: String,
    },
}

/// An agent's content as its file holds it (what `semantic agents export` writes).
#[derive(Debug, Clone)]
pub struct AgentSnapshot {
    /// Who, which model and layout, which tokens, when.
    pub header: SnapshotHeader,
    /// The engine state of those tokens.
    pub payload: Vec<u8>,
}

/// What a flush did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FlushReport {
    /// Agents still dirty afterwards (0 = everything is on disk).
    pub still_dirty: usize,
}

/// A request to the step thread about agent memory.
pub(crate) enum AgentCommand {
    /// Agents of one namespace.
    List { namespace: Namespace, reply: oneshot::Sender<Vec<AgentInfo>> },
    /// One agent.
    Get { key: AgentKey, reply: oneshot::Sender<Option<AgentInfo>> },
    /// Forget an agent in every tier, its file included.
    Delete { key: AgentKey, reply: oneshot::Sender<Result<(), AgentOpError>> },
    /// Move an agent to disk now (waits for the write).
    Evict { key: AgentKey, reply: oneshot::Sender<Result<AgentInfo, AgentOpError>> },
    /// Pin (never evicted) or unpin.
    Pin { key: AgentKey, pinned: bool, reply: oneshot::Sender<Result<AgentInfo, AgentOpError>> },
    /// Persist every dirty agent and wait for the disk.
    Flush { reply: oneshot::Sender<FlushReport> },
    /// Delete every agent (of one namespace, or all); returns how many.
    Clear { namespace: Option<Namespace>, reply: oneshot::Sender<usize> },
    /// The agent's current content, whatever its tier (the tier does not change).
    Export { key: AgentKey, reply: oneshot::Sender<Result<AgentSnapshot, AgentOpError>> },
    /// Take an exported agent as a warm, dirty agent (written by the usual persistence).
    Import { snapshot: AgentSnapshot, replace: bool, reply: oneshot::Sender<Result<AgentInfo, AgentOpError>> },
}

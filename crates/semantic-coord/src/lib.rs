//! Multi-agent coordination over per-agent memory: sessions with five topologies, each agent's
//! own append-only view of the conversation (so its next prompt extends its previous one token for
//! token and the KV is reused), whispers, votes and decisions, response cleaning, the durable
//! session store, and YAML scenarios.
//!
//! Owns: the coordination domain, pure and synchronous. Does not own: generation (the api crate
//! runs a turn's prompt through the scheduler), HTTP wire shapes, tokenization.
#![warn(missing_docs)]

pub mod clean;
pub mod decision;
mod error;
pub mod prompt;
pub mod scenario;
mod session;
mod spec;
mod store;
mod types;

pub use error::CoordError;
pub use session::*;
pub use spec::*;
pub use store::*;
pub use types::*;

#[cfg(test)]
mod session_tests;

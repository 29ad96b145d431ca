//! Multi-agent coordination over per-agent memory: sessions with five topologies, each agent's
//! own append-only view of the conversation (so its next prompt extends its previous one token for
//! token and the KV is reused), whispers, votes and decisions, response cleaning, the durable
//! session store, and YAML scenarios.
//!
//! Owns: the coordination domain, pure and synchronous. Does not own: generation (the api crate
//! runs a turn's prompt through the scheduler), HTTP wire shapes, tokenization.
#![warn(missing_docs)]

mod error;
pub mod scenario;
mod types;

pub use error::CoordError;
pub use types::*;

//! Constrained decoding for structured outputs: a JSON Schema (a documented subset) compiled into a [`JsonGrammar`],
//! a byte-level pushdown automaton over it ([`JsonState`], one per sequence), and the vocabulary's prefix trie
//! ([`TokenTrie`]) that turns a state into the mask of tokens whose bytes keep the output a valid prefix.
//! Does not own sampling (the mask is applied by the caller before [`crate::Sampler`]) nor HTTP error shapes.
//!
//! Why by hand: `llguidance` would bring a second grammar engine and its build weight for the subset we need, and
//! llama.cpp's GBNF sampler would put the constraint on the llama side of the `Engine` trait (FakeEngine tests could
//! not exercise it). The automaton is small, pure Rust and tested against a fake vocabulary.

mod automaton;
mod schema;
mod trie;

pub use automaton::JsonState;
pub use schema::{CallShape, CallableTool, JsonGrammar, SchemaError, ToolSchemaError};
pub use trie::TokenTrie;

#[cfg(test)]
mod tests;

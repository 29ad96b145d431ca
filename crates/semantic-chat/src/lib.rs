//! Text in and out of the model, without llama.cpp: chat templates rendered with Hugging Face
//! semantics ([`ChatTemplate`]), incremental UTF-8-safe detokenization ([`Utf8Stream`]) and stop
//! strings matched across token boundaries ([`StopMatcher`]).
//!
//! Tokenization, sampling and parsing tool calls out of generated text live elsewhere.
#![warn(missing_docs)]

mod clock;
mod detok;
mod error;
mod python;
mod stop;
mod template;

pub use detok::Utf8Stream;
pub use error::ChatError;
pub use stop::{StopMatcher, StopStep};
pub use template::{ChatTemplate, FunctionCall, Message, ToolCall};

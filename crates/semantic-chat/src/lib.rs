//! Text in and out of the model, without llama.cpp: chat templates rendered with Hugging Face
//! semantics ([`ChatTemplate`]), incremental UTF-8-safe detokenization ([`Utf8Stream`]) and stop
//! strings matched across token boundaries ([`StopMatcher`]).
//!
//! Also tool calling in each family's own syntax: offering tools to a template ([`ToolPrompting`])
//! and reading calls back out of generated text ([`ToolCallParser`]). Tokenization and sampling
//! live elsewhere.
#![warn(missing_docs)]

mod clock;
mod detok;
mod error;
mod python;
mod stop;
mod template;
mod tool_parse;
mod tools;

pub use clock::strftime as strftime_utc;
pub use detok::Utf8Stream;
pub use error::ChatError;
pub use stop::{StopMatcher, StopStep};
pub use template::{ChatTemplate, FunctionCall, Message, ToolCall};
pub use tool_parse::{ParsedOutput, ParsedToolCall, ToolCallParser, ToolEvent};
pub use tools::{CallFrame, ToolPrompting, ToolSyntax};

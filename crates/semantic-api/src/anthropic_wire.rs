//! Anthropic wire types: `/v1/messages` and `/v1/messages/count_tokens` requests, the message
//! response and the stream events. Only shapes live here; meaning is checked in `anthropic.rs`.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `system`: a string or text blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum SystemPrompt {
    /// Plain text.
    Text(String),
    /// Text blocks (`cache_control` accepted and ignored: every prompt is cached per agent).
    Blocks(Vec<ContentBlock>),
}

/// Message content: a string or blocks.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Blocks.
    Blocks(Vec<ContentBlock>),
}

/// A content block of a request: `text`, `tool_use`, `tool_result`, or `thinking` /
/// `redacted_thinking` (accepted in assistant turns and left out of the prompt). Images and
/// documents are rejected.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentBlock {
    /// Block type.
    #[serde(rename = "type")]
    pub kind: String,
    /// `text`: the text.
    pub text: Option<String>,
    /// `tool_use`: the call id.
    pub id: Option<String>,
    /// `tool_use`: the tool name.
    pub name: Option<String>,
    /// `tool_use`: the arguments object.
    #[schema(value_type = Option<Object>)]
    pub input: Option<Value>,
    /// `tool_result`: the call it answers.
    pub tool_use_id: Option<String>,
    /// `tool_result`: a string or text blocks.
    pub content: Option<ToolResultContent>,
    /// `tool_result`: the tool failed.
    pub is_error: Option<bool>,
}

/// Content of a `tool_result`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolResultContent {
    /// Plain text.
    Text(String),
    /// Text blocks.
    #[schema(no_recursion)]
    Blocks(Vec<ContentBlock>),
}

/// One message.
#[derive(Debug, Deserialize, ToSchema)]
pub struct InputMessage {
    /// `user` or `assistant`.
    pub role: String,
    /// Content.
    pub content: MessageContent,
}

/// A client tool.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Tool {
    /// Absent or `custom` (server tools are not supported).
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// 1-64 chars of `[A-Za-z0-9_-]`.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of the input object.
    #[schema(value_type = Object)]
    pub input_schema: Option<Value>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ToolChoice {
    /// `auto`, `any`, `tool` or `none`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `tool`: which one.
    pub name: Option<String>,
    /// Accepted and ignored.
    pub disable_parallel_tool_use: Option<bool>,
}

/// `thinking`: only `{"type":"disabled"}`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct Thinking {
    /// `disabled` (`enabled` is rejected).
    #[serde(rename = "type")]
    pub kind: String,
}

/// `POST /v1/messages` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct MessagesRequest {
    /// The loaded model's name, `default` or `semantic`; optional.
    pub model: Option<String>,
    /// The conversation (at least one message).
    pub messages: Vec<InputMessage>,
    /// System prompt.
    pub system: Option<SystemPrompt>,
    /// Most tokens to generate (required, at least 1).
    pub max_tokens: Option<u64>,
    /// 0-1, default 1.
    pub temperature: Option<f32>,
    /// 0-1.
    pub top_p: Option<f32>,
    /// 0 is off.
    pub top_k: Option<u32>,
    /// Stop strings (at most 16); the one that matched is returned as `stop_sequence`.
    pub stop_sequences: Option<Vec<String>>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Client tools.
    pub tools: Option<Vec<Tool>>,
    /// Tool choice.
    pub tool_choice: Option<ToolChoice>,
    /// An object (e.g. `{"user_id": ...}`); accepted and ignored.
    #[schema(value_type = Option<Object>)]
    pub metadata: Option<serde_json::Map<String, Value>>,
    /// Only `disabled`.
    pub thinking: Option<Thinking>,
    /// Agent whose memory this request reuses and updates (extension; also `X-Agent-ID`).
    pub agent_id: Option<String>,
    /// Alias of `agent_id` (extension; also `X-Session-ID`).
    pub session_id: Option<String>,
}

/// `POST /v1/messages/count_tokens` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CountTokensRequest {
    /// As in `/v1/messages`.
    pub model: Option<String>,
    /// As in `/v1/messages`.
    pub messages: Vec<InputMessage>,
    /// As in `/v1/messages`.
    pub system: Option<SystemPrompt>,
    /// As in `/v1/messages`.
    pub tools: Option<Vec<Tool>>,
    /// As in `/v1/messages`.
    pub tool_choice: Option<ToolChoice>,
    /// Accepted and ignored.
    pub thinking: Option<Thinking>,
}

/// `POST /v1/messages/count_tokens` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct TokenCount {
    /// Tokens of the templated prompt (tools included).
    pub input_tokens: usize,
}

/// A block of the reply.
#[derive(Debug, Clone, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ResponseBlock {
    /// Text.
    Text {
        /// The text.
        text: String,
    },
    /// A tool call.
    ToolUse {
        /// `toolu_...`.
        id: String,
        /// Tool name.
        name: String,
        /// Arguments.
        #[schema(value_type = Object)]
        input: Value,
    },
}

/// Token accounting. Reused prompt tokens are `cache_read_input_tokens`; with an agent id, the
/// rest of the prompt is written to the agent's memory and counted as
/// `cache_creation_input_tokens`; `input_tokens` is what was neither (the three add up to the
/// prompt).
#[derive(Debug, Clone, Copy, Serialize, ToSchema)]
pub struct MessageUsage {
    /// Prompt tokens neither read from nor written to memory.
    pub input_tokens: usize,
    /// Generated tokens.
    pub output_tokens: usize,
    /// Prompt tokens written to the agent's memory.
    pub cache_creation_input_tokens: usize,
    /// Prompt tokens reused from memory (exact).
    pub cache_read_input_tokens: usize,
}

/// `POST /v1/messages` response.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct MessageResponse {
    /// `msg_...`.
    pub id: String,
    /// `message`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// `assistant`.
    pub role: &'static str,
    /// The model name as requested.
    pub model: String,
    /// Text and tool_use blocks.
    pub content: Vec<ResponseBlock>,
    /// `end_turn`, `max_tokens`, `stop_sequence` or `tool_use` (null in `message_start`).
    pub stop_reason: Option<&'static str>,
    /// The stop string that matched.
    pub stop_sequence: Option<String>,
    /// Token accounting.
    pub usage: MessageUsage,
}

/// A streamed delta.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum BlockDelta {
    /// More text of a text block.
    TextDelta {
        /// Text to append.
        text: String,
    },
    /// More JSON of a tool_use block's input.
    InputJsonDelta {
        /// JSON text to append.
        partial_json: String,
    },
}

/// `message_delta`'s delta.
#[derive(Debug, Serialize, ToSchema)]
pub struct MessageDelta {
    /// Why the reply ended.
    pub stop_reason: &'static str,
    /// The stop string that matched.
    pub stop_sequence: Option<String>,
}

/// A streamed event; each is sent as `event: <type>` and `data: <json>`. A failure mid-stream
/// is sent as `event: error` with the Anthropic error body.
#[derive(Debug, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum StreamEvent {
    /// First: the message with empty content. Its usage counts the whole prompt as
    /// `input_tokens` (the cache split is known only at the end and sent in `message_delta`).
    MessageStart {
        /// The message so far.
        message: MessageResponse,
    },
    /// A block opens (a tool_use block opens with an empty `input`).
    ContentBlockStart {
        /// Block index.
        index: usize,
        /// The block.
        content_block: ResponseBlock,
    },
    /// Keep-alive, after the first block opens.
    Ping,
    /// More of a block.
    ContentBlockDelta {
        /// Block index.
        index: usize,
        /// The delta.
        delta: BlockDelta,
    },
    /// A block closes.
    ContentBlockStop {
        /// Block index.
        index: usize,
    },
    /// The end: stop reason and the final, exact usage.
    MessageDelta {
        /// Stop reason.
        delta: MessageDelta,
        /// Final usage.
        usage: MessageUsage,
    },
    /// Last event.
    MessageStop,
}

impl StreamEvent {
    /// The `event:` name.
    pub fn name(&self) -> &'static str {
        match self {
            StreamEvent::MessageStart { .. } => "message_start",
            StreamEvent::ContentBlockStart { .. } => "content_block_start",
            StreamEvent::Ping => "ping",
            StreamEvent::ContentBlockDelta { .. } => "content_block_delta",
            StreamEvent::ContentBlockStop { .. } => "content_block_stop",
            StreamEvent::MessageDelta { .. } => "message_delta",
            StreamEvent::MessageStop => "message_stop",
        }
    }
}

//! OpenAI wire types: `/v1/chat/completions`, `/v1/completions` and `/v1/models` requests,
//! responses and stream chunks. Only shapes live here; meaning is checked in `openai.rs` and
//! `completions.rs`. Unknown request fields are ignored, as most OpenAI-compatible servers do.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// `stop`: one string or a list.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum StopField {
    /// One stop string.
    One(String),
    /// Several (at most 16).
    Many(Vec<String>),
}

impl StopField {
    pub(crate) fn into_vec(self) -> Vec<String> {
        match self {
            StopField::One(s) => vec![s],
            StopField::Many(v) => v,
        }
    }
}

/// Message content: a string or a list of typed parts.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum MessageContent {
    /// Plain text.
    Text(String),
    /// Parts; only `text` parts are supported.
    Parts(Vec<ContentPart>),
}

/// One content part.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ContentPart {
    /// Part type: `text` (others such as `image_url` are rejected).
    #[serde(rename = "type")]
    pub kind: String,
    /// Text of a `text` part.
    pub text: Option<String>,
}

/// A chat message on the wire.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatMessage {
    /// `system`, `developer` (treated as system), `user`, `assistant` or `tool`.
    pub role: String,
    /// Content; may be null or absent for an assistant turn that only calls tools.
    pub content: Option<MessageContent>,
    /// Optional author name.
    pub name: Option<String>,
    /// For `tool` messages: the call this result answers.
    pub tool_call_id: Option<String>,
    /// For `assistant` messages: the calls it made.
    pub tool_calls: Option<Vec<MessageToolCall>>,
}

/// A tool call inside an assistant message (request and response).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct MessageToolCall {
    /// `call_...`.
    pub id: String,
    /// Always `function`.
    #[serde(rename = "type", default = "function_type")]
    pub kind: String,
    /// The function called.
    pub function: FunctionCallWire,
}

fn function_type() -> String {
    "function".to_owned()
}

/// A function name and its arguments as a JSON string.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct FunctionCallWire {
    /// Function name.
    pub name: String,
    /// Arguments: a JSON object encoded as a string.
    pub arguments: String,
}

/// `stream_options`.
#[derive(Debug, Default, Deserialize, ToSchema)]
pub struct StreamOptions {
    /// Send a last chunk with `usage` (and empty `choices`) before `[DONE]`.
    pub include_usage: Option<bool>,
}

/// `stream` and `stream_options.include_usage` of an OpenAI request, both off when absent.
pub(crate) fn stream_flags(stream: Option<bool>, options: Option<&StreamOptions>) -> (bool, bool) {
    (stream.unwrap_or(false), options.and_then(|o| o.include_usage).unwrap_or(false))
}

/// A tool the model may call.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatTool {
    /// Must be `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The function.
    pub function: FunctionDefinition,
}

/// A function the model may call.
#[derive(Debug, Deserialize, ToSchema)]
pub struct FunctionDefinition {
    /// 1-64 chars of `[A-Za-z0-9_-]`.
    pub name: String,
    /// What it does.
    pub description: Option<String>,
    /// JSON Schema of the arguments object.
    #[schema(value_type = Option<Object>)]
    pub parameters: Option<Value>,
    /// Accepted and ignored (no constrained decoding).
    pub strict: Option<bool>,
}

/// `tool_choice`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum ToolChoice {
    /// `none`, `auto` or `required`.
    Mode(String),
    /// `{"type":"function","function":{"name":...}}`.
    Named(NamedToolChoice),
}

/// A named tool choice.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NamedToolChoice {
    /// Must be `function`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Which function.
    pub function: NamedFunction,
}

/// The function of a named tool choice.
#[derive(Debug, Deserialize, ToSchema)]
pub struct NamedFunction {
    /// Its name.
    pub name: String,
}

/// `response_format`: `text`, `json_object` (any JSON object) or `json_schema` (constrained to the schema; see the
/// README for the supported JSON Schema subset).
#[derive(Debug, Deserialize, ToSchema)]
pub struct ResponseFormat {
    /// `text`, `json_object` or `json_schema`.
    #[serde(rename = "type")]
    pub kind: String,
    /// With `json_schema`: the schema and its name.
    pub json_schema: Option<JsonSchemaFormat>,
}

/// `response_format.json_schema`.
#[derive(Debug, Deserialize, ToSchema)]
pub struct JsonSchemaFormat {
    /// The schema's name (required by OpenAI; not used).
    pub name: String,
    /// Not used.
    pub description: Option<String>,
    /// The JSON Schema the reply must match; absent means any JSON value.
    #[schema(value_type = Object)]
    pub schema: Option<Value>,
    /// Accepted either way: decoding is always constrained, and unsupported keywords are always a 400.
    pub strict: Option<bool>,
}

/// `POST /v1/chat/completions` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct ChatCompletionRequest {
    /// The loaded model's name, `default` or `semantic` (see `GET /v1/models`); optional.
    pub model: Option<String>,
    /// The conversation (at least one message).
    pub messages: Vec<ChatMessage>,
    /// Stream with server-sent events.
    pub stream: Option<bool>,
    /// Streaming options (ignored without `stream`).
    pub stream_options: Option<StreamOptions>,
    /// Most tokens to generate (legacy name; default: the server's `--default-max-tokens`, capped by the context).
    pub max_tokens: Option<u64>,
    /// Most tokens to generate (wins over `max_tokens`).
    pub max_completion_tokens: Option<u64>,
    /// 0-2, default 1; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0-1 (0 is greedy).
    pub top_p: Option<f32>,
    /// Top-k (extension); 0 is off.
    pub top_k: Option<u32>,
    /// Min-p, 0-1 (extension).
    pub min_p: Option<f32>,
    /// Seed for reproducible sampling.
    pub seed: Option<i64>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// llama.cpp-style repetition penalty (extension), > 0; 1 is off.
    pub repetition_penalty: Option<f32>,
    /// Token id (decimal string) to a bias in [-100, 100].
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Stop strings (at most 16), never included in the output.
    pub stop: Option<StopField>,
    /// Number of choices: only 1.
    pub n: Option<u32>,
    /// Tools the model may call.
    pub tools: Option<Vec<ChatTool>>,
    /// `none`, `auto` (default with tools), `required` or a named function.
    pub tool_choice: Option<ToolChoice>,
    /// Accepted; several calls in one reply are always allowed.
    pub parallel_tool_calls: Option<bool>,
    /// Only `{"type":"text"}`.
    pub response_format: Option<ResponseFormat>,
    /// Only false (log probabilities are not returned).
    pub logprobs: Option<bool>,
    /// Only 0 or absent.
    pub top_logprobs: Option<u32>,
    /// End-user id; accepted and ignored.
    pub user: Option<String>,
    /// Agent whose memory this request reuses and updates (extension; also `X-Agent-ID`).
    pub agent_id: Option<String>,
    /// Alias of `agent_id` (extension; also `X-Session-ID`).
    pub session_id: Option<String>,
}

/// Token accounting.
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionUsage {
    /// Prompt tokens, cached ones included.
    pub prompt_tokens: usize,
    /// Generated tokens.
    pub completion_tokens: usize,
    /// Sum of both.
    pub total_tokens: usize,
    /// Details on the prompt.
    pub prompt_tokens_details: PromptTokensDetails,
}

/// Prompt token details.
#[derive(Debug, Serialize, ToSchema)]
pub struct PromptTokensDetails {
    /// Prompt tokens whose KV was reused instead of computed (exact).
    pub cached_tokens: usize,
    /// Where the reused KV came from (extension): `hot` (the agent's live sequence), `warm` (its
    /// state in RAM), `disk` (its file) or `shared_prefix` (another agent's live prefix); null
    /// when nothing was reused.
    #[schema(value_type = Option<String>)]
    pub cache_source: Option<&'static str>,
}

/// The assistant's reply.
#[derive(Debug, Serialize, ToSchema)]
pub struct AssistantMessage {
    /// Always `assistant`.
    pub role: &'static str,
    /// The text; null when the reply is only tool calls.
    pub content: Option<String>,
    /// Tool calls, when the model made any.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<MessageToolCall>,
}

/// One choice of a chat completion.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatChoice {
    /// Always 0.
    pub index: u32,
    /// The reply.
    pub message: AssistantMessage,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop`, `length` or `tool_calls`.
    pub finish_reason: &'static str,
}

/// `POST /v1/chat/completions` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletion {
    /// `chatcmpl-...`.
    pub id: String,
    /// `chat.completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// Exactly one.
    pub choices: Vec<ChatChoice>,
    /// Token accounting.
    pub usage: CompletionUsage,
    /// Where the server's time went (an extension, as llama-server's `timings`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<ServerTimings>,
}

/// Server-side timings of one request (an extension; OpenAI clients ignore it).
#[derive(Debug, Serialize, ToSchema)]
pub struct ServerTimings {
    /// Submission to the first engine step that worked on the request.
    pub queue_ms: f64,
    /// That step to the end of the prompt's prefill (the engine's work on the prompt).
    pub prompt_ms: f64,
    /// Submission to the first generated token.
    pub ttft_ms: f64,
    /// Prompt tokens computed (not reused) per second of prefill.
    pub prompt_per_second: f64,
    /// Generated tokens per second after the first.
    pub predicted_per_second: f64,
}

/// A streamed tool call fragment: the first for an index carries `id`, `type` and the name, the
/// next the arguments.
#[derive(Debug, Serialize, ToSchema)]
pub struct ToolCallDelta {
    /// Which call (0, 1, ...).
    pub index: usize,
    /// `call_...` (first fragment only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `function` (first fragment only).
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<&'static str>,
    /// Name and/or arguments.
    pub function: FunctionDelta,
}

/// Part of a streamed function call.
#[derive(Debug, Serialize, ToSchema)]
pub struct FunctionDelta {
    /// The name (first fragment only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    /// Arguments text to append.
    pub arguments: String,
}

/// What a chunk adds.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct ChunkDelta {
    /// `assistant`, in the first chunk.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    /// Text to append.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
    /// Tool call fragments.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Vec<ToolCallDelta>>,
}

/// One choice of a chunk.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChunkChoice {
    /// Always 0.
    pub index: u32,
    /// What this chunk adds.
    pub delta: ChunkDelta,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// Set on the last content chunk.
    pub finish_reason: Option<&'static str>,
}

/// A `data:` event of a streamed chat completion (then `data: [DONE]`). A failure mid-stream is
/// sent as `data: {"error": {...}}` (the OpenAI error object) followed by `data: [DONE]`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChatCompletionChunk {
    /// Same for every chunk of a response.
    pub id: String,
    /// `chat.completion.chunk`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// One choice, or none in the final usage chunk.
    pub choices: Vec<ChunkChoice>,
    /// Only in the final chunk, with `stream_options.include_usage`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
    /// Only in the final usage chunk: where the server's time went (an extension).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timings: Option<ServerTimings>,
}

/// `prompt` of a legacy completion: a string or a list holding one string.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(untagged)]
pub enum CompletionPrompt {
    /// The prompt.
    Text(String),
    /// A batch; only one prompt per request is supported.
    #[schema(value_type = Vec<String>)]
    Batch(Vec<Value>),
}

/// `POST /v1/completions` body (legacy text completion).
#[derive(Debug, Deserialize, ToSchema)]
pub struct CompletionRequest {
    /// The loaded model's name, `default` or `semantic`; optional.
    pub model: Option<String>,
    /// Raw prompt text (no chat template).
    pub prompt: CompletionPrompt,
    /// Most tokens to generate (default 16).
    pub max_tokens: Option<u64>,
    /// Stream with server-sent events.
    pub stream: Option<bool>,
    /// Streaming options.
    pub stream_options: Option<StreamOptions>,
    /// Only false.
    pub echo: Option<bool>,
    /// Not supported (must be absent).
    pub suffix: Option<String>,
    /// Only 1.
    pub n: Option<u32>,
    /// Only 1.
    pub best_of: Option<u32>,
    /// Extension (as in chat completions): constrain the completion to JSON, or to a JSON Schema.
    pub response_format: Option<ResponseFormat>,
    /// Not supported (must be absent or 0).
    pub logprobs: Option<u32>,
    /// 0-2, default 1.
    pub temperature: Option<f32>,
    /// 0-1.
    pub top_p: Option<f32>,
    /// Extension.
    pub top_k: Option<u32>,
    /// Extension.
    pub min_p: Option<f32>,
    /// Seed.
    pub seed: Option<i64>,
    /// -2 to 2.
    pub presence_penalty: Option<f32>,
    /// -2 to 2.
    pub frequency_penalty: Option<f32>,
    /// Extension.
    pub repetition_penalty: Option<f32>,
    /// Token id to bias.
    pub logit_bias: Option<HashMap<String, f32>>,
    /// Stop strings.
    pub stop: Option<StopField>,
    /// Accepted and ignored.
    pub user: Option<String>,
    /// Agent whose memory this request reuses and updates (extension).
    pub agent_id: Option<String>,
    /// Alias of `agent_id` (extension).
    pub session_id: Option<String>,
}

/// One choice of a text completion (also the shape of a streamed chunk's choice).
#[derive(Debug, Serialize, ToSchema)]
pub struct CompletionChoice {
    /// Generated text.
    pub text: String,
    /// Always 0.
    pub index: u32,
    /// Always null.
    #[schema(value_type = Option<Object>)]
    pub logprobs: Option<Value>,
    /// `stop` or `length` (null in streamed chunks before the last).
    pub finish_reason: Option<&'static str>,
}

/// `POST /v1/completions` response, and each `data:` chunk of a streamed one.
#[derive(Debug, Serialize, ToSchema)]
pub struct TextCompletion {
    /// `cmpl-...`.
    pub id: String,
    /// `text_completion`.
    pub object: &'static str,
    /// Unix seconds.
    pub created: u64,
    /// The model name as requested.
    pub model: String,
    /// One choice (none in the final usage chunk of a stream).
    pub choices: Vec<CompletionChoice>,
    /// Token accounting (streams: only the final chunk, with `include_usage`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<CompletionUsage>,
}

/// One model.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelCard {
    /// The name to use in requests.
    pub id: String,
    /// `model`.
    pub object: &'static str,
    /// Unix seconds when the server started.
    pub created: u64,
    /// `semantic`.
    pub owned_by: &'static str,
    /// Whether this model serves now; the others are in the models directory and an admin can
    /// swap to them (`POST /admin/models/swap`).
    pub loaded: bool,
    /// Registry facts (architecture, context_length, parameters, quantization, size_bytes,
    /// sliding_window, chat_template, fingerprint, aliases) where the server has a registry.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub details: Option<serde_json::Value>,
}

/// `GET /v1/models` response.
#[derive(Debug, Serialize, ToSchema)]
pub struct ModelList {
    /// `list`.
    pub object: &'static str,
    /// The loaded model.
    pub data: Vec<ModelCard>,
}

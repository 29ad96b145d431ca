//! Wire shapes of the OpenAI Responses API (`/v1/responses`): the request, its input items as
//! they become chat messages, and the Response object's parts. The route logic is in
//! `responses.rs`; streaming events in `responses_stream.rs`.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::{json, Map, Value};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::generation::random_id;

/// `POST /v1/responses` body.
#[derive(Debug, Deserialize, ToSchema)]
pub struct CreateResponseRequest {
    /// The loaded model's name, `default` or `semantic`; optional.
    pub model: Option<String>,
    /// A string (one user message) or a list of items: messages (`role` user, system, developer
    /// or assistant; `content` a string or `input_text`/`output_text` parts), `function_call`
    /// and `function_call_output` items.
    pub input: Value,
    /// A system message for this turn (not carried to the next turn).
    pub instructions: Option<String>,
    /// Continue this response's conversation, and its agent memory.
    pub previous_response_id: Option<String>,
    /// Keep the response for `GET /v1/responses/{id}` and `previous_response_id` (default true).
    pub store: Option<bool>,
    /// Most tokens to generate.
    pub max_output_tokens: Option<u64>,
    /// 0-2, default 1; 0 is greedy.
    pub temperature: Option<f32>,
    /// Nucleus sampling, 0-1.
    pub top_p: Option<f32>,
    /// Seed for reproducible sampling (extension).
    pub seed: Option<i64>,
    /// Function tools, flat: `{"type":"function","name","description","parameters"}`.
    #[schema(value_type = Option<Vec<Object>>)]
    pub tools: Option<Vec<Value>>,
    /// `none`, `auto`, `required` or `{"type":"function","name":…}`.
    #[schema(value_type = Option<Object>)]
    pub tool_choice: Option<Value>,
    /// Accepted; several calls in one reply are always allowed.
    pub parallel_tool_calls: Option<bool>,
    /// `{"format": {"type": "text" | "json_object" | "json_schema", …}}`, handled as chat
    /// completions' `response_format`.
    #[schema(value_type = Option<Object>)]
    pub text: Option<Value>,
    /// Up to 16 string pairs, echoed back.
    pub metadata: Option<HashMap<String, String>>,
    /// Stream server-sent events.
    pub stream: Option<bool>,
    /// Accepted and ignored.
    pub user: Option<String>,
}

/// A request's input, as items to list later and as chat messages to render.
#[derive(Debug, Default)]
pub(crate) struct Input {
    /// Items with ids, as `input_items` lists them.
    pub items: Vec<Value>,
    /// The same turn as chat-completions messages.
    pub messages: Vec<Value>,
}

fn bad(param: String, message: impl Into<String>) -> ApiError {
    ApiError::invalid(param, message)
}

/// Text of a content field: a string or a list of `input_text`/`output_text`/`text` parts.
fn content_text(param: &str, content: &Value) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(parts) => {
            let mut text = String::new();
            for (j, part) in parts.iter().enumerate() {
                match (part["type"].as_str(), part["text"].as_str()) {
                    (Some("input_text" | "output_text" | "text"), Some(t)) => text.push_str(t),
                    (kind, _) => {
                        return Err(bad(
                            format!("{param}[{j}]"),
                            format!(
                                "unsupported content part {:?}: only input_text and output_text",
                                kind.unwrap_or("?")
                            ),
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(bad(param.to_owned(), "content must be a string or a list of parts")),
    }
}

/// Appends a tool call to the last message when it is an assistant message, else to a new one.
fn push_call(messages: &mut Vec<Value>, call: Value) {
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == "assistant") {
        if let Some(calls) = last.get_mut("tool_calls").and_then(Value::as_array_mut) {
            calls.push(call);
            return;
        }
        last["tool_calls"] = json!([call]);
        return;
    }
    messages.push(json!({"role": "assistant", "content": null, "tool_calls": [call]}));
}

/// Parses `input` into items (with ids) and chat messages.
pub(crate) fn parse_input(input: &Value) -> Result<Input, ApiError> {
    let mut out = Input::default();
    let list = match input {
        Value::String(text) => vec![json!({"type": "message", "role": "user", "content": text})],
        Value::Array(items) if !items.is_empty() => items.clone(),
        _ => return Err(ApiError::invalid("input", "input must be a string or a non-empty list of items")),
    };
    for (i, item) in list.iter().enumerate() {
        let param = format!("input[{i}]");
        let kind = item["type"].as_str().unwrap_or("message");
        match kind {
            "message" => {
                let role = item["role"].as_str().unwrap_or("");
                if !matches!(role, "user" | "system" | "developer" | "assistant") {
                    return Err(bad(
                        format!("{param}.role"),
                        format!("unknown role {role:?} (expected user, system, developer or assistant)"),
                    ));
                }
                let text = content_text(&format!("{param}.content"), &item["content"])?;
                let part = if role == "assistant" { "output_text" } else { "input_text" };
                let id = item["id"].as_str().map(str::to_owned).unwrap_or_else(|| random_id("msg_"));
                out.items.push(json!({"id": id, "type": "message", "role": role, "status": "completed",
                                      "content": [{"type": part, "text": text}]}));
                out.messages.push(json!({"role": role, "content": text}));
            }
            "function_call" => {
                let (Some(call_id), Some(name)) = (item["call_id"].as_str(), item["name"].as_str()) else {
                    return Err(bad(param, "a function_call item needs call_id and name"));
                };
                let arguments = item["arguments"].as_str().unwrap_or("{}");
                let id = item["id"].as_str().map(str::to_owned).unwrap_or_else(|| random_id("fc_"));
                out.items.push(json!({"id": id, "type": "function_call", "call_id": call_id, "name": name,
                                      "arguments": arguments, "status": "completed"}));
                push_call(
                    &mut out.messages,
                    json!({"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}),
                );
            }
            "function_call_output" => {
                let Some(call_id) = item["call_id"].as_str() else {
                    return Err(bad(format!("{param}.call_id"), "a function_call_output item needs call_id"));
                };
                let output = match &item["output"] {
                    Value::String(s) => s.clone(),
                    Value::Null => return Err(bad(format!("{param}.output"), "a function_call_output needs output")),
                    other => content_text(&format!("{param}.output"), other)?,
                };
                let id = item["id"].as_str().map(str::to_owned).unwrap_or_else(|| random_id("fco_"));
                out.items.push(json!({"id": id, "type": "function_call_output", "call_id": call_id,
                                      "output": output, "status": "completed"}));
                out.messages.push(json!({"role": "tool", "tool_call_id": call_id, "content": output}));
            }
            other => {
                return Err(bad(
                    format!("{param}.type"),
                    format!("unsupported input item {other:?}: only message, function_call and function_call_output"),
                ))
            }
        }
    }
    Ok(out)
}

/// Responses' flat function tools to chat completions' nested ones.
pub(crate) fn chat_tools(tools: &[Value]) -> Result<Vec<Value>, ApiError> {
    tools
        .iter()
        .enumerate()
        .map(|(i, tool)| {
            if tool["type"] != "function" {
                return Err(ApiError::invalid(
                    format!("tools[{i}].type"),
                    format!("unsupported tool type {}: only \"function\"", tool["type"]),
                ));
            }
            let mut function = Map::new();
            for key in ["name", "description", "parameters", "strict"] {
                if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                    function.insert(key.to_owned(), v.clone());
                }
            }
            Ok(json!({"type": "function", "function": function}))
        })
        .collect()
}

/// Responses' `tool_choice` to chat completions'.
pub(crate) fn chat_tool_choice(choice: &Value) -> Value {
    match choice {
        Value::Object(map) if map.get("type").and_then(Value::as_str) == Some("function") => {
            json!({"type": "function", "function": {"name": map.get("name").cloned().unwrap_or(Value::Null)}})
        }
        other => other.clone(),
    }
}

/// `text.format` to chat completions' `response_format` (json_schema's fields move under
/// `json_schema`), so both APIs share one structured-output path.
pub(crate) fn response_format(text: &Value) -> Option<Value> {
    let format = text.get("format")?;
    if format["type"] == "json_schema" {
        let mut inner = format.as_object().cloned().unwrap_or_default();
        inner.remove("type");
        return Some(json!({"type": "json_schema", "json_schema": inner}));
    }
    Some(format.clone())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn items_become_chat_messages() {
        let input = json!([
            {"role": "developer", "content": "Be brief."},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "Weather?"}]},
            {"type": "function_call", "call_id": "call_1", "name": "get_weather", "arguments": "{\"city\":\"Paris\"}"},
            {"type": "function_call_output", "call_id": "call_1", "output": "sunny"},
        ]);
        let parsed = parse_input(&input).expect("valid");
        assert_eq!(parsed.items.len(), 4);
        assert_eq!(parsed.messages[0], json!({"role": "developer", "content": "Be brief."}));
        assert_eq!(parsed.messages[2]["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(parsed.messages[3], json!({"role": "tool", "tool_call_id": "call_1", "content": "sunny"}));
        assert_eq!(parse_input(&json!("Hi")).expect("string").messages, vec![json!({"role": "user", "content": "Hi"})]);
    }

    #[test]
    fn bad_input_names_the_field() {
        for (input, param) in [
            (json!([]), "input"),
            (json!(3), "input"),
            (json!([{"role": "robot", "content": "x"}]), "input[0].role"),
            (json!([{"type": "item_reference", "id": "x"}]), "input[0].type"),
            (json!([{"role": "user", "content": [{"type": "input_image"}]}]), "input[0].content[0]"),
            (json!([{"type": "function_call_output", "output": "x"}]), "input[0].call_id"),
        ] {
            assert_eq!(parse_input(&input).err().and_then(|e| e.param), Some(param.to_owned()), "{input}");
        }
    }

    #[test]
    fn formats_and_tools_map_onto_chat_completions() {
        let schema = json!({"format": {"type": "json_schema", "name": "x", "schema": {"type": "object"}}});
        assert_eq!(
            response_format(&schema),
            Some(json!({"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "object"}}}))
        );
        assert_eq!(response_format(&json!({"format": {"type": "text"}})), Some(json!({"type": "text"})));
        let tools = chat_tools(&[json!({"type": "function", "name": "f", "parameters": {"type": "object"}})]);
        assert_eq!(tools.expect("ok")[0]["function"]["name"], "f");
        assert_eq!(chat_tool_choice(&json!({"type": "function", "name": "f"}))["function"]["name"], "f");
    }
}

//! Offering tools to a model in its own words: which tool-call syntax a chat template teaches
//! ([`ToolSyntax`]) and how a conversation with tools, past calls and their results is shaped for
//! that template ([`ToolPrompting`]). Parsing calls out of generated text lives in `tool_parse.rs`.
//!
//! Templates that render `tools` themselves (Qwen 2.5 / Hermes, Llama 3.x, Mistral) get the tools
//! and messages unchanged. Templates that do not (SmolLM2's plain ChatML, Gemma) would silently
//! drop the tools, so the tools are described in a Hermes-style system block instead, past calls
//! become `<tool_call>` text and results `<tool_response>` user turns: the model is then asked for
//! the Hermes syntax, which the parser reads.

use serde_json::Value;

use crate::{Message, ToolCall};

/// The syntax in which a model family writes tool calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ToolSyntax {
    /// ChatML / Hermes / Qwen: `<tool_call>{"name":..,"arguments":..}</tool_call>`.
    Hermes,
    /// Llama 3.x: a bare `{"name":..,"parameters":..}` object, possibly after `<|python_tag|>`.
    Llama3,
    /// Mistral: `[TOOL_CALLS][{"name":..,"arguments":..}, ...]`.
    Mistral,
}

impl ToolSyntax {
    /// The syntax a template teaches, judged from its source; Hermes when it teaches none (that
    /// is the syntax [`ToolPrompting`] then describes to the model).
    pub fn detect(template_source: &str) -> Self {
        if template_source.contains("<tool_call>") {
            ToolSyntax::Hermes
        } else if template_source.contains("[TOOL_CALLS]") {
            ToolSyntax::Mistral
        } else if template_source.contains("<|python_tag|>") || template_source.contains("ipython") {
            ToolSyntax::Llama3
        } else {
            ToolSyntax::Hermes
        }
    }
}

/// How one forced tool call is written in a [`ToolSyntax`], as text the parser reads back (`tool_parse.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CallFrame {
    /// Text before the call's JSON object.
    pub prefix: &'static str,
    /// The key of the arguments object.
    pub arguments_key: &'static str,
    /// Text after the object.
    pub suffix: &'static str,
}

impl ToolSyntax {
    /// How a constrained decoder should write exactly one call: Hermes inside `<tool_call>` lines, as
    /// [`hermes_system_block`] shows it; Llama 3 as a bare object with `parameters`; Mistral as a one-call JSON
    /// array (its `[TOOL_CALLS]` marker is a control token, which a constraint over text cannot produce; the
    /// parser reads a leading array of calls as calls).
    pub fn call_frame(self) -> CallFrame {
        match self {
            ToolSyntax::Hermes => {
                CallFrame { prefix: "<tool_call>\n", arguments_key: "arguments", suffix: "\n</tool_call>" }
            }
            ToolSyntax::Llama3 => CallFrame { prefix: "", arguments_key: "parameters", suffix: "" },
            ToolSyntax::Mistral => CallFrame { prefix: "[", arguments_key: "arguments", suffix: "]" },
        }
    }
}

/// How one chat template is given tools and tool history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ToolPrompting {
    syntax: ToolSyntax,
    /// The template renders the `tools` variable.
    renders_tools: bool,
    /// The template renders assistant `tool_calls`.
    renders_calls: bool,
    /// The template handles messages with role `tool`.
    renders_tool_role: bool,
}

impl ToolPrompting {
    /// Inspects a template's source.
    pub fn for_template(source: &str) -> Self {
        let renders_tool_role = ["'tool'", "\"tool\"", "ipython", "tool_call_id"].iter().any(|s| source.contains(s));
        ToolPrompting {
            syntax: ToolSyntax::detect(source),
            renders_tools: source.contains("tools"),
            renders_calls: source.contains("tool_calls"),
            renders_tool_role,
        }
    }

    /// The syntax the model is expected to answer in.
    pub fn syntax(&self) -> ToolSyntax {
        self.syntax
    }

    /// Whether the template shows tools itself (otherwise they go into a system block).
    pub fn native(&self) -> bool {
        self.renders_tools
    }

    /// Shapes a conversation for this template. `tools` is the OpenAI-style tools array offered
    /// this turn (None: no tools offered, though the history may still hold calls and results).
    /// Returns the messages and the `tools` value to render with.
    pub fn adapt(&self, mut messages: Vec<Message>, tools: Option<&[Value]>) -> (Vec<Message>, Option<Value>) {
        if self.syntax == ToolSyntax::Mistral {
            mistral_ids(&mut messages);
        }
        if !self.renders_calls {
            for message in messages.iter_mut().filter(|m| !m.tool_calls.is_empty()) {
                let calls = std::mem::take(&mut message.tool_calls);
                message.content = hermes_calls_text(&message.content, &calls);
            }
        }
        if !self.renders_tool_role {
            for message in messages.iter_mut().filter(|m| m.role == "tool") {
                message.role = "user".to_owned();
                message.content = format!("<tool_response>\n{}\n</tool_response>", message.content);
                message.tool_call_id = None;
            }
        }
        let tools = tools.filter(|t| !t.is_empty());
        match tools {
            Some(tools) if self.renders_tools => (messages, Some(Value::Array(tools.to_vec()))),
            Some(tools) => {
                let block = hermes_system_block(tools);
                match messages.first_mut().filter(|m| m.role == "system") {
                    Some(system) => system.content = format!("{}\n\n{block}", system.content),
                    None => messages.insert(0, Message::new("system", block)),
                }
                (messages, None)
            }
            None => (messages, None),
        }
    }
}

/// The Hermes / Qwen 2.5 tool instructions, for templates that do not render tools.
fn hermes_system_block(tools: &[Value]) -> String {
    let mut block = String::from(
        "# Tools\n\nYou may call one or more functions to assist with the user query.\n\n\
         You are provided with function signatures within <tools></tools> XML tags:\n<tools>",
    );
    for tool in tools {
        block.push('\n');
        block.push_str(&tool.to_string());
    }
    block.push_str(
        "\n</tools>\n\nFor each function call, return a json object with function name and arguments \
         within <tool_call></tool_call> XML tags:\n<tool_call>\n{\"name\": <function-name>, \
         \"arguments\": <args-json-object>}\n</tool_call>",
    );
    block
}

/// An assistant turn's text followed by its calls in Hermes syntax.
fn hermes_calls_text(content: &str, calls: &[ToolCall]) -> String {
    let mut text = content.to_owned();
    for call in calls {
        if !text.is_empty() {
            text.push('\n');
        }
        let body = serde_json::json!({"name": call.function.name, "arguments": call.function.arguments});
        text.push_str(&format!("<tool_call>\n{body}\n</tool_call>"));
    }
    text
}

/// Mistral's templates insist on 9-character alphanumeric call ids. Other ids (such as our
/// `call_...`) are mapped to one derived from a hash of the id, the same for a call and the result
/// that answers it, and the same on every request (so prompts stay byte-identical across turns).
fn mistral_ids(messages: &mut [Message]) {
    for message in messages.iter_mut() {
        for call in &mut message.tool_calls {
            call.id = nine_char_id(&call.id);
        }
        if let Some(id) = &mut message.tool_call_id {
            *id = nine_char_id(id);
        }
    }
}

fn nine_char_id(id: &str) -> String {
    if id.len() == 9 && id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return id.to_owned();
    }
    // FNV-1a, stable across runs and platforms.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in id.bytes() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
    }
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    (0..9)
        .map(|_| {
            let c = ALPHABET[(h % ALPHABET.len() as u64) as usize] as char;
            h /= ALPHABET.len() as u64;
            h = h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29);
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ChatTemplate, FunctionCall};
    use serde_json::json;

    const CHATML: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/templates/{name}.jinja", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    fn weather_tool() -> Value {
        json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
               "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}})
    }

    fn history() -> Vec<Message> {
        let mut call = Message::new("assistant", "");
        call.tool_calls.push(ToolCall {
            id: "call_0123456789abcdef01234567".to_owned(),
            kind: "function".to_owned(),
            function: FunctionCall { name: "get_weather".to_owned(), arguments: json!({"city": "Paris"}) },
        });
        let mut result = Message::new("tool", "{\"temp\": 21}");
        result.tool_call_id = Some("call_0123456789abcdef01234567".to_owned());
        vec![Message::new("user", "Weather in Paris?"), call, result]
    }

    #[test]
    fn syntax_follows_the_template_family() {
        for (name, syntax, native) in [
            ("qwen2_5", ToolSyntax::Hermes, true),
            ("llama3_1", ToolSyntax::Llama3, true),
            ("llama3_2", ToolSyntax::Llama3, true),
            ("mistral_v03", ToolSyntax::Mistral, true),
            ("smollm2", ToolSyntax::Hermes, false),
            ("gemma2", ToolSyntax::Hermes, false),
        ] {
            let prompting = ToolPrompting::for_template(&fixture(name));
            assert_eq!((prompting.syntax(), prompting.native()), (syntax, native), "{name}");
        }
    }

    #[test]
    fn plain_chatml_gets_a_hermes_block_and_tool_history_as_text() {
        let prompting = ToolPrompting::for_template(CHATML);
        let (messages, tools) = prompting.adapt(history(), Some(&[weather_tool()]));
        assert_eq!(tools, None);
        let template = ChatTemplate::new(CHATML, "", "").expect("compiles");
        let text = template.render(&messages, None, true).expect("renders");
        assert!(text.starts_with("<|im_start|>system\n# Tools\n"), "{text}");
        assert!(text.contains("<tools>\n{\"type\":\"function\",\"function\":{\"name\":\"get_weather\""), "{text}");
        assert!(
            text.contains("<|im_start|>assistant\n<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}\n</tool_call><|im_end|>"),
            "{text}"
        );
        assert!(
            text.contains("<|im_start|>user\n<tool_response>\n{\"temp\": 21}\n</tool_response><|im_end|>"),
            "{text}"
        );
    }

    #[test]
    fn an_existing_system_message_is_extended_not_replaced() {
        let prompting = ToolPrompting::for_template(CHATML);
        let messages = vec![Message::new("system", "Be brief."), Message::new("user", "Hi")];
        let (messages, _) = prompting.adapt(messages, Some(&[weather_tool()]));
        assert_eq!(messages.len(), 2);
        assert!(messages[0].content.starts_with("Be brief.\n\n# Tools"));
    }

    #[test]
    fn native_templates_render_tools_and_history_themselves() {
        for name in ["qwen2_5", "llama3_1", "llama3_2", "mistral_v03"] {
            let source = fixture(name);
            let prompting = ToolPrompting::for_template(&source);
            let (messages, tools) = prompting.adapt(history(), Some(&[weather_tool()]));
            assert!(tools.is_some(), "{name}");
            let template = ChatTemplate::new(&source, "<s>", "</s>").expect("compiles");
            let text = template.render(&messages, tools.as_ref(), true).unwrap_or_else(|e| panic!("{name}: {e}"));
            assert!(text.contains("get_weather"), "{name}: {text}");
            assert!(text.contains("Paris"), "{name}: {text}");
            assert_eq!(messages[0].role, "user", "{name}: no system block injected");
        }
    }

    #[test]
    fn no_tools_offered_leaves_a_plain_conversation_alone() {
        let prompting = ToolPrompting::for_template(CHATML);
        let messages = vec![Message::new("user", "Hi")];
        assert_eq!(prompting.adapt(messages.clone(), None), (messages.clone(), None));
        assert_eq!(prompting.adapt(messages.clone(), Some(&[])), (messages, None));
    }

    #[test]
    fn mistral_ids_are_nine_alphanumerics_and_stable() {
        let a = nine_char_id("call_0123456789abcdef01234567");
        assert_eq!(a.len(), 9);
        assert!(a.bytes().all(|b| b.is_ascii_alphanumeric()), "{a}");
        assert_eq!(a, nine_char_id("call_0123456789abcdef01234567"));
        assert_ne!(a, nine_char_id("call_0123456789abcdef01234568"));
        assert_eq!(nine_char_id("abcDEF123"), "abcDEF123");
    }

    #[test]
    fn a_call_written_in_each_syntax_frame_parses_back() {
        for syntax in [ToolSyntax::Hermes, ToolSyntax::Llama3, ToolSyntax::Mistral] {
            let f = syntax.call_frame();
            let text = format!(
                "{}{{\"name\":\"get_weather\",\"{}\":{{\"city\":\"Rome\"}}}}{}",
                f.prefix, f.arguments_key, f.suffix
            );
            let parsed = crate::ToolCallParser::parse(vec!["get_weather".to_owned()], &text);
            assert_eq!(parsed.content, "", "{syntax:?}: {text}");
            assert_eq!(parsed.calls.len(), 1, "{syntax:?}: {text}");
            assert_eq!(parsed.calls[0].arguments, json!({"city": "Rome"}), "{syntax:?}");
        }
    }
}

//! Chat templates: compiles a GGUF `tokenizer.chat_template` (Jinja) and renders a conversation
//! into a prompt with the semantics of Hugging Face `apply_chat_template`. It does not tokenize
//! the prompt or parse tool calls out of generated text.
//!
//! What "Hugging Face semantics" means here, mirroring `transformers`' `_compile_jinja_template`:
//! `trim_blocks` and `lstrip_blocks` on, a single trailing newline of the template dropped,
//! jinja2's lenient undefined (a missing key is undefined; an attribute of undefined is an
//! error), loop controls, `raise_exception(msg)`, `strftime_now(fmt)`, a `tojson` that is
//! `json.dumps(ensure_ascii=False)`, Python's string/dict methods (`.strip()`, `.items()`, ...)
//! and Python's way of printing values. The context holds `messages`, `tools` (none when absent),
//! `add_generation_prompt`, `bos_token` and `eos_token`.

use std::borrow::Cow;
use std::time::SystemTime;

use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior, Value};
use serde::{Deserialize, Serialize};

use crate::{clock, python, ChatError};

/// The name the one template is stored under inside its environment.
const TEMPLATE_NAME: &str = "chat_template";

/// One chat message as the template sees it (Hugging Face `messages` entries).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    /// `system`, `user`, `assistant` or `tool` (templates may know others, such as `ipython`).
    pub role: String,
    /// The text of the message; empty for an assistant turn that only calls tools.
    pub content: String,
    /// The name of the author or, for a tool result, of the tool.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub name: Option<String>,
    /// For a tool result: the id of the call it answers.
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub tool_call_id: Option<String>,
    /// For an assistant turn: the tools it called. Absent from the template when empty, so
    /// `'tool_calls' in message` and `message.tool_calls is defined` are false.
    #[serde(skip_serializing_if = "Vec::is_empty", default)]
    pub tool_calls: Vec<ToolCall>,
}

impl Message {
    /// A message with only a role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> Self {
        Message { role: role.into(), content: content.into(), name: None, tool_call_id: None, tool_calls: Vec::new() }
    }
}

/// One tool call made by the assistant (OpenAI shape).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    /// The call's id, echoed by the tool result's `tool_call_id`.
    pub id: String,
    /// Always `"function"`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Which function, with which arguments.
    pub function: FunctionCall,
}

/// The function half of a [`ToolCall`].
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionCall {
    /// The function's name.
    pub name: String,
    /// The arguments as a JSON object (not a string), so templates can iterate them or
    /// `tojson` them, as Llama 3 and Hermes-style templates do.
    pub arguments: serde_json::Value,
}

/// A compiled chat template, ready to render conversations. Cheap to share across threads.
pub struct ChatTemplate {
    env: Environment<'static>,
    source: String,
    bos_token: String,
    eos_token: String,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .field("source_len", &self.source.len())
            .finish_non_exhaustive()
    }
}

impl ChatTemplate {
    /// Compile a GGUF `tokenizer.chat_template` (Jinja) with Hugging Face semantics.
    ///
    /// `bos_token` and `eos_token` are the texts of the model's BOS and EOS tokens, which many
    /// templates print. `strftime_now` reads the system clock (UTC) unless [`Self::with_now`]
    /// pins it.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<Self, ChatError> {
        let mut env = Environment::new();
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_auto_escape_callback(|_| AutoEscape::None);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.set_formatter(python::formatter);
        env.add_filter("tojson", python::tojson);
        env.add_filter("string", python::string);
        env.add_function("raise_exception", raise_exception);
        set_clock(&mut env, None);
        env.add_template_owned(TEMPLATE_NAME, rewrite_generation_tags(source).into_owned()).map_err(template_error)?;
        Ok(ChatTemplate {
            env,
            source: source.to_owned(),
            bos_token: bos_token.to_owned(),
            eos_token: eos_token.to_owned(),
        })
    }

    /// Pin the moment `strftime_now` formats, instead of the system clock; for reproducible
    /// prompts and tests.
    pub fn with_now(mut self, now: SystemTime) -> Self {
        set_clock(&mut self.env, Some(now));
        self
    }

    /// Render; `tools` is the OpenAI-style tools array (list of
    /// `{"type":"function","function":{...}}`) or None.
    ///
    /// `tools` is passed through as given (an empty array stays an empty array), as
    /// `transformers` does. Errors carry `raise_exception`'s message verbatim.
    pub fn render(
        &self,
        messages: &[Message],
        tools: Option<&serde_json::Value>,
        add_generation_prompt: bool,
    ) -> Result<String, ChatError> {
        let template = self.env.get_template(TEMPLATE_NAME).map_err(template_error)?;
        let tools = tools.map_or(Value::from(()), Value::from_serialize);
        let ctx = minijinja::context! {
            messages => Value::from_serialize(messages),
            tools => tools,
            add_generation_prompt => add_generation_prompt,
            bos_token => &self.bos_token,
            eos_token => &self.eos_token,
        };
        template.render(ctx).map_err(template_error)
    }

    /// The template text as given to [`Self::new`].
    pub fn source(&self) -> &str {
        &self.source
    }
}

/// Registers `strftime_now`, reading `now` or, when it is None, the system clock.
fn set_clock(env: &mut Environment<'static>, now: Option<SystemTime>) {
    env.add_function("strftime_now", move |format: &str| clock::strftime(now.unwrap_or_else(SystemTime::now), format));
}

/// Marks an error as the template's own `raise_exception`, so its message survives verbatim.
#[derive(Debug)]
struct Raised(String);

impl std::fmt::Display for Raised {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Raised {}

fn raise_exception(message: Value) -> Result<Value, minijinja::Error> {
    let message = message.to_string();
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message.clone()).with_source(Raised(message)))
}

fn template_error(err: minijinja::Error) -> ChatError {
    let mut source = std::error::Error::source(&err);
    while let Some(cause) = source {
        if let Some(Raised(message)) = cause.downcast_ref::<Raised>() {
            return ChatError::Template { message: message.clone() };
        }
        source = cause.source();
    }
    ChatError::Template { message: err.to_string() }
}

/// `transformers` adds a `{% generation %}...{% endgeneration %}` block tag (it marks assistant
/// text for training masks and renders its body unchanged). minijinja has no such tag, so the
/// tags become `{% if true %}` / `{% endif %}`, keeping any whitespace-control markers.
fn rewrite_generation_tags(source: &str) -> Cow<'_, str> {
    if !source.contains("generation") {
        return Cow::Borrowed(source);
    }
    let mut out = String::with_capacity(source.len());
    let mut rest = source;
    while let Some(start) = rest.find("{%") {
        let (before, tag) = rest.split_at(start);
        out.push_str(before);
        let body = &tag[2..];
        let marker_len = usize::from(body.starts_with(['-', '+']));
        let (marker, after_marker) = body.split_at(marker_len);
        let trimmed = after_marker.trim_start_matches([' ', '\t', '\n', '\r']);
        let word_len = trimmed.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(trimmed.len());
        let replacement = match &trimmed[..word_len] {
            "generation" => Some("if true"),
            "endgeneration" => Some("endif"),
            _ => None,
        };
        match replacement {
            Some(replacement) => {
                out.push_str("{%");
                out.push_str(marker);
                out.push(' ');
                out.push_str(replacement);
                rest = &trimmed[word_len..];
            }
            None => {
                out.push_str("{%");
                rest = body;
            }
        }
    }
    out.push_str(rest);
    Cow::Owned(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::{Duration, UNIX_EPOCH};

    fn render(source: &str, messages: &[Message]) -> Result<String, ChatError> {
        ChatTemplate::new(source, "<s>", "</s>")?
            .with_now(UNIX_EPOCH + Duration::from_secs(1_741_503_903))
            .render(messages, None, true)
    }

    /// Renders `source` over a user turn "Hi" and compares; expected outputs follow jinja2.
    fn check(source: &str, expected: &str) {
        let got = render(source, &[Message::new("user", "Hi")]);
        assert_eq!(got.as_deref(), Ok(expected), "{source}");
    }

    fn check_err(source: &str, expected_message: &str) {
        let got = render(source, &[Message::new("user", "Hi")]);
        match got {
            Err(ChatError::Template { message }) => {
                assert!(message.contains(expected_message), "{source}: {message}")
            }
            Ok(text) => panic!("{source}: rendered {text:?}, expected an error"),
        }
    }

    #[test]
    fn hugging_face_environment() {
        check("{{ bos_token }}|{{ eos_token }}|{{ add_generation_prompt }}", "<s>|</s>|True");
        check("{{ messages[0].role }}:{{ messages[0]['content'] }}", "user:Hi");
        check("{% if true %}\n  a\n  {% endif %}\nb", "  a\nb");
        check("x\n", "x");
        check("{{ tools is none }} {{ tools is defined }}", "True True");
        check("{{ messages[0].name is defined }}{{ 'tool_calls' in messages[0] }}", "FalseFalse");
        check("[{{ messages[0].missing }}]", "[]");
        check("{{ strftime_now('%d %b %Y') }}", "09 Mar 2025");
        check("{{ '  Hi  '.strip() }}{{ 'a,b'.split(',') }}", "Hi['a', 'b']");
        check("{% for k, v in {'a': 1}.items() %}{{ k }}={{ v }}{% endfor %}", "a=1");
        check("{{ 'x'.startswith('x') }}", "True");
        check("{{ {'k': 'é<>'} | tojson }}", "{\"k\": \"é<>\"}");
        check("{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{{ i }}{% endfor %}", "012");
        check(
            "{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}",
            "1",
        );
        check("{% for x in [1, 2] %}{{ loop.previtem is defined }}{% endfor %}", "FalseTrue");
        check("{{ '<html>' }}", "<html>");
        check("a{%- generation -%}  b  {%- endgeneration -%}c", "abc");
        check("{% generation %}gen{% endgeneration %}", "gen");
    }

    #[test]
    fn errors_carry_context() {
        check_err("{{ raise_exception('System role not supported') }}", "System role not supported");
        check_err("{{ messages[0].missing.deeper }}", "undefined");
        check_err("{% if %}", "syntax error");
        check_err("{{ 'a'.nope() }}", "nope");
        let raised = render("{{ raise_exception('exactly this') }}", &[]);
        assert_eq!(raised, Err(ChatError::Template { message: "exactly this".to_owned() }));
    }

    #[test]
    fn tools_and_tool_calls_reach_the_template() {
        let source = "{% for t in tools %}{{ t.function.name }}{% endfor %}|\
            {% for m in messages %}{% for c in m.tool_calls %}{{ c.id }} {{ c.type }} \
            {{ c.function.arguments | tojson }}{% for k, v in c.function.arguments | items %} {{ k }}={{ v }}{% endfor %}\
            {% endfor %}{% endfor %}";
        let template = ChatTemplate::new(source, "", "").expect("compiles");
        let mut call = Message::new("assistant", "");
        call.tool_calls.push(ToolCall {
            id: "abc123def".to_owned(),
            kind: "function".to_owned(),
            function: FunctionCall { name: "get_weather".to_owned(), arguments: json!({"city": "Paris", "days": 2}) },
        });
        let tools = json!([{"type": "function", "function": {"name": "get_weather"}}]);
        let got = template.render(&[call], Some(&tools), false);
        assert_eq!(
            got.as_deref(),
            Ok("get_weather|abc123def function {\"city\": \"Paris\", \"days\": 2} city=Paris days=2")
        );
    }

    #[test]
    fn shared_across_threads_and_reads_the_system_clock() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<ChatTemplate>();
        let template = ChatTemplate::new("{{ strftime_now('%Y') }}", "", "").expect("compiles");
        let year: Result<u32, _> = template.render(&[], None, false).map(|y| y.parse().unwrap_or(0));
        assert!(year.as_ref().is_ok_and(|y| *y >= 2025), "{year:?}");
    }

    #[test]
    fn message_json_shape() {
        let m = Message::new("user", "Hi");
        assert_eq!(serde_json::to_value(&m).ok(), Some(json!({"role": "user", "content": "Hi"})));
        let parsed: Result<Message, _> = serde_json::from_value(json!({
            "role": "assistant", "content": "",
            "tool_calls": [{"id": "1", "type": "function", "function": {"name": "f", "arguments": {}}}]
        }));
        assert_eq!(parsed.map(|m| m.tool_calls[0].kind.clone()).ok().as_deref(), Some("function"));
    }

    #[test]
    fn generation_tags_are_rewritten_only_as_tags() {
        for (input, expected) in [
            ("no tags", "no tags"),
            ("{% generation %}", "{% if true %}"),
            ("{%- generation -%}", "{%- if true -%}"),
            ("{%+ endgeneration %}", "{%+ endif %}"),
            ("{% generations %}", "{% generations %}"),
            ("{{ 'generation' }}{% if x %}", "{{ 'generation' }}{% if x %}"),
            ("{%", "{%"),
        ] {
            assert_eq!(rewrite_generation_tags(input), expected, "{input}");
        }
    }
}

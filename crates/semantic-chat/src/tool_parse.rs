//! Tool calls read out of generated text, whole or while it streams ([`ToolCallParser`]). Reads
//! every family's syntax (see [`crate::ToolSyntax`]) plus a JSON fallback, whatever the template:
//!
//! - `<tool_call>{json}</tool_call>` anywhere in the text (Hermes, Qwen, ChatML models we prompt);
//! - `<|python_tag|>` or `[TOOL_CALLS]` followed by JSON up to the end (Llama 3.1, Mistral, when the
//!   marker is rendered as text at all: as control tokens they usually are not);
//! - JSON at the very start of the reply (after whitespace, optionally in a Markdown fence): an
//!   object, an array of objects, or several objects separated by `;` or newlines.
//!
//! A JSON value is a call when it names an offered tool: `{"name", "arguments"|"parameters"|"input"}`,
//! or that wrapped as `{"function": ..}`, `{"function_call": ..}`, `{"tool_use": ..}` or
//! `{"tool_calls": [..]}`. Arguments given as a JSON string are decoded; they must be an object.
//! Anything that does not parse as a call stays text, so a reply is never lost. Making the model
//! produce a call is the constraint's job (`ToolSyntax::call_frame` says what it writes).

use serde_json::{Map, Value};

/// One tool call found in generated text.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedToolCall {
    /// The function's name (one of the offered tools).
    pub name: String,
    /// The arguments object.
    pub arguments: Value,
}

/// What the parser releases, in order.
#[derive(Debug, Clone, PartialEq)]
pub enum ToolEvent {
    /// Ordinary reply text.
    Text(String),
    /// A complete call.
    Call(ParsedToolCall),
}

/// A whole reply split into text and calls.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ParsedOutput {
    /// The text outside calls.
    pub content: String,
    /// The calls, in order.
    pub calls: Vec<ParsedToolCall>,
}

const OPEN: &str = "<tool_call>";
const CLOSE: &str = "</tool_call>";
/// Markers after which the rest of the reply is JSON calls.
const TAIL_MARKERS: [&str; 2] = ["<|python_tag|>", "[TOOL_CALLS]"];
/// What a reply that starts with calls may start with (besides `{` and `[`).
const START_MARKERS: [&str; 4] = [OPEN, TAIL_MARKERS[0], TAIL_MARKERS[1], "```"];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Nothing but whitespace seen since the start or the last call.
    Start,
    /// Plain text; watching for `<tool_call>` and the tail markers.
    Text,
    /// Inside `<tool_call>`, waiting for `</tool_call>`.
    Tagged,
    /// JSON calls up to the end of the reply.
    Tail,
}

/// Splits streamed text into text and tool calls. Text that may still turn out to be a call is
/// held back: a possible marker at the end of the text, a `<tool_call>` until it closes, JSON at
/// the start until the reply ends.
#[derive(Debug)]
pub struct ToolCallParser {
    known: Vec<String>,
    mode: Mode,
    buf: String,
    /// In `Tail` mode: the marker text that opened it, given back if the JSON is not a call.
    tail_marker: String,
}

impl ToolCallParser {
    /// A parser accepting calls to the `known` tool names (all names when empty).
    pub fn new(known: Vec<String>) -> Self {
        ToolCallParser { known, mode: Mode::Start, buf: String::new(), tail_marker: String::new() }
    }

    /// Parses a whole reply.
    pub fn parse(known: Vec<String>, text: &str) -> ParsedOutput {
        let mut parser = Self::new(known);
        let mut events = parser.push(text);
        events.extend(parser.finish());
        let mut out = ParsedOutput::default();
        for event in events {
            match event {
                ToolEvent::Text(t) => out.content.push_str(&t),
                ToolEvent::Call(c) => out.calls.push(c),
            }
        }
        out
    }

    /// Feeds newly generated text; returns what can be released now.
    pub fn push(&mut self, text: &str) -> Vec<ToolEvent> {
        self.buf.push_str(text);
        let mut out = Vec::new();
        loop {
            let progressed = match self.mode {
                Mode::Start => self.step_start(),
                Mode::Text => self.step_text(&mut out),
                Mode::Tagged => self.step_tagged(&mut out),
                Mode::Tail => false,
            };
            if !progressed {
                return merge_text(out);
            }
        }
    }

    /// The reply ended: releases everything held back.
    pub fn finish(&mut self) -> Vec<ToolEvent> {
        let buf = std::mem::take(&mut self.buf);
        let mut out = Vec::new();
        match self.mode {
            Mode::Start | Mode::Text => {
                if !buf.trim().is_empty() || self.mode == Mode::Text {
                    out.push(ToolEvent::Text(buf));
                }
            }
            Mode::Tagged => match self.calls_in(&buf, false) {
                Some((calls, rest)) if rest.trim().is_empty() => out.extend(calls.into_iter().map(ToolEvent::Call)),
                _ => out.push(ToolEvent::Text(format!("{OPEN}{buf}"))),
            },
            Mode::Tail => match self.calls_in(&buf, true) {
                Some((calls, rest)) => {
                    out.extend(calls.into_iter().map(ToolEvent::Call));
                    if !rest.trim().is_empty() {
                        out.push(ToolEvent::Text(rest.trim().to_owned()));
                    }
                }
                None => out.push(ToolEvent::Text(format!("{}{buf}", self.tail_marker))),
            },
        }
        self.mode = Mode::Start;
        self.tail_marker.clear();
        merge_text(out)
    }

    /// Decides what a reply (or the text after a call) starts with. Returns whether it moved on.
    fn step_start(&mut self) -> bool {
        let trimmed = self.buf.trim_start();
        if trimmed.is_empty() {
            return false;
        }
        let lead = self.buf.len() - trimmed.len();
        if trimmed.starts_with(OPEN) {
            self.buf.drain(..lead + OPEN.len());
            self.mode = Mode::Tagged;
            return true;
        }
        for marker in TAIL_MARKERS {
            if trimmed.starts_with(marker) {
                self.tail_marker = self.buf[..lead + marker.len()].to_owned();
                self.buf.drain(..lead + marker.len());
                self.mode = Mode::Tail;
                return true;
            }
        }
        if trimmed.starts_with("```") {
            self.mode = Mode::Tail;
            return true;
        }
        if START_MARKERS.iter().any(|m| m.len() > trimmed.len() && m.starts_with(trimmed)) {
            return false; // could still become a marker
        }
        if trimmed.starts_with(['{', '[']) {
            self.mode = Mode::Tail;
            return true;
        }
        self.mode = Mode::Text;
        true
    }

    /// Releases text up to the next marker (or up to a possible partial marker at the end).
    fn step_text(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        let markers = [OPEN, TAIL_MARKERS[0], TAIL_MARKERS[1]];
        let found = markers.iter().filter_map(|m| self.buf.find(m).map(|at| (at, *m))).min();
        match found {
            Some((at, marker)) => {
                let text: String = self.buf.drain(..at).collect();
                if !text.is_empty() {
                    out.push(ToolEvent::Text(text));
                }
                if marker == OPEN {
                    self.buf.drain(..OPEN.len());
                    self.mode = Mode::Tagged;
                } else {
                    self.tail_marker = self.buf.drain(..marker.len()).collect();
                    self.mode = Mode::Tail;
                }
                true
            }
            None => {
                let keep = partial_marker_start(&self.buf, &markers);
                let text: String = self.buf.drain(..keep).collect();
                if !text.is_empty() {
                    out.push(ToolEvent::Text(text));
                }
                false
            }
        }
    }

    /// Completes a `<tool_call>` once `</tool_call>` arrives.
    fn step_tagged(&mut self, out: &mut Vec<ToolEvent>) -> bool {
        let Some(at) = self.buf.find(CLOSE) else { return false };
        let inner: String = self.buf.drain(..at).collect();
        self.buf.drain(..CLOSE.len());
        match self.calls_in(&inner, false) {
            Some((calls, rest)) if rest.trim().is_empty() => {
                out.extend(calls.into_iter().map(ToolEvent::Call));
                self.mode = Mode::Start;
            }
            _ => {
                out.push(ToolEvent::Text(format!("{OPEN}{inner}{CLOSE}")));
                self.mode = Mode::Text;
            }
        }
        true
    }

    /// The calls at the start of `text` and the text after them; None when the first value is not
    /// a call. With `fenced`, a Markdown code fence around the JSON is allowed.
    fn calls_in<'a>(&self, text: &'a str, fenced: bool) -> Option<(Vec<ParsedToolCall>, &'a str)> {
        let mut body = text.trim_start();
        let mut fence = false;
        if fenced {
            if let Some(rest) = body.strip_prefix("```") {
                let line_end = rest.find('\n')?;
                let lang = rest[..line_end].trim();
                if !(lang.is_empty() || lang.eq_ignore_ascii_case("json")) {
                    return None;
                }
                body = &rest[line_end + 1..];
                fence = true;
            }
        }
        let mut calls = Vec::new();
        let mut rest = body;
        loop {
            let trimmed = rest.trim_start_matches(|c: char| c.is_whitespace() || c == ';' || c == ',');
            if !trimmed.starts_with(['{', '[']) {
                break;
            }
            let mut values = serde_json::Deserializer::from_str(trimmed).into_iter::<Value>();
            let value = match values.next() {
                Some(Ok(value)) => value,
                _ => break,
            };
            let consumed = values.byte_offset();
            match self.value_calls(value) {
                Some(found) => calls.extend(found),
                None => break,
            }
            rest = &trimmed[consumed..];
        }
        if calls.is_empty() {
            return None;
        }
        if fence {
            rest = rest.trim_start().strip_prefix("```")?;
        }
        Some((calls, rest))
    }

    /// The calls one JSON value stands for, or None if it is not (only) calls.
    fn value_calls(&self, value: Value) -> Option<Vec<ParsedToolCall>> {
        match value {
            Value::Array(items) if !items.is_empty() => {
                items.into_iter().map(|v| self.value_calls(v)).collect::<Option<Vec<_>>>().map(|v| v.concat())
            }
            Value::Object(mut map) => {
                if map.len() <= 2 {
                    for key in ["function_call", "tool_use", "function"] {
                        if let Some(inner @ Value::Object(_)) = map.remove(key) {
                            if map.keys().all(|k| k == "type" || k == "id") {
                                return self.value_calls(inner);
                            }
                            return None;
                        }
                    }
                    if let Some(inner @ Value::Array(_)) = map.remove("tool_calls") {
                        return if map.is_empty() { self.value_calls(inner) } else { None };
                    }
                }
                self.object_call(map).map(|c| vec![c])
            }
            _ => None,
        }
    }

    fn object_call(&self, mut map: Map<String, Value>) -> Option<ParsedToolCall> {
        let Value::String(name) = map.remove("name")? else { return None };
        if !self.known.is_empty() && !self.known.contains(&name) {
            return None;
        }
        let arguments = ["arguments", "parameters", "input"].iter().find_map(|k| map.remove(*k));
        let arguments = match arguments {
            None | Some(Value::Null) => Value::Object(Map::new()),
            Some(Value::String(s)) if s.trim().is_empty() => Value::Object(Map::new()),
            Some(Value::String(s)) => serde_json::from_str::<Value>(&s).ok().filter(Value::is_object)?,
            Some(v @ Value::Object(_)) => v,
            Some(_) => return None,
        };
        Some(ParsedToolCall { name, arguments })
    }
}

/// Where the longest suffix of `buf` that is a proper prefix of a marker begins.
fn partial_marker_start(buf: &str, markers: &[&str]) -> usize {
    let longest = markers.iter().map(|m| m.len()).max().unwrap_or(0);
    let from = buf.len().saturating_sub(longest.saturating_sub(1));
    (from..buf.len())
        .filter(|&i| buf.is_char_boundary(i))
        .find(|&i| markers.iter().any(|m| m.starts_with(&buf[i..])))
        .unwrap_or(buf.len())
}

/// Joins neighbouring text events.
fn merge_text(events: Vec<ToolEvent>) -> Vec<ToolEvent> {
    let mut out: Vec<ToolEvent> = Vec::with_capacity(events.len());
    for event in events {
        match (out.last_mut(), event) {
            (_, ToolEvent::Text(t)) if t.is_empty() => {}
            (Some(ToolEvent::Text(prev)), ToolEvent::Text(t)) => prev.push_str(&t),
            (_, event) => out.push(event),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn known() -> Vec<String> {
        vec!["get_weather".to_owned(), "search".to_owned()]
    }

    fn call(name: &str, arguments: Value) -> ParsedToolCall {
        ParsedToolCall { name: name.to_owned(), arguments }
    }

    /// Parses `text` whole and fed one character at a time; both must give `content` and `calls`.
    fn check(text: &str, content: &str, calls: &[ParsedToolCall]) {
        let whole = ToolCallParser::parse(known(), text);
        assert_eq!(whole.content, content, "content of {text:?}");
        assert_eq!(whole.calls, calls, "calls of {text:?}");
        let mut parser = ToolCallParser::new(known());
        let mut events = Vec::new();
        for ch in text.chars() {
            events.extend(parser.push(&ch.to_string()));
        }
        events.extend(parser.finish());
        let mut streamed = ParsedOutput::default();
        for event in events {
            match event {
                ToolEvent::Text(t) => streamed.content.push_str(&t),
                ToolEvent::Call(c) => streamed.calls.push(c),
            }
        }
        assert_eq!(streamed, whole, "streamed {text:?}");
    }

    #[test]
    fn every_family_syntax_and_the_json_fallback() {
        let paris = || call("get_weather", json!({"city": "Paris"}));
        let cases: &[(&str, &str, Vec<ParsedToolCall>)] = &[
            ("Hello there", "Hello there", vec![]),
            ("", "", vec![]),
            ("<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "", vec![paris()]),
            ("  <tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>\n", "", vec![paris()]),
            ("Let me look.\n<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>", "Let me look.\n", vec![paris()]),
            (
                "<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}</tool_call>\n<tool_call>{\"name\":\"search\",\"arguments\":{\"q\":\"x\"}}</tool_call>",
                "",
                vec![paris(), call("search", json!({"q": "x"}))],
            ),
            ("<tool_call>{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Paris\"}}", "", vec![paris()]),
            ("<tool_call>not json</tool_call> ok", "<tool_call>not json</tool_call> ok", vec![]),
            ("<tool_call>{\"name\":\"unknown\",\"arguments\":{}}</tool_call>", "<tool_call>{\"name\":\"unknown\",\"arguments\":{}}</tool_call>", vec![]),
            ("<tool_call>{\"name\":\"get_weather\",\"arguments\":\"{\\\"city\\\": \\\"Paris\\\"}\"}</tool_call>", "", vec![paris()]),
            ("{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", vec![paris()]),
            ("<|python_tag|>{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}", "", vec![paris()]),
            (
                "{\"name\": \"get_weather\", \"parameters\": {\"city\": \"Paris\"}}; {\"name\": \"search\", \"parameters\": {}}",
                "",
                vec![paris(), call("search", json!({}))],
            ),
            ("[TOOL_CALLS] [{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}]", "", vec![paris()]),
            ("[{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}, \"id\": \"abcdefghi\"}]", "", vec![paris()]),
            ("```json\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n```", "", vec![paris()]),
            ("{\"function_call\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}", "", vec![paris()]),
            ("{\"tool_use\": {\"name\": \"get_weather\", \"input\": {\"city\": \"Paris\"}}}", "", vec![paris()]),
            ("{\"type\": \"function\", \"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}", "", vec![paris()]),
            ("{\"tool_calls\": [{\"function\": {\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}}]}", "", vec![paris()]),
            ("{\"answer\": 42}", "{\"answer\": 42}", vec![]),
            ("{\"name\": \"get_weather\", \"arguments\": [1]}", "{\"name\": \"get_weather\", \"arguments\": [1]}", vec![]),
            ("{\"name\": \"get_weather\", \"arguments\": {\"city\"", "{\"name\": \"get_weather\", \"arguments\": {\"city\"", vec![]),
            ("[1, 2, 3]", "[1, 2, 3]", vec![]),
            ("The JSON {\"name\": \"get_weather\"} is mid-text", "The JSON {\"name\": \"get_weather\"} is mid-text", vec![]),
            ("{\"name\": \"search\"} and then prose", "and then prose", vec![call("search", json!({}))]),
            ("a < b and [x]", "a < b and [x]", vec![]),
            ("<tool", "<tool", vec![]),
            ("   ", "", vec![]),
            ("```python\nprint(1)\n```", "```python\nprint(1)\n```", vec![]),
            ("héllo <tool_call>{\"name\":\"search\",\"arguments\":{\"q\":\"é\"}}</tool_call> ünd", "héllo  ünd", vec![call("search", json!({"q": "é"}))]),
        ];
        for (text, content, calls) in cases {
            check(text, content, calls);
        }
    }

    #[test]
    fn text_is_released_before_the_reply_ends() {
        let mut parser = ToolCallParser::new(known());
        assert_eq!(parser.push("Sure"), vec![ToolEvent::Text("Sure".into())]);
        assert_eq!(parser.push(", one moment <tool"), vec![ToolEvent::Text(", one moment ".into())]);
        assert_eq!(parser.push("_call>{\"name\":\"search\","), vec![]);
        assert_eq!(
            parser.push("\"arguments\":{}}</tool_call>"),
            vec![ToolEvent::Call(call("search", json!({})))],
            "a call is released as soon as it closes"
        );
        assert_eq!(parser.finish(), vec![]);
    }

    #[test]
    fn without_known_names_any_name_is_a_call() {
        let out = ToolCallParser::parse(vec![], "<tool_call>{\"name\":\"anything\",\"arguments\":{}}</tool_call>");
        assert_eq!(out.calls, vec![call("anything", json!({}))]);
    }
}

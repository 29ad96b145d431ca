//! Property tests (issue 19's fuzzing where cargo-fuzz cannot run in CI: it needs a nightly
//! toolchain): the streaming parsers give the same answer however their input is split, and
//! nothing a client or a model sends makes them panic. Cases per property: `PROPTEST_CASES`
//! (256 by default; `scripts/reliability` runs more).

use proptest::prelude::*;
use semantic_chat::{ChatTemplate, Message, StopMatcher, ToolCallParser, ToolEvent, Utf8Stream};

/// Splits `items` at `cuts` (positions taken modulo the length), in order.
fn split<T: Clone>(items: &[T], cuts: &[usize]) -> Vec<Vec<T>> {
    let mut points: Vec<usize> =
        cuts.iter().map(|c| if items.is_empty() { 0 } else { c % (items.len() + 1) }).collect();
    points.push(0);
    points.push(items.len());
    points.sort_unstable();
    points.windows(2).map(|w| items[w[0]..w[1]].to_vec()).collect()
}

/// Splits text at char boundaries.
fn split_text(text: &str, cuts: &[usize]) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    split(&chars, cuts).into_iter().map(|c| c.into_iter().collect()).collect()
}

/// Text rich in the characters the parsers care about: markers, braces, quotes, multi-byte.
fn hostile_text() -> impl Strategy<Value = String> {
    let pieces = prop_oneof![
        Just("<tool_call>".to_string()),
        Just("</tool_call>".to_string()),
        Just("<|python_tag|>".to_string()),
        Just("[TOOL_CALLS]".to_string()),
        Just("```".to_string()),
        Just("{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}".to_string()),
        Just("[{\"name\": \"f\", \"arguments\": {}}]".to_string()),
        Just("{".to_string()),
        Just("}".to_string()),
        Just("\"".to_string()),
        Just("\\".to_string()),
        Just("é€😀".to_string()),
        Just(" ".to_string()),
        Just("\n".to_string()),
        "[a-z]{0,6}",
        any::<String>().prop_map(|s| s.chars().take(8).collect()),
    ];
    prop::collection::vec(pieces, 0..24).prop_map(|v| v.concat())
}

fn tool_events(known: &[String], chunks: &[String]) -> (String, Vec<(String, serde_json::Value)>) {
    let mut parser = ToolCallParser::new(known.to_vec());
    let mut events = Vec::new();
    for chunk in chunks {
        events.extend(parser.push(chunk));
    }
    events.extend(parser.finish());
    let mut text = String::new();
    let mut calls = Vec::new();
    for event in events {
        match event {
            ToolEvent::Text(t) => text.push_str(&t),
            ToolEvent::Call(c) => calls.push((c.name, c.arguments)),
        }
    }
    (text, calls)
}

proptest! {
    #[test]
    fn utf8_stream_equals_lossy_decoding_however_split(
        bytes in prop::collection::vec(any::<u8>(), 0..64),
        extra in prop::collection::vec(prop_oneof![Just(0xE2u8), Just(0x82), Just(0xAC), Just(0xF0), Just(0x9F)], 0..8),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let mut all = bytes;
        all.extend(extra);
        let mut stream = Utf8Stream::new();
        let mut out = String::new();
        for piece in split(&all, &cuts) {
            out.push_str(&stream.push(&piece));
        }
        out.push_str(&stream.finish());
        prop_assert_eq!(out, String::from_utf8_lossy(&all).into_owned());
    }

    #[test]
    fn one_stop_string_cuts_at_its_first_occurrence_however_split(
        text in "[ab\\n]{0,40}",
        stop in "[ab\\n]{1,4}",
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut matcher = StopMatcher::new(vec![stop.clone()]);
        let mut out = String::new();
        let mut stopped = false;
        for chunk in split_text(&text, &cuts) {
            let step = matcher.push(&chunk);
            out.push_str(&step.emit);
            stopped |= step.stopped.is_some();
        }
        out.push_str(&matcher.finish());
        let want = text.find(&stop).map_or(text.as_str(), |at| &text[..at]);
        prop_assert_eq!(out.as_str(), want);
        prop_assert_eq!(stopped, text.contains(&stop));
    }

    #[test]
    fn stop_strings_never_leak_and_emit_a_prefix(
        text in hostile_text(),
        stops in prop::collection::vec("[<>a-z{}é]{0,5}", 0..4),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let mut matcher = StopMatcher::new(stops.clone());
        let mut out = String::new();
        for chunk in split_text(&text, &cuts) {
            out.push_str(&matcher.push(&chunk).emit);
        }
        out.push_str(&matcher.finish());
        prop_assert!(text.starts_with(&out), "{:?} is not a prefix of {:?}", out, text);
        for stop in stops.iter().filter(|s| !s.is_empty()) {
            prop_assert!(!out.contains(stop.as_str()), "{:?} leaked in {:?}", stop, out);
        }
        if stops.iter().all(|s| s.is_empty() || !text.contains(s.as_str())) {
            prop_assert_eq!(out, text);
        }
    }

    #[test]
    fn tool_call_parser_gives_the_same_answer_however_split(
        text in hostile_text(),
        known in prop::collection::vec(prop_oneof![Just("get_weather".to_string()), Just("f".to_string())], 0..2),
        cuts in prop::collection::vec(any::<usize>(), 0..10),
    ) {
        let whole = tool_events(&known, std::slice::from_ref(&text));
        let pieces = tool_events(&known, &split_text(&text, &cuts));
        prop_assert_eq!(&whole, &pieces);
        for (name, arguments) in &whole.1 {
            prop_assert!(known.is_empty() || known.contains(name), "{} is not an offered tool", name);
            prop_assert!(arguments.is_object(), "arguments {} are not an object", arguments);
        }
    }

    #[test]
    fn message_content_is_never_evaluated_as_template_code(
        content in prop_oneof![
            Just("{{ 7 * 7 }}".to_string()),
            Just("{% for m in messages %}x{% endfor %}".to_string()),
            Just("{{ raise_exception('boom') }}".to_string()),
            Just("{# comment #}".to_string()),
            "[{}%#a-z \\n]{0,30}",
            any::<String>(),
        ],
        role in prop_oneof![Just("user"), Just("assistant"), Just("system")],
    ) {
        let source = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/templates/smollm2.jinja"))
            .expect("the SmolLM2 template fixture");
        let template = ChatTemplate::new(&source, "<|im_start|>", "<|im_end|>").unwrap();
        let messages = vec![Message::new(role, content.clone())];
        let rendered = template.render(&messages, None, true).unwrap();
        prop_assert!(rendered.contains(&content), "content altered: {:?}", rendered);
    }

    #[test]
    fn hostile_templates_fail_cleanly_or_render(
        fragments in prop::collection::vec(prop_oneof![
            Just("{{ messages[0]['content'] }}"),
            Just("{% for m in messages %}{{ m.role }}{% endfor %}"),
            Just("{{ raise_exception('nope') }}"),
            Just("{% if %}"),
            Just("{{"),
            Just("{% endfor %}"),
            Just("{{ messages[99].content.upper() }}"),
            Just("{{ tools | tojson }}"),
            Just("{{ none.attr.attr }}"),
            Just("{{ (messages | length) / 0 }}"),
            Just("{% set x = namespace(a=1) %}{{ x.a }}"),
            Just("{{ strftime_now('%Y') }}"),
            Just("text"),
        ], 0..6),
    ) {
        let source = fragments.concat();
        if let Ok(template) = ChatTemplate::new(&source, "<s>", "</s>") {
            let _ = template.render(&[Message::new("user", "hi")], None, true);
        }
    }
}

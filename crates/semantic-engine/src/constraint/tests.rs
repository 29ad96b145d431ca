//! Tests of the schema compiler, the automaton and the trie mask over a small fake vocabulary.

use std::sync::Arc;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use super::{JsonGrammar, JsonState, TokenTrie};
use crate::{EngineError, TokenId, TokenizeOptions, Tokenizer};

/// Single bytes of JSON plus a few multi-byte pieces, an EOS (last) and a special token.
struct Vocab(Vec<Vec<u8>>);

impl Vocab {
    fn new() -> Self {
        let mut v: Vec<Vec<u8>> = (0x20u8..0x7f).map(|b| vec![b]).collect();
        for piece in [
            "{\"",
            "\":",
            "\",\"",
            "true",
            "null",
            "false",
            "12",
            " {",
            "\"}",
            "}}",
            "é",
            "ab",
            "\":\"",
            "\n",
            "<tool_call>",
        ] {
            v.push(piece.as_bytes().to_vec());
        }
        v.push(b"<special>".to_vec());
        v.push(Vec::new()); // EOS
        Self(v)
    }
    fn eos(&self) -> TokenId {
        (self.0.len() - 1) as TokenId
    }
}

impl Tokenizer for Vocab {
    fn tokenize(&self, _: &str, _: TokenizeOptions) -> Result<Vec<TokenId>, EngineError> {
        Ok(Vec::new())
    }
    fn token_bytes(&self, token: TokenId) -> Vec<u8> {
        if self.is_special(token) {
            return Vec::new();
        }
        self.0[token as usize].clone()
    }
    fn is_eog(&self, token: TokenId) -> bool {
        token == self.eos()
    }
    fn n_vocab(&self) -> usize {
        self.0.len()
    }
    fn token_text(&self, token: TokenId) -> Vec<u8> {
        self.0[token as usize].clone()
    }
    fn is_special(&self, token: TokenId) -> bool {
        token as usize == self.0.len() - 2
    }
}

fn state(schema: Value) -> JsonState {
    JsonState::new(Arc::new(JsonGrammar::compile(&schema).expect("schema compiles")))
}

/// `text` is a valid prefix (or not), and a complete value (or not).
fn check(schema: Value, text: &str, prefix: bool, complete: bool) {
    let s = state(schema.clone()).advanced(text.as_bytes());
    assert_eq!(!s.is_dead(), prefix, "{schema} / {text}: prefix");
    assert_eq!(s.is_complete(), complete, "{schema} / {text}: complete");
}

#[test]
fn automaton_accepts_exactly_the_schema() {
    let obj = json!({"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"}},"required":["b"]});
    check(obj.clone(), r#"{"a":1,"b":"x"}"#, true, true);
    check(obj.clone(), r#"{"b":"x"}"#, true, true);
    check(obj.clone(), r#"{"a":1}"#, false, false);
    check(obj.clone(), r#"{"b":"x","a":1}"#, false, false);
    check(obj.clone(), r#"{"c""#, false, false);
    check(obj, r#"{"a":1,"#, true, false);
    check(json!({"type":"integer","minimum":10,"maximum":20}), "15", true, true);
    check(json!({"type":"integer","minimum":10,"maximum":20}), "1", true, false);
    check(json!({"type":"integer","minimum":10,"maximum":20}), "3", false, false);
    check(json!({"type":"integer","minimum":10,"maximum":20}), "21", false, false);
    check(json!({"type":"integer","minimum":-5,"maximum":-1}), "-3", true, true);
    check(json!({"type":"integer","minimum":-5,"maximum":-1}), "-0", false, false);
    check(json!({"type":"number"}), "-0.25", true, true);
    check(json!({"type":"number"}), "01", false, false);
    check(json!({"type":"integer"}), "1.5", false, false);
    check(json!({"enum":["red","green",3]}), r#""gr"#, true, false);
    check(json!({"enum":["red","green",3]}), "3", true, true);
    check(json!({"enum":["red","green",3]}), r#""blue""#, false, false);
    check(json!({"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}), "[]", false, false);
    check(json!({"type":"array","items":{"type":"boolean"},"minItems":1,"maxItems":2}), "[true,false]", true, true);
    check(json!({"type":"array","items":{"type":"boolean"},"maxItems":2}), "[true,false,", false, false);
    check(json!({"type":"string","maxLength":2}), r#""é\n""#, true, true);
    check(json!({"type":"string","maxLength":2}), r#""abc"#, false, false);
    check(json!({"type":"string","minLength":2}), r#""a""#, false, false);
    check(json!({"anyOf":[{"type":"null"},{"type":"string"}]}), "null", true, true);
    check(json!({"type":["null","integer"]}), "7", true, true);
    check(json!({}), r#"{"x":[1,{"y":null}],"z":"w"}"#, true, true);
    check(json!({}), r#"{"x" :1}"#, false, false);
    let tree = json!({"$defs":{"t":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/t"},"maxItems":2}},"required":["k"]}},"$ref":"#/$defs/t"});
    check(tree.clone(), r#"{"k":[{"k":[]},{"k":[{"k":[]}]}]}"#, true, true);
    check(tree, r#"{"k":[{}]}"#, false, false);
}

#[test]
fn unsupported_keywords_are_errors() {
    let cases = [
        (json!({"type":"string","pattern":"a+"}), "#", "pattern"),
        (json!({"type":"object","properties":{"a":{"type":"number","minimum":0}}}), "#/properties/a", "minimum"),
        (json!({"oneOf":[{"type":"string"}]}), "#", "oneOf"),
        (json!({"type":"object","required":["x"],"properties":{}}), "#", "\"x\""),
        (json!({"$ref":"http://example.com/s"}), "#", "$ref"),
        (json!({"type":"object","additionalProperties":{"type":"string"}}), "#", "additionalProperties"),
    ];
    for (schema, path, word) in cases {
        let e = JsonGrammar::compile(&schema).expect_err("unsupported");
        assert_eq!(e.path, path, "{schema}");
        assert!(e.reason.contains(word), "{schema}: {}", e.reason);
    }
}

/// Draws random allowed tokens until EOS and returns the text.
fn random_walk(trie: &TokenTrie, vocab: &Vocab, mut state: JsonState, rng: &mut StdRng) -> String {
    let mut out = Vec::new();
    let mut mask = Vec::new();
    for _ in 0..400 {
        trie.mask(&state, &mut mask);
        let allowed: Vec<TokenId> = (0..mask.len()).filter(|&t| mask[t]).map(|t| t as TokenId).collect();
        assert!(!allowed.is_empty(), "dead end after {}", String::from_utf8_lossy(&out));
        // Lean towards closing so that walks end.
        let t = if allowed.contains(&vocab.eos()) && rng.gen_bool(0.5) {
            vocab.eos()
        } else {
            allowed[rng.gen_range(0..allowed.len())]
        };
        for &u in &allowed {
            assert!(trie.allows(&state, u), "mask and allows disagree on {u}");
        }
        if t == vocab.eos() {
            return String::from_utf8(out).expect("utf-8");
        }
        assert!(state.advance(trie.bytes(t)));
        out.extend_from_slice(trie.bytes(t));
    }
    panic!("no end: {}", String::from_utf8_lossy(&out));
}

#[test]
fn masked_random_walks_always_give_valid_json() {
    let vocab = Vocab::new();
    let trie = TokenTrie::new(&vocab);
    let schema = json!({"type":"object","properties":{
        "n":{"type":"integer","minimum":-3,"maximum":120},
        "tags":{"type":"array","items":{"enum":["a","b"]},"maxItems":3},
        "s":{"type":"string","maxLength":4},
        "ok":{"type":"boolean"}},"required":["n","ok"],"additionalProperties":false});
    let grammar = Arc::new(JsonGrammar::compile(&schema).expect("compiles"));
    let mut rng = StdRng::seed_from_u64(7);
    for _ in 0..200 {
        let text = random_walk(&trie, &vocab, JsonState::new(Arc::clone(&grammar)), &mut rng);
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{text}: {e}"));
        let n = v["n"].as_i64().unwrap_or_else(|| panic!("{text}"));
        assert!((-3..=120).contains(&n), "{text}");
        assert!(v["ok"].is_boolean(), "{text}");
        assert!(v.get("s").is_none_or(|s| s.as_str().is_some_and(|s| s.chars().count() <= 4)), "{text}");
        assert!(v.get("tags").is_none_or(|t| t.as_array().is_some_and(|t| t.len() <= 3)), "{text}");
    }
}

#[test]
fn special_tokens_are_never_allowed_and_eos_only_when_complete() {
    let vocab = Vocab::new();
    let trie = TokenTrie::new(&vocab);
    let s = JsonState::new(Arc::new(JsonGrammar::any_object()));
    let special = (vocab.0.len() - 2) as TokenId;
    assert!(!trie.allows(&s, special));
    assert!(!trie.allows(&s, vocab.eos()));
    let done = s.advanced(b"{}");
    let mut mask = Vec::new();
    trie.mask(&done, &mut mask);
    let allowed: Vec<usize> = (0..mask.len()).filter(|&t| mask[t]).collect();
    assert_eq!(allowed, vec![vocab.eos() as usize]);
}

fn tool_grammar() -> JsonGrammar {
    use super::{CallShape, CallableTool};
    let weather = json!({"type":"object","properties":{"city":{"type":"string","maxLength":3}},"required":["city"]});
    let tools = [
        CallableTool { name: "get_weather", parameters: Some(&weather) },
        CallableTool { name: "now", parameters: None },
    ];
    let shape = CallShape { prefix: "<tool_call>\n", arguments_key: "arguments", suffix: "\n</tool_call>" };
    JsonGrammar::tool_call(&tools, shape).expect("compiles")
}

#[test]
fn a_tool_call_grammar_accepts_one_call_to_an_offered_tool() {
    let g = Arc::new(tool_grammar());
    let check = |text: &str, prefix: bool, complete: bool| {
        let s = JsonState::new(Arc::clone(&g)).advanced(text.as_bytes());
        assert_eq!((!s.is_dead(), s.is_complete()), (prefix, complete), "{text}");
    };
    check("<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Rom\"}}\n</tool_call>", true, true);
    check("<tool_call>\n{\"name\":\"now\",\"arguments\":{\"tz\":[1]}}\n</tool_call>", true, true);
    check("<tool_call>\n{\"name\":\"now\",\"arguments\":{}}", true, false);
    check("<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{}}", false, false);
    check("<tool_call>\n{\"name\":\"get_weather\",\"arguments\":{\"city\":\"Roma\"", false, false);
    check("<tool_call>\n{\"name\":\"other\"", false, false);
    check("Sure", false, false);
    check("{\"name\":\"now\"", false, false);
}

#[test]
fn a_tool_call_grammar_names_the_tool_whose_schema_is_unsupported() {
    use super::{CallShape, CallableTool};
    let bad = json!({"type":"string","pattern":"a+"});
    let tools = [CallableTool { name: "a", parameters: None }, CallableTool { name: "b", parameters: Some(&bad) }];
    let shape = CallShape { prefix: "", arguments_key: "parameters", suffix: "" };
    let e = JsonGrammar::tool_call(&tools, shape).expect_err("pattern is unsupported");
    assert_eq!(e.tool, 1);
    assert!(e.source.reason.contains("pattern"), "{e}");
}

#[test]
fn masked_random_walks_over_a_tool_call_always_give_a_call() {
    let vocab = Vocab::new();
    let trie = TokenTrie::new(&vocab);
    let grammar = Arc::new(tool_grammar());
    let mut rng = StdRng::seed_from_u64(11);
    for _ in 0..100 {
        let text = random_walk(&trie, &vocab, JsonState::new(Arc::clone(&grammar)), &mut rng);
        let body = text.strip_prefix("<tool_call>\n").and_then(|t| t.strip_suffix("\n</tool_call>"));
        let v: Value =
            serde_json::from_str(body.unwrap_or_else(|| panic!("{text}"))).unwrap_or_else(|e| panic!("{text}: {e}"));
        match v["name"].as_str() {
            Some("get_weather") => assert!(v["arguments"]["city"].as_str().is_some_and(|c| c.chars().count() <= 3)),
            Some("now") => assert!(v["arguments"].is_object(), "{text}"),
            _ => panic!("{text}"),
        }
    }
}

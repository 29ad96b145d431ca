//! Real model (SmolLM2): a follow-up turn tokenized from where the agent's previous prompt
//! left off gives exactly the ids of tokenizing the whole prompt, whatever the messages hold.

use std::path::PathBuf;
use std::sync::Arc;

use semantic_api::prompt::Prompter;
use semantic_chat::{ChatTemplate, Message};
use semantic_engine::{Engine, EngineConfig, LlamaEngine, TokenizeOptions};
use semantic_scheduler::{AgentId, AgentKey, Namespace};

fn model_path() -> PathBuf {
    std::env::var_os("SEMANTIC_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/SmolLM2-135M-Instruct.Q4_1.gguf")
    })
}

#[test]
fn cached_prompt_tokens_equal_whole_tokenization_on_smollm2() {
    let mut config = EngineConfig::new(model_path());
    config.n_ctx = 512;
    config.threads = 1;
    let engine = LlamaEngine::load(&config).expect("model loads (run scripts/setup)");
    let facts = engine.facts().clone();
    let tokenizer = engine.tokenizer();
    let template =
        ChatTemplate::new(facts.chat_template.as_deref().unwrap(), &facts.bos_text, &facts.eos_text).unwrap();
    let prompter = Prompter::new(template, Arc::clone(&tokenizer), &facts);
    let agent = AgentKey::new(Namespace::default_ns(), AgentId::parse("tok").unwrap());

    let replies = [
        "Sure! Here is a list:\n1. one\n2. two  ",
        "<|im_end|> is how a turn ends; <|im_start|>user starts one.",
        "日本語のテキスト 🎉🎉 mixed with English",
        "   leading and trailing whitespace   \n\n",
        "<|im_", // half a special token at the end of a message
        "|>end",
        "{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}",
    ];
    let mut messages = vec![Message::new("system", "You are terse."), Message::new("user", "Hello there")];
    let mut checked = 0;
    let mut check = |messages: &[Message]| {
        let text = prompter.render(messages, None).unwrap();
        let whole = tokenizer.tokenize(&text, TokenizeOptions { add_bos: facts.add_bos, parse_special: true }).unwrap();
        let cached = prompter.tokenize(&text, Some(&agent)).unwrap();
        assert_eq!(cached, whole, "cached ids differ for the prompt {text:?}");
        checked += 1;
    };
    check(&messages);
    for (i, reply) in replies.iter().enumerate() {
        messages.push(Message::new("assistant", *reply));
        messages.push(Message::new("user", format!("next question {i} ✓")));
        check(&messages);
        // The same prompt again, and a retry with the last user message edited.
        check(&messages);
        let last = messages.len() - 1;
        messages[last] = Message::new("user", format!("next question {i} ✓, rephrased"));
        check(&messages);
    }
    // An edit early in the conversation, a new system prompt, then back to the long one.
    let mut edited = messages.clone();
    edited[1] = Message::new("user", "Hello there, edited");
    check(&edited);
    edited[0] = Message::new("system", "You are verbose.");
    check(&edited);
    check(&messages);
    assert_eq!(checked, 1 + 3 * replies.len() + 3);
    let stats = prompter.token_cache_stats();
    assert!(
        stats.reused_bytes > 2 * stats.tokenized_bytes,
        "follow-up turns resumed from the previous prompt: {stats:?}"
    );
}

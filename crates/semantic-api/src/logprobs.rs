//! Log probabilities in OpenAI's two wire shapes: chat's `logprobs.content[]` and legacy completions'
//! `{tokens, token_logprobs, top_logprobs, text_offset}`. The numbers come from the scheduler
//! (`semantic_engine::token_logprob`: log-softmax of the raw logits); this module only spells them.

use semantic_engine::{TokenLogprob, Tokenizer, MAX_TOP_LOGPROBS};
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// `logprobs` / `top_logprobs` of a chat request → alternatives per token (None: not asked).
pub(crate) fn chat_request(logprobs: Option<bool>, top: Option<u32>) -> Result<Option<usize>, ApiError> {
    let top = top.map(|n| n as usize);
    if top.is_some_and(|n| n > MAX_TOP_LOGPROBS) {
        return Err(ApiError::invalid("top_logprobs", format!("top_logprobs must be in [0, {MAX_TOP_LOGPROBS}]")));
    }
    match logprobs {
        Some(true) => Ok(Some(top.unwrap_or(0))),
        _ if top.is_some_and(|n| n > 0) => Err(ApiError::invalid("top_logprobs", "top_logprobs needs logprobs: true")),
        _ => Ok(None),
    }
}

/// `logprobs: N` of a legacy completion request → alternatives per token (None: absent).
pub(crate) fn completion_request(logprobs: Option<u32>) -> Result<Option<usize>, ApiError> {
    match logprobs.map(|n| n as usize) {
        Some(n) if n > MAX_TOP_LOGPROBS => {
            Err(ApiError::invalid("logprobs", format!("logprobs must be in [0, {MAX_TOP_LOGPROBS}]")))
        }
        other => Ok(other),
    }
}

fn text(tokenizer: &dyn Tokenizer, token: i32) -> (String, Vec<u8>) {
    let bytes = tokenizer.token_bytes(token);
    (String::from_utf8_lossy(&bytes).into_owned(), bytes)
}

/// Chat's `{"content": [{token, logprob, bytes, top_logprobs: [{token, logprob, bytes}]}]}`.
pub(crate) fn chat(tokenizer: &dyn Tokenizer, logprobs: &[TokenLogprob]) -> Value {
    let entry = |token: i32, logprob: f32| {
        let (t, bytes) = text(tokenizer, token);
        json!({"token": t, "logprob": logprob, "bytes": bytes})
    };
    let content: Vec<Value> = logprobs
        .iter()
        .map(|lp| {
            let mut e = entry(lp.token, lp.logprob);
            e["top_logprobs"] = lp.top.iter().map(|&(t, l)| entry(t, l)).collect();
            e
        })
        .collect();
    json!({ "content": content })
}

/// Legacy completions' object; `offset` is the text offset of the first token, advanced past the last.
pub(crate) fn completion(tokenizer: &dyn Tokenizer, logprobs: &[TokenLogprob], offset: &mut usize) -> Value {
    let (mut tokens, mut values, mut tops, mut offsets) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for lp in logprobs {
        let (t, _) = text(tokenizer, lp.token);
        offsets.push(*offset);
        *offset += t.len();
        tokens.push(t);
        values.push(lp.logprob);
        let top: Map<String, Value> = lp.top.iter().map(|&(id, l)| (text(tokenizer, id).0, json!(l))).collect();
        tops.push(Value::Object(top));
    }
    json!({"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets})
}

//! `TokenCache`: each agent's last prompt text and its token ids, so that the next turn only
//! tokenizes the text after the last special token both prompts share. Owns the cut rule and
//! its checks; not the template, not KV reuse (the scheduler matches token ids on its own).
//!
//! Why the result equals tokenizing the whole text: with special tokens parsed, llama.cpp first
//! cuts the text at special tokens (longest first) and then tokenizes each stretch of plain text
//! on its own. Where the previous prompt's tokens hold a special token starting at byte `p`, and
//! the new text equals the previous one up to `p` plus the longest special token's length (so no
//! special token can be found across `p` in one text but not the other), the new tokens are the
//! previous tokens before that special token followed by the tokens of the new text from `p` on.
//! Byte offsets come from the tokens' texts and are trusted only when those add up to the whole
//! prompt with every special token's text at its offset; otherwise (tokenizers that add a space
//! prefix or strip around special tokens) nothing is cached and prompts are tokenized whole.

use std::collections::HashMap;
use std::sync::Mutex;

use semantic_engine::{EngineError, TokenId, TokenizeOptions, Tokenizer};
use semantic_scheduler::AgentKey;

/// Bytes of prompt text and tokens kept over all agents before the least recently used go.
const DEFAULT_BUDGET_BYTES: usize = 64 << 20;

/// Per-agent memo of the last prompt's tokens; see the module docs for why reuse is exact.
pub struct TokenCache {
    pieces: Pieces,
    budget_bytes: usize,
    state: Mutex<Entries>,
}

/// Each token's length as prompt text, and the special tokens' texts.
struct Pieces {
    len: Vec<u32>,
    special: HashMap<TokenId, Box<[u8]>>,
    longest_special: usize,
}

#[derive(Default)]
struct Entries {
    map: HashMap<AgentKey, Entry>,
    bytes: usize,
    clock: u64,
    stats: TokenCacheStats,
}

/// What the cache saved so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TokenCacheStats {
    /// Prompt bytes given to the tokenizer for agents' prompts.
    pub tokenized_bytes: u64,
    /// Prompt bytes whose ids were taken from the agent's previous prompt instead.
    pub reused_bytes: u64,
}

struct Entry {
    text: String,
    tokens: Vec<TokenId>,
    /// Where special tokens start, ascending: the places a later prompt may resume from.
    cuts: Vec<Cut>,
    used: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Cut {
    byte: usize,
    token: usize,
}

impl Entry {
    fn bytes(&self) -> usize {
        self.text.len() + self.tokens.len() * size_of::<TokenId>() + self.cuts.len() * size_of::<Cut>()
    }
}

/// Tokens reused from an agent's previous prompt and where the rest of the text starts.
struct Resume {
    tokens: Vec<TokenId>,
    cuts: Vec<Cut>,
    byte: usize,
}

impl TokenCache {
    /// A cache for one tokenizer (reads every token's text once: a few ms for a 50K vocabulary).
    pub fn new(tokenizer: &dyn Tokenizer) -> Self {
        Self::with_budget(tokenizer, DEFAULT_BUDGET_BYTES)
    }

    fn with_budget(tokenizer: &dyn Tokenizer, budget_bytes: usize) -> Self {
        let n = tokenizer.n_vocab();
        let mut len = Vec::with_capacity(n);
        let mut special = HashMap::new();
        for id in 0..n as TokenId {
            let text = tokenizer.token_text(id);
            len.push(text.len() as u32);
            if tokenizer.is_special(id) && !text.is_empty() {
                special.insert(id, text.into_boxed_slice());
            }
        }
        let longest_special = special.values().map(|t| t.len()).max().unwrap_or(0);
        Self { pieces: Pieces { len, special, longest_special }, budget_bytes, state: Mutex::default() }
    }

    /// Token ids of `text` (special tokens parsed; BOS first when `add_bos`), equal to
    /// `tokenizer.tokenize(text, ..)`. With an agent, reuses and then replaces that agent's entry.
    pub fn tokenize(
        &self,
        tokenizer: &dyn Tokenizer,
        agent: Option<&AgentKey>,
        text: &str,
        add_bos: bool,
    ) -> Result<Vec<TokenId>, EngineError> {
        let whole = TokenizeOptions { add_bos, parse_special: true };
        let Some(agent) = agent else { return tokenizer.tokenize(text, whole) };
        let resume = self.resume(agent, text);
        let (mut tokens, mut cuts, start) = match resume {
            Some(Resume { tokens, byte, .. }) if byte == text.len() => {
                self.lock().stats.reused_bytes += byte as u64;
                return Ok(tokens);
            }
            Some(Resume { tokens, cuts, byte }) => (tokens, cuts, byte),
            None => (Vec::new(), Vec::new(), 0),
        };
        {
            let mut state = self.lock();
            state.stats.reused_bytes += start as u64;
            state.stats.tokenized_bytes += (text.len() - start) as u64;
        }
        let options = if start == 0 { whole } else { TokenizeOptions { add_bos: false, parse_special: true } };
        let tail = tokenizer.tokenize(&text[start..], options)?;
        // A BOS the tokenizer added (a special token whose text the prompt does not start with)
        // stands for no text.
        let added_bos =
            tail.first().and_then(|t| self.pieces.special.get(t)).is_some_and(|s| !text.as_bytes().starts_with(s));
        let skip = usize::from(start == 0 && add_bos && added_bos);
        let first = tokens.len();
        tokens.extend_from_slice(&tail);
        if self.find_cuts(text, start, &tokens[first + skip..], first + skip, &mut cuts) {
            self.store(agent, text, &tokens, cuts);
        } else {
            self.forget(agent);
        }
        Ok(tokens)
    }

    /// Bytes tokenized and reused so far.
    pub fn stats(&self) -> TokenCacheStats {
        self.lock().stats
    }

    /// Drops an agent's entry (its memory was deleted).
    pub fn forget(&self, agent: &AgentKey) {
        let mut state = self.lock();
        if let Some(old) = state.map.remove(agent) {
            state.bytes -= old.bytes();
        }
    }

    /// The agent's previous tokens up to the last cut that `text` provably shares.
    fn resume(&self, agent: &AgentKey, text: &str) -> Option<Resume> {
        let mut state = self.lock();
        state.clock += 1;
        let clock = state.clock;
        let entry = state.map.get_mut(agent)?;
        entry.used = clock;
        if entry.text == text {
            return Some(Resume { tokens: entry.tokens.clone(), cuts: entry.cuts.clone(), byte: text.len() });
        }
        let shared = common_prefix(entry.text.as_bytes(), text.as_bytes());
        let usable = entry.cuts.partition_point(|c| c.byte + self.pieces.longest_special <= shared);
        let cut = *entry.cuts[..usable].iter().rev().find(|c| c.byte > 0)?;
        let cuts = entry.cuts[..usable].iter().copied().filter(|c| c.byte < cut.byte).collect();
        Some(Resume { tokens: entry.tokens[..cut.token].to_vec(), cuts, byte: cut.byte })
    }

    /// Appends the cuts of `tokens` (the tokens of `text[start..]`, the first of them at index
    /// `first`); false when their texts do not add up to the text exactly.
    fn find_cuts(&self, text: &str, start: usize, tokens: &[TokenId], first: usize, cuts: &mut Vec<Cut>) -> bool {
        let bytes = text.as_bytes();
        let mut at = start;
        for (i, &token) in tokens.iter().enumerate() {
            let Some(&len) = usize::try_from(token).ok().and_then(|t| self.pieces.len.get(t)) else { return false };
            if let Some(special) = self.pieces.special.get(&token) {
                if !bytes[at.min(bytes.len())..].starts_with(special) {
                    return false;
                }
                cuts.push(Cut { byte: at, token: first + i });
            }
            at += len as usize;
        }
        at == bytes.len()
    }

    fn store(&self, agent: &AgentKey, text: &str, tokens: &[TokenId], cuts: Vec<Cut>) {
        let mut state = self.lock();
        state.clock += 1;
        let entry = Entry { text: text.to_owned(), tokens: tokens.to_vec(), cuts, used: state.clock };
        let size = entry.bytes();
        if size > self.budget_bytes {
            drop(state);
            return self.forget(agent);
        }
        if let Some(old) = state.map.insert(agent.clone(), entry) {
            state.bytes -= old.bytes();
        }
        state.bytes += size;
        while state.bytes > self.budget_bytes {
            let Some(oldest) = state.map.iter().min_by_key(|(_, e)| e.used).map(|(k, _)| k.clone()) else { break };
            if let Some(old) = state.map.remove(&oldest) {
                state.bytes -= old.bytes();
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        // A panic while holding the lock leaves only a memo behind; its entries stay consistent
        // (every mutation completes before the guard drops), so poisoning is ignored.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;
    use semantic_engine::{Engine, FakeEngine};
    use semantic_scheduler::{AgentId, Namespace};

    fn agent(name: &str) -> AgentKey {
        AgentKey::new(Namespace::default_ns(), AgentId::parse(name).unwrap())
    }

    fn check(cache: &TokenCache, tokenizer: &dyn Tokenizer, key: &AgentKey, text: &str) -> Vec<TokenId> {
        let whole = tokenizer.tokenize(text, TokenizeOptions { add_bos: true, parse_special: true }).unwrap();
        let cached = cache.tokenize(tokenizer, Some(key), text, true).unwrap();
        assert_eq!(cached, whole, "cached tokenization differs for {text:?}");
        cached
    }

    #[test]
    fn follow_up_turns_equal_whole_tokenization_and_resume_from_a_shared_special_token() {
        let engine = FakeEngine::new(1024, 64, 4);
        let tokenizer = engine.tokenizer();
        let cache = TokenCache::new(tokenizer.as_ref());
        let a = agent("a");
        let turn1 = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n";
        check(&cache, tokenizer.as_ref(), &a, turn1);
        let turn2 = format!("{turn1}hi there<|im_end|>\n<|im_start|>user\nmore<|im_end|>\n<|im_start|>assistant\n");
        check(&cache, tokenizer.as_ref(), &a, &turn2);
        let resume = cache.resume(&a, &format!("{turn2}x")).unwrap();
        assert!(resume.byte > turn1.len(), "resumes after the first turn, at {}", resume.byte);
        // Identical text, a shorter text, an edit inside the first message, a special token
        // split across the previous boundary, and another agent.
        check(&cache, tokenizer.as_ref(), &a, &turn2);
        check(&cache, tokenizer.as_ref(), &a, turn1);
        check(&cache, tokenizer.as_ref(), &a, &turn2.replace("hello", "help"));
        check(&cache, tokenizer.as_ref(), &a, &format!("{turn2}<|im_"));
        check(&cache, tokenizer.as_ref(), &a, &format!("{turn2}<|im_end|>"));
        check(&cache, tokenizer.as_ref(), &agent("b"), &turn2);
    }

    #[test]
    fn no_agent_no_entry_and_budget_evicts_least_recently_used() {
        let engine = FakeEngine::new(1024, 64, 4);
        let tokenizer = engine.tokenizer();
        let text = "<|im_start|>user\nhello<|im_end|>\n";
        let probe = TokenCache::new(tokenizer.as_ref());
        probe.tokenize(tokenizer.as_ref(), None, text, false).unwrap();
        assert!(probe.lock().map.is_empty());
        check(&probe, tokenizer.as_ref(), &agent("a"), text);
        let one = probe.lock().bytes;
        assert!(one > text.len());
        let cache = TokenCache::with_budget(tokenizer.as_ref(), 3 * one);
        for name in ["a", "b", "c", "d"] {
            check(&cache, tokenizer.as_ref(), &agent(name), text);
        }
        let state = cache.lock();
        assert_eq!(state.map.len(), 3);
        assert!(!state.map.contains_key(&agent("a")), "the oldest entry went first");
        assert_eq!(state.bytes, state.map.values().map(Entry::bytes).sum::<usize>());
    }
}

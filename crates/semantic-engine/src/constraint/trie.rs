//! `TokenTrie`: the model's vocabulary as a prefix trie of token bytes, built once per tokenizer, so that the mask
//! of a [`JsonState`] walks each shared prefix once and prunes a whole subtree at its first refused byte. Owns which
//! tokens a constraint may ever emit: text tokens by their bytes, end-of-generation tokens only on a complete value,
//! other special tokens never.

use crate::{TokenId, Tokenizer};

use super::JsonState;

#[derive(Debug, Default)]
struct TrieNode {
    children: Vec<(u8, u32)>,
    tokens: Vec<TokenId>,
}

/// How a token takes part in constrained decoding.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Text(Vec<u8>),
    EndOfGeneration,
    Never,
}

/// The vocabulary of one model, for masks.
#[derive(Debug)]
pub struct TokenTrie {
    nodes: Vec<TrieNode>,
    kinds: Vec<Kind>,
    eog: Vec<TokenId>,
}

impl TokenTrie {
    /// Reads every token of `tokenizer` (tens of milliseconds for a 49k vocabulary).
    pub fn new(tokenizer: &dyn Tokenizer) -> Self {
        let mut trie = Self { nodes: vec![TrieNode::default()], kinds: Vec::new(), eog: Vec::new() };
        for id in 0..tokenizer.n_vocab() {
            let Ok(token) = TokenId::try_from(id) else { break };
            let kind = if tokenizer.is_eog(token) {
                trie.eog.push(token);
                Kind::EndOfGeneration
            } else if tokenizer.is_special(token) {
                Kind::Never
            } else {
                let bytes = tokenizer.token_bytes(token);
                if bytes.is_empty() {
                    Kind::Never
                } else {
                    trie.insert(&bytes, token);
                    Kind::Text(bytes)
                }
            };
            trie.kinds.push(kind);
        }
        trie
    }

    fn insert(&mut self, bytes: &[u8], token: TokenId) {
        let mut at = 0usize;
        for &b in bytes {
            let found = self.nodes[at].children.iter().find(|(c, _)| *c == b).map(|&(_, n)| n as usize);
            at = match found {
                Some(n) => n,
                None => {
                    self.nodes.push(TrieNode::default());
                    let n = self.nodes.len() - 1;
                    self.nodes[at].children.push((b, n as u32));
                    n
                }
            };
        }
        self.nodes[at].tokens.push(token);
    }

    /// Whether `token` keeps `state` valid (an end-of-generation token: whether the value is complete).
    pub fn allows(&self, state: &JsonState, token: TokenId) -> bool {
        match usize::try_from(token).ok().and_then(|i| self.kinds.get(i)) {
            Some(Kind::Text(bytes)) => !state.advanced(bytes).is_dead(),
            Some(Kind::EndOfGeneration) => state.is_complete(),
            _ => false,
        }
    }

    /// The bytes a text token adds to the output (empty for others).
    pub fn bytes(&self, token: TokenId) -> &[u8] {
        match usize::try_from(token).ok().and_then(|i| self.kinds.get(i)) {
            Some(Kind::Text(bytes)) => bytes,
            _ => &[],
        }
    }

    /// Sets `mask[t]` to whether token `t` keeps `state` valid; `mask` is resized to the vocabulary.
    pub fn mask(&self, state: &JsonState, mask: &mut Vec<bool>) {
        mask.clear();
        mask.resize(self.kinds.len(), false);
        if state.is_complete() {
            for &t in &self.eog {
                mask[t as usize] = true;
            }
        }
        self.walk(0, state, mask);
    }

    fn walk(&self, node: usize, state: &JsonState, mask: &mut [bool]) {
        for &(b, child) in &self.nodes[node].children {
            let next = state.step(b);
            if next.is_dead() {
                continue;
            }
            let child = child as usize;
            for &t in &self.nodes[child].tokens {
                mask[t as usize] = true;
            }
            self.walk(child, &next, mask);
        }
    }
}

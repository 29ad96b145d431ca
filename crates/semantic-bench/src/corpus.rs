//! The prompt corpus: real English prose that every Debian machine has offline (the licence texts
//! under `/usr/share/common-licenses`), tokenized once so that texts are cut to exact token counts,
//! and handed out at fresh offsets so no two measurements share text by accident.

use std::path::Path;
use std::sync::Arc;

use anyhow::{bail, Context, Result};
use semantic_engine::{TokenId, TokenizeOptions, Tokenizer};

/// Where the prose comes from.
pub const DEFAULT_DIR: &str = "/usr/share/common-licenses";

/// Tokenized prose and a cursor over it.
pub struct Corpus {
    tokens: Vec<TokenId>,
    tokenizer: Arc<dyn Tokenizer>,
    next: usize,
    serial: u64,
}

impl Corpus {
    /// Reads every distinct regular file under `dir` (symlinks to the same text count once), in
    /// name order, and tokenizes the concatenation.
    pub fn load(dir: &Path, tokenizer: Arc<dyn Tokenizer>) -> Result<Self> {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .with_context(|| format!("reading {}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        paths.sort();
        let mut seen = std::collections::HashSet::new();
        let mut text = String::new();
        for path in paths {
            let Ok(real) = std::fs::canonicalize(&path) else { continue };
            if !real.is_file() || !seen.insert(real.clone()) {
                continue;
            }
            if let Ok(body) = std::fs::read_to_string(&real) {
                text.push_str(&body);
                text.push_str("\n\n");
            }
        }
        let tokens = tokenizer.tokenize(&text, TokenizeOptions { add_bos: false, parse_special: false })?;
        if tokens.len() < 4096 {
            bail!("the corpus under {} has only {} tokens; need at least 4096", dir.display(), tokens.len());
        }
        Ok(Self { tokens, tokenizer, next: 0, serial: 0 })
    }

    /// Tokens in the corpus.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// The next `n` tokens of prose as text (wrapping at the end), prefixed by a serial number so
    /// that even a wrapped text never shares a prefix with an earlier one.
    pub fn take(&mut self, n: usize) -> String {
        let len = self.tokens.len();
        let slice: Vec<TokenId> = (0..n).map(|i| self.tokens[(self.next + i) % len]).collect();
        self.next = (self.next + n) % len;
        self.serial += 1;
        format!("[document {}]\n{}", self.serial, self.tokenizer.detokenize(&slice))
    }
}

/// The first user message of a measurement (the original's benchmark prompt).
pub fn document_prompt(text: &str) -> String {
    format!("Here is some text:\n\n{text}\n\nWhat are the main topics and themes discussed above?")
}

/// The follow-up user message of later turns.
pub const FOLLOW_UP: &str = "Continue explaining in more detail.";

//! `Prompter`: chat messages to prompt token ids (template render, then the model's tokenizer),
//! with tools offered the way the template family expects (`semantic_chat::ToolPrompting`), and
//! raw text prompts for the legacy completions route.

use std::sync::Arc;

use semantic_chat::{ChatError, ChatTemplate, Message, ToolPrompting};
use semantic_engine::{EngineError, ModelFacts, TokenId, TokenizeOptions, Tokenizer};
use semantic_scheduler::AgentKey;

use crate::token_cache::TokenCache;
pub use crate::token_cache::TokenCacheStats;

/// Renders messages with the GGUF's own template and tokenizes with the model's tokenizer.
pub struct Prompter {
    template: ChatTemplate,
    tool_prompting: ToolPrompting,
    tokenizer: Arc<dyn Tokenizer>,
    tokens: TokenCache,
    add_bos: bool,
    bos_text: String,
}

/// Why a prompt could not be built.
#[derive(Debug, thiserror::Error)]
pub enum PromptError {
    /// The template rejected the conversation (e.g. a role it does not support).
    #[error(transparent)]
    Template(#[from] ChatError),
    /// The tokenizer failed.
    #[error(transparent)]
    Tokenize(#[from] EngineError),
}

impl Prompter {
    /// A prompter for one model.
    pub fn new(template: ChatTemplate, tokenizer: Arc<dyn Tokenizer>, facts: &ModelFacts) -> Self {
        let tool_prompting = ToolPrompting::for_template(template.source());
        let tokens = TokenCache::new(tokenizer.as_ref());
        Self { template, tool_prompting, tokenizer, tokens, add_bos: facts.add_bos, bos_text: facts.bos_text.clone() }
    }

    /// The rendered prompt text (generation prompt appended).
    pub fn render(&self, messages: &[Message], tools: Option<&serde_json::Value>) -> Result<String, ChatError> {
        self.template.render(messages, tools, true)
    }

    /// Token ids for a rendered prompt: special tokens parsed, BOS added when the model wants one
    /// and the template did not already write it. With an agent, only the text after what its
    /// previous prompt provably shares is tokenized ([`TokenCache`]); the ids are the same.
    pub fn tokenize(&self, text: &str, agent: Option<&AgentKey>) -> Result<Vec<TokenId>, EngineError> {
        let add_bos = self.add_bos && (self.bos_text.is_empty() || !text.starts_with(&self.bos_text));
        self.tokens.tokenize(self.tokenizer.as_ref(), agent, text, add_bos)
    }

    /// Messages to token ids.
    pub fn chat(&self, messages: &[Message], tools: Option<&serde_json::Value>) -> Result<Vec<TokenId>, PromptError> {
        let text = self.render(messages, tools)?;
        Ok(self.tokenize(&text, None)?)
    }

    /// Messages to token ids, with `tools` (OpenAI-style function tools; None when none are
    /// offered) shown the way this template family expects and past tool calls and results
    /// rendered even by templates that know no tools. `agent` names whose previous prompt may
    /// spare re-tokenizing the shared start.
    pub fn chat_with_tools(
        &self,
        messages: Vec<Message>,
        tools: Option<&[serde_json::Value]>,
        agent: Option<&AgentKey>,
    ) -> Result<Vec<TokenId>, PromptError> {
        let (messages, tools) = self.tool_prompting.adapt(messages, tools);
        let text = self.render(&messages, tools.as_ref())?;
        Ok(self.tokenize(&text, agent)?)
    }

    /// The syntax this template's model writes tool calls in (what a forced call is constrained to).
    pub fn tool_syntax(&self) -> semantic_chat::ToolSyntax {
        self.tool_prompting.syntax()
    }

    /// How much prompt text agents' follow-up turns did not have to tokenize again.
    pub fn token_cache_stats(&self) -> TokenCacheStats {
        self.tokens.stats()
    }

    /// Forgets an agent's memoized prompt (its memory was deleted).
    pub fn forget(&self, agent: &AgentKey) {
        self.tokens.forget(agent);
    }

    /// A raw text prompt (no template), tokenized as llama.cpp's own tools do: BOS when the
    /// model wants one, special-token text parsed.
    pub fn raw(&self, text: &str) -> Result<Vec<TokenId>, EngineError> {
        self.tokenizer.tokenize(text, TokenizeOptions::PROMPT)
    }
}

//! In-process API tests: the real router over a `FakeEngine` scheduler, driven with
//! `tower::ServiceExt::oneshot`, so every case runs in milliseconds; `prompt_tokens` alone loads
//! the real SmolLM2 tokenizer.

mod agent_io;
mod anthropic;
mod coordination;
mod errors;
mod forced_tools;
mod harness;
mod hostile;
mod isolation;
mod models;
mod openai;
mod openapi;
mod ops;
mod prompt_tokens;
mod responses;
mod scenarios;
mod streaming;
mod ui;

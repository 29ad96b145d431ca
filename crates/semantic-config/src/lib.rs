//! Configuration: `RawConfig` (every field optional, from flags + env or a TOML file) layered and
//! validated into an immutable `Config`.
//!
//! Owns: field names, flags and env var names (declared with clap, parsed by the binary), defaults,
//! validation messages, secret masking, the KV types and flash-attention modes. Does not read argv
//! or env (the binary does) and knows no other crate (a leaf).
#![warn(missing_docs)]

mod config;
mod kv;
mod raw;
mod validate;

pub use config::{Config, ServerConfig, MASK, MIN_KEY_LEN};
pub use kv::{FlashAttention, KvElem, KvType};
pub use raw::{RawConfig, TomlLayer};

/// A configuration that cannot be used, with a message that names the field.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// A value is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// Field name as in the TOML file.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The TOML file cannot be read or parsed.
    #[error("cannot use config file {path}: {reason}")]
    File {
        /// Path given.
        path: String,
        /// Why.
        reason: String,
    },
}

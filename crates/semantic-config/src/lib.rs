//! Configuration: `RawConfig` (every field optional, from flags + env or a TOML file) layered and
//! validated into an immutable `Config`.
//!
//! Owns: field names, defaults, validation messages, secret masking. Does not read argv or env
//! (the binary does) and knows no other crate (a leaf).
#![warn(missing_docs)]

mod config;
mod raw;

pub use config::{Config, ServerConfig, MASK, MIN_KEY_LEN};
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

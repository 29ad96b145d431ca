//! `CoordError`: what can go wrong in the coordination layer, with the fields an API maps to a
//! status (not found, invalid, conflict) and I/O context for the session store.

use std::path::PathBuf;

/// Errors of the coordination layer.
#[derive(Debug, thiserror::Error)]
pub enum CoordError {
    /// A field is invalid; `param` is its path (`agents[2].display_name`).
    #[error("{param}: {message}")]
    Invalid {
        /// Field path.
        param: String,
        /// What is wrong.
        message: String,
    },
    /// No such session (or agent within it).
    #[error("{what} {id:?} not found")]
    NotFound {
        /// `session` or `agent`.
        what: &'static str,
        /// The id asked for.
        id: String,
    },
    /// The session is finished (its `max_turns` are done) or otherwise refuses the operation.
    #[error("{0}")]
    Conflict(String),
    /// Reading or writing the session store failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// A stored file is damaged (checksum or JSON); it is moved aside, never served.
    #[error("{path}: {reason}")]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What did not verify.
        reason: String,
    },
}

impl CoordError {
    /// An invalid-field error.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        CoordError::Invalid { param: param.into(), message: message.into() }
    }
}

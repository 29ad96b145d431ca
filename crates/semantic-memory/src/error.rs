//! `MemoryError`, the one error type of this crate. Owns the variants and the bounded metric reason
//! ([`MemoryError::reject_reason`]); does not decide what a caller does with an error.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in agent memory: bad identities, snapshot files that are rejected,
/// and I/O.
#[derive(Debug, thiserror::Error)]
pub enum MemoryError {
    /// An agent id does not follow the rules (1-128 chars of `[A-Za-z0-9._-]`, not `.` or `..`).
    #[error("invalid agent id: {reason}")]
    InvalidAgentId {
        /// What is wrong (a fixed phrase; the id itself is user input and not echoed).
        reason: &'static str,
    },
    /// A namespace does not follow the rules (same as agent ids).
    #[error("invalid namespace: {reason}")]
    InvalidNamespace {
        /// What is wrong.
        reason: &'static str,
    },
    /// A snapshot file is damaged: bad magic, bad checksum, truncated, wrong length, undecodable
    /// header, or a header naming another agent than its path.
    #[error("corrupt snapshot {}: {reason}", path.display())]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What failed (a fixed phrase).
        reason: &'static str,
    },
    /// A well-formed snapshot file of a format version this build cannot read.
    #[error("snapshot {} has unsupported format version {version}", path.display())]
    UnsupportedVersion {
        /// The file.
        path: PathBuf,
        /// The version it declares.
        version: u16,
    },
    /// A valid snapshot made by another model or with another KV type.
    #[error("snapshot {} is foreign: {reason}", path.display())]
    Foreign {
        /// The file.
        path: PathBuf,
        /// Which compatibility field differs (a fixed phrase).
        reason: &'static str,
    },
    /// An encrypted snapshot that cannot be opened: no key is configured, the key is not the one
    /// it was written under, or its header, nonces, tokens or payload were altered. The AEAD
    /// cannot tell a wrong key from tampering, so neither does this error.
    #[error("encrypted snapshot {} cannot be opened: {reason}", path.display())]
    Sealed {
        /// The file.
        path: PathBuf,
        /// Why (a fixed phrase).
        reason: &'static str,
    },
    /// The encryption key file is unusable (its contents are never echoed).
    #[error("encryption key file {}: {reason}", path.display())]
    KeyFile {
        /// The key file.
        path: PathBuf,
        /// What is wrong (a fixed phrase).
        reason: &'static str,
    },
    /// A snapshot would exceed a format limit (for example more tokens than `MAX_TOKENS`).
    #[error("{what} too large: {len} > {max}")]
    TooLarge {
        /// What is too large.
        what: &'static str,
        /// Its size.
        len: u64,
        /// The limit.
        max: u64,
    },
    /// Another process (or another lock in this one) holds the cache directory's lock.
    #[error(
        "{} is locked by another process{}: one process per cache directory",
        path.display(),
        pid.map_or(String::new(), |p| format!(" (pid {p})"))
    )]
    Locked {
        /// The lock file.
        path: PathBuf,
        /// The holder's pid, when the lock file names one.
        pid: Option<u32>,
    },
    /// A file-system operation failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        /// The path operated on.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
}

impl MemoryError {
    /// Why a snapshot file was rejected, as a bounded metric label: `"corrupt"`, `"version"`,
    /// `"foreign"` or `"key"` (encrypted and not openable with the configured key, if any). `None` for errors that are not about a file's content (I/O, invalid ids).
    pub fn reject_reason(&self) -> Option<&'static str> {
        match self {
            MemoryError::Corrupt { .. } => Some("corrupt"),
            MemoryError::UnsupportedVersion { .. } => Some("version"),
            MemoryError::Foreign { .. } => Some("foreign"),
            MemoryError::Sealed { .. } => Some("key"),
            _ => None,
        }
    }

    /// True when this is an I/O error saying the file does not exist (a plain cache miss).
    pub fn is_not_found(&self) -> bool {
        matches!(self, MemoryError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }

    /// True when this is an I/O error saying the file system is full (`ENOSPC`, or `EDQUOT`: over
    /// quota), as opposed to any other I/O failure.
    pub fn is_no_space(&self) -> bool {
        matches!(self, MemoryError::Io { source, .. }
            if matches!(source.raw_os_error(), Some(libc::ENOSPC | libc::EDQUOT))
                || source.kind() == io::ErrorKind::StorageFull)
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: io::Error) -> Self {
        MemoryError::Io { path: path.into(), source }
    }

    pub(crate) fn corrupt(path: impl Into<PathBuf>, reason: &'static str) -> Self {
        MemoryError::Corrupt { path: path.into(), reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reject_reasons_are_bounded() {
        let p = PathBuf::from("x.skv");
        assert_eq!(MemoryError::corrupt(&p, "bad magic").reject_reason(), Some("corrupt"));
        assert_eq!(MemoryError::UnsupportedVersion { path: p.clone(), version: 2 }.reject_reason(), Some("version"));
        assert_eq!(MemoryError::Foreign { path: p.clone(), reason: "kv type" }.reject_reason(), Some("foreign"));
        assert_eq!(MemoryError::Sealed { path: p.clone(), reason: "wrong key" }.reject_reason(), Some("key"));
        assert_eq!(MemoryError::io(&p, io::Error::other("x")).reject_reason(), None);
        assert_eq!(MemoryError::InvalidAgentId { reason: "empty" }.reject_reason(), None);
    }

    #[test]
    fn not_found_is_recognised() {
        assert!(MemoryError::io("x", io::Error::from(io::ErrorKind::NotFound)).is_not_found());
        assert!(!MemoryError::io("x", io::Error::from(io::ErrorKind::PermissionDenied)).is_not_found());
        assert!(!MemoryError::corrupt("x", "truncated").is_not_found());
    }

    #[test]
    fn no_space_is_told_from_other_io_errors() {
        assert!(MemoryError::io("x", io::Error::from_raw_os_error(libc::ENOSPC)).is_no_space());
        assert!(MemoryError::io("x", io::Error::from_raw_os_error(libc::EDQUOT)).is_no_space());
        assert!(!MemoryError::io("x", io::Error::from_raw_os_error(libc::EIO)).is_no_space());
        assert!(!MemoryError::corrupt("x", "truncated").is_no_space());
    }
}

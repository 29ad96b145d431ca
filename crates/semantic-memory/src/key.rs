//! `MasterKey`: the 256-bit key agent files are encrypted under, read from a key file, and the
//! per-namespace keys derived from it (HKDF-SHA256). Owns key parsing, derivation and zeroizing;
//! does not know the file format (`sealed.rs` uses the derived keys) or where the key file path
//! comes from (the binary's config). Keys are never printed: `Debug` shows a placeholder.
//!
//! Hex decoding is done by hand (a dozen lines) rather than with a crate so that the decoded bytes
//! never sit in a buffer that is not zeroized.

use std::fmt;
use std::path::Path;

use hkdf::Hkdf;
use sha2::Sha256;
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, Zeroizing};

use crate::{MemoryError, Namespace};

/// Key length in bytes (256 bits).
pub const KEY_LEN: usize = 32;
/// HKDF salt: fixed, names the purpose and the format generation the keys are for.
const HKDF_SALT: &[u8] = b"semantic agent files v3";
/// HKDF info prefix; the namespace name follows.
const HKDF_INFO: &[u8] = b"namespace:";

/// The master key of encryption at rest. Zeroized on drop; compared in constant time.
#[derive(Clone)]
pub struct MasterKey {
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

/// A key derived for one namespace; zeroized on drop.
pub(crate) type NamespaceKey = Zeroizing<[u8; KEY_LEN]>;

impl MasterKey {
    /// A key from its 32 bytes.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        MasterKey { bytes: Zeroizing::new(bytes) }
    }

    /// Parses a key file's contents: exactly 32 raw bytes, or 64 hex digits optionally followed by
    /// one newline (`\n` or `\r\n`). Anything else is refused with a fixed phrase saying why.
    pub fn parse(contents: &[u8]) -> Result<Self, &'static str> {
        if contents.len() == KEY_LEN {
            let mut bytes = [0u8; KEY_LEN];
            bytes.copy_from_slice(contents);
            let key = MasterKey::from_bytes(bytes);
            bytes.zeroize();
            return Ok(key);
        }
        let text = contents.strip_suffix(b"\n").map(|t| t.strip_suffix(b"\r").unwrap_or(t)).unwrap_or(contents);
        if text.len() != 2 * KEY_LEN {
            return Err("a key file holds 32 raw bytes or 64 hex digits (and at most one newline)");
        }
        let mut bytes = [0u8; KEY_LEN];
        for (i, pair) in text.chunks_exact(2).enumerate() {
            match (hex_digit(pair[0]), hex_digit(pair[1])) {
                (Some(hi), Some(lo)) => bytes[i] = hi << 4 | lo,
                _ => {
                    bytes.zeroize();
                    return Err("64 characters, but not all hex digits");
                }
            }
        }
        let key = MasterKey::from_bytes(bytes);
        bytes.zeroize();
        Ok(key)
    }

    /// Reads and parses a key file (see [`MasterKey::parse`]).
    pub fn read_file(path: &Path) -> Result<Self, MemoryError> {
        let contents = Zeroizing::new(std::fs::read(path).map_err(|e| MemoryError::io(path, e))?);
        MasterKey::parse(&contents).map_err(|reason| MemoryError::KeyFile { path: path.to_owned(), reason })
    }

    /// The key agent files of `namespace` are sealed with: HKDF-SHA256 of the master key, a fixed
    /// salt, and `"namespace:" + name` as info. API keys map to distinct namespaces, so one
    /// tenant's files never share a key with another's.
    pub(crate) fn namespace_key(&self, namespace: &Namespace) -> NamespaceKey {
        let hk = Hkdf::<Sha256>::new(Some(HKDF_SALT), self.bytes.as_slice());
        let mut info = Vec::with_capacity(HKDF_INFO.len() + namespace.as_str().len());
        info.extend_from_slice(HKDF_INFO);
        info.extend_from_slice(namespace.as_str().as_bytes());
        let mut out = Zeroizing::new([0u8; KEY_LEN]);
        // Infallible: 32 bytes is far below HKDF-SHA256's 255 * 32 output limit.
        hk.expand(&info, out.as_mut_slice()).expect("32-byte HKDF output");
        out
    }
}

/// True when a key file can be read by its group or others (Unix permission bits); the binary
/// warns. Always false on platforms without such bits.
pub fn key_file_is_shared(path: &Path) -> bool {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::metadata(path).map(|m| m.permissions().mode() & 0o044 != 0).unwrap_or(false)
    }
    #[cfg(not(unix))]
    {
        let _ = path;
        false
    }
}

fn hex_digit(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("MasterKey(<redacted>)")
    }
}

impl PartialEq for MasterKey {
    /// Constant-time: the comparison never stops at the first differing byte.
    fn eq(&self, other: &Self) -> bool {
        self.bytes[..].ct_eq(&other.bytes[..]).into()
    }
}

impl Eq for MasterKey {}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(contents: &[u8], expected: Result<[u8; 32], ()>) {
        let got = MasterKey::parse(contents);
        match expected {
            Ok(bytes) => assert_eq!(got.unwrap(), MasterKey::from_bytes(bytes), "{contents:?}"),
            Err(()) => assert!(got.is_err(), "{contents:?} must be refused"),
        }
    }

    #[test]
    fn key_files_parse_raw_or_hex_and_refuse_the_rest() {
        let raw: [u8; 32] = std::array::from_fn(|i| (i * 7 + 200) as u8);
        let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
        check(&raw, Ok(raw));
        check(hex.as_bytes(), Ok(raw));
        check(format!("{hex}\n").as_bytes(), Ok(raw));
        check(format!("{hex}\r\n").as_bytes(), Ok(raw));
        check(hex.to_uppercase().as_bytes(), Ok(raw));
        check(b"", Err(()));
        check(&raw[..31], Err(()));
        check(&[0u8; 33], Err(()));
        check(format!("{hex}\n\n").as_bytes(), Err(()));
        check(format!(" {hex}").as_bytes(), Err(()));
        check(&hex.as_bytes()[..62], Err(()));
        check(format!("{hex}00").as_bytes(), Err(()));
        let mut bad = hex.clone().into_bytes();
        bad[10] = b'g';
        check(&bad, Err(()));
    }

    #[test]
    fn namespaces_get_different_keys_and_the_same_namespace_the_same() {
        let key = MasterKey::from_bytes([1; 32]);
        let a = Namespace::parse("tenant-a").unwrap();
        let b = Namespace::parse("tenant-b").unwrap();
        assert_ne!(*key.namespace_key(&a), *key.namespace_key(&b));
        assert_eq!(*key.namespace_key(&a), *key.namespace_key(&a));
        assert_ne!(*key.namespace_key(&a), *MasterKey::from_bytes([2; 32]).namespace_key(&a));
        assert_ne!(*key.namespace_key(&a), [1; 32], "derived, not the master key itself");
    }

    #[test]
    fn debug_never_shows_the_key() {
        let shown = format!("{:?}", MasterKey::from_bytes([0xab; 32]));
        assert!(!shown.contains("ab") && !shown.contains("171"), "{shown}");
    }

    #[test]
    fn read_file_reports_the_path_and_reason_and_shared_files_are_seen() {
        let dir = crate::testutil::TestDir::new("key-file");
        let path = dir.path().join("key");
        std::fs::write(&path, b"short").unwrap();
        let err = MasterKey::read_file(&path).unwrap_err();
        assert!(matches!(err, MemoryError::KeyFile { .. }) && err.to_string().contains("key"), "{err}");
        std::fs::write(&path, [9u8; 32]).unwrap();
        assert_eq!(MasterKey::read_file(&path).unwrap(), MasterKey::from_bytes([9; 32]));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            assert!(!key_file_is_shared(&path));
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(key_file_is_shared(&path));
        }
    }
}

//! `Fingerprint`: SHA-256 of a GGUF file, cached on disk by (path, size, mtime) so start-up stays fast.

use std::fmt;
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use sha2::{Digest, Sha256};

use crate::EngineError;

/// SHA-256 of a model file. Agent memory made with one model is never served by another.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// Lowercase hex.
    pub fn to_hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Parses 64 hex digits.
    pub fn from_hex(s: &str) -> Option<Self> {
        if s.len() != 64 || !s.is_ascii() {
            return None;
        }
        let mut out = [0u8; 32];
        for (i, chunk) in s.as_bytes().chunks(2).enumerate() {
            let hex = std::str::from_utf8(chunk).ok()?;
            out[i] = u8::from_str_radix(hex, 16).ok()?;
        }
        Some(Self(out))
    }

    /// Hashes the whole file.
    pub fn of_file(path: &Path) -> Result<Self, EngineError> {
        let io = |source| EngineError::ModelIo { path: path.to_path_buf(), source };
        let mut file = fs::File::open(path).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = file.read(&mut buf).map_err(io)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
        }
        Ok(Self(hasher.finalize().into()))
    }

    /// Like [`Fingerprint::of_file`], but remembers the answer in `cache_dir` keyed by the file's
    /// canonical path, size and modification time. A cache that cannot be read or written is ignored.
    pub fn of_file_cached(path: &Path, cache_dir: Option<&Path>) -> Result<Self, EngineError> {
        let Some(dir) = cache_dir else {
            return Self::of_file(path);
        };
        let key = match file_key(path) {
            Ok(key) => key,
            Err(source) => return Err(EngineError::ModelIo { path: path.to_path_buf(), source }),
        };
        let entry = dir.join(format!("{}.sha256", &Self(Sha256::digest(key.as_bytes()).into()).to_hex()[..32]));
        if let Ok(text) = fs::read_to_string(&entry) {
            if let Some((stored_key, hex)) =
                text.rsplit_once('\n').and_then(|(k, h)| Some((k, Self::from_hex(h.trim())?)))
            {
                if stored_key == key {
                    return Ok(hex);
                }
            }
        }
        let fp = Self::of_file(path)?;
        if let Err(err) = semantic_memory::write_atomic(&entry, format!("{key}\n{}", fp.to_hex()).as_bytes()) {
            tracing::debug!(path = %entry.display(), %err, "cannot cache the model fingerprint");
        }
        Ok(fp)
    }
}

impl fmt::Debug for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Fingerprint({})", self.to_hex())
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

fn file_key(path: &Path) -> std::io::Result<String> {
    let canonical: PathBuf = fs::canonicalize(path)?;
    let meta = fs::metadata(&canonical)?;
    let mtime = meta.modified()?.duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0);
    Ok(format!("{}|{}|{}", canonical.display(), meta.len(), mtime))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trips_and_rejects_junk() {
        let fp = Fingerprint([0xab; 32]);
        assert_eq!(Fingerprint::from_hex(&fp.to_hex()), Some(fp));
        assert_eq!(Fingerprint::from_hex("zz"), None);
        assert_eq!(Fingerprint::from_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn cached_fingerprint_matches_and_follows_file_changes() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let file = dir.join("model.gguf");
        fs::write(&file, b"abc").unwrap();
        let cache = dir.join("cache");
        let direct = Fingerprint::of_file(&file).unwrap();
        assert_eq!(direct.to_hex(), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
        assert_eq!(Fingerprint::of_file_cached(&file, Some(&cache)).unwrap(), direct);
        assert_eq!(Fingerprint::of_file_cached(&file, Some(&cache)).unwrap(), direct);
        fs::write(&file, b"abcd").unwrap();
        assert_eq!(Fingerprint::of_file_cached(&file, Some(&cache)).unwrap(), Fingerprint::of_file(&file).unwrap());
    }
}

//! `ModelRegistry`: the GGUF files of a models directory, each with an id (its file stem, or an
//! alias the operator gave it), its header facts, size and fingerprint. Owns scanning and id
//! lookup; does not own loading (the binary and `LlamaEngine` do) or choosing what is served.

use std::fs;
use std::path::{Path, PathBuf};

use crate::{EngineError, Fingerprint, GgufInfo};

/// One servable model file.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelEntry {
    /// The id requests and admin calls name it by: the operator's alias, else the file stem.
    pub id: String,
    /// Other names it answers to (the file stem when an alias replaced it).
    pub aliases: Vec<String>,
    /// The GGUF file.
    pub path: PathBuf,
    /// File size in bytes.
    pub size_bytes: u64,
    /// Header facts, or why the header cannot be read (the file is listed, not servable).
    pub info: Result<GgufInfo, String>,
    /// SHA-256 of the file (None when it could not be read).
    pub fingerprint: Option<Fingerprint>,
}

impl ModelEntry {
    /// Whether `name` is this model's id or one of its aliases.
    pub fn answers_to(&self, name: &str) -> bool {
        self.id == name || self.aliases.iter().any(|a| a == name)
    }
}

/// The models of one directory, sorted by id.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ModelRegistry {
    /// The directory scanned.
    pub dir: PathBuf,
    /// Its GGUF files.
    pub entries: Vec<ModelEntry>,
}

impl ModelRegistry {
    /// Scans `dir` for `*.gguf` files (not recursively). `aliases` are `(alias, file stem)`
    /// pairs: the alias becomes the id and the stem an alias. `fingerprint_cache` is where file
    /// hashes are remembered (see [`Fingerprint::of_file_cached`]). A missing directory is an
    /// empty registry; an unreadable one is an error.
    pub fn scan(
        dir: &Path,
        aliases: &[(String, String)],
        fingerprint_cache: Option<&Path>,
    ) -> Result<Self, EngineError> {
        let io = |source| EngineError::ModelIo { path: dir.to_owned(), source };
        let mut entries = Vec::new();
        let listing = match fs::read_dir(dir) {
            Ok(listing) => listing,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(Self { dir: dir.to_owned(), entries });
            }
            Err(e) => return Err(io(e)),
        };
        for item in listing {
            let path = item.map_err(io)?.path();
            if path.extension().and_then(|e| e.to_str()) != Some("gguf") || !path.is_file() {
                continue;
            }
            entries.push(Self::entry(&path, fingerprint_cache));
        }
        for (alias, stem) in aliases {
            if let Some(entry) = entries.iter_mut().find(|e| &e.id == stem) {
                entry.aliases.push(std::mem::replace(&mut entry.id, alias.clone()));
            }
        }
        entries.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Self { dir: dir.to_owned(), entries })
    }

    /// The registry entry of one file, wherever it is (the `--model` of a server may live outside
    /// the models directory).
    pub fn entry(path: &Path, fingerprint_cache: Option<&Path>) -> ModelEntry {
        let id = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let size_bytes = fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let info = GgufInfo::read(path).map_err(|e| e.to_string());
        let fingerprint = Fingerprint::of_file_cached(path, fingerprint_cache).ok();
        ModelEntry { id, aliases: Vec::new(), path: path.to_owned(), size_bytes, info, fingerprint }
    }

    /// The entry `name` refers to (id or alias).
    pub fn find(&self, name: &str) -> Option<&ModelEntry> {
        self.entries.iter().find(|e| e.answers_to(name))
    }

    /// The entry of the file at `path`, if the registry holds it.
    pub fn find_path(&self, path: &Path) -> Option<&ModelEntry> {
        let canonical = |p: &Path| fs::canonicalize(p).unwrap_or_else(|_| p.to_owned());
        let wanted = canonical(path);
        self.entries.iter().find(|e| canonical(&e.path) == wanted)
    }

    /// Adds `entry` unless a file with its path is already listed (the served model outside the
    /// models directory is still listed).
    pub fn include(&mut self, entry: ModelEntry) {
        if self.find_path(&entry.path).is_none() {
            self.entries.push(entry);
            self.entries.sort_by(|a, b| a.id.cmp(&b.id));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gguf(arch: &str) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend_from_slice(&3u32.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        let key = "general.architecture";
        out.extend_from_slice(&(key.len() as u64).to_le_bytes());
        out.extend_from_slice(key.as_bytes());
        out.extend_from_slice(&8u32.to_le_bytes());
        out.extend_from_slice(&(arch.len() as u64).to_le_bytes());
        out.extend_from_slice(arch.as_bytes());
        out
    }

    #[test]
    fn lists_gguf_files_by_stem_or_alias_and_keeps_broken_ones_visible() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        fs::write(dir.join("small.gguf"), gguf("llama")).unwrap();
        fs::write(dir.join("other.gguf"), gguf("gemma3")).unwrap();
        fs::write(dir.join("broken.gguf"), b"not a model").unwrap();
        fs::write(dir.join("notes.txt"), b"ignored").unwrap();
        let aliases = vec![("fast".to_string(), "small".to_string()), ("ghost".to_string(), "absent".to_string())];
        let registry = ModelRegistry::scan(&dir, &aliases, None).unwrap();
        let ids: Vec<&str> = registry.entries.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["broken", "fast", "other"]);
        let fast = registry.find("small").expect("the stem still answers");
        assert_eq!((fast.id.as_str(), fast.info.as_ref().map(|i| i.architecture.as_str())), ("fast", Ok("llama")));
        assert!(registry.find("broken").unwrap().info.as_ref().unwrap_err().contains("magic"));
        assert!(registry.find("absent").is_none() && registry.find("ghost").is_none());
        assert!(registry.find_path(&dir.join("other.gguf")).is_some());
        let missing = ModelRegistry::scan(&dir.join("nope"), &[], None).unwrap();
        assert!(missing.entries.is_empty());
    }
}

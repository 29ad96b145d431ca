//! `SessionStore`: sessions and permanent agents' histories on disk, next to agent memory. Each
//! file is a header line (`semantic-coord 1 crc32=… len=…`) and a JSON body; writes go to a temp
//! file, are fsynced and renamed over the old one (then the directory is fsynced), so a crash
//! leaves the old file or the new one; reads verify the length and CRC and move a damaged file
//! aside (`*.corrupt`) instead of serving it. Layout:
//! `{dir}/{namespace}/sessions/{session}.json`, `{dir}/{namespace}/histories/{memory_id}.json`.

use std::fs;
use std::path::{Path, PathBuf};

use semantic_chat::Message;
use serde::{Deserialize, Serialize};

use crate::{CoordError, Session};

const MAGIC: &str = "semantic-coord";
const VERSION: u32 = 1;

/// A permanent agent's history, kept between sessions.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StoredHistory {
    /// Every chat message the agent has been given, replies included.
    pub history: Vec<Message>,
    /// Prompt tokens of its last turn.
    pub last_prompt_tokens: Option<usize>,
}

/// Sessions and histories under one directory.
#[derive(Debug, Clone)]
pub struct SessionStore {
    dir: PathBuf,
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> CoordError + '_ {
    move |source| CoordError::Io { path: path.to_owned(), source }
}

impl SessionStore {
    /// A store rooted at `dir` (created on first write).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        SessionStore { dir: dir.into() }
    }

    fn session_path(&self, namespace: &str, id: &str) -> PathBuf {
        self.dir.join(namespace).join("sessions").join(format!("{id}.json"))
    }

    fn history_path(&self, namespace: &str, memory_id: &str) -> PathBuf {
        self.dir.join(namespace).join("histories").join(format!("{memory_id}.json"))
    }

    /// Writes a session atomically.
    pub fn save_session(&self, session: &Session) -> Result<(), CoordError> {
        write_atomic(&self.session_path(&session.namespace, &session.id), session)
    }

    /// Deletes a session's file (absent is fine).
    pub fn delete_session(&self, namespace: &str, id: &str) -> Result<(), CoordError> {
        remove(&self.session_path(namespace, id))
    }

    /// Every stored session that verifies, and what was wrong with those that did not (each
    /// such file is moved aside).
    pub fn load_sessions(&self) -> (Vec<Session>, Vec<CoordError>) {
        let mut sessions = Vec::new();
        let mut problems = Vec::new();
        let Ok(namespaces) = fs::read_dir(&self.dir) else { return (sessions, problems) };
        for ns in namespaces.flatten() {
            let Ok(files) = fs::read_dir(ns.path().join("sessions")) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match read_verified::<Session>(&path) {
                    Ok(session) => sessions.push(session),
                    Err(err) => problems.push(err),
                }
            }
        }
        sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        (sessions, problems)
    }

    /// Writes a permanent agent's history atomically.
    pub fn save_history(&self, namespace: &str, memory_id: &str, history: &StoredHistory) -> Result<(), CoordError> {
        write_atomic(&self.history_path(namespace, memory_id), history)
    }

    /// A permanent agent's stored history (None when there is none or it does not verify).
    pub fn load_history(&self, namespace: &str, memory_id: &str) -> Option<StoredHistory> {
        let path = self.history_path(namespace, memory_id);
        if !path.exists() {
            return None;
        }
        match read_verified(&path) {
            Ok(history) => Some(history),
            Err(err) => {
                tracing::warn!(%err, "a stored agent history did not verify; the agent starts afresh");
                None
            }
        }
    }

    /// Deletes one stored history (absent is fine).
    pub fn delete_history(&self, namespace: &str, memory_id: &str) -> Result<(), CoordError> {
        remove(&self.history_path(namespace, memory_id))
    }

    /// Deletes every stored history of the namespace whose memory id starts with `prefix`;
    /// returns the memory ids deleted.
    pub fn delete_histories_with_prefix(&self, namespace: &str, prefix: &str) -> Result<Vec<String>, CoordError> {
        let dir = self.dir.join(namespace).join("histories");
        let mut deleted = Vec::new();
        let Ok(files) = fs::read_dir(&dir) else { return Ok(deleted) };
        for file in files.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if let Some(id) = name.strip_suffix(".json").filter(|id| id.starts_with(prefix)) {
                remove(&file.path())?;
                deleted.push(id.to_owned());
            }
        }
        deleted.sort();
        Ok(deleted)
    }
}

fn remove(path: &Path) -> Result<(), CoordError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(path)(e)),
    }
}

/// Serializes `value` behind a verified header and replaces `path` atomically
/// ([`semantic_memory::write_atomic`]: temp file, fsync, rename, fsync the directory).
pub fn write_atomic<T: Serialize>(path: &Path, value: &T) -> Result<(), CoordError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| CoordError::Corrupt { path: path.to_owned(), reason: format!("serialize: {e}") })?;
    let mut file = format!("{MAGIC} {VERSION} crc32={:08x} len={}\n", crc32fast::hash(&body), body.len()).into_bytes();
    file.extend_from_slice(&body);
    semantic_memory::write_atomic(path, &file).map_err(io(path))
}

/// Reads a file written by [`write_atomic`]; a damaged one is renamed to `*.corrupt`.
pub fn read_verified<T: for<'de> Deserialize<'de>>(path: &Path) -> Result<T, CoordError> {
    let bytes = fs::read(path).map_err(io(path))?;
    let parsed = parse_verified(&bytes);
    parsed.map_err(|reason| {
        let aside = path.with_extension("json.corrupt");
        let _ = fs::rename(path, &aside);
        CoordError::Corrupt { path: path.to_owned(), reason: format!("{reason}; moved to {}", aside.display()) }
    })
}

fn parse_verified<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, String> {
    let newline = bytes.iter().position(|&b| b == b'\n').ok_or("no header line")?;
    let header = std::str::from_utf8(&bytes[..newline]).map_err(|_| "header is not UTF-8")?;
    let body = &bytes[newline + 1..];
    let fields: Vec<&str> = header.split(' ').collect();
    let [magic, version, crc, len] = fields[..] else { return Err(format!("bad header {header:?}")) };
    if magic != MAGIC {
        return Err(format!("not a {MAGIC} file"));
    }
    if version != VERSION.to_string() {
        return Err(format!("unknown version {version}"));
    }
    let crc = crc.strip_prefix("crc32=").and_then(|c| u32::from_str_radix(c, 16).ok()).ok_or("bad crc field")?;
    let len: usize = len.strip_prefix("len=").and_then(|l| l.parse().ok()).ok_or("bad len field")?;
    if body.len() != len {
        return Err(format!("truncated: {} of {len} bytes", body.len()));
    }
    if crc32fast::hash(body) != crc {
        return Err("checksum mismatch".into());
    }
    serde_json::from_slice(body).map_err(|e| format!("JSON: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histories_round_trip_and_damage_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("hist");
        let store = SessionStore::new(&dir);
        let history = StoredHistory { history: vec![Message::new("system", "hi")], last_prompt_tokens: Some(12) };
        store.save_history("ns", "persist_game_a", &history).unwrap();
        store.save_history("ns", "persist_other_b", &history).unwrap();
        assert_eq!(store.load_history("ns", "persist_game_a"), Some(history.clone()));
        assert_eq!(store.load_history("other", "persist_game_a"), None);
        // Flip one body byte: the CRC catches it and the file is moved aside.
        let path = dir.join("ns/histories/persist_game_a.json");
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(store.load_history("ns", "persist_game_a"), None);
        assert!(dir.join("ns/histories/persist_game_a.json.corrupt").exists());
        assert_eq!(store.delete_histories_with_prefix("ns", "persist_other_").unwrap(), vec!["persist_other_b"]);
        assert_eq!(store.load_history("ns", "persist_other_b"), None);
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn truncation_and_bad_headers_are_reported() {
        for (bytes, want) in [
            (&b"semantic-coord 1 crc32=00000000 len=5\n{}"[..], "truncated"),
            (&b"other 1 crc32=0 len=2\n{}"[..], "not a semantic-coord file"),
            (&b"semantic-coord 9 crc32=0 len=2\n{}"[..], "unknown version"),
            (&b"no newline"[..], "no header"),
        ] {
            let err = parse_verified::<serde_json::Value>(bytes).unwrap_err();
            assert!(err.contains(want), "{err}");
        }
    }
}

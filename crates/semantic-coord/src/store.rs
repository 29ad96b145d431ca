//! `SessionStore`: sessions and permanent agents' histories on disk, next to agent memory. Each
//! file is a header line (`semantic-coord 1 crc32=… len=…`) and a JSON body; writes go to a temp
//! file, are fsynced and renamed over the old one (then the directory is fsynced), so a crash
//! leaves the old file or the new one; reads verify the length and CRC and move a damaged file
//! aside (`*.corrupt`) instead of serving it. Layout:
//! `{dir}/{namespace}/sessions/{session}.json`, `{dir}/{namespace}/histories/{memory_id}.json`,
//! `{dir}/{namespace}/runs/{run}.json` (scenario run records; their shape is the caller's).

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

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
        let (mut sessions, problems) = self.load_all::<Session>("sessions");
        sessions.sort_by(|a, b| (a.created_at, &a.id).cmp(&(b.created_at, &b.id)));
        (sessions, problems)
    }

    /// Writes a scenario run's record atomically.
    pub fn save_run<T: Serialize>(&self, namespace: &str, id: &str, run: &T) -> Result<(), CoordError> {
        write_atomic(&self.dir.join(namespace).join("runs").join(format!("{id}.json")), run)
    }

    /// Deletes a scenario run's record (absent is fine).
    pub fn delete_run(&self, namespace: &str, id: &str) -> Result<(), CoordError> {
        remove(&self.dir.join(namespace).join("runs").join(format!("{id}.json")))
    }

    /// Every stored scenario run record that verifies (in no particular order), and what was
    /// wrong with those that did not (each such file is moved aside).
    pub fn load_runs<T: for<'de> Deserialize<'de>>(&self) -> (Vec<T>, Vec<CoordError>) {
        self.load_all("runs")
    }

    /// Every `{dir}/*/{sub}/*.json` that verifies as a `T`; damaged ones are moved aside.
    fn load_all<T: for<'de> Deserialize<'de>>(&self, sub: &str) -> (Vec<T>, Vec<CoordError>) {
        let mut found = Vec::new();
        let mut problems = Vec::new();
        let Ok(namespaces) = fs::read_dir(&self.dir) else { return (found, problems) };
        for ns in namespaces.flatten() {
            let Ok(files) = fs::read_dir(ns.path().join(sub)) else { continue };
            for file in files.flatten() {
                let path = file.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match read_verified::<T>(&path) {
                    Ok(value) => found.push(value),
                    Err(err) => problems.push(err),
                }
            }
        }
        (found, problems)
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

/// Writes one session's file outside the session's lock without ever letting an older state
/// overwrite a newer one. Under the lock, [`SessionWriter::stamp`] numbers the state taken (a
/// clone); after the lock is released, [`SessionWriter::write`] writes it unless a later-stamped
/// state is already on disk. Writes of one session run one at a time; a state that lost the race
/// is dropped, since the newer one holds everything it held.
#[derive(Debug, Default)]
pub struct SessionWriter {
    stamped: AtomicU64,
    written: Mutex<u64>,
}

impl SessionWriter {
    /// The version of the state about to be taken; call it under the session's lock.
    pub fn stamp(&self) -> u64 {
        self.stamped.fetch_add(1, Ordering::AcqRel) + 1
    }

    /// Writes `session`, taken at `version`; returns false (and writes nothing) when a newer
    /// version was written first.
    pub fn write(&self, store: &SessionStore, version: u64, session: &Session) -> Result<bool, CoordError> {
        // A panic while writing leaves the number of the last whole write: the lock stays usable.
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        if *written >= version {
            return Ok(false);
        }
        store.save_session(session)?;
        *written = version;
        Ok(true)
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
    fn run_records_round_trip_and_a_damaged_one_is_moved_aside() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SessionStore::new(tmp.path());
        let run = serde_json::json!({"id": "run_1", "status": "running"});
        store.save_run("ns", "run_1", &run).unwrap();
        store.save_run("ns", "run_2", &run).unwrap();
        let path = tmp.path().join("ns/runs/run_2.json");
        let bytes = fs::read(&path).unwrap();
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        let (runs, problems) = store.load_runs::<serde_json::Value>();
        assert_eq!(runs, vec![run]);
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(tmp.path().join("ns/runs/run_2.json.corrupt").exists());
        store.delete_run("ns", "run_1").unwrap();
        store.delete_run("ns", "run_1").unwrap();
        assert!(store.load_runs::<serde_json::Value>().0.is_empty());
    }

    /// Session files are written outside the session lock: a state stamped earlier but written
    /// later must not replace the newer file.
    #[test]
    fn an_older_session_state_never_overwrites_a_newer_one() {
        let tmp = tempfile::tempdir().unwrap();
        let store = SessionStore::new(tmp.path());
        use crate::{AgentSpec, Lifecycle, SessionSpec};
        let agent = |id: &str, name: &str| AgentSpec {
            agent_id: id.into(),
            display_name: name.into(),
            role: "participant".into(),
            system_prompt: String::new(),
            lifecycle: Lifecycle::Ephemeral,
        };
        let spec = SessionSpec {
            initial_prompt: "Tea?".into(),
            ..SessionSpec::with_agents(vec![agent("ann", "Ann"), agent("bob", "Bob")])
        };
        let mut session = Session::new("sess_1".into(), "ns".into(), spec, 0, &|_| None).unwrap();
        let writer = SessionWriter::default();
        let (v1, older) = (writer.stamp(), session.clone());
        session.whisper("ann", "bob", "psst", 1).unwrap();
        let (v2, newer) = (writer.stamp(), session.clone());
        assert!(v2 > v1);
        assert!(writer.write(&store, v2, &newer).unwrap());
        assert!(!writer.write(&store, v1, &older).unwrap(), "the older state is dropped");
        let (loaded, problems) = store.load_sessions();
        assert!(problems.is_empty(), "{problems:?}");
        assert_eq!(loaded, vec![newer.clone()]);
        // In order, each write lands.
        let v3 = writer.stamp();
        assert!(writer.write(&store, v3, &older).unwrap());
        assert_eq!(store.load_sessions().0, vec![older]);
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

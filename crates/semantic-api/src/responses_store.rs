//! `ResponseStore`: stored Responses (`store: true`), per API-key namespace, in memory and on disk
//! beside agent memory (`<cache-dir>/responses/<namespace>/<id>.json`). Files use the coordination
//! store's verified format (`semantic_coord::write_atomic` / `read_verified`: header line with
//! CRC32 and length, temp + fsync + rename + dir fsync; a damaged file is moved aside and not
//! served), so no second file format exists. Retention is a count (`--responses-max`): past it the
//! oldest responses are dropped, from memory and disk. It does not own agent memory: deleting a
//! response leaves its chain's agent alone (other responses of the chain may still use it).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One stored response and what a follow-up turn needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct StoredResponse {
    /// `resp_…`.
    pub id: String,
    /// The API-key namespace it belongs to (another key's lookups never see it).
    pub namespace: String,
    /// The first response of its chain: the chain's agent is `resp-<root>`.
    pub root: String,
    /// Milliseconds since the Unix epoch (retention order).
    pub created_ms: u64,
    /// The Response object as returned.
    pub response: Value,
    /// This turn's input items, with ids (`GET /v1/responses/{id}/input_items`).
    pub input_items: Vec<Value>,
    /// The conversation up to and including this turn's output, as chat messages (instructions
    /// excluded: they do not carry over to the next turn).
    pub messages: Vec<Value>,
}

#[derive(Default)]
struct Inner {
    records: HashMap<String, Arc<StoredResponse>>,
    order: BTreeSet<(u64, String)>,
}

/// Stored responses; cheap to share behind an `Arc`.
pub(crate) struct ResponseStore {
    dir: Option<PathBuf>,
    max: usize,
    inner: Mutex<Inner>,
}

/// A response id is `resp_` and hex digits: checked before it names a file.
pub(crate) fn valid_id(id: &str) -> bool {
    id.strip_prefix("resp_")
        .is_some_and(|hex| !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ResponseStore {
    /// A store keeping at most `max` responses, persisted under `dir` (None: memory only). Every
    /// file under `dir` that verifies is loaded; damaged ones are moved aside and logged.
    pub fn load(dir: Option<PathBuf>, max: usize) -> Self {
        let store = ResponseStore { dir, max: max.max(1), inner: Mutex::default() };
        let Some(dir) = &store.dir else { return store };
        let mut loaded = Vec::new();
        for ns in fs::read_dir(dir).into_iter().flatten().flatten() {
            for file in fs::read_dir(ns.path()).into_iter().flatten().flatten() {
                let path = file.path();
                if path.extension().and_then(|e| e.to_str()) != Some("json") {
                    continue;
                }
                match semantic_coord::read_verified::<StoredResponse>(&path) {
                    Ok(record) if valid_id(&record.id) => loaded.push(record),
                    Ok(_) => tracing::warn!(path = %path.display(), "a stored response has an invalid id; skipped"),
                    Err(err) => tracing::warn!(%err, "a stored response did not verify; it is not served"),
                }
            }
        }
        let count = loaded.len();
        let mut inner = Inner::default();
        for record in loaded {
            inner.order.insert((record.created_ms, record.id.clone()));
            inner.records.insert(record.id.clone(), Arc::new(record));
        }
        if let Ok(mut guard) = store.inner.lock() {
            *guard = inner;
        }
        store.enforce_retention();
        tracing::debug!(count, "stored responses loaded");
        store
    }

    fn path(dir: &Path, namespace: &str, id: &str) -> PathBuf {
        dir.join(namespace).join(format!("{id}.json"))
    }

    /// The response `id` of `namespace` (None when unknown, deleted or another namespace's).
    pub fn get(&self, namespace: &str, id: &str) -> Option<Arc<StoredResponse>> {
        let inner = self.inner.lock().ok()?;
        inner.records.get(id).filter(|r| r.namespace == namespace).cloned()
    }

    /// Stores a response (disk first, so what is served survives a restart), then drops the
    /// oldest past the retention limit.
    pub fn put(&self, record: StoredResponse) -> Result<(), semantic_coord::CoordError> {
        if let Some(dir) = &self.dir {
            semantic_coord::write_atomic(&Self::path(dir, &record.namespace, &record.id), &record)?;
        }
        if let Ok(mut inner) = self.inner.lock() {
            inner.order.insert((record.created_ms, record.id.clone()));
            inner.records.insert(record.id.clone(), Arc::new(record));
        }
        self.enforce_retention();
        Ok(())
    }

    /// Deletes a response of `namespace`; false when there was none.
    pub fn delete(&self, namespace: &str, id: &str) -> bool {
        let Ok(mut inner) = self.inner.lock() else { return false };
        let Some(record) = inner.records.get(id).filter(|r| r.namespace == namespace).cloned() else {
            return false;
        };
        inner.records.remove(id);
        inner.order.remove(&(record.created_ms, record.id.clone()));
        drop(inner);
        self.remove_file(&record);
        true
    }

    fn remove_file(&self, record: &StoredResponse) {
        if let Some(dir) = &self.dir {
            let path = Self::path(dir, &record.namespace, &record.id);
            if let Err(err) = fs::remove_file(&path) {
                if err.kind() != std::io::ErrorKind::NotFound {
                    tracing::warn!(%err, path = %path.display(), "could not delete a stored response");
                }
            }
        }
    }

    fn enforce_retention(&self) {
        let dropped: Vec<Arc<StoredResponse>> = {
            let Ok(mut inner) = self.inner.lock() else { return };
            let mut dropped = Vec::new();
            while inner.order.len() > self.max {
                let Some(oldest) = inner.order.pop_first() else { break };
                if let Some(record) = inner.records.remove(&oldest.1) {
                    dropped.push(record);
                }
            }
            dropped
        };
        for record in dropped {
            self.remove_file(&record);
        }
    }

    /// How many responses are stored.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.inner.lock().map(|i| i.records.len()).unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(id: &str, ns: &str, created_ms: u64) -> StoredResponse {
        StoredResponse {
            id: id.into(),
            namespace: ns.into(),
            root: id.into(),
            created_ms,
            response: serde_json::json!({"id": id}),
            input_items: Vec::new(),
            messages: Vec::new(),
        }
    }

    #[test]
    fn ids_are_checked_before_they_name_files() {
        for (id, ok) in [("resp_0a1b", true), ("resp_", false), ("resp_../x", false), ("chatcmpl-1", false)] {
            assert_eq!(valid_id(id), ok, "{id}");
        }
    }

    #[test]
    fn responses_survive_a_reload_and_namespaces_do_not_mix() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("reload");
        let store = ResponseStore::load(Some(dir.clone()), 10);
        store.put(record("resp_01", "a", 1)).expect("put");
        store.put(record("resp_02", "b", 2)).expect("put");
        let again = ResponseStore::load(Some(dir.clone()), 10);
        assert!(again.get("a", "resp_01").is_some());
        assert!(again.get("b", "resp_01").is_none(), "another namespace's response is invisible");
        assert!(!again.delete("b", "resp_01"));
        assert!(again.delete("a", "resp_01"));
        assert!(ResponseStore::load(Some(dir.clone()), 10).get("a", "resp_01").is_none(), "deleted on disk");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("damaged");
        let store = ResponseStore::load(Some(dir.clone()), 10);
        store.put(record("resp_03", "a", 3)).expect("put");
        let path = dir.join("a").join("resp_03.json");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert!(ResponseStore::load(Some(dir.clone()), 10).get("a", "resp_03").is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_go_past_the_retention_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("retention");
        let store = ResponseStore::load(Some(dir.clone()), 2);
        for (i, id) in ["resp_a1", "resp_a2", "resp_a3"].into_iter().enumerate() {
            store.put(record(id, "a", i as u64)).expect("put");
        }
        assert_eq!(store.len(), 2);
        assert!(store.get("a", "resp_a1").is_none());
        assert!(!dir.join("a").join("resp_a1.json").exists());
        assert_eq!(ResponseStore::load(Some(dir.clone()), 1).len(), 1, "a lower limit applies at load");
        let _ = fs::remove_dir_all(&dir);
    }
}

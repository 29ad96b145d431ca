//! `ResponseStore`: stored Responses (`store: true`), per API-key namespace, in memory and on disk
//! beside agent memory (`<cache-dir>/responses/<namespace>/<id>.json`). Files use the coordination
//! store's verified format (`semantic_coord::write_atomic` / `read_verified`: header line with
//! CRC32 and length, temp + fsync + rename + dir fsync; a damaged file is moved aside and not
//! served), so no second file format exists. Retention is a count (`--responses-max`): past it the
//! oldest responses are dropped, from memory and disk; and an age (`--responses-max-age-days`):
//! older responses are dropped at load and whenever one is stored, and read as unknown before
//! that. It does not own agent memory: deleting a response leaves its chain's agent alone (other
//! responses of the chain may still use it).

use std::collections::{BTreeSet, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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

/// How many stored responses are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Most responses kept (at least 1); the oldest go first.
    pub count: usize,
    /// Older responses are dropped (None: kept until `count` pushes them out).
    pub max_age: Option<Duration>,
}

/// Stored responses; cheap to share behind an `Arc`.
pub(crate) struct ResponseStore {
    dir: Option<PathBuf>,
    retention: Retention,
    inner: Mutex<Inner>,
}

/// Milliseconds since the Unix epoch, now.
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A response id is `resp_` and hex digits: checked before it names a file.
pub(crate) fn valid_id(id: &str) -> bool {
    id.strip_prefix("resp_")
        .is_some_and(|hex| !hex.is_empty() && hex.len() <= 64 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

impl ResponseStore {
    /// A store keeping responses as `retention` says, persisted under `dir` (None: memory only). Every
    /// file under `dir` that verifies is loaded (expired ones are then deleted); damaged ones are moved aside and
    /// logged.
    pub fn load(dir: Option<PathBuf>, retention: Retention) -> Self {
        let retention = Retention { count: retention.count.max(1), ..retention };
        let store = ResponseStore { dir, retention, inner: Mutex::default() };
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

    /// The response `id` of `namespace` (None when unknown, deleted, expired or another namespace's).
    pub fn get(&self, namespace: &str, id: &str) -> Option<Arc<StoredResponse>> {
        self.enforce_retention();
        let inner = self.inner.lock().ok()?;
        inner.records.get(id).filter(|r| r.namespace == namespace).cloned()
    }

    /// Responses created before this instant (ms since the epoch) have expired.
    fn cutoff_ms(&self) -> u64 {
        match self.retention.max_age {
            None => 0,
            Some(age) => now_ms().saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)),
        }
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
        self.enforce_retention();
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
            let cutoff = self.cutoff_ms();
            // Bounded: each turn removes one of the stored responses.
            while inner.order.len() > self.retention.count || inner.order.first().is_some_and(|o| o.0 < cutoff) {
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

    fn keep(count: usize) -> Retention {
        Retention { count, max_age: None }
    }

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
        let store = ResponseStore::load(Some(dir.clone()), keep(10));
        store.put(record("resp_01", "a", 1)).expect("put");
        store.put(record("resp_02", "b", 2)).expect("put");
        let again = ResponseStore::load(Some(dir.clone()), keep(10));
        assert!(again.get("a", "resp_01").is_some());
        assert!(again.get("b", "resp_01").is_none(), "another namespace's response is invisible");
        assert!(!again.delete("b", "resp_01"));
        assert!(again.delete("a", "resp_01"));
        assert!(ResponseStore::load(Some(dir.clone()), keep(10)).get("a", "resp_01").is_none(), "deleted on disk");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_damaged_file_is_not_served() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("damaged");
        let store = ResponseStore::load(Some(dir.clone()), keep(10));
        store.put(record("resp_03", "a", 3)).expect("put");
        let path = dir.join("a").join("resp_03.json");
        let mut bytes = fs::read(&path).expect("read");
        let last = bytes.len() - 2;
        bytes[last] ^= 1;
        fs::write(&path, bytes).expect("write");
        assert!(ResponseStore::load(Some(dir.clone()), keep(10)).get("a", "resp_03").is_none());
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn the_oldest_go_past_the_retention_limit() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("retention");
        let store = ResponseStore::load(Some(dir.clone()), keep(2));
        for (i, id) in ["resp_a1", "resp_a2", "resp_a3"].into_iter().enumerate() {
            store.put(record(id, "a", i as u64)).expect("put");
        }
        assert_eq!(store.len(), 2);
        assert!(store.get("a", "resp_a1").is_none());
        assert!(!dir.join("a").join("resp_a1.json").exists());
        assert_eq!(ResponseStore::load(Some(dir.clone()), keep(1)).len(), 1, "a lower limit applies at load");
        let _ = fs::remove_dir_all(&dir);
    }

    #[test]
    fn expired_responses_are_dropped_at_load_and_unknown_on_access() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("age");
        const DAY_MS: u64 = 86_400_000;
        let month = Retention { count: 10, max_age: Some(Duration::from_secs(30 * 86_400)) };
        let forever = ResponseStore::load(Some(dir.clone()), keep(10));
        forever.put(record("resp_b1", "a", now_ms() - 31 * DAY_MS)).expect("put");
        forever.put(record("resp_b2", "a", now_ms() - 29 * DAY_MS)).expect("put");
        assert!(forever.get("a", "resp_b1").is_some(), "no age limit: kept");
        let store = ResponseStore::load(Some(dir.clone()), month);
        assert!(store.get("a", "resp_b1").is_none());
        assert!(!dir.join("a").join("resp_b1.json").exists(), "deleted at load");
        assert!(store.get("a", "resp_b2").is_some());
        // A response that expires while the server runs (here: put in behind the store's back, already old).
        let old = record("resp_b3", "a", now_ms() - 40 * DAY_MS);
        semantic_coord::write_atomic(&dir.join("a").join("resp_b3.json"), &old).expect("write");
        if let Ok(mut inner) = store.inner.lock() {
            inner.order.insert((old.created_ms, old.id.clone()));
            inner.records.insert(old.id.clone(), Arc::new(old));
        }
        assert!(store.get("a", "resp_b3").is_none(), "expired is unknown");
        assert!(!store.delete("a", "resp_b3"), "and cannot be deleted twice");
        assert!(!dir.join("a").join("resp_b3.json").exists(), "deleted on access");
        assert_eq!(store.len(), 1);
    }
}

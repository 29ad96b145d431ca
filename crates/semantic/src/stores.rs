//! The agent stores of a cache directory for the offline commands: one per model
//! (`<cache>/models/<fingerprint prefix>/agents/`, where a server keeps each model's agents) and
//! the single-model layout of earlier versions (`<cache>/agents/`). Opened read-only: nothing is
//! created or swept, so the commands are harmless next to a running server. Each store carries
//! the configured encryption key, so encrypted agent files read like plaintext ones.

use std::fs;
use std::path::Path;

use anyhow::{bail, Result};
use semantic_config::Config;
use semantic_engine::Fingerprint;
use semantic_memory::{read_header, AgentKey, DiskStore, MasterKey};

/// Every store under the configured cache directory, with the configured encryption key.
pub fn for_reading(config: &Config) -> Result<Vec<DiskStore>> {
    for_reading_with(&config.cache_dir, crate::encryption::config_key(config)?)
}

/// Every store under `cache_dir` (the old layout first, then the models' in name order), opening
/// encrypted files with `key`. Empty when the directory holds none.
pub fn for_reading_with(cache_dir: &Path, key: Option<MasterKey>) -> Result<Vec<DiskStore>> {
    let mut stores = Vec::new();
    push_store(&mut stores, cache_dir)?;
    let models = cache_dir.join("models");
    if let Ok(listing) = fs::read_dir(&models) {
        let mut roots: Vec<_> = listing.filter_map(|e| e.ok()).map(|e| e.path()).filter(|p| p.is_dir()).collect();
        roots.sort();
        for root in roots {
            push_store(&mut stores, &root)?;
        }
    }
    Ok(stores.into_iter().map(|s| s.with_key(key.clone())).collect())
}

fn push_store(stores: &mut Vec<DiskStore>, root: &Path) -> Result<()> {
    match DiskStore::open_read_only(root) {
        Ok(store) => stores.push(store),
        Err(e) if e.is_not_found() => {}
        Err(e) => return Err(e.into()),
    }
    Ok(())
}

/// The store holding `key`. Where several models hold an agent of that name, `model` (the
/// `--model` flag's fingerprint) chooses; without it that is an error naming them.
pub fn holding<'a>(
    stores: &'a [DiskStore],
    key: &AgentKey,
    model: Option<Fingerprint>,
) -> Result<Option<&'a DiskStore>> {
    let mut found: Vec<(&DiskStore, Fingerprint)> = Vec::new();
    for store in stores {
        let path = store.path_for(key);
        if !path.exists() {
            continue;
        }
        // A damaged header still names the file; the command then reports the damage.
        let fingerprint =
            read_header(&path, store.key()).map(|(h, _)| Fingerprint(h.fingerprint)).unwrap_or(Fingerprint([0; 32]));
        found.push((store, fingerprint));
    }
    if let Some(model) = model {
        if let Some((store, _)) = found.iter().find(|(_, f)| *f == model) {
            return Ok(Some(store));
        }
    }
    match found.as_slice() {
        [] => Ok(None),
        [(store, _)] => Ok(Some(store)),
        many => {
            let models: Vec<String> = many.iter().map(|(_, f)| format!("sha256:{}", &f.to_hex()[..12])).collect();
            bail!("agent {key} exists under {} models ({}); pass --model to choose", many.len(), models.join(", "))
        }
    }
}

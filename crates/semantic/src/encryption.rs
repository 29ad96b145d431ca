//! Encryption at rest as the binary sees it: loading the master key named by
//! `--encryption-key-file` (refused at start when unusable, with a warning when others can read
//! the file) and the offline `semantic cache rekey` command. The format and the cryptography live
//! in `semantic-memory` (`key.rs`, `sealed.rs`).

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args;
use semantic_config::Config;
use semantic_memory::{key_file_is_shared, DiskStore, MasterKey};

use crate::cli::CommonArgs;

/// Reads the master key named by `path`, if any. An unusable file is an error that names the file
/// and what is wrong (never its contents); a file its group or others can read is a warning.
pub fn load_key(path: Option<&Path>) -> Result<Option<MasterKey>> {
    let Some(path) = path else { return Ok(None) };
    // The error names the file and the problem ("encryption key file PATH: ..."), never the contents.
    let key = MasterKey::read_file(path)?;
    if key_file_is_shared(path) {
        tracing::warn!(path = %path.display(), "the encryption key file is readable by its group or others; chmod 600 it");
    }
    Ok(Some(key))
}

/// The master key of a resolved configuration (None: encryption at rest is off).
pub fn config_key(config: &Config) -> Result<Option<MasterKey>> {
    load_key(config.encryption_key_file.as_deref())
}

/// `semantic cache rekey`: re-encrypt every agent file under a new master key.
#[derive(Debug, Args)]
pub struct RekeyArgs {
    /// The key the files are encrypted with now.
    #[arg(long)]
    old_key_file: Option<PathBuf>,
    /// The key to encrypt them with.
    #[arg(long)]
    new_key_file: PathBuf,
    /// Also encrypt plaintext agent files (a cache made without a key, or files not saved since
    /// encryption was turned on). Without it they are counted and left as they are.
    #[arg(long)]
    from_plaintext: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// What a rekey did.
#[derive(Debug, Default, PartialEq, Eq)]
struct RekeyCounts {
    rotated: usize,
    encrypted: usize,
    plaintext_left: usize,
    failed: Vec<(PathBuf, String)>,
}

/// Runs `semantic cache rekey`: with the cache lock held (no server may run), each file readable
/// under the old key (or plaintext, with `--from-plaintext`) is read, verified and rewritten
/// under the new key through the store's crash-safe write (temporary file, fsync, rename), so a
/// crash leaves every file whole under one key or the other. Exits non-zero if any file failed.
pub fn rekey(args: &RekeyArgs) -> Result<()> {
    let config = args.common.resolve()?;
    if args.old_key_file.is_none() && !args.from_plaintext {
        bail!("pass --old-key-file (the current key), --from-plaintext, or both");
    }
    let old = load_key(args.old_key_file.as_deref())?;
    let new = load_key(Some(&args.new_key_file))?.context("--new-key-file holds no key")?;
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    let stores = crate::stores::for_reading_with(&config.cache_dir, old)?;
    if stores.is_empty() {
        bail!("{} has no agents/ directory (not a cache directory?)", config.cache_dir.display());
    }
    let mut counts = RekeyCounts::default();
    for store in &stores {
        rekey_store(store, &new, args.from_plaintext, &mut counts)?;
    }
    let mut out = String::new();
    for (path, reason) in &counts.failed {
        out.push_str(&format!("FAILED {}: {reason}\n", path.display()));
    }
    out.push_str(&format!(
        "rekeyed {} file(s), encrypted {} plaintext file(s), left {} plaintext, {} failed\n",
        counts.rotated,
        counts.encrypted,
        counts.plaintext_left,
        counts.failed.len()
    ));
    print!("{out}");
    if !counts.failed.is_empty() {
        bail!("{} agent file(s) could not be rekeyed (wrong --old-key-file, or damaged)", counts.failed.len());
    }
    Ok(())
}

fn rekey_store(store: &DiskStore, new: &MasterKey, from_plaintext: bool, counts: &mut RekeyCounts) -> Result<()> {
    let writer = DiskStore::open_read_only(store.root())?.with_key(Some(new.clone()));
    let report = store.scan();
    for (path, err) in &report.rejected {
        counts.failed.push((path.clone(), err.to_string()));
    }
    for (header, _) in &report.entries {
        if !header.encrypted && !from_plaintext {
            counts.plaintext_left += 1;
            continue;
        }
        let key = header.key();
        let written = store
            .read(&key, &crate::agents_cli::compat_of(header))
            .and_then(|(full, payload)| writer.write(&full, &payload));
        match written {
            Ok(_) if header.encrypted => counts.rotated += 1,
            Ok(_) => counts.encrypted += 1,
            Err(e) => counts.failed.push((store.path_for(&key), e.to_string())),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use semantic_memory::{AgentId, Namespace, SnapshotHeader};

    fn header(agent: &str) -> SnapshotHeader {
        SnapshotHeader {
            namespace: Namespace::parse("tenant").unwrap(),
            agent: AgentId::parse(agent).unwrap(),
            fingerprint: [3; 32],
            state_layout: 0x101,
            n_ctx: 512,
            tokens: vec![1, 2, 3],
            created_ms: 1,
            updated_ms: 2,
            pinned: false,
            payload_len: 0,
            header_crc: 0,
            encrypted: false,
        }
    }

    #[test]
    fn rekey_rotates_encrypted_files_and_encrypts_plaintext_ones_on_request() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let (a, b) = (MasterKey::from_bytes([1; 32]), MasterKey::from_bytes([2; 32]));
        DiskStore::open(&dir).unwrap().with_key(Some(a.clone())).write(&header("sealed"), b"kv-1").unwrap();
        DiskStore::open(&dir).unwrap().write(&header("plain"), b"kv-2").unwrap();
        let old = DiskStore::open_read_only(&dir).unwrap().with_key(Some(a.clone()));
        let mut counts = RekeyCounts::default();
        rekey_store(&old, &b, false, &mut counts).unwrap();
        assert_eq!((counts.rotated, counts.encrypted, counts.plaintext_left, counts.failed.len()), (1, 0, 1, 0));
        let new = DiskStore::open_read_only(&dir).unwrap().with_key(Some(b.clone()));
        let mut counts = RekeyCounts::default();
        rekey_store(&new, &b, true, &mut counts).unwrap();
        assert_eq!((counts.rotated, counts.encrypted, counts.plaintext_left), (1, 1, 0));
        let report = new.scan();
        assert_eq!(report.entries.len(), 2);
        assert!(report.entries.iter().all(|(h, _)| h.encrypted));
        let (_, payload) = new.read(&header("plain").key(), &crate::agents_cli::compat_of(&header("plain"))).unwrap();
        assert_eq!(&payload[..], b"kv-2");
        let mut counts = RekeyCounts::default();
        rekey_store(&old, &b, true, &mut counts).unwrap();
        assert_eq!(counts.failed.len(), 2, "the old key opens nothing any more");
    }
}

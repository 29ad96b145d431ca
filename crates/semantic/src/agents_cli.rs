//! Offline tools on a cache directory while the server is stopped: `semantic agents
//! ls|show|rm|pin|unpin|export|import|move-namespace`, `semantic cache verify`, and the hidden
//! `semantic cache stress-write` that the kill -9 test runs. Commands that write take the cache
//! directory's lock (one process per cache directory); read-only ones do not. Owns presentation and the CLI's policy (refuse to
//! overwrite without `--force`, what counts as damage); does not own the file format, paths or
//! crash-safe writes (`semantic_memory::DiskStore` and `semantic_memory::write_atomic` do).

use std::io::{self, Write};
use std::path::PathBuf;
use std::time::UNIX_EPOCH;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use semantic_config::Config;
use semantic_engine::{ContextInfo, Fingerprint, KvType};
use semantic_memory::{
    encode, read_header, read_snapshot, AgentId, AgentKey, Compat, DiskStore, MemoryError, Namespace, PageBuf,
    SnapshotHeader,
};

use crate::cli::CommonArgs;

/// `semantic agents ...`: inspect and edit stored agents.
#[derive(Debug, Args)]
pub struct AgentsArgs {
    #[command(subcommand)]
    command: AgentsCommand,
}

#[derive(Debug, Subcommand)]
enum AgentsCommand {
    /// List stored agents: namespace, id, tokens, file size, last update, pinned, KV type, model.
    Ls(LsArgs),
    /// Print one agent's header and first/last tokens, and verify its checksums.
    Show(AgentArgs),
    /// Delete one agent's file.
    Rm(AgentArgs),
    /// Pin an agent (never evicted); rewrites its file atomically.
    Pin(AgentArgs),
    /// Unpin an agent; rewrites its file atomically.
    Unpin(AgentArgs),
    /// Copy an agent's verified snapshot to FILE (same format).
    Export(ExportArgs),
    /// Verify a snapshot FILE fully and add it to the cache directory under the agent it names.
    Import(ImportArgs),
    /// Move every agent of one namespace to another, e.g. after rotating an API key:
    /// `--from-key OLD --to-key NEW` (or `--from NS` / `--to NS`).
    MoveNamespace(crate::agents_move::MoveArgs),
}

#[derive(Debug, Args)]
struct LsArgs {
    /// Only this namespace [default: the namespaces of the API keys given (--api-key,
    /// --api-key-file, SEMANTIC_API_KEYS), else all].
    #[arg(long)]
    namespace: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct AgentArgs {
    /// The agent id.
    id: String,
    /// The agent's namespace [default: the namespace of the one API key given with --api-key
    /// (or --api-key-file, SEMANTIC_API_KEYS), else `default`].
    #[arg(long)]
    namespace: Option<String>,
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct ExportArgs {
    #[command(flatten)]
    agent: AgentArgs,
    /// Where to write the snapshot.
    file: PathBuf,
    /// Replace FILE if it exists.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct ImportArgs {
    /// A snapshot file (for example from `semantic agents export`). With `--model` (or
    /// SEMANTIC_MODEL) it must have been made by that model; otherwise only its integrity is checked.
    file: PathBuf,
    /// Replace the agent if the cache directory already has it.
    #[arg(long)]
    force: bool,
    #[command(flatten)]
    common: CommonArgs,
}

/// `semantic cache ...`: whole-directory checks.
#[derive(Debug, Args)]
pub struct CacheArgs {
    #[command(subcommand)]
    command: CacheCommand,
}

#[derive(Debug, Subcommand)]
enum CacheCommand {
    /// Check every agent file fully; print each bad one with its reason; exit non-zero on any.
    ///
    /// With `--model` (or SEMANTIC_MODEL), files made by another model count as bad too.
    Verify(VerifyArgs),
    /// Re-encrypt every agent file under a new master key (offline: takes the cache lock).
    ///
    /// Each file is rewritten atomically (temporary file, fsync, rename). `--from-plaintext` also
    /// encrypts plaintext files. Prints how many files were rekeyed, encrypted and failed.
    Rekey(crate::encryption::RekeyArgs),
    /// Test aid: write COUNT random snapshots, printing a line before and after each (for kill -9 tests).
    #[command(hide = true)]
    StressWrite(StressWriteArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    #[command(flatten)]
    common: CommonArgs,
}

#[derive(Debug, Args)]
struct StressWriteArgs {
    /// How many snapshots to write.
    #[arg(long)]
    count: u64,
    /// Seed for sizes and contents [default: random].
    #[arg(long)]
    seed: Option<u64>,
    #[command(flatten)]
    common: CommonArgs,
}

/// Runs a `semantic agents` subcommand.
pub fn run_agents(args: AgentsArgs) -> Result<()> {
    match args.command {
        AgentsCommand::Ls(args) => ls(&args),
        AgentsCommand::Show(args) => show(&args),
        AgentsCommand::Rm(args) => rm(&args),
        AgentsCommand::Pin(args) => set_pinned(&args, PinState::Pinned),
        AgentsCommand::Unpin(args) => set_pinned(&args, PinState::Unpinned),
        AgentsCommand::Export(args) => export(&args),
        AgentsCommand::Import(args) => import(&args),
        AgentsCommand::MoveNamespace(args) => crate::agents_move::move_namespace(&args),
    }
}

/// Runs a `semantic cache` subcommand.
pub fn run_cache(args: CacheArgs) -> Result<()> {
    match args.command {
        CacheCommand::Verify(args) => verify(&args),
        CacheCommand::Rekey(args) => crate::encryption::rekey(&args),
        CacheCommand::StressWrite(args) => stress_write(&args),
    }
}

fn ls(args: &LsArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let namespaces: Option<Vec<Namespace>> = match &args.namespace {
        Some(ns) => Some(vec![parse_namespace(ns)?]),
        None if !config.api_keys.is_empty() => {
            eprintln!(
                "showing the namespaces of the {} API key(s) given (--namespace NS for another)",
                config.api_keys.len()
            );
            Some(config.api_keys.iter().map(|k| semantic_api::namespace_for_key(k)).collect())
        }
        None => None,
    };
    let stores = crate::stores::for_reading(&config)?;
    if stores.is_empty() {
        eprintln!("no agents: {} has no agents/ directory", config.cache_dir.display());
        return Ok(());
    }
    let mut report = semantic_memory::ScanReport::default();
    for store in &stores {
        let one = store.scan();
        report.entries.extend(one.entries);
        report.rejected.extend(one.rejected);
    }
    report.entries.sort_by(|a, b| {
        (&a.0.namespace, &a.0.agent, a.0.fingerprint).cmp(&(&b.0.namespace, &b.0.agent, b.0.fingerprint))
    });
    let rows: Vec<Vec<String>> = report
        .entries
        .iter()
        .filter(|(h, _)| namespaces.as_ref().is_none_or(|list| list.contains(&h.namespace)))
        .map(|(h, bytes)| {
            vec![
                h.namespace.to_string(),
                h.agent.to_string(),
                h.tokens.len().to_string(),
                bytes.to_string(),
                format_ms(h.updated_ms),
                yes_no(h.pinned).to_string(),
                kv_name(h.state_layout),
                Fingerprint(h.fingerprint).to_hex()[..12].to_string(),
            ]
        })
        .collect();
    let columns = [
        ("NAMESPACE", Align::Left),
        ("AGENT", Align::Left),
        ("TOKENS", Align::Right),
        ("BYTES", Align::Right),
        ("UPDATED (UTC)", Align::Left),
        ("PINNED", Align::Left),
        ("KV", Align::Left),
        ("MODEL", Align::Left),
    ];
    emit(&table(&columns, &rows))?;
    if !report.rejected.is_empty() {
        eprintln!(
            "{} file(s) in {} cannot be read; run `semantic cache verify` for details",
            report.rejected.len(),
            config.cache_dir.display()
        );
    }
    Ok(())
}

/// How many tokens `show` prints from each end.
const SHOW_TOKENS: usize = 16;

fn show(args: &AgentArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let key = agent_key(args, &config)?;
    let stores = crate::stores::for_reading(&config)?;
    let Some(store) = holding(&stores, &key, &args.common, &config)? else { bail!(no_such_agent(&key, &config)) };
    let path = store.path_for(&key);
    let (header, file_len) = match read_header(&path, store.key()) {
        Err(e) if e.is_not_found() => bail!(no_such_agent(&key, &config)),
        other => other.with_context(|| format!("agent {key}"))?,
    };
    let checked = store.read(&key, &compat_of(&header));
    let n = header.tokens.len();
    let mut out = String::new();
    let mut line = |label: &str, value: String| out.push_str(&format!("{label:<14} {value}\n"));
    line("agent:", key.to_string());
    line("file:", path.display().to_string());
    line("file bytes:", file_len.to_string());
    line("payload bytes:", header.payload_len.to_string());
    line("tokens:", n.to_string());
    line("first tokens:", format!("{:?}", &header.tokens[..n.min(SHOW_TOKENS)]));
    line("last tokens:", format!("{:?}", &header.tokens[n.saturating_sub(SHOW_TOKENS)..]));
    line("model:", format!("sha256:{}", Fingerprint(header.fingerprint).to_hex()));
    line("kv type:", kv_name(header.state_layout));
    line("n_ctx:", header.n_ctx.to_string());
    line("created:", format!("{} ({} ms)", format_ms(header.created_ms), header.created_ms));
    line("updated:", format!("{} ({} ms)", format_ms(header.updated_ms), header.updated_ms));
    line("pinned:", yes_no(header.pinned).to_string());
    let version = if header.encrypted { semantic_memory::VERSION } else { semantic_memory::PLAINTEXT_VERSION };
    let sealed = if header.encrypted { "encrypted" } else { "plaintext" };
    line("format:", format!("version {version} ({sealed}), header crc {:08x}", header.header_crc));
    line(
        "checksums:",
        match &checked {
            Ok(_) => "ok".to_string(),
            Err(e) => format!("FAILED ({})", describe(e)),
        },
    );
    emit(&out)?;
    match checked {
        Ok(_) => Ok(()),
        Err(e) => Err(e).with_context(|| format!("agent {key} is damaged")),
    }
}

fn rm(args: &AgentArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let key = agent_key(args, &config)?;
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    let stores = crate::stores::for_reading(&config)?;
    let Some(store) = holding(&stores, &key, &args.common, &config)? else { bail!(no_such_agent(&key, &config)) };
    store.remove(&key)?;
    emit(&format!("removed {key}\n"))
}

/// What `pin`/`unpin` set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PinState {
    Pinned,
    Unpinned,
}

fn set_pinned(args: &AgentArgs, want: PinState) -> Result<()> {
    let config = args.common.resolve()?;
    let key = agent_key(args, &config)?;
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    let stores = crate::stores::for_reading(&config)?;
    let Some(store) = holding(&stores, &key, &args.common, &config)? else { bail!(no_such_agent(&key, &config)) };
    let (mut header, payload) = read_verified(store, &key, &config)?;
    let pinned = want == PinState::Pinned;
    let word = if pinned { "pinned" } else { "unpinned" };
    if header.pinned == pinned {
        return emit(&format!("{key} is already {word}\n"));
    }
    // Only the flag changes: the content (and so `updated_ms`) is the same agent memory.
    header.pinned = pinned;
    store.write(&header, &payload)?;
    emit(&format!("{word} {key}\n"))
}

fn export(args: &ExportArgs) -> Result<()> {
    let config = args.agent.common.resolve()?;
    let key = agent_key(&args.agent, &config)?;
    let stores = crate::stores::for_reading(&config)?;
    let Some(store) = holding(&stores, &key, &args.agent.common, &config)? else { bail!(no_such_agent(&key, &config)) };
    let (header, payload) = read_verified(store, &key, &config)?;
    if args.file.exists() && !args.force {
        bail!("{} exists; pass --force to replace it", args.file.display());
    }
    // Re-encoding the verified header and payload gives the original bytes (the encoding is
    // deterministic) and guarantees that what lands in FILE is what was checked.
    let bytes = encode(&header, &payload)?;
    semantic_memory::write_atomic(&args.file, &bytes).with_context(|| format!("writing {}", args.file.display()))?;
    emit(&format!(
        "exported {key} ({} tokens, {} bytes) to {}\n",
        header.tokens.len(),
        bytes.len(),
        args.file.display()
    ))
}

fn import(args: &ImportArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let file = &args.file;
    let key = crate::encryption::config_key(&config)?;
    let (found, _) = read_header(file, key.as_ref()).with_context(|| format!("cannot import {}", file.display()))?;
    let compat = match args.common.model_flag() {
        Some(_) => Compat { fingerprint: model_fingerprint(&config)?.0, state_layout: found.state_layout },
        None => compat_of(&found),
    };
    let (header, payload) =
        read_snapshot(file, &compat, key.as_ref()).with_context(|| format!("cannot import {}", file.display()))?;
    let agent = header.key();
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    // Into the directory of the model that made it, where a server of that model looks.
    let store = DiskStore::open(&semantic_memory::model_root(&config.cache_dir, &header.fingerprint))?.with_key(key);
    if store.path_for(&agent).exists() && !args.force {
        bail!("agent {agent} already exists in {}; pass --force to replace it", config.cache_dir.display());
    }
    let bytes = store.write(&header, &payload)?;
    emit(&format!("imported {agent} ({} tokens, {bytes} bytes)\n", header.tokens.len()))
}

fn verify(args: &VerifyArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let stores = crate::stores::for_reading(&config)?;
    if stores.is_empty() {
        bail!("{} has no agents/ directory (not a cache directory?)", config.cache_dir.display());
    }
    let model = match args.common.model_flag() {
        Some(_) => Some(model_fingerprint(&config)?),
        None => None,
    };
    let mut bad: Vec<(PathBuf, String)> = Vec::new();
    let mut total = 0;
    for store in &stores {
        let (checked, found) = verify_store(store, model);
        total += checked;
        bad.extend(found);
    }
    bad.sort();
    let mut out = String::new();
    for (path, reason) in &bad {
        out.push_str(&format!("BAD {}: {reason}\n", path.display()));
    }
    let against = model.map_or(String::new(), |m| format!(" against model sha256:{}", m.to_hex()));
    out.push_str(&format!("{total} file(s) checked{against}: {} ok, {} bad\n", total - bad.len(), bad.len()));
    emit(&out)?;
    if !bad.is_empty() {
        bail!("{} of {total} agent file(s) in {} are damaged or unusable", bad.len(), config.cache_dir.display());
    }
    Ok(())
}

/// Checks every file of one store fully: returns how many files it holds and the bad ones.
fn verify_store(store: &DiskStore, model: Option<Fingerprint>) -> (usize, Vec<(PathBuf, String)>) {
    let report = store.scan();
    let mut bad: Vec<(PathBuf, String)> = report.rejected.iter().map(|(p, e)| (p.clone(), describe(e))).collect();
    for (header, _) in &report.entries {
        let key = header.key();
        let fingerprint = model.map_or(header.fingerprint, |m| m.0);
        match store.read(&key, &Compat { fingerprint, state_layout: header.state_layout }) {
            Ok((full, _)) if ContextInfo::parse_state_layout(full.state_layout).is_none() => {
                bad.push((store.path_for(&key), format!("unknown state layout code {:#x}", full.state_layout)));
            }
            Ok(_) => {}
            Err(e) => bad.push((store.path_for(&key), describe(&e))),
        }
    }
    (report.entries.len() + report.rejected.len(), bad)
}

/// The store holding an agent, among the cache directory's stores (`--model` chooses where
/// several models hold the name).
fn holding<'a>(
    stores: &'a [DiskStore],
    key: &AgentKey,
    common: &CommonArgs,
    config: &Config,
) -> Result<Option<&'a DiskStore>> {
    let model = match common.model_flag() {
        Some(_) => Some(model_fingerprint(config)?),
        None => None,
    };
    crate::stores::holding(stores, key, model)
}

/// Fingerprint written into stress-test snapshots (no model is involved).
const STRESS_FINGERPRINT: [u8; 32] = [0x5e; 32];

fn stress_write(args: &StressWriteArgs) -> Result<()> {
    let config = args.common.resolve()?;
    let _lock = crate::serve::lock_cache_dir(&config.cache_dir)?;
    let store = DiskStore::open(&config.cache_dir)?.with_key(crate::encryption::config_key(&config)?);
    let mut rng = match args.seed {
        Some(seed) => StdRng::seed_from_u64(seed),
        None => StdRng::from_entropy(),
    };
    let mut stdout = io::stdout().lock();
    for i in 0..args.count {
        let agent = AgentId::parse(&format!("stress-{}", rng.gen_range(0..8)))?;
        let tokens: Vec<i32> = (0..rng.gen_range(0..4096)).map(|_| rng.gen_range(0..50_000)).collect();
        // One repeated byte: cheap to make, so the child spends its time inside the write, where
        // the kill -9 test wants to land.
        let payload = vec![rng.gen::<u8>(); rng.gen_range(0..1 << 20)];
        let now = semantic_scheduler::now_ms();
        let header = SnapshotHeader {
            encrypted: false,
            namespace: Namespace::default_ns(),
            agent,
            fingerprint: STRESS_FINGERPRINT,
            state_layout: u16::from(KvType::F16.code()) | ContextInfo::PER_SEQUENCE_STREAMS,
            n_ctx: 4096,
            tokens,
            created_ms: now,
            updated_ms: now,
            pinned: rng.gen(),
            payload_len: 0,
            header_crc: 0,
        };
        // A line before and after each write, so a test that kills after k lines lands both
        // inside writes and between them.
        writeln!(stdout, "writing {i} {}", header.key())?;
        stdout.flush()?;
        let bytes = store.write(&header, &payload)?;
        writeln!(stdout, "wrote {i} {} {bytes}", header.key())?;
        stdout.flush()?;
    }
    Ok(())
}

/// Reads an agent's file fully, checked against the model and KV type its own header names.
fn read_verified(store: &DiskStore, key: &AgentKey, config: &Config) -> Result<(SnapshotHeader, PageBuf)> {
    let path = store.path_for(key);
    let (header, _) = match read_header(&path, store.key()) {
        Err(e) if e.is_not_found() => bail!(no_such_agent(key, config)),
        other => other.with_context(|| format!("agent {key}"))?,
    };
    store.read(key, &compat_of(&header)).with_context(|| format!("agent {key}"))
}

/// The compatibility a file claims for itself: integrity checks only, no model judgement.
pub(crate) fn compat_of(header: &SnapshotHeader) -> Compat {
    Compat { fingerprint: header.fingerprint, state_layout: header.state_layout }
}

fn model_fingerprint(config: &Config) -> Result<Fingerprint> {
    Fingerprint::of_file_cached(&config.model, Some(&config.cache_dir.join("fingerprints")))
        .with_context(|| format!("fingerprinting the model {}", config.model.display()))
}

fn agent_key(args: &AgentArgs, config: &Config) -> Result<AgentKey> {
    let agent = AgentId::parse(&args.id).with_context(|| format!("agent id {:?}", args.id))?;
    let namespace = match (&args.namespace, config.api_keys.as_slice()) {
        (Some(ns), _) => parse_namespace(ns)?,
        (None, []) => Namespace::default_ns(),
        (None, [key]) => semantic_api::namespace_for_key(key),
        (None, keys) => bail!(
            "{} API keys are configured, so the agent's namespace is ambiguous: pass --namespace, or one --api-key",
            keys.len()
        ),
    };
    Ok(AgentKey::new(namespace, agent))
}

/// Parses a namespace given on the command line.
pub(crate) fn parse_namespace(s: &str) -> Result<Namespace> {
    Namespace::parse(s).with_context(|| format!("namespace {s:?}"))
}

fn no_such_agent(key: &AgentKey, config: &Config) -> String {
    format!("no agent {key} in {}", config.cache_dir.display())
}

/// Why a file is unusable, without repeating its path.
fn describe(err: &MemoryError) -> String {
    match err {
        MemoryError::Corrupt { reason, .. } => format!("corrupt: {reason}"),
        MemoryError::UnsupportedVersion { version, .. } => format!("unsupported format version {version}"),
        MemoryError::Foreign { reason, .. } => format!("foreign: {reason}"),
        MemoryError::Sealed { reason, .. } => format!("encrypted: {reason}"),
        other => other.to_string(),
    }
}

/// A header's state layout (`ContextInfo::state_layout`) as text: the KV type, whether V is
/// stored transposed (flash attention off), and "unified" for a file of the old shared cache.
fn kv_name(code: u16) -> String {
    match ContextInfo::parse_state_layout(code) {
        Some(layout) => {
            let mut name = layout.kv_type.to_string();
            if layout.v_transposed {
                name.push_str(" (no FA)");
            }
            if !layout.per_sequence_streams {
                name.push_str(" (unified cache)");
            }
            name
        }
        None => format!("code {code:#x}"),
    }
}

fn yes_no(b: bool) -> &'static str {
    if b {
        "yes"
    } else {
        "no"
    }
}

/// Writes to stdout, reporting a closed pipe as an error instead of panicking like `print!`.
pub(crate) fn emit(text: &str) -> Result<()> {
    let mut out = io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

#[derive(Debug, Clone, Copy)]
enum Align {
    Left,
    Right,
}

/// A plain-text table: a header row and columns padded to their widest cell.
fn table(columns: &[(&str, Align)], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = columns.iter().map(|(h, _)| h.len()).collect();
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.len());
        }
    }
    let header: Vec<String> = columns.iter().map(|(h, _)| h.to_string()).collect();
    let mut out = String::new();
    for row in std::iter::once(&header).chain(rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(columns)
            .zip(&widths)
            .map(|((cell, (_, align)), &w)| match align {
                Align::Left => format!("{cell:<w$}"),
                Align::Right => format!("{cell:>w$}"),
            })
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// Unix milliseconds as `YYYY-MM-DDTHH:MM:SSZ` (UTC), with the calendar code chat templates use.
fn format_ms(ms: u64) -> String {
    semantic_chat::strftime_utc(UNIX_EPOCH + std::time::Duration::from_millis(ms), "%Y-%m-%dT%H:%M:%SZ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(ms: u64, expected: &str) {
        assert_eq!(format_ms(ms), expected, "{ms}");
    }

    #[test]
    fn formats_utc_times() {
        check(0, "1970-01-01T00:00:00Z");
        check(999, "1970-01-01T00:00:00Z");
        check(951_782_400_000, "2000-02-29T00:00:00Z");
        check(951_868_799_000, "2000-02-29T23:59:59Z");
        check(1_700_000_000_000, "2023-11-14T22:13:20Z");
        check(4_102_444_800_000, "2100-01-01T00:00:00Z");
    }

    #[test]
    fn tables_pad_columns_and_trim_line_ends() {
        let rows = vec![vec!["a".into(), "1".into(), "x".into()], vec!["long-name".into(), "12345".into(), "".into()]];
        let got = table(&[("NAME", Align::Left), ("N", Align::Right), ("Z", Align::Left)], &rows);
        assert_eq!(got, "NAME           N  Z\na              1  x\nlong-name  12345\n");
    }

    #[test]
    fn describes_reasons_without_the_path() {
        let p = PathBuf::from("/x/a.skv");
        let foreign = MemoryError::Foreign { path: p.clone(), reason: "model fingerprint differs" };
        assert_eq!(describe(&foreign), "foreign: model fingerprint differs");
        assert_eq!(describe(&MemoryError::UnsupportedVersion { path: p, version: 9 }), "unsupported format version 9");
        let streams = ContextInfo::PER_SEQUENCE_STREAMS;
        assert_eq!(kv_name(u16::from(KvType::Q8_0.code()) | streams), "q8_0");
        assert_eq!(kv_name(u16::from(KvType::F16.code()) | ContextInfo::V_TRANSPOSED | streams), "f16 (no FA)");
        assert_eq!(kv_name(u16::from("q5_1/q4_0".parse::<KvType>().unwrap().code()) | streams), "q5_1/q4_0");
        assert_eq!(kv_name(0x81), "f16 (no FA) (unified cache)", "a version-1 file");
        assert_eq!(kv_name(200), "code 0xc8");
    }
}

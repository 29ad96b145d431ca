//! What `semantic serve` says before it listens, so a first run cannot go wrong silently: where
//! the model and agent memory are (absolute paths), a warning when agent memory starts empty in a
//! directory taken relative to a working directory that is not the project, and a loud warning
//! for a non-loopback bind without API keys. Owns the wording and the conditions; does not own the
//! cache lock (`semantic_memory::CacheLock`) or path resolution (`Config::anchored`).

use std::path::Path;

use semantic_config::Config;

use crate::cli::Resolved;

/// Logs (and prints to stderr, which a first-time user reads) the paths and any warnings.
pub fn announce(resolved: &Resolved) {
    let config = &resolved.config;
    let stored = stored_agents(&config.cache_dir);
    eprintln!("semantic model: {}", config.model.display());
    eprintln!("semantic agent memory: {} ({})", config.cache_dir.display(), describe(stored));
    tracing::info!(model = %config.model.display(), cache_dir = %config.cache_dir.display(), stored_agents = stored.unwrap_or(0), "paths");
    if let Some(warning) = empty_memory_warning(resolved, stored) {
        tracing::warn!("{warning}");
        eprintln!("WARNING: {warning}");
    }
    if let Some(warning) = exposure_warning(config) {
        tracing::warn!("{warning}");
        eprintln!("WARNING: {warning}");
    }
}

fn describe(stored: Option<usize>) -> String {
    match stored {
        None => "new directory".into(),
        Some(0) => "no stored agents".into(),
        Some(n) => format!("{n} stored agent file(s)"),
    }
}

/// Agent files under `<cache-dir>/agents/*/`; None when the cache directory does not exist.
fn stored_agents(cache_dir: &Path) -> Option<usize> {
    if !cache_dir.is_dir() {
        return None;
    }
    let Ok(namespaces) = std::fs::read_dir(cache_dir.join("agents")) else { return Some(0) };
    let count = namespaces
        .flatten()
        .filter_map(|ns| std::fs::read_dir(ns.path()).ok())
        .flat_map(|files| files.flatten())
        .filter(|f| f.path().extension().is_some_and(|e| e == semantic_memory::SNAPSHOT_EXT))
        .count();
    Some(count)
}

/// A new or empty cache directory named relative to a working directory that is not the
/// project: agents stored by runs started elsewhere are not there.
fn empty_memory_warning(resolved: &Resolved, stored: Option<usize>) -> Option<String> {
    let cwd = resolved.cache_dir_relative_to.as_deref()?;
    if stored.unwrap_or(0) > 0 || is_project_dir(cwd) {
        return None;
    }
    Some(format!(
        "agent memory starts empty in {dir}: the cache directory is relative to the working directory {cwd}, \
         so agents stored by a server started elsewhere are not here. Pass --cache-dir with an absolute path \
         (or SEMANTIC_CACHE_DIR) to keep agent memory in one place.",
        dir = resolved.config.cache_dir.display(),
        cwd = cwd.display()
    ))
}

/// The checkout `scripts/run` serves from.
fn is_project_dir(dir: &Path) -> bool {
    dir.join("scripts/run").is_file() && dir.join("crates/semantic").is_dir()
}

/// A bind that other machines can reach, with no API key: anyone there may use the model and
/// read every agent's memory.
pub fn exposure_warning(config: &Config) -> Option<String> {
    if config.server.host.is_loopback() || !config.api_keys.is_empty() {
        return None;
    }
    Some(format!(
        "listening on {} without API keys: anyone who can reach this address can run the model and read and \
         delete every agent's memory. Set --api-key-file (or --api-key), or bind 127.0.0.1.",
        config.server.host
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use semantic_config::RawConfig;
    use std::path::PathBuf;

    fn config(raw: RawConfig) -> Config {
        Config::resolve(raw).unwrap()
    }

    #[test]
    fn an_open_remote_bind_is_warned_about() {
        let remote = || RawConfig { host: Some("0.0.0.0".into()), allow_remote: Some(true), ..Default::default() };
        let warning = exposure_warning(&config(remote())).expect("open remote bind");
        assert!(warning.contains("0.0.0.0 without API keys"), "{warning}");
        let keyed = RawConfig { api_key: Some(vec!["a-long-key".into()]), ..remote() };
        assert_eq!(exposure_warning(&config(keyed)), None);
        assert_eq!(exposure_warning(&config(RawConfig::default())), None, "loopback");
    }

    #[test]
    fn empty_memory_is_warned_about_only_outside_the_project_with_a_relative_dir() {
        let outside = std::env::temp_dir().join(format!("semantic-preflight-{}", std::process::id()));
        let resolved = |cwd: Option<PathBuf>| Resolved {
            config: config(RawConfig::default()).anchored(cwd.as_deref().unwrap_or(Path::new("/abs"))),
            cache_dir_relative_to: cwd,
        };
        let warning = empty_memory_warning(&resolved(Some(outside.clone())), None).expect("relative, outside");
        assert!(warning.contains(&outside.join(".semantic").display().to_string()), "{warning}");
        assert_eq!(empty_memory_warning(&resolved(Some(outside.clone())), Some(3)), None, "agents are there");
        assert_eq!(empty_memory_warning(&resolved(None), None), None, "an absolute cache dir is deliberate");
        let project = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        assert_eq!(empty_memory_warning(&resolved(Some(project)), None), None, "scripts/run serves from here");
    }
}

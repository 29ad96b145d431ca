//! `Config`: the validated, immutable configuration every other crate reads.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::{ConfigError, RawConfig};

/// What secrets print as.
pub const MASK: &str = "********";

/// Where the HTTP server listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// Bind address.
    pub host: IpAddr,
    /// Port (0 = any free port).
    pub port: u16,
}

/// The resolved configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// GGUF model file.
    pub model: PathBuf,
    /// Directory for agent memory and caches.
    pub cache_dir: PathBuf,
    /// HTTP listener.
    pub server: ServerConfig,
    /// KV cells shared by all sequences.
    pub ctx_size: u32,
    /// Decode threads (0 = all CPUs).
    pub threads: u32,
    /// KV cache type name (validated: f16, q8_0 or q4_0).
    pub kv_type: String,
    /// Most live engine sequences.
    pub seq_max: u32,
    /// Most sequences decoding at once.
    pub max_running: usize,
    /// Tokens per engine step.
    pub step_tokens: usize,
    /// Admission queue bound.
    pub queue_capacity: usize,
    /// Default completion length.
    pub default_max_tokens: usize,
    /// RAM budget for warm agents, bytes.
    pub memory_warm_bytes: u64,
    /// Disk budget for cold agents, bytes.
    pub memory_disk_bytes: u64,
    /// API keys (flags/env/file and `api_key_file` merged); empty = no auth.
    pub api_keys: Vec<String>,
    /// Admin key.
    pub admin_key: Option<String>,
    /// `/metrics` without a key.
    pub metrics_public: bool,
    /// Shutdown grace period, seconds.
    pub shutdown_grace_secs: u64,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

impl Config {
    /// Default model location, relative to the working directory (where `scripts/setup` puts it).
    pub const DEFAULT_MODEL: &'static str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";

    /// Fills defaults and validates.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let host_text = raw.host.unwrap_or_else(|| "127.0.0.1".into());
        let host: IpAddr =
            host_text.parse().map_err(|_| invalid("host", format!("{host_text:?} is not an IP address")))?;
        if !host.is_loopback() && raw.allow_remote != Some(true) {
            return Err(invalid(
                "host",
                format!("{host} is not a loopback address; pass --allow-remote (SEMANTIC_ALLOW_REMOTE=1) to expose the server"),
            ));
        }
        let kv_type = raw.kv_type.unwrap_or_else(|| "f16".into()).to_ascii_lowercase();
        if !["f16", "q8_0", "q4_0"].contains(&kv_type.as_str()) {
            return Err(invalid("kv_type", format!("{kv_type:?} (expected f16, q8_0 or q4_0)")));
        }
        let ctx_size = raw.ctx_size.unwrap_or(16_384);
        if !(256..=1 << 20).contains(&ctx_size) {
            return Err(invalid("ctx_size", format!("{ctx_size} (expected 256..=1048576)")));
        }
        let seq_max = raw.seq_max.unwrap_or(32);
        if !(1..=256).contains(&seq_max) {
            return Err(invalid("seq_max", format!("{seq_max} (expected 1..=256)")));
        }
        let max_running = raw.max_running.unwrap_or(8);
        if max_running == 0 || max_running > seq_max as usize {
            return Err(invalid("max_running", format!("{max_running} (expected 1..=seq_max={seq_max})")));
        }
        let step_tokens = raw.step_tokens.unwrap_or(512);
        if !(max_running..=8192).contains(&step_tokens) {
            return Err(invalid("step_tokens", format!("{step_tokens} (expected max_running..=8192)")));
        }
        let queue_capacity = raw.queue_capacity.unwrap_or(64);
        if queue_capacity == 0 {
            return Err(invalid("queue_capacity", "must be at least 1"));
        }
        let default_max_tokens = raw.default_max_tokens.unwrap_or(512);
        if default_max_tokens == 0 {
            return Err(invalid("default_max_tokens", "must be at least 1"));
        }
        let memory_warm_mb = raw.memory_warm_mb.unwrap_or(1024);
        if memory_warm_mb > 1 << 20 {
            return Err(invalid("memory_warm_mb", format!("{memory_warm_mb} (expected at most 1048576)")));
        }
        let memory_disk_gb = raw.memory_disk_gb.unwrap_or(20.0);
        if !(0.0..=1e6).contains(&memory_disk_gb) {
            return Err(invalid("memory_disk_gb", format!("{memory_disk_gb} (expected 0..=1000000)")));
        }
        let mut api_keys = raw.api_keys.unwrap_or_default();
        if let Some(path) = &raw.api_key_file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| invalid("api_key_file", format!("cannot read {}: {e}", path.display())))?;
            api_keys
                .extend(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from));
        }
        api_keys.retain(|k| !k.trim().is_empty());
        if let Some(bad) = api_keys.iter().find(|k| k.len() < 8) {
            return Err(invalid("api_keys", format!("a key of {} characters is too short (at least 8)", bad.len())));
        }
        if raw.admin_key.as_ref().is_some_and(|k| k.len() < 8) {
            return Err(invalid("admin_key", "too short (at least 8 characters)"));
        }
        Ok(Self {
            api_keys,
            admin_key: raw.admin_key,
            metrics_public: raw.metrics_public.unwrap_or(true),
            shutdown_grace_secs: raw.shutdown_grace_secs.unwrap_or(30),
            memory_warm_bytes: memory_warm_mb << 20,
            memory_disk_bytes: (memory_disk_gb * (1u64 << 30) as f64) as u64,
            model: raw.model.unwrap_or_else(|| PathBuf::from(Self::DEFAULT_MODEL)),
            cache_dir: raw.cache_dir.unwrap_or_else(|| PathBuf::from(".semantic")),
            server: ServerConfig { host, port: raw.port.unwrap_or(8000) },
            ctx_size,
            threads: raw.threads.unwrap_or(0),
            kv_type,
            seq_max,
            max_running,
            step_tokens,
            queue_capacity,
            default_max_tokens,
        })
    }

    /// The resolved configuration as TOML, secrets masked (what `semantic config` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let path = |p: &PathBuf| p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "model = \"{}\"", path(&self.model));
        let _ = writeln!(out, "cache_dir = \"{}\"", path(&self.cache_dir));
        let _ = writeln!(out, "host = \"{}\"", self.server.host);
        let _ = writeln!(out, "port = {}", self.server.port);
        let _ = writeln!(out, "allow_remote = {}", !self.server.host.is_loopback());
        let _ = writeln!(out, "ctx_size = {}", self.ctx_size);
        let _ = writeln!(out, "threads = {}", self.threads);
        let _ = writeln!(out, "kv_type = \"{}\"", self.kv_type);
        let _ = writeln!(out, "seq_max = {}", self.seq_max);
        let _ = writeln!(out, "max_running = {}", self.max_running);
        let _ = writeln!(out, "step_tokens = {}", self.step_tokens);
        let _ = writeln!(out, "queue_capacity = {}", self.queue_capacity);
        let _ = writeln!(out, "default_max_tokens = {}", self.default_max_tokens);
        let _ = writeln!(out, "memory_warm_mb = {}", self.memory_warm_bytes >> 20);
        let _ = writeln!(out, "memory_disk_gb = {:?}", self.memory_disk_bytes as f64 / (1u64 << 30) as f64);
        let masked: Vec<String> = self.api_keys.iter().map(|_| format!("\"{MASK}\"")).collect();
        let _ = writeln!(out, "api_keys = [{}]", masked.join(", "));
        if self.admin_key.is_some() {
            let _ = writeln!(out, "admin_key = \"{MASK}\"");
        }
        let _ = writeln!(out, "metrics_public = {}", self.metrics_public);
        let _ = writeln!(out, "shutdown_grace_secs = {}", self.shutdown_grace_secs);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(raw: RawConfig, expected_error_field: Option<&str>) {
        match (Config::resolve(raw), expected_error_field) {
            (Ok(_), None) => {}
            (Err(ConfigError::Invalid { field, .. }), Some(f)) => assert_eq!(field, f),
            (other, want) => panic!("got {other:?}, wanted error on {want:?}"),
        }
    }

    #[test]
    fn validation_names_the_bad_field() {
        check(RawConfig::default(), None);
        check(RawConfig { host: Some("0.0.0.0".into()), ..Default::default() }, Some("host"));
        check(RawConfig { host: Some("0.0.0.0".into()), allow_remote: Some(true), ..Default::default() }, None);
        check(RawConfig { host: Some("localhost!".into()), ..Default::default() }, Some("host"));
        check(RawConfig { kv_type: Some("q5_1".into()), ..Default::default() }, Some("kv_type"));
        check(RawConfig { ctx_size: Some(10), ..Default::default() }, Some("ctx_size"));
        check(RawConfig { max_running: Some(0), ..Default::default() }, Some("max_running"));
        check(RawConfig { max_running: Some(64), seq_max: Some(8), ..Default::default() }, Some("max_running"));
        check(RawConfig { step_tokens: Some(2), ..Default::default() }, Some("step_tokens"));
        check(RawConfig { queue_capacity: Some(0), ..Default::default() }, Some("queue_capacity"));
        check(RawConfig { memory_disk_gb: Some(-1.0), ..Default::default() }, Some("memory_disk_gb"));
    }

    #[test]
    fn higher_layer_wins_field_by_field() {
        let flags = RawConfig { port: Some(9000), ..Default::default() };
        let file: RawConfig = toml::from_str("port = 1234\nkv_type = \"q8_0\"").unwrap();
        let config = Config::resolve(flags.merge(file)).unwrap();
        assert_eq!(config.server.port, 9000);
        assert_eq!(config.kv_type, "q8_0");
        assert!(toml::from_str::<RawConfig>("prot = 1").is_err(), "unknown keys are errors");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let raw = RawConfig {
            api_keys: Some(vec!["secret-key-1".into()]),
            admin_key: Some("admin-secret".into()),
            ..Default::default()
        };
        let text = Config::resolve(raw).unwrap().to_toml();
        assert!(!text.contains("secret-key-1") && !text.contains("admin-secret"), "{text}");
        assert!(text.contains(MASK));
        check(RawConfig { api_keys: Some(vec!["short".into()]), ..Default::default() }, Some("api_keys"));
    }

    #[test]
    fn printed_config_parses_back_to_the_same_config() {
        let config = Config::resolve(RawConfig { port: Some(1), ..Default::default() }).unwrap();
        let raw: RawConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(Config::resolve(raw).unwrap(), config);
    }
}

//! `Config`: the validated, immutable configuration every other crate reads.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::PathBuf;

use crate::{ConfigError, RawConfig};

/// What secrets print as.
pub const MASK: &str = "********";

/// KV cache element types the engine knows (each half of `kv_type`).
pub const KV_ELEMENTS: [&str; 7] = ["f16", "q8_0", "q5_1", "q5_0", "q4_1", "q4_0", "iq4_nl"];

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
    /// Directory of GGUF files the registry lists and an admin may swap to.
    pub models_dir: PathBuf,
    /// HTTP listener.
    pub server: ServerConfig,
    /// Most tokens one agent may hold (prompt + reply): the cells of its own KV stream.
    pub agent_ctx: u32,
    /// Decode threads (0 = all CPUs).
    pub threads: u32,
    /// K and V element types, one name (`q8_0`) or `k/v` (`q5_1/q4_0`), validated against
    /// [`KV_ELEMENTS`].
    pub kv_type: String,
    /// Flash attention (validated: auto, on or off; off only with f16).
    pub flash_attn: String,
    /// Agents resident in the engine at once (running + hot), one KV stream each.
    pub resident_agents: u32,
    /// Model layers offloaded to the GPU (None = all with a GPU backend compiled in, else 0).
    pub gpu_layers: Option<u32>,
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
    /// Requests per second per caller (API-key namespace; unauthenticated callers share one
    /// bucket); 0 = unlimited.
    pub rate_limit_rps: f64,
    /// Per-caller bucket size (at least 1 when the rate is set).
    pub rate_limit_burst: u32,
    /// Requests per second for the whole server; 0 = unlimited.
    pub global_rate_limit_rps: f64,
    /// Server-wide bucket size (at least 1 when the rate is set).
    pub global_rate_limit_burst: u32,
    /// Largest request body, bytes.
    pub max_body_bytes: u64,
    /// Longest a non-streaming generation may take, seconds.
    pub request_timeout_secs: u64,
    /// Longest a stream may go without a token, seconds.
    pub stream_idle_timeout_secs: u64,
    /// Origins allowed to call from a browser: `["*"]`, exact origins, or empty (no CORS).
    pub cors_origins: Vec<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

/// A rate (0 = unlimited) and its bucket size; the burst defaults to the rate rounded up.
fn rate_limit(
    (rps_field, rps): (&'static str, Option<f64>),
    (burst_field, burst): (&'static str, Option<u32>),
) -> Result<(f64, u32), ConfigError> {
    let rps = rps.unwrap_or(0.0);
    if !(0.0..=1e6).contains(&rps) {
        return Err(invalid(rps_field, format!("{rps} (expected 0..=1000000; 0 = unlimited)")));
    }
    let burst = match burst {
        Some(b) if b > 1_000_000 => return Err(invalid(burst_field, format!("{b} (expected at most 1000000)"))),
        Some(0) if rps > 0.0 => {
            return Err(invalid(burst_field, format!("must be at least 1 when {rps_field} is set")))
        }
        Some(b) => b,
        None if rps > 0.0 => rps.ceil().max(1.0) as u32,
        None => 0,
    };
    Ok((rps, burst))
}

/// `*` alone, or origins as browsers send them: `http(s)://host[:port]`, no path, no trailing slash.
fn cors_origins(origins: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let origins: Vec<String> = origins.into_iter().map(|o| o.trim().to_owned()).filter(|o| !o.is_empty()).collect();
    if origins.iter().any(|o| o == "*") {
        if origins.len() > 1 {
            return Err(invalid("cors_origins", "\"*\" allows every origin and must be the only entry"));
        }
        return Ok(origins);
    }
    for origin in &origins {
        let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let ok = host.is_some_and(|h| !h.is_empty() && !h.contains('/') && h.bytes().all(|b| b.is_ascii_graphic()));
        if !ok {
            return Err(invalid(
                "cors_origins",
                format!("{origin:?} is not an origin (expected \"*\" or scheme://host[:port], e.g. https://app.example.com)"),
            ));
        }
    }
    Ok(origins)
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
        let halves: Vec<&str> = kv_type.split('/').collect();
        if halves.len() > 2 || !halves.iter().all(|h| KV_ELEMENTS.contains(h)) {
            return Err(invalid(
                "kv_type",
                format!(
                    "{kv_type:?} (expected one of {} for both K and V, or K/V such as q5_1/q4_0)",
                    KV_ELEMENTS.join(", ")
                ),
            ));
        }
        let flash_attn = raw.flash_attn.unwrap_or_else(|| "auto".into()).to_ascii_lowercase();
        if !["auto", "on", "off"].contains(&flash_attn.as_str()) {
            return Err(invalid("flash_attn", format!("{flash_attn:?} (expected auto, on or off)")));
        }
        if flash_attn == "off" && kv_type != "f16" {
            return Err(invalid("flash_attn", format!("off with kv_type {kv_type:?} (a quantized KV cache needs it)")));
        }
        let agent_ctx = raw.agent_ctx.unwrap_or(8_192);
        if !(256..=1 << 20).contains(&agent_ctx) {
            return Err(invalid("agent_ctx", format!("{agent_ctx} (expected 256..=1048576)")));
        }
        let resident_agents = raw.resident_agents.unwrap_or(8);
        if !(1..=256).contains(&resident_agents) {
            return Err(invalid("resident_agents", format!("{resident_agents} (expected 1..=256)")));
        }
        if u64::from(agent_ctx) * u64::from(resident_agents) > 1 << 22 {
            return Err(invalid(
                "resident_agents",
                format!("{resident_agents} agents of {agent_ctx} tokens exceed 4194304 KV cells in all"),
            ));
        }
        let max_running = raw.max_running.unwrap_or(8).min(resident_agents as usize);
        if max_running == 0 || raw.max_running.is_some_and(|m| m > resident_agents as usize) {
            let asked = raw.max_running.unwrap_or(0);
            return Err(invalid("max_running", format!("{asked} (expected 1..=resident_agents={resident_agents})")));
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
        let (rate_limit_rps, rate_limit_burst) =
            rate_limit(("rate_limit_rps", raw.rate_limit_rps), ("rate_limit_burst", raw.rate_limit_burst))?;
        let (global_rate_limit_rps, global_rate_limit_burst) = rate_limit(
            ("global_rate_limit_rps", raw.global_rate_limit_rps),
            ("global_rate_limit_burst", raw.global_rate_limit_burst),
        )?;
        let max_body_bytes = raw.max_body_bytes.unwrap_or(8 << 20);
        if !(1024..=1 << 30).contains(&max_body_bytes) {
            return Err(invalid("max_body_bytes", format!("{max_body_bytes} (expected 1024..=1073741824)")));
        }
        let request_timeout_secs = raw.request_timeout_secs.unwrap_or(600);
        if request_timeout_secs == 0 {
            return Err(invalid("request_timeout_secs", "must be at least 1"));
        }
        let stream_idle_timeout_secs = raw.stream_idle_timeout_secs.unwrap_or(120);
        if stream_idle_timeout_secs == 0 {
            return Err(invalid("stream_idle_timeout_secs", "must be at least 1"));
        }
        let cors_origins = cors_origins(raw.cors_origins.unwrap_or_default())?;
        let model = raw.model.unwrap_or_else(|| PathBuf::from(Self::DEFAULT_MODEL));
        Ok(Self {
            api_keys,
            admin_key: raw.admin_key,
            metrics_public: raw.metrics_public.unwrap_or(true),
            shutdown_grace_secs: raw.shutdown_grace_secs.unwrap_or(30),
            rate_limit_rps,
            rate_limit_burst,
            global_rate_limit_rps,
            global_rate_limit_burst,
            max_body_bytes,
            request_timeout_secs,
            stream_idle_timeout_secs,
            cors_origins,
            memory_warm_bytes: memory_warm_mb << 20,
            memory_disk_bytes: (memory_disk_gb * (1u64 << 30) as f64) as u64,
            models_dir: raw.models_dir.unwrap_or_else(|| {
                // The directory of the model (`models/` for the default), else `models/`.
                let dir = model.parent().map(PathBuf::from).filter(|d| !d.as_os_str().is_empty());
                dir.unwrap_or_else(|| PathBuf::from("models"))
            }),
            model,
            cache_dir: raw.cache_dir.unwrap_or_else(|| PathBuf::from(".semantic")),
            server: ServerConfig { host, port: raw.port.unwrap_or(8000) },
            agent_ctx,
            threads: raw.threads.unwrap_or(0),
            kv_type,
            flash_attn,
            resident_agents,
            gpu_layers: raw.gpu_layers,
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
        let _ = writeln!(out, "models_dir = \"{}\"", path(&self.models_dir));
        let _ = writeln!(out, "host = \"{}\"", self.server.host);
        let _ = writeln!(out, "port = {}", self.server.port);
        let _ = writeln!(out, "allow_remote = {}", !self.server.host.is_loopback());
        let _ = writeln!(out, "agent_ctx = {}", self.agent_ctx);
        let _ = writeln!(out, "threads = {}", self.threads);
        let _ = writeln!(out, "kv_type = \"{}\"", self.kv_type);
        let _ = writeln!(out, "flash_attn = \"{}\"", self.flash_attn);
        let _ = writeln!(out, "resident_agents = {}", self.resident_agents);
        match self.gpu_layers {
            Some(n) => _ = writeln!(out, "gpu_layers = {n}"),
            None => _ = writeln!(out, "# gpu_layers: all with a GPU backend compiled in, else 0"),
        }
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
        let _ = writeln!(out, "rate_limit_rps = {:?}", self.rate_limit_rps);
        let _ = writeln!(out, "rate_limit_burst = {}", self.rate_limit_burst);
        let _ = writeln!(out, "global_rate_limit_rps = {:?}", self.global_rate_limit_rps);
        let _ = writeln!(out, "global_rate_limit_burst = {}", self.global_rate_limit_burst);
        let _ = writeln!(out, "max_body_bytes = {}", self.max_body_bytes);
        let _ = writeln!(out, "request_timeout_secs = {}", self.request_timeout_secs);
        let _ = writeln!(out, "stream_idle_timeout_secs = {}", self.stream_idle_timeout_secs);
        // Validated origins hold no quotes or backslashes, so they print as TOML strings as is.
        let origins: Vec<String> = self.cors_origins.iter().map(|o| format!("\"{o}\"")).collect();
        let _ = writeln!(out, "cors_origins = [{}]", origins.join(", "));
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
        check(RawConfig { kv_type: Some("q5_1/q4_0".into()), ..Default::default() }, None);
        for bad in ["q5_2", "q5_1/", "q8_0/q4_0/q4_0", "bf16"] {
            check(RawConfig { kv_type: Some(bad.into()), ..Default::default() }, Some("kv_type"));
        }
        check(RawConfig { flash_attn: Some("sometimes".into()), ..Default::default() }, Some("flash_attn"));
        check(
            RawConfig { flash_attn: Some("off".into()), kv_type: Some("q8_0".into()), ..Default::default() },
            Some("flash_attn"),
        );
        check(RawConfig { flash_attn: Some("OFF".into()), ..Default::default() }, None);
        check(RawConfig { agent_ctx: Some(10), ..Default::default() }, Some("agent_ctx"));
        check(
            RawConfig { agent_ctx: Some(1 << 20), resident_agents: Some(256), ..Default::default() },
            Some("resident_agents"),
        );
        check(RawConfig { max_running: Some(0), ..Default::default() }, Some("max_running"));
        check(RawConfig { max_running: Some(64), resident_agents: Some(8), ..Default::default() }, Some("max_running"));
        check(RawConfig { resident_agents: Some(4), ..Default::default() }, None);
        check(RawConfig { step_tokens: Some(2), ..Default::default() }, Some("step_tokens"));
        check(RawConfig { queue_capacity: Some(0), ..Default::default() }, Some("queue_capacity"));
        check(RawConfig { memory_disk_gb: Some(-1.0), ..Default::default() }, Some("memory_disk_gb"));
        check(RawConfig { rate_limit_rps: Some(-1.0), ..Default::default() }, Some("rate_limit_rps"));
        check(RawConfig { rate_limit_rps: Some(f64::NAN), ..Default::default() }, Some("rate_limit_rps"));
        check(
            RawConfig { rate_limit_rps: Some(2.0), rate_limit_burst: Some(0), ..Default::default() },
            Some("rate_limit_burst"),
        );
        check(RawConfig { rate_limit_burst: Some(0), ..Default::default() }, None);
        check(RawConfig { global_rate_limit_rps: Some(1e7), ..Default::default() }, Some("global_rate_limit_rps"));
        check(
            RawConfig { global_rate_limit_rps: Some(5.0), global_rate_limit_burst: Some(0), ..Default::default() },
            Some("global_rate_limit_burst"),
        );
        check(RawConfig { max_body_bytes: Some(10), ..Default::default() }, Some("max_body_bytes"));
        check(RawConfig { request_timeout_secs: Some(0), ..Default::default() }, Some("request_timeout_secs"));
        check(RawConfig { stream_idle_timeout_secs: Some(0), ..Default::default() }, Some("stream_idle_timeout_secs"));
        let origins = |list: &[&str]| RawConfig {
            cors_origins: Some(list.iter().map(|o| o.to_string()).collect()),
            ..Default::default()
        };
        check(origins(&["*"]), None);
        check(origins(&["https://app.example.com", "http://localhost:3000"]), None);
        check(origins(&["*", "https://app.example.com"]), Some("cors_origins"));
        check(origins(&["app.example.com"]), Some("cors_origins"));
        check(origins(&["https://app.example.com/"]), Some("cors_origins"));
        check(origins(&["https://"]), Some("cors_origins"));
    }

    #[test]
    fn ops_limits_default_off_or_generous_and_burst_follows_the_rate() {
        let config = Config::resolve(RawConfig::default()).unwrap();
        assert_eq!((config.rate_limit_rps, config.rate_limit_burst), (0.0, 0));
        assert_eq!((config.global_rate_limit_rps, config.global_rate_limit_burst), (0.0, 0));
        assert_eq!(config.max_body_bytes, 8 << 20);
        assert_eq!((config.request_timeout_secs, config.stream_idle_timeout_secs), (600, 120));
        assert!(config.cors_origins.is_empty());
        let raw = RawConfig { rate_limit_rps: Some(2.5), global_rate_limit_rps: Some(0.2), ..Default::default() };
        let config = Config::resolve(raw).unwrap();
        assert_eq!(config.rate_limit_burst, 3, "the burst defaults to the rate rounded up");
        assert_eq!(config.global_rate_limit_burst, 1, "and to at least one request");
        let file: RawConfig =
            toml::from_str("rate_limit_rps = 4\nrate_limit_burst = 10\ncors_origins = [\"http://localhost:3000\"]")
                .unwrap();
        let config = Config::resolve(file).unwrap();
        assert_eq!((config.rate_limit_rps, config.rate_limit_burst), (4.0, 10), "an integer rate reads as f64");
        assert_eq!(config.cors_origins, ["http://localhost:3000"]);
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
        let config = Config::resolve(RawConfig {
            rate_limit_rps: Some(0.5),
            global_rate_limit_rps: Some(100.0),
            global_rate_limit_burst: Some(250),
            max_body_bytes: Some(4096),
            request_timeout_secs: Some(30),
            stream_idle_timeout_secs: Some(5),
            cors_origins: Some(vec!["https://a.example".into(), "http://localhost:3000".into()]),
            ..Default::default()
        })
        .unwrap();
        let raw: RawConfig = toml::from_str(&config.to_toml()).unwrap();
        assert_eq!(Config::resolve(raw).unwrap(), config);
    }
}

//! `Config`: the validated, immutable configuration every other crate reads.

use std::fmt::Write as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::{ConfigError, RawConfig};

/// What secrets print as (only ever inside a TOML comment, so printed output fed back as a file
/// sets no key; a key made only of `*` is refused anyway).
pub const MASK: &str = "********";

/// The shortest API or admin key accepted.
pub const MIN_KEY_LEN: usize = 8;

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
    /// More names clients may use for the loaded model (besides its file stem, its GGUF name,
    /// `default` and `semantic`).
    pub model_aliases: Vec<String>,
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
    /// Where some of the API keys came from (printed instead of them).
    pub api_key_file: Option<PathBuf>,
    /// Admin key (given inline or read from `admin_key_file`).
    pub admin_key: Option<String>,
    /// Where the admin key came from.
    pub admin_key_file: Option<PathBuf>,
    /// The master key file of encryption at rest (read and checked by the binary at start; this
    /// crate never reads key material). None = agent files are plaintext.
    pub encryption_key_file: Option<PathBuf>,
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
    /// Longest a client may take to send a request's headers, seconds; an idle keep-alive
    /// connection is closed after it too.
    pub header_timeout_secs: u64,
    /// Longest a client may take to send a request's body, seconds (then 408).
    pub body_timeout_secs: u64,
    /// Most open client connections; past it a new one gets a 503 with Retry-After and is closed.
    pub max_connections: u32,
    /// Longest a finished turn waits for disk while requests keep the server busy, seconds.
    pub persist_within_secs: u64,
    /// Most stored Responses kept (at least 1).
    pub responses_max: usize,
    /// Origins allowed to call from a browser: `["*"]`, exact origins, or empty (no CORS).
    pub cors_origins: Vec<String>,
}

fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

/// The keys in a key file: one per line, blank lines and `#` comments skipped.
fn read_keys(field: &'static str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// A key is at least [`MIN_KEY_LEN`] characters and is not the mask `semantic config` prints.
fn check_key(field: &'static str, key: &str) -> Result<(), ConfigError> {
    if key.chars().all(|c| c == '*') {
        return Err(invalid(
            field,
            format!(
                "{key:?} is the mask `semantic config` prints in place of a key, not a key; \
                 give the real key (or a key file) instead"
            ),
        ));
    }
    if key.chars().count() < MIN_KEY_LEN {
        return Err(invalid(
            field,
            format!("a key of {} characters is too short (keys need at least {MIN_KEY_LEN})", key.chars().count()),
        ));
    }
    Ok(())
}

/// Names clients may send as `model`: 1-256 visible ASCII characters each.
fn model_aliases(aliases: Vec<String>) -> Result<Vec<String>, ConfigError> {
    let mut out: Vec<String> = Vec::new();
    for alias in aliases.into_iter().map(|a| a.trim().to_owned()).filter(|a| !a.is_empty()) {
        if alias.len() > 256 || !alias.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(invalid("model_alias", format!("{alias:?} (expected 1-256 visible ASCII characters)")));
        }
        if !out.contains(&alias) {
            out.push(alias);
        }
    }
    Ok(out)
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
            return Err(invalid("cors_origin", "\"*\" allows every origin and must be the only entry"));
        }
        return Ok(origins);
    }
    for origin in &origins {
        let host = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://"));
        let ok = host.is_some_and(|h| !h.is_empty() && !h.contains('/') && h.bytes().all(|b| b.is_ascii_graphic()));
        if !ok {
            return Err(invalid(
                "cors_origin",
                format!("{origin:?} is not an origin (expected \"*\" or scheme://host[:port], e.g. https://app.example.com)"),
            ));
        }
    }
    Ok(origins)
}

impl Config {
    /// Default model location, relative to the working directory (where `scripts/setup` puts it).
    pub const DEFAULT_MODEL: &'static str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// Stored Responses kept when `responses_max` is not set.
    pub const DEFAULT_RESPONSES_MAX: usize = 10_000;

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
        let mut api_keys = raw.api_key.unwrap_or_default();
        if let Some(path) = &raw.api_key_file {
            api_keys.extend(read_keys("api_key_file", path)?);
        }
        api_keys.retain(|k| !k.trim().is_empty());
        for key in &api_keys {
            check_key("api_key", key)?;
        }
        let admin_key = match (raw.admin_key, &raw.admin_key_file) {
            (Some(_), Some(_)) => return Err(invalid("admin_key", "set admin_key or admin_key_file, not both")),
            (Some(key), None) => Some(key),
            (None, Some(path)) => match read_keys("admin_key_file", path)?.into_iter().next() {
                Some(key) => Some(key),
                None => return Err(invalid("admin_key_file", format!("{} holds no key", path.display()))),
            },
            (None, None) => None,
        };
        if let Some(key) = &admin_key {
            check_key("admin_key", key)?;
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
        let header_timeout_secs = raw.header_timeout_secs.unwrap_or(20);
        if header_timeout_secs == 0 {
            return Err(invalid("header_timeout_secs", "must be at least 1"));
        }
        let body_timeout_secs = raw.body_timeout_secs.unwrap_or(60);
        if body_timeout_secs == 0 {
            return Err(invalid("body_timeout_secs", "must be at least 1"));
        }
        let max_connections = raw.max_connections.unwrap_or(1024);
        if !(16..=1_000_000).contains(&max_connections) {
            return Err(invalid("max_connections", format!("{max_connections} (expected 16..=1000000)")));
        }
        let persist_within_secs = raw.persist_within_secs.unwrap_or(5);
        if !(1..=3600).contains(&persist_within_secs) {
            return Err(invalid("persist_within_secs", format!("{persist_within_secs} (expected 1..=3600)")));
        }
        let responses_max = raw.responses_max.unwrap_or(Self::DEFAULT_RESPONSES_MAX);
        if responses_max == 0 {
            return Err(invalid("responses_max", "must be at least 1"));
        }
        let cors_origins = cors_origins(raw.cors_origin.unwrap_or_default())?;
        let model = raw.model.unwrap_or_else(|| PathBuf::from(Self::DEFAULT_MODEL));
        Ok(Self {
            api_keys,
            api_key_file: raw.api_key_file,
            admin_key,
            admin_key_file: raw.admin_key_file,
            encryption_key_file: raw.encryption_key_file,
            metrics_public: !raw.metrics_private.unwrap_or(false),
            shutdown_grace_secs: raw.shutdown_grace_secs.unwrap_or(30),
            rate_limit_rps,
            rate_limit_burst,
            global_rate_limit_rps,
            global_rate_limit_burst,
            max_body_bytes,
            request_timeout_secs,
            stream_idle_timeout_secs,
            header_timeout_secs,
            body_timeout_secs,
            max_connections,
            persist_within_secs,
            responses_max,
            cors_origins,
            memory_warm_bytes: memory_warm_mb << 20,
            memory_disk_bytes: (memory_disk_gb * (1u64 << 30) as f64) as u64,
            models_dir: raw.models_dir.unwrap_or_else(|| {
                // The directory of the model (`models/` for the default), else `models/`.
                let dir = model.parent().map(PathBuf::from).filter(|d| !d.as_os_str().is_empty());
                dir.unwrap_or_else(|| PathBuf::from("models"))
            }),
            model,
            model_aliases: model_aliases(raw.model_alias.unwrap_or_default())?,
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

    /// The same configuration with every relative path (model, cache dir, key files) taken
    /// relative to `cwd`, so logs and `semantic config` say exactly where things are.
    pub fn anchored(mut self, cwd: &Path) -> Self {
        let anchor = |p: &mut PathBuf| {
            if p.is_relative() {
                *p = cwd.join(&*p);
            }
        };
        anchor(&mut self.model);
        anchor(&mut self.cache_dir);
        self.api_key_file.iter_mut().for_each(anchor);
        self.admin_key_file.iter_mut().for_each(anchor);
        self.encryption_key_file.iter_mut().for_each(anchor);
        self
    }

    /// The resolved configuration as TOML, secrets masked (what `semantic config` prints).
    pub fn to_toml(&self) -> String {
        let mut out = String::new();
        let path = |p: &PathBuf| p.display().to_string().replace('\\', "\\\\").replace('"', "\\\"");
        let _ = writeln!(out, "model = \"{}\"", path(&self.model));
        let aliases: Vec<String> = self.model_aliases.iter().map(|a| format!("{a:?}")).collect();
        let _ = writeln!(out, "model_alias = [{}]", aliases.join(", "));
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
        // Keys never print, not even masked as a value: fed back as a file, this text must not
        // set a key (a key file's path prints instead, which round-trips).
        if let Some(file) = &self.api_key_file {
            let _ = writeln!(out, "api_key_file = \"{}\"", path(file));
        }
        let from_file = match &self.api_key_file {
            Some(file) => read_keys("api_key_file", file).map_or(0, |k| k.len()),
            None => 0,
        };
        let inline = self.api_keys.len().saturating_sub(from_file);
        if inline > 0 {
            let masked = vec![format!("\"{MASK}\""); inline].join(", ");
            let _ = writeln!(out, "# api_key = [{masked}]  ({inline} key(s) set, not printed)");
        }
        match (&self.admin_key_file, &self.admin_key) {
            (Some(file), _) => _ = writeln!(out, "admin_key_file = \"{}\"", path(file)),
            (None, Some(_)) => _ = writeln!(out, "# admin_key = \"{MASK}\"  (set, not printed)"),
            (None, None) => {}
        }
        if let Some(file) = &self.encryption_key_file {
            let _ = writeln!(out, "encryption_key_file = \"{}\"", path(file));
        }
        let _ = writeln!(out, "metrics_private = {}", !self.metrics_public);
        let _ = writeln!(out, "shutdown_grace_secs = {}", self.shutdown_grace_secs);
        let _ = writeln!(out, "rate_limit_rps = {:?}", self.rate_limit_rps);
        let _ = writeln!(out, "rate_limit_burst = {}", self.rate_limit_burst);
        let _ = writeln!(out, "global_rate_limit_rps = {:?}", self.global_rate_limit_rps);
        let _ = writeln!(out, "global_rate_limit_burst = {}", self.global_rate_limit_burst);
        let _ = writeln!(out, "max_body_bytes = {}", self.max_body_bytes);
        let _ = writeln!(out, "request_timeout_secs = {}", self.request_timeout_secs);
        let _ = writeln!(out, "stream_idle_timeout_secs = {}", self.stream_idle_timeout_secs);
        let _ = writeln!(out, "header_timeout_secs = {}", self.header_timeout_secs);
        let _ = writeln!(out, "body_timeout_secs = {}", self.body_timeout_secs);
        let _ = writeln!(out, "max_connections = {}", self.max_connections);
        let _ = writeln!(out, "persist_within_secs = {}", self.persist_within_secs);
        let _ = writeln!(out, "responses_max = {}", self.responses_max);
        // Validated origins hold no quotes or backslashes, so they print as TOML strings as is.
        let origins: Vec<String> = self.cors_origins.iter().map(|o| format!("\"{o}\"")).collect();
        let _ = writeln!(out, "cors_origin = [{}]", origins.join(", "));
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
        check(RawConfig { header_timeout_secs: Some(0), ..Default::default() }, Some("header_timeout_secs"));
        check(RawConfig { body_timeout_secs: Some(0), ..Default::default() }, Some("body_timeout_secs"));
        check(RawConfig { max_connections: Some(4), ..Default::default() }, Some("max_connections"));
        check(RawConfig { persist_within_secs: Some(0), ..Default::default() }, Some("persist_within_secs"));
        check(RawConfig { stream_idle_timeout_secs: Some(0), ..Default::default() }, Some("stream_idle_timeout_secs"));
        let origins = |list: &[&str]| RawConfig {
            cors_origin: Some(list.iter().map(|o| o.to_string()).collect()),
            ..Default::default()
        };
        check(origins(&["*"]), None);
        check(origins(&["https://app.example.com", "http://localhost:3000"]), None);
        check(origins(&["*", "https://app.example.com"]), Some("cors_origin"));
        check(origins(&["app.example.com"]), Some("cors_origin"));
        check(origins(&["https://app.example.com/"]), Some("cors_origin"));
        check(origins(&["https://"]), Some("cors_origin"));
    }

    #[test]
    fn ops_limits_default_off_or_generous_and_burst_follows_the_rate() {
        let config = Config::resolve(RawConfig::default()).unwrap();
        assert_eq!((config.rate_limit_rps, config.rate_limit_burst), (0.0, 0));
        assert_eq!((config.global_rate_limit_rps, config.global_rate_limit_burst), (0.0, 0));
        assert_eq!(config.max_body_bytes, 8 << 20);
        assert_eq!((config.request_timeout_secs, config.stream_idle_timeout_secs), (600, 120));
        assert_eq!((config.header_timeout_secs, config.body_timeout_secs, config.max_connections), (20, 60, 1024));
        assert!(config.cors_origins.is_empty());
        let raw = RawConfig { rate_limit_rps: Some(2.5), global_rate_limit_rps: Some(0.2), ..Default::default() };
        let config = Config::resolve(raw).unwrap();
        assert_eq!(config.rate_limit_burst, 3, "the burst defaults to the rate rounded up");
        assert_eq!(config.global_rate_limit_burst, 1, "and to at least one request");
        let file = RawConfig::from_toml_str(
            "rate_limit_rps = 4\nrate_limit_burst = 10\ncors_origin = [\"http://localhost:3000\"]",
        )
        .unwrap()
        .raw;
        let config = Config::resolve(file).unwrap();
        assert_eq!((config.rate_limit_rps, config.rate_limit_burst), (4.0, 10), "an integer rate reads as f64");
        assert_eq!(config.cors_origins, ["http://localhost:3000"]);
    }

    #[test]
    fn higher_layer_wins_field_by_field() {
        let flags = RawConfig { port: Some(9000), ..Default::default() };
        let file = RawConfig::from_toml_str("port = 1234\nkv_type = \"q8_0\"").unwrap().raw;
        let config = Config::resolve(flags.merge(file)).unwrap();
        assert_eq!(config.server.port, 9000);
        assert_eq!(config.kv_type, "q8_0");
        assert!(RawConfig::from_toml_str("prot = 1").is_err(), "unknown keys are errors");
    }

    #[test]
    fn secrets_are_masked_when_printed() {
        let raw = RawConfig {
            api_key: Some(vec!["secret-key-1".into()]),
            admin_key: Some("admin-secret".into()),
            ..Default::default()
        };
        let text = Config::resolve(raw).unwrap().to_toml();
        assert!(!text.contains("secret-key-1") && !text.contains("admin-secret"), "{text}");
        assert!(text.contains(MASK));
    }

    /// Regression: `semantic config` printed `api_keys = ["********"]`, itself a valid 8-character
    /// key when the output was used as a config file.
    #[test]
    fn printed_config_fed_back_sets_no_masked_key() {
        let raw = RawConfig {
            api_key: Some(vec!["secret-key-1".into()]),
            admin_key: Some("admin-secret".into()),
            ..Default::default()
        };
        let text = Config::resolve(raw).unwrap().to_toml();
        let fed_back = Config::resolve(RawConfig::from_toml_str(&text).unwrap().raw).unwrap();
        assert!(fed_back.api_keys.is_empty() && fed_back.admin_key.is_none(), "{text}");
        for (raw, field) in [
            (RawConfig { api_key: Some(vec![MASK.into()]), ..Default::default() }, "api_key"),
            (RawConfig { admin_key: Some("**********".into()), ..Default::default() }, "admin_key"),
        ] {
            let err = Config::resolve(raw).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains("the mask `semantic config` prints"), "{err}");
        }
    }

    /// Keys shorter than 8 characters are refused, and the message says the minimum.
    #[test]
    fn short_keys_are_refused_with_the_minimum() {
        check(RawConfig { api_key: Some(vec!["short".into()]), ..Default::default() }, Some("api_key"));
        let err = Config::resolve(RawConfig { api_key: Some(vec!["short".into()]), ..Default::default() }).unwrap_err();
        assert!(err.to_string().contains("at least 8"), "{err}");
        check(RawConfig { admin_key: Some("1234567".into()), ..Default::default() }, Some("admin_key"));
        check(RawConfig { admin_key: Some("12345678".into()), ..Default::default() }, None);
    }

    #[test]
    fn the_encryption_key_file_resolves_anchors_and_round_trips_as_a_path() {
        let none = Config::resolve(RawConfig::default()).unwrap();
        assert!(none.encryption_key_file.is_none());
        assert!(!none.to_toml().contains("encryption_key_file"));
        let layer = RawConfig::from_toml_str("encryption_key_file = \"keys/master\"").unwrap();
        let config = Config::resolve(layer.raw).unwrap().anchored(Path::new("/srv/semantic"));
        let file = PathBuf::from("/srv/semantic/keys/master");
        assert_eq!(config.encryption_key_file.as_ref(), Some(&file));
        let text = config.to_toml();
        assert!(text.contains("encryption_key_file = \"/srv/semantic/keys/master\""), "{text}");
        let back = Config::resolve(RawConfig::from_toml_str(&text).unwrap().raw).unwrap();
        assert_eq!(back.encryption_key_file, Some(file), "flags and env set it through the same field");
        let flag = RawConfig { encryption_key_file: Some("a".into()), ..Default::default() };
        let toml = RawConfig { encryption_key_file: Some("b".into()), ..Default::default() };
        assert_eq!(flag.merge(toml).encryption_key_file, Some(PathBuf::from("a")), "flag over TOML");
    }

    #[test]
    fn key_files_hold_one_key_per_line_and_print_as_their_path() {
        let dir = std::env::temp_dir().join(format!("semantic-config-keys-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let keys = dir.join("api-keys");
        let admin = dir.join("admin-key");
        std::fs::write(&keys, "# team a\nkey-aaaaaaaa\n\n  key-bbbbbbbb  \n").unwrap();
        std::fs::write(&admin, "# rotate monthly\nadmin-key-123\n").unwrap();
        let raw = RawConfig {
            api_key: Some(vec!["inline-key-1".into()]),
            api_key_file: Some(keys.clone()),
            admin_key_file: Some(admin.clone()),
            ..Default::default()
        };
        let config = Config::resolve(raw).unwrap();
        assert_eq!(config.api_keys, ["inline-key-1", "key-aaaaaaaa", "key-bbbbbbbb"]);
        assert_eq!(config.admin_key.as_deref(), Some("admin-key-123"));
        let text = config.to_toml();
        assert!(text.contains(&format!("api_key_file = \"{}\"", keys.display())), "{text}");
        assert!(text.contains(&format!("admin_key_file = \"{}\"", admin.display())), "{text}");
        assert!(text.contains("# api_key = [\"********\"]  (1 key(s) set"), "{text}");
        let fed_back = Config::resolve(RawConfig::from_toml_str(&text).unwrap().raw).unwrap();
        assert_eq!(
            fed_back.api_keys,
            ["key-aaaaaaaa", "key-bbbbbbbb"],
            "the file's keys come back, the inline one does not"
        );
        std::fs::write(&admin, "# nothing\n").unwrap();
        check(RawConfig { admin_key_file: Some(admin.clone()), ..Default::default() }, Some("admin_key_file"));
        check(
            RawConfig { admin_key: Some("admin-key-123".into()), admin_key_file: Some(admin), ..Default::default() },
            Some("admin_key"),
        );
        check(RawConfig { api_key_file: Some(dir.join("missing")), ..Default::default() }, Some("api_key_file"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn model_aliases_are_trimmed_deduplicated_and_visible_ascii() {
        let aliases = |list: &[&str]| RawConfig {
            model_alias: Some(list.iter().map(|a| a.to_string()).collect()),
            ..Default::default()
        };
        let config = Config::resolve(aliases(&["gpt-4o-mini", " claude-x ", "gpt-4o-mini", ""])).unwrap();
        assert_eq!(config.model_aliases, ["gpt-4o-mini", "claude-x"]);
        check(aliases(&["has space"]), Some("model_alias"));
        check(aliases(&[&"x".repeat(257)]), Some("model_alias"));
    }

    #[test]
    fn relative_paths_are_anchored_to_the_working_directory() {
        let raw = RawConfig {
            api_key_file: None,
            model: Some("/abs/model.gguf".into()),
            cache_dir: Some("mem".into()),
            ..Default::default()
        };
        let config = Config::resolve(raw).unwrap().anchored(Path::new("/srv/semantic"));
        assert_eq!(config.model, Path::new("/abs/model.gguf"));
        assert_eq!(config.cache_dir, Path::new("/srv/semantic/mem"));
        let default = Config::resolve(RawConfig::default()).unwrap().anchored(Path::new("/w"));
        assert_eq!(default.model, Path::new("/w/models/SmolLM2-135M-Instruct.Q4_1.gguf"));
        assert_eq!(default.cache_dir, Path::new("/w/.semantic"));
    }

    #[test]
    fn printed_config_parses_back_to_the_same_config() {
        let parse = |text: &str| RawConfig::from_toml_str(text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        let config = Config::resolve(RawConfig { port: Some(1), ..Default::default() }).unwrap();
        let layer = parse(&config.to_toml());
        assert!(layer.deprecations.is_empty(), "{:?}", layer.deprecations);
        assert_eq!(Config::resolve(layer.raw).unwrap(), config);
        let config = Config::resolve(RawConfig {
            model_alias: Some(vec!["gpt-4o-mini".into()]),
            metrics_private: Some(true),
            rate_limit_rps: Some(0.5),
            global_rate_limit_rps: Some(100.0),
            global_rate_limit_burst: Some(250),
            max_body_bytes: Some(4096),
            request_timeout_secs: Some(30),
            stream_idle_timeout_secs: Some(5),
            responses_max: Some(7),
            cors_origin: Some(vec!["https://a.example".into(), "http://localhost:3000".into()]),
            ..Default::default()
        })
        .unwrap();
        let text = config.to_toml();
        assert!(text.contains("metrics_private = true") && text.contains("model_alias = [\"gpt-4o-mini\"]"), "{text}");
        assert_eq!(Config::resolve(parse(&text).raw).unwrap(), config);
    }
}

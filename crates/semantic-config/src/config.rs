//! `Config`: the validated, immutable configuration every other crate reads; `resolve` fills the
//! defaults and runs the checks of `validate.rs`, `to_toml` prints it back as a `RawConfig`.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use crate::validate::{
    admin_key, api_keys, cors_origins, invalid, model_aliases, model_ids, rate_limit, read_keys, within, within_because,
};
use crate::{ConfigError, FlashAttention, KvType, RawConfig};

/// What secrets print as (only ever inside a TOML comment, so printed output fed back as a file
/// sets no key; a key made only of `*` is refused anyway).
pub const MASK: &str = "********";

/// The shortest API or admin key accepted.
pub const MIN_KEY_LEN: usize = 8;

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
    /// Registry ids given to files of the models directory: `(id, file stem)` pairs.
    pub model_ids: Vec<(String, String)>,
    /// A request naming another model of the registry swaps to it first.
    pub swap_on_demand: bool,
    /// HTTP listener.
    pub server: ServerConfig,
    /// Most tokens one agent may hold (prompt + reply): the cells of its own KV stream.
    pub agent_ctx: u32,
    /// Decode threads (0 = all CPUs).
    pub threads: u32,
    /// K and V element types.
    pub kv_type: KvType,
    /// Flash attention (off only with an f16 KV cache).
    pub flash_attn: FlashAttention,
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
    /// Days a stored Response is kept (0: forever).
    pub responses_max_age_days: u64,
    /// Origins allowed to call from a browser: `["*"]`, exact origins, or empty (no CORS).
    pub cors_origins: Vec<String>,
}

impl Config {
    /// Default model location, relative to the working directory (where `scripts/setup` puts it).
    pub const DEFAULT_MODEL: &'static str = "models/SmolLM2-135M-Instruct.Q4_1.gguf";
    /// Stored Responses kept when `responses_max` is not set.
    pub const DEFAULT_RESPONSES_MAX: usize = 10_000;
    /// Days a stored Response is kept when `responses_max_age_days` is not set (OpenAI keeps them 30 days).
    pub const DEFAULT_RESPONSES_MAX_AGE_DAYS: u64 = 30;

    /// Fills defaults and validates.
    pub fn resolve(raw: RawConfig) -> Result<Self, ConfigError> {
        let server = server(raw.host.as_deref(), raw.port, raw.allow_remote)?;
        let (kv_type, flash_attn) = kv_cache(raw.kv_type, raw.flash_attn)?;
        let Capacity { agent_ctx, resident_agents, max_running, step_tokens } = capacity(&raw)?;
        let api_keys = api_keys(raw.api_key, raw.api_key_file.as_deref())?;
        let admin_key = admin_key(raw.admin_key, raw.admin_key_file.as_deref())?;
        let (rate_limit_rps, rate_limit_burst) =
            rate_limit(("rate_limit_rps", raw.rate_limit_rps), ("rate_limit_burst", raw.rate_limit_burst))?;
        let (global_rate_limit_rps, global_rate_limit_burst) = rate_limit(
            ("global_rate_limit_rps", raw.global_rate_limit_rps),
            ("global_rate_limit_burst", raw.global_rate_limit_burst),
        )?;
        let memory_warm_mb = within("memory_warm_mb", raw.memory_warm_mb.unwrap_or(1024), ..=1 << 20)?;
        let memory_disk_gb = within("memory_disk_gb", raw.memory_disk_gb.unwrap_or(20.0), 0.0..=1e6)?;
        let model = raw.model.unwrap_or_else(|| PathBuf::from(Self::DEFAULT_MODEL));
        Ok(Self {
            models_dir: raw.models_dir.unwrap_or_else(|| {
                // The directory of the model (`models/` for the default), else `models/`.
                let dir = model.parent().map(PathBuf::from).filter(|d| !d.as_os_str().is_empty());
                dir.unwrap_or_else(|| PathBuf::from("models"))
            }),
            model,
            model_ids: model_ids(raw.model_id.unwrap_or_default())?,
            swap_on_demand: raw.swap_on_demand.unwrap_or(false),
            model_aliases: model_aliases(raw.model_alias.unwrap_or_default())?,
            cache_dir: raw.cache_dir.unwrap_or_else(|| PathBuf::from(".semantic")),
            server,
            agent_ctx,
            threads: raw.threads.unwrap_or(0),
            kv_type,
            flash_attn,
            resident_agents,
            gpu_layers: raw.gpu_layers,
            max_running,
            step_tokens,
            queue_capacity: within("queue_capacity", raw.queue_capacity.unwrap_or(64), 1..)?,
            default_max_tokens: within("default_max_tokens", raw.default_max_tokens.unwrap_or(512), 1..)?,
            memory_warm_bytes: memory_warm_mb << 20,
            memory_disk_bytes: (memory_disk_gb * (1u64 << 30) as f64) as u64,
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
            max_body_bytes: within("max_body_bytes", raw.max_body_bytes.unwrap_or(8 << 20), 1024..=1 << 30)?,
            request_timeout_secs: within("request_timeout_secs", raw.request_timeout_secs.unwrap_or(600), 1..)?,
            stream_idle_timeout_secs: within(
                "stream_idle_timeout_secs",
                raw.stream_idle_timeout_secs.unwrap_or(120),
                1..,
            )?,
            header_timeout_secs: within("header_timeout_secs", raw.header_timeout_secs.unwrap_or(20), 1..)?,
            body_timeout_secs: within("body_timeout_secs", raw.body_timeout_secs.unwrap_or(60), 1..)?,
            max_connections: within("max_connections", raw.max_connections.unwrap_or(1024), 16..=1_000_000)?,
            persist_within_secs: within("persist_within_secs", raw.persist_within_secs.unwrap_or(5), 1..=3600)?,
            responses_max: within("responses_max", raw.responses_max.unwrap_or(Self::DEFAULT_RESPONSES_MAX), 1..)?,
            responses_max_age_days: within(
                "responses_max_age_days",
                raw.responses_max_age_days.unwrap_or(Self::DEFAULT_RESPONSES_MAX_AGE_DAYS),
                0..=36_500,
            )?,
            cors_origins: cors_origins(raw.cors_origin.unwrap_or_default())?,
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

    /// The resolved configuration as TOML, secrets masked (what `semantic config` prints): the
    /// settings as a [`RawConfig`] through toml's serializer, then comments for what has no value.
    pub fn to_toml(&self) -> String {
        // Invariant: every field is a string, a number, a bool or an array of strings, all of which
        // TOML represents; a failure is a bug in this function.
        let mut out = toml::to_string(&self.printed()).expect("a RawConfig always serializes to TOML");
        // Keys never print, not even masked as a value: fed back as a file, this text must not set
        // a key (a key file's path prints instead, which round-trips).
        let from_file = match &self.api_key_file {
            Some(file) => read_keys("api_key_file", file).map_or(0, |k| k.len()),
            None => 0,
        };
        let inline = self.api_keys.len().saturating_sub(from_file);
        if inline > 0 {
            let masked = vec![format!("\"{MASK}\""); inline].join(", ");
            out.push_str(&format!("# api_key = [{masked}]  ({inline} key(s) set, not printed)\n"));
        }
        if self.admin_key_file.is_none() && self.admin_key.is_some() {
            out.push_str(&format!("# admin_key = \"{MASK}\"  (set, not printed)\n"));
        }
        if self.gpu_layers.is_none() {
            out.push_str("# gpu_layers: all with a GPU backend compiled in, else 0\n");
        }
        out
    }

    /// The settings as a layer that resolves back to `self` (keys left out).
    fn printed(&self) -> RawConfig {
        RawConfig {
            model: Some(self.model.clone()),
            model_alias: Some(self.model_aliases.clone()),
            cache_dir: Some(self.cache_dir.clone()),
            models_dir: Some(self.models_dir.clone()),
            model_id: Some(self.model_ids.iter().map(|(id, stem)| format!("{id}={stem}")).collect()),
            swap_on_demand: Some(self.swap_on_demand),
            host: Some(self.server.host.to_string()),
            port: Some(self.server.port),
            allow_remote: Some(!self.server.host.is_loopback()),
            agent_ctx: Some(self.agent_ctx),
            threads: Some(self.threads),
            kv_type: Some(self.kv_type),
            flash_attn: Some(self.flash_attn),
            resident_agents: Some(self.resident_agents),
            gpu_layers: self.gpu_layers,
            max_running: Some(self.max_running),
            step_tokens: Some(self.step_tokens),
            queue_capacity: Some(self.queue_capacity),
            default_max_tokens: Some(self.default_max_tokens),
            memory_warm_mb: Some(self.memory_warm_bytes >> 20),
            memory_disk_gb: Some(self.memory_disk_bytes as f64 / (1u64 << 30) as f64),
            api_key: None,
            api_key_file: self.api_key_file.clone(),
            admin_key: None,
            admin_key_file: self.admin_key_file.clone(),
            encryption_key_file: self.encryption_key_file.clone(),
            metrics_private: Some(!self.metrics_public),
            shutdown_grace_secs: Some(self.shutdown_grace_secs),
            rate_limit_rps: Some(self.rate_limit_rps),
            rate_limit_burst: Some(self.rate_limit_burst),
            global_rate_limit_rps: Some(self.global_rate_limit_rps),
            global_rate_limit_burst: Some(self.global_rate_limit_burst),
            max_body_bytes: Some(self.max_body_bytes),
            request_timeout_secs: Some(self.request_timeout_secs),
            stream_idle_timeout_secs: Some(self.stream_idle_timeout_secs),
            header_timeout_secs: Some(self.header_timeout_secs),
            body_timeout_secs: Some(self.body_timeout_secs),
            max_connections: Some(self.max_connections),
            persist_within_secs: Some(self.persist_within_secs),
            responses_max: Some(self.responses_max),
            responses_max_age_days: Some(self.responses_max_age_days),
            cors_origin: Some(self.cors_origins.clone()),
        }
    }
}

/// Bind address and port; a non-loopback address only with `allow_remote`.
fn server(host: Option<&str>, port: Option<u16>, allow_remote: Option<bool>) -> Result<ServerConfig, ConfigError> {
    let host_text = host.unwrap_or("127.0.0.1");
    let host: IpAddr = host_text.parse().map_err(|_| invalid("host", format!("{host_text:?} is not an IP address")))?;
    if !host.is_loopback() && allow_remote != Some(true) {
        return Err(invalid(
            "host",
            format!(
                "{host} is not a loopback address; pass --allow-remote (SEMANTIC_ALLOW_REMOTE=1) to expose the server"
            ),
        ));
    }
    Ok(ServerConfig { host, port: port.unwrap_or(8000) })
}

/// KV type and flash attention: flash attention off needs an f16 cache.
fn kv_cache(
    kv_type: Option<KvType>,
    flash_attn: Option<FlashAttention>,
) -> Result<(KvType, FlashAttention), ConfigError> {
    let kv_type = kv_type.unwrap_or(KvType::F16);
    let flash_attn = flash_attn.unwrap_or_default();
    if flash_attn == FlashAttention::Off && kv_type.is_quantized() {
        return Err(invalid("flash_attn", format!("off with kv_type \"{kv_type}\" (a quantized KV cache needs it)")));
    }
    Ok((kv_type, flash_attn))
}

/// The engine's shape: tokens per agent, agents resident, sequences at once, tokens per step.
struct Capacity {
    agent_ctx: u32,
    resident_agents: u32,
    max_running: usize,
    step_tokens: usize,
}

fn capacity(raw: &RawConfig) -> Result<Capacity, ConfigError> {
    let agent_ctx = within("agent_ctx", raw.agent_ctx.unwrap_or(8_192), 256..=1 << 20)?;
    let resident_agents = within("resident_agents", raw.resident_agents.unwrap_or(8), 1..=256)?;
    if u64::from(agent_ctx) * u64::from(resident_agents) > 1 << 22 {
        return Err(invalid(
            "resident_agents",
            format!("{resident_agents} agents of {agent_ctx} tokens exceed 4194304 KV cells in all"),
        ));
    }
    let resident = resident_agents as usize;
    let max_running = match raw.max_running {
        Some(asked) => within_because("max_running", asked, 1..=resident, ", at most resident_agents")?,
        None => 8.min(resident),
    };
    let step_tokens =
        within_because("step_tokens", raw.step_tokens.unwrap_or(512), max_running..=8192, ", at least max_running")?;
    Ok(Capacity { agent_ctx, resident_agents, max_running, step_tokens })
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
        check(RawConfig { kv_type: Some("q5_1/q4_0".parse().unwrap()), ..Default::default() }, None);
        for bad in ["kv_type = \"q5_2\"", "kv_type = \"q5_1/\"", "kv_type = \"q8_0/q4_0/q4_0\"", "kv_type = 4"] {
            let err = RawConfig::from_toml_str(bad).unwrap_err();
            assert!(err.contains("kv_type") && err.contains("expected"), "{bad}: {err}");
        }
        let err = RawConfig::from_toml_str("flash_attn = \"sometimes\"").unwrap_err();
        assert!(err.contains("flash_attn") && err.contains("expected auto, on or off"), "{err}");
        check(
            RawConfig { flash_attn: Some(FlashAttention::Off), kv_type: Some(KvType::Q8_0), ..Default::default() },
            Some("flash_attn"),
        );
        check(RawConfig::from_toml_str("flash_attn = \"OFF\"").unwrap().raw, None);
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
        assert_eq!(config.kv_type, KvType::Q8_0);
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
    fn model_ids_pair_an_id_with_a_file_stem() {
        let ids = |list: &[&str]| RawConfig {
            model_id: Some(list.iter().map(|a| a.to_string()).collect()),
            ..Default::default()
        };
        let config = Config::resolve(ids(&[" smol = SmolLM2-135M-Instruct.Q4_1", "", "g=gemma"])).unwrap();
        let want = [("smol", "SmolLM2-135M-Instruct.Q4_1"), ("g", "gemma")].map(|(i, s)| (i.to_owned(), s.to_owned()));
        assert_eq!(config.model_ids, want);
        let text = config.to_toml();
        assert!(text.contains("model_id = [\"smol=SmolLM2-135M-Instruct.Q4_1\", \"g=gemma\"]"), "{text}");
        for bad in [&["smol"][..], &["=stem"], &["id="], &["a b=c"], &["a=x", "a=y"], &["a=x", "b=x"]] {
            check(ids(bad), Some("model_id"));
        }
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

    /// Regression: `to_toml` escaped only `\\` and `"` in paths and printed aliases with Rust's
    /// `{:?}`; any string now goes through toml's serializer and reads back the same.
    #[test]
    fn printed_strings_of_any_characters_read_back_the_same() {
        let odd = "dir \"quoted\" back\\slash\nnew line\ttab é ✓ 🦀 '\u{7f}";
        let config = Config::resolve(RawConfig {
            model: Some(PathBuf::from(format!("/m/{odd}.gguf"))),
            cache_dir: Some(PathBuf::from(odd)),
            models_dir: Some(PathBuf::from("C:\\models\\")),
            encryption_key_file: Some(PathBuf::from(format!("/keys/{odd}"))),
            model_alias: Some(vec!["a\"b\\c'd".into()]),
            ..Default::default()
        })
        .unwrap();
        let text = config.to_toml();
        let layer = RawConfig::from_toml_str(&text).unwrap_or_else(|e| panic!("{e}:\n{text}"));
        assert_eq!(layer.raw.cache_dir.as_deref(), Some(Path::new(odd)), "{text}");
        assert_eq!(Config::resolve(layer.raw).unwrap(), config, "{text}");
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

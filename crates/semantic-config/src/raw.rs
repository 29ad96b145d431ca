//! `RawConfig`: one layer of configuration, every field optional.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// One layer (flags+env, or a TOML file). `merge` puts a higher layer over a lower one.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// GGUF model file.
    pub model: Option<PathBuf>,
    /// Directory for agent memory and caches.
    pub cache_dir: Option<PathBuf>,
    /// Directory of GGUF files an admin may swap to (default: the model's directory).
    pub models_dir: Option<PathBuf>,
    /// Address to bind.
    pub host: Option<String>,
    /// Port to bind (0 = any free port).
    pub port: Option<u16>,
    /// Allow binding to a non-loopback address.
    pub allow_remote: Option<bool>,
    /// Most tokens one agent may hold (prompt + reply): the cells of its own KV stream.
    pub agent_ctx: Option<u32>,
    /// Decode threads (0 = all CPUs).
    pub threads: Option<u32>,
    /// KV cache type: f16, q8_0 or q4_0.
    pub kv_type: Option<String>,
    /// Flash attention: auto, on or off.
    pub flash_attn: Option<String>,
    /// Agents resident in the engine at once (running + hot), one KV stream each.
    pub resident_agents: Option<u32>,
    /// Model layers offloaded to the GPU (default: all with a GPU backend compiled in, else 0).
    pub gpu_layers: Option<u32>,
    /// Most sequences decoding at once.
    pub max_running: Option<usize>,
    /// Tokens per engine step.
    pub step_tokens: Option<usize>,
    /// Admission queue bound.
    pub queue_capacity: Option<usize>,
    /// Default completion length when a request names none.
    pub default_max_tokens: Option<usize>,
    /// RAM budget for warm agents (exported KV states), in MiB.
    pub memory_warm_mb: Option<u64>,
    /// Disk budget for cold agent files, in GiB.
    pub memory_disk_gb: Option<f64>,
    /// API keys; each key is its own agent namespace. None/empty = no auth.
    pub api_keys: Option<Vec<String>>,
    /// File with one API key per line (blank lines and `#` comments ignored).
    pub api_key_file: Option<PathBuf>,
    /// Key for `/admin/*` (admin API disabled without one).
    pub admin_key: Option<String>,
    /// Serve `/metrics` without an API key.
    pub metrics_public: Option<bool>,
    /// Grace period for in-flight requests at shutdown, seconds.
    pub shutdown_grace_secs: Option<u64>,
    /// Requests per second per caller (API key; unauthenticated callers share one bucket); 0 = unlimited.
    pub rate_limit_rps: Option<f64>,
    /// Requests a caller may make at once above its rate (bucket size).
    pub rate_limit_burst: Option<u32>,
    /// Requests per second for the whole server; 0 = unlimited.
    pub global_rate_limit_rps: Option<f64>,
    /// Bucket size of the server-wide limit.
    pub global_rate_limit_burst: Option<u32>,
    /// Largest request body, bytes.
    pub max_body_bytes: Option<u64>,
    /// Longest a non-streaming generation may take, seconds.
    pub request_timeout_secs: Option<u64>,
    /// Longest a stream may go without a token, seconds.
    pub stream_idle_timeout_secs: Option<u64>,
    /// Origins allowed to call from a browser (CORS); `*` for any. None/empty = no CORS headers.
    pub cors_origins: Option<Vec<String>>,
}

impl RawConfig {
    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<Self, ConfigError> {
        let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        toml::from_str(&text).map_err(|e| file_err(e.to_string()))
    }

    /// `self` over `lower`: each field from `self` if set, else from `lower`.
    pub fn merge(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            model: self.model.or(lower.model),
            cache_dir: self.cache_dir.or(lower.cache_dir),
            models_dir: self.models_dir.or(lower.models_dir),
            host: self.host.or(lower.host),
            port: self.port.or(lower.port),
            allow_remote: self.allow_remote.or(lower.allow_remote),
            agent_ctx: self.agent_ctx.or(lower.agent_ctx),
            threads: self.threads.or(lower.threads),
            kv_type: self.kv_type.or(lower.kv_type),
            flash_attn: self.flash_attn.or(lower.flash_attn),
            resident_agents: self.resident_agents.or(lower.resident_agents),
            gpu_layers: self.gpu_layers.or(lower.gpu_layers),
            max_running: self.max_running.or(lower.max_running),
            step_tokens: self.step_tokens.or(lower.step_tokens),
            queue_capacity: self.queue_capacity.or(lower.queue_capacity),
            default_max_tokens: self.default_max_tokens.or(lower.default_max_tokens),
            memory_warm_mb: self.memory_warm_mb.or(lower.memory_warm_mb),
            memory_disk_gb: self.memory_disk_gb.or(lower.memory_disk_gb),
            api_keys: self.api_keys.filter(|k| !k.is_empty()).or(lower.api_keys),
            api_key_file: self.api_key_file.or(lower.api_key_file),
            admin_key: self.admin_key.or(lower.admin_key),
            metrics_public: self.metrics_public.or(lower.metrics_public),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            rate_limit_rps: self.rate_limit_rps.or(lower.rate_limit_rps),
            rate_limit_burst: self.rate_limit_burst.or(lower.rate_limit_burst),
            global_rate_limit_rps: self.global_rate_limit_rps.or(lower.global_rate_limit_rps),
            global_rate_limit_burst: self.global_rate_limit_burst.or(lower.global_rate_limit_burst),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            stream_idle_timeout_secs: self.stream_idle_timeout_secs.or(lower.stream_idle_timeout_secs),
            cors_origins: self.cors_origins.filter(|o| !o.is_empty()).or(lower.cors_origins),
        }
    }
}

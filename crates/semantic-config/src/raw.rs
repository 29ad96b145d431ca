//! `RawConfig`: one layer of configuration, every field optional; reading a TOML layer (renamed
//! keys accepted with a deprecation note, unknown keys refused with the nearest valid one).

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::ConfigError;

/// One layer (flags+env, or a TOML file). `merge` puts a higher layer over a lower one. TOML keys
/// are the field names, which are the flag names with `_` for `-`.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// GGUF model file.
    pub model: Option<PathBuf>,
    /// More names clients may use for the loaded model (for example `gpt-4o-mini`).
    pub model_alias: Option<Vec<String>>,
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
    pub api_key: Option<Vec<String>>,
    /// File with one API key per line (blank lines and `#` comments ignored).
    pub api_key_file: Option<PathBuf>,
    /// Key for `/admin/*` (admin API disabled without one).
    pub admin_key: Option<String>,
    /// File holding the admin key (its first line that is neither blank nor a `#` comment).
    pub admin_key_file: Option<PathBuf>,
    /// File holding the 256-bit master key for encrypting agent files at rest (32 raw bytes or 64
    /// hex digits). None = agent files are written in plaintext.
    pub encryption_key_file: Option<PathBuf>,
    /// Require an API key for `/metrics`.
    pub metrics_private: Option<bool>,
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
    /// Longest a client may take to send a request's headers (also: an idle keep-alive connection), seconds.
    pub header_timeout_secs: Option<u64>,
    /// Longest a client may take to send a request's body, seconds.
    pub body_timeout_secs: Option<u64>,
    /// Most open client connections; past it a new one gets a 503 and is closed.
    pub max_connections: Option<u32>,
    /// Longest a finished turn waits for disk while the server is never idle, seconds.
    pub persist_within_secs: Option<u64>,
    /// Most stored Responses (`/v1/responses` with `store`) kept; the oldest go first.
    pub responses_max: Option<usize>,
    /// Origins allowed to call from a browser (CORS); `*` for any. None/empty = no CORS headers.
    pub cors_origin: Option<Vec<String>>,
}

/// Whether a renamed key means the same as its new name or the opposite.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sense {
    Same,
    Inverted,
}

/// TOML keys that were renamed to match their flags; still read, with a deprecation note.
const RENAMED: [(&str, &str, Sense); 3] = [
    ("api_keys", "api_key", Sense::Same),
    ("cors_origins", "cors_origin", Sense::Same),
    ("metrics_public", "metrics_private", Sense::Inverted),
];

/// A TOML layer and what was read from it under an old name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TomlLayer {
    /// The settings.
    pub raw: RawConfig,
    /// One sentence per deprecated key used, naming its replacement.
    pub deprecations: Vec<String>,
}

impl RawConfig {
    /// Every TOML key, in declaration order: the field names as serde sees them, so this list can
    /// never drift from the struct.
    pub fn keys() -> &'static [&'static str] {
        introspect::struct_fields::<RawConfig>()
    }

    /// Reads a TOML file.
    pub fn from_toml_file(path: &Path) -> Result<TomlLayer, ConfigError> {
        let file_err = |reason: String| ConfigError::File { path: path.display().to_string(), reason };
        let text = std::fs::read_to_string(path).map_err(|e| file_err(e.to_string()))?;
        Self::from_toml_str(&text).map_err(file_err)
    }

    /// Parses TOML text: renamed keys are mapped to their new names (noted in `deprecations`), and
    /// an unknown key is an error that names it, the nearest valid key and every valid key.
    pub fn from_toml_str(text: &str) -> Result<TomlLayer, String> {
        let mut table: toml::Table = text.parse().map_err(|e: toml::de::Error| e.to_string())?;
        let mut deprecations = Vec::new();
        for (old, new, sense) in RENAMED {
            let Some(value) = table.remove(old) else { continue };
            if table.contains_key(new) {
                return Err(format!("both `{old}` (deprecated) and `{new}` are set; keep only `{new}`"));
            }
            let (value, note) = match (sense, value) {
                (Sense::Same, v) => (v, format!("`{old}` is deprecated; call it `{new}` (the flag's name)")),
                (Sense::Inverted, toml::Value::Boolean(b)) => (
                    toml::Value::Boolean(!b),
                    format!("`{old} = {b}` is deprecated; write `{new} = {}` instead (the flag's name)", !b),
                ),
                (Sense::Inverted, other) => {
                    return Err(format!("`{old}` must be true or false, not a {}", other.type_str()))
                }
            };
            deprecations.push(note);
            table.insert(new.to_owned(), value);
        }
        let keys = Self::keys();
        if let Some(unknown) = table.keys().find(|k| !keys.contains(&k.as_str())) {
            return Err(unknown_key(unknown, keys));
        }
        let raw = toml::Value::Table(table).try_into().map_err(|e: toml::de::Error| e.to_string())?;
        Ok(TomlLayer { raw, deprecations })
    }

    /// `self` over `lower`: each field from `self` if set, else from `lower`.
    pub fn merge(self, lower: RawConfig) -> RawConfig {
        RawConfig {
            model: self.model.or(lower.model),
            model_alias: self.model_alias.filter(|a| !a.is_empty()).or(lower.model_alias),
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
            api_key: self.api_key.filter(|k| !k.is_empty()).or(lower.api_key),
            api_key_file: self.api_key_file.or(lower.api_key_file),
            admin_key: self.admin_key.or(lower.admin_key),
            admin_key_file: self.admin_key_file.or(lower.admin_key_file),
            encryption_key_file: self.encryption_key_file.or(lower.encryption_key_file),
            metrics_private: self.metrics_private.or(lower.metrics_private),
            shutdown_grace_secs: self.shutdown_grace_secs.or(lower.shutdown_grace_secs),
            rate_limit_rps: self.rate_limit_rps.or(lower.rate_limit_rps),
            rate_limit_burst: self.rate_limit_burst.or(lower.rate_limit_burst),
            global_rate_limit_rps: self.global_rate_limit_rps.or(lower.global_rate_limit_rps),
            global_rate_limit_burst: self.global_rate_limit_burst.or(lower.global_rate_limit_burst),
            max_body_bytes: self.max_body_bytes.or(lower.max_body_bytes),
            request_timeout_secs: self.request_timeout_secs.or(lower.request_timeout_secs),
            stream_idle_timeout_secs: self.stream_idle_timeout_secs.or(lower.stream_idle_timeout_secs),
            header_timeout_secs: self.header_timeout_secs.or(lower.header_timeout_secs),
            body_timeout_secs: self.body_timeout_secs.or(lower.body_timeout_secs),
            max_connections: self.max_connections.or(lower.max_connections),
            persist_within_secs: self.persist_within_secs.or(lower.persist_within_secs),
            responses_max: self.responses_max.or(lower.responses_max),
            cors_origin: self.cors_origin.filter(|o| !o.is_empty()).or(lower.cors_origin),
        }
    }
}

/// "unknown key `prot` (did you mean `port`?); valid keys: ...".
fn unknown_key(unknown: &str, keys: &[&str]) -> String {
    let nearest = keys
        .iter()
        .map(|k| (strsim::damerau_levenshtein(unknown, k), *k))
        .filter(|(d, k)| *d <= 3.max(k.len() / 3))
        .min();
    let renamed = RENAMED.iter().find(|(old, ..)| *old == unknown).map(|(_, new, _)| *new);
    let hint = match (renamed, nearest) {
        (Some(new), _) | (None, Some((_, new))) => format!(" (did you mean `{new}`?)"),
        (None, None) => String::new(),
    };
    format!("unknown key `{unknown}`{hint}; valid keys: {}", keys.join(", "))
}

mod introspect {
    //! The field names of a `#[derive(Deserialize)]` struct, read from what the derive passes to
    //! `deserialize_struct`. By hand because serde has no public API for it and no small crate
    //! in the tree offers it.
    use serde::de::{self, Deserialize, Deserializer, Visitor};

    struct Fields<'a>(&'a mut &'static [&'static str]);

    impl<'de> Deserializer<'de> for Fields<'_> {
        type Error = de::value::Error;

        fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
            Err(de::Error::custom("not a struct"))
        }

        fn deserialize_struct<V: Visitor<'de>>(
            self,
            _name: &'static str,
            fields: &'static [&'static str],
            _visitor: V,
        ) -> Result<V::Value, Self::Error> {
            *self.0 = fields;
            Err(de::Error::custom("fields read"))
        }

        serde::forward_to_deserialize_any! {
            bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf option
            unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier ignored_any
        }
    }

    /// The fields `T` declares (empty for anything that is not a struct).
    pub fn struct_fields<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
        let mut fields: &'static [&'static str] = &[];
        let _ = T::deserialize(Fields(&mut fields));
        fields
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(text: &str, expected: Result<(RawConfig, usize), &str>) {
        match (RawConfig::from_toml_str(text), expected) {
            (Ok(layer), Ok((raw, notes))) => {
                assert_eq!(layer.raw, raw, "{text}");
                assert_eq!(layer.deprecations.len(), notes, "{text}: {:?}", layer.deprecations);
            }
            (Err(message), Err(part)) => assert!(message.contains(part), "{text}: {message}"),
            (got, want) => panic!("{text}: got {got:?}, wanted {want:?}"),
        }
    }

    #[test]
    fn keys_are_the_fields_in_order() {
        let keys = RawConfig::keys();
        assert_eq!(keys.first(), Some(&"model"));
        assert_eq!(keys.last(), Some(&"cors_origin"));
        assert_eq!(keys.len(), 39);
        for key in ["api_key", "metrics_private", "model_alias", "admin_key_file", "models_dir", "encryption_key_file"]
        {
            assert!(keys.contains(&key), "{key}");
        }
    }

    #[test]
    fn toml_keys_are_named_as_their_flags_and_old_names_still_read() {
        let keys = |k: &[&str]| Some(k.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        check("api_key = [\"k-123456\"]", Ok((RawConfig { api_key: keys(&["k-123456"]), ..Default::default() }, 0)));
        check("api_keys = [\"k-123456\"]", Ok((RawConfig { api_key: keys(&["k-123456"]), ..Default::default() }, 1)));
        check("cors_origins = [\"*\"]", Ok((RawConfig { cors_origin: keys(&["*"]), ..Default::default() }, 1)));
        check("metrics_private = true", Ok((RawConfig { metrics_private: Some(true), ..Default::default() }, 0)));
        check("metrics_public = true", Ok((RawConfig { metrics_private: Some(false), ..Default::default() }, 1)));
        check("metrics_public = false", Ok((RawConfig { metrics_private: Some(true), ..Default::default() }, 1)));
        check("metrics_public = 1", Err("`metrics_public` must be true or false"));
        check("api_keys = []\napi_key = []", Err("keep only `api_key`"));
        let note = RawConfig::from_toml_str("metrics_public = true").unwrap().deprecations.remove(0);
        assert!(note.contains("metrics_private = false"), "{note}");
    }

    #[test]
    fn unknown_keys_name_the_key_and_the_nearest_valid_one() {
        check("prot = 1", Err("unknown key `prot` (did you mean `port`?); valid keys: model, model_alias,"));
        check("model_aliases = [\"x\"]", Err("did you mean `model_alias`?"));
        check("api_key_files = \"k\"", Err("did you mean `api_key_file`?"));
        let far = RawConfig::from_toml_str("completely_unrelated_setting = 1").unwrap_err();
        assert!(!far.contains("did you mean") && far.contains("valid keys: model,"), "{far}");
        check("port = \"eighty\"", Err("port"));
    }
}

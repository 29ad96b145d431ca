//! `RawConfig`: one layer of configuration, every field optional, each setting declared once (its
//! flag, env var, TOML key and help); reading a TOML layer (renamed keys accepted with a deprecation
//! note, unknown keys refused with the nearest valid one). Does not parse argv or env: the binary
//! does, with the clap declarations made here.

use std::path::{Path, PathBuf};

use clap::builder::BoolishValueParser;
use clap::Args;
use serde::{Deserialize, Serialize};

use crate::{ConfigError, FlashAttention, KvType};

/// Declares the layer struct and its `merge` from one list of fields, so a setting is written
/// once: its doc comment is the flag's help, its clap attribute names the flag and its env var,
/// its name is the TOML key (serde), and `merge` follows. By hand (a `macro_rules!`) because
/// no well-kept crate derives a field-by-field `Option::or` merge.
macro_rules! layer {
    ($(#[$meta:meta])* pub struct $name:ident { $($(#[$field_meta:meta])* pub $field:ident: $ty:ty,)* }) => {
        $(#[$meta])*
        pub struct $name {
            $($(#[$field_meta])* pub $field: $ty,)*
        }

        impl $name {
            /// `self` over `lower`: each field from `self` if set, else from `lower`.
            pub fn merge(self, lower: $name) -> $name {
                $name { $($field: self.$field.or(lower.$field),)* }
            }
        }
    };
}

layer! {
    /// One layer: flags + `SEMANTIC_*` env (clap), or a TOML file (serde). Every field is optional
    /// so that an unset one falls through to the layer below; `merge` puts a higher layer over a
    /// lower one. TOML keys are the field names, which are the flag names with `_` for `-`. The
    /// doc comments are the flags' `--help`.
    #[derive(Debug, Clone, Default, PartialEq, Args, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct RawConfig {
        /// GGUF model file [default: models/SmolLM2-135M-Instruct.Q4_1.gguf].
        #[arg(long, env = "SEMANTIC_MODEL")]
        pub model: Option<PathBuf>,
        /// Another name clients may send as `model` for the loaded model, e.g. gpt-4o-mini (repeatable; env:
        /// comma-separated).
        #[arg(long, env = "SEMANTIC_MODEL_ALIAS", value_delimiter = ',')]
        pub model_alias: Option<Vec<String>>,
        /// Directory for agent memory and caches [default: .semantic].
        #[arg(long, env = "SEMANTIC_CACHE_DIR")]
        pub cache_dir: Option<PathBuf>,
        /// Directory of GGUF files the registry lists and an admin may swap to [default: the model's directory].
        #[arg(long, env = "SEMANTIC_MODELS_DIR")]
        pub models_dir: Option<PathBuf>,
        /// A registry id for a GGUF file of the models directory, as ID=FILE_STEM, e.g.
        /// smol=SmolLM2-135M-Instruct.Q4_1 (repeatable; env: comma-separated). The id replaces the stem in
        /// model lists, swaps and requests; the stem still answers.
        #[arg(long, env = "SEMANTIC_MODEL_ID", value_delimiter = ',')]
        pub model_id: Option<Vec<String>>,
        /// A request naming another model of the registry swaps to it first (drain, persist, load: seconds,
        /// and every other request waits or gets 503 meanwhile) instead of a 404 (env: 1/0, true/false,
        /// yes/no, on/off) [default: off].
        #[arg(long, env = "SEMANTIC_SWAP_ON_DEMAND", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        pub swap_on_demand: Option<bool>,
        /// Address to bind [default: 127.0.0.1].
        #[arg(long, env = "SEMANTIC_HOST")]
        pub host: Option<String>,
        /// Port to bind, 0 = any free port [default: 8000].
        #[arg(long, env = "SEMANTIC_PORT")]
        pub port: Option<u16>,
        /// Allow binding to a non-loopback address (env: 1/0, true/false, yes/no, on/off).
        #[arg(long, env = "SEMANTIC_ALLOW_REMOTE", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        pub allow_remote: Option<bool>,
        /// Most tokens one agent may hold, prompt + reply (its own KV stream) [default: 8192].
        #[arg(long, env = "SEMANTIC_AGENT_CTX")]
        pub agent_ctx: Option<u32>,
        /// Decode threads, 0 = all CPUs [default: 0].
        #[arg(long, env = "SEMANTIC_THREADS")]
        pub threads: Option<u32>,
        /// KV cache type: f16, q8_0, q5_1, q5_0, q4_1, q4_0 or iq4_nl for both K and V, or K/V such as q5_1/q4_0
        /// [default: f16].
        #[arg(long, env = "SEMANTIC_KV_TYPE")]
        pub kv_type: Option<KvType>,
        /// Flash attention: auto (off for f16, on for quantized KV), on or off [default: auto].
        #[arg(long, env = "SEMANTIC_FLASH_ATTN")]
        pub flash_attn: Option<FlashAttention>,
        /// Agents resident in the engine at once, running or idle, one KV stream each [default: 8].
        #[arg(long, env = "SEMANTIC_RESIDENT_AGENTS")]
        pub resident_agents: Option<u32>,
        /// Model layers offloaded to the GPU [default: all with a GPU backend compiled in, else 0].
        #[arg(long, env = "SEMANTIC_GPU_LAYERS")]
        pub gpu_layers: Option<u32>,
        /// Most sequences decoding at once [default: 8].
        #[arg(long, env = "SEMANTIC_MAX_RUNNING")]
        pub max_running: Option<usize>,
        /// Tokens per engine step (decode + prefill chunks) [default: 512].
        #[arg(long, env = "SEMANTIC_STEP_TOKENS")]
        pub step_tokens: Option<usize>,
        /// Admission queue bound [default: 64].
        #[arg(long, env = "SEMANTIC_QUEUE_CAPACITY")]
        pub queue_capacity: Option<usize>,
        /// Completion length when a request names none [default: 512].
        #[arg(long, env = "SEMANTIC_DEFAULT_MAX_TOKENS")]
        pub default_max_tokens: Option<usize>,
        /// RAM budget for warm agents (exported KV states), MiB [default: 1024].
        #[arg(long, env = "SEMANTIC_MEMORY_WARM_MB")]
        pub memory_warm_mb: Option<u64>,
        /// Disk budget for cold agent files, GiB [default: 20].
        #[arg(long, env = "SEMANTIC_MEMORY_DISK_GB")]
        pub memory_disk_gb: Option<f64>,
        /// API key, at least 8 characters (repeatable; env: comma-separated). Each key is its own agent namespace.
        #[arg(long, env = "SEMANTIC_API_KEYS", value_delimiter = ',')]
        pub api_key: Option<Vec<String>>,
        /// File with one API key per line (`#` comments and blank lines skipped).
        #[arg(long, env = "SEMANTIC_API_KEY_FILE")]
        pub api_key_file: Option<PathBuf>,
        /// Admin key for /admin/*, at least 8 characters (disabled without one).
        #[arg(long, env = "SEMANTIC_ADMIN_KEY")]
        pub admin_key: Option<String>,
        /// File holding the admin key (its first line that is not blank or a `#` comment).
        #[arg(long, env = "SEMANTIC_ADMIN_KEY_FILE")]
        pub admin_key_file: Option<PathBuf>,
        /// Encrypt agent files at rest with the 256-bit master key in this file (32 raw bytes or 64
        /// hex digits; keep it mode 0600). Without one, agent files are plaintext.
        #[arg(long, env = "SEMANTIC_ENCRYPTION_KEY_FILE")]
        pub encryption_key_file: Option<PathBuf>,
        /// Require an API key for /metrics [default: public] (env: 1/0, true/false, yes/no, on/off).
        #[arg(long, env = "SEMANTIC_METRICS_PRIVATE", num_args = 0..=1, require_equals = true,
              default_missing_value = "true", value_parser = BoolishValueParser::new())]
        pub metrics_private: Option<bool>,
        /// Seconds in-flight requests get to finish at shutdown [default: 30].
        #[arg(long, env = "SEMANTIC_SHUTDOWN_GRACE_SECS")]
        pub shutdown_grace_secs: Option<u64>,
        /// Requests per second per API key (unauthenticated callers share one bucket), 0 = unlimited [default: 0].
        #[arg(long, env = "SEMANTIC_RATE_LIMIT_RPS")]
        pub rate_limit_rps: Option<f64>,
        /// Requests a key may make at once above its rate [default: the rate rounded up].
        #[arg(long, env = "SEMANTIC_RATE_LIMIT_BURST")]
        pub rate_limit_burst: Option<u32>,
        /// Requests per second for the whole server, 0 = unlimited [default: 0].
        #[arg(long, env = "SEMANTIC_GLOBAL_RATE_LIMIT_RPS")]
        pub global_rate_limit_rps: Option<f64>,
        /// Server-wide burst [default: the global rate rounded up].
        #[arg(long, env = "SEMANTIC_GLOBAL_RATE_LIMIT_BURST")]
        pub global_rate_limit_burst: Option<u32>,
        /// Largest request body in bytes (larger: 413) [default: 8388608].
        #[arg(long, env = "SEMANTIC_MAX_BODY_BYTES")]
        pub max_body_bytes: Option<u64>,
        /// Seconds a non-streaming generation may take (then 504, and it is cancelled) [default: 600].
        #[arg(long, env = "SEMANTIC_REQUEST_TIMEOUT_SECS")]
        pub request_timeout_secs: Option<u64>,
        /// Seconds a stream may go without a token (then an error event, and it is cancelled) [default: 120].
        #[arg(long, env = "SEMANTIC_STREAM_IDLE_TIMEOUT_SECS")]
        pub stream_idle_timeout_secs: Option<u64>,
        /// Seconds a client may take to send a request's headers; an idle keep-alive connection is
        /// closed after it too [default: 20].
        #[arg(long, env = "SEMANTIC_HEADER_TIMEOUT_SECS")]
        pub header_timeout_secs: Option<u64>,
        /// Seconds a client may take to send a request's body (then 408) [default: 60].
        #[arg(long, env = "SEMANTIC_BODY_TIMEOUT_SECS")]
        pub body_timeout_secs: Option<u64>,
        /// Most open client connections; past it a new connection gets a 503 with Retry-After and is
        /// closed [default: 1024].
        #[arg(long, env = "SEMANTIC_MAX_CONNECTIONS")]
        pub max_connections: Option<u32>,
        /// Seconds a finished turn may wait for disk while requests keep the server busy (1-3600);
        /// an idle server writes after 1 s [default: 5].
        #[arg(long, env = "SEMANTIC_PERSIST_WITHIN_SECS")]
        pub persist_within_secs: Option<u64>,
        /// Most stored Responses (`/v1/responses`, `store: true`) kept; the oldest go first [default: 10000].
        #[arg(long, env = "SEMANTIC_RESPONSES_MAX")]
        pub responses_max: Option<usize>,
        /// Days a stored Response is kept; older ones are deleted at start and as the store is used, and read as
        /// unknown (0 = keep forever) [default: 30].
        #[arg(long, env = "SEMANTIC_RESPONSES_MAX_AGE_DAYS")]
        pub responses_max_age_days: Option<u64>,
        /// Origin allowed to call from a browser (repeatable; env: comma-separated; `*` = any) [default: none, no
        /// CORS].
        #[arg(long, env = "SEMANTIC_CORS_ORIGINS", value_delimiter = ',')]
        pub cors_origin: Option<Vec<String>>,
    }
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
        assert_eq!(keys.len(), 42);
        for key in ["api_key", "metrics_private", "model_alias", "admin_key_file", "models_dir", "encryption_key_file"]
        {
            assert!(keys.contains(&key), "{key}");
        }
    }

    /// The flags as the binary declares them.
    fn command() -> clap::Command {
        RawConfig::augment_args(clap::Command::new("semantic").no_binary_name(true))
    }

    fn flags(args: &[&str]) -> Result<RawConfig, String> {
        let matches = command().try_get_matches_from(args).map_err(|e| e.to_string())?;
        <RawConfig as clap::FromArgMatches>::from_arg_matches(&matches).map_err(|e| e.to_string())
    }

    #[test]
    fn every_key_is_a_flag_with_its_env_var() {
        let command = command();
        let args: Vec<&clap::Arg> = command.get_arguments().collect();
        assert_eq!(args.len(), RawConfig::keys().len());
        for (arg, key) in args.iter().zip(RawConfig::keys()) {
            assert_eq!(arg.get_id().as_str(), *key);
            assert_eq!(arg.get_long(), Some(key.replace('_', "-").as_str()), "{key}");
            // Two env vars kept their plural names from before the TOML keys were renamed.
            let env = match *key {
                "api_key" => "SEMANTIC_API_KEYS".to_owned(),
                "cors_origin" => "SEMANTIC_CORS_ORIGINS".to_owned(),
                _ => format!("SEMANTIC_{}", key.to_ascii_uppercase()),
            };
            assert_eq!(arg.get_env().and_then(|e| e.to_str()), Some(env.as_str()), "{key}");
        }
    }

    #[test]
    fn flags_parse_into_the_layer_unset_ones_stay_none() {
        assert_eq!(flags(&[]), Ok(RawConfig::default()));
        let set = flags(&["--allow-remote", "--port", "9", "--api-key", "k-1,k-2", "--api-key", "k-3"]).unwrap();
        assert_eq!(set.allow_remote, Some(true));
        assert_eq!((set.port, set.metrics_private), (Some(9), None));
        assert_eq!(set.api_key, Some(vec!["k-1".into(), "k-2".into(), "k-3".into()]));
        assert_eq!(flags(&["--metrics-private=no"]).unwrap().metrics_private, Some(false));
        let kv = flags(&["--kv-type", "Q5_1/q4_0", "--flash-attn", "on"]).unwrap();
        assert_eq!(kv.kv_type, Some(KvType { k: crate::KvElem::Q5_1, v: crate::KvElem::Q4_0 }));
        assert_eq!(kv.flash_attn, Some(FlashAttention::On));
        let err = flags(&["--kv-type", "bf16"]).unwrap_err();
        assert!(err.contains("--kv-type") && err.contains("expected one of f16"), "{err}");
        let err = flags(&["--flash-attn", "sometimes"]).unwrap_err();
        assert!(err.contains("--flash-attn") && err.contains("expected auto, on or off"), "{err}");
    }

    #[test]
    fn a_higher_layer_wins_field_by_field() {
        let flags = RawConfig { port: Some(1), api_key: Some(vec!["k".into()]), ..Default::default() };
        let file = RawConfig { port: Some(2), host: Some("::1".into()), api_key: None, ..Default::default() };
        let merged = flags.merge(file);
        assert_eq!((merged.port, merged.host.as_deref()), (Some(1), Some("::1")));
        assert_eq!(merged.api_key, Some(vec!["k".into()]));
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

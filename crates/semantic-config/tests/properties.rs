//! Property tests of the config loader (issue 19): any TOML text, hostile or not, is either a
//! layer or an error message; never a panic. Cases: `PROPTEST_CASES` (256 by default).

use proptest::prelude::*;
use semantic_config::{Config, RawConfig};

/// Lines that look like the config file: known keys with values of every type, sections,
/// broken syntax.
fn toml_line() -> impl Strategy<Value = String> {
    let key = prop::sample::select(RawConfig::keys().to_vec()).prop_map(str::to_string);
    let value = prop_oneof![
        Just("0".to_string()),
        Just("-1".to_string()),
        Just("18446744073709551616".to_string()),
        Just("1e400".to_string()),
        Just("nan".to_string()),
        Just("true".to_string()),
        Just("\"\"".to_string()),
        Just("\"********\"".to_string()),
        Just("[\"a\", 1]".to_string()),
        Just("{ a = 1 }".to_string()),
        Just("\"../../etc\"".to_string()),
        "\"[a-z0-9./ ]{0,12}\"",
        any::<String>().prop_map(|s| s.chars().take(12).collect()),
    ];
    prop_oneof![
        (key, value).prop_map(|(k, v)| format!("{k} = {v}")),
        Just("[section]".to_string()),
        Just("metrics_public = false".to_string()),
        Just("= 3".to_string()),
        any::<String>().prop_map(|s| s.chars().take(16).collect()),
    ]
}

proptest! {
    #[test]
    fn any_toml_is_a_layer_or_an_error(lines in prop::collection::vec(toml_line(), 0..8)) {
        let text = lines.join("\n");
        if let Ok(layer) = RawConfig::from_toml_str(&text) {
            let _ = Config::resolve(layer.raw);
        }
    }
}

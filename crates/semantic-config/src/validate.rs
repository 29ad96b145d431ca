//! The checks `Config::resolve` runs by hand: one range helper for every numeric bound, and the
//! rules that are not ranges (keys, key files, aliases, origins, rate and burst). Each error names
//! the field as in the TOML file.

use std::fmt::Display;
use std::ops::{Bound, RangeBounds};
use std::path::Path;

use crate::{ConfigError, MIN_KEY_LEN};

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid { field, reason: reason.into() }
}

/// `value` if `range` (inclusive bounds) holds it, else an error naming `field`, the value and
/// the range: "0 (expected at least 1)", "10 (expected 1024..=1073741824)". NaN is never in range.
pub(crate) fn within<T: PartialOrd + Display>(
    field: &'static str,
    value: T,
    range: impl RangeBounds<T>,
) -> Result<T, ConfigError> {
    within_because(field, value, range, "")
}

/// [`within`], the expectation followed by `why` ("; 0 = unlimited") when it fails.
pub(crate) fn within_because<T: PartialOrd + Display>(
    field: &'static str,
    value: T,
    range: impl RangeBounds<T>,
    why: &str,
) -> Result<T, ConfigError> {
    if range.contains(&value) {
        return Ok(value);
    }
    let bound = |b: Bound<&T>| match b {
        Bound::Included(v) | Bound::Excluded(v) => Some(v.to_string()),
        Bound::Unbounded => None,
    };
    let expected = match (bound(range.start_bound()), bound(range.end_bound())) {
        (Some(lo), Some(hi)) => format!("{lo}..={hi}"),
        (Some(lo), None) => format!("at least {lo}"),
        (None, Some(hi)) => format!("at most {hi}"),
        (None, None) => "a number".to_owned(),
    };
    Err(invalid(field, format!("{value} (expected {expected}{why})")))
}

/// The keys in a key file: one per line, blank lines and `#` comments skipped.
pub(crate) fn read_keys(field: &'static str, path: &Path) -> Result<Vec<String>, ConfigError> {
    let text =
        std::fs::read_to_string(path).map_err(|e| invalid(field, format!("cannot read {}: {e}", path.display())))?;
    Ok(text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(String::from).collect())
}

/// A key is at least [`MIN_KEY_LEN`] characters and is not the mask `semantic config` prints.
pub(crate) fn check_key(field: &'static str, key: &str) -> Result<(), ConfigError> {
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

/// Inline API keys plus those of `api_key_file`, blanks dropped, each checked.
pub(crate) fn api_keys(inline: Option<Vec<String>>, file: Option<&Path>) -> Result<Vec<String>, ConfigError> {
    let mut keys = inline.unwrap_or_default();
    if let Some(path) = file {
        keys.extend(read_keys("api_key_file", path)?);
    }
    keys.retain(|k| !k.trim().is_empty());
    for key in &keys {
        check_key("api_key", key)?;
    }
    Ok(keys)
}

/// The admin key, given inline or as the first key of `admin_key_file` (not both), checked.
pub(crate) fn admin_key(inline: Option<String>, file: Option<&Path>) -> Result<Option<String>, ConfigError> {
    let key = match (inline, file) {
        (Some(_), Some(_)) => return Err(invalid("admin_key", "set admin_key or admin_key_file, not both")),
        (Some(key), None) => Some(key),
        (None, Some(path)) => match read_keys("admin_key_file", path)?.into_iter().next() {
            Some(key) => Some(key),
            None => return Err(invalid("admin_key_file", format!("{} holds no key", path.display()))),
        },
        (None, None) => None,
    };
    if let Some(key) = &key {
        check_key("admin_key", key)?;
    }
    Ok(key)
}

/// Names clients may send as `model`: 1-256 visible ASCII characters each.
pub(crate) fn model_aliases(aliases: Vec<String>) -> Result<Vec<String>, ConfigError> {
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

/// `ID=FILE_STEM` registry ids: both sides 1-256 visible ASCII characters, the id without `=`;
/// an id given twice, or two ids for one file, is an error.
pub(crate) fn model_ids(entries: Vec<String>) -> Result<Vec<(String, String)>, ConfigError> {
    let visible = |s: &str| !s.is_empty() && s.len() <= 256 && s.bytes().all(|b| b.is_ascii_graphic());
    let mut out: Vec<(String, String)> = Vec::new();
    for entry in entries.iter().map(|e| e.trim()).filter(|e| !e.is_empty()) {
        let Some((id, stem)) = entry.split_once('=').map(|(i, s)| (i.trim(), s.trim())) else {
            return Err(invalid(
                "model_id",
                format!("{entry:?} (expected ID=FILE_STEM, e.g. smol=SmolLM2-135M-Instruct.Q4_1)"),
            ));
        };
        if !visible(id) || !visible(stem) {
            return Err(invalid("model_id", format!("{entry:?} (id and file stem: 1-256 visible ASCII characters)")));
        }
        if let Some((other, _)) = out.iter().find(|(i, s)| i == id || s == stem) {
            return Err(invalid("model_id", format!("{entry:?} repeats the id or file of `{other}`")));
        }
        out.push((id.to_owned(), stem.to_owned()));
    }
    Ok(out)
}

/// A rate (0 = unlimited) and its bucket size; the burst defaults to the rate rounded up.
pub(crate) fn rate_limit(
    (rps_field, rps): (&'static str, Option<f64>),
    (burst_field, burst): (&'static str, Option<u32>),
) -> Result<(f64, u32), ConfigError> {
    let rps = within_because(rps_field, rps.unwrap_or(0.0), 0.0..=1e6, "; 0 = unlimited")?;
    let burst = match burst {
        Some(0) if rps > 0.0 => {
            return Err(invalid(burst_field, format!("must be at least 1 when {rps_field} is set")))
        }
        Some(b) => within(burst_field, b, ..=1_000_000)?,
        None if rps > 0.0 => rps.ceil().max(1.0) as u32,
        None => 0,
    };
    Ok((rps, burst))
}

/// `*` alone, or origins as browsers send them: `http(s)://host[:port]`, no path, no trailing slash.
pub(crate) fn cors_origins(origins: Vec<String>) -> Result<Vec<String>, ConfigError> {
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
                format!(
                    "{origin:?} is not an origin (expected \"*\" or scheme://host[:port], \
                     e.g. https://app.example.com)"
                ),
            ));
        }
    }
    Ok(origins)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: PartialOrd + Display>(value: T, range: impl RangeBounds<T>, expected: Result<(), &str>) {
        let got = within("field", value, range).map(|_| ()).map_err(|e| e.to_string());
        match (&got, expected) {
            (Ok(()), Ok(())) => {}
            (Err(message), Err(want)) => assert_eq!(message, want),
            _ => panic!("got {got:?}, wanted {expected:?}"),
        }
    }

    #[test]
    fn range_errors_name_the_field_the_value_and_the_bounds() {
        check(5u32, 1..=10, Ok(()));
        check(1u32, 1..=10, Ok(()));
        check(10u32, 1..=10, Ok(()));
        check(0u32, 1..=10, Err("invalid field: 0 (expected 1..=10)"));
        check(11u64, 1..=10, Err("invalid field: 11 (expected 1..=10)"));
        check(0usize, 1.., Err("invalid field: 0 (expected at least 1)"));
        check(2_000_000u32, ..=1_000_000, Err("invalid field: 2000000 (expected at most 1000000)"));
        check(-1.0f64, 0.0..=1e6, Err("invalid field: -1 (expected 0..=1000000)"));
        check(f64::NAN, 0.0..=1e6, Err("invalid field: NaN (expected 0..=1000000)"));
        let why = within_because("rate", 1e7, 0.0..=1e6, "; 0 = unlimited").unwrap_err().to_string();
        assert_eq!(why, "invalid rate: 10000000 (expected 0..=1000000; 0 = unlimited)");
    }
}

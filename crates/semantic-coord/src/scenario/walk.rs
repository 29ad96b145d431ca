//! Reading a position-marked YAML tree (saphyr's `MarkedYaml`) into typed values while collecting
//! every problem as a `ScenarioIssue` with its line and field path. Does not own the scenario
//! schema (that is `build.rs`), only the generic field access: strict mappings, strings with
//! length limits, integers in ranges, booleans, closed sets and lists.

use std::str::FromStr;

use saphyr::{MarkedYaml, Marker, Scalar, YamlData};

use super::ScenarioIssue;

/// The issues found so far; every reader appends to it and goes on.
#[derive(Debug, Default)]
pub(super) struct Issues(pub(super) Vec<ScenarioIssue>);

impl Issues {
    /// Records a problem at `at` for field `path`.
    pub(super) fn push(&mut self, at: Marker, path: &str, message: impl Into<String>) {
        self.0.push(ScenarioIssue {
            line: at.line().max(1),
            column: at.col() + 1,
            path: path.to_string(),
            message: message.into(),
        });
    }
}

/// Where a node starts.
pub(super) fn start(node: &MarkedYaml<'_>) -> Marker {
    node.span.start
}

/// The node behind any tags (`!!str "x"` reads as `"x"`).
fn untagged<'a, 'i>(node: &'a MarkedYaml<'i>) -> &'a MarkedYaml<'i> {
    match &node.data {
        YamlData::Tagged(_, inner) => untagged(inner),
        _ => node,
    }
}

/// What a node is, for "expected X, found Y" messages.
fn kind(node: &MarkedYaml<'_>) -> &'static str {
    match &untagged(node).data {
        YamlData::Value(Scalar::Null) => "null",
        YamlData::Value(Scalar::Boolean(_)) => "a boolean",
        YamlData::Value(Scalar::Integer(_)) => "an integer",
        YamlData::Value(Scalar::FloatingPoint(_)) => "a number",
        YamlData::Value(Scalar::String(_)) | YamlData::Representation(..) => "a string",
        YamlData::Sequence(_) => "a list",
        YamlData::Mapping(_) => "a mapping",
        YamlData::Alias(_) => "an alias",
        YamlData::Tagged(..) | YamlData::BadValue => "an invalid value",
    }
}

/// Whether the node is YAML null (`~`, `null` or nothing).
pub(super) fn is_null(node: &MarkedYaml<'_>) -> bool {
    matches!(untagged(node).data, YamlData::Value(Scalar::Null))
}

/// Whether the node is a list.
pub(super) fn is_list(node: &MarkedYaml<'_>) -> bool {
    matches!(untagged(node).data, YamlData::Sequence(_))
}

/// Joins a path and a key: `agents` + `alice` = `agents.alice`.
pub(super) fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

/// A YAML mapping read strictly: keys must be strings from an allowed set.
pub(super) struct Map<'a, 'i> {
    entries: Vec<(&'a str, &'a MarkedYaml<'i>, &'a MarkedYaml<'i>)>,
    path: String,
}

impl<'a, 'i> Map<'a, 'i> {
    /// Reads `node` as a mapping with keys from `allowed`, of which `required` must be present.
    /// A missing field is reported at `owner` (the line that introduces this mapping). `None`
    /// when the node is not a mapping (reported).
    pub(super) fn strict(
        node: &'a MarkedYaml<'i>,
        owner: Marker,
        path: &str,
        allowed: &[&str],
        required: &[&str],
        issues: &mut Issues,
    ) -> Option<Self> {
        let map = Self::any(node, path, issues)?;
        for (key, key_node, _) in &map.entries {
            if !allowed.contains(key) {
                issues.push(
                    start(key_node),
                    &join(path, key),
                    format!("unknown field (expected one of: {})", allowed.join(", ")),
                );
            }
        }
        for field in required {
            if map.get(field).is_none() {
                issues.push(owner, &join(path, field), "required field is missing");
            }
        }
        Some(map)
    }

    /// Reads `node` as a mapping with any string keys (the agents, the per-agent templates).
    pub(super) fn any(node: &'a MarkedYaml<'i>, path: &str, issues: &mut Issues) -> Option<Self> {
        let YamlData::Mapping(mapping) = &untagged(node).data else {
            issues.push(start(node), path, format!("expected a mapping, found {}", kind(node)));
            return None;
        };
        let mut entries = Vec::with_capacity(mapping.len());
        for (key_node, value) in mapping {
            match &untagged(key_node).data {
                YamlData::Value(Scalar::String(key)) => entries.push((key.as_ref(), key_node, value)),
                _ => issues.push(start(key_node), path, format!("keys must be strings, found {}", kind(key_node))),
            }
        }
        Some(Map { entries, path: path.to_string() })
    }

    /// The value of `key`, if present.
    pub(super) fn get(&self, key: &str) -> Option<&'a MarkedYaml<'i>> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, _, v)| *v)
    }

    /// Where the key `key` starts (the line that introduces its value), if present.
    pub(super) fn key_start(&self, key: &str) -> Option<Marker> {
        self.entries.iter().find(|(k, _, _)| *k == key).map(|(_, n, _)| start(n))
    }

    /// The value of `key` unless it is absent or null.
    pub(super) fn get_some(&self, key: &str) -> Option<&'a MarkedYaml<'i>> {
        self.get(key).filter(|v| !is_null(v))
    }

    /// `(key, key node, value)` in file order.
    pub(super) fn entries(&self) -> &[(&'a str, &'a MarkedYaml<'i>, &'a MarkedYaml<'i>)] {
        &self.entries
    }

    /// The path of field `key`.
    pub(super) fn path_of(&self, key: &str) -> String {
        join(&self.path, key)
    }

    /// A string field with a length limit in characters; `default` when absent.
    pub(super) fn string(&self, key: &str, len: (usize, usize), default: &str, issues: &mut Issues) -> String {
        match self.get(key) {
            Some(node) => string(node, &self.path_of(key), len, issues).unwrap_or_default(),
            None => default.to_string(),
        }
    }

    /// An integer field within `range` (inclusive); `default` when absent.
    pub(super) fn int(&self, key: &str, range: (i64, i64), default: u32, issues: &mut Issues) -> u32 {
        let Some(node) = self.get(key) else { return default };
        let path = self.path_of(key);
        match &untagged(node).data {
            YamlData::Value(Scalar::Integer(n)) if (range.0..=range.1).contains(n) => {
                u32::try_from(*n).unwrap_or(default)
            }
            YamlData::Value(Scalar::Integer(n)) => {
                issues.push(start(node), &path, format!("{n} is out of range {}-{}", range.0, range.1));
                default
            }
            _ => {
                issues.push(start(node), &path, format!("expected an integer, found {}", kind(node)));
                default
            }
        }
    }

    /// A boolean field; `false` when absent. Besides `true`/`false` it takes what the original's
    /// YAML 1.1 loader and pydantic took: `yes`/`no`, `on`/`off`, `y`/`n`, `1`/`0`, any case.
    pub(super) fn boolean(&self, key: &str, issues: &mut Issues) -> bool {
        let Some(node) = self.get(key) else { return false };
        let word = match &untagged(node).data {
            YamlData::Value(Scalar::Boolean(b)) => return *b,
            YamlData::Value(Scalar::Integer(n @ (0 | 1))) => return *n == 1,
            YamlData::Value(Scalar::String(s)) => s.to_ascii_lowercase(),
            _ => String::new(),
        };
        match word.as_str() {
            "true" | "yes" | "on" | "y" | "1" => true,
            "false" | "no" | "off" | "n" | "0" => false,
            _ => {
                let message = format!("expected true or false, found {}", kind(node));
                issues.push(start(node), &self.path_of(key), message);
                false
            }
        }
    }

    /// A closed-set field parsed by its `FromStr` (whose error lists the accepted names).
    pub(super) fn choice<T: FromStr<Err = String>>(&self, key: &str, default: T, issues: &mut Issues) -> T {
        let Some(node) = self.get(key) else { return default };
        let path = self.path_of(key);
        let Some(text) = string(node, &path, (0, usize::MAX), issues) else { return default };
        match text.parse() {
            Ok(value) => value,
            Err(message) => {
                issues.push(start(node), &path, message);
                default
            }
        }
    }
}

/// A string node whose length in characters lies in `len` (inclusive).
pub(super) fn string(node: &MarkedYaml<'_>, path: &str, len: (usize, usize), issues: &mut Issues) -> Option<String> {
    let YamlData::Value(Scalar::String(text)) = &untagged(node).data else {
        issues.push(start(node), path, format!("expected a string, found {}", kind(node)));
        return None;
    };
    let chars = text.chars().count();
    if chars < len.0 {
        let message = if len.0 == 1 {
            "must not be empty".to_string()
        } else {
            format!("is {chars} characters, at least {} required", len.0)
        };
        issues.push(start(node), path, message);
        return None;
    }
    if chars > len.1 {
        issues.push(start(node), path, format!("is {chars} characters, at most {} allowed", len.1));
        return None;
    }
    Some(text.to_string())
}

/// A list node's items; `None` when the node is not a list (reported).
pub(super) fn list<'a, 'i>(node: &'a MarkedYaml<'i>, path: &str, issues: &mut Issues) -> Option<&'a [MarkedYaml<'i>]> {
    match &untagged(node).data {
        YamlData::Sequence(items) => Some(items),
        _ => {
            issues.push(start(node), path, format!("expected a list, found {}", kind(node)));
            None
        }
    }
}

/// A list of strings with their nodes (for later cross-reference checks); non-strings reported.
pub(super) fn string_list<'a, 'i>(
    node: &'a MarkedYaml<'i>,
    path: &str,
    issues: &mut Issues,
) -> Vec<(String, &'a MarkedYaml<'i>)> {
    let Some(items) = list(node, path, issues) else { return Vec::new() };
    items
        .iter()
        .enumerate()
        .filter_map(|(i, item)| string(item, &format!("{path}[{i}]"), (0, usize::MAX), issues).map(|s| (s, item)))
        .collect()
}

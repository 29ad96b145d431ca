//! Agent identity: `AgentId`, `Namespace`, `AgentKey` and token-prefix matching. Owns the naming
//! rules (which also make names safe as file names); does not know tiers or files.

use std::fmt;

use crate::MemoryError;

/// Longest accepted agent id or namespace, in bytes (all accepted characters are ASCII).
pub const MAX_NAME_LEN: usize = 128;

/// Checks the shared naming rule: 1-128 chars of `[A-Za-z0-9._-]`, and not `.` or `..` (which
/// would be path components, since names become directory and file names).
fn check_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() {
        return Err("empty");
    }
    if s.len() > MAX_NAME_LEN {
        return Err("longer than 128 characters");
    }
    if !s.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')) {
        return Err("only A-Z a-z 0-9 . _ - are allowed");
    }
    if s == "." || s == ".." {
        return Err("'.' and '..' are reserved");
    }
    Ok(())
}

/// An agent's id: 1-128 chars of `[A-Za-z0-9._-]`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(String);

impl AgentId {
    /// Validates and wraps an id.
    pub fn parse(s: &str) -> Result<Self, MemoryError> {
        check_name(s).map_err(|reason| MemoryError::InvalidAgentId { reason })?;
        Ok(AgentId(s.to_owned()))
    }

    /// The id as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The empty id, which sorts before every valid one: the lower bound of a namespace's range
    /// in a sorted map. Never a real agent.
    pub(crate) fn range_start() -> Self {
        AgentId(String::new())
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The namespace agents live in, one per API key (the api crate passes e.g. a hash of the key, or
/// `"default"`). Same rules as [`AgentId`]. Agents never match across namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Namespace(String);

impl Namespace {
    /// Validates and wraps a namespace.
    pub fn parse(s: &str) -> Result<Self, MemoryError> {
        check_name(s).map_err(|reason| MemoryError::InvalidNamespace { reason })?;
        Ok(Namespace(s.to_owned()))
    }

    /// The namespace used when no API key distinguishes callers: `"default"`.
    pub fn default_ns() -> Self {
        Namespace("default".to_owned())
    }

    /// The namespace as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Namespace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The full identity of an agent's memory: namespace plus id. Orders by namespace first, so all
/// agents of one namespace are contiguous in a sorted map.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentKey {
    /// The namespace (API key scope).
    pub namespace: Namespace,
    /// The agent within it.
    pub agent: AgentId,
}

impl AgentKey {
    /// Builds a key.
    pub fn new(namespace: Namespace, agent: AgentId) -> Self {
        AgentKey { namespace, agent }
    }
}

impl fmt::Display for AgentKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.namespace, self.agent)
    }
}

/// Length of the longest common prefix of two token slices.
pub fn common_prefix(a: &[i32], b: &[i32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, ok: bool) {
        assert_eq!(AgentId::parse(input).is_ok(), ok, "agent {input:?}");
        assert_eq!(Namespace::parse(input).is_ok(), ok, "namespace {input:?}");
    }

    #[test]
    fn naming_rules() {
        check("a", true);
        check("agent-1_x.v2", true);
        check("...", true);
        check(&"z".repeat(128), true);
        check("", false);
        check(&"z".repeat(129), false);
        check(".", false);
        check("..", false);
        check("a/b", false);
        check("a b", false);
        check("é", false);
        check("a\0", false);
        check("a\\b", false);
    }

    #[test]
    fn errors_name_the_kind() {
        assert!(matches!(AgentId::parse(""), Err(MemoryError::InvalidAgentId { reason: "empty" })));
        assert!(matches!(Namespace::parse(".."), Err(MemoryError::InvalidNamespace { .. })));
    }

    #[test]
    fn keys_order_by_namespace_first() {
        let k = |n: &str, a: &str| AgentKey::new(Namespace::parse(n).unwrap(), AgentId::parse(a).unwrap());
        let mut keys = vec![k("b", "a"), k("a", "z"), k("a", "b")];
        keys.sort();
        assert_eq!(keys, vec![k("a", "b"), k("a", "z"), k("b", "a")]);
        assert_eq!(k("ns", "x").to_string(), "ns/x");
        assert_eq!(Namespace::default_ns().as_str(), "default");
    }

    #[test]
    fn common_prefix_lengths() {
        assert_eq!(common_prefix(&[], &[1, 2]), 0);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2, 3]), 3);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 2]), 2);
        assert_eq!(common_prefix(&[1, 2, 3], &[1, 9, 3]), 1);
        assert_eq!(common_prefix(&[0], &[1]), 0);
    }
}

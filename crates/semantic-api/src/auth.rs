//! Authentication: API keys (each its own agent namespace) and the admin key. Keys are compared as
//! SHA-256 digests in constant time; the extractors `Caller` and `Admin` are the only way in.

use std::sync::Arc;

use axum::extract::{FromRef, FromRequestParts};
use axum::http::request::Parts;
use axum::http::HeaderMap;
use semantic_memory::Namespace;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::error::{ApiError, ErrorKind, Flavor};
use crate::AppState;

/// Who may call what.
#[derive(Clone, Default)]
pub struct AuthConfig {
    keys: Vec<[u8; 32]>,
    admin: Option<[u8; 32]>,
    /// `/metrics` without a key.
    pub metrics_public: bool,
}

impl std::fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuthConfig")
            .field("keys", &self.keys.len())
            .field("admin", &self.admin.is_some())
            .field("metrics_public", &self.metrics_public)
            .finish()
    }
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// The namespace of a key's digest: `k` and the first 8 bytes in hex.
fn namespace_of_digest(d: &[u8; 32]) -> Namespace {
    let hex: String = d[..8].iter().map(|b| format!("{b:02x}")).collect();
    // `k` + 16 hex digits always passes the name rules; `default` is never reached.
    Namespace::parse(&format!("k{hex}")).unwrap_or_else(|_| Namespace::default_ns())
}

/// The agent namespace an API key's agents live in, as the server derives it (for the offline
/// tools, which find a key's agents by it).
pub fn namespace_for_key(key: &str) -> Namespace {
    namespace_of_digest(&digest(key))
}

/// Constant-time equality of two digests.
fn same(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.ct_eq(b).into()
}

impl AuthConfig {
    /// API keys (empty = no auth: everyone shares the `default` namespace), an optional admin key.
    pub fn new(api_keys: &[String], admin_key: Option<&str>, metrics_public: bool) -> Self {
        Self { keys: api_keys.iter().map(|k| digest(k)).collect(), admin: admin_key.map(digest), metrics_public }
    }

    /// True when API keys are required.
    pub fn enabled(&self) -> bool {
        !self.keys.is_empty()
    }

    /// The namespace of a presented key: `default` without auth, None for a missing or wrong key.
    pub(crate) fn namespace_for(&self, presented: Option<&str>) -> Option<Namespace> {
        if !self.enabled() {
            return Some(Namespace::default_ns());
        }
        let d = digest(presented?);
        // Check every key so timing does not reveal which one matched.
        let matched = self.keys.iter().fold(false, |acc, k| acc | same(k, &d));
        matched.then(|| namespace_of_digest(&d))
    }

    fn is_admin(&self, presented: Option<&str>) -> bool {
        match (self.admin, presented) {
            (Some(admin), Some(p)) => same(&admin, &digest(p)),
            _ => false,
        }
    }
}

/// True when `presented` is a valid API key (or none is required).
pub(crate) fn check_key(auth: &AuthConfig, presented: Option<&str>) -> bool {
    auth.namespace_for(presented).is_some()
}

/// The key a request presents: `Authorization: Bearer`, else `x-api-key`.
pub(crate) fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    bearer.or_else(|| headers.get("x-api-key").and_then(|v| v.to_str().ok())).map(str::trim)
}

pub(crate) fn flavor_of(path: &str) -> Flavor {
    if path.starts_with("/v1/messages") {
        Flavor::Anthropic
    } else {
        Flavor::OpenAi
    }
}

/// An authenticated caller and the agent namespace of its key.
#[derive(Debug, Clone)]
pub struct Caller {
    /// Agents this caller may see and use.
    pub namespace: Namespace,
}

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, Self::Rejection> {
        match state.auth.namespace_for(presented_key(&parts.headers)) {
            Some(namespace) => Ok(Self { namespace }),
            None => Err(ApiError::new(ErrorKind::Authentication, "missing or invalid API key")
                .with_code("invalid_api_key")
                .in_flavor(flavor_of(parts.uri.path()))),
        }
    }
}

/// A caller holding the admin key (`X-Admin-Key` or `Authorization: Bearer`).
#[derive(Debug, Clone, Copy)]
pub struct Admin;

impl FromRef<AppState> for Arc<AuthConfig> {
    fn from_ref(state: &AppState) -> Self {
        Arc::clone(&state.auth)
    }
}

/// Any state that can hand out the server's auth settings can check the admin key (the model
/// routes run with their own state, since they must answer while no model is loaded).
impl<S: Send + Sync> FromRequestParts<S> for Admin
where
    Arc<AuthConfig>: FromRef<S>,
{
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let auth = Arc::<AuthConfig>::from_ref(state);
        if auth.admin.is_none() {
            return Err(ApiError::new(
                ErrorKind::PermissionDenied,
                "the admin API is disabled (no admin key configured)",
            ));
        }
        let presented =
            parts.headers.get("x-admin-key").and_then(|v| v.to_str().ok()).or_else(|| presented_key(&parts.headers));
        if auth.is_admin(presented) {
            Ok(Admin)
        } else {
            Err(ApiError::new(ErrorKind::Authentication, "missing or invalid admin key").with_code("invalid_admin_key"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_distinct_stable_namespaces() {
        let auth = AuthConfig::new(&["alpha".into(), "beta".into()], Some("root"), false);
        let a = auth.namespace_for(Some("alpha")).unwrap();
        let b = auth.namespace_for(Some("beta")).unwrap();
        assert_ne!(a, b);
        assert_eq!(auth.namespace_for(Some("alpha")), Some(a.clone()));
        assert_eq!(auth.namespace_for(Some("gamma")), None);
        assert_eq!(auth.namespace_for(None), None);
        assert!(auth.is_admin(Some("root")));
        assert!(!auth.is_admin(Some("alpha")));
        assert_eq!(AuthConfig::default().namespace_for(None), Some(Namespace::default_ns()));
        assert_eq!(namespace_for_key("alpha"), a, "the offline tools derive the same namespace");
        assert_eq!(a.as_str().len(), 17);
    }

    #[test]
    fn keys_are_read_from_bearer_or_x_api_key() {
        let mut h = HeaderMap::new();
        h.insert("x-api-key", "k1".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k1"));
        h.insert("authorization", "Bearer k2".parse().unwrap());
        assert_eq!(presented_key(&h), Some("k2"));
    }
}

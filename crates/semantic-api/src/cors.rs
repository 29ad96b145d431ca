//! CORS for browser callers: which origins may call, the preflight answer, and the headers added
//! to actual responses. Without configured origins the layer is not installed at all, so no
//! `Access-Control-*` header is ever sent. Does not own where the layer sits (`ops.rs`).
//!
//! Written here rather than with tower-http's `CorsLayer`, which was weighed (issue 20): three of
//! the documented behaviours would each need a wrapper around it. It answers a refused preflight
//! with a header-less 200 (we send the documented 403 `cors_origin_not_allowed` in the route's
//! error shape); it answers an allowed one with 200 (we send 204); and its `AllowHeaders` is either
//! a fixed list or the request's mirror, never both (we allow our own headers plus whatever a
//! browser SDK asks for, since `*` does not cover `Authorization`). The rules kept here: a
//! preflight is answered before auth and rate limits (browsers never send credentials on it), and
//! every actual response, errors included, carries the headers so a page can read its 401 or 429.

use axum::extract::{Request, State};
use axum::http::header::{
    ACCESS_CONTROL_ALLOW_HEADERS, ACCESS_CONTROL_ALLOW_METHODS, ACCESS_CONTROL_ALLOW_ORIGIN,
    ACCESS_CONTROL_EXPOSE_HEADERS, ACCESS_CONTROL_MAX_AGE, ACCESS_CONTROL_REQUEST_HEADERS,
    ACCESS_CONTROL_REQUEST_METHOD, ORIGIN, VARY,
};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;

use crate::auth::flavor_of;
use crate::error::{ApiError, ErrorKind};

/// Request headers a browser may send: auth, agent identity, request ids, Anthropic's version
/// headers. Headers a preflight asks for are allowed too (browser SDKs add their own, such as
/// OpenAI's `x-stainless-*`), since the origin is already trusted.
const ALLOW_HEADERS: &str = "authorization, content-type, x-api-key, x-admin-key, x-agent-id, x-session-id, \
                             x-request-id, anthropic-version, anthropic-beta";
const ALLOW_METHODS: &str = "GET, POST, DELETE, OPTIONS";
/// Response headers a page may read besides the safelisted ones.
const EXPOSE_HEADERS: &str = "x-request-id, retry-after";
/// How long a browser may cache a preflight answer, seconds.
const MAX_AGE: &str = "600";

/// Allowed origins: any, or an exact list.
#[derive(Debug, Clone)]
pub(crate) enum Cors {
    /// `*`: any origin.
    Any,
    /// Only these origins (compared ASCII case-insensitively).
    Origins(Arc<[String]>),
}

impl Cors {
    /// The policy for configured origins; None (no CORS at all) for an empty list.
    pub fn new(origins: &[String]) -> Option<Self> {
        if origins.is_empty() {
            None
        } else if origins.iter().any(|o| o == "*") {
            Some(Cors::Any)
        } else {
            Some(Cors::Origins(origins.iter().map(|o| o.trim_end_matches('/').to_owned()).collect()))
        }
    }

    /// `Access-Control-Allow-Origin` for a request from `origin`, if it may call.
    fn allow_origin(&self, origin: &HeaderValue) -> Option<HeaderValue> {
        match self {
            Cors::Any => Some(HeaderValue::from_static("*")),
            Cors::Origins(list) => {
                let origin_text = origin.to_str().ok()?;
                list.iter().any(|o| o.eq_ignore_ascii_case(origin_text)).then(|| origin.clone())
            }
        }
    }

    /// The answer depends on `Origin` unless every origin gets `*`.
    fn varies(&self) -> bool {
        matches!(self, Cors::Origins(_))
    }
}

/// The middleware: answers preflights, adds CORS headers to responses for allowed origins.
pub(crate) async fn middleware(State(cors): State<Cors>, request: Request, next: Next) -> Response {
    let Some(origin) = request.headers().get(ORIGIN).cloned() else {
        return next.run(request).await;
    };
    let allowed = cors.allow_origin(&origin);
    let preflight =
        request.method() == Method::OPTIONS && request.headers().contains_key(ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        return preflight_response(allowed, request.headers(), request.uri().path());
    }
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    if cors.varies() {
        headers.append(VARY, HeaderValue::from_static("origin"));
    }
    if let Some(allow) = allowed {
        headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
        headers.insert(ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static(EXPOSE_HEADERS));
    }
    response
}

fn preflight_response(allowed: Option<HeaderValue>, request: &HeaderMap, path: &str) -> Response {
    let Some(allow) = allowed else {
        let origin = request.get(ORIGIN).and_then(|v| v.to_str().ok()).unwrap_or("?");
        return ApiError::new(ErrorKind::PermissionDenied, format!("CORS: the origin {origin} is not allowed"))
            .with_code("cors_origin_not_allowed")
            .in_flavor(flavor_of(path))
            .into_response();
    };
    let mut response = StatusCode::NO_CONTENT.into_response();
    let headers = response.headers_mut();
    headers.insert(ACCESS_CONTROL_ALLOW_ORIGIN, allow);
    headers.insert(ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static(ALLOW_METHODS));
    let requested = request.get(ACCESS_CONTROL_REQUEST_HEADERS).and_then(|v| v.to_str().ok()).unwrap_or("");
    let allow_headers = if requested.trim().is_empty() {
        HeaderValue::from_static(ALLOW_HEADERS)
    } else {
        HeaderValue::from_str(&format!("{ALLOW_HEADERS}, {requested}"))
            .unwrap_or(HeaderValue::from_static(ALLOW_HEADERS))
    };
    headers.insert(ACCESS_CONTROL_ALLOW_HEADERS, allow_headers);
    headers.insert(ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static(MAX_AGE));
    headers.append(
        VARY,
        HeaderValue::from_static("origin, access-control-request-method, access-control-request-headers"),
    );
    response
}

//! JSON body extractors whose rejections are `ApiError`s in the route's own shape: [`ApiJson`]
//! for the OpenAI routes, [`AnthropicJson`] for `/v1/messages*`, and [`ApiPath`] for path
//! parameters (an id that is not UTF-8 is a 400 in the OpenAI shape, not axum's plain text). Type errors name the field at
//! fault (`messages[0].content`) as the error's `param`.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorKind, Flavor};

/// Like `axum::Json`, but malformed bodies get the OpenAI error shape and a 400/413/415.
pub struct ApiJson<T>(pub T);

/// Like [`ApiJson`], but an empty body is `T::default()` (routes whose body is optional).
pub struct OptionalJson<T>(pub T);

/// Like [`ApiJson`], with errors in the Anthropic shape.
pub struct AnthropicJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state).await.map(Self).map_err(|e| e.in_flavor(Flavor::OpenAi))
    }
}

impl<S: Send + Sync, T: DeserializeOwned + Default> FromRequest<S> for OptionalJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state).await.map_err(bytes_rejection)?;
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Ok(Self(T::default()));
        }
        parse(&bytes).map(Self)
    }
}

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for AnthropicJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        read_json(req, state).await.map(Self).map_err(|e| e.in_flavor(Flavor::Anthropic))
    }
}

/// Like `axum::extract::Path`, but a rejection (a parameter that is not UTF-8 once decoded, or
/// does not parse) is an [`ApiError`] in the OpenAI shape.
pub struct ApiPath<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiPath<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(value)) => Ok(Self(value)),
            // A route whose handler names parameters its path lacks: a bug, not the caller's fault.
            Err(rejection) if rejection.status().is_server_error() => {
                Err(ApiError::new(ErrorKind::Internal, rejection.body_text()))
            }
            Err(rejection) => {
                Err(ApiError::new(ErrorKind::InvalidRequest, format!("invalid path: {}", rejection.body_text()))
                    .with_code("invalid_path"))
            }
        }
    }
}

/// Like `axum::extract::Query`, but a query string that does not parse is a 400 in the OpenAI
/// shape naming the problem.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(value)) => Ok(Self(value)),
            Err(rejection) => {
                Err(ApiError::new(ErrorKind::InvalidRequest, rejection.body_text()).with_code("invalid_query"))
            }
        }
    }
}

async fn read_json<S: Send + Sync, T: DeserializeOwned>(req: Request, state: &S) -> Result<T, ApiError> {
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        let json = content_type.to_str().ok().and_then(|v| v.split(';').next()).is_some_and(|mime| {
            let mime = mime.trim().to_ascii_lowercase();
            mime == "application/json" || mime.ends_with("+json")
        });
        if !json {
            return Err(ApiError::new(
                ErrorKind::UnsupportedMediaType,
                "expected a JSON body with Content-Type: application/json",
            ));
        }
    }
    let bytes = Bytes::from_request(req, state).await.map_err(bytes_rejection)?;
    parse(&bytes)
}

pub(crate) fn bytes_rejection(rejection: BytesRejection) -> ApiError {
    if crate::body_deadline::is_deadline(&rejection) {
        return ApiError::new(
            ErrorKind::RequestTimeout,
            "the request body did not arrive in time (--body-timeout-secs)",
        )
        .with_code("body_timeout");
    }
    if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorKind::TooLarge, "the request body is too large")
    } else {
        ApiError::new(ErrorKind::InvalidRequest, rejection.body_text())
    }
}

/// Parses a body, naming the field at fault on a type error.
pub(crate) fn parse<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if let Err(e) = std::str::from_utf8(bytes) {
        return Err(ApiError::new(
            ErrorKind::InvalidRequest,
            format!("the request body is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
        .with_code("invalid_json"));
    }
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Err(ApiError::new(ErrorKind::InvalidRequest, "the request body is empty; expected a JSON object")
            .with_code("invalid_json"));
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|err| {
        let path = err.path().to_string();
        let inner = err.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            return malformed(&inner);
        }
        let message = inner.to_string();
        match param_of(&path, &message) {
            Some(p) => ApiError::new(ErrorKind::InvalidRequest, format!("{p}: {message}")).with_param(p),
            None => ApiError::new(ErrorKind::InvalidRequest, message),
        }
    })?;
    de.end().map_err(|e| malformed(&e))?;
    Ok(value)
}

fn malformed(err: &serde_json::Error) -> ApiError {
    ApiError::new(ErrorKind::InvalidRequest, format!("malformed JSON: {err}")).with_code("invalid_json")
}

/// The field a type error is about: its path, plus the field named by "missing field `x`".
fn param_of(path: &str, message: &str) -> Option<String> {
    let path = if path == "." { "" } else { path };
    let missing = message.strip_prefix("missing field `").and_then(|rest| rest.split('`').next()).map(|field| {
        if path.is_empty() {
            field.to_owned()
        } else {
            format!("{path}.{field}")
        }
    });
    missing.or_else(|| (!path.is_empty()).then(|| path.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Body {
        messages: Vec<Msg>,
        temperature: Option<f32>,
    }

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Msg {
        role: String,
    }

    fn check(body: &[u8], param: Option<&str>, code: Option<&str>) {
        let err = parse::<Body>(body).expect_err("must fail");
        assert_eq!(err.kind, ErrorKind::InvalidRequest, "{}", String::from_utf8_lossy(body));
        assert_eq!(err.param.as_deref(), param, "{}: {}", String::from_utf8_lossy(body), err.message);
        assert_eq!(err.code.as_deref(), code, "{}", String::from_utf8_lossy(body));
    }

    #[test]
    fn errors_name_the_field() {
        check(b"{", None, Some("invalid_json"));
        check(b"", None, Some("invalid_json"));
        check(b"[]", None, None);
        check(b"{\"messages\": [] } trailing", None, Some("invalid_json"));
        check(b"{\"messages\": \"hi\"}", Some("messages"), None);
        check(b"{\"messages\": [{\"role\": 5}]}", Some("messages[0].role"), None);
        check(b"{\"messages\": [{}]}", Some("messages[0].role"), None);
        check(b"{}", Some("messages"), None);
        check(b"{\"messages\": [], \"temperature\": \"hot\"}", Some("temperature"), None);
        check(b"{\"messages\": [{\"role\": \"\xff\"}]}", None, Some("invalid_json"));
        assert!(parse::<Body>(b"{\"messages\": [{\"role\": \"user\"}]}").is_ok());
    }
}

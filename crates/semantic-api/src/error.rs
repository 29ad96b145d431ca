//! `ApiError`: the one place errors become HTTP responses, in the OpenAI or Anthropic shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_scheduler::SubmitError;
use serde::Serialize;
use utoipa::ToSchema;

/// Which API's error shape a response uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flavor {
    /// `{"error":{"message","type","param","code"}}`
    OpenAi,
    /// `{"type":"error","error":{"type","message"}}`
    Anthropic,
}

/// What went wrong, independent of the wire shape.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// 400: the request is malformed or out of range.
    InvalidRequest,
    /// 401: no or wrong credentials.
    Authentication,
    /// 403: credentials lack permission.
    PermissionDenied,
    /// 404: no such route or object.
    NotFound,
    /// 405: the route exists but not with this method.
    MethodNotAllowed,
    /// 408: the client took longer than `--body-timeout-secs` to send its body.
    RequestTimeout,
    /// 409: the object is busy.
    Conflict,
    /// 413: body too large.
    TooLarge,
    /// 415: a body that is not JSON.
    UnsupportedMediaType,
    /// 429: rate limit or full queue.
    RateLimited,
    /// 500: a bug or engine failure.
    Internal,
    /// 503: loading, draining or overloaded.
    Unavailable,
    /// 504: the generation took longer than the server allows.
    Timeout,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::Conflict
            | ErrorKind::TooLarge
            | ErrorKind::UnsupportedMediaType => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            // OpenAI documents no timeout type; its 5xx errors are `server_error` (`code` says which).
            ErrorKind::Internal | ErrorKind::Timeout => "server_error",
            ErrorKind::Unavailable => "service_unavailable",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest
            | ErrorKind::UnsupportedMediaType
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTimeout
            | ErrorKind::Conflict => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "api_error",
            ErrorKind::Unavailable => "overloaded_error",
            ErrorKind::Timeout => "timeout_error",
        }
    }

    /// Stable text for the OpenAI `type` field / Anthropic `error.type`, for logs and events.
    pub fn wire_type(self, flavor: Flavor) -> &'static str {
        match flavor {
            Flavor::OpenAi => self.openai_type(),
            Flavor::Anthropic => self.anthropic_type(),
        }
    }
}

/// An error on its way to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    /// What went wrong.
    pub kind: ErrorKind,
    /// Human-readable message.
    pub message: String,
    /// The request field at fault, if any.
    pub param: Option<String>,
    /// Machine-readable code (e.g. `context_length_exceeded`).
    pub code: Option<String>,
    /// Seconds for `Retry-After` on 429/503 (whole seconds, at least 1).
    pub retry_after: Option<u64>,
    /// Wire shape.
    pub flavor: Flavor,
}

impl ApiError {
    /// A new error in the OpenAI shape.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self { kind, message: message.into(), param: None, code: None, retry_after: None, flavor: Flavor::OpenAi }
    }

    /// 400 naming the offending field.
    pub fn invalid(param: impl Into<String>, message: impl Into<String>) -> Self {
        Self::new(ErrorKind::InvalidRequest, message).with_param(param)
    }

    /// Sets the field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// Sets the machine-readable code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Switches the wire shape.
    pub fn in_flavor(mut self, flavor: Flavor) -> Self {
        self.flavor = flavor;
        self
    }
}

impl From<SubmitError> for ApiError {
    fn from(err: SubmitError) -> Self {
        let message = err.to_string();
        match err {
            SubmitError::QueueFull { .. } => {
                Self { retry_after: Some(1), ..Self::new(ErrorKind::RateLimited, message).with_code("queue_full") }
            }
            SubmitError::Draining => {
                Self { retry_after: Some(5), ..Self::new(ErrorKind::Unavailable, message).with_code("draining") }
            }
            SubmitError::ContextOverflow { .. } => {
                Self::invalid("messages", message).with_code("context_length_exceeded")
            }
            SubmitError::Invalid { .. } => Self::new(ErrorKind::InvalidRequest, message),
        }
    }
}

/// The OpenAI error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorBody {
    /// The error.
    pub error: OpenAiErrorDetail,
}

/// The OpenAI error object.
#[derive(Debug, Serialize, ToSchema)]
pub struct OpenAiErrorDetail {
    /// Human-readable message.
    pub message: String,
    /// `invalid_request_error`, `rate_limit_error`, `server_error`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The request field at fault.
    pub param: Option<String>,
    /// Machine-readable code, e.g. `context_length_exceeded`, `model_not_found`.
    pub code: Option<String>,
}

/// The Anthropic error body.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicErrorBody {
    /// Always `error`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// The error.
    pub error: AnthropicErrorDetail,
}

/// The Anthropic error object.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnthropicErrorDetail {
    /// `invalid_request_error`, `not_found_error`, `overloaded_error`, `api_error`, ...
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl ApiError {
    /// 404 for a model name that is neither the loaded model nor an alias.
    pub fn model_not_found(name: &str) -> Self {
        Self::new(
            ErrorKind::NotFound,
            format!("the model `{name}` does not exist: this server serves one model (see GET /v1/models; the aliases `default` and `semantic` also work)"),
        )
        .with_param("model")
        .with_code("model_not_found")
    }

    /// The error body in this error's wire shape, for a response or an SSE error event.
    pub fn body(&self) -> serde_json::Value {
        let value = match self.flavor {
            Flavor::OpenAi => serde_json::to_value(OpenAiErrorBody {
                error: OpenAiErrorDetail {
                    message: self.message.clone(),
                    kind: self.kind.openai_type(),
                    param: self.param.clone(),
                    code: self.code.clone(),
                },
            }),
            Flavor::Anthropic => serde_json::to_value(AnthropicErrorBody {
                kind: "error",
                error: AnthropicErrorDetail { kind: self.kind.anthropic_type(), message: self.message.clone() },
            }),
        };
        // Invariant: these structs hold only strings, so serializing them cannot fail.
        value.unwrap_or_default()
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut response = (self.kind.status(), Json(self.body())).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// 404 for unknown routes: in the Anthropic shape under `/v1/messages`, else the OpenAI shape.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    let error = ApiError::new(ErrorKind::NotFound, format!("no route for {}", uri.path()));
    if uri.path().starts_with("/v1/messages") {
        error.in_flavor(Flavor::Anthropic)
    } else {
        error
    }
}

/// 405 for a known path with the wrong method, in the route's API shape.
pub async fn method_not_allowed(method: axum::http::Method, uri: axum::http::Uri) -> ApiError {
    let error = ApiError::new(ErrorKind::MethodNotAllowed, format!("{method} is not allowed on {}", uri.path()));
    if uri.path().starts_with("/v1/messages") {
        error.in_flavor(Flavor::Anthropic)
    } else {
        error
    }
}

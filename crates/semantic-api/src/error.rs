//! `ApiError`: the one place errors become HTTP responses, in the OpenAI or Anthropic shape.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use semantic_scheduler::SubmitError;
use serde_json::json;

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
    /// 409: the object is busy.
    Conflict,
    /// 413: body too large.
    TooLarge,
    /// 429: rate limit or full queue.
    RateLimited,
    /// 500: a bug or engine failure.
    Internal,
    /// 503: loading, draining or overloaded.
    Unavailable,
}

impl ErrorKind {
    fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::PermissionDenied => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::TooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    fn openai_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest | ErrorKind::NotFound | ErrorKind::TooLarge | ErrorKind::Conflict => {
                "invalid_request_error"
            }
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "server_error",
            ErrorKind::Unavailable => "service_unavailable",
        }
    }

    fn anthropic_type(self) -> &'static str {
        match self {
            ErrorKind::InvalidRequest => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::PermissionDenied => "permission_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::Conflict => "invalid_request_error",
            ErrorKind::TooLarge => "request_too_large",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::Internal => "api_error",
            ErrorKind::Unavailable => "overloaded_error",
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
    /// Seconds for `Retry-After` on 429/503.
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

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let body = match self.flavor {
            Flavor::OpenAi => json!({"error": {
                "message": self.message,
                "type": self.kind.openai_type(),
                "param": self.param,
                "code": self.code,
            }}),
            Flavor::Anthropic => json!({"type": "error", "error": {
                "type": self.kind.anthropic_type(),
                "message": self.message,
            }}),
        };
        let mut response = (self.kind.status(), Json(body)).into_response();
        if let Some(secs) = self.retry_after {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }
}

/// 404 for unknown routes, in the OpenAI shape.
pub async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(ErrorKind::NotFound, format!("no route for {}", uri.path()))
}

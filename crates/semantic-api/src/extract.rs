//! `ApiJson`: a JSON body extractor whose rejections are `ApiError`s in the API's own shape.

use axum::extract::rejection::JsonRejection;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

use crate::error::{ApiError, ErrorKind};

/// Like `axum::Json`, but malformed bodies get our error shape and a 400/413.
pub struct ApiJson<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(value)) => Ok(Self(value)),
            Err(rejection) => Err(rejection_to_error(rejection)),
        }
    }
}

fn rejection_to_error(rejection: JsonRejection) -> ApiError {
    match rejection {
        JsonRejection::JsonDataError(e) => ApiError::new(ErrorKind::InvalidRequest, e.body_text()),
        JsonRejection::JsonSyntaxError(e) => {
            ApiError::new(ErrorKind::InvalidRequest, e.body_text()).with_code("invalid_json")
        }
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorKind::InvalidRequest, "expected a body with Content-Type: application/json")
        }
        JsonRejection::BytesRejection(e) if e.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE => {
            ApiError::new(ErrorKind::TooLarge, e.body_text())
        }
        other => ApiError::new(ErrorKind::InvalidRequest, other.body_text()),
    }
}

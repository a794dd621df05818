//! The API's errors and how they answer: `{"error": {"code", "message", "field"}}`, the HTTP
//! status following the code. An [`ApiError`] is the application's [`AppError`] or a fault of
//! the request itself (its body, its token, its method, its rate). 5xx causes are logged by
//! the request logger (see `mod.rs`), never put in the body.

use std::borrow::Cow;

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::openapi::schema::{ObjectBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use crate::application::error::ErrorCode;
use crate::application::AppError;

/// What a handler fails with.
#[derive(Clone, Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: the request could not be read (malformed JSON, malformed id in the path).
    #[error("{message}")]
    Malformed {
        field: Option<String>,
        message: String,
    },
    /// 401: missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 405: the path is known, the method is not one of its own (`allow`, answered as `Allow`).
    #[error("this path answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// 413
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 415
    #[error("request body must be JSON (Content-Type: application/json)")]
    NotJson,
    /// 429: the caller's ingest budget is spent; answered with `Retry-After`.
    #[error("too many events; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    #[error(transparent)]
    App(#[from] AppError),
}

impl ApiError {
    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        ApiError::Malformed {
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn status(&self) -> StatusCode {
        status_of(self.code())
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            ApiError::Malformed { .. } => ErrorCode::MalformedRequest,
            ApiError::Unauthorized => ErrorCode::Unauthorized,
            ApiError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            ApiError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            ApiError::NotJson => ErrorCode::UnsupportedMediaType,
            ApiError::RateLimited { .. } => ErrorCode::RateLimited,
            ApiError::App(e) => e.code(),
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            ApiError::Malformed { field, .. } => field.as_deref(),
            ApiError::App(e) => e.field(),
            _ => None,
        }
    }

    /// The cause to log for a 5xx, with its sources.
    pub fn cause(&self) -> Option<String> {
        match self {
            ApiError::App(e) => e.cause(),
            _ => None,
        }
    }

    /// `{"code", "message", "field"?}`: the inside of every error body.
    pub fn body(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code(),
            field: self.field().map(str::to_string),
            message: self.to_string(),
        }
    }
}

/// The HTTP status of each class of error.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::MalformedRequest => StatusCode::BAD_REQUEST,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::Conflict => StatusCode::CONFLICT,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::ValidationFailed => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::QueryTimeout => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::InternalError => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        self.status()
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            ApiError::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            ApiError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", *allow));
            }
            ApiError::RateLimited { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody { error: self.body() })
    }
}

/// Every error answer of the API.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong. Fields are declared in alphabetical order, the order they always had.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub code: ErrorCode,
    /// The input at fault (`event_type`, `url_params.user_id`, `queue_id` …), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub field: Option<String>,
    /// What to fix, for a person; never the cause of a 5xx.
    pub message: String,
}

/// `error.code` in the document: a string, one of [`ErrorCode::ALL`].
impl utoipa::PartialSchema for ErrorCode {
    fn schema() -> RefOr<Schema> {
        ObjectBuilder::new()
            .schema_type(Type::String)
            .description(Some(
                "`error.code` of an error body: one per class of error, so a client can branch on it.",
            ))
            .enum_values(Some(ErrorCode::ALL.map(ErrorCode::as_str)))
            .into()
    }
}

impl ToSchema for ErrorCode {
    fn name() -> Cow<'static, str> {
        Cow::Borrowed("ErrorCode")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_a_status_and_its_text_in_the_body() {
        for code in ErrorCode::ALL {
            let status = status_of(code);
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code:?}"
            );
            assert_eq!(
                serde_json::to_value(code).unwrap(),
                serde_json::json!(code.as_str())
            );
        }
        let error = ApiError::from(AppError::invalid("event_type", "is required"));
        let body = serde_json::to_value(error.body()).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"code": "validation_failed", "field": "event_type", "message": "is required"})
        );
        assert_eq!(error.status_code(), StatusCode::UNPROCESSABLE_ENTITY);
    }
}

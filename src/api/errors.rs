//! How an `AppError` becomes a response: `{"error": {"code", "message", "field"}}`.
//! 5xx causes are logged by the request logger (see `mod.rs`), never put in the body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;
use utoipa::ToSchema;

use crate::application::error::ErrorCode as Class;
use crate::application::AppError;

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

/// `error.code` of an error body: one per class of error, so a client can branch on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    MalformedRequest,
    Unauthorized,
    NotFound,
    MethodNotAllowed,
    Conflict,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    ValidationFailed,
    QueryTimeout,
    Unavailable,
    InternalError,
}

impl From<Class> for ErrorCode {
    fn from(class: Class) -> Self {
        match class {
            Class::MalformedRequest => ErrorCode::MalformedRequest,
            Class::Unauthorized => ErrorCode::Unauthorized,
            Class::NotFound => ErrorCode::NotFound,
            Class::MethodNotAllowed => ErrorCode::MethodNotAllowed,
            Class::Conflict => ErrorCode::Conflict,
            Class::PayloadTooLarge => ErrorCode::PayloadTooLarge,
            Class::UnsupportedMediaType => ErrorCode::UnsupportedMediaType,
            Class::RateLimited => ErrorCode::RateLimited,
            Class::ValidationFailed => ErrorCode::ValidationFailed,
            Class::QueryTimeout => ErrorCode::QueryTimeout,
            Class::Unavailable => ErrorCode::Unavailable,
            Class::InternalError => ErrorCode::InternalError,
        }
    }
}

impl AppError {
    /// `{"code", "message", "field"?}`: the inside of every error body.
    pub fn body(&self) -> ErrorDetail {
        ErrorDetail {
            code: self.code().into(),
            field: self.field().map(str::to_string),
            message: self.to_string(),
        }
    }
}

impl ResponseError for AppError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        let mut response = HttpResponse::build(self.status_code());
        match self {
            AppError::Unauthorized => {
                response.insert_header(("WWW-Authenticate", "Bearer"));
            }
            AppError::MethodNotAllowed { allow } => {
                response.insert_header(("Allow", *allow));
            }
            AppError::RateLimited { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(ErrorBody { error: self.body() })
    }
}

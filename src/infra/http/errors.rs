//! How an `AppError` becomes a response: `{"error": {"code", "message", "field"}}`.
//! 5xx causes are logged by the request logger (see `mod.rs`), never put in the body.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

use crate::application::AppError;

impl AppError {
    /// `{"code", "message", "field"?}`: the inside of every error body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({"code": self.code(), "message": self.to_string()});
        if let Some(field) = self.field() {
            error["field"] = json!(field);
        }
        error
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
            AppError::RateLimited { retry_after_secs } => {
                response.insert_header(("Retry-After", retry_after_secs.to_string()));
            }
            _ => {}
        }
        response.json(json!({ "error": self.body() }))
    }
}

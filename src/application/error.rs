//! The application's error type.
//!
//! Error policy: a caller's mistake is a precise 4xx whose message says what to fix and whose
//! `field` names the offending input. Anything else is our problem: it is logged with its
//! cause where it becomes a response (`api::errors`), and the body says only that the
//! service is unavailable (503, database unreachable) or failed (500) — never the cause, which
//! may hold SQL, addresses or a partner's answer. `anyhow` is used only at the process edge.

use std::fmt;
use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error_chain::describe;

/// The class of an error, so a caller can branch on it (`error.code` of an API error body).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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

#[derive(Clone, Debug, thiserror::Error)]
pub enum AppError {
    /// 400: the request could not be read (malformed JSON, malformed id in the path).
    #[error("{message}")]
    Malformed {
        field: Option<String>,
        message: String,
    },
    /// 401: missing or wrong bearer token.
    #[error("missing or invalid bearer token")]
    Unauthorized,
    /// 404
    #[error("{0} not found")]
    NotFound(&'static str),
    /// 405: the path is known, the method is not one of its own (`allow`, answered as `Allow`).
    #[error("this path answers {allow} only")]
    MethodNotAllowed { allow: &'static str },
    /// 409
    #[error("{0}")]
    Conflict(String),
    /// 413
    #[error("request body is larger than {0} bytes")]
    TooLarge(usize),
    /// 415
    #[error("request body must be JSON (Content-Type: application/json)")]
    NotJson,
    /// 429: the caller's ingest budget is spent; answered with `Retry-After`.
    #[error("too many events; retry after {retry_after_secs} s")]
    RateLimited { retry_after_secs: u64 },
    /// 422: well-formed but invalid.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// 503: an operator's query ran past `QUERY_TIMEOUT` and was cancelled; narrowing it helps,
    /// trying it again does not.
    #[error("the query ran longer than QUERY_TIMEOUT allows and was stopped; narrow it with config_id, status, event_id or a created_after/created_before window")]
    QueryTimeout,
    /// 503: the database cannot be reached. The cause is logged, never returned.
    #[error("service unavailable")]
    Unavailable(#[source] Cause),
    /// 500: a bug or an unexpected database answer. The cause is logged, never returned.
    #[error("internal error")]
    Internal(#[source] Cause),
}

/// Why a 5xx happened: the error itself with its chain of sources, so that the log line
/// names the root of it. Shared, since one failed batch answers many requests.
#[derive(Clone, Debug)]
pub struct Cause(Arc<dyn std::error::Error + Send + Sync>);

impl Cause {
    pub fn new(error: impl std::error::Error + Send + Sync + 'static) -> Self {
        Self(Arc::new(error))
    }
}

/// A cause that is a sentence of ours rather than another error.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Message(String);

impl From<String> for Cause {
    fn from(text: String) -> Self {
        Self::new(Message(text))
    }
}

impl From<&str> for Cause {
    fn from(text: &str) -> Self {
        Self::from(text.to_string())
    }
}

impl fmt::Display for Cause {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe(self.0.as_ref()))
    }
}

impl std::error::Error for Cause {}

impl AppError {
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> Self {
        AppError::Invalid {
            field: Some(field.into()),
            message: message.into(),
        }
    }

    pub fn malformed(field: Option<&str>, message: impl Into<String>) -> Self {
        AppError::Malformed {
            field: field.map(str::to_string),
            message: message.into(),
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            AppError::Malformed { .. } => 400,
            AppError::Unauthorized => 401,
            AppError::NotFound(_) => 404,
            AppError::MethodNotAllowed { .. } => 405,
            AppError::Conflict(_) => 409,
            AppError::TooLarge(_) => 413,
            AppError::NotJson => 415,
            AppError::RateLimited { .. } => 429,
            AppError::Invalid { .. } => 422,
            AppError::QueryTimeout | AppError::Unavailable(_) => 503,
            AppError::Internal(_) => 500,
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::Malformed { .. } => ErrorCode::MalformedRequest,
            AppError::Unauthorized => ErrorCode::Unauthorized,
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::MethodNotAllowed { .. } => ErrorCode::MethodNotAllowed,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::TooLarge(_) => ErrorCode::PayloadTooLarge,
            AppError::NotJson => ErrorCode::UnsupportedMediaType,
            AppError::RateLimited { .. } => ErrorCode::RateLimited,
            AppError::Invalid { .. } => ErrorCode::ValidationFailed,
            AppError::QueryTimeout => ErrorCode::QueryTimeout,
            AppError::Unavailable(_) => ErrorCode::Unavailable,
            AppError::Internal(_) => ErrorCode::InternalError,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Malformed { field, .. } | AppError::Invalid { field, .. } => field.as_deref(),
            _ => None,
        }
    }

    /// The cause to log for a 5xx, with its sources.
    pub fn cause(&self) -> Option<String> {
        match self {
            AppError::Unavailable(cause) | AppError::Internal(cause) => Some(cause.to_string()),
            _ => None,
        }
    }

    pub fn unavailable(cause: impl Into<Cause>) -> Self {
        AppError::Unavailable(cause.into())
    }

    pub fn internal(cause: impl Into<Cause>) -> Self {
        AppError::Internal(cause.into())
    }
}

impl From<DieselError> for AppError {
    fn from(error: DieselError) -> Self {
        let lost_connection = match &error {
            // The connection was lost: closed, or never answered (diesel-async reports both as
            // a command it could not send) ...
            DieselError::DatabaseError(
                DatabaseErrorKind::ClosedConnection | DatabaseErrorKind::UnableToSendCommand,
                _,
            ) => true,
            // ... or ended by the server (SQLSTATE 57P01, 57P02, 57P05: shutdown, crash, idle
            // timeout), which diesel reports without its code. A server with translated
            // messages makes this a 500.
            DieselError::DatabaseError(DatabaseErrorKind::Unknown, info) => {
                info.message().starts_with("terminating connection")
            }
            _ => false,
        };
        match error {
            DieselError::NotFound => AppError::NotFound("record"),
            DieselError::DatabaseError(DatabaseErrorKind::UniqueViolation, _) => {
                AppError::Conflict("conflicts with an existing record".into())
            }
            error if lost_connection => AppError::Unavailable(Cause::new(error)),
            error if crate::store::bounded::timed_out(&error) => AppError::QueryTimeout,
            other => AppError::Internal(Cause::new(other)),
        }
    }
}

impl From<crate::store::PoolError> for AppError {
    fn from(error: crate::store::PoolError) -> Self {
        AppError::Unavailable(Cause::new(error))
    }
}

impl From<crate::store::DbSetupError> for AppError {
    fn from(error: crate::store::DbSetupError) -> Self {
        AppError::Unavailable(Cause::new(error))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn database_error(kind: DatabaseErrorKind, message: &str) -> AppError {
        DieselError::DatabaseError(kind, Box::new(message.to_string())).into()
    }

    #[test]
    fn a_lost_connection_is_unavailable_and_other_database_errors_are_internal() {
        for (kind, message) in [
            (DatabaseErrorKind::ClosedConnection, "connection closed"),
            (DatabaseErrorKind::UnableToSendCommand, "connection closed"),
            (
                DatabaseErrorKind::Unknown,
                "terminating connection due to administrator command",
            ),
        ] {
            let error = database_error(kind, message);
            assert_eq!(error.status(), 503, "{message}: {error:?}");
        }
        let error = database_error(DatabaseErrorKind::Unknown, "division by zero");
        assert_eq!(error.status(), 500, "{error:?}");
        let error = database_error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to statement timeout",
        );
        assert_eq!(error.code(), ErrorCode::QueryTimeout, "{error:?}");
        assert_eq!(error.status(), 503, "{error:?}");
    }
}

//! The application's error type.
//!
//! Error policy: a caller's mistake is a precise refusal whose message says what to fix and
//! whose `field` names the offending input. Anything else is our problem: it is logged with its
//! cause where it becomes a response (`api::errors`), and the body says only that the
//! service is unavailable (503, database unreachable) or failed (500) — never the cause, which
//! may hold SQL, addresses or a partner's answer. `anyhow` is used only at the process edge.

use std::fmt;
use std::sync::Arc;

use diesel::result::{DatabaseErrorKind, Error as DieselError};

use crate::error_chain::describe;

/// The class of an error, so a caller can branch on it: `error.code` of an API error body.
/// One list for the application's errors ([`AppError::code`]) and the API's own (a body it
/// cannot read, a missing token …).
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

impl ErrorCode {
    pub const ALL: [ErrorCode; 12] = [
        ErrorCode::MalformedRequest,
        ErrorCode::Unauthorized,
        ErrorCode::NotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::Conflict,
        ErrorCode::PayloadTooLarge,
        ErrorCode::UnsupportedMediaType,
        ErrorCode::RateLimited,
        ErrorCode::ValidationFailed,
        ErrorCode::QueryTimeout,
        ErrorCode::Unavailable,
        ErrorCode::InternalError,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::MalformedRequest => "malformed_request",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::NotFound => "not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::Conflict => "conflict",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::UnsupportedMediaType => "unsupported_media_type",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ValidationFailed => "validation_failed",
            ErrorCode::QueryTimeout => "query_timeout",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::InternalError => "internal_error",
        }
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// What a use case refuses or fails with. The errors of reading a request (its body, its
/// token, its method, its rate) are the API's (`api::errors::ApiError`).
#[derive(Clone, Debug, thiserror::Error)]
pub enum AppError {
    #[error("{0} not found")]
    NotFound(&'static str),
    /// The request contradicts the state (a name taken, an entry already delivered).
    #[error("{0}")]
    Conflict(String),
    /// Well-formed but invalid.
    #[error("{message}")]
    Invalid {
        field: Option<String>,
        message: String,
    },
    /// An operator's query ran past `QUERY_TIMEOUT` and was cancelled; narrowing it helps,
    /// trying it again does not.
    #[error("the query ran longer than QUERY_TIMEOUT allows and was stopped; narrow it with config_id, status, event_id or a created_after/created_before window")]
    QueryTimeout,
    /// The database cannot be reached. The cause is logged, never returned.
    #[error("service unavailable")]
    Unavailable(#[source] Cause),
    /// A bug or an unexpected database answer. The cause is logged, never returned.
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
    pub fn invalid(field: impl Into<String>, message: impl fmt::Display) -> Self {
        AppError::Invalid {
            field: Some(field.into()),
            message: message.to_string(),
        }
    }

    pub fn code(&self) -> ErrorCode {
        match self {
            AppError::NotFound(_) => ErrorCode::NotFound,
            AppError::Conflict(_) => ErrorCode::Conflict,
            AppError::Invalid { .. } => ErrorCode::ValidationFailed,
            AppError::QueryTimeout => ErrorCode::QueryTimeout,
            AppError::Unavailable(_) => ErrorCode::Unavailable,
            AppError::Internal(_) => ErrorCode::InternalError,
        }
    }

    pub fn field(&self) -> Option<&str> {
        match self {
            AppError::Invalid { field, .. } => field.as_deref(),
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
            assert_eq!(error.code(), ErrorCode::Unavailable, "{message}: {error:?}");
        }
        let error = database_error(DatabaseErrorKind::Unknown, "division by zero");
        assert_eq!(error.code(), ErrorCode::InternalError, "{error:?}");
        let error = database_error(
            DatabaseErrorKind::Unknown,
            "canceling statement due to statement timeout",
        );
        assert_eq!(error.code(), ErrorCode::QueryTimeout, "{error:?}");
    }
}

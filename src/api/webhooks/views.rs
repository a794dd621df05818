//! What the `/webhooks` handlers answer with.

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::Value;
use utoipa::ToSchema;
use uuid::Uuid;

use super::names::{CancelReasonName, EventTypeName, HeldReasonName, StatusName, UrlParamsSchema};
use crate::api::errors::{ApiError, ErrorDetail};
use crate::application::entries::{Entry, EntryWithAttempts};
use crate::application::redrive::RedriveOutcome;
use crate::application::submit::Submitted;
use crate::application::AppError;
use crate::domain::attempt::Attempt;
use crate::domain::delivery::HeldReason;
use crate::domain::order::CancelReason;
use crate::domain::redact::redact_url;

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

/// The request an entry sends besides its URL (docs/api.md, "Partner requests"). Secret
/// headers and `Authorization` are added at the call and are not here.
#[derive(ToSchema)]
#[allow(dead_code)] // a schema only: the entry carries the stored JSON as it is
pub struct SentRequest {
    /// `GET`, `POST` or `PUT`.
    #[schema(example = "POST")]
    method: String,
    #[schema(nullable = false, example = "application/json")]
    content_type: Option<String>,
    #[schema(nullable = false)]
    body: Option<String>,
    /// The headers filled from their templates, as `[name, value]` pairs.
    #[schema(nullable = false)]
    headers: Option<Vec<Vec<String>>>,
}

/// A queue entry. Every field but `attempts` is always present, null where it has no value.
#[derive(Serialize, ToSchema)]
pub struct EntryView {
    pub id: i64,
    pub queue_id: Uuid,
    #[schema(value_type = EventTypeName)]
    pub event_type: &'static str,
    #[schema(required)]
    pub event_id: Option<String>,
    pub config_id: i64,
    /// The partner URL, built once at submit.
    pub webhook_url: String,
    /// `webhook_url` as the logs show it: the value of every secret-looking parameter
    /// (`token`, `secret`, `sig`, `key`, `auth` … in its name) replaced by `***`.
    pub webhook_url_redacted: String,
    /// The parameters as submitted.
    #[schema(value_type = UrlParamsSchema)]
    pub url_params: Value,
    /// What the partner is sent besides the URL, filled at submit: null for a plain `GET`.
    #[schema(required, value_type = Option<SentRequest>)]
    pub request: Option<Value>,
    #[schema(value_type = StatusName)]
    pub status: &'static str,
    /// The attempt due next, or the one that ended the entry.
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    #[schema(required)]
    pub completed_at: Option<DateTime<Utc>>,
    /// When the entry was cancelled (`deleted_at`); null while it is live.
    #[schema(required)]
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why webhookd cancelled the entry itself (`credit_cancelled`: a debit whose credit was
    /// cancelled); null when it is live or an operator cancelled it.
    #[schema(required, value_type = Option<CancelReasonName>)]
    pub cancel_reason: Option<&'static str>,
    /// Why a pending entry is not called now, spending no attempt while it waits
    /// (`waiting_for_credit`: a debit whose credit has not completed); null when not held.
    #[schema(required, value_type = Option<HeldReasonName>)]
    pub held_reason: Option<&'static str>,
    /// When an operator released this debit from waiting for its credit
    /// (`POST /webhooks/{queue_id}/release`); null when never.
    #[schema(required)]
    pub released_by_operator_at: Option<DateTime<Utc>>,
    /// The error of the latest attempt, null when none was made or it succeeded.
    #[schema(required)]
    pub last_error: Option<String>,
    /// Every attempt, oldest retry cycle first; only in `GET /webhooks/{queue_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attempts: Option<Vec<AttemptView>>,
}

impl From<Entry> for EntryView {
    fn from(entry: Entry) -> Self {
        Self {
            id: entry.id,
            queue_id: entry.queue_id,
            event_type: entry.event_type.as_str(),
            event_id: entry.event_id,
            config_id: entry.config_id,
            webhook_url_redacted: redact_url(&entry.webhook_url),
            webhook_url: entry.webhook_url,
            url_params: entry.url_params,
            request: entry.request,
            status: entry.status.as_str(),
            retry_count: entry.retry_count,
            max_retries: entry.max_retries,
            next_retry_at: entry.next_retry_at,
            created_at: entry.created_at,
            updated_at: entry.updated_at,
            completed_at: entry.completed_at,
            cancelled_at: entry.cancelled_at,
            cancel_reason: entry.cancel_reason.map(CancelReason::as_str),
            held_reason: entry.held_reason.map(HeldReason::as_str),
            released_by_operator_at: entry.released_by_operator_at,
            last_error: entry.last_error,
            attempts: None,
        }
    }
}

impl From<EntryWithAttempts> for EntryView {
    fn from(found: EntryWithAttempts) -> Self {
        Self {
            attempts: Some(found.attempts.into_iter().map(AttemptView::from).collect()),
            ..found.entry.into()
        }
    }
}

/// One attempt: of the current retry cycle (a row's `retry_N_*` columns) or of an earlier one
/// (`webhook_attempt_history`).
/// Every field is always present, null where it has no value.
#[derive(Serialize, ToSchema)]
#[schema(as = AttemptRecord)]
pub struct AttemptView {
    /// The retry cycle: 0 for the first, one more after each manual retry or redrive.
    pub cycle: i32,
    /// The attempt's number within its cycle (the N of `retry_N_*`).
    pub attempt: i32,
    #[schema(required)]
    pub started_at: Option<DateTime<Utc>>,
    /// Null while the attempt is in flight.
    #[schema(required)]
    pub completed_at: Option<DateTime<Utc>>,
    #[schema(required)]
    pub duration_ms: Option<i64>,
    /// The partner's HTTP status; null when no answer came (timeout, connection refused …).
    #[schema(required)]
    pub http_status: Option<i32>,
    /// The partner's answer body, cut at the configured response body limit.
    #[schema(required)]
    pub response_body: Option<String>,
    /// Why the attempt failed; null when it succeeded.
    #[schema(required)]
    pub error: Option<String>,
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        Self {
            cycle: a.cycle,
            attempt: a.attempt,
            started_at: a.started_at,
            completed_at: a.completed_at,
            duration_ms: a.duration_ms,
            http_status: a.http_status,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

/// `{"dry_run": true, "matched": N}` or `{"dry_run": false, "redriven": N}`.
#[derive(Serialize, ToSchema)]
pub struct RedriveView {
    pub dry_run: bool,
    /// A dry run: how many entries a real run would take now (at most `limit`).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub matched: Option<i64>,
    /// A real run: how many entries were put through a fresh retry cycle.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub redriven: Option<i64>,
}

impl From<RedriveOutcome> for RedriveView {
    fn from(outcome: RedriveOutcome) -> Self {
        match outcome {
            RedriveOutcome::DryRun { matched } => Self {
                dry_run: true,
                matched: Some(matched),
                redriven: None,
            },
            RedriveOutcome::Redriven { redriven } => Self {
                dry_run: false,
                matched: None,
                redriven: Some(redriven),
            },
        }
    }
}

/// `POST /webhooks/batch`: one result per event, in request order.
#[derive(Serialize, ToSchema)]
pub struct BatchView {
    pub results: Vec<BatchResult>,
}

/// What became of one event of a batch: what `POST /webhooks` would have answered for it.
/// Fields are declared in alphabetical order, the order they always had.
#[derive(Serialize, ToSchema)]
#[serde(untagged)]
pub enum BatchResult {
    /// Accepted: 201 created, or 200 when the same event was submitted before.
    Entry {
        entry: Box<EntryView>,
        #[schema(minimum = 200, maximum = 201)]
        status: u16,
    },
    /// Refused: the status and error `POST /webhooks` would have answered (409, 422 …).
    Error {
        error: ErrorDetail,
        #[schema(minimum = 400, maximum = 599)]
        status: u16,
    },
}

impl From<Result<Submitted, AppError>> for BatchResult {
    fn from(result: Result<Submitted, AppError>) -> Self {
        match result {
            Ok(Submitted::Created(entry)) => BatchResult::Entry {
                entry: Box::new(entry.into()),
                status: 201,
            },
            Ok(Submitted::Existing(entry)) => BatchResult::Entry {
                entry: Box::new(entry.into()),
                status: 200,
            },
            Err(e) => {
                let e = ApiError::from(e);
                BatchResult::Error {
                    error: e.body(),
                    status: e.status().as_u16(),
                }
            }
        }
    }
}

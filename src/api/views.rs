//! Response bodies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::errors::ErrorDetail;
use super::openapi::{EventTypeName, StatusName, UrlParamValue};
use crate::application::entries::Entry;
use crate::application::redrive::RedriveOutcome;
use crate::store::models::{AttemptRecord, ConfigRow, QueueRow};

/// A partner config. Every field is always present, null where it has no value.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    pub id: i64,
    pub name: String,
    /// URL template for `+credit` events.
    #[schema(required)]
    pub postback_url: Option<String>,
    /// URL template for `-debit` events.
    #[schema(required)]
    pub chargeback_url: Option<String>,
    /// Attempts after the first; null means the service's default.
    #[schema(required)]
    pub max_retries: Option<i32>,
    pub is_active: bool,
    /// Whether calls are signed (Standard Webhooks). The secret is write-only: never shown.
    pub signing: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ConfigRow> for ConfigView {
    fn from(c: ConfigRow) -> Self {
        Self {
            id: c.id,
            name: c.name,
            postback_url: c.postback_url,
            chargeback_url: c.chargeback_url,
            max_retries: c.max_retries,
            is_active: c.is_active,
            signing: c.signing,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
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
    /// The parameters as submitted.
    #[schema(value_type = HashMap<String, UrlParamValue>)]
    pub url_params: serde_json::Value,
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
    /// The error of the latest attempt, null when none was made or it succeeded.
    #[schema(required)]
    pub last_error: Option<String>,
    /// Every attempt, oldest retry cycle first; only in `GET /webhooks/{queue_id}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub attempts: Option<Vec<AttemptRecord>>,
}

impl EntryView {
    pub fn summary(row: QueueRow) -> Self {
        Self::build(row, None)
    }

    pub fn with_attempts(entry: Entry) -> Self {
        Self::build(entry.row, Some(entry.attempts))
    }

    fn build(row: QueueRow, attempts: Option<Vec<AttemptRecord>>) -> Self {
        let last_error = row.last_error();
        Self {
            id: row.id,
            queue_id: row.queue_id,
            event_type: row.event_type.as_str(),
            event_id: row.event_id,
            config_id: row.config_id,
            webhook_url: row.webhook_url,
            url_params: row.url_params,
            status: row.status.as_str(),
            retry_count: row.retry_count,
            max_retries: row.max_retries,
            next_retry_at: row.next_retry_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
            cancelled_at: row.deleted_at,
            last_error,
            attempts,
        }
    }
}

/// One page of a list, newest first.
#[derive(Serialize, ToSchema)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `cursor` for the next page; null on the last page.
    #[schema(required)]
    pub next_cursor: Option<String>,
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

/// `GET /health`. Fields are declared in alphabetical order, the order they always had.
#[derive(Serialize, ToSchema)]
pub struct HealthView {
    pub database: Reachability,
    /// `unavailable` (with 503) when the database is unreachable.
    pub status: Health,
    /// The service's version.
    pub version: &'static str,
}

#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Health {
    Ok,
    Unavailable,
}

/// Whether a database connection could be had and used within 2 s.
#[derive(Serialize, ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Reachability {
    Ok,
    Unreachable,
}

impl HealthView {
    pub fn new(database_ok: bool) -> Self {
        let (status, database) = if database_ok {
            (Health::Ok, Reachability::Ok)
        } else {
            (Health::Unavailable, Reachability::Unreachable)
        };
        Self {
            database,
            status,
            version: env!("CARGO_PKG_VERSION"),
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

//! Response bodies.

use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::application::entries::Entry;
use crate::application::redrive::RedriveOutcome;
use crate::infra::db::models::{AttemptRecord, ConfigRow, QueueRow};

#[derive(Serialize)]
pub struct ConfigView {
    pub id: i64,
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
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

#[derive(Serialize)]
pub struct EntryView {
    pub id: i64,
    pub queue_id: Uuid,
    pub event_type: &'static str,
    pub event_id: Option<String>,
    pub config_id: i64,
    pub webhook_url: String,
    pub url_params: serde_json::Value,
    pub status: &'static str,
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// When the entry was cancelled (`deleted_at`); null while it is live.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// The error of the latest attempt, null when none was made or it succeeded.
    pub last_error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

#[derive(Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// `{"dry_run": true, "matched": N}` or `{"dry_run": false, "redriven": N}`.
#[derive(Serialize)]
pub struct RedriveView {
    pub dry_run: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub matched: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
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

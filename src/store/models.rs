//! Rows as read from and written to PostgreSQL, and the mapping of domain enums to SQL text.

use chrono::{DateTime, Utc};
use diesel::deserialize::{self, FromSql};
use diesel::pg::{Pg, PgValue};
use diesel::prelude::*;
use diesel::sql_types::Text;
use uuid::Uuid;

use super::schema::{webhook_attempt_history, webhook_configs, webhook_queue};
use crate::config::Secret;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::domain::signing::SigningKey;

// The only place where status and event-type text meets the domain enums.
macro_rules! text_enum {
    ($t:ty) => {
        impl Queryable<Text, Pg> for $t {
            type Row = Self;
            fn build(row: Self) -> deserialize::Result<Self> {
                Ok(row)
            }
        }
    };
}
text_enum!(Status);
text_enum!(EventType);
text_enum!(Secret);

impl FromSql<Text, Pg> for Status {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

impl FromSql<Text, Pg> for EventType {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        let text = <String as FromSql<Text, Pg>>::from_sql(bytes)?;
        Ok(text.parse()?)
    }
}

/// A stored signing secret is read as a [`Secret`] and parsed only when a call is signed, so
/// that one bad value fails that partner's calls, not every claim.
impl FromSql<Text, Pg> for Secret {
    fn from_sql(bytes: PgValue<'_>) -> deserialize::Result<Self> {
        Ok(Secret::new(<String as FromSql<Text, Pg>>::from_sql(bytes)?))
    }
}

#[derive(Clone, Debug, Queryable, Selectable, Identifiable)]
#[diesel(table_name = webhook_configs)]
pub struct ConfigRow {
    pub id: i64,
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// Whether calls are signed. The secret itself is never read here: only the claim
    /// statement returns it, to the worker that signs.
    #[diesel(select_expression = webhook_configs::signing_secret.is_not_null())]
    #[diesel(select_expression_type = diesel::dsl::IsNotNull<webhook_configs::signing_secret>)]
    pub signing: bool,
}

impl ConfigRow {
    /// The URL template for an event type, if the partner takes that type.
    pub fn url_for(&self, event_type: EventType) -> Option<&str> {
        match event_type {
            EventType::Credit => self.postback_url.as_deref(),
            EventType::Debit => self.chargeback_url.as_deref(),
        }
    }
}

/// What a create or replace does to a config's signing secret (write-only: never read back).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SecretChange {
    /// Leave it as it is (nothing on create).
    Keep,
    Remove,
    Set(SigningKey),
}

impl SecretChange {
    /// The value to write to `signing_secret`, or `None` to leave the column alone.
    pub fn column_value(&self) -> Option<Option<String>> {
        match self {
            SecretChange::Keep => None,
            SecretChange::Remove => Some(None),
            SecretChange::Set(key) => Some(Some(key.to_secret())),
        }
    }
}

/// The writable fields of a config, for insert and for replace (the signing secret is
/// written separately: see [`SecretChange`]).
#[derive(Clone, Debug, Insertable, AsChangeset)]
#[diesel(table_name = webhook_configs, treat_none_as_null = true)]
pub struct ConfigForm {
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
}

/// A full `webhook_queue` row.
#[derive(Clone, Debug, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = webhook_queue)]
pub struct QueueRow {
    pub id: i64,
    pub queue_id: Uuid,
    pub event_type: EventType,
    pub event_id: Option<String>,
    pub config_id: i64,
    pub webhook_url: String,
    pub url_params: serde_json::Value,
    pub status: Status,
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: DateTime<Utc>,
    pub retry_0_started_at: Option<DateTime<Utc>>,
    pub retry_0_completed_at: Option<DateTime<Utc>>,
    pub retry_0_duration_ms: Option<i64>,
    pub retry_0_http_status: Option<i32>,
    pub retry_0_response_body: Option<String>,
    pub retry_0_error: Option<String>,
    pub retry_1_started_at: Option<DateTime<Utc>>,
    pub retry_1_completed_at: Option<DateTime<Utc>>,
    pub retry_1_duration_ms: Option<i64>,
    pub retry_1_http_status: Option<i32>,
    pub retry_1_response_body: Option<String>,
    pub retry_1_error: Option<String>,
    pub retry_2_started_at: Option<DateTime<Utc>>,
    pub retry_2_completed_at: Option<DateTime<Utc>>,
    pub retry_2_duration_ms: Option<i64>,
    pub retry_2_http_status: Option<i32>,
    pub retry_2_response_body: Option<String>,
    pub retry_2_error: Option<String>,
    pub retry_3_started_at: Option<DateTime<Utc>>,
    pub retry_3_completed_at: Option<DateTime<Utc>>,
    pub retry_3_duration_ms: Option<i64>,
    pub retry_3_http_status: Option<i32>,
    pub retry_3_response_body: Option<String>,
    pub retry_3_error: Option<String>,
    pub retry_4_started_at: Option<DateTime<Utc>>,
    pub retry_4_completed_at: Option<DateTime<Utc>>,
    pub retry_4_duration_ms: Option<i64>,
    pub retry_4_http_status: Option<i32>,
    pub retry_4_response_body: Option<String>,
    pub retry_4_error: Option<String>,
    pub retry_5_started_at: Option<DateTime<Utc>>,
    pub retry_5_completed_at: Option<DateTime<Utc>>,
    pub retry_5_duration_ms: Option<i64>,
    pub retry_5_http_status: Option<i32>,
    pub retry_5_response_body: Option<String>,
    pub retry_5_error: Option<String>,
    pub retry_6_started_at: Option<DateTime<Utc>>,
    pub retry_6_completed_at: Option<DateTime<Utc>>,
    pub retry_6_duration_ms: Option<i64>,
    pub retry_6_http_status: Option<i32>,
    pub retry_6_response_body: Option<String>,
    pub retry_6_error: Option<String>,
    pub worker_id: Option<String>,
    pub locked_at: Option<DateTime<Utc>>,
    pub lock_expires_at: Option<DateTime<Utc>>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub deleted_at: Option<DateTime<Utc>>,
}

/// One attempt: of the current retry cycle (a row's `retry_N_*` columns) or of an earlier one
/// (`webhook_attempt_history`).
#[derive(Clone, Debug, PartialEq)]
pub struct AttemptRecord {
    /// The retry cycle: 0 for the first, one more after each manual retry or redrive.
    pub cycle: i32,
    /// The attempt's number within its cycle (the N of `retry_N_*`).
    pub attempt: i32,
    pub started_at: Option<DateTime<Utc>>,
    /// Null while the attempt is in flight.
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    /// The partner's HTTP status; null when no answer came (timeout, connection refused …).
    pub http_status: Option<i32>,
    /// The partner's answer body, cut at the configured response body limit.
    pub response_body: Option<String>,
    /// Why the attempt failed; null when it succeeded.
    pub error: Option<String>,
}

/// An attempt of an earlier retry cycle, archived when the entry was retried or redriven.
#[derive(Clone, Debug, Queryable, Selectable)]
#[diesel(table_name = webhook_attempt_history)]
pub struct ArchivedAttemptRow {
    pub cycle: i32,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    pub duration_ms: Option<i64>,
    pub http_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
}

impl From<ArchivedAttemptRow> for AttemptRecord {
    fn from(a: ArchivedAttemptRow) -> Self {
        AttemptRecord {
            cycle: a.cycle,
            attempt: a.attempt,
            started_at: Some(a.started_at),
            completed_at: a.completed_at,
            duration_ms: a.duration_ms,
            http_status: a.http_status,
            response_body: a.response_body,
            error: a.error,
        }
    }
}

impl QueueRow {
    /// Every attempt of the entry in order: the archived ones (which must come ordered by cycle
    /// and attempt) and then the current cycle's, numbered one past the last archived cycle.
    pub fn attempts_after(&self, archived: Vec<ArchivedAttemptRow>) -> Vec<AttemptRecord> {
        let current = archived.last().map_or(0, |a| a.cycle + 1);
        let mut attempts: Vec<AttemptRecord> = archived.into_iter().map(Into::into).collect();
        attempts.extend(self.attempts(current));
        attempts
    }

    /// The attempts of the current cycle, in order (a slot with no start time was never used),
    /// labelled with `cycle`.
    fn attempts(&self, cycle: i32) -> Vec<AttemptRecord> {
        (0..=crate::domain::retry::MAX_RETRIES_LIMIT)
            .map(|n| self.attempt(cycle, n))
            .filter(|a| a.started_at.is_some())
            .collect()
    }

    /// The error of the latest attempt made, `None` when none was made or it succeeded.
    pub fn last_error(&self) -> Option<String> {
        (0..=crate::domain::retry::MAX_RETRIES_LIMIT)
            .rev()
            .map(|n| self.attempt(0, n))
            .find(|a| a.started_at.is_some())
            .and_then(|a| a.error)
    }

    fn attempt(&self, cycle: i32, n: i32) -> AttemptRecord {
        match n {
            0 => AttemptRecord {
                cycle,
                attempt: 0,
                started_at: self.retry_0_started_at,
                completed_at: self.retry_0_completed_at,
                duration_ms: self.retry_0_duration_ms,
                http_status: self.retry_0_http_status,
                response_body: self.retry_0_response_body.clone(),
                error: self.retry_0_error.clone(),
            },
            1 => AttemptRecord {
                cycle,
                attempt: 1,
                started_at: self.retry_1_started_at,
                completed_at: self.retry_1_completed_at,
                duration_ms: self.retry_1_duration_ms,
                http_status: self.retry_1_http_status,
                response_body: self.retry_1_response_body.clone(),
                error: self.retry_1_error.clone(),
            },
            2 => AttemptRecord {
                cycle,
                attempt: 2,
                started_at: self.retry_2_started_at,
                completed_at: self.retry_2_completed_at,
                duration_ms: self.retry_2_duration_ms,
                http_status: self.retry_2_http_status,
                response_body: self.retry_2_response_body.clone(),
                error: self.retry_2_error.clone(),
            },
            3 => AttemptRecord {
                cycle,
                attempt: 3,
                started_at: self.retry_3_started_at,
                completed_at: self.retry_3_completed_at,
                duration_ms: self.retry_3_duration_ms,
                http_status: self.retry_3_http_status,
                response_body: self.retry_3_response_body.clone(),
                error: self.retry_3_error.clone(),
            },
            4 => AttemptRecord {
                cycle,
                attempt: 4,
                started_at: self.retry_4_started_at,
                completed_at: self.retry_4_completed_at,
                duration_ms: self.retry_4_duration_ms,
                http_status: self.retry_4_http_status,
                response_body: self.retry_4_response_body.clone(),
                error: self.retry_4_error.clone(),
            },
            5 => AttemptRecord {
                cycle,
                attempt: 5,
                started_at: self.retry_5_started_at,
                completed_at: self.retry_5_completed_at,
                duration_ms: self.retry_5_duration_ms,
                http_status: self.retry_5_http_status,
                response_body: self.retry_5_response_body.clone(),
                error: self.retry_5_error.clone(),
            },
            6 => AttemptRecord {
                cycle,
                attempt: 6,
                started_at: self.retry_6_started_at,
                completed_at: self.retry_6_completed_at,
                duration_ms: self.retry_6_duration_ms,
                http_status: self.retry_6_http_status,
                response_body: self.retry_6_response_body.clone(),
                error: self.retry_6_error.clone(),
            },
            _ => unreachable!("the table records attempts 0 to 6"),
        }
    }
}

//! What `GET /webhooks` reads from its query string.

use chrono::{DateTime, Utc};
use utoipa::IntoParams;

use super::names::{EventTypeName, HeldReasonName, StatusName};
use crate::application::entries;
use crate::application::AppError;
use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::{EventType, MAX_EVENT_ID_LEN};
use crate::domain::name::UnknownName;
use crate::store::queue::listing::ListFilter;

/// `GET /webhooks` filters and paging, newest first.
#[derive(IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    #[param(value_type = Option<StatusName>, inline, example = "failed")]
    pub status: Option<Status>,
    #[param(value_type = Option<EventTypeName>, inline, example = "+credit")]
    pub event_type: Option<EventType>,
    #[param(example = 1)]
    pub config_id: Option<i64>,
    /// The producer's event id (exact match).
    #[param(
        min_length = 1,
        max_length = 255,
        pattern = r"^[^\u0000]*$",
        example = "tx_123"
    )]
    pub event_id: Option<String>,
    /// RFC 3339.
    #[param(value_type = Option<String>, format = DateTime, example = "2024-01-01T00:00:00Z")]
    pub created_after: Option<DateTime<Utc>>,
    /// RFC 3339.
    #[param(value_type = Option<String>, format = DateTime, example = "2100-01-01T00:00:00Z")]
    pub created_before: Option<DateTime<Utc>>,
    /// true: only cancelled entries; false: only live ones; absent: both.
    #[param(example = false)]
    pub cancelled: Option<bool>,
    /// Only live entries held for this reason, e.g. debits waiting for their credit.
    #[param(value_type = Option<HeldReasonName>, inline, example = "waiting_for_credit")]
    pub held: Option<HeldReason>,
    /// Default 50.
    #[param(value_type = Option<i64>, minimum = 1, maximum = 500, example = 10)]
    pub limit: i64,
    /// The `next_cursor` of the previous page: a positive integer.
    #[param(value_type = Option<i64>, minimum = 1, example = 9223372036854775807i64)]
    pub cursor: Option<i64>,
}

impl ListQuery {
    /// Reads `?status=&event_type=&config_id=&created_after=&created_before=&cancelled=&held=&limit=&cursor=`.
    pub(super) fn parse(query: &str) -> Result<Self, AppError> {
        let mut list = Self {
            status: None,
            event_type: None,
            config_id: None,
            event_id: None,
            created_after: None,
            created_before: None,
            cancelled: None,
            held: None,
            limit: entries::DEFAULT_PAGE,
            cursor: None,
        };
        for (key, value) in url::form_urlencoded::parse(query.as_bytes()) {
            list.read(&key, &value)
                .map_err(|message| AppError::invalid(key.to_string(), message))?;
        }
        Ok(list)
    }

    /// Takes one parameter, or says what is wrong with it.
    fn read(&mut self, key: &str, value: &str) -> Result<(), String> {
        let name = |e: UnknownName| e.to_string();
        match key {
            "status" => self.status = Some(value.parse().map_err(name)?),
            "event_type" => self.event_type = Some(value.parse().map_err(name)?),
            "held" => self.held = Some(value.parse().map_err(name)?),
            "config_id" => self.config_id = Some(value.parse().map_err(|_| "must be an integer")?),
            "event_id" => self.event_id = Some(event_id(value)?),
            "created_after" => self.created_after = Some(timestamp(value)?),
            "created_before" => self.created_before = Some(timestamp(value)?),
            "cancelled" => {
                self.cancelled = Some(value.parse().map_err(|_| "must be true or false")?)
            }
            "limit" => self.limit = limit(value)?,
            "cursor" => self.cursor = Some(cursor(value)?),
            _ => return Err("is not a known parameter".into()),
        }
        Ok(())
    }

    pub(super) fn filter(&self) -> ListFilter {
        ListFilter {
            status: self.status,
            event_type: self.event_type,
            config_id: self.config_id,
            event_id: self.event_id.clone(),
            created_after: self.created_after,
            created_before: self.created_before,
            cancelled: self.cancelled,
            held: self.held,
            before_id: self.cursor,
        }
    }
}

fn event_id(value: &str) -> Result<String, String> {
    if value.is_empty() || value.chars().count() > MAX_EVENT_ID_LEN || value.contains('\0') {
        return Err(format!(
            "must be 1 to {MAX_EVENT_ID_LEN} characters, without U+0000"
        ));
    }
    Ok(value.to_string())
}

fn timestamp(value: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(value)
        .map(|at| at.with_timezone(&Utc))
        .map_err(|_| "must be an RFC 3339 timestamp".into())
}

fn limit(value: &str) -> Result<i64, String> {
    value
        .parse()
        .ok()
        .filter(|n| (1..=entries::MAX_PAGE).contains(n))
        .ok_or_else(|| format!("must be an integer from 1 to {}", entries::MAX_PAGE))
}

fn cursor(value: &str) -> Result<i64, String> {
    value
        .parse()
        .ok()
        .filter(|n: &i64| *n > 0)
        .ok_or_else(|| "is not a cursor this API returned".into())
}

//! What `POST /webhooks`, `POST /webhooks/batch` and `POST /webhooks/redrive` read.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use utoipa::ToSchema;

use super::names::{EventTypeName, UrlParamsSchema};
use crate::api::json::{Body, Fields, BATCH_BODY_LIMIT};
use crate::application::entries;
use crate::application::redrive::{self, RedriveRequest};
use crate::application::submit::{SubmitRequest, MAX_EVENTS_PER_BATCH};
use crate::application::AppError;
use crate::domain::delivery::Status;
use crate::domain::event::{EventType, UrlParams, MAX_EVENT_ID_LEN, MAX_PARAM_NAME_LEN};
use crate::store::queue::cycle::RedriveFilter;

// ---------------------------------------------------------------------------------------------
// Request bodies and query
// ---------------------------------------------------------------------------------------------

// utoipa's schema and param attributes take number literals only, so the limits the document
// states below are checked here against the constants that enforce them.
const _: () = assert!(
    MAX_EVENT_ID_LEN == 255
        && MAX_PARAM_NAME_LEN == 64
        && MAX_EVENTS_PER_BATCH == 1000
        && redrive::MAX_ROWS == 100_000
        && entries::MAX_PAGE == 500
        && entries::DEFAULT_PAGE == 50,
    "a limit changed: change the documented one in api/webhooks.rs too"
);

/// `POST /webhooks`, and each event of `POST /webhooks/batch` (docs/api.md, "Submitting events"). A field that is
/// null counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SubmitBody {
    #[schema(value_type = EventTypeName)]
    pub event_type: EventType,
    /// The producer's id of the event, 1 to 255 characters: with `config_id` and `event_type` it
    /// is the idempotency key. The same event again answers 200 with the existing entry; the
    /// same key with other `url_params` is a 409.
    #[schema(min_length = 1, max_length = 255, pattern = r"^[^\u0000]*$")]
    pub event_id: Option<String>,
    /// An active config with a URL for `event_type`.
    pub config_id: i64,
    /// The partner URL's parameters; keys are 1 to 64 characters of `A-Z a-z 0-9 _ . -`.
    #[schema(value_type = Option<UrlParamsSchema>)]
    pub url_params: Value,
}

impl Body for SubmitBody {
    const FIELDS: &'static [&'static str] = &["event_type", "event_id", "config_id", "url_params"];

    fn read(mut fields: Fields) -> Result<Self, AppError> {
        let event_type = fields
            .string("event_type")?
            .parse()
            .map_err(|e| AppError::invalid("event_type", e))?;
        let event_id = fields.optional_string("event_id")?;
        if let Some(id) = &event_id {
            if id.is_empty() || id.chars().count() > MAX_EVENT_ID_LEN {
                return Err(AppError::invalid(
                    "event_id",
                    format!("must be 1 to {MAX_EVENT_ID_LEN} characters"),
                ));
            }
        }
        let body = Self {
            event_type,
            event_id,
            config_id: fields.integer("config_id")?,
            url_params: fields.optional("url_params").unwrap_or_else(|| json!({})),
        };
        fields.finish()?;
        Ok(body)
    }
}

impl TryFrom<SubmitBody> for SubmitRequest {
    type Error = AppError;

    fn try_from(body: SubmitBody) -> Result<Self, AppError> {
        let url_params = UrlParams::from_json(&body.url_params)
            .map_err(|e| AppError::invalid(e.field, e.message))?;
        Ok(SubmitRequest {
            event_type: body.event_type,
            event_id: body.event_id,
            config_id: body.config_id,
            url_params,
            url_params_json: body.url_params,
        })
    }
}

/// The body of `POST /webhooks` (docs/api.md, "Submitting events"), or one event of a batch, into a submit request.
/// Public so that the fuzz target and property tests exercise exactly this code.
pub fn submit_request(body: Value) -> Result<SubmitRequest, AppError> {
    SubmitBody::from_json(body)?.try_into()
}

/// `POST /webhooks/batch`.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BatchBody {
    /// Each is read and answered as `POST /webhooks` would read and answer it (a
    /// `SubmitBody`), in `results`: an event that is not one is refused there, not here, so
    /// the batch takes any value as an event.
    #[schema(value_type = Vec<Value>, min_items = 1, max_items = 1000)]
    pub events: Vec<Value>,
}

impl Body for BatchBody {
    const FIELDS: &'static [&'static str] = &["events"];
    const LIMIT: usize = BATCH_BODY_LIMIT;
    // Each event is checked as `POST /webhooks` checks it, its fault answered in its result.
    const WHOLE_BODY_NUL_CHECK: bool = false;

    fn read(mut fields: Fields) -> Result<Self, AppError> {
        let events = match fields.required("events")? {
            Value::Array(events) => events,
            _ => return Err(AppError::invalid("events", "must be an array")),
        };
        fields.finish()?;
        if events.is_empty() || events.len() > MAX_EVENTS_PER_BATCH {
            return Err(AppError::invalid(
                "events",
                format!("must hold 1 to {MAX_EVENTS_PER_BATCH} events"),
            ));
        }
        Ok(Self { events })
    }
}

/// `POST /webhooks/redrive`: every field optional; the filters are ANDed. A field that is
/// null counts as absent.
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RedriveBody {
    pub config_id: Option<i64>,
    #[schema(value_type = Option<EventTypeName>)]
    pub event_type: Option<EventType>,
    pub status: Option<RedriveStatus>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failed_after: Option<DateTime<Utc>>,
    /// Later than `failed_after`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub failed_before: Option<DateTime<Utc>>,
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_after: Option<DateTime<Utc>>,
    /// Later than `created_after`.
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created_before: Option<DateTime<Utc>>,
    /// Count the matching entries, change nothing. Default false.
    pub dry_run: Option<bool>,
    /// Most entries to take, default and maximum 100000.
    #[schema(minimum = 1, maximum = 100_000)]
    pub limit: Option<i64>,
}

/// Only failed entries can be redriven; the field is accepted for clarity.
#[derive(ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum RedriveStatus {
    Failed,
}

impl Body for RedriveBody {
    const FIELDS: &'static [&'static str] = &[
        "config_id",
        "event_type",
        "status",
        "failed_after",
        "failed_before",
        "created_after",
        "created_before",
        "dry_run",
        "limit",
    ];

    fn read(mut fields: Fields) -> Result<Self, AppError> {
        let config_id = fields.optional_integer("config_id")?;
        let event_type = fields
            .optional_string("event_type")?
            .map(|t| {
                t.parse::<EventType>()
                    .map_err(|e| AppError::invalid("event_type", e))
            })
            .transpose()?;
        let status = fields
            .optional_string("status")?
            .map(|status| match status.parse::<Status>() {
                Ok(Status::Failed) => Ok(RedriveStatus::Failed),
                Ok(_) => Err(AppError::invalid(
                    "status",
                    "only failed webhooks can be redriven",
                )),
                Err(e) => Err(AppError::invalid("status", e)),
            })
            .transpose()?;
        let body = Self {
            config_id,
            event_type,
            status,
            failed_after: fields.optional_timestamp("failed_after")?,
            failed_before: fields.optional_timestamp("failed_before")?,
            created_after: fields.optional_timestamp("created_after")?,
            created_before: fields.optional_timestamp("created_before")?,
            dry_run: fields.optional_bool("dry_run")?,
            limit: fields.optional_integer("limit")?,
        };
        fields.finish()?;
        Ok(body)
    }
}

impl TryFrom<RedriveBody> for RedriveRequest {
    type Error = AppError;

    fn try_from(body: RedriveBody) -> Result<Self, AppError> {
        let filter = RedriveFilter {
            config_id: body.config_id,
            event_type: body.event_type,
            failed_after: body.failed_after,
            failed_before: body.failed_before,
            created_after: body.created_after,
            created_before: body.created_before,
        };
        RedriveRequest::new(filter, body.dry_run.unwrap_or(false), body.limit)
    }
}

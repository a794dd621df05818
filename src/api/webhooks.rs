//! `/webhooks`: submitting one event or a batch, listing, reading, cancelling, retrying and
//! redriving entries — the handlers, the bodies and query they read, and the views they
//! answer with.

use actix_web::{web, HttpRequest, HttpResponse};
use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::{json, Value};
use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Schema, Type};
use utoipa::openapi::RefOr;
use utoipa::{IntoParams, PartialSchema, ToSchema};
use uuid::Uuid;

use super::common::{Page, ServerErrors};
use super::errors::{ApiError, ErrorBody, ErrorDetail};
use super::json::{read_body, too_large, Body, Fields, BATCH_BODY_LIMIT, BODY_LIMIT};
use super::ratelimit;
use super::state::{Reply, State};
use crate::application::entries::{self, Entry, EntryWithAttempts};
use crate::application::redrive::{self, RedriveOutcome, RedriveRequest};
use crate::application::submit::{self, SubmitRequest, Submitted, MAX_EVENTS_PER_BATCH};
use crate::application::AppError;
use crate::domain::attempt::Attempt;
use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::{
    EventType, UrlParams, MAX_EVENT_ID_LEN, MAX_PARAMS, MAX_PARAM_NAME_LEN, MAX_VALUE_LEN,
};
use crate::domain::name::UnknownName;
use crate::domain::order::CancelReason;
use crate::domain::redact::redact_url;
use crate::store::queue::cycle::RedriveFilter;
use crate::store::queue::listing::ListFilter;

// ---------------------------------------------------------------------------------------------
// Names the document shows for domain values
// ---------------------------------------------------------------------------------------------

/// A string enum of `names`.
pub(super) fn string_enum(names: impl IntoIterator<Item = &'static str>) -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::String)
        .enum_values(Some(names))
        .into()
}

/// `+credit` or `-debit`: the names of the domain's `EventType`s.
pub struct EventTypeName;

impl PartialSchema for EventTypeName {
    fn schema() -> RefOr<Schema> {
        string_enum(EventType::ALL.map(EventType::as_str))
    }
}

impl ToSchema for EventTypeName {
    fn name() -> std::borrow::Cow<'static, str> {
        "EventType".into()
    }
}

/// The names of the domain's delivery `Status`es.
pub struct StatusName;

impl PartialSchema for StatusName {
    fn schema() -> RefOr<Schema> {
        string_enum(Status::ALL.map(Status::as_str))
    }
}

impl ToSchema for StatusName {
    fn name() -> std::borrow::Cow<'static, str> {
        "Status".into()
    }
}

/// The names of the domain's `HeldReason`s: why a pending entry is not called now.
pub struct HeldReasonName;

impl PartialSchema for HeldReasonName {
    fn schema() -> RefOr<Schema> {
        string_enum(HeldReason::ALL.map(HeldReason::as_str))
    }
}

impl ToSchema for HeldReasonName {
    fn name() -> std::borrow::Cow<'static, str> {
        "HeldReason".into()
    }
}

/// The names of the domain's `CancelReason`s: why webhookd cancelled an entry itself.
pub struct CancelReasonName;

impl PartialSchema for CancelReasonName {
    fn schema() -> RefOr<Schema> {
        string_enum(CancelReason::ALL.map(CancelReason::as_str))
    }
}

impl ToSchema for CancelReasonName {
    fn name() -> std::borrow::Cow<'static, str> {
        "CancelReason".into()
    }
}

/// No U+0000 (which PostgreSQL text cannot hold): the pattern of every free-text string a
/// body carries.
pub const NO_NUL: &str = r"^[^\u0000]*$";

/// `url_params`: at most 64 keys of 1 to 64 characters of `A-Z a-z 0-9 _ . -`, each value a
/// string of at most 2048 characters (sent as it is), a number or a boolean (sent as its JSON
/// text).
pub struct UrlParamsSchema;

impl PartialSchema for UrlParamsSchema {
    fn schema() -> RefOr<Schema> {
        let string = ObjectBuilder::new()
            .schema_type(Type::String)
            .max_length(Some(MAX_VALUE_LEN))
            .pattern(Some(NO_NUL));
        let value = OneOfBuilder::new()
            .item(string)
            .item(ObjectBuilder::new().schema_type(Type::Number))
            .item(ObjectBuilder::new().schema_type(Type::Boolean));
        let name = ObjectBuilder::new()
            .schema_type(Type::String)
            .pattern(Some(format!("^[A-Za-z0-9_.-]{{1,{MAX_PARAM_NAME_LEN}}}$")));
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .max_properties(Some(MAX_PARAMS))
            .property_names(Some(name))
            .additional_properties(Some(Schema::from(value.build())))
            .into()
    }
}

impl ToSchema for UrlParamsSchema {
    fn name() -> std::borrow::Cow<'static, str> {
        "UrlParams".into()
    }
}

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
    fn parse(query: &str) -> Result<Self, AppError> {
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
            let bad = |message: &str| AppError::invalid(key.to_string(), message.to_string());
            match key.as_ref() {
                "status" => {
                    list.status = Some(
                        value
                            .parse()
                            .map_err(|e: UnknownName| bad(&e.to_string()))?,
                    )
                }
                "event_type" => {
                    list.event_type = Some(
                        value
                            .parse()
                            .map_err(|e: UnknownName| bad(&e.to_string()))?,
                    )
                }
                "config_id" => {
                    list.config_id = Some(value.parse().map_err(|_| bad("must be an integer"))?)
                }
                "event_id" => {
                    if value.is_empty()
                        || value.chars().count() > MAX_EVENT_ID_LEN
                        || value.contains('\0')
                    {
                        return Err(bad(&format!(
                            "must be 1 to {MAX_EVENT_ID_LEN} characters, without U+0000"
                        )));
                    }
                    list.event_id = Some(value.into_owned());
                }
                "created_after" | "created_before" => {
                    let at = DateTime::parse_from_rfc3339(&value)
                        .map_err(|_| bad("must be an RFC 3339 timestamp"))?
                        .with_timezone(&Utc);
                    if key == "created_after" {
                        list.created_after = Some(at);
                    } else {
                        list.created_before = Some(at);
                    }
                }
                "held" => {
                    list.held = Some(
                        value
                            .parse()
                            .map_err(|e: UnknownName| bad(&e.to_string()))?,
                    )
                }
                "cancelled" => {
                    list.cancelled = Some(value.parse().map_err(|_| bad("must be true or false"))?)
                }
                "limit" => {
                    list.limit = value
                        .parse()
                        .ok()
                        .filter(|n| (1..=entries::MAX_PAGE).contains(n))
                        .ok_or_else(|| {
                            bad(&format!(
                                "must be an integer from 1 to {}",
                                entries::MAX_PAGE
                            ))
                        })?
                }
                "cursor" => {
                    list.cursor = Some(
                        value
                            .parse()
                            .ok()
                            .filter(|n: &i64| *n > 0)
                            .ok_or_else(|| bad("is not a cursor this API returned"))?,
                    )
                }
                _ => return Err(bad("is not a known parameter")),
            }
        }
        Ok(list)
    }

    fn filter(&self) -> ListFilter {
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

// ---------------------------------------------------------------------------------------------
// Views
// ---------------------------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------------------------
// Handlers
// ---------------------------------------------------------------------------------------------

fn queue_id_path(raw: &str) -> Result<Uuid, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::malformed(
            Some("queue_id"),
            format!("{raw:?} is not a queue_id (a UUID)"),
        )
    })
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    request_body(content = SubmitBody, example = json!({"event_type": "+credit", "event_id": "tx_123", "config_id": 1,
        "url_params": {"value": "100", "user_id": "user_123", "token": "abc123", "signature": "xyz789"}})),
    responses(
        (status = 200, description = "Submitted before (same idempotency key and `url_params`): the existing entry; nothing was created", body = EntryView),
        (status = 201, description = "Queued: the new entry", body = EntryView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "The idempotency key was submitted before with other `url_params`", body = ErrorBody),
        (status = 413, description = too_large(BODY_LIMIT), body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown (`field` names it), or the config is inactive or has no URL for the event type", body = ErrorBody),
        (status = 429, description = "Over INGEST_RATE_LIMIT; `Retry-After` says when to try again", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn submit_webhook(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let body: SubmitBody = read_body(&request, payload).await?;
    let submit_request = SubmitRequest::try_from(body)?;
    ratelimit::admit(state.limiter.as_ref(), &request, 1)?;
    Ok(match state.submits.submit(submit_request).await? {
        Submitted::Created(entry) => HttpResponse::Created().json(EntryView::from(entry)),
        Submitted::Existing(entry) => HttpResponse::Ok().json(EntryView::from(entry)),
    })
}

/// `{"events": [...]}` → `{"results": [{"status": 201|200, "entry": …} | {"status": 4xx, "error": …}]}`
/// in request order; the batch as a whole is 200 when it could be read.
#[utoipa::path(post, path = "/webhooks/batch", tag = "webhooks",
    request_body(content = BatchBody, example = json!({"events": [
        {"event_type": "+credit", "event_id": "tx_124", "config_id": 1, "url_params": {"value": "100", "user_id": "user_123"}},
        {"event_type": "-debit", "event_id": "tx_125", "config_id": 1, "url_params": {"value": 25, "user_id": "user_123"}}]})),
    responses(
        (status = 200, description = "One result per event, in order: each is what `POST /webhooks` would have answered for it", body = BatchView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = too_large(BATCH_BODY_LIMIT), body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = format!("`events` is missing, not an array, empty or over {MAX_EVENTS_PER_BATCH}, or the body has another field"), body = ErrorBody),
        (status = 429, description = "Over INGEST_RATE_LIMIT (counted per event); `Retry-After` says when to try again", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn submit_batch(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let body: BatchBody = read_body(&request, payload).await?;
    // The budget counts events, not requests: a batch spends one per event it carries.
    ratelimit::admit(state.limiter.as_ref(), &request, body.events.len() as u32)?;
    let requests = body.events.into_iter().map(submit_request).collect();
    let results = submit::submit_batch(
        &state.pool,
        &state.configs,
        &state.rechecks,
        requests,
        state.default_max_retries,
    )
    .await?;
    let results = results.into_iter().map(BatchResult::from).collect();
    Ok(HttpResponse::Ok().json(BatchView { results }))
}

#[utoipa::path(get, path = "/webhooks/{queue_id}", tag = "webhooks",
    params(("queue_id" = Uuid, Path, description = "The entry's queue_id")),
    responses(
        (status = 200, description = "The entry with `attempts`: every attempt made, oldest retry cycle first", body = EntryView),
        (status = 400, description = "`queue_id` is not a UUID", body = ErrorBody),
        (status = 404, description = "No entry has this queue_id", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn get_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let found = entries::get(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::from(found)))
}

/// Cancels an entry: it is never called again. Cancelling it again changes nothing.
#[utoipa::path(delete, path = "/webhooks/{queue_id}", tag = "webhooks",
    params(("queue_id" = Uuid, Path, description = "The entry's queue_id")),
    responses(
        (status = 200, description = "The entry, cancelled", body = EntryView),
        (status = 400, description = "`queue_id` is not a UUID", body = ErrorBody),
        (status = 404, description = "No entry has this queue_id", body = ErrorBody),
        (status = 409, description = "The entry was delivered already", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn cancel_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let entry = entries::cancel(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::from(entry)))
}

/// Puts a failed entry through a fresh retry cycle; its earlier attempts stay in `attempts`.
#[utoipa::path(post, path = "/webhooks/{queue_id}/retry", tag = "webhooks",
    params(("queue_id" = Uuid, Path, description = "The entry's queue_id")),
    responses(
        (status = 200, description = "The entry, pending again and due now", body = EntryView),
        (status = 400, description = "`queue_id` is not a UUID", body = ErrorBody),
        (status = 404, description = "No entry has this queue_id", body = ErrorBody),
        (status = 409, description = "The entry is not `failed` (or was cancelled)", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn retry_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let entry = entries::retry(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::from(entry)))
}

/// Releases a `-debit` that waits for its `+credit`: it is due now, whatever becomes of the
/// credit. The release is recorded in the entry (`released_by_operator_at`).
#[utoipa::path(post, path = "/webhooks/{queue_id}/release", tag = "webhooks",
    params(("queue_id" = Uuid, Path, description = "The entry's queue_id")),
    responses(
        (status = 200, description = "The debit, no longer held and due now", body = EntryView),
        (status = 400, description = "`queue_id` is not a UUID", body = ErrorBody),
        (status = 404, description = "No entry has this queue_id", body = ErrorBody),
        (status = 409, description = "The entry is not a live debit waiting for its credit (`held_reason` is not `waiting_for_credit`)", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn release_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let entry = entries::release(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::from(entry)))
}

/// Puts every failed entry that matches through a fresh retry cycle, in batches of
/// [`redrive::BATCH`].
#[utoipa::path(post, path = "/webhooks/redrive", tag = "webhooks",
    summary = format!("Puts every failed entry that matches through a fresh retry cycle, in batches of {}.", redrive::BATCH),
    request_body(content = RedriveBody, example = json!({"config_id": 1, "event_type": "+credit", "status": "failed",
        "failed_after": "2024-01-01T00:00:00Z", "failed_before": "2100-01-01T00:00:00Z",
        "created_after": "2024-01-01T00:00:00Z", "created_before": "2100-01-01T00:00:00Z", "dry_run": true, "limit": 1000})),
    responses(
        (status = 200, description = "`matched` for a dry run, else `redriven`", body = RedriveView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = too_large(BODY_LIMIT), body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid or unknown (`field` names it), or a time range is empty", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn redrive_webhooks(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let body: RedriveBody = read_body(&request, payload).await?;
    let outcome = redrive::redrive(&state.pool, &body.try_into()?, state.query_timeout).await?;
    Ok(HttpResponse::Ok().json(RedriveView::from(outcome)))
}

/// Entries newest first, by keyset: pages never skip or repeat an entry.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(ListQuery),
    responses(
        (status = 200, description = "One page", body = Page<EntryView>),
        (status = 422, description = "A parameter is invalid or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn list_webhooks(state: State, request: HttpRequest) -> Reply {
    let query = ListQuery::parse(request.query_string())?;
    let (entries, next_cursor) = entries::list(
        &state.pool,
        &query.filter(),
        query.limit,
        state.query_timeout,
    )
    .await?;
    let items = entries.into_iter().map(EntryView::from).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

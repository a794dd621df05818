//! Thin handlers: read the request into typed input, call one application function, answer.
//! Each carries its OpenAPI operation (`#[utoipa::path]`), next to the code it describes.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::errors::ErrorBody;
use super::input::{config_input, submit_request};
use super::json::{read_json, read_json_limited, Fields, BATCH_BODY_LIMIT};
use super::openapi::{
    self, BatchBody, ConfigBody, ListQuery, RedriveBody, ServerErrors, SubmitBody, ThroughputQuery,
};
use super::ratelimit;
use super::views::{BatchResult, BatchView, ConfigView, EntryView, HealthView, Page, RedriveView};
use super::ApiState;
use crate::application::configs;
use crate::application::redrive::{self, RedriveRequest};
use crate::application::stats::{StatsDocument, Throughput};
use crate::application::submit::{self, Submitted};
use crate::application::{entries, metrics, stats, AppError};
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::store::queue::cycle::RedriveFilter;
use crate::store::queue::listing::ListFilter;

type State = web::Data<ApiState>;
type Reply = Result<HttpResponse, AppError>;

/// One list registers the routes (`routes`), names them (`ROUTES`) and makes the OpenAPI
/// document's operations (`Paths`, from each handler's `#[utoipa::path]`), so a route cannot
/// be served undocumented: a handler without its `#[utoipa::path]` does not compile here.
macro_rules! routes {
    ($($method:ident $path:literal => $handler:ident,)*) => {
        pub fn routes(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to($handler));)*
            cfg.default_service(web::to(not_found));
        }

        /// Every route `routes` registers, as (method, path).
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path),)*];

        /// The operations of the OpenAPI document, one per route.
        #[derive(utoipa::OpenApi)]
        #[openapi(paths($($handler),*))]
        pub struct Paths;
    };
}

// In matching order: fixed paths before the `{queue_id}` they would otherwise match.
routes! {
    get "/" => dashboard,
    get "/health" => health,
    get "/metrics" => prometheus,
    get "/openapi.json" => openapi_document,
    post "/webhook-configs" => create_config,
    get "/webhook-configs" => list_configs,
    get "/webhook-configs/{id}" => get_config,
    put "/webhook-configs/{id}" => replace_config,
    delete "/webhook-configs/{id}" => deactivate_config,
    post "/webhooks" => submit_webhook,
    post "/webhooks/batch" => submit_batch,
    get "/webhooks" => list_webhooks,
    get "/webhooks/stats" => get_stats,
    get "/webhooks/throughput" => get_throughput,
    post "/webhooks/redrive" => redrive_webhooks,
    get "/webhooks/{queue_id}" => get_webhook,
    delete "/webhooks/{queue_id}" => cancel_webhook,
    post "/webhooks/{queue_id}/retry" => retry_webhook,
}

async fn not_found() -> Reply {
    Err(AppError::NotFound("route"))
}

#[utoipa::path(get, path = "/health", tag = "operations",
    responses(
        (status = 200, description = "Up, and the database answers", body = HealthView),
        (status = 503, description = "The database cannot be reached", body = HealthView),
    ))]
async fn health(state: State) -> HttpResponse {
    let database_ok =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.pool.get()).await {
            Ok(Ok(mut conn)) => crate::store::ping(&mut conn).await.is_ok(),
            _ => false,
        };
    if database_ok {
        HttpResponse::Ok().json(HealthView::new(true))
    } else {
        HttpResponse::ServiceUnavailable().json(HealthView::new(false))
    }
}

/// The operator's page: static, self-contained, and reading everything it shows from the API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The page carries no data, so it is open; it fetches the API with the token it is given.
/// The policy lets it run its own inline script and talk to this origin only.
#[utoipa::path(get, path = "/", tag = "operations",
    summary = "The operator's dashboard",
    description = "A self-contained page that reads the API with the token it is given (`/?token=…`).",
    responses((status = 200, description = "The page", content_type = "text/html", body = String)))]
async fn dashboard() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            "Content-Security-Policy",
            "default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; \
             connect-src 'self'; img-src data:; form-action 'none'; frame-ancestors 'none'",
        ))
        // The page may have been opened as `/?token=…`: never pass that on.
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Cache-Control", "no-store"))
        .body(DASHBOARD)
}

#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus metrics, OpenMetrics text format",
        content_type = "application/openmetrics-text", body = String)))]
async fn prometheus(state: State) -> HttpResponse {
    let body = metrics::scrape(&state.pool, &state.metrics, &state.log).await;
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(body)
}

/// This document. It holds no data, so it is open.
#[utoipa::path(get, path = "/openapi.json", tag = "operations",
    responses((status = 200, description = "The OpenAPI 3.1 document of this API", body = Object)))]
async fn openapi_document() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::json())
}

fn config_id_path(raw: &str) -> Result<i64, AppError> {
    raw.parse().map_err(|_| {
        AppError::malformed(
            Some("id"),
            format!("{raw:?} is not a config id (an integer)"),
        )
    })
}

fn queue_id_path(raw: &str) -> Result<Uuid, AppError> {
    raw.parse().map_err(|_| {
        AppError::malformed(
            Some("queue_id"),
            format!("{raw:?} is not a queue_id (a UUID)"),
        )
    })
}

#[utoipa::path(post, path = "/webhook-configs", tag = "configs",
    request_body(content = ConfigBody, example = json!({"name": "acme",
        "postback_url": "https://partner.example/credit?user={user_id}&amount={value}",
        "chargeback_url": "https://partner.example/debit?user={user_id}&amount={value}", "max_retries": 3, "is_active": true})),
    responses(
        (status = 201, description = "Created", body = ConfigView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "A config with this name exists already", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
async fn create_config(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let input = config_input(read_json(&request, payload).await?, &state.policy)?;
    let config = configs::create(&state.pool, input).await?;
    Ok(HttpResponse::Created().json(ConfigView::from(config)))
}

/// Every config, active or not, in one page (`next_cursor` is always null).
#[utoipa::path(get, path = "/webhook-configs", tag = "configs",
    responses((status = 200, description = "Every config", body = Page<ConfigView>), ServerErrors))]
async fn list_configs(state: State) -> Reply {
    let items: Vec<ConfigView> = configs::list(&state.pool)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        ServerErrors,
    ))]
async fn get_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::get(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Replaces every field: one left out takes its default.
#[utoipa::path(put, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    request_body(content = ConfigBody, example = json!({"name": "acme",
        "postback_url": "https://partner.example/credit?user={user_id}&amount={value}",
        "chargeback_url": "https://partner.example/debit?user={user_id}&amount={value}", "max_retries": 3, "is_active": true})),
    responses(
        (status = 200, description = "The config as replaced", body = ConfigView),
        (status = 400, description = "`id` is not an integer, or malformed JSON", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        (status = 409, description = "Another config has this name", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
async fn replace_config(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let id = config_id_path(&id)?;
    let input = config_input(read_json(&request, payload).await?, &state.policy)?;
    let config = configs::replace(&state.pool, id, input).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Deactivates a config: it takes no new events; entries already queued are still delivered.
#[utoipa::path(delete, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config, now inactive", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        ServerErrors,
    ))]
async fn deactivate_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::deactivate(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

#[utoipa::path(post, path = "/webhooks", tag = "webhooks",
    request_body(content = SubmitBody, example = json!({"event_type": "+credit", "event_id": "tx_123", "config_id": 1,
        "url_params": {"value": "100", "user_id": "user_123", "token": "abc123", "signature": "xyz789"}})),
    responses(
        (status = 200, description = "Submitted before (same idempotency key and `url_params`): the existing entry; nothing was created", body = EntryView),
        (status = 201, description = "Queued: the new entry", body = EntryView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "The idempotency key was submitted before with other `url_params`", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown (`field` names it), or the config is inactive or has no URL for the event type", body = ErrorBody),
        (status = 429, description = "Over INGEST_RATE_LIMIT; `Retry-After` says when to try again", body = ErrorBody),
        ServerErrors,
    ))]
async fn submit_webhook(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let submit_request = submit_request(read_json(&request, payload).await?)?;
    ratelimit::admit(&state, &request, 1)?;
    Ok(match state.submits.submit(submit_request).await? {
        Submitted::Created(row) => HttpResponse::Created().json(EntryView::summary(row)),
        Submitted::Existing(row) => HttpResponse::Ok().json(EntryView::summary(row)),
    })
}

/// The fields of a batch body: what `submit_batch` reads, and `BatchBody` documents.
pub const BATCH_FIELDS: &[&str] = &["events"];

/// `{"events": [...]}` → `{"results": [{"status": 201|200, "entry": …} | {"status": 4xx, "error": …}]}`
/// in request order; the batch as a whole is 200 when it could be read.
#[utoipa::path(post, path = "/webhooks/batch", tag = "webhooks",
    request_body(content = BatchBody, example = json!({"events": [
        {"event_type": "+credit", "event_id": "tx_124", "config_id": 1, "url_params": {"value": "100", "user_id": "user_123"}},
        {"event_type": "-debit", "event_id": "tx_125", "config_id": 1, "url_params": {"value": 25, "user_id": "user_123"}}]})),
    responses(
        (status = 200, description = "One result per event, in order: each is what `POST /webhooks` would have answered for it", body = BatchView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 1 MiB", body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "`events` is missing, not an array, empty or over 1000, or the body has another field", body = ErrorBody),
        (status = 429, description = "Over INGEST_RATE_LIMIT (counted per event); `Retry-After` says when to try again", body = ErrorBody),
        ServerErrors,
    ))]
async fn submit_batch(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let mut fields = Fields::new(
        read_json_limited(&request, payload, BATCH_BODY_LIMIT).await?,
        BATCH_FIELDS,
    )?;
    let events = match fields.required("events")? {
        serde_json::Value::Array(events) => events,
        _ => return Err(AppError::invalid("events", "must be an array")),
    };
    fields.finish()?;
    if events.is_empty() || events.len() > submit::MAX_BATCH {
        return Err(AppError::invalid("events", "must hold 1 to 1000 events"));
    }
    // The budget counts events, not requests: a batch spends one per event it carries.
    ratelimit::admit(&state, &request, events.len() as u32)?;
    let requests = events.into_iter().map(submit_request).collect();
    let results = submit::submit_batch(
        &state.pool,
        &state.configs,
        requests,
        state.default_max_retries,
    )
    .await?;
    let results = results
        .into_iter()
        .map(|result| match result {
            Ok(Submitted::Created(row)) => BatchResult::Entry {
                entry: Box::new(EntryView::summary(row)),
                status: 201,
            },
            Ok(Submitted::Existing(row)) => BatchResult::Entry {
                entry: Box::new(EntryView::summary(row)),
                status: 200,
            },
            Err(e) => BatchResult::Error {
                error: e.body(),
                status: e.status(),
            },
        })
        .collect();
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
async fn get_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let entry = entries::get(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::with_attempts(entry)))
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
async fn cancel_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let row = entries::cancel(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::summary(row)))
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
async fn retry_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let row = entries::retry(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::summary(row)))
}

/// The fields a redrive body may have: what `redrive_request` reads, and `RedriveBody`
/// documents.
pub const REDRIVE_FIELDS: &[&str] = &[
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

/// Every field of [`REDRIVE_FIELDS`] is optional.
fn redrive_request(body: serde_json::Value) -> Result<RedriveRequest, AppError> {
    let mut fields = Fields::new(body, REDRIVE_FIELDS)?;
    let config_id = fields.optional_integer("config_id")?;
    let event_type = fields
        .optional_string("event_type")?
        .map(|t| {
            t.parse::<EventType>()
                .map_err(|e| AppError::invalid("event_type", e))
        })
        .transpose()?;
    if let Some(status) = fields.optional_string("status")? {
        let status: Status = status
            .parse()
            .map_err(|e: String| AppError::invalid("status", e))?;
        if status != Status::Failed {
            return Err(AppError::invalid(
                "status",
                "only failed webhooks can be redriven",
            ));
        }
    }
    let filter = RedriveFilter {
        config_id,
        event_type,
        failed_after: fields.optional_timestamp("failed_after")?,
        failed_before: fields.optional_timestamp("failed_before")?,
        created_after: fields.optional_timestamp("created_after")?,
        created_before: fields.optional_timestamp("created_before")?,
    };
    let dry_run = fields.optional_bool("dry_run")?.unwrap_or(false);
    let limit = fields.optional_integer("limit")?;
    fields.finish()?;
    RedriveRequest::new(filter, dry_run, limit)
}

/// Puts every failed entry that matches through a fresh retry cycle, in batches of 1000.
#[utoipa::path(post, path = "/webhooks/redrive", tag = "webhooks",
    request_body(content = RedriveBody, example = json!({"config_id": 1, "event_type": "+credit", "status": "failed",
        "failed_after": "2024-01-01T00:00:00Z", "failed_before": "2100-01-01T00:00:00Z",
        "created_after": "2024-01-01T00:00:00Z", "created_before": "2100-01-01T00:00:00Z", "dry_run": true, "limit": 1000})),
    responses(
        (status = 200, description = "`matched` for a dry run, else `redriven`", body = RedriveView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 413, description = "Body over 64 KiB", body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid or unknown (`field` names it), or a time range is empty", body = ErrorBody),
        ServerErrors,
    ))]
async fn redrive_webhooks(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let redrive_request = redrive_request(read_json(&request, payload).await?)?;
    let outcome = redrive::redrive(&state.pool, &redrive_request).await?;
    Ok(HttpResponse::Ok().json(RedriveView::from(outcome)))
}

/// `?status=&event_type=&config_id=&created_after=&created_before=&limit=&cursor=`
fn list_query(request: &HttpRequest) -> Result<(ListFilter, i64), AppError> {
    let mut filter = ListFilter::default();
    let mut limit = 50;
    for (key, value) in url::form_urlencoded::parse(request.query_string().as_bytes()) {
        let bad = |message: &str| AppError::invalid(key.to_string(), message.to_string());
        match key.as_ref() {
            "status" => filter.status = Some(value.parse().map_err(|e: String| bad(&e))?),
            "event_type" => filter.event_type = Some(value.parse().map_err(|e: String| bad(&e))?),
            "config_id" => {
                filter.config_id = Some(value.parse().map_err(|_| bad("must be an integer"))?)
            }
            "created_after" | "created_before" => {
                let at = chrono::DateTime::parse_from_rfc3339(&value)
                    .map_err(|_| bad("must be an RFC 3339 timestamp"))?
                    .with_timezone(&chrono::Utc);
                if key == "created_after" {
                    filter.created_after = Some(at);
                } else {
                    filter.created_before = Some(at);
                }
            }
            "cancelled" => {
                filter.cancelled = Some(value.parse().map_err(|_| bad("must be true or false"))?)
            }
            "limit" => {
                limit = value
                    .parse()
                    .ok()
                    .filter(|n| (1..=entries::MAX_PAGE).contains(n))
                    .ok_or_else(|| bad("must be an integer from 1 to 500"))?
            }
            "cursor" => {
                filter.before_id = Some(
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
    Ok((filter, limit))
}

/// Entries newest first, by keyset: pages never skip or repeat an entry.
#[utoipa::path(get, path = "/webhooks", tag = "webhooks", params(ListQuery),
    responses(
        (status = 200, description = "One page", body = Page<EntryView>),
        (status = 422, description = "A parameter is invalid or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
async fn list_webhooks(state: State, request: HttpRequest) -> Reply {
    let (filter, limit) = list_query(&request)?;
    let (rows, next_cursor) = entries::list(&state.pool, &filter, limit).await?;
    let items = rows.into_iter().map(EntryView::summary).collect();
    Ok(HttpResponse::Ok().json(Page { items, next_cursor }))
}

/// `?minutes=` (1 to 1440, default 15) and `?bucket_seconds=` (1 to 3600, default 1).
fn throughput_query(request: &HttpRequest) -> Result<(i64, i64), AppError> {
    let (mut minutes, mut bucket_seconds) = (15, 1);
    for (key, value) in url::form_urlencoded::parse(request.query_string().as_bytes()) {
        let (slot, max) = match key.as_ref() {
            "minutes" => (&mut minutes, stats::MAX_THROUGHPUT_MINUTES),
            "bucket_seconds" => (&mut bucket_seconds, stats::MAX_THROUGHPUT_BUCKET_SECONDS),
            _ => return Err(AppError::invalid(key, "is not a known parameter")),
        };
        *slot = value
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| {
                AppError::invalid(
                    key.to_string(),
                    format!("must be an integer from 1 to {max}"),
                )
            })?;
    }
    Ok((minutes, bucket_seconds))
}

#[utoipa::path(get, path = "/webhooks/throughput", tag = "operations", params(ThroughputQuery),
    responses(
        (status = 200, description = "Completions and failures per bucket, oldest first; empty buckets left out", body = Throughput),
        (status = 422, description = "A parameter is out of range or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
async fn get_throughput(state: State, request: HttpRequest) -> Reply {
    let (minutes, bucket_seconds) = throughput_query(&request)?;
    let throughput = stats::throughput(&state.pool, minutes, bucket_seconds).await?;
    Ok(HttpResponse::Ok().json(throughput))
}

#[utoipa::path(get, path = "/webhooks/stats", tag = "operations",
    responses((status = 200, description = "The statistics document (SPEC §5.2)", body = StatsDocument), ServerErrors))]
async fn get_stats(state: State) -> Reply {
    Ok(HttpResponse::Ok().json(stats::collect(&state.pool).await?))
}

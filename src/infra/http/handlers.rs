//! Thin handlers: read the request into typed input, call one application function, answer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::input::{config_input, submit_request};
use super::json::{read_json, read_json_limited, Fields, BATCH_BODY_LIMIT};
use super::ratelimit;
use super::views::{ConfigView, EntryView, Page, RedriveView};
use super::ApiState;
use crate::application::configs;
use crate::application::redrive::{self, RedriveRequest};
use crate::application::submit::{self, Submitted};
use crate::application::{entries, metrics, stats, AppError};
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::infra::db::history::RedriveFilter;
use crate::infra::db::queue::ListFilter;

type State = web::Data<ApiState>;
type Reply = Result<HttpResponse, AppError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(dashboard))
        .route("/health", web::get().to(health))
        .route("/metrics", web::get().to(prometheus))
        .route("/webhook-configs", web::post().to(create_config))
        .route("/webhook-configs", web::get().to(list_configs))
        .route("/webhook-configs/{id}", web::get().to(get_config))
        .route("/webhook-configs/{id}", web::put().to(replace_config))
        .route("/webhook-configs/{id}", web::delete().to(deactivate_config))
        .route("/webhooks", web::post().to(submit_webhook))
        .route("/webhooks/batch", web::post().to(submit_batch))
        .route("/webhooks", web::get().to(list_webhooks))
        .route("/webhooks/stats", web::get().to(get_stats))
        .route("/webhooks/throughput", web::get().to(get_throughput))
        .route("/webhooks/redrive", web::post().to(redrive_webhooks))
        .route("/webhooks/{queue_id}", web::get().to(get_webhook))
        .route("/webhooks/{queue_id}", web::delete().to(cancel_webhook))
        .route("/webhooks/{queue_id}/retry", web::post().to(retry_webhook))
        .default_service(web::to(not_found));
}

async fn not_found() -> Reply {
    Err(AppError::NotFound("route"))
}

async fn health(state: State) -> HttpResponse {
    let database_ok =
        match tokio::time::timeout(std::time::Duration::from_secs(2), state.pool.get()).await {
            Ok(Ok(mut conn)) => crate::infra::db::ping(&mut conn).await.is_ok(),
            _ => false,
        };
    let body = |status: &str, database: &str| json!({"status": status, "database": database, "version": env!("CARGO_PKG_VERSION")});
    if database_ok {
        HttpResponse::Ok().json(body("ok", "ok"))
    } else {
        HttpResponse::ServiceUnavailable().json(body("unavailable", "unreachable"))
    }
}

/// The operator's page: static, self-contained, and reading everything it shows from the API.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The page carries no data, so it is open; it fetches the API with the token it is given.
/// The policy lets it run its own inline script and talk to this origin only.
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

async fn prometheus(state: State) -> HttpResponse {
    let body = metrics::scrape(&state.pool, &state.metrics, &state.log).await;
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(body)
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

async fn create_config(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let input = config_input(read_json(&request, payload).await?, &state.policy)?;
    let config = configs::create(&state.pool, input).await?;
    Ok(HttpResponse::Created().json(ConfigView::from(config)))
}

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

async fn get_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::get(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

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

async fn deactivate_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::deactivate(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

async fn submit_webhook(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let submit_request = submit_request(read_json(&request, payload).await?)?;
    ratelimit::admit(&state, &request, 1)?;
    Ok(
        match submit::submit(&state.pool, submit_request, state.default_max_retries).await? {
            Submitted::Created(row) => HttpResponse::Created().json(EntryView::summary(row)),
            Submitted::Existing(row) => HttpResponse::Ok().json(EntryView::summary(row)),
        },
    )
}

/// `{"events": [...]}` → `{"results": [{"status": 201|200, "entry": …} | {"status": 4xx, "error": …}]}`
/// in request order; the batch as a whole is 200 when it could be read.
async fn submit_batch(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let mut fields = Fields::new(read_json_limited(&request, payload, BATCH_BODY_LIMIT).await?)?;
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
    let results = submit::submit_batch(&state.pool, requests, state.default_max_retries).await?;
    let results: Vec<serde_json::Value> = results
        .into_iter()
        .map(|result| match result {
            Ok(Submitted::Created(row)) => json!({"status": 201, "entry": EntryView::summary(row)}),
            Ok(Submitted::Existing(row)) => {
                json!({"status": 200, "entry": EntryView::summary(row)})
            }
            Err(e) => json!({"status": e.status(), "error": e.body()}),
        })
        .collect();
    Ok(HttpResponse::Ok().json(json!({ "results": results })))
}

async fn get_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let entry = entries::get(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::with_attempts(entry)))
}

async fn cancel_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let row = entries::cancel(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::summary(row)))
}

async fn retry_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let row = entries::retry(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::summary(row)))
}

/// `{"config_id", "event_type", "status", "failed_after", "failed_before", "created_after",
/// "created_before", "dry_run", "limit"}`, every field optional.
fn redrive_request(body: serde_json::Value) -> Result<RedriveRequest, AppError> {
    let mut fields = Fields::new(body)?;
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

async fn get_throughput(state: State, request: HttpRequest) -> Reply {
    let (minutes, bucket_seconds) = throughput_query(&request)?;
    let throughput = stats::throughput(&state.pool, minutes, bucket_seconds).await?;
    Ok(HttpResponse::Ok().json(throughput))
}

async fn get_stats(state: State) -> Reply {
    Ok(HttpResponse::Ok().json(stats::collect(&state.pool).await?))
}

//! Thin handlers: read the request into typed input, call one application function, answer.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use uuid::Uuid;

use super::json::{read_json, read_json_limited, Fields, BATCH_BODY_LIMIT};
use super::views::{ConfigView, EntryView, Page};
use super::ApiState;
use crate::application::configs::{self, ConfigInput};
use crate::application::submit::{self, SubmitRequest, Submitted};
use crate::application::{entries, stats, AppError};
use crate::domain::event::{EventType, UrlParams, MAX_EVENT_ID_BYTES};
use crate::infra::db::queue::ListFilter;

type State = web::Data<ApiState>;
type Reply = Result<HttpResponse, AppError>;

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/health", web::get().to(health))
        .route("/webhook-configs", web::post().to(create_config))
        .route("/webhook-configs", web::get().to(list_configs))
        .route("/webhook-configs/{id}", web::get().to(get_config))
        .route("/webhook-configs/{id}", web::put().to(replace_config))
        .route("/webhook-configs/{id}", web::delete().to(deactivate_config))
        .route("/webhooks", web::post().to(submit_webhook))
        .route("/webhooks/batch", web::post().to(submit_batch))
        .route("/webhooks", web::get().to(list_webhooks))
        .route("/webhooks/stats", web::get().to(get_stats))
        .route("/webhooks/{queue_id}", web::get().to(get_webhook))
        .route("/webhooks/{queue_id}", web::delete().to(cancel_webhook))
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

fn config_input(body: serde_json::Value, state: &ApiState) -> Result<ConfigInput, AppError> {
    let mut fields = Fields::new(body)?;
    let name = fields.string("name")?;
    let postback_url = fields.optional_string("postback_url")?;
    let chargeback_url = fields.optional_string("chargeback_url")?;
    let max_retries = fields.optional_integer("max_retries")?;
    let is_active = fields.optional_bool("is_active")?.unwrap_or(true);
    fields.finish()?;
    ConfigInput::new(
        name,
        postback_url,
        chargeback_url,
        max_retries,
        is_active,
        &state.policy,
    )
}

async fn create_config(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let input = config_input(read_json(&request, payload).await?, &state)?;
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
    let input = config_input(read_json(&request, payload).await?, &state)?;
    let config = configs::replace(&state.pool, id, input).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

async fn deactivate_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::deactivate(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

fn submit_request(body: serde_json::Value) -> Result<SubmitRequest, AppError> {
    let mut fields = Fields::new(body)?;
    let event_type: EventType = fields
        .string("event_type")?
        .parse()
        .map_err(|e: String| AppError::invalid("event_type", e))?;
    let event_id = fields.optional_string("event_id")?;
    if let Some(id) = &event_id {
        if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES {
            return Err(AppError::invalid("event_id", "must be 1 to 255 bytes"));
        }
    }
    let config_id = fields.integer("config_id")?;
    let url_params_json = fields.optional("url_params").unwrap_or_else(|| json!({}));
    fields.finish()?;
    let url_params = UrlParams::from_json(&url_params_json)
        .map_err(|e| AppError::invalid(e.field, e.message))?;
    Ok(SubmitRequest {
        event_type,
        event_id,
        config_id,
        url_params,
        url_params_json,
    })
}

async fn submit_webhook(state: State, request: HttpRequest, payload: web::Payload) -> Reply {
    let submit_request = submit_request(read_json(&request, payload).await?)?;
    Ok(match state.submits.submit(submit_request).await? {
        Submitted::Created(row) => HttpResponse::Created().json(EntryView::summary(row)),
        Submitted::Existing(row) => HttpResponse::Ok().json(EntryView::summary(row)),
    })
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
    let row = entries::get(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::with_attempts(row)))
}

async fn cancel_webhook(state: State, queue_id: web::Path<String>) -> Reply {
    let row = entries::cancel(&state.pool, queue_id_path(&queue_id)?).await?;
    Ok(HttpResponse::Ok().json(EntryView::summary(row)))
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

async fn get_stats(state: State) -> Reply {
    Ok(HttpResponse::Ok().json(stats::collect(&state.pool).await?))
}

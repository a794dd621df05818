//! `/webhooks`: submitting one event or a batch, listing, reading, cancelling, retrying and
//! redriving entries — the handlers, the bodies and query they read, and the views they
//! answer with.

use actix_web::{web, HttpRequest, HttpResponse};
use uuid::Uuid;

use super::common::{Page, ServerErrors};
use super::errors::{ApiError, ErrorBody};
use super::json::{read_body, too_large, BATCH_BODY_LIMIT, BODY_LIMIT};
use super::ratelimit;
use super::state::{Reply, State};
use crate::application::entries;
use crate::application::redrive;
use crate::application::submit::{self, SubmitRequest, Submitted, MAX_EVENTS_PER_BATCH};

mod bodies;
mod list_query;
mod names;
mod views;

pub use bodies::*;
pub use list_query::ListQuery;
pub use names::*;
pub use views::*;

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

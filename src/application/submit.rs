//! Submitting events: validate against the partner config, build the URL once, insert
//! idempotently.

use serde_json::Value;
use uuid::Uuid;

use crate::domain::event::{EventType, UrlParams};
use crate::domain::url_template::UrlTemplate;
use crate::infra::db::models::{ConfigRow, QueueRow};
use crate::infra::db::queue::{self, NewEntry};
use crate::infra::db::{configs, DbPool};

use super::{conn, AppError};

/// A parsed submit request.
#[derive(Clone, Debug)]
pub struct SubmitRequest {
    pub event_type: EventType,
    pub event_id: Option<String>,
    pub config_id: i64,
    pub url_params: UrlParams,
    /// The parameters as submitted, stored and compared for idempotency.
    pub url_params_json: Value,
}

#[derive(Debug)]
pub enum Submitted {
    /// A new row (201).
    Created(QueueRow),
    /// The same event was submitted before (200); nothing was created.
    Existing(QueueRow),
}

/// Turns a request into the row to insert, or says which field is at fault.
fn prepare(
    config: Option<ConfigRow>,
    request: &SubmitRequest,
    default_max_retries: i32,
) -> Result<NewEntry, AppError> {
    let config = config
        .filter(|c| c.is_active)
        .ok_or_else(|| AppError::invalid("config_id", "does not name an active config"))?;
    let template = config.url_for(request.event_type).ok_or_else(|| {
        AppError::invalid(
            "event_type",
            format!(
                "config {} has no URL for {} events",
                config.id, request.event_type
            ),
        )
    })?;
    let template = UrlTemplate::parse(template).map_err(|e| {
        AppError::Internal(format!(
            "stored template of config {} is invalid: {e}",
            config.id
        ))
    })?;
    let webhook_url = template
        .build(
            &request.url_params,
            request.event_type,
            request.event_id.as_deref(),
        )
        .map_err(|e| AppError::invalid(format!("url_params.{}", e.0), e.to_string()))?;
    Ok(NewEntry {
        queue_id: Uuid::new_v4(),
        event_type: request.event_type,
        event_id: request.event_id.clone(),
        config_id: config.id,
        webhook_url,
        url_params: request.url_params_json.clone(),
        max_retries: config.max_retries.unwrap_or(default_max_retries),
    })
}

pub async fn submit(
    pool: &DbPool,
    request: SubmitRequest,
    default_max_retries: i32,
) -> Result<Submitted, AppError> {
    let mut conn = conn(pool).await?;
    let config = configs::find(&mut conn, request.config_id).await?;
    let entry = prepare(config, &request, default_max_retries)?;
    if let Some(row) = queue::insert_new(&mut conn, std::slice::from_ref(&entry))
        .await?
        .pop()
    {
        return Ok(Submitted::Created(row));
    }
    // The idempotency key exists: the same event again, or a different one under a reused id.
    let event_id = entry.event_id.as_deref().unwrap_or_default();
    let existing = queue::find_by_key(&mut conn, entry.config_id, entry.event_type, event_id)
        .await?
        .ok_or_else(|| AppError::Internal("idempotency conflict without an existing row".into()))?;
    if existing.url_params == entry.url_params {
        Ok(Submitted::Existing(existing))
    } else {
        Err(AppError::Conflict(format!(
            "event {event_id} was submitted before with different url_params"
        )))
    }
}

//! Reading, listing, cancelling and retrying queue entries.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel_async::{AsyncConnection, AsyncPgConnection};
use uuid::Uuid;

use crate::domain::attempt::Attempt;
use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::EventType;
use crate::domain::order::CancelReason;
use crate::store::models::QueueRow;
use crate::store::queue::listing::{self, ListFilter};
use crate::store::queue::{cancel, cycle, order};
use crate::store::{bounded, partners, DbPool};

use super::{conn, AppError};

/// Most entries one page of a listing holds.
pub const MAX_PAGE: i64 = 500;
/// Entries a page holds when the caller does not say.
pub const DEFAULT_PAGE: i64 = 50;

/// A queue entry as the use cases return it: its state, without the attempt slots it is
/// stored with.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub id: i64,
    pub queue_id: Uuid,
    pub event_type: EventType,
    pub event_id: Option<String>,
    pub config_id: i64,
    /// The partner URL, built once at submit.
    pub webhook_url: String,
    /// The parameters as submitted.
    pub url_params: serde_json::Value,
    /// The method, body and headers filled at submit; `None` for a plain GET.
    pub request: Option<serde_json::Value>,
    pub status: Status,
    /// The attempt due next, or the one that ended the entry.
    pub retry_count: i32,
    pub max_retries: i32,
    pub next_retry_at: DateTime<Utc>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
    /// `None` while the entry is live.
    pub cancelled_at: Option<DateTime<Utc>>,
    /// Why webhookd cancelled it itself; `None` when live or cancelled by an operator.
    pub cancel_reason: Option<CancelReason>,
    /// Why a pending entry is not called now; `None` when it is not held.
    pub held_reason: Option<HeldReason>,
    /// When an operator released this debit from waiting for its credit.
    pub released_by_operator_at: Option<DateTime<Utc>>,
    /// The error of the latest attempt; `None` when none was made or it succeeded.
    pub last_error: Option<String>,
}

impl From<QueueRow> for Entry {
    fn from(row: QueueRow) -> Self {
        let last_error = row.last_error();
        Self {
            id: row.id,
            queue_id: row.queue_id,
            event_type: row.event_type,
            event_id: row.event_id,
            config_id: row.config_id,
            webhook_url: row.webhook_url,
            url_params: row.url_params,
            request: row.request,
            status: row.status,
            retry_count: row.retry_count,
            max_retries: row.max_retries,
            next_retry_at: row.next_retry_at,
            created_at: row.created_at,
            updated_at: row.updated_at,
            completed_at: row.completed_at,
            cancelled_at: row.deleted_at,
            cancel_reason: row.cancel_reason,
            held_reason: row.held_reason,
            released_by_operator_at: row.released_by_operator_at,
            last_error,
        }
    }
}

/// An entry with every attempt made for it: those of earlier retry cycles first, in order,
/// then the current cycle's.
#[derive(Clone, Debug, PartialEq)]
pub struct EntryWithAttempts {
    pub entry: Entry,
    pub attempts: Vec<Attempt>,
}

pub async fn get(pool: &DbPool, queue_id: Uuid) -> Result<EntryWithAttempts, AppError> {
    let mut conn = conn(pool).await?;
    let row = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    let archived = cycle::archived(&mut conn, queue_id).await?;
    let attempts = row.attempts_after(archived);
    Ok(EntryWithAttempts {
        entry: held_by_partner(&mut conn, row.into()).await?,
        attempts,
    })
}

/// Fills in `held_reason` of the pending entries whose partner is paused or tripped: that
/// state holds them, and is not stored on their rows.
async fn held_by_partners(
    conn: &mut AsyncPgConnection,
    entries: &mut [Entry],
) -> Result<(), AppError> {
    let mut config_ids: Vec<i64> = entries
        .iter()
        .filter(|e| e.is_pending_unheld())
        .map(|e| e.config_id)
        .collect();
    if config_ids.is_empty() {
        return Ok(());
    }
    config_ids.sort_unstable();
    config_ids.dedup();
    let holding = partners::holding(conn, &config_ids).await?;
    for entry in entries.iter_mut().filter(|e| e.is_pending_unheld()) {
        entry.held_reason = holding
            .iter()
            .find(|(id, _)| *id == entry.config_id)
            .and_then(|(_, state)| state.held_reason());
    }
    Ok(())
}

/// [`held_by_partners`] for one entry.
async fn held_by_partner(conn: &mut AsyncPgConnection, entry: Entry) -> Result<Entry, AppError> {
    let mut entries = [entry];
    held_by_partners(conn, &mut entries).await?;
    let [entry] = entries;
    Ok(entry)
}

impl Entry {
    fn is_pending_unheld(&self) -> bool {
        self.status == Status::Pending && self.cancelled_at.is_none() && self.held_reason.is_none()
    }
}

/// One page, newest first, and the cursor of the next page when there is one. The search
/// is cancelled after `bound` (`QUERY_TIMEOUT`).
pub async fn list(
    pool: &DbPool,
    filter: &ListFilter,
    limit: i64,
    bound: Duration,
) -> Result<(Vec<Entry>, Option<String>), AppError> {
    let mut conn = conn(pool).await?;
    let mut rows = conn
        .transaction(async |conn| {
            bounded::bound(conn, bound).await?;
            listing::list(conn, filter, limit + 1).await
        })
        .await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    let mut entries: Vec<Entry> = rows.into_iter().map(Entry::from).collect();
    held_by_partners(&mut conn, &mut entries).await?;
    Ok((entries, next_cursor))
}

/// Cancels an entry: it is never called again. A completed entry cannot be cancelled.
pub async fn cancel(pool: &DbPool, queue_id: Uuid) -> Result<Entry, AppError> {
    let mut conn = conn(pool).await?;
    let row = cancel::cancel(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    if row.deleted_at.is_none() && row.status == Status::Completed {
        return Err(AppError::Conflict(
            "the webhook was delivered already".into(),
        ));
    }
    Ok(row.into())
}

/// Puts a failed entry through a fresh retry cycle: due now, attempts numbered from 0 again,
/// the earlier attempts kept in its history. Anything but a failed, live entry is a conflict.
pub async fn retry(pool: &DbPool, queue_id: Uuid) -> Result<Entry, AppError> {
    let mut conn = conn(pool).await?;
    let row = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    if let Some(restarted) = cycle::restart(&mut conn, &[row.id]).await?.pop() {
        return Ok(restarted.into());
    }
    // Not restarted: say why, from the row as it is now (another retry may just have won).
    let now = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    Err(AppError::Conflict(if now.deleted_at.is_some() {
        "the webhook was cancelled; only a failed webhook can be retried".into()
    } else {
        format!(
            "the webhook is {}; only a failed webhook can be retried",
            now.status
        )
    }))
}

/// Releases a debit that waits for its credit: due now, whatever becomes of the credit. The
/// release is recorded on the entry (`released_by_operator_at`). Anything but a live debit that
/// waits for its credit is a conflict.
pub async fn release(pool: &DbPool, queue_id: Uuid) -> Result<Entry, AppError> {
    let mut conn = conn(pool).await?;
    if let Some(released) = order::release_waiting(&mut conn, queue_id).await? {
        return held_by_partner(&mut conn, released.into()).await;
    }
    let now = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    Err(AppError::Conflict(match (now.deleted_at, now.held_reason) {
        (Some(_), _) => "the webhook was cancelled; only a debit waiting for its credit can be released".into(),
        (None, Some(reason)) => format!(
            "the webhook is held for {reason}, not waiting for its credit; only a debit waiting for its credit can be released"
        ),
        (None, None) => format!(
            "the webhook is {} and not held; only a debit waiting for its credit can be released",
            now.status
        ),
    }))
}

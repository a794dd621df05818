//! Reading, listing, cancelling and retrying queue entries.

use uuid::Uuid;

use crate::domain::delivery::Status;
use crate::store::models::{AttemptRecord, QueueRow};
use crate::store::queue::listing::{self, ListFilter};
use crate::store::queue::{cancel, cycle};
use crate::store::DbPool;

use super::{conn, AppError};

pub const MAX_PAGE: i64 = 500;

/// An entry with every attempt made for it: those of earlier retry cycles first, in order,
/// then the current cycle's.
#[derive(Clone, Debug)]
pub struct Entry {
    pub row: QueueRow,
    pub attempts: Vec<AttemptRecord>,
}

pub async fn get(pool: &DbPool, queue_id: Uuid) -> Result<Entry, AppError> {
    let mut conn = conn(pool).await?;
    let row = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    let archived = cycle::archived(&mut conn, queue_id).await?;
    Ok(Entry {
        attempts: row.attempts_after(archived),
        row,
    })
}

/// One page, newest first, and the cursor of the next page when there is one.
pub async fn list(
    pool: &DbPool,
    filter: &ListFilter,
    limit: i64,
) -> Result<(Vec<QueueRow>, Option<String>), AppError> {
    let mut conn = conn(pool).await?;
    let mut rows = listing::list(&mut conn, filter, limit + 1).await?;
    let next_cursor = if rows.len() as i64 > limit {
        rows.truncate(limit as usize);
        rows.last().map(|r| r.id.to_string())
    } else {
        None
    };
    Ok((rows, next_cursor))
}

/// Cancels an entry: it is never called again. A completed entry cannot be cancelled.
pub async fn cancel(pool: &DbPool, queue_id: Uuid) -> Result<QueueRow, AppError> {
    let mut conn = conn(pool).await?;
    let row = cancel::cancel(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    if row.deleted_at.is_none() && row.status == Status::Completed {
        return Err(AppError::Conflict(
            "the webhook was delivered already".into(),
        ));
    }
    Ok(row)
}

/// Puts a failed entry through a fresh retry cycle: due now, attempts numbered from 0 again,
/// the earlier attempts kept in its history. Anything but a failed, live entry is a conflict.
pub async fn retry(pool: &DbPool, queue_id: Uuid) -> Result<QueueRow, AppError> {
    let mut conn = conn(pool).await?;
    let row = listing::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    if let Some(restarted) = cycle::restart(&mut conn, &[row.id]).await?.pop() {
        return Ok(restarted);
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

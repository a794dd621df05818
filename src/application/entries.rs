//! Reading, listing and cancelling queue entries.

use uuid::Uuid;

use crate::domain::delivery::Status;
use crate::infra::db::models::QueueRow;
use crate::infra::db::queue::{self, ListFilter};
use crate::infra::db::DbPool;

use super::{conn, AppError};

pub const MAX_PAGE: i64 = 500;

pub async fn get(pool: &DbPool, queue_id: Uuid) -> Result<QueueRow, AppError> {
    let mut conn = conn(pool).await?;
    queue::find(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))
}

/// One page, newest first, and the cursor of the next page when there is one.
pub async fn list(
    pool: &DbPool,
    filter: &ListFilter,
    limit: i64,
) -> Result<(Vec<QueueRow>, Option<String>), AppError> {
    let mut conn = conn(pool).await?;
    let mut rows = queue::list(&mut conn, filter, limit + 1).await?;
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
    let row = queue::cancel(&mut conn, queue_id)
        .await?
        .ok_or(AppError::NotFound("webhook"))?;
    if row.deleted_at.is_none() && row.status == Status::Completed {
        return Err(AppError::Conflict(
            "the webhook was delivered already".into(),
        ));
    }
    Ok(row)
}

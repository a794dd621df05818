//! Cancelling an entry: it is never called again, unless it completed already.

use diesel::prelude::*;
use diesel::result::Error;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::listing::find;
use crate::domain::delivery::Status;
use crate::store::models::QueueRow;
use crate::store::schema::webhook_queue;

/// Marks a row cancelled unless it is completed already. Returns the row as it is afterwards,
/// `None` when no such row exists; the caller tells a completed row by its status.
pub async fn cancel(
    conn: &mut AsyncPgConnection,
    queue_id: Uuid,
) -> Result<Option<QueueRow>, Error> {
    use webhook_queue::dsl;
    let cancelled = diesel::update(dsl::webhook_queue)
        .filter(dsl::queue_id.eq(queue_id))
        .filter(dsl::deleted_at.is_null())
        .filter(dsl::status.ne(Status::Completed.as_str()))
        .set((
            dsl::deleted_at.eq(diesel::dsl::now),
            dsl::updated_at.eq(diesel::dsl::now),
        ))
        .returning(QueueRow::as_returning())
        .get_result(conn)
        .await
        .optional()?;
    match cancelled {
        Some(row) => Ok(Some(row)),
        None => find(conn, queue_id).await,
    }
}

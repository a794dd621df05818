//! Money order by hand: an operator releases a `-debit` that waits for its `+credit`. Waiting
//! and its automatic end are kept by the database (migration 000010; see [`super`]).

use diesel::result::Error;
use diesel::sql_types::{Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::store::models::QueueRow;
use crate::store::prepared::prepared;

/// Makes a live debit that waits for its credit due now, records when
/// (`released_by_operator_at`) and wakes idle workers. Returns the row as it is now, `None`
/// when it was not waiting (or does not exist): the caller tells which.
pub async fn release_waiting(
    conn: &mut AsyncPgConnection,
    queue_id: Uuid,
) -> Result<Option<QueueRow>, Error> {
    let rows: Vec<QueueRow> = prepared(
        diesel::sql_query(
            "WITH released AS (
             UPDATE webhook_queue q SET
                 -- Due now, unless its partner is paused or tripped; in its place in the queue.
                 held_reason = (SELECT h.held_reason FROM webhook_partner_holds(ARRAY[q.config_id]) h),
                 next_retry_at = least(q.next_retry_at, now()), released_by_operator_at = now(), updated_at = now()
             WHERE queue_id = $1 AND held_reason = 'waiting_for_credit' AND deleted_at IS NULL
             RETURNING *
         ), notified AS (
             SELECT pg_notify($2, '') AS sent WHERE EXISTS (SELECT 1 FROM released)
         )
         SELECT released.* FROM released LEFT JOIN notified ON true",
        )
        .bind::<SqlUuid, _>(queue_id)
        .bind::<Text, _>(crate::store::NEW_ROWS_CHANNEL),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().next())
}

//! Money order outside the statements that decide it (sql/rules/06_money_order.sql; see
//! [`super`]): an operator releases a `-debit` that waits for its `+credit`, the API looks again
//! at the debits it has just held, and the pruner sweeps up after an API process that died
//! before it could.

use diesel::result::Error;
use diesel::sql_types::{Array, Int4, Int8, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
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
                 -- Due now, in its place in the queue (the claim reads its partner's state).
                 held_reason = NULL,
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

#[derive(QueryableByName)]
struct Settled {
    #[diesel(sql_type = Int4)]
    settled: i32,
}

/// Settles the waiting debits of `keys` (partner, event id) whose credit has completed, was
/// cancelled or is gone, as the credit's own write would have; waits for a write in progress
/// on such a credit first (`webhook_money_order_recheck`). Run once the
/// debits' insert has committed: it closes the race of an insert that read its credit just
/// before the credit completed. Wakes idle workers when it settled a debit, and returns how
/// many it settled.
///
/// Its commit is not waited for (`synchronous_commit` off): a settle lost in a crash is redone
/// by the next [`sweep`], and an outcome write that waits for this statement's lock on a
/// credit then waits for no disk flush.
pub async fn recheck(conn: &mut AsyncPgConnection, keys: &[(i64, String)]) -> Result<i32, Error> {
    if keys.is_empty() {
        return Ok(0);
    }
    let settled: Settled = prepared(
        diesel::sql_query(
            "WITH settled AS (
             SELECT webhook_money_order_recheck($1::int8[], $2::text[]) AS settled,
                    set_config('synchronous_commit', 'off', true) AS unflushed
         ), notified AS (
             SELECT pg_notify($3, '') AS sent FROM settled WHERE settled > 0
         )
         SELECT settled.settled FROM settled LEFT JOIN notified ON true",
        )
        .bind::<Array<Int8>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
        .bind::<Text, _>(crate::store::NEW_ROWS_CHANNEL),
    )
    .get_result(conn)
    .await?;
    Ok(settled.settled)
}

/// Settles every waiting debit whose credit has completed, was cancelled or is gone
/// (`webhook_money_order_sweep`): those an API process left so when it died
/// between a debit's insert and its [`recheck`]. One probe of each waiting debit's credit.
/// Wakes idle workers when it settled a debit, and returns how many it settled.
pub async fn sweep(conn: &mut AsyncPgConnection) -> Result<i32, Error> {
    let settled: Settled = prepared(
        diesel::sql_query(
            "WITH settled AS (
             SELECT webhook_money_order_sweep() AS settled
         ), notified AS (
             SELECT pg_notify($1, '') AS sent FROM settled WHERE settled > 0
         )
         SELECT settled.settled FROM settled LEFT JOIN notified ON true",
        )
        .bind::<Text, _>(crate::store::NEW_ROWS_CHANNEL),
    )
    .get_result(conn)
    .await?;
    Ok(settled.settled)
}

//! The hand-back: claimed rows returned to `pending` uncalled, fenced on the claim (see
//! [`super`]).

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Double, Int8, Text, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::store::prepared::prepared;

/// A claimed row handed back uncalled.
#[derive(Clone, Debug)]
pub struct Release {
    pub id: i64,
    pub worker_id: String,
    pub locked_at: DateTime<Utc>,
}

/// Hands rows back to `pending` without counting an attempt, due again after `delay`
/// (zero at shutdown, so another worker takes them at once). Returns how many were released.
pub async fn release(
    conn: &mut AsyncPgConnection,
    rows: &[Release],
    delay: Duration,
) -> Result<usize, Error> {
    if rows.is_empty() {
        return Ok(0);
    }
    prepared(
        diesel::sql_query(
            "UPDATE webhook_queue q
         SET status = 'pending', locked_at = NULL, lock_expires_at = NULL, updated_at = now(),
             next_retry_at = greatest(q.next_retry_at, now() + make_interval(secs => $4))
         FROM unnest($1::text[], $2::int8[], $3::timestamptz[]) AS v(worker_id, id, locked_at)
         WHERE q.id = ANY($2) AND q.id = v.id AND q.worker_id = v.worker_id AND q.locked_at = v.locked_at",
        )
        .bind::<Array<Text>, _>(
            rows.iter()
                .map(|r| r.worker_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(rows.iter().map(|r| r.id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(rows.iter().map(|r| r.locked_at).collect::<Vec<_>>())
        .bind::<Double, _>(delay.as_secs_f64()),
    )
    .execute(conn)
    .await
}

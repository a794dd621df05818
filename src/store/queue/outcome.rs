//! The outcome write: a batch of attempts recorded in their rows' `retry_N_*` slots, each
//! with the row's next status, fenced on the claim (see [`super`]).

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::delivery::Status;
use crate::store::attempt_slots::each_slot_column;
use crate::store::prepared::prepared;

/// The outcome of one attempt, ready to be written.
#[derive(Clone, Debug)]
pub struct AttemptWrite {
    pub id: i64,
    pub worker_id: String,
    pub locked_at: DateTime<Utc>,
    pub attempt: i32,
    pub started_at: DateTime<Utc>,
    pub completed_at: DateTime<Utc>,
    pub duration_ms: i64,
    pub http_status: Option<i32>,
    pub response_body: Option<String>,
    pub error: Option<String>,
    /// Completed, Pending (a retry is scheduled) or Failed.
    pub status: Status,
    pub retry_count: i32,
    pub next_retry_at: Option<DateTime<Utc>>,
}

#[derive(QueryableByName)]
struct WrittenId {
    #[diesel(sql_type = Int8)]
    id: i64,
}

/// Writes a batch of attempt outcomes in one statement. Returns the ids that were written;
/// an id missing from the answer had lost its lease, and nothing of it was changed.
pub async fn record_attempts(
    conn: &mut AsyncPgConnection,
    writes: &[AttemptWrite],
) -> Result<Vec<i64>, Error> {
    if writes.is_empty() {
        return Ok(Vec::new());
    }
    let query = diesel::sql_query(RECORD_ATTEMPTS_SQL.as_str())
        .bind::<Array<Text>, _>(
            writes
                .iter()
                .map(|w| w.worker_id.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(writes.iter().map(|w| w.id).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.locked_at).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(writes.iter().map(|w| w.attempt).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.started_at).collect::<Vec<_>>())
        .bind::<Array<Timestamptz>, _>(writes.iter().map(|w| w.completed_at).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(writes.iter().map(|w| w.duration_ms).collect::<Vec<_>>())
        .bind::<Array<Nullable<Int4>>, _>(writes.iter().map(|w| w.http_status).collect::<Vec<_>>())
        .bind::<Array<Nullable<Text>>, _>(
            writes
                .iter()
                .map(|w| w.response_body.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            writes.iter().map(|w| w.error.clone()).collect::<Vec<_>>(),
        )
        .bind::<Array<Text>, _>(writes.iter().map(|w| w.status.as_str()).collect::<Vec<_>>())
        .bind::<Array<Int4>, _>(writes.iter().map(|w| w.retry_count).collect::<Vec<_>>())
        .bind::<Array<Nullable<Timestamptz>>, _>(
            writes.iter().map(|w| w.next_retry_at).collect::<Vec<_>>(),
        );
    let rows: Vec<WrittenId> = prepared(query).load(conn).await?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// The outcome write: the row's next status, and the attempt in the slot it names (every other
/// slot keeps its value). `$2` are the ids, by which the plan reaches the rows.
///
/// Like the insert of new rows and the claim (migration 000005), the statement counts what it
/// changes itself, through the counters' one writer each (migration 000007), and the update
/// trigger stands aside for it: each row moves from `processing` to its next bucket, its one
/// new attempt is added (the slot it fills is empty: a slot is written once per cycle, by the
/// holder of the lease, and a new cycle clears them all), and rows that reached `completed` or
/// `failed` count in this second's throughput. Through the trigger, every outcome write would
/// read every slot of every old and new row image to find the one attempt it added.
static RECORD_ATTEMPTS_SQL: LazyLock<String> = LazyLock::new(|| {
    let slots = each_slot_column(
        |n, field| {
            format!("retry_{n}_{field} = CASE WHEN v.attempt = {n} THEN v.{field} ELSE q.retry_{n}_{field} END")
        },
        ",\n                 ",
    );
    format!(
        "WITH written AS (
             UPDATE webhook_queue q SET
                 status = v.status,
                 retry_count = v.retry_count,
                 next_retry_at = coalesce(v.next_retry_at, q.next_retry_at),
                 completed_at = CASE WHEN v.status = 'completed' THEN v.completed_at ELSE q.completed_at END,
                 locked_at = NULL,
                 lock_expires_at = NULL,
                 updated_at = now(),
                 {slots}
             FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::int4[], $5::timestamptz[], $6::timestamptz[],
                         $7::int8[], $8::int4[], $9::text[], $10::text[], $11::text[], $12::int4[],
                         $13::timestamptz[])
                  AS v(worker_id, id, locked_at, attempt, started_at, completed_at, duration_ms, http_status,
                       response_body, error, status, retry_count, next_retry_at),
                  (SELECT webhook_statement_counts_itself()) AS statement_settings
             WHERE q.id = ANY($2) AND q.id = v.id AND q.worker_id = v.worker_id AND q.locked_at = v.locked_at
             RETURNING q.id, q.config_id, q.event_type, q.status, q.deleted_at, v.http_status, v.duration_ms
         ), counted AS (
             SELECT webhook_queue_counts_add(
                        array_agg(config_id) || array_agg(config_id),
                        array_agg(event_type) || array_agg(event_type),
                        array_agg(webhook_count_bucket('processing', deleted_at))
                            || array_agg(webhook_count_bucket(status, deleted_at)),
                        array_agg(-1::int8) || array_agg(1::int8)),
                    webhook_attempt_counts_add(array_agg(http_status), array_agg(duration_ms), array_agg(1)),
                    webhook_throughput_add(count(*) FILTER (WHERE status = 'completed'),
                                           count(*) FILTER (WHERE status = 'failed'))
             FROM written
         )
         SELECT written.id FROM written LEFT JOIN counted ON true"
    )
});

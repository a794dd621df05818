//! The outcome write: a batch of attempts recorded in their rows' `retry_N_*` slots, each
//! with the row's next status, fenced on the claim (see [`super`]).

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::delivery::Status;
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
    let query = diesel::sql_query(RECORD_ATTEMPTS_SQL)
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

const RECORD_ATTEMPTS_SQL: &str = "UPDATE webhook_queue q SET
             status = v.status,
             retry_count = v.retry_count,
             next_retry_at = coalesce(v.next_retry_at, q.next_retry_at),
             completed_at = CASE WHEN v.status = 'completed' THEN v.completed ELSE q.completed_at END,
             locked_at = NULL,
             lock_expires_at = NULL,
             updated_at = now(),
             retry_0_started_at = CASE WHEN v.attempt = 0 THEN v.started ELSE q.retry_0_started_at END,
             retry_0_completed_at = CASE WHEN v.attempt = 0 THEN v.completed ELSE q.retry_0_completed_at END,
             retry_0_duration_ms = CASE WHEN v.attempt = 0 THEN v.duration_ms ELSE q.retry_0_duration_ms END,
             retry_0_http_status = CASE WHEN v.attempt = 0 THEN v.http_status ELSE q.retry_0_http_status END,
             retry_0_response_body = CASE WHEN v.attempt = 0 THEN v.body ELSE q.retry_0_response_body END,
             retry_0_error = CASE WHEN v.attempt = 0 THEN v.error ELSE q.retry_0_error END,
             retry_1_started_at = CASE WHEN v.attempt = 1 THEN v.started ELSE q.retry_1_started_at END,
             retry_1_completed_at = CASE WHEN v.attempt = 1 THEN v.completed ELSE q.retry_1_completed_at END,
             retry_1_duration_ms = CASE WHEN v.attempt = 1 THEN v.duration_ms ELSE q.retry_1_duration_ms END,
             retry_1_http_status = CASE WHEN v.attempt = 1 THEN v.http_status ELSE q.retry_1_http_status END,
             retry_1_response_body = CASE WHEN v.attempt = 1 THEN v.body ELSE q.retry_1_response_body END,
             retry_1_error = CASE WHEN v.attempt = 1 THEN v.error ELSE q.retry_1_error END,
             retry_2_started_at = CASE WHEN v.attempt = 2 THEN v.started ELSE q.retry_2_started_at END,
             retry_2_completed_at = CASE WHEN v.attempt = 2 THEN v.completed ELSE q.retry_2_completed_at END,
             retry_2_duration_ms = CASE WHEN v.attempt = 2 THEN v.duration_ms ELSE q.retry_2_duration_ms END,
             retry_2_http_status = CASE WHEN v.attempt = 2 THEN v.http_status ELSE q.retry_2_http_status END,
             retry_2_response_body = CASE WHEN v.attempt = 2 THEN v.body ELSE q.retry_2_response_body END,
             retry_2_error = CASE WHEN v.attempt = 2 THEN v.error ELSE q.retry_2_error END,
             retry_3_started_at = CASE WHEN v.attempt = 3 THEN v.started ELSE q.retry_3_started_at END,
             retry_3_completed_at = CASE WHEN v.attempt = 3 THEN v.completed ELSE q.retry_3_completed_at END,
             retry_3_duration_ms = CASE WHEN v.attempt = 3 THEN v.duration_ms ELSE q.retry_3_duration_ms END,
             retry_3_http_status = CASE WHEN v.attempt = 3 THEN v.http_status ELSE q.retry_3_http_status END,
             retry_3_response_body = CASE WHEN v.attempt = 3 THEN v.body ELSE q.retry_3_response_body END,
             retry_3_error = CASE WHEN v.attempt = 3 THEN v.error ELSE q.retry_3_error END,
             retry_4_started_at = CASE WHEN v.attempt = 4 THEN v.started ELSE q.retry_4_started_at END,
             retry_4_completed_at = CASE WHEN v.attempt = 4 THEN v.completed ELSE q.retry_4_completed_at END,
             retry_4_duration_ms = CASE WHEN v.attempt = 4 THEN v.duration_ms ELSE q.retry_4_duration_ms END,
             retry_4_http_status = CASE WHEN v.attempt = 4 THEN v.http_status ELSE q.retry_4_http_status END,
             retry_4_response_body = CASE WHEN v.attempt = 4 THEN v.body ELSE q.retry_4_response_body END,
             retry_4_error = CASE WHEN v.attempt = 4 THEN v.error ELSE q.retry_4_error END,
             retry_5_started_at = CASE WHEN v.attempt = 5 THEN v.started ELSE q.retry_5_started_at END,
             retry_5_completed_at = CASE WHEN v.attempt = 5 THEN v.completed ELSE q.retry_5_completed_at END,
             retry_5_duration_ms = CASE WHEN v.attempt = 5 THEN v.duration_ms ELSE q.retry_5_duration_ms END,
             retry_5_http_status = CASE WHEN v.attempt = 5 THEN v.http_status ELSE q.retry_5_http_status END,
             retry_5_response_body = CASE WHEN v.attempt = 5 THEN v.body ELSE q.retry_5_response_body END,
             retry_5_error = CASE WHEN v.attempt = 5 THEN v.error ELSE q.retry_5_error END,
             retry_6_started_at = CASE WHEN v.attempt = 6 THEN v.started ELSE q.retry_6_started_at END,
             retry_6_completed_at = CASE WHEN v.attempt = 6 THEN v.completed ELSE q.retry_6_completed_at END,
             retry_6_duration_ms = CASE WHEN v.attempt = 6 THEN v.duration_ms ELSE q.retry_6_duration_ms END,
             retry_6_http_status = CASE WHEN v.attempt = 6 THEN v.http_status ELSE q.retry_6_http_status END,
             retry_6_response_body = CASE WHEN v.attempt = 6 THEN v.body ELSE q.retry_6_response_body END,
             retry_6_error = CASE WHEN v.attempt = 6 THEN v.error ELSE q.retry_6_error END
         FROM unnest($1::text[], $2::int8[], $3::timestamptz[], $4::int4[], $5::timestamptz[], $6::timestamptz[],
                     $7::int8[], $8::int4[], $9::text[], $10::text[], $11::text[], $12::int4[],
                     $13::timestamptz[])
              AS v(worker_id, id, locked_at, attempt, started, completed, duration_ms, http_status, body, error,
                   status, retry_count, next_retry_at)
         WHERE q.id = ANY($2) AND q.id = v.id AND q.worker_id = v.worker_id AND q.locked_at = v.locked_at
         RETURNING q.id";

//! The delivery statements, one place each: claim, outcome write, release, next due time.
//!
//! Every write after the claim is fenced on `(worker_id, locked_at)`: a worker whose lease
//! expired and was taken over by another changes nothing. Only a processing row has a
//! `locked_at` (a CHECK constraint, migration 000006), so the fence needs no status test.
//! The writes reach their rows only through the ids they hold (`q.id = ANY(ids)`): a plan
//! that can do nothing else stays bounded by the batch, whatever the planner believes about
//! the table's size or its statuses when it makes the prepared statement's generic plan.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Double, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::prepared::prepared;
use crate::config::Secret;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;

/// A row this worker now holds.
#[derive(Clone, Debug, QueryableByName)]
pub struct ClaimedRow {
    #[diesel(sql_type = Int8)]
    pub id: i64,
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub queue_id: Uuid,
    #[diesel(sql_type = Text)]
    pub event_type: EventType,
    #[diesel(sql_type = Int8)]
    pub config_id: i64,
    #[diesel(sql_type = Text)]
    pub webhook_url: String,
    /// The attempt this claim is for.
    #[diesel(sql_type = Int4)]
    pub retry_count: i32,
    #[diesel(sql_type = Int4)]
    pub max_retries: i32,
    /// With the worker id, the fence for every later write.
    #[diesel(sql_type = Timestamptz)]
    pub locked_at: DateTime<Utc>,
    /// The config's signing secret as it is now (`whsec_...`), read with the claim so that
    /// signing costs no query per call.
    #[diesel(sql_type = Nullable<Text>)]
    pub signing_secret: Option<Secret>,
}

/// Claims up to `limit` due rows in one statement: pending rows whose time has come and
/// processing rows whose lease ran out, never a cancelled one. Each row comes back with its
/// config's current signing secret.
///
/// The claim counts what it moves itself, through `webhook_queue_counts_add` (migration
/// 000007) — due rows from pending to processing; a taken-over lease stays processing — so the
/// update trigger stands aside for it (migration 000005). The rows are locked before they are
/// counted, so the count is exact. `counted` only SELECTs, and PostgreSQL runs such a CTE only
/// when the final SELECT reads it: hence the join.
///
/// The claim commits without waiting for its WAL flush (`synchronous_commit = off` for this
/// statement's transaction only): it is a lease, not a record. Should PostgreSQL crash before
/// the WAL writer flushed it (at most 3 × `wal_writer_delay`), the worker has lost its lease
/// mid-call — the one case besides a dying worker in which SPEC's at-least-once allows a
/// second call: the row is pending again, and the outcome write, fenced on this claim, changes
/// nothing. Submits and outcome writes stay durable (the setting ends with the claim's
/// transaction), and an outcome write's flush carries every claim before it. Durable claims
/// cost a third of the end-to-end rate under batch ingest (`just bench`: 4,300 vs 6,421/s),
/// the claims queueing behind the inserts' flushes.
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker_id: &str,
    limit: i64,
    lease: Duration,
) -> Result<Vec<ClaimedRow>, Error> {
    prepared(
        diesel::sql_query(
            "WITH expired AS (
             SELECT id FROM webhook_queue
             WHERE status = 'processing' AND lock_expires_at <= now() AND deleted_at IS NULL
             ORDER BY lock_expires_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), due AS (
             SELECT id FROM webhook_queue
             WHERE status = 'pending' AND next_retry_at <= now() AND deleted_at IS NULL
             ORDER BY next_retry_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), picked AS (
             (SELECT id, false AS was_pending FROM expired)
             UNION ALL (SELECT id, true FROM due)
             LIMIT $2
         ), claimed AS (
             UPDATE webhook_queue q
             SET status = 'processing', worker_id = $1, locked_at = now(),
                 lock_expires_at = now() + make_interval(secs => $3), updated_at = now()
             FROM picked, webhook_configs c,
                  (SELECT set_config('synchronous_commit', 'off', true),
                          webhook_statement_counts_itself()) AS statement_settings
             WHERE q.id = picked.id AND c.id = q.config_id
             RETURNING q.id, q.queue_id, q.event_type, q.config_id, q.webhook_url,
                       q.retry_count, q.max_retries, q.locked_at, c.signing_secret, picked.was_pending
         ), counted AS (
             SELECT webhook_queue_counts_add(array_agg(claimed.config_id), array_agg(claimed.event_type),
                                             array_agg(moved.bucket), array_agg(moved.delta))
             FROM claimed, (VALUES ('pending', -1::int8), ('processing', 1::int8)) AS moved(bucket, delta)
             WHERE claimed.was_pending
         )
         SELECT claimed.id, claimed.queue_id, claimed.event_type, claimed.config_id, claimed.webhook_url,
                claimed.retry_count, claimed.max_retries, claimed.locked_at, claimed.signing_secret
         FROM claimed LEFT JOIN counted ON true",
        )
        .bind::<Text, _>(worker_id)
        .bind::<Int8, _>(limit)
        .bind::<Double, _>(lease.as_secs_f64()),
    )
    .load(conn)
    .await
}

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

#[derive(QueryableByName)]
struct NextDue {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// When the next row becomes claimable (a pending row's due time or a lease's end), if any.
pub async fn next_due(conn: &mut AsyncPgConnection) -> Result<Option<DateTime<Utc>>, Error> {
    let row: NextDue = prepared(diesel::sql_query(
        "SELECT least(
             (SELECT min(next_retry_at) FROM webhook_queue WHERE status = 'pending' AND deleted_at IS NULL),
             (SELECT min(lock_expires_at) FROM webhook_queue WHERE status = 'processing' AND deleted_at IS NULL)
         ) AS at",
    ))
    .get_result(conn)
    .await?;
    Ok(row.at)
}

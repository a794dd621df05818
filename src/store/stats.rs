//! Reading the statistics counters (sql/rules/02_counters.sql), so that nothing here scans
//! `webhook_queue` beyond an index probe or two and the rows in flight.

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{BigInt, Bool, Double, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

#[derive(Debug, QueryableByName)]
pub struct RowCount {
    #[diesel(sql_type = Int8)]
    pub config_id: i64,
    #[diesel(sql_type = Text)]
    pub config_name: String,
    #[diesel(sql_type = Text)]
    pub event_type: String,
    /// A status, or `cancelled`.
    #[diesel(sql_type = Text)]
    pub bucket: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(Debug, QueryableByName)]
pub struct AttemptBucket {
    #[diesel(sql_type = Bool)]
    pub succeeded: bool,
    /// Durations rounded to two significant digits.
    #[diesel(sql_type = Int8)]
    pub duration_ms: i64,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
    #[diesel(sql_type = BigInt)]
    pub sum_ms: i64,
}

#[derive(Debug, QueryableByName)]
pub struct Moments {
    #[diesel(sql_type = Timestamptz)]
    pub now: DateTime<Utc>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest_pending: Option<DateTime<Utc>>,
    #[diesel(sql_type = BigInt)]
    pub completed_last_minute: i64,
    #[diesel(sql_type = BigInt)]
    pub failed_last_minute: i64,
}

#[derive(Debug, QueryableByName)]
pub struct BucketCount {
    /// A status, or `cancelled`.
    #[diesel(sql_type = Text)]
    pub bucket: String,
    #[diesel(sql_type = BigInt)]
    pub n: i64,
}

#[derive(Debug, QueryableByName)]
struct DueAge {
    #[diesel(sql_type = Nullable<Double>)]
    seconds: Option<f64>,
}

#[derive(Debug, QueryableByName)]
pub struct ThroughputPoint {
    #[diesel(sql_type = Timestamptz)]
    pub second: DateTime<Utc>,
    #[diesel(sql_type = BigInt)]
    pub completed: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
}

/// Row counts by partner, event type and bucket, summed over shards. The statements are public
/// so that `examples/bench_stats.rs` can `EXPLAIN` exactly what `collect` runs.
pub const ROW_COUNTS_SQL: &str =
    "SELECT c.config_id, coalesce(w.name, '') AS config_name, c.event_type, c.bucket, sum(c.n)::int8 AS n
     FROM webhook_queue_counts c LEFT JOIN webhook_configs w ON w.id = c.config_id
     GROUP BY c.config_id, w.name, c.event_type, c.bucket
     HAVING sum(c.n) <> 0";

/// The attempt-duration histogram, summed over shards, shortest first.
pub const ATTEMPT_BUCKETS_SQL: &str =
    "SELECT succeeded, duration_ms, sum(n)::int8 AS n, sum(sum_ms)::int8 AS sum_ms
     FROM webhook_attempt_counts GROUP BY succeeded, duration_ms HAVING sum(n) <> 0
     ORDER BY duration_ms";

/// The clock, the oldest pending row (one probe of `webhook_queue_pending_created`) and the
/// last minute's throughput.
pub const MOMENTS_SQL: &str = "SELECT now() AS now,
            (SELECT min(created_at) FROM webhook_queue WHERE status = 'pending' AND deleted_at IS NULL)
                AS oldest_pending,
            coalesce((SELECT sum(completed) FROM webhook_throughput WHERE second > now() - interval '60 seconds'), 0)::int8
                AS completed_last_minute,
            coalesce((SELECT sum(failed) FROM webhook_throughput WHERE second > now() - interval '60 seconds'), 0)::int8
                AS failed_last_minute";

pub async fn row_counts(conn: &mut AsyncPgConnection) -> Result<Vec<RowCount>, Error> {
    diesel::sql_query(ROW_COUNTS_SQL).load(conn).await
}

pub async fn attempt_buckets(conn: &mut AsyncPgConnection) -> Result<Vec<AttemptBucket>, Error> {
    diesel::sql_query(ATTEMPT_BUCKETS_SQL).load(conn).await
}

pub async fn moments(conn: &mut AsyncPgConnection) -> Result<Moments, Error> {
    diesel::sql_query(MOMENTS_SQL).get_result(conn).await
}

/// Rows by bucket (status or `cancelled`), summed over partners and shards.
pub async fn queue_depth(conn: &mut AsyncPgConnection) -> Result<Vec<BucketCount>, Error> {
    diesel::sql_query("SELECT bucket, sum(n)::int8 AS n FROM webhook_queue_counts GROUP BY bucket")
        .load(conn)
        .await
}

/// Held live rows by reason (`bucket` is the reason; a reason may come more than once): debits
/// waiting for their credit from their partial index, and the pending rows of each paused or
/// tripped partner, whose state holds them (sql/rules/04_partner_health.sql). Its cost follows the number of
/// held rows, not the queue's.
pub async fn held_counts(conn: &mut AsyncPgConnection) -> Result<Vec<BucketCount>, Error> {
    diesel::sql_query(HELD_COUNTS_SQL).load(conn).await
}

/// The statement of [`held_counts`]. A row holds only `waiting_for_credit` (a CHECK of migration
/// 000012); naming it, rather than `IS NOT NULL`, is what lets the planner use the partial index.
pub const HELD_COUNTS_SQL: &str =
    "SELECT held_reason AS bucket, count(*)::int8 AS n FROM webhook_queue
     WHERE held_reason = 'waiting_for_credit' AND deleted_at IS NULL GROUP BY held_reason
     UNION ALL
     SELECT webhook_partner_hold_reason(s.state), webhook_partner_held_count(s.config_id)
     FROM webhook_partner_state s WHERE s.state <> 'active'";

/// How long the longest-waiting due pending row has been due, `None` when no row is due: one
/// probe of the partial index `webhook_queue_due_pending`.
pub async fn oldest_due_age_seconds(conn: &mut AsyncPgConnection) -> Result<Option<f64>, Error> {
    let age: DueAge = diesel::sql_query(
        "SELECT extract(epoch FROM now() - min(next_retry_at))::float8 AS seconds
         FROM webhook_queue
         WHERE status = 'pending' AND deleted_at IS NULL AND next_retry_at <= now()",
    )
    .get_result(conn)
    .await?;
    Ok(age.seconds)
}

/// Completions and failures per second since `since`, oldest first.
pub async fn throughput(
    conn: &mut AsyncPgConnection,
    since: DateTime<Utc>,
) -> Result<Vec<ThroughputPoint>, Error> {
    diesel::sql_query(
        "SELECT second, sum(completed)::int8 AS completed, sum(failed)::int8 AS failed
         FROM webhook_throughput WHERE second >= $1 GROUP BY second ORDER BY second",
    )
    .bind::<Timestamptz, _>(since)
    .load(conn)
    .await
}

//! The claim: due rows leased to a worker in one statement; and when the next row falls due,
//! which tells an idle worker how long it may sleep.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Double, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::config::Secret;
use crate::domain::event::EventType;
use crate::store::prepared::prepared;

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
    /// The partner's own retry delays (`None`: the global ones), read with the claim.
    #[diesel(sql_type = Nullable<Int8>)]
    pub retry_base_delay_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    pub retry_max_delay_ms: Option<i64>,
    /// When rows this claim left behind for a partner's rate limit may be taken (the same on
    /// every row of a claim); `None` when it left none.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub deferred_until: Option<DateTime<Utc>>,
}

/// Claims up to `limit` due rows in one statement: pending rows whose time has come and
/// processing rows whose lease ran out, never a cancelled one. Each row comes back with its
/// config's current signing secret and retry delays.
///
/// Partner health takes its say through `webhook_partner_admit` (migration 000009), called once
/// with the pending rows picked: rows of a paused or tripped partner (but its probe) are held
/// instead of claimed, and rows over a partner's `max_per_second` stay pending, due at the
/// slot they may have. A batch of healthy partners without a limit costs it one lookup of
/// their state. Leases taken over are not admitted again: their call was admitted once.
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
             SELECT id, config_id FROM webhook_queue
             WHERE status = 'pending' AND next_retry_at <= now() AND deleted_at IS NULL AND held_reason IS NULL
             ORDER BY next_retry_at
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), candidates AS (
             (SELECT id, NULL::int8 AS config_id, false AS was_pending FROM expired)
             UNION ALL (SELECT id, config_id, true FROM due)
             LIMIT $2
         ), refused AS (
             -- Partner health (migration 000009): held partners' rows, and rows over a rate limit.
             -- Always run (deferred reads it), so the asynchronous commit is set here too.
             SELECT r.* FROM (SELECT array_agg(id) AS ids, array_agg(config_id) AS config_ids,
                                     set_config('synchronous_commit', 'off', true)
                              FROM candidates WHERE was_pending) p,
                             webhook_partner_admit(p.ids, p.config_ids) r
         ), deferred AS (
             UPDATE webhook_queue q
             SET next_retry_at = coalesce(r.not_before, q.next_retry_at), held_reason = r.held_reason,
                 updated_at = now()
             FROM refused r WHERE q.id = ANY(ARRAY(SELECT id FROM refused)) AND q.id = r.id
         ), picked AS MATERIALIZED (
             SELECT id, was_pending FROM candidates
             WHERE NOT EXISTS (SELECT 1 FROM refused WHERE refused.id = candidates.id)
         ), claimed AS (
             UPDATE webhook_queue q
             SET status = 'processing', worker_id = $1, locked_at = now(),
                 lock_expires_at = now() + make_interval(secs => $3), updated_at = now()
             FROM picked, webhook_configs c,
                  (SELECT set_config('synchronous_commit', 'off', true),
                          webhook_statement_counts_itself()) AS statement_settings
             WHERE q.id = picked.id AND c.id = q.config_id
             RETURNING q.id, q.queue_id, q.event_type, q.config_id, q.webhook_url,
                       q.retry_count, q.max_retries, q.locked_at, c.signing_secret,
                       c.retry_base_delay_ms, c.retry_max_delay_ms, picked.was_pending
         ), counted AS (
             SELECT webhook_queue_counts_add(array_agg(claimed.config_id), array_agg(claimed.event_type),
                                             array_agg(moved.bucket), array_agg(moved.delta))
             FROM claimed, (VALUES ('pending', -1::int8), ('processing', 1::int8)) AS moved(bucket, delta)
             WHERE claimed.was_pending
         )
         SELECT claimed.id, claimed.queue_id, claimed.event_type, claimed.config_id, claimed.webhook_url,
                claimed.retry_count, claimed.max_retries, claimed.locked_at, claimed.signing_secret,
                claimed.retry_base_delay_ms, claimed.retry_max_delay_ms,
                (SELECT min(not_before) FROM refused) AS deferred_until
         FROM claimed LEFT JOIN counted ON true",
        )
        .bind::<Text, _>(worker_id)
        .bind::<Int8, _>(limit)
        .bind::<Double, _>(lease.as_secs_f64()),
    )
    .load(conn)
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
             (SELECT min(next_retry_at) FROM webhook_queue WHERE status = 'pending' AND deleted_at IS NULL AND held_reason IS NULL),
             (SELECT min(lock_expires_at) FROM webhook_queue WHERE status = 'processing' AND deleted_at IS NULL)
         ) AS at",
    ))
    .get_result(conn)
    .await?;
    Ok(row.at)
}

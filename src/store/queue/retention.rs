//! Retention statements: which old rows go, deleted in small batches that hold their row locks
//! only for one statement, and the advisory lock that lets one process prune at a time.
//!
//! No rule removes a `+credit` whose `-debit` waits for it (`webhook_credit_has_waiting_debit`,
//! sql/rules/07_retention.sql): the debit would then be delivered as one whose credit is not queued.
//!
//! Deleting queue rows keeps the statistics consistent by itself: the queue's DELETE trigger
//! takes the rows and their attempts off the counters, and the history's DELETE trigger does
//! the same for the archived attempts deleted with them.

use std::time::Duration;

use diesel::result::Error;
use diesel::sql_types::{BigInt, Bool, Double, Int8};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::store::prepared::prepared;

/// The advisory lock (in the webhookd database) held by the process that is pruning: the
/// bytes of `wh-prune`. It shows in `pg_locks` as `locktype = 'advisory'` with
/// `classid = 2003316080` and `objid = 1920298597`.
pub const LOCK_KEY: i64 = 0x7768_2d70_7275_6e65;

/// `webhook_throughput` keeps a day of per-second counts (the stats read the last minute).
pub const THROUGHPUT_KEPT: Duration = Duration::from_secs(24 * 60 * 60);

/// Which rows a retention rule removes. The buckets are those of the statistics: a row with
/// `deleted_at` set is cancelled, whatever its status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Rule {
    /// Completed rows whose `completed_at` is older than the age.
    Completed,
    /// Failed rows that failed (`updated_at`) longer ago than the age.
    Failed,
    /// Cancelled rows cancelled (`deleted_at`) longer ago than the age, unless a worker may
    /// still be calling for them (processing with a live lease).
    Cancelled,
}

// The batch delete of one rule: its condition (the age in seconds is `$1`) in one template.
macro_rules! delete_batch_sql {
    ($condition:literal) => {
        concat!(
            "WITH doomed AS (
             SELECT id, queue_id FROM webhook_queue
             WHERE ",
            $condition,
            "
               AND NOT webhook_credit_has_waiting_debit(config_id, event_type, event_id)
             LIMIT $2
             FOR UPDATE SKIP LOCKED
         ), history AS (
             DELETE FROM webhook_attempt_history h USING doomed d WHERE h.queue_id = d.queue_id
             RETURNING 1
         ), gone AS (
             DELETE FROM webhook_queue q USING doomed d WHERE q.id = d.id
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM gone)::int8 AS entries,
                (SELECT count(*) FROM history)::int8 AS archived_attempts"
        )
    };
}

impl Rule {
    pub const ALL: [Rule; 3] = [Rule::Completed, Rule::Failed, Rule::Cancelled];

    pub fn as_str(self) -> &'static str {
        match self {
            Rule::Completed => "completed",
            Rule::Failed => "failed",
            Rule::Cancelled => "cancelled",
        }
    }

    /// The rule's batch delete; each condition matches a partial index of the second migration.
    fn delete_sql(self) -> &'static str {
        match self {
            Rule::Completed => delete_batch_sql!(
                "status = 'completed' AND deleted_at IS NULL AND completed_at < now() - make_interval(secs => $1)"
            ),
            Rule::Failed => delete_batch_sql!(
                "status = 'failed' AND deleted_at IS NULL AND updated_at < now() - make_interval(secs => $1)"
            ),
            Rule::Cancelled => delete_batch_sql!(
                "deleted_at IS NOT NULL AND deleted_at < now() - make_interval(secs => $1)
                 AND (status <> 'processing' OR lock_expires_at < now())"
            ),
        }
    }
}

/// What one batch removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, QueryableByName)]
pub struct Removed {
    /// Queue rows.
    #[diesel(sql_type = BigInt)]
    pub entries: i64,
    /// Their archived attempts in `webhook_attempt_history`.
    #[diesel(sql_type = BigInt)]
    pub archived_attempts: i64,
}

/// Deletes up to `batch` rows that `rule` matches for `age`, with their attempt history, in
/// one statement. Rows locked by someone else right now are skipped, never waited for.
pub async fn delete_batch(
    conn: &mut AsyncPgConnection,
    rule: Rule,
    age: Duration,
    batch: i64,
) -> Result<Removed, Error> {
    prepared(
        diesel::sql_query(rule.delete_sql())
            .bind::<Double, _>(age.as_secs_f64())
            .bind::<Int8, _>(batch),
    )
    .get_result(conn)
    .await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

/// Deletes up to `batch` per-second throughput rows older than [`THROUGHPUT_KEPT`].
pub async fn delete_throughput_batch(
    conn: &mut AsyncPgConnection,
    batch: i64,
) -> Result<i64, Error> {
    let removed: Count = prepared(
        diesel::sql_query(
            "WITH gone AS (
             DELETE FROM webhook_throughput t
             USING (SELECT second, shard FROM webhook_throughput
                    WHERE second < now() - make_interval(secs => $1)
                    LIMIT $2
                    FOR UPDATE SKIP LOCKED) d
             WHERE t.second = d.second AND t.shard = d.shard
             RETURNING 1
         )
         SELECT count(*)::int8 AS n FROM gone",
        )
        .bind::<Double, _>(THROUGHPUT_KEPT.as_secs_f64())
        .bind::<Int8, _>(batch),
    )
    .get_result(conn)
    .await?;
    Ok(removed.n)
}

#[derive(QueryableByName)]
struct Locked {
    #[diesel(sql_type = Bool)]
    locked: bool,
}

/// Takes the pruning lock for this session if no other session holds it. It is released by
/// [`unlock`] or when the connection closes, so hold it on a connection of its own.
pub async fn try_lock(conn: &mut AsyncPgConnection) -> Result<bool, Error> {
    let row: Locked = prepared(
        diesel::sql_query("SELECT pg_try_advisory_lock($1) AS locked").bind::<Int8, _>(LOCK_KEY),
    )
    .get_result(conn)
    .await?;
    Ok(row.locked)
}

pub async fn unlock(conn: &mut AsyncPgConnection) -> Result<(), Error> {
    prepared(diesel::sql_query("SELECT pg_advisory_unlock($1)").bind::<Int8, _>(LOCK_KEY))
        .execute(conn)
        .await
        .map(drop)
}

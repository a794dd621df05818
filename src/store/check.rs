//! The queue's invariants: a statement that finds each one broken (`webhookd check`,
//! `GET /webhooks/check`, the `webhookd_invariant_violations` gauges) and, for those that heal,
//! the statement the pruner's pass heals it with. What each means and what an operator does:
//! docs/operations.md, "Invariants and `webhookd check`".
//!
//! Every finding statement reads one snapshot, so a change another transaction has not
//! committed is never half seen: the queue and its counters change in the same transaction.
//!
//! Plain SQL here rather than functions in a migration: these statements are tools, read and
//! changed as one file; nothing else calls them.

use std::time::Duration;

use diesel::result::Error;
use diesel::sql_types::{Array, BigInt, Int8, Text};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Examples a finding names at most.
pub const EXAMPLES: i64 = 5;

/// How many rows (or partners, or counter cells) break an invariant, and a few of them.
#[derive(Clone, Debug, Default, PartialEq, Eq, QueryableByName)]
pub struct Finding {
    #[diesel(sql_type = BigInt)]
    pub count: i64,
    #[diesel(sql_type = Array<Text>)]
    pub examples: Vec<String>,
}

/// The finding of a `broken` CTE whose one column is `example`.
macro_rules! finding_sql {
    ($broken:expr) => {
        concat!(
            "WITH broken AS MATERIALIZED (",
            $broken,
            ")
             SELECT (SELECT count(*) FROM broken)::int8 AS count,
                    ARRAY(SELECT example FROM broken ORDER BY example LIMIT $1) AS examples"
        )
    };
}

/// A `-debit` held `waiting_for_credit` whose `+credit` has completed, was cancelled or does
/// not exist: nothing would ever release it. The same test as `webhook_money_order_sweep`,
/// which settles them.
pub const STALE_CREDIT_WAIT: &str = finding_sql!(
    "SELECT d.queue_id::text AS example FROM webhook_queue d
     WHERE d.held_reason = 'waiting_for_credit' AND d.deleted_at IS NULL
       AND NOT EXISTS (
           SELECT 1 FROM webhook_queue c
           WHERE c.config_id = d.config_id AND c.event_type = '+credit' AND c.event_id = d.event_id
             AND c.status <> 'completed' AND c.deleted_at IS NULL)"
);

/// A processing row without a lease: the claim takes back processing rows whose
/// `lock_expires_at` has passed, so this one would stay processing for ever. Cancelled rows
/// count too: retention never deletes a processing row before its lease ends. Both are reached
/// through `webhook_queue_leased`, which holds every processing row (migration 000014).
macro_rules! processing_without_lease {
    () => {
        "status = 'processing' AND lock_expires_at IS NULL"
    };
}

pub const PROCESSING_WITHOUT_LEASE: &str = finding_sql!(concat!(
    "SELECT queue_id::text AS example FROM webhook_queue WHERE ",
    processing_without_lease!()
));

/// A tripped partner with no probe time: only a probe makes a tripped partner active again.
const TRIPPED_WITHOUT_PROBE: &str = finding_sql!(
    "SELECT config_id::text AS example FROM webhook_partner_state
     WHERE state = 'tripped' AND probe_at IS NULL"
);

/// The cells (partner, event type, bucket) where `webhook_queue_counts`, summed over shards as
/// the statistics read it (`store::stats`), differs from a count of the queue's rows, bucketed
/// by `webhook_count_bucket`. `counted` and `actual` are the two sides.
macro_rules! drift_sql {
    ($select:literal) => {
        concat!(
            "WITH counted AS (
                 SELECT config_id, event_type, bucket, sum(n)::int8 AS n
                 FROM webhook_queue_counts GROUP BY config_id, event_type, bucket
             ), actual AS (
                 SELECT config_id, event_type, webhook_count_bucket(status, deleted_at) AS bucket,
                        count(*)::int8 AS n
                 FROM webhook_queue GROUP BY 1, 2, 3
             ), drift AS MATERIALIZED (
                 SELECT coalesce(a.config_id, c.config_id) AS config_id,
                        coalesce(a.event_type, c.event_type) AS event_type,
                        coalesce(a.bucket, c.bucket) AS bucket,
                        coalesce(c.n, 0) AS counted, coalesce(a.n, 0) AS actual
                 FROM actual a FULL JOIN counted c
                   ON a.config_id = c.config_id AND a.event_type = c.event_type AND a.bucket = c.bucket
                 WHERE coalesce(c.n, 0) <> coalesce(a.n, 0)
             ) ",
            $select
        )
    };
}

const COUNTERS_DRIFT: &str = drift_sql!(
    "SELECT (SELECT count(*) FROM drift)::int8 AS count,
            ARRAY(SELECT format('config %s %s %s: counted %s, actual %s',
                                config_id, event_type, bucket, counted, actual)
                  FROM drift ORDER BY config_id, event_type, bucket LIMIT $1) AS examples"
);

async fn find(conn: &mut AsyncPgConnection, sql: &'static str) -> Result<Finding, Error> {
    diesel::sql_query(sql)
        .bind::<Int8, _>(EXAMPLES)
        .get_result(conn)
        .await
}

pub async fn stale_credit_wait(conn: &mut AsyncPgConnection) -> Result<Finding, Error> {
    find(conn, STALE_CREDIT_WAIT).await
}

pub async fn processing_without_lease(conn: &mut AsyncPgConnection) -> Result<Finding, Error> {
    find(conn, PROCESSING_WITHOUT_LEASE).await
}

pub async fn tripped_without_probe(conn: &mut AsyncPgConnection) -> Result<Finding, Error> {
    find(conn, TRIPPED_WITHOUT_PROBE).await
}

/// A `GROUP BY` over the whole queue: run by `webhookd check`, by the API at most once per
/// `RETENTION_INTERVAL`, and by the pruner's pass, never per request.
pub async fn counters_drift(conn: &mut AsyncPgConnection) -> Result<Finding, Error> {
    find(conn, COUNTERS_DRIFT).await
}

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = BigInt)]
    n: i64,
}

async fn count(conn: &mut AsyncPgConnection, sql: &str) -> Result<i64, Error> {
    let row: Count = diesel::sql_query(sql).get_result(conn).await?;
    Ok(row.n)
}

/// Gives each processing row without a lease one that has run out, so that the next claim
/// takes it back as it would a row whose worker died.
pub async fn expire_missing_leases(conn: &mut AsyncPgConnection) -> Result<i64, Error> {
    count(conn, EXPIRE_MISSING_LEASES).await
}

/// The statement of [`expire_missing_leases`].
pub const EXPIRE_MISSING_LEASES: &str = concat!(
    "WITH expired AS (
         UPDATE webhook_queue SET lock_expires_at = now()
         WHERE id IN (SELECT id FROM webhook_queue WHERE ",
    processing_without_lease!(),
    "
                      FOR UPDATE SKIP LOCKED)
         RETURNING 1
     )
     SELECT count(*)::int8 AS n FROM expired"
);

/// Makes a probe due now for each tripped partner without one, the wait after it the
/// partner's own or `probe_interval`. `webhook_partner_state` is otherwise written only by the
/// `webhook_partner_*` functions; this repair is outside their rules by nature.
pub async fn schedule_missing_probes(
    conn: &mut AsyncPgConnection,
    probe_interval: Duration,
) -> Result<i64, Error> {
    let row: Count = diesel::sql_query(
        "WITH scheduled AS (
             UPDATE webhook_partner_state
             SET probe_at = now(), probe_interval_ms = coalesce(probe_interval_ms, $1)
             WHERE state = 'tripped' AND probe_at IS NULL
             RETURNING 1
         )
         SELECT count(*)::int8 AS n FROM scheduled",
    )
    .bind::<Int8, _>(i64::try_from(probe_interval.as_millis()).unwrap_or(i64::MAX))
    .get_result(conn)
    .await?;
    Ok(row.n)
}

/// Sets `webhook_queue_counts` right where it differs from the queue: adds each drifted cell's
/// difference through `webhook_queue_counts_add`, the table's one writer. Returns the cells
/// set right.
///
/// One statement, so one snapshot, and no lock on either table. Every transaction that changes
/// the queue adds its own deltas to the counters before it commits, so the snapshot sees each
/// such transaction whole (its rows and its deltas) or not at all. The difference it finds is
/// therefore exactly the drift, and the deltas of the transactions it does not see are added
/// on top of the correction, whenever they commit: additions commute. A recount that deleted
/// the counters and wrote them afresh would lose those deltas, and need a lock that stops
/// every writer for as long as it counts (SHARE ROW EXCLUSIVE on `webhook_queue_counts`, about
/// 0.8 s per million rows). What an addition cannot stand is a second recount adding the same
/// difference: the caller holds the pruning lock (`queue::retention::try_lock`), so two never
/// run at once.
pub async fn recount(conn: &mut AsyncPgConnection) -> Result<i64, Error> {
    count(
        conn,
        drift_sql!(
            ", added AS (
                 SELECT webhook_queue_counts_add(array_agg(config_id), array_agg(event_type),
                                                 array_agg(bucket), array_agg(actual - counted))
                 FROM drift
             )
             SELECT (SELECT count(*) FROM drift)::int8 AS n, (SELECT count(*) FROM added) AS calls"
        ),
    )
    .await
}

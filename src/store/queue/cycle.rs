//! Fresh retry cycles for failed entries (manual retry and bulk redrive) and the attempt
//! history they leave behind.
//!
//! [`restart`] is the one statement that closes a failed entry's cycle: it copies the attempts
//! in its `retry_N_*` slots to `webhook_attempt_history`, clears them, makes the row due now
//! and announces it. [`RedriveFilter`] is the one definition of which rows a redrive matches.

use std::sync::LazyLock;

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::result::Error;
use diesel::sql_types::{Array, Int8, Text};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use super::listing::ListFilter;
use crate::domain::attempt::Attempt;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::store::attempt_slots::each_slot_column;
use crate::store::models::{QueueRow, ARCHIVED_ATTEMPT};
use crate::store::prepared::prepared;
use crate::store::schema::{webhook_attempt_history, webhook_queue};

/// Puts the given rows through a fresh retry cycle, in one statement, and returns them as they
/// are now. Only rows that are still `failed` and not cancelled when their lock is taken are
/// touched, so concurrent callers never archive a cycle twice: the second one waits for the
/// first's row lock, then finds the row `pending` and leaves it alone. (Should it ever get
/// past that, the unique index on `(queue_id, cycle, attempt)` makes it fail instead.)
///
/// The statistics are unchanged by the move: the queue's UPDATE trigger takes the cleared
/// attempts off `webhook_attempt_counts` and the history's INSERT trigger puts them back.
pub async fn restart(conn: &mut AsyncPgConnection, ids: &[i64]) -> Result<Vec<QueueRow>, Error> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    prepared(
        diesel::sql_query(RESTART_SQL.as_str())
            .bind::<Array<Int8>, _>(ids)
            .bind::<Text, _>(crate::store::NEW_ROWS_CHANNEL),
    )
    .load(conn)
    .await
}

/// The new cycle: the picked rows' attempts (read by `webhook_queue_attempts`) archived,
/// every slot cleared, the row due now, and one NOTIFY on the channel `$2`.
static RESTART_SQL: LazyLock<String> = LazyLock::new(|| {
    let cleared = each_slot_column(|n, field| format!("retry_{n}_{field} = NULL"), ", ");
    format!(
        "WITH picked AS (
             SELECT q.* FROM webhook_queue q
             WHERE q.id = ANY($1) AND q.status = 'failed' AND q.deleted_at IS NULL
             ORDER BY q.id
             FOR UPDATE
         ), archived AS (
             INSERT INTO webhook_attempt_history
                 (queue_id, cycle, attempt, started_at, completed_at, duration_ms, http_status, response_body, error)
             SELECT p.queue_id, c.cycle, a.attempt, a.started_at, a.completed_at, a.duration_ms, a.http_status,
                    a.response_body, a.error
             FROM picked p
             CROSS JOIN LATERAL (
                 SELECT coalesce(max(h.cycle) + 1, 0) AS cycle
                 FROM webhook_attempt_history h WHERE h.queue_id = p.queue_id
             ) c
             CROSS JOIN LATERAL webhook_queue_attempts(p) a
             WHERE a.started_at IS NOT NULL
         ), reset AS (
             UPDATE webhook_queue q SET
                 status = 'pending', retry_count = 0, next_retry_at = now(), completed_at = NULL,
                 worker_id = NULL, locked_at = NULL, lock_expires_at = NULL, updated_at = now(),
                 {cleared}
             FROM picked p
             WHERE q.id = p.id
             RETURNING q.*
         ), notified AS (
             SELECT pg_notify($2, '') AS sent WHERE EXISTS (SELECT 1 FROM reset)
         )
         SELECT reset.* FROM reset LEFT JOIN notified ON true"
    )
});

/// The archived attempts of one entry, by cycle and attempt.
pub async fn archived(conn: &mut AsyncPgConnection, queue_id: Uuid) -> Result<Vec<Attempt>, Error> {
    webhook_attempt_history::table
        .filter(webhook_attempt_history::queue_id.eq(queue_id))
        .order((
            webhook_attempt_history::cycle,
            webhook_attempt_history::attempt,
        ))
        .select(ARCHIVED_ATTEMPT)
        .load(conn)
        .await
}

/// Which failed entries a redrive takes; every filter optional. Cancelled rows never match.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RedriveFilter {
    pub config_id: Option<i64>,
    pub event_type: Option<EventType>,
    /// Failed at or after this instant (`updated_at`, written when the last attempt failed).
    pub failed_after: Option<DateTime<Utc>>,
    /// Failed before this instant.
    pub failed_before: Option<DateTime<Utc>>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
}

impl RedriveFilter {
    /// Failed, live entries as the listing filters them, narrowed by when they failed.
    fn query(&self) -> webhook_queue::BoxedQuery<'static, Pg> {
        use webhook_queue::dsl;
        let listed = ListFilter {
            status: Some(Status::Failed),
            cancelled: Some(false),
            held: None,
            event_type: self.event_type,
            config_id: self.config_id,
            event_id: None,
            created_after: self.created_after,
            created_before: self.created_before,
            before_id: None,
        };
        let mut query = listed.query();
        if let Some(after) = self.failed_after {
            query = query.filter(dsl::updated_at.ge(after));
        }
        if let Some(before) = self.failed_before {
            query = query.filter(dsl::updated_at.lt(before));
        }
        query
    }
}

/// How many rows match the filter now.
pub async fn count_redrivable(
    conn: &mut AsyncPgConnection,
    filter: &RedriveFilter,
) -> Result<i64, Error> {
    filter.query().count().get_result(conn).await
}

/// The ids of up to `limit` matching rows with an id above `after_id`, in id order: a redrive
/// walks the matches once, so a row that fails again during the run is not taken twice.
pub async fn redrivable_ids(
    conn: &mut AsyncPgConnection,
    filter: &RedriveFilter,
    after_id: i64,
    limit: i64,
) -> Result<Vec<i64>, Error> {
    filter
        .query()
        .filter(webhook_queue::id.gt(after_id))
        .select(webhook_queue::id)
        .order(webhook_queue::id)
        .limit(limit)
        .load(conn)
        .await
}

//! The claim: due rows leased to a worker in one statement; and when the next row falls due,
//! which tells an idle worker how long it may sleep.

use std::time::Duration;

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Bool, Double, Int4, Int8, Json, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

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
    /// The method, body and headers filled at submit; `None` for a plain GET.
    #[diesel(sql_type = Nullable<Json>)]
    pub request: Option<serde_json::Value>,
    /// The attempt this claim is for.
    #[diesel(sql_type = Int4)]
    pub retry_count: i32,
    #[diesel(sql_type = Int4)]
    pub max_retries: i32,
    /// With the worker id, the fence for every later write.
    #[diesel(sql_type = Timestamptz)]
    pub locked_at: DateTime<Utc>,
    /// The version (`xmin`) of the row's config as it is now: the worker keeps how it calls
    /// each partner, and reads a config again only when this changed.
    #[diesel(sql_type = Int8)]
    pub config_version: i64,
    /// The partner's own retry delays (`None`: the global ones), read with the claim.
    #[diesel(sql_type = Nullable<Int8>)]
    pub retry_base_delay_ms: Option<i64>,
    #[diesel(sql_type = Nullable<Int8>)]
    pub retry_max_delay_ms: Option<i64>,
    /// When rows this claim left behind for a partner's rate limit may be taken (the same on
    /// every row of a claim); `None` when it left none.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub deferred_until: Option<DateTime<Utc>>,
    /// Whether the claim left due rows of a partner behind because this process had no more
    /// room for them (the same on every row of a claim): a call that ends makes room.
    #[diesel(sql_type = Bool)]
    pub left_behind: bool,
}

/// Claims up to `limit` rows in one statement, `webhook_claim` (sql/rules/05_claim.sql,
/// where the order it takes rows in is written): leases that ran out first, then one probe per tripped
/// partner whose time has come, then the due rows of the active partners in turn, each up to
/// an equal share, its `room` in this process and its `max_per_second`. Each row comes back
/// with its config's current version and retry delays. A paused or tripped partner's
/// rows stay pending untouched: its state is read here, never copied onto them.
///
/// `room` lists, by config id, how many more rows this process can take for that partner now
/// (its host's free calls and waiting places, see `engine::hosts`); a partner not listed has
/// room for the whole claim. So a slow partner's backlog is not claimed faster than its host
/// can take it, and the claims that follow still find the other partners' rows first in line.
///
/// The claim changes no statistics counter (pending and processing rows share one,
/// sql/rules/02_counters.sql) and commits without waiting for its WAL flush: it is a lease, not a record. Should PostgreSQL crash
/// before the flush, the worker has lost its lease mid-call, the one case besides a dying
/// worker in which a second call is allowed (docs/performance.md, "Claims commit without waiting for the WAL flush").
pub async fn claim(
    conn: &mut AsyncPgConnection,
    worker_id: &str,
    limit: i64,
    lease: Duration,
    room: &[(i64, i32)],
) -> Result<Vec<ClaimedRow>, Error> {
    prepared(
        diesel::sql_query("SELECT * FROM webhook_claim($1, $2, $3, $4, $5)")
            .bind::<Text, _>(worker_id)
            .bind::<Int4, _>(limit as i32)
            .bind::<Double, _>(lease.as_secs_f64())
            .bind::<Array<Int8>, _>(room.iter().map(|r| r.0).collect::<Vec<_>>())
            .bind::<Array<Int4>, _>(room.iter().map(|r| r.1).collect::<Vec<_>>()),
    )
    .load(conn)
    .await
}

#[derive(QueryableByName)]
struct NextDue {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// When the claim may next find work (`webhook_next_due`, sql/rules/05_claim.sql): a due row of an
/// active partner, a tripped partner's probe time, or a lease's end; `None` when nothing waits.
pub async fn next_due(conn: &mut AsyncPgConnection) -> Result<Option<DateTime<Utc>>, Error> {
    let row: NextDue = prepared(diesel::sql_query("SELECT webhook_next_due() AS at"))
        .get_result(conn)
        .await?;
    Ok(row.at)
}

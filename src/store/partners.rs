//! Partner health in the database (migration 000009): each partner's state as read with its
//! held rows, the operator's pause and resume, and the probe release. The counting of outcomes
//! and the claim's admission are SQL functions that the outcome write and the claim call (see
//! [`queue::outcome`](super::queue::outcome) and [`queue::claim`](super::queue::claim)).

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Bool, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::partner::{PartnerState, StateReason};
use crate::store::prepared::prepared;

/// A partner's state as stored, with the rows partner health holds for it.
#[derive(Clone, Debug, QueryableByName)]
pub struct PartnerRow {
    #[diesel(sql_type = Int8)]
    pub config_id: i64,
    #[diesel(sql_type = Text)]
    pub state: PartnerState,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<StateReason>,
    #[diesel(sql_type = Timestamptz)]
    pub since: DateTime<Utc>,
    /// Partner failures in a row.
    #[diesel(sql_type = Int4)]
    pub failures: i32,
    #[diesel(sql_type = Nullable<Text>)]
    pub last_error: Option<String>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub last_error_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub probe_at: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int8)]
    pub held: i64,
}

/// The state of one partner (`Some(id)`) or of every partner, by config id.
pub async fn find(
    conn: &mut AsyncPgConnection,
    config_id: Option<i64>,
) -> Result<Vec<PartnerRow>, Error> {
    prepared(
        diesel::sql_query(
            "SELECT s.config_id, s.state, s.reason, s.since, s.failures, s.last_error, s.last_error_at,
                    s.probe_at, coalesce(h.n, 0) AS held
             FROM webhook_partner_state s
             LEFT JOIN (SELECT config_id, count(*) AS n FROM webhook_queue
                        WHERE held_reason IN ('partner_paused', 'partner_tripped') AND deleted_at IS NULL
                          AND ($1::int8 IS NULL OR config_id = $1)
                        GROUP BY config_id) h ON h.config_id = s.config_id
             WHERE $1::int8 IS NULL OR s.config_id = $1
             ORDER BY s.config_id",
        )
        .bind::<Nullable<Int8>, _>(config_id),
    )
    .load(conn)
    .await
}

/// What a pause or resume found or made.
#[derive(Clone, Debug, QueryableByName)]
pub struct Change {
    /// `None`: no such partner.
    #[diesel(sql_type = Nullable<Text>)]
    pub state: Option<PartnerState>,
    #[diesel(sql_type = Nullable<Text>)]
    pub reason: Option<StateReason>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub since: Option<DateTime<Utc>>,
    #[diesel(sql_type = Int8)]
    pub held: i64,
    /// False when the partner was in that state already.
    #[diesel(sql_type = Bool)]
    pub changed: bool,
}

/// Pauses a partner (`webhook_partner_pause`): its pending rows are held until it is resumed.
pub async fn pause(
    conn: &mut AsyncPgConnection,
    config_id: i64,
    reason: StateReason,
) -> Result<Change, Error> {
    diesel::sql_query("SELECT * FROM webhook_partner_pause($1, $2)")
        .bind::<Int8, _>(config_id)
        .bind::<Text, _>(reason.as_str())
        .get_result(conn)
        .await
}

/// Makes a paused or tripped partner active (`webhook_partner_resume`) and releases its rows.
pub async fn resume(conn: &mut AsyncPgConnection, config_id: i64) -> Result<Change, Error> {
    diesel::sql_query("SELECT * FROM webhook_partner_resume($1)")
        .bind::<Int8, _>(config_id)
        .get_result(conn)
        .await
}

/// A probe released: one held row of a tripped partner, due now.
#[derive(Clone, Debug, QueryableByName)]
pub struct Probe {
    #[diesel(sql_type = Int8)]
    pub config_id: i64,
    /// `None` when the partner had no held row to probe with.
    #[diesel(sql_type = Nullable<Int8>)]
    pub probe_row: Option<i64>,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub next_probe_at: Option<DateTime<Utc>>,
}

/// Releases the probes whose time has come (`webhook_partner_probe`): one per tripped partner
/// and probe time, across every process.
pub async fn release_probes(conn: &mut AsyncPgConnection) -> Result<Vec<Probe>, Error> {
    prepared(diesel::sql_query("SELECT * FROM webhook_partner_probe()"))
        .load(conn)
        .await
}

#[derive(QueryableByName)]
struct NextProbe {
    #[diesel(sql_type = Nullable<Timestamptz>)]
    at: Option<DateTime<Utc>>,
}

/// When the next probe of any tripped partner is due, if one is tripped.
pub async fn next_probe_at(conn: &mut AsyncPgConnection) -> Result<Option<DateTime<Utc>>, Error> {
    let row: NextProbe = prepared(diesel::sql_query(
        "SELECT min(probe_at) AS at FROM webhook_partner_state WHERE state = 'tripped'",
    ))
    .get_result(conn)
    .await?;
    Ok(row.at)
}

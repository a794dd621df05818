//! Partner health in the database (sql/rules/04_partner_health.sql): each partner's state with the
//! rows it holds, the operator's pause and resume, and when the next probe is due. The
//! counting of outcomes and the serving of partners (probes included) are SQL functions that
//! the outcome write and the claim call (see [`queue::outcome`](super::queue::outcome) and
//! [`queue::claim`](super::queue::claim)).

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Bool, Int4, Int8, Nullable, Text, Timestamptz};
use diesel::QueryableByName;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::domain::partner::{PartnerState, StateReason};
use crate::store::prepared::prepared;

/// A partner's state as stored, with the rows it holds: its pending rows while it is paused or
/// tripped (`webhook_partner_held_count`).
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
                    s.probe_at, webhook_partner_held_count(s.config_id) AS held
             FROM webhook_partner_state s
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

/// Pauses a partner (`webhook_partner_pause`): the claim no longer serves it until it is resumed.
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

/// Makes a paused or tripped partner active (`webhook_partner_resume`) and wakes the workers.
pub async fn resume(conn: &mut AsyncPgConnection, config_id: i64) -> Result<Change, Error> {
    diesel::sql_query("SELECT * FROM webhook_partner_resume($1)")
        .bind::<Int8, _>(config_id)
        .get_result(conn)
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

#[derive(QueryableByName)]
struct Holding {
    #[diesel(sql_type = Int8)]
    config_id: i64,
    #[diesel(sql_type = Text)]
    state: PartnerState,
}

/// Of these partners, those that are paused or tripped now, with their state.
pub async fn holding(
    conn: &mut AsyncPgConnection,
    config_ids: &[i64],
) -> Result<Vec<(i64, PartnerState)>, Error> {
    let rows: Vec<Holding> = prepared(
        diesel::sql_query(
            "SELECT config_id, state FROM webhook_partner_state
             WHERE config_id = ANY($1) AND state <> 'active'",
        )
        .bind::<diesel::sql_types::Array<Int8>, _>(config_ids),
    )
    .load(conn)
    .await?;
    Ok(rows.into_iter().map(|r| (r.config_id, r.state)).collect())
}

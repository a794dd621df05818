//! Rows settled per second (`webhook_throughput`), added through `webhook_throughput_add`
//! (sql/rules/02_counters.sql), the table's one writer.

use chrono::{DateTime, Utc};
use diesel::result::Error;
use diesel::sql_types::{Array, Int8, Timestamptz};
use diesel_async::{AsyncPgConnection, RunQueryDsl};

use crate::store::prepared::prepared;

/// The rows that reached completed and failed within one second.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Settled {
    pub second: DateTime<Utc>,
    pub completed: i64,
    pub failed: i64,
}

/// Adds each second's rows to its counters, in one statement.
pub async fn add(conn: &mut AsyncPgConnection, settled: &[Settled]) -> Result<(), Error> {
    if settled.is_empty() {
        return Ok(());
    }
    prepared(
        diesel::sql_query("SELECT webhook_throughput_add($1, $2, $3)")
            .bind::<Array<Timestamptz>, _>(settled.iter().map(|s| s.second).collect::<Vec<_>>())
            .bind::<Array<Int8>, _>(settled.iter().map(|s| s.completed).collect::<Vec<_>>())
            .bind::<Array<Int8>, _>(settled.iter().map(|s| s.failed).collect::<Vec<_>>()),
    )
    .execute(conn)
    .await?;
    Ok(())
}

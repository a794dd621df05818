//! Statements run on an operator's behalf (a search, a redrive's selection, a check), bounded
//! in time: PostgreSQL cancels any that runs longer than the bound, so a search that no index
//! serves answers with an error at once instead of holding a pooled connection for as long as
//! it walks the queue (docs/operations.md, "Searching history").

use std::time::Duration;

use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::Text;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// Bounds each later statement of the transaction `conn` is in to `limit`. Outside a
/// transaction it would bound only itself: call it first inside `conn.transaction(…)`.
pub async fn bound(conn: &mut AsyncPgConnection, limit: Duration) -> Result<(), Error> {
    diesel::sql_query("SELECT set_config('statement_timeout', $1, true)")
        .bind::<Text, _>(format!("{}ms", limit.as_millis().max(1)))
        .execute(conn)
        .await
        .map(drop)
}

/// Whether PostgreSQL cancelled the statement for running past its bound (SQLSTATE 57014,
/// which diesel reports without its code; a server with translated messages is not
/// recognised, and its timeouts answer as internal errors).
pub fn timed_out(error: &Error) -> bool {
    matches!(error, Error::DatabaseError(DatabaseErrorKind::Unknown, info)
        if info.message().contains("statement timeout"))
}

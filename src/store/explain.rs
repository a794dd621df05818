//! `EXPLAIN (ANALYZE, FORMAT JSON)` of a query the store builds, so that tests can show how
//! many rows an operator's query read, which holds on any machine, rather than how long it took
//! on one.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::result::QueryResult;
use diesel::sql_types::Json;
use diesel_async::methods::LoadQuery;
use diesel_async::{AsyncPgConnection, RunQueryDsl};

/// The plan PostgreSQL chose for the query and what running it cost, as its JSON document.
pub async fn explain<'q, Q>(conn: &mut AsyncPgConnection, query: Q) -> QueryResult<Plan>
where
    Q: QueryFragment<Pg> + Send + 'q,
    Explained<Q>: LoadQuery<'q, AsyncPgConnection, serde_json::Value>,
{
    let document: serde_json::Value = Explained(query).get_result(conn).await?;
    Ok(Plan(document))
}

/// `EXPLAIN (ANALYZE, FORMAT JSON)` in front of a query, with the query's own binds.
#[derive(Debug, Clone, Copy)]
pub struct Explained<Q>(Q);

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Explained<Q> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("EXPLAIN (ANALYZE, FORMAT JSON) ");
        self.0.walk_ast(out.reborrow())
    }
}

impl<Q> QueryId for Explained<Q> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q> Query for Explained<Q> {
    type SqlType = Json;
}

/// A plan as `EXPLAIN (FORMAT JSON)` gives it.
#[derive(Clone, Debug)]
pub struct Plan(pub serde_json::Value);

impl Plan {
    /// Rows the plan's scans of tables and indexes touched: those they returned (per loop,
    /// times the loops) and those their filters read and threw away. A query that reads by
    /// index the rows it answers with touches about as many rows as it returns.
    pub fn rows_read(&self) -> f64 {
        fn walk(node: &serde_json::Value) -> f64 {
            let number = |key: &str| node.get(key).and_then(|v| v.as_f64()).unwrap_or(0.0);
            // A scan of a table or an index; not of a subquery, a VALUES list or a function's rows.
            let reads_stored_rows =
                node.get("Relation Name").is_some() || node.get("Index Name").is_some();
            let own = if reads_stored_rows {
                let loops = number("Actual Loops").max(1.0);
                (number("Actual Rows") + number("Rows Removed by Filter")) * loops
                    + number("Rows Removed by Index Recheck")
            } else {
                0.0
            };
            let children = node
                .get("Plans")
                .and_then(|p| p.as_array())
                .map(|plans| plans.iter().map(walk).sum())
                .unwrap_or(0.0);
            own + children
        }
        self.0
            .get(0)
            .and_then(|top| top.get("Plan"))
            .map(walk)
            .unwrap_or(0.0)
    }
}

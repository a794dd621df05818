//! Raw SQL statements that are prepared once per connection and then reused.
//!
//! diesel marks every `sql_query` as unsafe to cache, because its text could be built from
//! anything; diesel-async then prepares it afresh on every execution — an extra round trip and
//! a new parse and plan each time. The statements that go through [`prepared`] are constant
//! strings with bind parameters, which is what the connection's statement cache is for: it is
//! keyed by the SQL text and the bind types.

use diesel::pg::Pg;
use diesel::query_builder::{AstPass, Query, QueryFragment, QueryId};
use diesel::QueryResult;

/// A query that may be cached as a prepared statement; see [`prepared`].
#[derive(Debug, Clone)]
pub struct Prepared<Q>(Q);

/// Marks a `diesel::sql_query(CONSTANT).bind(..)…` as safe to keep prepared per connection.
/// Only for SQL text that does not vary between calls, or the cache grows with every variant.
pub fn prepared<Q>(query: Q) -> Prepared<Q> {
    Prepared(query)
}

impl<Q: QueryFragment<Pg>> QueryFragment<Pg> for Prepared<Q> {
    fn walk_ast<'b>(&'b self, pass: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.0.walk_ast(pass)
    }

    fn is_safe_to_cache_prepared(&self, _backend: &Pg) -> QueryResult<bool> {
        Ok(true)
    }
}

impl<Q> QueryId for Prepared<Q> {
    // No static id: the cache then keys the statement by its SQL text and bind types.
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl<Q: Query> Query for Prepared<Q> {
    type SqlType = Q::SqlType;
}

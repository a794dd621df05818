//! Reading entries for the API: one by its public id, and the filtered listing, newest first,
//! whose filter is also the base of a redrive's.

use chrono::{DateTime, Utc};
use diesel::dsl::{AsSelect, SqlTypeOf};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::result::Error;
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::delivery::{HeldReason, Status};
use crate::domain::event::EventType;
use crate::domain::partner::PartnerState;
use crate::store::explain::{explain, Plan};
use crate::store::models::QueueRow;
use crate::store::schema::{webhook_partner_state, webhook_queue};

/// How far `created_at` may run against the order of ids: the database takes both as it builds
/// a row, so only a backend paused between the two, or the database's clock stepped back, puts
/// them out of order, by far less than this. A row whose `created_at` was edited later can fall
/// outside a window it matches (docs/operations.md, "Searching history").
const CREATED_AT_DISORDER: chrono::TimeDelta = chrono::TimeDelta::seconds(5);

diesel::define_sql_function! {
    /// The first id created at or after `at`, by bisection of the primary key
    /// (sql/rules/08_history_search.sql).
    fn webhook_queue_first_id_created_since(at: diesel::sql_types::Timestamptz) -> diesel::sql_types::BigInt;
}

pub async fn find(conn: &mut AsyncPgConnection, queue_id: Uuid) -> Result<Option<QueueRow>, Error> {
    webhook_queue::table
        .filter(webhook_queue::queue_id.eq(queue_id))
        .select(QueueRow::as_select())
        .first(conn)
        .await
        .optional()
}

/// Filters of the listing; every one optional.
#[derive(Clone, Debug, Default)]
pub struct ListFilter {
    pub status: Option<Status>,
    pub event_type: Option<EventType>,
    pub config_id: Option<i64>,
    /// The producer's event id, found through the idempotency index (which leads with it)
    /// with or without a partner.
    pub event_id: Option<String>,
    pub created_after: Option<DateTime<Utc>>,
    pub created_before: Option<DateTime<Utc>>,
    pub cancelled: Option<bool>,
    /// Held live rows with this reason.
    pub held: Option<HeldReason>,
    /// Only rows with an id below this one (keyset pagination, newest first).
    pub before_id: Option<i64>,
}

impl ListFilter {
    /// The rows that match: the one builder of these conditions, for the listing and for a
    /// redrive (see `cycle::RedriveFilter`).
    pub(super) fn query(&self) -> webhook_queue::BoxedQuery<'static, Pg> {
        use webhook_queue::dsl;
        let mut query = dsl::webhook_queue.into_boxed();
        if let Some(status) = self.status {
            query = query.filter(dsl::status.eq(status.as_str()));
        }
        if let Some(event_type) = self.event_type {
            query = query.filter(dsl::event_type.eq(event_type.as_str()));
        }
        if let Some(config_id) = self.config_id {
            query = query.filter(dsl::config_id.eq(config_id));
        }
        if let Some(event_id) = &self.event_id {
            query = query.filter(dsl::event_id.eq(event_id.clone()));
        }
        // A window is read as the ids created within it, widened by the disorder allowed, and
        // filtered exactly; without the ids, the newest-first walk would read every row
        // created since the window ended.
        if let Some(after) = self.created_after {
            query = query
                .filter(dsl::id.ge(webhook_queue_first_id_created_since(
                    after - CREATED_AT_DISORDER,
                )))
                .filter(dsl::created_at.ge(after));
        }
        if let Some(before) = self.created_before {
            query = query
                .filter(dsl::id.lt(webhook_queue_first_id_created_since(
                    before + CREATED_AT_DISORDER,
                )))
                .filter(dsl::created_at.lt(before));
        }
        match self.cancelled {
            Some(true) => query = query.filter(dsl::deleted_at.is_not_null()),
            Some(false) => query = query.filter(dsl::deleted_at.is_null()),
            None => {}
        }
        if let Some(held) = self.held {
            query = query.filter(dsl::deleted_at.is_null());
            // A partner's state holds its pending rows; it is not written onto them.
            query = match PartnerState::holding_for(held) {
                None => query.filter(dsl::held_reason.eq(held.as_str())),
                Some(state) => query
                    .filter(dsl::status.eq(Status::Pending.as_str()))
                    .filter(dsl::held_reason.is_null())
                    .filter(
                        dsl::config_id.eq_any(
                            webhook_partner_state::table
                                .filter(webhook_partner_state::state.eq(state.as_str()))
                                .select(webhook_partner_state::config_id),
                        ),
                    ),
            };
        }
        if let Some(before_id) = self.before_id {
            query = query.filter(dsl::id.lt(before_id));
        }
        query
    }
}

/// Newest first, at most `limit` rows.
pub async fn list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    limit: i64,
) -> Result<Vec<QueueRow>, Error> {
    listing_query(filter, limit).load(conn).await
}

/// The plan of [`list`] and what running it read.
pub async fn explain_list(
    conn: &mut AsyncPgConnection,
    filter: &ListFilter,
    limit: i64,
) -> Result<Plan, Error> {
    explain(conn, listing_query(filter, limit)).await
}

fn listing_query(
    filter: &ListFilter,
    limit: i64,
) -> webhook_queue::BoxedQuery<'static, Pg, SqlTypeOf<AsSelect<QueueRow, Pg>>> {
    filter
        .query()
        .select(QueueRow::as_select())
        .order(webhook_queue::id.desc())
        .limit(limit)
}

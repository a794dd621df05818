//! Submit: new rows inserted (counted and announced in the same statement), and the rows
//! that already hold some idempotency keys.

use diesel::result::{DatabaseErrorKind, Error};
use diesel::sql_types::{Array, Int4, Int8, Json, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use uuid::Uuid;

use crate::domain::event::EventType;
use crate::store::models::QueueRow;
use crate::store::prepared::prepared;

/// A row to insert; `queue_id` is chosen by the caller so inserted rows can be matched back.
#[derive(Clone, Debug)]
pub struct NewEntry {
    pub queue_id: Uuid,
    pub event_type: EventType,
    pub event_id: Option<String>,
    pub config_id: i64,
    pub webhook_url: String,
    pub url_params: serde_json::Value,
    pub max_retries: i32,
    /// The method, body and headers filled for this event; `None` for a plain GET.
    pub request: Option<serde_json::Value>,
}

/// Inserts entries in one statement, which also wakes idle workers (one NOTIFY on the
/// new-rows channel, delivered when the insert commits). Entries whose idempotency key exists
/// already are skipped: only inserted rows come back.
///
/// The statement counts its new rows (all pending) itself, through `webhook_queue_counts_add`
/// (sql/rules/02_counters.sql), so the insert trigger stands aside for it
/// (sql/rules/01_statement_markers.sql): the
/// submit path pays one cached PL/pgSQL call, not the trigger's transition table and its three
/// statements. `counted` and `announced` only SELECT, and PostgreSQL runs such a CTE only when
/// the final SELECT reads it: hence the joins.
///
/// `configs` are the `(id, version)` pairs of the configs the entries were built from, each id
/// once: should one have changed since it was read, the statement inserts nothing and fails
/// with an error [`configs_changed`] recognises (the check is `webhook_configs_unchanged`).
///
/// A partner's state is not read here: rows of a paused or tripped partner are inserted like
/// any other, and the claim does not serve that partner (sql/rules/05_claim.sql).
///
/// Money order (docs/api.md, "Money order") is decided in the same statement: `webhook_money_order_verdicts`
/// (sql/rules/06_money_order.sql) says which debits wait for their credit (`held_reason`) and
/// which are cancelled with it, from the statement's snapshot and without a lock. A credit that
/// completes while the insert runs may not see a debit it commits; the caller hands the debits
/// held for credits queued before them to `order::recheck` once the insert has committed.
///
/// The NOTIFY rides in the inserting transaction to save a round trip and a transaction on
/// the submit path. PostgreSQL serialises the commits of transactions that notify (one lock,
/// held until the commit is flushed), which costs little here: each API process runs one
/// insert at a time (see `application::ingest`), and a batch carries up to a thousand events.
pub async fn insert_new(
    conn: &mut AsyncPgConnection,
    entries: &[NewEntry],
    configs: &[(i64, i64)],
) -> Result<Vec<QueueRow>, Error> {
    if entries.is_empty() {
        return Ok(Vec::new());
    }
    let query = diesel::sql_query(INSERT_NEW)
        .bind::<Array<SqlUuid>, _>(entries.iter().map(|e| e.queue_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.event_type.as_str())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Nullable<Text>>, _>(
            entries
                .iter()
                .map(|e| e.event_id.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int8>, _>(entries.iter().map(|e| e.config_id).collect::<Vec<_>>())
        .bind::<Array<Text>, _>(
            entries
                .iter()
                .map(|e| e.webhook_url.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Jsonb>, _>(
            entries
                .iter()
                .map(|e| e.url_params.clone())
                .collect::<Vec<_>>(),
        )
        .bind::<Array<Int4>, _>(entries.iter().map(|e| e.max_retries).collect::<Vec<_>>())
        .bind::<Text, _>(crate::store::NEW_ROWS_CHANNEL)
        .bind::<Array<Int8>, _>(configs.iter().map(|c| c.0).collect::<Vec<_>>())
        .bind::<Array<Int8>, _>(configs.iter().map(|c| c.1).collect::<Vec<_>>())
        .bind::<Array<Nullable<Json>>, _>(
            entries
                .iter()
                .map(|e| e.request.clone())
                .collect::<Vec<_>>(),
        );
    prepared(query).load(conn).await
}

/// [`insert_new`]'s statement: the rows with money order's verdicts, if every config is still
/// the version it was read at; the count of the new rows; the announcement.
const INSERT_NEW: &str = "WITH inserted AS (
             INSERT INTO webhook_queue (queue_id, event_type, event_id, config_id, webhook_url, url_params, max_retries,
                                        request, held_reason, deleted_at, cancel_reason)
             SELECT u.queue_id, u.event_type, u.event_id, u.config_id, u.webhook_url, u.url_params, u.max_retries, u.request,
                    nullif(u.verdict, 'credit_cancelled'),
                    CASE WHEN u.verdict = 'credit_cancelled' THEN now() END,
                    nullif(u.verdict, 'waiting_for_credit')
             FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::jsonb[], $7::int4[], $11::json[],
                         webhook_money_order_verdicts($4::int8[], $2::text[], $3::text[]))
                  WITH ORDINALITY AS u(queue_id, event_type, event_id, config_id, webhook_url, url_params, max_retries,
                                       request, verdict, n)
             WHERE webhook_configs_unchanged($9::int8[], $10::int8[]) AND webhook_statement_counts_itself()
             -- In the entries' order: of two with one idempotency key, the first is inserted.
             ORDER BY u.n
             ON CONFLICT (config_id, event_type, event_id) WHERE event_id IS NOT NULL DO NOTHING
             RETURNING *
         ), counted AS (
             SELECT webhook_queue_counts_add(array_agg(config_id), array_agg(event_type),
                                             array_agg(webhook_count_bucket(status, deleted_at)), array_agg(1::int8))
             FROM inserted
         ), announced AS (
             SELECT pg_notify($8, '') WHERE EXISTS (SELECT 1 FROM inserted)
         )
         SELECT inserted.* FROM inserted LEFT JOIN counted ON true LEFT JOIN announced ON true";

/// Whether `insert_new` failed because a config changed after it was read: the check raises
/// SQLSTATE 40001 (serialization_failure). Read the configs again and retry; that is right too
/// for a real serialization failure, which a stricter default isolation level could cause.
pub fn configs_changed(error: &Error) -> bool {
    matches!(
        error,
        Error::DatabaseError(DatabaseErrorKind::SerializationFailure, _)
    )
}

/// Whether `insert_new` was chosen as a deadlock's victim: two inserts that share idempotency
/// keys in different orders each wait for the other's row of a key. Nothing was inserted;
/// retry.
pub fn deadlocked(error: &Error) -> bool {
    matches!(error, Error::DatabaseError(_, info) if info.message().starts_with("deadlock detected"))
}

/// The existing rows for several idempotency keys, in one statement.
pub async fn find_by_keys(
    conn: &mut AsyncPgConnection,
    keys: &[(i64, EventType, String)],
) -> Result<Vec<QueueRow>, Error> {
    prepared(diesel::sql_query(
        "SELECT q.* FROM webhook_queue q
         JOIN unnest($1::int8[], $2::text[], $3::text[]) AS k(config_id, event_type, event_id)
           ON q.config_id = k.config_id AND q.event_type = k.event_type AND q.event_id = k.event_id",
    )
    .bind::<Array<Int8>, _>(keys.iter().map(|k| k.0).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.1.as_str()).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(keys.iter().map(|k| k.2.as_str()).collect::<Vec<_>>()))
    .load(conn)
    .await
}

//! The raw SQL ceiling: the library's own statements (`submit::insert_new`, `claim::claim`,
//! `outcome::record_attempts`) driven straight through pooled connections, batched, with no
//! HTTP anywhere. This is what the database on this machine can do with webhookd's SQL.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use diesel::sql_types::{Array, Bool, Int4, Int8, Jsonb, Nullable, Text, Uuid as SqlUuid};
use diesel::QueryableByName;
use diesel_async::AsyncPgConnection;
use uuid::Uuid;
use webhookd::domain::delivery::Status;
use webhookd::domain::event::EventType;
use webhookd::store::queue::claim;
use webhookd::store::queue::outcome::{self, AttemptWrite};
use webhookd::store::queue::submit::{self, NewEntry};
use webhookd::store::DbPool;

#[derive(Clone, Copy, Debug, Default)]
pub struct Rate {
    pub rows: u64,
    pub elapsed: Duration,
}

impl Rate {
    pub fn per_sec(&self) -> f64 {
        self.rows as f64 / self.elapsed.as_secs_f64()
    }
}

/// What the API would have stored for event `n` (same URL shape, same parameters).
pub fn entry(config_id: i64, url_base: &str, tag: &str, n: u64) -> NewEntry {
    NewEntry {
        queue_id: Uuid::new_v4(),
        event_type: EventType::Credit,
        event_id: Some(format!("{tag}-{n}")),
        config_id,
        webhook_url: format!(
            "{url_base}?src=bench&uid=u{n}&signature=xyz789&token=abc123&value=100"
        ),
        url_params: serde_json::json!({"value": "100", "user_id": format!("u{n}"), "token": "abc123", "signature": "xyz789"}),
        max_retries: 6,
        request: None,
    }
}

/// Inserts `rows` rows, `batch` per statement (each followed by the NOTIFY the API sends), from
/// `concurrency` connections.
pub async fn insert(
    pool: &DbPool,
    config_id: i64,
    url_base: &str,
    tag: &str,
    rows: usize,
    batch: usize,
    concurrency: usize,
) -> Rate {
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..concurrency {
        let (pool, next, done) = (pool.clone(), next.clone(), done.clone());
        let (url_base, tag) = (url_base.to_string(), tag.to_string());
        tasks.spawn(async move {
            let mut conn = pool.get().await.expect("a pooled connection");
            let legacy = !money_order_schema(&mut conn).await;
            // The API's insert checks the versions of the configs it built rows from.
            let versions: Vec<(i64, i64)> =
                vec![(config_id, config_version(&mut conn, config_id).await)];
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= rows {
                    break;
                }
                let to = (from + batch).min(rows);
                let entries: Vec<NewEntry> = (from..to)
                    .map(|n| entry(config_id, &url_base, &tag, n as u64))
                    .collect();
                let inserted = if legacy {
                    legacy_insert(&mut conn, &entries, &versions).await
                } else {
                    submit::insert_new(&mut conn, &entries, &versions)
                        .await
                        .expect("insert")
                        .len()
                };
                done.fetch_add(inserted as u64, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("insert task");
    }
    Rate {
        rows: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

#[derive(QueryableByName)]
struct One {
    #[diesel(sql_type = Bool)]
    yes: bool,
}

#[derive(QueryableByName)]
struct Version {
    #[diesel(sql_type = Int8)]
    version: i64,
}

// `diesel_async::RunQueryDsl` is called by path: in scope, its `load` would shadow
// `AtomicU64::load` on an `Arc`.

/// Whether the bench database has money order (migration 000010): an older `--webhookd`
/// migrates to its own schema, whose insert this library's `insert_new` no longer matches.
pub async fn money_order_schema(conn: &mut AsyncPgConnection) -> bool {
    let row: One = diesel_async::RunQueryDsl::get_result(
        diesel::sql_query(
            "SELECT to_regprocedure('webhook_money_order_verdicts(bigint[],text[],text[])') IS NOT NULL AS yes",
        ),
        conn,
    )
    .await
    .expect("read the schema");
    row.yes
}

/// A config's version as the API's insert checks it (see `store::configs::find_versioned`),
/// read by hand so that it works on every schema.
async fn config_version(conn: &mut AsyncPgConnection, config_id: i64) -> i64 {
    let query =
        diesel::sql_query("SELECT xmin::text::int8 AS version FROM webhook_configs WHERE id = $1")
            .bind::<Int8, _>(config_id);
    let row: Version = diesel_async::RunQueryDsl::get_result(query, conn)
        .await
        .expect("the bench config");
    row.version
}

/// The insert as it was before money order (migration 000010), for a bench database an older
/// `--webhookd` migrated: the same statement that binary runs, so its SQL ceiling is its own.
async fn legacy_insert(
    conn: &mut AsyncPgConnection,
    entries: &[NewEntry],
    configs: &[(i64, i64)],
) -> usize {
    let query = diesel::sql_query(
        "WITH inserted AS (
             INSERT INTO webhook_queue (queue_id, event_type, event_id, config_id, webhook_url, url_params, max_retries)
             SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::int8[], $5::text[], $6::jsonb[], $7::int4[])
             WHERE webhook_configs_unchanged($9::int8[], $10::int8[]) AND webhook_statement_counts_itself()
             ON CONFLICT (config_id, event_type, event_id) WHERE event_id IS NOT NULL DO NOTHING
             RETURNING *
         ), counted AS (
             SELECT webhook_queue_counts_add(array_agg(config_id), array_agg(event_type),
                                             array_agg(webhook_count_bucket(status, deleted_at)), array_agg(1::int8))
             FROM inserted
         ), announced AS (
             SELECT pg_notify($8, '') WHERE EXISTS (SELECT 1 FROM inserted)
         )
         SELECT count(*)::int8 AS version FROM inserted LEFT JOIN counted ON true LEFT JOIN announced ON true",
    )
    .bind::<Array<SqlUuid>, _>(entries.iter().map(|e| e.queue_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(entries.iter().map(|e| e.event_type.as_str()).collect::<Vec<_>>())
    .bind::<Array<Nullable<Text>>, _>(entries.iter().map(|e| e.event_id.clone()).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(entries.iter().map(|e| e.config_id).collect::<Vec<_>>())
    .bind::<Array<Text>, _>(entries.iter().map(|e| e.webhook_url.clone()).collect::<Vec<_>>())
    .bind::<Array<Jsonb>, _>(entries.iter().map(|e| e.url_params.clone()).collect::<Vec<_>>())
    .bind::<Array<Int4>, _>(entries.iter().map(|e| e.max_retries).collect::<Vec<_>>())
    .bind::<Text, _>(webhookd::store::NEW_ROWS_CHANNEL)
    .bind::<Array<Int8>, _>(configs.iter().map(|c| c.0).collect::<Vec<_>>())
    .bind::<Array<Int8>, _>(configs.iter().map(|c| c.1).collect::<Vec<_>>());
    let row: Version = diesel_async::RunQueryDsl::get_result(query, conn)
        .await
        .expect("legacy insert");
    row.version as usize
}

/// On a bench database an older `--webhookd` migrated, `webhook_partner_record` lacks the
/// argument of events that would end failed (`exhausted`), which this library's outcome write
/// passes. The adapter takes it and calls the older function, which is the one that binary
/// counts with; the ceiling's drain writes only 2xx, for which the argument changes nothing.
async fn older_partner_count_adapter(conn: &mut AsyncPgConnection) {
    diesel_async::RunQueryDsl::execute(
        diesel::sql_query(
            "DO $$ BEGIN
                 IF to_regprocedure('webhook_partner_record(bigint[],text[],text[],integer,bigint)') IS NOT NULL
                    AND to_regprocedure('webhook_partner_record(bigint[],text[],text[],integer[],integer,bigint)') IS NULL THEN
                     CREATE FUNCTION webhook_partner_record(BIGINT[], TEXT[], TEXT[], INTEGER[], INTEGER, BIGINT)
                     RETURNS TABLE (config_id BIGINT, held_reason TEXT, changed_to TEXT, reason TEXT, held BIGINT)
                     LANGUAGE sql AS 'SELECT * FROM webhook_partner_record($1, $2, $3, $5, $6)';
                 END IF;
             END $$",
        ),
        conn,
    )
    .await
    .expect("the older partner count's adapter");
}

/// Claims and completes every due row, `batch` per claim and per outcome write, from
/// `concurrency` connections: the delivery path minus the HTTP call.
pub async fn drain(pool: &DbPool, batch: i64, concurrency: usize) -> Rate {
    older_partner_count_adapter(&mut pool.get().await.expect("a pooled connection")).await;
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        let (pool, done) = (pool.clone(), done.clone());
        tasks.spawn(async move {
            let worker_id = format!("sql-ceiling-{n}");
            let mut conn = pool.get().await.expect("a pooled connection");
            loop {
                let rows =
                    claim::claim(&mut conn, &worker_id, batch, Duration::from_secs(300), &[])
                        .await
                        .expect("claim");
                if rows.is_empty() {
                    break;
                }
                let now = Utc::now();
                let writes: Vec<AttemptWrite> = rows
                    .iter()
                    .map(|r| AttemptWrite {
                        id: r.id,
                        config_id: r.config_id,
                        event_type: r.event_type,
                        verdict: webhookd::domain::partner::Verdict::Up,
                        worker_id: worker_id.clone(),
                        locked_at: r.locked_at,
                        attempt: r.retry_count,
                        started_at: now,
                        completed_at: now,
                        duration_ms: 1,
                        http_status: Some(200),
                        response_body: Some("ok".into()),
                        error: None,
                        status: Status::Completed,
                        retry_count: r.retry_count,
                        next_retry_at: None,
                    })
                    .collect();
                let circuit = outcome::Circuit {
                    failure_threshold: 10,
                    probe_interval_ms: 5000,
                };
                let recorded =
                    outcome::record_attempts(&mut conn, &writes, circuit, Duration::from_secs(60))
                        .await
                        .expect("record");
                done.fetch_add(recorded.written.len() as u64, Ordering::Relaxed);
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.expect("drain task");
    }
    Rate {
        rows: done.load(Ordering::Relaxed),
        elapsed: started.elapsed(),
    }
}

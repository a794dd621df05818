//! A long history: the operator's searches read about as many rows as they answer with, not the
//! queue; a search that no index serves answers 503 `query_timeout` within `QUERY_TIMEOUT` and
//! leaves its connection free; a pruning pass deletes in bounded batches and says so after each.
//!
//! The history is the one `just bench history` loads (examples/bench/history_fill.sql), 20,000
//! rows over a week and fifty partners instead of millions: enough that a search walking the
//! queue reads thousands of rows where one served by an index reads tens.

mod common;

use std::time::Duration;

use chrono::{DateTime, Utc};
use common::fixture::unreachable;
use common::{spawn_on, Options, TestApp, TestDb};
use serde_json::{json, Value};
use tokio_postgres::SimpleQueryMessage;
use tokio_util::sync::CancellationToken;
use webhookd::application::retention::{self, Pass};
use webhookd::config::RetentionSettings;
use webhookd::domain::delivery::Status;
use webhookd::store;
use webhookd::store::check as check_sql;
use webhookd::store::explain::Plan;
use webhookd::store::queue::listing::{self, ListFilter};
use webhookd::store::stats as stats_sql;

const ROWS: i64 = 20_000;
const PARTNERS: i64 = 50;
const WEEK_SECS: f64 = 7.0 * 24.0 * 3600.0;
/// A search of one page (50) that reads by index touches about a page of rows per index it
/// reads; one that walks the queue touches thousands.
const FEW_ROWS: f64 = 400.0;

/// A fresh database holding `ROWS` rows of history spread over the past week.
async fn history() -> TestDb {
    let db = TestDb::new().await;
    let client = db.client().await;
    let partners: Vec<i64> = client
        .query(
            "INSERT INTO webhook_configs (name, postback_url, chargeback_url)
             SELECT 'partner-' || i, 'http://127.0.0.1:9/pb?u={user_id}', 'http://127.0.0.1:9/cb?u={user_id}'
             FROM generate_series(1, $1::int8) AS i RETURNING id",
            &[&PARTNERS],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    client
        .execute(
            include_str!("../examples/bench/history_fill.sql"),
            &[&1i64, &ROWS, &ROWS, &partners, &WEEK_SECS],
        )
        .await
        .expect("the history loads");
    client
        .batch_execute(
            "SELECT setval(pg_get_serial_sequence('webhook_queue', 'id'), (SELECT max(id) FROM webhook_queue))",
        )
        .await
        .unwrap();
    client
        .batch_execute("VACUUM ANALYZE webhook_queue")
        .await
        .unwrap();
    db
}

/// The queue ids of `sql`'s rows, in its order: what a search should answer.
async fn expected(db: &TestDb, sql: &str) -> Vec<String> {
    db.client()
        .await
        .query(sql, &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get::<_, String>(0))
        .collect()
}

fn ids(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .unwrap_or_else(|| panic!("a page: {page}"))
        .iter()
        .map(|e| e["queue_id"].as_str().unwrap().to_string())
        .collect()
}

/// Rows the listing reads for `filter`, by the plan PostgreSQL runs for it.
async fn rows_read(app: &TestApp, filter: &ListFilter) -> f64 {
    let mut conn = store::connect(&app.db.url).await.unwrap();
    let plan = listing::explain_list(&mut conn, filter, 51).await.unwrap();
    plan.rows_read()
}

fn at(sql_time: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(sql_time).unwrap().into()
}

/// `POST /webhooks/redrive` as a dry run for partner `config`.
async fn dry_run_redrive(app: &TestApp, config: i64) -> (u16, Value) {
    let body = json!({"config_id": config, "dry_run": true});
    app.post("/webhooks/redrive", body).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_search_of_a_long_history_reads_about_what_it_answers() {
    let app = spawn_on(history().await, Options::default()).await;
    let client = app.db.client().await;
    // An event from two days ago, and the same producer id sent to a second partner just now.
    let row = client
        .query_one(
            "SELECT event_id, config_id FROM webhook_queue
             WHERE created_at < now() - interval '2 days' ORDER BY id DESC LIMIT 1",
            &[],
        )
        .await
        .unwrap();
    let (event_id, partner): (String, i64) = (row.get(0), row.get(1));
    let other: i64 = client
        .query_one(
            "SELECT id FROM webhook_configs WHERE id <> $1 ORDER BY id LIMIT 1",
            &[&partner],
        )
        .await
        .unwrap()
        .get(0);
    let again = app
        .submit(json!({"event_type": "+credit", "event_id": event_id, "config_id": other, "url_params": {"user_id": "u1"}}))
        .await;
    let three_days_ago: String = client
        .query_one(
            "SELECT to_char((now() - interval '3 days') AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let (after, before) = (
        at(&three_days_ago),
        at(&three_days_ago) + chrono::TimeDelta::hours(4),
    );

    struct Search {
        query: String,
        filter: ListFilter,
        truth: String,
    }
    let page = "ORDER BY id DESC LIMIT 50";
    let searches = [
        Search {
            query: format!("event_id={event_id}"),
            filter: ListFilter {
                event_id: Some(event_id.clone()),
                ..Default::default()
            },
            truth: format!("SELECT queue_id::text FROM webhook_queue WHERE event_id = '{event_id}' {page}"),
        },
        Search {
            query: "event_id=tx_none".into(),
            filter: ListFilter {
                event_id: Some("tx_none".into()),
                ..Default::default()
            },
            truth: format!("SELECT queue_id::text FROM webhook_queue WHERE event_id = 'tx_none' {page}"),
        },
        Search {
            query: format!("event_id={event_id}&config_id={partner}"),
            filter: ListFilter {
                event_id: Some(event_id.clone()),
                config_id: Some(partner),
                ..Default::default()
            },
            truth: format!(
                "SELECT queue_id::text FROM webhook_queue WHERE event_id = '{event_id}' AND config_id = {partner} {page}"
            ),
        },
        Search {
            query: format!("status=failed&config_id={partner}"),
            filter: ListFilter {
                status: Some(Status::Failed),
                config_id: Some(partner),
                ..Default::default()
            },
            truth: format!(
                "SELECT queue_id::text FROM webhook_queue WHERE status = 'failed' AND config_id = {partner} {page}"
            ),
        },
        Search {
            query: format!(
                "created_after={}&created_before={}",
                after.format("%Y-%m-%dT%H:%M:%S%.6fZ"),
                before.format("%Y-%m-%dT%H:%M:%S%.6fZ")
            ),
            filter: ListFilter {
                created_after: Some(after),
                created_before: Some(before),
                ..Default::default()
            },
            truth: format!(
                "SELECT queue_id::text FROM webhook_queue
                 WHERE created_at >= '{}' AND created_at < '{}' {page}",
                after.to_rfc3339(),
                before.to_rfc3339()
            ),
        },
    ];
    for search in &searches {
        let (status, answer) = app.get(&format!("/webhooks?{}", search.query)).await;
        assert_eq!(status, 200, "?{}: {answer}", search.query);
        let truth = expected(&app.db, &search.truth).await;
        assert_eq!(ids(&answer), truth, "?{}", search.query);
        let read = rows_read(&app, &search.filter).await;
        assert!(
            read <= FEW_ROWS,
            "?{} read {read} rows of {ROWS} to answer {}",
            search.query,
            truth.len()
        );
    }
    let found = ids(&app.get(&format!("/webhooks?event_id={event_id}")).await.1);
    assert_eq!(found.len(), 2, "both partners' events: {found:?}");
    assert_eq!(found[0], again["queue_id"], "newest first");

    // A redrive's dry run counts one partner's failed rows exactly.
    let failed = app
        .db
        .count(&format!(
            "SELECT count(*) FROM webhook_queue WHERE status = 'failed' AND deleted_at IS NULL AND config_id = {partner}"
        ))
        .await;
    assert!(
        failed > 0,
        "the history has failed rows for partner {partner}"
    );
    let (status, answer) = dry_run_redrive(&app, partner).await;
    assert_eq!(
        (status, answer["matched"].as_i64()),
        (200, Some(failed)),
        "{answer}"
    );
}

/// The statistics, the checks and the pruner's heals read counters and indexes, never the
/// whole queue: each reads a few rows of the history, by the plan PostgreSQL runs for it (in a
/// transaction rolled back, as the heal writes). `counters_drift` counts the queue by design,
/// within `QUERY_TIMEOUT`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statistics_checks_and_heals_read_few_rows_of_a_long_history() {
    let db = history().await;
    let client = db.client().await;
    for sql in [
        stats_sql::ROW_COUNTS_SQL,
        stats_sql::ATTEMPT_BUCKETS_SQL,
        stats_sql::MOMENTS_SQL,
        stats_sql::HELD_COUNTS_SQL,
        check_sql::STALE_CREDIT_WAIT,
        check_sql::PROCESSING_WITHOUT_LEASE,
        check_sql::EXPIRE_MISSING_LEASES,
    ] {
        // The simple protocol answers in text, the one parameter ($1, examples) written in.
        let sql = sql.replace("$1", &check_sql::EXAMPLES.to_string());
        let answer = client
            .simple_query(&format!(
                "BEGIN; EXPLAIN (ANALYZE, FORMAT JSON) {sql}; ROLLBACK"
            ))
            .await
            .unwrap();
        let document: Value = answer
            .iter()
            .find_map(|message| match message {
                SimpleQueryMessage::Row(row) => {
                    row.get(0).map(|text| serde_json::from_str(text).unwrap())
                }
                _ => None,
            })
            .expect("a plan");
        let plan = Plan(document);
        let read = plan.rows_read();
        assert!(read <= FEW_ROWS, "{sql}\nread {read} rows:\n{:#}", plan.0);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_past_query_timeout_answers_503_and_the_next_one_after_it_200() {
    let app = spawn_on(
        TestDb::new().await,
        Options::default().env("QUERY_TIMEOUT", "300ms"),
    )
    .await;
    let config = unreachable(&app, "p").await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config}))
        .await;
    // Another session holds the queue, so every read of it waits until cancelled.
    let lock = "BEGIN; LOCK TABLE webhook_queue, webhook_partner_state IN ACCESS EXCLUSIVE MODE";
    let holder = app.db.client().await;
    holder.batch_execute(lock).await.unwrap();
    for query in [
        "/webhooks?status=failed",
        "/webhooks?event_id=x",
        "/webhooks",
    ] {
        let (status, answer) = app.get(query).await;
        assert_eq!(status, 503, "{query}: {answer}");
        assert_eq!(answer["error"]["code"], "query_timeout", "{answer}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("QUERY_TIMEOUT"), "{message}");
    }
    let (status, answer) = dry_run_redrive(&app, config).await;
    assert_eq!(
        (status, &answer["error"]["code"]),
        (503, &json!("query_timeout"))
    );
    let (status, check) = app.get("/webhooks/check").await;
    assert_eq!(status, 200, "{check}");
    assert_eq!(check["unchecked"], 4, "{check}");
    assert_eq!(check["ok"], false, "{check}");
    assert_eq!(
        check["invariants"]["counters_drift"]["checked"], false,
        "{check}"
    );
    holder.batch_execute("ROLLBACK").await.unwrap();

    let (status, page) = app.get("/webhooks").await;
    assert_eq!(status, 200, "{page}");
    assert_eq!(ids(&page), vec![entry["queue_id"].as_str().unwrap()]);
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_queue").await,
        1,
        "nothing changed"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruning_pass_deletes_a_backlog_in_bounded_batches_and_reports_each() {
    let db = history().await;
    let expired = db
        .count(
            "SELECT count(*) FROM webhook_queue WHERE status = 'completed' AND deleted_at IS NULL
             AND completed_at < now() - interval '2 days'",
        )
        .await;
    assert!(
        expired > 2 * retention::BATCH,
        "a backlog of {expired} rows"
    );
    let settings = RetentionSettings {
        completed: Some(Duration::from_secs(2 * 24 * 3600)),
        failed: None,
        interval: Duration::from_secs(60),
    };
    let mut seen = Vec::new();
    let pass = retention::prune_once(
        &db.url,
        &settings,
        Duration::from_secs(5),
        Some(Duration::from_secs(60)),
        &CancellationToken::new(),
        |so_far| seen.push(so_far.completed),
    )
    .await
    .expect("the pass runs");
    let Pass::Done(pruned) = pass else {
        panic!("nobody else prunes: {pass:?}")
    };
    assert_eq!(pruned.completed, expired);
    assert!(
        !pruned.counters_unchecked,
        "20,000 rows count within a minute"
    );
    // One report per batch: full batches, then the rest.
    let batches = expired / retention::BATCH + 1;
    let totals: Vec<i64> = (1..batches)
        .map(|n| n * retention::BATCH)
        .chain([expired])
        .collect();
    assert_eq!(seen, totals);
    common::counters::assert_counters_exact(&db, "the pass").await;
}

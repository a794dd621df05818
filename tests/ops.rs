//! Operating webhookd: manual retry with history, bulk redrive (API and CLI), cancelling an
//! entry while a worker calls it, and retention — against a real PostgreSQL and a real
//! receiver on loopback.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::counters::{assert_counters_exact, queue_attempts};
use common::receiver::Receiver;
use common::{eventually, spawn, Options, TestApp, TestDb};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;
use webhookd::application::retention::{self, Pass, Pruned};
use webhookd::config::RetentionSettings;

const WAIT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_webhookd");

fn id(entry: &Value) -> String {
    entry["queue_id"]
        .as_str()
        .expect("an entry has a queue_id")
        .to_string()
}

/// `(cycle, attempt, http_status)` of each attempt in an entry's `attempts` list.
fn attempt_list(entry: &Value) -> Vec<(i64, i64, Option<i64>)> {
    entry["attempts"]
        .as_array()
        .expect("the entry has attempts")
        .iter()
        .map(|a| {
            (
                a["cycle"].as_i64().unwrap(),
                a["attempt"].as_i64().unwrap(),
                a["http_status"].as_i64(),
            )
        })
        .collect()
}

async fn stats(app: &TestApp) -> Value {
    let (status, body) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every attempt recorded in the `retry_N_*` columns of `webhook_queue`: `status`, `ms`. The
/// slots are read here column by column, not through `webhook_queue_attempts`, so that the
/// counters, which the triggers keep through that function, are checked against the columns.
/// The statistics agree with the tables: rows per bucket, and attempts as recorded in the
/// `retry_N_*` columns plus the archived ones.
async fn assert_stats_match_tables(app: &TestApp) {
    let s = stats(app).await;
    let client = app.db.client().await;
    let buckets = client
        .query(
            "SELECT CASE WHEN deleted_at IS NULL THEN status ELSE 'cancelled' END, count(*)
             FROM webhook_queue GROUP BY 1",
            &[],
        )
        .await
        .unwrap();
    let count = |bucket: &str| {
        buckets
            .iter()
            .find(|r| r.get::<_, String>(0) == bucket)
            .map_or(0, |r| r.get::<_, i64>(1))
    };
    for status in ["pending", "processing", "completed", "failed"] {
        assert_eq!(s["by_status"][status], count(status), "{status}: {s:#}");
    }
    assert_eq!(s["cancelled"], count("cancelled"), "{s:#}");
    let queue_attempts = queue_attempts();
    let attempts = client
        .query_one(
            &format!(
                "WITH recorded AS (
                     {queue_attempts}
                     UNION ALL
                     SELECT http_status, duration_ms FROM webhook_attempt_history
                     WHERE completed_at IS NOT NULL
                 )
                 SELECT count(*), count(*) FILTER (WHERE status BETWEEN 200 AND 299) FROM recorded"
            ),
            &[],
        )
        .await
        .unwrap();
    assert_eq!(s["attempts"]["total"], attempts.get::<_, i64>(0), "{s:#}");
    assert_eq!(
        s["attempts"]["succeeded"],
        attempts.get::<_, i64>(1),
        "{s:#}"
    );
}

/// Records `n` failed attempts (HTTP 500, 10 ms, 20 ms, ...) in a row and marks it `failed`.
async fn make_failed(db: &TestDb, queue_id: &str, n: i32) {
    let mut set = vec![
        "status = 'failed'".to_string(),
        format!("retry_count = {}", n - 1),
        "updated_at = now()".into(),
    ];
    for k in 0..n {
        set.push(format!(
            "retry_{k}_started_at = now() - interval '{s} seconds', retry_{k}_completed_at = now() - interval '{s} seconds',
             retry_{k}_duration_ms = {ms}, retry_{k}_http_status = 500, retry_{k}_response_body = 'down',
             retry_{k}_error = 'HTTP 500'",
            s = 60 - k,
            ms = 10 * (k + 1)
        ));
    }
    let sql = format!(
        "UPDATE webhook_queue SET {} WHERE queue_id = '{queue_id}'",
        set.join(", ")
    );
    assert_eq!(db.client().await.execute(&sql, &[]).await.unwrap(), 1);
}

async fn exec(db: &TestDb, sql: &str) -> u64 {
    db.client().await.execute(sql, &[]).await.unwrap()
}

async fn retry(app: &TestApp, queue_id: &str) -> (u16, Value) {
    app.post(&format!("/webhooks/{queue_id}/retry"), json!({}))
        .await
}

async fn redrive(app: &TestApp, body: Value) -> Value {
    let (status, answer) = app.post("/webhooks/redrive", body.clone()).await;
    assert_eq!(status, 200, "{body} -> {answer}");
    answer
}

async fn matched(app: &TestApp, mut body: Value) -> i64 {
    body["dry_run"] = json!(true);
    let answer = redrive(app, body).await;
    assert_eq!(answer["dry_run"], true, "{answer}");
    answer["matched"]
        .as_i64()
        .expect("a dry run says how many matched")
}

/// Runs the real binary against `db_url`; it must succeed. Returns its stdout.
async fn cli(db_url: &str, args: &[&str]) -> String {
    let mut command = std::process::Command::new(BIN);
    command
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("DATABASE_URL", db_url)
        .env("LOG_LEVEL", "warn");
    let output =
        tokio::task::spawn_blocking(move || command.output().expect("the webhookd binary runs"))
            .await
            .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "webhookd {args:?} failed: {stderr}"
    );
    String::from_utf8(output.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_manual_retry_runs_a_fresh_cycle_that_is_picked_up_at_once_and_keeps_the_old_attempts() {
    let receiver = Receiver::start().await;
    // A poll far beyond the test's whole wait: only the NOTIFY sent by the retry can wake a
    // worker in time.
    let app = spawn(
        Options::with_workers()
            .env("WORKER_POLL_INTERVAL", "1h")
            .env("RETRY_BASE_DELAY", "20ms"),
    )
    .await;
    let (status, config) = app
        .post(
            "/webhook-configs",
            json!({"name": "flaky", "postback_url": receiver.url("/rejects/2/retry"), "max_retries": 1}),
        )
        .await;
    assert_eq!(status, 201, "{config}");
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {}}))
        .await;
    let queue_id = id(&entry);
    let failed = app.wait_for_status(&queue_id, "failed", WAIT).await;
    assert_eq!(
        attempt_list(&failed),
        [(0, 0, Some(400)), (0, 1, Some(400))]
    );
    assert_eq!(stats(&app).await["attempts"]["total"], 2);

    let (status, retried) = retry(&app, &queue_id).await;
    assert_eq!(status, 200, "{retried}");
    assert_eq!(retried["status"], "pending");
    assert_eq!(retried["retry_count"], 0);

    let done = app.wait_for_status(&queue_id, "completed", WAIT).await;
    assert_eq!(done["retry_count"], 0);
    assert_eq!(
        attempt_list(&done),
        [(0, 0, Some(400)), (0, 1, Some(400)), (1, 0, Some(200))],
        "{done:#}"
    );
    let started: Vec<&str> = done["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["started_at"].as_str().unwrap())
        .collect();
    let mut in_order = started.clone();
    in_order.sort();
    assert_eq!(
        started, in_order,
        "attempts are listed in the order they were made"
    );

    let calls: Vec<String> = receiver
        .received_at("/rejects/2/retry")
        .iter()
        .map(|r| r.header("X-Webhook-Attempt").to_string())
        .collect();
    assert_eq!(
        calls,
        ["0", "1", "0"],
        "the new cycle numbers its attempts from 0"
    );
    // The row holds only the new cycle; the old one is in the history table.
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM webhook_attempt_history WHERE queue_id = '{queue_id}' AND cycle = 0"
            ))
            .await,
        2
    );
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM webhook_queue WHERE queue_id = '{queue_id}'
                 AND retry_0_http_status = 200 AND retry_1_started_at IS NULL"
            ))
            .await,
        1
    );
    let s = stats(&app).await;
    assert_eq!(
        (
            s["attempts"]["total"].as_i64(),
            s["attempts"]["succeeded"].as_i64()
        ),
        (Some(3), Some(1))
    );
    assert_stats_match_tables(&app).await;

    let (status, body) = retry(&app, &queue_id).await;
    assert_eq!(status, 409, "a completed entry cannot be retried: {body}");
    assert_eq!(body["error"]["code"], "conflict");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_needs_a_failed_live_entry_archives_each_cycle_once_and_keeps_the_attempt_count() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("p", "http://127.0.0.1:9/pb", "http://127.0.0.1:9/cb")
        .await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
        .await;
    let queue_id = id(&entry);

    let (status, body) = retry(&app, &queue_id).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"]["code"], "conflict");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pending"),
        "{body}"
    );
    let (status, body) = retry(&app, &uuid::Uuid::new_v4().to_string()).await;
    assert_eq!(
        (status, &body["error"]["code"]),
        (404, &json!("not_found")),
        "{body}"
    );
    let (status, body) = retry(&app, "not-a-uuid").await;
    assert_eq!(
        (status, &body["error"]["field"]),
        (400, &json!("queue_id")),
        "{body}"
    );

    make_failed(&app.db, &queue_id, 3).await;
    assert_eq!(stats(&app).await["attempts"]["total"], 3);
    // Eight retries at once: one wins, the others find the entry no longer failed.
    let answers = futures_util::future::join_all((0..8).map(|_| retry(&app, &queue_id))).await;
    let statuses: Vec<u16> = answers.iter().map(|(status, _)| *status).collect();
    assert_eq!(
        statuses.iter().filter(|s| **s == 200).count(),
        1,
        "{answers:?}"
    );
    assert_eq!(
        statuses.iter().filter(|s| **s == 409).count(),
        7,
        "{answers:?}"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_attempt_history")
            .await,
        3
    );
    let row = app
        .db
        .client()
        .await
        .query_one(
            "SELECT status, retry_count, next_retry_at <= now(), locked_at IS NULL AND lock_expires_at IS NULL
                    AND worker_id IS NULL, num_nonnulls(retry_0_started_at, retry_1_started_at, retry_2_started_at,
                    retry_0_http_status, retry_0_error, retry_0_response_body, retry_2_duration_ms)
             FROM webhook_queue WHERE queue_id = $1::text::uuid",
            &[&queue_id],
        )
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "pending");
    assert_eq!(row.get::<_, i32>(1), 0);
    assert!(row.get::<_, bool>(2), "due at once");
    assert!(row.get::<_, bool>(3), "lock columns cleared");
    assert_eq!(row.get::<_, i32>(4), 0, "attempt columns cleared");
    // Archiving moved the attempts; it did not count them again or drop them.
    assert_eq!(stats(&app).await["attempts"]["total"], 3);
    assert_stats_match_tables(&app).await;

    // A second cycle that fails once, then a third: cycles are numbered on.
    make_failed(&app.db, &queue_id, 1).await;
    assert_eq!(retry(&app, &queue_id).await.0, 200);
    make_failed(&app.db, &queue_id, 2).await;
    let (_, entry) = app.get(&format!("/webhooks/{queue_id}")).await;
    assert_eq!(
        attempt_list(&entry),
        [
            (0, 0, Some(500)),
            (0, 1, Some(500)),
            (0, 2, Some(500)),
            (1, 0, Some(500)),
            (2, 0, Some(500)),
            (2, 1, Some(500))
        ]
    );
    assert_eq!(entry["attempts"][2]["duration_ms"], 30);
    assert_eq!(entry["attempts"][2]["error"], "HTTP 500");
    assert_eq!(entry["attempts"][2]["response_body"], "down");
    assert_eq!(stats(&app).await["attempts"]["total"], 6);

    // Completed and cancelled entries are refused.
    exec(
        &app.db,
        &format!("UPDATE webhook_queue SET status = 'completed', completed_at = now() WHERE queue_id = '{queue_id}'"),
    )
    .await;
    let (status, body) = retry(&app, &queue_id).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("completed"),
        "{body}"
    );
    let other = id(&app
        .submit(json!({"event_type": "-debit", "config_id": config, "url_params": {}}))
        .await);
    make_failed(&app.db, &other, 1).await;
    assert_eq!(
        app.send(reqwest::Method::DELETE, &format!("/webhooks/{other}"), None)
            .await
            .0,
        200
    );
    let (status, body) = retry(&app, &other).await;
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("cancelled"),
        "{body}"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_attempt_history")
            .await,
        4
    );
    assert_stats_match_tables(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_matches_what_its_dry_run_counted_honours_filters_and_redrives_nothing_twice() {
    let receiver = Receiver::start().await;
    let app = spawn(Options::with_workers()).await;
    // Each event's URL fails on its first call and succeeds on the next; no automatic retries.
    let (_, a) = app
        .post(
            "/webhook-configs",
            json!({"name": "a", "postback_url": receiver.url("/flaky/1/a/{n}"),
                "chargeback_url": receiver.url("/flaky/1/a-debit/{n}"), "max_retries": 0}),
        )
        .await;
    let (_, b) = app
        .post(
            "/webhook-configs",
            json!({"name": "b", "postback_url": receiver.url("/flaky/1/b/{n}"), "max_retries": 0}),
        )
        .await;
    let (a, b) = (a["id"].as_i64().unwrap(), b["id"].as_i64().unwrap());
    let mut ids = std::collections::HashMap::new();
    for (name, config, event_type, n) in [
        ("a1", a, "+credit", 1),
        ("a2", a, "+credit", 2),
        ("a3", a, "+credit", 3),
        ("a4", a, "-debit", 4),
        ("a5", a, "+credit", 5),
        ("b1", b, "+credit", 1),
        ("b2", b, "+credit", 2),
    ] {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config, "url_params": {"n": n}}))
            .await;
        ids.insert(name, id(&entry));
    }
    for queue_id in ids.values() {
        app.wait_for_status(queue_id, "failed", WAIT).await;
    }
    // a5 is cancelled; a1 and b1 failed (and were submitted) hours ago.
    assert_eq!(
        app.send(
            reqwest::Method::DELETE,
            &format!("/webhooks/{}", ids["a5"]),
            None
        )
        .await
        .0,
        200
    );
    exec(
        &app.db,
        &format!(
            "UPDATE webhook_queue SET updated_at = now() - interval '2 hours', created_at = now() - interval '3 hours'
             WHERE queue_id IN ('{}', '{}')",
            ids["a1"], ids["b1"]
        ),
    )
    .await;
    let hour_ago =
        (Utc::now() - chrono::Duration::hours(1)).to_rfc3339_opts(SecondsFormat::Secs, true);

    assert_eq!(
        matched(&app, json!({})).await,
        6,
        "every failed entry but the cancelled one"
    );
    assert_eq!(matched(&app, json!({"status": "failed"})).await, 6);
    assert_eq!(matched(&app, json!({"config_id": a})).await, 4);
    assert_eq!(matched(&app, json!({"config_id": b})).await, 2);
    assert_eq!(
        matched(&app, json!({"config_id": a, "event_type": "-debit"})).await,
        1
    );
    assert_eq!(matched(&app, json!({"event_type": "+credit"})).await, 5);
    assert_eq!(matched(&app, json!({"failed_before": hour_ago})).await, 2);
    assert_eq!(matched(&app, json!({"failed_after": hour_ago})).await, 4);
    assert_eq!(
        matched(&app, json!({"created_before": hour_ago, "config_id": b})).await,
        1
    );
    assert_eq!(matched(&app, json!({"created_after": hour_ago})).await, 4);
    assert_eq!(matched(&app, json!({"limit": 5})).await, 5);
    // The CLI is the same function: it agrees with the API.
    let a_text = a.to_string();
    assert_eq!(
        cli(
            &app.db.url,
            &["redrive", "--dry-run", "--config-id", &a_text]
        )
        .await,
        "would redrive 4\n"
    );
    assert_eq!(
        cli(
            &app.db.url,
            &["redrive", "--dry-run", "--failed-before", &hour_ago]
        )
        .await,
        "would redrive 2\n"
    );
    assert_eq!(
        cli(
            &app.db.url,
            &[
                "redrive",
                "--dry-run",
                "--config-id",
                &a_text,
                "--event-type",
                "-debit"
            ]
        )
        .await,
        "would redrive 1\n"
    );
    // Dry runs changed nothing.
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_queue WHERE status = 'failed'")
            .await,
        7
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_attempt_history")
            .await,
        0
    );

    let counted = matched(&app, json!({"config_id": a, "failed_after": hour_ago})).await;
    let answer = redrive(&app, json!({"config_id": a, "failed_after": hour_ago})).await;
    assert_eq!(answer, json!({"dry_run": false, "redriven": counted}));
    assert_eq!(counted, 3);
    let again = redrive(&app, json!({"config_id": a, "failed_after": hour_ago})).await;
    assert_eq!(
        again,
        json!({"dry_run": false, "redriven": 0}),
        "a second run finds nothing failed"
    );
    for name in ["a2", "a3", "a4"] {
        let done = app.wait_for_status(&ids[name], "completed", WAIT).await;
        assert_eq!(
            attempt_list(&done),
            [(0, 0, Some(500)), (1, 0, Some(200))],
            "{name}"
        );
    }
    // Outside the filters: a1 (failed hours ago), b1, b2 (other partner), a5 (cancelled).
    for name in ["a1", "b1", "b2"] {
        let (_, entry) = app.get(&format!("/webhooks/{}", ids[name])).await;
        assert_eq!(entry["status"], "failed", "{name}");
    }

    // The rest through the CLI, in two runs because of --limit.
    assert_eq!(
        cli(&app.db.url, &["redrive", "--limit", "2"]).await,
        "redriven 2\n"
    );
    assert_eq!(cli(&app.db.url, &["redrive"]).await, "redriven 1\n");
    assert_eq!(
        cli(&app.db.url, &["redrive", "--dry-run"]).await,
        "would redrive 0\n"
    );
    for name in ["a1", "b1", "b2"] {
        app.wait_for_status(&ids[name], "completed", WAIT).await;
    }
    let (_, cancelled) = app.get(&format!("/webhooks/{}", ids["a5"])).await;
    assert_eq!(cancelled["status"], "failed");
    assert_eq!(attempt_list(&cancelled), [(0, 0, Some(500))]);
    assert_eq!(
        receiver.received_at("/flaky/1/a/5").len(),
        1,
        "a cancelled entry is never redriven"
    );
    let s = stats(&app).await;
    assert_eq!(
        (
            s["by_status"]["completed"].as_i64(),
            s["cancelled"].as_i64()
        ),
        (Some(6), Some(1))
    );
    assert_eq!(s["attempts"]["total"], 13);
    assert_stats_match_tables(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_walks_thousands_of_rows_in_batches_up_to_the_limit() {
    let app = spawn(Options::default()).await;
    let config = app
        .config("p", "http://127.0.0.1:9/pb", "http://127.0.0.1:9/cb")
        .await;
    exec(
        &app.db,
        &format!(
            "INSERT INTO webhook_queue (event_type, event_id, config_id, webhook_url, status, max_retries,
                 retry_0_started_at, retry_0_completed_at, retry_0_duration_ms, retry_0_http_status, retry_0_error)
             SELECT '+credit', 'e' || g, {config}, 'http://127.0.0.1:9/pb', 'failed', 0,
                    now(), now(), 7, 503, 'HTTP 503'
             FROM generate_series(1, 2500) g"
        ),
    )
    .await;
    assert_eq!(matched(&app, json!({})).await, 2500);
    assert_eq!(matched(&app, json!({"limit": 1500})).await, 1500);
    assert_eq!(
        redrive(&app, json!({"limit": 1500})).await,
        json!({"dry_run": false, "redriven": 1500})
    );
    assert_eq!(
        redrive(&app, json!({})).await,
        json!({"dry_run": false, "redriven": 1000})
    );
    assert_eq!(
        redrive(&app, json!({})).await,
        json!({"dry_run": false, "redriven": 0})
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_queue WHERE status = 'pending'")
            .await,
        2500
    );
    assert_eq!(
        app.db
            .count("SELECT count(DISTINCT queue_id) FROM webhook_attempt_history WHERE cycle = 0 AND attempt = 0")
            .await,
        2500
    );
    let s = stats(&app).await;
    assert_eq!(s["by_status"]["pending"], 2500);
    assert_eq!(s["attempts"]["total"], 2500);
    assert_stats_match_tables(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_refuses_bad_requests_naming_the_field() {
    let app = spawn(Options::default()).await;
    for (body, field) in [
        (json!({"bogus": 1}), "bogus"),
        (json!({"status": "pending"}), "status"),
        (json!({"status": "finished"}), "status"),
        (json!({"config_id": "1"}), "config_id"),
        (json!({"event_type": "credit"}), "event_type"),
        (json!({"failed_after": "yesterday"}), "failed_after"),
        (json!({"created_before": 12}), "created_before"),
        (json!({"dry_run": "yes"}), "dry_run"),
        (json!({"limit": 0}), "limit"),
        (json!({"limit": 100_001}), "limit"),
        (
            json!({"failed_after": "2026-11-28T10:00:00Z", "failed_before": "2026-11-28T09:00:00Z"}),
            "failed_before",
        ),
    ] {
        let (status, answer) = app.post("/webhooks/redrive", body.clone()).await;
        assert_eq!(status, 422, "{body} -> {answer}");
        assert_eq!(answer["error"]["code"], "validation_failed");
        assert_eq!(answer["error"]["field"], field, "{body} -> {answer}");
    }
    let (status, _) = app.post("/webhooks/redrive", json!([])).await;
    assert_eq!(status, 422);
    let response = app
        .http
        .post(app.url("/webhooks/redrive"))
        .header("Content-Type", "application/json")
        .body("{\"dry_run\": ")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 400);
    let response = app
        .http
        .post(app.url("/webhooks/redrive"))
        .body("dry_run=true")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 415);
    // Every field is optional: an empty body redrives every failed entry (none here).
    assert_eq!(
        redrive(&app, json!({})).await,
        json!({"dry_run": false, "redriven": 0})
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_entry_cancelled_while_a_worker_calls_it_is_never_called_again() {
    let receiver = Receiver::start().await;
    let app = spawn(
        Options::with_workers()
            .env("RETRY_BASE_DELAY", "50ms")
            .env("RETRY_MAX_DELAY", "100ms"),
    )
    .await;
    // Every call fails after 800 ms: without the cancel, the entry would be tried 4 times.
    let (_, config) = app
        .post(
            "/webhook-configs",
            json!({"name": "slow", "postback_url": receiver.url("/slow-fail/800/{who}"), "max_retries": 3}),
        )
        .await;
    let victim = id(&app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {"who": "victim"}}))
        .await);
    let control = id(&app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {"who": "control"}}))
        .await);
    receiver.wait_for("/slow-fail/800/victim", 1, WAIT).await;

    let (status, cancelled) = app
        .send(
            reqwest::Method::DELETE,
            &format!("/webhooks/{victim}"),
            None,
        )
        .await;
    assert_eq!(status, 200, "{cancelled}");
    assert!(cancelled["cancelled_at"].is_string());
    assert_eq!(
        cancelled["status"], "processing",
        "the cancel landed while the call was in flight"
    );

    // The control entry's four attempts take several retry delays: the victim's retries would
    // all have happened by then.
    app.wait_for_status(&control, "failed", WAIT).await;
    assert_eq!(receiver.received_at("/slow-fail/800/control").len(), 4);
    assert_eq!(
        receiver.received_at("/slow-fail/800/victim").len(),
        1,
        "called again after the cancel"
    );

    let (_, entry) = app.get(&format!("/webhooks/{victim}")).await;
    assert!(entry["cancelled_at"].is_string());
    let attempts = attempt_list(&entry);
    assert!(
        attempts.is_empty() || attempts == [(0, 0, Some(400))],
        "{entry:#}"
    );
    let s = stats(&app).await;
    assert_eq!(s["cancelled"], 1, "{s:#}");
    assert_eq!(s["total"], 1, "only the control entry is live: {s:#}");
    assert_eq!(s["by_status"]["failed"], 1);
    assert_stats_match_tables(&app).await;
    app.shutdown().await;
}

fn settings(completed: Option<Duration>, failed: Option<Duration>) -> RetentionSettings {
    RetentionSettings {
        completed,
        failed,
        interval: Duration::from_secs(60),
    }
}

async fn prune(app: &TestApp, settings: &RetentionSettings) -> Pass {
    retention::prune_once(
        &app.db.url,
        settings,
        Duration::from_secs(5),
        &CancellationToken::new(),
    )
    .await
    .expect("pruning runs")
}

async fn queue_ids(db: &TestDb) -> BTreeSet<String> {
    db.client()
        .await
        .query("SELECT queue_id::text FROM webhook_queue", &[])
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_exactly_the_rows_past_their_age_with_their_history_and_keeps_stats_true()
{
    let app = spawn(Options::default()).await;
    let config = app
        .config("p", "http://127.0.0.1:9/pb", "http://127.0.0.1:9/cb")
        .await;
    let mut ids = std::collections::HashMap::new();
    for name in [
        "completed_old",
        "completed_new",
        "failed_old",
        "failed_new",
        "cancelled_old",
        "cancelled_new",
        "cancelled_in_flight",
        "cancelled_abandoned",
        "pending_old",
    ] {
        let entry = app
            .submit(json!({"event_type": "+credit", "event_id": name, "config_id": config, "url_params": {}}))
            .await;
        ids.insert(name, id(&entry));
    }
    // Old and new failures with a retry cycle in their history.
    for name in ["failed_old", "failed_new"] {
        make_failed(&app.db, &ids[name], 2).await;
        assert_eq!(retry(&app, &ids[name]).await.0, 200);
        make_failed(&app.db, &ids[name], 1).await;
    }
    make_failed(&app.db, &ids["cancelled_old"], 1).await;
    let by_name = |name: &str| format!("queue_id = '{}'", ids[name]);
    for sql in [
        format!(
            "UPDATE webhook_queue SET status = 'completed', retry_0_started_at = now() - interval '2 hours',
             retry_0_completed_at = now() - interval '2 hours', retry_0_http_status = 200, retry_0_duration_ms = 5,
             completed_at = now() - interval '2 hours' WHERE {}",
            by_name("completed_old")
        ),
        format!(
            "UPDATE webhook_queue SET status = 'completed', completed_at = now() - interval '30 minutes' WHERE {}",
            by_name("completed_new")
        ),
        format!("UPDATE webhook_queue SET updated_at = now() - interval '3 hours' WHERE {}", by_name("failed_old")),
        format!("UPDATE webhook_queue SET updated_at = now() - interval '1 hour' WHERE {}", by_name("failed_new")),
        format!("UPDATE webhook_queue SET deleted_at = now() - interval '3 hours' WHERE {}", by_name("cancelled_old")),
        format!("UPDATE webhook_queue SET deleted_at = now() - interval '1 hour' WHERE {}", by_name("cancelled_new")),
        format!(
            "UPDATE webhook_queue SET status = 'processing', worker_id = 'w', locked_at = now(),
             lock_expires_at = now() + interval '1 minute', deleted_at = now() - interval '3 hours' WHERE {}",
            by_name("cancelled_in_flight")
        ),
        format!(
            "UPDATE webhook_queue SET status = 'processing', worker_id = 'w', locked_at = now() - interval '4 hours',
             lock_expires_at = now() - interval '4 hours', deleted_at = now() - interval '3 hours' WHERE {}",
            by_name("cancelled_abandoned")
        ),
        format!(
            "UPDATE webhook_queue SET created_at = now() - interval '10 days', updated_at = now() - interval '10 days'
             WHERE {}",
            by_name("pending_old")
        ),
        "INSERT INTO webhook_throughput (second, shard, completed, failed) VALUES
             (date_trunc('second', now() - interval '25 hours'), 0, 3, 1),
             (date_trunc('second', now() - interval '1 hour'), 0, 2, 0)"
            .to_string(),
    ] {
        assert!(exec(&app.db, &sql).await >= 1, "{sql}");
    }
    assert_stats_match_tables(&app).await;
    let attempts_before = stats(&app).await["attempts"]["total"].as_i64().unwrap();
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_attempt_history")
            .await,
        4
    );

    // 0s keeps rows forever: only the day-old throughput row goes.
    assert_eq!(
        prune(&app, &settings(None, None)).await,
        Pass::Done(Pruned {
            throughput: 1,
            ..Pruned::default()
        })
    );
    assert_eq!(queue_ids(&app.db).await.len(), 9);

    let hour = Duration::from_secs(3600);
    let pass = prune(&app, &settings(Some(hour), Some(2 * hour))).await;
    assert_eq!(
        pass,
        Pass::Done(Pruned {
            completed: 1,
            failed: 1,
            cancelled: 2,
            archived_attempts: 2,
            ..Pruned::default()
        })
    );
    let kept: BTreeSet<String> = [
        "completed_new",
        "failed_new",
        "cancelled_new",
        "cancelled_in_flight",
        "pending_old",
    ]
    .iter()
    .map(|name| ids[name].clone())
    .collect();
    assert_eq!(queue_ids(&app.db).await, kept);
    assert_eq!(
        app.db
            .count(&format!(
                "SELECT count(*) FROM webhook_attempt_history WHERE queue_id = '{}'",
                ids["failed_new"]
            ))
            .await,
        2,
        "a kept entry keeps its history"
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_attempt_history")
            .await,
        2
    );
    assert_eq!(
        app.db
            .count("SELECT count(*) FROM webhook_throughput WHERE second < now() - interval '30 minutes'")
            .await,
        1,
        "the hour-old throughput row stays, the day-old one went"
    );
    // The deleted rows and their attempts (1 + 2 archived + 1 + 1) left the counters with them.
    assert_stats_match_tables(&app).await;
    let s = stats(&app).await;
    assert_eq!(
        s["attempts"]["total"].as_i64().unwrap(),
        attempts_before - 5
    );
    assert_eq!(
        (s["total"].as_i64(), s["cancelled"].as_i64()),
        (Some(3), Some(2))
    );

    assert_eq!(
        prune(&app, &settings(Some(hour), Some(2 * hour))).await,
        Pass::Done(Pruned::default())
    );
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_one_process_prunes_at_a_time_and_the_worker_prunes_once_the_lock_is_free() {
    let receiver = Receiver::start().await;
    let db = TestDb::new().await;
    // Another process is pruning: it holds the lock.
    let holder = db.client().await;
    holder
        .execute(
            "SELECT pg_advisory_lock($1)",
            &[&webhookd::store::queue::retention::LOCK_KEY],
        )
        .await
        .unwrap();
    let app = common::spawn_on(
        db,
        Options::with_workers()
            .env("RETENTION_COMPLETED", "1s")
            .env("RETENTION_INTERVAL", "100ms"),
    )
    .await;
    let config = app
        .config("p", &receiver.url("/ok/pb"), &receiver.url("/ok/cb"))
        .await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
        .await;
    let queue_id = id(&entry);
    app.wait_for_status(&queue_id, "completed", WAIT).await;
    exec(
        &app.db,
        &format!("UPDATE webhook_queue SET completed_at = now() - interval '1 hour' WHERE queue_id = '{queue_id}'"),
    )
    .await;

    let short = settings(Some(Duration::from_secs(1)), Some(Duration::from_secs(1)));
    assert_eq!(prune(&app, &short).await, Pass::Busy);
    let skipped = |logs: &common::LogCapture| {
        logs.lines()
            .iter()
            .filter(|l| l["msg"] == "another process is pruning; pass skipped")
            .count()
    };
    let seen = skipped(&app.logs);
    eventually(WAIT, "the worker's pruner to skip three passes", || async {
        skipped(&app.logs) >= seen + 3
    })
    .await;
    assert_eq!(
        app.db.count("SELECT count(*) FROM webhook_queue").await,
        1,
        "pruned without the lock"
    );

    holder
        .execute(
            "SELECT pg_advisory_unlock($1)",
            &[&webhookd::store::queue::retention::LOCK_KEY],
        )
        .await
        .unwrap();
    eventually(
        WAIT,
        "the worker's pruner to delete the old row",
        || async { app.db.count("SELECT count(*) FROM webhook_queue").await == 0 },
    )
    .await;
    let pruned_line = || {
        app.logs
            .lines()
            .into_iter()
            .find(|l| l["msg"] == "pruned old rows")
    };
    eventually(WAIT, "the pass that pruned to say so", || async {
        pruned_line().is_some()
    })
    .await;
    let pruned = pruned_line().unwrap();
    assert_eq!(pruned["completed"], 1, "{pruned}");
    assert_stats_match_tables(&app).await;
    let s = stats(&app).await;
    assert_eq!(
        (s["total"].as_i64(), s["attempts"]["total"].as_i64()),
        (Some(0), Some(0))
    );
    app.shutdown().await;
}

// ---------------------------------------------------------------------------------------------
// The statistics counters under changes made by hand

/// Whatever an operator changes by hand — status, attempts, partner, event type, cancellation,
/// even a row's id — the counters behind the statistics stay exactly what the rows say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_stay_exact_through_every_kind_of_change_by_hand() {
    let app = spawn(Options::default()).await;
    let a = app
        .config("a", "http://127.0.0.1:1/a", "http://127.0.0.1:1/a")
        .await;
    let b = app
        .config("b", "http://127.0.0.1:1/b", "http://127.0.0.1:1/b")
        .await;
    for n in 0..7 {
        app.submit(json!({"event_type": "+credit", "event_id": format!("e{n}"), "config_id": a}))
            .await;
    }
    assert_counters_exact(&app.db, "submits").await;
    let steps = [
        // What a claim does: pending to processing, no attempt.
        "UPDATE webhook_queue SET status = 'processing', worker_id = 'w', locked_at = now(),
             lock_expires_at = now() + interval '1 minute' WHERE event_id IN ('e0', 'e1', 'e2')"
            .to_string(),
        // What an outcome write does: processing to completed, with the attempt.
        "UPDATE webhook_queue SET status = 'completed', completed_at = now(), locked_at = NULL,
             retry_0_started_at = now(), retry_0_completed_at = now(), retry_0_duration_ms = 130,
             retry_0_http_status = 200
         WHERE event_id = 'e0'"
            .to_string(),
        // An attempt corrected, the status unchanged.
        "UPDATE webhook_queue SET retry_0_http_status = 503, retry_0_duration_ms = 2500
         WHERE event_id = 'e0'"
            .to_string(),
        // Nothing that is counted.
        "UPDATE webhook_queue SET updated_at = now(), lock_expires_at = now() + interval '2 minutes'
         WHERE event_id IN ('e1', 'e2')"
            .to_string(),
        // Another partner, another event type, the status unchanged.
        format!("UPDATE webhook_queue SET config_id = {b} WHERE event_id = 'e3'"),
        "UPDATE webhook_queue SET event_type = '-debit' WHERE event_id = 'e4'".to_string(),
        // Cancelled; then the cancelled row's status changed.
        "UPDATE webhook_queue SET deleted_at = now() WHERE event_id = 'e5'".to_string(),
        "UPDATE webhook_queue SET status = 'failed' WHERE event_id = 'e5'".to_string(),
        // A new id (the rows are paired by id).
        "UPDATE webhook_queue SET id = id + 1000, status = 'pending', locked_at = NULL WHERE event_id = 'e2'"
            .to_string(),
        // A new id and another outcome for the recorded attempt.
        "UPDATE webhook_queue SET id = id + 2000, retry_0_http_status = 204 WHERE event_id = 'e0'"
            .to_string(),
        // Inserted with an attempt already recorded.
        format!(
            "INSERT INTO webhook_queue (queue_id, event_type, event_id, config_id, webhook_url, url_params,
                 max_retries, status, completed_at, retry_0_started_at, retry_0_completed_at,
                 retry_0_duration_ms, retry_0_http_status)
             VALUES (gen_random_uuid(), '+credit', 'h1', {a}, 'http://127.0.0.1:1/a', '{{}}', 3,
                 'completed', now(), now(), now(), 40, 204)"
        ),
        "DELETE FROM webhook_queue WHERE event_id IN ('e1', 'h1')".to_string(),
    ];
    for step in &steps {
        assert!(exec(&app.db, step).await > 0, "changes rows: {step}");
        assert_counters_exact(&app.db, step).await;
    }
    // Rows that reached completed (e0) or failed (e5, cancelled) by an update, once each.
    assert_eq!(throughput_totals(&app.db).await, (1, 1));
}

/// Rows counted as reaching completed and failed, over all of `webhook_throughput`.
async fn throughput_totals(db: &TestDb) -> (i64, i64) {
    let row = db
        .client()
        .await
        .query_one(
            "SELECT coalesce(sum(completed), 0)::int8, coalesce(sum(failed), 0)::int8
             FROM webhook_throughput",
            &[],
        )
        .await
        .unwrap();
    (row.get(0), row.get(1))
}

/// The insert of new rows and the claim count themselves, and the count triggers stand aside
/// for them (sql/rules/01_statement_markers.sql): through single and batch submits, a repeated event, claims of
/// due rows and of an expired lease, successes, retries and failures, the counters stay exactly
/// what the rows say. A change made after a self-counting statement in the same transaction is
/// still counted by the triggers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statements_that_count_themselves_keep_the_counters_exact() {
    let receiver = Receiver::start().await;
    let env = |options: Options| {
        options
            .env("RETRY_BASE_DELAY", "20ms")
            .env("RETRY_MAX_DELAY", "40ms")
    };
    let app = spawn(env(Options::default())).await;
    let ok = app
        .config(
            "ok",
            &receiver.url("/ok/{n}"),
            &receiver.url("/ok/debit/{n}"),
        )
        .await;
    let (_, failing) = app
        .post(
            "/webhook-configs",
            json!({"name": "failing", "postback_url": receiver.url("/status/400/{n}"), "max_retries": 1}),
        )
        .await;
    let failing = failing["id"].as_i64().unwrap();
    for n in 0..3 {
        app.submit(
            json!({"event_type": "+credit", "event_id": format!("e{n}"), "config_id": ok,
            "url_params": {"n": n.to_string()}}),
        )
        .await;
    }
    app.submit(json!({"event_type": "-debit", "event_id": "d0", "config_id": ok, "url_params": {"n": "0"}}))
        .await;
    let events: Vec<Value> = (0..3)
        .map(|n| json!({"event_type": "+credit", "event_id": format!("f{n}"), "config_id": failing,
            "url_params": {"n": n.to_string()}}))
        .chain([json!({"event_type": "+credit", "event_id": "e1", "config_id": ok, "url_params": {"n": "1"}})])
        .collect();
    let (status, body) = app
        .post("/webhooks/batch", json!({ "events": events }))
        .await;
    assert_eq!(status, 200, "{body}");
    let statuses: Vec<u64> = body["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["status"].as_u64().unwrap())
        .collect();
    assert_eq!(statuses, [201, 201, 201, 200], "the last one repeats e1");
    assert_counters_exact(&app.db, "single and batch submits, one repeated").await;

    // A worker that died holding e0: its lease has run out. Made by hand, in a transaction whose
    // first statement counted itself.
    let mut client = app.db.client().await;
    let tx = client.transaction().await.unwrap();
    tx.execute("SELECT webhook_statement_counts_itself()", &[])
        .await
        .unwrap();
    let leased = tx
        .execute(
            "UPDATE webhook_queue SET status = 'processing', worker_id = 'dead-w0',
                 locked_at = now() - interval '1 minute', lock_expires_at = now() - interval '1 second'
             WHERE event_id = 'e0'",
            &[],
        )
        .await
        .unwrap();
    tx.commit().await.unwrap();
    assert_eq!(leased, 1);
    assert_counters_exact(&app.db, "a change by hand after a self-counting statement").await;

    let db = app.shutdown().await;
    let app = common::spawn_on(db, env(Options::with_workers())).await;
    eventually(
        Duration::from_secs(10),
        "every entry delivered or failed",
        || async {
            app.db
            .count("SELECT count(*) FROM webhook_queue WHERE status NOT IN ('completed', 'failed')")
            .await
            == 0
        },
    )
    .await;
    let db = app.shutdown().await;
    assert_eq!(
        db.count(
            "SELECT count(*) FROM webhook_queue WHERE event_id = 'e0' AND status = 'completed'
             AND worker_id <> 'dead-w0'"
        )
        .await,
        1,
        "the expired lease was taken over"
    );
    assert_eq!(
        db.count("SELECT count(*) FROM webhook_queue WHERE status = 'failed' AND retry_count = 1")
            .await,
        3,
        "the failing partner's events were tried twice"
    );
    assert_counters_exact(&db, "claims, takeover, outcomes").await;
    assert_eq!(throughput_totals(&db).await, (4, 3));
    receiver.stop().await;
}

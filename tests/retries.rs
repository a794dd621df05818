//! Operating on failed entries: a manual retry with its history, bulk redrive (API and CLI),
//! and cancelling an entry while a worker calls it — against a real PostgreSQL and a real
//! receiver on loopback.

mod common;

use std::time::Duration;

use chrono::{SecondsFormat, Utc};
use common::counters::{assert_stats_match_tables, stats};
use common::fixture::{self, one_credit, unreachable, Made, Partner, RowState};
use common::http::assert_refusal_mentions;
use common::scenario::delivering;
use common::{spawn, Options, TestApp};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(10);
const BIN: &str = env!("CARGO_BIN_EXE_webhookd");

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
    // A poll far beyond the test's whole wait: only the NOTIFY sent by the retry can wake a
    // worker in time.
    let (receiver, app) = delivering("WORKER_POLL_INTERVAL=1h RETRY_BASE_DELAY=20ms").await;
    let entry = one_credit(&app, "flaky", &receiver.url("/rejects/2/retry"), 1).await;
    let queue_id = fixture::queue_id(&entry);
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
    let config = unreachable(&app, "p").await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
        .await;
    let queue_id = fixture::queue_id(&entry);

    let answer = retry(&app, &queue_id).await;
    assert_refusal_mentions(&answer, 409, "pending");
    assert_eq!(answer.1["error"]["code"], "conflict");
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

    RowState::failed_after(3).apply(&app.db, &[&queue_id]).await;
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
    RowState::failed_after(1).apply(&app.db, &[&queue_id]).await;
    assert_eq!(retry(&app, &queue_id).await.0, 200);
    RowState::failed_after(2).apply(&app.db, &[&queue_id]).await;
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
    app.db.exec(&format!("UPDATE webhook_queue SET status = 'completed', completed_at = now() WHERE queue_id = '{queue_id}'"))
    .await;
    let answer = retry(&app, &queue_id).await;
    assert_refusal_mentions(&answer, 409, "completed");
    let other = fixture::queue_id(
        &app.submit(json!({"event_type": "-debit", "config_id": config, "url_params": {}}))
            .await,
    );
    RowState::failed_after(1).apply(&app.db, &[&other]).await;
    assert_eq!(
        app.send(reqwest::Method::DELETE, &format!("/webhooks/{other}"), None)
            .await
            .0,
        200
    );
    let answer = retry(&app, &other).await;
    assert_refusal_mentions(&answer, 409, "cancelled");
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
    let (receiver, app) = delivering("").await;
    // Each event's URL fails on its first call and succeeds on the next; no automatic retries.
    let a = Partner::new("a")
        .postback(&receiver.url("/flaky/1/a/{n}"))
        .chargeback(&receiver.url("/flaky/1/a-debit/{n}"))
        .max_retries(0)
        .create(&app)
        .await;
    let b = Partner::new("b")
        .postback(&receiver.url("/flaky/1/b/{n}"))
        .max_retries(0)
        .create(&app)
        .await;
    let mut ids = std::collections::HashMap::new();
    // a1 and b1 first: they are made hours older below, and ids rise with creation time.
    for (name, config, event_type, n) in [
        ("a1", a, "+credit", 1),
        ("b1", b, "+credit", 1),
        ("a2", a, "+credit", 2),
        ("a3", a, "+credit", 3),
        ("a4", a, "-debit", 4),
        ("a5", a, "+credit", 5),
        ("b2", b, "+credit", 2),
    ] {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config, "url_params": {"n": n}}))
            .await;
        ids.insert(name, fixture::queue_id(&entry));
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
    app.db.exec(&format!(
            "UPDATE webhook_queue SET updated_at = now() - interval '2 hours', created_at = now() - interval '3 hours'
             WHERE queue_id IN ('{}', '{}')",
            ids["a1"], ids["b1"]
        ))
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
    for (filters, answer) in [
        (vec!["--config-id", &a_text], "would redrive 4\n"),
        (vec!["--failed-before", &hour_ago], "would redrive 2\n"),
        (
            vec!["--config-id", &a_text, "--event-type", "-debit"],
            "would redrive 1\n",
        ),
    ] {
        let args = [vec!["redrive", "--dry-run"], filters].concat();
        assert_eq!(cli(&app.db.url, &args).await, answer, "{args:?}");
    }
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
    let counted = (
        s["by_status"]["completed"].as_i64(),
        s["cancelled"].as_i64(),
        s["attempts"]["total"].as_i64(),
    );
    assert_eq!(counted, (Some(6), Some(1), Some(13)));
    assert_stats_match_tables(&app).await;
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redrive_walks_thousands_of_rows_in_batches_up_to_the_limit() {
    let app = spawn(Options::default()).await;
    let config = unreachable(&app, "p").await;
    app.db
        .exec(&format!(
            "INSERT INTO webhook_queue (event_type, event_id, config_id, webhook_url, max_retries)
             SELECT '+credit', 'e' || g, {config}, 'http://127.0.0.1:9/pb', 0
             FROM generate_series(1, 2500) g"
        ))
        .await;
    RowState::status("failed")
        .attempts([Made::answered(503, 7).error("HTTP 503")])
        .apply_where(&app.db, "true")
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
    let (receiver, app) = delivering("RETRY_BASE_DELAY=50ms RETRY_MAX_DELAY=100ms").await;
    // Every call fails after 800 ms: without the cancel, the entry would be tried 4 times.
    let (_, config) = app
        .post(
            "/webhook-configs",
            json!({"name": "slow", "postback_url": receiver.url("/slow-fail/800/{who}"), "max_retries": 3}),
        )
        .await;
    let victim = fixture::queue_id(&app
        .submit(json!({"event_type": "+credit", "config_id": config["id"], "url_params": {"who": "victim"}}))
        .await);
    let control = fixture::queue_id(&app
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

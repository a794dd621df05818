//! Statistics against a real PostgreSQL: every key of an empty queue, counts that agree with
//! the rows, and `webhookd stats` printing what the API answers.

mod common;

use common::fixture::{queue_id, Made, RowState};
use common::http::*;
use common::{spawn, Options, TestApp};
use serde_json::{json, Value};

/// Rows in every state, made as workers and the API make them, for the stats tests: 12 entries
/// over two configs; 4 completed (one after two failed attempts), 2 failed (one of them then
/// cancelled), 2 processing, 1 more cancelled, the rest pending (one of them an hour old).
async fn rows_in_every_state(app: &TestApp) {
    let alpha = app.config("alpha", "http://h/pb", "http://h/cb").await;
    let beta = json!({"name": "beta", "postback_url": "http://h/b"});
    let beta = app.post("/webhook-configs", beta).await.1["id"]
        .as_i64()
        .unwrap();
    let kinds = [(alpha, "+credit"); 6]
        .into_iter()
        .chain([(alpha, "-debit"); 3])
        .chain([(beta, "+credit"); 3]);
    let mut e = Vec::new();
    for (config, event_type) in kinds {
        let entry = app
            .submit(json!({"event_type": event_type, "config_id": config}))
            .await;
        e.push(queue_id(&entry));
    }
    RowState::status("completed")
        .attempts([Made::answered(200, 12)])
        .apply(&app.db, &[&e[0], &e[1], &e[9]])
        .await;
    RowState::status("completed")
        .attempts([
            Made::answered(500, 40),
            Made::unanswered("timed out", 80),
            Made::answered(204, 7),
        ])
        .set("retry_count = 2")
        .apply(&app.db, &[&e[6]])
        .await;
    RowState::status("failed")
        .attempts([Made::answered(503, 30), Made::answered(500, 55)])
        .set("max_retries = 1, retry_count = 1")
        .apply(&app.db, &[&e[2], &e[7]])
        .await;
    RowState::status("processing")
        .attempts([Made::in_flight()])
        .set("worker_id = 'test-1', locked_at = now(), lock_expires_at = now() + interval '5 minutes'")
        .apply(&app.db, &[&e[3], &e[10]])
        .await;
    RowState::unchanged()
        .set("created_at = now() - interval '1 hour'")
        .apply(&app.db, &[&e[5]])
        .await;
    for cancelled in [&e[4], &e[7]] {
        assert_eq!(delete(app, &format!("/webhooks/{cancelled}")).await.0, 200);
    }
}

/// Live (not cancelled) rows of `webhook_queue` matching `condition`, by status, as an object
/// with all four statuses.
async fn status_counts(app: &TestApp, condition: &str) -> Value {
    let sql = format!(
        "SELECT status, count(*) FROM webhook_queue
         WHERE deleted_at IS NULL AND {condition} GROUP BY status"
    );
    let mut counts = json!({"pending": 0, "processing": 0, "completed": 0, "failed": 0});
    for row in app.db.client().await.query(&sql, &[]).await.unwrap() {
        counts[row.get::<_, String>(0)] = json!(row.get::<_, i64>(1));
    }
    counts
}

/// completed ÷ (completed + failed), null when both are 0.
fn success_rate(counts: &Value) -> Value {
    let completed = counts["completed"].as_i64().unwrap();
    let failed = counts["failed"].as_i64().unwrap();
    if completed + failed == 0 {
        Value::Null
    } else {
        json!(completed as f64 / (completed + failed) as f64)
    }
}

/// Every recorded attempt (a non-null `retry_N_completed_at`): its duration and whether the
/// partner answered 2xx.
async fn recorded_attempts(app: &TestApp) -> Vec<(i64, bool)> {
    let client = app.db.client().await;
    let mut all = Vec::new();
    for n in 0..=6 {
        let sql = format!(
            "SELECT coalesce(retry_{n}_duration_ms, 0),
                    coalesce(retry_{n}_http_status BETWEEN 200 AND 299, false)
             FROM webhook_queue WHERE retry_{n}_completed_at IS NOT NULL"
        );
        let rows = client.query(&sql, &[]).await.unwrap();
        all.extend(
            rows.iter()
                .map(|r| (r.get::<_, i64>(0), r.get::<_, bool>(1))),
        );
    }
    all
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_of_an_empty_queue_have_every_key_and_nothing_counted() {
    let app = spawn(Options::default()).await;
    let (status, stats) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200);
    let zeros = json!({"pending": 0, "processing": 0, "completed": 0, "failed": 0});
    assert_eq!(stats["total"], 0);
    assert_eq!(stats["by_status"], zeros);
    assert_eq!(stats["cancelled"], 0);
    assert_eq!(
        stats["by_event_type"],
        json!({"+credit": zeros, "-debit": zeros})
    );
    assert!(stats["success_rate"].is_null());
    assert!(stats["oldest_pending_age_seconds"].is_null());
    assert_eq!(stats["completed_last_minute"], 0);
    assert_eq!(stats["by_partner"], json!([]));
    let no_attempts = json!({"total": 0, "succeeded": 0, "failed": 0, "avg_duration_ms": null,
        "p50_duration_ms": null, "p95_duration_ms": null, "p99_duration_ms": null});
    assert_eq!(stats["attempts"], no_attempts);
    assert_rfc3339_utc(&stats["generated_at"], "generated_at");
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_agree_with_the_rows() {
    let app = spawn(Options::default()).await;
    rows_in_every_state(&app).await;
    let (status, stats) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200, "{stats}");
    let client = app.db.client().await;

    // Rows: by status, by event type, cancelled apart.
    let by_status = status_counts(&app, "true").await;
    let fixture = json!({"pending": 3, "processing": 2, "completed": 4, "failed": 1});
    assert_eq!(by_status, fixture, "the fixture");
    assert_eq!(stats["by_status"], by_status);
    let live = app
        .db
        .count("SELECT count(*) FROM webhook_queue WHERE deleted_at IS NULL")
        .await;
    assert_eq!(stats["total"], live);
    let sum: i64 = STATUSES
        .iter()
        .map(|s| by_status[s].as_i64().unwrap())
        .sum();
    assert_eq!(stats["total"], sum);
    let cancelled = app
        .db
        .count("SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL")
        .await;
    assert_eq!(cancelled, 2, "the fixture");
    assert_eq!(stats["cancelled"], cancelled);
    for event_type in EVENT_TYPES {
        let expected = status_counts(&app, &format!("event_type = '{event_type}'")).await;
        assert_eq!(stats["by_event_type"][event_type], expected, "{event_type}");
    }
    assert_eq!(stats["by_event_type"].as_object().unwrap().len(), 2);
    assert_eq!(stats["success_rate"], success_rate(&by_status));
    assert_eq!(stats["success_rate"], 0.8);

    // Per partner.
    let mut partners = Vec::new();
    for partner in client
        .query("SELECT id, name FROM webhook_configs ORDER BY id", &[])
        .await
        .unwrap()
    {
        let id: i64 = partner.get(0);
        let counts = status_counts(&app, &format!("config_id = {id}")).await;
        let sql = format!(
            "SELECT count(*) FROM webhook_queue WHERE deleted_at IS NOT NULL AND config_id = {id}"
        );
        let held = format!(
            "SELECT count(*) FROM webhook_queue WHERE held_reason LIKE 'partner_%' AND config_id = {id}"
        );
        let state: String = client
            .query_one(
                "SELECT state FROM webhook_partner_state WHERE config_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .get(0);
        partners.push(json!({"config_id": id, "name": partner.get::<_, String>(1), "by_status": counts,
                             "cancelled": app.db.count(&sql).await, "success_rate": success_rate(&counts),
                             "state": state, "reason": null, "held": app.db.count(&held).await}));
    }
    assert_eq!(stats["by_partner"], json!(partners));

    // Attempts: one per non-null retry_N_completed_at, succeeded when the status was 2xx.
    let attempts = recorded_attempts(&app).await;
    let total = attempts.len() as i64;
    let succeeded = attempts.iter().filter(|(_, ok)| *ok).count() as i64;
    assert_eq!((total, succeeded), (10, 4), "the fixture");
    let a = &stats["attempts"];
    assert_eq!(a["total"], total);
    assert_eq!(a["succeeded"], succeeded);
    assert_eq!(a["failed"], total - succeeded);
    let avg = attempts.iter().map(|(ms, _)| ms).sum::<i64>() as f64 / total as f64;
    let reported = a["avg_duration_ms"].as_f64().unwrap();
    assert!((reported - avg).abs() <= 0.05, "avg {avg} vs {a}");
    let mut durations: Vec<i64> = attempts.iter().map(|(ms, _)| *ms).collect();
    durations.sort();
    for (key, q) in [
        ("p50_duration_ms", 0.50),
        ("p95_duration_ms", 0.95),
        ("p99_duration_ms", 0.99),
    ] {
        // Nearest rank: the smallest duration at or above the fraction q of all attempts.
        let rank = ((q * total as f64).ceil() as usize).max(1);
        assert_eq!(a[key], durations[rank - 1], "{key}: {durations:?}");
    }

    // The moments: the oldest pending row is the hour-old one; four rows completed just now.
    let oldest: f64 = client
        .query_one(
            "SELECT extract(epoch FROM now() - min(created_at))::float8 FROM webhook_queue
             WHERE status = 'pending' AND deleted_at IS NULL",
            &[],
        )
        .await
        .unwrap()
        .get(0);
    let age = stats["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((age - oldest).abs() < 5.0, "{age} vs {oldest}");
    assert!((3595.0..3700.0).contains(&age), "about an hour: {age}");
    let recent = "SELECT count(*) FROM webhook_queue
                  WHERE status = 'completed' AND completed_at > now() - interval '1 minute'";
    assert_eq!(stats["completed_last_minute"], app.db.count(recent).await);
    assert_eq!(stats["completed_last_minute"], 4);
    assert_rfc3339_utc(&stats["generated_at"], "generated_at");

    // Moving rows keeps the counters right: every pending row is cancelled, and a processing
    // row completes.
    let pending = client
        .query("SELECT queue_id::text FROM webhook_queue WHERE status = 'pending' AND deleted_at IS NULL", &[])
        .await
        .unwrap();
    for row in pending {
        let queue_id: String = row.get(0);
        assert_eq!(delete(&app, &format!("/webhooks/{queue_id}")).await.0, 200);
    }
    client
        .execute(
            "UPDATE webhook_queue SET status = 'completed', completed_at = now(), locked_at = NULL
             WHERE id = (SELECT min(id) FROM webhook_queue WHERE status = 'processing')",
            &[],
        )
        .await
        .unwrap();
    let (_, stats) = app.get("/webhooks/stats").await;
    let by_status = status_counts(&app, "true").await;
    assert_eq!(
        by_status,
        json!({"pending": 0, "processing": 1, "completed": 5, "failed": 1})
    );
    assert_eq!(stats["by_status"], by_status);
    assert_eq!(stats["cancelled"], 5);
    assert!(stats["oldest_pending_age_seconds"].is_null());
    assert_eq!(stats["completed_last_minute"], 5);
    for status in STATUSES {
        let sum: i64 = EVENT_TYPES
            .iter()
            .map(|t| stats["by_event_type"][t][status].as_i64().unwrap())
            .sum();
        assert_eq!(
            stats["by_status"][status], sum,
            "{status}: by_event_type adds up"
        );
    }
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhookd_stats_prints_what_the_api_answers() {
    let app = spawn(Options::default()).await;
    rows_in_every_state(&app).await;
    let db_url = app.db.url.clone();

    let (ok, stdout, stderr) = webhookd(&["stats", "--json", "--database-url", &db_url]).await;
    assert!(ok, "webhookd stats --json failed: {stderr}");
    let mut cli: Value = serde_json::from_str(&stdout)
        .unwrap_or_else(|e| panic!("stdout is one JSON document ({e}): {stdout}"));
    let (_, mut api) = app.get("/webhooks/stats").await;
    // The age of the oldest pending row moves with the clock: compare it loosely.
    let cli_age = cli["oldest_pending_age_seconds"].as_f64().unwrap();
    let api_age = api["oldest_pending_age_seconds"].as_f64().unwrap();
    assert!((cli_age - api_age).abs() < 10.0, "{cli_age} vs {api_age}");
    for document in [&mut cli, &mut api] {
        assert_rfc3339_utc(&document["generated_at"], "generated_at");
        let document = document.as_object_mut().unwrap();
        document.remove("generated_at");
        document.remove("oldest_pending_age_seconds");
    }
    assert_eq!(cli, api);

    // The table is for people, but it names the same counts.
    let (ok, table, stderr) = webhookd(&["stats", "--database-url", &db_url]).await;
    assert!(ok, "webhookd stats failed: {stderr}");
    let numbers_after = |prefix: &str| -> Vec<String> {
        let line = table.lines().find(|l| l.starts_with(prefix));
        let line = line.unwrap_or_else(|| panic!("a line starting {prefix:?}:\n{table}"));
        line[prefix.len()..]
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    let s = &api["by_status"];
    let all = [
        &s["pending"],
        &s["processing"],
        &s["completed"],
        &s["failed"],
        &api["total"],
    ];
    let all: Vec<String> = all.iter().map(|v| v.to_string()).collect();
    assert_eq!(numbers_after("all "), all, "{table}");
    assert_eq!(
        numbers_after("cancelled "),
        [api["cancelled"].to_string()],
        "{table}"
    );
    for word in [
        "pending",
        "processing",
        "completed",
        "failed",
        "alpha",
        "beta",
        "80.0%",
    ] {
        assert!(table.contains(word), "{word}:\n{table}");
    }

    // An unreachable database: a one-line error and a failing exit code.
    let closed_port = "postgres://postgres@127.0.0.1:1/x";
    let (ok, stdout, stderr) = webhookd(&["stats", "--database-url", closed_port]).await;
    assert!(!ok, "stats against a closed port must fail");
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr}");
    assert!(lines[0].starts_with("webhookd: error:"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    app.shutdown().await;
}

//! The statistics counters against the rows they count: every kind of change made by hand, and
//! the statements that count themselves.

mod common;

use std::time::Duration;

use common::counters::assert_counters_exact;
use common::receiver::Receiver;
use common::scenario::partner_on;
use common::{spawn, Options, TestDb};
use serde_json::{json, Value};

/// Whatever an operator changes by hand — status, attempts, partner, event type, cancellation,
/// even a row's id — the counters behind the statistics stay exactly what the rows say.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_counters_stay_exact_through_every_kind_of_change_by_hand() {
    let app = spawn(Options::default()).await;
    let a = app.partner("a", "http://127.0.0.1:1/a").await;
    let b = app.partner("b", "http://127.0.0.1:1/b").await;
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
        assert!(app.db.exec(step).await > 0, "changes rows: {step}");
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
    let ok = partner_on(&app, &receiver, "ok", "/ok/{n}", "/ok/debit/{n}").await;
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
    app.db
        .wait_count(
            "SELECT count(*) FROM webhook_queue WHERE status NOT IN ('completed', 'failed')",
            0,
            Duration::from_secs(10),
            "every entry delivered or failed",
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

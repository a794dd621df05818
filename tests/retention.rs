//! Retention: exactly the rows past their age go, with their history, the statistics stay true,
//! and one process prunes at a time.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::counters::{assert_stats_match_tables, stats};
use common::fixture::{self, unreachable, Made, RowState};
use common::pruning::{prune, settings};
use common::receiver::Receiver;
use common::scenario::partner_on;
use common::{eventually, spawn, Options, TestApp, TestDb};
use serde_json::{json, Value};
use webhookd::application::retention::{Pass, Pruned};
use webhookd::store::queue::retention::LOCK_KEY;

const WAIT: Duration = Duration::from_secs(10);

async fn retry(app: &TestApp, queue_id: &str) -> (u16, Value) {
    app.post(&format!("/webhooks/{queue_id}/retry"), json!({}))
        .await
}

async fn queue_ids(db: &TestDb) -> BTreeSet<String> {
    let ids = db.texts("SELECT queue_id::text FROM webhook_queue").await;
    ids.into_iter().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_removes_exactly_the_rows_past_their_age_with_their_history_and_keeps_stats_true()
{
    let app = spawn(Options::default()).await;
    let config = unreachable(&app, "p").await;
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
        ids.insert(name, fixture::queue_id(&entry));
    }
    // Old and new failures with a retry cycle in their history.
    for name in ["failed_old", "failed_new"] {
        RowState::failed_after(2)
            .apply(&app.db, &[&ids[name]])
            .await;
        assert_eq!(retry(&app, &ids[name]).await.0, 200);
        RowState::failed_after(1)
            .apply(&app.db, &[&ids[name]])
            .await;
    }
    RowState::failed_after(1)
        .apply(&app.db, &[&ids["cancelled_old"]])
        .await;
    RowState::status("completed")
        .attempts([Made::answered(200, 5)])
        .at("now() - interval '2 hours'")
        .apply(&app.db, &[&ids["completed_old"]])
        .await;
    let by_name = |name: &str| format!("queue_id = '{}'", ids[name]);
    for sql in [
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
        assert!(app.db.exec(&sql).await >= 1, "{sql}");
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
        .execute("SELECT pg_advisory_lock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    let app = common::spawn_on(
        db,
        Options::workers("RETENTION_COMPLETED=1s RETENTION_INTERVAL=100ms"),
    )
    .await;
    let config = partner_on(&app, &receiver, "p", "/ok/pb", "/ok/cb").await;
    let entry = app
        .submit(json!({"event_type": "+credit", "config_id": config, "url_params": {}}))
        .await;
    let queue_id = fixture::queue_id(&entry);
    app.wait_for_status(&queue_id, "completed", WAIT).await;
    app.db.exec(&format!("UPDATE webhook_queue SET completed_at = now() - interval '1 hour' WHERE queue_id = '{queue_id}'"))
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
        .execute("SELECT pg_advisory_unlock($1)", &[&LOCK_KEY])
        .await
        .unwrap();
    app.db
        .wait_count(
            "SELECT count(*) FROM webhook_queue",
            0,
            WAIT,
            "the worker's pruner to delete the old row",
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

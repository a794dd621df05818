//! The statistics counters against the rows they count: rows per bucket and attempts per
//! bucket, recounted from the table.

use serde_json::Value;

use super::{TestApp, TestDb};

/// Every attempt recorded in the `retry_N_*` slots: (HTTP status, duration in ms).
pub fn queue_attempts() -> String {
    let slots = (0..webhookd::store::attempt_slots::ATTEMPT_SLOTS)
        .map(|n| {
            format!("(q.retry_{n}_completed_at, q.retry_{n}_http_status, q.retry_{n}_duration_ms)")
        })
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "SELECT v.status, v.ms FROM webhook_queue q CROSS JOIN LATERAL (VALUES {slots}) AS v(done, status, ms)
         WHERE v.done IS NOT NULL"
    )
}

/// The counters behind the statistics equal a `GROUP BY` over the queue: rows by bucket, and
/// attempts by success and duration bucket.
pub async fn assert_counters_exact(db: &TestDb, after: &str) {
    let client = db.client().await;
    let table = |sql: String| {
        let client = &client;
        async move {
            client
                .query(&sql, &[])
                .await
                .unwrap()
                .iter()
                .map(|r| {
                    (0..r.len())
                        .map(|i| match r.columns()[i].type_().name() {
                            "int8" => r.get::<_, i64>(i).to_string(),
                            "bool" => r.get::<_, bool>(i).to_string(),
                            _ => r.get::<_, String>(i),
                        })
                        .collect::<Vec<_>>()
                        .join(" ")
                })
                .collect::<Vec<_>>()
        }
    };
    let counted = table(
        "SELECT config_id, event_type, bucket, sum(n)::int8 FROM webhook_queue_counts
         GROUP BY 1, 2, 3 HAVING sum(n) <> 0 ORDER BY 1, 2, 3"
            .into(),
    )
    .await;
    let rows = table(
        "SELECT config_id, event_type, CASE WHEN deleted_at IS NULL THEN status ELSE 'cancelled' END,
                count(*) FROM webhook_queue GROUP BY 1, 2, 3 ORDER BY 1, 2, 3"
            .into(),
    )
    .await;
    assert_eq!(counted, rows, "rows by bucket, after: {after}");
    let counted = table(
        "SELECT succeeded, duration_ms, sum(n)::int8, sum(sum_ms)::int8 FROM webhook_attempt_counts
         GROUP BY 1, 2 HAVING sum(n) <> 0 ORDER BY 1, 2"
            .into(),
    )
    .await;
    let queue_attempts = queue_attempts();
    let attempts = table(format!(
        "SELECT coalesce(status BETWEEN 200 AND 299, false), webhook_duration_bucket(coalesce(ms, 0)),
                count(*), sum(coalesce(ms, 0))::int8
         FROM ({queue_attempts}) a GROUP BY 1, 2 ORDER BY 1, 2"
    ))
    .await;
    assert_eq!(counted, attempts, "attempts by bucket, after: {after}");
}

pub async fn stats(app: &TestApp) -> Value {
    let (status, body) = app.get("/webhooks/stats").await;
    assert_eq!(status, 200, "{body}");
    body
}

/// Every attempt recorded in the `retry_N_*` columns of `webhook_queue`: `status`, `ms`. The
/// slots are read here column by column, not through `webhook_queue_attempts`, so that the
/// counters, which the triggers keep through that function, are checked against the columns.
/// The statistics agree with the tables: rows per bucket, and attempts as recorded in the
/// `retry_N_*` columns plus the archived ones.
pub async fn assert_stats_match_tables(app: &TestApp) {
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

//! What tests wait on instead of the clock: every version a queue row went through, read back
//! from the database, so a schedule is checked from the values the app stored.

use super::TestDb;

/// Makes the test's database keep every version of every `webhook_queue` row (after each
/// insert and update) in `test_row_versions`, in the order they were written. Only the test's
/// own database gets the trigger; the app's statements are unchanged.
pub async fn record_row_versions(db: &TestDb) {
    db.client()
        .await
        .batch_execute(
            "CREATE TABLE test_row_versions (n bigserial PRIMARY KEY, queue_id uuid, row jsonb);
             CREATE FUNCTION test_row_version() RETURNS trigger LANGUAGE plpgsql AS $$
             BEGIN
                 INSERT INTO test_row_versions (queue_id, row) VALUES (NEW.queue_id, to_jsonb(NEW));
                 RETURN NULL;
             END $$;
             CREATE TRIGGER test_row_version AFTER INSERT OR UPDATE ON webhook_queue
                 FOR EACH ROW EXECUTE FUNCTION test_row_version();",
        )
        .await
        .unwrap();
}

/// One retry as the app scheduled it, read from the stored row versions.
#[derive(Debug)]
pub struct Scheduled {
    /// The retry's number n (its attempt's `X-Webhook-Attempt`).
    pub retry: i32,
    /// `next_retry_at` minus `retry_{n-1}_completed_at`, as stored: the delay the app chose.
    pub delay_us: i64,
    /// Whether attempt n started no earlier than that `next_retry_at`.
    pub started_when_due: bool,
}

/// The retries of `queue_id` in order, from the first version of the row that scheduled each
/// (status `pending`, `retry_count` n), against the row's `retry_n_started_at` now.
/// Needs [`record_row_versions`] before the row was submitted.
pub async fn retry_schedule(db: &TestDb, queue_id: &str) -> Vec<Scheduled> {
    let rows = db
        .client()
        .await
        .query(
            "WITH scheduled AS (
                 SELECT DISTINCT ON ((row->>'retry_count')::int)
                        (row->>'retry_count')::int AS retry,
                        (row->>'next_retry_at')::timestamptz AS due,
                        (row->>format('retry_%s_completed_at', (row->>'retry_count')::int - 1))
                            ::timestamptz AS previous_completed
                 FROM test_row_versions
                 WHERE queue_id = $1::text::uuid AND row->>'status' = 'pending'
                   AND (row->>'retry_count')::int >= 1
                 ORDER BY (row->>'retry_count')::int, n)
             SELECT s.retry,
                    (extract(epoch FROM s.due - s.previous_completed) * 1000000)::int8,
                    coalesce((to_jsonb(q)->>format('retry_%s_started_at', s.retry))::timestamptz
                             >= s.due, false)
             FROM scheduled s JOIN webhook_queue q ON q.queue_id = $1::text::uuid
             ORDER BY s.retry",
            &[&queue_id],
        )
        .await
        .unwrap();
    rows.iter()
        .map(|r| Scheduled {
            retry: r.get(0),
            delay_us: r.get(1),
            started_when_due: r.get(2),
        })
        .collect()
}

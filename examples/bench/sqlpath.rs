//! The raw SQL ceiling: the library's own statements (`submit::insert_new`, `claim::claim`,
//! `outcome::record_attempts`) driven straight through pooled connections, batched, with no
//! HTTP anywhere. This is what the database on this machine can do with webhookd's SQL.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use uuid::Uuid;
use webhookd::domain::delivery::Status;
use webhookd::domain::event::EventType;
use webhookd::store::queue::claim;
use webhookd::store::queue::outcome::{self, AttemptWrite};
use webhookd::store::queue::submit::{self, NewEntry};
use webhookd::store::{configs, DbPool};

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
            // The API's insert checks the versions of the configs it built rows from.
            let versions: Vec<(i64, i64)> = configs::find_versioned(&mut conn, &[config_id])
                .await
                .expect("the bench config")
                .iter()
                .map(|c| (c.row.id, c.version))
                .collect();
            loop {
                let from = next.fetch_add(batch, Ordering::Relaxed);
                if from >= rows {
                    break;
                }
                let to = (from + batch).min(rows);
                let entries: Vec<NewEntry> = (from..to)
                    .map(|n| entry(config_id, &url_base, &tag, n as u64))
                    .collect();
                let inserted = submit::insert_new(&mut conn, &entries, &versions)
                    .await
                    .expect("insert");
                done.fetch_add(inserted.len() as u64, Ordering::Relaxed);
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

/// Claims and completes every due row, `batch` per claim and per outcome write, from
/// `concurrency` connections: the delivery path minus the HTTP call.
pub async fn drain(pool: &DbPool, batch: i64, concurrency: usize) -> Rate {
    let done = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for n in 0..concurrency {
        let (pool, done) = (pool.clone(), done.clone());
        tasks.spawn(async move {
            let worker_id = format!("sql-ceiling-{n}");
            let mut conn = pool.get().await.expect("a pooled connection");
            loop {
                let rows = claim::claim(&mut conn, &worker_id, batch, Duration::from_secs(300))
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
                let recorded = outcome::record_attempts(&mut conn, &writes, circuit)
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

//! The outcome writer: collects finished attempts and hand-backs from every worker of the
//! process and writes them in batches, one statement per batch.

use std::time::Duration;

use slog::{error, warn, Logger};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;

use crate::application::metrics::Metrics;
use crate::store::queue::outcome::{self, AttemptWrite};
use crate::store::queue::release::{self, Release};
use crate::store::DbPool;
use std::sync::Arc;

/// Most rows written by one statement.
const MAX_BATCH: usize = 512;

pub enum Finished {
    Attempt(AttemptWrite),
    /// A row handed back uncalled, due again after the delay.
    Release(Release, Duration),
}

/// Runs until every sender is dropped and the channel is drained.
pub async fn run(
    pool: DbPool,
    mut rx: mpsc::Receiver<Finished>,
    wake: Arc<Notify>,
    give_up_after: Duration,
    metrics: Arc<Metrics>,
    log: Logger,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let mut attempts = Vec::new();
        let mut releases: Vec<(Release, Duration)> = Vec::new();
        for item in batch.drain(..) {
            match item {
                Finished::Attempt(write) => attempts.push(write),
                Finished::Release(release, delay) => releases.push((release, delay)),
            }
        }
        write_attempts(&pool, &attempts, &wake, give_up_after, &metrics, &log).await;
        write_releases(&pool, releases, &wake, give_up_after, &metrics, &log).await;
    }
}

async fn write_attempts(
    pool: &DbPool,
    attempts: &[AttemptWrite],
    wake: &Arc<Notify>,
    give_up_after: Duration,
    metrics: &Metrics,
    log: &Logger,
) {
    if attempts.is_empty() {
        return;
    }
    let started = Instant::now();
    let written = retrying(give_up_after, log, "record attempts", || async {
        let mut conn = pool.get().await.map_err(|e| e.to_string())?;
        outcome::record_attempts(&mut conn, attempts)
            .await
            .map_err(|e| e.to_string())
    })
    .await;
    let Some(written) = written else {
        error!(log, "attempt outcomes not written; their rows will be claimed again after the lease";
            "rows" => attempts.len());
        return;
    };
    metrics.outcomes(
        written.len(),
        attempts.len() - written.len(),
        started.elapsed(),
    );
    if written.len() < attempts.len() {
        let written: std::collections::HashSet<i64> = written.into_iter().collect();
        for lost in attempts.iter().filter(|a| !written.contains(&a.id)) {
            warn!(log, "lease lost before the outcome was written; outcome discarded";
                "row_id" => lost.id, "attempt" => lost.attempt, "worker_id" => &lost.worker_id);
        }
    }
    // Retries scheduled here may fall due before an idle worker would look again.
    if let Some(earliest) = attempts.iter().filter_map(|a| a.next_retry_at).min() {
        let wait = (earliest - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO);
        wake_after(wake, wait);
    }
}

/// Wakes one idle worker once `wait` has passed.
fn wake_after(wake: &Arc<Notify>, wait: Duration) {
    let wake = wake.clone();
    tokio::spawn(async move {
        tokio::time::sleep(wait).await;
        wake.notify_one();
    });
}

async fn write_releases(
    pool: &DbPool,
    releases: Vec<(Release, Duration)>,
    wake: &Arc<Notify>,
    give_up_after: Duration,
    metrics: &Metrics,
    log: &Logger,
) {
    let mut by_delay: Vec<(Duration, Vec<Release>)> = Vec::new();
    for (release, delay) in releases {
        match by_delay.iter_mut().find(|(d, _)| *d == delay) {
            Some((_, rows)) => rows.push(release),
            None => by_delay.push((delay, vec![release])),
        }
    }
    for (delay, rows) in by_delay {
        let done = retrying(give_up_after, log, "hand back rows", || async {
            let mut conn = pool.get().await.map_err(|e| e.to_string())?;
            release::release(&mut conn, &rows, delay)
                .await
                .map_err(|e| e.to_string())
        })
        .await;
        match done {
            Some(released) => {
                metrics.handed_back(released);
                // Rows handed back uncalled fall due again after the delay.
                if released > 0 {
                    wake_after(wake, delay);
                }
            }
            None => {
                error!(log, "rows not handed back; they will be claimed again after the lease"; "rows" => rows.len())
            }
        }
    }
}

/// Retries a database write with backoff until it succeeds or `give_up_after` has passed.
async fn retrying<T, F, Fut>(
    give_up_after: Duration,
    log: &Logger,
    what: &str,
    mut op: F,
) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + give_up_after;
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) if Instant::now() + backoff < deadline => {
                warn!(log, "database write failed; retrying"; "what" => what, "error" => e,
                    "retry_in_ms" => backoff.as_millis() as u64);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                error!(log, "database write failed; giving up"; "what" => what, "error" => e);
                return None;
            }
        }
    }
}

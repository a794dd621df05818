//! The delivery engine: workers claim due rows, call partners, and hand outcomes to one
//! batching writer. The process's retention pruner runs alongside (`application::retention`).
//!
//! No transaction or pooled connection is held while a partner is called: a claim is one
//! statement, each call runs as its own task, and outcomes are written later, fenced on the
//! claim's `(worker_id, locked_at)`. Idle workers sleep until a NOTIFY, the earliest due
//! time, or the poll interval, whichever comes first.

mod hosts;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use slog::{info, o, warn, Logger};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::application::retention;
use crate::config::Settings;
use crate::domain::delivery::{Outcome, Transition};
use crate::domain::retry::RetryPolicy;
use crate::sender::{Call, Sender};
use crate::store::queue::claim::{self as claims, ClaimedRow};
use crate::store::queue::outcome::AttemptWrite;
use crate::store::queue::release::Release;
use crate::store::{listener, DbPool};

use hosts::{host_key, HostLimiter, Turn};
use writer::Finished;

/// How long a row whose host is saturated waits before it may be claimed again.
const HOST_BUSY_DEFER: Duration = Duration::from_secs(1);

/// What every worker of a process shares.
struct Shared {
    pool: DbPool,
    sender: Sender,
    retry: RetryPolicy,
    hosts: HostLimiter,
    metrics: Arc<Metrics>,
    wake: Arc<Notify>,
    /// Held while a worker of this process claims: see [`claim`].
    claiming: tokio::sync::Mutex<()>,
    /// Left by a worker that wanted rows while another was claiming.
    claim_again: AtomicBool,
    finished: mpsc::Sender<Finished>,
    batch_size: usize,
    poll_interval: Duration,
    lease: Duration,
    http_timeout: Duration,
    /// Cancelled at shutdown: stop claiming, hand back rows not yet called.
    stop: CancellationToken,
    /// Cancelled when the shutdown grace period is over: abandon calls still running.
    abandon: CancellationToken,
    log: Logger,
}

/// Runs `settings.worker.count` workers and the retention pruner until `stop` is cancelled,
/// then shuts down gracefully: in-flight calls get `shutdown_timeout` to finish, rows not yet
/// called are handed back, and every outcome is written before this returns. What the workers
/// do is recorded in `metrics`.
pub async fn run(
    settings: &Settings,
    pool: DbPool,
    metrics: Arc<Metrics>,
    log: Logger,
    stop: CancellationToken,
) -> anyhow::Result<()> {
    let sender = Sender::new(&settings.delivery).context("building the HTTP client")?;
    let wake = Arc::new(Notify::new());
    let capacity = settings.worker.count * settings.worker.batch_size * 2;
    let (finished, finished_rx) = mpsc::channel(capacity.max(64));
    let abandon = CancellationToken::new();
    let shared = Arc::new(Shared {
        pool: pool.clone(),
        sender,
        retry: settings.retry.clone(),
        hosts: HostLimiter::new(settings.delivery.host_concurrency),
        metrics: metrics.clone(),
        wake: wake.clone(),
        claiming: tokio::sync::Mutex::new(()),
        claim_again: AtomicBool::new(false),
        finished,
        batch_size: settings.worker.batch_size,
        poll_interval: settings.worker.poll_interval,
        lease: settings.worker.lock_duration,
        http_timeout: settings.delivery.http_timeout,
        stop: stop.clone(),
        abandon: abandon.clone(),
        log: log.clone(),
    });

    let listener_stop = CancellationToken::new();
    let listener = tokio::spawn(listener::run(
        settings.database_url.expose().to_string(),
        wake.clone(),
        listener_stop.clone(),
        log.new(o!("task" => "listener")),
    ));
    let pruner = tokio::spawn(retention::run(
        settings.database_url.expose().to_string(),
        settings.retention.clone(),
        stop.clone(),
        log.new(o!("task" => "pruner")),
    ));
    let writer = tokio::spawn(writer::run(
        pool,
        finished_rx,
        wake,
        settings.shutdown_timeout.max(Duration::from_secs(5)),
        metrics,
        log.new(o!("task" => "writer")),
    ));
    let mut workers = JoinSet::new();
    for n in 0..settings.worker.count {
        let worker_id = format!("{}-w{n}", settings.worker.id);
        workers.spawn(work(shared.clone(), worker_id));
    }
    info!(log, "workers started"; "workers" => settings.worker.count, "batch_size" => settings.worker.batch_size,
        "worker_id" => &settings.worker.id);

    stop.cancelled().await;
    info!(log, "shutting down workers"; "grace_ms" => settings.shutdown_timeout.as_millis() as u64);
    let grace = tokio::time::sleep(settings.shutdown_timeout);
    tokio::pin!(grace);
    loop {
        tokio::select! {
            next = workers.join_next() => if next.is_none() { break },
            _ = &mut grace, if !abandon.is_cancelled() => {
                warn!(log, "shutdown grace period over; abandoning calls still in flight");
                abandon.cancel();
            }
        }
    }
    drop(shared);
    listener_stop.cancel();
    let _ = listener.await;
    // The pruner stops at the end of its current batch.
    pruner.await.context("retention pruner panicked")?;
    // Every worker is gone, so every sender of outcomes is too: the writer drains and ends.
    writer.await.context("outcome writer panicked")?;
    info!(log, "workers stopped");
    Ok(())
}

/// One worker: keeps up to `batch_size` rows in flight, claiming more when half are done.
async fn work(shared: Arc<Shared>, worker_id: String) {
    let log = shared.log.new(o!("worker_id" => worker_id.clone()));
    let mut in_flight: JoinSet<()> = JoinSet::new();
    let mut held: HashMap<tokio::task::Id, Release> = HashMap::new();
    let mut failures = 0u32;
    let mut idle_until: Option<tokio::time::Instant> = None;

    while !shared.stop.is_cancelled() {
        let free = shared.batch_size - in_flight.len();
        let wants_more = in_flight.is_empty() || free * 2 >= shared.batch_size;
        let idle = idle_until.is_some_and(|t| tokio::time::Instant::now() < t);
        if wants_more && !idle {
            match claim(&shared, &worker_id, free).await {
                None => {
                    // Another worker is claiming, and claims again for us when done.
                    idle_until = Some(tokio::time::Instant::now() + shared.poll_interval);
                }
                Some(Ok(rows)) => {
                    failures = 0;
                    let full = rows.len() == free;
                    let found_none = rows.is_empty();
                    for row in rows {
                        let release = Release {
                            id: row.id,
                            worker_id: worker_id.clone(),
                            locked_at: row.locked_at,
                        };
                        let handle = in_flight.spawn(deliver(
                            shared.clone(),
                            worker_id.clone(),
                            row,
                            log.clone(),
                        ));
                        held.insert(handle.id(), release);
                    }
                    if full {
                        // More may be due: let another idle worker look too.
                        shared.wake.notify_one();
                        idle_until = None;
                        continue;
                    }
                    // Rows found means nothing else was due; what falls due later wakes the
                    // workers itself (NOTIFY for new rows, the writer's timer for retries and
                    // hand-backs). Only a worker that found nothing asks when the next row is
                    // due, which covers leases of workers that died: one round trip less per
                    // claim on a busy queue.
                    let wait = if found_none {
                        idle_wait(&shared).await
                    } else {
                        shared.poll_interval
                    };
                    idle_until = Some(tokio::time::Instant::now() + wait);
                }
                Some(Err(e)) => {
                    failures += 1;
                    let backoff = Duration::from_millis(100 * 2u64.pow(failures.min(6)))
                        .min(shared.poll_interval);
                    warn!(log, "claim failed"; "error" => e, "retry_in_ms" => backoff.as_millis() as u64);
                    idle_until = Some(tokio::time::Instant::now() + backoff);
                }
            }
        }
        let sleep_until =
            idle_until.unwrap_or_else(|| tokio::time::Instant::now() + shared.poll_interval);
        // Only a worker that would claim takes a wake-up; a busy one leaves it to the others.
        let can_claim =
            in_flight.is_empty() || (shared.batch_size - in_flight.len()) * 2 >= shared.batch_size;
        tokio::select! {
            done = in_flight.join_next_with_id(), if !in_flight.is_empty() => {
                if let Some(Ok((id, ()))) = done { held.remove(&id); }
            }
            _ = shared.wake.notified(), if can_claim => idle_until = None,
            _ = tokio::time::sleep_until(sleep_until) => idle_until = None,
            _ = shared.stop.cancelled() => {}
        }
    }

    // Shutdown: rows still waiting for a host slot hand themselves back (see `deliver`);
    // calls under way finish, unless the grace period ends first.
    while let Some(done) = tokio::select! {
        done = in_flight.join_next_with_id() => done,
        _ = shared.abandon.cancelled() => { in_flight.abort_all(); in_flight.join_next_with_id().await }
    } {
        match done {
            Ok((id, ())) => {
                held.remove(&id);
            }
            Err(e) => {
                if let Some(release) = held.remove(&e.id()) {
                    let _ = shared
                        .finished
                        .send(Finished::Release(release, Duration::ZERO))
                        .await;
                }
            }
        }
    }
}

/// Claims up to `limit` rows for one worker, one claim at a time per process. A worker that
/// wants rows while another is claiming leaves a note and gets `None`; the claimer wakes a
/// worker when done. Wake-ups that arrive during a claim are so answered by one more claim,
/// not one each: fewer, larger claims, and less work for the database per row.
async fn claim(
    shared: &Shared,
    worker_id: &str,
    limit: usize,
) -> Option<Result<Vec<ClaimedRow>, String>> {
    let turn = match shared.claiming.try_lock() {
        Ok(turn) => turn,
        Err(_) => {
            shared.claim_again.store(true, Ordering::SeqCst);
            // The claimer may have finished between the two steps and missed the note.
            shared.claiming.try_lock().ok()?
        }
    };
    let started = std::time::Instant::now();
    let claimed = async {
        let mut conn = shared.pool.get().await.map_err(|e| e.to_string())?;
        claims::claim(&mut conn, worker_id, limit as i64, shared.lease)
            .await
            .map_err(|e| e.to_string())
    }
    .await;
    drop(turn);
    if shared.claim_again.swap(false, Ordering::SeqCst) {
        shared.wake.notify_one();
    }
    if let Ok(rows) = &claimed {
        shared.metrics.claimed(rows.len(), started.elapsed());
    }
    Some(claimed)
}

/// How long an idle worker may sleep: until the next row falls due, at most the poll interval.
async fn idle_wait(shared: &Shared) -> Duration {
    let next_due = match shared.pool.get().await {
        Ok(mut conn) => claims::next_due(&mut conn).await.ok().flatten(),
        Err(_) => None,
    };
    match next_due {
        Some(at) => (at - Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
            .max(Duration::from_millis(5))
            .min(shared.poll_interval),
        None => shared.poll_interval,
    }
}

/// Calls one claimed row's partner and hands the outcome to the writer.
async fn deliver(shared: Arc<Shared>, worker_id: String, row: ClaimedRow, log: Logger) {
    let release = |delay| {
        Finished::Release(
            Release {
                id: row.id,
                worker_id: worker_id.clone(),
                locked_at: row.locked_at,
            },
            delay,
        )
    };
    let _slot = match shared.hosts.turn(&host_key(&row.webhook_url)) {
        Turn::Go(slot) => slot,
        Turn::Saturated => {
            let _ = shared.finished.send(release(HOST_BUSY_DEFER)).await;
            return;
        }
        Turn::Queue(waiter) => {
            // A place in the fixed line may wait as long as a call may take; a place granted
            // because the host answers fast expects its turn soon, or the host has slowed.
            let patience = if waiter.brief {
                hosts::BRIEF_WAIT
            } else {
                shared.http_timeout
            };
            tokio::select! {
                slot = waiter.wait() => slot,
                // Waiting longer than that means the host is stuck.
                _ = tokio::time::sleep(patience) => {
                    let _ = shared.finished.send(release(HOST_BUSY_DEFER)).await;
                    return;
                }
                _ = shared.stop.cancelled() => {
                    let _ = shared.finished.send(release(Duration::ZERO)).await;
                    return;
                }
            }
        }
    };

    let attempt = row.retry_count;
    let started_at = Utc::now();
    let result = shared
        .sender
        .call(Call {
            url: &row.webhook_url,
            queue_id: row.queue_id,
            event_type: row.event_type,
            attempt,
            signing_secret: row.signing_secret.as_ref(),
        })
        .await;
    let completed_at = Utc::now();
    let transition = Transition::after(
        attempt,
        row.max_retries,
        &result.outcome,
        &shared.retry,
        &mut rand::rng(),
    );
    let duration_ms = result.duration.as_millis() as i64;
    shared
        .metrics
        .attempt(row.config_id, &result.outcome, result.duration);

    log_attempt(
        &log,
        &row,
        attempt,
        &result.outcome,
        duration_ms,
        transition,
    );

    let (retry_count, next_retry_at) = match transition {
        Transition::Retry {
            next_attempt,
            delay,
        } => (
            next_attempt,
            Some(completed_at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)),
        ),
        Transition::Complete | Transition::Fail => (attempt, None),
    };
    let (http_status, response_body) = match &result.outcome {
        Outcome::Response { status, body, .. } => (Some(*status as i32), Some(body.clone())),
        Outcome::NoResponse { .. } => (None, None),
    };
    let write = AttemptWrite {
        id: row.id,
        worker_id,
        locked_at: row.locked_at,
        attempt,
        started_at,
        completed_at,
        duration_ms,
        http_status,
        response_body,
        error: result.outcome.error_text(),
        status: transition.status(),
        retry_count,
        next_retry_at,
    };
    let _ = shared.finished.send(Finished::Attempt(write)).await;
}

fn log_attempt(
    log: &Logger,
    row: &ClaimedRow,
    attempt: i32,
    outcome: &Outcome,
    duration_ms: i64,
    next: Transition,
) {
    let kv = o!(
        "queue_id" => row.queue_id.to_string(),
        "event_type" => row.event_type.as_str(),
        "config_id" => row.config_id,
        "attempt" => attempt,
        "outcome" => outcome.label(),
        "http_status" => outcome.http_status(),
        "error" => outcome.error_text(),
        "duration_ms" => duration_ms,
        "next" => next.status().as_str(),
    );
    let log = log.new(kv);
    if outcome.is_success() {
        info!(log, "delivered");
    } else {
        warn!(log, "attempt failed");
    }
}

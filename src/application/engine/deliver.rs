//! One claimed row's delivery, in three steps: [`prepare`] (a turn at the partner's host, and
//! a lease that still holds), [`call`] (the partner), [`record`] (the outcome, to the writer).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use slog::{info, o, warn, Logger};
use tokio::time::Instant;

use super::hosts::{self, host_key, Slot, Turn};
use super::shared::{Finished, Shared};
use crate::domain::delivery::{Outcome, Transition};
use crate::domain::partner::Verdict;
use crate::domain::request_template::FilledRequest;
use crate::sender::{Call, CallResult, PartnerCall};
use crate::store::queue::claim::ClaimedRow;
use crate::store::queue::outcome::AttemptWrite;
use crate::store::queue::release::Release;

/// How long a row whose host is saturated waits before it may be claimed again.
const HOST_BUSY_DEFER: Duration = Duration::from_secs(1);
/// How long a row whose partner's config could not be read waits before it may be claimed again.
const UNREAD_CONFIG_DEFER: Duration = Duration::from_secs(1);

/// A row this worker holds, with what the lease is known by.
pub struct Claimed {
    pub row: ClaimedRow,
    pub worker_id: String,
    /// The lease ends no earlier than this: the claim statement was sent after it, and the
    /// database counted `WORKER_LOCK_DURATION` from its own now().
    pub lease_ends: Instant,
}

impl Claimed {
    fn release(&self, delay: Duration) -> Finished {
        Finished::Release(
            Release {
                id: self.row.id,
                worker_id: self.worker_id.clone(),
                locked_at: self.row.locked_at,
            },
            delay,
        )
    }
}

/// A row ready to be called, with how its partner is called and what the row sends: its
/// host's turn is held until the call ends.
pub struct Ready {
    claimed: Claimed,
    partner: Arc<PartnerCall>,
    request: Option<FilledRequest>,
    _slot: Slot,
}

/// Delivers one claimed row: prepare, call, record. A row that cannot be called now is handed
/// back uncalled.
pub async fn deliver(shared: Arc<Shared>, claimed: Claimed, log: Logger) {
    let Some(ready) = prepare(&shared, claimed, &log).await else {
        return;
    };
    let attempted = call(&shared, &ready).await;
    record(&shared, ready, attempted, &log).await;
    // The call's place at its host is free again: rows left behind for want of it may go.
    if shared.left_behind.load(Ordering::Relaxed) {
        shared.wake.notify_one();
    }
}

/// Finds how the row's partner is called, waits for a turn at the row's host, then checks by
/// the clock that the lease will outlast the call: a worker that was paused (SIGSTOP, a stalled
/// VM) past its lease must not call a partner for a row that another worker may have taken
/// over. `None` when the row was handed back instead.
pub async fn prepare(shared: &Shared, claimed: Claimed, log: &Logger) -> Option<Ready> {
    let row = &claimed.row;
    let partner = match shared
        .partners
        .get(
            &shared.pool,
            &shared.sender,
            row.config_id,
            row.config_version,
            log,
        )
        .await
    {
        Ok(partner) => partner,
        Err(e) => {
            warn!(log, "could not read a partner's config; row handed back uncalled";
                "config_id" => row.config_id, "queue_id" => row.queue_id.to_string(), "error" => e);
            let _ = shared
                .finished
                .send(claimed.release(UNREAD_CONFIG_DEFER))
                .await;
            return None;
        }
    };
    let (partner, request) = match row.request.clone().map(serde_json::from_value) {
        None => (partner, None),
        Some(Ok(request)) => (partner, Some(request)),
        // Only a row edited by hand gets here: it is not sent in some other shape.
        Some(Err(e)) => {
            let why = format!("the row's request is not what webhookd writes ({e})");
            (
                Arc::new(PartnerCall::unusable(row.config_version, why)),
                None,
            )
        }
    };
    let slot = match shared
        .hosts
        .turn(claimed.row.config_id, &host_key(&claimed.row.webhook_url))
    {
        Turn::Go(slot) => slot,
        Turn::Saturated => {
            let _ = shared.finished.send(claimed.release(HOST_BUSY_DEFER)).await;
            return None;
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
                _ = tokio::time::sleep(patience) => {
                    let _ = shared.finished.send(claimed.release(HOST_BUSY_DEFER)).await;
                    return None;
                }
                _ = shared.stop.cancelled() => {
                    let _ = shared.finished.send(claimed.release(Duration::ZERO)).await;
                    return None;
                }
            }
        }
    };
    if Instant::now() + shared.http_timeout >= claimed.lease_ends {
        // The hand-back is fenced like every write: if another worker holds the row now, it
        // changes nothing.
        warn!(log, "lease would end before the call could; row handed back uncalled";
            "queue_id" => claimed.row.queue_id.to_string(), "worker_id" => &claimed.worker_id);
        let _ = shared.finished.send(claimed.release(Duration::ZERO)).await;
        return None;
    }
    Some(Ready {
        claimed,
        partner,
        request,
        _slot: slot,
    })
}

/// One call made, with when it started and ended.
pub struct Attempted {
    started_at: DateTime<Utc>,
    completed_at: DateTime<Utc>,
    result: CallResult,
}

/// Calls the partner once.
pub async fn call(shared: &Shared, ready: &Ready) -> Attempted {
    let row = &ready.claimed.row;
    let started_at = Utc::now();
    let result = shared
        .sender
        .call(Call {
            url: &row.webhook_url,
            queue_id: row.queue_id,
            event_type: row.event_type,
            attempt: row.retry_count,
            request: ready.request.as_ref(),
            partner: &ready.partner,
        })
        .await;
    Attempted {
        started_at,
        completed_at: Utc::now(),
        result,
    }
}

/// Decides what the attempt means for the row (complete, retry when, or fail), logs and counts
/// it, and hands the write to the writer.
pub async fn record(shared: &Shared, ready: Ready, attempted: Attempted, log: &Logger) {
    let Ready { claimed, _slot, .. } = ready;
    // The host's turn ends with the call.
    drop(_slot);
    let Attempted {
        started_at,
        completed_at,
        result,
    } = attempted;
    let row = claimed.row;
    let attempt = row.retry_count;
    let policy = shared.retry.for_partner(
        row.retry_base_delay_ms.map(millis),
        row.retry_max_delay_ms.map(millis),
    );
    let transition = Transition::after(
        attempt,
        row.max_retries,
        &result.outcome,
        &policy,
        &mut rand::rng(),
    );
    let verdict = Verdict::of(&result.outcome);
    let duration_ms = result.duration.as_millis() as i64;
    shared
        .metrics
        .attempt(row.config_id, &result.outcome, result.duration);
    log_attempt(log, &row, &result.outcome, duration_ms, transition);

    let (retry_count, next_retry_at) = scheduled(transition, attempt, completed_at);
    let (http_status, response_body) = match &result.outcome {
        Outcome::Response { status, body, .. } => (Some(*status as i32), Some(body.clone())),
        Outcome::NoResponse { .. } => (None, None),
    };
    let write = AttemptWrite {
        id: row.id,
        config_id: row.config_id,
        event_type: row.event_type,
        verdict,
        worker_id: claimed.worker_id,
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

/// The row's attempt number after `transition`, and when a retry is due.
fn scheduled(
    transition: Transition,
    attempt: i32,
    completed_at: DateTime<Utc>,
) -> (i32, Option<DateTime<Utc>>) {
    match transition {
        Transition::Retry {
            next_attempt,
            delay,
        } => (
            next_attempt,
            Some(completed_at + chrono::Duration::from_std(delay).unwrap_or(chrono::Duration::MAX)),
        ),
        Transition::Complete | Transition::Fail => (attempt, None),
    }
}

fn millis(ms: i64) -> Duration {
    Duration::from_millis(ms.max(0) as u64)
}

fn log_attempt(
    log: &Logger,
    row: &ClaimedRow,
    outcome: &Outcome,
    duration_ms: i64,
    next: Transition,
) {
    let log = log.new(o!(
        "queue_id" => row.queue_id.to_string(),
        "event_type" => row.event_type.as_str(),
        "config_id" => row.config_id,
        "attempt" => row.retry_count,
        "outcome" => outcome.label(),
        "http_status" => outcome.http_status(),
        "error" => outcome.error_text(),
        "duration_ms" => duration_ms,
        "next" => next.status().as_str(),
    ));
    if outcome.is_success() {
        info!(log, "delivered");
    } else {
        warn!(log, "attempt failed");
    }
}

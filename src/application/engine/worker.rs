//! The claim loop: one [`Worker`] keeps up to `WORKER_BATCH_SIZE` rows in flight, claiming
//! more when half are done. The workers of a process claim one at a time (see [`claim`]).

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use slog::{o, warn, Logger};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::deliver::{deliver, Claimed};
use super::error::EngineError;
use super::service::{Round, Service};
use super::shared::{Finished, Shared};
use crate::error_chain::describe;
use crate::store::queue::claim::{self, ClaimedRow};
use crate::store::queue::release::Release;

pub struct Worker {
    shared: Arc<Shared>,
    worker_id: String,
    in_flight: JoinSet<()>,
    /// What each call in flight holds, to hand it back should the call be abandoned.
    held: HashMap<tokio::task::Id, Release>,
    failures: u32,
    idle_until: Option<Instant>,
    log: Logger,
}

impl Worker {
    pub(super) fn new(shared: Arc<Shared>, worker_id: String) -> Self {
        let log = shared.log.new(o!("worker_id" => worker_id.clone()));
        Self {
            shared,
            worker_id,
            in_flight: JoinSet::new(),
            held: HashMap::new(),
            failures: 0,
            idle_until: None,
            log,
        }
    }

    /// Whether this worker would take more rows: when idle, or when half its rows are done.
    fn wants_more(&self) -> bool {
        let free = self.shared.batch_size - self.in_flight.len();
        self.in_flight.is_empty() || free * 2 >= self.shared.batch_size
    }

    /// Claims rows if it wants them and is not resting. Returns whether to claim again at
    /// once (a full batch: more may be due).
    async fn claim_if_wanted(&mut self) -> bool {
        if !self.wants_more() {
            return false;
        }
        self.take_leased_debits();
        let resting = self.idle_until.is_some_and(|t| Instant::now() < t);
        if !self.wants_more() || resting {
            return false;
        }
        let free = self.shared.batch_size - self.in_flight.len();
        let sent_at = Instant::now();
        match claim(&self.shared, &self.worker_id, free).await {
            None => {
                // Another worker is claiming, and claims again for us when done.
                self.idle_until = Some(Instant::now() + self.shared.poll_interval);
                false
            }
            Some(Ok(rows)) => self.took(rows, free, sent_at).await,
            Some(Err(e)) => {
                self.failures += 1;
                let backoff = Duration::from_millis(100 * 2u64.pow(self.failures.min(6)))
                    .min(self.shared.poll_interval);
                warn!(self.log, "claim failed"; "error" => describe(&e), "retry_in_ms" => backoff.as_millis() as u64);
                self.idle_until = Some(Instant::now() + backoff);
                false
            }
        }
    }

    /// Calls the rows a claim of `wanted` returned, and decides when to claim next. Returns
    /// whether to claim again at once (a full batch: more may be due).
    async fn took(&mut self, rows: Vec<ClaimedRow>, wanted: usize, sent_at: Instant) -> bool {
        self.failures = 0;
        let full = rows.len() == wanted;
        let found_none = rows.is_empty();
        // Rows left behind for a partner's rate limit fall due at their slots: look again
        // then, not after the poll interval.
        let deferred = rows
            .first()
            .and_then(|r| r.deferred_until)
            .map(|at| (at - Utc::now()).to_std().unwrap_or(Duration::ZERO));
        let left_behind = rows.first().is_some_and(|r| r.left_behind);
        for row in rows {
            let worker_id = self.worker_id.clone();
            self.dispatch(row, worker_id, sent_at);
        }
        if full {
            // More may be due: let another idle worker look too.
            self.shared.wake.notify_one();
            self.idle_until = None;
            return true;
        }
        // Rows found means nothing else was due, but what a partner's host had no room for:
        // calls ending wake a worker for those. What falls due later wakes the workers itself
        // (NOTIFY for new rows, the writer's timers for retries and hand-backs). Only a worker
        // that found nothing asks when the next row is due, which covers leases of workers
        // that died: one round trip less per claim on a busy queue.
        let wait = if found_none {
            idle_wait(&self.shared).await
        } else {
            self.shared
                .left_behind
                .store(left_behind, Ordering::Relaxed);
            deferred.map_or(self.shared.poll_interval, |d| {
                d.min(self.shared.poll_interval)
            })
        };
        self.idle_until = (!left_behind).then(|| Instant::now() + wait);
        false
    }

    /// Calls the debits the writer leased with their credits' completion (money order), which
    /// are leased to the worker that called the credit; before any claim, as they are due.
    fn take_leased_debits(&mut self) {
        let free = self.shared.batch_size - self.in_flight.len();
        for given in self.shared.handoff.take(free) {
            self.dispatch(given.debit.row, given.debit.worker_id, given.lease_from);
        }
    }

    fn dispatch(&mut self, row: ClaimedRow, worker_id: String, sent_at: Instant) {
        let release = Release {
            id: row.id,
            worker_id: worker_id.clone(),
            locked_at: row.locked_at,
        };
        let claimed = Claimed {
            row,
            worker_id,
            lease_ends: sent_at + self.shared.lease,
        };
        let handle = self
            .in_flight
            .spawn(deliver(self.shared.clone(), claimed, self.log.clone()));
        self.held.insert(handle.id(), release);
    }

    /// Waits for the next thing that may let it claim: a call ending, a wake-up, its rest
    /// ending, or the stop.
    async fn wait(&mut self) {
        let shared = self.shared.clone();
        let sleep_until = self
            .idle_until
            .unwrap_or_else(|| Instant::now() + shared.poll_interval);
        // Only a worker that would claim takes a wake-up; a busy one leaves it to the others.
        let can_claim = self.wants_more();
        tokio::select! {
            done = self.in_flight.join_next_with_id(), if !self.in_flight.is_empty() => {
                if let Some(Ok((id, ()))) = done { self.held.remove(&id); }
            }
            _ = shared.wake.notified(), if can_claim => self.idle_until = None,
            _ = tokio::time::sleep_until(sleep_until) => self.idle_until = None,
            _ = shared.stop.cancelled() => {}
        }
    }

    /// Shutdown: debits the writer handed over and no worker took are handed back; rows still
    /// waiting for a host's turn hand themselves back (see `deliver::prepare`); calls under way
    /// finish, unless the grace period ends first, when they are abandoned and their rows
    /// handed back.
    async fn drain(&mut self) {
        for given in self.shared.handoff.take(usize::MAX) {
            let release = Finished::Release(given.debit.lease(), Duration::ZERO);
            let _ = self.shared.finished.send(release).await;
        }
        let abandon = self.shared.abandon.clone();
        while let Some(done) = tokio::select! {
            done = self.in_flight.join_next_with_id() => done,
            _ = abandon.cancelled() => {
                self.in_flight.abort_all();
                self.in_flight.join_next_with_id().await
            }
        } {
            match done {
                Ok((id, ())) => {
                    self.held.remove(&id);
                }
                Err(e) => {
                    if let Some(release) = self.held.remove(&e.id()) {
                        let _ = self
                            .shared
                            .finished
                            .send(Finished::Release(release, Duration::ZERO))
                            .await;
                    }
                }
            }
        }
    }
}

impl Service for Worker {
    const NAME: &'static str = "worker";

    /// One turn: claim if it wants rows, then wait for what comes next.
    async fn run_once(&mut self) -> Result<Round, EngineError> {
        if !self.claim_if_wanted().await {
            self.wait().await;
        }
        Ok(Round::Again)
    }

    /// Turns until `stop`, then drains its calls.
    async fn run(mut self, stop: CancellationToken) -> Result<(), EngineError> {
        while !stop.is_cancelled() {
            self.run_once().await?;
        }
        self.drain().await;
        Ok(())
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
) -> Option<Result<Vec<ClaimedRow>, EngineError>> {
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
        let mut conn = shared.pool.get().await?;
        let room = shared.hosts.rooms(shared.partner_share);
        Ok(claim::claim(&mut conn, worker_id, limit as i64, shared.lease, &room).await?)
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

/// How long a worker that found nothing rests when rows were due all the same: they wait for
/// room at their partner's host, and each call that ends wakes a worker for them; this is only
/// the fallback.
const NOTHING_TAKEN_REST: Duration = Duration::from_secs(1);

/// How long an idle worker may sleep: until the next row falls due, at most the poll interval.
async fn idle_wait(shared: &Shared) -> Duration {
    let next_due = match shared.pool.get().await {
        Ok(mut conn) => claim::next_due(&mut conn).await.ok().flatten(),
        Err(_) => None,
    };
    let Some(at) = next_due else {
        shared.left_behind.store(false, Ordering::Relaxed);
        return shared.poll_interval;
    };
    let wait = (at - Utc::now()).to_std();
    shared.left_behind.store(wait.is_err(), Ordering::Relaxed);
    wait.unwrap_or(NOTHING_TAKEN_REST)
        .max(Duration::from_millis(5))
        .min(shared.poll_interval)
}

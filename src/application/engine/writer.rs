//! The outcome writer: collects finished attempts and hand-backs from every worker of the
//! process and writes them in batches, one statement per batch. It also keeps the process's
//! timer queue of wake-ups: a retry it schedules, or a row it hands back, may fall due before
//! an idle worker would look again.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashSet};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use slog::{error, info, warn, Logger};
use tokio::sync::{mpsc, Notify};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::error::EngineError;
use super::handoff::Handoff;
use super::service::Fed;
use super::shared::{Finished, Signals};
use super::throughput::Throughput;
use crate::application::metrics::Metrics;
use crate::config::Settings;
use crate::domain::delivery::Status;
use crate::domain::event::EventType;
use crate::domain::partner::PartnerState;
use crate::error_chain::describe;
use crate::store::queue::outcome::{self, AttemptWrite, Circuit, LeasedDebit, PartnerChange};
use crate::store::queue::release::{self, Release};
use crate::store::{throughput, DbPool};

/// Most rows written by one statement.
const MAX_ROWS_PER_WRITE: usize = 512;

pub struct Writer {
    pool: DbPool,
    rx: mpsc::Receiver<Finished>,
    batch: Vec<Finished>,
    wake: Arc<Notify>,
    /// Debits leased by outcome writes, for the workers to call (money order).
    handoff: Handoff,
    /// The lease a debit leased by an outcome write gets.
    lease: Duration,
    /// Cancelled when the workers stop: a debit leased after that is handed back at once.
    workers_stop: CancellationToken,
    /// When to wake one idle worker, earliest first.
    timers: BinaryHeap<Reverse<Instant>>,
    /// Rows settled, not yet added to the throughput's counters.
    throughput: Throughput,
    /// Whether everything sent has been received: the counts held are written at once.
    drained: bool,
    give_up_after: Duration,
    circuit: Circuit,
    metrics: Arc<Metrics>,
    log: Logger,
}

impl Writer {
    /// A writer of what is sent on `rx`. A failed write is retried for `SHUTDOWN_TIMEOUT` (at
    /// least 5 s), then abandoned: its rows are claimed again once their leases end.
    pub(super) fn new(
        settings: &Settings,
        pool: DbPool,
        rx: mpsc::Receiver<Finished>,
        signals: &Signals,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        Self {
            pool,
            rx,
            batch: Vec::with_capacity(MAX_ROWS_PER_WRITE),
            wake: signals.wake.clone(),
            handoff: signals.handoff.clone(),
            lease: settings.worker.lock_duration,
            workers_stop: signals.stop.clone(),
            timers: BinaryHeap::new(),
            throughput: Throughput::default(),
            drained: false,
            give_up_after: settings.shutdown_timeout.max(Duration::from_secs(5)),
            circuit: Circuit {
                failure_threshold: settings.circuit.failure_threshold as i32,
                probe_interval_ms: settings.circuit.probe_interval.as_millis() as i64,
            },
            metrics,
            log,
        }
    }

    fn wake_after(&mut self, wait: Duration) {
        self.timers.push(Reverse(Instant::now() + wait));
    }

    /// Wakes one idle worker for each timer that has come due.
    fn ring_due_timers(&mut self) {
        let now = Instant::now();
        while self.timers.peek().is_some_and(|t| t.0 <= now) {
            self.timers.pop();
            self.wake.notify_one();
        }
    }

    async fn write(&mut self, batch: &mut Vec<Finished>) {
        let mut attempts = Vec::new();
        let mut releases: Vec<(Release, Duration)> = Vec::new();
        for item in batch.drain(..) {
            match item {
                Finished::Attempt(write) => attempts.push(write),
                Finished::Release(release, delay) => releases.push((release, delay)),
            }
        }
        self.write_attempts(&attempts).await;
        self.write_releases(releases).await;
    }

    async fn write_attempts(&mut self, attempts: &[AttemptWrite]) {
        if attempts.is_empty() {
            return;
        }
        let started = Instant::now();
        let pool = &self.pool;
        let (circuit, lease) = (self.circuit, self.lease);
        let recorded = retrying(self.give_up_after, &self.log, "record attempts", || async {
            let mut conn = pool.get().await?;
            Ok(outcome::record_attempts(&mut conn, attempts, circuit, lease).await?)
        })
        .await;
        let Some(recorded) = recorded else {
            error!(self.log, "attempt outcomes not written; their rows will be claimed again after the lease";
                "rows" => attempts.len());
            return;
        };
        for change in &recorded.changes {
            log_partner_change(&self.log, change);
            self.metrics.partner_changed(change.config_id, change.state);
        }
        self.hand_over(recorded.leased, started).await;
        self.throughput.count(&recorded.written, chrono::Utc::now());
        let written = recorded.written;
        self.metrics.outcomes(
            written.len(),
            attempts.len() - written.len(),
            started.elapsed(),
        );
        if written.len() < attempts.len() {
            let written: HashSet<i64> = written.into_iter().map(|w| w.id).collect();
            for lost in attempts.iter().filter(|a| !written.contains(&a.id)) {
                warn!(self.log, "lease lost before the outcome was written; outcome discarded";
                    "row_id" => lost.id, "attempt" => lost.attempt, "worker_id" => &lost.worker_id);
            }
        }
        // A completed credit may have released its waiting debit (money order,
        // sql/rules/06_money_order.sql), which announces nothing: a worker of this process
        // looks for it.
        if recorded.debits_waited
            && attempts
                .iter()
                .any(|a| a.status == Status::Completed && a.event_type == EventType::Credit)
        {
            self.wake.notify_one();
        }
        if let Some(earliest) = attempts.iter().filter_map(|a| a.next_retry_at).min() {
            let wait = (earliest - chrono::Utc::now())
                .to_std()
                .unwrap_or(Duration::ZERO);
            self.wake_after(wait);
        }
    }

    /// Debits leased with their credits' completion (now committed) go to the workers, one of
    /// which is woken to call them; once the workers have stopped, they are handed back.
    async fn hand_over(&mut self, leased: Vec<LeasedDebit>, write_sent: Instant) {
        if leased.is_empty() {
            return;
        }
        if self.workers_stop.is_cancelled() {
            let releases = leased.iter().map(|l| (l.lease(), Duration::ZERO)).collect();
            self.write_releases(releases).await;
            return;
        }
        self.handoff.give(leased, write_sent);
        self.wake.notify_one();
    }

    /// Adds the rows settled to the throughput's counters, when due (or everything sent has
    /// been written). Counts that cannot be written are dropped, as a process that dies drops
    /// them: the statistics' rate runs short by them, nothing else.
    async fn write_throughput(&mut self) {
        let due = self.throughput.due().is_some_and(|at| at <= Instant::now());
        if !(due || self.drained && self.throughput.due().is_some()) {
            return;
        }
        let settled = self.throughput.take();
        let pool = &self.pool;
        let added = retrying(self.give_up_after, &self.log, "add throughput", || async {
            let mut conn = pool.get().await?;
            Ok(throughput::add(&mut conn, &settled).await?)
        })
        .await;
        if added.is_none() {
            warn!(self.log, "rows settled not added to the throughput statistics";
                "seconds" => settled.len());
        }
    }

    async fn write_releases(&mut self, releases: Vec<(Release, Duration)>) {
        let mut by_delay: Vec<(Duration, Vec<Release>)> = Vec::new();
        for (release, delay) in releases {
            match by_delay.iter_mut().find(|(d, _)| *d == delay) {
                Some((_, rows)) => rows.push(release),
                None => by_delay.push((delay, vec![release])),
            }
        }
        for (delay, rows) in by_delay {
            let pool = &self.pool;
            let done = retrying(self.give_up_after, &self.log, "hand back rows", || async {
                let mut conn = pool.get().await?;
                Ok(release::release(&mut conn, &rows, delay).await?)
            })
            .await;
            match done {
                Some(released) => {
                    self.metrics.handed_back(released);
                    if released > 0 {
                        self.wake_after(delay);
                    }
                }
                None => {
                    error!(self.log, "rows not handed back; they will be claimed again after the lease";
                        "rows" => rows.len())
                }
            }
        }
    }
}

impl Fed for Writer {
    const NAME: &'static str = "writer";
    /// What was sent; empty when a timer came due.
    type Batch = Vec<Finished>;

    async fn receive(&mut self) -> Option<Vec<Finished>> {
        let next_timer = [self.timers.peek().map(|t| t.0), self.throughput.due()]
            .into_iter()
            .flatten()
            .min();
        tokio::select! {
            received = self.rx.recv_many(&mut self.batch, MAX_ROWS_PER_WRITE) => {
                if received > 0 {
                    Some(std::mem::take(&mut self.batch))
                } else {
                    // Closed and empty: one more round, for the counts still held.
                    self.drained = true;
                    self.throughput.due().map(|_| Vec::new())
                }
            }
            _ = tokio::time::sleep_until(next_timer.unwrap_or_else(Instant::now)), if next_timer.is_some() => {
                Some(Vec::new())
            }
        }
    }

    /// Writes what was sent, then rings the timers that have come due and adds the rows
    /// settled to the throughput when that is due.
    async fn handle(&mut self, mut batch: Vec<Finished>) -> Result<(), EngineError> {
        if !batch.is_empty() {
            self.write(&mut batch).await;
            // The emptied buffer takes the next batch.
            self.batch = batch;
        }
        self.ring_due_timers();
        self.write_throughput().await;
        Ok(())
    }

    /// Once stopped (after every worker has ended), what was sent is still written.
    fn close(&mut self) {
        self.rx.close();
    }
}

/// The log line of a partner state change made by an outcome write: a trip or a 410's pause
/// is a warning (an operator may act), a recovery is news.
fn log_partner_change(log: &Logger, change: &PartnerChange) {
    let reason = change.reason.map(|r| r.as_str());
    match change.state {
        PartnerState::Tripped => {
            warn!(log, "partner tripped; its events are held and it will be probed";
            "config_id" => change.config_id, "state" => change.state.as_str(), "reason" => reason,
            "held" => change.held)
        }
        PartnerState::Paused => {
            warn!(log, "partner paused; its events are held until an operator resumes it";
            "config_id" => change.config_id, "state" => change.state.as_str(), "reason" => reason,
            "held" => change.held)
        }
        PartnerState::Active => info!(log, "partner active again; its held events are released";
            "config_id" => change.config_id, "state" => change.state.as_str(), "reason" => reason,
            "held" => change.held),
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
    Fut: Future<Output = Result<T, EngineError>>,
{
    let deadline = Instant::now() + give_up_after;
    let mut backoff = Duration::from_millis(50);
    loop {
        match op().await {
            Ok(value) => return Some(value),
            Err(e) if Instant::now() + backoff < deadline => {
                warn!(log, "database write failed; retrying"; "what" => what, "error" => describe(&e),
                    "retry_in_ms" => backoff.as_millis() as u64);
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(2));
            }
            Err(e) => {
                error!(log, "database write failed; giving up"; "error" => describe(&e), "what" => what);
                return None;
            }
        }
    }
}

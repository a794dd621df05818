//! Retention: the pruner that every worker process runs, deleting finished rows older than
//! `RETENTION_COMPLETED` / `RETENTION_FAILED` (with their attempt history) and throughput
//! counts older than a day. Each pass first settles the debits an API process left waiting for
//! a credit that had completed, was cancelled or was gone, when it died before their recheck
//! (`store::queue::order::sweep`), then heals the other invariants that can heal
//! ([`heal`]; docs/operations.md, "Invariants and `webhookd check`").
//!
//! One process prunes at a time: a pass first takes a PostgreSQL advisory lock on a connection
//! of its own, and a process that finds it taken skips the pass. The deletes themselves run on
//! that connection in batches of [`BATCH`] rows, one short statement each, so no lock is held
//! for long and a queue of millions is trimmed without stalling the workers.

use std::time::{Duration, Instant};

use diesel_async::AsyncPgConnection;
use tokio_util::sync::CancellationToken;

use crate::config::RetentionSettings;
use crate::store;
use crate::store::check;
use crate::store::queue::order;
use crate::store::queue::retention::{self, Rule};

use super::check::{self as invariants, Invariant};
use super::AppError;

/// Rows deleted by one statement.
pub const BATCH: i64 = 1000;

/// What one pass removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Pruned {
    pub completed: i64,
    pub failed: i64,
    pub cancelled: i64,
    /// Archived attempts (`webhook_attempt_history`) of the deleted entries.
    pub archived_attempts: i64,
    /// Per-second rows of `webhook_throughput`.
    pub throughput: i64,
    /// Waiting debits settled because their credit had completed, was cancelled or was gone.
    pub stranded_debits: i64,
    /// Processing rows without a lease given one that has run out.
    pub leases_expired: i64,
    /// Tripped partners without a probe time given one.
    pub probes_scheduled: i64,
    /// Statistics counter cells set right.
    pub counter_cells_recounted: i64,
    /// The counters were not counted: the queue took longer than `QUERY_TIMEOUT` to count.
    pub counters_unchecked: bool,
}

impl Pruned {
    pub fn entries(&self) -> i64 {
        self.completed + self.failed + self.cancelled
    }

    /// What the pass healed, by the invariant it had found broken.
    pub fn healed(&self) -> [(Invariant, i64); 4] {
        [
            (Invariant::StaleCreditWait, self.stranded_debits),
            (Invariant::ProcessingWithoutLease, self.leases_expired),
            (Invariant::TrippedWithoutProbe, self.probes_scheduled),
            (Invariant::CountersDrift, self.counter_cells_recounted),
        ]
    }

    fn add(&mut self, rule: Rule, removed: retention::Removed) {
        match rule {
            Rule::Completed => self.completed += removed.entries,
            Rule::Failed => self.failed += removed.entries,
            Rule::Cancelled => self.cancelled += removed.entries,
        }
        self.archived_attempts += removed.archived_attempts;
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pass {
    /// This process held the lock and pruned (possibly nothing).
    Done(Pruned),
    /// Another process holds the pruning lock; nothing was done.
    Busy,
}

fn age_of(rule: Rule, settings: &RetentionSettings) -> Option<Duration> {
    match rule {
        Rule::Completed => settings.completed,
        Rule::Failed | Rule::Cancelled => settings.failed,
    }
}

/// Between two full batches the pruner rests as long as the last one took, so a large
/// backlog of old rows is deleted at half the pace the database could, not in one burst that
/// holds up deliveries (`just bench soak` showed p99 spikes of 100-160 ms at every pass
/// without the rest).
async fn rest_after(batch_started: Instant) {
    tokio::time::sleep(batch_started.elapsed()).await;
}

/// Heals the invariants that can heal, first the stranded debits (`stale_credit_wait`).
/// `probe_interval` (`CIRCUIT_PROBE_INTERVAL`) is the wait after the probe given to a tripped
/// partner that had none. Runs under the pruning lock, which `check::recount` needs. The
/// counters are recounted only once the check has found them drifted, so a sound queue costs
/// one count of it per pass; a queue too large to count within `bound` is not counted
/// (`webhookd check` with a longer `QUERY_TIMEOUT` does).
async fn heal(
    conn: &mut AsyncPgConnection,
    probe_interval: Duration,
    bound: Duration,
) -> Result<Pruned, AppError> {
    let mut healed = Pruned {
        stranded_debits: order::sweep(conn).await?.into(),
        leases_expired: check::expire_missing_leases(conn).await?,
        probes_scheduled: check::schedule_missing_probes(conn, probe_interval).await?,
        ..Pruned::default()
    };
    let drift = invariants::find(conn, Invariant::CountersDrift, bound).await?;
    healed.counters_unchecked = !drift.checked;
    if drift.count > 0 {
        healed.counter_cells_recounted = check::recount(conn).await?;
    }
    Ok(healed)
}

/// One pruning pass, unless another process is pruning: the heals, then the deletes, in
/// batches of [`BATCH`] rows. Stops between batches once `stop` is cancelled. `bound`
/// (`QUERY_TIMEOUT`) bounds the count of the counters; `progress` is told the totals after
/// every batch.
pub async fn prune_once(
    database_url: &str,
    settings: &RetentionSettings,
    probe_interval: Duration,
    bound: Duration,
    stop: &CancellationToken,
    mut progress: impl FnMut(&Pruned),
) -> Result<Pass, AppError> {
    let mut conn = store::connect(database_url).await.map_err(AppError::from)?;
    if !retention::try_lock(&mut conn).await? {
        return Ok(Pass::Busy);
    }
    let mut pruned = heal(&mut conn, probe_interval, bound).await?;
    for rule in Rule::ALL {
        let Some(age) = age_of(rule, settings) else {
            continue;
        };
        while !stop.is_cancelled() {
            let started = Instant::now();
            let removed = retention::delete_batch(&mut conn, rule, age, BATCH).await?;
            pruned.add(rule, removed);
            progress(&pruned);
            if removed.entries < BATCH {
                break;
            }
            rest_after(started).await;
        }
    }
    while !stop.is_cancelled() {
        let started = Instant::now();
        let removed = retention::delete_throughput_batch(&mut conn, BATCH).await?;
        pruned.throughput += removed;
        if removed < BATCH {
            break;
        }
        rest_after(started).await;
    }
    // Closing the connection would release the lock too; unlocking says so explicitly.
    retention::unlock(&mut conn).await?;
    Ok(Pass::Done(pruned))
}

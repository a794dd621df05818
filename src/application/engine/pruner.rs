//! The pruner service: a retention pass (`application::retention`), which begins by healing
//! the invariants that can heal (the sweep of stranded debits first), every
//! `RETENTION_INTERVAL`, in every worker process; the passes take turns through a lock.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slog::{debug, info, warn, Logger};
use tokio_util::sync::CancellationToken;

use super::error::EngineError;
use super::service::{Round, Service};
use crate::application::check::CounterCounts;
use crate::application::metrics::Metrics;
use crate::application::retention::{prune_once, Pass, Pruned};
use crate::config::RetentionSettings;
use crate::store::queue::retention::Rule;

pub struct Pruner {
    database_url: String,
    settings: RetentionSettings,
    /// `CIRCUIT_PROBE_INTERVAL`, for a tripped partner healed of a missing probe time.
    probe_interval: Duration,
    /// `QUERY_TIMEOUT`, the bound on the count of the counters.
    bound: Duration,
    /// Which passes count the statistics counters.
    counters: CounterCounts,
    /// Counts what the passes healed.
    metrics: Arc<Metrics>,
    /// Ends a pass between two batches.
    stop: CancellationToken,
    log: Logger,
}

impl Pruner {
    pub fn new(
        database_url: String,
        settings: RetentionSettings,
        probe_interval: Duration,
        bound: Duration,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Self {
        info!(log, "pruning";
            "retention_completed" => settings.completed.map(|d| humantime::format_duration(d).to_string()),
            "retention_failed" => settings.failed.map(|d| humantime::format_duration(d).to_string()),
            "interval_ms" => settings.interval.as_millis() as u64);
        Self {
            database_url,
            settings,
            probe_interval,
            bound,
            counters: CounterCounts::default(),
            metrics,
            stop: CancellationToken::new(),
            log,
        }
    }
}

impl Service for Pruner {
    const NAME: &'static str = "pruner";

    /// One pruning pass, then a rest of `RETENTION_INTERVAL`. A failed pass is logged and
    /// tried again at the next interval.
    async fn run_once(&mut self) -> Result<Round, EngineError> {
        let mut progress = Progress::new(&self.metrics, &self.log);
        let counting = self.counters.due();
        let pass = prune_once(
            &self.database_url,
            &self.settings,
            self.probe_interval,
            counting.then_some(self.bound),
            &self.stop,
            |so_far| progress.batch(so_far),
        )
        .await;
        if let Ok(Pass::Done(p)) = &pass {
            if counting {
                self.counters.tried(!p.counters_unchecked);
            }
        }
        if let Ok(Pass::Done(p)) = &pass {
            for (invariant, n) in p.healed() {
                self.metrics.repaired(invariant, n);
            }
        }
        match pass {
            Ok(Pass::Done(p))
                if p.entries()
                    + p.archived_attempts
                    + p.throughput
                    + p.healed().iter().map(|(_, n)| n).sum::<i64>()
                    > 0 =>
            {
                info!(self.log, "pruned old rows"; "completed" => p.completed, "failed" => p.failed,
                    "cancelled" => p.cancelled, "archived_attempts" => p.archived_attempts,
                    "throughput_rows" => p.throughput, "stranded_debits_settled" => p.stranded_debits,
                    "leases_expired" => p.leases_expired, "probes_scheduled" => p.probes_scheduled,
                    "counter_cells_recounted" => p.counter_cells_recounted);
            }
            Ok(Pass::Done(p)) if counting && p.counters_unchecked => {
                info!(self.log, "statistics counters not checked: counting the queue takes longer than QUERY_TIMEOUT; `webhookd check` with a longer one counts them";
                    "query_timeout_ms" => self.bound.as_millis() as u64,
                    "next_try_in_passes" => CounterCounts::SKIP_AFTER_UNFIT)
            }
            Ok(Pass::Done(_)) => debug!(self.log, "nothing to prune"),
            Ok(Pass::Busy) => debug!(self.log, "another process is pruning; pass skipped"),
            Err(e) => warn!(self.log, "pruning failed; trying again next interval"; "error" => %e,
                "cause" => e.cause().unwrap_or_default()),
        }
        Ok(Round::Rest(self.settings.interval))
    }

    /// Passes until `stop`; a pass under way ends at the end of its current batch rather than
    /// mid-statement.
    async fn run(mut self, stop: CancellationToken) -> Result<(), EngineError> {
        self.stop = stop.clone();
        while !stop.is_cancelled() {
            let Round::Rest(pause) = self.run_once().await? else {
                continue;
            };
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = tokio::time::sleep(pause) => {}
            }
        }
        Ok(())
    }
}

/// What a pass has deleted so far: counted in the metrics after every batch, and logged every
/// [`Progress::EVERY`] while a long pass runs, so a backlog's deletion can be followed.
struct Progress<'a> {
    metrics: &'a Metrics,
    log: &'a Logger,
    counted: Pruned,
    started: Instant,
    logged: Instant,
}

impl<'a> Progress<'a> {
    const EVERY: Duration = Duration::from_secs(10);

    fn new(metrics: &'a Metrics, log: &'a Logger) -> Self {
        let now = Instant::now();
        Self {
            metrics,
            log,
            counted: Pruned::default(),
            started: now,
            logged: now,
        }
    }

    fn batch(&mut self, so_far: &Pruned) {
        for (rule, total, counted) in [
            (Rule::Completed, so_far.completed, self.counted.completed),
            (Rule::Failed, so_far.failed, self.counted.failed),
            (Rule::Cancelled, so_far.cancelled, self.counted.cancelled),
        ] {
            self.metrics.pruned(rule, total - counted);
        }
        self.counted = so_far.clone();
        if self.logged.elapsed() >= Self::EVERY {
            self.logged = Instant::now();
            info!(self.log, "pruning"; "completed" => so_far.completed, "failed" => so_far.failed,
                "cancelled" => so_far.cancelled, "archived_attempts" => so_far.archived_attempts,
                "elapsed_ms" => self.started.elapsed().as_millis() as u64);
        }
    }
}

//! The pruner service: a retention pass (`application::retention`), which begins by healing
//! the invariants that can heal (the sweep of stranded debits first), every
//! `RETENTION_INTERVAL`, in every worker process; the passes take turns through a lock.

use std::sync::Arc;
use std::time::Duration;

use slog::{debug, info, warn, Logger};
use tokio_util::sync::CancellationToken;

use super::error::EngineError;
use super::service::{Round, Service};
use crate::application::metrics::Metrics;
use crate::application::retention::{prune_once, Pass};
use crate::config::RetentionSettings;

pub struct Pruner {
    database_url: String,
    settings: RetentionSettings,
    /// `CIRCUIT_PROBE_INTERVAL`, for a tripped partner healed of a missing probe time.
    probe_interval: Duration,
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
        let pass = prune_once(
            &self.database_url,
            &self.settings,
            self.probe_interval,
            &self.stop,
        )
        .await;
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

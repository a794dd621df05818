//! The prober service: releases the probe of each tripped partner when its time comes
//! (`store::partners::release_probes`); the workers then claim the probe like any due row. Every
//! worker process runs one; the database gives each probe time to one of them.

use std::time::Duration;

use chrono::Utc;
use slog::{info, warn, Logger};

use super::error::EngineError;
use super::service::{Round, Service};
use crate::error_chain::describe;
use crate::store::{partners, DbPool};

pub struct Prober {
    pool: DbPool,
    /// Longest rest: a partner tripped by another process is noticed within it.
    poll_interval: Duration,
    log: Logger,
}

impl Prober {
    pub fn new(pool: DbPool, poll_interval: Duration, log: Logger) -> Self {
        Self {
            pool,
            poll_interval,
            log,
        }
    }

    async fn probe(&self) -> Result<Duration, EngineError> {
        let mut conn = self.pool.get().await?;
        for probe in partners::release_probes(&mut conn).await? {
            info!(self.log, "probe released"; "config_id" => probe.config_id,
                "row_id" => probe.probe_row,
                "next_probe_at" => probe.next_probe_at.map(|t| t.to_rfc3339()));
        }
        let rest = match partners::next_probe_at(&mut conn).await? {
            Some(at) => (at - Utc::now()).to_std().unwrap_or(Duration::ZERO),
            None => self.poll_interval,
        };
        Ok(rest.min(self.poll_interval))
    }
}

impl Service for Prober {
    const NAME: &'static str = "prober";

    /// Releases the probes that are due, then rests until the next one (at most the poll
    /// interval). A failure is logged and tried again after the poll interval.
    async fn run_once(&mut self) -> Result<Round, EngineError> {
        match self.probe().await {
            Ok(rest) => Ok(Round::Rest(rest.max(Duration::from_millis(10)))),
            Err(e) => {
                warn!(self.log, "probe release failed"; "error" => describe(&e));
                Ok(Round::Rest(self.poll_interval))
            }
        }
    }
}

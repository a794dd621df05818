//! The prober service: wakes a worker when a tripped partner's probe falls due, since the
//! claim takes probes (`webhook_claim`, sql/rules/05_claim.sql) and a busy queue may have no other
//! reason to claim then. Every worker process runs one; the database gives each probe time to
//! one claim.

use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use slog::{warn, Logger};
use tokio::sync::Notify;

use super::error::EngineError;
use super::service::{Round, Service};
use crate::error_chain::describe;
use crate::store::{partners, DbPool};

pub struct Prober {
    pool: DbPool,
    wake: Arc<Notify>,
    /// Longest rest: a partner tripped by another process is noticed within it.
    poll_interval: Duration,
    log: Logger,
}

impl Prober {
    pub fn new(pool: DbPool, wake: Arc<Notify>, poll_interval: Duration, log: Logger) -> Self {
        Self {
            pool,
            wake,
            poll_interval,
            log,
        }
    }

    /// Wakes a worker if a probe is due, and says how long to rest until the next one.
    async fn probe(&self) -> Result<Duration, EngineError> {
        let mut conn = self.pool.get().await?;
        let Some(at) = partners::next_probe_at(&mut conn).await? else {
            return Ok(self.poll_interval);
        };
        match (at - Utc::now()).to_std() {
            Ok(rest) if !rest.is_zero() => Ok(rest.min(self.poll_interval)),
            _ => {
                self.wake.notify_one();
                // The claim moves the probe time on; look again soon in case no worker claimed.
                Ok(Duration::from_millis(100))
            }
        }
    }
}

impl Service for Prober {
    const NAME: &'static str = "prober";

    /// Wakes a worker for the probes that are due, then rests until the next one (at most the
    /// poll interval). A failure is logged and tried again after the poll interval.
    async fn run_once(&mut self) -> Result<Round, EngineError> {
        match self.probe().await {
            Ok(rest) => Ok(Round::Rest(rest.max(Duration::from_millis(10)))),
            Err(e) => {
                warn!(self.log, "probe check failed"; "error" => describe(&e));
                Ok(Round::Rest(self.poll_interval))
            }
        }
    }
}

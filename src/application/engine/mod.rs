//! The delivery engine: workers claim due rows, call partners, and hand outcomes to one
//! batching writer; a listener wakes idle workers when rows arrive, a pruner applies
//! retention, and a prober wakes a worker when a tripped partner's probe falls due. Each is a [`service::Service`], started and stopped the same way.
//!
//! No transaction or pooled connection is held while a partner is called: a claim is one
//! statement, each call runs as its own task, and outcomes are written later, fenced on the
//! claim's `(worker_id, locked_at)`. Idle workers sleep until a NOTIFY, the earliest due
//! time, or the poll interval, whichever comes first.

mod deliver;
pub mod error;
mod handoff;
mod hosts;
pub mod listener;
pub mod prober;
pub mod pruner;
pub mod service;
mod shared;
mod worker;
mod writer;

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use slog::{info, o, warn, Logger};
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use self::handoff::Handoff;
use super::metrics::Metrics;
use crate::config::Settings;
use crate::sender::Sender;
use crate::store::queue::outcome::Circuit;
use crate::store::DbPool;

pub use error::EngineError;
use listener::Listener;
use prober::Prober;
use pruner::Pruner;
use service::Running;
use shared::Shared;
use worker::Worker;
use writer::Writer;

/// A running engine: `WORKER_COUNT` workers, the writer, the listener and the pruner.
pub struct Engine {
    workers: Vec<Running>,
    writer: Running,
    listener: Running,
    pruner: Running,
    prober: Running,
    stop: CancellationToken,
    abandon: CancellationToken,
    shutdown_timeout: Duration,
    log: Logger,
}

impl Engine {
    /// Starts the engine's services on the current runtime. What the workers do is recorded
    /// in `metrics`.
    pub fn start(
        settings: &Settings,
        pool: DbPool,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> Result<Self, EngineError> {
        let sender = Sender::new(&settings.delivery)?;
        let wake = Arc::new(Notify::new());
        let capacity = settings.worker.count * settings.worker.batch_size * 2;
        let (finished, finished_rx) = mpsc::channel(capacity.max(64));
        let stop = CancellationToken::new();
        let abandon = CancellationToken::new();
        let handoff = Handoff::default();
        let shared = Arc::new(Shared {
            pool: pool.clone(),
            sender,
            retry: settings.retry.clone(),
            hosts: hosts::HostLimiter::new(settings.delivery.host_concurrency),
            metrics: metrics.clone(),
            wake: wake.clone(),
            claiming: tokio::sync::Mutex::new(()),
            claim_again: AtomicBool::new(false),
            left_behind: AtomicBool::new(false),
            finished,
            handoff: handoff.clone(),
            batch_size: settings.worker.batch_size,
            partner_share: (settings.worker.count * settings.worker.batch_size / 2).max(1),
            poll_interval: settings.worker.poll_interval,
            lease: settings.worker.lock_duration,
            http_timeout: settings.delivery.http_timeout,
            stop: stop.clone(),
            abandon: abandon.clone(),
            log: log.clone(),
        });

        let writer = service::start(
            Writer::new(
                pool.clone(),
                finished_rx,
                wake.clone(),
                handoff,
                settings.worker.lock_duration,
                stop.clone(),
                settings.shutdown_timeout.max(Duration::from_secs(5)),
                Circuit {
                    failure_threshold: settings.circuit.failure_threshold as i32,
                    probe_interval_ms: settings.circuit.probe_interval.as_millis() as i64,
                },
                metrics.clone(),
                log.new(o!("task" => "writer")),
            ),
            CancellationToken::new(),
            &log,
        );
        let listener = service::start(
            Listener::new(
                settings.database_url.expose().to_string(),
                wake.clone(),
                log.new(o!("task" => "listener")),
            ),
            CancellationToken::new(),
            &log,
        );
        let pruner = service::start(
            Pruner::new(
                settings.database_url.expose().to_string(),
                settings.retention.clone(),
                settings.circuit.probe_interval,
                settings.query_timeout,
                metrics,
                log.new(o!("task" => "pruner")),
            ),
            stop.child_token(),
            &log,
        );
        let prober = service::start(
            Prober::new(
                pool.clone(),
                wake.clone(),
                settings.worker.poll_interval,
                log.new(o!("task" => "prober")),
            ),
            stop.child_token(),
            &log,
        );
        let workers = (0..settings.worker.count)
            .map(|n| {
                let worker_id = format!("{}-w{n}", settings.worker.id);
                service::start(Worker::new(shared.clone(), worker_id), stop.clone(), &log)
            })
            .collect();
        info!(log, "workers started"; "workers" => settings.worker.count,
            "batch_size" => settings.worker.batch_size, "worker_id" => &settings.worker.id);
        Ok(Self {
            workers,
            writer,
            listener,
            pruner,
            prober,
            stop,
            abandon,
            shutdown_timeout: settings.shutdown_timeout,
            log,
        })
    }

    /// Shuts down gracefully: workers stop claiming, in-flight calls get `SHUTDOWN_TIMEOUT`
    /// to finish, rows not yet called are handed back, and every outcome is written before
    /// this returns.
    pub async fn stop(self) -> Result<(), EngineError> {
        let log = self.log;
        info!(log, "shutting down workers"; "grace_ms" => self.shutdown_timeout.as_millis() as u64);
        self.stop.cancel();
        let mut workers = std::pin::pin!(futures_util::future::join_all(
            self.workers.into_iter().map(Running::join)
        ));
        let results = tokio::select! {
            results = &mut workers => results,
            _ = tokio::time::sleep(self.shutdown_timeout) => {
                warn!(log, "shutdown grace period over; abandoning calls still in flight");
                self.abandon.cancel();
                workers.await
            }
        };
        let listener = self.listener.shutdown().await;
        // The pruner stops at the end of its current batch.
        let pruner = self.pruner.join().await;
        let prober = self.prober.join().await;
        // Every worker is gone, and with them every sender of outcomes: the writer drains
        // and ends.
        let writer = self.writer.join().await;
        info!(log, "workers stopped");
        results
            .into_iter()
            .chain([listener, pruner, prober, writer])
            .collect()
    }
}

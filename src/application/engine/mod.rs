//! The delivery engine: workers claim due rows, call partners, and hand outcomes to one
//! batching writer; a listener wakes idle workers when rows arrive, a pruner applies
//! retention, and a prober wakes a worker when a tripped partner's probe falls due. Each is a
//! [`service::Service`]; [`build`] makes them, and `startup::supervisor` starts and stops them.
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
mod partner_calls;
pub mod prober;
pub mod pruner;
pub mod service;
mod shared;
mod throughput;
mod worker;
mod writer;

use std::sync::Arc;

use slog::{o, Logger};
use tokio_util::sync::CancellationToken;

use super::metrics::Metrics;
use crate::config::Settings;
use crate::store::DbPool;

pub use error::EngineError;
pub use listener::Listener;
pub use prober::Prober;
pub use pruner::Pruner;
use shared::{Shared, Signals};
pub use worker::Worker;
pub use writer::Writer;

/// The engine's services, built and not yet started: `startup::supervisor` starts and stops
/// them. The workers stop claiming when [`EngineServices::workers_stop`] is cancelled (it is
/// their stop token), and abandon their calls when [`EngineServices::abandon`] is.
pub struct EngineServices {
    pub workers: Vec<Worker>,
    pub writer: Writer,
    pub listener: Listener,
    pub pruner: Pruner,
    pub prober: Prober,
    pub workers_stop: CancellationToken,
    pub abandon: CancellationToken,
}

/// Builds the engine's services for `settings`: `WORKER_COUNT` workers, the writer, the
/// listener, the pruner and the prober. What the workers do is recorded in `metrics`.
pub fn build(
    settings: &Settings,
    pool: DbPool,
    metrics: Arc<Metrics>,
    log: &Logger,
) -> Result<EngineServices, EngineError> {
    // Room for what every worker can hold twice over.
    let (signals, finished_rx) =
        Signals::new(settings.worker.count * settings.worker.batch_size * 2);
    let shared = Arc::new(Shared::new(
        settings,
        pool.clone(),
        metrics.clone(),
        signals.clone(),
        log,
    )?);
    let writer = Writer::new(
        settings,
        pool.clone(),
        finished_rx,
        &signals,
        metrics.clone(),
        log.new(o!("task" => "writer")),
    );
    let listener = Listener::new(
        settings.database_url.expose().to_string(),
        signals.wake.clone(),
        log.new(o!("task" => "listener")),
    );
    let pruner = Pruner::new(
        settings.database_url.expose().to_string(),
        settings.retention.clone(),
        settings.circuit.probe_interval,
        settings.query_timeout,
        metrics,
        log.new(o!("task" => "pruner")),
    );
    let prober = Prober::new(
        pool,
        signals.wake.clone(),
        settings.worker.poll_interval,
        log.new(o!("task" => "prober")),
    );
    let workers = (0..settings.worker.count)
        .map(|n| Worker::new(shared.clone(), format!("{}-w{n}", settings.worker.id)))
        .collect();
    Ok(EngineServices {
        workers,
        writer,
        listener,
        pruner,
        prober,
        workers_stop: signals.stop,
        abandon: signals.abandon,
    })
}

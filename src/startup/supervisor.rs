//! The supervisor: owns every service of a process — the API server, the submit batcher and the
//! debit rechecks behind it; the workers, the outcome writer, the listener, the prober and the
//! pruner — starts them here and nowhere else, and stops them in one order:
//!
//! 1. **Stop taking work.** The API server stops accepting requests and answers those in
//!    flight; then the submit batcher inserts what it took, and the rechecks recheck what they
//!    were handed. At the same time the workers stop claiming and finish their calls; calls
//!    still running after `SHUTDOWN_TIMEOUT` are abandoned and their rows handed back.
//! 2. **Flush writes.** Once no worker is left to send one, the writer writes every outcome and
//!    hand-back it was sent.
//! 3. **The rest**: the listener, the prober, and the pruner (at the end of its current batch).
//!
//! Every service is joined, and how each ended is reported ([`Stopped`]).

use std::net::TcpListener;
use std::time::Duration;

use slog::{info, warn, Logger};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiServices, ApiState};
use crate::application::engine::service::{self, Running};
use crate::application::engine::{EngineError, EngineServices};
use crate::error_chain::describe;

/// Every service a process runs, started.
pub struct Supervisor {
    api: Option<ApiSide>,
    engine: Option<EngineSide>,
    log: Logger,
}

struct ApiSide {
    server: Running,
    batcher: Running,
    rechecker: Running,
}

struct EngineSide {
    workers: Vec<Running>,
    writer: Running,
    listener: Running,
    prober: Running,
    pruner: Running,
    abandon: CancellationToken,
    grace: Duration,
}

/// How one service ended, and when its join returned.
#[derive(Debug)]
pub struct Joined {
    pub name: &'static str,
    pub result: Result<(), EngineError>,
    pub at: Instant,
}

/// How every service ended, in the order they were stopped.
#[derive(Debug, Default)]
pub struct Stopped {
    pub services: Vec<Joined>,
}

impl Stopped {
    /// Ok when every service ended cleanly; else an error naming each that did not.
    pub fn into_result(self) -> anyhow::Result<()> {
        let failed: Vec<String> = self
            .services
            .iter()
            .filter_map(|s| s.result.as_ref().err().map(|e| (s.name, e)))
            .map(|(name, e)| format!("{name}: {}", describe(e)))
            .collect();
        match failed.len() {
            0 => Ok(()),
            1 => anyhow::bail!("a service did not stop cleanly: {}", failed[0]),
            n => anyhow::bail!("{n} services did not stop cleanly: {}", failed.join("; ")),
        }
    }
}

impl Supervisor {
    pub fn new(log: &Logger) -> Self {
        Self {
            api: None,
            engine: None,
            log: log.clone(),
        }
    }

    /// Serves the API on `listener`, with the services its handlers hand work to.
    pub fn start_api(
        &mut self,
        listener: TcpListener,
        state: ApiState,
        services: ApiServices,
        shutdown_timeout: Duration,
    ) {
        let log = &state.log.clone();
        let stop = CancellationToken::new();
        let serve = api::serve(listener, state, stop.clone(), shutdown_timeout);
        let server = service::spawn("API server", stop, async move { Ok(serve.await?) }, log);
        self.api = Some(ApiSide {
            server,
            batcher: service::start(services.batcher, CancellationToken::new(), log),
            rechecker: service::start(services.rechecker, CancellationToken::new(), log),
        });
    }

    /// Starts the delivery engine's services; calls in flight get `grace` to finish at stop.
    pub fn start_engine(&mut self, engine: EngineServices, grace: Duration, log: &Logger) {
        let workers: Vec<Running> = engine
            .workers
            .into_iter()
            .map(|worker| service::start(worker, engine.workers_stop.clone(), log))
            .collect();
        self.engine = Some(EngineSide {
            workers,
            writer: service::start(engine.writer, CancellationToken::new(), log),
            listener: service::start(engine.listener, CancellationToken::new(), log),
            prober: service::start(engine.prober, CancellationToken::new(), log),
            pruner: service::start(engine.pruner, CancellationToken::new(), log),
            abandon: engine.abandon,
            grace,
        });
    }

    fn every_service(&mut self) -> Vec<&mut Running> {
        let mut all = Vec::new();
        if let Some(api) = &mut self.api {
            all.extend([&mut api.server, &mut api.batcher, &mut api.rechecker]);
        }
        if let Some(engine) = &mut self.engine {
            all.extend(engine.workers.iter_mut());
            all.extend([
                &mut engine.writer,
                &mut engine.listener,
                &mut engine.prober,
                &mut engine.pruner,
            ]);
        }
        all
    }

    /// Waits until a service ends without being asked to (the API server could not serve, a
    /// service failed or panicked), and names it. Cancel-safe.
    pub async fn ended_by_itself(&mut self) -> &'static str {
        let waits: Vec<_> = self
            .every_service()
            .into_iter()
            .map(|running| {
                Box::pin(async move {
                    running.ended().await;
                    running.name()
                })
            })
            .collect();
        if waits.is_empty() {
            return std::future::pending().await;
        }
        futures_util::future::select_all(waits).await.0
    }

    /// Stops every service in the order of the module's header, and reports how each ended.
    pub async fn stop(self) -> Stopped {
        let log = self.log;
        let (api, engine) = match self.engine {
            Some(engine) => {
                let EngineSide {
                    workers,
                    writer,
                    listener,
                    prober,
                    pruner,
                    abandon,
                    grace,
                } = engine;
                let (api, workers) = tokio::join!(
                    stop_api(self.api),
                    stop_workers(workers, &abandon, grace, &log)
                );
                let mut engine = workers;
                engine.push(stop_one(writer).await);
                for rest in [listener, prober, pruner] {
                    engine.push(stop_one(rest).await);
                }
                info!(log, "workers stopped");
                (api, engine)
            }
            None => (stop_api(self.api).await, Vec::new()),
        };
        Stopped {
            services: api.into_iter().chain(engine).collect(),
        }
    }
}

async fn stop_one(running: Running) -> Joined {
    running.stop();
    join(running).await
}

async fn join(running: Running) -> Joined {
    let name = running.name();
    let result = running.join().await;
    Joined {
        name,
        result,
        at: Instant::now(),
    }
}

/// The API side, one after the other: the server (no request left), the batcher (no submit
/// left), the rechecks (no key left).
async fn stop_api(api: Option<ApiSide>) -> Vec<Joined> {
    let Some(api) = api else {
        return Vec::new();
    };
    let mut joined = Vec::with_capacity(3);
    for running in [api.server, api.batcher, api.rechecker] {
        joined.push(stop_one(running).await);
    }
    joined
}

/// The workers stop claiming and finish their calls; after `grace`, the calls still running
/// are abandoned (their rows handed back).
async fn stop_workers(
    workers: Vec<Running>,
    abandon: &CancellationToken,
    grace: Duration,
    log: &Logger,
) -> Vec<Joined> {
    info!(log, "shutting down workers"; "grace_ms" => grace.as_millis() as u64);
    for worker in &workers {
        worker.stop();
    }
    let mut joining = std::pin::pin!(futures_util::future::join_all(
        workers.into_iter().map(join)
    ));
    tokio::select! {
        joined = &mut joining => joined,
        _ = tokio::time::sleep(grace) => {
            warn!(log, "shutdown grace period over; abandoning calls still in flight");
            abandon.cancel();
            joining.await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_names_every_service_that_failed() {
        let at = Instant::now();
        let ok = |name| Joined {
            name,
            result: Ok(()),
            at,
        };
        let failed = |name| Joined {
            name,
            result: Err(EngineError::Server(std::io::Error::other("gone"))),
            at,
        };
        assert!(Stopped {
            services: vec![ok("writer")]
        }
        .into_result()
        .is_ok());
        let report = Stopped {
            services: vec![failed("API server"), ok("writer"), failed("pruner")],
        }
        .into_result()
        .unwrap_err()
        .to_string();
        assert!(report.starts_with("2 services"), "{report}");
        assert!(report.contains("API server: "), "{report}");
        assert!(report.contains("pruner: "), "{report}");
    }
}

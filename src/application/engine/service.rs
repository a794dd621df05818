//! The one shape of the engine's background tasks: the claim loop, the outcome writer, the
//! listener, the pruner and the submit batcher are each a [`Service`], started by [`start`]
//! and stopped through the [`Running`] handle it returns.
//!
//! A service's work is a sequence of rounds ([`Service::run_once`]): what a round is depends
//! on the service (one claim, one batch written, one notification, one pruning pass), and a
//! test can drive a service round by round instead of waiting on its timers.

use std::future::Future;
use std::time::Duration;

use slog::{debug, error, Logger};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use super::error::EngineError;

/// What a round asks for next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Round {
    /// Run the next round at once.
    Again,
    /// Rest this long (or until stopped) before the next round.
    Rest(Duration),
    /// Nothing more will come: the service ends.
    Finished,
}

/// A background task of the engine.
pub trait Service: Send + Sized + 'static {
    /// Its name in logs and errors.
    const NAME: &'static str;

    /// One round of work.
    fn run_once(&mut self) -> impl Future<Output = Result<Round, EngineError>> + Send;

    /// The service's life: rounds until `stop` is cancelled or a round says it is finished.
    /// A round under way when `stop` comes is abandoned; services with work that must not be
    /// cut short (the writer drains what it was handed, the claim loop finishes its calls)
    /// define their own.
    fn run(
        mut self,
        stop: CancellationToken,
    ) -> impl Future<Output = Result<(), EngineError>> + Send {
        async move {
            loop {
                let round = tokio::select! {
                    biased;
                    _ = stop.cancelled() => return Ok(()),
                    round = self.run_once() => round?,
                };
                match round {
                    Round::Again => {}
                    Round::Rest(pause) => tokio::select! {
                        _ = stop.cancelled() => return Ok(()),
                        _ = tokio::time::sleep(pause) => {}
                    },
                    Round::Finished => return Ok(()),
                }
            }
        }
    }
}

/// A started service.
pub struct Running {
    name: &'static str,
    stop: CancellationToken,
    task: JoinHandle<Result<(), EngineError>>,
}

/// Starts `service` on the current runtime. It stops when `stop` is cancelled (by
/// [`Running::stop`] or by whoever else holds the token); an end by an error is logged.
pub fn start<S: Service>(service: S, stop: CancellationToken, log: &Logger) -> Running {
    let log = log.new(slog::o!("task" => S::NAME));
    debug!(log, "started");
    let task = tokio::spawn({
        let stop = stop.clone();
        async move {
            let result = service.run(stop).await;
            match &result {
                Ok(()) => debug!(log, "stopped"),
                Err(e) => {
                    error!(log, "stopped by an error"; "error" => crate::error_chain::describe(e))
                }
            }
            result
        }
    });
    Running {
        name: S::NAME,
        stop,
        task,
    }
}

impl Running {
    /// Asks the service to stop; [`Running::join`] waits until it has.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits for the service to end, however it ends: a panic is an error too.
    pub async fn join(self) -> Result<(), EngineError> {
        match self.task.await {
            Ok(result) => result,
            Err(cause) => Err(EngineError::Panicked {
                task: self.name,
                cause,
            }),
        }
    }

    /// Stops the service and waits until it has ended.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        self.stop();
        self.join().await
    }
}

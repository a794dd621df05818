//! The one shape of a process's background tasks: the claim loop, the outcome writer, the
//! listener, the pruner, the prober, the submit batcher and the debit rechecks are each a
//! [`Service`], started by [`start`] and stopped through the [`Running`] handle it returns
//! (`startup::supervisor` owns every handle).
//!
//! A service's work is a sequence of rounds ([`Service::run_once`]): what a round is depends
//! on the service (one claim, one batch written, one notification, one pruning pass). A
//! service fed through a channel ([`Fed`]: the writer, the submit batcher, the rechecks) never
//! drops what it was sent: a stop closes its channel, and it ends once it has handled the rest.

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

/// A background task.
pub trait Service: Send + Sized + 'static {
    /// Its name in logs and errors.
    const NAME: &'static str;

    /// One round of work.
    fn run_once(&mut self) -> impl Future<Output = Result<Round, EngineError>> + Send;

    /// The service's life: rounds until `stop` is cancelled or a round says it is finished.
    /// A round under way when `stop` comes is abandoned; services with work that must not be
    /// cut short (the claim loop finishes its calls, a [`Fed`] service what it was sent) define
    /// their own.
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

/// A service whose work is sent to it through a channel. Each round waits for what was sent
/// ([`Fed::receive`]) and handles it ([`Fed::handle`]); a stop closes the channel, so that
/// nothing more can be sent, and the service ends once it has handled what was sent before.
pub trait Fed: Send + Sized + 'static {
    const NAME: &'static str;
    /// What one round handles.
    type Batch: Send;

    /// Waits for the next batch; `None` once the channel is closed and empty. It must be
    /// cancel-safe: a stop may interrupt it, never [`Fed::handle`].
    fn receive(&mut self) -> impl Future<Output = Option<Self::Batch>> + Send;

    /// Handles one batch.
    fn handle(
        &mut self,
        batch: Self::Batch,
    ) -> impl Future<Output = Result<(), EngineError>> + Send;

    /// Closes the channel: what was sent before is still received.
    fn close(&mut self);
}

impl<F: Fed> Service for F {
    const NAME: &'static str = <F as Fed>::NAME;

    async fn run_once(&mut self) -> Result<Round, EngineError> {
        match self.receive().await {
            Some(batch) => {
                self.handle(batch).await?;
                Ok(Round::Again)
            }
            None => Ok(Round::Finished),
        }
    }

    async fn run(mut self, stop: CancellationToken) -> Result<(), EngineError> {
        let mut closed = false;
        loop {
            let received = tokio::select! {
                biased;
                _ = stop.cancelled(), if !closed => None,
                batch = self.receive() => Some(batch),
            };
            match received {
                None => {
                    self.close();
                    closed = true;
                }
                Some(Some(batch)) => self.handle(batch).await?,
                Some(None) => return Ok(()),
            }
        }
    }
}

/// A started service.
pub struct Running {
    name: &'static str,
    stop: CancellationToken,
    task: Task,
}

enum Task {
    Running(JoinHandle<Result<(), EngineError>>),
    Ended(Result<(), EngineError>),
}

/// Starts `service` on the current runtime. It stops when `stop` is cancelled (by
/// [`Running::stop`] or by whoever else holds the token); an end by an error is logged.
pub fn start<S: Service>(service: S, stop: CancellationToken, log: &Logger) -> Running {
    let life = service.run(stop.clone());
    spawn(S::NAME, stop, life, log)
}

/// Runs `life`, a service written as one future, as [`start`] runs a [`Service`]: it should
/// end once `stop` is cancelled.
pub fn spawn<F>(name: &'static str, stop: CancellationToken, life: F, log: &Logger) -> Running
where
    F: Future<Output = Result<(), EngineError>> + Send + 'static,
{
    let log = log.new(slog::o!("task" => name));
    debug!(log, "started");
    let task = tokio::spawn(async move {
        let result = life.await;
        match &result {
            Ok(()) => debug!(log, "stopped"),
            Err(e) => {
                error!(log, "stopped by an error"; "error" => crate::error_chain::describe(e))
            }
        }
        result
    });
    Running {
        name,
        stop,
        task: Task::Running(task),
    }
}

impl Running {
    pub fn name(&self) -> &'static str {
        self.name
    }

    /// Asks the service to stop; [`Running::join`] waits until it has.
    pub fn stop(&self) {
        self.stop.cancel();
    }

    /// Waits until the service has ended, however it ends, and keeps how it ended for
    /// [`Running::join`]. Cancel-safe: dropped before the end, it leaves the service running.
    pub async fn ended(&mut self) {
        if let Task::Running(handle) = &mut self.task {
            let result = match handle.await {
                Ok(result) => result,
                Err(cause) => Err(EngineError::Panicked {
                    task: self.name,
                    cause,
                }),
            };
            self.task = Task::Ended(result);
        }
    }

    /// Waits for the service to end, however it ends: a panic is an error too.
    pub async fn join(mut self) -> Result<(), EngineError> {
        self.ended().await;
        match self.task {
            Task::Ended(result) => result,
            Task::Running(_) => unreachable!("ended() waited for the task"),
        }
    }

    /// Stops the service and waits until it has ended.
    pub async fn shutdown(self) -> Result<(), EngineError> {
        self.stop();
        self.join().await
    }
}

//! What every worker of a process shares: the pool, the HTTP client, the host limits, the
//! claim turn, the channel to the writer, the debits it leased, and the stop signals.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use slog::Logger;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::error::EngineError;
use super::handoff::Handoff;
use super::hosts::HostLimiter;
use super::partner_calls::PartnerCalls;
use crate::application::metrics::Metrics;
use crate::config::Settings;
use crate::domain::retry::RetryPolicy;
use crate::sender::Sender;
use crate::store::queue::outcome::AttemptWrite;
use crate::store::queue::release::Release;
use crate::store::DbPool;

/// What every worker of a process shares.
pub(super) struct Shared {
    pub(super) pool: DbPool,
    pub(super) sender: Sender,
    /// How each partner is called, per version of its config.
    pub(super) partners: PartnerCalls,
    pub(super) retry: RetryPolicy,
    pub(super) hosts: HostLimiter,
    pub(super) metrics: Arc<Metrics>,
    pub(super) wake: Arc<Notify>,
    /// Held while a worker of this process claims: see `worker::claim`.
    pub(super) claiming: tokio::sync::Mutex<()>,
    /// Left by a worker that wanted rows while another was claiming.
    pub(super) claim_again: AtomicBool,
    /// Set while due rows wait for room at their partner's host in this process: each call
    /// that ends then wakes a worker to claim (see `worker::claim`).
    pub(super) left_behind: AtomicBool,
    pub(super) finished: mpsc::Sender<Finished>,
    /// Debits the writer leased with their credits, for the workers to call.
    pub(super) handoff: Handoff,
    pub(super) batch_size: usize,
    /// Most rows of one partner's host this process holds at once: half of what its workers
    /// hold (see `hosts::HostLimiter::room`).
    pub(super) partner_share: usize,
    pub(super) poll_interval: Duration,
    pub(super) lease: Duration,
    pub(super) http_timeout: Duration,
    /// Cancelled at shutdown: stop claiming, hand back rows not yet called.
    pub(super) stop: CancellationToken,
    /// Cancelled when the shutdown grace period is over: abandon calls still running.
    pub(super) abandon: CancellationToken,
    pub(super) log: Logger,
}

/// What a worker hands the writer.
pub enum Finished {
    Attempt(AttemptWrite),
    /// A row handed back uncalled, due again after the delay.
    Release(Release, Duration),
}

/// How the workers, the writer and the engine's other services reach one another.
#[derive(Clone)]
pub(super) struct Signals {
    pub(super) wake: Arc<Notify>,
    pub(super) finished: mpsc::Sender<Finished>,
    pub(super) handoff: Handoff,
    pub(super) stop: CancellationToken,
    pub(super) abandon: CancellationToken,
}

impl Signals {
    /// New signals, and the receiving end of the writer's channel of `capacity` (64 at least).
    pub(super) fn new(capacity: usize) -> (Self, mpsc::Receiver<Finished>) {
        let (finished, finished_rx) = mpsc::channel(capacity.max(64));
        let signals = Signals {
            wake: Arc::new(Notify::new()),
            finished,
            handoff: Handoff::default(),
            stop: CancellationToken::new(),
            abandon: CancellationToken::new(),
        };
        (signals, finished_rx)
    }
}

impl Shared {
    pub(super) fn new(
        settings: &Settings,
        pool: DbPool,
        metrics: Arc<Metrics>,
        signals: Signals,
        log: &Logger,
    ) -> Result<Self, EngineError> {
        let worker = &settings.worker;
        Ok(Self {
            pool,
            sender: Sender::new(&settings.delivery)?,
            partners: PartnerCalls::new(settings.secret_keys.clone()),
            retry: settings.retry.clone(),
            hosts: HostLimiter::new(settings.delivery.host_concurrency),
            metrics,
            wake: signals.wake,
            claiming: tokio::sync::Mutex::new(()),
            claim_again: AtomicBool::new(false),
            left_behind: AtomicBool::new(false),
            finished: signals.finished,
            handoff: signals.handoff,
            batch_size: worker.batch_size,
            partner_share: (worker.count * worker.batch_size / 2).max(1),
            poll_interval: worker.poll_interval,
            lease: worker.lock_duration,
            http_timeout: settings.delivery.http_timeout,
            stop: signals.stop,
            abandon: signals.abandon,
            log: log.clone(),
        })
    }
}

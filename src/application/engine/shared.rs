//! What every worker of a process shares: the pool, the HTTP client, the host limits, the
//! claim turn, the channel to the writer, the debits it leased, and the stop signals.

use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::Duration;

use slog::Logger;
use tokio::sync::{mpsc, Notify};
use tokio_util::sync::CancellationToken;

use super::handoff::Handoff;
use super::hosts::HostLimiter;
use super::writer::Finished;
use crate::application::metrics::Metrics;
use crate::domain::retry::RetryPolicy;
use crate::sender::Sender;
use crate::store::DbPool;

/// What every worker of a process shares.
pub(super) struct Shared {
    pub(super) pool: DbPool,
    pub(super) sender: Sender,
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

//! What every handler is given: the pool, the submit batcher, the config cache, the limits
//! and the logger.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::ratelimit::IngestLimiter;
use crate::application::check::LatestCheck;
use crate::application::config_cache::ConfigCache;
use crate::application::ingest::SubmitBatcher;
use crate::application::metrics::Metrics;
use crate::application::rechecks::DebitRechecks;
use crate::config::{Secret, Settings};
use crate::domain::outbound::AddressPolicy;
use crate::store::DbPool;

/// What handlers share.
pub struct ApiState {
    pub pool: DbPool,
    /// Single submits go through here, so concurrent ones share one insert and one commit.
    pub submits: SubmitBatcher,
    /// Copies of partner configs, checked by every insert that uses one.
    pub configs: Arc<ConfigCache>,
    /// Where submits hand the debits they held for an earlier credit.
    pub rechecks: Arc<DebitRechecks>,
    pub default_max_retries: i32,
    /// `QUERY_TIMEOUT`: the bound on each statement of a search, a redrive's selection, a check.
    pub query_timeout: Duration,
    pub policy: AddressPolicy,
    pub tokens: Vec<Secret>,
    /// The process's metrics: requests are counted here and `/metrics` renders them.
    pub metrics: Arc<Metrics>,
    /// The invariants as last checked, for `/metrics` and `GET /webhooks/check`: checked again
    /// at most once per `RETENTION_INTERVAL`.
    pub checks: LatestCheck,
    /// `None` when `INGEST_RATE_LIMIT` is 0.
    pub limiter: Option<IngestLimiter>,
    pub log: Logger,
}

impl ApiState {
    /// Must be called within the Tokio runtime: it starts the submit batcher and the debit rechecks.
    pub fn new(settings: &Settings, pool: DbPool, metrics: Arc<Metrics>, log: Logger) -> Self {
        let configs = Arc::new(ConfigCache::default());
        let rechecks = Arc::new(DebitRechecks::start(pool.clone(), &log));
        let checks = LatestCheck::new(
            pool.clone(),
            settings.retention.interval,
            settings.query_timeout,
        );
        Self {
            submits: SubmitBatcher::start(
                pool.clone(),
                configs.clone(),
                rechecks.clone(),
                settings.retry.max_retries(),
                &log,
            ),
            configs,
            rechecks,
            pool,
            default_max_retries: settings.retry.max_retries(),
            query_timeout: settings.query_timeout,
            policy: AddressPolicy::new(settings.delivery.allow_networks.clone()),
            tokens: settings.api_tokens.clone(),
            metrics,
            checks,
            limiter: IngestLimiter::new(settings.ingest_rate_limit),
            log,
        }
    }
}

/// A handler's state.
pub type State = actix_web::web::Data<ApiState>;
/// A handler's answer: an `AppError` becomes an error body (`errors.rs`).
pub type Reply = Result<actix_web::HttpResponse, crate::application::AppError>;

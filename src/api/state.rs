//! What every handler is given: the pool, the submit batcher, the config cache, the limits
//! and the logger.

use std::sync::Arc;
use std::time::Duration;

use slog::Logger;

use super::ratelimit::IngestLimiter;
use crate::application::check::LatestCheck;
use crate::application::config_cache::ConfigCache;
use crate::application::ingest::{Batcher, SubmitBatcher};
use crate::application::metrics::Metrics;
use crate::application::rechecks::{DebitRechecks, Rechecker};
use crate::config::{Secret, Settings};
use crate::domain::outbound::AddressPolicy;
use crate::sealing::Keys;
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
    /// `SECRET_KEYS`: what new partner secrets are sealed with.
    pub keys: Keys,
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
    /// What the handlers share, and the services they hand work to, built and not started:
    /// the caller runs them (`startup::supervisor`).
    pub fn new(
        settings: &Settings,
        pool: DbPool,
        metrics: Arc<Metrics>,
        log: Logger,
    ) -> (Self, ApiServices) {
        let configs = Arc::new(ConfigCache::default());
        let (rechecks, rechecker) = DebitRechecks::new(pool.clone(), &log);
        let rechecks = Arc::new(rechecks);
        let (submits, batcher) = SubmitBatcher::new(
            pool.clone(),
            configs.clone(),
            rechecks.clone(),
            settings.retry.max_retries(),
        );
        let checks = LatestCheck::new(
            pool.clone(),
            settings.retention.interval,
            settings.query_timeout,
        );
        let state = Self {
            submits,
            configs,
            rechecks,
            pool,
            default_max_retries: settings.retry.max_retries(),
            query_timeout: settings.query_timeout,
            policy: AddressPolicy::new(settings.delivery.allow_networks.clone()),
            keys: settings.secret_keys.clone(),
            tokens: settings.api_tokens.clone(),
            metrics,
            checks,
            limiter: IngestLimiter::new(settings.ingest_rate_limit),
            log,
        };
        (state, ApiServices { batcher, rechecker })
    }
}

/// The services behind the API's handles: the submit batcher, and the debit rechecks it (and
/// batch submits) hand keys to.
pub struct ApiServices {
    pub batcher: Batcher,
    pub rechecker: Rechecker,
}

/// A handler's state.
pub type State = actix_web::web::Data<ApiState>;
/// A handler's answer: an `ApiError` becomes an error body (`errors.rs`).
pub type Reply = Result<actix_web::HttpResponse, super::errors::ApiError>;

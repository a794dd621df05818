//! Wires a process once — pools, the delivery engine, the API server — for `main` and for
//! the tests alike, so that the tests run the wiring that `serve`, `work` and `run` use.

mod supervisor;

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use slog::{error, info, o, warn, Logger};
use tokio_util::sync::CancellationToken;

use crate::api::ApiState;
use crate::application::engine;
use crate::application::metrics::{Metrics, Role};
use crate::config::Settings;
use crate::store::{self, DbPool};

pub use supervisor::{Joined, Stopped, Supervisor};

/// A started process.
pub struct Application {
    address: Option<SocketAddr>,
    supervisor: Supervisor,
    pool: DbPool,
    metrics: Arc<Metrics>,
    log: Logger,
}

/// Who a pool's connections serve: their session settings differ (`store::worker_pool`).
#[derive(Clone, Copy)]
enum PoolFor {
    Api,
    Workers,
}

impl Application {
    /// Opens the pools, listens on `SERVER_ADDR` (port 0 picks a free port) and starts what
    /// `runs` says: the API (`serve`), the workers (`work`) or both (`run`).
    /// `DATABASE_MAX_CONNECTIONS` is the process's: `run` gives half to the workers and the
    /// rest to the API (one each at least). A database that does not answer, or an address that
    /// cannot be bound, is an error here, before anything has started.
    pub async fn build(settings: &Settings, runs: Role, log: &Logger) -> anyhow::Result<Self> {
        let (api_size, workers_size) = pool_sizes(settings.database_max_connections, runs);
        let api_pool = pool_for_side(settings, PoolFor::Api, api_size).await?;
        let workers_pool = pool_for_side(settings, PoolFor::Workers, workers_size).await?;
        // One registry: `/metrics` shows all that this process runs.
        let metrics = Arc::new(Metrics::new(runs));
        let listener = match &api_pool {
            Some(_) => Some(
                TcpListener::bind(settings.server_addr)
                    .with_context(|| format!("cannot listen on {}", settings.server_addr))?,
            ),
            None => None,
        };
        let worker_log = log.new(o!("component" => "worker"));
        let engine = match &workers_pool {
            Some(pool) => Some(engine::build(
                settings,
                pool.clone(),
                metrics.clone(),
                &worker_log,
            )?),
            None => None,
        };

        warn_of_clear_secrets(settings, api_pool.as_ref().or(workers_pool.as_ref()), log).await;

        // Everything that could fail has: from here on, the services start.
        let mut supervisor = Supervisor::new(log);
        let mut address = None;
        if let (Some(pool), Some(listener)) = (&api_pool, listener) {
            address = Some(listener.local_addr()?);
            start_api(&mut supervisor, settings, pool, listener, &metrics, log);
        }
        if let Some(engine) = engine {
            supervisor.start_engine(engine, settings.shutdown_timeout, &worker_log);
            info!(worker_log, "workers started"; "workers" => settings.worker.count,
                "batch_size" => settings.worker.batch_size, "worker_id" => &settings.worker.id);
        }
        Ok(Self {
            address,
            supervisor,
            pool: api_pool
                .or(workers_pool)
                .expect("a process runs the API, the workers or both"),
            metrics,
            log: log.clone(),
        })
    }

    /// Where the API listens, if this process serves it.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.address
    }

    /// The API's pool, or the workers' in a process without the API.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs until `stop` is cancelled, or until a service ends by itself (the API server
    /// failed, a service panicked), then stops every service. A service that ended by itself is
    /// the process's error.
    pub async fn run_until(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let ended = tokio::select! {
            _ = stop.cancelled() => None,
            name = self.supervisor.ended_by_itself() => Some(name),
        };
        if let Some(name) = ended {
            error!(self.log, "a service ended by itself; stopping the process"; "service" => name);
        }
        self.stop().await?;
        match ended {
            Some(name) => anyhow::bail!("the {name} ended by itself"),
            None => Ok(()),
        }
    }

    /// Stops gracefully, in the supervisor's order: the API finishes the requests in flight,
    /// the workers their calls (within `SHUTDOWN_TIMEOUT`), rows not yet called are handed
    /// back and every outcome is written. An error names each service that did not stop
    /// cleanly.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.shutdown().await.into_result()
    }

    /// [`Application::stop`], reporting how each service ended.
    pub async fn shutdown(self) -> Stopped {
        self.supervisor.stop().await
    }
}

/// The API's and the workers' pool sizes out of `max`: `run` gives half to the workers.
fn pool_sizes(max: usize, runs: Role) -> (usize, usize) {
    match runs {
        Role::Api => (max, 0),
        Role::Workers => (0, max),
        Role::Both => {
            let workers = (max / 2).max(1);
            ((max - workers).max(1), workers)
        }
    }
}

/// The API on `listener`, with the services its handlers hand work to.
fn start_api(
    supervisor: &mut Supervisor,
    settings: &Settings,
    pool: &DbPool,
    listener: TcpListener,
    metrics: &Arc<Metrics>,
    log: &Logger,
) {
    if settings.api_tokens.is_empty() {
        warn!(
            log,
            "API_TOKEN is not set: the API accepts requests from anyone who can reach it"
        );
    }
    let (state, services) = ApiState::new(
        settings,
        pool.clone(),
        metrics.clone(),
        log.new(o!("component" => "api")),
    );
    supervisor.start_api(listener, state, services, settings.shutdown_timeout);
}

/// The pool of one side of the process; `None` when it has no connections: the process does
/// not run that side.
async fn pool_for_side(
    settings: &Settings,
    of: PoolFor,
    size: usize,
) -> anyhow::Result<Option<DbPool>> {
    match size {
        0 => Ok(None),
        size => open_pool(settings, of, size).await.map(Some),
    }
}

/// A pool of `size` connections, after checking once that the database answers, so that a
/// wrong URL fails at start.
async fn open_pool(settings: &Settings, of: PoolFor, size: usize) -> anyhow::Result<DbPool> {
    let url = settings.database_url.expose();
    let pool = match of {
        PoolFor::Api => store::pool(url, size)?,
        PoolFor::Workers => store::worker_pool(url, size)?,
    };
    let mut conn = pool.get().await.map_err(|e| match e {
        deadpool::managed::PoolError::Backend(cause) => {
            anyhow::anyhow!("cannot connect to the database: {cause}")
        }
        other => anyhow::anyhow!("cannot connect to the database: {other}"),
    })?;
    store::ping(&mut conn)
        .await
        .context("database does not answer")?;
    Ok(pool)
}

/// A pool for a one-shot command (`stats`, `redrive`, `partners`), checked like the others.
pub async fn command_pool(settings: &Settings) -> anyhow::Result<DbPool> {
    open_pool(settings, PoolFor::Api, settings.database_max_connections).await
}

/// Signing secrets stored before `SECRET_KEYS` was given keep working in clear; the operator
/// is told, at every start, how to seal them.
async fn warn_of_clear_secrets(settings: &Settings, pool: Option<&DbPool>, log: &Logger) {
    let Some(pool) = pool else { return };
    match crate::application::secrets::count_clear(pool).await {
        Ok(0) => {}
        Ok(clear) if settings.secret_keys.can_seal() => warn!(log,
            "signing secrets are stored in clear; `webhookd migrate` seals them"; "clear" => clear),
        Ok(clear) => warn!(log,
            "signing secrets are stored in clear; set SECRET_KEYS and run `webhookd migrate` to seal them";
            "clear" => clear),
        Err(e) => warn!(log, "could not count the signing secrets stored in clear"; "error" => %e),
    }
}

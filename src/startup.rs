//! Wires a process once — pools, the delivery engine, the API server — for `main` and for
//! the tests alike, so that the tests run the wiring that `serve`, `work` and `run` use.

use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context;
use slog::{o, warn, Logger};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::api::{self, ApiState};
use crate::application::engine::Engine;
use crate::application::metrics::{Metrics, Role};
use crate::config::Settings;
use crate::store::{self, DbPool};

/// A started process.
pub struct Application {
    api: Option<RunningApi>,
    engine: Option<Engine>,
    pool: DbPool,
    metrics: Arc<Metrics>,
}

struct RunningApi {
    address: SocketAddr,
    stop: CancellationToken,
    server: JoinHandle<std::io::Result<()>>,
}

/// Who a pool's connections serve: their session settings differ (`store::worker_pool`).
#[derive(Clone, Copy)]
enum PoolFor {
    Api,
    Workers,
}

impl Application {
    /// Opens the pools, listens on `SERVER_ADDR` (port 0 picks a free port) and starts what
    /// `runs` says: the API (`serve`), the workers (`work`) or both (`run`). `DATABASE_MAX_CONNECTIONS` is the process's: `run` gives half to the
    /// workers and the rest to the API (one each at least). A database that does not answer,
    /// or an address that cannot be bound, is an error here, before anything has started.
    pub async fn build(settings: &Settings, runs: Role, log: &Logger) -> anyhow::Result<Self> {
        let max = settings.database_max_connections;
        let (api_size, workers_size) = match runs {
            Role::Api => (max, 0),
            Role::Workers => (0, max),
            Role::Both => {
                let workers = (max / 2).max(1);
                ((max - workers).max(1), workers)
            }
        };
        let api_pool = match api_size {
            0 => None,
            size => Some(open_pool(settings, PoolFor::Api, size).await?),
        };
        let workers_pool = match workers_size {
            0 => None,
            size => Some(open_pool(settings, PoolFor::Workers, size).await?),
        };
        // One registry: `/metrics` shows all that this process runs.
        let metrics = Arc::new(Metrics::new(runs));

        let api = match &api_pool {
            Some(pool) => {
                let listener = TcpListener::bind(settings.server_addr)
                    .with_context(|| format!("cannot listen on {}", settings.server_addr))?;
                let address = listener.local_addr()?;
                if settings.api_tokens.is_empty() {
                    warn!(
                        log,
                        "API_TOKEN is not set: the API accepts requests from anyone who can reach it"
                    );
                }
                let state = ApiState::new(
                    settings,
                    pool.clone(),
                    metrics.clone(),
                    log.new(o!("component" => "api")),
                );
                let stop = CancellationToken::new();
                let server = tokio::spawn(api::serve(
                    listener,
                    state,
                    stop.clone(),
                    settings.shutdown_timeout,
                ));
                Some(RunningApi {
                    address,
                    stop,
                    server,
                })
            }
            None => None,
        };
        let engine = match &workers_pool {
            Some(pool) => Some(Engine::start(
                settings,
                pool.clone(),
                metrics.clone(),
                log.new(o!("component" => "worker")),
            )?),
            None => None,
        };
        let pool = api_pool
            .or(workers_pool)
            .expect("a process runs the API, the workers or both");
        Ok(Self {
            api,
            engine,
            pool,
            metrics,
        })
    }

    /// Where the API listens, if this process serves it.
    pub fn api_address(&self) -> Option<SocketAddr> {
        self.api.as_ref().map(|api| api.address)
    }

    /// The API's pool, or the workers' in a process without the API.
    pub fn pool(&self) -> &DbPool {
        &self.pool
    }

    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Runs until `stop` is cancelled, or until the API server fails, then stops gracefully.
    pub async fn run_until(mut self, stop: CancellationToken) -> anyhow::Result<()> {
        let ended_early = match self.api.as_mut() {
            Some(api) => tokio::select! {
                _ = stop.cancelled() => None,
                ended = &mut api.server => Some(ended),
            },
            None => {
                stop.cancelled().await;
                None
            }
        };
        match ended_early {
            // The API failed: the workers stop too, and the API's error is the process's.
            Some(ended) => {
                self.api = None;
                let engine = self.stop().await;
                ended.context("the API server panicked")??;
                engine
            }
            None => self.stop().await,
        }
    }

    /// Stops gracefully: the API finishes the requests in flight, the workers their calls
    /// (within `SHUTDOWN_TIMEOUT`), and rows not yet called are handed back.
    pub async fn stop(self) -> anyhow::Result<()> {
        let api = async {
            match self.api {
                Some(api) => {
                    api.stop.cancel();
                    api.server
                        .await
                        .context("the API server panicked")?
                        .context("the API server failed")
                }
                None => Ok(()),
            }
        };
        let engine = async {
            match self.engine {
                Some(engine) => engine
                    .stop()
                    .await
                    .context("the workers did not stop cleanly"),
                None => Ok(()),
            }
        };
        let (api, engine) = tokio::join!(api, engine);
        api.and(engine)
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

//! Use cases over a connection pool: configs, submits, reading and retrying entries, bulk
//! redrive, stats, the invariants' check, metrics, the delivery workers and retention.

pub mod call_settings;
pub mod check;
pub mod config_cache;
pub mod configs;
pub mod engine;
pub mod entries;
pub mod error;
pub mod ingest;
pub mod metrics;
pub mod rechecks;
pub mod redrive;
pub mod retention;
pub mod secrets;
pub mod stats;
pub mod submit;

pub use error::AppError;

use crate::store::{DbPool, PooledConn};

/// Checks a connection out of the pool; an unreachable database is `Unavailable` (503).
pub async fn conn(pool: &DbPool) -> Result<PooledConn, AppError> {
    pool.get().await.map_err(AppError::from)
}

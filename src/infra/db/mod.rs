//! PostgreSQL: the pool, the embedded migrations, and one module of queries per concern.
//!
//! Query functions take `&mut AsyncPgConnection`; callers own transactions.

pub mod claims;
pub mod configs;
pub mod listener;
pub mod models;
pub mod prepared;
pub mod queue;
pub mod schema;
pub mod stats;

use std::time::Duration;

use deadpool::Runtime;
use diesel::connection::SimpleConnection;
use diesel::Connection;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncConnection, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};

pub type DbPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Advisory lock key held while migrations run.
const MIGRATION_LOCK: i64 = 0x7765_6268_6f6f_6b64; // "webhookd"

/// The channel new rows are announced on; the payload is empty.
pub const NEW_ROWS_CHANNEL: &str = "webhook_queue_new";

#[derive(Debug, thiserror::Error)]
pub enum DbSetupError {
    #[error("cannot connect to the database: {0}")]
    Connect(String),
    #[error("database URL is not valid: {0}")]
    Url(String),
    #[error("migration failed: {0}")]
    Migration(String),
    #[error("{0}")]
    Query(#[from] diesel::result::Error),
}

/// A pool whose checkout fails fast when the database is unreachable, so that requests answer
/// 503 promptly instead of hanging.
///
/// A connection handed back is reused without a test query (`RecyclingMethod::Fast`): one
/// whose server went away is closed on our side and discarded at checkout, and one that breaks
/// later fails its query like any other database error. The default (`Verified`) would spend a
/// round trip on `SELECT 1` before every checkout.
pub fn pool(database_url: &str, max_size: usize) -> Result<DbPool, DbSetupError> {
    let mut config = ManagerConfig::default();
    config.recycling_method = RecyclingMethod::Fast;
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    Pool::builder(manager)
        .max_size(max_size)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| DbSetupError::Connect(e.to_string()))
}

/// Opens one connection outside the pool (for LISTEN and for startup checks).
pub async fn connect(database_url: &str) -> Result<AsyncPgConnection, DbSetupError> {
    match tokio::time::timeout(
        Duration::from_secs(5),
        AsyncPgConnection::establish(database_url),
    )
    .await
    {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(DbSetupError::Connect(e.to_string())),
        Err(_) => Err(DbSetupError::Connect("timed out after 5s".into())),
    }
}

/// Checks that the database answers; used at startup and by `/health`.
pub async fn ping(conn: &mut AsyncPgConnection) -> Result<(), diesel::result::Error> {
    prepared::prepared(diesel::sql_query("SELECT 1"))
        .execute(conn)
        .await
        .map(|_| ())
}

/// Creates the database named in the URL when it does not exist, then applies pending
/// migrations. Returns the names of the migrations applied now.
pub async fn migrate(database_url: &str) -> Result<Vec<String>, DbSetupError> {
    create_database_if_missing(database_url).await?;
    let url = database_url.to_string();
    tokio::task::spawn_blocking(move || {
        let mut conn = <AsyncConnectionWrapper<AsyncPgConnection> as Connection>::establish(&url)
            .map_err(|e| DbSetupError::Connect(e.to_string()))?;
        // Several processes may start at once (`run` migrates first): one migrates, the
        // others wait and then find nothing pending.
        conn.batch_execute(&format!("SELECT pg_advisory_lock({MIGRATION_LOCK})"))?;
        let applied = conn
            .run_pending_migrations(MIGRATIONS)
            .map(|v| v.iter().map(ToString::to_string).collect())
            .map_err(|e| DbSetupError::Migration(e.to_string()));
        conn.batch_execute(&format!("SELECT pg_advisory_unlock({MIGRATION_LOCK})"))?;
        applied
    })
    .await
    .map_err(|e| DbSetupError::Migration(e.to_string()))?
}

async fn create_database_if_missing(database_url: &str) -> Result<(), DbSetupError> {
    let mut url = url::Url::parse(database_url).map_err(|e| DbSetupError::Url(e.to_string()))?;
    let name = url.path().trim_start_matches('/').to_string();
    if name.is_empty() {
        return Err(DbSetupError::Url("it names no database".into()));
    }
    url.set_path("/postgres");
    let mut conn = match connect(url.as_str()).await {
        Ok(conn) => conn,
        // No maintenance database to talk to: let the real connection say what is wrong.
        Err(_) => return connect(database_url).await.map(drop),
    };
    #[derive(diesel::QueryableByName)]
    struct Exists {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        exists: bool,
    }
    let found: Exists =
        diesel::sql_query("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1) AS exists")
            .bind::<diesel::sql_types::Text, _>(&name)
            .get_result(&mut conn)
            .await?;
    if !found.exists {
        let quoted = format!("\"{}\"", name.replace('"', "\"\""));
        match diesel::sql_query(format!("CREATE DATABASE {quoted}"))
            .execute(&mut conn)
            .await
        {
            Ok(_) => {}
            // Another `migrate` created it at the same moment (which PostgreSQL reports either
            // way, depending on who got there first).
            Err(diesel::result::Error::DatabaseError(kind, info))
                if matches!(kind, diesel::result::DatabaseErrorKind::UniqueViolation)
                    || info.message().contains("already exists") => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

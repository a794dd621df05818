//! PostgreSQL: the pool, the embedded migrations, and one module of queries per concern.
//!
//! Query functions take `&mut AsyncPgConnection`; callers own transactions. Every connection —
//! pooled, the LISTEN connection, migrations — is opened by [`establish`], so TLS settings in
//! the URL (see [`target`]) apply to all of them.

pub mod claims;
pub mod configs;
pub mod history;
pub mod listener;
pub mod models;
pub mod prepared;
pub mod queue;
pub mod retention;
pub mod schema;
pub mod stats;
pub mod target;

use std::time::Duration;

use deadpool::managed::QueueMode;
use deadpool::Runtime;
use diesel::connection::SimpleConnection;
use diesel::ConnectionError;
use diesel_async::async_connection_wrapper::AsyncConnectionWrapper;
use diesel_async::pooled_connection::deadpool::{Object, Pool};
use diesel_async::pooled_connection::{
    AsyncDieselConnectionManager, ManagerConfig, RecyclingMethod,
};
use diesel_async::{AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{embed_migrations, EmbeddedMigrations, MigrationHarness};
use futures_util::FutureExt;
use tokio_postgres::tls::{MakeTlsConnect, TlsConnect};
use tokio_postgres::Socket;

pub use target::ConnectTarget;

pub type DbPool = Pool<AsyncPgConnection>;
pub type PooledConn = Object<AsyncPgConnection>;
/// Why a connection could not be had from a pool.
pub type PoolError = diesel_async::pooled_connection::deadpool::PoolError;

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("migrations");

/// Session settings of the workers' connections ([`worker_pool`]). Every statement a worker
/// runs reaches `webhook_queue` through an index: the claim's partial indexes, the primary key
/// for the ids it holds. A prepared statement keeps its generic plan until the table's
/// statistics change, and a plan made while the table was empty (a new deployment, a purge)
/// may scan it whole, then keep doing so while it grows — for good where autovacuum is off.
/// Without sequential scans the planner takes the index even for a table it believes empty,
/// which costs nothing there. Disabling a plan node adds a huge cost instead of forbidding it,
/// and a plan that still needs one (a tiny table without a usable index) would then cross
/// `jit_above_cost` and spend far longer compiling than running; hence no JIT either, which
/// statements of a few milliseconds never gain from.
const WORKER_SESSIONS: &str = "-c enable_seqscan=off -c jit=off";

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
    #[error("database TLS: {0}")]
    Tls(String),
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
///
/// Built inside a Tokio runtime, the pool closes connections left unused for
/// [`IDLE_CONNECTION_LIFETIME`].
pub fn pool(database_url: &str, max_size: usize) -> Result<DbPool, DbSetupError> {
    pool_to(ConnectTarget::parse(database_url)?, database_url, max_size)
}

/// A [`pool`] for the delivery workers, whose sessions plan every statement by index (see
/// [`WORKER_SESSIONS`]).
pub fn worker_pool(database_url: &str, max_size: usize) -> Result<DbPool, DbSetupError> {
    let target = ConnectTarget::parse(database_url)?.with_options(WORKER_SESSIONS);
    pool_to(target, database_url, max_size)
}

fn pool_to(
    target: ConnectTarget,
    database_url: &str,
    max_size: usize,
) -> Result<DbPool, DbSetupError> {
    let mut config = ManagerConfig::default();
    // Fast: no test query before each checkout; a closed connection is still discarded.
    config.recycling_method = RecyclingMethod::Fast;
    config.custom_setup = Box::new(move |_url| {
        let target = target.clone();
        async move { establish(&target).await }.boxed()
    });
    let manager =
        AsyncDieselConnectionManager::<AsyncPgConnection>::new_with_config(database_url, config);
    let pool = Pool::builder(manager)
        .max_size(max_size)
        // The connection handed back last is handed out next: a steady load keeps reusing the
        // same few server backends, warm in the CPU's caches, instead of rotating through every
        // connection a burst opened. Measured on `just bench` (5 alternating pairs of rounds):
        // submit -> first call p50 2.9 ms against 3.5 ms with the default (first in, first out).
        .queue_mode(QueueMode::Lifo)
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(Duration::from_secs(5)))
        .create_timeout(Some(Duration::from_secs(5)))
        .recycle_timeout(Some(Duration::from_secs(5)))
        .build()
        .map_err(|e| DbSetupError::Connect(e.to_string()))?;
    if let Ok(runtime) = tokio::runtime::Handle::try_current() {
        runtime.spawn(close_idle_connections(pool.weak()));
    }
    Ok(pool)
}

/// How long a pooled connection may sit unused before it is closed. Handed out last in, first
/// out, the connections a burst opened would otherwise sit idle until the next burst, by then
/// perhaps cut by a firewall or load balancer (AWS's NLB drops idle flows after 350 s) and
/// failing the first request that gets them; and each holds a server backend meanwhile.
pub const IDLE_CONNECTION_LIFETIME: Duration = Duration::from_secs(240);

/// Closes the connections of `pool` unused for longer than `idle_for`; returns how many.
pub fn close_idle(pool: &DbPool, idle_for: Duration) -> usize {
    pool.retain(|_, metrics| metrics.last_used() < idle_for)
        .removed
        .len()
}

/// Every 30 s, closes what [`IDLE_CONNECTION_LIFETIME`] allows; ends with the pool.
async fn close_idle_connections(
    pool: deadpool::managed::WeakPool<AsyncDieselConnectionManager<AsyncPgConnection>>,
) {
    loop {
        tokio::time::sleep(Duration::from_secs(30)).await;
        let Some(pool) = pool.upgrade() else { return };
        close_idle(&pool, IDLE_CONNECTION_LIFETIME);
    }
}

/// Opens one connection outside the pool (for LISTEN, migrations and startup checks).
pub async fn connect(database_url: &str) -> Result<AsyncPgConnection, DbSetupError> {
    connect_to(&ConnectTarget::parse(database_url)?).await
}

async fn connect_to(target: &ConnectTarget) -> Result<AsyncPgConnection, DbSetupError> {
    match tokio::time::timeout(Duration::from_secs(5), establish(target)).await {
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => Err(DbSetupError::Connect(e.to_string())),
        Err(_) => Err(DbSetupError::Connect("timed out after 5s".into())),
    }
}

/// The one way a connection is opened: plain or TLS as the target says.
pub async fn establish(target: &ConnectTarget) -> Result<AsyncPgConnection, ConnectionError> {
    match &target.tls {
        Some(tls) => establish_with(target, tls.clone()).await,
        None => establish_with(target, tokio_postgres::NoTls).await,
    }
}

async fn establish_with<T>(
    target: &ConnectTarget,
    tls: T,
) -> Result<AsyncPgConnection, ConnectionError>
where
    T: MakeTlsConnect<Socket>,
    T::Stream: tokio_postgres::tls::TlsStream + Unpin + Send + 'static,
    T::TlsConnect: Send,
    <T::TlsConnect as TlsConnect<Socket>>::Future: Send,
{
    let (client, connection) = target
        .config
        .connect(tls)
        .await
        .map_err(|e| ConnectionError::BadConnection(crate::error_chain::describe(&e)))?;
    AsyncPgConnection::try_from_client_and_connection(client, connection).await
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
    let target = ConnectTarget::parse(database_url)?;
    create_database_if_missing(&target).await?;
    let conn = connect_to(&target).await?;
    // The wrapper drives the async connection from a blocking thread, on this runtime.
    tokio::task::spawn_blocking(move || {
        let mut conn = AsyncConnectionWrapper::<AsyncPgConnection>::from(conn);
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

async fn create_database_if_missing(target: &ConnectTarget) -> Result<(), DbSetupError> {
    let name = match target.database() {
        Some(name) if !name.is_empty() => name.to_string(),
        _ => return Err(DbSetupError::Url("it names no database".into())),
    };
    let mut conn = match connect_to(&target.with_database("postgres")).await {
        Ok(conn) => conn,
        // No maintenance database to talk to: let the real connection say what is wrong.
        Err(_) => return connect_to(target).await.map(drop),
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

//! The command line: one binary, six subcommands sharing one data layer.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};
use slog::{info, o, warn, Logger};
use tokio_util::sync::CancellationToken;

use crate::application::metrics::{Metrics, Role};
use crate::application::redrive::{self, RedriveOutcome, RedriveRequest};
use crate::application::{stats, worker, AppError};
use crate::config::{Overrides, Settings};
use crate::domain::event::EventType;
use crate::store as db;
use crate::store::queue::cycle::RedriveFilter;
use crate::{api as http, probe};

#[derive(Debug, Parser)]
#[command(
    name = "webhookd",
    version,
    about = "Turns +credit/-debit money events into partner postbacks that are never lost",
    long_about = "Turns +credit (postback) and -debit (chargeback) events into outbound partner HTTP \
                  calls, with a PostgreSQL queue, retries with backoff, and at-least-once delivery.\n\n\
                  Settings come from config/default.toml, --config FILE, environment variables \
                  (DATABASE_URL, WORKER_COUNT, ...) and the flags below, later wins."
)]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// TOML file with settings (also WEBHOOKD_CONFIG)
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// PostgreSQL URL (also DATABASE_URL)
    #[arg(long, global = true, value_name = "URL")]
    pub database_url: Option<String>,
    /// debug, info, warn or error (also LOG_LEVEL)
    #[arg(long, global = true, value_name = "LEVEL", value_parser = ["debug", "info", "warn", "error"])]
    pub log_level: Option<String>,
    /// json, logfmt or pretty; logs go to stderr (also LOG_FORMAT)
    #[arg(long, global = true, value_name = "FORMAT", value_parser = ["json", "logfmt", "pretty"])]
    pub log_format: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the database if missing and apply the embedded migrations (idempotent)
    Migrate,
    /// Serve the HTTP API (SERVER_ADDR)
    Serve,
    /// Run the delivery workers: claim due rows, call partners, record and retry
    #[command(
        long_about = "Run the delivery workers. Each worker claims up to --batch-size due rows \
        with FOR UPDATE SKIP LOCKED, calls the partner URLs with HTTP GET, records every attempt in \
        its row and schedules retries with exponential backoff. Any number of `work` processes on \
        any number of hosts may share one database. New rows wake idle workers at once via \
        LISTEN/NOTIFY. SIGTERM/SIGINT stop claiming, let in-flight calls finish within \
        SHUTDOWN_TIMEOUT and hand back rows not yet called. Every RETENTION_INTERVAL one of the \
        worker processes deletes rows older than RETENTION_COMPLETED / RETENTION_FAILED."
    )]
    Work(WorkArgs),
    /// Run the API and the workers in one process (applies migrations first): the single-machine default
    Run(WorkArgs),
    /// Print queue statistics read straight from the database
    Stats(StatsArgs),
    /// Put failed webhooks through a fresh retry cycle in bulk, e.g. after a partner outage
    #[command(
        long_about = "Put failed webhooks through a fresh retry cycle in bulk, e.g. after a \
        partner outage: each matching row's attempts are kept in its history, its retry_N_* columns \
        are cleared, and it becomes pending and due now, so running workers call it again at once. \
        Cancelled rows are never taken. Does the same as POST /webhooks/redrive.\n\n\
        Rows are taken in batches of 1000, one short statement each, at most --limit in all. \
        Running it twice redrives nothing the second time: redriven rows are no longer failed.\n\n\
        Prints `would redrive N` with --dry-run, else `redriven N`.",
        after_help = "Examples:\n  webhookd redrive --config-id 7 --failed-after 2026-11-28T09:00:00Z --dry-run\n  \
        webhookd redrive --config-id 7 --failed-after 2026-11-28T09:00:00Z"
    )]
    Redrive(RedriveArgs),
    /// Health check for containers: exit 0 when the API answers 200 (or the database answers)
    #[command(
        long_about = "Health check for container runtimes (Docker HEALTHCHECK, Kubernetes exec \
        probes): GETs --url and exits 0 when it answers 200 OK, 1 otherwise, with the reason on \
        one line of stderr. It reads no settings and needs no database, so it answers even where \
        the rest of the configuration is missing. With --database it instead opens one connection \
        to the configured database (DATABASE_URL, --database-url or the config file) and runs \
        SELECT 1: the readiness check of `work`, which has no HTTP server."
    )]
    Probe(ProbeArgs),
}

#[derive(Debug, Args)]
pub struct WorkArgs {
    /// Concurrent workers in this process (also WORKER_COUNT)
    #[arg(long, value_name = "N")]
    pub workers: Option<usize>,
    /// Rows one worker claims at a time (also WORKER_BATCH_SIZE)
    #[arg(long, value_name = "N")]
    pub batch_size: Option<usize>,
}

#[derive(Debug, Args)]
pub struct StatsArgs {
    /// Print the same JSON document as GET /webhooks/stats
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct RedriveArgs {
    /// Only webhooks of this partner config
    #[arg(long, value_name = "N")]
    pub config_id: Option<i64>,
    /// Only this event type: +credit or -debit
    #[arg(long, value_name = "TYPE", allow_hyphen_values = true, value_parser = parse_event_type)]
    pub event_type: Option<EventType>,
    /// Only webhooks that failed at or after this RFC 3339 time (their updated_at)
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub failed_after: Option<DateTime<Utc>>,
    /// Only webhooks that failed before this RFC 3339 time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub failed_before: Option<DateTime<Utc>>,
    /// Only webhooks submitted at or after this RFC 3339 time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub created_after: Option<DateTime<Utc>>,
    /// Only webhooks submitted before this RFC 3339 time
    #[arg(long, value_name = "TIME", value_parser = parse_time)]
    pub created_before: Option<DateTime<Utc>>,
    /// Redrive at most N rows [default and most: 100000]
    #[arg(long, value_name = "N")]
    pub limit: Option<i64>,
    /// Count the matching rows and change nothing
    #[arg(long)]
    pub dry_run: bool,
}

impl RedriveArgs {
    fn request(&self) -> Result<RedriveRequest, AppError> {
        let filter = RedriveFilter {
            config_id: self.config_id,
            event_type: self.event_type,
            failed_after: self.failed_after,
            failed_before: self.failed_before,
            created_after: self.created_after,
            created_before: self.created_before,
        };
        RedriveRequest::new(filter, self.dry_run, self.limit)
    }
}

fn parse_event_type(text: &str) -> Result<EventType, String> {
    text.parse()
}

fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|e| format!("not an RFC 3339 time like 2026-11-28T09:00:00Z ({e})"))
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// URL to GET; healthy means it answers 200 OK
    #[arg(
        long,
        value_name = "URL",
        default_value = "http://127.0.0.1:8080/health"
    )]
    pub url: url::Url,
    /// Check the database instead: connect and run SELECT 1 (needs the database settings)
    #[arg(long, conflicts_with = "url")]
    pub database: bool,
    /// Give up after this long (250ms, 2s, ...)
    #[arg(long, value_name = "DURATION", default_value = "2s", value_parser = positive_duration)]
    pub timeout: Duration,
}

fn positive_duration(text: &str) -> Result<Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be longer than zero".to_string()),
        Err(e) => Err(e.to_string()),
    }
}

impl Cli {
    fn overrides(&self) -> Overrides {
        let mut values: Vec<(&'static str, String)> = Vec::new();
        let g = &self.global;
        if let Some(v) = &g.database_url {
            values.push(("database_url", v.clone()));
        }
        if let Some(v) = &g.log_level {
            values.push(("log_level", v.clone()));
        }
        if let Some(v) = &g.log_format {
            values.push(("log_format", v.clone()));
        }
        if let Command::Work(w) | Command::Run(w) = &self.command {
            if let Some(n) = w.workers {
                values.push(("worker_count", n.to_string()));
            }
            if let Some(n) = w.batch_size {
                values.push(("worker_batch_size", n.to_string()));
            }
        }
        Overrides {
            config_file: g.config.clone(),
            values,
        }
    }
}

/// Parses the command line and runs the command; the exit code says how it went.
pub fn main() -> std::process::ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if !e.use_stderr() => {
            // --help and --version
            let _ = e.print();
            return std::process::ExitCode::SUCCESS;
        }
        Err(e) => {
            let rendered = e.render().to_string();
            let first = rendered.lines().next().unwrap_or("invalid arguments");
            eprintln!("webhookd: {first} (see webhookd --help)");
            return std::process::ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("webhookd: error: cannot start the async runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(execute(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("webhookd: error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn execute(cli: Cli) -> anyhow::Result<()> {
    // A health check must answer even where settings are incomplete: it loads none of them
    // (except the database ones for --database) and starts no logger.
    if let Command::Probe(args) = &cli.command {
        return run_probe(&cli, args).await;
    }
    let settings = Settings::load(&cli.overrides()).context("configuration")?;
    let log = crate::logging::root(settings.log_format, settings.log_level);
    let result = match cli.command {
        Command::Migrate => migrate(&settings, &log).await,
        Command::Serve => serve(&settings, &log).await,
        Command::Work(_) => work(&settings, &log).await,
        Command::Run(_) => run(&settings, &log).await,
        Command::Stats(args) => print_stats(&settings, args.json).await,
        Command::Redrive(args) => run_redrive(&settings, &log, &args).await,
        // Answered above, before any settings were loaded.
        Command::Probe(_) => Ok(()),
    };
    // Let the async log drain flush before the process ends.
    drop(log);
    tokio::time::sleep(Duration::from_millis(20)).await;
    result
}

/// Prints a one-line verdict on stdout when healthy; an unhealthy verdict becomes the error
/// that `main` prints on stderr before exiting 1.
async fn run_probe(cli: &Cli, args: &ProbeArgs) -> anyhow::Result<()> {
    let verdict = if args.database {
        let settings = Settings::load(&cli.overrides()).context("configuration")?;
        probe::database(settings.database_url.expose(), args.timeout).await
    } else {
        probe::http(&args.url, args.timeout).await
    };
    let line = verdict.map_err(|unhealthy| anyhow::anyhow!("unhealthy: {unhealthy}"))?;
    println!("{line}");
    Ok(())
}

async fn migrate(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    let applied = db::migrate(settings.database_url.expose()).await?;
    info!(log, "database migrated"; "applied" => applied.len());
    for name in &applied {
        println!("applied {name}");
    }
    if applied.is_empty() {
        println!("database is up to date");
    }
    Ok(())
}

/// Who a pool's connections serve: their session settings differ (`db::worker_pool`).
#[derive(Clone, Copy)]
enum PoolFor {
    Api,
    Workers,
}

/// A pool of `size` connections, after checking once that the database answers, so that a
/// wrong URL fails at start.
async fn open_pool(settings: &Settings, of: PoolFor, size: usize) -> anyhow::Result<db::DbPool> {
    let url = settings.database_url.expose();
    let pool = match of {
        PoolFor::Api => db::pool(url, size)?,
        PoolFor::Workers => db::worker_pool(url, size)?,
    };
    let mut conn = pool.get().await.map_err(|e| match e {
        deadpool::managed::PoolError::Backend(cause) => {
            anyhow::anyhow!("cannot connect to the database: {cause}")
        }
        other => anyhow::anyhow!("cannot connect to the database: {other}"),
    })?;
    db::ping(&mut conn)
        .await
        .context("database does not answer")?;
    Ok(pool)
}

/// Cancelled on the first SIGTERM or SIGINT.
fn shutdown_signal(log: &Logger) -> anyhow::Result<CancellationToken> {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let stop = CancellationToken::new();
    let (log, token) = (log.clone(), stop.clone());
    tokio::spawn(async move {
        let name = tokio::select! {
            _ = term.recv() => "SIGTERM",
            _ = int.recv() => "SIGINT",
        };
        info!(log, "shutdown requested"; "signal" => name);
        token.cancel();
    });
    Ok(stop)
}

fn warn_if_open(settings: &Settings, log: &Logger) {
    if settings.api_tokens.is_empty() {
        warn!(
            log,
            "API_TOKEN is not set: the API accepts requests from anyone who can reach it"
        );
    }
}

fn bind(settings: &Settings) -> anyhow::Result<std::net::TcpListener> {
    std::net::TcpListener::bind(settings.server_addr)
        .with_context(|| format!("cannot listen on {}", settings.server_addr))
}

async fn serve(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    let pool = open_pool(settings, PoolFor::Api, settings.database_max_connections).await?;
    let listener = bind(settings)?;
    let stop = shutdown_signal(log)?;
    warn_if_open(settings, log);
    let metrics = Arc::new(Metrics::new(Role::Api));
    let state = http::ApiState::new(settings, pool, metrics, log.new(o!("component" => "api")));
    http::serve(listener, state, stop, settings.shutdown_timeout).await?;
    Ok(())
}

/// The workers alone. Their metrics are recorded but not exposed: `work` runs no HTTP server,
/// so it is watched through the queue gauges of a `serve` or `run` process and its logs.
async fn work(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    let pool = open_pool(
        settings,
        PoolFor::Workers,
        settings.database_max_connections,
    )
    .await?;
    let stop = shutdown_signal(log)?;
    let metrics = Arc::new(Metrics::new(Role::Workers));
    worker::run(
        settings,
        pool,
        metrics,
        log.new(o!("component" => "worker")),
        stop,
    )
    .await
}

async fn run(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    migrate(settings, log).await?;
    // DATABASE_MAX_CONNECTIONS is the process's: half for the workers, the rest for the API
    // (one each at least).
    let workers_size = (settings.database_max_connections / 2).max(1);
    let api_size = (settings.database_max_connections - workers_size).max(1);
    let pool = open_pool(settings, PoolFor::Api, api_size).await?;
    let workers_pool = open_pool(settings, PoolFor::Workers, workers_size).await?;
    let listener = bind(settings)?;
    let stop = shutdown_signal(log)?;
    warn_if_open(settings, log);
    // One registry: `/metrics` shows the API and the workers of this process.
    let metrics = Arc::new(Metrics::new(Role::Both));
    let state = http::ApiState::new(
        settings,
        pool,
        metrics.clone(),
        log.new(o!("component" => "api")),
    );
    let api = http::serve(listener, state, stop.clone(), settings.shutdown_timeout);
    let workers = worker::run(
        settings,
        workers_pool,
        metrics,
        log.new(o!("component" => "worker")),
        stop.clone(),
    );
    let (api, workers) = tokio::join!(
        async {
            let result = api.await;
            stop.cancel(); // if the API fails, the workers stop too
            result
        },
        workers
    );
    api?;
    workers
}

/// An application error as a one-line CLI error: the field at fault, or the logged cause.
fn cli_error(e: AppError) -> anyhow::Error {
    match (e.field(), e.cause()) {
        (Some(field), _) => anyhow::anyhow!("{field}: {e}"),
        (None, Some(cause)) => anyhow::anyhow!("{e}: {cause}"),
        (None, None) => anyhow::anyhow!("{e}"),
    }
}

async fn print_stats(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let pool = open_pool(settings, PoolFor::Api, settings.database_max_connections).await?;
    let document = stats::collect(&pool).await.map_err(cli_error)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", stats_table(&document));
    }
    Ok(())
}

async fn run_redrive(settings: &Settings, log: &Logger, args: &RedriveArgs) -> anyhow::Result<()> {
    let request = args.request().map_err(cli_error)?;
    let pool = open_pool(settings, PoolFor::Api, settings.database_max_connections).await?;
    match redrive::redrive(&pool, &request).await.map_err(cli_error)? {
        RedriveOutcome::DryRun { matched } => println!("would redrive {matched}"),
        RedriveOutcome::Redriven { redriven } => {
            info!(log, "redrive done"; "redriven" => redriven, "filter" => format!("{:?}", request.filter));
            println!("redriven {redriven}");
        }
    }
    Ok(())
}

fn rate(rate: Option<f64>) -> String {
    rate.map_or_else(|| "-".to_string(), |r| format!("{:.1}%", r * 100.0))
}

fn ms<T: std::fmt::Display>(value: Option<T>) -> String {
    value.map_or_else(|| "-".to_string(), |v| format!("{v} ms"))
}

/// The human-readable form of the stats document.
pub fn stats_table(d: &stats::StatsDocument) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let s = &d.by_status;
    let _ = writeln!(out, "webhook queue at {}", d.generated_at);
    let _ = writeln!(out);
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "", "pending", "processing", "completed", "failed", "total"
    );
    let _ = writeln!(
        out,
        "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
        "all", s.pending, s.processing, s.completed, s.failed, d.total
    );
    for (event_type, c) in d.by_event_type.iter() {
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            event_type.as_str(),
            c.pending,
            c.processing,
            c.completed,
            c.failed,
            c.total()
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "cancelled            {}", d.cancelled);
    let _ = writeln!(out, "success rate         {}", rate(d.success_rate));
    let _ = writeln!(
        out,
        "oldest pending       {}",
        d.oldest_pending_age_seconds
            .map_or_else(|| "-".to_string(), |s| format!("{s:.1} s"))
    );
    let _ = writeln!(
        out,
        "last minute          {} completed, {} failed ({:.2}/s, {:.2}/s)",
        d.completed_last_minute,
        d.failed_last_minute,
        d.completed_last_minute as f64 / 60.0,
        d.failed_last_minute as f64 / 60.0
    );
    let a = &d.attempts;
    let _ = writeln!(
        out,
        "attempts             {} ({} succeeded, {} failed)",
        a.total, a.succeeded, a.failed
    );
    let _ = writeln!(
        out,
        "attempt duration     avg {}, p50 {}, p95 {}, p99 {}",
        ms(a.avg_duration_ms),
        ms(a.p50_duration_ms),
        ms(a.p95_duration_ms),
        ms(a.p99_duration_ms)
    );
    if !d.by_partner.is_empty() {
        let _ = writeln!(out);
        let _ = writeln!(
            out,
            "{:<6} {:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
            "config", "partner", "pending", "completed", "failed", "cancelled", "success"
        );
        for p in &d.by_partner {
            let _ = writeln!(
                out,
                "{:<6} {:<24} {:>10} {:>10} {:>10} {:>10} {:>9}",
                p.config_id,
                p.name,
                p.by_status.pending + p.by_status.processing,
                p.by_status.completed,
                p.by_status.failed,
                p.cancelled,
                rate(p.success_rate)
            );
        }
    }
    out
}

/// Used by tests and tools that drive the CLI in-process.
pub fn parse_from<I, T>(args: I) -> Result<Cli, clap::Error>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    Cli::try_parse_from(args)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_the_top_layer() {
        let cli = parse_from([
            "webhookd",
            "--log-level",
            "debug",
            "work",
            "--workers",
            "3",
            "--batch-size",
            "7",
        ])
        .unwrap();
        let o = cli.overrides();
        assert!(o.values.contains(&("log_level", "debug".into())));
        assert!(o.values.contains(&("worker_count", "3".into())));
        assert!(o.values.contains(&("worker_batch_size", "7".into())));
    }

    #[test]
    fn the_stats_table_shows_throughput_and_partner_success_rates() {
        let counts = |completed, failed| stats::StatusCounts {
            completed,
            failed,
            ..Default::default()
        };
        let document = stats::StatsDocument {
            total: 4,
            by_status: counts(3, 1),
            cancelled: 0,
            by_event_type: Default::default(),
            success_rate: Some(0.75),
            attempts: Default::default(),
            oldest_pending_age_seconds: None,
            completed_last_minute: 90,
            failed_last_minute: 3,
            by_partner: vec![stats::PartnerStats {
                config_id: 4,
                name: "acme".into(),
                by_status: counts(3, 1),
                cancelled: 0,
                success_rate: Some(0.75),
            }],
            generated_at: "2026-11-28T12:00:00.000Z".into(),
        };
        let table = stats_table(&document);
        assert!(
            table.contains("last minute          90 completed, 3 failed (1.50/s, 0.05/s)"),
            "{table}"
        );
        let partner = table.lines().find(|l| l.contains("acme")).unwrap();
        assert!(partner.trim_end().ends_with("75.0%"), "{table}");
    }

    #[test]
    fn redrive_takes_its_filters_including_a_debit_event_type() {
        let cli = parse_from([
            "webhookd",
            "redrive",
            "--config-id",
            "7",
            "--event-type",
            "-debit",
            "--failed-after",
            "2026-11-28T09:00:00Z",
            "--failed-before",
            "2026-11-28T12:00:00+02:00",
            "--dry-run",
        ])
        .unwrap();
        let Command::Redrive(args) = cli.command else {
            panic!("not redrive")
        };
        let request = args.request().unwrap();
        assert!(request.dry_run);
        assert_eq!(request.limit, redrive::MAX_ROWS);
        assert_eq!(request.filter.config_id, Some(7));
        assert_eq!(request.filter.event_type, Some(EventType::Debit));
        assert_eq!(
            request.filter.failed_before.unwrap().to_rfc3339(),
            "2026-11-28T10:00:00+00:00"
        );
        assert!(parse_from(["webhookd", "redrive", "--failed-after", "yesterday"]).is_err());
        assert!(parse_from(["webhookd", "redrive", "--event-type", "credit"]).is_err());
        let reversed = parse_from([
            "webhookd",
            "redrive",
            "--created-after",
            "2026-11-28T10:00:00Z",
            "--created-before",
            "2026-11-28T09:00:00Z",
        ])
        .unwrap();
        let Command::Redrive(args) = reversed.command else {
            panic!("not redrive")
        };
        assert_eq!(args.request().unwrap_err().field(), Some("created_before"));
    }

    #[test]
    fn probe_defaults_to_the_local_health_route() {
        let cli = parse_from(["webhookd", "probe"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not a probe: {cli:?}");
        };
        assert_eq!(args.url.as_str(), "http://127.0.0.1:8080/health");
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert!(!args.database);
        let cli = parse_from(["webhookd", "probe", "--database", "--timeout", "500ms"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not a probe: {cli:?}");
        };
        assert!(args.database);
        assert_eq!(args.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_probe_flags_are_refused() {
        assert!(parse_from(["webhookd", "probe", "--url", "not a url"]).is_err());
        assert!(parse_from(["webhookd", "probe", "--timeout", "0s"]).is_err());
        assert!(parse_from(["webhookd", "probe", "--timeout", "soon"]).is_err());
        assert!(parse_from(["webhookd", "probe", "--database", "--url", "http://x/"]).is_err());
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(parse_from(["webhookd", "serve", "--bogus"]).is_err());
        assert!(parse_from(["webhookd", "--log-format", "xml", "serve"]).is_err());
        assert!(parse_from(["webhookd", "work", "--workers", "many"]).is_err());
        assert!(parse_from(["webhookd"]).is_err());
    }
}

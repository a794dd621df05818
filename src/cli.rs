//! The command line: one binary, five subcommands sharing one data layer.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use slog::{info, o, warn, Logger};
use tokio_util::sync::CancellationToken;

use crate::application::{stats, worker};
use crate::config::{Overrides, Settings};
use crate::infra::{db, http, probe};

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
        SHUTDOWN_TIMEOUT and hand back rows not yet called."
    )]
    Work(WorkArgs),
    /// Run the API and the workers in one process (applies migrations first): the single-machine default
    Run(WorkArgs),
    /// Print queue statistics read straight from the database
    Stats(StatsArgs),
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

/// A pool, after checking once that the database answers, so that a wrong URL fails at start.
async fn open_pool(settings: &Settings) -> anyhow::Result<db::DbPool> {
    let pool = db::pool(
        settings.database_url.expose(),
        settings.database_max_connections,
    )?;
    let mut conn = pool
        .get()
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to the database: {e}"))?;
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
    let pool = open_pool(settings).await?;
    let listener = bind(settings)?;
    let stop = shutdown_signal(log)?;
    warn_if_open(settings, log);
    let state = http::ApiState::new(settings, pool, log.new(o!("component" => "api")));
    http::serve(listener, state, stop, settings.shutdown_timeout).await?;
    Ok(())
}

async fn work(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    let pool = open_pool(settings).await?;
    let stop = shutdown_signal(log)?;
    worker::run(settings, pool, log.new(o!("component" => "worker")), stop).await
}

async fn run(settings: &Settings, log: &Logger) -> anyhow::Result<()> {
    migrate(settings, log).await?;
    let pool = open_pool(settings).await?;
    let listener = bind(settings)?;
    let stop = shutdown_signal(log)?;
    warn_if_open(settings, log);
    let state = http::ApiState::new(settings, pool.clone(), log.new(o!("component" => "api")));
    let api = http::serve(listener, state, stop.clone(), settings.shutdown_timeout);
    let workers = worker::run(
        settings,
        pool,
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

async fn print_stats(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let pool = open_pool(settings).await?;
    let document = stats::collect(&pool).await.map_err(|e| match e.cause() {
        Some(cause) => anyhow::anyhow!("{e}: {cause}"),
        None => anyhow::anyhow!("{e}"),
    })?;
    if json {
        println!("{}", serde_json::to_string_pretty(&document)?);
    } else {
        print!("{}", stats_table(&document));
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
    for (event_type, c) in &d.by_event_type {
        let _ = writeln!(
            out,
            "{:<12} {:>10} {:>10} {:>10} {:>10} {:>10}",
            event_type,
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
        "last minute          {} completed, {} failed",
        d.completed_last_minute, d.failed_last_minute
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

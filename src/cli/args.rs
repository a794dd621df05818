//! The command line's shape: clap's types for the binary, its global flags and subcommands,
//! and how flags become the top layer of the settings.

use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use clap::{Args, Parser, Subcommand};

use crate::application::redrive::RedriveRequest;
use crate::application::AppError;
use crate::config::Overrides;
use crate::domain::event::EventType;
use crate::domain::name::UnknownName;
use crate::store::queue::cycle::RedriveFilter;

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
    /// Check the queue's invariants; exit 1 when any is broken
    #[command(
        long_about = "Check the queue's invariants, read straight from the database: debits \
        waiting for a credit that completed, was cancelled or is gone (stale_credit_wait); \
        processing rows without a lease (processing_without_lease); tripped partners without \
        a probe time (tripped_without_probe); statistics counters that differ from the queue \
        (counters_drift). Prints each as a count with up to 5 examples, and exits 1 when any \
        count is not 0, else 0. The pruner's pass of `work` heals all four by itself; see \
        docs/operations.md, \"Invariants and `webhookd check`\". The check counts the whole \
        queue once (counters_drift).",
        after_help = "Examples:\n  webhookd check\n  webhookd check --json | jq '.invariants.counters_drift'"
    )]
    Check(CheckArgs),
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
    /// List partners with their delivery state, or pause or resume one
    #[command(
        long_about = "Partner health (docs/api.md). Without a subcommand, lists every partner: its         delivery state (active, paused, tripped), why it is not active, the events held for it and         its last partner failure. `pause ID` holds a partner's events (they stay pending and spend         no attempt) until `resume ID`, which makes it active and releases them; the same as POST         /webhook-configs/{id}/pause and /resume.",
        after_help = "Examples:\n  webhookd partners\n  webhookd partners pause 7\n  webhookd partners resume 7"
    )]
    Partners(PartnersArgs),
}

#[derive(Debug, Args)]
pub struct PartnersArgs {
    #[command(subcommand)]
    pub action: Option<PartnerAction>,
}

#[derive(Debug, Subcommand)]
pub enum PartnerAction {
    /// Hold a partner's events until it is resumed (fails if it is paused already)
    Pause {
        /// Config id of the partner
        id: i64,
    },
    /// Make a paused or tripped partner active and release its events (fails if it is active)
    Resume {
        /// Config id of the partner
        id: i64,
    },
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
pub struct CheckArgs {
    /// Print the same JSON document as GET /webhooks/check
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
    pub(crate) fn request(&self) -> Result<RedriveRequest, AppError> {
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

fn parse_event_type(text: &str) -> Result<EventType, UnknownName> {
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
    pub(super) fn overrides(&self) -> Overrides {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::application::redrive;
    use clap::CommandFactory;

    #[test]
    fn the_command_line_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_become_the_top_layer() {
        let cli = Cli::try_parse_from([
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
    fn redrive_takes_its_filters_including_a_debit_event_type() {
        let cli = Cli::try_parse_from([
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
        assert!(
            Cli::try_parse_from(["webhookd", "redrive", "--failed-after", "yesterday"]).is_err()
        );
        assert!(Cli::try_parse_from(["webhookd", "redrive", "--event-type", "credit"]).is_err());
        let reversed = Cli::try_parse_from([
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
        let cli = Cli::try_parse_from(["webhookd", "probe"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not a probe: {cli:?}");
        };
        assert_eq!(args.url.as_str(), "http://127.0.0.1:8080/health");
        assert_eq!(args.timeout, Duration::from_secs(2));
        assert!(!args.database);
        let cli =
            Cli::try_parse_from(["webhookd", "probe", "--database", "--timeout", "500ms"]).unwrap();
        let Command::Probe(args) = cli.command else {
            panic!("not a probe: {cli:?}");
        };
        assert!(args.database);
        assert_eq!(args.timeout, Duration::from_millis(500));
    }

    #[test]
    fn bad_probe_flags_are_refused() {
        assert!(Cli::try_parse_from(["webhookd", "probe", "--url", "not a url"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "probe", "--timeout", "0s"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "probe", "--timeout", "soon"]).is_err());
        assert!(
            Cli::try_parse_from(["webhookd", "probe", "--database", "--url", "http://x/"]).is_err()
        );
    }

    #[test]
    fn check_takes_json() {
        let cli = Cli::try_parse_from(["webhookd", "check", "--json"]).unwrap();
        let Command::Check(args) = cli.command else {
            panic!("not check: {cli:?}");
        };
        assert!(args.json);
        assert!(Cli::try_parse_from(["webhookd", "check", "--fix"]).is_err());
    }

    #[test]
    fn bad_flags_are_refused() {
        assert!(Cli::try_parse_from(["webhookd", "serve", "--bogus"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "--log-format", "xml", "serve"]).is_err());
        assert!(Cli::try_parse_from(["webhookd", "work", "--workers", "many"]).is_err());
        assert!(Cli::try_parse_from(["webhookd"]).is_err());
    }
}

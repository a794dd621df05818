//! What each subcommand does once its settings are loaded.

use anyhow::Context;
use slog::{info, Logger};
use tokio_util::sync::CancellationToken;

use super::args::{Cli, PartnerAction, PartnersArgs, ProbeArgs, RedriveArgs};
use super::stats_table::{check_table, partners_table, stats_table};
use crate::application::configs::{self, Control};
use crate::application::metrics::{Metrics, Role};
use crate::application::redrive::{self, RedriveOutcome};
use crate::application::{check as invariants, secrets, stats, AppError};
use crate::config::Settings;
use crate::probe;
use crate::startup::{command_pool, Application};
use crate::store;

/// Prints a one-line verdict on stdout when healthy; an unhealthy verdict becomes the error
/// that `main` prints on stderr before exiting 1.
pub(super) async fn run_probe(cli: &Cli, args: &ProbeArgs) -> anyhow::Result<()> {
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

/// Applies the migrations. `migrate` reports them on stdout, its own output; inside `run`
/// they are log lines only, since a process's stdout may be read as its log stream.
pub(super) async fn migrate(
    settings: &Settings,
    log: &Logger,
    report: Report,
) -> anyhow::Result<()> {
    let applied = store::migrate(settings.database_url.expose()).await?;
    info!(log, "database migrated"; "applied" => applied.migrations.len(),
        "rules_applied" => applied.rules.len());
    let resealed = {
        let pool = command_pool(settings).await?;
        secrets::reseal(&pool, &settings.secret_keys)
            .await
            .map_err(cli_error)?
    };
    if resealed.secrets > 0 {
        info!(log, "partner secrets sealed under the first of SECRET_KEYS";
            "secrets" => resealed.secrets, "configs" => resealed.configs,
            "key" => settings.secret_keys.sealing_key_id());
    }
    if report == Report::Stdout {
        for name in &applied.migrations {
            println!("applied {name}");
        }
        for name in &applied.rules {
            println!("applied rule {name}");
        }
        if resealed.secrets > 0 {
            println!(
                "sealed {} secrets of {} configs under key {}",
                resealed.secrets,
                resealed.configs,
                settings.secret_keys.sealing_key_id().unwrap_or_default()
            );
        }
        if applied.is_empty() && resealed.secrets == 0 {
            println!("database is up to date");
        }
    }
    Ok(())
}

/// Where a command reports what it did besides its log.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum Report {
    Stdout,
    LogOnly,
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

/// `serve`, `work` and `run`: the process `startup` wires, until SIGTERM or SIGINT. `run`
/// applies the migrations first.
pub(super) async fn run_process(
    settings: &Settings,
    log: &Logger,
    runs: Role,
) -> anyhow::Result<()> {
    // First of all: a SIGTERM that comes while the process starts must stop it gracefully,
    // not end it by the signal's default action.
    let stop = shutdown_signal(log)?;
    if runs == Role::Both {
        migrate(settings, log, Report::LogOnly).await?;
    }
    let app = Application::build(settings, runs, log).await?;
    app.run_until(stop).await
}

/// An application error as a one-line CLI error: the field at fault, or the logged cause.
fn cli_error(e: AppError) -> anyhow::Error {
    match (e.field(), e.cause()) {
        (Some(field), _) => anyhow::anyhow!("{field}: {e}"),
        (None, Some(cause)) => anyhow::anyhow!("{e}: {cause}"),
        (None, None) => anyhow::anyhow!("{e}"),
    }
}

pub(super) async fn print_stats(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let pool = command_pool(settings).await?;
    let document = stats::collect(&pool).await.map_err(cli_error)?;
    print_document(&document, json, stats_table)
}

/// A command's document on stdout: as JSON, or as its table.
fn print_document<D: serde::Serialize>(
    document: &D,
    json: bool,
    table: fn(&D) -> String,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(document)?);
    } else {
        print!("{}", table(document));
    }
    Ok(())
}

/// `webhookd check`: the report on stdout (a table, or the JSON document), then an error, so
/// exit 1, when an invariant is broken or could not be checked within `QUERY_TIMEOUT`.
pub(super) async fn check(settings: &Settings, json: bool) -> anyhow::Result<()> {
    let pool = command_pool(settings).await?;
    let report = invariants::check(&pool, settings.query_timeout)
        .await
        .map_err(cli_error)?;
    print_document(&report, json, check_table)?;
    match (report.broken, report.unchecked) {
        (0, 0) => Ok(()),
        (0, n) => anyhow::bail!(
            "{n} invariant(s) not checked within QUERY_TIMEOUT ({}); a longer one counts them, e.g. QUERY_TIMEOUT=10m webhookd check",
            humantime::format_duration(settings.query_timeout)
        ),
        (1, _) => anyhow::bail!("1 invariant is broken"),
        (n, _) => anyhow::bail!("{n} invariants are broken"),
    }
}

pub(super) async fn run_redrive(
    settings: &Settings,
    log: &Logger,
    args: &RedriveArgs,
) -> anyhow::Result<()> {
    let request = args.request().map_err(cli_error)?;
    let pool = command_pool(settings).await?;
    match redrive::redrive(&pool, &request, settings.query_timeout)
        .await
        .map_err(cli_error)?
    {
        RedriveOutcome::DryRun { matched } => println!("would redrive {matched}"),
        RedriveOutcome::Redriven { redriven } => {
            info!(log, "redrive done"; "redriven" => redriven, "filter" => format!("{:?}", request.filter));
            println!("redriven {redriven}");
        }
    }
    Ok(())
}

/// `webhookd partners [pause|resume ID]`: the list as a table on stdout, or one partner paused
/// or resumed (its new state printed).
pub(super) async fn partners(
    settings: &Settings,
    log: &Logger,
    args: &PartnersArgs,
) -> anyhow::Result<()> {
    let pool = command_pool(settings).await?;
    let control = match args.action {
        None => {
            let list = configs::list(&pool).await.map_err(cli_error)?;
            print!("{}", partners_table(&list));
            return Ok(());
        }
        Some(PartnerAction::Pause { id }) => (id, Control::Pause),
        Some(PartnerAction::Resume { id }) => (id, Control::Resume),
    };
    let metrics = Metrics::new(Role::Api);
    let config = configs::control(&pool, control.0, control.1, &metrics, log)
        .await
        .map_err(cli_error)?;
    println!(
        "partner {} ({}) is {}; {} events held",
        config.id, config.name, config.health.state, config.health.held
    );
    Ok(())
}

//! The command line: one binary, nine subcommands sharing one data layer. `args` is what
//! clap parses, `commands` what each command does; a process's wiring is `startup`'s.

mod args;
mod commands;
mod stats_table;

use std::time::Duration;

use anyhow::Context;
use clap::Parser;

use crate::application::metrics::Role;
use crate::config::Settings;
pub use args::{Cli, Command};
use commands::Report;

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
        return commands::run_probe(&cli, args).await;
    }
    let settings = Settings::load(&cli.overrides()).context("configuration")?;
    let log = crate::logging::root(settings.log_format, settings.log_level);
    let result = match cli.command {
        Command::Migrate => commands::migrate(&settings, &log, Report::Stdout).await,
        Command::Serve => commands::run_process(&settings, &log, Role::Api).await,
        Command::Work(_) => commands::run_process(&settings, &log, Role::Workers).await,
        Command::Run(_) => commands::run_process(&settings, &log, Role::Both).await,
        Command::Stats(args) => commands::print_stats(&settings, args.json).await,
        Command::Check(args) => commands::check(&settings, args.json).await,
        Command::Redrive(args) => commands::run_redrive(&settings, &log, &args).await,
        Command::Partners(args) => commands::partners(&settings, &log, &args).await,
        // Answered above, before any settings were loaded.
        Command::Probe(_) => Ok(()),
    };
    // Let the async log drain flush before the process ends.
    drop(log);
    tokio::time::sleep(Duration::from_millis(20)).await;
    result
}

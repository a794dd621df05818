//! The root logger: slog, to stderr, as JSON, logfmt or pretty text.

use slog::{o, Drain, Level, Logger};

use crate::config::{LogFormat, LogLevel};

fn level(level: LogLevel) -> Level {
    match level {
        LogLevel::Debug => Level::Debug,
        LogLevel::Info => Level::Info,
        LogLevel::Warn => Level::Warning,
        LogLevel::Error => Level::Error,
    }
}

/// Builds the root logger. Records go through an async drain so a slow stderr never stalls
/// a worker; the returned guard-less logger flushes when the last clone is dropped.
pub fn root(format: LogFormat, min_level: LogLevel) -> Logger {
    let drain: Box<dyn Drain<Ok = (), Err = slog::Never> + Send> = match format {
        LogFormat::Json => Box::new(
            slog_json::Json::new(std::io::stderr())
                .add_default_keys()
                .set_flush(true)
                .build()
                .fuse(),
        ),
        LogFormat::Logfmt => Box::new(slog_logfmt::Logfmt::new(std::io::stderr()).build().fuse()),
        LogFormat::Pretty => {
            let decorator = slog_term::TermDecorator::new().stderr().build();
            Box::new(slog_term::FullFormat::new(decorator).build().fuse())
        }
    };
    let drain = slog_async::Async::new(drain.filter_level(level(min_level)).fuse())
        .chan_size(16_384)
        .overflow_strategy(slog_async::OverflowStrategy::DropAndReport)
        .build()
        .fuse();
    Logger::root(
        drain,
        o!("service" => "webhookd", "version" => env!("CARGO_PKG_VERSION")),
    )
}

//! Settings: loaded once at start from layered sources, validated, then passed explicitly.
//!
//! Layers, later wins: the built-in defaults (`config/default.toml`, compiled in) →
//! `./config/default.toml` when present → the file named by `--config`/`WEBHOOKD_CONFIG` →
//! environment variables (the keys in upper case) → command-line flags.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use config::{Config, Environment, File, FileFormat};
use ipnet::IpNet;
use serde::Deserialize;

use crate::domain::partner::MAX_PROBE_INTERVAL_SECS;
use crate::domain::retry::RetryPolicy;
use crate::sealing::Keys;

pub mod values;

use values::{
    allow_networks, api_tokens, at_least_one, invalid, outbound_proxy, positive, within, worker_id,
};
pub use values::{ConfigError, Secret};

const BUILT_IN_DEFAULTS: &str = include_str!("../../config/default.toml");

/// Every key a layer may set; environment variables are these in upper case.
pub const KEYS: &[&str] = &[
    "database_url",
    "database_max_connections",
    "server_addr",
    "worker_count",
    "worker_batch_size",
    "worker_poll_interval",
    "worker_lock_duration",
    "worker_id",
    "http_timeout",
    "http_connect_timeout",
    "delivery_host_concurrency",
    "retry_max_retries",
    "retry_base_delay",
    "retry_max_delay",
    "retry_jitter",
    "circuit_failure_threshold",
    "circuit_probe_interval",
    "response_body_limit",
    "shutdown_timeout",
    "retention_completed",
    "retention_failed",
    "retention_interval",
    "query_timeout",
    "api_token",
    "ingest_rate_limit",
    "outbound_allow_networks",
    "outbound_proxy",
    "secret_keys",
    "log_level",
    "log_format",
];

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Json,
    Logfmt,
    Pretty,
}

#[derive(Clone, Copy, Debug, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Debug,
    Info,
    Warn,
    Error,
}

/// The raw shape of the layered sources; turned into [`Settings`] by [`Settings::from_raw`].
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    database_url: Secret,
    database_max_connections: usize,
    server_addr: String,
    worker_count: usize,
    worker_batch_size: usize,
    #[serde(with = "humantime_serde")]
    worker_poll_interval: Duration,
    #[serde(with = "humantime_serde")]
    worker_lock_duration: Duration,
    worker_id: String,
    #[serde(with = "humantime_serde")]
    http_timeout: Duration,
    #[serde(with = "humantime_serde")]
    http_connect_timeout: Duration,
    delivery_host_concurrency: usize,
    retry_max_retries: i32,
    #[serde(with = "humantime_serde")]
    retry_base_delay: Duration,
    #[serde(with = "humantime_serde")]
    retry_max_delay: Duration,
    retry_jitter: f64,
    circuit_failure_threshold: u32,
    #[serde(with = "humantime_serde")]
    circuit_probe_interval: Duration,
    response_body_limit: usize,
    #[serde(with = "humantime_serde")]
    shutdown_timeout: Duration,
    #[serde(with = "humantime_serde")]
    retention_completed: Duration,
    #[serde(with = "humantime_serde")]
    retention_failed: Duration,
    #[serde(with = "humantime_serde")]
    retention_interval: Duration,
    #[serde(with = "humantime_serde")]
    query_timeout: Duration,
    api_token: Secret,
    ingest_rate_limit: u32,
    outbound_allow_networks: String,
    outbound_proxy: Secret,
    secret_keys: Secret,
    log_level: LogLevel,
    log_format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct Settings {
    pub database_url: Secret,
    pub database_max_connections: usize,
    pub server_addr: SocketAddr,
    pub worker: WorkerSettings,
    pub delivery: DeliverySettings,
    pub retry: RetryPolicy,
    pub circuit: CircuitSettings,
    pub shutdown_timeout: Duration,
    pub retention: RetentionSettings,
    /// The longest any one statement run for an operator may take: a search, a redrive's
    /// selection, a check, the counters' count in a pruning pass.
    pub query_timeout: Duration,
    /// Accepted bearer tokens; empty means the API is open.
    pub api_tokens: Vec<Secret>,
    /// Events per second each caller may submit (burst the same); 0 means no limit.
    pub ingest_rate_limit: u32,
    /// `SECRET_KEYS`: what partner secrets are sealed with; empty when none was given.
    pub secret_keys: Keys,
    pub log_level: LogLevel,
    pub log_format: LogFormat,
}

#[derive(Clone, Debug)]
pub struct WorkerSettings {
    pub count: usize,
    pub batch_size: usize,
    pub poll_interval: Duration,
    pub lock_duration: Duration,
    pub id: String,
}

#[derive(Clone, Debug)]
pub struct DeliverySettings {
    pub http_timeout: Duration,
    pub connect_timeout: Duration,
    pub host_concurrency: usize,
    pub response_body_limit: usize,
    pub allow_networks: Vec<IpNet>,
    /// `OUTBOUND_PROXY`: the proxy every call goes through unless its config names its own.
    pub proxy: Option<Secret>,
}

/// When a partner trips, and how soon it is probed (docs/api.md, "Partner health"); a config may set its own
/// threshold.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CircuitSettings {
    /// Partner failures in a row that trip a partner.
    pub failure_threshold: u32,
    /// The first wait before a tripped partner is probed; doubles per probe up to 5 minutes.
    pub probe_interval: Duration,
}

/// How long finished rows are kept, and how often the worker processes prune the rest.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetentionSettings {
    /// Completed rows are deleted this long after `completed_at`; `None` (`0s`) keeps them.
    pub completed: Option<Duration>,
    /// Failed rows are deleted this long after they failed, cancelled rows this long after
    /// they were cancelled; `None` (`0s`) keeps them.
    pub failed: Option<Duration>,
    /// Time between two pruning passes.
    pub interval: Duration,
}

/// Values given on the command line; each wins over every other layer.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub config_file: Option<PathBuf>,
    pub values: Vec<(&'static str, String)>,
}

impl Settings {
    /// Loads from the process environment and the working directory.
    pub fn load(overrides: &Overrides) -> Result<Self, ConfigError> {
        let env: HashMap<String, String> = std::env::vars().collect();
        Self::load_from(overrides, &env, Path::new("config/default.toml"))
    }

    /// Loads with an explicit environment, so tests need not touch the process's.
    pub fn load_from(
        overrides: &Overrides,
        env: &HashMap<String, String>,
        local_defaults: &Path,
    ) -> Result<Self, ConfigError> {
        let mut builder = Config::builder()
            .add_source(File::from_str(BUILT_IN_DEFAULTS, FileFormat::Toml))
            .add_source(
                File::from(local_defaults)
                    .format(FileFormat::Toml)
                    .required(false),
            );
        let config_file = overrides.config_file.clone().or_else(|| {
            env.get("WEBHOOKD_CONFIG")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from)
        });
        if let Some(path) = config_file {
            if !path.is_file() {
                return Err(invalid(
                    "config",
                    format!("file {} does not exist", path.display()),
                ));
            }
            builder = builder.add_source(File::from(path).format(FileFormat::Toml));
        }
        // Only our own keys are taken from the environment: PATH and friends are not settings.
        let ours: HashMap<String, String> = KEYS
            .iter()
            .filter_map(|key| {
                env.get(&key.to_ascii_uppercase())
                    .map(|v| (key.to_ascii_uppercase(), v.clone()))
            })
            .collect();
        builder = builder.add_source(Environment::default().source(Some(ours)));
        for (key, value) in &overrides.values {
            builder = builder.set_override(*key, value.clone())?;
        }
        let raw: Raw = builder.build()?.try_deserialize()?;
        Self::from_raw(raw)
    }

    fn from_raw(raw: Raw) -> Result<Self, ConfigError> {
        let server_addr = raw.server_addr.parse().map_err(|_| {
            invalid(
                "server_addr",
                format!("{:?} is not host:port", raw.server_addr),
            )
        })?;
        check_bounds(&raw)?;
        let retry = RetryPolicy::new(
            raw.retry_max_retries,
            raw.retry_base_delay,
            raw.retry_max_delay,
            raw.retry_jitter,
        )
        .map_err(|e| invalid(e.key, e.message))?;
        let allow_networks = allow_networks(&raw.outbound_allow_networks)?;
        let api_tokens = api_tokens(&raw.api_token);
        let worker_id = worker_id(&raw.worker_id);
        let proxy = outbound_proxy(&raw.outbound_proxy)?;
        let secret_keys =
            Keys::parse(&raw.secret_keys).map_err(|e| invalid("secret_keys", e.to_string()))?;
        Ok(Settings {
            database_url: raw.database_url,
            database_max_connections: raw.database_max_connections,
            server_addr,
            worker: WorkerSettings {
                count: raw.worker_count,
                batch_size: raw.worker_batch_size,
                poll_interval: raw.worker_poll_interval,
                lock_duration: raw.worker_lock_duration,
                id: worker_id,
            },
            delivery: DeliverySettings {
                http_timeout: raw.http_timeout,
                connect_timeout: raw.http_connect_timeout,
                host_concurrency: raw.delivery_host_concurrency,
                response_body_limit: raw.response_body_limit,
                allow_networks,
                proxy,
            },
            retry,
            circuit: CircuitSettings {
                failure_threshold: raw.circuit_failure_threshold,
                probe_interval: raw.circuit_probe_interval,
            },
            shutdown_timeout: raw.shutdown_timeout,
            retention: RetentionSettings {
                completed: Some(raw.retention_completed).filter(|age| !age.is_zero()),
                failed: Some(raw.retention_failed).filter(|age| !age.is_zero()),
                interval: raw.retention_interval,
            },
            query_timeout: raw.query_timeout,
            api_tokens,
            ingest_rate_limit: raw.ingest_rate_limit,
            secret_keys,
            log_level: raw.log_level,
            log_format: raw.log_format,
        })
    }
}

/// The bounds each number and duration must keep, and that a lease outlasts a call.
fn check_bounds(raw: &Raw) -> Result<(), ConfigError> {
    at_least_one("database_max_connections", raw.database_max_connections)?;
    at_least_one("worker_count", raw.worker_count)?;
    within("worker_batch_size", raw.worker_batch_size, 1000)?;
    positive("worker_poll_interval", raw.worker_poll_interval)?;
    positive("http_timeout", raw.http_timeout)?;
    positive("http_connect_timeout", raw.http_connect_timeout)?;
    if raw.worker_lock_duration <= raw.http_timeout {
        return Err(invalid(
            "worker_lock_duration",
            format!(
                "must exceed http_timeout ({} <= {})",
                humantime::format_duration(raw.worker_lock_duration),
                humantime::format_duration(raw.http_timeout)
            ),
        ));
    }
    positive("retention_interval", raw.retention_interval)?;
    if raw.query_timeout < Duration::from_millis(1) {
        return Err(invalid("query_timeout", "must be at least 1ms"));
    }
    at_least_one("delivery_host_concurrency", raw.delivery_host_concurrency)?;
    within(
        "circuit_failure_threshold",
        raw.circuit_failure_threshold as usize,
        1000,
    )?;
    if raw.circuit_probe_interval.is_zero()
        || raw.circuit_probe_interval > Duration::from_secs(MAX_PROBE_INTERVAL_SECS)
    {
        return Err(invalid(
            "circuit_probe_interval",
            "must be positive and at most 5m",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(env: &[(&str, &str)], flags: &[(&'static str, &str)]) -> Result<Settings, ConfigError> {
        let env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let overrides = Overrides {
            config_file: None,
            values: flags.iter().map(|(k, v)| (*k, v.to_string())).collect(),
        };
        Settings::load_from(&overrides, &env, Path::new("/nonexistent/default.toml"))
    }

    #[test]
    fn built_in_defaults_match_the_spec() {
        let s = load(&[], &[]).unwrap();
        assert_eq!(
            s.database_url.expose(),
            "postgres://postgres@127.0.0.1:5432/webhookd"
        );
        assert_eq!(s.database_max_connections, 20);
        assert_eq!(s.server_addr, "0.0.0.0:8080".parse().unwrap());
        assert_eq!(s.worker.count, 10);
        assert_eq!(s.worker.batch_size, 50);
        assert_eq!(s.worker.poll_interval, Duration::from_secs(5));
        assert_eq!(s.worker.lock_duration, Duration::from_secs(300));
        assert!(s.worker.id.ends_with(&format!("-{}", std::process::id())));
        assert_eq!(s.delivery.http_timeout, Duration::from_secs(30));
        assert_eq!(s.delivery.host_concurrency, 32);
        assert_eq!(s.delivery.response_body_limit, 4096);
        assert_eq!(s.retry.max_retries(), 6);
        assert_eq!(s.retry.base_delay(), Duration::from_secs(1));
        assert_eq!(s.retry.max_delay(), Duration::from_secs(300));
        assert_eq!(s.retry.jitter(), 0.25);
        assert_eq!(s.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(s.circuit.failure_threshold, 10);
        assert_eq!(s.circuit.probe_interval, Duration::from_secs(5));
        assert_eq!(
            s.retention.completed,
            Some(Duration::from_secs(7 * 24 * 3600))
        );
        assert_eq!(
            s.retention.failed,
            Some(Duration::from_secs(30 * 24 * 3600))
        );
        assert_eq!(s.retention.interval, Duration::from_secs(60));
        assert_eq!(s.query_timeout, Duration::from_secs(1));
        assert!(s.api_tokens.is_empty());
        assert_eq!(s.ingest_rate_limit, 0);
        assert!(s.delivery.allow_networks.is_empty());
        assert_eq!(s.log_level, LogLevel::Info);
        assert_eq!(s.log_format, LogFormat::Json);
    }

    #[test]
    fn environment_beats_defaults_and_flags_beat_environment() {
        let s = load(
            &[
                ("WORKER_COUNT", "3"),
                ("HTTP_TIMEOUT", "250ms"),
                ("PATH", "/bin"),
            ],
            &[("worker_count", "4")],
        )
        .unwrap();
        assert_eq!(s.worker.count, 4);
        assert_eq!(s.delivery.http_timeout, Duration::from_millis(250));
    }

    #[test]
    fn config_file_layer_sits_between_defaults_and_environment() {
        let dir = std::env::temp_dir().join(format!("webhookd-config-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("c.toml");
        std::fs::write(&file, "worker_count = 7\nworker_batch_size = 9\n").unwrap();
        let env: HashMap<String, String> =
            [("WORKER_BATCH_SIZE".to_string(), "11".to_string())].into();
        let overrides = Overrides {
            config_file: Some(file),
            values: vec![],
        };
        let s = Settings::load_from(&overrides, &env, Path::new("/nonexistent")).unwrap();
        assert_eq!(s.worker.count, 7);
        assert_eq!(s.worker.batch_size, 11);
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn bad_values_name_the_setting() {
        // The error names the setting as its lower-case key.
        for (key, value) in [
            ("WORKER_LOCK_DURATION", "10s"),
            ("HTTP_TIMEOUT", "fast"),
            ("WORKER_COUNT", "-1"),
            ("RETRY_JITTER", "1.5"),
            ("RETRY_MAX_RETRIES", "7"),
            ("OUTBOUND_ALLOW_NETWORKS", "10.0.0.0/33"),
            ("SERVER_ADDR", "nowhere"),
            ("LOG_FORMAT", "xml"),
            ("RETENTION_INTERVAL", "0s"),
            ("QUERY_TIMEOUT", "0s"),
            ("RETENTION_COMPLETED", "a week"),
            ("INGEST_RATE_LIMIT", "-5"),
            ("CIRCUIT_FAILURE_THRESHOLD", "0"),
            ("CIRCUIT_PROBE_INTERVAL", "10m"),
            ("OUTBOUND_PROXY", "socks5://10.0.0.1:1080"),
            ("OUTBOUND_PROXY", "http://10.0.0.1:3128/path"),
            ("SECRET_KEYS", "not-base64!"),
            ("SECRET_KEYS", "c2hvcnQ="),
        ] {
            let err = load(&[(key, value)], &[]).unwrap_err().to_string();
            let expected = key.to_ascii_lowercase();
            assert!(err.contains(&expected), "{key}={value}: {err}");
        }
    }

    #[test]
    fn a_zero_retention_age_keeps_rows_forever() {
        let s = load(
            &[("RETENTION_COMPLETED", "0s"), ("RETENTION_FAILED", "36h")],
            &[],
        )
        .unwrap();
        assert_eq!(s.retention.completed, None);
        assert_eq!(s.retention.failed, Some(Duration::from_secs(36 * 3600)));
    }

    #[test]
    fn secrets_do_not_debug_print() {
        let s = load(
            &[
                ("DATABASE_URL", "postgres://u:hunter2@h/db"),
                ("API_TOKEN", "tok-canary"),
            ],
            &[],
        )
        .unwrap();
        let printed = format!("{s:?}");
        assert!(
            !printed.contains("hunter2") && !printed.contains("tok-canary"),
            "{printed}"
        );
    }

    #[test]
    fn env_example_lists_every_setting() {
        let example = include_str!("../../.env.example");
        for key in KEYS {
            let line = format!("\n{}=", key.to_ascii_uppercase());
            assert!(
                example.contains(&line),
                ".env.example lacks {}",
                key.to_ascii_uppercase()
            );
        }
    }

    #[test]
    fn several_api_tokens_are_comma_separated() {
        let s = load(&[("API_TOKEN", "a, b")], &[]).unwrap();
        let tokens: Vec<_> = s.api_tokens.iter().map(Secret::expose).collect();
        assert_eq!(tokens, ["a", "b"]);
    }
}

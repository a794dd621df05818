//! Setting values: [`Secret`], the error a bad one is, each one's own checks, and the list
//! settings read from their text.

use std::fmt;
use std::time::Duration;

use ipnet::IpNet;
use serde::Deserialize;

use crate::domain::outbound::proxy_url;

/// A value that must never reach a log line or a `Debug` print.
#[derive(Clone, Default, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{0}")]
    Source(#[from] config::ConfigError),
    #[error("invalid setting {key}: {message}")]
    Invalid { key: &'static str, message: String },
}

pub(super) fn invalid(key: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key,
        message: message.into(),
    }
}

pub(super) fn at_least_one(key: &'static str, n: usize) -> Result<(), ConfigError> {
    if n == 0 {
        return Err(invalid(key, "must be at least 1"));
    }
    Ok(())
}

pub(super) fn within(key: &'static str, n: usize, max: usize) -> Result<(), ConfigError> {
    if n == 0 || n > max {
        return Err(invalid(key, format!("must be between 1 and {max}")));
    }
    Ok(())
}

pub(super) fn positive(key: &'static str, d: Duration) -> Result<(), ConfigError> {
    if d.is_zero() {
        return Err(invalid(key, "must be positive"));
    }
    Ok(())
}

/// `OUTBOUND_PROXY`: empty, or an http(s) URL (with `user:password@` when the proxy asks).
pub(super) fn outbound_proxy(text: &Secret) -> Result<Option<Secret>, ConfigError> {
    let text = text.expose().trim();
    if text.is_empty() {
        return Ok(None);
    }
    proxy_url(text).map_err(|e| invalid("outbound_proxy", e.to_string()))?;
    Ok(Some(Secret::new(text)))
}

/// `OUTBOUND_ALLOW_NETWORKS`: comma-separated CIDRs, a bare address being its own network.
pub(super) fn allow_networks(list: &str) -> Result<Vec<IpNet>, ConfigError> {
    list.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| {
            s.parse::<IpNet>()
                .or_else(|_| s.parse::<std::net::IpAddr>().map(IpNet::from))
                .map_err(|_| invalid("outbound_allow_networks", format!("{s:?} is not a CIDR")))
        })
        .collect()
}

/// `API_TOKEN`: comma-separated, for rotation.
pub(super) fn api_tokens(list: &Secret) -> Vec<Secret> {
    list.expose()
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(Secret::new)
        .collect()
}

/// `WORKER_ID`, by default `<hostname>-<pid>`.
pub(super) fn worker_id(configured: &str) -> String {
    match configured.trim() {
        "" => format!(
            "{}-{}",
            gethostname::gethostname().to_string_lossy(),
            std::process::id()
        ),
        id => id.to_string(),
    }
}

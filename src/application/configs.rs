//! Partner configurations: create, read, replace, deactivate.

use crate::domain::outbound::AddressPolicy;
use crate::domain::retry::MAX_RETRIES_LIMIT;
use crate::domain::signing::SigningKey;
use crate::domain::url_template::UrlTemplate;
use chrono::{DateTime, Utc};

use crate::store::models::{ConfigForm, ConfigRow, SecretChange};
use crate::store::{configs, DbPool};

use super::{conn, AppError};

/// Longest config name, once trimmed.
pub const MAX_NAME_LEN: usize = 200;

/// A partner config as the use cases return it: what callers may see of a stored config (the
/// signing secret is write-only, so only whether there is one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    pub id: i64,
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    /// `None`: the service's default.
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub signing: bool,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<ConfigRow> for Config {
    fn from(row: ConfigRow) -> Self {
        Self {
            id: row.id,
            name: row.name,
            postback_url: row.postback_url,
            chargeback_url: row.chargeback_url,
            max_retries: row.max_retries,
            is_active: row.is_active,
            signing: row.signing,
            created_at: row.created_at,
            updated_at: row.updated_at,
        }
    }
}

/// A validated config as submitted to create or replace.
#[derive(Clone, Debug)]
pub struct ConfigInput {
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub signing: SecretChange,
}

impl ConfigInput {
    /// Checks everything that does not need the database.
    ///
    /// `signing_secret` is write-only and has three states, the same on create and replace:
    /// absent (`None`) keeps the stored secret (so a PUT that round-trips a config read from
    /// the API, which never shows the secret, does not silently turn signing off); `null`
    /// (`Some(None)`) removes it; a `whsec_<base64>` string (`Some(Some(..))`) sets it.
    pub fn new(
        name: String,
        postback_url: Option<String>,
        chargeback_url: Option<String>,
        max_retries: Option<i64>,
        is_active: bool,
        signing_secret: Option<Option<String>>,
        policy: &AddressPolicy,
    ) -> Result<Self, AppError> {
        let name = name.trim().to_string();
        if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
            return Err(AppError::invalid(
                "name",
                format!("must be 1 to {MAX_NAME_LEN} characters"),
            ));
        }
        for (field, url) in [
            ("postback_url", &postback_url),
            ("chargeback_url", &chargeback_url),
        ] {
            if let Some(url) = url {
                check_template(field, url, policy)?;
            }
        }
        if postback_url.is_none() && chargeback_url.is_none() {
            return Err(AppError::invalid(
                "postback_url",
                "a config needs a postback_url, a chargeback_url or both",
            ));
        }
        let max_retries = match max_retries {
            None => None,
            Some(n) if (0..=MAX_RETRIES_LIMIT as i64).contains(&n) => Some(n as i32),
            Some(_) => {
                return Err(AppError::invalid(
                    "max_retries",
                    format!("must be between 0 and {MAX_RETRIES_LIMIT}"),
                ))
            }
        };
        let signing = match signing_secret {
            None => SecretChange::Keep,
            Some(None) => SecretChange::Remove,
            Some(Some(secret)) => SecretChange::Set(
                SigningKey::from_secret(&secret)
                    .map_err(|e| AppError::invalid("signing_secret", e.to_string()))?,
            ),
        };
        Ok(Self {
            name,
            postback_url,
            chargeback_url,
            max_retries,
            is_active,
            signing,
        })
    }

    fn form(&self) -> ConfigForm {
        ConfigForm {
            name: self.name.clone(),
            postback_url: self.postback_url.clone(),
            chargeback_url: self.chargeback_url.clone(),
            max_retries: self.max_retries,
            is_active: self.is_active,
        }
    }
}

/// A template must parse, and a literal address host must be one deliveries may reach.
/// Host names are checked when the call is made.
fn check_template(field: &str, url: &str, policy: &AddressPolicy) -> Result<(), AppError> {
    let template = UrlTemplate::parse(url).map_err(|e| AppError::invalid(field, e.to_string()))?;
    let literal = match template.host() {
        Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
        Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
        _ => None,
    };
    if let Some(ip) = literal {
        policy
            .check(ip)
            .map_err(|e| AppError::invalid(field, format!("host {e}")))?;
    }
    Ok(())
}

fn name_taken(error: diesel::result::Error) -> AppError {
    match AppError::from(error) {
        AppError::Conflict(_) => {
            AppError::Conflict("a config with this name exists already".into())
        }
        other => other,
    }
}

pub async fn create(pool: &DbPool, input: ConfigInput) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    let row = configs::insert(&mut conn, &input.form(), &input.signing)
        .await
        .map_err(name_taken)?;
    Ok(row.into())
}

pub async fn list(pool: &DbPool) -> Result<Vec<Config>, AppError> {
    let mut conn = conn(pool).await?;
    let rows = configs::list(&mut conn).await?;
    Ok(rows.into_iter().map(Config::from).collect())
}

pub async fn get(pool: &DbPool, id: i64) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    configs::find(&mut conn, id)
        .await?
        .map(Config::from)
        .ok_or(AppError::NotFound("config"))
}

pub async fn replace(pool: &DbPool, id: i64, input: ConfigInput) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    configs::replace(&mut conn, id, &input.form(), &input.signing)
        .await
        .map_err(name_taken)?
        .map(Config::from)
        .ok_or(AppError::NotFound("config"))
}

/// Deactivates a config: it takes no new events; rows already queued are still delivered.
pub async fn deactivate(pool: &DbPool, id: i64) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    configs::deactivate(&mut conn, id)
        .await?
        .map(Config::from)
        .ok_or(AppError::NotFound("config"))
}

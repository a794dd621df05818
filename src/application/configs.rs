//! Partner configurations: create, read, replace, deactivate; and each partner's health
//! (docs/api.md, "Partner health"): its delivery state as read, an operator's pause and resume.

use std::ops::RangeInclusive;
use std::time::Duration;

use slog::{info, Logger};

use crate::domain::call_settings::CallSettings;
use crate::domain::order::EventOrdering;
use crate::domain::outbound::AddressPolicy;
use crate::domain::partner::{PartnerState, StateReason, MAX_PER_SECOND_LIMIT, MAX_THRESHOLD};
use crate::domain::partner_delay;
use crate::domain::retry::MAX_RETRIES_LIMIT;
use crate::domain::signing::SigningKey;
use crate::domain::url_template::UrlTemplate;
use crate::sealing::Keys;
use chrono::{DateTime, Utc};

use crate::store::models::{CallSettingsColumns, ConfigForm, ConfigRow};
use crate::store::partners::{self, PartnerRow};
use crate::store::{configs, DbPool};

use super::call_settings::{parse_grace, resolve_signing, CallInput, SigningChange};
use super::metrics::Metrics;

use super::{conn, AppError};

/// Longest config name, once trimmed.
pub const MAX_NAME_LEN: usize = 200;

/// A partner config as the use cases return it: what callers may see of a stored config (the
/// signing secret is write-only, so only whether there is one), with the partner's health.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    pub id: i64,
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    /// `None`: the service's default.
    pub max_retries: Option<i32>,
    pub is_active: bool,
    /// Whether this partner's debits wait for their credits.
    pub ordering: EventOrdering,
    pub signing: bool,
    /// While a rotated-out signing secret still signs alongside the new one: until when.
    pub previous_signing_until: Option<DateTime<Utc>>,
    /// How calls are made besides the URL; its secrets are sealed, for callers to hide.
    pub call: CallSettings,
    pub delivery: PartnerSettings,
    pub health: Health,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partner's own delivery settings; `None` everywhere means the global setting.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct PartnerSettings {
    /// Calls per second across every process; `None`: no limit.
    pub max_per_second: Option<i32>,
    pub retry_base_delay: Option<Duration>,
    pub retry_max_delay: Option<Duration>,
    pub circuit_failure_threshold: Option<i32>,
}

/// A partner's delivery state as read now.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Health {
    pub state: PartnerState,
    /// Why it is not active; `None` while active.
    pub reason: Option<StateReason>,
    pub since: DateTime<Utc>,
    /// Partner failures in a row.
    pub failures: i32,
    /// Pending rows held because of the state.
    pub held: i64,
    pub last_error: Option<String>,
    pub last_error_at: Option<DateTime<Utc>>,
    /// While tripped: when the next probe call may be made.
    pub next_probe_at: Option<DateTime<Utc>>,
}

impl From<PartnerRow> for Health {
    fn from(row: PartnerRow) -> Self {
        Self {
            state: row.state,
            reason: row.reason,
            since: row.since,
            failures: row.failures,
            held: row.held,
            last_error: row.last_error,
            last_error_at: row.last_error_at,
            next_probe_at: row.probe_at,
        }
    }
}

impl Health {
    /// A partner without a state row yet is active (every config gets one when it is made).
    fn active_since(t: DateTime<Utc>) -> Self {
        Self {
            state: PartnerState::Active,
            reason: None,
            since: t,
            failures: 0,
            held: 0,
            last_error: None,
            last_error_at: None,
            next_probe_at: None,
        }
    }
}

fn config(row: ConfigRow, health: Option<PartnerRow>) -> Result<Config, AppError> {
    let ms = |v: Option<i64>| v.map(|ms| Duration::from_millis(ms.max(0) as u64));
    let call = row
        .call_settings()
        .map_err(|e| AppError::internal(e.to_string()))?;
    Ok(Config {
        call,
        // An end that has passed is kept in the row but signs nothing: not shown.
        previous_signing_until: row
            .previous_signing_secret_until
            .filter(|until| *until > Utc::now()),
        delivery: PartnerSettings {
            max_per_second: row.max_per_second,
            retry_base_delay: ms(row.retry_base_delay_ms),
            retry_max_delay: ms(row.retry_max_delay_ms),
            circuit_failure_threshold: row.circuit_failure_threshold,
        },
        health: health
            .map(Health::from)
            .unwrap_or_else(|| Health::active_since(row.created_at)),
        id: row.id,
        name: row.name,
        postback_url: row.postback_url,
        chargeback_url: row.chargeback_url,
        max_retries: row.max_retries,
        is_active: row.is_active,
        ordering: row.ordering,
        signing: row.signing,
        created_at: row.created_at,
        updated_at: row.updated_at,
    })
}

/// A validated config as submitted to create or replace.
#[derive(Clone, Debug)]
pub struct ConfigInput {
    pub name: String,
    pub postback_url: Option<String>,
    pub chargeback_url: Option<String>,
    pub max_retries: Option<i32>,
    pub is_active: bool,
    pub ordering: EventOrdering,
    pub signing: SigningChange,
    pub call: CallInput,
    pub delivery: PartnerSettings,
}

/// A partner's own delivery settings as submitted, before they are checked.
#[derive(Clone, Debug, Default)]
pub struct PartnerSettingsInput {
    pub max_per_second: Option<i64>,
    pub retry_base_delay: Option<String>,
    pub retry_max_delay: Option<String>,
    pub circuit_failure_threshold: Option<i64>,
}

impl PartnerSettingsInput {
    fn parse(self) -> Result<PartnerSettings, AppError> {
        let max_per_second = self
            .max_per_second
            .map(|n| in_range("max_per_second", n, 1..=MAX_PER_SECOND_LIMIT))
            .transpose()?;
        let circuit_failure_threshold = self
            .circuit_failure_threshold
            .map(|n| in_range("circuit_failure_threshold", n, 1..=MAX_THRESHOLD))
            .transpose()?;
        let delay = |field: &str, text: Option<String>| -> Result<Option<Duration>, AppError> {
            text.map(|text| partner_delay::parse(&text).map_err(|e| AppError::invalid(field, e)))
                .transpose()
        };
        // A cap below the base delay is raised to it (`RetryPolicy::for_partner`), as for the
        // global settings: every delay is then the base delay.
        let retry_base_delay = delay("retry_base_delay", self.retry_base_delay)?;
        let retry_max_delay = delay("retry_max_delay", self.retry_max_delay)?;
        Ok(PartnerSettings {
            max_per_second,
            retry_base_delay,
            retry_max_delay,
            circuit_failure_threshold,
        })
    }
}

impl ConfigInput {
    /// Checks everything that does not need the database.
    ///
    /// `signing_secret` is write-only and has three states, the same on create and replace:
    /// absent (`None`) keeps the stored secret (so a PUT that round-trips a config read from
    /// the API, which never shows the secret, does not silently turn signing off); `null`
    /// (`Some(None)`) removes it; a `whsec_<base64>` string (`Some(Some(..))`) sets it, and
    /// with `signing_grace` the secret it replaces signs alongside it for that long.
    // One argument per field of the body, each parsed here, in the body's order.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        name: String,
        postback_url: Option<String>,
        chargeback_url: Option<String>,
        max_retries: Option<i64>,
        is_active: bool,
        signing_secret: Option<Option<String>>,
        signing_grace: Option<String>,
        call: CallInput,
        delivery: PartnerSettingsInput,
        policy: &AddressPolicy,
    ) -> Result<Self, AppError> {
        let name = checked_name(&name)?;
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
        let max_retries = max_retries
            .map(|n| in_range("max_retries", n, 0..=MAX_RETRIES_LIMIT as i64))
            .transpose()?;
        let grace = signing_grace.as_deref().map(parse_grace).transpose()?;
        let signing = match signing_secret {
            Some(Some(secret)) => SigningChange::Set {
                key: SigningKey::from_secret(&secret)
                    .map_err(|e| AppError::invalid("signing_secret", e.to_string()))?,
                grace,
            },
            _ if grace.is_some() => {
                return Err(AppError::invalid(
                    "signing_secret_grace",
                    "is only given with a new signing_secret",
                ))
            }
            None => SigningChange::Keep,
            Some(None) => SigningChange::Remove,
        };
        call.check()?;
        let delivery = delivery.parse()?;
        Ok(Self {
            name,
            postback_url,
            chargeback_url,
            max_retries,
            is_active,
            ordering: EventOrdering::default(),
            signing,
            call,
            delivery,
        })
    }

    /// The same config with this `ordering` (default: [`EventOrdering::CreditBeforeDebit`]).
    pub fn ordered(self, ordering: EventOrdering) -> Self {
        Self { ordering, ..self }
    }

    fn form(&self) -> ConfigForm {
        ConfigForm {
            name: self.name.clone(),
            postback_url: self.postback_url.clone(),
            chargeback_url: self.chargeback_url.clone(),
            max_retries: self.max_retries,
            is_active: self.is_active,
            max_per_second: self.delivery.max_per_second,
            retry_base_delay_ms: self.delivery.retry_base_delay.map(|d| d.as_millis() as i64),
            retry_max_delay_ms: self.delivery.retry_max_delay.map(|d| d.as_millis() as i64),
            circuit_failure_threshold: self.delivery.circuit_failure_threshold,
            ordering: self.ordering.as_str(),
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

/// Creates a config; its secrets are sealed with `keys`, and refused when there are none.
pub async fn create(pool: &DbPool, input: ConfigInput, keys: &Keys) -> Result<Config, AppError> {
    let signing = resolve_signing(input.signing.clone(), None, keys, Utc::now())?;
    let call = CallSettingsColumns::from(&input.call.clone().resolve(None, keys)?);
    let mut conn = conn(pool).await?;
    let row = configs::insert(&mut conn, &input.form(), &call, &signing)
        .await
        .map_err(name_taken)?;
    let health = partners::find(&mut conn, Some(row.id)).await?.pop();
    config(row, health)
}

pub async fn list(pool: &DbPool) -> Result<Vec<Config>, AppError> {
    let mut conn = conn(pool).await?;
    let rows = configs::list(&mut conn).await?;
    let mut health: std::collections::HashMap<i64, PartnerRow> = partners::find(&mut conn, None)
        .await?
        .into_iter()
        .map(|p| (p.config_id, p))
        .collect();
    rows.into_iter()
        .map(|row| {
            let h = health.remove(&row.id);
            config(row, h)
        })
        .collect()
}

pub async fn get(pool: &DbPool, id: i64) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    let row = configs::find(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("config"))?;
    let health = partners::find(&mut conn, Some(id)).await?.pop();
    config(row, health)
}

/// Replaces a config: the stored secrets the input keeps are merged in under a row lock, so
/// two replaces at once each see the other's secrets or none of them.
pub async fn replace(
    pool: &DbPool,
    id: i64,
    input: ConfigInput,
    keys: &Keys,
) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    let row = configs::replace_merged(&mut conn, id, |stored, signing| {
        let stored = stored
            .call_settings()
            .map_err(|e| AppError::internal(e.to_string()))?;
        let call = input.call.clone().resolve(Some(&stored), keys)?;
        let signing = resolve_signing(input.signing.clone(), Some(signing), keys, Utc::now())?;
        Ok::<_, AppError>((input.form(), CallSettingsColumns::from(&call), signing))
    })
    .await?
    .ok_or(AppError::NotFound("config"))?;
    let health = partners::find(&mut conn, Some(id)).await?.pop();
    config(row, health)
}

/// Deactivates a config: it takes no new events; rows already queued are still delivered.
pub async fn deactivate(pool: &DbPool, id: i64) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    let row = configs::deactivate(&mut conn, id)
        .await?
        .ok_or(AppError::NotFound("config"))?;
    let health = partners::find(&mut conn, Some(id)).await?.pop();
    config(row, health)
}

/// What an operator asks of a partner.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    /// Hold its events until resumed. Refused (409) when it is paused already.
    Pause,
    /// Make it active and release its held events. Refused (409) when it is active already.
    Resume,
}

/// Pauses or resumes a partner by hand: 404 for an unknown config, 409 when the partner is in
/// that state already. Logged and counted like the changes webhookd makes itself.
pub async fn control(
    pool: &DbPool,
    id: i64,
    control: Control,
    metrics: &Metrics,
    log: &Logger,
) -> Result<Config, AppError> {
    let mut conn = conn(pool).await?;
    let change = match control {
        Control::Pause => partners::pause(&mut conn, id, StateReason::Operator).await?,
        Control::Resume => partners::resume(&mut conn, id).await?,
    };
    let Some(state) = change.state else {
        return Err(AppError::NotFound("config"));
    };
    if !change.changed {
        return Err(AppError::Conflict(match control {
            Control::Pause => format!(
                "the partner is paused already (reason {})",
                change.reason.map_or("none", |r| r.as_str())
            ),
            Control::Resume => "the partner is active already".to_string(),
        }));
    }
    metrics.partner_changed(id, state);
    info!(log, "partner state changed by an operator"; "config_id" => id, "state" => state.as_str(),
        "reason" => change.reason.map(|r| r.as_str()), "held" => change.held);
    drop(conn);
    get(pool, id).await
}

/// A config's name, trimmed: 1 to [`MAX_NAME_LEN`] characters.
fn checked_name(name: &str) -> Result<String, AppError> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_NAME_LEN {
        return Err(AppError::invalid(
            "name",
            format!("must be 1 to {MAX_NAME_LEN} characters"),
        ));
    }
    Ok(name.to_string())
}

/// `n` as the `i32` its column holds, when `range` takes it.
fn in_range(field: &str, n: i64, range: RangeInclusive<i64>) -> Result<i32, AppError> {
    if !range.contains(&n) {
        return Err(AppError::invalid(
            field,
            format!("must be between {} and {}", range.start(), range.end()),
        ));
    }
    Ok(n as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_out_of_range_names_its_field_and_bounds() {
        let settings = PartnerSettingsInput {
            max_per_second: Some(0),
            ..Default::default()
        };
        let error = settings.parse().unwrap_err();
        assert_eq!(error.field(), Some("max_per_second"));
        assert_eq!(error.to_string(), "must be between 1 and 100000");
        let error = in_range("max_retries", 7, 0..=MAX_RETRIES_LIMIT as i64).unwrap_err();
        assert_eq!(error.to_string(), "must be between 0 and 6");
        assert_eq!(in_range("max_retries", 6, 0..=6).unwrap(), 6);
    }
}

//! A partner config as `/webhook-configs` answers with it: its settings, its call settings
//! with every secret as `***`, and its partner's health.

use chrono::{DateTime, Utc};
use serde::Serialize;
use utoipa::ToSchema;

use super::call_settings::{AuthDoc, CallView, ClientTlsDoc, HeaderDoc, RequestDoc};
use super::webhooks::OrderingName;
use crate::application::configs::{Config, Health};
use crate::domain::partner_delay;

/// A partner config. Every field is always present, null where it has no value.
#[derive(Serialize, ToSchema)]
pub struct ConfigView {
    pub id: i64,
    pub name: String,
    /// URL template for `+credit` events.
    #[schema(required)]
    pub postback_url: Option<String>,
    /// URL template for `-debit` events.
    #[schema(required)]
    pub chargeback_url: Option<String>,
    /// Attempts after the first; null means the service's default.
    #[schema(required)]
    pub max_retries: Option<i32>,
    pub is_active: bool,
    /// Whether this partner's `-debit`s wait for their `+credit`s (money order).
    #[schema(value_type = OrderingName)]
    pub ordering: &'static str,
    /// Whether calls are signed (Standard Webhooks). The secret is write-only: never shown.
    pub signing: bool,
    /// While the signing secret a rotation replaced still signs alongside the new one: until
    /// when.
    #[schema(required)]
    pub signing_previous_until: Option<DateTime<Utc>>,
    /// How `+credit` events are sent besides the URL; null: `GET`.
    #[schema(required)]
    pub postback_request: Option<RequestDoc>,
    /// How `-debit` events are sent besides the URL; null: `GET`.
    #[schema(required)]
    pub chargeback_request: Option<RequestDoc>,
    /// Headers every call carries; secret values shown as `***`.
    pub headers: Vec<HeaderDoc>,
    /// `Authorization` for every call, its secret shown as `***`.
    #[schema(required)]
    pub auth: Option<AuthDoc>,
    /// This partner's own proxy, its password shown as `***`; null: `OUTBOUND_PROXY`, if set.
    #[schema(required)]
    pub proxy_url: Option<String>,
    /// The client certificate for mutual TLS, its key shown as `***`.
    #[schema(required)]
    pub client_tls: Option<ClientTlsDoc>,
    /// Calls per second across all processes; null means no limit.
    #[schema(required)]
    pub max_per_second: Option<i32>,
    /// This partner's delay before retry 1 (e.g. `500ms`); null means the service's default.
    #[schema(required)]
    pub retry_base_delay: Option<String>,
    /// This partner's cap on a retry delay; null means the service's default.
    #[schema(required)]
    pub retry_max_delay: Option<String>,
    /// Partner failures in a row that trip it; null means the service's default.
    #[schema(required)]
    pub circuit_failure_threshold: Option<i32>,
    /// The partner's delivery state (docs/api.md, "Partner health").
    pub health: PartnerHealthView,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

/// A partner's delivery state: `active` (delivered), `paused` (by an operator, or by a
/// `410 Gone`: held until resumed) or `tripped` (held after too many partner failures in a row,
/// probed until a 2xx).
#[derive(Serialize, ToSchema)]
pub struct PartnerHealthView {
    #[schema(example = "tripped")]
    pub state: &'static str,
    /// Why it is not active: `operator`, `gone` or `failures`; null while active.
    #[schema(required, example = "failures")]
    pub reason: Option<&'static str>,
    /// When it entered its state.
    pub since: DateTime<Utc>,
    /// Pending events held because of the state: not claimed, spending no attempt.
    pub held: i64,
    /// Partner failures in a row (a 2xx resets it).
    pub consecutive_failures: i32,
    /// The last partner failure recorded (e.g. `HTTP 503`, `connect: ...`).
    #[schema(required)]
    pub last_error: Option<String>,
    #[schema(required)]
    pub last_error_at: Option<DateTime<Utc>>,
    /// While tripped: when the next probe call may be made.
    #[schema(required)]
    pub next_probe_at: Option<DateTime<Utc>>,
}

impl From<Health> for PartnerHealthView {
    fn from(h: Health) -> Self {
        Self {
            state: h.state.as_str(),
            reason: h.reason.map(|r| r.as_str()),
            since: h.since,
            held: h.held,
            consecutive_failures: h.failures,
            last_error: h.last_error,
            last_error_at: h.last_error_at,
            next_probe_at: h.next_probe_at,
        }
    }
}

fn duration_text(d: std::time::Duration) -> String {
    partner_delay::format(d)
}

impl From<Config> for ConfigView {
    fn from(c: Config) -> Self {
        let call = CallView::new(c.call, c.previous_signing_until);
        Self {
            signing_previous_until: call.signing_previous_until,
            postback_request: call.postback_request.map(RequestDoc::from),
            chargeback_request: call.chargeback_request.map(RequestDoc::from),
            headers: call.headers,
            auth: call.auth,
            proxy_url: call.proxy_url,
            client_tls: call.client_tls,
            max_per_second: c.delivery.max_per_second,
            retry_base_delay: c.delivery.retry_base_delay.map(duration_text),
            retry_max_delay: c.delivery.retry_max_delay.map(duration_text),
            circuit_failure_threshold: c.delivery.circuit_failure_threshold,
            health: c.health.into(),
            id: c.id,
            name: c.name,
            postback_url: c.postback_url,
            chargeback_url: c.chargeback_url,
            max_retries: c.max_retries,
            is_active: c.is_active,
            ordering: c.ordering.as_str(),
            signing: c.signing,
            created_at: c.created_at,
            updated_at: c.updated_at,
        }
    }
}

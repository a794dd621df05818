//! Request bodies into typed input: the one place a JSON body becomes a config or a submit
//! request. Public so that the fuzz target and property tests exercise exactly this code.

use serde_json::{json, Value};

use super::json::Fields;
use crate::application::configs::ConfigInput;
use crate::application::submit::SubmitRequest;
use crate::application::AppError;
use crate::domain::event::{EventType, UrlParams, MAX_EVENT_ID_BYTES};
use crate::domain::outbound::AddressPolicy;

/// The fields a config body may have: what `config_input` reads, and `ConfigBody` documents.
pub const CONFIG_FIELDS: &[&str] = &[
    "name",
    "postback_url",
    "chargeback_url",
    "max_retries",
    "is_active",
    "signing_secret",
];

/// The fields a submit may have: what `submit_request` reads, and `SubmitBody` documents.
pub const SUBMIT_FIELDS: &[&str] = &["event_type", "event_id", "config_id", "url_params"];

/// The body of `POST /webhook-configs` and `PUT /webhook-configs/{id}`.
///
/// `signing_secret` is write-only: absent keeps the stored secret, `null` removes it, a
/// `whsec_<base64>` string sets it (see [`ConfigInput::new`]). Responses show only
/// `"signing": true|false`.
pub fn config_input(body: Value, policy: &AddressPolicy) -> Result<ConfigInput, AppError> {
    let mut fields = Fields::new(body, CONFIG_FIELDS)?;
    let name = fields.string("name")?;
    let postback_url = fields.optional_string("postback_url")?;
    let chargeback_url = fields.optional_string("chargeback_url")?;
    let max_retries = fields.optional_integer("max_retries")?;
    let is_active = fields.optional_bool("is_active")?.unwrap_or(true);
    let signing_secret = fields.nullable_string("signing_secret")?;
    fields.finish()?;
    ConfigInput::new(
        name,
        postback_url,
        chargeback_url,
        max_retries,
        is_active,
        signing_secret,
        policy,
    )
}

/// The body of `POST /webhooks` (SPEC §5.1).
pub fn submit_request(body: Value) -> Result<SubmitRequest, AppError> {
    let mut fields = Fields::new(body, SUBMIT_FIELDS)?;
    let event_type: EventType = fields
        .string("event_type")?
        .parse()
        .map_err(|e: String| AppError::invalid("event_type", e))?;
    let event_id = fields.optional_string("event_id")?;
    if let Some(id) = &event_id {
        if id.is_empty() || id.len() > MAX_EVENT_ID_BYTES {
            return Err(AppError::invalid("event_id", "must be 1 to 255 bytes"));
        }
    }
    let config_id = fields.integer("config_id")?;
    let url_params_json = fields.optional("url_params").unwrap_or_else(|| json!({}));
    fields.finish()?;
    let url_params = UrlParams::from_json(&url_params_json)
        .map_err(|e| AppError::invalid(e.field, e.message))?;
    Ok(SubmitRequest {
        event_type,
        event_id,
        config_id,
        url_params,
        url_params_json,
    })
}

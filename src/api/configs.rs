//! `/webhook-configs`: partner configurations — the handlers, the body they read and the view
//! they answer with.

use actix_web::{web, HttpRequest, HttpResponse};
use serde_json::json;
use utoipa::openapi::schema::{Object, Schema};
use utoipa::openapi::RefOr;
use utoipa::ToSchema;

use super::call_settings::{AuthDoc, CallFields, ClientTlsDoc, HeaderDoc, RequestDoc};
use super::common::{Page, ServerErrors};
use super::config_view::ConfigView;
use super::errors::{ApiError, ErrorBody};
use super::json::{read_body, too_large, Body, Fields, BODY_LIMIT};
use super::state::{Reply, State};
use super::webhooks::OrderingName;
use crate::application::configs::{self, ConfigInput, Control, PartnerSettingsInput, MAX_NAME_LEN};
use crate::application::AppError;
use crate::domain::order::EventOrdering;
use crate::domain::outbound::AddressPolicy;
use crate::domain::partner::{MAX_PER_SECOND_LIMIT, MAX_THRESHOLD};
use crate::domain::retry::MAX_RETRIES_LIMIT;
use crate::domain::signing::KEY_BYTES;

// utoipa's schema attributes take number literals only, so the limits `ConfigBody` states are
// checked here against the constants that enforce them.
const _: () = assert!(
    MAX_NAME_LEN == 200
        && MAX_RETRIES_LIMIT == 6
        && MAX_PER_SECOND_LIMIT == 100_000
        && MAX_THRESHOLD == 1000
        && *KEY_BYTES.start() == 24
        && *KEY_BYTES.end() == 64,
    "a limit changed: change the documented one in api/configs.rs too"
);

/// What a URL template may be: `http` or `https`, a host name (every label starting with a
/// letter), an optional port, then path, query and fragment of printable ASCII in which
/// `{name}` placeholders stand (not in the fragment). The API's own check
/// (`UrlTemplate::parse`) takes more: a literal IP address host that deliveries may reach
/// (see `docs/decisions.md`), and spaces inside the path.
pub const URL_TEMPLATE_PATTERN: &str = concat!(
    r"^[Hh][Tt][Tt][Pp][Ss]?://",
    r"[A-Za-z](?:-?[A-Za-z0-9])*(?:\.[A-Za-z](?:-?[A-Za-z0-9])*)*",
    r"(?::(?:[0-9]{1,4}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5]))?",
    r##"(?:[/?](?:[!"$-z|~]|\{[A-Za-z0-9_.-]{1,64}\})*)?"##,
    r##"(?:#[!"$-z|~]*)?$"##,
);

/// What `SigningKey::from_secret` takes: `whsec_` and the standard base64 of 24 to 64 bytes,
/// the `=` padding optional, the unused bits of the last character zero.
pub const SIGNING_SECRET_PATTERN: &str = concat!(
    r"^whsec_(?:(?:[A-Za-z0-9+/]{4}){8,21}",
    r"|(?:[A-Za-z0-9+/]{4}){8,21}[A-Za-z0-9+/][AQgw](?:==?)?",
    r"|(?:[A-Za-z0-9+/]{4}){8,20}[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=?)$",
);

/// `POST /webhook-configs` and `PUT /webhook-configs/{id}` (which replaces every field). A
/// field that is null counts as absent; a config needs `postback_url`, `chargeback_url` or
/// both (the document states it with `anyOf`).
#[derive(ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfigBody {
    /// Unique, 1 to 200 characters once trimmed, not only white space.
    #[schema(
        min_length = 1,
        max_length = 200,
        pattern = r"^[^\u0000]*[^\u0000\t-\r \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][^\u0000]*$"
    )]
    pub name: String,
    /// URL template for `+credit` events: `{placeholders}` name `url_params` keys. A config
    /// needs this, `chargeback_url` or both.
    #[schema(max_length = 2048)]
    pub postback_url: Option<String>,
    /// URL template for `-debit` events.
    #[schema(max_length = 2048)]
    pub chargeback_url: Option<String>,
    /// Attempts after the first; absent means the service's default.
    #[schema(minimum = 0, maximum = 6)]
    pub max_retries: Option<i64>,
    /// Default true; an inactive config takes no new events.
    pub is_active: Option<bool>,
    /// Money order: `credit_before_debit` (the default) holds a `-debit` while the `+credit`
    /// with the same `event_id` is queued and has not completed; `none` delivers them
    /// independently.
    #[schema(value_type = Option<OrderingName>)]
    pub ordering: Option<EventOrdering>,
    /// Write-only Standard Webhooks secret `whsec_<base64 of 24-64 bytes>`: absent keeps the
    /// stored one, null removes it. Responses show only `signing`.
    #[schema(value_type = Option<String>)]
    pub signing_secret: Option<Option<String>>,
    /// With a new `signing_secret`: how long the secret it replaces keeps signing alongside
    /// it (both signatures in `webhook-signature`), e.g. `24h`; 1s to 30d.
    #[schema(example = "24h")]
    pub signing_secret_grace: Option<String>,
    /// How `+credit` events are sent besides the URL; absent or null: `GET`.
    #[schema(value_type = Option<RequestDoc>)]
    pub postback_request: Option<serde_json::Value>,
    /// How `-debit` events are sent besides the URL; absent or null: `GET`.
    #[schema(value_type = Option<RequestDoc>)]
    pub chargeback_request: Option<serde_json::Value>,
    /// Headers every call carries (at most 20). Absent keeps the stored ones, null removes
    /// them.
    #[schema(value_type = Option<Vec<HeaderDoc>>)]
    pub headers: Option<Option<serde_json::Value>>,
    /// `Authorization` for every call. Absent keeps the stored one, null removes it.
    #[schema(value_type = Option<AuthDoc>)]
    pub auth: Option<Option<serde_json::Value>>,
    /// The proxy this partner's calls go through (`http://[user:password@]host:port`),
    /// instead of `OUTBOUND_PROXY`. Absent keeps the stored one, null removes it; a password
    /// sent back as `***` keeps the stored one.
    #[schema(value_type = Option<String>, example = "http://egress.internal:3128")]
    pub proxy_url: Option<Option<serde_json::Value>>,
    /// A client certificate for mutual TLS. Absent keeps the stored one, null removes it.
    #[schema(value_type = Option<ClientTlsDoc>)]
    pub client_tls: Option<Option<serde_json::Value>>,
    /// Most calls per second to this partner, by all `work` processes together; absent means
    /// no limit.
    #[schema(minimum = 1, maximum = 100000)]
    pub max_per_second: Option<i64>,
    /// This partner's delay before retry 1: a whole number and one unit (`250ms`, `5s`, `10m`,
    /// `2h`, `1d`), 1ms to 7d; absent means `RETRY_BASE_DELAY`.
    #[schema(
        example = "500ms",
        pattern = "^([1-9][0-9]{0,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-7]d)$"
    )]
    pub retry_base_delay: Option<String>,
    /// This partner's cap on a retry delay, written as `retry_base_delay`; absent means
    /// `RETRY_MAX_DELAY`. A cap below the base delay is raised to it.
    #[schema(
        example = "10m",
        pattern = "^([1-9][0-9]{0,7}ms|[1-9][0-9]{0,4}s|[1-9][0-9]{0,3}m|[1-9][0-9]?h|[1-7]d)$"
    )]
    pub retry_max_delay: Option<String>,
    /// Partner failures in a row (transport errors, timeouts, 5xx, 429) that trip this
    /// partner; absent means `CIRCUIT_FAILURE_THRESHOLD`.
    #[schema(minimum = 1, maximum = 1000)]
    pub circuit_failure_threshold: Option<i64>,
}

impl Body for ConfigBody {
    const FIELDS: &'static [&'static str] = &[
        "name",
        "postback_url",
        "chargeback_url",
        "max_retries",
        "is_active",
        "ordering",
        "signing_secret",
        "signing_secret_grace",
        "postback_request",
        "chargeback_request",
        "headers",
        "auth",
        "proxy_url",
        "client_tls",
        "max_per_second",
        "retry_base_delay",
        "retry_max_delay",
        "circuit_failure_threshold",
    ];

    fn read(mut fields: Fields) -> Result<Self, AppError> {
        let body = Self {
            name: fields.string("name")?,
            postback_url: fields.optional_string("postback_url")?,
            chargeback_url: fields.optional_string("chargeback_url")?,
            max_retries: fields.optional_integer("max_retries")?,
            is_active: fields.optional_bool("is_active")?,
            ordering: fields
                .optional_string("ordering")?
                .map(|o| o.parse().map_err(|e| AppError::invalid("ordering", e)))
                .transpose()?,
            signing_secret: fields.nullable_string("signing_secret")?,
            signing_secret_grace: fields.optional_string("signing_secret_grace")?,
            postback_request: fields.optional("postback_request"),
            chargeback_request: fields.optional("chargeback_request"),
            headers: fields.nullable("headers"),
            auth: fields.nullable("auth"),
            proxy_url: fields.nullable("proxy_url"),
            client_tls: fields.nullable("client_tls"),
            max_per_second: fields.optional_integer("max_per_second")?,
            retry_base_delay: fields.optional_string("retry_base_delay")?,
            retry_max_delay: fields.optional_string("retry_max_delay")?,
            circuit_failure_threshold: fields.optional_integer("circuit_failure_threshold")?,
        };
        fields.finish()?;
        Ok(body)
    }
}

/// Completes `ConfigBody`'s schema in the document with what its attributes cannot hold: the
/// patterns above, and what `ConfigInput::new` requires of the body as a whole — a
/// `postback_url`, a `chargeback_url` or both, present and not null (`anyOf`).
pub(super) fn complete_schema(body: &mut Object) {
    for (field, pattern) in [
        ("postback_url", URL_TEMPLATE_PATTERN),
        ("chargeback_url", URL_TEMPLATE_PATTERN),
        ("signing_secret", SIGNING_SECRET_PATTERN),
    ] {
        if let Some(RefOr::T(Schema::Object(property))) = body.properties.get_mut(field) {
            property.pattern = Some(pattern.to_string());
        }
    }
    let present = |field: &str| {
        json!({"required": [field], "properties": {field: {"type": "string"}},
               "additionalProperties": true})
    };
    body.extensions.get_or_insert_with(Default::default).insert(
        "anyOf".into(),
        json!([present("postback_url"), present("chargeback_url")]),
    );
}

impl ConfigBody {
    /// The config to create or replace. `signing_secret` is write-only: absent keeps the
    /// stored secret, `null` removes it, a `whsec_<base64>` string sets it (see
    /// [`ConfigInput::new`]).
    pub fn into_input(self, policy: &AddressPolicy) -> Result<ConfigInput, AppError> {
        let call = CallFields {
            postback_request: self.postback_request,
            chargeback_request: self.chargeback_request,
            headers: self.headers,
            auth: self.auth,
            proxy_url: self.proxy_url,
            client_tls: self.client_tls,
        }
        .into_input()?;
        ConfigInput::new(
            self.name,
            self.postback_url,
            self.chargeback_url,
            self.max_retries,
            self.is_active.unwrap_or(true),
            self.signing_secret,
            self.signing_secret_grace,
            call,
            PartnerSettingsInput {
                max_per_second: self.max_per_second,
                retry_base_delay: self.retry_base_delay,
                retry_max_delay: self.retry_max_delay,
                circuit_failure_threshold: self.circuit_failure_threshold,
            },
            policy,
        )
        .map(|input| input.ordered(self.ordering.unwrap_or_default()))
    }
}

fn config_id_path(raw: &str) -> Result<i64, ApiError> {
    raw.parse().map_err(|_| {
        ApiError::malformed(
            Some("id"),
            format!("{raw:?} is not a config id (an integer)"),
        )
    })
}

#[utoipa::path(post, path = "/webhook-configs", tag = "configs",
    request_body(content = ConfigBody, example = json!({"name": "acme",
        "postback_url": "https://partner.example/credit?user={user_id}&amount={value}",
        "chargeback_url": "https://partner.example/debit?user={user_id}&amount={value}", "max_retries": 3, "is_active": true,
        "ordering": "credit_before_debit"})),
    responses(
        (status = 201, description = "Created", body = ConfigView),
        (status = 400, description = "Malformed JSON", body = ErrorBody),
        (status = 409, description = "A config with this name exists already", body = ErrorBody),
        (status = 413, description = too_large(BODY_LIMIT), body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn create_config(
    state: State,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let body: ConfigBody = read_body(&request, payload).await?;
    let input = body.into_input(&state.policy)?;
    let config = configs::create(&state.pool, input, &state.keys).await?;
    Ok(HttpResponse::Created().json(ConfigView::from(config)))
}

/// Every config, active or not, in one page (`next_cursor` is always null).
#[utoipa::path(get, path = "/webhook-configs", tag = "configs",
    responses((status = 200, description = "Every config", body = Page<ConfigView>), ServerErrors))]
pub(super) async fn list_configs(state: State) -> Reply {
    let items: Vec<ConfigView> = configs::list(&state.pool)
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    Ok(HttpResponse::Ok().json(Page {
        items,
        next_cursor: None,
    }))
}

#[utoipa::path(get, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn get_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::get(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Replaces every field: one left out takes its default.
#[utoipa::path(put, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    request_body(content = ConfigBody, example = json!({"name": "acme",
        "postback_url": "https://partner.example/credit?user={user_id}&amount={value}",
        "chargeback_url": "https://partner.example/debit?user={user_id}&amount={value}", "max_retries": 3, "is_active": true,
        "ordering": "credit_before_debit"})),
    responses(
        (status = 200, description = "The config as replaced", body = ConfigView),
        (status = 400, description = "`id` is not an integer, or malformed JSON", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        (status = 409, description = "Another config has this name", body = ErrorBody),
        (status = 413, description = too_large(BODY_LIMIT), body = ErrorBody),
        (status = 415, description = "Body not JSON (`Content-Type: application/json`)", body = ErrorBody),
        (status = 422, description = "A field is invalid, missing or unknown; `field` names it", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn replace_config(
    state: State,
    id: web::Path<String>,
    request: HttpRequest,
    payload: web::Payload,
) -> Reply {
    let id = config_id_path(&id)?;
    let body: ConfigBody = read_body(&request, payload).await?;
    let input = body.into_input(&state.policy)?;
    let config = configs::replace(&state.pool, id, input, &state.keys).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Deactivates a config: it takes no new events; entries already queued are still delivered.
#[utoipa::path(delete, path = "/webhook-configs/{id}", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config, now inactive", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn deactivate_config(state: State, id: web::Path<String>) -> Reply {
    let config = configs::deactivate(&state.pool, config_id_path(&id)?).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Pauses a partner: its pending events are held (they stay `pending`, spend no attempt) and
/// new ones are accepted held, until it is resumed. Also for a tripped partner, which then waits
/// for the operator instead of its probes.
#[utoipa::path(post, path = "/webhook-configs/{id}/pause", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config, its partner now paused", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        (status = 409, description = "The partner is paused already", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn pause_config(state: State, id: web::Path<String>) -> Reply {
    let id = config_id_path(&id)?;
    let config =
        configs::control(&state.pool, id, Control::Pause, &state.metrics, &state.log).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

/// Resumes a paused or tripped partner: it becomes `active`, its run of failures is reset, and
/// its held events are released, due at once (or at their scheduled retry).
#[utoipa::path(post, path = "/webhook-configs/{id}/resume", tag = "configs",
    params(("id" = i64, Path, description = "Config id")),
    responses(
        (status = 200, description = "The config, its partner now active", body = ConfigView),
        (status = 400, description = "`id` is not an integer", body = ErrorBody),
        (status = 404, description = "No config has this id", body = ErrorBody),
        (status = 409, description = "The partner is active already", body = ErrorBody),
        ServerErrors,
    ))]
pub(super) async fn resume_config(state: State, id: web::Path<String>) -> Reply {
    let id = config_id_path(&id)?;
    let config =
        configs::control(&state.pool, id, Control::Resume, &state.metrics, &state.log).await?;
    Ok(HttpResponse::Ok().json(ConfigView::from(config)))
}

#[cfg(test)]
mod tests {
    use base64::engine::general_purpose::STANDARD;
    use base64::Engine;
    use proptest::prelude::*;
    use regex_lite::Regex;

    use super::*;
    use crate::domain::partner_delay;
    use crate::domain::signing::SigningKey;
    use crate::domain::url_template::UrlTemplate;

    fn matches(pattern: &str, text: &str) -> bool {
        Regex::new(pattern).unwrap().is_match(text)
    }

    /// The pattern without its anchors, for proptest to generate from.
    fn unanchored(pattern: &str) -> &str {
        &pattern[1..pattern.len() - 1]
    }

    proptest! {
        #[test]
        fn the_secret_pattern_takes_the_keys_from_secret_takes(
            key in proptest::collection::vec(any::<u8>(), 20..70),
            padding in 0usize..3,
        ) {
            let padded = STANDARD.encode(&key);
            let bare = padded.trim_end_matches('=');
            let written = format!("whsec_{bare}{}", &padded[bare.len()..][..padding.min(padded.len() - bare.len())]);
            prop_assert_eq!(
                matches(SIGNING_SECRET_PATTERN, &written),
                SigningKey::from_secret(&written).is_ok(),
                "{}", written
            );
        }

        #[test]
        fn the_secret_pattern_and_from_secret_agree_on_any_text(
            written in "whsec_[A-Za-z0-9+/]{28,92}={0,3}",
        ) {
            prop_assert_eq!(
                matches(SIGNING_SECRET_PATTERN, &written),
                SigningKey::from_secret(&written).is_ok(),
                "{}", written
            );
        }

        #[test]
        fn every_template_the_pattern_takes_the_api_takes(
            template in unanchored(URL_TEMPLATE_PATTERN),
        ) {
            prop_assume!(template.len() <= 2048);
            prop_assert!(matches(URL_TEMPLATE_PATTERN, &template));
            prop_assert!(UrlTemplate::parse(&template).is_ok(), "{}", template);
        }
    }

    #[test]
    fn the_delay_fields_document_the_rule_that_reads_them() {
        let schema = serde_json::to_value(<ConfigBody as utoipa::PartialSchema>::schema()).unwrap();
        for field in ["retry_base_delay", "retry_max_delay"] {
            let pattern = schema["properties"][field]["pattern"].as_str();
            assert_eq!(pattern, Some(partner_delay::PATTERN), "{field}: {schema}");
        }
    }

    proptest! {
        #[test]
        fn every_delay_the_pattern_takes_the_api_takes(text in unanchored(partner_delay::PATTERN)) {
            prop_assert!(matches(partner_delay::PATTERN, &text));
            prop_assert!(partner_delay::parse(&text).is_ok(), "{}", text);
        }
    }

    #[test]
    fn the_template_pattern_refuses_what_the_api_refuses() {
        for refused in [
            "ftp://partner.example/x",
            "https://",
            "https://{host}/x",
            "https://partner.example/{unclosed",
            "https://partner.example/x}",
            "https://partner.example/{bad name}",
            "https://partner.example:65536/x",
            "https://partner.example/x#{frag}",
            " https://partner.example/x",
            "https://partner.example/x\n",
        ] {
            assert!(!matches(URL_TEMPLATE_PATTERN, refused), "{refused}");
            assert!(UrlTemplate::parse(refused).is_err(), "{refused}");
        }
        assert!(matches(
            URL_TEMPLATE_PATTERN,
            "https://partner.example/credit?user={user_id}&amount={value}"
        ));
    }
}

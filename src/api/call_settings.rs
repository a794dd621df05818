//! The call settings of `/webhook-configs` bodies and views (docs/api.md, "Partner
//! requests"): read from JSON into the application's input, and shown with every secret as
//! `***`.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::application::call_settings::{
    AuthInput, CallInput, Change, HeaderInput, HeaderInputValue, SecretInput, TlsInput,
    SHOWN_SECRET,
};
use crate::application::AppError;
use crate::domain::call_settings::{Auth, CallSettings, HeaderValue};
use crate::domain::request_template::{BodyFormat, RequestSpec};

/// How a partner is called for one event type besides its URL.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PartnerRequest)]
pub struct RequestDoc {
    /// `GET` (the default when the request is absent), `POST` or `PUT`.
    #[schema(example = "POST", pattern = "^(GET|POST|PUT)$")]
    pub method: String,
    /// The body of a `POST` or `PUT`; a `GET` has none (null counts as none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<BodyDoc>,
}

/// A body template.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = PartnerRequestBody)]
pub struct BodyDoc {
    /// `json`: every string of `template` is filled (a string that is exactly one placeholder
    /// takes the parameter's value with its JSON type); `form`: `template` is an object of
    /// field names and value templates, sent `application/x-www-form-urlencoded`.
    #[schema(pattern = "^(json|form)$", example = "json")]
    pub format: String,
    /// The template, `{name}` placeholders inside its strings: any JSON for `json`, an object
    /// of strings for `form`.
    #[schema(value_type = Value, example = json!({"click": "{click_id}", "amount": "{amount}"}))]
    pub template: Value,
}

/// A header every call carries. Written with `secret: true`, its value is stored sealed, sent
/// as written (no placeholders) and shown as `***`; sent back as `***` (or left out) it keeps
/// the stored value.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct HeaderDoc {
    #[schema(example = "X-Api-Key", pattern = "^[!#$%&'*+.^_`|~0-9A-Za-z-]{1,256}$")]
    pub name: String,
    /// A template (`{name}` placeholders) unless secret.
    #[schema(max_length = 4096)]
    pub value: Option<String>,
    #[serde(default)]
    pub secret: bool,
}

/// `Authorization` for every call: `basic` with `username` and `password`, or `bearer` with
/// `token`. The secret part is shown as `***`; sent back as `***` (or left out) it keeps the
/// stored one.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum AuthDoc {
    Basic {
        username: String,
        password: Option<String>,
    },
    Bearer {
        token: Option<String>,
    },
}

/// TLS of the partner's own, in PEM: a client certificate with its private key for partners
/// that require mutual TLS (the key is shown as `***` and kept when sent back so), and the CA
/// that signed the partner's certificate when the system does not trust it. Either, or both.
#[derive(Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsDoc {
    pub certificate: Option<String>,
    pub private_key: Option<String>,
    pub ca_certificate: Option<String>,
}

/// The call settings a body may hold, each read from its JSON.
pub struct CallFields {
    pub postback_request: Option<Value>,
    pub chargeback_request: Option<Value>,
    pub headers: Option<Option<Value>>,
    pub auth: Option<Option<Value>>,
    pub proxy_url: Option<Option<Value>>,
    pub client_tls: Option<Option<Value>>,
}

fn parsed<T: for<'de> Deserialize<'de>>(field: &str, value: Value) -> Result<T, AppError> {
    serde_json::from_value(value).map_err(|e| AppError::invalid(field, e))
}

fn change<T, D: for<'de> Deserialize<'de>>(
    field: &str,
    value: Option<Option<Value>>,
    into: impl FnOnce(D) -> Result<T, AppError>,
) -> Result<Change<T>, AppError> {
    Ok(Change::from_field(
        value
            .map(|v| v.map(|v| into(parsed::<D>(field, v)?)).transpose())
            .transpose()?,
    ))
}

fn header_input(i: usize, header: HeaderDoc) -> Result<HeaderInput, AppError> {
    let value = match (header.secret, header.value) {
        (true, value) => HeaderInputValue::Secret(SecretInput::read(value)),
        (false, Some(template)) => HeaderInputValue::Template(template),
        (false, None) => {
            return Err(AppError::invalid(
                format!("headers[{i}]"),
                "a header that is not secret needs a value",
            ))
        }
    };
    Ok(HeaderInput {
        name: header.name,
        value,
    })
}

fn tls_input(tls: ClientTlsDoc) -> Result<TlsInput, AppError> {
    let identity = match (tls.certificate, tls.private_key) {
        (Some(certificate), key) => Some((certificate, SecretInput::read(key))),
        (None, None) => None,
        (None, Some(_)) => {
            return Err(AppError::invalid(
                "client_tls.private_key",
                "goes with a certificate",
            ))
        }
    };
    Ok(TlsInput {
        identity,
        ca_certificate: tls.ca_certificate,
    })
}

impl CallFields {
    pub fn into_input(self) -> Result<CallInput, AppError> {
        let request =
            |field: &str, v: Option<Value>| v.map(|v| parsed::<RequestSpec>(field, v)).transpose();
        Ok(CallInput {
            postback_request: request("postback_request", self.postback_request)?,
            chargeback_request: request("chargeback_request", self.chargeback_request)?,
            headers: change("headers", self.headers, |headers: Vec<HeaderDoc>| {
                headers
                    .into_iter()
                    .enumerate()
                    .map(|(i, h)| header_input(i, h))
                    .collect()
            })?,
            auth: change("auth", self.auth, |auth: AuthDoc| {
                Ok(match auth {
                    AuthDoc::Basic { username, password } => AuthInput::Basic {
                        username,
                        password: SecretInput::read(password),
                    },
                    AuthDoc::Bearer { token } => AuthInput::Bearer {
                        token: SecretInput::read(token),
                    },
                })
            })?,
            proxy_url: change("proxy_url", self.proxy_url, |url: String| Ok(url))?,
            client_tls: change("client_tls", self.client_tls, tls_input)?,
        })
    }
}

impl From<RequestSpec> for RequestDoc {
    fn from(spec: RequestSpec) -> Self {
        Self {
            method: spec.method.as_str().to_string(),
            body: spec.body.map(|b| BodyDoc {
                format: match b.format {
                    BodyFormat::Json => "json",
                    BodyFormat::Form => "form",
                }
                .to_string(),
                template: b.template,
            }),
        }
    }
}

/// A config's call settings as shown: every secret as `***`.
#[derive(Serialize)]
pub struct CallView {
    pub postback_request: Option<RequestSpec>,
    pub chargeback_request: Option<RequestSpec>,
    pub headers: Vec<HeaderDoc>,
    pub auth: Option<AuthDoc>,
    pub proxy_url: Option<String>,
    pub client_tls: Option<ClientTlsDoc>,
    pub signing_previous_until: Option<DateTime<Utc>>,
}

impl CallView {
    pub fn new(settings: CallSettings, signing_previous_until: Option<DateTime<Utc>>) -> Self {
        let shown = || Some(SHOWN_SECRET.to_string());
        Self {
            postback_request: settings.postback_request,
            chargeback_request: settings.chargeback_request,
            headers: settings
                .headers
                .into_iter()
                .map(|h| match h.value {
                    HeaderValue::Value(v) => HeaderDoc {
                        name: h.name,
                        value: Some(v),
                        secret: false,
                    },
                    HeaderValue::Secret(_) => HeaderDoc {
                        name: h.name,
                        value: shown(),
                        secret: true,
                    },
                })
                .collect(),
            auth: settings.auth.map(|auth| match auth {
                Auth::Basic { username, .. } => AuthDoc::Basic {
                    username,
                    password: shown(),
                },
                Auth::Bearer { .. } => AuthDoc::Bearer { token: shown() },
            }),
            proxy_url: settings.proxy.map(|p| {
                let mut url = p.url;
                if p.password.is_some() {
                    if let Ok(mut parsed) = url::Url::parse(&url) {
                        let _ = parsed.set_password(Some(SHOWN_SECRET));
                        url = parsed.to_string();
                    }
                }
                url
            }),
            client_tls: settings.client_tls.map(|t| ClientTlsDoc {
                private_key: t.identity.as_ref().and_then(|_| shown()),
                certificate: t.identity.map(|i| i.certificate),
                ca_certificate: t.ca_certificate,
            }),
            signing_previous_until,
        }
    }
}

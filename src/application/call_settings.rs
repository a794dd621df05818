//! A config's call settings as submitted (docs/api.md, "Partner requests"): checked without
//! the database when the body is read, then merged with what is stored and sealed when the
//! config is written.
//!
//! Settings that hold secrets keep what is stored unless told otherwise, as the signing secret
//! does: `headers`, `auth`, `proxy_url` and `client_tls` absent from a body keep the stored
//! value, `null` removes it, and a secret shown as `***` (or left out) inside a value keeps the
//! stored secret it stands for. So a body read from the API, which never shows a secret, can be
//! written back without losing any.

use std::time::Duration;

use chrono::{DateTime, Utc};

use crate::config::Secret;
use crate::domain::call_settings::{
    Auth, CallSettings, ClientTls, Header, HeaderValue, Identity, Proxy, Sealed,
};
use crate::domain::header_template::{
    check_distinct, check_header_name, check_secret_header, HeaderTemplate,
};
use crate::domain::outbound::proxy_url;
use crate::domain::request_template::{RequestSpec, RequestTemplate};
use crate::domain::signing::SigningKey;
use crate::sealing::Keys;
use crate::store::models::SigningSecrets;

use super::AppError;

/// How a secret is shown, and the value that keeps a stored one when written back.
pub const SHOWN_SECRET: &str = "***";

/// A secret as submitted: left out or sent back as `***`, it keeps the stored one.
#[derive(Clone, Debug)]
pub enum SecretInput {
    Keep,
    New(Secret),
}

impl SecretInput {
    pub fn read(value: Option<String>) -> Self {
        match value {
            Some(value) if value != SHOWN_SECRET => SecretInput::New(Secret::new(value)),
            _ => SecretInput::Keep,
        }
    }
}

/// A header as submitted.
#[derive(Clone, Debug)]
pub struct HeaderInput {
    pub name: String,
    pub value: HeaderInputValue,
}

#[derive(Clone, Debug)]
pub enum HeaderInputValue {
    /// Filled at submit from the event's parameters.
    Template(String),
    /// Sent as written; kept, it is the stored secret of the same name.
    Secret(SecretInput),
}

#[derive(Clone, Debug)]
pub enum AuthInput {
    Basic {
        username: String,
        password: SecretInput,
    },
    Bearer {
        token: SecretInput,
    },
}

#[derive(Clone, Debug)]
pub struct TlsInput {
    /// A client certificate (PEM) and its private key.
    pub identity: Option<(String, SecretInput)>,
    pub ca_certificate: Option<String>,
}

/// What a write does to a setting that holds secrets.
#[derive(Clone, Debug, Default)]
pub enum Change<T> {
    #[default]
    Keep,
    Remove,
    Set(T),
}

impl<T> Change<T> {
    /// `None` (absent) keeps, `Some(None)` (null) removes, `Some(Some(v))` sets.
    pub fn from_field(field: Option<Option<T>>) -> Self {
        match field {
            None => Change::Keep,
            Some(None) => Change::Remove,
            Some(Some(v)) => Change::Set(v),
        }
    }
}

/// What a write does to the signing secret.
#[derive(Clone, Debug, Default)]
pub enum SigningChange {
    #[default]
    Keep,
    Remove,
    /// A new secret; with a grace period, the one it replaces signs alongside it until then.
    Set {
        key: SigningKey,
        grace: Option<Duration>,
    },
}

/// Call settings as submitted, checked as far as the body alone allows.
#[derive(Clone, Debug, Default)]
pub struct CallInput {
    pub postback_request: Option<RequestSpec>,
    pub chargeback_request: Option<RequestSpec>,
    pub headers: Change<Vec<HeaderInput>>,
    pub auth: Change<AuthInput>,
    pub proxy_url: Change<String>,
    pub client_tls: Change<TlsInput>,
}

impl CallInput {
    /// Checks everything that does not need the database: templates parse, header names are
    /// allowed, a proxy is an http(s) URL, certificates and keys are PEM that TLS accepts.
    pub fn check(&self) -> Result<(), AppError> {
        for (field, spec) in [
            ("postback_request", &self.postback_request),
            ("chargeback_request", &self.chargeback_request),
        ] {
            if let Some(spec) = spec {
                RequestTemplate::parse(spec).map_err(|e| AppError::invalid(field, e))?;
            }
        }
        if let Change::Set(headers) = &self.headers {
            check_distinct(headers.iter().map(|h| h.name.as_str()))
                .map_err(|e| AppError::invalid("headers", e))?;
            for (i, header) in headers.iter().enumerate() {
                let field = format!("headers[{i}]");
                let checked = match &header.value {
                    HeaderInputValue::Secret(SecretInput::New(v)) => {
                        check_secret_header(&header.name, v.expose())
                    }
                    HeaderInputValue::Secret(SecretInput::Keep) => check_header_name(&header.name),
                    HeaderInputValue::Template(v) => {
                        HeaderTemplate::parse(&header.name, v).map(|_| ())
                    }
                };
                checked.map_err(|e| AppError::invalid(field, e))?;
            }
        }
        if let Change::Set(AuthInput::Basic { username, .. }) = &self.auth {
            if username.is_empty()
                || username.contains(':')
                || username.chars().any(char::is_control)
            {
                return Err(AppError::invalid(
                    "auth.username",
                    "must be non-empty text without ':' or control characters",
                ));
            }
        }
        if let Change::Set(url) = &self.proxy_url {
            proxy_parts(url)?;
        }
        if let Change::Set(tls) = &self.client_tls {
            check_tls(tls)?;
        }
        Ok(())
    }

    /// The settings to store: this input merged with `stored` (`None` on create), every new
    /// secret sealed with `keys`. Refused when a new secret is given and no key is.
    pub fn resolve(
        self,
        stored: Option<&CallSettings>,
        keys: &Keys,
    ) -> Result<CallSettings, AppError> {
        let empty = CallSettings::default();
        let stored = stored.unwrap_or(&empty);
        let seal = |field: &str, secret: &Secret| -> Result<Sealed, AppError> {
            keys.seal(secret.expose())
                .map(Sealed)
                .map_err(|e| AppError::invalid(field, e))
        };
        let headers = match self.headers {
            Change::Keep => stored.headers.clone(),
            Change::Remove => Vec::new(),
            Change::Set(headers) => headers
                .into_iter()
                .enumerate()
                .map(|(i, h)| resolve_header(i, h, &stored.headers, &seal))
                .collect::<Result<_, _>>()?,
        };
        let auth = match self.auth {
            Change::Keep => stored.auth.clone(),
            Change::Remove => None,
            Change::Set(auth) => Some(resolve_auth(auth, stored.auth.as_ref(), &seal)?),
        };
        let proxy = match self.proxy_url {
            Change::Keep => stored.proxy.clone(),
            Change::Remove => None,
            Change::Set(url) => Some(resolve_proxy(&url, stored.proxy.as_ref(), &seal)?),
        };
        let client_tls = match self.client_tls {
            Change::Keep => stored.client_tls.clone(),
            Change::Remove => None,
            Change::Set(tls) => Some(resolve_tls(tls, stored.client_tls.as_ref(), &seal)?),
        };
        Ok(CallSettings {
            postback_request: self.postback_request,
            chargeback_request: self.chargeback_request,
            headers,
            auth,
            proxy,
            client_tls,
        })
    }
}

fn resolve_header(
    i: usize,
    header: HeaderInput,
    stored: &[Header],
    seal: &dyn Fn(&str, &Secret) -> Result<Sealed, AppError>,
) -> Result<Header, AppError> {
    let field = format!("headers[{i}].value");
    let value = match &header.value {
        HeaderInputValue::Template(v) => HeaderValue::Value(v.clone()),
        HeaderInputValue::Secret(SecretInput::Keep) => stored
            .iter()
            .find(|s| {
                s.name.eq_ignore_ascii_case(&header.name)
                    && matches!(s.value, HeaderValue::Secret(_))
            })
            .map(|s| s.value.clone())
            .ok_or_else(|| AppError::invalid(&field, "a new secret header needs its value"))?,
        HeaderInputValue::Secret(SecretInput::New(v)) => HeaderValue::Secret(seal(&field, v)?),
    };
    Ok(Header {
        name: header.name,
        value,
    })
}

fn resolve_auth(
    auth: AuthInput,
    stored: Option<&Auth>,
    seal: &dyn Fn(&str, &Secret) -> Result<Sealed, AppError>,
) -> Result<Auth, AppError> {
    Ok(match auth {
        AuthInput::Basic { username, password } => {
            let password = match (&password, stored) {
                (SecretInput::New(p), _) => seal("auth.password", p)?,
                (SecretInput::Keep, Some(Auth::Basic { password, .. })) => password.clone(),
                (SecretInput::Keep, _) => {
                    return Err(AppError::invalid(
                        "auth.password",
                        "new Basic auth needs its password",
                    ))
                }
            };
            Auth::Basic { username, password }
        }
        AuthInput::Bearer { token } => {
            let token = match (&token, stored) {
                (SecretInput::New(t), _) => seal("auth.token", t)?,
                (SecretInput::Keep, Some(Auth::Bearer { token })) => token.clone(),
                (SecretInput::Keep, _) => {
                    return Err(AppError::invalid(
                        "auth.token",
                        "new bearer auth needs its token",
                    ))
                }
            };
            Auth::Bearer { token }
        }
    })
}

/// A client certificate goes with its key, and TLS accepts both.
fn check_tls(tls: &TlsInput) -> Result<(), AppError> {
    if tls.identity.is_none() && tls.ca_certificate.is_none() {
        return Err(AppError::invalid(
            "client_tls",
            "needs a certificate (with its private_key), a ca_certificate or both",
        ));
    }
    let certificate = tls.identity.as_ref().map(|(c, _)| c.as_str());
    crate::sender::check_certificates(certificate, tls.ca_certificate.as_deref())
        .map_err(|e| AppError::invalid("client_tls", e))?;
    if let Some((certificate, SecretInput::New(key))) = &tls.identity {
        crate::sender::check_identity(certificate.as_bytes(), key.expose().as_bytes())
            .map_err(|e| AppError::invalid("client_tls.private_key", e))?;
    }
    Ok(())
}

fn resolve_tls(
    tls: TlsInput,
    stored: Option<&ClientTls>,
    seal: &dyn Fn(&str, &Secret) -> Result<Sealed, AppError>,
) -> Result<ClientTls, AppError> {
    let identity = match tls.identity {
        None => None,
        Some((certificate, key)) => {
            let private_key = match &key {
                SecretInput::New(key) => seal("client_tls.private_key", key)?,
                SecretInput::Keep => stored
                    .and_then(|t| t.identity.as_ref())
                    .map(|i| i.private_key.clone())
                    .ok_or_else(|| {
                        AppError::invalid(
                            "client_tls.private_key",
                            "a new certificate needs its private key",
                        )
                    })?,
            };
            Some(Identity {
                certificate,
                private_key,
            })
        }
    };
    Ok(ClientTls {
        identity,
        ca_certificate: tls.ca_certificate,
    })
}

/// A proxy URL split into the URL without its password, and the password.
fn proxy_parts(text: &str) -> Result<(url::Url, Option<String>), AppError> {
    let mut url = proxy_url(text).map_err(|e| AppError::invalid("proxy_url", e))?;
    let password = url.password().map(|p| {
        percent_encoding::percent_decode_str(p)
            .decode_utf8_lossy()
            .into_owned()
    });
    let _ = url.set_password(None);
    Ok((url, password))
}

fn resolve_proxy(
    text: &str,
    stored: Option<&Proxy>,
    seal: &dyn Fn(&str, &Secret) -> Result<Sealed, AppError>,
) -> Result<Proxy, AppError> {
    let (url, password) = proxy_parts(text)?;
    let password = match password {
        None => None,
        Some(p) if p == SHOWN_SECRET => {
            Some(stored.and_then(|s| s.password.clone()).ok_or_else(|| {
                AppError::invalid("proxy_url", "a new proxy password must be given")
            })?)
        }
        Some(p) => Some(seal("proxy_url", &Secret::new(p))?),
    };
    Ok(Proxy {
        url: url.to_string(),
        password,
    })
}

/// The signing secrets to store after `change`, from those stored (`None` on create), at `now`.
pub fn resolve_signing(
    change: SigningChange,
    stored: Option<&SigningSecrets>,
    keys: &Keys,
    now: DateTime<Utc>,
) -> Result<SigningSecrets, AppError> {
    let stored = stored.cloned().unwrap_or_default();
    Ok(match change {
        SigningChange::Keep => stored,
        SigningChange::Remove => SigningSecrets::default(),
        SigningChange::Set { key, grace } => {
            let sealed = keys
                .seal(&key.to_secret())
                .map_err(|e| AppError::invalid("signing_secret", e))?;
            let (previous, until) = match (grace, stored.signing_secret) {
                (Some(grace), Some(current)) => {
                    let grace = chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
                    (Some(current), Some(now + grace))
                }
                _ => (None, None),
            };
            SigningSecrets {
                signing_secret: Some(sealed),
                previous_signing_secret: previous,
                previous_signing_secret_until: until,
            }
        }
    })
}

/// The grace period of a rotation: a duration from 1s to 30 days.
pub fn parse_grace(text: &str) -> Result<Duration, AppError> {
    const LONGEST: Duration = Duration::from_secs(30 * 24 * 3600);
    let grace = humantime::parse_duration(text).map_err(|_| {
        AppError::invalid("signing_secret_grace", "must be a duration like 24h or 7d")
    })?;
    if grace < Duration::from_secs(1) || grace > LONGEST {
        return Err(AppError::invalid(
            "signing_secret_grace",
            "must be from 1s to 30d",
        ));
    }
    Ok(grace)
}

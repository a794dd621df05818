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
use crate::domain::request_template::{RequestSpec, RequestTemplate};
use crate::domain::signing::SigningKey;
use crate::sealing::Keys;
use crate::store::models::SigningSecrets;

use super::AppError;

/// How a secret is shown, and the value that keeps a stored one when written back.
pub const SHOWN_SECRET: &str = "***";

/// A header as submitted.
#[derive(Clone, Debug)]
pub struct HeaderInput {
    pub name: String,
    /// `None` (or `***` for a secret): keep the stored secret of the same name.
    pub value: Option<Secret>,
    pub secret: bool,
}

#[derive(Clone, Debug)]
pub enum AuthInput {
    Basic {
        username: String,
        password: Option<Secret>,
    },
    Bearer {
        token: Option<Secret>,
    },
}

#[derive(Clone, Debug)]
pub struct TlsInput {
    pub certificate: Option<String>,
    /// With `certificate`; `None` (or `***`) keeps the stored key.
    pub private_key: Option<Secret>,
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

fn kept(value: &Option<Secret>) -> bool {
    value.as_ref().is_none_or(|v| v.expose() == SHOWN_SECRET)
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
                let checked = match (&header.value, header.secret) {
                    (Some(v), true) if !kept(&header.value) => {
                        check_secret_header(&header.name, v.expose())
                    }
                    (_, true) => check_header_name(&header.name),
                    (Some(v), false) => HeaderTemplate::parse(&header.name, v.expose()).map(|_| ()),
                    (None, false) => {
                        return Err(AppError::invalid(
                            field,
                            "a header that is not secret needs a value",
                        ))
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
    let value = match (header.secret, &header.value) {
        (false, Some(v)) => HeaderValue::Value(v.expose().to_string()),
        (false, None) => unreachable!("checked: a header that is not secret has a value"),
        (true, v) if kept(v) => stored
            .iter()
            .find(|s| {
                s.name.eq_ignore_ascii_case(&header.name)
                    && matches!(s.value, HeaderValue::Secret(_))
            })
            .map(|s| s.value.clone())
            .ok_or_else(|| AppError::invalid(&field, "a new secret header needs its value"))?,
        (true, Some(v)) => HeaderValue::Secret(seal(&field, v)?),
        (true, None) => unreachable!("kept covers None"),
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
                (p, Some(Auth::Basic { password, .. })) if kept(p) => password.clone(),
                (p, _) if kept(p) => {
                    return Err(AppError::invalid(
                        "auth.password",
                        "new Basic auth needs its password",
                    ))
                }
                (Some(p), _) => seal("auth.password", p)?,
                (None, _) => unreachable!("kept covers None"),
            };
            Auth::Basic { username, password }
        }
        AuthInput::Bearer { token } => {
            let token = match (&token, stored) {
                (t, Some(Auth::Bearer { token })) if kept(t) => token.clone(),
                (t, _) if kept(t) => {
                    return Err(AppError::invalid(
                        "auth.token",
                        "new bearer auth needs its token",
                    ))
                }
                (Some(t), _) => seal("auth.token", t)?,
                (None, _) => unreachable!("kept covers None"),
            };
            Auth::Bearer { token }
        }
    })
}

/// A client certificate goes with its key, and TLS accepts both.
fn check_tls(tls: &TlsInput) -> Result<(), AppError> {
    if tls.certificate.is_none() && tls.ca_certificate.is_none() {
        return Err(AppError::invalid(
            "client_tls",
            "needs a certificate (with its private_key), a ca_certificate or both",
        ));
    }
    if tls.certificate.is_none() && tls.private_key.is_some() {
        return Err(AppError::invalid(
            "client_tls.private_key",
            "goes with a certificate",
        ));
    }
    crate::sender::check_certificates(tls.certificate.as_deref(), tls.ca_certificate.as_deref())
        .map_err(|e| AppError::invalid("client_tls", e))?;
    if let (Some(certificate), Some(key)) = (&tls.certificate, &tls.private_key) {
        if !kept(&tls.private_key) {
            crate::sender::check_identity(certificate.as_bytes(), key.expose().as_bytes())
                .map_err(|e| AppError::invalid("client_tls.private_key", e))?;
        }
    }
    Ok(())
}

fn resolve_tls(
    tls: TlsInput,
    stored: Option<&ClientTls>,
    seal: &dyn Fn(&str, &Secret) -> Result<Sealed, AppError>,
) -> Result<ClientTls, AppError> {
    let identity = match tls.certificate {
        None => None,
        Some(certificate) => {
            let private_key = match &tls.private_key {
                key if kept(key) => stored
                    .and_then(|t| t.identity.as_ref())
                    .map(|i| i.private_key.clone())
                    .ok_or_else(|| {
                        AppError::invalid(
                            "client_tls.private_key",
                            "a new certificate needs its private key",
                        )
                    })?,
                Some(key) => seal("client_tls.private_key", key)?,
                None => unreachable!("kept covers None"),
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
    let invalid = |m: &str| AppError::invalid("proxy_url", m);
    let mut url =
        url::Url::parse(text).map_err(|_| invalid("must be an http:// or https:// URL"))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none_or(str::is_empty) {
        return Err(invalid("must be an http:// or https:// URL with a host"));
    }
    if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
        return Err(invalid(
            "must be scheme://[user:password@]host[:port], nothing after",
        ));
    }
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

//! How one partner is called, built once per version of its config: its secrets opened, its
//! own client when it has a proxy or a client certificate, its signing keys.

use chrono::{DateTime, Utc};
use reqwest::header::{HeaderName, HeaderValue as HttpValue, AUTHORIZATION};

use std::sync::Arc;

use super::client::{client_builder, install_crypto_provider};
use crate::config::{DeliverySettings, Secret};
use crate::domain::call_settings::{Auth, CallSettings, HeaderValue, Sealed};
use crate::domain::outbound::AddressPolicy;
use crate::domain::signing::SigningKey;
use crate::sealing::Keys;
use crate::store::models::SigningSecrets;

/// What every call to one partner carries, at one version of its config. `Debug` shows no
/// secret.
pub struct PartnerCall {
    /// The version (`xmin`) of the config this was built from.
    pub version: i64,
    /// The partner's own client, and whether it goes through a proxy.
    client: Option<(reqwest::Client, bool)>,
    headers: Vec<(HeaderName, HttpValue)>,
    /// The signing key, and one a rotation replaced with the end of its grace period.
    signing: Option<SigningKey>,
    previous: Option<(SigningKey, DateTime<Utc>)>,
    /// Why no call can be made with this config (a secret that does not open, a certificate
    /// TLS refuses): each call then fails with this, as a config error, without being sent.
    unusable: Option<String>,
}

impl std::fmt::Debug for PartnerCall {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PartnerCall")
            .field("version", &self.version)
            .field("own_client", &self.client.is_some())
            .field("headers", &self.headers.len())
            .field("signed", &self.signing.is_some())
            .field("unusable", &self.unusable)
            .finish()
    }
}

impl PartnerCall {
    /// A partner called with the sender's own client and nothing of its own: what a config
    /// without settings, or a test, uses.
    pub fn plain(version: i64) -> Self {
        Self {
            version,
            client: None,
            headers: Vec::new(),
            signing: None,
            previous: None,
            unusable: None,
        }
    }

    /// A partner none of whose calls can be made, and why.
    pub fn unusable(version: i64, why: String) -> Self {
        Self {
            unusable: Some(why),
            ..Self::plain(version)
        }
    }

    /// Why no call can be made with this config, if none can.
    pub fn unusable_reason(&self) -> Option<&str> {
        self.unusable.as_deref()
    }

    /// The partner's own client, when it has a proxy or TLS settings of its own, and whether
    /// that client goes through a proxy.
    pub(super) fn client(&self) -> Option<(&reqwest::Client, bool)> {
        self.client
            .as_ref()
            .map(|(client, proxied)| (client, *proxied))
    }

    pub(super) fn add_headers(
        &self,
        mut request: reqwest::RequestBuilder,
    ) -> reqwest::RequestBuilder {
        for (name, value) in &self.headers {
            request = request.header(name, value);
        }
        request
    }

    /// The `webhook-signature` value: one signature per key that signs now, space-separated,
    /// as Standard Webhooks allows; `None` when the partner's calls are not signed.
    pub(super) fn signature(&self, id: &str, timestamp: i64, content: &str) -> Option<String> {
        let current = self.signing.as_ref()?;
        let mut signature = current.sign(id, timestamp, content);
        if let Some((previous, until)) = &self.previous {
            if Utc::now() < *until {
                signature.push(' ');
                signature.push_str(&previous.sign(id, timestamp, content));
            }
        }
        Some(signature)
    }
}

/// What building a partner's calls takes from the sender.
pub(super) struct Builder<'a> {
    pub(super) settings: &'a DeliverySettings,
    pub(super) policy: &'a Arc<AddressPolicy>,
}

impl Builder<'_> {
    /// How a partner is called at one version of its config; `Err` says why its config cannot
    /// be used.
    pub(super) fn partner(
        &self,
        version: i64,
        settings: &CallSettings,
        signing: &SigningSecrets,
        keys: &Keys,
    ) -> Result<PartnerCall, String> {
        let open = |what: &str, sealed: &Sealed| {
            keys.open(&sealed.0)
                .map_err(|e| format!("the config's {what} cannot be read: {e}"))
        };
        let mut headers = Vec::new();
        for header in &settings.headers {
            if let HeaderValue::Secret(sealed) = &header.value {
                let value = open(&format!("header {}", header.name), sealed)?;
                headers.push(header_pair(&header.name, value.expose())?);
            }
        }
        if let Some(auth) = &settings.auth {
            headers.push((AUTHORIZATION, authorization(auth, &open)?));
        }
        let key = |what: &str, stored: &str| -> Result<SigningKey, String> {
            let secret = open(what, &Sealed(stored.to_string()))?;
            SigningKey::from_secret(secret.expose())
                .map_err(|e| format!("the config's {what} is invalid ({e})"))
        };
        let signing_key = signing
            .signing_secret
            .as_deref()
            .map(|s| key("signing secret", s))
            .transpose()?;
        let previous = match (
            &signing.previous_signing_secret,
            signing.previous_signing_secret_until,
        ) {
            (Some(s), Some(until)) if until > Utc::now() => {
                Some((key("previous signing secret", s)?, until))
            }
            _ => None,
        };
        Ok(PartnerCall {
            version,
            client: self.own_client(settings, keys)?,
            headers,
            signing: signing_key,
            previous,
            unusable: None,
        })
    }

    /// A client of the partner's own, for its proxy (else `OUTBOUND_PROXY`) and its TLS
    /// settings, with whether it goes through a proxy; `None` when it has neither and the
    /// sender's client will do.
    fn own_client(
        &self,
        settings: &CallSettings,
        keys: &Keys,
    ) -> Result<Option<(reqwest::Client, bool)>, String> {
        if settings.proxy.is_none() && settings.client_tls.is_none() {
            return Ok(None);
        }
        let proxy = match &settings.proxy {
            Some(proxy) => {
                let mut url = url::Url::parse(&proxy.url)
                    .map_err(|_| "the config's proxy_url is not a URL".to_string())?;
                if let Some(password) = &proxy.password {
                    let password = keys
                        .open(&password.0)
                        .map_err(|e| format!("the config's proxy password cannot be read: {e}"))?;
                    let _ = url.set_password(Some(password.expose()));
                }
                Some(url.to_string())
            }
            None => self.settings.proxy.as_ref().map(|p| p.expose().to_string()),
        };
        let proxy = proxy
            .map(|url| reqwest::Proxy::all(url.as_str()))
            .transpose()
            .map_err(|e| format!("the proxy is unusable: {e}"))?;
        let proxied = proxy.is_some();
        let mut builder = client_builder(self.settings, self.policy, proxy);
        if let Some(tls) = &settings.client_tls {
            if let Some(own) = &tls.identity {
                let key = keys
                    .open(&own.private_key.0)
                    .map_err(|e| format!("the config's client key cannot be read: {e}"))?;
                let pem = (own.certificate.as_bytes(), key.expose().as_bytes());
                builder = builder.identity(identity(pem.0, pem.1)?);
            }
            if let Some(ca) = &tls.ca_certificate {
                builder = builder.tls_certs_merge(certificates(ca.as_bytes())?);
            }
        }
        builder.build().map(|c| Some((c, proxied))).map_err(|e| {
            format!(
                "the config's TLS settings are unusable: {}",
                crate::error_chain::describe(&e)
            )
        })
    }
}

/// The `Authorization` value for a config's auth, marked sensitive so no debug print shows it.
fn authorization(
    auth: &Auth,
    open: &dyn Fn(&str, &Sealed) -> Result<Secret, String>,
) -> Result<HttpValue, String> {
    let value = match auth {
        Auth::Basic { username, password } => {
            let password = open("auth password", password)?;
            let encoded = base64_encode(&format!("{username}:{}", password.expose()));
            format!("Basic {encoded}")
        }
        Auth::Bearer { token } => format!("Bearer {}", open("bearer token", token)?.expose()),
    };
    let mut value = HttpValue::from_str(&value)
        .map_err(|_| "the config's auth is not a valid header value".to_string())?;
    value.set_sensitive(true);
    Ok(value)
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HttpValue), String> {
    let name = HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| format!("{name:?} is not a header name"))?;
    let mut value = HttpValue::from_str(value)
        .map_err(|_| format!("the value of {name} is not a header value"))?;
    value.set_sensitive(true);
    Ok((name, value))
}

fn base64_encode(text: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn identity(certificate: &[u8], key: &[u8]) -> Result<reqwest::Identity, String> {
    let mut pem = certificate.to_vec();
    pem.push(b'\n');
    pem.extend_from_slice(key);
    reqwest::Identity::from_pem(&pem)
        .map_err(|_| "the client certificate and key are not PEM TLS accepts".into())
}

fn certificates(pem: &[u8]) -> Result<Vec<reqwest::Certificate>, String> {
    let certs = reqwest::Certificate::from_pem_bundle(pem)
        .map_err(|_| "ca_certificate is not PEM".to_string())?;
    if certs.is_empty() {
        return Err("ca_certificate holds no certificate".into());
    }
    Ok(certs)
}

/// A client certificate and a CA, each if given, as PEM that TLS accepts.
pub fn check_certificates(certificate: Option<&str>, ca: Option<&str>) -> Result<(), String> {
    if let Some(certificate) = certificate {
        let certs = reqwest::Certificate::from_pem_bundle(certificate.as_bytes())
            .map_err(|_| "certificate is not PEM".to_string())?;
        if certs.is_empty() {
            return Err("certificate holds no PEM certificate".into());
        }
    }
    if let Some(ca) = ca {
        certificates(ca.as_bytes())?;
    }
    Ok(())
}

/// A certificate with its private key, as TLS accepts them: checked when a config is written.
pub fn check_identity(certificate: &[u8], key: &[u8]) -> Result<(), String> {
    install_crypto_provider();
    let identity = identity(certificate, key)?;
    // Building a client is what checks that the key goes with the certificate.
    reqwest::Client::builder()
        .identity(identity)
        .build()
        .map(drop)
        .map_err(|_| "the private key does not go with the certificate, or is not PEM".into())
}

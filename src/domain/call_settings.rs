//! How a partner is called besides its URL, as a config stores it (docs/api.md, "Partner
//! requests"): the request per event type, headers, auth, a proxy and a client certificate.
//! Every secret here is a [`Sealed`] value (see `crate::sealing`): what is stored, never what
//! is sent.

use std::fmt;

use serde::{Deserialize, Serialize};

use super::request_template::RequestSpec;

/// A stored secret: sealed, or (signing secrets stored before keys existed) in clear. `Debug`
/// prints nothing of it.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Sealed(pub String);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(***)")
    }
}

/// One header a config adds: a template, or a secret sent as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    pub name: String,
    #[serde(flatten)]
    pub value: HeaderValue,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeaderValue {
    /// A template filled at submit from the event's parameters.
    Value(String),
    Secret(Sealed),
}

/// The `Authorization` a config's calls carry.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Auth {
    Basic { username: String, password: Sealed },
    Bearer { token: Sealed },
}

/// An outbound proxy: its URL without a password, and the password apart.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proxy {
    pub url: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<Sealed>,
}

/// TLS of a partner's own: a client certificate (PEM) with its private key, for partners that
/// require mutual TLS, and the CA that signed the partner's certificate when the system does
/// not trust it. Either, or both.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClientTls {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ca_certificate: Option<String>,
}

/// A client certificate and its private key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Identity {
    pub certificate: String,
    pub private_key: Sealed,
}

/// Everything of a config that shapes its calls besides the URL and the signing secret.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CallSettings {
    pub postback_request: Option<RequestSpec>,
    pub chargeback_request: Option<RequestSpec>,
    pub headers: Vec<Header>,
    pub auth: Option<Auth>,
    pub proxy: Option<Proxy>,
    pub client_tls: Option<ClientTls>,
}

impl CallSettings {
    /// Every sealed value, for sealing them again under a new key.
    pub fn sealed_mut(&mut self) -> Vec<&mut Sealed> {
        let mut all = Vec::new();
        for header in &mut self.headers {
            if let HeaderValue::Secret(s) = &mut header.value {
                all.push(s);
            }
        }
        match &mut self.auth {
            Some(Auth::Basic { password, .. }) => all.push(password),
            Some(Auth::Bearer { token }) => all.push(token),
            None => {}
        }
        if let Some(Proxy {
            password: Some(p), ..
        }) = &mut self.proxy
        {
            all.push(p);
        }
        if let Some(ClientTls {
            identity: Some(identity),
            ..
        }) = &mut self.client_tls
        {
            all.push(&mut identity.private_key);
        }
        all
    }
}

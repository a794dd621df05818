//! Calling a partner: one request, no redirects, bounded in time and in bytes read, and only
//! to addresses the outbound policy allows — checked on the address actually connected to, or,
//! through a proxy, on every address the partner's name resolves to before the call is handed
//! to the proxy (docs/operations.md, "A fixed egress"). When the partner's config has a
//! signing secret, the call is signed (see `domain::signing`).

mod client;
mod partner;

pub use client::{install_crypto_provider, USER_AGENT};
pub use partner::{check_certificates, check_identity, PartnerCall};

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use uuid::Uuid;

use crate::config::DeliverySettings;
use crate::domain::call_settings::CallSettings;
use crate::domain::delivery::{FailureKind, Outcome};
use crate::domain::event::EventType;
use crate::domain::outbound::{AddressPolicy, Forbidden};
use crate::domain::request_template::{FilledRequest, Method};
use crate::domain::retry::parse_retry_after;
use crate::sealing::Keys;
use crate::store::models::SigningSecrets;
use client::client_builder;

/// One call to make.
#[derive(Clone, Copy, Debug)]
pub struct Call<'a> {
    pub url: &'a str,
    pub queue_id: Uuid,
    pub event_type: EventType,
    pub attempt: i32,
    /// The method, body and headers filled at submit; `None` for a plain GET.
    pub request: Option<&'a FilledRequest>,
    /// How this partner is called: its client, secret headers, auth and signing keys.
    pub partner: &'a PartnerCall,
}

/// What a call produced and how long it took.
#[derive(Clone, Debug)]
pub struct CallResult {
    pub outcome: Outcome,
    pub duration: Duration,
}

#[derive(Clone)]
pub struct Sender {
    client: reqwest::Client,
    /// Whether `client` goes through `OUTBOUND_PROXY`.
    proxied: bool,
    policy: Arc<AddressPolicy>,
    settings: DeliverySettings,
    body_limit: usize,
    timeout: Duration,
}

impl Sender {
    pub fn new(settings: &DeliverySettings) -> Result<Self, reqwest::Error> {
        install_crypto_provider();
        let policy = Arc::new(AddressPolicy::new(settings.allow_networks.clone()));
        let proxy = match &settings.proxy {
            Some(url) => Some(reqwest::Proxy::all(url.expose())?),
            None => None,
        };
        let proxied = proxy.is_some();
        let client = client_builder(settings, &policy, proxy).build()?;
        Ok(Self {
            client,
            proxied,
            policy,
            settings: settings.clone(),
            body_limit: settings.response_body_limit,
            timeout: settings.http_timeout,
        })
    }

    /// How a partner is called at one version of its config: a config it cannot use is not an
    /// error here, but a `PartnerCall` whose every call fails with the reason.
    pub fn partner(
        &self,
        version: i64,
        settings: &CallSettings,
        signing: &SigningSecrets,
        keys: &Keys,
    ) -> PartnerCall {
        let builder = partner::Builder {
            settings: &self.settings,
            policy: &self.policy,
        };
        builder
            .partner(version, settings, signing, keys)
            .unwrap_or_else(|why| PartnerCall::unusable(version, why))
    }

    pub async fn call(&self, call: Call<'_>) -> CallResult {
        let started = Instant::now();
        let outcome = self.outcome(call).await;
        CallResult {
            outcome,
            duration: started.elapsed(),
        }
    }

    async fn outcome(&self, call: Call<'_>) -> Outcome {
        if let Some(why) = call.partner.unusable_reason() {
            return Outcome::NoResponse {
                kind: FailureKind::Other,
                message: format!("not sent: {why}"),
            };
        }
        let (client, proxied) = call
            .partner
            .client()
            .unwrap_or((&self.client, self.proxied));
        let url = match self.allowed_url(call.url) {
            Ok(url) if proxied => match self.resolved_and_allowed(&url).await {
                Ok(()) => url,
                Err(not_sent) => return not_sent,
            },
            Ok(url) => url,
            Err(not_sent) => return not_sent,
        };
        let request = self.request(client, url, &call);
        match request.send().await {
            Ok(response) => self.read(response).await,
            Err(e) => self.failure(e),
        }
    }

    /// The stored URL, if it may be called: literal addresses never reach the resolver, so
    /// they are checked against the outbound policy here.
    fn allowed_url(&self, stored: &str) -> Result<url::Url, Outcome> {
        let not_a_url = || Outcome::NoResponse {
            kind: FailureKind::Other,
            message: "the stored URL is not a valid http(s) URL".into(),
        };
        let url = url::Url::parse(stored).map_err(|_| not_a_url())?;
        let literal = match url.host() {
            Some(url::Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(url::Host::Domain(_)) => None,
            None => return Err(not_a_url()),
        };
        if let Some(address) = literal {
            self.policy.check(address).map_err(|e| blocked(&e))?;
        }
        Ok(url)
    }

    /// Behind a proxy the partner's name is resolved by the proxy, out of our sight: so it is
    /// resolved here first, and the call is made only if every address it has is allowed.
    async fn resolved_and_allowed(&self, url: &url::Url) -> Result<(), Outcome> {
        let Some(url::Host::Domain(host)) = url.host() else {
            return Ok(()); // literal addresses were checked by `allowed_url`
        };
        let port = url.port_or_known_default().unwrap_or(443);
        let addrs =
            tokio::net::lookup_host((host, port))
                .await
                .map_err(|e| Outcome::NoResponse {
                    kind: FailureKind::Connect,
                    message: format!("could not resolve {host}: {e}"),
                })?;
        for addr in addrs {
            self.policy.check(addr.ip()).map_err(|e| blocked(&e))?;
        }
        Ok(())
    }

    /// The request with its method, body and headers, signed when the config has a secret: a
    /// partner that expects signed calls never gets an unsigned one.
    fn request(
        &self,
        client: &reqwest::Client,
        url: url::Url,
        call: &Call<'_>,
    ) -> reqwest::RequestBuilder {
        let queue_id = call.queue_id.to_string();
        let method = match call.request.map_or(Method::Get, |r| r.method) {
            Method::Get => reqwest::Method::GET,
            Method::Post => reqwest::Method::POST,
            Method::Put => reqwest::Method::PUT,
        };
        // What is signed: the body when there is one, else the request target the partner's
        // server sees (path and query), where every parameter of a GET travels.
        let body = call.request.and_then(|r| r.body.as_deref());
        let signed = body
            .unwrap_or(&url[url::Position::BeforePath..url::Position::AfterQuery])
            .to_string();
        let mut request = client
            .request(method, url)
            .header("X-Webhook-Id", &queue_id)
            .header("X-Webhook-Event", call.event_type.as_str())
            .header("X-Webhook-Attempt", call.attempt.to_string());
        if let Some(filled) = call.request {
            for (name, value) in &filled.headers {
                request = request.header(name, value);
            }
            if let Some(content_type) = &filled.content_type {
                request = request.header(reqwest::header::CONTENT_TYPE, content_type);
            }
        }
        request = call.partner.add_headers(request);
        if let Some(body) = body {
            request = request.body(body.to_string());
        }
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs() as i64);
        match call.partner.signature(&queue_id, timestamp, &signed) {
            Some(signature) => request
                .header("webhook-id", &queue_id)
                .header("webhook-timestamp", timestamp.to_string())
                .header("webhook-signature", signature),
            None => request,
        }
    }

    /// The partner's answer: its status, `Retry-After`, and the body up to the limit.
    async fn read(&self, mut response: reqwest::Response) -> Outcome {
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, SystemTime::now()));
        let mut body = Vec::new();
        // Read no more than the limit: an endless or huge body costs at most one chunk more.
        while body.len() < self.body_limit {
            match response.chunk().await {
                Ok(Some(chunk)) => body.extend_from_slice(&chunk),
                Ok(None) => break,
                // The status arrived; a body cut short does not change what the partner said.
                Err(_) => break,
            }
        }
        body.truncate(self.body_limit);
        Outcome::Response {
            status,
            body: String::from_utf8_lossy(&body).into_owned(),
            retry_after,
        }
    }

    fn failure(&self, error: reqwest::Error) -> Outcome {
        if let Some(forbidden) = find_source::<Forbidden>(&error) {
            return blocked(forbidden);
        }
        let kind = if error.is_timeout() {
            FailureKind::Timeout
        } else if error.is_connect() {
            FailureKind::Connect
        } else {
            FailureKind::Other
        };
        let message = if kind == FailureKind::Timeout {
            format!(
                "no complete response within {}",
                humantime::format_duration(self.timeout)
            )
        } else {
            crate::error_chain::describe(&error.without_url())
        };
        Outcome::NoResponse { kind, message }
    }
}

fn blocked(forbidden: &Forbidden) -> Outcome {
    Outcome::NoResponse {
        kind: FailureKind::Blocked,
        message: forbidden.to_string(),
    }
}

fn find_source<'a, T: StdError + 'static>(error: &'a (dyn StdError + 'static)) -> Option<&'a T> {
    let mut current = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<T>() {
            return Some(found);
        }
        current = e.source();
    }
    None
}

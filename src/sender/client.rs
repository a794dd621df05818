//! The HTTP clients deliveries use: their shared settings, and the resolver that applies the
//! outbound policy to every name a client resolves itself.

use std::error::Error as StdError;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use crate::config::DeliverySettings;
use crate::domain::outbound::AddressPolicy;

pub const USER_AGENT: &str = concat!("webhookd/", env!("CARGO_PKG_VERSION"));

/// Resolves host names and keeps only answers the policy allows; a name with any forbidden
/// answer is refused whole, so a rebinding or mixed answer cannot slip through.
struct PolicyResolver {
    policy: Arc<AddressPolicy>,
}

impl Resolve for PolicyResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let policy = self.policy.clone();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((name.as_str(), 0)).await?.collect();
            for addr in &addrs {
                policy
                    .check(addr.ip())
                    .map_err(|e| Box::new(e) as Box<dyn StdError + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Installs the process-wide TLS crypto provider (ring) once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The settings every client of the sender shares. Without a proxy, names resolve through the
/// policy; with one, only the proxy's own name is resolved by the client, and the proxy may be
/// on a private network.
pub(super) fn client_builder(
    settings: &DeliverySettings,
    policy: &Arc<AddressPolicy>,
    proxy: Option<reqwest::Proxy>,
) -> reqwest::ClientBuilder {
    let builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .redirect(reqwest::redirect::Policy::none())
        .timeout(settings.http_timeout)
        .connect_timeout(settings.connect_timeout)
        .tcp_nodelay(true)
        .pool_max_idle_per_host(settings.host_concurrency)
        .pool_idle_timeout(Duration::from_secs(60));
    match proxy {
        Some(proxy) => builder.proxy(proxy),
        None => builder.no_proxy().dns_resolver(Arc::new(PolicyResolver {
            policy: policy.clone(),
        })),
    }
}

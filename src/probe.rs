//! Health probes for container runtimes (Docker `HEALTHCHECK`, Kubernetes `exec` probes): one
//! HTTP GET, or one `SELECT 1`, under a deadline. An unhealthy answer is a value with a one-line
//! reason, not an error of the prober: the caller turns it into exit code 1.

use std::error::Error as StdError;
use std::time::Duration;

use crate::store::ConnectTarget;

/// Why the probed thing is not healthy, in one line fit for a health-check log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unhealthy(pub String);

impl std::fmt::Display for Unhealthy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// Most bytes of a non-200 body quoted in the reason (the API's `/health` body is ~70 bytes).
const QUOTED_BODY: usize = 200;

/// GETs `url` (no proxy, no redirects) and is healthy only on `200 OK`; anything else, a
/// refused connection or no answer within `timeout`, is unhealthy. Returns a one-line summary.
pub async fn http(url: &url::Url, timeout: Duration) -> Result<String, Unhealthy> {
    crate::sender::install_crypto_provider();
    let client = reqwest::Client::builder()
        .user_agent(concat!("webhookd-probe/", env!("CARGO_PKG_VERSION")))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(timeout)
        .build()
        .map_err(|e| Unhealthy(format!("cannot build an HTTP client: {}", chain(&e))))?;
    let response = client.get(url.clone()).send().await.map_err(|e| {
        if e.is_timeout() {
            Unhealthy(format!(
                "GET {url}: no answer within {}",
                humantime::format_duration(timeout)
            ))
        } else {
            Unhealthy(format!("GET {url}: {}", chain(&e.without_url())))
        }
    })?;
    let status = response.status();
    if status == reqwest::StatusCode::OK {
        return Ok(format!("ok: GET {url} answered {status}"));
    }
    // The body says why (`"database":"unreachable"`); a body that does not arrive in time
    // still leaves the status to report.
    let body = response.text().await.unwrap_or_default();
    let quoted: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(QUOTED_BODY)
        .collect();
    Err(Unhealthy(format!(
        "GET {url} answered {status}: {}",
        quoted.trim()
    )))
}

/// Opens one connection to the database at `database_url` (no pool) and runs `SELECT 1`.
/// The connection is opened as the service opens its own (`store::establish`), so `sslmode`
/// and `sslrootcert` in the URL apply. The reason never contains the URL, which may carry a
/// password.
pub async fn database(database_url: &str, timeout: Duration) -> Result<String, Unhealthy> {
    let check = async {
        let target = ConnectTarget::parse(database_url).map_err(|e| Unhealthy(chain(&e)))?;
        let mut conn = crate::store::establish(&target)
            .await
            .map_err(|e| Unhealthy(format!("cannot connect to the database: {}", chain(&e))))?;
        crate::store::ping(&mut conn)
            .await
            .map_err(|e| Unhealthy(format!("the database does not answer: {}", chain(&e))))
    };
    match tokio::time::timeout(timeout, check).await {
        Ok(Ok(())) => Ok("ok: the database answered SELECT 1".to_string()),
        Ok(Err(unhealthy)) => Err(unhealthy),
        Err(_) => Err(Unhealthy(format!(
            "the database did not answer within {}",
            humantime::format_duration(timeout)
        ))),
    }
}

/// An error and its causes on one line, each cause once (reqwest repeats hyper's text).
fn chain(error: &dyn StdError) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next: Option<&dyn StdError> = Some(error);
    while let Some(e) = next {
        let text = e.to_string().replace(['\r', '\n'], " ");
        if !parts.iter().any(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = e.source();
    }
    parts.join(": ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<Layer>>);
    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|l| l as _)
        }
    }

    #[test]
    fn a_cause_chain_becomes_one_line_without_repeats() {
        let e = Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(Layer("Connection refused\n(os error 111)", None))),
            ))),
        );
        assert_eq!(
            chain(&e),
            "error sending request: client error (Connect): Connection refused (os error 111)"
        );
        let repeated = Layer("tcp connect error", Some(Box::new(Layer("connect", None))));
        assert_eq!(chain(&repeated), "tcp connect error");
    }

    #[tokio::test]
    async fn a_closed_port_is_unhealthy_with_a_reason() {
        // Bind and drop to find a port nothing listens on.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let url = url::Url::parse(&format!("http://127.0.0.1:{port}/health")).unwrap();
        let reason = http(&url, Duration::from_secs(2)).await.unwrap_err().0;
        assert!(reason.starts_with(&format!("GET {url}: ")), "{reason}");
        assert!(!reason.contains('\n'), "{reason}");
    }
}

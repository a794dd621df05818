//! A forward proxy on loopback, the kind a partner's network puts between webhookd and the
//! partner: `CONNECT` tunnels for https, absolute-form requests relayed for http, optionally
//! behind Basic credentials. It records every request it was asked to carry, refused or not.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use base64::Engine;
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::http1::{self, Request};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProxySeen {
    pub method: String,
    /// `host:port` for CONNECT, the absolute URL for any other method.
    pub target: String,
    pub proxy_authorization: Option<String>,
}

struct State {
    seen: Mutex<Vec<ProxySeen>>,
    /// The `Proxy-Authorization` value a request must carry, when credentials are required.
    credentials: Option<String>,
}

pub struct ConnectProxy {
    address: SocketAddr,
    state: Arc<State>,
    accepting: JoinHandle<()>,
}

impl ConnectProxy {
    pub async fn start() -> Self {
        Self::listen(None).await
    }

    /// A proxy that answers 407 to any request without `Proxy-Authorization: Basic` for
    /// `user:password`.
    pub async fn start_with_auth(user: &str, password: &str) -> Self {
        let token = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        Self::listen(Some(format!("Basic {token}"))).await
    }

    async fn listen(credentials: Option<String>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let state = Arc::new(State {
            seen: Mutex::new(Vec::new()),
            credentials,
        });
        let shared = state.clone();
        let accepting = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                // A broken connection is the client's or the origin's affair, never the test's.
                tokio::spawn(carry(client, shared.clone()));
            }
        });
        ConnectProxy {
            address,
            state,
            accepting,
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.address)
    }

    pub fn port(&self) -> u16 {
        self.address.port()
    }

    pub fn seen(&self) -> Vec<ProxySeen> {
        self.state.seen.lock().unwrap().clone()
    }
}

impl Drop for ConnectProxy {
    fn drop(&mut self) {
        self.accepting.abort();
    }
}

async fn carry(mut client: TcpStream, state: Arc<State>) -> std::io::Result<()> {
    let Some(request) = http1::read_request(&mut client).await? else {
        return Ok(());
    };
    let authorization = request.header("proxy-authorization").map(str::to_string);
    state.seen.lock().unwrap().push(ProxySeen {
        method: request.method.clone(),
        target: request.target.clone(),
        proxy_authorization: authorization.clone(),
    });
    if state.credentials.is_some() && authorization != state.credentials {
        let refusal = http1::answer(
            "407 Proxy Authentication Required",
            "Proxy-Authenticate: Basic realm=\"test\"\r\n",
            "proxy credentials required",
        );
        return client.write_all(&refusal).await;
    }
    if request.method.eq_ignore_ascii_case("CONNECT") {
        tunnel(client, &request.target).await
    } else {
        relay(client, request).await
    }
}

async fn tunnel(mut client: TcpStream, authority: &str) -> std::io::Result<()> {
    let Ok(mut origin) = TcpStream::connect(authority).await else {
        return bad_gateway(client).await;
    };
    client
        .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
        .await?;
    tokio::io::copy_bidirectional(&mut client, &mut origin).await?;
    Ok(())
}

/// Sends an absolute-form request on to its origin in origin form and streams the answer back
/// (an endless body stays endless). One request per connection on both legs: an answer then
/// ends where the origin closes, with no body framing to follow.
async fn relay(mut client: TcpStream, request: Request) -> std::io::Result<()> {
    let Ok(url) = url::Url::parse(&request.target) else {
        let refusal = http1::answer("400 Bad Request", "", "an absolute URL is needed");
        return client.write_all(&refusal).await;
    };
    let authority = format!(
        "{}:{}",
        url.host_str().unwrap_or_default(),
        url.port_or_known_default().unwrap_or(80)
    );
    let Ok(mut origin) = TcpStream::connect(authority).await else {
        return bad_gateway(client).await;
    };
    let mut head = format!(
        "{} {} HTTP/1.1\r\n",
        request.method,
        &url[url::Position::BeforePath..url::Position::AfterQuery]
    );
    for (name, value) in &request.headers {
        if !hop_by_hop(name) {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    origin.write_all(head.as_bytes()).await?;
    origin.write_all(&request.body).await?;

    let Some((answer_head, rest)) = http1::read_head(&mut origin).await? else {
        return bad_gateway(client).await;
    };
    let mut head = String::new();
    for line in answer_head.split("\r\n") {
        let name = line.split_once(':').map_or("", |(name, _)| name.trim());
        if !hop_by_hop(name) {
            head.push_str(line);
            head.push_str("\r\n");
        }
    }
    head.push_str("Connection: close\r\n\r\n");
    client.write_all(head.as_bytes()).await?;
    client.write_all(&rest).await?;
    tokio::io::copy(&mut origin, &mut client).await?;
    client.shutdown().await
}

/// Headers that are about one leg of the way and must not be passed to the next.
fn hop_by_hop(name: &str) -> bool {
    [
        "connection",
        "keep-alive",
        "proxy-connection",
        "proxy-authorization",
    ]
    .iter()
    .any(|h| name.eq_ignore_ascii_case(h))
}

async fn bad_gateway(mut client: TcpStream) -> std::io::Result<()> {
    let answer = http1::answer("502 Bad Gateway", "", "the origin refused the connection");
    client.write_all(&answer).await
}

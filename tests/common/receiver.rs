//! A real partner on loopback that records every request, body included. Its behaviour is
//! chosen by path:
//!
//! * `/ok/...` — 200 `ok`
//! * `/status/{code}/...` — that status
//! * `/flaky/{n}/...` — 500 for the first `n` calls to that exact path and query, then 200
//! * `/rejects/{n}/...` — 400 (the event's own failure) for the first `n` calls, then 200
//! * `/retry-after/{secs}/...` — 429 with `Retry-After: secs` on the first call, then 200
//! * `/fails-for/{value}/...` — 500 to a call whose query has `e={value}`, 200 to any other
//! * `/slow/{ms}/...` — 200 after `ms` milliseconds
//! * `/slow-fail/{ms}/...` — 400 (the event's own failure) after `ms` milliseconds
//! * `/hang/...` — never answers
//! * `/endless/...` — 200 with a body that never ends
//! * `/redirect/...` — 302 to `Location` given in the query parameter `to`
//! * `/switch/...` — whatever the test last chose with [`Receiver::set_mode`]: up (200), a
//!   status (500, 410, ...) or hanging; [`Mode::Refused`] closes the listener itself, so that
//!   connections to any path are refused until another mode opens it again on the same port
#![allow(dead_code)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[derive(Clone, Debug)]
pub struct Received {
    pub method: String,
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    /// The whole request body, read before the call is recorded or answered.
    pub body: Vec<u8>,
    pub at: Instant,
    /// This call's number among the calls to its exact path and query, from 1: with the
    /// path's behaviour it tells what the call was answered (`/flaky/1/...` fails call 1).
    pub nth: u32,
}

/// The value of header `name` (any case) among `headers` (names in lower case); `""` when
/// there is none.
pub fn header_in<'a>(headers: &'a HashMap<String, String>, name: &str) -> &'a str {
    headers
        .get(&name.to_ascii_lowercase())
        .map(String::as_str)
        .unwrap_or("")
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        header_in(&self.headers, name)
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

/// How `/switch/...` answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Mode {
    #[default]
    Up,
    /// Nothing listens: connections are refused.
    Refused,
    /// Every call gets this status.
    Status(u16),
    /// Calls are never answered.
    Hanging,
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    calls: Mutex<HashMap<String, u32>>,
    mode: Mutex<Mode>,
}

pub struct Receiver {
    pub base: String,
    address: std::net::SocketAddr,
    state: Arc<State>,
    handle: Mutex<Option<actix_web::dev::ServerHandle>>,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on([127, 0, 0, 1].into()).await
    }

    /// A receiver on another loopback address, e.g. 127.0.0.2.
    pub async fn start_on(ip: std::net::IpAddr) -> Self {
        let state = Arc::new(State::default());
        let (address, handle) = serve(std::net::SocketAddr::new(ip, 0), state.clone());
        Receiver {
            base: format!("http://{address}"),
            address,
            state,
            handle: Mutex::new(Some(handle)),
        }
    }

    /// Switches how `/switch/...` answers. `Refused` stops listening; any other mode listens
    /// again on the same port if it had stopped.
    pub async fn set_mode(&self, mode: Mode) {
        *self.state.mode.lock().unwrap() = mode;
        let running = self.handle.lock().unwrap().take();
        match (mode, running) {
            (Mode::Refused, Some(handle)) => handle.stop(false).await,
            (Mode::Refused, None) => {}
            (_, Some(handle)) => *self.handle.lock().unwrap() = Some(handle),
            (_, None) => {
                let (_, handle) = serve(self.address, self.state.clone());
                *self.handle.lock().unwrap() = Some(handle);
            }
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    pub fn received(&self) -> Vec<Received> {
        self.state.received.lock().unwrap().clone()
    }

    /// Requests whose path starts with `prefix`.
    pub fn received_at(&self, prefix: &str) -> Vec<Received> {
        self.received()
            .into_iter()
            .filter(|r| r.path.starts_with(prefix))
            .collect()
    }

    pub async fn wait_for(&self, prefix: &str, count: usize, timeout: Duration) -> Vec<Received> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.received_at(prefix);
            if got.len() >= count {
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "receiver got {} of {count} requests to {prefix} within {timeout:?}",
                got.len()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub async fn stop(self) {
        let handle = self.handle.lock().unwrap().take();
        if let Some(handle) = handle {
            handle.stop(false).await;
        }
    }
}

/// Bodies up to this size are recorded; a larger one is answered 413 and not recorded. Far
/// above actix's 256 KiB default, so that a test of large postback bodies sees them arrive.
const BODY_LIMIT: usize = 16 * 1024 * 1024;

/// Listens on `address` (port 0: any), with SO_REUSEADDR so that a stopped receiver can
/// listen again on its port at once.
fn serve(
    address: std::net::SocketAddr,
    state: Arc<State>,
) -> (std::net::SocketAddr, actix_web::dev::ServerHandle) {
    let socket = match address {
        std::net::SocketAddr::V4(_) => tokio::net::TcpSocket::new_v4(),
        std::net::SocketAddr::V6(_) => tokio::net::TcpSocket::new_v6(),
    }
    .unwrap();
    socket.set_reuseaddr(true).unwrap();
    socket.bind(address).unwrap();
    let listener = socket.listen(1024).unwrap().into_std().unwrap();
    let address = listener.local_addr().unwrap();
    let data = web::Data::from(state);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .app_data(web::PayloadConfig::new(BODY_LIMIT))
            .default_service(web::to(answer))
    })
    .workers(2)
    .disable_signals()
    .shutdown_timeout(0)
    .listen(listener)
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (address, handle)
}

async fn answer(request: HttpRequest, body: web::Bytes, state: web::Data<State>) -> HttpResponse {
    let mut received = Received {
        method: request.method().to_string(),
        path: request.path().to_string(),
        query: request.query_string().to_string(),
        headers: request
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_ascii_lowercase(),
                    v.to_str().unwrap_or("").to_string(),
                )
            })
            .collect(),
        body: body.to_vec(),
        at: Instant::now(),
        nth: 0,
    };
    // Numbered and recorded under one lock, so `received()` lists calls in the order they
    // were numbered: the order of arrival.
    let calls = {
        let mut all = state.received.lock().unwrap();
        let mut calls = state.calls.lock().unwrap();
        let n = calls.entry(received.path_and_query()).or_insert(0);
        *n += 1;
        received.nth = *n;
        all.push(received);
        *n
    };
    let segments: Vec<&str> = request.path().trim_start_matches('/').split('/').collect();
    let arg = |i: usize| {
        segments
            .get(i)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(0)
    };
    match segments[0] {
        "ok" => HttpResponse::Ok().body("ok"),
        "status" => {
            HttpResponse::build(actix_web::http::StatusCode::from_u16(arg(1) as u16).unwrap())
                .body(format!("status {}", arg(1)))
        }
        "flaky" if u64::from(calls) <= arg(1) => HttpResponse::InternalServerError().body("flaky"),
        "flaky" => HttpResponse::Ok().body("recovered"),
        "rejects" if u64::from(calls) <= arg(1) => HttpResponse::BadRequest().body("rejected"),
        "rejects" => HttpResponse::Ok().body("accepted"),
        "retry-after" if calls == 1 => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", arg(1).to_string()))
            .body("slow down"),
        "retry-after" => HttpResponse::Ok().body("ok"),
        "fails-for" => {
            let poisoned = format!("e={}", segments.get(1).unwrap_or(&""));
            if request.query_string().split('&').any(|p| p == poisoned) {
                HttpResponse::InternalServerError().body("poisoned")
            } else {
                HttpResponse::Ok().body("ok")
            }
        }
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg(1))).await;
            HttpResponse::Ok().body("slow ok")
        }
        "slow-fail" => {
            tokio::time::sleep(Duration::from_millis(arg(1))).await;
            HttpResponse::BadRequest().body("slow refusal")
        }
        "hang" => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            HttpResponse::Ok().finish()
        }
        "endless" => {
            let chunk = web::Bytes::from(vec![b'x'; 64 * 1024]);
            let stream =
                futures_util::stream::repeat_with(move || Ok::<_, actix_web::Error>(chunk.clone()));
            HttpResponse::Ok().streaming(stream)
        }
        "redirect" => {
            let to = url::form_urlencoded::parse(request.query_string().as_bytes())
                .find(|(k, _)| k == "to")
                .map(|(_, v)| v.into_owned())
                .unwrap_or_default();
            HttpResponse::Found()
                .insert_header(("Location", to))
                .finish()
        }
        "switch" => {
            let mode = *state.mode.lock().unwrap();
            match mode {
                Mode::Up | Mode::Refused => HttpResponse::Ok().body("ok"),
                Mode::Status(code) => {
                    HttpResponse::build(actix_web::http::StatusCode::from_u16(code).unwrap())
                        .body(format!("status {code}"))
                }
                Mode::Hanging => {
                    tokio::time::sleep(Duration::from_secs(3600)).await;
                    HttpResponse::Ok().finish()
                }
            }
        }
        _ => HttpResponse::NotFound().body("unknown receiver path"),
    }
}

/// Polls `url` until it answers 200, up to `timeout`.
pub async fn wait_http_ok(url: &str, timeout: Duration) {
    let client = super::http_client();
    let deadline = Instant::now() + timeout;
    loop {
        if let Ok(response) = client.get(url).send().await {
            if response.status() == 200 {
                return;
            }
        }
        assert!(
            Instant::now() < deadline,
            "{url} did not answer 200 within {timeout:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

//! A real partner on loopback that records every request. Its behaviour is chosen by path:
//!
//! * `/ok/...` — 200 `ok`
//! * `/status/{code}/...` — that status
//! * `/flaky/{n}/...` — 500 for the first `n` calls to that exact path and query, then 200
//! * `/retry-after/{secs}/...` — 429 with `Retry-After: secs` on the first call, then 200
//! * `/slow/{ms}/...` — 200 after `ms` milliseconds
//! * `/slow-fail/{ms}/...` — 500 after `ms` milliseconds
//! * `/hang/...` — never answers
//! * `/endless/...` — 200 with a body that never ends
//! * `/redirect/...` — 302 to `Location` given in the query parameter `to`
#![allow(dead_code)]

use std::collections::HashMap;
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer};

#[derive(Clone, Debug)]
pub struct Received {
    pub path: String,
    pub query: String,
    pub headers: HashMap<String, String>,
    pub at: Instant,
    /// This call's number among the calls to its exact path and query, from 1: with the
    /// path's behaviour it tells what the call was answered (`/flaky/1/...` fails call 1).
    pub nth: u32,
}

impl Received {
    pub fn header(&self, name: &str) -> &str {
        self.headers
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
            .unwrap_or("")
    }

    pub fn path_and_query(&self) -> String {
        if self.query.is_empty() {
            self.path.clone()
        } else {
            format!("{}?{}", self.path, self.query)
        }
    }
}

#[derive(Default)]
struct State {
    received: Mutex<Vec<Received>>,
    calls: Mutex<HashMap<String, u32>>,
}

pub struct Receiver {
    pub base: String,
    state: Arc<State>,
    handle: actix_web::dev::ServerHandle,
}

impl Receiver {
    pub async fn start() -> Self {
        Self::start_on([127, 0, 0, 1].into()).await
    }

    /// A receiver on another loopback address, e.g. 127.0.0.2.
    pub async fn start_on(ip: std::net::IpAddr) -> Self {
        let listener = TcpListener::bind((ip, 0)).unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(State::default());
        let data = web::Data::from(state.clone());
        let server = HttpServer::new(move || {
            App::new()
                .app_data(data.clone())
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
        Receiver {
            base,
            state,
            handle,
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
        self.handle.stop(false).await;
    }
}

async fn answer(request: HttpRequest, state: web::Data<State>) -> HttpResponse {
    let mut received = Received {
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
        "retry-after" if calls == 1 => HttpResponse::TooManyRequests()
            .insert_header(("Retry-After", arg(1).to_string()))
            .body("slow down"),
        "retry-after" => HttpResponse::Ok().body("ok"),
        "slow" => {
            tokio::time::sleep(Duration::from_millis(arg(1))).await;
            HttpResponse::Ok().body("slow ok")
        }
        "slow-fail" => {
            tokio::time::sleep(Duration::from_millis(arg(1))).await;
            HttpResponse::InternalServerError().body("slow failure")
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

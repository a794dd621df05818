//! The partners: one loopback HTTP/1.1 server on its own thread, one path per partner, each
//! with its own behaviour, recording every call it gets (`X-Webhook-Id`, event id, event type,
//! the answer, and when, on the harness's monotonic clock).
//!
//! Hand-written rather than actix-web, as the bench's receiver is, so that it can also drop a
//! connection without answering (the down partner's transport errors) and costs little CPU.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::Rng;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use uuid::Uuid;

/// How a partner answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Behaviour {
    /// 200 to every call.
    Healthy,
    /// 500 to a random share of calls, never more than [`FLAKY_MAX_FAILURES`] times to one
    /// event, so that every event completes within its retries.
    Flaky,
    /// 200 after [`SLOW_CALL`].
    Slow,
    /// 400 to every call: its events fail on their own (its config has `ordering: none`, as a
    /// failed credit would hold its debit for good).
    Refusing,
    /// 500 to the `-debit` of the poison events, 200 to everything else.
    Poisoned,
    /// Down for the outage (500, then connections dropped unanswered), healthy after.
    Recovering,
}

pub const ALL: [Behaviour; 6] = [
    Behaviour::Healthy,
    Behaviour::Flaky,
    Behaviour::Slow,
    Behaviour::Refusing,
    Behaviour::Poisoned,
    Behaviour::Recovering,
];

const FLAKY_SHARE: f64 = 0.3;
const FLAKY_MAX_FAILURES: u32 = 3;
const SLOW_CALL: Duration = Duration::from_millis(50);

impl Behaviour {
    pub fn name(self) -> &'static str {
        match self {
            Behaviour::Healthy => "healthy",
            Behaviour::Flaky => "flaky",
            Behaviour::Slow => "slow",
            Behaviour::Refusing => "refusing",
            Behaviour::Poisoned => "poisoned",
            Behaviour::Recovering => "recovering",
        }
    }

    fn from_path(path: &str) -> Option<Behaviour> {
        let name = path.strip_prefix("/p/")?;
        ALL.into_iter().find(|b| b.name() == name)
    }
}

/// One call a partner received. `status` 0: the connection was dropped without an answer.
#[derive(Clone, Debug)]
pub struct Call {
    pub partner: Behaviour,
    pub queue_id: Option<Uuid>,
    pub event_id: String,
    pub event_type: String,
    pub status: u16,
    pub at: Instant,
}

impl Call {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }
}

struct Shared {
    calls: Mutex<Vec<Call>>,
    flaky_failures: Mutex<HashMap<Uuid, u32>>,
    /// The recovering partner is down until then (set when producing starts).
    outage: Mutex<Option<(Instant, Instant)>>,
    poison_event_ids: Vec<String>,
}

#[derive(Clone)]
pub struct Partners {
    pub addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Partners {
    pub fn start(poison_event_ids: Vec<String>) -> Partners {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind the partners");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let addr = listener.local_addr().expect("partners' address");
        let shared = Arc::new(Shared {
            calls: Mutex::new(Vec::new()),
            flaky_failures: Mutex::new(HashMap::new()),
            outage: Mutex::new(None),
            poison_event_ids,
        });
        let state = shared.clone();
        std::thread::Builder::new()
            .name("partners".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("partners' runtime");
                runtime.block_on(async move {
                    let listener = TcpListener::from_std(listener).expect("tokio listener");
                    loop {
                        if let Ok((stream, _)) = listener.accept().await {
                            tokio::spawn(connection(stream, state.clone()));
                        }
                    }
                });
            })
            .expect("partners' thread");
        Partners { addr, shared }
    }

    /// The recovering partner is down from now for `length`.
    pub fn begin_outage(&self, length: Duration) {
        let now = Instant::now();
        *self.shared.outage.lock().unwrap() = Some((now, now + length));
    }

    pub fn outage(&self) -> Option<(Instant, Instant)> {
        *self.shared.outage.lock().unwrap()
    }

    pub fn url(&self, partner: Behaviour, chargeback: bool) -> String {
        format!(
            "http://{}/p/{}?eid={{event_id}}&uid={{user_id}}{}",
            self.addr,
            partner.name(),
            if chargeback { "&cb=1" } else { "" }
        )
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.calls.lock().unwrap().clone()
    }
}

enum Answer {
    Status(u16),
    Drop,
}

fn decide(
    shared: &Shared,
    partner: Behaviour,
    event_type: &str,
    event_id: &str,
    queue_id: Option<Uuid>,
    now: Instant,
) -> Answer {
    match partner {
        Behaviour::Healthy | Behaviour::Slow => Answer::Status(200),
        Behaviour::Refusing => Answer::Status(400),
        Behaviour::Poisoned => {
            if event_type == "-debit" && shared.poison_event_ids.iter().any(|p| p == event_id) {
                Answer::Status(500)
            } else {
                Answer::Status(200)
            }
        }
        Behaviour::Flaky => {
            let Some(id) = queue_id else {
                return Answer::Status(200);
            };
            let mut failures = shared.flaky_failures.lock().unwrap();
            let count = failures.entry(id).or_insert(0);
            if *count < FLAKY_MAX_FAILURES && rand::rng().random_bool(FLAKY_SHARE) {
                *count += 1;
                Answer::Status(500)
            } else {
                Answer::Status(200)
            }
        }
        Behaviour::Recovering => match *shared.outage.lock().unwrap() {
            Some((from, until)) if now < until => {
                // First half of the outage answers 500, the second half drops the connection:
                // both kinds of partner failure.
                if now < from + (until - from) / 2 {
                    Answer::Status(500)
                } else {
                    Answer::Drop
                }
            }
            _ => Answer::Status(200),
        },
    }
}

async fn connection(mut stream: TcpStream, shared: Arc<Shared>) {
    let _ = stream.set_nodelay(true);
    let mut buf: Vec<u8> = Vec::with_capacity(4096);
    loop {
        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).into_owned();
            buf.drain(..end + 4);
            let now = Instant::now();
            let request = parse(&head);
            let Some(partner) = Behaviour::from_path(&request.path) else {
                let _ = stream
                    .write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\n\r\n")
                    .await;
                continue;
            };
            let answer = decide(
                &shared,
                partner,
                &request.event_type,
                &request.event_id,
                request.queue_id,
                now,
            );
            let status = match answer {
                Answer::Status(s) => s,
                Answer::Drop => 0,
            };
            shared.calls.lock().unwrap().push(Call {
                partner,
                queue_id: request.queue_id,
                event_id: request.event_id,
                event_type: request.event_type,
                status,
                at: now,
            });
            if partner == Behaviour::Slow {
                tokio::time::sleep(SLOW_CALL).await;
            }
            let response = match status {
                0 => return,
                200 => "HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok".to_string(),
                s => format!("HTTP/1.1 {s} Oops\r\ncontent-length: 4\r\n\r\nnope"),
            };
            if stream.write_all(response.as_bytes()).await.is_err() {
                return;
            }
        }
        match stream.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

#[derive(Default)]
struct Request {
    path: String,
    event_id: String,
    event_type: String,
    queue_id: Option<Uuid>,
}

/// The path, `eid` query parameter and webhook headers of a request head. Event ids of the
/// soak are unreserved characters only, so they need no percent-decoding.
fn parse(head: &str) -> Request {
    let mut lines = head.split("\r\n");
    let target = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let mut request = Request {
        path: path.to_string(),
        event_id: query
            .split('&')
            .find_map(|kv| kv.strip_prefix("eid="))
            .unwrap_or_default()
            .to_string(),
        ..Request::default()
    };
    for line in lines {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        let value = value.trim();
        if name.eq_ignore_ascii_case("x-webhook-id") {
            request.queue_id = Uuid::parse_str(value).ok();
        } else if name.eq_ignore_ascii_case("x-webhook-event") {
            request.event_type = value.to_string();
        }
    }
    request
}

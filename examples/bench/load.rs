//! The load generator: closed-loop single and batch submits, loopback GETs for the HTTP
//! ceiling, and an open-loop paced submitter that records when each event was sent.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub config_id: i64,
    /// Fraction (0 to 0.5) of the end-to-end events that are `-debit`s of the client's
    /// previous event, a `+credit` it was just answered 201 for (`--debits`).
    pub debits: f64,
}

/// Whether event `n` of a client's sequence is a debit of event `n - 1`: odd events only, spread
/// evenly so that `debits` of all events are (every odd one at 0.5).
pub fn is_debit(n: u64, debits: f64) -> bool {
    let pair = (n / 2) as f64;
    n % 2 == 1 && ((pair + 1.0) * 2.0 * debits).floor() > (pair * 2.0 * debits).floor()
}

/// One event of a closed-loop client: a credit with a unique id, or (see [`is_debit`]) the debit
/// of the credit before it.
fn sequence_event(api: &Api, n: u64, id_of: impl Fn(u64) -> String) -> String {
    if is_debit(n, api.debits) {
        event_json(api.config_id, "-debit", &id_of(n - 1), n - 1)
    } else {
        event_json(api.config_id, "+credit", &id_of(n), n)
    }
}

pub fn client(max_idle: usize) -> reqwest::Client {
    webhookd::sender::install_crypto_provider();
    reqwest::Client::builder()
        .no_proxy()
        .tcp_nodelay(true)
        .pool_max_idle_per_host(max_idle)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("HTTP client")
}

/// One `POST /webhooks` body. Unique `event_id`s, so every submit takes the idempotency path
/// a producer would use.
pub fn event_json(config_id: i64, event_type: &str, event_id: &str, n: u64) -> String {
    format!(
        r#"{{"event_type":"{event_type}","event_id":"{event_id}","config_id":{config_id},"url_params":{{"value":"100","user_id":"u{n}","token":"abc123","signature":"xyz789"}}}}"#
    )
}

/// What a closed-loop phase did.
#[derive(Clone, Debug, Default)]
pub struct Counted {
    pub ok: u64,
    pub errors: u64,
    pub elapsed: Duration,
    pub first_error: Option<String>,
}

impl Counted {
    pub fn rate(&self) -> f64 {
        self.ok as f64 / self.elapsed.as_secs_f64()
    }
}

#[derive(Default)]
struct Tally {
    ok: AtomicU64,
    errors: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Tally {
    fn error(&self, e: String) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        self.first_error.lock().unwrap().get_or_insert(e);
    }

    fn finish(&self, elapsed: Duration) -> Counted {
        Counted {
            ok: self.ok.load(Ordering::Relaxed),
            errors: self.errors.load(Ordering::Relaxed),
            elapsed,
            first_error: self.first_error.lock().unwrap().clone(),
        }
    }
}

/// `clients` loops, each sending one request at a time until `duration` has passed.
async fn closed_loop<F, Fut>(clients: usize, duration: Duration, one: F) -> Counted
where
    F: Fn(usize, u64) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<u64, String>> + Send,
{
    let tally = Arc::new(Tally::default());
    let one = Arc::new(one);
    let started = Instant::now();
    let deadline = started + duration;
    let mut tasks = tokio::task::JoinSet::new();
    for client in 0..clients {
        let (tally, one) = (tally.clone(), one.clone());
        tasks.spawn(async move {
            let mut n = 0u64;
            while Instant::now() < deadline {
                match one(client, n).await {
                    Ok(k) => {
                        tally.ok.fetch_add(k, Ordering::Relaxed);
                    }
                    Err(e) => tally.error(e),
                }
                n += 1;
            }
        });
    }
    while tasks.join_next().await.is_some() {}
    tally.finish(started.elapsed())
}

/// GETs to the receiver, no database: the loopback HTTP ceiling.
pub async fn http_gets(
    client: reqwest::Client,
    url: String,
    clients: usize,
    duration: Duration,
) -> Counted {
    closed_loop(clients, duration, move |_, _| {
        let (client, url) = (client.clone(), url.clone());
        async move {
            let response = client
                .get(&url)
                .header("X-Webhook-Id", Uuid::nil().to_string())
                .header("X-Webhook-Event", "+credit")
                .header("X-Webhook-Attempt", "0")
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let ok = response.status().is_success();
            response.bytes().await.map_err(|e| e.to_string())?;
            if ok {
                Ok(1)
            } else {
                Err("receiver answered non-2xx".into())
            }
        }
    })
    .await
}

/// Single-event `POST /webhooks` from `clients` concurrent clients.
pub async fn ingest_single(api: Api, clients: usize, duration: Duration, tag: String) -> Counted {
    closed_loop(clients, duration, move |client, n| {
        let api = api.clone();
        let body = sequence_event(&api, n, |n| format!("{tag}-{client}-{n}"));
        async move {
            let response = api
                .client
                .post(format!("{}/webhooks", api.base))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let text = response.bytes().await.map_err(|e| e.to_string())?;
            if status == 201 {
                Ok(1)
            } else {
                Err(format!("{status}: {}", String::from_utf8_lossy(&text)))
            }
        }
    })
    .await
}

/// `POST /webhooks/batch` of `batch` events from `clients` concurrent clients; counts events
/// answered 201.
pub async fn ingest_batch(
    api: Api,
    clients: usize,
    batch: usize,
    duration: Duration,
    tag: String,
) -> Counted {
    closed_loop(clients, duration, move |client, n| {
        let api = api.clone();
        let events: Vec<String> = (0..batch as u64)
            .map(|i| sequence_event(&api, i, |i| format!("{tag}-{client}-{n}-{i}")))
            .collect();
        let body = format!(r#"{{"events":[{}]}}"#, events.join(","));
        async move {
            let response = api
                .client
                .post(format!("{}/webhooks/batch", api.base))
                .header("Content-Type", "application/json")
                .body(body)
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let status = response.status().as_u16();
            let text = response.bytes().await.map_err(|e| e.to_string())?;
            if status != 200 {
                return Err(format!("{status}: {}", String::from_utf8_lossy(&text)));
            }
            let doc: serde_json::Value =
                serde_json::from_slice(&text).map_err(|e| e.to_string())?;
            let created = doc["results"]
                .as_array()
                .map(|r| r.iter().filter(|x| x["status"] == 201).count())
                .unwrap_or(0);
            if created == batch {
                Ok(created as u64)
            } else {
                Err(format!("only {created} of {batch} created"))
            }
        }
    })
    .await
}

/// What an open-loop phase did: when each accepted event was sent.
#[derive(Default)]
pub struct Paced {
    pub sent: Vec<(Uuid, Instant)>,
    /// How long each accepted submit took to be answered, in milliseconds (unsorted).
    pub answered_ms: Vec<f64>,
    pub errors: u64,
    pub first_error: Option<String>,
    /// Sends skipped because `max_in_flight` requests were already waiting.
    pub skipped: u64,
}

/// Open loop: single submits at `rate` per second for `duration`, whatever the answers take,
/// with at most `max_in_flight` requests outstanding.
pub async fn paced(
    api: Api,
    rate: f64,
    duration: Duration,
    max_in_flight: usize,
    tag: String,
) -> Paced {
    let sent = Arc::new(Mutex::new(Vec::with_capacity(
        (rate * duration.as_secs_f64()) as usize + 16,
    )));
    let tally = Arc::new(Tally::default());
    let in_flight = Arc::new(AtomicUsize::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let mut issued = 0u64;
    let mut skipped = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (rate * elapsed.as_secs_f64()) as u64;
        while issued < due {
            if in_flight.load(Ordering::Relaxed) >= max_in_flight {
                skipped += due - issued;
                issued = due;
                break;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (api, sent, tally, in_flight) =
                (api.clone(), sent.clone(), tally.clone(), in_flight.clone());
            let body = event_json(api.config_id, "+credit", &format!("{tag}-{issued}"), issued);
            tasks.spawn(async move {
                let at = Instant::now();
                let result = async {
                    let response = api
                        .client
                        .post(format!("{}/webhooks", api.base))
                        .header("Content-Type", "application/json")
                        .body(body)
                        .send()
                        .await
                        .map_err(|e| e.to_string())?;
                    let status = response.status().as_u16();
                    let text = response.bytes().await.map_err(|e| e.to_string())?;
                    if status != 201 {
                        return Err(format!("{status}: {}", String::from_utf8_lossy(&text)));
                    }
                    let doc: serde_json::Value =
                        serde_json::from_slice(&text).map_err(|e| e.to_string())?;
                    doc["queue_id"]
                        .as_str()
                        .and_then(|s| Uuid::parse_str(s).ok())
                        .ok_or_else(|| "no queue_id in the answer".to_string())
                }
                .await;
                match result {
                    Ok(id) => {
                        sent.lock()
                            .unwrap()
                            .push((id, at, at.elapsed().as_secs_f64() * 1000.0))
                    }
                    Err(e) => tally.error(e),
                }
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
            issued += 1;
        }
        // Reap finished tasks so the set does not grow without bound.
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let counted = tally.finish(started.elapsed());
    let (sent, answered_ms) = std::mem::take(&mut *sent.lock().unwrap())
        .into_iter()
        .map(|(id, at, ms)| ((id, at), ms))
        .unzip();
    Paced {
        sent,
        answered_ms,
        errors: counted.errors,
        first_error: counted.first_error,
        skipped,
    }
}

/// Submit → first call latencies in milliseconds (sorted), and how many sent events never
/// arrived.
pub fn latencies(sent: &[(Uuid, Instant)], arrivals: &[(Uuid, Instant)]) -> (Vec<f64>, usize) {
    let mut first: std::collections::HashMap<Uuid, Instant> =
        std::collections::HashMap::with_capacity(arrivals.len());
    for (id, at) in arrivals {
        first
            .entry(*id)
            .and_modify(|t| {
                if at < t {
                    *t = *at
                }
            })
            .or_insert(*at);
    }
    let mut out = Vec::with_capacity(sent.len());
    let mut missing = 0;
    for (id, at) in sent {
        match first.get(id) {
            Some(arrived) => {
                out.push(arrived.saturating_duration_since(*at).as_secs_f64() * 1000.0)
            }
            None => missing += 1,
        }
    }
    out.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (out, missing)
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

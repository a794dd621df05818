//! The producers: `+credit` then `-debit` with the same event id, one partner after the
//! other, paced at a total rate of events per second. A submit is retried (same body, so the
//! API's idempotency answers 200 with the row if an earlier try was stored) while the API is
//! down or answers 5xx, for a bounded time; the debit is submitted once its credit was
//! accepted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use uuid::Uuid;

use crate::partners::{Behaviour, ALL};

/// The poisoned partner's first event, submitted alone at the start: its poisoned debit
/// fails every attempt with no other call of that partner in between.
pub const LONE_POISON: &str = "poisoned-lone";
/// How long the poisoned partner gets nothing but [`LONE_POISON`].
pub const LONE_POISON_TIME: Duration = Duration::from_secs(8);
/// How long one submit keeps retrying before the harness gives up on it.
const SUBMIT_PATIENCE: Duration = Duration::from_secs(30);
/// Pairs in flight at most; beyond it, due pairs are skipped (and counted).
const MAX_IN_FLIGHT: usize = 512;

/// An event the API accepted (2xx).
#[derive(Clone, Debug)]
pub struct Accepted {
    pub queue_id: Uuid,
    pub partner: Behaviour,
    pub event_type: &'static str,
    pub event_id: String,
}

#[derive(Default)]
pub struct Produced {
    pub accepted: Vec<Accepted>,
    pub pairs_started: u64,
    pub gave_up: u64,
    pub first_error: Option<String>,
    pub retried_submits: u64,
    pub skipped: u64,
}

#[derive(Clone)]
pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    /// Config id per partner, in the order of [`ALL`].
    pub configs: Vec<i64>,
}

/// The event id of pair `n`: the partner's name and the pair number.
pub fn event_id(n: u64) -> String {
    format!("{}-{n}", partner_of(n).name())
}

pub fn partner_of(n: u64) -> Behaviour {
    ALL[(n % ALL.len() as u64) as usize]
}

#[derive(Default)]
struct Tally {
    pairs: AtomicU64,
    accepted: Mutex<Vec<Accepted>>,
    gave_up: AtomicU64,
    retried: AtomicU64,
    first_error: Mutex<Option<String>>,
}

/// Submits pairs at `rate` events per second for `duration`, then waits for the pairs in
/// flight (each bounded by its retries). The poisoned partner's share starts after
/// [`LONE_POISON_TIME`], with [`LONE_POISON`] alone before it.
pub async fn produce(api: Api, rate: f64, duration: Duration) -> Produced {
    let tally = Arc::new(Tally::default());
    let in_flight = Arc::new(AtomicU64::new(0));
    let mut tasks = tokio::task::JoinSet::new();
    let started = Instant::now();
    let pair_rate = rate / 2.0;
    let mut issued = 0u64;
    let mut skipped = 0u64;
    {
        let (api, tally) = (api.clone(), tally.clone());
        tasks.spawn(async move {
            pair(
                &api,
                Behaviour::Poisoned,
                LONE_POISON.to_string(),
                0,
                &tally,
            )
            .await
        });
    }
    let mut tick = tokio::time::interval(Duration::from_millis(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tick.tick().await;
        let elapsed = started.elapsed();
        if elapsed >= duration {
            break;
        }
        let due = (pair_rate * elapsed.as_secs_f64()) as u64;
        while issued < due {
            let n = issued;
            issued += 1;
            if partner_of(n) == Behaviour::Poisoned && elapsed < LONE_POISON_TIME {
                continue;
            }
            if in_flight.load(Ordering::Relaxed) as usize >= MAX_IN_FLIGHT {
                skipped += 1;
                continue;
            }
            in_flight.fetch_add(1, Ordering::Relaxed);
            let (api, tally, in_flight) = (api.clone(), tally.clone(), in_flight.clone());
            tasks.spawn(async move {
                pair(&api, partner_of(n), event_id(n), n, &tally).await;
                in_flight.fetch_sub(1, Ordering::Relaxed);
            });
        }
        while tasks.try_join_next().is_some() {}
    }
    while tasks.join_next().await.is_some() {}
    let accepted = std::mem::take(&mut *tally.accepted.lock().unwrap());
    let first_error = tally.first_error.lock().unwrap().clone();
    Produced {
        accepted,
        pairs_started: tally.pairs.load(Ordering::Relaxed),
        gave_up: tally.gave_up.load(Ordering::Relaxed),
        first_error,
        retried_submits: tally.retried.load(Ordering::Relaxed),
        skipped,
    }
}

async fn pair(api: &Api, partner: Behaviour, event_id: String, n: u64, tally: &Tally) {
    tally.pairs.fetch_add(1, Ordering::Relaxed);
    let config_id = api.configs[ALL.iter().position(|b| *b == partner).unwrap()];
    for event_type in ["+credit", "-debit"] {
        let body = format!(
            r#"{{"event_type":"{event_type}","event_id":"{event_id}","config_id":{config_id},"url_params":{{"user_id":"u{n}","value":"100"}}}}"#
        );
        match submit(api, &body, tally).await {
            Ok(queue_id) => tally.accepted.lock().unwrap().push(Accepted {
                queue_id,
                partner,
                event_type,
                event_id: event_id.clone(),
            }),
            Err(e) => {
                tally.gave_up.fetch_add(1, Ordering::Relaxed);
                tally.first_error.lock().unwrap().get_or_insert(e);
                // No debit without an accepted credit: the pairs checked for order are whole.
                return;
            }
        }
    }
}

/// One `POST /webhooks`, retried on transport errors, 408, 429 and 5xx until
/// [`SUBMIT_PATIENCE`].
async fn submit(api: &Api, body: &str, tally: &Tally) -> Result<Uuid, String> {
    let deadline = Instant::now() + SUBMIT_PATIENCE;
    let mut backoff = Duration::from_millis(100);
    let mut first = true;
    loop {
        if !first {
            tally.retried.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let error = match try_submit(api, body).await {
            Ok(id) => return Ok(id),
            Err((true, e)) => e,
            Err((false, e)) => return Err(e),
        };
        if Instant::now() + backoff > deadline {
            return Err(format!("gave up after {SUBMIT_PATIENCE:?}: {error}"));
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(1));
    }
}

/// The queue id of the stored event, or (worth retrying, why not).
async fn try_submit(api: &Api, body: &str) -> Result<Uuid, (bool, String)> {
    let response = api
        .client
        .post(format!("{}/webhooks", api.base))
        .header("Content-Type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| (true, format!("submit: {e}")))?;
    let status = response.status().as_u16();
    let text = response
        .bytes()
        .await
        .map_err(|e| (true, format!("submit answer: {e}")))?;
    if !(200..300).contains(&status) {
        // 408: the API gave up waiting for the request (a loaded machine); worth another try.
        let retry = status >= 500 || status == 429 || status == 408;
        return Err((
            retry,
            format!(
                "submit answered {status}: {}",
                String::from_utf8_lossy(&text)
            ),
        ));
    }
    let doc: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| (false, format!("submit answer: {e}")))?;
    doc["queue_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or_else(|| (false, format!("no queue_id in {doc}")))
}

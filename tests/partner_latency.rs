//! Scheduling by partner, measured: another partner's latency while a slow partner's backlog
//! drains. Alone in its test binary, so that no other test shares the machine with the drain.

mod common;

use std::time::{Duration, Instant};

use common::fixture::Event;
use common::receiver::Receiver;
use common::{eventually, spawn, Options, TestApp};
use serde_json::{json, Value};

const WAIT: Duration = Duration::from_secs(30);

fn credit(config_id: i64, event_id: &str) -> Value {
    Event::credit(event_id)
        .to(config_id)
        .param("e", event_id)
        .body()
}

/// Latencies, submit to arrival at the receiver, of `n` events to `config_id` paced `gap`
/// apart; sorted.
async fn paced_latencies(
    app: &TestApp,
    receiver: &Receiver,
    config_id: i64,
    prefix: &str,
    n: usize,
    gap: Duration,
) -> Vec<Duration> {
    let mut sent = Vec::new();
    for i in 0..n {
        let event_id = format!("{prefix}{i}");
        sent.push((event_id.clone(), Instant::now()));
        app.submit(credit(config_id, &event_id)).await;
        tokio::time::sleep(gap).await;
    }
    let mine = |r: &common::receiver::Received| {
        r.query
            .split('&')
            .any(|p| p.strip_prefix("e=").is_some_and(|e| e.starts_with(prefix)))
    };
    eventually(WAIT, &format!("the {prefix} events to arrive"), || async {
        receiver.received().iter().filter(|r| mine(r)).count() >= n
    })
    .await;
    let arrived = receiver.received();
    let mut latencies: Vec<Duration> = sent
        .iter()
        .map(|(event_id, at)| {
            let call = arrived
                .iter()
                .find(|r| r.query.split('&').any(|p| p == format!("e={event_id}")))
                .unwrap_or_else(|| panic!("{event_id} never arrived"));
            call.at.duration_since(*at)
        })
        .collect();
    latencies.sort();
    latencies
}

/// Events the fast partner gets in each phase, paced 50 ms apart.
const SAMPLES: usize = 100;

/// The 99th percentile of sorted latencies.
fn p99(sorted: &[Duration]) -> Duration {
    sorted[(sorted.len() * 99).div_ceil(100) - 1]
}

/// A partner resumed with 20,000 events of 50 ms each drains for half a minute; another
/// partner, on another host, keeps its latency meanwhile: its p99 stays within 100 ms of its
/// p99 with no backlog, measured in the same run.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_partner_keeps_its_latency_while_a_slow_backlog_drains() {
    let slow_receiver = Receiver::start().await;
    let fast_receiver = Receiver::start().await;
    let app = spawn(Options::with_workers()).await;
    let slow = app.partner("slow", &slow_receiver.url("/slow/50/s")).await;
    let fast = app.partner("fast", &fast_receiver.url("/ok/f")).await;
    let gap = Duration::from_millis(50);
    let alone = paced_latencies(&app, &fast_receiver, fast, "alone", SAMPLES, gap).await;

    let (status, body) = app
        .post(&format!("/webhook-configs/{slow}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    for chunk in 0..40 {
        let events: Vec<Value> = (0..500)
            .map(|i| credit(slow, &format!("s{chunk}-{i}")))
            .collect();
        let (status, body) = app.post("/webhooks/batch", json!({"events": events})).await;
        assert!(status == 200 || status == 201, "{status} {body}");
    }
    let (status, body) = app
        .post(&format!("/webhook-configs/{slow}/resume"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
    slow_receiver.wait_for("/slow/50/s", 100, WAIT).await;
    let behind = paced_latencies(&app, &fast_receiver, fast, "behind", SAMPLES, gap).await;
    let still_pending = app
        .db
        .count(&format!(
            "SELECT count(*) FROM webhook_queue WHERE config_id = {slow} AND status <> 'completed'"
        ))
        .await;
    assert!(
        still_pending > 1_000,
        "the backlog drained before the measurement ended ({still_pending} left)"
    );
    let (alone_p99, behind_p99) = (p99(&alone), p99(&behind));
    eprintln!(
        "fast partner, median / p99 of {SAMPLES}: alone {:?} / {alone_p99:?}; while the backlog drains {:?} / {behind_p99:?}",
        alone[alone.len() / 2],
        behind[behind.len() / 2],
    );
    assert!(
        behind_p99 <= alone_p99 + Duration::from_millis(100),
        "with the backlog draining: p99 {behind_p99:?} (median {:?}); alone: p99 {alone_p99:?} (median {:?})",
        behind[behind.len() / 2],
        alone[alone.len() / 2],
    );
    let (status, body) = app
        .post(&format!("/webhook-configs/{slow}/pause"), json!({}))
        .await;
    assert_eq!(status, 200, "{body}");
}
